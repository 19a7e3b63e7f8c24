//! System users without PAM, as Dovecot has them: the real `saslgate` binary with a `passwd`
//! userdb under `nss_wrapper` (Debian `libnss-wrapper`: a test passwd file, no system user
//! touched), asked by the real `doveadm user` (lookup and LIST), and a `shadow` passdb over a
//! test shadow file (`path:`) asked with PLAIN on the client socket: right and wrong password,
//! a locked (`!`) account, an expired one, an unknown user.
//!
//! Nothing here needs root. A missing peer (doveadm, libnss_wrapper) is a failure naming its
//! Debian package (`scripts/install-deps.sh` installs both), never a skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SASLGATE: &str = env!("CARGO_BIN_EXE_saslgate");
const NSS_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so";
const STARTUP: Duration = Duration::from_secs(10);
const SOCKETS: [&str; 2] = ["auth-client", "auth-userdb"];

fn require(path: &str, package: &str) -> PathBuf {
    let found = if path.starts_with('/') {
        Some(PathBuf::from(path)).filter(|p| p.exists())
    } else {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().map(|d| Path::new(d).join(path)).find(|p| p.exists())
    };
    found.unwrap_or_else(|| {
        panic!("this test needs `{path}` from the Debian package `{package}`: run scripts/install-deps.sh as root (or apt-get install {package})")
    })
}

