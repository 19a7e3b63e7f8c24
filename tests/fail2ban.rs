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
    // Requests run concurrently, so log order varies.
    let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    ips.sort();
    assert_eq!(ips, ["2001:db8::7", "203.0.113.7", "203.0.113.7", "203.0.113.7"], "log:\n{}", std::fs::read_to_string(&log).unwrap());
}
