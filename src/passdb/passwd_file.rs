//! The `passwd-file` passdb: users and stored passwords from a Dovecot passwd-file.
//!
//! Cheap schemes are verified inline; expensive ones (crypt family, BLF-CRYPT, ARGON2, PBKDF2)
//! and re-reading a changed file go to the blocking pool.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::auth::var::Template;
use crate::auth::{expand_for_path, expand_for_user};
use crate::blocking::Pool;
use crate::db::passwd_file::{Entry, Files, LoadError};
use crate::scheme::{Scheme, StoredPassword};
use crate::secret::Secret;

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
        let users = if self.files.is_fresh(&path) {
            self.files.users(&path)
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

    async fn verify_plain(&self, lookup: Lookup<'_>, password: &Secret) -> PassdbReply {
        let entry = match self.entry(lookup).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => return PassdbReply::bare(outcome),
        };
        let outcome = match entry.password.as_deref() {
            // No password field, or an empty one: nobody can log in with a password.
            None | Some("") => {
                tracing::info!(user = lookup.user, "passwd-file: the user has no password");
                PassdbOutcome::PasswordMismatch
            }
            Some(stored) => verify(stored, self.default_scheme, password, lookup.user, &self.pool).await,
        };
        PassdbReply { outcome, fields: entry.extra_fields.into() }
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        match self.entry(lookup).await {
            Ok(Some(entry)) => PassdbReply { outcome: PassdbOutcome::Ok, fields: entry.extra_fields.into() },
            Ok(None) => PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => PassdbReply::bare(outcome),
        }
    }
}

/// Verifies `password` against a stored value, on the pool when the scheme is expensive.
pub(crate) async fn verify(stored: &str, default: Scheme, password: &Secret, user: &str, pool: &Pool) -> PassdbOutcome {
    let stored = match StoredPassword::parse(stored, default) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user, "stored password: {e}");
            return PassdbOutcome::SchemeNotAvailable;
        }
    };
    let result = if stored.is_expensive() {
        let (password, user) = (password.clone(), user.to_owned());
        match pool.run(move || stored.verify(password.expose(), &user)).await {
            Ok(r) => r,
            Err(e) => return PassdbOutcome::InternalFailure(e.to_string()),
        }
    } else {
        stored.verify(password.expose(), user)
    };
    match result {
        Ok(true) => PassdbOutcome::Ok,
        Ok(false) => PassdbOutcome::PasswordMismatch,
        Err(e) => {
            tracing::error!(user, "invalid stored password: {e}");
            PassdbOutcome::PasswordMismatch
        }
    }
}
