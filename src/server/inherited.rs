//! Running as Dovecot's `auth` executable (`saslgate --dovecot-service`): the file descriptors
//! and environment Dovecot's master hands a service process (2.3, `lib-master`).
//!
//! - fd 5 (`MASTER_STATUS_FD`): a pipe shared by the service's processes; each writes a
//!   12-byte `struct master_status { pid_t pid; unsigned int uid; unsigned int available_count; }`
//!   (native byte order, no padding). `uid` is the `GENERATION` environment value, and the
//!   master kills a process whose first status does not come within 30 seconds.
//! - fd 6 (`MASTER_DEAD_FD`): a pipe whose write end only the master holds; EOF on it means
//!   the master is gone and the process must exit.
//! - fds 7 … 7+`SOCKET_COUNT`-1 (`MASTER_LISTEN_FD_FIRST`): the listening sockets, already
//!   bound by the master, which owns (and unlinks) their files. `SOCKET<i>_SETTINGS` holds the
//!   listener's name (tab-escaped), then flags such as `ssl`.
//!
//! This is the one module of the `server` layer that needs `unsafe`: taking ownership of file
//! descriptors by number cannot be done otherwise. Each descriptor is checked (open, a
//! listening Unix socket or a pipe) before it is owned, and [`take`] runs at most once per
//! process, so no descriptor gets two owners.

#![allow(unsafe_code)]

use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{ListenerConfig, ListenerKind};

/// A start-up problem with what Dovecot's master handed over; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

impl SetupError {
    fn new(message: String) -> SetupError {
        SetupError(message)
    }
}

/// `MASTER_STATUS_FD`.
pub const STATUS_FD: RawFd = 5;
/// `MASTER_DEAD_FD`.
pub const DEAD_FD: RawFd = 6;
/// `MASTER_LISTEN_FD_FIRST`.
pub const LISTEN_FD_FIRST: RawFd = 7;
/// More sockets than any auth service has; a larger `SOCKET_COUNT` is refused.
const MAX_SOCKETS: usize = 64;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// What Dovecot's master handed over.
#[derive(Debug)]
pub struct Handover {
    /// The listening sockets, with what each speaks (from its name's suffix, as Dovecot's
    /// auth decides it).
    pub listeners: Vec<(UnixListener, ListenerConfig)>,
    /// fd 5, the status pipe.
    pub status: OwnedFd,
    /// fd 6, the master-dead pipe.
    pub dead: OwnedFd,
    /// `GENERATION`: the `uid` of every status record.
    pub generation: u32,
    /// `CLIENT_LIMIT`: connections this process may serve (the status's `available_count`).
    pub client_limit: u32,
}

impl Handover {
    /// The 12-byte status record: `available` connections can still be accepted.
    pub fn status_record(&self, available: u32) -> [u8; 12] {
        status_record(std::process::id(), self.generation, available)
    }
}

/// `struct master_status` in native byte order: pid (`pid_t`, 32 bits on Linux), uid,
/// available_count.
pub fn status_record(pid: u32, generation: u32, available: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0..4].copy_from_slice(&pid.to_ne_bytes());
    out[4..8].copy_from_slice(&generation.to_ne_bytes());
    out[8..12].copy_from_slice(&available.to_ne_bytes());
    out
}

/// Whether this process was started by Dovecot's master (`DOVECOT_CHILD_PROCESS` is set, or at
/// least `SOCKET_COUNT`/`GENERATION` are).
pub fn started_by_dovecot() -> bool {
    ["DOVECOT_CHILD_PROCESS", "GENERATION", "SOCKET_COUNT"].iter().any(|k| std::env::var_os(k).is_some())
}

fn env_u32(name: &str, default: u32) -> Result<u32, SetupError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => {
            v.trim().parse().map_err(|_| SetupError::new(format!("--dovecot-service: {name}={v:?} is not a number; is saslgate started by Dovecot's master?")))
        }
    }
}

/// Takes the descriptors and settings Dovecot's master handed over. Call once, early, before
/// anything else opens a file (so the numbers still mean what the master meant). A second call
/// fails.
pub fn take() -> Result<Handover, SetupError> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(SetupError::new("the descriptors from Dovecot's master were already taken".into()));
    }
    if !started_by_dovecot() {
        return Err(SetupError::new(
            "--dovecot-service: not started by Dovecot's master (no SOCKET_COUNT/GENERATION in the environment); set `service auth { executable = /usr/bin/saslgate --dovecot-service --config … }` in dovecot.conf, or run saslgate without --dovecot-service".into(),
        ));
    }
    let count = env_u32("SOCKET_COUNT", 0)? as usize;
    if count > MAX_SOCKETS {
        return Err(SetupError::new(format!("--dovecot-service: SOCKET_COUNT={count} is more than {MAX_SOCKETS}")));
    }
    let generation = env_u32("GENERATION", 0)?;
    let client_limit = env_u32("CLIENT_LIMIT", 1000)?;
    let status = take_pipe(STATUS_FD, "status (fd 5)")?;
    let dead = take_pipe(DEAD_FD, "master-dead (fd 6)")?;
    let mut listeners = Vec::with_capacity(count);
    for i in 0..count {
        // i < MAX_SOCKETS, so the sum fits.
        let fd = LISTEN_FD_FIRST + i as RawFd;
        let listener = take_listener(fd)?;
        let name = std::env::var(format!("SOCKET{i}_SETTINGS")).ok().and_then(|s| s.split('\t').next().map(unescape_tab)).filter(|n| !n.is_empty());
        let bound = listener.local_addr().ok().and_then(|a| a.as_pathname().map(PathBuf::from));
        let Some(path) = bound.clone().or_else(|| name.as_ref().map(PathBuf::from)) else {
            return Err(SetupError::new(format!("--dovecot-service: socket fd {fd} has neither a name in SOCKET{i}_SETTINGS nor a path")));
        };
        // The role by Dovecot's rule: the suffix of the listener's name (or its file name).
        let kind = ListenerKind::from_socket_name(&name.as_ref().map(PathBuf::from).unwrap_or_else(|| path.clone()));
        let mode = bound.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
        listener.set_nonblocking(true).map_err(|e| SetupError::new(format!("--dovecot-service: socket fd {fd}: {e}")))?;
        // Dovecot's `client_limit` for the service is each listener's connection budget.
        let max_connections = Some(usize::try_from(client_limit).unwrap_or(usize::MAX).max(1));
        listeners.push((listener, ListenerConfig { path, kind, mode, user: None, group: None, disable_plaintext_auth: None, max_connections }));
    }
    Ok(Handover { listeners, status, dead, generation, client_limit })
}

