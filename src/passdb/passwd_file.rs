//! The `passwd-file` passdb: users and stored passwords from a Dovecot passwd-file.
//!
//! The driver only finds entries (re-reading a changed file on the blocking pool); the chain
//! verifies the stored password (`auth::chain`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::auth::var::Template;
use crate::auth::{expand_for_path, expand_for_user};
use crate::blocking::Pool;
use crate::db::passwd_file::{Entry, Files, LoadError};
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
        let users = if let Some(users) = self.files.fresh(&path) {
            Ok(users)
        } else {
            let files = Arc::clone(&self.files);
            let p = path.clone();
            self.pool
                .run(move || files.users(&p))
                .await
                .map_err(|e| PassdbOutcome::InternalFailure(e.to_string()))?
        };
        match users {
            Ok(users) => Ok(users.get(&key).cloned()),
            // A per-domain file that does not exist means an unknown domain.
            Err(LoadError::Missing(_)) if self.path.uses(crate::auth::var::Var::Domain) => Ok(None),
            Err(e) => Err(PassdbOutcome::InternalFailure(e.to_string())),
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
            Ok(Some(entry)) => PassdbReply {
                outcome: PassdbOutcome::Ok,
                fields: entry.extra_fields.into(),
                stored_password: entry.password.map(zeroize::Zeroizing::new),
            },
            Ok(None) => PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => PassdbReply::bare(outcome),
        }
    }

    fn default_scheme(&self) -> Scheme {
        self.default_scheme
    }
}
