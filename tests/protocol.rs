//! In-process protocol tests: a real daemon on temp Unix sockets, raw lines in, exact lines out.
//!
//! Each test starts `saslgate::server::run` on sockets under a temp dir with a passwd-file of
//! known users, speaks the protocol byte for byte, and stops the server when done.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use saslgate::client::{ClientError, Connection};
use saslgate::config;
use saslgate::server::{self, listener};

const USERS: &str = "alice:{PLAIN}secret:1000:1000::/home/alice::quota=1G userdb_mail=maildir:~/Maildir\n\
bob:{SHA256-CRYPT}$5$rounds=1000$uGzoWmXWGnIWS6Eu$TJCNhf8eV4QjCXacO/kHMVDvQd.PSBziNbBkOjlIyb.:1001:1001::/home/bob::\n\
slow:{BLF-CRYPT}$2y$12$Z3s1z3Wrx.ZMryn6e6DFcei8Au2pIHg6JvS5UFkWZsDgliwssxueW:1002:1002::/home/slow::\n\
tabby:{PLAIN}ta\tb:1003:1003::/home/tabby::\n\
nopass::1004:1004::/home/nopass::\n\
fast:{PLAIN}x:1005:1005::/home/fast::nodelay\n";

struct Daemon {
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    async fn start(auth: &str) -> Daemon {
        Self::start_with(auth, "").await
    }

    async fn start_with(auth: &str, extra: &str) -> Daemon {
        Self::start_with_files(auth, extra, &[]).await
    }

    /// With more files in the temp dir before the config loads (name, content).
    async fn start_with_files(auth: &str, extra: &str, files: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.passwd"), USERS).unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        // Most tests fail many logins from one (absent) rip: no penalty unless a test asks.
        let auth = if auth.contains("penalty_max") { auth.to_owned() } else { format!("{auth}\n  penalty_max: 0s") };
        // A test may bring its own listeners and userdbs.
        let listeners = if extra.contains("listeners:") {
            ""
        } else {
            "listeners:\n  - { path: auth-client }\n  - { path: auth-login }\n  - { path: auth-master }\n  - { path: auth-userdb }\n"
        };
        // ... and its own passdbs.
        let passdbs = if extra.contains("passdbs:") { "" } else { "passdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n" };
        let userdbs = if extra.contains("userdbs:") { "" } else { "userdbs:\n  - { driver: passwd-file, path: users.passwd }\n" };
        let yaml = format!(
            "{listeners}\
auth:\n{auth}\n{passdbs}{userdbs}{extra}"
        );
        let config = config::parse(&yaml, "test.yaml", dir.path()).unwrap();
        let pool = saslgate::blocking::Pool::new(config.pool.threads, config.pool.queue).unwrap();
        let auth = Arc::new(saslgate::auth::Authenticator::from_config(&config, &pool));
        let shared = Arc::new(server::Shared::new(&config, auth));
        let listeners = config.listeners.iter().map(|l| (listener::into_tokio(listener::bind(l).unwrap()).unwrap(), l.clone())).collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let max = config.limits.max_connections;
        let task = tokio::spawn(server::run(listeners, shared, max, async {
            let _ = stopped.await;
        }));
        Daemon { dir, stop: Some(stop), task }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn client(&self) -> Conn {
        let mut c = Conn::open(&self.path("auth-client")).await;
        c.handshake(2).await;
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

struct Conn {
    conn: Connection,
    handshake: Vec<String>,
}

impl Conn {
    async fn open(path: &Path) -> Conn {
        Conn { conn: Connection::open(path).await.unwrap(), handshake: Vec::new() }
    }

    /// Reads the server handshake (it must come without our saying anything), then sends ours.
    async fn handshake(&mut self, minor: u32) {
        self.handshake = self.conn.read_client_handshake().await.expect("a handshake up to DONE").lines;
        self.send(&format!("VERSION\t1\t{minor}\nCPID\t{}\n", std::process::id())).await;
    }

    async fn send(&mut self, text: &str) {
        self.conn.send(text.as_bytes()).await.unwrap();
    }

    async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.conn.send(bytes).await;
    }

    async fn line(&mut self) -> String {
        self.try_line(Duration::from_secs(10)).await.expect("no line from the server")
    }

    async fn try_line(&mut self, wait: Duration) -> Option<String> {
        match self.conn.line_within(wait).await {
            Ok(line) => Some(String::from_utf8(line).expect("a UTF-8 line")),
            Err(ClientError::Closed | ClientError::Timeout(_)) => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// True when the server closed the connection (EOF) within a few seconds.
    async fn closed(&mut self) -> bool {
        matches!(self.conn.line_within(Duration::from_secs(5)).await, Err(ClientError::Closed | ClientError::Io(_)))
    }
}

fn b64(data: &[u8]) -> String {
    saslgate::protocol::base64::encode(data)
}

const NO_DELAY: &str = "  mechanisms: [plain, login]\n  failure_delay: 0s";

#[tokio::test]
async fn handshake_is_sent_first_in_dovecots_order() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = Conn::open(&d.path("auth-client")).await;
    let mut lines = Vec::new();
    for _ in 0..7 {
        lines.push(c.line().await);
    }
    assert_eq!(lines[0], "VERSION\t1\t2");
    assert_eq!(lines[1], "MECH\tPLAIN\tplaintext");
    assert_eq!(lines[2], "MECH\tLOGIN\tplaintext");
    assert_eq!(lines[3], format!("SPID\t{}", std::process::id()));
    assert!(lines[4].starts_with("CUID\t"), "{}", lines[4]);
    let cookie = lines[5].strip_prefix("COOKIE\t").unwrap();
    assert!(cookie.len() == 32 && cookie.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(lines[6], "DONE");
    // A second connection gets a different CUID and cookie, the same SPID.
    let mut c2 = Conn::open(&d.path("auth-login")).await;
    c2.handshake(2).await;
    assert_ne!(c2.handshake[4], lines[4]);
    assert_ne!(c2.handshake[5], lines[5]);
    assert_eq!(c2.handshake[3], lines[3]);
    let mut m = Conn::open(&d.path("auth-master")).await;
    assert_eq!(m.line().await, "VERSION\t1\t1");
    assert_eq!(m.line().await, lines[3]);
}

#[tokio::test]
async fn plain_ok_fail_and_crlf() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = d.client().await;
    c.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    assert_eq!(c.line().await, "OK\t1\tuser=alice\tquota=1G");
    c.send(&format!("AUTH\t2\tplain\tservice=smtp\tnologin\trip=192.0.2.7\tresp={}\r\n", b64(b"\0alice\0wrong"))).await;
    assert_eq!(c.line().await, "FAIL\t2\tuser=alice");
    c.send(&format!("AUTH\t3\tPLAIN\tservice=smtp\tresp={}\n", b64(b"\0nobody\0secret"))).await;
    assert_eq!(c.line().await, "FAIL\t3\tuser=nobody");
    // username_format %Lu lowercases; the given name comes back as original_user.
    c.send(&format!("AUTH\t4\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0ALICE\0secret"))).await;
    assert_eq!(c.line().await, "OK\t4\tuser=alice\tquota=1G\toriginal_user=ALICE");
    // A hashed user.
    c.send(&format!("AUTH\t5\tPLAIN\tservice=imap\tresp={}\n", b64(b"bob\0bob\0bobpass"))).await;
    let ok = c.line().await;
    let bad = {
        c.send(&format!("AUTH\t6\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0bob\0nope"))).await;
        c.line().await
    };
    assert_eq!((ok.as_str(), bad.as_str()), ("OK\t5\tuser=bob", "FAIL\t6\tuser=bob"));
}

#[tokio::test]
async fn hostile_plain_inputs_fail_without_closing() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = d.client().await;
    let rows: &[&[u8]] = &[b"", b"alice", b"\0alice", b"\0alice\0secret\0", b"\0\0secret", b"\0alice\0sec\tret", b"bob\0alice\0secret", b"\0al\xffice\0secret"];
    for (n, data) in rows.iter().enumerate() {
        let id = n + 1;
        c.send(&format!("AUTH\t{id}\tPLAIN\tservice=imap\tresp={}\n", if data.is_empty() { "=".into() } else { b64(data) })).await;
        let line = c.line().await;
        assert!(line.starts_with(&format!("FAIL\t{id}")), "{data:?} -> {line}");
    }
    // A password with a TAB never reaches a passdb, even for a user whose stored password has one.
    c.send(&format!("AUTH\t50\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0tabby\0ta\tb"))).await;
    assert_eq!(c.line().await, "FAIL\t50\tuser=tabby");
    // No password field: no password works, not even an empty one.
    c.send(&format!("AUTH\t51\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0nopass\0"))).await;
    assert_eq!(c.line().await, "FAIL\t51\tuser=nopass");
    // The connection still serves.
    c.send(&format!("AUTH\t52\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    assert!(c.line().await.starts_with("OK\t52\tuser=alice"));
}

#[tokio::test]
async fn login_prompts_and_initial_response() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = d.client().await;
    c.send("AUTH\t7\tLOGIN\tservice=smtp\tlip=127.0.0.1\trip=10.1.2.3\tlport=25\trport=5555\tsecured\n").await;
    assert_eq!(c.line().await, "CONT\t7\tVXNlcm5hbWU6");
    c.send("CONT\t7\tYWxpY2U=\n").await;
    assert_eq!(c.line().await, "CONT\t7\tUGFzc3dvcmQ6");
    c.send("CONT\t7\tc2VjcmV0\n").await;
    assert_eq!(c.line().await, "OK\t7\tuser=alice\tquota=1G");
    c.send("AUTH\t8\tLOGIN\tservice=smtp\tresp=YWxpY2U=\n").await;
    assert_eq!(c.line().await, "CONT\t8\tUGFzc3dvcmQ6");
    c.send("CONT\t8\td3Jvbmc=\n").await;
    assert_eq!(c.line().await, "FAIL\t8\tuser=alice");
    // NUL in LOGIN data fails the request, not the connection.
    c.send(&format!("AUTH\t9\tLOGIN\tservice=smtp\tresp={}\n", b64(b"ali\0ce"))).await;
    assert_eq!(c.line().await, "FAIL\t9");
}