/// The binary, running until dropped; stderr kept for a failing test.
struct Daemon {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, dbs: &str, env: &[(&str, PathBuf)]) -> Daemon {
        let config = dir.join("saslgate.yaml");
        let listeners: String = SOCKETS.iter().map(|s| format!("  - {{ path: {s}, mode: \"0666\" }}\n")).collect();
        fs::write(&config, format!("listeners:\n{listeners}auth: {{ mechanisms: [plain], failure_delay: 0s }}\nlog: {{ level: debug }}\n{dbs}")).unwrap();
        let log = dir.join("saslgate.stderr");
        let mut cmd = Command::new(SASLGATE);
        cmd.arg("--config").arg(&config).env_remove("SASLGATE_LOG").stdin(Stdio::null()).stdout(Stdio::null()).stderr(File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut d = Daemon { child, dir: dir.to_owned(), log };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("saslgate exited during startup ({status})\n{}", fs::read_to_string(&d.log).unwrap_or_default());
            }
            if SOCKETS.iter().all(|s| fs::symlink_metadata(dir.join(s)).is_ok_and(|m| m.file_type().is_socket())) {
                return d;
            }
            assert!(Instant::now() < deadline, "no sockets within {STARTUP:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn sock(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
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

/// `doveadm` with a config of its own (no Dovecot runs, nothing under /etc read).
fn doveadm(dir: &Path, args: &[&str]) -> (i32, String) {
    let bin = require("doveadm", "dovecot-core");
    let conf = dir.join("dovecot.conf");
    if !conf.exists() {
        fs::write(
            &conf,
            format!("protocols = none\nbase_dir = {d}/dovecot-run\nstate_dir = {d}/dovecot-state\nssl = no\nlog_path = /dev/stderr\n", d = dir.display()),
        )
        .unwrap();
    }
    let out = Command::new(bin).arg("-c").arg(&conf).args(args).stdin(Stdio::null()).output().unwrap();
    let text = format!("{}\n--- stderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
mailer:x:2001:3001:Mail User:/srv/mail/mailer:/bin/sh\n\
second:x:2002:3002::/srv/mail/second:/bin/sh\n\
highuid:x:70000:3001::/srv/mail/high:/bin/sh\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\nmail1:x:3001:\nmail2:x:3002:\n";

/// `doveadm user -a <userdb socket>` against a passwd userdb over an nss_wrapper passwd file:
/// each entry's uid, gid and home (Dovecot's fields), exit 67 for a name NSS does not know, and
/// `'*'` lists the users in Dovecot's uid range (first_valid_uid 500 by default) from NSS.
#[test]
fn passwd_userdb_through_nss_wrapper_and_doveadm() {
    let lib = require(NSS_WRAPPER, "libnss-wrapper");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(dir.join("passwd"), PASSWD).unwrap();
    fs::write(dir.join("group"), GROUP).unwrap();
    fs::write(dir.join("users.passwd"), "").unwrap();
    let env = [("LD_PRELOAD", lib), ("NSS_WRAPPER_PASSWD", dir.join("passwd")), ("NSS_WRAPPER_GROUP", dir.join("group"))];
    let d = Daemon::start(dir, "passdbs:\n  - { driver: passwd-file, path: users.passwd }\nuserdbs:\n  - { driver: passwd }\n", &env);
    let userdb = d.sock("auth-userdb");

    for (name, uid, gid, home) in
        [("mailer", 2001, 3001, "/srv/mail/mailer"), ("second", 2002, 3002, "/srv/mail/second"), ("highuid", 70000, 3001, "/srv/mail/high")]
    {
        let (code, out) = doveadm(dir, &["user", "-a", &userdb, name]);
        assert_eq!(code, 0, "USER {name}\n{out}");
        for want in [format!("uid\t{uid}"), format!("gid\t{gid}"), format!("home\t{home}"), format!("system_groups_user\t{name}")] {
            assert!(out.lines().any(|l| l == want), "USER {name}: no line {want:?}\n{out}");
        }
    }
    // Not in the test file (and the real /etc/passwd is not consulted under nss_wrapper).
    let (code, out) = doveadm(dir, &["user", "-a", &userdb, "nosuchuser"]);
    assert_eq!(code, 67, "an unknown user\n{out}");

    // LIST: every NSS user with uid >= 500 (root and daemon are not mail users), in file order.
    let (code, out) = doveadm(dir, &["user", "-a", &userdb, "*"]);
    assert_eq!(code, 0, "LIST\n{out}");
    let listed: Vec<&str> = out.split("--- stderr:").next().unwrap().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(listed, ["mailer", "second", "highuid"], "{out}");
    drop(d);

    // last_valid_uid bounds the list.
    let dir2 = tempfile::tempdir().unwrap();
    let dir2 = dir2.path();
    fs::write(dir2.join("users.passwd"), "").unwrap();
    let d = Daemon::start(
        dir2,
        "passdbs:\n  - { driver: passwd-file, path: users.passwd }\nuserdbs:\n  - { driver: passwd, first_valid_uid: 2002, last_valid_uid: 65535 }\n",
        &env,
    );
    let (code, out) = doveadm(dir2, &["user", "-a", &d.sock("auth-userdb"), "*"]);
    assert_eq!(code, 0, "LIST\n{out}");
    let listed: Vec<&str> = out.split("--- stderr:").next().unwrap().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(listed, ["second"], "{out}");
}

/// One PLAIN AUTH on the client socket; the reply line.
fn plain(sock: &str, id: u32, user: &str, pass: &str) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"VERSION\t1\t2\nCPID\t4242\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed during the handshake");
        if line == "DONE\n" {
            break;
        }
    }
    let resp = base64(format!("\0{user}\0{pass}").as_bytes());
    s.write_all(format!("AUTH\t{id}\tPLAIN\tservice=imap\tresp={resp}\n").as_bytes()).unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    line.trim_end_matches('\n').to_owned()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A shadow passdb over a test shadow file: a SHA512-CRYPT hash (made by doveadm pw) logs in
/// with the right password only; `!` before the same hash (passwd -l), `*`, and an account
/// expired on day 1 (1970-01-02) FAIL even with the right password; an expiry far ahead does
/// not; an unknown user FAILs.
#[test]
fn shadow_passdb_over_a_test_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (code, out) = doveadm(dir, &["pw", "-s", "SHA512-CRYPT", "-p", "s3cret pw"]);
    assert_eq!(code, 0, "{out}");
    let hash = out.lines().next().unwrap().trim().strip_prefix("{SHA512-CRYPT}").unwrap().to_owned();
    assert!(hash.starts_with("$6$"), "{hash}");
    fs::write(
        dir.join("shadow"),
        format!(
            "root:*:19000:0:99999:7:::\n\
             alice:{hash}:19000:0:99999:7:::\n\
             locked:!{hash}:19000:0:99999:7:::\n\
             star:*:19000:0:99999:7:::\n\
             expired:{hash}:19000:0:99999:7::1:\n\
             later:{hash}:19000:0:99999:7::999999:\n"
        ),
    )
    .unwrap();
    let d = Daemon::start(
        dir,
        "passdbs:\n  - { driver: shadow, path: shadow }\nuserdbs:\n  - { driver: static, fields: { uid: 1000, gid: 1000, home: \"/srv/%u\" } }\n",
        &[],
    );
    let client = d.sock("auth-client");

    assert_eq!(plain(&client, 1, "alice", "s3cret pw"), "OK\t1\tuser=alice");
    assert_eq!(plain(&client, 2, "later", "s3cret pw"), "OK\t2\tuser=later");
    for (id, user, pass) in
        [(3, "alice", "wrong"), (4, "locked", "s3cret pw"), (5, "star", "s3cret pw"), (6, "expired", "s3cret pw"), (7, "nobody", "s3cret pw"), (8, "alice", "")]
    {
        let reply = plain(&client, id, user, pass);
        assert!(reply.starts_with(&format!("FAIL\t{id}")), "{user}/{pass:?}: {reply}");
        assert!(!reply.contains("temp"), "{user}: a disabled or wrong login is a plain FAIL, not a temporary failure: {reply}");
    }
    drop(d);

    // An unreadable shadow file is a temporary failure, never an OK or a plain FAIL.
    fs::remove_file(dir.join("shadow")).unwrap();
    let d = Daemon::start(dir, "passdbs:\n  - { driver: shadow, path: shadow }\nuserdbs:\n  - { driver: static, fields: { uid: 1000 } }\n", &[]);
    let reply = plain(&d.sock("auth-client"), 9, "alice", "s3cret pw");
    assert!(reply.starts_with("FAIL\t9") && reply.contains("code=temp_fail"), "{reply}");
}
