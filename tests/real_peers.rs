//! Real-peer integration tests: the built `saslgate` binary against the unmodified programs it
//! stands in for Dovecot's auth daemon with.
//!
//! * `doveadm` (Debian package `dovecot-core`): `auth test` over the client protocol, `auth login`
//!   over the login + master protocols, `auth lookup` / `user` over the userdb socket.
//! * Postfix (`postfix`) with `smtpd_sasl_type = dovecot`, driven over SMTP by `swaks` (`swaks`).
//!
//! Every test starts its own peers under a fresh temp dir (Unix sockets; Postfix on 127.0.0.1 on
//! a free port), stops them by PID in Drop guards, and prints saslgate's stderr (and Postfix's
//! log) when it fails. Users are hashed by `doveadm pw` at test time, so the hashes are the real
//! thing. A missing peer program is a test failure that names the Debian package to install
//! (`scripts/install-deps.sh` installs them all); these tests never skip. The Postfix tests need
//! root (Postfix's master starts as root and drops to its `postfix` user).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SASLGATE: &str = env!("CARGO_BIN_EXE_saslgate");
/// How long saslgate or Postfix may take to come up.
const STARTUP: Duration = Duration::from_secs(10);
/// Upper bound for one peer command (doveadm, swaks): a hang is a failure, not a stuck suite.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Programs and commands
// ---------------------------------------------------------------------------------------------

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Postfix lives in /usr/sbin, which a non-root PATH often lacks.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].into_iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The path of `program`, or a failure naming the Debian package that provides it.
fn require(program: &str, package: &str) -> PathBuf {
    match find_program(program) {
        Some(p) => p,
        None => panic!(
            "this real-peer test needs `{program}`, which is not installed.\n\
             Install the Debian package `{package}`: run `scripts/install-deps.sh` as root \
             (or `apt-get install {package}`). Real-peer tests fail rather than skip."
        ),
    }
}

fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this real-peer test must run as root: {why}. Run it as root (CI does: `bash .ci/run`), \
         e.g. `sudo -E cargo test --test real_peers`."
    );
}

/// What a finished command did.
struct Output {
    cmdline: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Output {
    /// The exit code; -1 when killed by a signal.
    fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.cmdline)?;
        writeln!(f, "exit: {} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "--- stdout:\n{}", self.stdout)?;
        write!(f, "--- stderr:\n{}", self.stderr)
    }
}

/// Runs `cmd` to completion (stdin closed), bounded by `timeout`. Output goes to anonymous files,
/// not pipes, so a daemon that keeps the descriptors open (Postfix's master) cannot block us.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let cmdline = format!("{cmd:?}");
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(err.try_clone().unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {timeout:?}: {cmdline}\n--- stdout:\n{}\n--- stderr:\n{}", read_all(&mut out), read_all(&mut err));
        }
        thread::sleep(Duration::from_millis(5));
    };
    let elapsed = start.elapsed();
    Output { cmdline, status, stdout: read_all(&mut out), stderr: read_all(&mut err), elapsed }
}

fn read_all(f: &mut File) -> String {
    let mut bytes = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// A fresh directory that Postfix's unprivileged processes can traverse (0755), directly under
/// /tmp so that socket paths stay far below the 108-byte limit of a Unix socket address.
fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("saslgate-rp-").tempdir_in("/tmp").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// Users (hashed by doveadm pw) and doveadm
// ---------------------------------------------------------------------------------------------

struct User {
    name: &'static str,
    scheme: &'static str,
    pass: &'static str,
    uid: u32,
}

/// One user per scheme; passwords with spaces, punctuation and non-ASCII on purpose.
const USERS: &[User] = &[
    User { name: "plain", scheme: "PLAIN", pass: "plain secret 1", uid: 5001 },
    User { name: "sha512", scheme: "SHA512-CRYPT", pass: "sha512-Secret_2!", uid: 5002 },
    User { name: "blf", scheme: "BLF-CRYPT", pass: "blf Sécret 3", uid: 5003 },
    User { name: "ssha256", scheme: "SSHA256", pass: "ssha256:Secret/4", uid: 5004 },
    User { name: "crammd5", scheme: "CRAM-MD5", pass: "cram Secret 5", uid: 5005 },
    User { name: "digestmd5", scheme: "DIGEST-MD5", pass: "digest Secret 6", uid: 5006 },
    User { name: "scram256", scheme: "SCRAM-SHA-256", pass: "scram Secret 7", uid: 5007 },
];

fn user(name: &str) -> &'static User {
    USERS.iter().find(|u| u.name == name).unwrap()
}

/// `doveadm` with a minimal config of its own: no running Dovecot, nothing under /etc read.
struct Doveadm {
    bin: PathBuf,
    conf: PathBuf,
}

