//! A stock Dovecot 2.3 IMAP server (Debian `dovecot-core` + `dovecot-imapd`) authenticating
//! through saslgate, in both deployment modes of `conf.example/dovecot-replace-auth.yaml`:
//!
//! - **A, service mode**: `service auth { executable = saslgate --dovecot-service --config F }`;
//!   Dovecot's master hands saslgate its sockets.
//! - **B, beside Dovecot**: saslgate runs on its own sockets; `service imap-login { executable =
//!   imap-login saslgate-login }`, `service imap { executable = imap -a …/saslgate-master }` and
//!   `auth_socket_path = …/saslgate-userdb` point Dovecot's processes at them.
//!
//! Each Dovecot runs under a temp `base_dir` with its own dovecot.conf, IMAP on a free loopback
//! port, mail in a maildir under the userdb's home (uid/gid 5000, no such system user needed),
//! and is stopped by the PID in its master.pid. The TLS test runs the certificate-or-password
//! setup (`conf.example/cert-or-password.yaml`) in service mode behind imap-login with
//! `ssl_verify_client_cert = yes` and a throwaway CA made with `openssl`. Root only (Dovecot's
//! master starts as root): without it the tests print `SKIPPED: needs root` and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SASLGATE: &str = env!("CARGO_BIN_EXE_saslgate");
const UID: u32 = 5000;

fn skip() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root (Dovecot's master starts as root)");
        return true;
    }
    for p in ["/usr/sbin/dovecot", "/usr/lib/dovecot/imap-login", "/usr/lib/dovecot/imap", "/usr/bin/openssl"] {
        assert!(Path::new(p).exists(), "{p} is missing: run scripts/install-deps.sh (dovecot-core, dovecot-imapd, openssl)");
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example").join(name)
}

/// A temp dir that Dovecot's unprivileged processes (dovecot, dovenull, uid 5000) can traverse.
fn world_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Users for the example: alice (password alice-secret) with uid/gid 5000 and a home here.
fn users_file(dir: &Path) -> String {
    let home = dir.join("home/alice");
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(dir.join("home"), fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&home, Some(nix::unistd::Uid::from_raw(UID)), Some(nix::unistd::Gid::from_raw(UID))).unwrap();
    format!("alice:{{PLAIN}}alice-secret:{UID}:{UID}::{}::\n", home.display())
}

