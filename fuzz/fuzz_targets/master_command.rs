//! Master-protocol lines: parsing never panics; a REQUEST cookie is only accepted as 16 bytes
//! when the peer sent exactly those 32 hex digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::protocol::master::{parse_version, MasterCommand};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let _ = parse_version(line);
        if let Ok(MasterCommand::Request { cookie: Some(cookie), .. }) = MasterCommand::parse(line) {
            let sent = line.split(|&b| b == b'\t').nth(4).expect("cookie field");
            assert!(sent.eq_ignore_ascii_case(hex(&cookie).as_bytes()), "cookie not from the line");
        }
    }
});
