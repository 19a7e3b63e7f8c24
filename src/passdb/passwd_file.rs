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

    /// The file of the request's user: a path without `%` is itself; only a path with
    /// variables is expanded per request.
    fn path(&self, lookup: Lookup<'_>) -> std::borrow::Cow<'_, std::path::Path> {
        match &self.fixed_path {
            Some(path) => path.as_path().into(),
            None => std::path::PathBuf::from(expand_for_path(&self.path, lookup.user, lookup.info)).into(),
        }
    }

    /// The reply for the request's user from the file's users.
    fn reply(&self, users: &passwd_file::Users, lookup: Lookup<'_>) -> PassdbReply {
        // The usual `username_format: %u` is the user name itself.
        let found =
            if self.plain_key { users.get_passdb(lookup.user) } else { users.get_passdb(&expand_for_user(&self.username_format, lookup.user, lookup.info)) };
        match found {
            Some((password, extra_fields)) => {
                PassdbReply { outcome: PassdbOutcome::Ok, fields: extra_fields.into(), stored_password: password.map(zeroize::Zeroizing::new) }
            }
            None => PassdbReply::bare(PassdbOutcome::UserUnknown),
        }
    }
}

#[async_trait]
impl Passdb for PasswdFile {
    fn driver(&self) -> &'static str {
        "passwd-file"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        // A per-domain file that does not exist means an unknown domain.
        let missing_is_empty = self.path.uses(Var::Domain);
        match passwd_file::load(&self.files, self.path(lookup), &self.pool, missing_is_empty).await {
            Ok(users) => self.reply(&users, lookup),
            Err(e) => PassdbReply::bare(PassdbOutcome::InternalFailure(e)),
        }
    }

    /// A file already read and found unchanged within `db::passwd_file::RECHECK` answers at
    /// once; anything else (a first read, a change to look for) goes through `lookup`.
    fn lookup_now(&self, lookup: Lookup<'_>) -> Option<PassdbReply> {
        let users = passwd_file::fresh(&self.files, &self.path(lookup))?;
        Some(self.reply(&users, lookup))
    }

    fn default_scheme(&self) -> Scheme {
        self.default_scheme
    }
}
