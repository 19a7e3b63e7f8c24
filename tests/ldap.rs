//! The `ldap` passdb and userdb against a real OpenLDAP `slapd` (Debian `slapd ldap-utils`),
//! started by each test under a temp dir on 127.0.0.1 (a free port), with the real saslgate
//! binary in front of it and `doveadm` (Debian `dovecot-core`) for userdb lookups and LIST.
//!
//! The directory: alice `{SSHA}`, bob `{CRYPT}$6$`, carol `{CRYPT}$2b$` (libxcrypt, through
//! Python's crypt module), dan `{SSHA}` of a UTF-8 password, frank without userPassword.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

#[path = "support/peers.rs"]
mod peers;

const SASLGATE: &str = env!("CARGO_BIN_EXE_saslgate");
const BASE: &str = "dc=example,dc=org";

/// (user, password) of every user with a password; the scheme is in the comment of the module.
const USERS: &[(&str, &str)] = &[("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw"), ("dan", "dänpw€")];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; install slapd ldap-utils (scripts/install-deps.sh)"));
    assert!(out.status.success(), "{cmd:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn slappasswd(pass: &str) -> String {
    output(Command::new("/usr/sbin/slappasswd").args(["-h", "{SSHA}", "-s", pass]))
}

fn crypt(pass: &str, salt: &str) -> String {
    output(Command::new("python3").args(["-W", "ignore", "-c", "import crypt,sys;print(crypt.crypt(sys.argv[1],sys.argv[2]))", pass, salt]))
}

