//! SASL base64: decoding arbitrary text never panics, encoding round-trips, and whatever decodes
//! re-encodes to text that decodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::protocol::base64::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = decode(data) {
        assert_eq!(decode(encode(&decoded).as_bytes()).as_deref(), Ok(&decoded[..]));
    }
    let encoded = encode(data);
    assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
    assert_eq!(decode(encoded.as_bytes()).as_deref(), Ok(data));
});
