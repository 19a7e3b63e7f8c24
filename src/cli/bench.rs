//! `saslgate bench`: a load generator that speaks the Dovecot auth *client* protocol.
//!
//! It works against any client-protocol socket: saslgate's own, or the real Dovecot's
//! `auth-client`, which is what makes side-by-side numbers possible
//! (`scripts/bench-vs-dovecot.sh`).
//!
//! # What one run does
//!
//! 1. Opens `C` connections one after the other and does the handshake on each: sends
//!    `VERSION 1 2` and a `CPID` (distinct per connection: Dovecot refuses a CPID that belongs to
//!    a live connection), then reads server lines until `DONE`, checking that the server speaks
//!    major version 1 and offers `PLAIN`.
//! 2. Keeps `P` `AUTH` requests in flight on every connection (pipelined, distinct ids,
//!    `PLAIN` with the whole SASL exchange in `resp=`, `service=bench`, `no-penalty`). Replies
//!    may come in any order; they are matched by id. Every final reply immediately starts the
//!    next request on that connection; the new lines of one read are sent in one write.
//! 3. Completions during the first `--warmup` seconds are not counted. After that, every
//!    `OK`/`FAIL` that arrives inside the measured window counts, and its latency (from writing
//!    the AUTH line to reading the reply) is kept. The window ends after `--duration` seconds,
//!    or once `--count` auths were counted.
//! 4. No new request starts after the window; requests still in flight are drained (not
//!    counted) for at most [`DRAIN`], so the server is idle again when the next run begins.
//!
//! With `--idle` the connections only do the handshake and then stay open, silent, for
//! `--duration` seconds: that measures the server's memory per idle connection.
//!
//! `--expect ok` (the default) makes every `FAIL` an error of the run, and the exit status is
//! nonzero; `--expect fail` does the same for `OK`. A connection that breaks the protocol or
//! goes away ends the whole run with an error.
//!
//! The results are printed for humans, or with `--kv` as one `key=value` line for scripts
//! (no JSON: the crate has no JSON dependency, and the line is all numbers).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::time::Instant;

use saslgate::client::Connection;
use saslgate::protocol::escape::escape;
use saslgate::protocol::line::{next_line, Frame};
use saslgate::protocol::{base64, parse_u32, sanitize, split_tabs, CLIENT_MAX_LINE, REQUEST_TIMEOUT_SECS};

/// How long requests still in flight at the end of the window may take to come back.
pub(crate) const DRAIN: Duration = Duration::from_secs(30);
/// Silence (no byte from the server while requests are pending) that ends the run as an error.
const STALL: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + 10);
/// Time allowed for connecting and for the whole handshake of one connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Latency samples kept; later completions are still counted, but not in the percentiles.
const MAX_SAMPLES: usize = 1 << 25;
/// Upper bound of `--connections`.
const MAX_CONNECTIONS: u32 = 100_000;
/// Upper bound of `--pipeline`.
const MAX_PIPELINE: u32 = 65_536;

/// Command-line arguments of `saslgate bench`.
// No `Debug`: it holds the password sent.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Client-protocol socket to load (saslgate's or Dovecot's auth-client).
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: PathBuf,
    /// User name sent in the PLAIN response.
    #[arg(short, long, default_value = "plain")]
    pub(crate) user: String,
    /// Password sent in the PLAIN response.
    #[arg(long, default_value = "secret")]
    pub(crate) password: String,
    /// Connections opened (C). `-c` is taken by the global --config option.
    #[arg(short = 'C', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONNECTIONS)))]
    pub(crate) connections: u32,
    /// Requests in flight per connection (P), pipelined with distinct ids.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PIPELINE)))]
    pub(crate) pipeline: u32,
    /// Seconds measured after the warmup [default: 10, or no limit with --count].
    #[arg(short, long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Stop after this many measured auths.
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Seconds of load before measuring starts.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// The reply every auth must get; any other reply makes the exit status nonzero.
    #[arg(long, value_enum, default_value_t = Expect::Ok)]
    pub(crate) expect: Expect,
    /// `service=` sent with every AUTH.
    #[arg(long, default_value = "bench")]
    pub(crate) service: String,
    /// Only open the connections, do the handshake and hold them idle for --duration seconds.
    #[arg(long, conflicts_with_all = ["count", "warmup"])]
    pub(crate) idle: bool,
    /// Threads of the load generator's runtime (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) threads: u16,
    /// Print one `key=value ...` line on stdout instead of the human report.
    #[arg(long)]
    pub(crate) kv: bool,
}

