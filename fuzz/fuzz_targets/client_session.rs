//! A whole client-protocol session in memory: the real `serve_client` over a `tokio::io::duplex`
//! stream, against a passwd-file with one good user (`fuzzuser` / `fuzzpass`) and some traps.
//!
//! Input: one flag byte, then the bytes the peer sends.
//! - bit 0: prefix a valid `VERSION\t1\t2\nCPID\t<n>\n` handshake;
//! - bit 1: serve it as a login socket (CPID registered for REQUEST) instead of auth-only;
//! - bit 2: send everything at once; otherwise send line by line and let the server go idle
//!   after each line, so AUTH/CONT exchanges happen in the order a real client drives them;
//! - bit 3: with line-by-line sending, wait 60 s (of paused time) after each line instead of
//!   1 ms, so requests hit their 150 s timeout between lines.
//!
//! The runtime's clock is paused, so a sleep ends exactly when every task is idle (it costs no
//! wall time), and the failure delay is 0s. After the input the write side is shut down and the
//! server must end the session; all output is then checked:
//! - the handshake comes first and in order (VERSION, MECH..., SPID, CUID, COOKIE, DONE);
//! - after it only CONT, OK and FAIL lines, each with a non-zero numeric id;
//! - every `OK` names `user=fuzzuser`, answers an AUTH of the input with that id (no more OKs
//!   than such AUTHs), and some response sent for that id carries the password `fuzzpass`
//!   (PLAIN `...\0fuzzpass`, or a LOGIN response that is exactly `fuzzpass`). An OK for anything
//!   else is the worst bug this daemon can have.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use saslgate::auth::Authenticator;
use saslgate::blocking::Pool;
use saslgate::config::Config;
use saslgate::protocol::base64;
use saslgate::protocol::client::{ClientCommand, InitialResponse};
use saslgate::protocol::escape::unescape;
use saslgate::server::{serve_client, Shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &[u8] = b"fuzzuser";
const PASSWORD: &[u8] = b"fuzzpass";

/// Only `fuzzuser:fuzzpass` may log in. The other lines are traps: a later duplicate entry with
/// another password (the first entry wins), users without a password field or with an empty one
/// (both refuse every password, the empty one included), an unknown scheme, a name that `%Lu`
/// can never reach, and a value without a prefix under the default scheme (SHA1, so `fuzzpass`
/// is no valid digest), and `{PLAIN}` with nothing after it (an empty stored password is no
/// password: saslgate refuses it, where Dovecot would accept ""). All schemes are cheap: no
/// blocking-pool work.
const PASSWD: &str = "\
# saslgate fuzz fixture
fuzzuser:{PLAIN}fuzzpass:1000:1000::/home/fuzzuser::
fuzzuser:{PLAIN}wrongpass
nopass
emptypass:
badscheme:{NOPE}fuzzpass
Upper:{PLAIN}fuzzpass
noprefix:fuzzpass
emptyplain:{PLAIN}
";

const CONFIG: &str = "\
listeners:
  - { path: auth-client, type: client }
auth:
  mechanisms: [plain, login]
  failure_delay: 0s
passdbs:
  - { driver: passwd-file, path: users.passwd, scheme: SHA1 }
";

struct Fixture {
    rt: tokio::runtime::Runtime,
    config: Config,
    auth: Arc<Authenticator>,
    cpid: std::sync::atomic::AtomicU32,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // One fixed folder for every run: the file is only written when it differs, so parallel
        // fuzzer processes never see it change under them and no folders pile up.
        let dir = std::env::temp_dir().join("saslgate-fuzz-fixture");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("users.passwd");
        if std::fs::read(&file).ok().as_deref() != Some(PASSWD.as_bytes()) {
            std::fs::write(&file, PASSWD).expect("write passwd-file");
        }
        let config = saslgate::config::parse(CONFIG, "fuzz", &dir).expect("fuzz config is valid");
        let pool = Pool::new(1, 16).expect("blocking pool");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("runtime");
        let auth = rt.block_on(async { Arc::new(Authenticator::from_config(&config, &pool)) });
        let fx = Fixture { rt, config, auth, cpid: 1.into() };
        // The first lookup reads the passwd-file on the blocking pool, and the paused clock does
        // not wait for pool threads, so warm the cache up until a login works. Afterwards every
        // lookup finds the file fresh and stays on the runtime.
        // Known-good inputs are written by the library's own client side.
        let with_flags = |flags: u8, line: Vec<u8>| [vec![flags], line].concat();
        let plain_ok = &with_flags(1, saslgate::client::auth_plain(1, "smtp", "fuzzuser", "fuzzpass", &[]))[..];
        for _ in 0..100 {
            if run(&fx, plain_ok).contains("\nOK\t1\t") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Self-test: the fixture and the oracle work.
        let good = run(&fx, plain_ok);
        assert!(good.contains("\nOK\t1\tuser=fuzzuser"), "self-test: PLAIN login failed:\n{good}");
        let login = run(&fx, b"\x03AUTH\t2\tLOGIN\tservice=imap\nCONT\t2\tZnV6enVzZXI=\nCONT\t2\tZnV6enBhc3M=\n");
        assert!(login.contains("\nOK\t2\tuser=fuzzuser"), "self-test: LOGIN login failed:\n{login}");
        let bad = run(&fx, &with_flags(1, saslgate::client::auth_plain(3, "smtp", "fuzzuser", "wrongpass", &[])));
        assert!(bad.contains("\nFAIL\t3\tuser=fuzzuser"), "self-test: wrong password not refused:\n{bad}");
        fx
    })
}

