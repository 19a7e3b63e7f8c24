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
//!    the AUTH line to reading the reply) is recorded. The window ends after `--duration` seconds,
//!    or once `--count` auths were counted.
//! 4. No new request starts after the window; requests still in flight are drained (not
//!    counted) for at most [`DRAIN`], so the server is idle again when the next run begins.
//!
//! The generator shares the machine with the server it loads, so it is kept cheap: the AUTH
//! line is encoded once (only the id changes), the ids name their pipeline slot (no map),
//! replies are parsed in place in one read buffer, the replacements for one read go out in one
//! write, and latencies go to a fixed log-linear histogram (under 0.8% error; the maximum is
//! exact). Its own CPU per reply is reported (`client_cpu_us_per_reply` with `--kv`).
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
use saslgate::protocol::{base64, parse_u32, sanitize, CLIENT_MAX_LINE, REQUEST_TIMEOUT_SECS};

/// How long requests still in flight at the end of the window may take to come back.
pub(crate) const DRAIN: Duration = Duration::from_secs(30);
/// Silence (no byte from the server while requests are pending) that ends the run as an error.
const STALL: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + 10);
/// Time allowed for connecting and for the whole handshake of one connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Latencies of the counted auths.
    latencies: Histogram,
}

impl Shared {
    /// Whether a request sent at `sent` was sent inside the measured window.
    fn sent_in_window(&self, sent: Instant) -> bool {
        sent >= self.measure_start && self.measure_end.is_none_or(|end| sent <= end)
    }

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

/// Sub-buckets per power of two of the latency histogram (2^7: under 0.8% relative error).
const HIST_SUB_BITS: u32 = 7;
/// Latencies at or above 2^40 ns (about 18 minutes) land in the last bucket.
const HIST_MAX_BITS: u32 = 40;
/// Buckets: the values below 2^(SUB_BITS+1) one each, then 2^SUB_BITS per power of two.
const HIST_BUCKETS: usize = ((HIST_MAX_BITS - HIST_SUB_BITS + 1) as usize) << HIST_SUB_BITS;

/// A log-linear latency histogram in nanoseconds, shared by every connection: one relaxed atomic
/// add per sample, no allocation after it is made, a fixed size whatever the rate or duration.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { buckets: (0..HIST_BUCKETS).map(|_| AtomicU64::new(0)).collect(), count: AtomicU64::new(0), sum: AtomicU64::new(0), max: AtomicU64::new(0) }
    }

    /// The bucket of `nanos`.
    fn index(nanos: u64) -> usize {
        let v = nanos.min((1 << HIST_MAX_BITS) - 1);
        if v < 1 << (HIST_SUB_BITS + 1) {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - HIST_SUB_BITS; // >= 1; v >> shift is in [2^SUB, 2^(SUB+1))
        ((shift as usize) << HIST_SUB_BITS) + (v >> shift) as usize
    }

    /// The smallest value of a bucket and the width of the bucket.
    fn bounds(index: usize) -> (u64, u64) {
        if index < 1 << (HIST_SUB_BITS + 1) {
            return (index as u64, 1);
        }
        let shift = (index >> HIST_SUB_BITS) - 1;
        let mantissa = (index - (shift << HIST_SUB_BITS)) as u64;
        (mantissa << shift, 1 << shift)
    }

    fn record(&self, nanos: u64) {
        self.buckets[Self::index(nanos)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(nanos, Ordering::Relaxed);
        self.max.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Nearest-rank percentile in milliseconds: the middle of its bucket, at most the maximum (the
    /// top rank is the exact maximum).
    fn percentile_ms(&self, q: f64) -> f64 {
        let n = self.count.load(Ordering::Relaxed);
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        if rank == n {
            return self.max_ms();
        }
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let (low, width) = Self::bounds(i);
                let mid = low + (width - 1) / 2;
                return mid.min(self.max.load(Ordering::Relaxed)) as f64 / 1e6;
            }
        }
        self.max_ms()
    }

    fn max_ms(&self) -> f64 {
        if self.count.load(Ordering::Relaxed) == 0 {
            return f64::NAN;
        }
        self.max.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn mean_ms(&self) -> f64 {
        let n = self.count.load(Ordering::Relaxed);
        if n == 0 {
            return f64::NAN;
        }
        self.sum.load(Ordering::Relaxed) as f64 / n as f64 / 1e6
    }
}

/// What one connection measured.
#[derive(Default)]
struct Stats {
    ok: u64,
    fail: u64,
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
        latencies: Histogram::new(),
    });
    let expect = args.expect;
    let mut tasks = Vec::with_capacity(conns.len());
    for conn in conns {
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(drive(conn, shared, expect)));
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
                total.unfinished += s.unfinished;
                total.replies += s.replies;
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
    report(args, &plan, total, &shared.latencies, window)
}

