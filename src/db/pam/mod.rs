//! PAM: the bounded pool PAM transactions run in, and the mapping of PAM's answers to
//! Dovecot's passdb results.
//!
//! PAM modules block (they read files, ask LDAP, fork helpers) and may hang. So every
//! transaction runs on a thread of its own: never on the async reactor, and never on
//! [`crate::blocking::Pool`], whose few threads hash passwords for everyone else.
//!
//! The pool has `max_requests` slots. A call takes a slot, starts a thread holding it and
//! waits for its answer at most `timeout`. A call past its timeout answers a temporary failure
//! at once, but its thread keeps the slot until PAM really returns: hung modules can hold at
//! most `max_requests` threads, never more. A call that finds every slot taken waits for one
//! at most [`PamPool::DEFAULT_SLOT_WAIT`] (or the timeout, when shorter), then answers a
//! temporary failure: a short burst of logins queues, while a pool full of hung calls turns
//! new logins away quickly instead of letting them pile up for the whole timeout.

mod ffi;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use crate::secret::Secret;

use ffi::Stage;

/// One PAM authentication.
#[derive(Debug, Clone)]
pub struct PamRequest {
    /// The PAM service name (the file under the config folder).
    pub service: String,
    /// The user name given to `pam_start`.
    pub user: String,
    /// The password the conversation answers with.
    pub password: Secret,
    /// The client's address, for `PAM_RHOST`.
    pub rhost: Option<String>,
    /// Open and close a PAM session after the account check.
    pub session: bool,
    /// Establish (and then delete) credentials with `pam_setcred`.
    pub setcred: bool,
    /// Read the service file from this folder instead of /etc/pam.d (`pam_start_confdir`).
    pub config_dir: Option<PathBuf>,
}

/// PAM's answer, as a passdb result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamOutcome {
    /// Authenticated, and the account (and session, when asked) accepted.
    Ok,
    /// `PAM_USER_UNKNOWN`.
    UserUnknown,
    /// `PAM_AUTH_ERR` and every other refusal of `pam_authenticate`.
    PasswordMismatch,
    /// The password was right but the account was refused (`pam_acct_mgmt`: `PAM_ACCT_EXPIRED`,
    /// `PAM_PERM_DENIED`, …; or `pam_setcred`/the session refused it).
    UserDisabled,
    /// `PAM_NEW_AUTHTOK_REQD` or `PAM_AUTHTOK_EXPIRED`: the password must be changed first.
    PasswordExpired,
    /// PAM could not answer: a timeout, a full pool, `PAM_AUTHINFO_UNAVAIL`, `PAM_SYSTEM_ERR` (except from `pam_authenticate`),
    /// a module that failed to load… The reason is for the log.
    TempFail(String),
}

/// A finished PAM call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamReply {
    /// The result.
    pub outcome: PamOutcome,
    /// What the modules said (`PAM_ERROR_MSG`/`PAM_TEXT_INFO`, else the last password prompt,
    /// as Dovecot's `failure_show_msg` shows), for a failure's `reason`. Never the password.
    pub message: Option<String>,
    /// `PAM_USER` after a success, when a module changed it.
    pub user: Option<String>,
    /// For the log: the PAM call that decided and PAM's text for its status.
    pub detail: String,
}

impl PamReply {
    fn temp_fail(why: String) -> PamReply {
        PamReply { outcome: PamOutcome::TempFail(why.clone()), message: None, user: None, detail: why }
    }
}

/// The bounded set of threads PAM transactions run on. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct PamPool {
    slots: Arc<Semaphore>,
    max_requests: usize,
    timeout: Duration,
    slot_wait: Duration,
    overdue: Arc<AtomicUsize>,
}

impl PamPool {
    /// How long a call waits for a free slot by default.
    pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(2);

