//! DIGEST-MD5 driven through `sasl::lookup` with a fixed `MechContext` (one realm,
//! `example.org`; see `common/mech_driver.rs` for the input layout and every check).
//! `LookupCredentials` is answered with the real credential `MD5(name:realm:fuzzpass)` over the
//! request's `hash_identity` (as the request layer derives it from a plaintext passdb), and in a
//! second run with that of `notthepass` or a corrupted one: a `Success` in both runs is an
//! authentication bypass. A Success carries `rspauth=` and 32 hex digits.
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
    let info = sasl::lookup("DIGEST-MD5").expect("DIGEST-MD5 is built in");
    let credential = |req: &sasl::CredentialsRequest, right: bool| {
        let (name, realm) = req.hash_identity.as_ref().expect("DIGEST-MD5 sends its hash identity");
        assert!(!name.is_empty());
        // The lookup name is name@realm when a realm was given and the name has no '@'.
        if !realm.is_empty() && !name.contains('@') {
            assert_eq!(req.authcid, format!("{name}@{realm}"));
        } else {
            assert_eq!(&req.authcid, name);
        }
        let good = plaintext_credential(req, PASSWORD);
        assert_eq!(good.len(), 16);
        if right {
            good
        } else {
            wrong_cred(flags, &good, plaintext_credential(req, WRONG_PASSWORD))
        }
    };
    let checks = CredentialOnly { final_prefix: Some(b"rspauth="), final_len: 32, success_from_credentials: true };
    run_both(info, flags, rest, &credential, &checks);
});
