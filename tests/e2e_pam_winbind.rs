//! Issue 9 end to end, with the real binary and real peers under temp dirs:
//!
//! * **Postfix + PAM**, the Postfix/Dovecot SASL guide: Postfix with `smtpd_sasl_type =
//!   dovecot` and `smtpd_sasl_path = private/auth`, saslgate on that socket (0660, owner
//!   postfix) with a `pam` passdb whose service file (read through `config_dir`) uses
//!   pam_pwdfile; swaks PLAIN/LOGIN as `test`/`test1234`.
//! * **Active Directory sign-on through winbind** (a standalone winbindd, tests/support/winbind.rs,
//!   with `ntlm auth = yes`): NTLM (NTLMv1, swaks's Authen::NTLM) through Postfix; NTLMv2 and
//!   GSS-SPNEGO (pyspnego, tests/clients/spnego_client.py) straight on saslgate's sockets with
//!   CONT rounds; the user name that reaches the userdb (login socket, then REQUEST on the
//!   master socket); killed helper processes; a stopped and restarted winbindd.
//!
//! These need root (Postfix's master starts as root; saslgate chowns its socket to postfix):
//! without it they print `SKIPPED: needs root` and pass. A missing package is a failure naming
//! it (scripts/install-deps.sh installs them all). One winbindd serves the whole file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/peers.rs"]
mod peers;
#[path = "support/winbind.rs"]
mod winbind;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use peers::{assert_auth, is_root, temp_dir, Postfix, Saslgate};
use winbind::{Winbindd, DOMAIN, USER1, USER2};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root (Postfix's master starts as root; saslgate chowns its socket to postfix)");
            return;
        }
    };
}

/// `test1234`, crypt(3) SHA-512 (`openssl passwd -6 -salt saltsalt test1234`).
const TEST_HASH: &str = "$6$saltsalt$diqEm1MZaAfvmRGID6/fuBsSANgy545QfioEs29fE.nbIw4xah49Ul9WWGeLyGBddflSIa1rLrr6fcxv9xyYK0";

