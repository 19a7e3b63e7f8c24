//! User databases: where a user's uid, gid, home and other mail settings come from.

mod ldap;
mod passwd;
mod passwd_file;
mod prefetch;
mod static_;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{UserdbConfig, UserdbDriver};
use crate::db::Resources;
use crate::request::{Fields, RequestInfo};

pub use ldap::Ldap;
pub use passwd::Passwd;
pub use passwd_file::PasswdFile;
pub use prefetch::Prefetch;
pub use static_::Static;

/// What a userdb found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserdbOutcome {
    /// The user exists; these are its fields (uid, gid, home, ...), in order.
    Found(Fields),
    /// No such user here.
    NotFound,
    /// The userdb could not answer. Logged, and a temporary failure for the peer.
    InternalFailure(String),
}

/// One userdb lookup.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The user name.
    pub user: &'a str,
    /// The request.
    pub info: &'a RequestInfo,
    /// Whether a passdb authenticated this user just before (REQUEST after AUTH), as opposed to
    /// a lookup by name (USER from lmtp or doveadm).
    pub authenticated: bool,
    /// The `userdb_*` fields the passdb returned at login (prefix removed), for `prefetch`.
    pub prefetch: Option<&'a Fields>,
}

/// A user database.
#[async_trait]
pub trait Userdb: Send + Sync + std::fmt::Debug {
    /// The driver name, for logs.
    fn driver(&self) -> &'static str;

    /// Looks a user up.
    async fn lookup(&self, lookup: Lookup<'_>) -> UserdbOutcome;

    /// Every user, for LIST; `None` when this userdb cannot iterate.
    async fn iterate(&self) -> Option<UserList>;

    /// Whether a lookup by name must first ask the passdbs whether the user exists (a static
    /// userdb answers for anyone, so without `allow_all_users` it checks, as Dovecot does).
    fn needs_passdb_check(&self) -> bool {
        false
    }
}

/// How many user names a streamed [`UserList`] buffers ahead of the reader.
pub const USER_LIST_BUFFER: usize = 64;

/// The users of one userdb, for LIST: a list already in memory (a passwd-file is parsed
/// whole anyway), or a bounded stream fed by a task as the reader takes names (LDAP). An
/// `Err` ends the list.
#[derive(Debug)]
pub enum UserList {
    /// Names in memory.
    Ready(std::vec::IntoIter<String>),
    /// Names as they come.
    Stream(tokio::sync::mpsc::Receiver<Result<String, String>>),
    /// The userdb failed before the first name.
    Failed(Option<String>),
}

impl UserList {
    /// A list in memory.
    pub fn ready(names: Vec<String>) -> UserList {
        UserList::Ready(names.into_iter())
    }

    /// The next name; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<String, String>> {
        match self {
            UserList::Ready(names) => names.next().map(Ok),
            UserList::Stream(rx) => rx.recv().await,
            UserList::Failed(why) => why.take().map(Err),
        }
    }
}

/// Builds a userdb from its validated config.
pub fn build(config: &UserdbConfig, resources: &Resources) -> Arc<dyn Userdb> {
    match &config.driver {
        UserdbDriver::PasswdFile { path, username_format } => {
            Arc::new(PasswdFile::new(path.clone(), username_format.clone(), Arc::clone(&resources.files), resources.pool.clone()))
        }
        UserdbDriver::Prefetch => Arc::new(Prefetch),
        UserdbDriver::Static { fields, allow_all_users } => Arc::new(Static::new(fields.clone(), *allow_all_users)),
        // Each LDAP block has its own pool (see db::ldap).
        UserdbDriver::Ldap(settings) => Arc::new(Ldap::new((**settings).clone())),
        // NSS may go to the network: every call on the blocking pool.
        UserdbDriver::Passwd { first_valid_uid, last_valid_uid } => Arc::new(Passwd::new(resources.pool.clone(), *first_valid_uid, *last_valid_uid)),
    }
}
