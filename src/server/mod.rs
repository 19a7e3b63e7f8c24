//! The I/O layer: sockets, connections, privilege drop.
//!
//! [`run`] takes listeners that are already bound (so tests bind temp sockets and run the server
//! in their own process) and a shutdown future. Each accepted connection becomes one task; each
//! AUTH on a client connection becomes one task of its own, so many requests run at once on one
//! connection and finish in any order. What a request does between its AUTH line and its final
//! reply (mechanism, databases, failure delay, penalties) is the request layer's (`auth`): this
//! layer parses lines, hands requests over, carries CONT exchanges and writes the answers.

mod client;
pub mod inherited;
pub mod listener;
mod master;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::config::{Config, ListenerConfig, ListenerKind};

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
    cuid: AtomicU32,
}

impl Shared {
    /// Shared state for a daemon with these settings over this request layer.
    pub fn new(config: &Config, auth: Arc<Authenticator>) -> Shared {
        Shared { auth, spid: std::process::id(), max_requests_per_connection: config.limits.max_requests_per_connection, cuid: AtomicU32::new(1) }
    }

    fn next_cuid(&self) -> u32 {
        self.cuid.fetch_add(1, Ordering::Relaxed)
    }
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
