//! The I/O layer: sockets, connections, privilege drop.
//!
//! [`run`] takes listeners that are already bound (so tests bind temp sockets and run the server
//! in their own process) and a shutdown future. Each accepted connection becomes one task. An
//! AUTH on a client connection is answered on that task when its answer is ready at once, and
//! otherwise becomes a task of its own, so many requests run at once on one connection and
//! finish in any order. What a request does between its AUTH line and its final
//! reply (mechanism, databases, failure delay, penalties) is the request layer's (`auth`): this
//! layer parses lines, hands requests over, carries CONT exchanges and writes the answers.

mod client;
pub mod inherited;
pub mod listener;
mod master;
mod ratelog;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{watch, Semaphore};

use crate::auth::Authenticator;
use crate::config::{Config, ListenerConfig, ListenerKind, MAX_CONNECTIONS_LIMIT};

pub use client::{serve as serve_client, serve_with as serve_client_with};
pub use master::serve as serve_master;

/// State shared by every connection of a running daemon.
#[derive(Debug)]
pub struct Shared {
    /// The request layer: mechanisms, databases, penalties, logins waiting for REQUEST.
    pub auth: Arc<Authenticator>,
    /// The server pid announced as SPID on every socket.
    pub spid: u32,
    /// Requests in flight per client connection.
    pub max_requests_per_connection: usize,
    /// Connections one peer uid may hold on a world-accessible listener (0: no cap).
    pub max_connections_per_uid: usize,
    /// A connection must finish its handshake within this time.
    pub handshake_timeout: Duration,
    /// How long [`run`] lets requests in flight finish after the shutdown future completes.
    pub shutdown_timeout: Duration,
    cuid: AtomicU32,
    /// True once the daemon stops: connections finish what is in flight, then close.
    drain: watch::Sender<bool>,
    /// The value of `drain`, read on every request without touching the channel's lock.
    stopping: AtomicBool,
}

impl Shared {
    /// Shared state for a daemon with these settings over this request layer.
    pub fn new(config: &Config, auth: Arc<Authenticator>) -> Shared {
        Shared {
            auth,
            spid: std::process::id(),
            max_requests_per_connection: config.limits.max_requests_per_connection,
            max_connections_per_uid: config.limits.max_connections_per_uid,
            handshake_timeout: config.limits.handshake_timeout,
            shutdown_timeout: config.limits.shutdown_timeout,
            cuid: AtomicU32::new(1),
            drain: watch::Sender::new(false),
            stopping: AtomicBool::new(false),
        }
    }

    /// Whether the daemon is stopping (no new requests; connections close once idle).
    pub fn draining(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// A receiver that changes when the daemon starts draining.
    fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    fn next_cuid(&self) -> u32 {
        self.cuid.fetch_add(1, Ordering::Relaxed)
    }
}

/// SIGHUP flushes the auth cache, as with Dovecot. Spawns the listener on the current runtime.
pub fn flush_cache_on_sighup(shared: &Arc<Shared>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the auth cache is flushed only by CACHE-FLUSH");
        return;
    };
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let flushed = shared.auth.flush_cache(&[]);
            tracing::info!(flushed, "SIGHUP: auth cache flushed");
        }
    });
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

