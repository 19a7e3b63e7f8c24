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

    #[allow(dead_code)] // used by the connection-budget tests
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
                assert!(log.contains("replaced while saslgate was starting") || log.contains("changed while saslgate was starting"), "round {round}: unclear refusal:\n{log}");
            }
        }
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, 0, 0o600), "round {round}: the daemon changed the target through the symlink:\n{}", d.log());
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
