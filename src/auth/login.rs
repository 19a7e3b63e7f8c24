//! Logins that a mail process may still claim: the link between a login process's AUTH and the
//! master's REQUEST.
//!
//! A login-type client connection registers its CPID with a random cookie. When one of its
//! AUTHs succeeds, the whole request ([`FinishedLogin`]: user, request info, prefetch fields,
//! mechanism) waits here for the master's `REQUEST`, which must name the CPID, the request id
//! and the cookie (compared in constant time), and whose session pid, when given, must be the
//! peer's. A claim is one-shot. Everything is bounded: at most one entry per request slot of a
//! connection, dropped when claimed, cancelled, timed out or when the connection closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq as _;

use crate::request::{Fields, RequestInfo};

/// A live login-type client connection, as the master side sees it: its cookie and the logins
/// it finished that a mail process may still claim with REQUEST. `Debug` hides the cookie.
pub struct LoginConnection {
    cookie: [u8; 16],
    // A std Mutex: every critical section is one map operation or a bounded sweep.
    finished: Mutex<HashMap<u32, FinishedLogin>>,
}

/// A successful login waiting for REQUEST: the whole request, so userdb templates expand on
/// REQUEST exactly as they would have during the AUTH (`%s`, `%r`, `%{session}` …).
#[derive(Debug, Clone)]
pub(crate) struct FinishedLogin {
    pub(crate) user: String,
    pub(crate) info: RequestInfo,
    /// The passdb's `userdb_*` fields, for a `prefetch` userdb.
    pub(crate) prefetch: Fields,
    at: Instant,
}

impl LoginConnection {
    /// Forgets a finished login (CANCEL of its id).
    pub fn forget(&self, id: u32) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, FinishedLogin>> {
        self.finished.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a CPID could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("CPID {0} belongs to a live connection")]
pub struct CpidInUse(pub u32);

/// Every live login connection, by CPID.
#[derive(Debug)]
pub(crate) struct Logins {
    /// How long a finished login waits for its REQUEST.
    ttl: Duration,
    /// Finished logins kept per connection at most.
    per_connection: usize,
    // A std Mutex: held only to insert, remove or clone an Arc.
    by_cpid: Mutex<HashMap<u32, Arc<LoginConnection>>>,
}

impl Logins {
    pub(crate) fn new(ttl: Duration, per_connection: usize) -> Logins {
        Logins { ttl, per_connection, by_cpid: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<LoginConnection>>> {
        self.by_cpid.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a login connection's CPID with its cookie.
    pub(crate) fn register(&self, cpid: u32, cookie: [u8; 16]) -> Result<Arc<LoginConnection>, CpidInUse> {
        let mut by_cpid = self.lock();
        if by_cpid.contains_key(&cpid) {
            return Err(CpidInUse(cpid));
        }
        let entry = Arc::new(LoginConnection { cookie, finished: Mutex::new(HashMap::new()) });
        by_cpid.insert(cpid, Arc::clone(&entry));
        Ok(entry)
    }

    /// Drops a closed connection's registration (and so its unclaimed logins).
    pub(crate) fn unregister(&self, cpid: u32, entry: &Arc<LoginConnection>) {
        let mut by_cpid = self.lock();
        if by_cpid.get(&cpid).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            by_cpid.remove(&cpid);
        }
    }

    /// Keeps a successful login for its REQUEST (bounded per connection; stale ones go first).
    pub(crate) fn finish(&self, conn: &LoginConnection, id: u32, user: String, info: RequestInfo, prefetch: Fields) {
        let mut finished = conn.lock();
        finished.retain(|_, f| f.at.elapsed() < self.ttl);
        if finished.len() < self.per_connection {
            finished.insert(id, FinishedLogin { user, info, prefetch, at: Instant::now() });
        }
    }

    /// Takes a finished login for a REQUEST. The cookie and the session pid are checked
    /// *before* the login is taken, so a REQUEST with a wrong cookie cannot destroy the login
    /// that the right REQUEST will claim.
    pub(crate) fn claim(
        &self,
        client_pid: u32,
        client_id: u32,
        cookie: Option<[u8; 16]>,
        session_pid: Option<u32>,
        peer_pid: Option<i32>,
    ) -> Option<FinishedLogin> {
        let conn = self.lock().get(&client_pid).cloned()?;
        let Some(cookie) = cookie else {
            tracing::warn!(client_pid, "REQUEST without a cookie");
            return None;
        };
        if !bool::from(conn.cookie.ct_eq(&cookie)) {
            tracing::warn!(client_pid, "REQUEST with a wrong cookie");
            return None;
        }
        if let (Some(session_pid), Some(peer)) = (session_pid, peer_pid) {
            if i64::from(session_pid) != i64::from(peer) {
                tracing::warn!(session_pid, peer, "REQUEST session pid does not match the peer's credentials");
                return None;
            }
        }
        let finished = conn.lock().remove(&client_id)?;
        (finished.at.elapsed() < self.ttl.max(Duration::from_secs(1))).then_some(finished)
    }
}

impl std::fmt::Debug for LoginConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginConnection").field("cookie", &"<hidden>").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_cookie_does_not_destroy_the_login() {
        let logins = Logins::new(Duration::from_secs(150), 4);
        let conn = logins.register(7, [1; 16]).unwrap();
        assert!(matches!(logins.register(7, [2; 16]), Err(CpidInUse(7))));
        logins.finish(&conn, 3, "alice".into(), RequestInfo::default(), Fields::new());
        assert!(logins.claim(7, 3, Some([9; 16]), None, None).is_none());
        assert!(logins.claim(7, 3, None, None, None).is_none());
        assert!(logins.claim(7, 3, Some([1; 16]), Some(5), Some(6)).is_none(), "session pid must be the peer's");
        let claimed = logins.claim(7, 3, Some([1; 16]), Some(6), Some(6)).expect("the right REQUEST still claims it");
        assert_eq!(claimed.user, "alice");
        assert!(logins.claim(7, 3, Some([1; 16]), None, None).is_none(), "one-shot");
        logins.unregister(7, &conn);
        assert!(logins.register(7, [2; 16]).is_ok());
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn login_connection_never_prints_the_cookie() {
        let logins = Logins::new(Duration::from_secs(60), 10);
        let conn = logins.register(7, [0xab; 16]).unwrap();
        let shown = format!("{conn:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("abab"), "{shown}");
    }
}
