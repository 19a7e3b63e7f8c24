//! Attacks on the sockets, against the real binary (issue 8, findings 1 and 2) and a clean
//! stop under load (SIGTERM drains requests in flight).
//!
//! Needs root (unprivileged attackers run as `nobody` and `daemon`); without it every test
//! prints `SKIPPED: needs root` and returns. Attackers are this test binary started again with
//! `SASLGATE_TEST_ROLE` set, under another uid: see [`helper_role`].

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_saslgate");

fn is_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    println!("SKIPPED: needs root");
    false
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name).unwrap().unwrap().uid.as_raw()
}

fn gid_of(name: &str) -> u32 {
    nix::unistd::Group::from_name(name).unwrap().unwrap().gid.as_raw()
}

/// A tempdir that `nobody` can traverse.
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(dir: &Path, conf: &Path) -> Running {
        let log = dir.join(format!("saslgate-{}.log", rand_suffix()));
        let child = Command::new(BIN)
            .args(["--config", conf.to_str().unwrap()])
            .current_dir(dir)
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

    /// Waits until the daemon says it started (Ok) or exits (Err with its log).
    fn started(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self.log().contains("saslgate started") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("{status:?}: {}", self.log()));
            }
            assert!(start.elapsed() < Duration::from_secs(20), "neither started nor stopped:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    fn status_field(&self, name: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().nth(1).unwrap().to_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// This test binary again, as `user`, playing `role` (see [`helper_role`]).
fn helper(role: &str, user: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "helper_role", "--nocapture", "--test-threads=1", "-q"])
        .env("SASLGATE_TEST_ROLE", role)
        .uid(uid_of(user))
        .gid(nix::unistd::User::from_name(user).unwrap().unwrap().gid.as_raw())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// A helper process, killed when the test ends (also when it fails).
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the helper's next line that starts with `@` (the test harness prints its own lines).
fn helper_line(child: &mut Child) -> String {
    let out = child.stdout.as_mut().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        line.clear();
        loop {
            match out.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => return String::from_utf8_lossy(&line).into_owned(),
            }
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        if let Some(rest) = text.strip_prefix('@') {
            return rest.to_owned();
        }
    }
}

/// Not a test on its own: the unprivileged side of the attacks, when this binary is started
/// by [`helper`]. Without `SASLGATE_TEST_ROLE` it does nothing.
#[test]
fn helper_role() {
    match std::env::var("SASLGATE_TEST_ROLE").as_deref() {
        Ok("watcher") => watcher(),
        Ok("hog") => hog(),
        _ => {}
    }
}

/// Keeps replacing the socket path with a symlink to the target, and every folder someone
/// else creates in the spool with a symlink to the victim's folder, until `stop` exists.
fn watcher() {
    let spool = PathBuf::from(std::env::var("SPOOL").unwrap());
    let target = PathBuf::from(std::env::var("TARGET").unwrap());
    let victim_dir = target.parent().unwrap().to_owned();
    let sock = spool.join("auth-userdb");
    let stop = spool.join("stop");
    let me = nix::unistd::Uid::effective().as_raw();
    let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Folder swapper: a private folder made by root is renamed away and replaced by a symlink.
    let dirs = {
        let (spool, stop, swaps) = (spool.clone(), stop.clone(), std::sync::Arc::clone(&swaps));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.exists() {
                let Ok(entries) = std::fs::read_dir(&spool) else { return };
                for entry in entries.flatten() {
                    let Ok(meta) = entry.path().symlink_metadata() else { continue };
                    if meta.is_dir() && meta.uid() != me {
                        n += 1;
                        let tmp = spool.join(format!("dirlink-{n}"));
                        let _ = std::os::unix::fs::symlink(&victim_dir, &tmp);
                        let _ = std::fs::rename(entry.path(), spool.join(format!("moved-{n}")));
                        if std::fs::rename(&tmp, entry.path()).is_ok() {
                            swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        })
    };
    // Two spinners on the socket path, each with its symlink made in advance, so a socket
    // that appears is replaced with one rename(2).
    let spinners: Vec<_> = (0..2)
        .map(|t| {
            let (spool, sock, target, stop, swaps) = (spool.clone(), sock.clone(), target.clone(), stop.clone(), std::sync::Arc::clone(&swaps));
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut tmp = spool.join(format!("link-{t}-{n}"));
                let _ = std::os::unix::fs::symlink(&target, &tmp);
                let mut spins = 0u32;
                loop {
                    spins = spins.wrapping_add(1);
                    if spins % 4096 == 0 && stop.exists() {
                        break;
                    }
                    if std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()) && std::fs::rename(&tmp, &sock).is_ok() {
                        swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        n += 1;
                        tmp = spool.join(format!("link-{t}-{n}"));
                        let _ = std::os::unix::fs::symlink(&target, &tmp);
                    }
                }
            })
        })
        .collect();
    println!("@ready");
    for s in spinners {
        s.join().unwrap();
    }
    dirs.join().unwrap();
    println!("@swaps {}", swaps.load(std::sync::atomic::Ordering::Relaxed));
}

