//! Password databases.
//!
//! A passdb answers with a [`PassdbOutcome`], not an error: a wrong password and an unreachable
//! server are both normal results, but they map to different replies (`FAIL` versus
//! `FAIL code=temp_fail`) and log levels. Drivers are built from config in [`build`], the one
//! place that knows every driver.

mod ldap;
mod pam;
mod passwd_file;
pub mod shadow;
mod static_;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{PassdbConfig, PassdbDriver};
use crate::db::Resources;
use crate::request::{Fields, RequestInfo};
use crate::scheme::Scheme;
use crate::secret::Secret;

pub use ldap::Ldap;
pub use pam::{Pam, PamSettings};
pub use passwd_file::PasswdFile;
pub use shadow::Shadow;
pub use static_::Static;

/// What a passdb found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassdbOutcome {
    /// The user exists and (for a verification) the password matched.
    Ok,
    /// The user exists and the password did not match.
    PasswordMismatch,
    /// No such user in this passdb.
    UserUnknown,
    /// The account is disabled.
    UserDisabled,
    /// The password has expired.
    PasswordExpired,
    /// The stored password uses a scheme we cannot verify.
    SchemeNotAvailable,
    /// The passdb could not answer (file unreadable, server down). Logged, never shown.
    InternalFailure(String),
}

/// A passdb's answer: the outcome, the extra fields it returned, and the stored password
/// (for drivers that store them; the chain verifies it). `Debug` hides the stored password.
#[derive(Clone, PartialEq, Eq)]
pub struct PassdbReply {
    /// The outcome.
    pub outcome: PassdbOutcome,
    /// Extra fields, in the order the passdb gave them.
    pub fields: Fields,
    /// The stored password (`{SCHEME}…` or in the driver's default scheme), wiped on drop.
    pub stored_password: Option<zeroize::Zeroizing<String>>,
}

impl std::fmt::Debug for PassdbReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassdbReply")
            .field("outcome", &self.outcome)
            .field("fields", &self.fields)
            .field("stored_password", &self.stored_password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl PassdbReply {
    /// A reply without fields.
    pub fn bare(outcome: PassdbOutcome) -> PassdbReply {
        PassdbReply { outcome, fields: Fields::new(), stored_password: None }
    }
}

/// One lookup: the (translated) user name and the request it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The user name after `username_format`.
    pub user: &'a str,
    /// The request.
    pub info: &'a RequestInfo,
}

/// A password database.
///
/// Drivers that store passwords (passwd-file, static, LDAP lookups) answer [`Passdb::lookup`]
/// with the stored password, and the chain verifies it or turns it into a credential, so
/// `nopassword`, `override_fields` and the rules apply the same way to every driver.
/// Verify-only drivers (PAM, LDAP bind) answer [`Passdb::verify_plain`] instead.
#[async_trait]
pub trait Passdb: Send + Sync + std::fmt::Debug {
    /// The driver name, for logs.
    fn driver(&self) -> &'static str;

    /// Looks the user up: fields, and the stored password when the driver has one.
    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply;

    /// [`Passdb::lookup`]'s answer when the driver has it at once (a passwd-file read and
    /// recently found unchanged, a static passdb), without a future: most logins are answered
    /// this way. `None` (the default): ask [`Passdb::lookup`].
    fn lookup_now(&self, lookup: Lookup<'_>) -> Option<PassdbReply> {
        let _ = lookup;
        None
    }

    /// Whether the driver checks plaintext passwords itself, in [`Passdb::verify_plain`]
    /// (PAM, LDAP). The chain asks only those, so the others cost no future.
    fn verifies_plain(&self) -> bool {
        false
    }

    /// Checks a plaintext password itself; `None` (the default) means "look up and let the
    /// chain verify". Asked only when [`Passdb::verifies_plain`] says so.
    async fn verify_plain(&self, lookup: Lookup<'_>, password: &Secret) -> Option<PassdbReply> {
        let _ = (lookup, password);
        None
    }

    /// The scheme of stored passwords without a `{SCHEME}` prefix.
    fn default_scheme(&self) -> Scheme {
        Scheme::Crypt
    }
}

/// Builds a passdb from its validated config.
pub fn build(config: &PassdbConfig, resources: &Resources) -> Arc<dyn Passdb> {
    match &config.driver {
        PassdbDriver::Static { password, fields } => Arc::new(Static::new(password.clone(), fields.clone())),
        PassdbDriver::PasswdFile { path, scheme, username_format } => {
            Arc::new(PasswdFile::new(path.clone(), *scheme, username_format.clone(), Arc::clone(&resources.files), resources.pool.clone()))
        }
        // Each PAM passdb has its own pool of PAM threads (never the hashing pool).
        PassdbDriver::Pam { service, failure_show_msg, session, setcred, timeout, max_requests, config_dir } => Arc::new(Pam::new(
            PamSettings { service: service.clone(), failure_show_msg: *failure_show_msg, session: *session, setcred: *setcred, config_dir: config_dir.clone() },
            crate::db::pam::PamPool::new(*max_requests, *timeout),
        )),
        // Each LDAP block has its own lookup (and bind) pool (see db::ldap).
        PassdbDriver::Ldap(settings) => Arc::new(Ldap::new((**settings).clone(), resources.memo.clone())),
        PassdbDriver::Shadow { path } => Arc::new(Shadow::new(path.clone(), resources.pool.clone())),
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn passdb_reply_never_prints_the_stored_password() {
        let reply = PassdbReply { outcome: PassdbOutcome::Ok, fields: Fields::new(), stored_password: Some(zeroize::Zeroizing::new("{PLAIN}hunter2".into())) };
        let shown = format!("{reply:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Ok"), "{shown}");
    }
}
