//! Client-protocol lines: handshake and command parsing never panic and return well-formed
//! values; a reply field built from arbitrary bytes stays one field of one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::protocol::client::{parse_cpid, parse_version, ClientCommand, InitialResponse, Reply};
use saslgate::protocol::escape::unescape;

fuzz_target!(|data: &[u8]| {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Ok((major, _)) = parse_version(line) {
            assert_eq!(major, 1);
        }
        if let Ok(pid) = parse_cpid(line) {
            assert_ne!(pid, 0);
        }
        match ClientCommand::parse(line) {
            Ok(ClientCommand::Auth(a)) => {
                assert!(line.starts_with(b"AUTH\t"));
                assert_ne!(a.id.0, 0);
                assert!(!a.mechanism.is_empty());
                if let InitialResponse::Base64(b) = &a.resp {
                    assert!(!b.is_empty());
                }
            }
            Ok(ClientCommand::Cont { id, data: cont }) => {
                assert_ne!(id.0, 0);
                assert!(line.ends_with(&cont));
            }
            Ok(ClientCommand::Cancel { .. }) | Err(_) => {}
        }

        // An escaped value can never inject a field or a line into a reply.
        let reply = Reply::new("OK", 1).field("user", line).finish();
        assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
        let body = &reply[..reply.len() - 1];
        let fields: Vec<&[u8]> = body.split(|&b| b == b'\t').collect();
        assert_eq!(fields.len(), 3);
        if line.is_empty() {
            assert_eq!(fields[2], b"user");
        } else {
            let value = fields[2].strip_prefix(b"user=").expect("user= field");
            assert_eq!(unescape(value), line);
        }
    }
});
