//! Shared driver for the challenge-response mechanism targets (`sasl_cram_md5`,
//! `sasl_digest_md5`, `sasl_scram`, `sasl_external_anonymous`). Not a target itself: each
//! target includes it with `#[path = "common/mech_driver.rs"] mod mech_driver;`.
//!
//! Input layout (after a target's own selector byte, if any): byte 0 = flags, the rest = client
//! responses separated by `0xFF` (never part of valid UTF-8, which every one of these
//! mechanisms requires anyway).
//!
//! - bit 0: the first chunk is the initial response (else `start(None)`);
//! - bit 1: before the client response number `flags >> 4`, call `credentials()` unprompted
//!   (it must answer `Fail(UnexpectedInput)`; the exchange may go on, see `run`);
//! - bit 2: in the "wrong" run, the credential is the right one corrupted (bit 3 clear: last
//!   byte flipped; set: last byte dropped) instead of the credential of another password.
//!
//! Every input runs twice, with a fixed `MechContext` (FixedEntropy, so challenges and nonces are
//! the same both times): once answering `LookupCredentials` with the real credential for
//! [`PASSWORD`], once with one for [`WRONG_PASSWORD`] (or a corrupted one). Checked: no panic;
//! challenges under 16 KiB; nothing after a `Fail`/`Success`/terminal step but
//! `Fail(UnexpectedInput)`; at most one lookup, in the mechanism's scheme, for a non-empty
//! authcid; `Success` only after `credentials()` was answered (at the point the mechanism
//! allows); both runs take the same steps until the credential is handed over; and **never a
//! `Success` in both runs**: one client proof cannot prove two different passwords, so that is
//! an authentication bypass. (A `Success` in the wrong run alone is fine: the client proved
//! `notthepass`, and the seeds `seed-ok-other-pass*` do exactly that.)
#![allow(dead_code)]

use std::sync::Arc;

use saslgate::sasl::{self, CredentialsRequest, FixedEntropy, MechContext, MechFailure, MechInfo, Step};
use saslgate::scheme::{Scheme, StoredPassword};

/// The password the "right" credential is derived from.
pub const PASSWORD: &[u8] = b"fuzzpass";
/// The password the "wrong" credential is derived from.
pub const WRONG_PASSWORD: &[u8] = b"notthepass";
/// Largest challenge a mechanism may send (Dovecot's line limit is 16 KiB, base64 grows it).
pub const MAX_CHALLENGE: usize = 16 * 1024;

/// The fixed context: the same as the mechanisms' unit tests, plus one DIGEST-MD5 realm.
/// Seeds in `corpus/<target>/` are real transcripts for exactly this context.
pub fn context() -> MechContext {
    MechContext { hostname: "mx.example".into(), realms: vec!["example.org".into()], entropy: Arc::new(FixedEntropy { seed: 1, time: 1_700_000_000 }) }
}

/// What a passdb holding `password` in plaintext hands the mechanism: the credential in the
/// requested scheme, decoded (this is what the request layer does in `auth::lookup_credentials`).
pub fn plaintext_credential(req: &CredentialsRequest, password: &[u8]) -> Vec<u8> {
    // DIGEST-MD5 hashes the identity as the client sent it (see `CredentialsRequest`), as the
    // request layer does.
    if let Some((name, realm)) = &req.hash_identity {
        return saslgate::scheme::digest_md5_credential(name, realm, password);
    }
    let text = saslgate::scheme::generate(req.scheme, password, &req.authcid, None).expect("generate a cheap scheme");
    StoredPassword::new(req.scheme, None, &text).decoded().expect("decode a generated credential").to_vec()
}

/// One step as recorded for comparing the two runs (`Step` is not `Clone`).
type Recorded = String;

/// How one run went.
pub struct Run {
    /// Every step the mechanism took, in order, as `Debug` text.
    pub steps: Vec<Recorded>,
    /// Index in `steps` of the first step that answered `credentials()`, if any.
    pub answered_at: Option<usize>,
    /// Whether the run ended in `Success`.
    pub success: bool,
}

/// Per-mechanism checks of the non-credential steps.
pub trait Checks {
    /// Called for every step other than Challenge/LookupCredentials/Success/Fail, with the
    /// client data that produced it; returns whether the step ends the exchange. Panics when the
    /// mechanism cannot yield it.
    fn other(&self, info: &MechInfo, step: &Step, last: &[u8]) -> bool {
        let _ = last;
        panic!("{} cannot yield {step:?}", info.name)
    }
    /// Checks a Success's final data and whether `came_from_credentials` is allowed.
    fn success(&self, info: &MechInfo, final_data: &Option<Vec<u8>>, came_from_credentials: bool);
}

