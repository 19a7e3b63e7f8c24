//! LDAP entries as the drivers see them, parsed from the BER of a search result without a
//! panic (ldap3's `SearchEntry::construct` panics on a malformed entry), and mapped into fields
//! by `pass_attrs` / `user_attrs` / `iterate_attrs`.

use ldap3::asn1::{StructureTag, PL};

use super::escape::no_escape;
use crate::config::ldap::AttrMap;
use crate::request::{expand_with, Fields, RequestInfo};

/// Most values kept per attribute.
pub const MAX_VALUES: usize = 1024;
/// Longest field value built from an entry (joined values, expanded templates).
pub const MAX_FIELD: usize = 64 * 1024;

/// One entry: its DN and its attributes (names as the server spelled them; compared
/// case-insensitively). Values that are not UTF-8 are left out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The entry's DN.
    pub dn: String,
    attrs: Vec<(String, Vec<String>)>,
}

impl std::fmt::Debug for Entry {
    // Values may be password hashes: names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("dn", &self.dn).field("attrs", &self.attrs.iter().map(|(k, _)| k).collect::<Vec<_>>()).finish()
    }
}

impl Entry {
    /// An entry from its parts (tests, fuzzing).
    pub fn new(dn: &str, attrs: Vec<(String, Vec<String>)>) -> Entry {
        Entry { dn: dn.to_owned(), attrs }
    }

    /// Parses a SearchResultEntry (`[APPLICATION 4] SEQUENCE { objectName, attributes }`);
    /// `None` when it is malformed.
    pub fn from_tag(tag: StructureTag) -> Option<Entry> {
        let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
        let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
        let mut attrs: Vec<(String, Vec<String>)> = Vec::new();
        for attr in parts.next()?.expect_constructed()? {
            let mut pair = attr.expect_constructed()?.into_iter();
            let name = String::from_utf8(pair.next()?.expect_primitive()?).ok()?;
            let set = match pair.next()?.payload {
                PL::C(values) => values,
                PL::P(_) => return None,
            };
            let values: Vec<String> = set.into_iter().filter_map(|v| v.expect_primitive()).filter_map(|v| String::from_utf8(v).ok()).take(MAX_VALUES).collect();
            attrs.push((name, values));
        }
        Some(Entry { dn, attrs })
    }

    /// The values of an attribute (names compared case-insensitively; an option such as
    /// `;binary` is part of the name).
    pub fn values(&self, attr: &str) -> &[String] {
        self.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)).map(|(_, v)| v.as_slice()).unwrap_or_default()
    }

    /// The first value.
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.values(attr).first().map(String::as_str)
    }

    /// Every value joined with `,` (Dovecot's rule for a multi-valued attribute), bounded.
    pub fn joined(&self, attr: &str) -> String {
        bounded(self.values(attr).join(","))
    }
}

fn bounded(mut value: String) -> String {
    if value.len() > MAX_FIELD {
        let mut cut = MAX_FIELD;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    value
}

/// What an attribute map gives: the fields (password excluded) and the stored password.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The fields, in map order.
    pub fields: Fields,
    /// The `password` field (first value only), kept out of `fields`.
    pub password: Option<zeroize::Zeroizing<String>>,
}

/// Maps an entry through an attribute map. Attributes the entry lacks set no field (as
/// Dovecot); templates expand with `%{ldap:attr}` from the entry (joined values) and the
/// request's variables, unescaped.
pub fn map_entry(entry: &Entry, map: &[AttrMap], user: &str, info: &RequestInfo) -> Mapped {
    let mut out = Mapped::default();
    for item in map {
        match item {
            AttrMap::Attr { attr, field } if field == "password" => {
                if let Some(first) = entry.first(attr) {
                    out.password = Some(zeroize::Zeroizing::new(bounded(first.to_owned())));
                }
            }
            AttrMap::Attr { attr, field } => {
                if !entry.values(attr).is_empty() {
                    out.fields.set(field, &entry.joined(attr));
                }
            }
            AttrMap::Template { field, template } => {
                let value = bounded(expand_with(template, user, info, no_escape, &|attr| entry.joined(attr)));
                if field == "password" {
                    out.password = Some(zeroize::Zeroizing::new(value));
                } else {
                    out.fields.set(field, &value);
                }
            }
        }
    }
    out
}

/// Every attribute a map reads (to request them in the search), without duplicates.
pub fn wanted_attrs(maps: &[&[AttrMap]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in maps.iter().flat_map(|m| m.iter()) {
        for attr in item.attrs() {
            if !out.iter().any(|a| a.eq_ignore_ascii_case(attr)) {
                out.push(attr.to_owned());
            }
        }
    }
    if out.is_empty() {
        // RFC 4511: "1.1" asks for no attributes at all.
        out.push("1.1".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::var::Template;

    fn info() -> RequestInfo {
        RequestInfo::from_lookup(&crate::protocol::master::LookupInfo::default())
    }

    #[test]
    fn maps_attributes_and_templates() {
        let e = Entry::new(
            "uid=bob,ou=people,dc=example,dc=org",
            vec![
                ("uid".into(), vec!["bob".into()]),
                ("userPassword".into(), vec!["{SSHA}x".into(), "{SSHA}y".into()]),
                ("mail".into(), vec!["a@x".into(), "b@x".into()]),
            ],
        );
        let map = vec![
            AttrMap::Attr { attr: "UID".into(), field: "user".into() },
            AttrMap::Attr { attr: "userpassword".into(), field: "password".into() },
            AttrMap::Attr { attr: "mail".into(), field: "mail".into() },
            AttrMap::Attr { attr: "missing".into(), field: "nothere".into() },
            AttrMap::Template { field: "home".into(), template: Template::parse_ldap("/var/mail/%{ldap:uid}/%u").unwrap() },
        ];
        let m = map_entry(&e, &map, "Bob", &info());
        assert_eq!(m.password.as_deref().map(String::as_str), Some("{SSHA}x"));
        assert_eq!(m.fields.get("user"), Some("bob"));
        assert_eq!(m.fields.get("mail"), Some("a@x,b@x"));
        assert_eq!(m.fields.get("home"), Some("/var/mail/bob/Bob"));
        assert!(!m.fields.contains("nothere") && !m.fields.contains("password"));
        assert_eq!(wanted_attrs(&[&map]), ["UID", "userpassword", "mail", "missing"]);
        assert_eq!(wanted_attrs(&[&[]]), ["1.1"]);
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert!(Entry::from_tag(StructureTag { class: ldap3::asn1::TagClass::Application, id: 4, payload: PL::P(vec![1]) }).is_none());
        assert!(Entry::from_tag(StructureTag { class: ldap3::asn1::TagClass::Application, id: 4, payload: PL::C(vec![]) }).is_none());
    }
}
