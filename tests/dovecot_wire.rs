//! Wire fidelity against the real thing: an auth-only Dovecot 2.3 (Debian `dovecot-core`) and
//! saslgate on the same passwd-file get the same table of raw client-protocol inputs, and their
//! reply lines must be byte for byte equal. The handshake (SPID, CUID, COOKIE differ per
//! process) is not compared, nor timing (both run with a failure delay of 0, and each case comes
//! from its own `rip` so that no penalty applies); the deliberate
//! differences of `protocol-spec/client.md` §3.5.1 are removed before comparing (`nodelay`
//! is not echoed on OK; the inputs here never reach `return-fail` or a credentials lookup).
//!
//! Root only (Dovecot's master starts as root): without root the test prints
//! `SKIPPED: needs root` and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SASLGATE: &str = env!("CARGO_BIN_EXE_saslgate");

fn wait_socket(path: &Path, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        assert!(Instant::now() < deadline, "{what} never created {}; log:\n{}", path.display(), fs::read_to_string(log).unwrap_or_default());
        thread::sleep(Duration::from_millis(50));
    }
}

/// An auth-only Dovecot (protocols = none), stopped through its master.pid.
struct Dovecot {
    run: PathBuf,
}

impl Dovecot {
    fn start(dir: &Path, users: &Path) -> Dovecot {
        let run = dir.join("dovecot-run");
        let log = dir.join("dovecot.log");
        let conf = dir.join("dovecot.conf");
        fs::create_dir_all(dir.join("dovecot-state")).unwrap();
        fs::write(
            &conf,
            format!(
                "protocols = none\nbase_dir = {run}\nstate_dir = {dir}/dovecot-state\nlog_path = {log}\nssl = no\n\
                 disable_plaintext_auth = no\ndefault_internal_user = dovecot\ndefault_login_user = dovenull\n\
                 auth_mechanisms = plain login\nauth_failure_delay = 0\nauth_username_format = %Lu\nauth_cache_size = 0\n\
                 passdb {{\n  driver = passwd-file\n  args = {users}\n}}\nuserdb {{\n  driver = passwd-file\n  args = {users}\n}}\n\
                 service auth {{\n  unix_listener auth-client {{\n    mode = 0666\n  }}\n}}\n",
                run = run.display(),
                dir = dir.display(),
                log = log.display(),
                users = users.display(),
            ),
        )
        .unwrap();
        let err = dir.join("dovecot.stderr");
        let status = Command::new("/usr/sbin/dovecot")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "dovecot did not start: {}", fs::read_to_string(&err).unwrap_or_default());
        let d = Dovecot { run };
        wait_socket(&d.run.join("auth-client"), "dovecot", &log);
        d
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Ok(pid) = fs::read_to_string(self.run.join("master.pid")) else { return };
        let Ok(pid) = pid.trim().parse::<i32>() else { return };
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// saslgate on its own client socket, stopped by PID.
struct Saslgate {
    child: Child,
    log: PathBuf,
}

impl Saslgate {
    fn start(dir: &Path, users: &Path) -> Saslgate {
        let config = dir.join("saslgate.yaml");
        fs::write(
            &config,
            format!(
                "listeners:\n  - {{ path: sg-auth-client, type: client, mode: \"0666\" }}\n  - {{ path: sg-auth-login, type: login }}\n  - {{ path: sg-auth-master, type: master }}\n  - {{ path: sg-auth-userdb, type: userdb }}\n\
                 auth: {{ mechanisms: [plain, login], failure_delay: 0s, username_format: \"%Lu\" }}\n\
                 passdbs:\n  - {{ driver: passwd-file, path: {u} }}\nuserdbs:\n  - {{ driver: passwd-file, path: {u} }}\n",
                u = users.display()
            ),
        )
        .unwrap();
        let log = dir.join("saslgate.stderr");
        let child = Command::new(SASLGATE)
            .arg("--config")
            .arg(&config)
            .env_remove("SASLGATE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_socket(&dir.join("sg-auth-client"), "saslgate", &log);
        Saslgate { child, log }
    }
}

impl Drop for Saslgate {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- saslgate stderr:\n{}", fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

/// The input table: (name, lines sent one at a time; each gets exactly one reply line).
fn cases() -> Vec<(&'static str, Vec<String>)> {
    let plain = |id: u32, data: &[u8]| vec![format!("AUTH\t{id}\tPLAIN\tservice=smtp\tresp={}", b64(data))];
    vec![
        ("plain right", plain(1, b"\0plain\0secret")),
        ("plain wrong", plain(2, b"\0plain\0bad")),
        ("plain unknown user", plain(3, b"\0nobody\0bad")),
        ("plain empty user", plain(4, b"\0\0secret")),
        ("plain empty password", plain(5, b"\0plain\0")),
        ("plain authzid = authcid", plain(6, b"plain\0plain\0secret")),
        ("plain authzid of another user", plain(7, b"other\0plain\0secret")),
        ("plain upper-case name (%Lu)", plain(8, b"\0PLAIN\0secret")),
        ("plain without NULs", plain(9, b"garbage")),
        ("invalid base64", vec!["AUTH\t10\tPLAIN\tservice=smtp\tresp=!!!".into()]),
        ("plain without initial response", vec!["AUTH\t11\tPLAIN\tservice=smtp".into(), format!("CONT\t11\t{}", b64(b"\0plain\0secret"))]),
        ("login right", vec!["AUTH\t20\tLOGIN\tservice=smtp".into(), format!("CONT\t20\t{}", b64(b"plain")), format!("CONT\t20\t{}", b64(b"secret"))]),
        ("login wrong", vec!["AUTH\t21\tLOGIN\tservice=smtp".into(), format!("CONT\t21\t{}", b64(b"plain")), format!("CONT\t21\t{}", b64(b"bad"))]),
        ("login empty user", vec!["AUTH\t22\tLOGIN\tservice=smtp".into(), "CONT\t22\t".into()]),
        ("login invalid base64", vec!["AUTH\t23\tLOGIN\tservice=smtp".into(), "CONT\t23\t***".into()]),
    ]
}

/// Runs each case of the table on a fresh connection to `sock`; the reply lines, per case
/// (`<no reply>` when none came within 5 s).
fn replies(sock: &Path) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for (_, inputs) in cases() {
        let mut s = UnixStream::connect(sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"VERSION\t1\t2\nCPID\t4242\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "{} closed during the handshake", sock.display());
            if line == "DONE\n" {
                break;
            }
        }
        let mut got = Vec::new();
        for input in inputs {
            // Dovecot's penalty is kept per remote IP, and "" when none is given: each case
            // comes from its own address, so no case waits out the penalty of the one before.
            let input = match input.split('\t').nth(1).filter(|_| input.starts_with("AUTH\t")) {
                Some(id) => input.replacen("\tservice=smtp", &format!("\tservice=smtp\trip=192.0.2.{id}\tlip=192.0.2.200"), 1),
                None => input,
            };
            s.write_all(format!("{input}\n").as_bytes()).unwrap();
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => got.push("<closed>".to_owned()),
                Ok(_) => got.push(normalize(line.strip_suffix('\n').unwrap_or(&line))),
                Err(_) => {
                    got.push("<no reply>".to_owned());
                    break;
                }
            }
        }
        all.push(got);
    }
    all
}

/// Removes the deliberate differences (protocol-spec/client.md §3.5.1) that these inputs can
/// show: `nodelay` on an OK.
fn normalize(line: &str) -> String {
    if line.starts_with("OK\t") {
        line.split('\t').filter(|f| *f != "nodelay").collect::<Vec<_>>().join("\t")
    } else {
        line.to_owned()
    }
}

#[test]
fn client_protocol_replies_match_dovecot_byte_for_byte() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root (Dovecot's master starts as root)");
        return;
    }
    assert!(Path::new("/usr/sbin/dovecot").exists(), "/usr/sbin/dovecot is missing: run scripts/install-deps.sh (dovecot-core)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let users = dir.join("users.passwd");
    fs::write(&users, format!("plain:{{PLAIN}}secret:5000:5000::{}/home/plain::\n", dir.display())).unwrap();
    fs::set_permissions(&users, fs::Permissions::from_mode(0o644)).unwrap();

    let dovecot = Dovecot::start(dir, &users);
    let sg = Saslgate::start(dir, &users);
    let want = replies(&dovecot.run.join("auth-client"));
    let got = replies(&dir.join("sg-auth-client"));
    drop(sg);

    // The table is worth something only if it reaches both outcomes.
    assert!(want[0][0].starts_with("OK\t1\t"), "Dovecot's own answer to the right password: {:?}", want[0]);
    assert!(want[1][0].starts_with("FAIL\t2\t"), "{:?}", want[1]);
    for ((name, _), d) in cases().iter().zip(&want) {
        eprintln!("{name}: {d:?}");
    }
    let mut diffs = String::new();
    for (((name, inputs), d), s) in cases().iter().zip(&want).zip(&got) {
        if d != s {
            diffs.push_str(&format!("{name}: {inputs:?}\n  dovecot:  {d:?}\n  saslgate: {s:?}\n"));
        }
    }
    assert!(diffs.is_empty(), "reply lines differ from Dovecot 2.3:\n{diffs}");
}

/// doveadm, as a mail admin runs it, against Dovecot's own auth and against saslgate on the
/// same passwd-file: `auth test` (client socket), `auth lookup` (PASS), `user` (USER) and
/// `auth login` (login socket, then REQUEST on the master socket) print the same things and
/// exit with the same codes.
#[test]
fn doveadm_sees_the_same_answers_from_both() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root (Dovecot's master starts as root)");
        return;
    }
    assert!(Path::new("/usr/sbin/dovecot").exists(), "/usr/sbin/dovecot is missing: run scripts/install-deps.sh (dovecot-core)");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let users = dir.join("users.passwd");
    let home = dir.join("home");
    fs::write(&users, format!("plain:{{PLAIN}}secret:5000:5000::{h}/plain::userdb_quota_rule=*:storage=1G\nsha:{{SHA512-CRYPT}}$6$rounds=5000$saltsalt$ignored:5001:5001::{h}/sha::\n", h = home.display())).unwrap();
    fs::set_permissions(&users, fs::Permissions::from_mode(0o644)).unwrap();
    let dovecot = Dovecot::start(dir, &users);
    let _sg = Saslgate::start(dir, &users);
    let conf = dir.join("dovecot.conf");
    let doveadm = |args: &[&str]| -> (i32, String) {
        let out = Command::new("doveadm").arg("-c").arg(&conf).args(args).stdin(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let path = |p: PathBuf| p.to_str().unwrap().to_owned();
    let dc = |name: &str| path(dovecot.run.join(name));
    let sg = |name: &str| path(dir.join(format!("sg-{name}")));
    for socket in ["auth-login", "auth-master", "auth-userdb"] {
        wait_socket(Path::new(&dc(socket)), "dovecot", &dir.join("dovecot.log"));
        wait_socket(Path::new(&sg(socket)), "saslgate", &dir.join("saslgate.stderr"));
    }
    type Probe = (&'static str, fn(&dyn Fn(&str) -> String) -> Vec<String>);
    let probes: [Probe; 7] = [
        ("auth test right", |s| vec!["auth".into(), "test".into(), "-a".into(), s("auth-client"), "plain".into(), "secret".into()]),
        ("auth test wrong", |s| vec!["auth".into(), "test".into(), "-a".into(), s("auth-client"), "plain".into(), "bad".into()]),
        ("auth lookup", |s| vec!["auth".into(), "lookup".into(), "-a".into(), s("auth-master"), "plain".into()]),
        ("auth lookup unknown", |s| vec!["auth".into(), "lookup".into(), "-a".into(), s("auth-master"), "nobody".into()]),
        ("user", |s| vec!["user".into(), "-a".into(), s("auth-userdb"), "plain".into()]),
        ("user unknown", |s| vec!["user".into(), "-a".into(), s("auth-userdb"), "nobody".into()]),
        ("auth login", |s| vec!["auth".into(), "login".into(), "-a".into(), s("auth-login"), "-m".into(), s("auth-master"), "plain".into(), "secret".into()]),
    ];
    let mut diffs = String::new();
    for (name, args) in probes {
        let on = |sock: &dyn Fn(&str) -> String| {
            let args = args(sock);
            doveadm(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let want = on(&dc);
        let got = on(&sg);
        eprintln!("{name}: dovecot {want:?}");
        if want != got {
            diffs.push_str(&format!("{name}:\n  dovecot:  {want:?}\n  saslgate: {got:?}\n"));
        }
    }
    // The probes reach both outcomes on Dovecot itself.
    assert_eq!(doveadm(&["auth", "test", "-a", &dc("auth-client"), "plain", "secret"]).0, 0);
    assert_ne!(doveadm(&["auth", "test", "-a", &dc("auth-client"), "plain", "bad"]).0, 0);
    assert!(diffs.is_empty(), "doveadm's answers differ between Dovecot 2.3 and saslgate:\n{diffs}");
}
