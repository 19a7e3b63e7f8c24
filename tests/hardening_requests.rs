//! Issue 8, findings 3, 4 and 10, as attacks on the real `saslgate` binary: over-long passwords
//! and user names, hashing for clients that left, the abandoned-request log line and fail2ban,
//! memory a client controls (account penalty keys, half-done exchanges: VmRSS from
//! `/proc/PID/status`), the daemon-wide request bound, and the start-up check of every delay
//! against Postfix's 10 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use saslgate::protocol::base64;

const BIN: &str = env!("CARGO_BIN_EXE_saslgate");

struct Daemon {
    child: Child,
    log: PathBuf,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the binary on `config` (its socket is `auth-client`) with `passwd` as users.passwd.
    fn start(config: &str, passwd: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("saslgate.yaml"), config).unwrap();
        let log = dir.path().join("saslgate.log");
        let child = Command::new(BIN)
            .args(["--config", dir.path().join("saslgate.yaml").to_str().unwrap()])
            .current_dir(dir.path())
            .env("SASLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, log, sock: dir.path().join("auth-client"), _dir: dir };
        let start = Instant::now();
        while UnixStream::connect(&d.sock).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "no socket; log:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn conn(&self) -> Conn {
        Conn::open(&self.sock)
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// CPU time used so far (user + system), in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat(5); `after` starts at field 3.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Waits until the process has used no CPU for a second (or 60 s passed).
    fn wait_idle(&self) {
        let start = Instant::now();
        let mut last = self.cpu_ticks();
        let mut quiet = 0;
        while quiet < 2 && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.cpu_ticks();
            quiet = if now <= last + 1 { quiet + 1 } else { 0 };
            last = now;
        }
    }