/// A slapd of our own: own config, own mdb, the invoking user, 127.0.0.1 only.
struct Slapd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Slapd {
    fn start(dir: &Path) -> Slapd {
        let dir = dir.join("slapd");
        fs::create_dir_all(dir.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
             loglevel none\nsizelimit size.soft=500 size.hard=unlimited\n\
             database mdb\nsuffix \"{BASE}\"\nrootdn \"cn=admin,{BASE}\"\nrootpw {root}\ndirectory {d}/db\nmaxsize 104857600\n\
             index objectClass,uid eq\n\
             access to attrs=userPassword\n  by dn.exact=\"cn=saslgate,{BASE}\" read\n  by anonymous auth\n  by * none\n\
             access to *\n  by dn.exact=\"cn=saslgate,{BASE}\" read\n  by users read\n  by anonymous auth\n",
            d = dir.display(),
            root = slappasswd("adminpw"),
        );
        fs::write(dir.join("slapd.conf"), conf).unwrap();
        let mut ldif = format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: cn=saslgate,{BASE}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: saslgate\nuserPassword: {svc}\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n",
            svc = slappasswd("servicepw")
        );
        let hashes = [
            slappasswd("alicepw"),
            format!("{{CRYPT}}{}", crypt("bobpw", "$6$rounds=5000$bobsalt0123456$")),
            format!("{{CRYPT}}{}", crypt("carolpw", "$2b$05$carolsaltcarolsaltcaro")),
            slappasswd("dänpw€"),
        ];
        assert!(hashes[1].starts_with("{CRYPT}$6$") && hashes[2].starts_with("{CRYPT}$2b$"), "{hashes:?}");
        let mut entries: Vec<(&str, Option<String>)> = USERS.iter().zip(hashes).map(|((u, _), h)| (*u, Some(h))).collect();
        entries.push(("frank", None));
        for (n, (user, hash)) in entries.into_iter().enumerate() {
            // LDIF: a UTF-8 value must be base64 (`::`).
            let pw = hash.map(|h| format!("userPassword:: {}\n", base64::engine::general_purpose::STANDARD.encode(h))).unwrap_or_default();
            ldif.push_str(&format!(
                "\ndn: uid={user},ou=people,{BASE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {user}\ncn: {user}\nsn: {user}\n\
                 mail: {user}@example.org\n{pw}uidNumber: {uid}\ngidNumber: 5000\nhomeDirectory: /home/{user}\n",
                uid = 5001 + n
            ));
        }
        fs::write(dir.join("init.ldif"), ldif).unwrap();
        output(Command::new("/usr/sbin/slapadd").arg("-q").arg("-f").arg(dir.join("slapd.conf")).arg("-l").arg(dir.join("init.ldif")));
        let mut slapd = Slapd { dir, port: free_port(), child: None };
        slapd.resume();
        slapd
    }

    fn uri(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and data.
    fn resume(&mut self) {
        let log = File::create(self.dir.join("slapd.log")).unwrap();
        let child = Command::new("/usr/sbin/slapd")
            .arg("-d")
            .arg("0")
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/", self.uri()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("slapd (Debian package slapd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not listen: {}", fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The saslgate binary with an `auth-client` and an `auth-userdb` socket.
struct Saslgate {
    child: Child,
    dir: PathBuf,
}

impl Saslgate {
    fn start(dir: &Path, dbs: &str) -> Saslgate {
        Saslgate::start_with(dir, "", dbs)
    }

    /// `auth` goes into the `auth:` map (e.g. `, cache: { size: 100 }`).
    fn start_with(dir: &Path, auth: &str, dbs: &str) -> Saslgate {
        let config = dir.join("saslgate.yaml");
        fs::write(
            &config,
            format!(
                "listeners:\n  - {{ path: auth-client, mode: \"0666\" }}\n  - {{ path: auth-userdb, mode: \"0666\" }}\n\
                 auth: {{ mechanisms: [plain, login], failure_delay: 0s, penalty_max: 0s, username_chars: \"\"{auth} }}\nlog: {{ level: debug }}\n{dbs}"
            ),
        )
        .unwrap();
        let child = Command::new(SASLGATE)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(dir.join("saslgate.log")).unwrap()))
            .spawn()
            .unwrap();
        let mut sg = Saslgate { child, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !["auth-client", "auth-userdb"].iter().all(|s| fs::symlink_metadata(dir.join(s)).is_ok_and(|m| m.file_type().is_socket())) {
            if let Some(status) = sg.child.try_wait().unwrap() {
                panic!("saslgate exited: {status}\n{}", fs::read_to_string(dir.join("saslgate.log")).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "no sockets");
            thread::sleep(Duration::from_millis(20));
        }
        sg
    }

    /// One AUTH over the client protocol: the reply line (`OK\t1…` / `FAIL\t1…`).
    fn auth(&self, mech: &str, user: &[u8], pass: &[u8]) -> String {
        let mut s = UnixStream::connect(self.dir.join("auth-client")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut r = BufReader::new(s.try_clone().unwrap());
        s.write_all(format!("VERSION\t1\t2\nCPID\t{}\n", std::process::id()).as_bytes()).unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.starts_with("DONE") {
                break;
            }
        }
        let read = |r: &mut BufReader<UnixStream>| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l.trim_end().to_owned()
        };
        if mech == "PLAIN" {
            let mut resp = vec![0u8];
            resp.extend_from_slice(user);
            resp.push(0);
            resp.extend_from_slice(pass);
            s.write_all(format!("AUTH\t1\tPLAIN\tservice=smtp\tnologin\tresp={}\n", b64(&resp)).as_bytes()).unwrap();
            return read(&mut r);
        }
        s.write_all(b"AUTH\t1\tLOGIN\tservice=smtp\tnologin\n").unwrap();
        for answer in [user, pass] {
            let l = read(&mut r);
            if !l.starts_with("CONT") {
                return l;
            }
            s.write_all(format!("CONT\t1\t{}\n", b64(answer)).as_bytes()).unwrap();
        }
        read(&mut r)
    }

    fn plain(&self, user: &str, pass: &str) -> String {
        self.auth("PLAIN", user.as_bytes(), pass.as_bytes())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("saslgate.log")).unwrap_or_default()
    }
}

impl Drop for Saslgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- saslgate log:\n{}", self.log());
        }
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("saslgate-ldap-").tempdir_in("/tmp").unwrap()
}

