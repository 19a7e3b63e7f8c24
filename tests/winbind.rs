//! NTLM and GSS-SPNEGO against a real standalone winbindd through `ntlm_auth`: the winbind
//! mechanisms driven by hand over a `HelperPool` (the request layer that will glue them to the
//! wire is elsewhere). Clients are pyspnego (NTLMv2, SPNEGO) via tests/clients/spnego_client.py.
//! Needs the Debian packages winbind, samba, libnss-wrapper and the PyPI package pyspnego
//! (scripts/install-deps.sh); a missing one fails the test with an install hint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "support/winbind.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use saslgate::config::WinbindSettings;
use saslgate::db::helper::{HelperError, MechHelper};
use saslgate::db::winbind::HelperPool;
use saslgate::sasl::winbind::HelperProtocol;
use saslgate::sasl::{MechFailure, Mechanism, Step, Winbind};
use support::{Winbindd, DOMAIN, USER1, USER2};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A pyspnego client process.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn new(protocol: HelperProtocol, user: &str, password: &str, domain: &str) -> Client {
        let ok = Command::new("python3").args(["-c", "import spnego"]).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "python3 with pyspnego is needed: python3 -m pip install pyspnego (scripts/install-deps.sh does)");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/spnego_client.py");
        let proto = match protocol {
            HelperProtocol::Ntlmssp => "ntlm",
            HelperProtocol::GssSpnego => "negotiate",
        };
        let mut child = Command::new("python3")
            .args([script, "--protocol", proto, "--user", user, "--password", password, "--domain", domain])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spnego_client.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client { child, stdin, stdout }
    }

    fn read(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("client output");
        match line.trim() {
            "DONE" => None,
            "" => panic!("client exited"),
            t => Some(B64.decode(t).expect("client base64")),
        }
    }

    fn first(&mut self) -> Vec<u8> {
        self.read().expect("a first token")
    }

    fn next(&mut self, server: Option<&[u8]>) -> Option<Vec<u8>> {
        let line = server.map(|s| B64.encode(s)).unwrap_or_else(|| "-".into());
        writeln!(self.stdin, "{line}").expect("client input");
        self.read()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pool(wb: &Winbindd, protocol: HelperProtocol) -> HelperPool {
    let settings = WinbindSettings { helper_path: wb.helper(), helpers: 2, timeout: Duration::from_secs(10), ..WinbindSettings::default() };
    HelperPool::new(protocol, settings)
}

/// What one exchange ended with; helper errors poison the session as the request layer must.
#[derive(Debug)]
enum End {
    Step(Step),
    Helper(HelperError),
}

/// Runs one exchange: mechanism and helper, with `client`; `hook` runs after each helper call.
async fn exchange(pool: &HelperPool, client: &mut Client, mut hook: impl FnMut(usize)) -> End {
    let protocol = pool.protocol();
    let mut mech = Winbind::new(protocol);
    let mut session = match pool.session().await {
        Ok(s) => s,
        Err(e) => return End::Helper(e),
    };
    let first = client.first();
    if protocol == HelperProtocol::GssSpnego {
        assert!(first.contains(&0), "a DER token has NUL bytes");
    }
    let mut step = mech.start(Some(&first));
    let mut calls = 0;
    loop {
        step = match step {
            Step::Helper(line) => {
                let reply = session.call(&line).await;
                calls += 1;
                hook(calls);
                match reply {
                    Ok(reply) => mech.helper_reply(&reply),
                    Err(e) => {
                        session.poison();
                        return End::Helper(e);
                    }
                }
            }
            Step::Challenge(c) => match client.next(Some(&c)) {
                Some(resp) => mech.step(&resp),
                None => panic!("client finished on a challenge"),
            },
            Step::Authenticated { user, final_data } => {
                if let Some(data) = &final_data {
                    assert!(client.next(Some(data)).is_none(), "client accepts the final token");
                }
                return End::Step(Step::Authenticated { user, final_data });
            }
            other => {
                if matches!(other, Step::Fail(MechFailure::HelperBroken(_))) {
                    session.poison();
                }
                return End::Step(other);
            }
        };
    }
}

fn authenticated(end: &End) -> Option<&str> {
    match end {
        End::Step(Step::Authenticated { user, .. }) => Some(user),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_and_spnego_against_real_winbindd() {
    let wb = Winbindd::start();
    let ntlm = pool(&wb, HelperProtocol::Ntlmssp);
    let spnego = pool(&wb, HelperProtocol::GssSpnego);
    let user1 = format!("{}@{DOMAIN}", USER1.0);

    // NTLMv2, right password: Dovecot's `user@DOMAIN` from ntlm_auth's `DOMAIN\user`.
    let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, USER1.0, USER1.1, DOMAIN), |_| {}).await;
    assert_eq!(authenticated(&end), Some(user1.as_str()), "{end:?}");
    // No domain from the client: the server's domain.
    let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, USER1.0, USER1.1, ""), |_| {}).await;
    assert_eq!(authenticated(&end), Some(user1.as_str()), "{end:?}");
    // UTF-8 password.
    let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, USER2.0, USER2.1, DOMAIN), |_| {}).await;
    assert_eq!(authenticated(&end), Some(format!("{}@{DOMAIN}", USER2.0).as_str()), "{end:?}");
    // Wrong password and unknown user: a plain failure (NA NT_STATUS_LOGON_FAILURE), never OK.
    for (user, pass) in [(USER1.0, "ntpass2"), (USER1.0, ""), ("nosuch", "x"), (USER2.0, "pa ss€2")] {
        let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, user, pass, DOMAIN), |_| {}).await;
        assert!(matches!(end, End::Step(Step::Fail(MechFailure::PasswordMismatch))), "{user}/{pass}: {end:?}");
    }
    // The helper survives failures: the pool reuses it.
    assert!(!ntlm.idle_pids().is_empty());

    // GSS-SPNEGO (NTLM inside SPNEGO): DER tokens with NULs, a final token from AF.
    let end = exchange(&spnego, &mut Client::new(HelperProtocol::GssSpnego, USER1.0, USER1.1, DOMAIN), |_| {}).await;
    match &end {
        End::Step(Step::Authenticated { user, final_data: Some(data) }) => {
            assert_eq!(user, &user1);
            assert_eq!(data.first(), Some(&0xa1), "a negTokenResp");
        }
        other => panic!("{other:?}"),
    }
    let end = exchange(&spnego, &mut Client::new(HelperProtocol::GssSpnego, USER1.0, "wrong", DOMAIN), |_| {}).await;
    assert!(matches!(end, End::Step(Step::Fail(MechFailure::PasswordMismatch))), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_helper_fails_its_exchange_and_the_next_succeeds() {
    let wb = Winbindd::start();
    let ntlm = pool(&wb, HelperProtocol::Ntlmssp);
    let user1 = format!("{}@{DOMAIN}", USER1.0);
    let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, USER1.0, USER1.1, DOMAIN), |_| {}).await;
    assert_eq!(authenticated(&end), Some(user1.as_str()));
    let pids = ntlm.idle_pids();
    assert_eq!(pids.len(), 1);
    // Kill the helper after its TT, before the KK.
    let kill = |calls: usize| {
        if calls == 1 {
            for pid in &pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    };
    let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, USER1.0, USER1.1, DOMAIN), kill).await;
    assert!(matches!(end, End::Helper(HelperError::Failed(_))), "{end:?}");
    assert!(ntlm.idle_pids().is_empty(), "the dead helper is not reused");
    let end = exchange(&ntlm, &mut Client::new(HelperProtocol::Ntlmssp, USER1.0, USER1.1, DOMAIN), |_| {}).await;
    assert_eq!(authenticated(&end), Some(user1.as_str()), "{end:?}");
    assert_ne!(ntlm.idle_pids(), pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_winbindd_is_a_temporary_failure_and_recovers() {
    let wb = Winbindd::start();
    let ntlm = pool(&wb, HelperProtocol::Ntlmssp);
    let spnego = pool(&wb, HelperProtocol::GssSpnego);
    let user1 = format!("{}@{DOMAIN}", USER1.0);
    for p in [&ntlm, &spnego] {
        let end = exchange(p, &mut Client::new(p.protocol(), USER1.0, USER1.1, DOMAIN), |_| {}).await;
        assert_eq!(authenticated(&end), Some(user1.as_str()), "{end:?}");
    }
    wb.stop();
    // ntlm_auth answers `BH NT_STATUS_UNSUCCESSFUL …`: a broken-helper (temporary) failure,
    // not a wrong password, for the right and the wrong password alike.
    for p in [&ntlm, &spnego] {
        for pass in [USER1.1, "wrong"] {
            let end = exchange(p, &mut Client::new(p.protocol(), USER1.0, pass, DOMAIN), |_| {}).await;
            assert!(matches!(end, End::Step(Step::Fail(MechFailure::HelperBroken(_) | MechFailure::Unavailable(_)))), "{:?} {pass}: {end:?}", p.protocol());
        }
    }
    wb.restart();
    for p in [&ntlm, &spnego] {
        let end = exchange(p, &mut Client::new(p.protocol(), USER1.0, USER1.1, DOMAIN), |_| {}).await;
        assert_eq!(authenticated(&end), Some(user1.as_str()), "{:?}: {end:?}", p.protocol());
    }
}