/// Opens connections to `SOCKET` until one gets no handshake (or `COUNT` succeeded), reports,
/// and holds them until stdin closes.
fn hog() {
    let socket = PathBuf::from(std::env::var("SOCKET").unwrap());
    let count: usize = std::env::var("COUNT").unwrap().parse().unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..count {
        match handshake_master(&socket) {
            Some(s) => held.push(s),
            None => refused += 1,
        }
    }
    println!("@held {} refused {refused}", held.len());
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
}

/// Connects to a master-protocol socket and reads the server's handshake; None when the
/// server closes the connection instead.
fn handshake_master(socket: &Path) -> Option<UnixStream> {
    let s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    line.starts_with("VERSION\t").then_some(s)
}

// ---------------------------------------------------------------------------------------------
// Finding 1: the symlink race.

/// Starts of the daemon under attack. The old code (chmod/chown by path after bind) lost the
/// target in the first 10 or so starts on a loaded 2-core machine.
const ROUNDS: usize = 60;

#[test]
fn socket_setup_never_follows_a_symlink_swapped_in_by_the_folder_owner() {
    if !is_root() {
        return;
    }
    let dir = open_tempdir();
    // The folder an unprivileged user owns (like postfix's /var/spool/postfix/private).
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    nix::unistd::chown(&spool, Some(uid_of("nobody").into()), Some(gid_of("nogroup").into())).unwrap();
    // The file the attacker wants: root's, mode 0600, in a folder of root's.
    let victim = dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let target = victim.join("secret");
    std::fs::write(&target, "root only\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw\n").unwrap();
    let conf = dir.path().join("saslgate.yaml");
    std::fs::write(
        &conf,
        format!(
            "listeners:\n  - {{ path: {}, type: userdb, mode: \"0666\", user: nobody }}\npassdbs:\n  - {{ driver: passwd-file, path: users.passwd, scheme: PLAIN }}\n",
            spool.join("auth-userdb").display()
        ),
    )
    .unwrap();

    let mut watcher = Helper(helper("watcher", "nobody", &[("SPOOL", spool.to_str().unwrap()), ("TARGET", target.to_str().unwrap())]));
    assert_eq!(helper_line(&mut watcher.0), "ready");
    let (mut served, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let mut d = Running::start(dir.path(), &conf);
        match d.started() {
            Ok(()) => {
                served += 1;
                d.signal(nix::sys::signal::Signal::SIGTERM);
                let _ = d.child.wait();
            }
            Err(log) => {
                refused += 1;
                assert!(
                    log.contains("replaced while saslgate was starting") || log.contains("changed while saslgate was starting"),
                    "round {round}: unclear refusal:\n{log}"
                );
            }
        }
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o600),
            "round {round}: the daemon changed the target through the symlink:\n{}",
            d.log()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root only\n");
        let in_victim: Vec<_> = std::fs::read_dir(&victim).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(in_victim, vec![std::ffi::OsString::from("secret")], "round {round}: the daemon created a file in the victim's folder");
    }
    std::fs::write(spool.join("stop"), "").unwrap();
    let swaps = helper_line(&mut watcher.0);
    watcher.0.wait().unwrap();
    println!("{ROUNDS} starts: {served} served, {refused} refused; watcher {swaps}");
    assert!(swaps.starts_with("swaps ") && swaps != "swaps 0", "the watcher never swapped anything: the test proves nothing ({swaps})");
}

