//! LDAP replies into fields: arbitrary BER as a SearchResultEntry (a hostile or broken
//! directory), mapped through attribute maps with templates, and the first bytes as a user name
//! escaped into a filter and a DN. Never panics; field values stay bounded; an escaped value
//! always parses as one literal assertion value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::config::ldap::AttrMap;
use saslgate::db::ldap::entry::{map_entry, Entry, MAX_FIELD};
use saslgate::db::ldap::escape::{dn_escape, filter_escape};
use saslgate::request::var::Template;
use saslgate::request::RequestInfo;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map(|&b| usize::from(b) % 64).unwrap_or(0).min(data.len());
    let (name, ber) = data.split_at(split);
    let name = String::from_utf8_lossy(name);
    let escaped = filter_escape(&name);
    assert!(!escaped.contains(['*', '(', ')', '\0']), "{escaped:?}");
    assert!(ldap3::parse_filter(&format!("(uid={escaped})")).is_ok(), "{escaped:?}");
    let _ = dn_escape(&name);

    let Ok((_, tag)) = ldap3::asn1::parse_tag(ber) else { return };
    let Some(entry) = Entry::from_tag(tag) else { return };
    let info = RequestInfo::from_lookup(&saslgate::protocol::master::LookupInfo::default());
    let map = vec![
        AttrMap::Attr { attr: "uid".into(), field: "user".into() },
        AttrMap::Attr { attr: "userPassword".into(), field: "password".into() },
        AttrMap::Attr { attr: "mail".into(), field: "mail".into() },
        AttrMap::Template { field: "home".into(), template: Template::parse_ldap("/var/mail/%{ldap:uid}/%1{ldap:mail}/%L{ldap:cn}").unwrap() },
    ];
    let mapped = map_entry(&entry, &map, &name, &info);
    for (_, v) in mapped.fields.iter() {
        assert!(v.len() <= MAX_FIELD);
    }
    assert!(!mapped.fields.contains("password"));
});
