//! The `static` userdb: the same field templates for every user (`uid`, `gid`,
//! `home: /var/mail/%d/%n`).

use async_trait::async_trait;

use super::{Lookup, Userdb, UserdbOutcome};
use crate::request::expand_fields;
use crate::request::var::Template;

/// The static userdb.
#[derive(Debug)]
pub struct Static {
    fields: Vec<(String, Template)>,
    allow_all_users: bool,
}

impl Static {
    /// A userdb that answers every lookup with `fields`, expanded for the user.
    pub fn new(fields: Vec<(String, Template)>, allow_all_users: bool) -> Self {
        Static { fields, allow_all_users }
    }
}

#[async_trait]
impl Userdb for Static {
    fn driver(&self) -> &'static str {
        "static"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> UserdbOutcome {
        UserdbOutcome::Found(expand_fields(&self.fields, lookup.user, lookup.info))
    }

    async fn iterate(&self) -> Option<super::UserList> {
        None
    }

    fn needs_passdb_check(&self) -> bool {
        !self.allow_all_users
    }
}
