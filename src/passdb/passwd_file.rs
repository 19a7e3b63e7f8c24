//! The `passwd-file` passdb: users and stored passwords from a Dovecot passwd-file.
//!
//! The driver only finds entries (the file is read and re-read on the blocking pool, see
//! `db::passwd_file`); the chain verifies the stored password (`auth::chain`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::blocking::Pool;
use crate::db::passwd_file::{self, Entry, Files};
use crate::request::var::{Template, Var};
use crate::request::{expand_for_path, expand_for_user};
use crate::scheme::Scheme;

/// The passwd-file passdb.
#[derive(Debug)]
pub struct PasswdFile {
    path: Template,
    default_scheme: Scheme,
    username_format: Template,
    files: Arc<Files>,
    pool: Pool,
}

impl PasswdFile {
    /// A passdb over the file(s) named by `path`.
    pub fn new(path: Template, default_scheme: Scheme, username_format: Template, files: Arc<Files>, pool: Pool) -> Self {
        PasswdFile { path, default_scheme, username_format, files, pool }
    }

    async fn entry(&self, lookup: Lookup<'_>) -> Result<Option<Entry>, PassdbOutcome> {
        let path = std::path::PathBuf::from(expand_for_path(&self.path, lookup.user, lookup.info));
        let key = expand_for_user(&self.username_format, lookup.user, lookup.info);
        // A per-domain file that does not exist means an unknown domain.
        let missing_is_empty = self.path.uses(Var::Domain);
        match passwd_file::load(&self.files, path, &self.pool, missing_is_empty).await {
            Ok(users) => Ok(users.get(&key)),
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
            Ok(Some(entry)) => {
                PassdbReply { outcome: PassdbOutcome::Ok, fields: entry.extra_fields.into(), stored_password: entry.password.map(zeroize::Zeroizing::new) }
            }
            Ok(None) => PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => PassdbReply::bare(outcome),
        }
    }

    fn default_scheme(&self) -> Scheme {
        self.default_scheme
    }
}