/// The reply every auth of a run is expected to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Expect {
    /// `OK`: a `FAIL` is an error of the run.
    Ok,
    /// `FAIL`: an `OK` is an error of the run.
    Fail,
}

/// Runs the benchmark.
pub(crate) fn main(args: Args) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(&args)?;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(args.threads)).enable_all().build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if args.idle {
            run_idle(&args, plan).await
        } else {
            run_load(&args, plan).await
        }
    })
}

/// What every connection needs to know, fixed before the first byte is sent.
struct Plan {
    socket: PathBuf,
    connections: u32,
    pipeline: u32,
    warmup: Duration,
    duration: Option<Duration>,
    count: Option<u64>,
    /// `\tPLAIN\tservice=...\tno-penalty\tresp=...\n`: everything after the id.
    auth_suffix: Vec<u8>,
}

impl Plan {
    fn new(args: &Args) -> anyhow::Result<Plan> {
        let seconds = |name: &str, value: f64| -> anyhow::Result<Duration> {
            if !value.is_finite() || !(0.0..=86_400.0).contains(&value) {
                bail!("--{name} must be between 0 and 86400 seconds, not {value}");
            }
            Ok(Duration::from_secs_f64(value))
        };
        let warmup = seconds("warmup", args.warmup)?;
        let duration = match (args.duration, args.count) {
            (Some(d), _) => Some(seconds("duration", d)?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        };
        if duration == Some(Duration::ZERO) && !args.idle {
            bail!("--duration must be more than 0");
        }
        if args.service.is_empty() {
            bail!("--service must not be empty");
        }
        let mut sasl = Vec::with_capacity(args.user.len() + args.password.len() + 2);
        sasl.push(0);
        sasl.extend_from_slice(args.user.as_bytes());
        sasl.push(0);
        sasl.extend_from_slice(args.password.as_bytes());
        let mut auth_suffix = b"\tPLAIN\tservice=".to_vec();
        auth_suffix.extend_from_slice(&escape(args.service.as_bytes()));
        auth_suffix.extend_from_slice(b"\tno-penalty\tresp=");
        auth_suffix.extend_from_slice(base64::encode(&sasl).as_bytes());
        auth_suffix.push(b'\n');
        // "AUTH\t" + the longest id + the suffix must fit in the server's line limit.
        if auth_suffix.len() + 16 > CLIENT_MAX_LINE {
            bail!("the AUTH line would be longer than {CLIENT_MAX_LINE} bytes; use a shorter user or password");
        }
        Ok(Plan { socket: args.socket.clone(), connections: args.connections, pipeline: args.pipeline, warmup, duration, count: args.count, auth_suffix })
    }
}

/// A connection after its handshake, with any bytes the server sent after `DONE`.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// Reads from the stream into `buf` (which holds less than [`CLIENT_MAX_LINE`] bytes).
/// Returns false at end of file.
async fn fill(stream: &mut UnixStream, buf: &mut Vec<u8>, chunk: &mut [u8]) -> anyhow::Result<bool> {
    let room = CLIENT_MAX_LINE.saturating_sub(buf.len()).clamp(1, chunk.len());
    let n = stream.read(&mut chunk[..room]).await.context("read from the server failed")?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Removes and returns the complete lines at the start of `buf`, or an error for an overlong one.
fn take_lines(buf: &mut Vec<u8>, mut each: impl FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut pos = 0;
    loop {
        match next_line(&buf[pos..], CLIENT_MAX_LINE).context("the server broke the protocol")? {
            Frame::Incomplete => break,
            Frame::Line { len, consumed } => {
                each(&buf[pos..pos + len])?;
                pos += consumed;
            }
        }
    }
    buf.drain(..pos);
    Ok(())
}

/// Connects and does the client handshake. `cpid` must differ between live connections.
async fn connect(socket: &std::path::Path, cpid: u32) -> anyhow::Result<Conn> {
    let (conn, handshake) = Connection::client(socket, 2, cpid).await.with_context(|| format!("cannot connect to {}", socket.display()))?;
    if !handshake.mechs.iter().any(|m| m.eq_ignore_ascii_case("PLAIN")) {
        bail!("the server does not offer the PLAIN mechanism");
    }
    let (stream, buf) = conn.into_parts();
    Ok(Conn { stream, buf })
}

/// Opens every connection, with CPIDs derived from our PID (distinct per connection).
async fn connect_all(plan: &Plan) -> anyhow::Result<Vec<Conn>> {
    let base = std::process::id().wrapping_mul(1 << 17);
    let mut conns = Vec::with_capacity(plan.connections as usize);
    for n in 0..plan.connections {
        let mut cpid = base.wrapping_add(n);
        if cpid == 0 {
            cpid = u32::MAX;
        }
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(&plan.socket, cpid))
            .await
            .map_err(|_| anyhow::anyhow!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()))
            .and_then(|r| r)
            .with_context(|| format!("connection {} of {}", n + 1, plan.connections))?;
        conns.push(conn);
    }
    Ok(conns)
}

