//! The `ldap` passdb and userdb settings, with Dovecot's key names (`uris`, `dn`, `dnpass`,
//! `base`, `scope`, `deref`, `auth_bind`, `auth_bind_userdn`, `pass_filter`, `pass_attrs`,
//! `user_filter`, `user_attrs`, `iterate_filter`, `iterate_attrs`, `tls`, `tls_ca_cert_file`,
//! `tls_require_cert`, `timeout`) so an admin can carry a `dovecot-ldap.conf.ext` over.
//!
//! `pass_attrs` / `user_attrs` / `iterate_attrs` are YAML maps. `ldapAttribute: fieldName` copies
//! an attribute into a field; `fieldName: "=template"` (Dovecot's `=field=template`) sets a field
//! from a template, where `%{ldap:attr}` is an attribute of the entry found.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::locate::Seg;
use super::{key, parse_duration, raw, ConfigError, Validator};
use crate::request::var::Template;

/// Keys every LDAP block takes (connection settings).
pub(crate) const CONNECTION_KEYS: &[&str] = &[
    "uris",
    "dn",
    "dnpass",
    "dnpass_file",
    "base",
    "scope",
    "deref",
    "tls",
    "tls_ca_cert_file",
    "tls_require_cert",
    "timeout",
    "connections",
    "max_ops_per_connection",
];
/// Keys only the passdb takes.
pub(crate) const PASSDB_KEYS: &[&str] = &["scheme", "auth_bind", "auth_bind_userdn", "auth_bind_connections", "pass_filter", "pass_attrs"];
/// Keys only the userdb takes.
pub(crate) const USERDB_KEYS: &[&str] = &["user_filter", "user_attrs", "iterate_filter", "iterate_attrs"];

/// Dovecot's default `pass_filter`.
pub const DEFAULT_PASS_FILTER: &str = "(&(objectClass=posixAccount)(uid=%u))";
/// Dovecot's default `user_filter`.
pub const DEFAULT_USER_FILTER: &str = "(&(objectClass=posixAccount)(uid=%u))";
/// Dovecot's default `iterate_filter`.
pub const DEFAULT_ITERATE_FILTER: &str = "(objectClass=posixAccount)";
/// The default `timeout`: connect plus one operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default number of lookup connections per LDAP block.
pub const DEFAULT_CONNECTIONS: usize = 4;
/// The default number of bind connections of an `auth_bind` passdb.
pub const DEFAULT_AUTH_BIND_CONNECTIONS: usize = 16;
/// The default bound on operations in flight on one lookup connection.
pub const DEFAULT_MAX_OPS: usize = 64;

/// Search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `base`: the base entry only.
    Base,
    /// `onelevel`: its children.
    OneLevel,
    /// `subtree` (the default).
    Subtree,
}

/// Alias dereferencing (`deref`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deref {
    /// `never` (the default).
    Never,
    /// `searching`.
    Searching,
    /// `finding`.
    Finding,
    /// `always`.
    Always,
}

/// `tls_require_cert`: how the server's certificate is checked (OpenLDAP's TLS_REQCERT names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRequireCert {
    /// `never`, `allow`, `try`: no check (a warning at start-up).
    Never,
    /// `demand`, `hard` (the default): a valid chain to the CA and the host name.
    Demand,
}

/// What one LDAP block connects to and how.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapConnection {
    /// `uris`: tried in order; a later one serves while an earlier one is down.
    pub uris: Vec<String>,
    /// `dn`: the service account bound on the lookup connections (anonymous without).
    pub dn: Option<String>,
    /// `dnpass` or the first line of `dnpass_file`.
    pub dnpass: Option<String>,
    /// `base` (may hold `%variables`, DN-escaped when expanded).
    pub base: Template,
    /// `scope` (default subtree).
    pub scope: Scope,
    /// `deref` (default never).
    pub deref: Deref,
    /// `tls`: StartTLS on `ldap://` URIs.
    pub tls: bool,
    /// `tls_ca_cert_file`: the CAs to trust (PEM); the system's without.
    pub tls_ca_cert_file: Option<PathBuf>,
    /// `tls_require_cert` (default demand).
    pub tls_require_cert: TlsRequireCert,
    /// `timeout`: connect plus one operation (default 5s).
    pub timeout: Duration,
    /// `connections`: lookup connections (default 4).
    pub connections: usize,
    /// `max_ops_per_connection`: operations in flight on one lookup connection (default 64).
    pub max_ops_per_connection: usize,
}

