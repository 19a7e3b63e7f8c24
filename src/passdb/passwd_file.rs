//! The `passwd-file` passdb: users and stored passwords from a Dovecot passwd-file.
//!
//! The driver only finds entries (the file is read and re-read on the blocking pool, see
//! `db::passwd_file`); the chain verifies the stored password (`auth::chain`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::blocking::Pool;
use crate::db::passwd_file::{self, Files};
use crate::request::var::{Template, Var};
use crate::request::{expand_for_path, expand_for_user};
use crate::scheme::Scheme;

/// The passwd-file passdb.
#[derive(Debug)]
pub struct PasswdFile {
    path: Template,
    /// The path, when it has no `%variables`.
    fixed_path: Option<std::path::PathBuf>,
    default_scheme: Scheme,
    username_format: Template,
    /// `username_format` is `%u`: the key is the user name as it is.
    plain_key: bool,
    files: Arc<Files>,
    pool: Pool,
}

impl PasswdFile {
    /// A passdb over the file(s) named by `path`.
    pub fn new(path: Template, default_scheme: Scheme, username_format: Template, files: Arc<Files>, pool: Pool) -> Self {
        let fixed_path = (!path.source().contains('%')).then(|| std::path::PathBuf::from(path.source()));
        let plain_key = username_format.source() == "%u";
        PasswdFile { path, fixed_path, default_scheme, username_format, plain_key, files, pool }
    }

    /// The stored password and extra fields of the request's user, if the file has them.
    async fn entry(&self, lookup: Lookup<'_>) -> Result<Option<passwd_file::PassdbPart>, PassdbOutcome> {
        // A path without `%` is itself; only a path with variables is expanded per request.
        let expanded;
        let path = match &self.fixed_path {
            Some(path) => path.as_path(),
            None => {
                expanded = std::path::PathBuf::from(expand_for_path(&self.path, lookup.user, lookup.info));
                expanded.as_path()
            }
        };
        // The usual `username_format: %u` is the user name itself.
        let key =
            if self.plain_key { std::borrow::Cow::Borrowed(lookup.user) } else { expand_for_user(&self.username_format, lookup.user, lookup.info).into() };
        // A per-domain file that does not exist means an unknown domain.
        let missing_is_empty = self.path.uses(Var::Domain);
        // The usual case, a table in use and recently found unchanged, is answered without
        // the loader's future (boxed: it is large, and only a first read or a change needs it).
        let loaded = match passwd_file::fresh(&self.files, path) {
            Some(users) => Ok(users),
            None => Box::pin(passwd_file::load(&self.files, path, &self.pool, missing_is_empty)).await,
        };
        match loaded {
            Ok(users) => Ok(users.get_passdb(&key)),
            Err(e) => Err(PassdbOutcome::InternalFailure(e)),
        }
    }
}

#[async_trait]
impl Passdb for PasswdFile {
    fn driver(&self) -> &'static str {
        "passwd-file"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        match self.entry(lookup).await {
            Ok(Some((password, extra_fields))) => {
                PassdbReply { outcome: PassdbOutcome::Ok, fields: extra_fields.into(), stored_password: password.map(zeroize::Zeroizing::new) }
            }
            Ok(None) => PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => PassdbReply::bare(outcome),
        }
    }

    fn default_scheme(&self) -> Scheme {
        self.default_scheme
    }
}