/// Drives `info` over `data` (flags byte + chunks). `credential(req, right)` gives the credential.
pub fn run(info: &MechInfo, flags: u8, rest: &[u8], right: bool, credential: &dyn Fn(&CredentialsRequest, bool) -> Vec<u8>, checks: &dyn Checks) -> Run {
    let ctx = context();
    let mut mech = info.start(&ctx);
    let mut chunks = rest.split(|&b| b == 0xFF);
    let initial = if flags & 1 == 1 { Some(chunks.next().unwrap_or_default()) } else { None };
    let mut last: &[u8] = initial.unwrap_or_default();
    let mut step = mech.start(initial);
    let inject_at = if flags & 2 == 2 { Some(usize::from(flags >> 4)) } else { None };

    let mut out = Run { steps: Vec::new(), answered_at: None, success: false };
    let mut finished = false;
    let mut lookups = 0;
    let mut from_credentials = false;
    let mut responses = 0usize;
    loop {
        let mut next = None;
        match &step {
            Step::Challenge(c) => {
                assert!(!finished, "challenge after the end");
                assert!(c.len() < MAX_CHALLENGE, "challenge of {} bytes", c.len());
            }
            Step::LookupCredentials(req) => {
                assert!(!finished, "lookup after the end");
                lookups += 1;
                assert_eq!(lookups, 1, "a second credential lookup");
                assert_eq!(sasl::PassdbNeed::Credentials(req.scheme), info.need, "lookup in another scheme");
                assert!(!req.authcid.is_empty(), "lookup for an empty authcid");
                assert_ne!(req.authzid.as_deref(), Some(""), "empty authzid");
                assert_ne!(req.authzid.as_deref(), Some(req.authcid.as_str()), "authzid equal to authcid");
                let cred = credential(req, right);
                next = Some(mech.credentials(&cred));
            }
            Step::Success { final_data } => {
                assert!(!finished, "success after the end");
                assert!(lookups == 1 && out.answered_at.is_some(), "Success without credentials()");
                checks.success(info, final_data, from_credentials);
                out.success = true;
                finished = true;
            }
            Step::Fail(_) => finished = true,
            other => {
                assert!(!finished, "{other:?} after the end");
                finished |= checks.other(info, other, last);
            }
        }
        out.steps.push(format!("{step:?}"));
        if let Some(s) = next {
            out.answered_at.get_or_insert(out.steps.len());
            from_credentials = true;
            step = s;
            continue;
        }
        from_credentials = false;
        if inject_at == Some(responses) {
            // Out of turn: nothing is waiting for a credential now.
            let s = mech.credentials(b"0123456789abcdef0123456789abcdef");
            assert_eq!(s, Step::Fail(MechFailure::UnexpectedInput), "credentials() accepted out of turn");
            out.steps.push(format!("{s:?}"));
            // Not `finished`: the trait's default `credentials()` (EXTERNAL, ANONYMOUS) fails
            // without ending the exchange, while CRAM-MD5, DIGEST-MD5 and SCRAM end it. Harmless:
            // the request layer drops a request after any Fail and calls `credentials()` only
            // after a LookupCredentials (regressions/sasl_external_anonymous/credentials-out-of-turn).
        }
        let Some(chunk) = chunks.next() else { break };
        responses += 1;
        last = chunk;
        step = mech.step(chunk);
        if finished {
            assert_eq!(step, Step::Fail(MechFailure::UnexpectedInput), "input accepted after the end");
        }
    }
    out
}

/// Runs `data` with the right and the wrong credential and compares the runs.
pub fn run_both(info: &MechInfo, flags: u8, rest: &[u8], credential: &dyn Fn(&CredentialsRequest, bool) -> Vec<u8>, checks: &dyn Checks) {
    let good = run(info, flags, rest, true, credential, checks);
    if good.answered_at.is_none() {
        // No credential was handed over: the second run could only repeat the first.
        return;
    }
    let bad = run(info, flags, rest, false, credential, checks);
    // One client proof cannot prove two passwords: Success with both credentials is a bypass.
    assert!(
        !(good.success && bad.success),
        "{}: Success with the credential of {:?} AND with {}",
        info.name,
        String::from_utf8_lossy(PASSWORD),
        if flags & 4 == 0 { "that of another password" } else { "a corrupted one" }
    );
    let n = good.answered_at.unwrap();
    assert_eq!(bad.answered_at, Some(n), "the runs diverged before the credential");
    assert_eq!(good.steps[..n], bad.steps[..n], "not deterministic before the credential");
}

/// The wrong credential: for [`WRONG_PASSWORD`], or (flags bit 2) the right one corrupted.
pub fn wrong_cred(flags: u8, right_cred: &[u8], wrong: Vec<u8>) -> Vec<u8> {
    if flags & 4 == 0 {
        return wrong;
    }
    let mut c = right_cred.to_vec();
    match flags & 0x0C {
        // bit 3 clear: flip a bit in the last byte; set: drop the last byte.
        0x04 => {
            if let Some(b) = c.last_mut() {
                *b ^= 1;
            }
        }
        _ => {
            c.pop();
        }
    }
    c
}

/// Checks for a mechanism whose only terminal step besides Fail is Success.
pub struct CredentialOnly {
    /// The prefix final data must have (`None`: no final data).
    pub final_prefix: Option<&'static [u8]>,
    /// Length of the final data after the prefix.
    pub final_len: usize,
    /// Whether Success must be the direct answer to `credentials()` (CRAM-MD5, DIGEST-MD5) or
    /// to the client's next response (SCRAM).
    pub success_from_credentials: bool,
}

impl Checks for CredentialOnly {
    fn success(&self, info: &MechInfo, final_data: &Option<Vec<u8>>, came_from_credentials: bool) {
        assert_eq!(came_from_credentials, self.success_from_credentials, "{}: Success at the wrong point", info.name);
        match (self.final_prefix, final_data) {
            (None, None) => {}
            (Some(prefix), Some(data)) => {
                assert!(data.starts_with(prefix), "final data {data:?}");
                assert_eq!(data.len() - prefix.len(), self.final_len, "final data {data:?}");
            }
            (p, d) => panic!("final data {d:?}, expected prefix {p:?}"),
        }
    }
}

/// Scheme of a credential mechanism.
pub fn scheme_of(info: &MechInfo) -> Scheme {
    match info.need {
        sasl::PassdbNeed::Credentials(s) => s,
        other => panic!("{} needs {other:?}", info.name),
    }
}
