//! LDAP: connection pools with failover, filter escaping, entries and attribute maps.
//!
//! One [`Directory`] is built per `ldap` passdb or userdb block (the blocks may differ in `dn`,
//! TLS and timeouts, so pools are not shared between blocks; two blocks on the same servers cost
//! `connections` sockets each). It holds:
//! - [`Servers`]: the `uris` in order, each with its health. A server that fails a connect is
//!   marked down and skipped; a health check retries it with backoff (250 ms doubling to 2 s) and
//!   brings it back, after which connections on a later server are retired on their next use.
//! - the lookup pool: `connections` connections, bound as `dn`, each with at most
//!   `max_ops_per_connection` operations in flight (LDAP multiplexes them by message id);
//! - for `auth_bind`, a [`BindPool`] kept apart: `auth_bind_connections` connections, each one
//!   bind at a time (a bind changes the connection's identity), so binds run in parallel.
//!
//! Every operation has one deadline, `timeout`, covering the wait for a slot, a reconnect and the
//! operation. A connection that breaks is dropped and the operation retried once on a fresh one
//! within the same deadline (no "reconnecting" stall); when every server is down, the answer is an
//! immediate error, which the drivers turn into a temporary failure.

pub mod entry;
pub mod escape;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope as LScope, SearchOptions};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::config::ldap::{Deref, LdapConnection, Scope, TlsRequireCert};
pub use entry::{map_entry, wanted_attrs, Entry, Mapped};

/// Why an LDAP operation did not answer: a temporary failure for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LdapFailure(pub String);

/// The first backoff after a failed connect.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The longest backoff: a recovered server is back within this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Entries a `iterate` stream buffers before the search waits for the reader.
const ITERATE_BUFFER: usize = 64;
/// Page size of an iteration (RFC 2696 paged results; slapd's default size limit is 500).
const ITERATE_PAGE: i32 = 200;

#[derive(Debug)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
}

/// The configured servers, in order, with their health.
#[derive(Debug)]
pub struct Servers {
    uris: Vec<String>,
    health: Vec<Mutex<Health>>,
    settings: LdapConnection,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    /// The CA file could not be used: every connection fails with this (logged at start-up).
    tls_error: Option<String>,
    checker_started: std::sync::atomic::AtomicBool,
}

impl Servers {
    fn new(settings: &LdapConnection) -> Arc<Servers> {
        let (tls_config, tls_error) = match (&settings.tls_ca_cert_file, settings.tls_require_cert) {
            (Some(file), TlsRequireCert::Demand) => match tls_config(file) {
                Ok(c) => (Some(c), None),
                Err(e) => {
                    tracing::error!("LDAP tls_ca_cert_file: {e}; every LDAP connection will fail");
                    (None, Some(e.0))
                }
            },
            _ => (None, None),
        };
        Arc::new(Servers {
            uris: settings.uris.clone(),
            health: settings.uris.iter().map(|_| Mutex::new(Health { failures: 0, retry_at: None })).collect(),
            settings: settings.clone(),
            tls_config,
            tls_error,
            checker_started: false.into(),
        })
    }

    fn is_up(&self, i: usize) -> bool {
        self.health.get(i).and_then(|h| h.lock().ok()).is_some_and(|h| h.failures == 0)
    }

    /// The first server that is up (`None`: all are down).
    fn preferred(&self) -> Option<usize> {
        (0..self.uris.len()).find(|&i| self.is_up(i))
    }

    fn mark_down(self: &Arc<Self>, i: usize, why: &str) {
        if let Some(Ok(mut h)) = self.health.get(i).map(Mutex::lock) {
            if h.failures == 0 {
                tracing::warn!(uri = %self.uris[i], "LDAP server down: {why}");
            }
            h.failures = h.failures.saturating_add(1);
            let backoff = BACKOFF_MIN.saturating_mul(1 << h.failures.min(8)).min(BACKOFF_MAX);
            h.retry_at = Some(Instant::now() + backoff);
        }
        self.start_checker();
    }

    fn mark_up(&self, i: usize) {
        if let Some(Ok(mut h)) = self.health.get(i).map(Mutex::lock) {
            if h.failures > 0 {
                tracing::info!(uri = %self.uris[i], "LDAP server back");
            }
            h.failures = 0;
            h.retry_at = None;
        }
    }