#[tokio::test]
async fn pipelined_requests_answer_in_any_order() {
    let d = Daemon::start("  failure_delay: 1s").await;
    let mut c = d.client().await;
    let started = Instant::now();
    c.send(&format!(
        "AUTH\t1\tPLAIN\tservice=imap\tno-penalty\tresp={}\nAUTH\t2\tPLAIN\tservice=imap\tno-penalty\tresp={}\nAUTH\t4\tPLAIN\tservice=imap\tno-penalty\n",
        b64(b"\0alice\0wrong"),
        b64(b"\0alice\0secret")
    ))
    .await;
    let mut first = vec![c.line().await, c.line().await];
    first.sort();
    assert_eq!(first, ["CONT\t4\t", "OK\t2\tuser=alice\tquota=1G"]);
    c.send(&format!("CONT\t4\t{}\n", b64(b"\0alice\0secret"))).await;
    assert_eq!(c.line().await, "OK\t4\tuser=alice\tquota=1G");
    // After OK the id is gone.
    c.send(&format!("CONT\t4\t{}\n", b64(b"\0alice\0secret"))).await;
    assert_eq!(c.line().await, "FAIL\t4\treason=Authentication request timed out");
    c.send("CONT\t99\tAA==\n").await;
    assert_eq!(c.line().await, "FAIL\t99\treason=Authentication request timed out");
    // The failure comes last, after the delay.
    assert_eq!(c.line().await, "FAIL\t1\tuser=alice");
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
}

#[tokio::test]
async fn initial_response_absent_or_empty_by_client_version() {
    let d = Daemon::start(NO_DELAY).await;
    // Minor 1 (and 0, as Postfix): `resp=` means no initial response.
    let mut old = Conn::open(&d.path("auth-client")).await;
    old.handshake(1).await;
    old.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=\n").await;
    assert_eq!(old.line().await, "CONT\t1\t");
    // Minor 2: `resp=` is an empty response, which PLAIN rejects; `resp==` too.
    let mut c = d.client().await;
    c.send("AUTH\t1\tPLAIN\tservice=imap\tresp=\nAUTH\t2\tPLAIN\tservice=imap\tresp==\n").await;
    let mut got = vec![c.line().await, c.line().await];
    got.sort();
    assert_eq!(got, ["FAIL\t1", "FAIL\t2"]);
}

#[tokio::test]
async fn bad_base64_is_a_per_request_fail() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = d.client().await;
    for (id, data) in [(1, "YWxpY2U"), (2, "YWxpY2U=YWxp"), (3, "*")] {
        c.send(&format!("AUTH\t{id}\tPLAIN\tservice=imap\tresp={data}\n")).await;
        assert_eq!(c.line().await, format!("FAIL\t{id}\tcode=invalid_base64\treason=Invalid base64 data in initial response"));
    }
    c.send("AUTH\t4\tPLAIN\tservice=imap\n").await;
    assert_eq!(c.line().await, "CONT\t4\t");
    c.send("CONT\t4\t!!!\n").await;
    assert_eq!(c.line().await, "FAIL\t4\tcode=invalid_base64\treason=Invalid base64 data in continued response");
    // Whitespace inside base64 is fine.
    c.send("AUTH\t5\tPLAIN\tservice=imap\tresp=AGFsaWNl AHNlY3JldA==\n").await;
    assert!(c.line().await.starts_with("OK\t5\t"));
}

