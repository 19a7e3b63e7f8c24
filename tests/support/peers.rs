//! Real peers for end-to-end tests: the built `saslgate` binary with a config of the test's
//! own, a throwaway Postfix (`smtpd_sasl_type = dovecot`) and `swaks`. Copied and generalized
//! from tests/real_peers.rs (which keeps its own copy): here saslgate's sockets and Postfix's
//! `smtpd_sasl_path` are whatever the test says, so saslgate can sit on Postfix's own
//! `private/auth`, as the Postfix SASL guide has it.
//!
//! Everything lives under temp dirs and is stopped by PID in Drop guards; when a test fails,
//! saslgate's stderr and Postfix's log are printed.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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
pub const STARTUP: Duration = Duration::from_secs(10);
/// Upper bound for one peer command (swaks): a hang is a failure, not a stuck suite.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether we run as root (Postfix's master needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].into_iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The path of `program`, or a failure naming the Debian package that provides it.
pub fn require(program: &str, package: &str) -> PathBuf {
    find_program(program)
        .unwrap_or_else(|| panic!("this end-to-end test needs `{program}`: install the Debian package `{package}` (scripts/install-deps.sh does)"))
}

/// What a finished command did.
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// The exit code; -1 when killed by a signal.
    pub fn code(&self) -> i32 {
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

/// Runs `cmd` to completion (stdin closed), bounded by `timeout`; output goes to anonymous
/// files, so a daemon keeping the descriptors open cannot block us.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
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

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn pid_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// A fresh 0755 directory right under /tmp (socket paths stay short; Postfix can traverse it).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------------
// saslgate
// ---------------------------------------------------------------------------------------------

/// The saslgate binary, running until dropped.
pub struct Saslgate {
    child: Child,
    pub log: PathBuf,
}

impl Saslgate {
    /// Writes `yaml` to `dir/saslgate.yaml`, starts saslgate on it and waits until every path
    /// in `sockets` is a socket.
    pub fn start(dir: &Path, yaml: &str, sockets: &[&Path]) -> Saslgate {
        let config = dir.join("saslgate.yaml");
        fs::write(&config, yaml).unwrap();
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
        let mut sg = Saslgate { child, log };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = sg.child.try_wait().unwrap() {
                panic!("saslgate exited during startup ({status}); config:\n{yaml}\n--- stderr:\n{}", tail(&sg.log, 50));
            }
            if sockets.iter().all(|s| fs::symlink_metadata(s).is_ok_and(|m| m.file_type().is_socket())) {
                return sg;
            }
            assert!(Instant::now() < deadline, "saslgate did not create its sockets within {STARTUP:?}\n{}", tail(&sg.log, 50));
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its direct children (the helper processes it started), by /proc.
    pub fn children(&self) -> Vec<i32> {
        let me = self.child.id().to_string();
        let mut out = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
            // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            let zombie = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z");
            if ppid == Some(me.as_str()) && !zombie {
                out.push(pid);
            }
        }
        out
    }

    /// SIGTERM, then up to 5 s for a clean exit, then SIGKILL.
    pub fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX)), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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

// ---------------------------------------------------------------------------------------------
// Postfix + swaks
// ---------------------------------------------------------------------------------------------

/// A throwaway Postfix on 127.0.0.1:`port` (chroot off), until dropped.
pub struct Postfix {
    bin: PathBuf,
    etc: PathBuf,
    pub log: PathBuf,
    /// The queue directory; `smtpd_sasl_path` relative paths resolve against it.
    pub spool: PathBuf,
    master_pid: i32,
    pub port: u16,
}

