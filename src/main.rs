//! The `saslgate` binary: parse the command line, then run the daemon or a tool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod cli;

// mimalloc: about a third less CPU than glibc's malloc for the small, short-lived allocations of
// a cheap login (measured with scripts/bench-vs-dovecot.sh; see the README's numbers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use saslgate::config::{self, Config};
use saslgate::server::{self, listener};

#[derive(Parser)]
#[command(name = "saslgate", version, about = "SASL authentication daemon speaking Dovecot's auth protocol")]
struct Cli {
    /// Config file (YAML). Without it, an embedded demo config runs with sockets under ./run/.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Run as Dovecot's auth executable (`service auth { executable = saslgate --dovecot-service
    /// --config F }`): serve the sockets Dovecot's master hands over, log in its format.
    #[arg(long, global = true)]
    dovecot_service: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config file and exit (0 when it is valid).
    Check,
    /// Load generator: authenticate over the client protocol as fast as possible.
    Bench(cli::bench::Args),
    /// List, generate and test password hashes (like `doveadm pw`).
    Pw(cli::pw::Args),
    /// The auth cache of a running daemon.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Flush the whole cache, or the entries of the users named (like `doveadm auth cache flush`).
    Flush {
        /// The daemon's master socket (default: the first master listener of the config).
        #[arg(short = 'a', long = "socket")]
        socket: Option<PathBuf>,
        /// Users whose entries to flush; none flushes everything.
        users: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None if cli.dovecot_service => return cli::dovecot_service::main(cli.config),
        None => run_daemon(cli.config),
        Some(Command::Check) => check(cli.config, cli.dovecot_service),
        Some(Command::Bench(args)) => cli::bench::main(args),
        Some(Command::Pw(args)) => Ok(cli::pw::main(args)),
        Some(Command::Cache { action: CacheAction::Flush { socket, users } }) => cache_flush(cli.config, socket, &users),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("saslgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(config::load(&path)?),
        None => {
            let dir = std::env::current_dir()?.join("run");
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let users = dir.join("users.passwd");
            if !users.exists() {
                std::fs::write(&users, config::EMBEDDED_USERS).with_context(|| format!("cannot write {}", users.display()))?;
            }
            Ok(config::parse(config::EMBEDDED_DEFAULT, "<embedded default>", &dir)?)
        }
    }
}

fn check(path: Option<PathBuf>, dovecot_service: bool) -> anyhow::Result<ExitCode> {
    // With --dovecot-service the sockets come from Dovecot: `listeners:` may be empty.
    let config = match (path, dovecot_service) {
        (Some(path), true) => config::load_for_dovecot_service(&path)?,
        (path, _) => load_config(path)?,
    };
    // Warnings go to stderr, one line each (file:line: setting: message), like errors; the
    // verdict stays on stdout. A config with warnings is still valid: exit 0.
    for w in &config.warnings {
        eprintln!("saslgate: warning: {w}");
    }
    let warnings = match config.warnings.len() {
        0 => String::new(),
        1 => ", 1 warning".to_owned(),
        n => format!(", {n} warnings"),
    };
    println!("{}: ok ({} listeners, {} passdbs, {} userdbs{warnings})", config.source, config.listeners.len(), config.passdbs.len(), config.userdbs.len());
    Ok(ExitCode::SUCCESS)
}

fn cache_flush(config: Option<PathBuf>, socket: Option<PathBuf>, users: &[String]) -> anyhow::Result<ExitCode> {
    let socket = match socket {
        Some(s) => s,
        None => {
            let config = load_config(config)?;
            config
                .listeners
                .iter()
                .find(|l| l.kind == config::ListenerKind::Master)
                .map(|l| l.path.clone())
                .ok_or_else(|| anyhow::anyhow!("{}: no master listener; give its socket with -a", config.source))?
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start a runtime")?;
    runtime.block_on(async {
        let wait = std::time::Duration::from_secs(10);
        let mut conn = tokio::time::timeout(wait, saslgate::client::Connection::master(&socket))
            .await
            .map_err(|_| anyhow::anyhow!("{}: no handshake within {wait:?}", socket.display()))?
            .with_context(|| format!("cannot talk to {} (is it a master socket?)", socket.display()))?;
        conn.send(&saslgate::client::cache_flush(1, users)).await?;
        let reply = conn.line_within(wait).await.with_context(|| format!("no reply from {}", socket.display()))?;
        let reply = String::from_utf8_lossy(&reply);
        match reply.strip_prefix("OK\t1\t") {
            Some(count) => {
                println!("{count} cache entries flushed");
                Ok(ExitCode::SUCCESS)
            }
            None => anyhow::bail!("unexpected reply from {}: {reply:?}", socket.display()),
        }
    })
}

/// Logs go to stderr through a writer thread, so a request task never waits for a `write(2)`.
/// Nothing is dropped: when the queue is full, logging waits (lossy mode off). The returned
/// guard flushes the queue when dropped at exit.
fn init_logging(level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SASLGATE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    // The writer thread flushes after each batch it drains, so a buffer turns a burst of lines
    // into one write(2) without holding any line back.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(stderr);
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer).init();
    guard
}

fn run_daemon(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let _log_guard = init_logging(&config.log_level);
    // Collected while the config was validated, before logging existed.
    for w in &config.warnings {
        tracing::warn!(file = %w.file, line = w.line, setting = %w.setting, "config: {}", w.message);
    }
    raise_open_files(&config);
    // 1. Bind every socket while still privileged (before a client byte is read).
    let mut bound = Vec::new();
    for l in &config.listeners {
        bound.push((listener::bind(l)?, l.clone()));
    }
    // 2. Drop privileges before a single client byte is read.
    listener::drop_privileges(config.user.as_deref(), config.group.as_deref(), &config.extra_groups)?;
    // 3. Start the blocking pool and the runtime.
    let pool =
        saslgate::blocking::Pool::with_priority(config.pool.threads, config.pool.queue, config.pool.priority).context("cannot start the blocking pool")?;
    // One reactor thread by default (`reactor.threads`): measured against two at C=64 P=4, about
    // a quarter less CPU per cheap login and a shorter p99, at most logins/s a mail server sees.
    let runtime = match config.reactor_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let auth = Arc::new(saslgate::auth::Authenticator::from_config(&config, &pool));
        let shared = Arc::new(server::Shared::new(&config, auth));
        let mut listeners = Vec::new();
        for (l, c) in bound {
            listeners.push((listener::into_tokio(l)?, c));
        }
        for l in &config.listeners {
            tracing::info!(socket = %l.path.display(), kind = ?l.kind, "listening");
        }
        tracing::info!(config = %config.source, pool_threads = pool.threads(), "saslgate started");
        server::flush_cache_on_sighup(&shared);
        // SIGTERM: stop accepting, let requests in flight finish (at most
        // limits.shutdown_timeout), then exit.
        server::run(listeners, shared, config.limits.max_connections, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    listener::remove_sockets(&config.listeners);
    tracing::info!("saslgate stopped");
    Ok(ExitCode::SUCCESS)
}

/// Every listener has its own connection budget, so the daemon may hold more descriptors than
/// a default soft limit (1024) allows: raise the soft limit to the hard one, and say so when
/// even that is too low for the budgets.
fn raise_open_files(config: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed: u64 = config.listeners.iter().map(|l| l.max_connections.unwrap_or(config.limits.max_connections) as u64).sum::<u64>() + 256;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let mut limit = soft;
    if soft < needed && hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        limit = hard;
    }
    if limit < needed {
        tracing::warn!(
            open_files = limit,
            needed,
            "the connection budgets of the listeners need more file descriptors than allowed; raise LimitNOFILE or lower max_connections"
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
