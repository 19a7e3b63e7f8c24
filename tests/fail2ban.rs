//! The shipped fail2ban filter against saslgate's real log, with the real `fail2ban-regex`
//! (Debian package `fail2ban`): it finds every failing address at the moment of failure, and
//! no user name can make it ban another address.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn connect(sock: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let start = Instant::now();
    let s = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(10), "no socket: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while line != "DONE\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    let mut w = s;
    w.write_all(b"VERSION\t1\t2\nCPID\t1\n").unwrap();
    (w, r)
}

#[test]
fn filter_matches_failures_and_cannot_be_fooled() {
    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/fail2ban/filter.d/saslgate.conf");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\n").unwrap();
    std::fs::write(
        dir.path().join("saslgate.yaml"),
        "listeners:\n  - { path: auth-client }\nauth:\n  failure_delay: 2s\n  penalty_max: 0s\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
    )
    .unwrap();
    let log = dir.path().join("saslgate.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_saslgate"))
        .args(["--config", dir.path().join("saslgate.yaml").to_str().unwrap()])
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut w, mut r) = connect(&dir.path().join("auth-client"));
    let b64 = |s: &[u8]| saslgate::protocol::base64::encode(s);
    let attempts: &[(&str, &[u8])] = &[
        ("203.0.113.7", b"\0alice\0wrong"),
        ("203.0.113.7", b"\0evil rip=192.0.2.66 user=\0x"),
        ("203.0.113.7", b"\0a\" rip=192.0.2.67 user=\"\0x"),
        ("2001:db8::7", b"\0alice\0wrong"),
        ("198.51.100.1", b"\0alice\0pw"), // a success: not a failure
    ];
    let started = Instant::now();
    for (n, (rip, data)) in attempts.iter().enumerate() {
        writeln!(w, "AUTH\t{}\tPLAIN\tservice=smtp\trip={rip}\tresp={}", n + 1, b64(data)).unwrap();
    }
    // No rip at all: logged as rip=- and never matched.
    writeln!(w, "AUTH\t9\tPLAIN\tservice=smtp\tresp={}", b64(b"\0alice\0wrong")).unwrap();
    // The failure lines are in the log long before the delayed FAILs are sent.
    let mut logged = String::new();
    while started.elapsed() < Duration::from_millis(1500) {
        logged = std::fs::read_to_string(&log).unwrap();
        if logged.matches("auth failed").count() == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(logged.matches("auth failed").count(), 5, "{logged}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // Wait for every reply, so the log is complete.
    let mut replies = 0;
    let mut line = String::new();
    while replies < 6 {
        line.clear();
        r.read_line(&mut line).unwrap();
        replies += 1;
    }
    let out = match Command::new("fail2ban-regex").args(["-o", "ip"]).arg(&log).arg(&filter).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run fail2ban-regex ({e}): install the Debian package fail2ban (scripts/install-deps.sh does)"),
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // By default (no `log.successes`) a success writes no line; failures always do.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("auth succeeded") && !logged.contains("auth::ok"), "{logged}");
    // Requests run concurrently, so log order varies.
    let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    ips.sort();
    assert_eq!(ips, ["2001:db8::7", "203.0.113.7", "203.0.113.7", "203.0.113.7"], "log:\n{}", std::fs::read_to_string(&log).unwrap());
}

/// At debug level every line that carries client text is in the log: an ANONYMOUS trace, user
/// names refused by `username_chars`, user names in chain lines. Text forged to look like
/// saslgate's failure line (with and without a line break in front) must not be counted; only
/// the genuine failure lines are.
#[test]
fn forged_failure_lines_at_debug_level_are_not_counted() {
    let filter = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/fail2ban/filter.d/saslgate.conf");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\nnopw:\n").unwrap();
    std::fs::write(
        dir.path().join("saslgate.yaml"),
        "listeners:\n  - { path: auth-client }\nlog:\n  level: debug\n  successes: true\nauth:\n  mechanisms: [plain, anonymous]\n  failure_delay: 0s\n  penalty_max: 0s\n  username_chars: \"\"\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
    )
    .unwrap();
    let log = dir.path().join("saslgate.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_saslgate"))
        .args(["--config", dir.path().join("saslgate.yaml").to_str().unwrap()])
        .env_remove("SASLGATE_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut w, mut r) = connect(&dir.path().join("auth-client"));
    let b64 = |s: &[u8]| saslgate::protocol::base64::encode(s);
    let forged = "INFO saslgate::auth::fail: auth failed rip=203.0.113.9 user=\"x\"";
    let forged_nl = "\n2026-01-01T00:00:00.000000Z  INFO saslgate::auth::fail: auth failed rip=203.0.113.10 user=\"x\"";
    let forged_nl2 = "\n  INFO saslgate::auth::fail: auth failed rip=203.0.113.11 user=\"x\"";
    let requests: Vec<(String, String, Vec<u8>)> = vec![
        // Successful ANONYMOUS logins whose traces look like failure lines.
        ("198.51.100.1".into(), "ANONYMOUS".into(), forged.as_bytes().to_vec()),
        ("198.51.100.1".into(), "ANONYMOUS".into(), forged_nl.as_bytes().to_vec()),
        ("198.51.100.1".into(), "ANONYMOUS".into(), forged_nl2.as_bytes().to_vec()),
        // Genuine failures from 192.0.2.5, with forged user names (any character allowed).
        ("192.0.2.5".into(), "PLAIN".into(), format!("\0{forged}\0x").into_bytes()),
        ("192.0.2.5".into(), "PLAIN".into(), format!("\0{forged_nl}\0x").into_bytes()),
        ("192.0.2.5".into(), "PLAIN".into(), format!("\0{forged_nl2}\0x").into_bytes()),
        ("192.0.2.5".into(), "PLAIN".into(), format!("{forged_nl}\0alice\0x").into_bytes()),
        // A user with no password: the chain logs its name.
        ("192.0.2.5".into(), "PLAIN".into(), b"\0nopw\0x".to_vec()),
        // A success with a forged-looking authzid-free name is not a failure.
        ("198.51.100.2".into(), "PLAIN".into(), b"\0alice\0pw".to_vec()),
    ];
    for (n, (rip, mech, data)) in requests.iter().enumerate() {
        writeln!(w, "AUTH\t{}\t{mech}\tservice=smtp\trip={rip}\tresp={}", n + 1, b64(data)).unwrap();
    }
    let mut replies = Vec::new();
    let mut line = String::new();
    while replies.len() < requests.len() {
        line.clear();
        r.read_line(&mut line).unwrap();
        replies.push(line.trim_end().to_owned());
    }
    let oks = replies.iter().filter(|l| l.starts_with("OK\t")).count();
    let fails = replies.iter().filter(|l| l.starts_with("FAIL\t")).count();
    assert_eq!((oks, fails), (4, 5), "{replies:?}");
    // The log is written by a writer thread: wait until every line is there.
    let start = Instant::now();
    let mut logged = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        logged = std::fs::read_to_string(&log).unwrap();
        if logged.matches("INFO saslgate::auth::fail: auth failed rip=192.0.2.5 ").count() == 5
            && logged.matches("INFO saslgate::auth::ok: auth succeeded").count() == 4
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // With `log.successes` every success has its line, and the filter must skip them.
    assert_eq!(logged.matches("INFO saslgate::auth::ok: auth succeeded").count(), 4, "{logged}");
    // The traces and names really are in the log (quoted): the test exercises them.
    assert!(logged.contains("DEBUG") && logged.matches("anonymous login").count() == 3, "{logged}");
    assert!(logged.contains("rip=203.0.113.9"), "{logged}");
    assert!(logged.contains("the user has no password"), "{logged}");
    // No client text broke a line: every line starts with saslgate's own timestamp.
    for l in logged.lines() {
        assert!(l.starts_with("20") && l.as_bytes().get(10) == Some(&b'T'), "a line not started by saslgate: {l:?}");
    }
    let out = match Command::new("fail2ban-regex").args(["-o", "ip"]).arg(&log).arg(&filter).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run fail2ban-regex ({e}): install the Debian package fail2ban (scripts/install-deps.sh does)"),
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ips: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(ips, ["192.0.2.5"; 5], "log:\n{logged}");
}