impl fmt::Debug for LdapConnection {
    // The service password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConnection")
            .field("uris", &self.uris)
            .field("dn", &self.dn)
            .field("dnpass", &self.dnpass.as_ref().map(|_| "<hidden>"))
            .field("base", &self.base.source())
            .field("scope", &self.scope)
            .field("deref", &self.deref)
            .field("tls", &self.tls)
            .field("tls_ca_cert_file", &self.tls_ca_cert_file)
            .field("tls_require_cert", &self.tls_require_cert)
            .field("timeout", &self.timeout)
            .field("connections", &self.connections)
            .field("max_ops_per_connection", &self.max_ops_per_connection)
            .finish()
    }
}

/// One entry of an attribute map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrMap {
    /// `ldapAttribute: fieldName`: the attribute's value(s) into the field.
    Attr {
        /// The LDAP attribute (matched case-insensitively).
        attr: String,
        /// The field name.
        field: String,
    },
    /// `fieldName: "=template"`: the field from a template (`%{ldap:attr}` allowed).
    Template {
        /// The field name.
        field: String,
        /// The template.
        template: Template,
    },
}

impl AttrMap {
    /// The field this entry sets.
    pub fn field(&self) -> &str {
        match self {
            AttrMap::Attr { field, .. } | AttrMap::Template { field, .. } => field,
        }
    }

    /// The attributes this entry reads.
    pub fn attrs(&self) -> Vec<&str> {
        match self {
            AttrMap::Attr { attr, .. } => vec![attr.as_str()],
            AttrMap::Template { template, .. } => template.ldap_attrs().iter().map(String::as_str).collect(),
        }
    }
}

/// `driver: ldap` as a passdb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapPassdb {
    /// The connection settings.
    pub conn: LdapConnection,
    /// `auth_bind`: check passwords by binding as the user.
    pub auth_bind: bool,
    /// `auth_bind_userdn`: the user's DN as a template (values DN-escaped); without it the DN
    /// is found with `pass_filter`.
    pub auth_bind_userdn: Option<Template>,
    /// `auth_bind_connections`: bind connections, each one bind at a time (default 16).
    pub auth_bind_connections: usize,
    /// `pass_filter` (values RFC 4515-escaped).
    pub pass_filter: Template,
    /// `pass_attrs`.
    pub pass_attrs: Vec<AttrMap>,
    /// `scheme` (Dovecot's `default_pass_scheme`): stored passwords without `{SCHEME}`
    /// (default CRYPT).
    pub scheme: crate::scheme::Scheme,
}

/// `driver: ldap` as a userdb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUserdb {
    /// The connection settings.
    pub conn: LdapConnection,
    /// `user_filter` (values RFC 4515-escaped).
    pub user_filter: Template,
    /// `user_attrs`.
    pub user_attrs: Vec<AttrMap>,
    /// `iterate_filter`.
    pub iterate_filter: Template,
    /// `iterate_attrs`: must map an attribute to `user`.
    pub iterate_attrs: Vec<AttrMap>,
}