    /// Starts the health check (once): it retries down servers with backoff, and stops when the
    /// pools are dropped.
    fn start_checker(self: &Arc<Self>) {
        if self.checker_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Servers> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(BACKOFF_MIN).await;
                let Some(servers) = weak.upgrade() else { return };
                let now = Instant::now();
                for i in 0..servers.uris.len() {
                    let due = servers.health[i].lock().map(|h| h.failures > 0 && h.retry_at.is_none_or(|t| t <= now)).unwrap_or(false);
                    if !due {
                        continue;
                    }
                    let deadline = Instant::now() + servers.settings.timeout;
                    match servers.open(i, deadline, true).await {
                        Ok(mut ldap) => {
                            let _ = ldap.unbind().await;
                            servers.mark_up(i);
                        }
                        Err(e) => servers.mark_down(i, &e.0),
                    }
                }
            }
        });
    }

    /// Opens a connection to server `i` (StartTLS when configured), bound as `dn` when
    /// `service_bind`.
    async fn open(&self, i: usize, deadline: Instant, service_bind: bool) -> Result<Ldap, LdapFailure> {
        let uri = &self.uris[i];
        let s = &self.settings;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut settings = LdapConnSettings::new().set_conn_timeout(remaining);
        if s.tls && uri.to_ascii_lowercase().starts_with("ldap://") {
            settings = settings.set_starttls(true);
        }
        match (&self.tls_config, s.tls_require_cert) {
            (Some(config), _) => settings = settings.set_config(Arc::clone(config)),
            (None, TlsRequireCert::Never) => settings = settings.set_no_tls_verify(true),
            (None, TlsRequireCert::Demand) => {}
        }
        let fail = |e: String| LdapFailure(format!("{uri}: {e}"));
        if let Some(e) = &self.tls_error {
            return Err(fail(e.clone()));
        }
        // We open TCP ourselves to turn Nagle off: ldap3 does not, and with several requests in
        // flight on a connection (lookups) or a remote directory, a small request would wait
        // for the ACK of the previous one (up to the peer's delayed-ACK timer, 40 ms on Linux).
        if let Some(addr) = tcp_addr(uri) {
            let stream = match timeout_at(deadline, tokio::net::TcpStream::connect(&addr)).await {
                Err(_) => return Err(fail("connect timed out".into())),
                Ok(Err(e)) => return Err(fail(e.to_string())),
                Ok(Ok(stream)) => stream,
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("LDAP {uri}: TCP_NODELAY: {e}");
            }
            let stream = stream.into_std().map_err(|e| fail(e.to_string()))?;
            settings = settings.set_std_stream(ldap3::StdStream::Tcp(stream));
        }
        let (conn, mut ldap) = match timeout_at(deadline, LdapConnAsync::with_settings(settings, uri)).await {
            Err(_) => return Err(fail("connect timed out".into())),
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!("LDAP connection ended: {e}");
            }
        });
        if service_bind {
            if let Some(dn) = &s.dn {
                let pass = s.dnpass.as_deref().unwrap_or_default();
                match timeout_at(deadline, ldap.simple_bind(dn, pass)).await {
                    Err(_) => return Err(fail("service bind timed out".into())),
                    Ok(Err(e)) => return Err(fail(e.to_string())),
                    Ok(Ok(r)) if r.rc != 0 => return Err(fail(format!("service bind as {dn} refused (rc={}, {})", r.rc, r.text))),
                    Ok(Ok(_)) => {}
                }
            }
        }
        Ok(ldap)
    }

    /// Connects to the first server that is up, marking the ones that fail down.
    async fn connect(self: &Arc<Self>, deadline: Instant, service_bind: bool) -> Result<(Ldap, usize), LdapFailure> {
        let mut last = None;
        for i in 0..self.uris.len() {
            if !self.is_up(i) {
                continue;
            }
            match self.open(i, deadline, service_bind).await {
                Ok(ldap) => return Ok((ldap, i)),
                Err(e) => {
                    // A refused service bind is a configuration error, not a dead server; it
                    // still fails over, so a misconfigured replica does not stop logins.
                    self.mark_down(i, &e.0);
                    last = Some(e);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        self.start_checker();
        Err(last.unwrap_or_else(|| LdapFailure(format!("every LDAP server is down ({}); retrying in the background", self.uris.join(" ")))))
    }
}

/// `host:port` of an `ldap://` or `ldaps://` URI (default ports 389 and 636); `None` for
/// `ldapi://` or anything we do not parse (ldap3 then connects by itself).
fn tcp_addr(uri: &str) -> Option<String> {
    let lower = uri.to_ascii_lowercase();
    let (rest, port) = if lower.starts_with("ldap://") {
        (uri.get(7..)?, 389)
    } else if lower.starts_with("ldaps://") {
        (uri.get(8..)?, 636)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?']).next()?;
    if authority.is_empty() || authority.contains(['@', '%']) {
        return None;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return match after {
            "" => Some(format!("[{host}]:{port}")),
            p => p.strip_prefix(':')?.parse::<u16>().ok().map(|p| format!("[{host}]:{p}")),
        };
    }
    match authority.split_once(':') {
        None => Some(format!("{authority}:{port}")),
        Some((host, p)) if !host.is_empty() && !p.contains(':') => p.parse::<u16>().ok().map(|p| format!("{host}:{p}")),
        Some(_) => None,
    }
}

fn tls_config(file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapFailure> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file).map_err(|e| LdapFailure(format!("{}: {e}", file.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| LdapFailure(format!("{}: {e}", file.display())))?;
        roots.add(cert).map_err(|e| LdapFailure(format!("{}: {e}", file.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapFailure(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether an error means the connection is unusable (retry on a fresh one).
fn broken(e: &LdapError) -> bool {
    matches!(e, LdapError::Io { .. } | LdapError::OpSend { .. } | LdapError::ResultRecv { .. } | LdapError::IdScrubSend { .. } | LdapError::EndOfStream)
        || matches!(e, LdapError::LdapResult { result } if matches!(result.rc, 52 | 80 | 81))
}

struct Live {
    ldap: Ldap,
    server: usize,
    id: u64,
}

struct Slot {
    ops: Semaphore,
    conn: tokio::sync::Mutex<Option<Live>>,
}

static CONN_IDS: AtomicU64 = AtomicU64::new(1);

/// A directory: its servers and its lookup pool.
pub struct Directory {
    servers: Arc<Servers>,
    slots: Vec<Slot>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("uris", &self.servers.uris).field("connections", &self.slots.len()).finish()
    }
}

/// Checks out a connection from a slot, (re)connecting when it has none, it broke, or a better
/// server is back.
async fn checkout(servers: &Arc<Servers>, conn: &mut Option<Live>, deadline: Instant, service_bind: bool) -> Result<(Ldap, u64), LdapFailure> {
    if let Some(live) = conn.as_mut() {
        let retire = live.ldap.is_closed() || servers.preferred().is_some_and(|p| p < live.server) || !servers.is_up(live.server);
        if retire {
            *conn = None;
        }
    }
    if conn.is_none() {
        let (ldap, server) = servers.connect(deadline, service_bind).await?;
        *conn = Some(Live { ldap, server, id: CONN_IDS.fetch_add(1, Ordering::Relaxed) });
    }
    match conn.as_ref() {
        Some(live) => Ok((live.ldap.clone(), live.id)),
        None => Err(LdapFailure("no connection".into())),
    }
}

/// What one search found.
#[derive(Debug)]
pub enum Found {
    /// Exactly one entry.
    One(Entry),
    /// None.
    None,
}

impl Directory {
    /// A directory for one LDAP block; connections open on first use.
    pub fn new(settings: &LdapConnection) -> Directory {
        let servers = Servers::new(settings);
        let slots =
            (0..settings.connections).map(|_| Slot { ops: Semaphore::new(settings.max_ops_per_connection), conn: tokio::sync::Mutex::new(None) }).collect();
        Directory { servers, slots, next: AtomicUsize::new(0) }
    }

    /// The settings.
    pub fn settings(&self) -> &LdapConnection {
        &self.servers.settings
    }

    /// A bind pool on the same servers (shared health).
    pub fn bind_pool(&self, connections: usize) -> BindPool {
        BindPool {
            servers: Arc::clone(&self.servers),
            slots: (0..connections).map(|_| tokio::sync::Mutex::new(None)).collect(),
            free: Semaphore::new(connections),
            next: AtomicUsize::new(0),
        }
    }

    fn options(&self) -> SearchOptions {
        let deref = match self.servers.settings.deref {
            Deref::Never => ldap3::DerefAliases::Never,
            Deref::Searching => ldap3::DerefAliases::Searching,
            Deref::Finding => ldap3::DerefAliases::Finding,
            Deref::Always => ldap3::DerefAliases::Always,
        };
        SearchOptions::new().deref(deref)
    }

    fn scope(&self) -> LScope {
        match self.servers.settings.scope {
            Scope::Base => LScope::Base,
            Scope::OneLevel => LScope::OneLevel,
            Scope::Subtree => LScope::Subtree,
        }
    }

    /// Searches for the one entry a filter names. Two or more entries are an error (an
    /// ambiguous filter must never pick one at random).
    pub async fn search_one(&self, base: &str, filter: &str, attrs: &[String]) -> Result<Found, LdapFailure> {
        let deadline = Instant::now() + self.servers.settings.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len().max(1);
            let Some(slot) = self.slots.get(index) else { return Err(LdapFailure("no LDAP connections configured".into())) };
            let Ok(Ok(_permit)) = timeout_at(deadline, slot.ops.acquire()).await else {
                return Err(LdapFailure(format!(
                    "LDAP timed out waiting for a connection ({} operations in flight on each)",
                    self.servers.settings.max_ops_per_connection
                )));
            };
            let (mut ldap, id) = {
                let mut conn = match timeout_at(deadline, slot.conn.lock()).await {
                    Ok(c) => c,
                    Err(_) => return Err(LdapFailure("LDAP timed out connecting".into())),
                };
                checkout(&self.servers, &mut conn, deadline, true).await?
            };
            let search = ldap.with_search_options(self.options().sizelimit(2)).search(base, self.scope(), filter, attrs);
            let result = timeout_at(deadline, search).await;
            let error = match result {
                Err(_) => {
                    invalidate(slot, id).await;
                    return Err(LdapFailure(format!("LDAP search timed out after {:?}", self.servers.settings.timeout)));
                }
                Ok(Ok(ldap3::SearchResult(entries, res))) => match res.rc {
                    0 | 4 if entries.len() > 1 => return Err(LdapFailure(format!("the filter {filter} matches more than one entry"))),
                    0 => {
                        return match entries.into_iter().next() {
                            None => Ok(Found::None),
                            Some(e) => Entry::from_tag(e.0).map(Found::One).ok_or_else(|| LdapFailure("a malformed entry from the LDAP server".into())),
                        }
                    }
                    // noSuchObject: the base does not exist (e.g. a per-domain base).
                    32 => return Ok(Found::None),
                    _ => LdapError::LdapResult { result: res },
                },
                Ok(Err(e)) => e,
            };
            if broken(&error) {
                invalidate(slot, id).await;
                if attempt < 2 && Instant::now() < deadline {
                    continue;
                }
            }
            return Err(LdapFailure(format!("LDAP search failed: {error}")));
        }
    }

    /// Streams the entries of a search, on a connection of its own (paged, so a server size
    /// limit does not cut the list). The channel holds a few entries: the search waits for the
    /// reader, nothing is collected in memory. An error ends the stream.
    pub fn iterate(&self, base: String, filter: String, attrs: Vec<String>) -> mpsc::Receiver<Result<Entry, LdapFailure>> {
        let (tx, rx) = mpsc::channel(ITERATE_BUFFER);
        let servers = Arc::clone(&self.servers);
        let options = self.options();
        let scope = self.scope();
        tokio::spawn(async move {
            let timeout = servers.settings.timeout;
            let (mut ldap, _) = match servers.connect(Instant::now() + timeout, true).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let adapters: Vec<Box<dyn ldap3::adapters::Adapter<'_, String, Vec<String>>>> =
                vec![Box::new(ldap3::adapters::EntriesOnly::new()), Box::new(ldap3::adapters::PagedResults::new(ITERATE_PAGE))];
            let start = ldap.with_search_options(options).streaming_search_with(adapters, &base, scope, &filter, attrs);
            let mut stream = match tokio::time::timeout(timeout, start).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(LdapFailure(format!("LDAP iteration failed: {e}")))).await;
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Err(LdapFailure("LDAP iteration timed out".into()))).await;
                    return;
                }
            };
            loop {
                match tokio::time::timeout(timeout, stream.next()).await {
                    Ok(Ok(Some(e))) => {
                        let item = Entry::from_tag(e.0).ok_or_else(|| LdapFailure("a malformed entry from the LDAP server".into()));
                        if tx.send(item).await.is_err() {
                            let _ = ldap.abandon(stream.ldap_handle().last_id()).await;
                            break;
                        }
                    }
                    Ok(Ok(None)) => {
                        let res = stream.finish().await;
                        if res.rc != 0 {
                            let _ = tx.send(Err(LdapFailure(format!("LDAP iteration ended with rc={} {}", res.rc, res.text)))).await;
                        }
                        break;
                    }
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(LdapFailure(format!("LDAP iteration failed: {e}")))).await;
                        break;
                    }
                    Err(_) => {
                        let _ = tx.send(Err(LdapFailure("LDAP iteration timed out".into()))).await;
                        break;
                    }
                }
            }
            let _ = ldap.unbind().await;
        });
        rx
    }
}

async fn invalidate(slot: &Slot, id: u64) {
    let mut conn = slot.conn.lock().await;
    if conn.as_ref().is_some_and(|l| l.id == id) {
        *conn = None;
    }
}

/// Connections that check passwords by binding as the user, one bind at a time each, kept
/// apart from the lookup connections.
pub struct BindPool {
    servers: Arc<Servers>,
    slots: Vec<tokio::sync::Mutex<Option<Live>>>,
    free: Semaphore,
    next: AtomicUsize,
}

impl std::fmt::Debug for BindPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindPool").field("connections", &self.slots.len()).finish()
    }
}

