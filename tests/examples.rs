//! Every classic setup in `conf.example/` is loaded as shipped and exercised: the listeners are
//! moved to a temp dir (and their owners dropped), the failure delay is set to 0 for speed, and
//! the scenario the file's comments promise is checked over the wire.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use saslgate::client::Connection;
use saslgate::server::{self, listener};

struct Running {
    _dir: tempfile::TempDir,
    sockets: Vec<(String, PathBuf)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Running {
    fn socket(&self, name: &str) -> &Path {
        &self.sockets.iter().find(|(n, _)| n == name).unwrap().1
    }
}

async fn start(example: &str) -> Running {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example").join(example);
    let mut config = saslgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut sockets = Vec::new();
    for l in &mut config.listeners {
        let name = l.path.file_name().unwrap().to_string_lossy().into_owned();
        l.path = dir.path().join(&name);
        l.user = None;
        l.group = None;
        sockets.push((name, l.path.clone()));
    }
    config.auth.failure_delay = Duration::ZERO;
    let pool = saslgate::blocking::Pool::new(1, 64).unwrap();
    let auth = Arc::new(saslgate::auth::Authenticator::from_config(&config, &pool));
    let shared = Arc::new(server::Shared::new(&config, auth));
    let listeners = config.listeners.iter().map(|l| (listener::into_tokio(listener::bind(l).unwrap()).unwrap(), l.clone())).collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(listeners, shared, 100, async {
        let _ = stopped.await;
    }));
    Running { _dir: dir, sockets, stop: Some(stop) }
}

struct Conn {
    conn: Connection,
    cookie: String,
}

impl Conn {
    async fn client(path: &Path) -> Conn {
        let (conn, handshake) = Connection::client(path, 2, std::process::id()).await.unwrap();
        Conn { conn, cookie: handshake.cookie.unwrap_or_default() }
    }

    async fn send(&mut self, s: &str) {
        self.conn.send(s.as_bytes()).await.unwrap();
    }

    async fn line(&mut self) -> String {
        String::from_utf8(self.conn.line_within(Duration::from_secs(10)).await.unwrap()).unwrap()
    }

    async fn auth(&mut self, id: u32, mech: &str, params: &str, resp: &[u8]) -> String {
        let resp = saslgate::protocol::base64::encode(resp);
        let resp = if resp.is_empty() { "=".to_owned() } else { resp };
        self.send(&format!("AUTH\t{id}\t{mech}\tservice={params}\tresp={resp}\n")).await;
        self.line().await
    }
}

#[tokio::test]
async fn postfix_sasl() {
    let r = start("postfix-sasl.yaml").await;
    let mut c = Conn::client(r.socket("auth")).await;
    assert_eq!(c.auth(1, "PLAIN", "smtp\tnologin\trip=192.0.2.1", b"\0alice\0alice-secret").await, "OK\t1\tuser=alice");
    // bob's passwd-file entry has only a userdb_ field, hidden from the OK: Dovecot then ends
    // the line with a TAB, and so do we (protocol-spec/client.md).
    assert_eq!(c.auth(2, "PLAIN", "smtp\tno-penalty", b"\0bob\0bob-secret").await, "OK\t2\tuser=bob\t");
    assert_eq!(c.auth(3, "PLAIN", "smtp\tno-penalty", b"\0bob\0wrong").await, "FAIL\t3\tuser=bob");
    c.send("AUTH\t4\tLOGIN\tservice=smtp\tno-penalty\n").await;
    assert_eq!(c.line().await, "CONT\t4\tVXNlcm5hbWU6");
}

#[tokio::test]
async fn certificate_or_password() {
    let r = start("cert-or-password.yaml").await;
    let mut c = Conn::client(r.socket("auth-login")).await;
    let cert = |user: &str| format!("imap\tno-penalty\tvalid-client-cert\tcert_username={user}");
    assert_eq!(c.auth(1, "PLAIN", "imap\tno-penalty", b"\0alice\0alice-secret").await, "OK\t1\tuser=alice");
    // The attacks: empty password, or EXTERNAL without a certificate.
    assert_eq!(c.auth(2, "PLAIN", "imap\tno-penalty", b"\0alice\0").await, "FAIL\t2\tuser=alice");
    assert_eq!(c.auth(3, "PLAIN", "imap\tno-penalty", b"\0carol\0").await, "FAIL\t3\tuser=carol");
    assert_eq!(c.auth(4, "EXTERNAL", "imap\tno-penalty", b"").await, "FAIL\t4");
    // Certificate logins for listed users only.
    assert_eq!(c.auth(5, "EXTERNAL", &cert("carol"), b"").await, "OK\t5\tuser=carol");
    assert_eq!(c.auth(6, "EXTERNAL", &cert("bob"), b"").await, "FAIL\t6\tuser=bob");
    // The mail process claims login 5.
    let mut m = Connection::master(r.socket("auth-master")).await.unwrap();
    let pid = std::process::id();
    m.send(format!("REQUEST\t77\t{pid}\t5\t{}\n", c.cookie).as_bytes()).await.unwrap();
    let line = String::from_utf8(m.line_within(Duration::from_secs(10)).await.unwrap()).unwrap();
    assert_eq!(line.trim_end(), "USER\t77\tcarol\tuid=5000\tgid=5000\thome=/var/mail//carol\tauth_mech=EXTERNAL");
}

