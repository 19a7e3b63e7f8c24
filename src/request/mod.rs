//! The data a request carries, below both the config and the drivers.
//!
//! [`RequestInfo`] is what the server knows about a request before any database is asked
//! (service, addresses, ports, session, TLS state, certificate), taken from the AUTH line or a
//! master lookup. [`Fields`] are the ordered `key=value` pairs databases return and replies
//! carry. [`var`] parses `%variable` templates at config load and expands them against a
//! request here, with values made path-safe where the result names a file. Nothing here does
//! I/O, and nothing here knows a driver, a mechanism or a socket.

pub mod nets;
pub mod var;

use std::fmt;
use std::net::IpAddr;

use crate::protocol::client::{AuthParams, Secured};
use crate::protocol::master::LookupInfo;
use var::{split_user, Template, Var};

/// Extra fields: ordered `key=value` pairs with unique keys (setting a key again replaces it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// No fields.
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    /// Sets `key` to `value`, replacing an earlier value in place.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => value.clone_into(v),
            None => self.0.push((key.to_owned(), value.to_owned())),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(String, String)>> for Fields {
    fn from(pairs: Vec<(String, String)>) -> Fields {
        let mut fields = Fields::new();
        for (k, v) in pairs {
            fields.set(&k, &v);
        }
        fields
    }
}

/// What the server knows about a request before any database is asked. Immutable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `service=`.
    pub service: String,
    /// The mechanism, `None` for master lookups (PASS, USER).
    pub mech: Option<&'static str>,
    /// Local IP.
    pub lip: Option<IpAddr>,
    /// Remote IP.
    pub rip: Option<IpAddr>,
    /// Remote IP before any proxy (`real_rip`, defaults to `rip`).
    pub real_rip: Option<IpAddr>,
    /// Local port.
    pub lport: Option<u16>,
    /// Remote port.
    pub rport: Option<u16>,
    /// Session id, for logs.
    pub session: Option<String>,
    /// The peer's CPID (login sockets), for `%p`.
    pub client_pid: Option<u32>,
    /// `secured`.
    pub secured: Option<Secured>,
    /// `valid-client-cert`: the TLS client certificate verified.
    pub valid_client_cert: bool,
    /// `cert_username`, kept only when it is non-empty and the certificate is valid.
    pub cert_username: Option<String>,
    /// Per-request debug logging.
    pub debug: bool,
    /// The listener's own `disable_plaintext_auth`, when it sets one.
    pub disable_plaintext_auth: Option<bool>,
    /// The plaintext password, for `%w`: set only while the passdb chain checks a password
    /// login (`Op::Verify`), never from the wire. `Secret` keeps it out of `Debug`.
    pub password: Option<crate::secret::Secret>,
}

impl RequestInfo {
    /// From the parameters of an AUTH line (taken, so their texts are not copied).
    pub fn from_auth(params: AuthParams, mech: &'static str, client_pid: Option<u32>) -> RequestInfo {
        RequestInfo {
            service: params.service,
            mech: Some(mech),
            lip: params.lip,
            rip: params.rip,
            real_rip: params.real_rip,
            lport: params.lport,
            rport: params.rport,
            session: params.session,
            client_pid,
            secured: params.secured,
            valid_client_cert: params.valid_client_cert,
            cert_username: params.cert_username.filter(|u| params.valid_client_cert && !u.is_empty()),
            debug: params.debug,
            disable_plaintext_auth: None,
            password: None,
        }
    }

    /// From the parameters of a master USER/PASS/LIST line.
    pub fn from_lookup(info: &LookupInfo) -> RequestInfo {
        RequestInfo {
            service: info.service.clone(),
            mech: None,
            lip: info.get("lip").and_then(|v| v.parse().ok()),
            rip: info.get("rip").and_then(|v| v.parse().ok()),
            real_rip: info.get("real_rip").or(info.get("rip")).and_then(|v| v.parse().ok()),
            lport: info.get("lport").and_then(|v| v.parse().ok()),
            rport: info.get("rport").and_then(|v| v.parse().ok()),
            session: info.get("session").map(str::to_owned),
            client_pid: None,
            secured: None,
            valid_client_cert: false,
            cert_username: None,
            debug: info.get("debug").is_some(),
            disable_plaintext_auth: None,
            password: None,
        }
    }

