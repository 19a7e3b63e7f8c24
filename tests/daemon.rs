//! The `saslgate` binary as an admin runs it: the embedded default, start-up errors, the
//! privilege drop, stale sockets, and a clean stop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_saslgate");

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(cwd: &Path, args: &[&str]) -> Running {
        let log = cwd.join("saslgate.log");
        let child = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .env("SASLGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_socket(path: &Path, running: &Running) {
    let start = Instant::now();
    // Every socket bound and the start-up lines written, not just this one socket listening.
    while UnixStream::connect(path).is_err() || !running.log().contains("saslgate started") {
        assert!(start.elapsed() < Duration::from_secs(10), "no socket {}; log:\n{}", path.display(), running.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PLAIN login over a fresh connection; returns the reply line.
fn auth(socket: &Path, user: &str, pass: &str) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while line != "DONE\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    let resp = saslgate::protocol::base64::encode(format!("\0{user}\0{pass}").as_bytes());
    write!(s, "VERSION\t1\t2\nCPID\t1\nAUTH\t1\tPLAIN\tservice=test\tresp={resp}\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

#[test]
fn embedded_default_serves_the_demo_users() {
    let dir = tempfile::tempdir().unwrap();
    let d = Running::start(dir.path(), &[]);
    let sock = dir.path().join("run/auth-client");
    wait_for_socket(&sock, &d);
    assert!(dir.path().join("run/users.passwd").exists());
    for socket in ["auth-login", "auth-master", "auth-userdb"] {
        assert!(dir.path().join("run").join(socket).exists(), "{socket}");
    }
    assert_eq!(auth(&sock, "alice", "alice-secret"), "OK\t1\tuser=alice");
    assert_eq!(auth(&sock, "bob", "bob-secret"), "OK\t1\tuser=bob");
    assert_eq!(auth(&sock, "carol", "carol-secret"), "OK\t1\tuser=carol");
}

#[test]
fn sigterm_stops_and_removes_the_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Running::start(dir.path(), &[]);
    let sock = dir.path().join("run/auth-client");
    wait_for_socket(&sock, &d);
    // Serving (so the signal handlers are in place): a connection gets its handshake.
    assert_eq!(auth(&sock, "alice", "alice-secret"), "OK\t1\tuser=alice");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(!sock.exists());
}

#[test]
fn stale_socket_is_replaced_and_a_live_one_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    // A stale socket file: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("run/auth-client")).unwrap());
    let d = Running::start(dir.path(), &[]);
    let sock = dir.path().join("run/auth-client");
    wait_for_socket(&sock, &d);
    assert_eq!(auth(&sock, "alice", "alice-secret"), "OK\t1\tuser=alice");
    // A second daemon on the same sockets refuses to start.
    let out = Command::new(BIN).current_dir(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process is listening"), "{err}");
    // ... and the first one still works.
    assert_eq!(auth(&sock, "alice", "alice-secret"), "OK\t1\tuser=alice");
}

#[test]
fn config_errors_name_file_line_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bad.yaml");
    std::fs::write(&conf, "listeners:\n  - { path: s }\npassdbs:\n  - driver: passwd-file\n    path: nowhere.passwd\n").unwrap();
    for args in [vec!["--config", conf.to_str().unwrap()], vec!["--config", conf.to_str().unwrap(), "check"]] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:5: passdbs[0].path:", conf.display())), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    }
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example/saslgate.yaml");
    let out = Command::new(BIN).args(["--config", good.to_str().unwrap(), "check"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A `nopassword` passdb with no mechanism filter accepts any password for any user: `check`
/// must say so (and still exit 0), and the daemon must log it once logging is up.
#[test]
fn nopassword_warning_is_shown_by_check_and_logged_by_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("open.yaml");
    std::fs::write(
        &conf,
        "listeners:\n  - { path: auth-client }\nauth:\n  failure_delay: 0s\npassdbs:\n  - driver: static\n    fields: { nopassword: \"\" }\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["--config", conf.to_str().unwrap(), "check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning is not an error: {stderr}");
    assert!(stdout.contains("ok") && stdout.contains("1 warning"), "{stdout}");
    assert!(stderr.contains(&format!("saslgate: warning: {}:6: passdbs[0]:", conf.display())), "{stderr}");
    assert!(stderr.contains("nopassword") && stderr.contains("any password is accepted"), "{stderr}");

    // A config without the risk prints no warning.
    let safe = dir.path().join("safe.yaml");
    std::fs::write(
        &safe,
        "listeners:\n  - { path: auth-client }\npassdbs:\n  - driver: static\n    fields: { nopassword: \"\" }\n    mechanisms: [external]\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["--config", safe.to_str().unwrap(), "check"]).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", String::from_utf8_lossy(&out.stderr));

    let d = Running::start(dir.path(), &["--config", conf.to_str().unwrap()]);
    let sock = dir.path().join("auth-client");
    wait_for_socket(&sock, &d);
    // The risk is real: any password works.
    assert_eq!(auth(&sock, "anyone", "anything"), "OK\t1\tuser=anyone");
    let log = d.log();
    let line = log.lines().find(|l| l.contains("nopassword")).unwrap_or_else(|| panic!("no warning in the log:\n{log}"));
    assert!(line.contains("WARN") && line.contains("passdbs[0]") && line.contains("any password is accepted"), "{line}");
}

#[test]
fn root_drops_privileges_before_serving() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test needs root (it checks the privilege drop); CI runs as root");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\n").unwrap();
    // The daemon user must read the passwd-file and reach the sockets.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.path().join("saslgate.yaml");
    std::fs::write(
        &conf,
        "user: nobody\ngroup: nogroup\nlisteners:\n  - { path: auth-client, mode: \"0666\" }\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
    )
    .unwrap();
    let d = Running::start(dir.path(), &["--config", conf.to_str().unwrap()]);
    let sock = dir.path().join("auth-client");
    wait_for_socket(&sock, &d);
    assert_eq!(auth(&sock, "alice", "pw"), "OK\t1\tuser=alice");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw().to_string();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap().gid.as_raw().to_string();
    assert_eq!(field("Uid:"), [nobody.as_str(); 4].join(" "));
    assert_eq!(field("Gid:"), [nogroup.as_str(); 4].join(" "));
    assert_eq!(field("Groups:"), "", "supplementary groups must be cleared");
    assert!(!d.log().contains("running as root"));
}

/// `extra_groups` are the only supplementary groups kept after the drop (e.g. `winbindd_priv`
/// for ntlm_auth); root's own groups never survive.
#[test]
fn root_keeps_only_the_listed_extra_groups() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test needs root (it checks the privilege drop); CI runs as root");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\n").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.path().join("saslgate.yaml");
    std::fs::write(
        &conf,
        "user: nobody\ngroup: nogroup\nextra_groups: [daemon]\nlisteners:\n  - { path: auth-client, mode: \"0666\" }\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
    )
    .unwrap();
    let d = Running::start(dir.path(), &["--config", conf.to_str().unwrap()]);
    let sock = dir.path().join("auth-client");
    wait_for_socket(&sock, &d);
    assert_eq!(auth(&sock, "alice", "pw"), "OK\t1\tuser=alice");
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap().split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    let daemon = nix::unistd::Group::from_name("daemon").unwrap().unwrap().gid.as_raw().to_string();
    assert_eq!(groups, daemon, "only the listed group");
}

#[test]
fn root_without_user_warns_loudly() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("this test needs root; CI runs as root");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Running::start(dir.path(), &[]);
    wait_for_socket(&dir.path().join("run/auth-client"), &d);
    assert!(d.log().contains("running as root"), "{}", d.log());
}

#[test]
fn cache_flush_cli_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\nbob:{PLAIN}pw\n").unwrap();
    let conf = dir.path().join("saslgate.yaml");
    std::fs::write(
        &conf,
        "listeners:\n  - { path: auth-client }\n  - { path: auth-master }\nauth:\n  failure_delay: 0s\n  cache: { size: 100 }\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: PLAIN }\n",
    )
    .unwrap();
    let d = Running::start(dir.path(), &["--config", conf.to_str().unwrap()]);
    let sock = dir.path().join("auth-client");
    wait_for_socket(&sock, &d);
    assert_eq!(auth(&sock, "alice", "pw"), "OK\t1\tuser=alice");
    assert_eq!(auth(&sock, "bob", "pw"), "OK\t1\tuser=bob");
    let flush = |args: &[&str]| {
        let out = Command::new(BIN).args(["--config", conf.to_str().unwrap(), "cache", "flush"]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(flush(&["alice"]), "1 cache entries flushed");
    assert_eq!(flush(&["-a", dir.path().join("auth-master").to_str().unwrap(), "alice"]), "0 cache entries flushed");
    // SIGHUP flushes everything that is left.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    let start = Instant::now();
    while !d.log().contains("SIGHUP: auth cache flushed flushed=1") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(flush(&[]), "0 cache entries flushed");
}