#[tokio::test]
async fn client_certificate_required_except_smtp() {
    let r = start("client-cert-required.yaml").await;
    let mut login = Conn::client(r.socket("auth-login")).await;
    assert_eq!(login.auth(1, "PLAIN", "imap\tno-penalty", b"\0alice\0alice-secret").await, "FAIL\t1\treason=Client didn't present valid SSL certificate");
    assert_eq!(login.auth(2, "EXTERNAL", "imap\tno-penalty\tvalid-client-cert\tcert_username=carol", b"").await, "OK\t2\tuser=carol");
    assert_eq!(login.auth(3, "PLAIN", "imap\tno-penalty\tvalid-client-cert\tcert_username=alice", b"\0alice\0alice-secret").await, "OK\t3\tuser=alice");
    // A certificate for carol cannot be used with alice's password.
    assert_eq!(
        login.auth(4, "PLAIN", "imap\tno-penalty\tvalid-client-cert\tcert_username=carol", b"\0alice\0alice-secret").await,
        "FAIL\t4\tuser=carol\toriginal_user=alice"
    );
    let mut smtp = Conn::client(r.socket("auth-client")).await;
    assert_eq!(smtp.auth(5, "PLAIN", "smtp\tno-penalty", b"\0alice\0alice-secret").await, "OK\t5\tuser=alice");
}

#[tokio::test]
async fn pam_for_postfix() {
    let r = start("pam.yaml").await;
    let mut c = Conn::client(r.socket("auth")).await;
    // The system's PAM (/etc/pam.d/saslgate, else `other`) must refuse a user no system has;
    // tests/pam.rs checks right passwords against PAM services of its own.
    let reply = c.auth(1, "PLAIN", "smtp\tno-penalty", b"\0saslgate-no-such-user-7f3a\0secret").await;
    assert!(reply.starts_with("FAIL\t1\tuser=saslgate-no-such-user-7f3a"), "{reply}");
    // PAM can only check passwords: a credentials mechanism with only PAM is a config error.
    let dir = tempfile::tempdir().unwrap();
    let yaml = "listeners:\n  - { path: auth }\nauth:\n  mechanisms: [plain, cram-md5]\npassdbs:\n  - { driver: pam }\n";
    let err = saslgate::config::parse(yaml, "x.yaml", dir.path()).unwrap_err().to_string();
    assert!(err.starts_with("x.yaml:"), "{err}");
}

/// Every file in conf.example/ loads as shipped.
#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            saslgate::config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            loaded.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    loaded.sort();
    for want in ["active-directory.yaml", "dovecot-replace-auth.yaml", "pam.yaml", "postfix-sasl.yaml", "saslgate.yaml"] {
        assert!(loaded.iter().any(|l| l == want), "{want} not among {loaded:?}");
    }
}

/// The Active Directory example offers NTLM and GSS-SPNEGO through /usr/bin/ntlm_auth, runs
/// with group winbindd_priv, and gives every user the static userdb's fields. (Logins through
/// a real winbindd with this file: tests/e2e_pam_winbind.rs.)
#[tokio::test]
async fn active_directory() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example/active-directory.yaml");
    let config = saslgate::config::load(&path).unwrap();
    assert_eq!(config.group.as_deref(), Some("winbindd_priv"));
    assert_eq!(config.winbind.helper_path, Path::new("/usr/bin/ntlm_auth"));
    assert!(config.passdbs.is_empty());
    assert!(matches!(
        config.userdbs[..],
        [saslgate::config::UserdbConfig { driver: saslgate::config::UserdbDriver::Static { allow_all_users: true, .. }, .. }]
    ));
    let r = start("active-directory.yaml").await;
    let mut conn = Connection::open(r.socket("auth")).await.unwrap();
    let handshake = conn.read_client_handshake().await.unwrap();
    let mechs: Vec<&str> = handshake.lines.iter().filter_map(|l| l.strip_prefix("MECH\t")).collect();
    // Dovecot's flags: NTLM is dictionary + active, GSS-SPNEGO has none.
    assert_eq!(mechs, ["NTLM\tdictionary\tactive", "GSS-SPNEGO"]);
}

/// dovecot-replace-auth.yaml: a master user logs in as the user (`alice*admin`), a wrong
/// master password fails. (The real Dovecot runs it in tests/dovecot_imap.rs.)
#[tokio::test]
async fn dovecot_replace_auth_master_user() {
    let r = start("dovecot-replace-auth.yaml").await;
    let mut c = Conn::client(r.socket("saslgate-client")).await;
    let ok = c.auth(1, "PLAIN", "imap\tno-penalty", b"\0alice*admin\0admin-secret").await;
    assert!(ok.starts_with("OK\t1\tuser=alice\t") || ok == "OK\t1\tuser=alice", "{ok}");
    let fail = c.auth(2, "PLAIN", "imap\tno-penalty", b"\0alice*admin\0wrong").await;
    assert!(fail.starts_with("FAIL\t2"), "{fail}");
}
