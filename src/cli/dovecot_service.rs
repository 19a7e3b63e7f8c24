//! `saslgate --dovecot-service --config F`: run as Dovecot's `auth` executable
//! (`service auth { executable = /usr/bin/saslgate --dovecot-service --config F }`).
//!
//! Dovecot's master binds the auth sockets, starts this process with them as fds 7…, and
//! owns them: nothing is bound or unlinked here. The process reports itself on the status pipe
//! (fd 5) at once, logs to stderr in the form of Dovecot's log process
//! (`\x01<type+1><pid> <text>\n`, type 0 debug … 3 error, 4 fatal), and exits when the master
//! goes away (EOF on fd 6) or sends SIGTERM. SIGINT, which the master sends to processes it
//! thinks idle, is ignored, as Dovecot's own auth ignores it: login processes keep their auth
//! connections open.
//!
//! Address space: Dovecot 2.3 gives `service auth` no `vsz_limit` by default, but sites set
//! `default_vsz_limit`-style limits; the runtime here keeps to two async workers with 1 MiB
//! stacks, at most four extra blocking threads, and two malloc arenas, which stays far below
//! 256 MiB (see conf.example/dovecot-replace-auth.yaml).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;

use saslgate::config;
use saslgate::server::{self, inherited, listener};

/// Dovecot's `FATAL_DEFAULT` exit status: the process logged its own fatal error.
const FATAL_DEFAULT: u8 = 89;
/// Dovecot splits log lines at PIPE_BUF so each write stays atomic on the shared pipe.
const PIPE_BUF: usize = 4096;

/// Dovecot's `enum log_type`.
#[derive(Clone, Copy)]
enum LogType {
    Debug = 0,
    Info = 1,
    Warning = 2,
    Error = 3,
    Fatal = 4,
}

/// One log record in Dovecot's internal format, split into PIPE_BUF-sized lines each with the
/// `\x01<type+1><pid> ` prefix. Embedded line feeds start a new prefixed line.
fn dovecot_log_lines(kind: LogType, pid: u32, text: &[u8]) -> Vec<u8> {
    let prefix = {
        let mut p = vec![1u8, kind as u8 + 1];
        p.extend_from_slice(pid.to_string().as_bytes());
        p.push(b' ');
        p
    };
    let room = PIPE_BUF - prefix.len() - 1;
    let mut out = Vec::with_capacity(text.len() + prefix.len() + 1);
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        for chunk in line.chunks(room) {
            out.extend_from_slice(&prefix);
            out.extend_from_slice(chunk);
            out.push(b'\n');
        }
    }
    out
}

/// Formats an early (pre-logging) fatal error for Dovecot's log and exits with FATAL_DEFAULT.
fn fatal(e: &anyhow::Error) -> ExitCode {
    let text = format!("saslgate --dovecot-service: {e:#}");
    let _ = std::io::stderr().write_all(&dovecot_log_lines(LogType::Fatal, std::process::id(), text.as_bytes()));
    ExitCode::from(FATAL_DEFAULT)
}

/// A `MakeWriter` that turns each formatted event into Dovecot log lines, by the event's level.
#[derive(Clone)]
struct DovecotLog {
    inner: tracing_appender::non_blocking::NonBlocking,
    pid: u32,
}

struct EventWriter {
    inner: tracing_appender::non_blocking::NonBlocking,
    pid: u32,
    kind: LogType,
    buf: Vec<u8>,
}

impl std::io::Write for EventWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let lines = dovecot_log_lines(self.kind, self.pid, &self.buf);
            let _ = self.inner.write_all(&lines);
        }
    }
}

impl<'a> MakeWriter<'a> for DovecotLog {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter { inner: self.inner.clone(), pid: self.pid, kind: LogType::Info, buf: Vec::new() }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter {
        let kind = match *meta.level() {
            tracing::Level::ERROR => LogType::Error,
            tracing::Level::WARN => LogType::Warning,
            tracing::Level::INFO => LogType::Info,
            _ => LogType::Debug,
        };
        EventWriter { inner: self.inner.clone(), pid: self.pid, kind, buf: Vec::new() }
    }
}

fn init_logging(level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SASLGATE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(std::io::stderr());
    // Dovecot's log process adds the time, "auth: " and the level itself.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_writer(DovecotLog { inner: writer, pid: std::process::id() })
        .init();
    guard
}

/// Runs the daemon on the sockets Dovecot's master handed over.
pub(crate) fn main(config_path: Option<PathBuf>) -> ExitCode {
    // The descriptors first, before anything else opens a file.
    let handover = match inherited::take() {
        Ok(h) => h,
        Err(e) => return fatal(&e.into()),
    };
    // Before any thread exists.
    inherited::limit_malloc_arenas(2);
    match run(config_path, handover) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            fatal(&e)
        }
    }
}

