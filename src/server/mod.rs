//! The I/O layer: sockets, connections, the failure delay, privilege drop.
//!
//! [`run`] takes listeners that are already bound (so tests bind temp sockets and run the server
//! in their own process) and a shutdown future. Each accepted connection becomes one task; each
//! AUTH on a client connection becomes one task of its own, so many requests run at once on one
//! connection and finish in any order.

mod client;
pub mod listener;
mod master;
pub mod penalty;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::config::{Config, ListenerConfig, ListenerKind};
use crate::sasl::{MechContext, MechInfo};

pub use client::{serve as serve_client, serve_with as serve_client_with};
pub use master::serve as serve_master;

/// State shared by every connection of a running daemon.
#[derive(Debug)]
pub struct Shared {
    /// Databases and authentication rules.
    pub auth: Arc<Authenticator>,
    /// Mechanisms offered, in order.
    pub mechanisms: Vec<&'static MechInfo>,
    /// The server pid announced as SPID on every socket.
    pub spid: u32,
    /// Requests in flight per client connection.
    pub max_requests_per_connection: usize,
    /// How long a failed request waits before its FAIL is sent.
    pub failure_delay: Duration,
    /// How long a request may live.
    pub request_timeout: Duration,
    /// Host name, realms and randomness for mechanisms.
    pub mech_context: MechContext,
    /// Failure penalty per remote address.
    pub ip_penalty: penalty::Penalty,
    /// Failure penalty per account (`auth.account_penalty`), when enabled.
    pub account_penalty: Option<penalty::Penalty>,
    cuid: AtomicU32,
    logins: Mutex<HashMap<u32, Arc<LoginConnection>>>,
}

impl Shared {
    /// Shared state for a daemon with these databases and settings.
    pub fn new(config: &Config, auth: Arc<Authenticator>) -> Shared {
        Shared {
            auth,
            mechanisms: config.mechanisms.clone(),
            spid: std::process::id(),
            max_requests_per_connection: config.limits.max_requests_per_connection,
            failure_delay: config.auth.failure_delay,
            request_timeout: Duration::from_secs(crate::protocol::REQUEST_TIMEOUT_SECS),
            mech_context: MechContext { hostname: config.hostname.clone(), realms: config.realms.clone(), ..MechContext::default() },
            ip_penalty: penalty::Penalty::new(config.penalty_max),
            account_penalty: config.account_penalty.then(|| penalty::Penalty::new(config.penalty_max)),
            cuid: AtomicU32::new(1),
            logins: Mutex::new(HashMap::new()),
        }
    }

    fn next_cuid(&self) -> u32 {
        self.cuid.fetch_add(1, Ordering::Relaxed)
    }

    // The registry lock is a std Mutex: held only to insert, remove or clone an Arc.
    fn logins(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Arc<LoginConnection>>> {
        self.logins.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A live login-type client connection, as the master side sees it: its cookie and the logins
/// it finished that a mail process may still claim with REQUEST.
#[derive(Debug)]
pub(crate) struct LoginConnection {
    cookie: [u8; 16],
    finished: Mutex<HashMap<u32, FinishedLogin>>,
}

/// A successful login waiting for REQUEST.
#[derive(Debug, Clone)]
pub(crate) struct FinishedLogin {
    user: String,
    /// The passdb's `userdb_*` fields, for a `prefetch` userdb.
    prefetch: crate::auth::Fields,
    mech: &'static str,
    at: Instant,
}

/// Reads more input into `buf`, never past `max` bytes of unprocessed input (a full buffer
/// without a line feed is then rejected by `protocol::line::next_line`). The buffer grows only
/// as data comes, so an idle connection holds almost nothing. Returns 0 at EOF; a read error
/// ends the connection like EOF does.
async fn read_more<R: tokio::io::AsyncRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>, max: usize) -> usize {
    use tokio::io::AsyncReadExt as _;
    let room = max.saturating_sub(buf.len());
    buf.reserve(room.min(4096));
    reader.take(room as u64).read_buf(buf).await.unwrap_or(0)
}

/// Serves `listeners` until `shutdown` completes.
pub async fn run(
    listeners: Vec<(UnixListener, ListenerConfig)>,
    shared: Arc<Shared>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut tasks = Vec::new();
    for (listener, config) in listeners {
        let shared = Arc::clone(&shared);
        let slots = Arc::clone(&slots);
        tasks.push(tokio::spawn(accept_loop(listener, config, shared, slots)));
    }
    shutdown.await;
    for t in &tasks {
        t.abort();
    }
}

async fn accept_loop(listener: UnixListener, config: ListenerConfig, shared: Arc<Shared>, slots: Arc<Semaphore>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!(socket = %config.path.display(), "accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let config = config.clone();
        tokio::spawn(async move {
            let peer = stream.peer_cred().ok();
            match config.kind {
                ListenerKind::Client | ListenerKind::Login => {
                    client::serve_with(stream, shared, config.kind == ListenerKind::Login, config.disable_plaintext_auth).await;
                }
                ListenerKind::Master | ListenerKind::Userdb => {
                    let access = master::Access::for_peer(&config, peer.as_ref());
                    master::serve(stream, shared, config.kind, access, peer.and_then(|p| p.pid())).await;
                }
            }
            drop(permit);
        });
    }
}
