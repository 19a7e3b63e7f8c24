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
    /// The auth cache, for password checks a driver makes itself (an LDAP bind); `None` when
    /// `auth.cache` is off.
    pub memo: Option<Arc<dyn CheckMemo>>,
}

/// The inputs of one password check a driver makes itself (an LDAP `auth_bind`): which
/// driver instance (`scope`), the user, what the password was checked against (the bind DN) and
/// the password. `Debug` hides the password.
#[derive(Clone, Copy)]
pub struct MemoKey<'a> {
    /// The driver instance (unique per daemon, see [`memo_scope`]).
    pub scope: u64,
    /// The user name the passdb was asked about (flushes go by it).
    pub user: &'a str,
    /// What the password was checked against (the bind DN).
    pub against: &'a str,
    /// The password tried.
    pub password: &'a [u8],
}

impl std::fmt::Debug for MemoKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoKey").field("scope", &self.scope).field("user", &self.user).field("against", &self.against).field("password", &"<hidden>").finish()
    }
}

/// The auth cache as the drivers see it (implemented in `auth::cache`, which the drivers never
/// import): remembered outcomes of password checks, with the cache's TTLs for successes and
/// failures. `true` is a right password, `false` a wrong one; temporary failures are never kept.
pub trait CheckMemo: Send + Sync + std::fmt::Debug {
    /// A remembered, still fresh outcome for exactly these inputs.
    fn get(&self, key: &MemoKey<'_>) -> Option<bool>;
    /// Remembers an outcome.
    fn put(&self, key: &MemoKey<'_>, ok: bool);
}

/// A fresh scope for [`MemoKey`]: one per driver instance, so two passdbs never share entries.
pub fn memo_scope() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Resources {
    /// Fresh resources over this pool.
    pub fn new(pool: Pool) -> Resources {
        Resources { pool, files: Arc::new(passwd_file::Files::default()), memo: None }
    }

    /// The same resources with the auth cache reachable by the drivers.
    pub fn with_memo(mut self, memo: Option<Arc<dyn CheckMemo>>) -> Resources {
        self.memo = memo;
        self
    }
}