fn pam_module(name: &str) -> PathBuf {
    ["/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security", "/lib/security", "/usr/lib/security"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is missing: install the Debian package libpam-pwdfile (scripts/install-deps.sh does)"))
}

/// saslgate's socket in Postfix's queue: mode 0660, owned by postfix, as the guide has it.
fn assert_postfix_socket(sock: &Path) {
    let meta = fs::symlink_metadata(sock).unwrap();
    assert!(meta.file_type().is_socket(), "{} is not a socket", sock.display());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    let postfix = nix::unistd::User::from_name("postfix").unwrap().unwrap();
    assert_eq!((meta.uid(), meta.gid()), (postfix.uid.as_raw(), postfix.gid.as_raw()), "socket owner");
}

/// The guide's scenario with conf.example/pam.yaml as shipped (but for the socket's path under
/// the test's Postfix queue, the PAM folder, and no failure delay or penalty): Postfix asks saslgate on
/// `private/auth`; PAM (pam_pwdfile) checks `test`/`test1234`. Then the same with `service:
/// "*"`: Postfix's requests name the service `smtp`, so PAM reads the file `smtp`.
#[test]
fn postfix_with_pam_like_the_sasl_guide() {
    need_root!();
    let module = pam_module("pam_pwdfile.so");
    let tmp = temp_dir("sg-e2e-pam-");
    let dir = tmp.path();
    // PAM splits module arguments at spaces: the temp path has none.
    fs::create_dir(dir.join("pam.d")).unwrap();
    fs::write(dir.join("pwdfile"), format!("test:{TEST_HASH}\n")).unwrap();
    // nodelay: no PAM failure delay (about 2 s per wrong password) in a test.
    let service = format!("auth    required {} pwdfile={}/pwdfile nodelay\naccount required pam_permit.so\n", module.display(), dir.display());
    fs::write(dir.join("pam.d/saslgate"), &service).unwrap();
    fs::write(dir.join("pam.d/smtp"), &service).unwrap();

    let pf = Postfix::start(dir, "private/auth");
    let sock = pf.spool.join("private/auth");
    let mut yaml = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf.example/pam.yaml")).unwrap();
    for (from, to) in [
        ("/var/spool/postfix/private/auth", sock.display().to_string()),
        ("{ driver: pam, service: saslgate }", "{ driver: pam, service: saslgate, config_dir: pam.d }".to_owned()),
        ("failure_delay: 2s", "failure_delay: 0s".to_owned()),
        ("penalty_max: 6s", "penalty_max: 0s".to_owned()),
    ] {
        assert!(yaml.contains(from), "conf.example/pam.yaml no longer has {from:?}");
        yaml = yaml.replace(from, &to);
    }
    for (round, yaml) in [("pam.yaml", yaml.clone()), ("service *", yaml.replace("service: saslgate,", "service: \"*\","))] {
        if round == "service *" {
            fs::remove_file(dir.join("pam.d/saslgate")).unwrap();
        }
        let _sg = Saslgate::start(dir, &yaml, &[&sock]);
        assert_postfix_socket(&sock);
        let ok = assert_auth(pf.port, "PLAIN", "test", "test1234", &[], 235);
        // The guide's exact initial response: \0test\0test1234.
        assert!(ok.stdout.contains("AUTH PLAIN AHRlc3QAdGVzdDEyMzQ="), "{round}: {ok}");
        assert!(ok.stdout.lines().any(|l| l.trim_end().ends_with("250-AUTH PLAIN LOGIN")), "{round}: EHLO offers saslgate's mechanisms\n{ok}");
        assert_auth(pf.port, "PLAIN", "test", "test12345", &[], 535);
        assert_auth(pf.port, "LOGIN", "test", "test1234", &[], 235);
        if round == "pam.yaml" {
            assert_auth(pf.port, "PLAIN", "test", "", &[], 535);
            assert_auth(pf.port, "LOGIN", "test", "wrong", &[], 535);
            assert_auth(pf.port, "PLAIN", "nosuchuser", "test1234", &[], 535);
            // username_format %Lu: TEST is test.
            assert_auth(pf.port, "PLAIN", "TEST", "test1234", &[], 235);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// winbind: clients
// ---------------------------------------------------------------------------------------------

/// pyspnego clients (tests/clients/spnego_client.py --serve): one process, many contexts.
struct Py {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u32,
}

/// One client context: NTLMv2, or SPNEGO with NTLM inside.
struct Session {
    id: u32,
    /// The first token, until it is sent.
    first: Option<Vec<u8>>,
}

impl Py {
    fn new() -> Py {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/spnego_client.py");
        let mut child = Command::new("python3")
            .args([script, "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/clients/spnego_client.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Py { child, stdin, stdout, next: 0 }
    }

    /// Sends a command; the token it answers, `None` for `DONE`.
    fn ask(&mut self, command: &str) -> Option<Vec<u8>> {
        writeln!(self.stdin, "{command}").expect("spnego_client.py input");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("spnego_client.py output");
        match line.trim() {
            "DONE" => None,
            "" => panic!("spnego_client.py exited (is pyspnego installed? scripts/install-deps.sh)"),
            t => Some(B64.decode(t).expect("client base64")),
        }
    }

    /// A new context for `mech` (`NTLM` or `GSS-SPNEGO`); its first token is ready.
    fn start(&mut self, mech: &str, user: &str, pass: &str, domain: &str) -> Session {
        self.next += 1;
        let id = self.next;
        let arg = |s: &str| if s.is_empty() { "-".to_owned() } else { B64.encode(s) };
        let protocol = if mech == "NTLM" { "ntlm" } else { "negotiate" };
        let first = self.ask(&format!("START {id} {protocol} {} {} {}", arg(user), arg(pass), arg(domain)));
        let first = first.expect("a first token");
        if mech == "GSS-SPNEGO" {
            assert!(first.contains(&0), "a DER token has NUL bytes");
        }
        Session { id, first: Some(first) }
    }

    /// The client's answer to a server token; `None` when the context is complete.
    fn step(&mut self, s: &mut Session, server: &[u8]) -> Option<Vec<u8>> {
        if server.is_empty() {
            if let Some(first) = s.first.take() {
                return Some(first);
            }
        }
        self.ask(&format!("STEP {} {}", s.id, if server.is_empty() { "-".to_owned() } else { B64.encode(server) }))
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client- or login-protocol connection to saslgate, speaking raw lines.
struct Wire {
    r: BufReader<UnixStream>,
    w: UnixStream,
    cookie: String,
    mechs: Vec<String>,
    /// This connection's CPID: distinct per connection, since a login socket refuses a CPID a
    /// connection still holds (and the previous one may not be closed on the server side yet).
    cpid: u32,
}

impl Wire {
    fn open(path: &Path) -> Wire {
        let w = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let cpid = std::process::id().wrapping_mul(256).wrapping_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut c = Wire { r: BufReader::new(w.try_clone().unwrap()), w, cookie: String::new(), mechs: Vec::new(), cpid };
        loop {
            let l = c.line();
            if let Some(cookie) = l.strip_prefix("COOKIE\t") {
                c.cookie = cookie.to_owned();
            }
            if let Some(mech) = l.strip_prefix("MECH\t") {
                c.mechs.push(mech.split('\t').next().unwrap_or_default().to_owned());
            }
            if l == "DONE" {
                break;
            }
        }
        c.send(&format!("VERSION\t1\t2\nCPID\t{}\n", c.cpid));
        c
    }

    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).expect("a line from saslgate within 20 s");
        assert!(n > 0, "saslgate closed the connection");
        l.trim_end_matches('\n').to_owned()
    }

    /// Sends AUTH (with the initial response, if any) and returns saslgate's first answer.
    fn begin(&mut self, id: u32, mech: &str, params: &str, initial: Option<&[u8]>) -> String {
        let resp = initial.map(|d| format!("\tresp={}", B64.encode(d))).unwrap_or_default();
        self.send(&format!("AUTH\t{id}\t{mech}\tservice=imap\t{params}{resp}\n"));
        self.line()
    }

    /// Sends a CONT and returns saslgate's answer.
    fn cont(&mut self, id: u32, data: &[u8]) -> String {
        self.send(&format!("CONT\t{id}\t{}\n", B64.encode(data)));
        self.line()
    }

    /// Drives `reply` (saslgate's answer to AUTH) with the client through every CONT round to
    /// the final OK or FAIL line, which it returns. A first empty CONT asks for the initial
    /// token; a last CONT carries final data the client takes without answering.
    fn finish(&mut self, id: u32, mut reply: String, py: &mut Py, s: &mut Session) -> String {
        loop {
            let Some(data) = reply.strip_prefix(&format!("CONT\t{id}\t")) else { return reply };
            let server = B64.decode(data).expect("CONT base64");
            let token = py.step(s, &server);
            reply = self.cont(id, &token.unwrap_or_default());
        }
    }

    /// One whole exchange of `mech` (`NTLM` or `GSS-SPNEGO`) as `user`/`pass`, initial
    /// response included; the final line.
    fn login(&mut self, py: &mut Py, id: u32, mech: &str, user: &str, pass: &str, domain: &str) -> String {
        let mut s = py.start(mech, user, pass, domain);
        let first = s.first.take();
        let reply = self.begin(id, mech, "no-penalty", first.as_deref());
        self.finish(id, reply, py, &mut s)
    }
}

/// Whether `line` is the FAIL for request `id`; `temp`: with `code=temp_fail` (or without).
fn is_fail(line: &str, id: u32, temp: bool) -> bool {
    let mut parts = line.split('\t');
    let head = parts.next() == Some("FAIL") && parts.next() == Some(id.to_string().as_str());
    head && parts.any(|f| f == "code=temp_fail") == temp
}

/// The `user=` field of an OK line.
fn ok_user(line: &str) -> Option<&str> {
    let mut parts = line.split('\t');
    (parts.next() == Some("OK")).then_some(())?;
    parts.find_map(|f| f.strip_prefix("user="))
}

// ---------------------------------------------------------------------------------------------
// winbind: the daemon
// ---------------------------------------------------------------------------------------------

/// Dropped in field order: saslgate, Postfix, winbindd, then the temp dir.
struct Ad {
    sg: Saslgate,
    pf: Postfix,
    wb: Winbindd,
    _tmp: tempfile::TempDir,
    client: PathBuf,
    login: PathBuf,
    master: PathBuf,
}

fn start_ad() -> Ad {
    // swaks's Authen::NTLM speaks NTLMv1: `ntlm auth = yes` (NTLMv2 clients work as well).
    let wb = Winbindd::start_with_ntlm_auth("yes");
    let tmp = temp_dir("sg-e2e-ad-");
    let dir = tmp.path();
    let pf = Postfix::start(dir, "private/auth");
    let client = pf.spool.join("private/auth");
    let (login, master) = (dir.join("auth-login"), dir.join("auth-master"));
    // The Active Directory example's settings (conf.example/active-directory.yaml), on test
    // sockets, with the test's ntlm_auth wrapper and no failure delay.
    let yaml = format!(
        "listeners:\n\
         \x20 - {{ path: {client}, type: client, mode: \"0660\", user: postfix, group: postfix }}\n\
         \x20 - {{ path: {login}, type: login, mode: \"0666\" }}\n\
         \x20 - {{ path: {master}, type: master, mode: \"0600\" }}\n\
         auth:\n  mechanisms: [ntlm, gss-spnego]\n  username_format: \"%Lu\"\n  failure_delay: 0s\n  penalty_max: 0s\n\
         \x20 winbind_helper_path: {helper}\n  winbind: {{ helpers: 3, timeout: 10s, busy_timeout: 5s }}\n\
         log: {{ level: debug }}\n\
         userdbs:\n  - driver: static\n    fields: {{ uid: \"60001\", gid: \"60000\", home: \"/home/%u\" }}\n    allow_all_users: true\n",
        client = client.display(),
        login = login.display(),
        master = master.display(),
        helper = wb.helper().display(),
    );
    let sg = Saslgate::start(dir, &yaml, &[&client, &login, &master]);
    assert_postfix_socket(&client);
    Ad { sg, pf, wb, _tmp: tmp, client, login, master }
}

impl Ad {
    /// saslgate's live `ntlm_auth` helper processes.
    fn helpers(&self) -> Vec<i32> {
        self.sg
            .children()
            .into_iter()
            .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("ntlm_auth")))
            .collect()
    }
}

/// Waits until `pid` has exited (gone or a zombie).
fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')) => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("helper {pid} did not die");
}

/// Every winbind scenario, in order, against one winbindd, one Postfix and one saslgate.
#[test]
fn active_directory_sign_on_through_winbind() {
    need_root!();
    peers::require("swaks", "swaks");
    assert!(
        Command::new("perl").args(["-MAuthen::NTLM", "-e", "1"]).status().is_ok_and(|s| s.success()),
        "swaks needs Authen::NTLM for AUTH NTLM: install libauthen-ntlm-perl (scripts/install-deps.sh does)"
    );
    let t = Instant::now();
    let ad = start_ad();
    let mut py = Py::new();
    eprintln!("winbindd, Postfix and saslgate up: {:?}", t.elapsed());
    let user1 = format!("{}@{}", USER1.0, DOMAIN.to_lowercase());

    let t = Instant::now();
    ntlm_through_postfix(&ad);
    eprintln!("NTLM through Postfix: {:?}", t.elapsed());
    ntlmv2_and_spnego_on_the_socket(&ad, &mut py, &user1);
    eprintln!("NTLMv2 and GSS-SPNEGO on the socket: {:?}", t.elapsed());
    user_name_reaches_the_userdb(&ad, &mut py, &user1);
    eprintln!("user name to the userdb: {:?}", t.elapsed());
    killed_helpers_mid_load(&ad, &mut py, &user1);
    eprintln!("killed helpers: {:?}", t.elapsed());
    stopped_winbindd(&ad, &mut py, &user1);
    eprintln!("stopped winbindd: {:?}", t.elapsed());
    active_directory_example(&ad, &mut py, &user1);
    eprintln!("the Active Directory example: {:?}", t.elapsed());
}

/// swaks AUTH NTLM (NTLMv1) through Postfix: 235 with the right password, 535 otherwise.
fn ntlm_through_postfix(ad: &Ad) {
    let port = ad.pf.port;
    let domain = format!("domain={DOMAIN}");
    let ok = assert_auth(port, "NTLM", USER1.0, USER1.1, &["--auth-extra", &domain], 235);
    assert!(ok.stdout.lines().any(|l| l.trim_end().ends_with("250-AUTH NTLM GSS-SPNEGO")), "EHLO offers NTLM and GSS-SPNEGO\n{ok}");
    // Without a domain, the server's own.
    assert_auth(port, "NTLM", USER1.0, USER1.1, &[], 235);
    // (No UTF-8 password here: Authen::NTLM widens the password's bytes, not its characters,
    // to UTF-16; ntlmv2_and_spnego_on_the_socket covers one.)
    assert_auth(port, "NTLM", USER1.0, "ntpass2", &["--auth-extra", &domain], 535);
    assert_auth(port, "NTLM", USER1.0, "", &["--auth-extra", &domain], 535);
    assert_auth(port, "NTLM", "nosuchuser", USER1.1, &["--auth-extra", &domain], 535);
}

/// NTLMv2 and GSS-SPNEGO (DER tokens with NULs) over the client protocol, with CONT rounds.
fn ntlmv2_and_spnego_on_the_socket(ad: &Ad, py: &mut Py, user1: &str) {
    let mut c = Wire::open(&ad.client);
    assert_eq!(c.mechs, ["NTLM", "GSS-SPNEGO"], "MECH lines");
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for mech in ["NTLM", "GSS-SPNEGO"] {
        let line = c.login(py, next(), mech, USER1.0, USER1.1, DOMAIN);
        assert_eq!(ok_user(&line), Some(user1), "{mech}: {line}");
        let line = c.login(py, next(), mech, USER2.0, USER2.1, "");
        assert_eq!(ok_user(&line), Some(format!("{}@{}", USER2.0, DOMAIN.to_lowercase()).as_str()), "{mech} UTF-8 password: {line}");
        for (user, pass) in [(USER1.0, "ntpass2"), ("nosuchuser", "x")] {
            let id = next();
            let line = c.login(py, id, mech, user, pass, DOMAIN);
            assert!(is_fail(&line, id, false), "{mech} {user}/{pass}: {line}");
        }
    }
    // GSS-SPNEGO without an initial response: an empty CONT first; the server's last token
    // (negTokenResp accept-completed) in a last CONT, then OK.
    let id = next();
    let mut client = py.start("GSS-SPNEGO", USER1.0, USER1.1, DOMAIN);
    let reply = c.begin(id, "GSS-SPNEGO", "no-penalty", None);
    assert_eq!(reply, format!("CONT\t{id}\t"), "an empty challenge asks for the first token");
    let line = c.finish(id, reply, py, &mut client);
    assert_eq!(ok_user(&line), Some(user1), "{line}");
    // With final-resp-ok, the last token comes in the OK line's resp=.
    let id = next();
    let mut client = py.start("GSS-SPNEGO", USER1.0, USER1.1, DOMAIN);
    let first = client.first.take().unwrap();
    let reply = c.begin(id, "GSS-SPNEGO", "no-penalty\tfinal-resp-ok", Some(&first));
    let line = c.finish(id, reply, py, &mut client);
    assert_eq!(ok_user(&line), Some(user1), "{line}");
    let resp = line.split('\t').find_map(|f| f.strip_prefix("resp=")).unwrap_or_else(|| panic!("no resp= in {line}"));
    let last = B64.decode(resp).unwrap();
    assert_eq!(last.first(), Some(&0xa1), "a negTokenResp: {line}");
    assert!(py.step(&mut client, &last).is_none(), "the client accepts the final token");
}

/// On a login socket, the user the helper named (`TESTHOST\ntuser1` → `ntuser1@TESTHOST`, then
/// `username_format` `%Lu`) is what REQUEST on the master socket looks up in the static userdb.
fn user_name_reaches_the_userdb(ad: &Ad, py: &mut Py, user1: &str) {
    for (id, mech) in [(1, "NTLM"), (2, "GSS-SPNEGO")] {
        let mut login = Wire::open(&ad.login);
        let line = login.login(py, id, mech, "NTUser1", USER1.1, DOMAIN);
        // As Dovecot answers `AF TESTHOST\ntuser1` (its mech-winbind): the name the helper
        // gave, made `user@DOMAIN`, is the original user.
        assert_eq!(line, format!("OK\t{id}\tuser={user1}\toriginal_user={}@{DOMAIN}", USER1.0), "{mech} on the login socket");
        let reply = request(&ad.master, login.cpid, id, &login.cookie);
        let fields: Vec<&str> = reply.split('\t').collect();
        assert_eq!(fields.get(..3), Some(&["USER", "77", user1][..]), "{reply}");
        let home = format!("home=/home/{user1}");
        for want in ["uid=60001", "gid=60000", home.as_str(), &format!("auth_mech={mech}")] {
            assert!(fields.contains(&want), "{mech}: REQUEST reply lacks {want}: {reply}");
        }
    }
}

/// Several NTLM logins in flight, each pinned to a helper; the helpers are killed between the
/// client's NEGOTIATE and AUTHENTICATE: those logins fail temporarily (never OK), and the next
/// logins work on fresh helpers.
fn killed_helpers_mid_load(ad: &Ad, py: &mut Py, user1: &str) {
    let mut flight = Vec::new();
    for i in 0..3 {
        let mut c = Wire::open(&ad.client);
        let mut client = py.start("NTLM", USER1.0, USER1.1, DOMAIN);
        let first = client.first.take().unwrap();
        let reply = c.begin(100 + i, "NTLM", "no-penalty", Some(&first));
        assert!(reply.starts_with(&format!("CONT\t{}\t", 100 + i)), "NTLM CHALLENGE: {reply}");
        flight.push((c, client, reply));
    }
    let helpers = ad.helpers();
    assert!(helpers.len() >= 3, "three exchanges in flight hold three helpers: {helpers:?}");
    for &pid in &helpers {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    for &pid in &helpers {
        wait_dead(pid);
    }
    for (i, (mut c, mut client, reply)) in flight.into_iter().enumerate() {
        let id = 100 + i as u32;
        let line = c.finish(id, reply, py, &mut client);
        assert!(is_fail(&line, id, true), "an exchange whose helper died: {line}");
    }
    let mut c = Wire::open(&ad.client);
    for (id, mech) in [(200, "NTLM"), (201, "GSS-SPNEGO"), (202, "NTLM")] {
        let line = c.login(py, id, mech, USER1.0, USER1.1, DOMAIN);
        assert_eq!(ok_user(&line), Some(user1), "{mech} after the helpers were killed: {line}");
    }
    let fresh = ad.helpers();
    assert!(fresh.iter().all(|p| !helpers.contains(p)), "fresh helpers {fresh:?}, killed {helpers:?}");
    // And through Postfix.
    assert_auth(ad.pf.port, "NTLM", USER1.0, USER1.1, &[], 235);
}

/// With winbindd stopped, NTLM and GSS-SPNEGO fail with `code=temp_fail`, for
/// the right and the wrong password alike; started again, logins work without restarting
/// saslgate.
fn stopped_winbindd(ad: &Ad, py: &mut Py, user1: &str) {
    ad.wb.stop();
    let mut c = Wire::open(&ad.client);
    let mut id = 300;
    for mech in ["NTLM", "GSS-SPNEGO"] {
        for pass in [USER1.1, "wrong"] {
            id += 1;
            let line = c.login(py, id, mech, USER1.0, pass, DOMAIN);
            assert!(is_fail(&line, id, true), "{mech} {pass} without winbindd: {line}");
        }
    }
    // Postfix ignores `code=`: any FAIL is 535 there (only a lost connection is 454).
    assert_auth(ad.pf.port, "NTLM", USER1.0, USER1.1, &[], 535);

    ad.wb.restart();
    for mech in ["NTLM", "GSS-SPNEGO"] {
        id += 1;
        let line = c.login(py, id, mech, USER1.0, USER1.1, DOMAIN);
        assert_eq!(ok_user(&line), Some(user1), "{mech} after winbindd is back: {line}");
        id += 1;
        let line = c.login(py, id, mech, USER1.0, "wrong", DOMAIN);
        assert!(is_fail(&line, id, false), "{mech} wrong password after winbindd is back: {line}");
    }
    assert_auth(ad.pf.port, "NTLM", USER1.0, USER1.1, &[], 235);
}

/// conf.example/active-directory.yaml as shipped, but for its paths (the test's sockets and
/// `ntlm_auth` wrapper) and no failure delay: saslgate drops to an unprivileged user (here
/// `nobody`) with `group: winbindd_priv`, the group that may open winbindd's privileged pipe
/// (which `ntlm_auth` needs to check NTLM responses); its helpers inherit it. With another
/// group, logins fail temporarily.
fn active_directory_example(ad: &Ad, py: &mut Py, user1: &str) {
    let group = nix::unistd::Group::from_name("winbindd_priv").unwrap().expect("the winbindd_priv group (Debian package winbind)");
    let privileged = ad.wb.dir().join("state/winbindd_privileged");
    assert!(privileged.is_dir(), "{} missing", privileged.display());
    nix::unistd::chown(&privileged, None, Some(group.gid)).unwrap();
    fs::set_permissions(&privileged, fs::Permissions::from_mode(0o750)).unwrap();
    // The test's Samba files, readable by `nobody` (the temp dir is 0700).
    fs::set_permissions(ad.wb.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let example = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf.example/active-directory.yaml")).unwrap();
    for (name, want_ok) in [("winbindd_priv", true), ("nogroup", false)] {
        let dir = ad.sg.log.parent().unwrap().join(format!("example-{name}"));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let (client, login, master) = (dir.join("auth"), dir.join("auth-login"), dir.join("auth-master"));
        let d = dir.display().to_string();
        let mut yaml = example.clone();
        for (from, to) in [
            ("user: saslgate\n", "user: nobody\n".to_owned()),
            ("group: winbindd_priv\n", format!("group: {name}\n")),
            ("/var/spool/postfix/private/auth", client.display().to_string()),
            ("/run/saslgate/", format!("{d}/")),
            ("/usr/bin/ntlm_auth", ad.wb.helper().display().to_string()),
            ("failure_delay: 2s", "failure_delay: 0s".to_owned()),
        ] {
            assert!(yaml.contains(from), "the example no longer has {from:?}");
            yaml = yaml.replace(from, &to);
        }
        let sg = Saslgate::start(&dir, &yaml, &[&client, &login, &master, &dir.join("auth-userdb")]);
        for (id, mech) in [(1, "NTLM"), (2, "GSS-SPNEGO")] {
            let mut c = Wire::open(&login);
            let line = c.login(py, id, mech, USER1.0, USER1.1, DOMAIN);
            if !want_ok {
                assert!(is_fail(&line, id, true), "{mech} as nobody, group {name}: {line}");
                continue;
            }
            assert_eq!(ok_user(&line), Some(user1), "{mech} as nobody, group {name}: {line}");
            let reply = request(&master, c.cpid, id, &c.cookie);
            let want = format!("USER\t77\t{user1}\tuid=5000\tgid=5000\thome=/var/vmail/{user1}\tauth_mech={mech}");
            assert_eq!(reply, want, "REQUEST after {mech}");
        }
        // It did run as nobody with just that group.
        let gid = nix::unistd::Group::from_name(name).unwrap().unwrap().gid.as_raw();
        let status = fs::read_to_string(format!("/proc/{}/status", sg.pid())).unwrap();
        let line = |key: &str| status.lines().find(|l| l.starts_with(key)).unwrap_or_default().split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
        assert_eq!(line("Uid:"), "65534 65534 65534 65534", "{status}");
        assert_eq!(line("Gid:"), format!("{gid} {gid} {gid} {gid}"), "{status}");
        assert_eq!(line("Groups:"), "", "{status}");
    }
}

/// REQUEST for login `id` of the login connection `cpid` with `cookie`: the master's answer line.
fn request(master: &Path, cpid: u32, id: u32, cookie: &str) -> String {
    let mut m = UnixStream::connect(master).unwrap();
    m.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    m.write_all(format!("VERSION\t1\t1\nREQUEST\t77\t{cpid}\t{id}\t{cookie}\n").as_bytes()).unwrap();
    let mut m = BufReader::new(m);
    let mut reply = String::new();
    while !reply.starts_with("USER\t") && !reply.starts_with("FAIL\t") && !reply.starts_with("NOTFOUND\t") {
        reply.clear();
        assert!(m.read_line(&mut reply).unwrap() > 0, "master socket closed");
    }
    reply.trim_end().to_owned()
}
