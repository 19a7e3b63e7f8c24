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
        let nopassword = entry.extra_fields.iter().any(|(k, _)| k == "nopassword");
        let outcome = match entry.password.as_deref() {
            // `nopassword`: any password is accepted (EXTERNAL verifies an empty one).
            _ if nopassword => PassdbOutcome::Ok,
            // No password field, or an empty one: nobody can log in with a password.
            None | Some("") => {
                tracing::info!(user = lookup.user, "passwd-file: the user has no password");
                PassdbOutcome::PasswordMismatch
            }
            Some(stored) => verify(stored, self.default_scheme, password, lookup.user, &self.pool).await,
        };
        PassdbReply::with_fields(outcome, entry.extra_fields.into())
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        match self.entry(lookup).await {
            Ok(Some(entry)) => PassdbReply::with_fields(PassdbOutcome::Ok, entry.extra_fields.into()),
            Ok(None) => PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => PassdbReply::bare(outcome),
        }
    }

    async fn lookup_credentials(&self, lookup: Lookup<'_>, scheme: Scheme) -> PassdbReply {
        let entry = match self.entry(lookup).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return PassdbReply::bare(PassdbOutcome::UserUnknown),
            Err(outcome) => return PassdbReply::bare(outcome),
        };
        let stored = entry.password.as_deref().unwrap_or_default();
        let (outcome, credential) = credential(stored, self.default_scheme, scheme, lookup.user, &self.pool).await;
        PassdbReply { outcome, fields: entry.extra_fields.into(), credential }
    }
}

/// The stored password as a credential in `wanted`: decoded when it is stored in that scheme
/// (or an alias), generated when it is stored as plaintext, else `SchemeNotAvailable`.
pub(crate) async fn credential(stored: &str, default: Scheme, wanted: Scheme, user: &str, pool: &Pool) -> (PassdbOutcome, Option<Secret>) {
    let not_available = (PassdbOutcome::SchemeNotAvailable, None);
    if stored.is_empty() {
        return not_available;
    }
    let stored = match StoredPassword::parse(stored, default) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user, "stored password: {e}");
            return not_available;
        }
    };
    if stored.scheme() == wanted || stored.scheme().is_alias_of(wanted) {
        return match stored.decoded() {
            Ok(raw) => (PassdbOutcome::Ok, Some(Secret::new(raw.to_vec()))),
            Err(e) => {
                tracing::error!(user, "stored {} credential: {e}", wanted.as_str());
                not_available
            }
        };
    }
    // PLAIN-TRUNC keeps only a prefix of the password: it cannot be converted.
    if !stored.scheme().is_plaintext() || stored.scheme() == Scheme::PlainTrunc {
        tracing::info!(user, "{} credentials requested, but the password is stored as {}", wanted.as_str(), stored.scheme().as_str());
        return not_available;
    }
    let Ok(plain) = stored.decoded() else {
        return not_available;
    };
    let user = user.to_owned();
    let convert = move || -> Option<Secret> {
        let text = crate::scheme::generate(wanted, &plain, &user, None).ok()?;
        let raw = StoredPassword::new(wanted, None, &text).decoded().ok()?;
        Some(Secret::new(raw.to_vec()))
    };
    let converted = if wanted.is_expensive() { pool.run(convert).await.ok().flatten() } else { convert() };
    match converted {
        Some(c) => (PassdbOutcome::Ok, Some(c)),
        None => not_available,
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