/// The requests in flight on one connection: one slot per pipelined request. Slot `s` uses
/// the ids `s + 1 + k * P` (P slots), so an id names its slot, ids are never 0, and no two
/// pending requests share an id.
struct Slots {
    /// Per slot: the id of its pending request (0: none) and when it was written.
    slots: Vec<(u32, Instant)>,
    /// Per slot: the id its next request takes.
    next: Vec<u32>,
    pending: usize,
}

impl Slots {
    fn new(pipeline: u32, now: Instant) -> Slots {
        Slots { slots: vec![(0, now); pipeline as usize], next: (1..=pipeline).collect(), pending: 0 }
    }

    /// Starts a request in slot `slot` (which must be free): appends `AUTH\t<id><suffix>` to `out`.
    fn start(&mut self, slot: usize, out: &mut Vec<u8>, suffix: &[u8], now: Instant) {
        let p = self.slots.len() as u32;
        let id = self.next[slot];
        // The next id of this slot, back to the first once `id + p` would not fit.
        self.next[slot] = id.checked_add(p).unwrap_or(slot as u32 + 1);
        self.slots[slot] = (id, now);
        self.pending += 1;
        out.extend_from_slice(b"AUTH\t");
        push_decimal(out, id);
        out.extend_from_slice(suffix);
    }

    /// Ends the pending request `id`: its slot and when it was written.
    fn finish(&mut self, id: u32) -> Option<(usize, Instant)> {
        let slot = (id.checked_sub(1)? % self.slots.len() as u32) as usize;
        let (pending_id, sent) = self.slots[slot];
        if pending_id != id {
            return None;
        }
        self.slots[slot].0 = 0;
        self.pending -= 1;
        Some((slot, sent))
    }
}

/// Appends the decimal digits of `n`.
fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A final reply: whether it is `OK`, and its id.
fn parse_reply(line: &[u8]) -> anyhow::Result<(bool, u32)> {
    let (ok, rest) = if let Some(rest) = line.strip_prefix(b"OK\t") {
        (true, rest)
    } else if let Some(rest) = line.strip_prefix(b"FAIL\t") {
        (false, rest)
    } else if line.starts_with(b"CONT\t") {
        bail!("the server sent CONT although AUTH carried the whole PLAIN response");
    } else {
        bail!("unexpected reply {}", sanitize(line, 80));
    };
    let id = rest.split(|&b| b == b'\t').next().unwrap_or_default();
    match parse_u32(id) {
        Some(id) => Ok((ok, id)),
        None => bail!("unexpected reply {}", sanitize(line, 80)),
    }
}

/// How often a connection wakes up without input, to notice a stalled server or the drain's end.
const TICK: Duration = Duration::from_millis(250);
/// Read buffer of a connection: many replies per read.
const READ_BUF: usize = 64 * 1024;
const _: () = assert!(READ_BUF > CLIENT_MAX_LINE);

