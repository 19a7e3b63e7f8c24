//! The serde mirror of the YAML file: every key an admin may write, nothing validated yet
//! beyond types. Unknown keys are errors (a typo must not be silently ignored).

use std::collections::BTreeMap;

/// Field templates in the order the admin wrote them (a YAML mapping keeps its order).
pub(crate) type Fields = serde_norway::Mapping;

use serde::Deserialize;

use super::rules::Rule;
use super::ListenerKind;

/// The static passdb's `password` as written (the password itself): `Debug` hides it.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct RawPassword(pub(crate) String);

impl std::fmt::Debug for RawPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Root {
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) extra_groups: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) listeners: Vec<Listener>,
    #[serde(default)]
    pub(crate) auth: Auth,
    #[serde(default)]
    pub(crate) services: BTreeMap<String, Service>,
    #[serde(default)]
    pub(crate) limits: Limits,
    #[serde(default)]
    pub(crate) pool: Pool,
    #[serde(default)]
    pub(crate) reactor: Reactor,
    #[serde(default)]
    pub(crate) log: Log,
    #[serde(default)]
    pub(crate) passdbs: Vec<Db>,
    #[serde(default)]
    pub(crate) userdbs: Vec<Db>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Listener {
    pub(crate) path: String,
    #[serde(rename = "type")]
    pub(crate) kind: Option<ListenerKind>,
    pub(crate) mode: Option<serde_norway::Value>,
    pub(crate) user: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) disable_plaintext_auth: Option<bool>,
    pub(crate) max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Auth {
    pub(crate) mechanisms: Option<Vec<String>>,
    pub(crate) failure_delay: Option<String>,
    pub(crate) username_format: Option<String>,
    pub(crate) anonymous_username: Option<String>,
    pub(crate) ssl_username_from_cert: Option<bool>,
    pub(crate) hostname: Option<String>,
    pub(crate) realms: Option<Vec<String>>,
    pub(crate) ssl_require_client_cert: Option<bool>,
    pub(crate) disable_plaintext_auth: Option<bool>,
    pub(crate) trusted_networks: Option<Vec<String>>,
    pub(crate) penalty_max: Option<String>,
    pub(crate) account_penalty: Option<bool>,
    pub(crate) cache: Option<Cache>,
    pub(crate) master_user_separator: Option<String>,
    pub(crate) username_chars: Option<String>,
    pub(crate) username_translation: Option<String>,
    pub(crate) default_realm: Option<String>,
    pub(crate) winbind_helper_path: Option<String>,
    pub(crate) winbind: Option<Winbind>,
}

/// `auth.winbind`: the `ntlm_auth` helpers behind NTLM and GSS-SPNEGO.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Winbind {
    pub(crate) args: Option<Vec<String>>,
    pub(crate) env: Option<BTreeMap<String, String>>,
    pub(crate) helpers: Option<usize>,
    pub(crate) timeout: Option<String>,
    pub(crate) busy_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cache {
    pub(crate) size: Option<usize>,
    pub(crate) ttl: Option<String>,
    pub(crate) negative_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Service {
    pub(crate) ssl_require_client_cert: Option<bool>,
    pub(crate) disable_plaintext_auth: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_requests_per_connection: Option<usize>,
    // Request-layer bounds: what one request may send, and requests in flight daemon-wide.
    pub(crate) max_password_length: Option<usize>,
    pub(crate) max_username_length: Option<usize>,
    pub(crate) max_requests: Option<usize>,
    pub(crate) max_request_bytes: Option<usize>,
    pub(crate) max_connections_per_uid: Option<usize>,
    pub(crate) handshake_timeout: Option<String>,
    pub(crate) shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Pool {
    pub(crate) threads: Option<usize>,
    pub(crate) queue: Option<usize>,
    pub(crate) nice: Option<i64>,
    pub(crate) scheduling: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reactor {
    pub(crate) threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Log {
    pub(crate) level: Option<String>,
    pub(crate) successes: Option<bool>,
}

/// A passdb or userdb block. Every driver's keys are here; which ones a driver takes is checked
/// during validation, so an error can say "`scheme` is not a setting of driver static".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Db {
    pub(crate) driver: String,
    pub(crate) path: Option<String>,
    pub(crate) scheme: Option<String>,
    pub(crate) username_format: Option<String>,
    pub(crate) fields: Option<Fields>,
    pub(crate) allow_all_users: Option<bool>,
    pub(crate) password: Option<RawPassword>,
    // driver pam (see PassdbDriver::Pam).
    pub(crate) service: Option<String>,
    pub(crate) failure_show_msg: Option<bool>,
    pub(crate) session: Option<bool>,
    pub(crate) setcred: Option<bool>,
    pub(crate) timeout: Option<String>,
    pub(crate) max_requests: Option<usize>,
    pub(crate) config_dir: Option<String>,
    // driver passwd (userdb; see UserdbDriver::Passwd).
    pub(crate) first_valid_uid: Option<u32>,
    pub(crate) last_valid_uid: Option<u32>,
    // driver ldap (see config::ldap), Dovecot's key names.
    pub(crate) uris: Option<serde_norway::Value>,
    pub(crate) dn: Option<String>,
    pub(crate) dnpass: Option<String>,
    pub(crate) dnpass_file: Option<String>,
    pub(crate) base: Option<String>,
    pub(crate) scope: Option<String>,
    pub(crate) deref: Option<String>,
    pub(crate) auth_bind: Option<bool>,
    pub(crate) auth_bind_userdn: Option<String>,
    pub(crate) pass_filter: Option<String>,
    pub(crate) pass_attrs: Option<Fields>,
    pub(crate) user_filter: Option<String>,
    pub(crate) user_attrs: Option<Fields>,
    pub(crate) iterate_filter: Option<String>,
    pub(crate) iterate_attrs: Option<Fields>,
    pub(crate) tls: Option<bool>,
    pub(crate) tls_ca_cert_file: Option<String>,
    pub(crate) tls_require_cert: Option<String>,
    pub(crate) connections: Option<usize>,
    pub(crate) auth_bind_connections: Option<usize>,
    pub(crate) max_ops_per_connection: Option<usize>,
    // Chain rules (passdbs; userdbs take skip, result_* and the field templates).
    pub(crate) name: Option<String>,
    pub(crate) mechanisms: Option<serde_norway::Value>,
    pub(crate) username_filter: Option<String>,
    pub(crate) skip: Option<String>,
    pub(crate) result_success: Option<Rule>,
    pub(crate) result_failure: Option<Rule>,
    pub(crate) result_internalfail: Option<Rule>,
    pub(crate) deny: Option<bool>,
    pub(crate) master: Option<bool>,
    pub(crate) pass: Option<bool>,
    pub(crate) override_fields: Option<Fields>,
    pub(crate) default_fields: Option<Fields>,
}