    fn var(&self, var: Var, user: &str, safe: fn(&str) -> String) -> String {
        let ip = |ip: Option<IpAddr>| ip.map(|i| i.to_string()).unwrap_or_default();
        match var {
            Var::User => safe(user),
            Var::Username => safe(split_user(user).0),
            Var::Domain => safe(split_user(user).1),
            Var::Service => safe(&self.service),
            Var::LocalIp => ip(self.lip),
            Var::RemoteIp => ip(self.rip),
            Var::Home => String::new(),
            Var::Pid => self.client_pid.map(|p| p.to_string()).unwrap_or_default(),
            Var::Mech => self.mech.unwrap_or_default().to_owned(),
            Var::Session => safe(self.session.as_deref().unwrap_or_default()),
            Var::LocalPort => self.lport.map(|p| p.to_string()).unwrap_or_default(),
            Var::RemotePort => self.rport.map(|p| p.to_string()).unwrap_or_default(),
            Var::Secured => match self.secured {
                Some(Secured::Tls) => "TLS".to_owned(),
                Some(Secured::Yes) => "secured".to_owned(),
                None => String::new(),
            },
            Var::Cert => {
                if self.valid_client_cert {
                    "valid".to_owned()
                } else {
                    String::new()
                }
            }
            Var::RealRemoteIp => ip(self.real_rip),
            Var::Password => self.password.as_ref().map(|p| safe(&String::from_utf8_lossy(p.expose()))).unwrap_or_default(),
            Var::Percent => "%".to_owned(),
            // Resolved by the LDAP drivers from the entry (see `expand_with`).
            Var::Ldap(_) => String::new(),
        }
    }
}

/// Expands a template whose result is a user name or a field value.
pub fn expand_for_user(template: &Template, user: &str, info: &RequestInfo) -> String {
    template.expand(|v| info.var(v, user, str::to_owned))
}

/// Expands a template with every substituted value passed through `escape` (an LDAP filter's
/// RFC 4515 escaping, a DN's RFC 4514 one), and `%{ldap:attr}` taken from `ldap`.
pub fn expand_with(template: &Template, user: &str, info: &RequestInfo, escape: fn(&str) -> String, ldap: &dyn Fn(&str) -> String) -> String {
    template.expand_escaped(
        |v| match v {
            Var::Ldap(i) => template.ldap_attr(i).map(ldap).unwrap_or_default(),
            other => info.var(other, user, str::to_owned),
        },
        |value| escape(&value),
    )
}

/// Expands field templates (`fields`, `default_fields`, `override_fields`) for a user.
pub fn expand_fields(templates: &[(String, Template)], user: &str, info: &RequestInfo) -> Fields {
    let mut fields = Fields::new();
    for (k, t) in templates {
        fields.set(k, &expand_for_user(t, user, info));
    }
    fields
}

/// A database's fields with its templates around them: `default_fields` first (a value the
/// driver sets wins), then the driver's fields, then `override_fields` (they win).
pub fn layer_fields(defaults: &[(String, Template)], driver: &Fields, overrides: &[(String, Template)], user: &str, info: &RequestInfo) -> Fields {
    let mut fields = Fields::new();
    for (k, t) in defaults.iter().filter(|(k, _)| !driver.contains(k)) {
        fields.set(k, &expand_for_user(t, user, info));
    }
    for (k, v) in driver.iter() {
        fields.set(k, v);
    }
    for (k, v) in expand_fields(overrides, user, info).iter() {
        fields.set(k, v);
    }
    fields
}

/// Expands a template whose result is a file path: substituted values lose any `/` and `..`.
pub fn expand_for_path(template: &Template, user: &str, info: &RequestInfo) -> String {
    template.expand(|v| info.var(v, user, path_safe))
}

/// Makes a value safe to substitute into a file path: everything from the first `/` on is cut,
/// as Dovecot does, and `..` becomes empty.
pub fn path_safe(value: &str) -> String {
    let cut = value.split('/').next().unwrap_or_default();
    if cut == ".." || cut == "." {
        String::new()
    } else {
        cut.to_owned()
    }
}

/// Field values can hold secrets (`pass=`, a proxy password; `password=` from a passdb), so a
/// `{:?}` of fields prints the keys and hides every value.
impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_cannot_escape() {
        assert_eq!(path_safe("example.org"), "example.org");
        assert_eq!(path_safe("../../etc/passwd"), "");
        assert_eq!(path_safe("a/b"), "a");
        assert_eq!(path_safe("."), "");
    }

    #[test]
    fn fields_debug_hides_values() {
        let mut f = Fields::new();
        f.set("pass", "hunter2");
        let shown = format!("{f:?}");
        assert!(shown.contains("pass") && !shown.contains("hunter2"), "{shown}");
    }
}