    fn wait_log(&self, what: &str, count: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.matches(what).count() >= count || start.elapsed() > Duration::from_secs(10) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Conn {
    fn open(sock: &Path) -> Conn {
        let s = UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while line != "DONE\n" {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "closed during the handshake");
        }
        let mut w = s;
        w.write_all(b"VERSION\t1\t2\nCPID\t1\n").unwrap();
        Conn { w, r }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\n").unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    fn plain(&mut self, id: u32, rip: &str, user: &str, pass: &[u8]) {
        let mut data = format!("\0{user}\0").into_bytes();
        data.extend_from_slice(pass);
        self.send(&format!("AUTH\t{id}\tPLAIN\tservice=smtp\trip={rip}\tresp={}", base64::encode(&data)));
    }
}

fn sha512_crypt(password: &str) -> String {
    let out = Command::new(BIN).args(["pw", "-s", "SHA512-CRYPT", "-p", password]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The biggest password a PLAIN initial response can carry within one 16 KiB line.
const LONG: usize = 12_000;

#[test]
fn long_passwords_fail_without_hashing_and_a_right_login_stays_fast() {
    let users = format!("alice:{}\n", sha512_crypt("right"));
    let d = Daemon::start(
        "listeners:\n  - { path: auth-client }\nauth:\n  failure_delay: 0s\n  penalty_max: 0s\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\n",
        &users,
    );
    let long = vec![b'x'; LONG];
    let mut attacker = d.conn();
    let started = Instant::now();
    for id in 1..=30 {
        attacker.plain(id, "203.0.113.5", "alice", &long);
    }
    // A right login right behind them is answered as fast as ever.
    let mut user = d.conn();
    let t = Instant::now();
    user.plain(1, "198.51.100.2", "alice", b"right");
    assert_eq!(user.line(), "OK\t1\tuser=alice");
    assert!(t.elapsed() < Duration::from_millis(1500), "the right login took {:?}", t.elapsed());
    for _ in 0..30 {
        let line = attacker.line();
        assert!(line.starts_with("FAIL\t") && line.ends_with("\tuser=alice"), "{line}");
    }
    // 30 SHA512-CRYPT hashes of 12 KB take many seconds; refusing them takes none.
    assert!(started.elapsed() < Duration::from_secs(3), "30 long passwords took {:?}", started.elapsed());
    let log = d.wait_log("password too long", 30);
    let failed = log.lines().filter(|l| l.contains("auth failed rip=203.0.113.5 ") && l.contains("password too long (12000 bytes")).count();
    assert_eq!(failed, 30, "every long password is logged as a failure:\n{log}");
}

#[test]
fn queued_hashing_for_a_client_that_left_never_runs() {
    // Long passwords allowed here, so each wrong one costs a slow SHA512-CRYPT on the pool.
    let users = format!("alice:{}\n", sha512_crypt("right"));
    let d = Daemon::start(
        "listeners:\n  - { path: auth-client }\nauth:\n  failure_delay: 0s\n  penalty_max: 0s\nlimits:\n  max_password_length: 16000\npool:\n  threads: 1\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\n",
        &users,
    );
    let long = vec![b'x'; LONG];
    // The cost of one such hash, measured.
    let mut c = d.conn();
    d.wait_idle();
    let before = d.cpu_ticks();
    c.plain(1, "203.0.113.6", "alice", &long);
    assert!(c.line().starts_with("FAIL\t1\t"));
    let one = d.cpu_ticks() - before;
    assert!(one >= 5, "one hash should cost measurable CPU, got {one} ticks");
    d.wait_idle();
    // Ten of them, then the client leaves while they wait for the pool's one thread.
    let before = d.cpu_ticks();
    let mut c = d.conn();
    for id in 1..=10 {
        c.plain(id, "203.0.113.6", "alice", &long);
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(c);
    d.wait_idle();
    let ten = d.cpu_ticks() - before;
    eprintln!("one hash: {one} ticks; ten queued, client gone: {ten} ticks");
    // The one running may finish (and perhaps a second started in between); the rest never run.
    assert!(ten <= 3 * one, "a client that left cost {ten} ticks of CPU; one hash costs {one}");
    let log = d.wait_log("auth abandoned", 10);
    let abandoned: Vec<&str> = log.lines().filter(|l| l.contains("auth abandoned")).collect();
    assert_eq!(abandoned.len(), 10, "{log}");
    assert!(abandoned.iter().all(|l| l.contains("rip=203.0.113.6 user=\"alice\"") && l.contains("reason=\"aborted by client\"")), "{log}");
    assert_eq!(log.matches("auth failed").count(), 1, "only the measured request failed:\n{log}");
}

const DOCUMENTED_ABANDONED_REGEX: &str = r#"%(_prefix)sINFO saslgate::auth::abandoned: auth abandoned rip=<ADDR> user=""#;

#[test]
fn an_abandoned_request_is_logged_once_and_fail2ban_does_not_count_it() {
    let d = Daemon::start(
        "listeners:\n  - { path: auth-client }\nauth:\n  mechanisms: [plain, login]\n  failure_delay: 0s\n  penalty_max: 3s\n  account_penalty: true\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
        "alice:{PLAIN}pw\n",
    );
    let mut c = d.conn();
    // One real failure, from 203.0.113.7: fail2ban counts it.
    c.plain(1, "203.0.113.7", "alice", b"wrong");
    assert_eq!(c.line(), "FAIL\t1\tuser=alice");
    // From 192.0.2.9, alice's next request waits out her account penalty: CANCEL it there.
    c.plain(2, "192.0.2.9", "alice", b"pw");
    std::thread::sleep(Duration::from_millis(300));
    c.send("CANCEL\t2");
    // A LOGIN exchange left half-done, then the connection closes.
    c.send("AUTH\t3\tLOGIN\tservice=smtp\trip=192.0.2.10");
    assert!(c.line().starts_with("CONT\t3\t"));
    drop(c);
    d.wait_log("auth abandoned", 2);
    std::thread::sleep(Duration::from_millis(300)); // no second line comes
    let log = d.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("auth abandoned")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    let cancelled: Vec<&&str> = lines.iter().filter(|l| l.contains("rip=192.0.2.9 ")).collect();
    assert_eq!(cancelled.len(), 1, "{log}");
    assert!(cancelled[0].contains("INFO saslgate::auth::abandoned: auth abandoned rip=192.0.2.9 user=\"alice\""), "{log}");
    assert!(cancelled[0].contains("reason=\"aborted by client\""), "{log}");
    assert!(lines.iter().any(|l| l.contains("rip=192.0.2.10 user=\"\"")), "{log}");

    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/fail2ban/filter.d/saslgate.conf");
    let filter_text = std::fs::read_to_string(&filter).unwrap();
    let run = |filter: &Path| -> Vec<String> {
        let out = match Command::new("fail2ban-regex").args(["-o", "ip"]).arg(&d.log).arg(filter).output() {
            Ok(o) => o,
            Err(e) => panic!("cannot run fail2ban-regex ({e}): install the Debian package fail2ban (scripts/install-deps.sh does)"),
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        ips.sort();
        ips
    };
    assert_eq!(run(&filter), ["203.0.113.7"], "the shipped filter counts failures only; log:\n{log}");
    // The filter's comments say how to count abandoned requests too; that recipe works.
    assert!(filter_text.contains(DOCUMENTED_ABANDONED_REGEX), "the filter documents the abandoned-request regex");
    let dir = tempfile::tempdir().unwrap();
    let counting = dir.path().join("saslgate-abandoned.conf");
    let with_abandoned = filter_text.replacen("failregex = ", &format!("failregex = {DOCUMENTED_ABANDONED_REGEX}\n            "), 1);
    std::fs::write(&counting, with_abandoned).unwrap();
    assert_eq!(run(&counting), ["192.0.2.10", "192.0.2.9", "203.0.113.7"], "log:\n{log}");
}

#[test]
fn long_user_names_never_become_penalty_keys() {
    let d = Daemon::start(
        "listeners:\n  - { path: auth-client }\nauth:\n  failure_delay: 0s\n  penalty_max: 0s\n  account_penalty: true\n  username_chars: \"\"\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
        "alice:{PLAIN}pw\n",
    );
    let mut c = d.conn();
    c.plain(1, "203.0.113.8", "alice", b"pw");
    assert_eq!(c.line(), "OK\t1\tuser=alice");
    let before = d.rss_kib();
    // 3 × 5,000 failures with distinct 12 KB user names (unmatched, they added 336 MB).
    let pad = "u".repeat(LONG - 8);
    let mut conns: Vec<Conn> = (0..3).map(|_| d.conn()).collect();
    let mut echoed = 0;
    for round in 0..20 {
        for (n, c) in conns.iter_mut().enumerate() {
            for k in 0..250u32 {
                let i = (n * 100_000) as u32 + round * 250 + k;
                c.plain(k + 1, "203.0.113.8", &format!("{i:08}{pad}"), b"wrong");
            }
        }
        for c in &mut conns {
            for _ in 0..250 {
                let line = c.line();
                assert!(line.starts_with("FAIL\t"), "{line}");
                echoed += usize::from(line.contains("user="));
            }
        }
    }
    let grown = d.rss_kib().saturating_sub(before);
    eprintln!("15,000 failures with 12 KB names: VmRSS grew {grown} KiB");
    assert!(grown < 48 * 1024, "15,000 failures with long names grew memory by {grown} KiB");
    assert_eq!(echoed, 0, "an over-long name is not echoed in user=");
    let log = d.log();
    assert!(log.contains("user name too long (12000 bytes; limits.max_username_length is 512)"), "{}", &log[..log.len().min(2000)]);
}

#[test]
fn half_done_exchanges_are_bounded_daemon_wide() {
    let d = Daemon::start(
        "listeners:\n  - { path: auth-client }\nauth:\n  mechanisms: [plain, login]\n  failure_delay: 0s\n  penalty_max: 0s\n  username_chars: \"\"\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
        "alice:{PLAIN}pw\n",
    );
    let mut c = d.conn();
    c.plain(1, "203.0.113.9", "alice", b"pw");
    assert_eq!(c.line(), "OK\t1\tuser=alice");
    let before = d.rss_kib();
    // 40 connections × 256 LOGIN exchanges, each left waiting for its password after a 12 KB name.
    let name = base64::encode("n".repeat(LONG).as_bytes());
    let mut conns: Vec<Conn> = (0..40).map(|_| d.conn()).collect();
    for c in &mut conns {
        for id in 1..=256 {
            c.send(&format!("AUTH\t{id}\tLOGIN\tservice=smtp\trip=203.0.113.9"));
        }
    }
    let (mut waiting, mut refused) = (0, 0);
    let busy = |line: &str| line.ends_with("\tcode=temp_fail\treason=Too many requests in flight");
    let mut pending = Vec::new();
    for c in &mut conns {
        let mut ids = Vec::new();
        for _ in 0..256 {
            let line = c.line();
            let id: u32 = line.split('\t').nth(1).unwrap().parse().unwrap();
            if line.starts_with("CONT\t") {
                ids.push(id);
            } else {
                assert!(busy(&line), "{line}");
                refused += 1;
            }
        }
        pending.push(ids);
    }
    for (c, ids) in conns.iter_mut().zip(&pending) {
        for id in ids {
            c.send(&format!("CONT\t{id}\t{name}"));
        }
    }
    let pending: Vec<usize> = pending.iter().map(Vec::len).collect();
    for (c, n) in conns.iter_mut().zip(pending) {
        for _ in 0..n {
            let line = c.line();
            if line.starts_with("CONT\t") {
                waiting += 1;
            } else {
                assert!(busy(&line), "{line}");
                refused += 1;
            }
        }
    }
    let grown = d.rss_kib().saturating_sub(before);
    eprintln!("{waiting} half-done exchanges kept, {refused} refused: VmRSS grew {grown} KiB");
    assert!(grown < 96 * 1024, "{waiting} half-done exchanges grew memory by {grown} KiB");
    assert_eq!(waiting + refused, 10_240);
    assert!(refused > 0, "every one of 10,240 half-done exchanges was kept");
    // Once the attacker leaves, everything is given back.
    drop(conns);
    std::thread::sleep(Duration::from_millis(500));
    let mut c = d.conn();
    c.plain(2, "198.51.100.3", "alice", b"pw");
    assert_eq!(c.line(), "OK\t2\tuser=alice");
}

#[test]
fn past_max_requests_a_request_gets_temp_fail_at_once() {
    let d = Daemon::start(
        "listeners:\n  - { path: auth-client }\nauth:\n  mechanisms: [plain, login]\nlimits:\n  max_requests: 3\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
        "alice:{PLAIN}pw\n",
    );
    let mut a = d.conn();
    let mut b = d.conn();
    for id in 1..=2 {
        a.send(&format!("AUTH\t{id}\tLOGIN\tservice=smtp"));
        assert!(a.line().starts_with(&format!("CONT\t{id}\t")));
    }
    b.send("AUTH\t1\tLOGIN\tservice=smtp");
    assert!(b.line().starts_with("CONT\t1\t"));
    // The bound is over the whole daemon, not per connection.
    let t = Instant::now();
    b.send("AUTH\t2\tLOGIN\tservice=smtp");
    assert_eq!(b.line(), "FAIL\t2\tcode=temp_fail\treason=Too many requests in flight");
    assert!(t.elapsed() < Duration::from_millis(500));
    // A finished request frees its place.
    a.send("CANCEL\t1");
    std::thread::sleep(Duration::from_millis(100));
    b.plain(3, "198.51.100.4", "alice", b"pw");
    assert_eq!(b.line(), "OK\t3\tuser=alice");
}

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\n").unwrap();
    let path = dir.path().join("saslgate.yaml");
    std::fs::write(&path, format!("listeners:\n  - {{ path: auth-client }}\npassdbs:\n  - {{ driver: passwd-file, path: users.passwd }}\n{config}")).unwrap();
    let out = Command::new(BIN).args(["--config", path.to_str().unwrap(), "check"]).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_delay_of_one_request_must_fit_postfixs_timeout() {
    // 4 s for the address + 4 s for the account + 2 s failure delay: past 10 s.
    let (ok, out) = check("auth:\n  penalty_max: 4s\n  account_penalty: true\n");
    assert!(!ok, "{out}");
    assert!(out.contains("saslgate.yaml:6") && out.contains("auth.penalty_max"), "{out}");
    assert!(out.contains("auth.account_penalty") && out.contains("10s"), "{out}");
    // The same penalty without the account penalty fits.
    let (ok, out) = check("auth:\n  penalty_max: 4s\n");
    assert!(ok, "{out}");
    // account_penalty alone: the default penalty_max halves so the sum fits.
    let (ok, out) = check("auth:\n  account_penalty: true\n");
    assert!(ok, "{out}");
    // A failure delay that no longer fits beside the default penalties names failure_delay.
    let (ok, out) = check("auth:\n  account_penalty: true\n  failure_delay: 4s\n");
    assert!(!ok, "{out}");
    assert!(out.contains("auth.failure_delay"), "{out}");
    // Zero limits are refused, naming the setting.
    let (ok, out) = check("limits:\n  max_requests: 0\n");
    assert!(!ok && out.contains("limits.max_requests"), "{out}");
    let (ok, out) = check("limits:\n  max_request_bytes: 100\n");
    assert!(!ok && out.contains("limits.max_request_bytes") && out.contains("16384"), "{out}");
}
