//! The `passwd-file` userdb: uid, gid, home and `userdb_*` extra fields from a passwd-file.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Lookup, Userdb, UserdbOutcome};
use crate::blocking::Pool;
use crate::db::passwd_file::{self, Files};
use crate::request::var::{Template, Var};
use crate::request::{expand_for_path, expand_for_user, Fields};

/// The passwd-file userdb.
#[derive(Debug)]
pub struct PasswdFile {
    path: Template,
    username_format: Template,
    files: Arc<Files>,
    pool: Pool,
}

impl PasswdFile {
    /// A userdb over the file(s) named by `path`.
    pub fn new(path: Template, username_format: Template, files: Arc<Files>, pool: Pool) -> Self {
        PasswdFile { path, username_format, files, pool }
    }

    async fn users(&self, path: std::path::PathBuf) -> Result<Arc<passwd_file::Users>, String> {
        passwd_file::load(&self.files, path, &self.pool, self.path.uses(Var::Domain)).await
    }
}

/// A uid or gid given as a name, resolved through the system's user database (NSS: call it on
/// the blocking pool).
fn resolve_id_name(value: &str, group: bool) -> Option<String> {
    if group {
        nix::unistd::Group::from_name(value).ok().flatten().map(|g| g.gid.to_string())
    } else {
        nix::unistd::User::from_name(value).ok().flatten().map(|u| u.uid.to_string())
    }
}

#[async_trait]
impl Userdb for PasswdFile {
    fn driver(&self) -> &'static str {
        "passwd-file"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> UserdbOutcome {
        let path = std::path::PathBuf::from(expand_for_path(&self.path, lookup.user, lookup.info));
        let key = expand_for_user(&self.username_format, lookup.user, lookup.info);
        // The table is let go at once: a re-read file's old table is freed off the reactor
        // only when no lookup holds it.
        let entry = match self.users(path).await {
            Ok(users) => users.get(&key),
            Err(e) => return UserdbOutcome::InternalFailure(e),
        };
        let Some(entry) = entry else {
            return UserdbOutcome::NotFound;
        };
        let mut fields = Fields::new();
        for (value, key, group) in [(&entry.uid, "uid", false), (&entry.gid, "gid", true)] {
            let Some(value) = value else { continue };
            let id = if value.bytes().all(|b| b.is_ascii_digit()) {
                Some(value.clone())
            } else {
                // A name goes through NSS, which may ask LDAP or the network: not on the reactor.
                let (name, pool) = (value.clone(), &self.pool);
                match pool.run(move || resolve_id_name(&name, group)).await {
                    Ok(id) => id,
                    Err(e) => return UserdbOutcome::InternalFailure(e.to_string()),
                }
            };
            match id {
                Some(id) => fields.set(key, &id),
                None => return UserdbOutcome::InternalFailure(format!("invalid {key} {value}")),
            }
        }
        if let Some(home) = &entry.home {
            fields.set("home", home);
        }
        for (k, v) in &entry.extra_fields {
            if let Some(k) = k.strip_prefix("userdb_") {
                fields.set(k, v);
            }
        }
        UserdbOutcome::Found(fields)
    }

    async fn iterate(&self) -> Option<super::UserList> {
        if self.path.is_per_user() {
            return None; // per-user files cannot be listed
        }
        let path = std::path::PathBuf::from(self.path.source());
        Some(match self.users(path).await {
            Ok(u) => super::UserList::ready(u.names()),
            Err(e) => super::UserList::Failed(Some(e)),
        })
    }
}