/// What a bind said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// The password is right.
    Ok,
    /// invalidCredentials (or an empty password, never sent).
    InvalidCredentials,
    /// The DN does not exist (some servers say so instead of invalidCredentials).
    NoSuchObject,
}

impl BindPool {
    /// Binds as `dn` with `password`. An empty password is refused without asking the server:
    /// an empty simple bind is an anonymous bind (RFC 4513 §5.1.2), which "succeeds".
    pub async fn bind(&self, dn: &str, password: &[u8]) -> Result<BindOutcome, LdapFailure> {
        if password.is_empty() || dn.is_empty() {
            return Ok(BindOutcome::InvalidCredentials);
        }
        // ldap3 takes the password as text; a password that is not UTF-8 cannot be the one stored.
        let Ok(password) = std::str::from_utf8(password) else { return Ok(BindOutcome::InvalidCredentials) };
        let deadline = Instant::now() + self.servers.settings.timeout;
        let Ok(Ok(_permit)) = timeout_at(deadline, self.free.acquire()).await else {
            return Err(LdapFailure(format!("LDAP timed out waiting for one of {} bind connections", self.slots.len())));
        };
        // A permit guarantees a free slot (guards are dropped before permits).
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len().max(1);
        let mut guard = None;
        for k in 0..n {
            if let Some(Ok(g)) = self.slots.get((start + k) % n).map(|s| s.try_lock()) {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => match self.slots.get(start % n) {
                Some(s) => match timeout_at(deadline, s.lock()).await {
                    Ok(g) => g,
                    Err(_) => return Err(LdapFailure("LDAP timed out waiting for a bind connection".into())),
                },
                None => return Err(LdapFailure("no LDAP bind connections configured".into())),
            },
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut ldap, id) = checkout(&self.servers, &mut guard, deadline, false).await?;
            let error = match timeout_at(deadline, ldap.simple_bind(dn, password)).await {
                Err(_) => {
                    *guard = None;
                    return Err(LdapFailure(format!("LDAP bind timed out after {:?}", self.servers.settings.timeout)));
                }
                Ok(Ok(r)) => match r.rc {
                    0 => return Ok(BindOutcome::Ok),
                    49 => return Ok(BindOutcome::InvalidCredentials),
                    32 => return Ok(BindOutcome::NoSuchObject),
                    // unwillingToPerform: e.g. an unauthenticated bind refused.
                    53 => return Ok(BindOutcome::InvalidCredentials),
                    _ => LdapError::LdapResult { result: r },
                },
                Ok(Err(e)) => e,
            };
            if broken(&error) {
                if guard.as_ref().is_some_and(|l| l.id == id) {
                    *guard = None;
                }
                if attempt < 2 && Instant::now() < deadline {
                    continue;
                }
            }
            return Err(LdapFailure(format!("LDAP bind failed: {error}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_addr;

    #[test]
    fn tcp_addresses_of_uris() {
        assert_eq!(tcp_addr("ldap://127.0.0.1:3890").as_deref(), Some("127.0.0.1:3890"));
        assert_eq!(tcp_addr("LDAP://ldap.example.org/").as_deref(), Some("ldap.example.org:389"));
        assert_eq!(tcp_addr("ldaps://dc1.example.org").as_deref(), Some("dc1.example.org:636"));
        assert_eq!(tcp_addr("ldap://[::1]:10389").as_deref(), Some("[::1]:10389"));
        assert_eq!(tcp_addr("ldaps://[2001:db8::1]").as_deref(), Some("[2001:db8::1]:636"));
        assert_eq!(tcp_addr("ldap://h:99999"), None);
        assert_eq!(tcp_addr("ldapi://%2Frun%2Fslapd%2Fldapi"), None);
        assert_eq!(tcp_addr("ldap://"), None);
        assert_eq!(tcp_addr("ldap://h:1:2"), None);
    }
}