/// `t_strsplit_tabescaped`'s unescaping: \1 → \1 (itself), \t → TAB, \r, \n, \0 → NUL byte is
/// not allowed in a name, so it is dropped.
fn unescape_tab(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('1') => out.push('\u{1}'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('0') | None => {}
            Some(other) => out.push(other),
        }
    }
    out
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes no pointer argument and only reads the descriptor table; any
    // integer is a valid argument (a closed fd gives EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags >= 0
}

fn int_sockopt(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals of the sizes getsockopt is told about; the
    // call writes at most `len` bytes into `value`. A non-socket fd gives ENOTSOCK.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&mut value as *mut libc::c_int).cast(), &mut len) };
    (rc == 0).then_some(value)
}

fn take_listener(fd: RawFd) -> Result<UnixListener, SetupError> {
    if !fd_is_open(fd) {
        return Err(SetupError::new(format!("--dovecot-service: fd {fd} is not open; SOCKET_COUNT promised it")));
    }
    if int_sockopt(fd, libc::SO_DOMAIN) != Some(libc::AF_UNIX) || int_sockopt(fd, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
        return Err(SetupError::new(format!(
            "--dovecot-service: fd {fd} is not a Unix stream socket (saslgate serves unix_listeners only; remove inet_listener from service auth)"
        )));
    }
    if int_sockopt(fd, libc::SO_ACCEPTCONN) != Some(1) {
        return Err(SetupError::new(format!("--dovecot-service: fd {fd} is not a listening socket")));
    }
    // SAFETY: fd is open and is a listening AF_UNIX stream socket (checked above); `take` runs
    // once per process (TAKEN), each fd number in 7..7+SOCKET_COUNT is taken once, and nothing
    // else in the process owns these numbers: the master opened them for us before exec.
    Ok(unsafe { UnixListener::from_raw_fd(fd) })
}

fn take_pipe(fd: RawFd, what: &str) -> Result<OwnedFd, SetupError> {
    if !fd_is_open(fd) {
        return Err(SetupError::new(format!("--dovecot-service: the {what} pipe is not open; is saslgate started by Dovecot's master?")));
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a properly sized, writable stat buffer; fstat fills it on success and we
    // read it only then.
    let is_fifo = unsafe { libc::fstat(fd, st.as_mut_ptr()) == 0 && (st.assume_init_ref().st_mode & libc::S_IFMT) == libc::S_IFIFO };
    if !is_fifo {
        return Err(SetupError::new(format!("--dovecot-service: the {what} descriptor is not a pipe")));
    }
    // SAFETY: fd is open and is a pipe (checked above); fds 5 and 6 are taken once per process
    // (TAKEN) and nothing else in the process owns them: the master set them up before exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Completes when Dovecot's master is gone. fd 6 is the write end of a pipe whose read end
/// only the master holds: when the master exits, the write end reports an error condition
/// (EPOLLERR), which is what Dovecot's own processes wait for (`io_add(MASTER_DEAD_FD,
/// IO_ERROR, …)`). Must run inside the tokio runtime; an error means fd 6 cannot be watched.
pub async fn master_gone(dead: OwnedFd) -> std::io::Result<()> {
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    // SAFETY: `dead` is an OwnedFd: its descriptor is open and owned by it alone, and the
    // AsyncFd keeps it (and so keeps it open, referring to the same pipe) until the AsyncFd
    // is dropped, which deregisters it first.
    let fd = unsafe { AsyncFd::register_with_interest(dead, Interest::ERROR) }.map_err(std::io::Error::from)?;
    let _ = fd.ready(Interest::ERROR).await?;
    Ok(())
}

/// Limits glibc's malloc to `arenas` arenas (each thread arena reserves 64 MiB of address
/// space, so a few busy threads would pass Dovecot's default `vsz_limit` of 256 MiB). Call
/// before the first thread starts.
pub fn limit_malloc_arenas(arenas: i32) {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt takes two ints and changes allocator tuning; it is called before any
    // other thread exists, so no allocation races it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = arenas;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_record_layout() {
        let r = status_record(0x0102_0304, 7, 1000);
        assert_eq!(&r[0..4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&r[4..8], &7u32.to_ne_bytes());
        assert_eq!(&r[8..12], &1000u32.to_ne_bytes());
    }

    #[test]
    fn unescapes_names() {
        assert_eq!(unescape_tab("auth-client"), "auth-client");
        assert_eq!(unescape_tab("a\u{1}tb\u{1}1"), "a\tb\u{1}");
    }
}