fn run(config_path: Option<PathBuf>, handover: inherited::Handover) -> anyhow::Result<ExitCode> {
    let path = config_path.context("--dovecot-service needs --config FILE (the passdbs and userdbs; the sockets come from Dovecot)")?;
    let config = config::load_for_dovecot_service(&path)?;
    let _log_guard = init_logging(&config.log_level);
    for w in &config.warnings {
        tracing::warn!(file = %w.file, line = w.line, setting = %w.setting, "config: {}", w.message);
    }
    if !config.listeners.is_empty() {
        tracing::info!(
            "--dovecot-service: the {} `listeners:` of {} are ignored; Dovecot's `service auth` unix_listeners are served instead",
            config.listeners.len(),
            config.source
        );
    }
    if handover.listeners.is_empty() {
        tracing::warn!("--dovecot-service: Dovecot handed over no sockets (SOCKET_COUNT=0)");
    }
    // With `drop_priv_before_exec = no` (the default) the master starts us as root and leaves
    // the drop to `service auth { user }` (RESTRICT_USER) to us, as its own processes do; a
    // `user:` in the YAML wins.
    let (user, group) = match &config.user {
        Some(u) => (Some(u.clone()), config.group.clone()),
        None => restrict_from_env()?,
    };
    listener::drop_privileges(user.as_deref(), group.as_deref(), &config.extra_groups)?;
    let pool =
        saslgate::blocking::Pool::with_priority(config.pool.threads, config.pool.queue, config.pool.priority).context("cannot start the blocking pool")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .thread_stack_size(1024 * 1024)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let inherited::Handover { listeners: handed, status, dead, generation, client_limit } = handover;
    runtime.block_on(async {
        let auth = Arc::new(saslgate::auth::Authenticator::from_config(&config, &pool));
        let shared = Arc::new(server::Shared::new(&config, auth));
        let mut listeners = Vec::new();
        for (l, c) in handed {
            tracing::debug!(socket = %c.path.display(), kind = ?c.kind, "serving the socket from Dovecot's master");
            listeners.push((tokio::net::UnixListener::from_std(l)?, c));
        }
        // Tell the master we are up (it kills a process without a first status in 30 s). The
        // pipe is shared with the master's other children; 12 bytes is one atomic write.
        let record = inherited::status_record(std::process::id(), generation, client_limit);
        let mut status = std::fs::File::from(status);
        if let Err(e) = status.write_all(&record) {
            tracing::error!("cannot write the status record to Dovecot's master: {e}");
        }
        server::flush_cache_on_sighup(&shared);
        tracing::info!(config = %config.source, sockets = listeners.len(), pool_threads = pool.threads(), "saslgate started as Dovecot's auth service");
        let max_connections = config.limits.max_connections.min(client_limit.max(1) as usize);
        server::run(listeners, shared, max_connections, stop_signal(dead)).await;
        drop(status);
        anyhow::Ok(())
    })?;
    tracing::info!("saslgate stopped");
    Ok(ExitCode::SUCCESS)
}

/// The account `service auth { user }` names, from the master's RESTRICT_SETUID/RESTRICT_SETGID
/// (numbers) or RESTRICT_USER (a name), as names for `drop_privileges`.
fn restrict_from_env() -> anyhow::Result<(Option<String>, Option<String>)> {
    use nix::unistd::{Gid, Group, Uid, User};
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<u32>().ok());
    let user = match num("RESTRICT_SETUID") {
        Some(uid) => Some(User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name).with_context(|| format!("RESTRICT_SETUID={uid}: no such user"))?),
        None => std::env::var("RESTRICT_USER").ok().filter(|u| !u.is_empty()),
    };
    let group = match num("RESTRICT_SETGID") {
        Some(gid) if user.is_some() => {
            Some(Group::from_gid(Gid::from_raw(gid)).ok().flatten().map(|g| g.name).with_context(|| format!("RESTRICT_SETGID={gid}: no such group"))?)
        }
        _ => None,
    };
    Ok((user, group))
}

/// Completes when the master is gone (fd 6) or sends SIGTERM. SIGINT is received and ignored (the master's idle kill; Dovecot's auth ignores it too).
async fn stop_signal(dead: std::os::fd::OwnedFd) {
    use tokio::signal::unix::{signal, SignalKind};
    let master_gone = async move {
        match inherited::master_gone(dead).await {
            Ok(()) => tracing::info!("Dovecot's master is gone (fd 6 closed): stopping"),
            Err(e) => {
                tracing::warn!("cannot watch fd 6 for the master's exit ({e}); stopping on SIGTERM only");
                std::future::pending::<()>().await;
            }
        }
    };
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        master_gone.await;
        return;
    };
    let ignore_int = async move {
        while int.recv().await.is_some() {
            tracing::debug!("SIGINT from Dovecot's master (idle kill) ignored: login processes keep their auth connections");
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = master_gone => {}
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = ignore_int => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_have_dovecots_prefix() {
        assert_eq!(dovecot_log_lines(LogType::Error, 42, b"boom\n"), b"\x01\x0442 boom\n");
        assert_eq!(dovecot_log_lines(LogType::Info, 7, b"a\nb"), b"\x01\x027 a\n\x01\x027 b\n");
        let long = vec![b'x'; 5000];
        let out = dovecot_log_lines(LogType::Debug, 1, &long);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() < PIPE_BUF && l.starts_with(b"\x01\x011 ")));
    }
}