impl Validator<'_> {
    fn ldap_at(at: &[Seg], k: &str) -> Vec<Seg> {
        let mut p = at.to_vec();
        p.push(key(k));
        p
    }

    fn ldap_connection(&self, at: &[Seg], db: &raw::Db) -> Result<LdapConnection, ConfigError> {
        let here = |k: &str| Self::ldap_at(at, k);
        let uris: Vec<String> = match &db.uris {
            None => return Err(self.err(&here("driver"), "driver ldap needs `uris`, e.g. [ \"ldap://ldap1.example.org\", \"ldap://ldap2.example.org\" ]")),
            Some(serde_norway::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(serde_norway::Value::Sequence(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| self.err(&here("uris"), "list URIs as strings, e.g. [ \"ldap://127.0.0.1\" ]")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(self.err(&here("uris"), "list URIs, e.g. [ \"ldap://ldap1.example.org\", \"ldaps://ldap2.example.org\" ]")),
        };
        if uris.is_empty() {
            return Err(self.err(&here("uris"), "no URI; list at least one, e.g. [ \"ldap://127.0.0.1\" ]"));
        }
        for (i, uri) in uris.iter().enumerate() {
            let ok = ["ldap://", "ldaps://", "ldapi://"].iter().any(|s| uri.len() > s.len() && uri.to_ascii_lowercase().starts_with(s));
            if !ok {
                let mut p = here("uris");
                p.push(Seg::Index(i));
                return Err(
                    self.err(&p, format!("`{uri}` is not an LDAP URI; write ldap://host[:port], ldaps://host[:port] or ldapi://%2Frun%2Fslapd%2Fldapi"))
                );
            }
        }
        let dnpass = match (&db.dnpass, &db.dnpass_file) {
            (Some(_), Some(_)) => return Err(self.err(&here("dnpass_file"), "set either `dnpass` or `dnpass_file`, not both")),
            (Some(p), None) => Some(p.clone()),
            (None, Some(f)) => {
                let path = self.resolve(f);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(&here("dnpass_file"), format!("cannot read {}: {e}; the file holds the service password on its first line", path.display()))
                })?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            (None, None) => None,
        };
        if dnpass.is_some() && db.dn.is_none() {
            return Err(self.err(&here("dn"), "a service password without `dn`; set the service account's DN, e.g. cn=saslgate,dc=example,dc=org"));
        }
        let base =
            db.base.as_deref().ok_or_else(|| self.err(&here("driver"), "driver ldap needs `base`, where searches start, e.g. ou=people,dc=example,dc=org"))?;
        let base = self.template(&here("base"), base)?;
        let scope = match db.scope.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("subtree") => Scope::Subtree,
            Some("onelevel") | Some("one") => Scope::OneLevel,
            Some("base") => Scope::Base,
            Some(other) => return Err(self.err(&here("scope"), format!("`{other}` is not a scope; use base, onelevel or subtree"))),
        };
        let deref = match db.deref.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("never") => Deref::Never,
            Some("searching") => Deref::Searching,
            Some("finding") => Deref::Finding,
            Some("always") => Deref::Always,
            Some(other) => return Err(self.err(&here("deref"), format!("`{other}` is not a deref mode; use never, searching, finding or always"))),
        };
        let tls_require_cert = match db.tls_require_cert.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("demand") | Some("hard") => TlsRequireCert::Demand,
            Some("never") | Some("allow") | Some("try") => {
                tracing::warn!(setting = %super::setting_name(&here("tls_require_cert")), file = self.file, "the LDAP server's certificate is not checked: anyone on the path can read the passwords");
                TlsRequireCert::Never
            }
            Some(other) => {
                return Err(self.err(&here("tls_require_cert"), format!("`{other}` is not a mode; use demand (the default), hard, try, allow or never")))
            }
        };
        let tls_ca_cert_file = match &db.tls_ca_cert_file {
            None => None,
            Some(f) => {
                let path = self.resolve(f);
                if !path.is_file() {
                    return Err(self.err(
                        &here("tls_ca_cert_file"),
                        format!("{} does not exist; point it at the PEM file of the CA that signed the LDAP server's certificate", path.display()),
                    ));
                }
                Some(path)
            }
        };
        let timeout = match &db.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => match parse_duration(t) {
                Some(d) if !d.is_zero() && d <= Duration::from_secs(60) => d,
                _ => {
                    return Err(self
                        .err(&here("timeout"), format!("`{t}` is not a duration between 1ms and 60s; write e.g. 5s (Postfix gives up on a reply after 10s)")))
                }
            },
        };
        let count = |name: &str, value: Option<usize>, default: usize, max: usize| -> Result<usize, ConfigError> {
            match value {
                None => Ok(default),
                Some(n) if (1..=max).contains(&n) => Ok(n),
                Some(n) => Err(self.err(&here(name), format!("{n} is out of range; use 1 to {max}"))),
            }
        };
        Ok(LdapConnection {
            uris,
            dn: db.dn.clone(),
            dnpass,
            base,
            scope,
            deref,
            tls: db.tls.unwrap_or(false),
            tls_ca_cert_file,
            tls_require_cert,
            timeout,
            connections: count("connections", db.connections, DEFAULT_CONNECTIONS, 256)?,
            max_ops_per_connection: count("max_ops_per_connection", db.max_ops_per_connection, DEFAULT_MAX_OPS, 4096)?,
        })
    }

    fn ldap_attr_map(&self, at: &[Seg], name: &str, map: Option<&raw::Fields>) -> Result<Vec<AttrMap>, ConfigError> {
        let mut out = Vec::new();
        for (k, v) in map.into_iter().flatten() {
            let k = match k {
                serde_norway::Value::String(s) => s.clone(),
                other => serde_norway::to_string(other).unwrap_or_default().trim().to_owned(),
            };
            let mut p = Self::ldap_at(at, name);
            p.push(key(&k));
            let Some(value) = v.as_str() else {
                return Err(self.err(&p, "write the field name (e.g. `uid: user`) or `=template` (e.g. `home: \"=/var/mail/%{ldap:uid}\"`)"));
            };
            if k.is_empty() {
                return Err(self.err(&p, "an empty key"));
            }
            if let Some(template) = value.strip_prefix('=') {
                let template = Template::parse_ldap(template)
                    .map_err(|e| self.err(&p, format!("{e}; `%{{ldap:attr}}` is an attribute of the entry found, e.g. \"=/var/mail/%{{ldap:uid}}\"")))?;
                out.push(AttrMap::Template { field: k, template });
            } else {
                if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';' || b == b'.') {
                    return Err(self.err(&p, format!("`{k}` is not an LDAP attribute name")));
                }
                if value.is_empty() {
                    return Err(self.err(&p, "name the field this attribute goes into, e.g. `uidNumber: uid`"));
                }
                out.push(AttrMap::Attr { attr: k, field: value.to_owned() });
            }
        }
        Ok(out)
    }

    fn ldap_filter(&self, at: &[Seg], name: &str, value: Option<&str>, default: &str) -> Result<Template, ConfigError> {
        let text = value.unwrap_or(default);
        let p = Self::ldap_at(at, name);
        if !(text.starts_with('(') && text.ends_with(')')) {
            return Err(self.err(&p, format!("`{text}` is not an LDAP filter; write it in parentheses, e.g. {default}")));
        }
        self.template(&p, text)
    }

    pub(super) fn ldap_passdb(&self, at: &[Seg], db: &raw::Db) -> Result<LdapPassdb, ConfigError> {
        let conn = self.ldap_connection(at, db)?;
        let auth_bind = db.auth_bind.unwrap_or(false);
        let here = |k: &str| Self::ldap_at(at, k);
        let auth_bind_userdn = db.auth_bind_userdn.as_deref().map(|t| self.template(&here("auth_bind_userdn"), t)).transpose()?;
        if auth_bind_userdn.is_some() && !auth_bind {
            return Err(self.err(&here("auth_bind_userdn"), "only used with `auth_bind: true`; set it, or remove auth_bind_userdn"));
        }
        let pass_attrs = match &db.pass_attrs {
            Some(m) => self.ldap_attr_map(at, "pass_attrs", Some(m))?,
            None if auth_bind => Vec::new(),
            None => vec![AttrMap::Attr { attr: "uid".into(), field: "user".into() }, AttrMap::Attr { attr: "userPassword".into(), field: "password".into() }],
        };
        if !auth_bind && !pass_attrs.iter().any(|a| a.field() == "password") && !pass_attrs.iter().any(|a| a.field() == "nopassword") {
            return Err(self.err(
                &here("pass_attrs"),
                "lookup mode needs the password: map it, e.g. `userPassword: password` (or set `auth_bind: true` to check passwords with a bind)",
            ));
        }
        Ok(LdapPassdb {
            auth_bind_connections: match db.auth_bind_connections {
                None => DEFAULT_AUTH_BIND_CONNECTIONS,
                Some(n) if (1..=1024).contains(&n) => n,
                Some(n) => return Err(self.err(&here("auth_bind_connections"), format!("{n} is out of range; use 1 to 1024"))),
            },
            conn,
            auth_bind,
            auth_bind_userdn,
            pass_filter: self.ldap_filter(at, "pass_filter", db.pass_filter.as_deref(), DEFAULT_PASS_FILTER)?,
            pass_attrs,
            scheme: match &db.scheme {
                None => crate::scheme::Scheme::Crypt,
                Some(s) => s.parse().map_err(|_| self.err(&here("scheme"), format!("unknown password scheme `{s}`; `saslgate pw -l` lists them")))?,
            },
        })
    }

    pub(super) fn ldap_userdb(&self, at: &[Seg], db: &raw::Db) -> Result<LdapUserdb, ConfigError> {
        let conn = self.ldap_connection(at, db)?;
        let user_attrs = match &db.user_attrs {
            Some(m) => self.ldap_attr_map(at, "user_attrs", Some(m))?,
            None => vec![
                AttrMap::Attr { attr: "homeDirectory".into(), field: "home".into() },
                AttrMap::Attr { attr: "uidNumber".into(), field: "uid".into() },
                AttrMap::Attr { attr: "gidNumber".into(), field: "gid".into() },
            ],
        };
        let iterate_attrs = match &db.iterate_attrs {
            Some(m) => self.ldap_attr_map(at, "iterate_attrs", Some(m))?,
            None => vec![AttrMap::Attr { attr: "uid".into(), field: "user".into() }],
        };
        if !iterate_attrs.iter().any(|a| a.field() == "user") {
            return Err(self.err(&Self::ldap_at(at, "iterate_attrs"), "map the attribute that holds the user name to `user`, e.g. `uid: user`"));
        }
        Ok(LdapUserdb {
            conn,
            user_filter: self.ldap_filter(at, "user_filter", db.user_filter.as_deref(), DEFAULT_USER_FILTER)?,
            user_attrs,
            iterate_filter: self.ldap_filter(at, "iterate_filter", db.iterate_filter.as_deref(), DEFAULT_ITERATE_FILTER)?,
            iterate_attrs,
        })
    }
}
