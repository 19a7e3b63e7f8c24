//! Password databases.
//!
//! A passdb answers with a [`PassdbOutcome`], not an error: a wrong password and an unreachable
//! server are both normal results, but they map to different replies (`FAIL` versus
//! `FAIL code=temp_fail`) and log levels. Drivers are built from config in [`build`], the one
//! place that knows every driver.

mod passwd_file;

use std::sync::Arc;

use async_trait::async_trait;

use crate::auth::{Fields, RequestInfo};
use crate::blocking::Pool;
use crate::config::PassdbConfig;
use crate::db::passwd_file::Files;
use crate::scheme::Scheme;
use crate::secret::Secret;

pub use passwd_file::PasswdFile;

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

/// A passdb's answer: the outcome, the extra fields it returned, and for a credentials lookup
/// the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassdbReply {
    /// The outcome.
    pub outcome: PassdbOutcome,
    /// Extra fields, in the order the passdb gave them.
    pub fields: Fields,
    /// The credential, decoded to raw bytes, when a credentials lookup succeeded.
    pub credential: Option<Secret>,
}

impl PassdbReply {
    /// A reply without fields.
    pub fn bare(outcome: PassdbOutcome) -> PassdbReply {
        PassdbReply { outcome, fields: Fields::new(), credential: None }
    }

    /// A reply with fields and no credential.
    pub fn with_fields(outcome: PassdbOutcome, fields: Fields) -> PassdbReply {
        PassdbReply { outcome, fields, credential: None }
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
#[async_trait]
pub trait Passdb: Send + Sync + std::fmt::Debug {
    /// The driver name, for logs.
    fn driver(&self) -> &'static str;

    /// Checks a plaintext password.
    async fn verify_plain(&self, lookup: Lookup<'_>, password: &Secret) -> PassdbReply;

    /// Looks the user up without checking a password (master `PASS`, static userdb checks).
    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply;

    /// Fetches the user's credential in `scheme` for a challenge-response mechanism. A stored
    /// plaintext password is converted; any other scheme gives `SchemeNotAvailable`.
    async fn lookup_credentials(&self, lookup: Lookup<'_>, scheme: Scheme) -> PassdbReply;

    /// Whether this driver can ever answer `lookup_credentials` (PAM and LDAP bind cannot).
    fn can_lookup_credentials(&self) -> bool {
        true
    }
}

/// Builds a passdb from its validated config.
/// `files` is the daemon's one cache of parsed passwd-files, shared with the userdbs.
pub fn build(config: &PassdbConfig, pool: &Pool, files: &Arc<Files>) -> Arc<dyn Passdb> {
    match config {
        PassdbConfig::PasswdFile { path, scheme, username_format } => Arc::new(PasswdFile::new(
            path.clone(),
            *scheme,
            username_format.clone(),
            Arc::clone(files),
            pool.clone(),
        )),
    }
}