/// Runs one session and checks its output; returns the output for the self-test.
fn run(fx: &Fixture, data: &[u8]) -> String {
    let Some((&flags, body)) = data.split_first() else {
        return String::new();
    };
    let login = flags & 2 != 0;
    let burst = flags & 4 != 0;
    let pause = Duration::from_millis(if flags & 8 != 0 { 60_000 } else { 1 });
    let mut input = Vec::with_capacity(body.len() + 32);
    if flags & 1 != 0 {
        // A fresh CPID each time: a login socket refuses a CPID that a live connection holds.
        let cpid = fx.cpid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        input.extend_from_slice(format!("VERSION\t1\t2\nCPID\t{cpid}\n").as_bytes());
    }
    let handshake_len = input.len();
    input.extend_from_slice(body);

    let output = fx.rt.block_on(async {
        let shared = Arc::new(Shared::new(&fx.config, Arc::clone(&fx.auth)));
        let (client, server) = tokio::io::duplex(1 << 20);
        let server_task = tokio::spawn(serve_client(server, shared, login));
        let (mut rd, mut wr) = tokio::io::split(client);
        let recv_task = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        });
        if burst {
            let _ = wr.write_all(&input).await;
        } else {
            let _ = wr.write_all(&input[..handshake_len]).await;
            for line in input[handshake_len..].split_inclusive(|&b| b == b'\n') {
                if wr.write_all(line).await.is_err() {
                    break;
                }
                // Paused clock: this returns once the server and its requests are all idle.
                tokio::time::sleep(pause).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let _ = wr.shutdown().await;
        // Virtual time: this fires only if the session is stuck with nothing left to run.
        let end = async {
            let out = recv_task.await.expect("reader task");
            server_task.await.expect("serve_client panicked");
            out
        };
        match tokio::time::timeout(Duration::from_secs(2), end).await {
            Ok(out) => out,
            Err(_) => panic!("the session did not end after the peer closed its side"),
        }
    });
    check(&input, &output);
    String::from_utf8_lossy(&output).into_owned()
}

/// What the peer sent for each request id, from every line of the input (a superset of what the
/// server read, which stops at the first protocol error).
#[derive(Default)]
struct Sent {
    auths: usize,
    payloads: Vec<Vec<u8>>,
}

fn sent_by_id(input: &[u8]) -> HashMap<u32, Sent> {
    let mut by_id: HashMap<u32, Sent> = HashMap::new();
    for line in input.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match ClientCommand::parse(line) {
            Ok(ClientCommand::Auth(a)) => {
                let s = by_id.entry(a.id.0).or_default();
                s.auths += 1;
                if let InitialResponse::Base64(text) = a.resp {
                    s.payloads.extend(base64::decode(&text).ok());
                }
            }
            Ok(ClientCommand::Cont { id, data }) => {
                by_id.entry(id.0).or_default().payloads.extend(base64::decode(&data).ok());
            }
            _ => {}
        }
    }
    by_id
}