// ---------------------------------------------------------------------------------------------
// Finding 2: connection budgets, the handshake timeout, the per-uid cap.

/// A daemon on `auth-client` (0660) and `auth-userdb` (0666) in an open tempdir, with these
/// extra top-level YAML lines (`limits:` …, `auth:` …).
fn daemon(extra: &str) -> (tempfile::TempDir, Running) {
    let dir = open_tempdir();
    std::fs::write(dir.path().join("users.passwd"), "alice:{PLAIN}pw:1000:1000::/home/alice\n").unwrap();
    let auth = if extra.contains("auth:") { "" } else { "auth:\n  failure_delay: 0s\n" };
    let conf = dir.path().join("saslgate.yaml");
    std::fs::write(
        &conf,
        format!(
            "listeners:\n  - {{ path: auth-client, type: client, mode: \"0660\" }}\n  - {{ path: auth-userdb, type: userdb, mode: \"0666\" }}\n{auth}{extra}\npassdbs:\n  - {{ driver: passwd-file, path: users.passwd, scheme: PLAIN }}\nuserdbs:\n  - {{ driver: passwd-file, path: users.passwd }}\n"
        ),
    )
    .unwrap();
    let mut d = Running::start(dir.path(), &conf);
    d.started().unwrap();
    (dir, d)
}

/// A client-protocol connection that has read the server's handshake.
struct Client {
    s: UnixStream,
    r: BufReader<UnixStream>,
}

impl Client {
    fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut c = Client { r: BufReader::new(s.try_clone().unwrap()), s };
        loop {
            let line = c.line();
            assert!(!line.is_empty(), "connection closed during the handshake");
            if line == "DONE" {
                return c;
            }
        }
    }

    fn send(&mut self, text: &str) {
        std::io::Write::write_all(&mut self.s, text.as_bytes()).unwrap();
    }

    /// The next line without its line feed; "" at EOF or on a read timeout.
    fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.r.read_line(&mut line);
        line.trim_end_matches('\n').to_owned()
    }

    fn plain(&mut self, id: u32, user: &str, pass: &str) -> String {
        let resp = saslgate::protocol::base64::encode(format!("\0{user}\0{pass}").as_bytes());
        self.send(&format!("AUTH\t{id}\tPLAIN\tservice=smtp\tresp={resp}\n"));
        self.line()
    }
}

#[test]
fn idle_connections_to_auth_userdb_leave_postfix_its_logins() {
    if !is_root() {
        return;
    }
    let (dir, d) = daemon("");
    // 1,100 idle connections to the 0666 socket (as root: exempt from the per-uid cap, so
    // this is the listener's budget at work). Past 1,000 they wait in the backlog.
    let userdb = dir.path().join("auth-userdb");
    let idle: Vec<UnixStream> = (0..1100).map(|_| UnixStream::connect(&userdb).unwrap()).collect();
    // Let the daemon accept what its budget allows (it writes each one a handshake).
    std::thread::sleep(Duration::from_millis(500));
    // Five simultaneous Postfix-style logins on auth-client, all answered promptly.
    let client = dir.path().join("auth-client");
    let start = Instant::now();
    let logins: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&client);
                c.send("VERSION\t1\t2\nCPID\t4242\n");
                c.plain(1, "alice", "pw")
            })
        })
        .collect();
    for login in logins {
        assert_eq!(login.join().unwrap(), "OK\t1\tuser=alice");
    }
    assert!(start.elapsed() < Duration::from_secs(3), "logins took {:?}", start.elapsed());
    let rss_kb: u64 = d.status_field("VmRSS:").parse().unwrap();
    assert!(rss_kb < 100 * 1024, "VmRSS {rss_kb} kB with 1,100 idle connections");
    drop(idle);
}