impl Postfix {
    /// Starts Postfix under `dir/postfix` with `smtpd_sasl_path = sasl_path` (relative to the
    /// queue directory, e.g. `private/auth`, or absolute) and `noanonymous`.
    pub fn start(dir: &Path, sasl_path: &str) -> Postfix {
        assert!(is_root(), "Postfix's master starts as root");
        let bin = require("postfix", "postfix");
        let pf_user = nix::unistd::User::from_name("postfix").ok().flatten().expect("the `postfix` user is missing: reinstall the Debian package `postfix`");
        let port = TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
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
        fs::write(
            etc.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {spool}\ndata_directory = {data}\nmail_owner = postfix\n\
                 setgid_group = postdrop\nmyhostname = saslgate-test.localdomain\nmydomain = localdomain\n\
                 myorigin = $myhostname\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmynetworks = 127.0.0.1/32\n\
                 mydestination =\nrelay_domains =\nlocal_recipient_maps =\nalias_maps =\nalias_database =\n\
                 local_transport = error:local delivery disabled\ndefault_transport = discard:test\nrelay_transport = discard:test\n\
                 smtputf8_enable = no\nbiff = no\nsmtpd_peername_lookup = no\nsmtpd_banner = $myhostname ESMTP saslgate-test\n\
                 maillog_file = {log}\nmaillog_file_prefixes = {dir}\n\
                 smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\nsmtpd_sasl_path = {sasl_path}\n\
                 smtpd_sasl_security_options = noanonymous\nsmtpd_sasl_authenticated_header = no\nbroken_sasl_auth_clients = no\n\
                 smtpd_tls_security_level = none\nsmtpd_relay_restrictions = permit_sasl_authenticated, reject\n\
                 smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n",
                spool = spool.display(),
                data = data.display(),
                log = log.display(),
                dir = dir.display(),
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
                let _ = run(Command::new(&bin).arg("-c").arg(&etc).arg("stop"), Duration::from_secs(20));
                panic!("Postfix did not listen on 127.0.0.1:{port} within {STARTUP:?}\n--- postfix log:\n{}", tail(&log, 50));
            }
            thread::sleep(Duration::from_millis(50));
        };
        Postfix { bin, etc, log, spool, master_pid, port }
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
        }
        if thread::panicking() {
            eprintln!("--- postfix log ({}):\n{}", self.log.display(), tail(&self.log, 80));
        }
    }
}

/// swaks AUTH `mech` as `user` against Postfix on `port`, quitting after AUTH; `extra` goes last.
pub fn swaks_auth(port: u16, mech: &str, user: &str, pass: &str, extra: &[&str]) -> Output {
    let bin = require("swaks", "swaks");
    let port = port.to_string();
    let mut cmd = Command::new(bin);
    cmd.args(["--server", "127.0.0.1", "--port", &port, "--ehlo", "client.test", "--timeout", "20"])
        .args(["--from", "someone@example.test", "--to", "rcpt@remote.example", "--quit-after", "AUTH"])
        .args(["--auth", mech, "--auth-user", user, "--auth-password", pass])
        .args(extra);
    run(&mut cmd, CMD_TIMEOUT)
}

/// The first server reply (code and line) after the client line starting with `command`,
/// skipping 334 challenges: the server's verdict on that command.
pub fn reply_to(out: &Output, command: &str) -> Option<(u16, String)> {
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
        let body = trimmed.trim_start_matches(['<', '-', '*', '~']).trim_start();
        let Some(code) = body.get(..3).and_then(|c| c.parse::<u16>().ok()) else { continue };
        if code != 334 {
            return Some((code, body.to_owned()));
        }
    }
    None
}

/// swaks AUTH must get `want` (235 or 535), and swaks must exit accordingly.
pub fn assert_auth(port: u16, mech: &str, user: &str, pass: &str, extra: &[&str], want: u16) -> Output {
    let out = swaks_auth(port, mech, user, pass, extra);
    let got = reply_to(&out, "AUTH");
    assert!(got.as_ref().is_some_and(|(c, _)| *c == want), "AUTH {mech} as {user}: want {want}, got {got:?}\n{out}");
    assert_eq!(out.code() == 0, want == 235, "AUTH {mech} as {user}: unexpected swaks exit code\n{out}");
    out
}