struct Dovecot {
    base: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Dovecot {
    fn start(dir: &Path, port: u16, extra: &str) -> Dovecot {
        let base = dir.join("run");
        let conf = dir.join("dovecot.conf");
        let log = dir.join("dovecot.log");
        let text = format!(
            "base_dir = {base}\nstate_dir = {state}\nlog_path = {log}\nprotocols = imap\nlisten = 127.0.0.1\n\
             default_internal_user = dovecot\ndefault_login_user = dovenull\nmail_location = maildir:~/Maildir\n\
             disable_plaintext_auth = no\nfirst_valid_uid = 1000\nauth_mechanisms = plain login\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n{extra}",
            base = base.display(),
            state = dir.join("state").display(),
            log = log.display(),
        );
        fs::create_dir_all(dir.join("state")).unwrap();
        write(&conf, &text);
        // The daemonized master keeps its stderr: a file, not a pipe we would wait on forever.
        let err_path = dir.join("dovecot.stderr");
        let err = fs::File::create(&err_path).unwrap();
        let status = Command::new("/usr/sbin/dovecot").arg("-c").arg(&conf).stdin(Stdio::null()).stdout(Stdio::null()).stderr(err).status().unwrap();
        assert!(status.success(), "dovecot did not start: {}", fs::read_to_string(&err_path).unwrap_or_default());
        let d = Dovecot { base, conf, log, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dovecot's IMAP port never opened; log:\n{}", d.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm").arg("-c").arg(&self.conf).args(args).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Ok(pid) = fs::read_to_string(self.base.join("master.pid")) else { return };
        let Ok(pid) = pid.trim().parse::<i32>() else { return };
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A saslgate daemon on its own sockets (mode B), stopped by PID.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Imap {
    fn connect(port: u16) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut i = Imap { reader: BufReader::new(s.try_clone().unwrap()), writer: s };
        let greeting = i.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        i
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    /// Sends a tagged command; returns every line up to and including the tagged reply.
    fn cmd(&mut self, tag: &str, command: &str) -> String {
        self.writer.write_all(format!("{tag} {command}\r\n").as_bytes()).unwrap();
        let mut all = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed after {all}");
            all.push_str(&l);
            if l.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }
}

fn tagged_ok(reply: &str, tag: &str) -> bool {
    reply.lines().any(|l| l.starts_with(&format!("{tag} OK")))
}

/// The IMAP scenario both modes must pass; `who` names the mode in failures.
fn imap_scenario(d: &Dovecot, home: &Path, who: &str) {
    let mut imap = Imap::connect(d.port);
    let r = imap.cmd("a", "LOGIN alice alice-secret");
    assert!(tagged_ok(&r, "a"), "{who}: LOGIN: {r}\n{}", d.log_text());
    let r = imap.cmd("b", "SELECT INBOX");
    assert!(tagged_ok(&r, "b") && r.contains("[READ-WRITE]"), "{who}: SELECT: {r}\n{}", d.log_text());
    imap.cmd("z", "LOGOUT");
    // The mail process ran with the userdb's uid and gid: it created the maildir as 5000:5000.
    let meta = fs::metadata(home.join("Maildir")).unwrap_or_else(|e| panic!("{who}: no maildir: {e}\n{}", d.log_text()));
    assert_eq!((meta.uid(), meta.gid()), (UID, UID), "{who}: maildir owner");

    // AUTHENTICATE PLAIN with an initial response (SASL-IR).
    let mut imap = Imap::connect(d.port);
    let r = imap.cmd("a", "AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==");
    assert!(tagged_ok(&r, "a"), "{who}: AUTHENTICATE PLAIN: {r}\n{}", d.log_text());
    let r = imap.cmd("b", "SELECT INBOX");
    assert!(tagged_ok(&r, "b"), "{who}: SELECT after AUTHENTICATE: {r}");
    imap.cmd("z", "LOGOUT");

    // A wrong password.
    let mut imap = Imap::connect(d.port);
    let r = imap.cmd("a", "LOGIN alice wrong");
    assert!(r.contains("a NO [AUTHENTICATIONFAILED]"), "{who}: wrong password: {r}");
    // Master user: alice*admin with admin's password is alice.
    let r = imap.cmd("b", "LOGIN alice*admin admin-secret");
    assert!(tagged_ok(&r, "b"), "{who}: master login: {r}\n{}", d.log_text());
    let r = imap.cmd("c", "SELECT INBOX");
    assert!(tagged_ok(&r, "c"), "{who}: SELECT as master: {r}");
    imap.cmd("z", "LOGOUT");
    assert!(d.log_text().contains("imap(alice)"), "{who}: the master login is alice's session:\n{}", d.log_text());
    // And a master user with a wrong password fails.
    let mut imap = Imap::connect(d.port);
    let r = imap.cmd("a", "LOGIN alice*admin wrong");
    assert!(r.contains("a NO [AUTHENTICATIONFAILED]"), "{who}: master wrong password: {r}");
}

/// The doveadm answers that must not depend on the mode (the lines that name a socket, a pid
/// or a timing are dropped).
fn doveadm_answers(d: &Dovecot, login: &Path, master: &Path, userdb: &Path) -> Vec<String> {
    let (login, master, userdb) = (login.to_str().unwrap(), master.to_str().unwrap(), userdb.to_str().unwrap());
    let keep = |s: String| s.lines().filter(|l| !l.contains("auth_token") && !l.contains("pid")).map(str::to_owned).collect::<Vec<_>>().join("\n");
    vec![
        keep(d.doveadm(&["auth", "login", "-a", login, "-m", master, "alice", "alice-secret"])),
        keep(d.doveadm(&["auth", "login", "-a", login, "-m", master, "alice", "wrong"])),
        keep(d.doveadm(&["auth", "lookup", "-a", userdb, "alice"])),
        keep(d.doveadm(&["user", "-a", userdb, "alice"])),
        keep(d.doveadm(&["user", "-a", userdb, "nobody-here"])),
    ]
}

fn replace_auth_config(dir: &Path) -> PathBuf {
    write(&dir.join("users.passwd"), &users_file(dir));
    fs::copy(example("master-users"), dir.join("master-users")).unwrap();
    fs::set_permissions(dir.join("master-users"), fs::Permissions::from_mode(0o644)).unwrap();
    // The example as shipped, with the sockets moved under this Dovecot's base_dir and no
    // failure delay (speed).
    let base = dir.join("run");
    let text = fs::read_to_string(example("dovecot-replace-auth.yaml"))
        .unwrap()
        .replace("/run/dovecot/", &format!("{}/", base.display()))
        .replace("auth:\n", "auth:\n  failure_delay: 0s\n");
    let yaml = dir.join("dovecot-replace-auth.yaml");
    write(&yaml, &text);
    yaml
}

#[test]
fn stock_dovecot_imap_in_both_modes() {
    if skip() {
        return;
    }
    // Mode A: saslgate is Dovecot's auth executable.
    let a_dir = world_dir();
    let yaml = replace_auth_config(a_dir.path());
    let a =
        Dovecot::start(a_dir.path(), free_port(), &format!("service auth {{\n  executable = {SASLGATE} --dovecot-service --config {}\n}}\n", yaml.display()));
    imap_scenario(&a, &a_dir.path().join("home/alice"), "service mode");
    let log = a.log_text();
    assert!(log.contains("auth: Info: saslgate started as Dovecot's auth service"), "saslgate's log lines reach Dovecot's log with its prefix:\n{log}");
    assert!(!log.contains("auth: Error") && !log.contains("Initial status notification not received"), "{log}");
    // Its address space stays under Dovecot's default vsz_limit (256 MB).
    let out = Command::new("pgrep").args(["-f", "--", &format!("--config {}", yaml.display())]).output().unwrap();
    let pid = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().trim().to_owned();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("saslgate pid {pid:?}: {e}"));
    let vm_kb: u64 = status.lines().find(|l| l.starts_with("VmPeak:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    eprintln!("saslgate under Dovecot: VmPeak {vm_kb} kB");
    assert!(vm_kb < 256 * 1024, "VmPeak {vm_kb} kB is over Dovecot's default vsz_limit");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().skip(1).all(|u| u != "0"), "dropped to `service auth {{ user }}`: {uid_line}");
    let base = a.base.clone();
    let a_answers = doveadm_answers(&a, &base.join("auth-login"), &base.join("auth-master"), &base.join("auth-userdb"));
    assert!(a_answers[0].contains("passdb: alice auth succeeded") && a_answers[0].contains(&format!("uid={UID}")), "{}", a_answers[0]);
    assert!(a_answers[1].contains("auth failed"), "{}", a_answers[1]);
    assert!(a_answers[3].contains(&format!("uid\t{UID}")), "{}", a_answers[3]);
    eprintln!("doveadm answers (service mode):\n{}", a_answers.join("\n---\n"));
    // Nothing of Dovecot's is unlinked when saslgate stops with it.
    drop(a);
    assert!(
        Command::new("pgrep").args(["-f", "--", &format!("--config {}", yaml.display())]).output().unwrap().stdout.is_empty(),
        "saslgate outlived Dovecot's master"
    );

    // Mode B: saslgate on its own sockets beside Dovecot.
    let b_dir = world_dir();
    let yaml = replace_auth_config(b_dir.path());
    let base = b_dir.path().join("run");
    let port = free_port();
    let b = Dovecot::start(
        b_dir.path(),
        port,
        &format!(
            "service imap-login {{\n  executable = imap-login saslgate-login\n}}\nservice imap {{\n  executable = imap -a {master}\n}}\nauth_socket_path = {userdb}\n",
            master = base.join("saslgate-master").display(),
            userdb = base.join("saslgate-userdb").display()
        ),
    );
    let stderr = fs::File::create(b_dir.path().join("saslgate.log")).unwrap();
    let _daemon = Daemon(Command::new(SASLGATE).arg("--config").arg(&yaml).stderr(stderr).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !base.join("saslgate-userdb").exists() || !base.join("login/saslgate-login").exists() {
        assert!(Instant::now() < deadline, "saslgate's sockets never appeared: {}", fs::read_to_string(b_dir.path().join("saslgate.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    imap_scenario(&b, &b_dir.path().join("home/alice"), "beside Dovecot");
    assert!(!b.log_text().contains("auth: Info: passwd-file"), "Dovecot's own auth did the work:\n{}", b.log_text());
    let b_answers = doveadm_answers(&b, &base.join("login/saslgate-login"), &base.join("saslgate-master"), &base.join("saslgate-userdb"));
    // The same questions get the same answers on both deployments (the home differs by dir).
    let norm = |v: &[String], d: &Path| v.iter().map(|s| s.replace(&d.display().to_string(), "DIR")).collect::<Vec<_>>();
    assert_eq!(norm(&a_answers, a_dir.path()), norm(&b_answers, b_dir.path()));
    // lda (auth_socket_path) delivers into alice's maildir as her uid.
    let lda = Command::new("/usr/lib/dovecot/dovecot-lda")
        .arg("-c")
        .arg(&b.conf)
        .args(["-d", "alice"])
        .stdin(Stdio::piped())
        .output_with(b"From: x@example.org\r\nSubject: hello\r\n\r\nbody\r\n");
    assert!(lda.0, "dovecot-lda failed: {}\n{}", lda.1, b.log_text());
    let new = b_dir.path().join("home/alice/Maildir/new");
    let mail = fs::read_dir(&new).unwrap().next().expect("a delivered mail").unwrap();
    assert_eq!(mail.metadata().unwrap().uid(), UID);
}

trait OutputWith {
    fn output_with(&mut self, input: &[u8]) -> (bool, String);
}

impl OutputWith for Command {
    fn output_with(&mut self, input: &[u8]) -> (bool, String) {
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `openssl s_client -starttls imap`, with or without the client certificate; the lines are
/// sent one by one with a pause, the whole output comes back.
fn s_client(dir: &Path, port: u16, cert: bool, lines: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-starttls", "imap", "-CAfile", "ca.pem", "-quiet", "-ign_eof"]);
    if cert {
        cmd.args(["-cert", "client.pem", "-key", "client.key"]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for l in lines {
        stdin.write_all(format!("{l}\r\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls_client_certificates_through_imap_login() {
    if skip() {
        return;
    }
    let dir = world_dir();
    let d = dir.path();
    // A throwaway CA, a server certificate and a client certificate for alice.
    openssl(d, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=saslgate test CA"]);
    for (name, cn) in [("server", "localhost"), ("client", "alice")] {
        openssl(d, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={cn}")]);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
            ],
        );
    }
    for f in ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"] {
        fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    // cert-or-password.yaml as shipped, with this test's users and homes.
    write(&d.join("users.passwd"), &users_file(d));
    fs::copy(example("certificate-users"), d.join("certificate-users")).unwrap();
    fs::set_permissions(d.join("certificate-users"), fs::Permissions::from_mode(0o644)).unwrap();
    let yaml = d.join("cert-or-password.yaml");
    let text = fs::read_to_string(example("cert-or-password.yaml"))
        .unwrap()
        .replace("uid: \"5000\", gid: \"5000\", home: \"/var/mail/%d/%n\"", &format!("uid: \"{UID}\", gid: \"{UID}\", home: \"{}/home/%n\"", d.display()))
        .replace("auth:\n", "auth:\n  failure_delay: 0s\n");
    assert!(text.contains(&format!("{}/home/%n", d.display())), "the example's userdb line changed:\n{text}");
    write(&yaml, &text);
    let port = free_port();
    let dc = Dovecot::start(
        d,
        port,
        &format!(
            "ssl = yes\nssl_cert = <{d}/server.pem\nssl_key = <{d}/server.key\nssl_ca = <{d}/ca.pem\nssl_verify_client_cert = yes\nssl_require_crl = no\nauth_ssl_username_from_cert = yes\n\
             auth_mechanisms = plain login external\nservice auth {{\n  executable = {SASLGATE} --dovecot-service --config {}\n}}\n",
            yaml.display(),
            d = d.display()
        ),
    );
    // With alice's certificate: EXTERNAL logs in as alice and reaches her INBOX.
    let out = s_client(d, port, true, &["a AUTHENTICATE EXTERNAL =", "b SELECT INBOX", "z LOGOUT"]);
    assert!(out.contains("a OK") && out.contains("b OK [READ-WRITE]"), "EXTERNAL with a certificate:\n{out}\n{}", dc.log_text());
    // Without a certificate, EXTERNAL fails.
    let out = s_client(d, port, false, &["a AUTHENTICATE EXTERNAL =", "z LOGOUT"]);
    assert!(out.contains("a NO") && !out.contains("a OK"), "EXTERNAL without a certificate:\n{out}");
    // A password still works (over TLS without a certificate, and in plain IMAP).
    let out = s_client(d, port, false, &["a LOGIN alice alice-secret", "b SELECT INBOX", "z LOGOUT"]);
    assert!(out.contains("a OK") && out.contains("b OK"), "password over TLS:\n{out}");
    let mut imap = Imap::connect(port);
    let r = imap.cmd("a", "LOGIN alice alice-secret");
    assert!(tagged_ok(&r, "a"), "password login: {r}");
    let r = imap.cmd("b", "LOGIN alice wrong");
    assert!(r.contains("[AUTHENTICATIONFAILED]") || !tagged_ok(&r, "b"), "{r}");
}
