//! CRAM-MD5 driven through `sasl::lookup` with a fixed `MechContext` (see
//! `common/mech_driver.rs` for the input layout and every check). `LookupCredentials` is
//! answered with the real CRAM-MD5 credential of `fuzzpass` (as a plaintext passdb would give
//! it), and in a second run with that of `notthepass` or a corrupted one: a `Success` in both
//! runs is an authentication bypass.
#![no_main]

#[path = "common/mech_driver.rs"]
mod mech_driver;

use libfuzzer_sys::fuzz_target;
use mech_driver::{plaintext_credential, run_both, wrong_cred, CredentialOnly, PASSWORD, WRONG_PASSWORD};
use saslgate::sasl;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let info = sasl::lookup("cram-md5").expect("CRAM-MD5 is built in");
    let credential = |req: &sasl::CredentialsRequest, right: bool| {
        assert_eq!(req.authzid, None, "CRAM-MD5 has no authzid");
        assert_eq!(req.hash_identity, None);
        let good = plaintext_credential(req, PASSWORD);
        if right {
            good
        } else {
            wrong_cred(flags, &good, plaintext_credential(req, WRONG_PASSWORD))
        }
    };
    let checks = CredentialOnly { final_prefix: None, final_len: 0, success_from_credentials: true };
    run_both(info, flags, rest, &credential, &checks);
});