    /// A pool of `max_requests` (at least 1) concurrent transactions, each answered within
    /// `timeout`.
    pub fn new(max_requests: usize, timeout: Duration) -> PamPool {
        let max_requests = max_requests.max(1);
        PamPool {
            slots: Arc::new(Semaphore::new(max_requests)),
            max_requests,
            timeout,
            slot_wait: Self::DEFAULT_SLOT_WAIT.min(timeout),
            overdue: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sets how long a call waits for a free slot before it answers a temporary failure.
    pub fn with_slot_wait(mut self, wait: Duration) -> PamPool {
        self.slot_wait = wait;
        self
    }

    /// The number of slots.
    pub fn max_requests(&self) -> usize {
        self.max_requests
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Transactions whose threads are running now, answered or not.
    pub fn busy(&self) -> usize {
        self.max_requests - self.slots.available_permits()
    }

    /// Threads still inside PAM after their caller got a timeout.
    pub fn overdue(&self) -> usize {
        self.overdue.load(Ordering::SeqCst)
    }

    /// Runs one PAM transaction on a thread of the pool and maps its result.
    pub async fn authenticate(&self, req: PamRequest) -> PamReply {
        let permit = match tokio::time::timeout(self.slot_wait, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return PamReply::temp_fail("the PAM pool is closed".into()),
            Err(_) => {
                return PamReply::temp_fail(format!(
                    "all {} PAM slots are busy (hung PAM modules?); gave up after waiting {:?}",
                    self.max_requests, self.slot_wait
                ))
            }
        };
        let (tx, rx) = oneshot::channel();
        let overdue = Arc::clone(&self.overdue);
        let gave_up = Arc::new(AtomicBool::new(false));
        let gave_up_thread = Arc::clone(&gave_up);
        let timeout = self.timeout;
        let started = Instant::now();
        let spawned = std::thread::Builder::new().name("saslgate-pam".into()).spawn(move || {
            let params = ffi::Params {
                service: &req.service,
                user: &req.user,
                password: req.password.expose(),
                rhost: req.rhost.as_deref(),
                config_dir: req.config_dir.as_deref(),
                setcred: req.setcred,
                session: req.session,
            };
            // `run` never unwinds into C, but a panic in our own mapping code must not take the
            // slot with it: catch it, answer a failure, and release the slot by returning.
            let reply = std::panic::catch_unwind(|| map(&ffi::run(&params))).unwrap_or_else(|_| PamReply::temp_fail("the PAM call panicked".into()));
            drop(req);
            // PAM is done with this thread: free the slot before answering.
            drop(permit);
            // The send fails when the caller is gone: timed out (counted as overdue), or its
            // request was cancelled.
            if tx.send(reply).is_err() && gave_up_thread.load(Ordering::SeqCst) {
                overdue.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(after = ?started.elapsed(), "a PAM call returned after its timeout; its slot is free again");
            }
        });
        if let Err(e) = spawned {
            return PamReply::temp_fail(format!("cannot start a PAM thread: {e}"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => PamReply::temp_fail("the PAM thread ended without an answer".into()),
            Err(_) => {
                // Both happen before the receiver is dropped (at the end of this match), so the
                // thread, whose send can only fail after that, sees them.
                gave_up.store(true, Ordering::SeqCst);
                let stuck = self.overdue.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::error!(
                    timeout = ?timeout,
                    stuck,
                    max_requests = self.max_requests,
                    "a PAM call timed out; its thread keeps its slot until PAM returns"
                );
                PamReply::temp_fail(format!("PAM did not answer within {timeout:?}"))
            }
        }
    }
}

/// Statuses that say "PAM could not decide now", whatever the stage.
fn is_temporary(status: i32) -> bool {
    matches!(
        status,
        ffi::PAM_AUTHINFO_UNAVAIL
            | ffi::PAM_SYSTEM_ERR
            | ffi::PAM_BUF_ERR
            | ffi::PAM_SERVICE_ERR
            | ffi::PAM_OPEN_ERR
            | ffi::PAM_SYMBOL_ERR
            | ffi::PAM_MODULE_UNKNOWN
            | ffi::PAM_ABORT
            | ffi::PAM_TRY_AGAIN
            | ffi::PAM_CONV_ERR
            | ffi::PAM_CRED_UNAVAIL
    )
}

/// Maps a transaction's report to a passdb result.
///
/// Dovecot maps only `PAM_USER_UNKNOWN` (unknown user) and `PAM_NEW_AUTHTOK_REQD` /
/// `PAM_ACCT_EXPIRED` (password expired); everything else is a password mismatch. We keep
/// those and are more precise where it matters to the peer: a refusal after the password was
/// accepted is "user disabled" (so `PAM_ACCT_EXPIRED` answers `code=user_disabled`), and a
/// PAM that cannot answer (`PAM_AUTHINFO_UNAVAIL`, a module that fails to load, …) is a
/// temporary failure rather than "wrong password".
fn map(r: &ffi::Report) -> PamReply {
    use PamOutcome as O;
    let detail = format!("{} failed: {}", r.stage.call(), r.error);
    let outcome = match (r.stage, r.status) {
        (_, ffi::PAM_SUCCESS) => O::Ok,
        (Stage::Input, _) => O::PasswordMismatch,
        (_, ffi::PAM_USER_UNKNOWN) => O::UserUnknown,
        (_, ffi::PAM_NEW_AUTHTOK_REQD | ffi::PAM_AUTHTOK_EXPIRED | ffi::PAM_CRED_EXPIRED) => O::PasswordExpired,
        // pam_exec answers PAM_SYSTEM_ERR for any checker script that exits non-zero, i.e. for
        // a wrong password: as a temporary failure it would carry no penalty and let a client
        // guess without limit. Dovecot counts it as a mismatch too.
        (Stage::Authenticate, ffi::PAM_SYSTEM_ERR) => O::PasswordMismatch,
        (_, s) if is_temporary(s) => O::TempFail(detail.clone()),
        (Stage::Start | Stage::GetUser | Stage::End, _) => O::TempFail(detail.clone()),
        (Stage::Authenticate, ffi::PAM_ACCT_EXPIRED) => O::UserDisabled,
        (Stage::Authenticate, _) => O::PasswordMismatch,
        (Stage::Setcred | Stage::AcctMgmt | Stage::OpenSession | Stage::CloseSession, _) => O::UserDisabled,
    };
    let message = if outcome == O::Ok {
        None
    } else if r.messages.is_empty() {
        r.prompt.clone().filter(|p| !p.is_empty())
    } else {
        Some(r.messages.join("; "))
    };
    let detail = if outcome == O::Ok { "ok".to_owned() } else { detail };
    PamReply { outcome, message, user: r.user.clone(), detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stage: Stage, status: i32) -> ffi::Report {
        ffi::Report { stage, status, error: "x".into(), messages: vec![], prompt: Some("Password:".into()), user: None }
    }

    #[test]
    fn maps_like_dovecot_with_account_and_temporary_refinements() {
        use PamOutcome as O;
        let cases = [
            (Stage::End, ffi::PAM_SUCCESS, O::Ok),
            (Stage::Authenticate, ffi::PAM_AUTH_ERR, O::PasswordMismatch),
            (Stage::Authenticate, ffi::PAM_MAXTRIES, O::PasswordMismatch),
            (Stage::Authenticate, ffi::PAM_PERM_DENIED, O::PasswordMismatch),
            (Stage::Authenticate, ffi::PAM_USER_UNKNOWN, O::UserUnknown),
            (Stage::Authenticate, ffi::PAM_NEW_AUTHTOK_REQD, O::PasswordExpired),
            (Stage::AcctMgmt, ffi::PAM_NEW_AUTHTOK_REQD, O::PasswordExpired),
            (Stage::AcctMgmt, ffi::PAM_ACCT_EXPIRED, O::UserDisabled),
            (Stage::AcctMgmt, ffi::PAM_PERM_DENIED, O::UserDisabled),
            (Stage::AcctMgmt, ffi::PAM_AUTH_ERR, O::UserDisabled),
            (Stage::AcctMgmt, ffi::PAM_USER_UNKNOWN, O::UserUnknown),
            (Stage::OpenSession, ffi::PAM_SESSION_ERR, O::UserDisabled),
            (Stage::Input, ffi::PAM_AUTH_ERR, O::PasswordMismatch),
            (Stage::Authenticate, ffi::PAM_SYSTEM_ERR, O::PasswordMismatch),
        ];
        for (stage, status, want) in cases {
            assert_eq!(map(&report(stage, status)).outcome, want, "{stage:?} {status}");
        }
        for (stage, status) in [
            (Stage::Authenticate, ffi::PAM_AUTHINFO_UNAVAIL),
            (Stage::Start, ffi::PAM_SYSTEM_ERR),
            (Stage::Authenticate, ffi::PAM_ABORT),
            (Stage::Start, ffi::PAM_BUF_ERR),
            (Stage::Start, ffi::PAM_AUTH_ERR),
            (Stage::End, ffi::PAM_AUTH_ERR),
        ] {
            assert!(matches!(map(&report(stage, status)).outcome, O::TempFail(_)), "{stage:?} {status}");
        }
    }

    #[test]
    fn the_message_prefers_module_messages_over_the_prompt() {
        let mut r = report(Stage::Authenticate, ffi::PAM_AUTH_ERR);
        assert_eq!(map(&r).message.as_deref(), Some("Password:"));
        r.messages = vec!["Account locked".into(), "call the helpdesk".into()];
        assert_eq!(map(&r).message.as_deref(), Some("Account locked; call the helpdesk"));
        assert_eq!(map(&report(Stage::End, ffi::PAM_SUCCESS)).message, None);
    }

    #[test]
    fn requests_never_print_the_password() {
        let req = PamRequest {
            service: "s".into(),
            user: "u".into(),
            password: Secret::new(b"hunter2".to_vec()),
            rhost: None,
            session: false,
            setcred: false,
            config_dir: None,
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }
}