async fn run_idle(args: &Args, plan: Plan) -> anyhow::Result<ExitCode> {
    let conns = connect_all(&plan).await?;
    let hold = plan.duration.unwrap_or(Duration::from_secs(10));
    if args.kv {
        println!("idle_connections={} hold_s={}", conns.len(), hold.as_secs_f64());
    } else {
        println!("{} idle connections open on {}; holding them for {:.1} s", conns.len(), plan.socket.display(), hold.as_secs_f64());
    }
    tokio::time::sleep(hold).await;
    drop(conns);
    Ok(ExitCode::SUCCESS)
}

/// The state shared by every connection of a load run.
struct Shared {
    measure_start: Instant,
    measure_end: Option<Instant>,
    count: Option<u64>,
    /// Auths counted so far (only maintained with --count).
    counted: AtomicU64,
    /// Set once the window is over: no new requests.
    stop: AtomicBool,
    /// When the window ended because --count was reached.
    stopped_at: OnceLock<Instant>,
    suffix: Vec<u8>,
    pipeline: u32,
}

impl Shared {
    /// Whether a completion at `now` is counted; with --count, also claims one of the count.
    fn counts(&self, now: Instant) -> bool {
        if now < self.measure_start || self.measure_end.is_some_and(|end| now > end) {
            return false;
        }
        match self.count {
            None => true,
            Some(limit) => {
                let before = self.counted.fetch_add(1, Ordering::Relaxed);
                if before + 1 >= limit {
                    self.stop.store(true, Ordering::Relaxed);
                    let _ = self.stopped_at.set(now);
                }
                before < limit
            }
        }
    }

    fn over(&self, now: Instant) -> bool {
        self.stop.load(Ordering::Relaxed) || self.measure_end.is_some_and(|end| now >= end)
    }
}

/// What one connection measured.
#[derive(Default)]
struct Stats {
    ok: u64,
    fail: u64,
    /// Latencies of counted auths, in nanoseconds.
    latencies: Vec<u64>,
    /// Samples not kept because [`MAX_SAMPLES`] was reached (per connection share).
    dropped_samples: u64,
    /// Requests still unanswered when the drain time ran out.
    unfinished: u64,
    /// Every final reply, counted or not (warmup and drain included): what the server did.
    replies: u64,
    /// The first reply that did not match --expect, for the report.
    first_unexpected: Option<String>,
}