/// Runs the request loop of one connection until the window ends and the drain is over.
///
/// Per read: every complete reply is parsed in place (no allocation), its latency recorded, and
/// the replacement requests of the whole read go out in one write.
async fn drive(conn: Conn, shared: Arc<Shared>, expect: Expect) -> anyhow::Result<Stats> {
    let Conn { mut stream, buf: early } = conn;
    let mut buf = vec![0u8; READ_BUF];
    let mut have = early.len().min(READ_BUF);
    buf[..have].copy_from_slice(&early[..have]);
    let mut stats = Stats::default();
    let now = Instant::now();
    let mut slots = Slots::new(shared.pipeline, now);
    let mut freed: Vec<usize> = Vec::with_capacity(shared.pipeline as usize);
    let mut out = Vec::with_capacity((shared.suffix.len() + 16) * shared.pipeline as usize);
    for slot in 0..shared.pipeline as usize {
        slots.start(slot, &mut out, &shared.suffix, now);
    }
    stream.write_all(&out).await.context("cannot send AUTH")?;
    out.clear();
    let mut draining: Option<Instant> = None; // the drain deadline once the window is over
    let mut last_read = now;
    // Wakes at the end of the window (to stop sending) and every TICK (stall, drain end).
    let first_wake = shared.measure_end.map_or(now + TICK, |end| end.min(now + TICK));
    let sleep = tokio::time::sleep_until(first_wake);
    tokio::pin!(sleep);
    let mut unparsed = have > 0; // bytes that came with the handshake
    loop {
        if !unparsed {
            tokio::select! {
                biased;
                r = stream.read(&mut buf[have..]) => {
                    let n = r.context("read from the server failed")?;
                    if n == 0 {
                        bail!("the server closed the connection with {} requests pending", slots.pending);
                    }
                    have += n;
                }
                () = &mut sleep => {
                    let now = Instant::now();
                    if draining.is_none() && shared.over(now) {
                        draining = Some(now + DRAIN);
                    }
                    if draining.is_some() && slots.pending == 0 {
                        break;
                    }
                    if draining.is_some_and(|d| now >= d) {
                        stats.unfinished = slots.pending as u64;
                        break;
                    }
                    if slots.pending > 0 && now >= last_read + STALL {
                        bail!("no reply for {} s with {} requests pending", STALL.as_secs(), slots.pending);
                    }
                    let mut wake = now + TICK;
                    if let (None, Some(end)) = (draining, shared.measure_end) {
                        if end > now {
                            wake = wake.min(end);
                        }
                    }
                    sleep.as_mut().reset(wake);
                    continue;
                }
            }
        }
        unparsed = false;
        let now = Instant::now();
        last_read = now;
        let mut pos = 0;
        while let Some(nl) = buf[pos..have].iter().position(|&b| b == b'\n') {
            let line = &buf[pos..pos + nl];
            pos += nl + 1;
            let (ok, id) = parse_reply(line)?;
            let (slot, sent) = slots.finish(id).ok_or_else(|| anyhow::anyhow!("reply for an id that is not pending: {}", sanitize(line, 80)))?;
            freed.push(slot);
            stats.replies += 1;
            let nanos = u64::try_from(now.saturating_duration_since(sent).as_nanos()).unwrap_or(u64::MAX);
            if !shared.counts(now) {
                // A reply that straddles the end of the window (sent inside it, answered during
                // the drain) is not counted in the rate, but its latency is: otherwise a server
                // stall at the end of the window would never show in p99 or max.
                if shared.sent_in_window(sent) && shared.measure_end.is_some_and(|end| now > end) {
                    shared.latencies.record(nanos);
                }
                continue;
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
            shared.latencies.record(nanos);
        }
        buf.copy_within(pos..have, 0);
        have -= pos;
        if have > CLIENT_MAX_LINE {
            bail!("the server broke the protocol: a line longer than {CLIENT_MAX_LINE} bytes");
        }
        if draining.is_none() && shared.over(now) {
            draining = Some(now + DRAIN);
        }
        if draining.is_none() {
            for &slot in &freed {
                slots.start(slot, &mut out, &shared.suffix, now);
            }
            if !out.is_empty() {
                stream.write_all(&out).await.context("cannot send AUTH")?;
                out.clear();
            }
        } else if slots.pending == 0 {
            break;
        }
        freed.clear();
    }
    Ok(stats)
}

/// This process's CPU time so far (user + system), in seconds.
fn own_cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            secs(u.user_time()) + secs(u.system_time())
        }
        Err(_) => f64::NAN,
    }
}