#[test]
fn a_connection_without_handshake_is_closed_after_handshake_timeout() {
    if !is_root() {
        return;
    }
    let (dir, _d) = daemon("limits:\n  handshake_timeout: 1s\n");
    let start = Instant::now();
    // Silent peers on both protocols.
    let mut silent_master = UnixStream::connect(dir.path().join("auth-userdb")).unwrap();
    silent_master.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut silent_client = Client::connect(&dir.path().join("auth-client"));
    // A client that sent VERSION but never CPID has not finished its handshake either.
    silent_client.send("VERSION\t1\t2\n");
    // A client that finished its handshake stays, however long it idles.
    let mut polite = Client::connect(&dir.path().join("auth-client"));
    polite.send("VERSION\t1\t2\nCPID\t77\n");
    let mut master_bytes = Vec::new();
    let _ = silent_master.read_to_end(&mut master_bytes);
    let closed_master = start.elapsed();
    assert!(String::from_utf8_lossy(&master_bytes).starts_with("VERSION\t"), "{master_bytes:?}");
    assert_eq!(silent_client.line(), "", "the client connection must be closed");
    let closed_client = start.elapsed();
    for closed in [closed_master, closed_client] {
        assert!(closed >= Duration::from_millis(900) && closed < Duration::from_secs(4), "closed after {closed:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(polite.plain(1, "alice", "pw"), "OK\t1\tuser=alice");
}

#[test]
fn one_uid_gets_at_most_max_connections_per_uid_on_a_world_accessible_socket() {
    if !is_root() {
        return;
    }
    // The default cap: 100.
    let (dir, _d) = daemon("");
    let userdb = dir.path().join("auth-userdb");
    let userdb = userdb.to_str().unwrap();
    // nobody opens 101: the 101st is closed without a handshake.
    let mut nobody = Helper(helper("hog", "nobody", &[("SOCKET", userdb), ("COUNT", "101")]));
    assert_eq!(helper_line(&mut nobody.0), "held 100 refused 1");
    // Another uid still gets in while nobody holds its 100.
    let mut other = Helper(helper("hog", "daemon", &[("SOCKET", userdb), ("COUNT", "1")]));
    assert_eq!(helper_line(&mut other.0), "held 1 refused 0");
    // Root (exempt) too.
    assert!(handshake_master(Path::new(userdb)).is_some());
    // When nobody's connections close, its uid may connect again.
    drop(nobody);
    let start = Instant::now();
    loop {
        let mut again = Helper(helper("hog", "nobody", &[("SOCKET", userdb), ("COUNT", "100")]));
        let line = helper_line(&mut again.0);
        if line == "held 100 refused 0" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "nobody's slots never came back: {line}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn refused_connections_log_at_most_twenty_lines_a_minute() {
    if !is_root() {
        return;
    }
    let (dir, d) = daemon("");
    let userdb = dir.path().join("auth-userdb");
    let userdb = userdb.to_str().unwrap();
    // nobody keeps knocking: 200 refusals must not write 200 lines.
    let mut nobody = Helper(helper("hog", "nobody", &[("SOCKET", userdb), ("COUNT", "300")]));
    assert_eq!(helper_line(&mut nobody.0), "held 100 refused 200");
    let refusals = || d.log().matches("too many connections from one uid").count();
    let start = Instant::now();
    while refusals() < 20 {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(refusals(), 20, "the refusal warnings are not rate-limited:\n{}", d.log());
}

// ---------------------------------------------------------------------------------------------
// Issue 7: SIGTERM drains requests in flight, within a bound.

#[test]
fn sigterm_lets_a_request_in_its_failure_delay_write_its_fail() {
    if !is_root() {
        return;
    }
    let (dir, mut d) = daemon("auth:\n  failure_delay: 2s\n  penalty_max: 0s\n");
    let mut c = Client::connect(&dir.path().join("auth-client"));
    c.send("VERSION\t1\t2\nCPID\t9\n");
    let resp = saslgate::protocol::base64::encode(b"\0alice\0wrong");
    c.send(&format!("AUTH\t1\tPLAIN\tservice=smtp\tresp={resp}\n"));
    // The failure is logged at once; the FAIL line waits for the delay.
    let start = Instant::now();
    while !d.log().contains("auth failed") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", d.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    let reply = c.line();
    assert!(reply.starts_with("FAIL\t1\tuser=alice"), "the request in flight lost its reply: {reply:?}\n{}", d.log());
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(stopped.elapsed() < Duration::from_secs(4), "stopping took {:?}", stopped.elapsed());
    assert!(!dir.path().join("auth-client").exists());
}

#[test]
fn a_client_idle_in_a_cont_does_not_hold_shutdown_beyond_shutdown_timeout() {
    if !is_root() {
        return;
    }
    let (dir, mut d) = daemon("limits:\n  shutdown_timeout: 1s\n");
    let mut cont = Client::connect(&dir.path().join("auth-client"));
    cont.send("VERSION\t1\t2\nCPID\t9\nAUTH\t1\tLOGIN\tservice=smtp\n");
    assert!(cont.line().starts_with("CONT\t1\t"));
    let mut idle = Client::connect(&dir.path().join("auth-client"));
    idle.send("VERSION\t1\t2\nCPID\t10\n");
    std::thread::sleep(Duration::from_millis(100));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    // An idle connection is closed at once; the one in a CONT holds the daemon until the bound.
    assert_eq!(idle.line(), "");
    assert!(stopped.elapsed() < Duration::from_millis(800), "idle connection closed after {:?}", stopped.elapsed());
    let status = d.child.wait().unwrap();
    let took = stopped.elapsed();
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "stopped after {took:?}\n{}", d.log());
    assert!(d.log().contains("connections still busy"), "{}", d.log());
}

// ---------------------------------------------------------------------------------------------
// The keys and their defaults (no root needed).

#[test]
fn limits_keys_have_documented_defaults_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("u.passwd"), "alice:{PLAIN}pw\n").unwrap();
    let yaml =
        |listeners: &str, limits: &str| format!("listeners:\n{listeners}passdbs:\n  - {{ driver: passwd-file, path: u.passwd, scheme: PLAIN }}\n{limits}");
    let one = "  - { path: auth-client }\n  - { path: auth-userdb, mode: \"0666\", max_connections: 50 }\n";
    let c = saslgate::config::parse(&yaml(one, ""), "t.yaml", dir.path()).unwrap();
    assert_eq!(c.limits.max_connections, 1000);
    assert_eq!(c.limits.max_connections_per_uid, 100);
    assert_eq!(c.limits.handshake_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.listeners[0].max_connections, None);
    assert_eq!(c.listeners[1].max_connections, Some(50));
    assert!(!c.listeners[0].world_accessible() && c.listeners[1].world_accessible());
    let c = saslgate::config::parse(
        &yaml(one, "limits:\n  max_connections_per_uid: 0\n  handshake_timeout: 500ms\n  shutdown_timeout: 3s\n"),
        "t.yaml",
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        (c.limits.max_connections_per_uid, c.limits.handshake_timeout, c.limits.shutdown_timeout),
        (0, Duration::from_millis(500), Duration::from_secs(3))
    );
    for (listeners, limits, wanted) in [
        ("  - { path: s, max_connections: 0 }\n", "", "listeners[0].max_connections: must be at least 1"),
        ("  - { path: s, max_connections: 5000000 }\n", "", "listeners[0].max_connections: at most 1000000"),
        ("  - { path: s }\n", "limits:\n  handshake_timeout: 0s\n", "limits.handshake_timeout: `0s` is not a positive duration"),
        ("  - { path: s }\n", "limits:\n  shutdown_timeout: soon\n", "limits.shutdown_timeout: `soon` is not a positive duration"),
    ] {
        let err = saslgate::config::parse(&yaml(listeners, limits), "t.yaml", dir.path()).unwrap_err().to_string();
        assert!(err.contains(wanted), "{err}");
    }
}