impl Doveadm {
    fn new(dir: &Path) -> Doveadm {
        let bin = require("doveadm", "dovecot-core");
        let conf = dir.join("dovecot.conf");
        fs::write(
            &conf,
            format!(
                "# doveadm only; no Dovecot runs\nprotocols = none\nbase_dir = {d}/dovecot-run\nstate_dir = {d}/dovecot-state\n\
                 ssl = no\nlog_path = /dev/stderr\ninfo_log_path = /dev/stderr\n",
                d = dir.display()
            ),
        )
        .unwrap();
        Doveadm { bin, conf }
    }

    fn run(&self, args: &[&str]) -> Output {
        run(Command::new(&self.bin).arg("-c").arg(&self.conf).args(args), CMD_TIMEOUT)
    }

    /// `{SCHEME}hash` of `pass`, as Dovecot writes it.
    fn hash(&self, scheme: &str, pass: &str, user: &str) -> String {
        // DIGEST-MD5 hashes the user name (and realm) in: doveadm needs -u.
        let out = self.run(&["pw", "-s", scheme, "-p", pass, "-u", user]);
        let hash = out.stdout.trim().to_owned();
        assert!(out.code() == 0 && hash.starts_with(&format!("{{{scheme}}}")), "doveadm pw failed\n{out}");
        hash
    }

