//! Stored passwords: `StoredPassword::parse` with every default scheme, then `verify` for the
//! cheap results (expensive schemes are skipped so the fuzzer stays fast; their parsers still
//! run). Input: the stored field, optionally followed by 0xFF and the password to try (at most
//! 64 bytes); without one a marker password is used, which no error message may contain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::scheme::{Scheme, StoredPassword};

const MARKER: &[u8] = b"fuzzpass-7f3a9c";

fuzz_target!(|data: &[u8]| {
    let (stored, password) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..(i + 1 + 64).min(data.len())]),
        None => (data, MARKER),
    };
    let stored = String::from_utf8_lossy(stored);
    let mut verified: Vec<StoredPassword> = Vec::new();
    for default in Scheme::all() {
        assert_eq!(default.as_str().parse::<Scheme>().ok(), Some(default), "scheme name does not round-trip");
        let Ok(sp) = StoredPassword::parse(&stored, default) else {
            continue;
        };
        if sp.is_expensive() || verified.contains(&sp) {
            continue;
        }
        let _ = sp.decoded();
        if let Err(e) = sp.verify(password, "fuzzuser") {
            if password == MARKER {
                assert!(!e.to_string().contains("7f3a9c"), "an error message holds the password");
            }
        }
        verified.push(sp);
    }
    // A plaintext stored value matches itself and nothing else.
    let plain = StoredPassword::parse(&format!("{{PLAIN}}{stored}"), Scheme::Sha1).expect("{PLAIN} parses");
    assert_eq!(plain.verify(stored.as_bytes(), "u").ok(), Some(true));
    let mut other = stored.as_bytes().to_vec();
    other.push(b'x');
    assert_eq!(plain.verify(&other, "u").ok(), Some(false));
});
