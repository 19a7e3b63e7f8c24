//! Code shared by the drivers: parsers and caches a passdb and a userdb of the same kind both
//! use (passwd-file), the transport to helper processes that mechanisms talk to, and
//! [`Resources`], the context every backend is built with.

pub mod helper;
pub mod ldap;
pub mod pam;
pub mod passwd_file;
pub mod winbind;

use std::sync::Arc;

use crate::blocking::Pool;

/// What the backends of one daemon share, built once and handed to every driver's builder:
/// the blocking pool for expensive work and the cache of parsed passwd-files (one parse serves
/// a passdb and a userdb over the same file). Later backends add theirs here (a PAM pool, an
/// LDAP connection pool), instead of one more argument per driver.
#[derive(Debug, Clone)]
pub struct Resources {
    /// The bounded pool for hashing, file parsing and NSS look-ups.
    pub pool: Pool,
    /// Parsed passwd-files, by path.
    pub files: Arc<passwd_file::Files>,
}

impl Resources {
    /// Fresh resources over this pool.
    pub fn new(pool: Pool) -> Resources {
        Resources { pool, files: Arc::new(passwd_file::Files::default()) }
    }
}