#[tokio::test]
async fn cancel_and_unexpected_continuation() {
    let d = Daemon::start("  failure_delay: 1s").await;
    let mut c = d.client().await;
    c.send("AUTH\t1\tLOGIN\tservice=imap\n").await;
    assert_eq!(c.line().await, "CONT\t1\tVXNlcm5hbWU6");
    c.send("CANCEL\t1\nCANCEL\t12345\n").await;
    c.send("CONT\t1\tYWxpY2U=\n").await;
    assert_eq!(c.line().await, "FAIL\t1\treason=Authentication request timed out");
    // A CONT while the server is not waiting for one (here: during the failure delay).
    c.send(&format!("AUTH\t2\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0wrong"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send("CONT\t2\tAA==\n").await;
    assert_eq!(c.line().await, "FAIL\t2\treason=Unexpected continuation");
    // ... and the delayed FAIL for it never comes.
    assert_eq!(c.try_line(Duration::from_millis(1800)).await, None);
}

#[tokio::test]
async fn nodelay_field_survives_only_on_success() {
    let d = Daemon::start("  failure_delay: 1s").await;
    let mut c = d.client().await;
    // The failing passdb's own fields are rolled back: still delayed, no nodelay.
    let t = Instant::now();
    c.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0fast\0wrong"))).await;
    assert_eq!(c.line().await, "FAIL\t1\tuser=fast");
    assert!(t.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn protocol_errors_close_only_that_connection() {
    let d = Daemon::start(NO_DELAY).await;
    let cases: &[&[u8]] = &[
        b"AUTH\t0\tPLAIN\tservice=imap\n",
        b"AUTH\t1\tDIGEST-MD5\tservice=imap\n",
        b"AUTH\t1\tPLAIN\n",
        b"AUTH\t1\tPLAIN\tservice=imap\tresp=AA==\tdebug\n",
        b"AUTH\t1\tLOGIN\tservice=imap\nAUTH\t1\tLOGIN\tservice=imap\n",
        b"CONT\t1\n",
        b"CANCEL\tx\n",
        b"BOGUS\n",
        b"\n",
    ];
    let mut survivor = d.client().await;
    for case in cases {
        let mut c = d.client().await;
        c.send_bytes(case).await;
        // The LOGIN duplicate first gets its CONT, then the close.
        let mut closed = false;
        for _ in 0..3 {
            match c.try_line(Duration::from_secs(5)).await {
                None => {
                    closed = true;
                    break;
                }
                Some(l) if l.starts_with("CONT") => continue,
                Some(l) => panic!("{:?} got {l}", String::from_utf8_lossy(case)),
            }
        }
        assert!(closed, "{:?}", String::from_utf8_lossy(case));
    }
    survivor.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    assert!(survivor.line().await.starts_with("OK\t1\t"));
}

#[tokio::test]
async fn handshake_errors_close() {
    let d = Daemon::start(NO_DELAY).await;
    for hello in [
        &b"VERSION\t2\t0\n"[..],
        b"VERSION\t1\t2\tx\n",
        b"AUTH\t1\tPLAIN\tservice=x\n",
        b"VERSION\t1\t2\nAUTH\t1\tPLAIN\tservice=x\n",
        b"VERSION\t1\t2\nCPID\t0\n",
    ] {
        let mut c = Conn::open(&d.path("auth-client")).await;
        for _ in 0..7 {
            c.line().await;
        }
        c.send_bytes(hello).await;
        assert!(c.closed().await, "{:?}", String::from_utf8_lossy(hello));
    }
}

#[tokio::test]
async fn over_long_lines_close_the_connection() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = d.client().await;
    let mut long = b"AUTH\t1\tPLAIN\tservice=imap\tresp=".to_vec();
    long.extend(std::iter::repeat_n(b'A', 20_000));
    c.send_bytes(&long).await; // no LF at all: the limit applies to unprocessed input
    assert!(c.closed().await);
    // Just below the limit is fine (and fails as PLAIN input, not as a protocol error).
    let mut c = d.client().await;
    let mut ok = b"AUTH\t1\tPLAIN\tservice=imap\tresp=".to_vec();
    ok.extend(std::iter::repeat_n(b'A', 16_000));
    ok.push(b'\n');
    c.send_bytes(&ok).await;
    assert_eq!(c.line().await, "FAIL\t1");
}

#[tokio::test]
async fn master_lookups_and_login_request() {
    let d = Daemon::start(NO_DELAY).await;
    let mut m = Conn::open(&d.path("auth-master")).await;
    assert_eq!(m.line().await, "VERSION\t1\t1");
    m.line().await;
    m.send("VERSION\t1\t0\nUSER\t1\talice\tservice=lmtp\n").await;
    assert_eq!(m.line().await, "USER\t1\talice\tuid=1000\tgid=1000\thome=/home/alice\tmail=maildir:~/Maildir");
    m.send("USER\t2\tnosuch\tservice=lmtp\n").await;
    assert_eq!(m.line().await, "NOTFOUND\t2");
    m.send("PASS\t3\talice\tservice=doveadm\n").await;
    assert_eq!(m.line().await, "PASS\t3\tuser=alice\tquota=1G");
    m.send("PASS\t4\tnosuch\tservice=doveadm\n").await;
    assert_eq!(m.line().await, "NOTFOUND\t4");
    m.send("LIST\t5\tuser=*\n").await;
    let mut listed = Vec::new();
    loop {
        let l = m.line().await;
        if l.starts_with("DONE") {
            assert_eq!(l, "DONE\t5\t");
            break;
        }
        listed.push(l);
    }
    assert_eq!(listed, ["LIST\t5\talice", "LIST\t5\tbob", "LIST\t5\tslow", "LIST\t5\ttabby", "LIST\t5\tnopass", "LIST\t5\tfast"]);
    m.send("CACHE-FLUSH\t6\n").await;
    assert_eq!(m.line().await, "OK\t6\t0");

    // A login on the login socket, claimed once by REQUEST with the right cookie.
    let mut login = Conn::open(&d.path("auth-login")).await;
    login.handshake(2).await;
    let cookie = login.handshake.iter().find_map(|l| l.strip_prefix("COOKIE\t")).unwrap().to_owned();
    login.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    assert!(login.line().await.starts_with("OK\t1\tuser=alice"));
    login.send(&format!("AUTH\t2\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    assert!(login.line().await.starts_with("OK\t2\tuser=alice"));
    let pid = std::process::id();
    m.send(&format!("REQUEST\t4261281793\t{pid}\t1\t{}\n", "0".repeat(32))).await;
    assert_eq!(m.line().await, "FAIL\t4261281793", "wrong cookie");
    m.send(&format!("REQUEST\t7\t{pid}\t2\t{cookie}\n")).await;
    // Dovecot's order: the passdb's userdb_* fields first, then the userdb's (tests/dovecot_wire.rs).
    assert_eq!(m.line().await, "USER\t7\talice\tmail=maildir:~/Maildir\tuid=1000\tgid=1000\thome=/home/alice\tauth_mech=PLAIN");
    m.send(&format!("REQUEST\t8\t{pid}\t2\t{cookie}\n")).await;
    assert_eq!(m.line().await, "FAIL\t8", "one-shot");
    // A REQUEST with a wrong cookie must not destroy the login that the right one claims
    // (Dovecot checks the cookie first; issue 8, finding 7).
    m.send(&format!("REQUEST\t9\t{pid}\t1\t{cookie}\n")).await;
    assert_eq!(
        m.line().await,
        "USER\t9\talice\tmail=maildir:~/Maildir\tuid=1000\tgid=1000\thome=/home/alice\tauth_mech=PLAIN",
        "the wrong-cookie attempt left id 1 alone"
    );
    // Requests made on auth-client can never be claimed.
    let mut c = d.client().await;
    c.send(&format!("AUTH\t3\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    c.line().await;
    m.send(&format!("REQUEST\t10\t{pid}\t3\t{cookie}\n")).await;
    assert_eq!(m.line().await, "FAIL\t10");
}

#[tokio::test]
async fn userdb_socket_refuses_master_only_commands() {
    let d = Daemon::start(NO_DELAY).await;
    for cmd in ["REQUEST\t1\t2\t3\t00000000000000000000000000000000\n", "CACHE-FLUSH\t1\n", "CPID\t1\n"] {
        let mut u = Conn::open(&d.path("auth-userdb")).await;
        u.line().await;
        u.line().await;
        if !cmd.starts_with("CPID") {
            u.send("VERSION\t1\t0\n").await;
        }
        u.send(cmd).await;
        assert!(u.closed().await, "{cmd}");
    }
    let mut u = Conn::open(&d.path("auth-userdb")).await;
    u.line().await;
    u.line().await;
    u.send("VERSION\t1\t0\nUSER\t1\tbob\tservice=lda\nUSER\t2\talice\n").await;
    assert_eq!(u.line().await, "USER\t1\tbob\tuid=1001\tgid=1001\thome=/home/bob");
    assert!(u.closed().await, "USER without service closes");
    // Over-long master line.
    let mut u = Conn::open(&d.path("auth-userdb")).await;
    u.line().await;
    u.line().await;
    u.send(&format!("VERSION\t1\t0\nUSER\t1\t{}\tservice=x\n", "a".repeat(2000))).await;
    assert!(u.closed().await);
}

#[tokio::test]
async fn expensive_hashes_do_not_delay_cheap_ones() {
    // One pool thread: a queue of BLF-CRYPT cost-12 checks takes seconds; a {PLAIN} user on the
    // same connection must still be answered at once, because cheap schemes never queue.
    let d = Daemon::start_with(NO_DELAY, "pool:\n  threads: 1\n").await;
    let mut c = d.client().await;
    for id in 1..=6 {
        c.send(&format!("AUTH\t{id}\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0slow\0wrong"))).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.send(&format!("AUTH\t100\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice\0secret"))).await;
    let first = c.line().await;
    assert!(first.starts_with("OK\t100\t"), "the cheap user waited behind the expensive ones: {first}");
    for _ in 1..=6 {
        assert!(c.line().await.starts_with("FAIL\t"));
    }
}

const MECH_USERS: &str = "alice:{PLAIN}secret\ncram:{CRAM-MD5}63e89f623c7c33b871986e1b5046d91ceace469b44d211bf7a7f0c6fd4be739e\nbob:{SHA512-CRYPT}$6$rounds=1000$abcdefgh$ignored\ncertuser:::::::nopassword\n";

async fn mech_daemon() -> Daemon {
    let d = Daemon::start("  mechanisms: [plain, cram-md5, external, anonymous]\n  failure_delay: 0s\n  ssl_username_from_cert: true\n  anonymous_username: anon\n  hostname: mx.example").await;
    std::fs::write(d.path("users.passwd"), MECH_USERS).unwrap();
    d
}

fn cram_answer(challenge_b64: &str, user: &str, password: &[u8]) -> String {
    let challenge = saslgate::protocol::base64::decode(challenge_b64.as_bytes()).unwrap();
    let text = String::from_utf8(challenge.clone()).unwrap();
    assert!(text.starts_with('<') && text.ends_with("@mx.example>"), "{text}");
    let digest = saslgate::scheme::cram_md5_response(&saslgate::scheme::cram_md5_context(password), &challenge);
    b64(format!("{user} {}", hex::encode(digest)).as_bytes())
}

#[tokio::test]
async fn mechanisms_are_advertised_with_dovecots_flags() {
    let d = mech_daemon().await;
    let c = d.client().await;
    let mechs: Vec<&str> = c.handshake.iter().filter(|l| l.starts_with("MECH")).map(String::as_str).collect();
    assert_eq!(mechs, ["MECH\tPLAIN\tplaintext", "MECH\tCRAM-MD5\tdictionary\tactive", "MECH\tEXTERNAL", "MECH\tANONYMOUS\tanonymous"]);
}

#[tokio::test]
async fn cram_md5_with_stored_context_and_with_plaintext() {
    let d = mech_daemon().await;
    let mut c = d.client().await;
    for (id, user, pass, want) in [
        (1, "cram", &b"cramsecret"[..], "OK\t1\tuser=cram"),
        (2, "cram", b"wrong", "FAIL\t2\tuser=cram"),
        (3, "alice", b"secret", "OK\t3\tuser=alice"),
        (4, "alice", b"wrong", "FAIL\t4\tuser=alice"),
        // A hashed password cannot serve CRAM-MD5 (as with Dovecot).
        (5, "bob", b"anything", "FAIL\t5\tuser=bob"),
        (6, "nosuch", b"x", "FAIL\t6\tuser=nosuch"),
    ] {
        c.send(&format!("AUTH\t{id}\tCRAM-MD5\tservice=smtp\n")).await;
        let cont = c.line().await;
        let challenge = cont.strip_prefix(&format!("CONT\t{id}\t")).unwrap().to_owned();
        c.send(&format!("CONT\t{id}\t{}\n", cram_answer(&challenge, user, pass))).await;
        assert_eq!(c.line().await, want);
    }
    // Malformed responses fail the request only.
    c.send("AUTH\t7\tCRAM-MD5\tservice=smtp\n").await;
    c.line().await;
    c.send(&format!("CONT\t7\t{}\n", b64(b"cram nothex"))).await;
    assert_eq!(c.line().await, "FAIL\t7");
}

#[tokio::test]
async fn external_uses_the_certificate_user() {
    let d = mech_daemon().await;
    let mut c = d.client().await;
    let cert = "valid-client-cert\tcert_username=certuser";
    c.send(&format!("AUTH\t1\tEXTERNAL\tservice=imap\tno-penalty\t{cert}\tresp=\n")).await;
    assert_eq!(c.line().await, "OK\t1\tuser=certuser");
    c.send(&format!("AUTH\t2\tEXTERNAL\tservice=imap\t{cert}\n")).await;
    assert_eq!(c.line().await, "CONT\t2\t");
    c.send("CONT\t2\t\n").await;
    assert_eq!(c.line().await, "OK\t2\tuser=certuser");
    c.send(&format!("AUTH\t3\tEXTERNAL\tservice=imap\t{cert}\tresp={}\n", b64(b"certuser"))).await;
    assert_eq!(c.line().await, "OK\t3\tuser=certuser");
    // Another authzid would be a master-user login: refused.
    c.send(&format!("AUTH\t4\tEXTERNAL\tservice=imap\t{cert}\tresp={}\n", b64(b"alice"))).await;
    assert_eq!(c.line().await, "FAIL\t4\tuser=certuser");
    // No certificate, or a name without a valid certificate: no login.
    for (id, params) in [(5, ""), (6, "\tcert_username=certuser")] {
        c.send(&format!("AUTH\t{id}\tEXTERNAL\tservice=imap{params}\tresp=\n")).await;
        assert_eq!(c.line().await, format!("FAIL\t{id}"));
    }
    // A valid certificate without a user name is refused at once, for every mechanism
    // (CVE-2019-3814: the SASL name must never stand in for a missing certificate name).
    for (id, mech, params) in
        [(7, "EXTERNAL", "\tvalid-client-cert"), (8, "EXTERNAL", "\tvalid-client-cert\tcert_username="), (10, "PLAIN", "\tvalid-client-cert")]
    {
        c.send(&format!("AUTH\t{id}\t{mech}\tservice=imap{params}\tresp={}\n", b64(b"\0alice\0secret"))).await;
        assert_eq!(c.line().await, format!("FAIL\t{id}\treason=SSL certificate didn't contain username"));
    }
    // A certificate user without nopassword gets no EXTERNAL login (empty password mismatch).
    c.send("AUTH\t9\tEXTERNAL\tservice=imap\tvalid-client-cert\tcert_username=alice\tresp=\n").await;
    assert_eq!(c.line().await, "FAIL\t9\tuser=alice");
}

#[tokio::test]
async fn anonymous_logs_in_as_the_configured_user() {
    let d = mech_daemon().await;
    let mut c = d.client().await;
    c.send(&format!("AUTH\t1\tANONYMOUS\tservice=imap\tresp={}\n", b64(b"me@example.org"))).await;
    assert_eq!(c.line().await, "OK\t1\tuser=anon\tanonymous");
    c.send("AUTH\t2\tANONYMOUS\tservice=imap\n").await;
    assert_eq!(c.line().await, "CONT\t2\t");
    c.send("CONT\t2\t\n").await;
    assert_eq!(c.line().await, "OK\t2\tuser=anon\tanonymous");
}

#[tokio::test]
async fn client_certificate_policy_per_service() {
    let d = Daemon::start_with(
        "  failure_delay: 0s\n  ssl_require_client_cert: true\n  ssl_username_from_cert: true",
        "services:\n  smtp: { ssl_require_client_cert: false }\n",
    )
    .await;
    let mut c = d.client().await;
    let alice = b64(b"\0alice\0secret");
    c.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={alice}\n")).await;
    assert_eq!(c.line().await, "FAIL\t1\treason=Client didn't present valid SSL certificate");
    c.send(&format!("AUTH\t2\tPLAIN\tservice=smtp\tresp={alice}\n")).await;
    assert!(c.line().await.starts_with("OK\t2\tuser=alice"));
    c.send(&format!("AUTH\t3\tPLAIN\tservice=imap\tvalid-client-cert\tcert_username=alice\tresp={alice}\n")).await;
    assert!(c.line().await.starts_with("OK\t3\tuser=alice"));
    // The certificate's name replaces the one the mechanism gave; the password is checked for it.
    c.send(&format!("AUTH\t4\tPLAIN\tservice=imap\tvalid-client-cert\tcert_username=bob\tresp={alice}\n")).await;
    assert_eq!(c.line().await, "FAIL\t4\tuser=bob\toriginal_user=alice");
    c.send(&format!("AUTH\t5\tPLAIN\tservice=imap\tvalid-client-cert\tcert_username=bob\tresp={}\n", b64(b"\0alice\0bobpass"))).await;
    assert_eq!(c.line().await, "OK\t5\tuser=bob\toriginal_user=alice");
}

#[tokio::test]
async fn plaintext_needs_a_secured_connection() {
    let d = Daemon::start("  failure_delay: 0s\n  disable_plaintext_auth: true\n  trusted_networks: [10.0.0.0/8]").await;
    let mut c = d.client().await;
    let alice = b64(b"\0alice\0secret");
    c.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tlip=192.0.2.2\trip=192.0.2.1\tresp={alice}\n")).await;
    assert_eq!(c.line().await, "FAIL\t1\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections.");
    c.send("AUTH\t2\tLOGIN\tservice=imap\trip=192.0.2.1\n").await;
    assert_eq!(c.line().await, "FAIL\t2\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections.");
    for (id, params) in
        [(3, "\tsecured\trip=192.0.2.1"), (4, "\tsecured=tls\trip=192.0.2.1"), (5, "\tlip=127.0.0.1\trip=127.0.0.1"), (6, "\tlip=192.0.2.2\trip=10.9.8.7")]
    {
        c.send(&format!("AUTH\t{id}\tPLAIN\tservice=imap{params}\tresp={alice}\n")).await;
        assert!(c.line().await.starts_with(&format!("OK\t{id}\tuser=alice")), "{params}");
    }
}

#[tokio::test]
async fn failures_raise_a_per_address_penalty() {
    let d = Daemon::start("  failure_delay: 0s\n  penalty_max: 4s").await;
    let mut c = d.client().await;
    let wrong = b64(b"\0alice\0wrong");
    let right = b64(b"\0alice\0secret");
    c.send(&format!("AUTH\t1\tPLAIN\tservice=smtp\trip=198.51.100.7\tresp={wrong}\n")).await;
    assert_eq!(c.line().await, "FAIL\t1\tuser=alice");
    // The next request from that address waits ~2 s; another address and no-penalty do not.
    let t = Instant::now();
    c.send(&format!("AUTH\t2\tPLAIN\tservice=smtp\trip=198.51.100.99\tresp={right}\n")).await;
    assert!(c.line().await.starts_with("OK\t2\t"));
    c.send(&format!("AUTH\t3\tPLAIN\tservice=smtp\trip=198.51.100.7\tno-penalty\tresp={right}\n")).await;
    assert!(c.line().await.starts_with("OK\t3\t"));
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
    let t = Instant::now();
    c.send(&format!("AUTH\t4\tPLAIN\tservice=smtp\trip=198.51.100.7\tresp={right}\n")).await;
    assert!(c.line().await.starts_with("OK\t4\t"));
    assert!(t.elapsed() >= Duration::from_millis(1500), "{:?}", t.elapsed());
    // The success cleared it.
    let t = Instant::now();
    c.send(&format!("AUTH\t5\tPLAIN\tservice=smtp\trip=198.51.100.7\tresp={right}\n")).await;
    assert!(c.line().await.starts_with("OK\t5\t"));
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
}

#[tokio::test]
async fn auth_cache_never_answers_for_a_changed_password() {
    let d = Daemon::start("  failure_delay: 0s\n  cache: { size: 1000, ttl: 1h, negative_ttl: 1h }").await;
    let old = saslgate::scheme::generate(saslgate::scheme::Scheme::BlfCrypt, b"oldpw", "", Some(4)).unwrap();
    let new = saslgate::scheme::generate(saslgate::scheme::Scheme::BlfCrypt, b"newpw", "", Some(4)).unwrap();
    std::fs::write(d.path("users.passwd"), format!("carl:{{BLF-CRYPT}}{old}\n")).unwrap();
    let mut c = d.client().await;
    let try_pw = |id: u32, pw: &str| format!("AUTH\t{id}\tPLAIN\tservice=imap\tresp={}\n", b64(format!("\0carl\0{pw}").as_bytes()));
    c.send(&try_pw(1, "oldpw")).await;
    assert_eq!(c.line().await, "OK\t1\tuser=carl");
    c.send(&try_pw(2, "newpw")).await;
    assert_eq!(c.line().await, "FAIL\t2\tuser=carl");
    c.send(&try_pw(3, "oldpw")).await; // a cache hit
    assert_eq!(c.line().await, "OK\t3\tuser=carl");
    // The password changes: neither the cached success nor the cached failure may answer.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(d.path("users.passwd"), format!("carl:{{BLF-CRYPT}}{new}\n")).unwrap();
    c.send(&try_pw(4, "oldpw")).await;
    assert_eq!(c.line().await, "FAIL\t4\tuser=carl");
    c.send(&try_pw(5, "newpw")).await;
    assert_eq!(c.line().await, "OK\t5\tuser=carl");
    // CACHE-FLUSH of another user flushes nothing; of carl, his entries.
    let mut m = Conn::open(&d.path("auth-master")).await;
    m.line().await;
    m.line().await;
    m.send("VERSION\t1\t1\nCACHE-FLUSH\t1\tsomeone\n").await;
    assert_eq!(m.line().await, "OK\t1\t0");
    m.send("CACHE-FLUSH\t2\tcarl\n").await;
    assert_eq!(m.line().await, "OK\t2\t4");
    m.send("CACHE-FLUSH\t3\n").await;
    assert_eq!(m.line().await, "OK\t3\t0");
}

/// A DIGEST-MD5 client response (RFC 2831, qop=auth) to `challenge`.
fn digest_md5_response(challenge: &str, user: &str, realm: &str, pass: &str) -> String {
    use md5::{Digest, Md5};
    let nonce = challenge.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
    let (cnonce, nc, uri) = ("OA6MHXh6VqTrRk", "00000001", "imap/mx.example");
    let mut a1 = Md5::digest(format!("{user}:{realm}:{pass}").as_bytes()).to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    let ha1 = hex::encode(Md5::digest(&a1));
    let ha2 = hex::encode(Md5::digest(format!("AUTHENTICATE:{uri}").as_bytes()));
    let response = hex::encode(Md5::digest(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes()));
    let realm_part = if realm.is_empty() { String::new() } else { format!("realm=\"{realm}\",") };
    format!("username=\"{user}\",{realm_part}nonce=\"{nonce}\",cnonce=\"{cnonce}\",nc={nc},qop=auth,digest-uri=\"{uri}\",response={response},charset=utf-8")
}

#[tokio::test]
async fn digest_md5_hashes_the_name_the_client_sent() {
    let d = Daemon::start("  mechanisms: [plain, digest-md5]\n  failure_delay: 0s").await;
    let stored = saslgate::scheme::generate(saslgate::scheme::Scheme::DigestMd5, b"dpw", "dig@example.org", None).unwrap();
    std::fs::write(
        d.path("users.passwd"),
        format!("plain:{{PLAIN}}ppw\nplain@example.test:{{PLAIN}}qpw\ndig@example.org:{{DIGEST-MD5}}{stored}\nu@ex@mple:{{PLAIN}}upw\n"),
    )
    .unwrap();
    let mut c = d.client().await;
    // (id, user as sent, realm, password, expected reply)
    let rows = [
        (1, "plain", "", "ppw", "OK\t1\tuser=plain"),
        (2, "PLAIN", "", "ppw", "OK\t2\tuser=plain\toriginal_user=PLAIN"),
        (3, "plain@example.test", "", "qpw", "OK\t3\tuser=plain@example.test"),
        (4, "dig", "example.org", "dpw", "OK\t4\tuser=dig@example.org"),
        (5, "plain", "", "wrong", "FAIL\t5\tuser=plain"),
        (6, "dig", "example.org", "wrong", "FAIL\t6\tuser=dig@example.org"),
        // A realm holding '@' is hashed as sent, not re-split.
        (7, "u", "ex@mple", "upw", "OK\t7\tuser=u@ex@mple"),
        // An unknown user fails like a wrong password: same step, same line.
        (8, "nosuch", "", "x", "FAIL\t8\tuser=nosuch"),
    ];
    for (id, user, realm, pass, want) in rows {
        c.send(&format!("AUTH\t{id}\tDIGEST-MD5\tservice=imap\n")).await;
        let cont = c.line().await;
        let challenge = String::from_utf8(saslgate::protocol::base64::decode(cont.split('\t').nth(2).unwrap().as_bytes()).unwrap()).unwrap();
        assert!(challenge.contains("qop=\"auth\"") && challenge.contains("algorithm=\"md5-sess\""), "{challenge}");
        c.send(&format!("CONT\t{id}\t{}\n", b64(digest_md5_response(&challenge, user, realm, pass).as_bytes()))).await;
        let reply = c.line().await;
        if want.starts_with("OK") {
            // Without final-resp-ok, rspauth comes in a CONT; any answer then gets the OK.
            let rspauth = String::from_utf8(saslgate::protocol::base64::decode(reply.split('\t').nth(2).unwrap().as_bytes()).unwrap()).unwrap();
            assert!(rspauth.starts_with("rspauth=") && rspauth.len() == 8 + 32, "{reply} {rspauth}");
            c.send(&format!("CONT\t{id}\t\n")).await;
            assert_eq!(c.line().await, want);
        } else {
            assert_eq!(reply, want);
        }
    }
}

/// The 150 s request lifetime, on tokio's paused clock: a request left waiting for its CONT is
/// dropped without a reply, and a late CONT gets "timed out".
#[tokio::test(start_paused = true)]
async fn requests_time_out_after_150_seconds() {
    let d = Daemon::start(NO_DELAY).await;
    let mut c = d.client().await;
    c.send("AUTH\t1\tLOGIN\tservice=imap\n").await;
    assert_eq!(c.line().await, "CONT\t1\tVXNlcm5hbWU6");
    tokio::time::sleep(Duration::from_secs(149)).await;
    c.send("CONT\t1\tYWxpY2U=\n").await;
    assert_eq!(c.line().await, "CONT\t1\tUGFzc3dvcmQ6", "still alive at 149 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Dropped silently: nothing arrives, and the id is gone.
    assert_eq!(c.try_line(Duration::from_secs(5)).await, None);
    c.send("CONT\t1\tc2VjcmV0\n").await;
    assert_eq!(c.line().await, "FAIL\t1\treason=Authentication request timed out");
}

#[tokio::test]
async fn prefetch_userdb_answers_request_from_the_login() {
    let d = Daemon::start_with(NO_DELAY, "userdbs:\n  - { driver: prefetch }\n  - { driver: passwd-file, path: users.passwd }\n").await;
    std::fs::write(d.path("users.passwd"), "pf:{PLAIN}pw:1000:1000::/home/pf::userdb_uid=7777 userdb_home=/srv/pf quota=2G\n").unwrap();
    let mut login = Conn::open(&d.path("auth-login")).await;
    login.handshake(2).await;
    let cookie = login.handshake.iter().find_map(|l| l.strip_prefix("COOKIE\t")).unwrap().to_owned();
    login.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0pf\0pw"))).await;
    // userdb_* fields never appear in the OK.
    assert_eq!(login.line().await, "OK\t1\tuser=pf\tquota=2G");
    let mut m = Conn::open(&d.path("auth-master")).await;
    m.line().await;
    m.line().await;
    m.send(&format!("VERSION\t1\t1\nREQUEST\t5\t{}\t1\t{cookie}\n", std::process::id())).await;
    assert_eq!(m.line().await, "USER\t5\tpf\tuid=7777\thome=/srv/pf\tauth_mech=PLAIN");
    // A lookup by name had no login: prefetch finds nothing, the passwd-file userdb answers
    // (its own userdb_* extra fields override the uid and home columns, as in Dovecot).
    m.send("USER\t6\tpf\tservice=lmtp\n").await;
    assert_eq!(m.line().await, "USER\t6\tpf\tuid=7777\tgid=1000\thome=/srv/pf");
}

#[tokio::test]
async fn proxy_answers_carry_the_password_only_on_login_sockets() {
    let d = Daemon::start(NO_DELAY).await;
    std::fs::write(d.path("users.passwd"), "px:{PLAIN}secret::::::proxy host=10.1.1.1\nown:{PLAIN}secret::::::proxy=y pass=backendpw\n").unwrap();
    let mut login = Conn::open(&d.path("auth-login")).await;
    login.handshake(2).await;
    login.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0px\0secret"))).await;
    assert_eq!(login.line().await, "OK\t1\tuser=px\tproxy\thost=10.1.1.1\tpass=secret");
    login.send(&format!("AUTH\t2\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0own\0secret"))).await;
    assert_eq!(login.line().await, "OK\t2\tuser=own\tproxy\tpass=backendpw");
    let mut client = d.client().await;
    client.send(&format!("AUTH\t3\tPLAIN\tservice=smtp\tresp={}\n", b64(b"\0px\0secret"))).await;
    assert_eq!(client.line().await, "OK\t3\tuser=px\tproxy\thost=10.1.1.1");
}

#[tokio::test]
async fn proxied_master_logins_name_the_master_and_templates_see_the_password() {
    let d = Daemon::start_with_files(
        &format!("{NO_DELAY}\n  master_user_separator: \"*\""),
        "passdbs:\n  - { driver: passwd-file, path: masters, scheme: PLAIN, master: true }\n  \
         - { driver: passwd-file, path: users.passwd, scheme: PLAIN, override_fields: { x_pw: \"pw-%w\" } }\n",
        &[("masters", "admin:{PLAIN}adminpw::::::proxy host=10.2.2.2\n")],
    )
    .await;
    let mut login = Conn::open(&d.path("auth-login")).await;
    login.handshake(2).await;
    // Dovecot's order: passdb fields, original_user, auth_user, then pass and master.
    login.send(&format!("AUTH\t1\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0alice*admin\0adminpw"))).await;
    assert_eq!(login.line().await, "OK\t1\tuser=alice\tproxy\thost=10.2.2.2\toriginal_user=alice*admin\tauth_user=admin\tpass=adminpw\tmaster=admin");
    // Not a proxy: no master= (auth_user only), and %w expands to the password typed.
    login.send(&format!("AUTH\t2\tPLAIN\tservice=imap\tresp={}\n", b64(b"\0fast\0x"))).await;
    assert_eq!(login.line().await, "OK\t2\tuser=fast\tx_pw=pw-x");
    // Outside a password login %w is empty.
    let mut m = Conn::open(&d.path("auth-master")).await;
    m.send("VERSION\t1\t1\nPASS\t3\tfast\tservice=imap\n").await;
    let mut line = m.line().await;
    while !line.starts_with("PASS") {
        line = m.line().await; // the server's VERSION and SPID
    }
    assert!(line.contains("\tx_pw=pw-") && !line.contains("x_pw=pw-x"), "{line}");
    // An auth-only socket gets neither pass= nor master=.
    let mut client = d.client().await;
    client.send(&format!("AUTH\t4\tPLAIN\tservice=smtp\tresp={}\n", b64(b"\0alice*admin\0adminpw"))).await;
    assert_eq!(client.line().await, "OK\t4\tuser=alice\tproxy\thost=10.2.2.2\toriginal_user=alice*admin\tauth_user=admin");
}

#[tokio::test]
async fn a_listener_can_refuse_plaintext_whatever_the_service() {
    let d = Daemon::start_with(NO_DELAY, "listeners:\n  - { path: auth-client, disable_plaintext_auth: true }\n  - { path: auth-open }\n").await;
    let alice = b64(b"\0alice\0secret");
    let mut strict = d.client().await;
    strict.send(&format!("AUTH\t1\tPLAIN\tservice=smtp\trip=192.0.2.1\tresp={alice}\n")).await;
    assert_eq!(strict.line().await, "FAIL\t1\treason=Plaintext authentication disallowed on non-secure (SSL/TLS) connections.");
    strict.send(&format!("AUTH\t2\tPLAIN\tservice=smtp\trip=192.0.2.1\tsecured\tresp={alice}\n")).await;
    assert!(strict.line().await.starts_with("OK\t2\t"));
    let mut open = Conn::open(&d.path("auth-open")).await;
    open.handshake(2).await;
    open.send(&format!("AUTH\t3\tPLAIN\tservice=smtp\trip=192.0.2.1\tresp={alice}\n")).await;
    assert!(open.line().await.starts_with("OK\t3\t"));
}

/// One SCRAM-SHA-256 exchange up to the FAIL, with a proof no password gives. Returns the
/// server-first message's attributes and the final line.
async fn scram_until_fail(c: &mut Conn, id: u32, user: &str) -> (Vec<(String, String)>, String) {
    let cnonce = "rOprNGfwEbeRWgbNEkqO";
    c.send(&format!("AUTH\t{id}\tSCRAM-SHA-256\tservice=imap\tresp={}\n", b64(format!("n,,n={user},r={cnonce}").as_bytes()))).await;
    let cont = c.line().await;
    let Some(challenge) = cont.strip_prefix(&format!("CONT\t{id}\t")) else { return (Vec::new(), cont) };
    let server_first = String::from_utf8(saslgate::protocol::base64::decode(challenge.as_bytes()).unwrap()).unwrap();
    let attrs: Vec<(String, String)> = server_first.split(',').map(|a| a.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap()).collect();
    let nonce = &attrs[0].1;
    assert!(nonce.starts_with(cnonce) && nonce.len() > cnonce.len(), "{server_first}");
    let final_msg = format!("c=biws,r={nonce},p={}", b64(&[0x5a; 32]));
    c.send(&format!("CONT\t{id}\t{}\n", b64(final_msg.as_bytes()))).await;
    (attrs, c.line().await)
}

/// RFC 5802 §5.1: an unknown user (or one without SCRAM credentials) gets a server-first like a
/// real user's (a salt stable for the name, the default 4096 iterations) and fails only at the
/// proof, with the same FAIL line as a wrong password.
#[tokio::test]
async fn scram_does_not_tell_whether_a_user_exists() {
    let d = Daemon::start("  mechanisms: [plain, scram-sha-256]\n  failure_delay: 0s").await;
    let stored = saslgate::scheme::generate(saslgate::scheme::Scheme::ScramSha256, b"scrampw", "", None).unwrap();
    std::fs::write(
        d.path("users.passwd"),
        format!("scram:{{SCRAM-SHA-256}}{stored}\nplain:{{PLAIN}}ppw\nsha:{{SHA512-CRYPT}}$6$rounds=1000$abcdefgh$ignored\n"),
    )
    .unwrap();
    let mut c = d.client().await;
    let (known, known_fail) = scram_until_fail(&mut c, 1, "scram").await;
    let (plain, plain_fail) = scram_until_fail(&mut c, 2, "plain").await;
    let (ghost, ghost_fail) = scram_until_fail(&mut c, 3, "ghost").await;
    let (ghost_again, ghost_again_fail) = scram_until_fail(&mut c, 4, "ghost").await;
    let (other, other_fail) = scram_until_fail(&mut c, 5, "ghost2").await;
    let (sha, sha_fail) = scram_until_fail(&mut c, 6, "sha").await;
    let (plain_again, _) = scram_until_fail(&mut c, 7, "plain").await;
    // The same FAIL as a wrong password: only the id and the name differ.
    assert_eq!(known_fail, "FAIL\t1\tuser=scram");
    assert_eq!(plain_fail, "FAIL\t2\tuser=plain");
    assert_eq!(ghost_fail, "FAIL\t3\tuser=ghost");
    assert_eq!(ghost_again_fail, "FAIL\t4\tuser=ghost");
    assert_eq!(other_fail, "FAIL\t5\tuser=ghost2");
    assert_eq!(sha_fail, "FAIL\t6\tuser=sha", "a user without SCRAM credentials looks the same");
    // The same server-first shape: r, s, i; a 16-byte salt; 4096 iterations.
    let shape = |attrs: &[(String, String)]| {
        let keys: Vec<String> = attrs.iter().map(|(k, _)| k.clone()).collect();
        let salt = saslgate::protocol::base64::decode(attrs[1].1.as_bytes()).unwrap();
        (keys, salt.len(), attrs[2].1.clone())
    };
    let want = (vec!["r".to_owned(), "s".to_owned(), "i".to_owned()], 16, "4096".to_owned());
    for (name, attrs) in [("scram", &known), ("plain", &plain), ("ghost", &ghost), ("ghost2", &other), ("sha", &sha)] {
        assert_eq!(shape(attrs), want, "{name}: {attrs:?}");
    }
    // A stable salt for a repeated unknown name (as a stored credential's), another for another.
    assert_eq!(ghost[1], ghost_again[1]);
    assert_ne!(ghost[1], other[1]);
    // A plaintext user's converted credential keeps its salt too: repeating the exchange cannot
    // tell it from an unknown user.
    assert_eq!(plain[1], plain_again[1]);
    assert_ne!(ghost[0], ghost_again[0], "fresh server nonces");
    // A known user still logs in.
    assert_eq!(known[2].1, stored.split(',').next().unwrap());
}

/// Lines as the real Dovecot 2.3.19 writes them for the same inputs (captured from an
/// auth-only Dovecot on the same passwd-file).
#[tokio::test]
async fn empty_names_and_hidden_only_fields_match_dovecot_bytes() {
    let d = Daemon::start("  mechanisms: [plain, login, scram-sha-256]\n  failure_delay: 0s").await;
    std::fs::write(d.path("users.passwd"), "uf:{PLAIN}secret::::::userdb_x=1\nvis:{PLAIN}secret::::::foo=bar userdb_x=1\n").unwrap();
    let mut c = d.client().await;
    c.send(&format!("AUTH\t1\tPLAIN\tservice=smtp\tresp={}\n", b64(b"\0\0secret"))).await;
    assert_eq!(c.line().await, "FAIL\t1\tuser=\toriginal_user=");
    c.send("AUTH\t2\tLOGIN\tservice=smtp\n").await;
    assert_eq!(c.line().await, "CONT\t2\tVXNlcm5hbWU6");
    c.send("CONT\t2\t\n").await;
    assert_eq!(c.line().await, "FAIL\t2\tuser=\toriginal_user=");
    c.send(&format!("AUTH\t3\tSCRAM-SHA-256\tservice=smtp\tresp={}\n", b64(b"n,,n=,r=abcdefghijklmnop"))).await;
    assert_eq!(c.line().await, "FAIL\t3\tuser=\toriginal_user=");
    // Only hidden (userdb_*) fields: Dovecot still writes their TAB.
    c.send(&format!("AUTH\t4\tPLAIN\tservice=smtp\tresp={}\n", b64(b"\0uf\0secret"))).await;
    assert_eq!(c.line().await, "OK\t4\tuser=uf\t");
    c.send(&format!("AUTH\t5\tPLAIN\tservice=smtp\tresp={}\n", b64(b"\0vis\0secret"))).await;
    assert_eq!(c.line().await, "OK\t5\tuser=vis\tfoo=bar");
}

/// Dovecot's master clients read at most 8192 bytes per reply line: a USER reply that would be
/// longer is answered FAIL (and logged), never sent broken; one just under the limit goes out.
#[tokio::test]
async fn master_replies_longer_than_the_clients_accept_become_fail() {
    let big = "x".repeat(9000);
    let fits = "y".repeat(8000);
    let users = format!("big:{{PLAIN}}pw:1:1::/home/big::userdb_note={big}\nfits:{{PLAIN}}pw:1:1::/home/fits::userdb_note={fits}\n");
    let d = Daemon::start_with_files(NO_DELAY, "userdbs:\n  - { driver: passwd-file, path: big.passwd }\n", &[("big.passwd", &users)]).await;
    let mut m = Conn::open(&d.path("auth-master")).await;
    m.line().await;
    m.line().await;
    m.send("VERSION\t1\t0\nUSER\t1\tbig\tservice=lmtp\n").await;
    assert_eq!(m.line().await, "FAIL\t1\treason=Reply too large");
    m.send("USER\t2\tfits\tservice=lmtp\n").await;
    let line = m.line().await;
    assert!(line.starts_with("USER\t2\tfits\t") && line.len() < 8192 && line.ends_with(&fits), "{}", &line[..80]);
}
