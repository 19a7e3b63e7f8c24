//! A whole master-protocol session (auth-master, auth-userdb) in memory, against a passwd-file
//! passdb + userdb with `alice` (uid 1000), `bob` (uid 2000) and `carol` (no uid).
//!
//! `server::serve_master` is public, but its `access` argument, `master::Access`, lives in a
//! private module and is re-exported nowhere, so no code outside the crate can name or build
//! one. The target therefore drives the same function the only public way: the real accept loop
//! `server::run` on Unix sockets in a temp folder, which calls
//! `serve_master(stream, shared, kind, Access::for_peer(..), peer_pid)` for each connection.
//! `for_peer` gives `OwnUid(uid)` only on a `-userdb` socket with mode 0666 to a peer that is
//! neither root nor the socket's owner or group: when the fuzzer runs as root, a helper thread
//! switches its own (thread-only, raw syscall) credentials to uid/gid 1000 and makes those
//! connections. Without root the OwnUid flag has no effect (printed once at start-up).
//!
//! Input: one flag byte, then the bytes the peer sends.
//! - bit 0: connect to the `auth-userdb` socket (`ListenerKind::Userdb`), else `auth-master`;
//! - bit 1: on the userdb socket, connect as uid 1000 (`Access::OwnUid(1000)`), else as the
//!   fuzzer's own user (`Access::Full`); ignored on the master socket (`for_peer` always gives
//!   `Full` there);
//! - bit 2: prefix a valid `VERSION\t1\t1\n` handshake;
//! - bit 3: send everything at once; otherwise line by line, letting the server go idle after
//!   each line.
//!
//! The runtime's clock is paused: a sleep ends exactly when every task is idle. All socket I/O is
//! in-process, so the kernel has the bytes ready before the runtime next polls. After the input
//! the write side is shut down and the server must close the session (bounded by a paused-clock
//! timeout). Then the output is checked:
//! - it is whole lines, none longer than 8192 bytes;
//! - the first two are exactly `VERSION\t1\t1` and `SPID\t<digits>`;
//! - every later line is `USER|NOTFOUND|FAIL|PASS|LIST|DONE|OK` TAB a number;
//! - with `OwnUid(1000)`: every `USER` reply carries `uid=1000` (and no other uid), there is no
//!   `PASS` and no `LIST` line, and every `DONE` is `DONE\t<id>\tfail`.
#![no_main]

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use saslgate::auth::Authenticator;
use saslgate::blocking::Pool;
use saslgate::config::ListenerKind;
use saslgate::request::RequestInfo;
use saslgate::server::{listener, Shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The uid a restricted peer has; `alice` has it, `bob` has another, `carol` has none.
const PEER_UID: u32 = 1000;
const MAX_OUTPUT_LINE: usize = 8192;

const PASSWD: &str = "\
# saslgate fuzz fixture (master_session)
alice:{PLAIN}secret:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G
bob:{PLAIN}hunter2:2000:2000::/home/bob::
carol:{PLAIN}carolpass::::/home/carol::
";

fn config_text(dir: &std::path::Path, sockets: &std::path::Path) -> String {
    let passwd = dir.join("users.passwd");
    format!(
        "\
listeners:
  - {{ path: {m}, mode: \"0600\" }}
  - {{ path: {u}, mode: \"0666\" }}
auth:
  failure_delay: 0s
  cache: {{ size: 100 }}
passdbs:
  - {{ driver: passwd-file, path: {p}, scheme: PLAIN }}
userdbs:
  - {{ driver: passwd-file, path: {p} }}
",
        m = sockets.join("auth-master").display(),
        u = sockets.join("auth-userdb").display(),
        p = passwd.display(),
    )
}

/// Connects to a socket as uid/gid 1000: a thread whose own credentials were switched.
struct Connector {
    requests: Mutex<mpsc::Sender<(PathBuf, mpsc::Sender<std::io::Result<StdUnixStream>>)>>,
}

impl Connector {
    /// `None` when this thread cannot take another uid (the fuzzer is not root).
    fn start() -> Option<Connector> {
        let (tx, rx) = mpsc::channel::<(PathBuf, mpsc::Sender<std::io::Result<StdUnixStream>>)>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("uid-1000-peer".into())
            .spawn(move || {
                // Raw syscalls: glibc's setresuid() would change every thread of the process.
                // SAFETY: plain syscalls with integer arguments; they only change this thread.
                let ok = unsafe {
                    libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) == 0
                        && libc::syscall(libc::SYS_setresgid, PEER_UID, PEER_UID, PEER_UID) == 0
                        && libc::syscall(libc::SYS_setresuid, PEER_UID, PEER_UID, PEER_UID) == 0
                };
                let _ = ready_tx.send(ok);
                if !ok {
                    return;
                }
                for (path, reply) in rx {
                    let _ = reply.send(StdUnixStream::connect(&path));
                }
            })
            .expect("connector thread");
        ready_rx.recv().unwrap_or(false).then(|| Connector { requests: Mutex::new(tx) })
    }

    fn connect(&self, path: &std::path::Path) -> std::io::Result<StdUnixStream> {
        let (tx, rx) = mpsc::channel();
        self.requests.lock().unwrap().send((path.to_owned(), tx)).expect("connector alive");
        rx.recv().expect("connector reply")
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    master: PathBuf,
    userdb: PathBuf,
    connector: Option<Connector>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // libFuzzer's C main never ran Rust's start-up, which ignores SIGPIPE: a write to a
        // socket the other side closed would kill the process instead of failing.
        // SAFETY: setting a signal to SIG_IGN before any socket exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        // The passwd-file lives in one fixed folder, written only when it differs (parallel
        // fuzzer processes never see it change). Sockets are per process: two processes cannot
        // listen on one path. The folders are 0755 so that uid 1000 can reach the 0666 socket.
        let dir = std::env::temp_dir().join("saslgate-fuzz-master");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("users.passwd");
        if std::fs::read(&file).ok().as_deref() != Some(PASSWD.as_bytes()) {
            std::fs::write(&file, PASSWD).expect("write passwd-file");
        }
        // Socket folders of fuzzer processes that are gone are removed, so they do not pile up.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("sockets-")) else { continue };
            if !std::path::Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let sockets = dir.join(format!("sockets-{}", std::process::id()));
        std::fs::create_dir_all(&sockets).expect("socket dir");
        let config = saslgate::config::parse(&config_text(&dir, &sockets), "fuzz", &dir).expect("fuzz config is valid");
        let pool = Pool::new(1, 16).expect("blocking pool");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
        let (master, userdb) = rt.block_on(async {
            let auth = Arc::new(Authenticator::from_config(&config, &pool));
            // The first lookups read the passwd-file on the blocking pool, which the paused
            // clock does not wait for (a session's timeout would fire first): read it here,
            // with no timer pending. Afterwards every lookup finds the file fresh (one stat)
            // and stays on the runtime.
            let info = RequestInfo::default();
            let mut listing = auth.list_users();
            let mut users = Vec::new();
            while let Some(user) = listing.next().await {
                users.push(user.expect("warm-up: LIST"));
            }
            assert_eq!(users.len(), 3, "warm-up: LIST");
            let _ = auth.lookup_pass("alice", &info).await;
            let _ = auth.lookup_user("alice", &info, false).await;
            let shared = Arc::new(Shared::new(&config, auth));
            let mut listeners = Vec::new();
            let (mut master, mut userdb) = (None, None);
            for l in &config.listeners {
                match l.kind {
                    ListenerKind::Master => master = Some(l.path.clone()),
                    ListenerKind::Userdb => userdb = Some(l.path.clone()),
                    _ => unreachable!("only master sockets are configured"),
                }
                let std_listener = listener::bind(l).expect("bind a fuzz socket");
                let tokio_listener = listener::into_tokio(std_listener).expect("tokio listener");
                listeners.push((tokio_listener, l.clone()));
            }
            // Runs on the fixture's runtime whenever a session is driven.
            tokio::spawn(saslgate::server::run(listeners, shared, 64, std::future::pending::<()>()));
            (master.expect("master socket"), userdb.expect("userdb socket"))
        });
        let connector = Connector::start();
        if connector.is_none() {
            eprintln!("master_session: not root, so no peer can get Access::OwnUid; flag bit 1 is ignored");
        }
        let fx = Fixture { rt, master, userdb, connector };
        // Self-test: the fixture and the oracle work.
        let full = run(&fx, b"\x05USER\t1\tbob\tservice=lmtp\nPASS\t2\talice\tservice=lmtp\nLIST\t3\tuser=*\n");
        for want in ["\nUSER\t1\tbob\t", "\nPASS\t2\tuser=alice", "\nLIST\t3\tcarol\n", "\nDONE\t3\t"] {
            assert!(full.contains(want), "self-test: no {want:?} in:\n{full}");
        }
        if fx.connector.is_some() {
            let own = run(&fx, b"\x07USER\t1\talice\tservice=lmtp\nUSER\t2\tbob\tservice=lmtp\nPASS\t3\talice\tservice=lmtp\nLIST\t4\n");
            for want in ["\nUSER\t1\talice\t", "\nFAIL\t2\n", "\nFAIL\t3\n", "\nDONE\t4\tfail\n"] {
                assert!(own.contains(want), "self-test (OwnUid): no {want:?} in:\n{own}");
            }
        }
        fx
    })
}

/// Runs one session and checks its output; returns the output for the self-test.
fn run(fx: &Fixture, data: &[u8]) -> String {
    let Some((&flags, body)) = data.split_first() else {
        return String::new();
    };
    let userdb = flags & 1 != 0;
    let own_uid = userdb && flags & 2 != 0 && fx.connector.is_some();
    let burst = flags & 8 != 0;
    let mut input = Vec::with_capacity(body.len() + 16);
    if flags & 4 != 0 {
        input.extend_from_slice(b"VERSION\t1\t1\n");
    }
    input.extend_from_slice(body);

    let path = if userdb { &fx.userdb } else { &fx.master };
    let stream = match (own_uid, &fx.connector) {
        (true, Some(c)) => c.connect(path),
        _ => StdUnixStream::connect(path),
    }
    .expect("connect to the fuzz socket");
    stream.set_nonblocking(true).expect("nonblocking");

    let output = fx.rt.block_on(async {
        let stream = tokio::net::UnixStream::from_std(stream).expect("tokio stream");
        let (mut rd, mut wr) = stream.into_split();
        let recv_task = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        });
        if burst {
            let _ = wr.write_all(&input).await;
        } else {
            for line in input.split_inclusive(|&b| b == b'\n') {
                if wr.write_all(line).await.is_err() {
                    break;
                }
                // Paused clock: this returns once the server is idle again.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let _ = wr.shutdown().await;
        drop(wr);
        // Virtual time: this fires only if the session is stuck with nothing left to run.
        match tokio::time::timeout(Duration::from_secs(2), recv_task).await {
            Ok(out) => out.expect("reader task"),
            Err(_) => panic!("the master session did not end after the peer closed its side"),
        }
    });
    check(&input, &output, own_uid);
    String::from_utf8_lossy(&output).into_owned()
}

const VERBS: &[&[u8]] = &[b"USER", b"NOTFOUND", b"FAIL", b"PASS", b"LIST", b"DONE", b"OK"];

fn check(input: &[u8], output: &[u8], own_uid: bool) {
    let text = String::from_utf8_lossy(output);
    let input_text = String::from_utf8_lossy(input);
    assert!(output.ends_with(b"\n"), "output is empty or ends mid-line:\n{text}\ninput: {input_text:?}");
    let body = &output[..output.len() - 1];
    let mut lines = body.split(|&b| b == b'\n');
    for line in body.split(|&b| b == b'\n') {
        assert!(line.len() <= MAX_OUTPUT_LINE, "output line of {} bytes: {:?}...\ninput: {input_text:?}", line.len(), String::from_utf8_lossy(&line[..200]));
    }

    assert_eq!(lines.next(), Some(&b"VERSION\t1\t1"[..]), "handshake:\n{text}");
    let spid = lines.next().unwrap_or_default();
    assert!(spid.strip_prefix(b"SPID\t").is_some_and(|pid| !pid.is_empty() && pid.iter().all(u8::is_ascii_digit)), "handshake SPID:\n{text}");

    for line in lines {
        let shown = String::from_utf8_lossy(line);
        let fields: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
        assert!(
            VERBS.contains(&fields[0]) && fields.len() >= 2 && !fields[1].is_empty() && fields[1].iter().all(u8::is_ascii_digit),
            "unexpected reply {shown:?}\ninput: {input_text:?}"
        );
        if !own_uid {
            continue;
        }
        match fields[0] {
            b"USER" => {
                let uids: Vec<&[u8]> = fields[2..].iter().filter_map(|f| f.strip_prefix(b"uid=")).collect();
                assert!(uids == [b"1000"], "OwnUid(1000) peer got a USER reply for another uid: {shown:?}\ninput: {input_text:?}");
            }
            b"PASS" | b"LIST" => {
                panic!("OwnUid(1000) peer got {shown:?}\ninput: {input_text:?}")
            }
            b"DONE" => assert!(fields.len() == 3 && fields[2] == b"fail", "OwnUid(1000) peer got a LIST result: {shown:?}\ninput: {input_text:?}"),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    run(fx, data);
});