fn conn(uris: &str) -> String {
    format!("uris: [{uris}], dn: \"cn=saslgate,{BASE}\", dnpass: servicepw, base: \"ou=people,{BASE}\", timeout: 2s")
}

fn lookup_passdb(uris: &str) -> String {
    format!("passdbs:\n  - {{ driver: ldap, {}, scheme: PLAIN, pass_attrs: {{ uid: user, userPassword: password, mail: mail }} }}\n", conn(uris))
}

fn ok(line: &str) -> bool {
    line.starts_with("OK\t1")
}

fn plain_fail(line: &str) -> bool {
    line.starts_with("FAIL\t1") && !line.contains("temp_fail")
}

/// Right, wrong, unknown, no password attribute, UTF-8: the same answers in both modes.
fn check_users(sg: &Saslgate) {
    for (user, pass) in USERS {
        let line = sg.plain(user, pass);
        assert!(ok(&line), "{user}: {line}");
        assert!(line.contains(&format!("user={user}")), "{line}");
        let line = sg.plain(user, &format!("{pass}x"));
        assert!(plain_fail(&line), "{user} wrong password: {line}");
        let line = sg.auth("LOGIN", user.as_bytes(), pass.as_bytes());
        assert!(ok(&line), "LOGIN {user}: {line}");
    }
    assert!(plain_fail(&sg.plain("nosuchuser", "alicepw")));
    assert!(plain_fail(&sg.plain("frank", "")), "no password attribute, empty password");
    assert!(plain_fail(&sg.plain("frank", "x")), "no password attribute");
    assert!(plain_fail(&sg.plain("alice", "")), "an empty password never matches");
}

/// Hostile names never match another entry: `al*` with alice's password would log in as alice
/// with a wildcard filter; `*` would match several entries.
fn check_hostile(sg: &Saslgate) {
    let long = "a".repeat(4000);
    for name in ["*", "alice)(uid=*", "*)(|(uid=*", "al*", "\\", "alice\\", "alice)", "(uid=alice)", "uid=alice,ou=people,dc=example,dc=org", long.as_str()] {
        let line = sg.plain(name, "alicepw");
        assert!(plain_fail(&line), "{name:?}: {line}");
    }
    // NUL inside a LOGIN user name.
    let line = sg.auth("LOGIN", b"alice\0", b"alicepw");
    assert!(!ok(&line), "NUL: {line}");
    let line = sg.auth("LOGIN", b"al\0*", b"alicepw");
    assert!(!ok(&line), "NUL: {line}");
}

#[test]
fn lookup_mode() {
    let t = tmp();
    let slapd = Slapd::start(t.path());
    let sg = Saslgate::start(t.path(), &lookup_passdb(&format!("\"{}\"", slapd.uri())));
    check_users(&sg);
    let line = sg.plain("alice", "alicepw");
    assert!(line.contains("mail=alice@example.org"), "pass_attrs extra field: {line}");
    check_hostile(&sg);
}

#[test]
fn auth_bind_mode_with_search_and_with_dn_template() {
    let t = tmp();
    let slapd = Slapd::start(t.path());
    for extra in ["", &format!(", auth_bind_userdn: \"uid=%u,ou=people,{BASE}\"")] {
        let dir = t.path().join(if extra.is_empty() { "search" } else { "template" });
        fs::create_dir_all(&dir).unwrap();
        let dbs = format!("passdbs:\n  - {{ driver: ldap, {}, auth_bind: true{extra} }}\n", conn(&format!("\"{}\"", slapd.uri())));
        let sg = Saslgate::start(&dir, &dbs);
        check_users(&sg);
        check_hostile(&sg);
        // 16 binds at once all succeed (the bind pool runs them in parallel).
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let dir = dir.clone();
                thread::spawn(move || {
                    let sg = Saslgate { child: Command::new("true").spawn().unwrap(), dir };
                    let (u, p) = USERS[i % USERS.len()];
                    let line = sg.plain(u, p);
                    drop(sg);
                    line
                })
            })
            .collect();
        for h in handles {
            let line = h.join().unwrap();
            assert!(ok(&line), "{line}");
        }
    }
}