/// Serves `listeners` until `shutdown` completes, then drains: the listeners close, idle
/// connections close, requests in flight finish (their replies are written), for at most
/// `shared.shutdown_timeout`. Every listener has its own connection budget: its
/// `max_connections`, or `max_connections` given here.
pub async fn run(listeners: Vec<(UnixListener, ListenerConfig)>, shared: Arc<Shared>, max_connections: usize, shutdown: impl Future<Output = ()>) {
    let mut tasks = Vec::new();
    let mut budgets = Vec::new();
    for (listener, config) in listeners {
        let budget = config.max_connections.unwrap_or(max_connections).clamp(1, MAX_CONNECTIONS_LIMIT);
        let slots = Arc::new(Semaphore::new(budget));
        budgets.push((Arc::clone(&slots), budget));
        tasks.push(tokio::spawn(accept_loop(listener, config, Arc::clone(&shared), slots)));
    }
    shutdown.await;
    for t in &tasks {
        t.abort();
    }
    shared.stopping.store(true, Ordering::Release);
    shared.drain.send_replace(true);
    let drained = async {
        for (slots, budget) in &budgets {
            // Every slot back: every connection of this listener (and its accept loop) is gone.
            let _ = slots.acquire_many(u32::try_from(*budget).unwrap_or(u32::MAX)).await;
        }
    };
    if tokio::time::timeout(shared.shutdown_timeout, drained).await.is_err() {
        let busy: usize = budgets.iter().map(|(slots, budget)| budget.saturating_sub(slots.available_permits())).sum();
        tracing::warn!(connections = busy, "shutdown: connections still busy after {:?}; closing them", shared.shutdown_timeout);
    }
}

/// Connections per peer uid on one world-accessible listener.
struct PerUid {
    cap: usize,
    /// Root, the socket's owner and its group are exempt.
    owner: Option<(u32, u32)>,
    counts: Mutex<HashMap<u32, usize>>,
}

impl PerUid {
    fn for_listener(config: &ListenerConfig, cap: usize) -> Option<Arc<PerUid>> {
        use std::os::unix::fs::MetadataExt;
        if cap == 0 || !config.world_accessible() {
            return None;
        }
        let owner = std::fs::symlink_metadata(&config.path).ok().map(|m| (m.uid(), m.gid()));
        Some(Arc::new(PerUid { cap, owner, counts: Mutex::new(HashMap::new()) }))
    }

    /// Takes a place for this peer; None when its uid holds `cap` connections already.
    fn admit(self: &Arc<Self>, peer: Option<&tokio::net::unix::UCred>) -> Option<Option<UidSlot>> {
        let peer = peer?;
        let (uid, gid) = (peer.uid(), peer.gid());
        if uid == 0 || self.owner.is_some_and(|(ou, og)| ou == uid || og == gid) {
            return Some(None);
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let held = counts.entry(uid).or_insert(0);
        if *held >= self.cap {
            return None;
        }
        *held += 1;
        Some(Some(UidSlot { per_uid: Arc::clone(self), uid }))
    }
}

/// One connection counted against its peer's uid, released when dropped.
struct UidSlot {
    per_uid: Arc<PerUid>,
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut counts = self.per_uid.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = counts.get_mut(&self.uid) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

async fn accept_loop(listener: UnixListener, config: ListenerConfig, shared: Arc<Shared>, slots: Arc<Semaphore>) {
    let mut backoff = Duration::from_millis(10);
    let per_uid = PerUid::for_listener(&config, shared.max_connections_per_uid);
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
        let peer = stream.peer_cred().ok();
        let uid_slot = match &per_uid {
            None => None,
            Some(per_uid) => match per_uid.admit(peer.as_ref()) {
                Some(slot) => slot,
                None => {
                    static REFUSED: ratelog::LogLimit = ratelog::LogLimit::per_minute();
                    if let Some(suppressed) = REFUSED.admit(std::time::Instant::now()) {
                        tracing::warn!(socket = %config.path.display(), uid = peer.map(|p| p.uid()), cap = per_uid.cap, suppressed, "too many connections from one uid on a world-accessible socket: closed (limits.max_connections_per_uid)");
                    }
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        let config = config.clone();
        tokio::spawn(async move {
            match config.kind {
                ListenerKind::Client | ListenerKind::Login => {
                    client::serve_with(stream, shared, config.kind == ListenerKind::Login, config.disable_plaintext_auth).await;
                }
                ListenerKind::Master | ListenerKind::Userdb => {
                    let access = master::Access::for_peer(&config, peer.as_ref());
                    master::serve(stream, shared, config.kind, access, peer.and_then(|p| p.pid())).await;
                }
            }
            drop(uid_slot);
            drop(permit);
        });
    }
}
