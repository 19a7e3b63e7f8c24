//! SCRAM-SHA-1 and SCRAM-SHA-256 driven through `sasl::lookup` with a fixed `MechContext`.
//! Byte 0 picks the mechanism (bit 0 set: SCRAM-SHA-256); the rest is the layout of
//! `common/mech_driver.rs` (flags byte, then client messages split on 0xFF), with its checks.
//!
//! `LookupCredentials` is answered with the real stored credential of `fuzzpass`
//! (`iter,salt,StoredKey,ServerKey`, 4096 iterations), and in a second run with that of
//! `notthepass` (same salt and iterations, so the server-first message is the same) or a
//! corrupted one: a `Success` in both runs is an authentication bypass. The salt is fixed
//! (`saslgate-fuzzsalt`), not random as `scheme::generate` makes it, so the committed seeds
//! carry valid client proofs; the key derivation (~0.5 ms) runs once per process.
#![no_main]

#[path = "common/mech_driver.rs"]
mod mech_driver;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mech_driver::{run_both, wrong_cred, CredentialOnly, PASSWORD, WRONG_PASSWORD};
use saslgate::sasl;
use saslgate::scheme::{ScramAlgorithm, ScramCredentials, StoredPassword};

/// The fixed salt of both credentials (17 bytes; any length is allowed).
const SALT: &[u8] = b"saslgate-fuzzsalt";

/// Decoded stored credential (what `credentials()` takes) for `password`.
fn stored(algorithm: ScramAlgorithm, password: &[u8]) -> Vec<u8> {
    let text = ScramCredentials::from_password(algorithm, password, SALT, 4096).to_stored_string();
    let decoded = StoredPassword::new(algorithm.scheme(), None, &text).decoded().expect("decode a SCRAM credential");
    decoded.to_vec()
}

/// (right, wrong) credentials per algorithm, derived once.
fn credentials(algorithm: ScramAlgorithm) -> &'static (Vec<u8>, Vec<u8>) {
    static SHA1: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    static SHA256: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    let cell = match algorithm {
        ScramAlgorithm::Sha1 => &SHA1,
        _ => &SHA256,
    };
    cell.get_or_init(|| (stored(algorithm, PASSWORD), stored(algorithm, WRONG_PASSWORD)))
}

fuzz_target!(|data: &[u8]| {
    let [select, flags, rest @ ..] = data else {
        return;
    };
    let (name, algorithm, sig_b64_len) =
        if select & 1 == 0 { ("SCRAM-SHA-1", ScramAlgorithm::Sha1, 28) } else { ("SCRAM-SHA-256", ScramAlgorithm::Sha256, 44) };
    let info = sasl::lookup(name).expect("SCRAM is built in");
    let (good, bad) = credentials(algorithm);
    let credential = |req: &sasl::CredentialsRequest, right: bool| {
        assert_eq!(req.hash_identity, None);
        if right {
            good.clone()
        } else {
            wrong_cred(*flags, good, bad.clone())
        }
    };
    // Success answers client-final, the response after the credential's server-first.
    let checks = CredentialOnly { final_prefix: Some(b"v="), final_len: sig_b64_len, success_from_credentials: false };
    run_both(info, *flags, rest, &credential, &checks);
});