fn doveadm(dir: &Path, args: &[&str]) -> (i32, String) {
    let conf = dir.join("dovecot.conf");
    fs::write(
        &conf,
        format!("protocols = none\nbase_dir = {d}/dovecot-run\nstate_dir = {d}/dovecot-state\nssl = no\nlog_path = /dev/stderr\n", d = dir.display()),
    )
    .unwrap();
    let out = Command::new("doveadm").arg("-c").arg(&conf).args(args).output().expect("doveadm (Debian package dovecot-core)");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn userdb_lookup_and_iteration_through_doveadm() {
    let t = tmp();
    let slapd = Slapd::start(t.path());
    let dbs = format!(
        "{}userdbs:\n  - {{ driver: ldap, {}, user_attrs: {{ uidNumber: uid, gidNumber: gid, mail: mail, home: \"=/var/mail/%{{ldap:uid}}\", quota_rule: \"=*:storage=%{{ldap:uidNumber}}M\" }} }}\n",
        lookup_passdb(&format!("\"{}\"", slapd.uri())),
        conn(&format!("\"{}\"", slapd.uri()))
    );
    let sg = Saslgate::start(t.path(), &dbs);
    let sock = t.path().join("auth-userdb");
    let sock = sock.to_str().unwrap();
    let (code, out) = doveadm(t.path(), &["user", "-a", sock, "bob"]);
    assert_eq!(code, 0, "{out}");
    for want in ["uid", "5002", "gid", "5000", "home", "/var/mail/bob", "bob@example.org", "*:storage=5002M"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    let (code, out) = doveadm(t.path(), &["user", "-a", sock, "nosuchuser"]);
    assert_eq!(code, 67, "unknown user: {out}");
    let (code, out) = doveadm(t.path(), &["user", "-a", sock, "*"]);
    assert_eq!(code, 0, "{out}");
    let mut listed: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ["alice", "bob", "carol", "dan", "frank"], "{out}");
    drop(sg);
}

#[test]
fn iteration_streams_past_the_server_size_limit() {
    let t = tmp();
    let slapd = Slapd::start(t.path());
    // 600 more entries: more than slapd's size limit of 500, so only paging lists them all.
    let mut ldif = String::new();
    for i in 0..600 {
        ldif.push_str(&format!("dn: uid=u{i},ou=people,{BASE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: u{i}\ncn: u\nsn: u\nuidNumber: {}\ngidNumber: 1\nhomeDirectory: /h\n\n", 10000 + i));
    }
    let path = t.path().join("more.ldif");
    fs::write(&path, ldif).unwrap();
    output(Command::new("ldapadd").args(["-x", "-H", &slapd.uri(), "-D", &format!("cn=admin,{BASE}"), "-w", "adminpw", "-f"]).arg(&path));
    let dbs = format!("{}userdbs:\n  - {{ driver: ldap, {} }}\n", lookup_passdb(&format!("\"{}\"", slapd.uri())), conn(&format!("\"{}\"", slapd.uri())));
    let sg = Saslgate::start(t.path(), &dbs);
    let (code, out) = doveadm(t.path(), &["user", "-a", t.path().join("auth-userdb").to_str().unwrap(), "*"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| !l.trim().is_empty()).count(), 605, "{}", &out[..out.len().min(500)]);
    drop(sg);
}

#[test]
fn slapd_down_is_a_quick_temp_fail_and_logins_recover_without_restart() {
    let t = tmp();
    let mut slapd = Slapd::start(t.path());
    let dbs = format!(
        "passdbs:\n  - {{ driver: ldap, {}, scheme: PLAIN }}\n  - {{ driver: ldap, {}, auth_bind: true }}\n",
        conn(&format!("\"{}\"", slapd.uri())),
        conn(&format!("\"{}\"", slapd.uri()))
    );
    let sg = Saslgate::start(t.path(), &dbs);
    assert!(ok(&sg.plain("alice", "alicepw")));
    // Under load: 8 clients logging in while slapd stops.
    let dir = t.path().to_owned();
    let load: Vec<_> = (0..8)
        .map(|_| {
            let dir = dir.clone();
            thread::spawn(move || {
                let sg = Saslgate { child: Command::new("true").spawn().unwrap(), dir };
                let mut answers = Vec::new();
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(1500) {
                    let t0 = Instant::now();
                    let line = sg.plain("bob", "bobpw");
                    answers.push((line, t0.elapsed()));
                }
                answers
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    slapd.stop();
    let mut temp_fails = 0;
    for h in load {
        for (line, took) in h.join().unwrap() {
            assert!(ok(&line) || line.contains("temp_fail"), "only OK or temp_fail: {line}");
            assert!(took < Duration::from_millis(4500), "an answer within the timeout (2s per passdb): {took:?}");
            temp_fails += usize::from(line.contains("temp_fail"));
        }
    }
    assert!(temp_fails > 0);
    let t0 = Instant::now();
    let line = sg.plain("alice", "alicepw");
    assert!(line.contains("temp_fail"), "down: {line}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    slapd.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let line = sg.plain("alice", "alicepw");
        if ok(&line) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {line}");
        thread::sleep(Duration::from_millis(100));
    }
    // The other pooled connections reconnect as they are used: until they have, a wrong
    // password may still get temp_fail, but never OK.
    loop {
        let line = sg.plain("alice", "wrong");
        assert!(!ok(&line), "a wrong password after recovery: {line}");
        if plain_fail(&line) {
            break;
        }
        assert!(line.contains("temp_fail") && Instant::now() < deadline, "no recovery for wrong passwords: {line}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_second_uri_serves_when_the_first_is_dead() {
    let t = tmp();
    let slapd = Slapd::start(t.path());
    let dead = format!("ldap://127.0.0.1:{}", free_port());
    for mode in ["scheme: PLAIN", "auth_bind: true"] {
        let dir = t.path().join(mode.split(':').next().unwrap());
        fs::create_dir_all(&dir).unwrap();
        let dbs = format!("passdbs:\n  - {{ driver: ldap, {}, {mode} }}\n", conn(&format!("\"{dead}\", \"{}\"", slapd.uri())));
        let sg = Saslgate::start(&dir, &dbs);
        for _ in 0..3 {
            let t0 = Instant::now();
            assert!(ok(&sg.plain("carol", "carolpw")), "{mode}");
            assert!(t0.elapsed() < Duration::from_secs(2));
        }
        assert!(plain_fail(&sg.plain("carol", "nope")));
    }
}

// ---------------------------------------------------------------------------------------------
// The auth cache in auth_bind mode
// ---------------------------------------------------------------------------------------------

/// With `auth.cache` on, bind outcomes are remembered (keyed on the bind DN and the password):
/// with a DN template, a remembered login answers while slapd is down, until the TTL runs out;
/// a password never tried gets temp_fail. With a `pass_filter` search, the search still needs
/// the directory. With the cache off, nothing is ever answered without slapd.
#[test]
fn auth_bind_outcomes_go_through_the_auth_cache() {
    let t = tmp();
    let mut slapd = Slapd::start(t.path());
    let uri = format!("\"{}\"", slapd.uri());
    let template = format!("{}, auth_bind: true, auth_bind_userdn: \"uid=%u,ou=people,{BASE}\"", conn(&uri));
    let search = format!("{}, auth_bind: true", conn(&uri));
    let cached = ", cache: { size: 100, ttl: 3s, negative_ttl: 3s }";
    let start = |name: &str, auth: &str, db: &str| {
        let dir = t.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        Saslgate::start_with(&dir, auth, &format!("passdbs:\n  - {{ driver: ldap, {db} }}\n"))
    };
    let with_cache = start("cache", cached, &template);
    let search_cache = start("search", cached, &search);
    let no_cache = start("nocache", "", &template);
    for sg in [&with_cache, &search_cache, &no_cache] {
        assert!(ok(&sg.plain("alice", "alicepw")));
        assert!(plain_fail(&sg.plain("alice", "wrong")));
    }
    let remembered_at = Instant::now();
    slapd.stop();
    // Remembered: the right password is OK and the wrong one a plain FAIL, without slapd.
    assert!(ok(&with_cache.plain("alice", "alicepw")), "a cached bind answers while slapd is down");
    assert!(plain_fail(&with_cache.plain("alice", "wrong")), "a cached failure answers while slapd is down");
    // Never remembered: another password, another user.
    for (user, pass) in [("alice", "other"), ("bob", "bobpw"), ("alice", "")] {
        let line = with_cache.plain(user, pass);
        assert!(!ok(&line), "{user}/{pass}: {line}");
        if !pass.is_empty() {
            assert!(line.contains("temp_fail"), "{user}/{pass} never bound: {line}");
        }
    }
    // The search needs the directory; the cache off never answers without it.
    for sg in [&search_cache, &no_cache] {
        let line = sg.plain("alice", "alicepw");
        assert!(line.contains("temp_fail"), "{line}");
        assert!(!ok(&sg.plain("alice", "wrong")));
    }
    assert!(remembered_at.elapsed() < Duration::from_secs(3), "the checks above ran within the TTL");
    // After the TTL: the directory is asked again (and is down).
    thread::sleep(Duration::from_secs(3).saturating_sub(remembered_at.elapsed()) + Duration::from_millis(200));
    let line = with_cache.plain("alice", "alicepw");
    assert!(line.contains("temp_fail"), "expired: {line}");
    // Back up: the cache is refilled from real binds.
    slapd.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(&with_cache.plain("alice", "alicepw")) {
        assert!(Instant::now() < deadline, "no recovery");
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Postfix + swaks
// ---------------------------------------------------------------------------------------------

/// PLAIN and LOGIN through a real Postfix (`smtpd_sasl_type = dovecot`) and swaks, against the
/// ldap passdb in lookup mode and in auth_bind mode: 235 for the right password, 535 otherwise.
#[test]
fn plain_and_login_through_postfix_and_swaks() {
    if !peers::is_root() {
        eprintln!("SKIPPED: needs root (Postfix's master starts as root; saslgate chowns its socket to postfix)");
        return;
    }
    peers::require("swaks", "swaks");
    let tmp = peers::temp_dir("sg-ldap-postfix-");
    let dir = tmp.path();
    let slapd = Slapd::start(dir);
    let pf = peers::Postfix::start(dir, "private/auth");
    let sock = pf.spool.join("private/auth");
    let uri = format!("\"{}\"", slapd.uri());
    for (mode, db) in [
        ("lookup", format!("{}, scheme: PLAIN, pass_attrs: {{ uid: user, userPassword: password }}", conn(&uri))),
        ("auth_bind", format!("{}, auth_bind: true", conn(&uri))),
    ] {
        let yaml = format!(
            "listeners:\n  - {{ path: {}, type: client, mode: \"0660\", user: postfix, group: postfix }}\n\
             auth: {{ mechanisms: [plain, login], failure_delay: 0s, penalty_max: 0s }}\n\
             passdbs:\n  - {{ driver: ldap, {db} }}\n",
            sock.display()
        );
        let _sg = peers::Saslgate::start(dir, &yaml, &[&sock]);
        for mech in ["PLAIN", "LOGIN"] {
            for (user, pass) in [("alice", "alicepw"), ("bob", "bobpw"), ("carol", "carolpw")] {
                peers::assert_auth(pf.port, mech, user, pass, &[], 235);
                peers::assert_auth(pf.port, mech, user, &format!("{pass}x"), &[], 535);
            }
            peers::assert_auth(pf.port, mech, "nosuchuser", "alicepw", &[], 535);
            peers::assert_auth(pf.port, mech, "al*", "alicepw", &[], 535);
            eprintln!("{mode} {mech}: ok");
        }
        peers::assert_auth(pf.port, "PLAIN", "frank", "x", &[], 535);
    }
}