fn report(args: &Args, plan: &Plan, total: Stats, lat: &Histogram, window: Duration) -> anyhow::Result<ExitCode> {
    let auths = total.ok + total.fail;
    let secs = window.as_secs_f64();
    let rate = if secs > 0.0 { auths as f64 / secs } else { 0.0 };
    let p50 = lat.percentile_ms(0.50);
    let p99 = lat.percentile_ms(0.99);
    let max = lat.max_ms();
    let mean = lat.mean_ms();
    // The generator's own CPU over the whole run (connecting and warmup included) per reply.
    let cpu = own_cpu_seconds();
    let cpu_us = if total.replies > 0 { cpu * 1e6 / total.replies as f64 } else { f64::NAN };
    let unexpected = match args.expect {
        Expect::Ok => total.fail,
        Expect::Fail => total.ok,
    };
    if args.kv {
        println!(
            "auths={auths} ok={} fail={} seconds={secs:.3} rate={rate:.1} p50_ms={p50:.3} p99_ms={p99:.3} max_ms={max:.3} mean_ms={mean:.3} connections={} pipeline={} unfinished={} unexpected={unexpected} replies={} client_cpu_s={cpu:.3} client_cpu_us_per_reply={cpu_us:.2}",
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
        println!("  bench CPU    {cpu:.3} s, {cpu_us:.2} us per reply (this process, the whole run)");
        if total.unfinished > 0 {
            println!("  unfinished   {} requests got no reply within {} s after the window", total.unfinished, DRAIN.as_secs());
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
    fn histogram_percentiles_are_nearest_rank_within_a_bucket() {
        let h = Histogram::new();
        for n in 1..=100u64 {
            h.record(n * 1_000_000);
        }
        let near = |got: f64, want: f64| (got - want).abs() <= want / 128.0;
        assert!(near(h.percentile_ms(0.5), 50.0), "{}", h.percentile_ms(0.5));
        assert!(near(h.percentile_ms(0.99), 99.0), "{}", h.percentile_ms(0.99));
        assert_eq!(h.percentile_ms(1.0), 100.0); // capped at the exact maximum
        assert_eq!(h.max_ms(), 100.0);
        assert_eq!(h.mean_ms(), 50.5);
        let one = Histogram::new();
        one.record(7_000_000);
        assert!(near(one.percentile_ms(0.99), 7.0));
        assert!(Histogram::new().percentile_ms(0.5).is_nan());
        // Small values are exact.
        let small = Histogram::new();
        small.record(3);
        assert_eq!(small.percentile_ms(0.5), 3e-6);
    }

    #[test]
    fn histogram_buckets_are_contiguous_and_hold_their_values() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, 1 << 39, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i < HIST_BUCKETS);
            let (low, width) = Histogram::bounds(i);
            let clamped = v.min((1 << HIST_MAX_BITS) - 1);
            assert!(low <= clamped && clamped < low + width, "{v}: bucket {i} is {low}+{width}");
            if v < 5000 {
                assert!(i == last || i == last + 1, "{v}: bucket {i} after {last}");
                last = i;
            }
        }
    }

    #[test]
    fn auth_lines_are_well_formed_and_ids_name_their_slot() {
        let now = Instant::now();
        let mut slots = Slots::new(3, now);
        let mut out = Vec::new();
        for s in 0..3 {
            slots.start(s, &mut out, b"\tPLAIN\tservice=bench\n", now);
        }
        assert_eq!(out, b"AUTH\t1\tPLAIN\tservice=bench\nAUTH\t2\tPLAIN\tservice=bench\nAUTH\t3\tPLAIN\tservice=bench\n");
        assert_eq!(slots.pending, 3);
        assert!(slots.finish(4).is_none()); // not pending
        assert!(slots.finish(0).is_none());
        assert_eq!(slots.finish(2).map(|(s, _)| s), Some(1));
        assert!(slots.finish(2).is_none()); // not twice
        out.clear();
        slots.start(1, &mut out, b"\n", now);
        assert_eq!(out, b"AUTH\t5\n");
        // Near the end of the id space a slot starts over at its first id.
        slots.next[0] = 4_294_967_293; // 1 + 3k, the last that fits
        assert_eq!(slots.finish(1).map(|(s, _)| s), Some(0));
        out.clear();
        slots.start(0, &mut out, b"\n", now);
        assert_eq!(out, b"AUTH\t4294967293\n");
        assert_eq!(slots.next[0], 1);
        assert_eq!(slots.finish(4_294_967_293).map(|(s, _)| s), Some(0));
    }

    #[test]
    fn replies_parse_without_copies() {
        assert_eq!(parse_reply(b"OK\t17\tuser=plain").ok(), Some((true, 17)));
        assert_eq!(parse_reply(b"OK\t17").ok(), Some((true, 17)));
        assert_eq!(parse_reply(b"FAIL\t4294967295\tuser=x\ttemp").ok(), Some((false, u32::MAX)));
        assert!(parse_reply(b"CONT\t1\t").is_err());
        assert!(parse_reply(b"OK").is_err());
        assert!(parse_reply(b"OK\t").is_err());
        assert!(parse_reply(b"OK\tx1").is_err());
        assert!(parse_reply(b"DONE").is_err());
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 12345, u32::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }
}