    /// Writes `users.passwd` into `dir` with every user of [`USERS`].
    fn write_users(&self, dir: &Path) {
        let mut text = String::new();
        for u in USERS {
            let hash = self.hash(u.scheme, u.pass, u.name);
            text.push_str(&format!(
                "{}:{hash}:{uid}:{uid}::{home}::userdb_quota_rule=*:storage=1G\n",
                u.name,
                uid = u.uid,
                home = dir.join("home").join(u.name).display()
            ));
        }
        fs::write(dir.join("users.passwd"), text).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// saslgate
// ---------------------------------------------------------------------------------------------

const SOCKETS: [&str; 4] = ["auth-client", "auth-login", "auth-master", "auth-userdb"];

/// The saslgate binary, running until dropped.
struct Saslgate {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Saslgate {
    /// Starts saslgate in `dir` (which holds `users.passwd`) with `auth` as its `auth:` block, and
    /// waits for its four sockets.
    fn start(dir: &Path, auth: &str) -> Saslgate {
        Saslgate::start_with(dir, auth, "{ driver: passwd-file, path: users.passwd }")
    }

    /// [`Saslgate::start`] with this userdb block.
    fn start_with(dir: &Path, auth: &str, userdb: &str) -> Saslgate {
        let config = dir.join("saslgate.yaml");
        let listeners: String = SOCKETS.iter().map(|s| format!("  - {{ path: {s}, mode: \"0666\" }}\n")).collect();
        fs::write(
            &config,
            format!(
                "listeners:\n{listeners}auth: {auth}\nlog: {{ level: debug }}\n\
                 passdbs:\n  - {{ driver: passwd-file, path: users.passwd }}\n\
                 userdbs:\n  - {userdb}\n"
            ),
        )
        .unwrap();
        let log = dir.join("saslgate.stderr");
        let child = Command::new(SASLGATE)
            .arg("--config")
            .arg(&config)
            .env_remove("SASLGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(File::create(dir.join("saslgate.stdout")).unwrap()))
            .stderr(Stdio::from(File::create(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SASLGATE}: {e}"));
        let mut sg = Saslgate { child, dir: dir.to_owned(), log };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = sg.child.try_wait().unwrap() {
                panic!("saslgate exited during startup ({status}); config:\n{}", fs::read_to_string(&config).unwrap_or_default());
            }
            let up = SOCKETS.iter().all(|s| fs::symlink_metadata(sg.sock(s)).is_ok_and(|m| m.file_type().is_socket()));
            if up {
                return sg;
            }
            assert!(Instant::now() < deadline, "saslgate did not create its sockets within {STARTUP:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn sock_str(&self, name: &str) -> String {
        self.sock(name).to_str().unwrap().to_owned()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX))
    }

    /// SIGTERM, then up to 5 s for a clean exit; `None` if it had to be killed.
    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = kill(self.pid(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Saslgate {
    fn drop(&mut self) {
        self.terminate();
        if thread::panicking() {
            eprintln!("--- saslgate stderr ({}):\n{}", self.log.display(), tail(&self.log, 200));
        }
    }
}

/// A temp dir with users and a running saslgate (failure delay 0 unless `auth` says otherwise).
fn setup(auth: &str) -> (tempfile::TempDir, Doveadm, Saslgate) {
    let tmp = temp_dir();
    let doveadm = Doveadm::new(tmp.path());
    doveadm.write_users(tmp.path());
    let sg = Saslgate::start(tmp.path(), auth);
    (tmp, doveadm, sg)
}

const FAST: &str = "{ mechanisms: [plain, login], failure_delay: 0s }";

// ---------------------------------------------------------------------------------------------
// doveadm
// ---------------------------------------------------------------------------------------------

/// `doveadm auth test` (client protocol, PLAIN) for every scheme: right password → exit 0 and
/// "auth succeeded", wrong password and unknown user → exit 77 and "auth failed".
#[test]
fn doveadm_auth_test_every_scheme() {
    let (_tmp, doveadm, sg) = setup(FAST);
    let client = sg.sock_str("auth-client");
    for u in USERS {
        let out = doveadm.run(&["auth", "test", "-a", &client, u.name, u.pass]);
        assert!(out.code() == 0, "{} ({}): right password must succeed\n{out}", u.name, u.scheme);
        assert!(out.stdout.contains(&format!("passdb: {} auth succeeded", u.name)), "{}: no success line\n{out}", u.name);
        assert!(out.stdout.contains(&format!("user={}", u.name)), "{}: no user= field\n{out}", u.name);

        let wrong = format!("{}x", u.pass);
        let out = doveadm.run(&["auth", "test", "-a", &client, u.name, &wrong]);
        assert!(out.code() == 77, "{} ({}): wrong password must exit 77\n{out}", u.name, u.scheme);
        assert!(out.stdout.contains(&format!("passdb: {} auth failed", u.name)), "{}: no failure line\n{out}", u.name);
    }
    // Another user's password is wrong too.
    let out = doveadm.run(&["auth", "test", "-a", &client, "sha512", user("plain").pass]);
    assert!(out.code() == 77 && out.stdout.contains("auth failed"), "sha512 with plain's password\n{out}");
    let out = doveadm.run(&["auth", "test", "-a", &client, "nosuchuser", "whatever"]);
    assert!(out.code() == 77 && out.stdout.contains("passdb: nosuchuser auth failed"), "unknown user must exit 77\n{out}");
    // username_format %Lu (the default): the login name is lowercased before the lookup.
    let out = doveadm.run(&["auth", "test", "-a", &client, "SHA512", user("sha512").pass]);
    assert!(out.code() == 0 && out.stdout.contains("auth succeeded") && out.stdout.contains("user=sha512"), "SHA512 must log in as sha512\n{out}");
}

/// Master protocol on the userdb socket: `auth lookup` (PASS), `user` (USER, with uid, home and
/// extra fields), `user '*'` (LIST), and exit 67 for a user that does not exist.
#[test]
fn doveadm_userdb_socket_lookups() {
    let (tmp, doveadm, sg) = setup(FAST);
    let userdb = sg.sock_str("auth-userdb");

    let out = doveadm.run(&["auth", "lookup", "-a", &userdb, "plain"]);
    assert!(out.code() == 0 && out.stdout.contains("passdb: plain"), "PASS lookup of plain\n{out}");
    let out = doveadm.run(&["auth", "lookup", "-a", &userdb, "nosuchuser"]);
    assert!(out.code() == 67, "PASS lookup of nosuchuser must exit 67\n{out}");

    for u in USERS {
        let out = doveadm.run(&["user", "-a", &userdb, u.name]);
        assert!(out.code() == 0, "USER lookup of {}\n{out}", u.name);
        let home = tmp.path().join("home").join(u.name);
        for want in [format!("uid\t{}", u.uid), format!("gid\t{}", u.uid), format!("home\t{}", home.display()), "quota_rule\t*:storage=1G".to_owned()] {
            assert!(out.stdout.lines().any(|l| l == want), "USER lookup of {}: no line {want:?}\n{out}", u.name);
        }
    }
    let out = doveadm.run(&["user", "-a", &userdb, "nosuchuser"]);
    assert!(out.code() == 67, "USER lookup of nosuchuser must exit 67\n{out}");

    // LIST: doveadm user with a wildcard iterates the userdb.
    let out = doveadm.run(&["user", "-a", &userdb, "*"]);
    assert!(out.code() == 0, "LIST over the userdb socket\n{out}");
    let mut listed: Vec<&str> = out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = USERS.iter().map(|u| u.name).collect();
    want.sort_unstable();
    assert_eq!(listed, want, "LIST must return every user\n{out}");
}

/// Login + master protocols together, as a Dovecot login process and its master do it: `doveadm
/// auth login` authenticates on auth-login, then sends REQUEST on auth-master and prints the
/// userdb fields it gets back.
#[test]
fn doveadm_auth_login_then_master_request() {
    let (tmp, doveadm, sg) = setup(FAST);
    let login = sg.sock_str("auth-login");
    let master = sg.sock_str("auth-master");
    let u = user("blf");
    let out = doveadm.run(&["auth", "login", "-a", &login, "-m", &master, u.name, u.pass]);
    assert!(out.code() == 0, "auth login of {} must succeed\n{out}", u.name);
    assert!(out.stdout.contains(&format!("passdb: {} auth succeeded", u.name)), "no passdb success line\n{out}");
    let home = format!("home={}", tmp.path().join("home").join(u.name).display());
    for want in [format!("uid={}", u.uid), home, "quota_rule=*:storage=1G".to_owned()] {
        assert!(out.stdout.contains(&want), "master REQUEST reply lacks {want:?}\n{out}");
    }
    let out = doveadm.run(&["auth", "login", "-a", &login, "-m", &master, u.name, "wrong"]);
    assert!(out.code() == 77 && out.stdout.contains("auth failed"), "auth login with a wrong password must exit 77\n{out}");
}

/// A finished login keeps its whole request for REQUEST: userdb templates using `%s`, `%r` and
/// `%{session}` expand on `doveadm auth login` (REQUEST) exactly as on `doveadm user` (USER)
/// with the same parameters. Dovecot gives `mail=maildir:/var/mail/imap/blf`; before the request
/// layer kept the login's request, saslgate gave `mail=maildir:/var/mail//blf`.
#[test]
fn request_userdb_templates_see_the_login_request() {
    let tmp = temp_dir();
    let doveadm = Doveadm::new(tmp.path());
    doveadm.write_users(tmp.path());
    let userdb = r#"{ driver: passwd-file, path: users.passwd, override_fields: { mail: "maildir:/var/mail/%s/%u", client_ip: "%r", sess: "%{session}" } }"#;
    let sg = Saslgate::start_with(tmp.path(), FAST, userdb);
    let u = user("blf");
    let params = ["-x", "service=imap", "-x", "rip=192.0.2.7", "-x", "session=sess42"];
    let (login_socket, master_socket) = (sg.sock_str("auth-login"), sg.sock_str("auth-master"));
    let mut login_args = vec!["auth", "login", "-a", &login_socket[..], "-m", &master_socket[..]];
    login_args.extend(params);
    login_args.extend([u.name, u.pass]);
    let login = doveadm.run(&login_args);
    assert!(login.code() == 0, "auth login must succeed\n{login}");
    let userdb_socket = sg.sock_str("auth-userdb");
    let mut user_args = vec!["user", "-a", &userdb_socket[..]];
    user_args.extend(params);
    user_args.push(u.name);
    let lookup = doveadm.run(&user_args);
    assert!(lookup.code() == 0, "doveadm user must find {}\n{lookup}", u.name);
    let mail = format!("maildir:/var/mail/imap/{}", u.name);
    // `doveadm user` sends service and rip but no session (checked on the wire): the session
    // is compared on REQUEST only.
    assert!(login.stdout.contains("sess=sess42"), "REQUEST reply lacks sess=sess42\n{login}");
    for (key, want) in [("mail", mail.as_str()), ("client_ip", "192.0.2.7")] {
        // `auth login` prints `userdb extra fields:` then `  key=value`; `user` prints `key value`.
        assert!(login.stdout.contains(&format!("{key}={want}")), "REQUEST reply lacks {key}={want}\n{login}");
        let user_line = lookup.stdout.lines().find(|l| l.split_whitespace().next() == Some(key));
        assert_eq!(user_line.and_then(|l| l.split_whitespace().nth(1)), Some(want), "USER reply lacks {key} {want}\n{lookup}");
    }
}

/// SIGTERM stops saslgate cleanly (exit 0) and removes its sockets.
#[test]
fn saslgate_stops_cleanly_on_sigterm() {
    let (_tmp, doveadm, mut sg) = setup(FAST);
    let out = doveadm.run(&["auth", "test", "-a", &sg.sock_str("auth-client"), "plain", user("plain").pass]);
    assert!(out.code() == 0, "sanity: auth test before stopping\n{out}");
    let status = sg.terminate();
    assert!(status.is_some_and(|s| s.success()), "saslgate must exit 0 on SIGTERM within 5 s, got {status:?}");
    for s in SOCKETS {
        assert!(!sg.sock(s).exists(), "socket {s} left behind after a clean stop");
    }
}

// ---------------------------------------------------------------------------------------------
// Postfix + swaks
// ---------------------------------------------------------------------------------------------

/// A throwaway Postfix on 127.0.0.1:`port`, SASL via saslgate's client socket, until dropped.
struct Postfix {
    bin: PathBuf,
    etc: PathBuf,
    log: PathBuf,
    master_pid: i32,
    port: u16,
}

impl Postfix {
    fn start(dir: &Path, auth_socket: &Path) -> Postfix {
        Postfix::start_with(dir, auth_socket, "noanonymous")
    }

    /// With `smtpd_sasl_security_options = security_options`.
    fn start_with(dir: &Path, auth_socket: &Path, security_options: &str) -> Postfix {
        require_root("Postfix's master starts as root and drops to the `postfix` user");
        let bin = require("postfix", "postfix");
        let pf_user = nix::unistd::User::from_name("postfix")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the `postfix` system user is missing: (re)install the Debian package `postfix`"));
        assert!(
            nix::unistd::Group::from_name("postdrop").ok().flatten().is_some(),
            "the `postdrop` group is missing: (re)install the Debian package `postfix`"
        );
        let port = free_port();
        let root = dir.join("postfix");
        let (etc, spool, data) = (root.join("etc"), root.join("spool"), root.join("data"));
        for d in [&root, &etc, &spool, &data] {
            fs::create_dir_all(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        nix::unistd::chown(&data, Some(pf_user.uid), Some(pf_user.gid)).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        let log = root.join("postfix.log");
        File::create(&log).unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();

        // chroot off (column 5 = n): an absolute smtpd_sasl_path then works as is.
        fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {spool}\n\
                 data_directory = {data}\n\
                 mail_owner = postfix\n\
                 setgid_group = postdrop\n\
                 myhostname = saslgate-test.localdomain\n\
                 mydomain = localdomain\n\
                 myorigin = $myhostname\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 mynetworks = 127.0.0.1/32\n\
                 mydestination =\n\
                 relay_domains =\n\
                 local_recipient_maps =\n\
                 alias_maps =\n\
                 alias_database =\n\
                 local_transport = error:local delivery disabled\n\
                 default_transport = discard:test\n\
                 relay_transport = discard:test\n\
                 smtputf8_enable = no\n\
                 biff = no\n\
                 smtpd_peername_lookup = no\n\
                 smtpd_banner = $myhostname ESMTP saslgate-test\n\
                 maillog_file = {log}\n\
                 maillog_file_prefixes = {dir}\n\
                 smtpd_sasl_auth_enable = yes\n\
                 smtpd_sasl_type = dovecot\n\
                 smtpd_sasl_path = {sock}\n\
                 smtpd_sasl_security_options = {security_options}\n\
                 smtpd_sasl_authenticated_header = no\n\
                 broken_sasl_auth_clients = no\n\
                 smtpd_tls_security_level = none\n\
                 smtpd_relay_restrictions = permit_sasl_authenticated, reject\n\
                 smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n",
                spool = spool.display(),
                data = data.display(),
                log = log.display(),
                dir = dir.display(),
                sock = auth_socket.display(),
                security_options = security_options,
            ),
        )
        .unwrap();
        let services = [
            ("pickup", "unix  n - n 60 1", "pickup"),
            ("cleanup", "unix  n - n - 0", "cleanup"),
            ("qmgr", "unix  n - n 300 1", "qmgr"),
            ("rewrite", "unix  - - n - -", "trivial-rewrite"),
            ("bounce", "unix  - - n - 0", "bounce"),
            ("defer", "unix  - - n - 0", "bounce"),
            ("trace", "unix  - - n - 0", "bounce"),
            ("verify", "unix  - - n - 1", "verify"),
            ("flush", "unix  n - n 1000? 0", "flush"),
            ("proxymap", "unix  - - n - -", "proxymap"),
            ("proxywrite", "unix  - - n - 1", "proxymap"),
            ("showq", "unix  n - n - -", "showq"),
            ("error", "unix  - - n - -", "error"),
            ("retry", "unix  - - n - -", "error"),
            ("discard", "unix  - - n - -", "discard"),
            ("anvil", "unix  - - n - 1", "anvil"),
            ("scache", "unix  - - n - 1", "scache"),
            ("postlog", "unix-dgram n - n - 1", "postlogd"),
        ];
        let mut master_cf = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
        for (name, cols, cmd) in services {
            master_cf.push_str(&format!("{name} {cols} {cmd}\n"));
        }
        fs::write(etc.join("master.cf"), master_cf).unwrap();

        // `postfix start` creates the queue tree with the right owners, checks, starts master.
        let out = run(Command::new(&bin).arg("-c").arg(&etc).arg("start"), Duration::from_secs(60));
        assert!(out.code() == 0, "postfix start failed\n{out}\n--- postfix log:\n{}", tail(&log, 50));
        let pidfile = spool.join("pid").join("master.pid");
        let deadline = Instant::now() + STARTUP;
        let master_pid = loop {
            let pid = fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<i32>().ok());
            if let Some(pid) = pid.filter(|&p| pid_alive(p)) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break pid;
                }
            }
            if Instant::now() > deadline {
                // Nothing to stop by PID yet; try the command, then report.
                let _ = run(Command::new(&bin).arg("-c").arg(&etc).arg("stop"), Duration::from_secs(20));
                panic!("Postfix did not listen on 127.0.0.1:{port} within {STARTUP:?}\n--- postfix log:\n{}", tail(&log, 50));
            }
            thread::sleep(Duration::from_millis(50));
        };
        Postfix { bin, etc, log, master_pid, port }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = run(Command::new(&self.bin).arg("-c").arg(&self.etc).arg("stop"), Duration::from_secs(20));
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(self.master_pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if pid_alive(self.master_pid) {
            let _ = kill(Pid::from_raw(self.master_pid), Signal::SIGKILL);
            eprintln!("Postfix master {} did not stop; killed it", self.master_pid);
        }
        if thread::panicking() {
            eprintln!("--- postfix log ({}):\n{}", self.log.display(), tail(&self.log, 80));
        }
    }
}

/// Fails early, before anything starts, when Postfix, swaks or root is missing.
fn require_postfix_peers() {
    require_root("Postfix's master starts as root and drops to the `postfix` user");
    require("postfix", "postfix");
    require("swaks", "swaks");
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// swaks against the Postfix instance, with `args` after the connection options.
fn swaks(port: u16, args: &[&str]) -> Output {
    let bin = require("swaks", "swaks");
    let port = port.to_string();
    let mut cmd = Command::new(bin);
    cmd.args(["--server", "127.0.0.1", "--port", &port, "--ehlo", "client.test", "--timeout", "20"]).args(args);
    run(&mut cmd, CMD_TIMEOUT)
}

/// swaks with AUTH `mech` as `user`, quitting after AUTH.
fn swaks_auth(port: u16, mech: &str, user: &str, pass: &str) -> Output {
    let from = format!("{user}@example.test");
    swaks(port, &["--from", &from, "--to", "rcpt@remote.example", "--auth", mech, "--auth-user", user, "--auth-password", pass, "--quit-after", "AUTH"])
}

/// The first server reply (code and line) after the client line starting with `command`,
/// skipping 334 challenges: the server's verdict on that command.
fn reply_to(out: &Output, command: &str) -> Option<(u16, String)> {
    let mut seen = false;
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("->") {
            if rest.trim_start().to_ascii_uppercase().starts_with(command) {
                seen = true;
            }
            continue;
        }
        if !seen || !trimmed.starts_with('<') {
            continue;
        }
        // Server lines: "<-  235 ...", "<** 535 ...", "<~  ..." (TLS).
        let body = trimmed.trim_start_matches(['<', '-', '*', '~']).trim_start();
        let Some(code) = body.get(..3).and_then(|c| c.parse::<u16>().ok()) else { continue };
        if code != 334 {
            return Some((code, body.to_owned()));
        }
    }
    None
}

fn assert_auth(port: u16, mech: &str, u: &str, pass: &str, want: u16) -> Output {
    let out = swaks_auth(port, mech, u, pass);
    let got = reply_to(&out, "AUTH");
    assert!(got.as_ref().is_some_and(|(c, _)| *c == want), "AUTH {mech} as {u}: want {want}, got {got:?}\n{out}");
    // swaks exits 0 only when everything it was asked to do succeeded.
    assert_eq!(out.code() == 0, want == 235, "AUTH {mech} as {u}: unexpected swaks exit code\n{out}");
    out
}

/// Postfix authenticates through saslgate: PLAIN and LOGIN, right and wrong passwords, a
/// `{PLAIN}` and a SHA512-CRYPT user, an unknown user; relaying needs AUTH.
#[test]
fn postfix_smtp_auth_through_saslgate() {
    require_postfix_peers();
    let (tmp, _doveadm, sg) = setup(FAST);
    let pf = Postfix::start(tmp.path(), &sg.sock("auth-client"));

    for name in ["plain", "sha512"] {
        let u = user(name);
        for mech in ["PLAIN", "LOGIN"] {
            let out = assert_auth(pf.port, mech, u.name, u.pass, 235);
            // Postfix offers exactly saslgate's mechanisms, in its order.
            assert!(out.stdout.lines().any(|l| l.trim_end().ends_with("250-AUTH PLAIN LOGIN")), "EHLO must offer AUTH PLAIN LOGIN\n{out}");
            assert_auth(pf.port, mech, u.name, &format!("{}-wrong", u.pass), 535);
        }
    }
    assert_auth(pf.port, "PLAIN", "nosuchuser", "whatever", 535);
    assert_auth(pf.port, "LOGIN", "sha512", user("plain").pass, 535);

    // Relaying to a remote domain: refused without AUTH, accepted after it.
    let out = swaks(pf.port, &["--from", "a@example.test", "--to", "rcpt@remote.example", "--quit-after", "RCPT"]);
    let got = reply_to(&out, "RCPT TO");
    assert!(got.as_ref().is_some_and(|(c, l)| *c == 554 && l.contains("5.7.1")), "relay without AUTH must be refused with 554 5.7.1, got {got:?}\n{out}");
    let u = user("sha512");
    let out = swaks(
        pf.port,
        &[
            "--from",
            "sha512@example.test",
            "--to",
            "rcpt@remote.example",
            "--auth",
            "LOGIN",
            "--auth-user",
            u.name,
            "--auth-password",
            u.pass,
            "--quit-after",
            "RCPT",
        ],
    );
    assert_eq!(reply_to(&out, "AUTH").map(|(c, _)| c), Some(235), "AUTH before the relay\n{out}");
    let got = reply_to(&out, "RCPT TO");
    assert!(got.as_ref().is_some_and(|(c, l)| *c == 250 && l.contains("2.1.5")), "relay after AUTH must be accepted with 250 2.1.5, got {got:?}\n{out}");
    assert!(out.code() == 0, "swaks relay after AUTH\n{out}");
}

/// With saslgate's default failure delay (2 s) the FAIL still reaches Postfix well inside its
/// reply timeout: 535, not 454 (temporary failure); successes are not delayed.
#[test]
fn postfix_with_default_failure_delay() {
    require_postfix_peers();
    let (tmp, _doveadm, sg) = setup("{ mechanisms: [plain, login] }");
    let pf = Postfix::start(tmp.path(), &sg.sock("auth-client"));
    let u = user("plain");

    let ok = assert_auth(pf.port, "PLAIN", u.name, u.pass, 235);
    assert!(ok.elapsed < Duration::from_millis(1800), "a success must not wait for the failure delay\n{ok}");
    for mech in ["PLAIN", "LOGIN"] {
        let out = assert_auth(pf.port, mech, u.name, "wrong password", 535);
        assert!(out.elapsed >= Duration::from_millis(1950), "AUTH {mech} failure came back before the 2 s failure delay\n{out}");
        assert!(out.elapsed < Duration::from_secs(8), "AUTH {mech} failure took too long for Postfix\n{out}");
    }
}

/// Postfix hides mechanisms by the MECH flags saslgate advertises, as it does with Dovecot:
/// `noplaintext` (PLAIN, LOGIN), `noanonymous`, `nodictionary` and `noactive` (CRAM-MD5).
/// CRAM-MD5 then works for a user stored as `{PLAIN}`, and fails for a SHA512-CRYPT user (its
/// hash cannot serve a challenge-response mechanism, as with Dovecot).
#[test]
fn postfix_security_options_follow_mech_flags() {
    require_postfix_peers();
    let (tmp, _doveadm, sg) = setup("{ mechanisms: [plain, login, cram-md5, anonymous], failure_delay: 0s }");
    for (options, offered) in [
        ("noanonymous", "PLAIN LOGIN CRAM-MD5"),
        ("noanonymous, noplaintext", "CRAM-MD5"),
        ("noanonymous, nodictionary", "PLAIN LOGIN"),
        ("noanonymous, noactive", "PLAIN LOGIN"),
        ("noplaintext", "CRAM-MD5 ANONYMOUS"),
    ] {
        let dir = tmp.path().join(options.replace([',', ' '], ""));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let pf = Postfix::start_with(&dir, &sg.sock("auth-client"), options);
        let out = swaks(pf.port, &["--quit-after", "EHLO"]);
        let want = format!("250-AUTH {offered}");
        assert!(out.stdout.lines().any(|l| l.trim_end().ends_with(&want)), "{options}: want {want}\n{out}");
        if options == "noanonymous, noplaintext" {
            // A plaintext mechanism is refused by Postfix itself; CRAM-MD5 goes through saslgate.
            let refused = swaks_auth(pf.port, "PLAIN", "plain", user("plain").pass);
            assert_ne!(reply_to(&refused, "AUTH").map(|(c, _)| c), Some(235), "{refused}");
            assert_auth(pf.port, "CRAM-MD5", "plain", user("plain").pass, 235);
            assert_auth(pf.port, "CRAM-MD5", "plain", "wrong", 535);
            assert_auth(pf.port, "CRAM-MD5", "sha512", user("sha512").pass, 535);
        }
    }
}

/// CRAM-MD5 and DIGEST-MD5 through Postfix + swaks: users stored as `{PLAIN}` and as
/// `{CRAM-MD5}` / `{DIGEST-MD5}` credentials log in (235), wrong passwords and a SHA512-CRYPT
/// user fail (535), as with Dovecot.
#[test]
fn postfix_challenge_response_mechanisms() {
    require_postfix_peers();
    let (tmp, _doveadm, sg) = setup("{ mechanisms: [plain, login, cram-md5, digest-md5], failure_delay: 0s }");
    let pf = Postfix::start(tmp.path(), &sg.sock("auth-client"));
    for (mech, stored_user) in [("CRAM-MD5", "crammd5"), ("DIGEST-MD5", "digestmd5")] {
        for name in ["plain", stored_user] {
            let u = user(name);
            assert_auth(pf.port, mech, u.name, u.pass, 235);
            assert_auth(pf.port, mech, u.name, "wrong", 535);
        }
        assert_auth(pf.port, mech, "sha512", user("sha512").pass, 535);
        assert_auth(pf.port, mech, "nosuchuser", "x", 535);
    }
}

/// SCRAM-SHA-1 and SCRAM-SHA-256 against an independent client implementation (Python's
/// `scramp`, from PyPI; scripts/install-deps.sh installs it): users stored as `{PLAIN}` and as
/// `{SCRAM-SHA-256}` log in, the client verifies the server's signature, with and without
/// `final-resp-ok`; a wrong password fails.
#[test]
fn scram_with_an_independent_client() {
    let python = require("python3", "python3");
    let probe = run(Command::new(&python).args(["-c", "import scramp"]), CMD_TIMEOUT);
    assert!(probe.code() == 0, "the Python package scramp is missing: run scripts/install-deps.sh (python3 -m pip install scramp)\n{probe}");
    let (_tmp, _doveadm, sg) = setup("{ mechanisms: [plain, scram-sha-1, scram-sha-256], failure_delay: 0s }");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/scram_client.py");
    let client = sg.sock_str("auth-client");
    let scram = |mech: &str, name: &str, pass: &str, extra: &[&str]| {
        let mut cmd = Command::new(&python);
        cmd.arg(&script).args([client.as_str(), mech, name, pass]).args(extra);
        run(&mut cmd, CMD_TIMEOUT)
    };
    for (mech, name) in [("SCRAM-SHA-1", "plain"), ("SCRAM-SHA-256", "plain"), ("SCRAM-SHA-256", "scram256")] {
        let u = user(name);
        for extra in [&[][..], &["final-resp-ok"][..]] {
            let out = scram(mech, u.name, u.pass, extra);
            assert!(out.code() == 0 && out.stdout.contains(&format!("OK\t1\tuser={}", u.name)), "{mech} {name} {extra:?}\n{out}");
        }
        let out = scram(mech, u.name, "wrong", &[]);
        assert_eq!(out.code(), 1, "{mech} {name} wrong password\n{out}");
    }
    // A SHA512-CRYPT user cannot use SCRAM (no SCRAM credentials can be derived from the hash).
    let out = scram("SCRAM-SHA-256", "sha512", user("sha512").pass, &[]);
    assert_eq!(out.code(), 1, "{out}");
}

/// `doveadm auth test -x` passes AUTH parameters as given: with `ssl_username_from_cert`, the
/// certificate's name (`-x valid-client-cert -x cert_username=…`) replaces the one typed, so a
/// password only works for the certificate's user; `service=` selects the per-service policy.
#[test]
fn doveadm_auth_test_with_certificate_parameters() {
    let (tmp, doveadm, sg) =
        setup("{ mechanisms: [plain, login], failure_delay: 0s, penalty_max: 0s, ssl_username_from_cert: true, ssl_require_client_cert: true }");
    let _ = tmp;
    let client = sg.sock_str("auth-client");
    let (plain, sha) = (user("plain"), user("sha512"));
    let cert = |name: &str| format!("cert_username={name}");
    let ok = doveadm.run(&["auth", "test", "-a", &client, "-x", "service=imap", "-x", "valid-client-cert", "-x", &cert(plain.name), "someone", plain.pass]);
    assert!(ok.code() == 0 && ok.stdout.contains(&format!("user={}", plain.name)), "{ok}");
    let wrong = doveadm.run(&["auth", "test", "-a", &client, "-x", "service=imap", "-x", "valid-client-cert", "-x", &cert(sha.name), plain.name, plain.pass]);
    assert_eq!(wrong.code(), 77, "another certificate's user with plain's password\n{wrong}");
    let no_cert = doveadm.run(&["auth", "test", "-a", &client, "-x", "service=imap", plain.name, plain.pass]);
    assert_eq!(no_cert.code(), 77, "a required certificate is missing\n{no_cert}");
    let empty = doveadm.run(&["auth", "test", "-a", &client, "-x", "service=imap", "-x", "valid-client-cert", plain.name, plain.pass]);
    assert_eq!(empty.code(), 77, "a valid certificate without a user name\n{empty}");
}