/// Whether a decoded response for one request, with the other responses for the same id, proves
/// the peer knows fuzzuser's password: a PLAIN message `[authzid]\0fuzzuser\0fuzzpass` (authzid
/// empty or the same as the authcid; the authcid in any case, as `%Lu` lowercases it), or a
/// LOGIN password `fuzzpass` on an id whose responses also hold the user name.
fn carries_password(payload: &[u8], all: &[Vec<u8>]) -> bool {
    let is_user = |b: &[u8]| std::str::from_utf8(b).is_ok_and(|u| u.to_lowercase().as_bytes() == USER);
    let parts: Vec<&[u8]> = payload.split(|&b| b == 0).collect();
    match parts.as_slice() {
        [z, c, p] => *p == PASSWORD && is_user(c) && (z.is_empty() || z == c),
        _ => payload == PASSWORD && all.iter().any(|p| is_user(p)),
    }
}

fn id_of(field: Option<&&[u8]>, line: &[u8]) -> u32 {
    let id = field.and_then(|f| std::str::from_utf8(f).ok()).and_then(|f| f.parse::<u32>().ok());
    match id {
        Some(id) if id != 0 => id,
        _ => panic!("reply without a valid id: {:?}", String::from_utf8_lossy(line)),
    }
}

fn check(input: &[u8], output: &[u8]) {
    let text = String::from_utf8_lossy(output);
    let input_text = String::from_utf8_lossy(input);
    assert!(output.is_empty() || output.ends_with(b"\n"), "output ends mid-line:\n{text}");
    let body = output.strip_suffix(b"\n").unwrap_or(output);
    let mut lines = body.split(|&b| b == b'\n').map(|l| (l, l.split(|&b| b == b'\t').collect::<Vec<&[u8]>>()));

    // The handshake, always sent first and complete.
    let mut expect = |verb: &[u8], arity: usize| {
        let (line, fields) = lines.next().unwrap_or_default();
        assert!(
            fields.len() == arity && fields[0] == verb && fields[1..].iter().all(|f| !f.is_empty()),
            "handshake: want {} got {:?}:\n{text}",
            String::from_utf8_lossy(verb),
            String::from_utf8_lossy(line)
        );
    };
    expect(b"VERSION", 3);
    expect(b"MECH", 3);
    expect(b"MECH", 3);
    expect(b"SPID", 2);
    expect(b"CUID", 2);
    expect(b"COOKIE", 2);
    expect(b"DONE", 1);
    assert!(body.starts_with(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t"), "handshake:\n{text}");

    let sent = sent_by_id(input);
    let mut oks: HashMap<u32, usize> = HashMap::new();
    for (line, fields) in lines {
        let shown = String::from_utf8_lossy(line);
        match fields[0] {
            b"CONT" => {
                id_of(fields.get(1), line);
                assert_eq!(fields.len(), 3, "CONT shape: {shown:?}");
                assert!(base64::decode(fields[2]).is_ok(), "CONT data is not base64: {shown:?}");
            }
            b"FAIL" => {
                id_of(fields.get(1), line);
            }
            b"OK" => {
                let id = id_of(fields.get(1), line);
                let user = fields.get(2).and_then(|f| f.strip_prefix(b"user=")).map(unescape);
                assert_eq!(user.as_deref(), Some(USER), "OK for the wrong user: {shown:?}\ninput: {input_text:?}");
                let count = oks.entry(id).or_default();
                *count += 1;
                let (auths, proofs) = sent.get(&id).map_or((0, 0), |s| (s.auths, s.payloads.iter().filter(|p| carries_password(p, &s.payloads)).count()));
                assert!(*count <= auths, "more OKs than AUTHs for id {id}: {shown:?}\ninput: {input_text:?}");
                assert!(*count <= proofs, "OK for id {id} without the password: {shown:?}\ninput: {input_text:?}");
            }
            other => panic!("unexpected reply {:?} after the handshake:\n{text}", String::from_utf8_lossy(other)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    run(fx, data);
});
