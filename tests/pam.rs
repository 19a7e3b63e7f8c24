//! The `pam` passdb against real PAM modules (pam_userdb, pam_pwdfile, pam_listfile, pam_exec),
//! with service files in a temp folder read through `config_dir` (tests/pam_fixture).
//!
//! Most tests run a real daemon in-process (as tests/protocol.rs does) and speak the wire
//! protocol; the pool tests call `PamPool` directly to watch its slots.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod pam_fixture;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use pam_fixture::PamFixture;
use saslgate::client::Connection;
use saslgate::config;
use saslgate::db::pam::{PamOutcome, PamPool, PamRequest};
use saslgate::secret::Secret;
use saslgate::server::{self, listener};

/// Skips (with the reason printed) when the PAM modules or tools are missing.
macro_rules! need_pam {
    () => {
        if let Some(why) = pam_fixture::missing() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

struct Daemon {
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// A daemon whose one passdb is `pam` with these extra settings.
    async fn start(fx: &PamFixture, pam: &str) -> Daemon {
        // A folder of its own per daemon: a stopped daemon's socket may linger a moment.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = format!("run{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let sock_dir = fx.path().join(&run);
        std::fs::create_dir_all(&sock_dir).unwrap();
        let yaml = format!(
            "listeners:\n  - {{ path: {run}/auth-client }}\n\
             auth:\n  mechanisms: [plain, login]\n  failure_delay: 0s\n  penalty_max: 0s\n\
             passdbs:\n  - {{ driver: pam, config_dir: pam.d, {pam} }}\n"
        );
        let config = config::parse(&yaml, "pam-test.yaml", fx.path()).unwrap();
        let pool = saslgate::blocking::Pool::new(config.pool.threads, config.pool.queue).unwrap();
        let auth = Arc::new(saslgate::auth::Authenticator::from_config(&config, &pool));
        let shared = Arc::new(server::Shared::new(&config, auth));
        let listeners = config.listeners.iter().map(|l| (listener::into_tokio(listener::bind(l).unwrap()).unwrap(), l.clone())).collect();
        let (stop, stopped) = oneshot::channel::<()>();
        let max = config.limits.max_connections;
        let task = tokio::spawn(server::run(listeners, shared, max, async {
            let _ = stopped.await;
        }));
        Daemon { dir: sock_dir, stop: Some(stop), task }
    }

    async fn client(&self) -> Conn {
        let mut c = Conn::open(&self.dir.join("auth-client")).await;
        c.handshake().await;
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
}

impl Conn {
    async fn open(path: &Path) -> Conn {
        Conn { conn: Connection::open(path).await.unwrap() }
    }

    async fn handshake(&mut self) {
        self.conn.read_client_handshake().await.unwrap();
        self.send(&format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id())).await;
    }

    async fn send(&mut self, text: &str) {
        self.conn.send(text.as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        match self.conn.line_within(Duration::from_secs(20)).await {
            Ok(line) => String::from_utf8(line).unwrap(),
            Err(e) => panic!("no line from the server: {e}"),
        }
    }

    /// One PLAIN login; the reply line.
    async fn plain(&mut self, id: u32, user: &str, password: &str) -> String {
        self.send_plain(id, user, password).await;
        self.line().await
    }

    async fn send_plain(&mut self, id: u32, user: &str, password: &str) {
        let resp = saslgate::protocol::base64::encode(format!("\0{user}\0{password}").as_bytes());
        self.send(&format!("AUTH\t{id}\tPLAIN\tservice=smtp\trip=192.0.2.10\tresp={resp}\n")).await;
    }
}

#[tokio::test]
async fn passwords_unknown_users_and_refused_accounts() {
    need_pam!();
    let fx = PamFixture::new();
    let mut services = vec!["saslgate-userdb"];
    if fx.pwdfile_service {
        services.push("saslgate-pwdfile");
    } else {
        eprintln!("pam_pwdfile.so not installed (libpam-pwdfile): testing pam_userdb only");
    }
    for service in services {
        let d = Daemon::start(&fx, &format!("service: {service}")).await;
        let mut c = d.client().await;
        assert_eq!(c.plain(1, "pamuser1", "pampw1").await, "OK\t1\tuser=pamuser1", "{service}");
        assert_eq!(c.plain(2, "pamuser1", "wrong").await, "FAIL\t2\tuser=pamuser1", "{service}");
        assert_eq!(c.plain(3, "pamuser2", "pä ss€").await, "OK\t3\tuser=pamuser2", "{service}");
        assert_eq!(c.plain(4, "pamuser2", "pä ss").await, "FAIL\t4\tuser=pamuser2", "{service}");
        assert_eq!(c.plain(5, "nosuchuser", "pampw1").await, "FAIL\t5\tuser=nosuchuser", "{service}");
        // Right password, refused by the account stage (pam_listfile): user_disabled.
        assert_eq!(c.plain(6, "locked", "lockedpw").await, "FAIL\t6\tuser=locked\tcode=user_disabled", "{service}");
        // Wrong password for the refused account: a plain failure, nothing about the account.
        assert_eq!(c.plain(7, "locked", "nope").await, "FAIL\t7\tuser=locked", "{service}");
        // No empty passwords, whatever the modules think of them.
        assert_eq!(c.plain(8, "pamuser1", "").await, "FAIL\t8\tuser=pamuser1", "{service}");
    }
}

#[tokio::test]
async fn pool_answers_each_outcome() {
    need_pam!();
    let fx = PamFixture::new();
    let pool = PamPool::new(4, Duration::from_secs(10));
    let req = |user: &str, pw: &str| PamRequest {
        service: "saslgate-userdb".into(),
        user: user.into(),
        password: Secret::new(pw.as_bytes().to_vec()),
        rhost: Some("192.0.2.10".into()),
        session: true,
        setcred: false,
        config_dir: Some(fx.config_dir()),
    };
    assert_eq!(pool.authenticate(req("pamuser1", "pampw1")).await.outcome, PamOutcome::Ok);
    assert_eq!(pool.authenticate(req("pamuser2", "pä ss€")).await.outcome, PamOutcome::Ok);
    assert_eq!(pool.authenticate(req("pamuser1", "x")).await.outcome, PamOutcome::PasswordMismatch);
    assert_eq!(pool.authenticate(req("ghost", "x")).await.outcome, PamOutcome::UserUnknown);
    assert_eq!(pool.authenticate(req("locked", "lockedpw")).await.outcome, PamOutcome::UserDisabled);
    // A service without a file: PAM's `other` (or nothing) never lets anyone in.
    let mut r = req("pamuser1", "pampw1");
    r.service = "saslgate-no-such-service".into();
    assert_ne!(pool.authenticate(r).await.outcome, PamOutcome::Ok);
    assert_eq!(pool.busy(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_modules_time_out_while_other_logins_are_answered() {
    need_pam!();
    let fx = PamFixture::new();
    let d = Daemon::start(&fx, "service: saslgate-userdb, timeout: 3s, max_requests: 6").await;
    // Three logins of the user whose module hangs for 30 s, at once, on their own connections.
    let started = Instant::now();
    let mut hung = Vec::new();
    for i in 0..3u32 {
        let mut c = d.client().await;
        c.send_plain(100 + i, "hang", "hangpw").await;
        hung.push(tokio::spawn(async move { (c.line().await, started.elapsed()) }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the hung calls hold their slots
                                                          // Meanwhile other PAM logins are answered quickly, right or wrong.
    let mut c = d.client().await;
    for (id, user, pw, want) in
        [(1, "pamuser1", "pampw1", "OK\t1\tuser=pamuser1"), (2, "pamuser1", "bad", "FAIL\t2\tuser=pamuser1"), (3, "pamuser2", "pä ss€", "OK\t3\tuser=pamuser2")]
    {
        let t = Instant::now();
        assert_eq!(c.plain(id, user, pw).await, want);
        assert!(t.elapsed() < Duration::from_secs(1), "login {id} took {:?} while PAM calls hang", t.elapsed());
    }
    // The hung logins answer a temporary failure once the timeout has passed, not before.
    for (i, h) in hung.into_iter().enumerate() {
        let (line, after) = h.await.unwrap();
        assert_eq!(line, format!("FAIL\t{}\tuser=hang\tcode=temp_fail", 100 + i));
        assert!(after >= Duration::from_millis(2900) && after < Duration::from_secs(8), "answered after {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_calls_keep_their_slots_and_a_full_pool_refuses_quickly() {
    need_pam!();
    let fx = PamFixture::new();
    let pool = PamPool::new(2, Duration::from_secs(1)).with_slot_wait(Duration::from_millis(200));
    let req = |user: &str, pw: &str| PamRequest {
        service: "saslgate-userdb".into(),
        user: user.into(),
        password: Secret::new(pw.as_bytes().to_vec()),
        rhost: None,
        session: false,
        setcred: false,
        config_dir: Some(fx.config_dir()),
    };
    let a = tokio::spawn({
        let (pool, r) = (pool.clone(), req("hang", "hangpw"));
        async move { pool.authenticate(r).await }
    });
    let b = tokio::spawn({
        let (pool, r) = (pool.clone(), req("hang", "hangpw"));
        async move { pool.authenticate(r).await }
    });
    for h in [a, b] {
        let reply = h.await.unwrap();
        assert!(matches!(&reply.outcome, PamOutcome::TempFail(why) if why.contains("did not answer")), "{reply:?}");
    }
    // Both threads are still inside PAM: their slots stay taken.
    assert_eq!((pool.busy(), pool.overdue()), (2, 2));
    // A new call finds no slot: a temporary failure after the short slot wait, not the timeout.
    let t = Instant::now();
    let reply = pool.authenticate(req("pamuser1", "pampw1")).await;
    assert!(matches!(&reply.outcome, PamOutcome::TempFail(why) if why.contains("slots are busy")), "{reply:?}");
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
    assert_eq!(pool.busy(), 2, "a refused call must not start a thread");
}

#[tokio::test]
async fn star_service_is_the_request_service_and_failure_show_msg_parses() {
    need_pam!();
    let fx = PamFixture::new();
    // `*`: the service the client named, lowercased. `smtp` has no file in the folder, so the
    // right password must not log in; then a copy named smtp lets it in.
    let d = Daemon::start(&fx, "service: \"*\", failure_show_msg: true").await;
    let mut c = d.client().await;
    assert!(c.plain(1, "pamuser1", "pampw1").await.starts_with("FAIL\t1\t"));
    std::fs::copy(fx.config_dir().join("saslgate-userdb"), fx.config_dir().join("smtp")).unwrap();
    assert_eq!(c.plain(2, "pamuser1", "pampw1").await, "OK\t2\tuser=pamuser1");
}

/// A `pam_exec expose_authtok` checker script that refuses a password makes PAM answer
/// PAM_SYSTEM_ERR: that is a wrong password (plain FAIL, counted for the penalty), not a
/// temporary failure a client could retry without limit.
#[tokio::test]
async fn a_refusing_pam_exec_checker_is_a_wrong_password() {
    need_pam!();
    let fx = PamFixture::new();
    let dir = fx.config_dir();
    let script = dir.parent().unwrap().join("check.sh");
    std::fs::write(&script, "#!/bin/sh\nIFS= read -r pw\n[ \"$PAM_USER\" = pamuser1 ] && [ \"$pw\" = right ] && exit 0\nexit 1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("smtp"), format!("auth required pam_exec.so expose_authtok quiet {}\naccount required pam_permit.so\n", script.display())).unwrap();
    let d = Daemon::start(&fx, "service: \"*\"").await;
    let mut c = d.client().await;
    assert_eq!(c.plain(1, "pamuser1", "right").await, "OK\t1\tuser=pamuser1");
    assert_eq!(c.plain(2, "pamuser1", "wrong").await, "FAIL\t2\tuser=pamuser1");
}

/// `failure_show_msg`: what the PAM modules said reaches the client as `reason=` on a failure,
/// and never on a success; without the setting it is not sent.
#[tokio::test]
async fn failure_show_msg_sends_what_pam_said() {
    need_pam!();
    let fx = PamFixture::new();
    let dir = fx.config_dir();
    let script = dir.parent().unwrap().join("say.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'Password checks are logged'\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = std::fs::read_to_string(dir.join("saslgate-userdb")).unwrap();
    // pam_exec with `stdout` hands the script's output to our conversation as text.
    let talking = base.replacen("auth ", &format!("auth    optional pam_exec.so stdout {}\nauth ", script.display()), 1);
    std::fs::write(dir.join("smtp"), talking).unwrap();
    let d = Daemon::start(&fx, "service: \"*\", failure_show_msg: true").await;
    let mut c = d.client().await;
    assert_eq!(c.plain(1, "pamuser1", "wrong").await, "FAIL\t1\tuser=pamuser1\treason=Password checks are logged");
    assert_eq!(c.plain(2, "pamuser1", "pampw1").await, "OK\t2\tuser=pamuser1");
    drop(c);
    let quiet = Daemon::start(&fx, "service: \"*\"").await;
    let mut c = quiet.client().await;
    assert_eq!(c.plain(3, "pamuser1", "wrong").await, "FAIL\t3\tuser=pamuser1");
}
