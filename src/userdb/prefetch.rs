//! The `prefetch` userdb: the `userdb_*` fields the passdb returned when the user logged in
//! (e.g. `userdb_uid=5000 userdb_home=/var/mail/alice`), so a REQUEST after a login needs no
//! second database lookup. On lookups by name (lmtp, doveadm user) there was no login, so it
//! finds nothing and the chain goes on to the next userdb, as in Dovecot.

use async_trait::async_trait;

use super::{Lookup, Userdb, UserdbOutcome};

/// The prefetch userdb.
#[derive(Debug, Default)]
pub struct Prefetch;

#[async_trait]
impl Userdb for Prefetch {
    fn driver(&self) -> &'static str {
        "prefetch"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> UserdbOutcome {
        match lookup.prefetch {
            Some(fields) if !fields.is_empty() => UserdbOutcome::Found(fields.clone()),
            _ => UserdbOutcome::NotFound,
        }
    }

    async fn iterate(&self) -> Option<super::UserList> {
        None
    }
}