async fn run_load(args: &Args, plan: Plan) -> anyhow::Result<ExitCode> {
    let conns = connect_all(&plan).await?;
    let start = Instant::now();
    let measure_start = start + plan.warmup;
    let shared = Arc::new(Shared {
        measure_start,
        measure_end: plan.duration.map(|d| measure_start + d),
        count: plan.count,
        counted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        stopped_at: OnceLock::new(),
        suffix: plan.auth_suffix.clone(),
        pipeline: plan.pipeline,
    });
    let per_conn_samples = MAX_SAMPLES / conns.len();
    let expect = args.expect;
    let mut tasks = Vec::with_capacity(conns.len());
    for conn in conns {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(drive(conn, shared, expect, per_conn_samples)));
    }
    let mut total = Stats::default();
    let mut first_error = None;
    for (n, task) in tasks.into_iter().enumerate() {
        let result = match task.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("task failed: {e}")),
        };
        match result {
            Ok(s) => {
                total.ok += s.ok;
                total.fail += s.fail;
                total.dropped_samples += s.dropped_samples;
                total.unfinished += s.unfinished;
                total.replies += s.replies;
                total.latencies.extend_from_slice(&s.latencies);
                if total.first_unexpected.is_none() {
                    total.first_unexpected = s.first_unexpected;
                }
            }
            Err(e) => {
                // Stop the others at once; the first error is the one reported.
                shared.stop.store(true, Ordering::Relaxed);
                if first_error.is_none() {
                    first_error = Some(e.context(format!("connection {} of {}", n + 1, plan.connections)));
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let window = match (shared.stopped_at.get(), shared.measure_end) {
        (Some(at), _) => at.saturating_duration_since(measure_start),
        (None, Some(end)) => end.saturating_duration_since(measure_start),
        (None, None) => Instant::now().saturating_duration_since(measure_start),
    };
    report(args, &plan, total, window)
}

/// Appends `AUTH\t<id><suffix>` to `out` and notes when it was sent.
fn push_auth(out: &mut Vec<u8>, next_id: &mut u32, suffix: &[u8], pending: &mut HashMap<u32, Instant>, now: Instant) {
    // Ids are non-zero and never reused while a request with the same id is pending.
    loop {
        *next_id = next_id.wrapping_add(1);
        if *next_id != 0 && !pending.contains_key(next_id) {
            break;
        }
    }
    let _ = write!(ByteWriter(out), "AUTH\t{next_id}");
    out.extend_from_slice(suffix);
    pending.insert(*next_id, now);
}

/// `fmt::Write` into a byte vector, to format numbers without a temporary String.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Runs the request loop of one connection until the window ends and the drain is over.
async fn drive(conn: Conn, shared: Arc<Shared>, expect: Expect, max_samples: usize) -> anyhow::Result<Stats> {
    let Conn { mut stream, mut buf } = conn;
    let mut chunk = vec![0u8; CLIENT_MAX_LINE];
    let mut stats = Stats::default();
    let mut pending: HashMap<u32, Instant> = HashMap::with_capacity(shared.pipeline as usize * 2);
    let mut next_id = 0u32;
    let mut out = Vec::with_capacity(shared.suffix.len() * shared.pipeline as usize + 64);
    let now = Instant::now();
    for _ in 0..shared.pipeline {
        push_auth(&mut out, &mut next_id, &shared.suffix, &mut pending, now);
    }
    stream.write_all(&out).await.context("cannot send AUTH")?;
    out.clear();
    let mut draining: Option<Instant> = None; // the drain deadline once the window is over
    let mut last_read = now;
    let sleep = tokio::time::sleep_until(now + STALL);
    tokio::pin!(sleep);
    loop {
        let now = Instant::now();
        if draining.is_none() && shared.over(now) {
            draining = Some(now + DRAIN);
        }
        if draining.is_some() && pending.is_empty() {
            break;
        }
        // Wake up at the end of the window (to stop sending), of the drain (to give up), or
        // when the server has been silent for too long.
        let stall_at = last_read + STALL;
        let wake = match (draining, shared.measure_end) {
            (Some(deadline), _) => deadline.min(stall_at),
            (None, Some(end)) => end.min(stall_at),
            (None, None) => stall_at,
        };
        if sleep.deadline() != wake {
            sleep.as_mut().reset(wake);
        }
        tokio::select! {
            biased;
            r = fill(&mut stream, &mut buf, &mut chunk) => {
                if !r? {
                    bail!("the server closed the connection with {} requests pending", pending.len());
                }
            }
            () = &mut sleep => {
                let now = Instant::now();
                if draining.is_some_and(|d| now >= d) {
                    stats.unfinished = pending.len() as u64;
                    break;
                }
                if now >= stall_at {
                    bail!("no reply for {} s with {} requests pending", STALL.as_secs(), pending.len());
                }
                continue;
            }
        }
        let now = Instant::now();
        last_read = now;
        let mut replaced = 0u32;
        take_lines(&mut buf, |line| {
            let fields = split_tabs(line);
            let (verb, id) = match fields.as_slice() {
                [verb, id, ..] => (*verb, *id),
                _ => bail!("unexpected line from the server: {}", sanitize(line, 80)),
            };
            let ok = match verb {
                b"OK" => true,
                b"FAIL" => false,
                b"CONT" => bail!("the server sent CONT although AUTH carried the whole PLAIN response"),
                _ => bail!("unexpected reply {}", sanitize(line, 80)),
            };
            let sent = parse_u32(id)
                .and_then(|id| pending.remove(&id))
                .ok_or_else(|| anyhow::anyhow!("reply for an id that is not pending: {}", sanitize(line, 80)))?;
            replaced += 1;
            stats.replies += 1;
            if !shared.counts(now) {
                return Ok(());
            }
            if ok {
                stats.ok += 1;
            } else {
                stats.fail += 1;
            }
            if ok != (expect == Expect::Ok) && stats.first_unexpected.is_none() {
                let shown: Vec<u8> = line.iter().map(|&b| if b == b'\t' { b' ' } else { b }).collect();
                stats.first_unexpected = Some(sanitize(&shown, 200));
            }
            if stats.latencies.len() < max_samples {
                let nanos = u64::try_from(now.saturating_duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
                stats.latencies.push(nanos);
            } else {
                stats.dropped_samples += 1;
            }
            Ok(())
        })?;
        if draining.is_none() && !shared.over(now) {
            for _ in 0..replaced {
                push_auth(&mut out, &mut next_id, &shared.suffix, &mut pending, now);
            }
            if !out.is_empty() {
                stream.write_all(&out).await.context("cannot send AUTH")?;
                out.clear();
            }
        }
    }
    Ok(stats)
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let idx = rank.clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1e6
}

fn report(args: &Args, plan: &Plan, mut total: Stats, window: Duration) -> anyhow::Result<ExitCode> {
    total.latencies.sort_unstable();
    let lat = &total.latencies;
    let auths = total.ok + total.fail;
    let secs = window.as_secs_f64();
    let rate = if secs > 0.0 { auths as f64 / secs } else { 0.0 };
    let p50 = percentile_ms(lat, 0.50);
    let p99 = percentile_ms(lat, 0.99);
    let max = lat.last().map_or(f64::NAN, |&n| n as f64 / 1e6);
    let mean = if lat.is_empty() { f64::NAN } else { lat.iter().map(|&n| n as f64).sum::<f64>() / lat.len() as f64 / 1e6 };
    let unexpected = match args.expect {
        Expect::Ok => total.fail,
        Expect::Fail => total.ok,
    };
    if args.kv {
        println!(
            "auths={auths} ok={} fail={} seconds={secs:.3} rate={rate:.1} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3} mean_ms={mean:.3} connections={} pipeline={} unfinished={} unexpected={unexpected} replies={}",
            total.ok, total.fail, plan.connections, plan.pipeline, total.unfinished, total.replies
        );
    } else {
        println!(
            "saslgate bench: {}  PLAIN user={}  C={} P={}  {secs:.2} s measured after {:.2} s warmup",
            plan.socket.display(),
            sanitize(args.user.as_bytes(), 64),
            plan.connections,
            plan.pipeline,
            plan.warmup.as_secs_f64()
        );
        println!("  auths        {auths}  (ok {}, fail {})", total.ok, total.fail);
        println!("  rate         {rate:.1} auths/s");
        println!("  latency ms   p50 {p50:.3}  p99 {p99:.3}  max {max:.3}  mean {mean:.3}");
        if total.unfinished > 0 {
            println!("  unfinished   {} requests got no reply within {} s after the window", total.unfinished, DRAIN.as_secs());
        }
        if total.dropped_samples > 0 {
            println!("  note         {} latencies not kept (sample limit); percentiles cover the rest", total.dropped_samples);
        }
    }
    if auths == 0 {
        eprintln!("saslgate bench: no auth completed in the measured window");
        return Ok(ExitCode::FAILURE);
    }
    if unexpected > 0 {
        let want = match args.expect {
            Expect::Ok => "OK",
            Expect::Fail => "FAIL",
        };
        eprintln!(
            "saslgate bench: {unexpected} of {auths} auths did not get {want} (--expect {}); first: {}",
            if want == "OK" { "ok" } else { "fail" },
            total.first_unexpected.as_deref().unwrap_or("?")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|n| n * 1_000_000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 50.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v, 1.0), 100.0);
        assert_eq!(percentile_ms(&[7_000_000], 0.99), 7.0);
        assert!(percentile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn auth_lines_are_well_formed() {
        let mut out = Vec::new();
        let mut pending = HashMap::new();
        let mut id = u32::MAX - 1;
        let now = Instant::now();
        push_auth(&mut out, &mut id, b"\tPLAIN\tservice=bench\n", &mut pending, now);
        push_auth(&mut out, &mut id, b"\tPLAIN\tservice=bench\n", &mut pending, now);
        // The id wraps past 0.
        assert_eq!(out, b"AUTH\t4294967295\tPLAIN\tservice=bench\nAUTH\t1\tPLAIN\tservice=bench\n");
        assert_eq!(pending.len(), 2);
    }

    #[test]
    fn take_lines_keeps_partial_input() {
        let mut buf = b"OK\t1\nFAIL\t2\tx\nOK\t3".to_vec();
        let mut seen = Vec::new();
        take_lines(&mut buf, |l| {
            seen.push(l.to_vec());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen, vec![b"OK\t1".to_vec(), b"FAIL\t2\tx".to_vec()]);
        assert_eq!(buf, b"OK\t3");
    }
}
