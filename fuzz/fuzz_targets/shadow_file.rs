//! shadow file parsing: never panics on any bytes or user name, and what it finds is that
//! user's entry (the name it asked for, a password field without ':' or line feed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::passdb::shadow::{find, ShadowState};

fuzz_target!(|data: &[u8]| {
    // The first line names the user; the rest is the file.
    let (user, file) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"root"[..], data),
    };
    let Ok(user) = std::str::from_utf8(user) else { return };
    if let Some(entry) = find(file, user) {
        assert_eq!(entry.name, user);
        assert!(!user.is_empty());
        assert!(!entry.password.contains(&b':') && !entry.password.contains(&b'\n'));
        for now in [0, 1_700_000_000, i64::MAX] {
            if let ShadowState::Active(hash) = entry.state(now) {
                assert!(!hash.is_empty() && !hash.starts_with(['!', '*']));
            }
        }
    }
});
