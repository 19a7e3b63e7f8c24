//! Base64 as Dovecot's auth server decodes SASL data.
//!
//! Whitespace anywhere is skipped, padding is required, and anything after the padding is an
//! error (verified on Dovecot 2.3.19: `YWxpY2U` and `YWxpY2U=YWxp` are refused, `YWxp Y2U=` is
//! accepted). A lone `=` is the SASL convention for an empty response.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The input was not valid base64 under Dovecot's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64")]
pub struct InvalidBase64;

/// Decodes SASL data. `=` alone decodes to nothing.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, InvalidBase64> {
    // Whitespace is dropped first; text without any (the usual case) is decoded as it is.
    if text.iter().any(u8::is_ascii_whitespace) {
        let compact: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        return decode_compact(&compact);
    }
    decode_compact(text)
}

fn decode_compact(compact: &[u8]) -> Result<Vec<u8>, InvalidBase64> {
    if compact == b"=" {
        return Ok(Vec::new());
    }
    // The standard engine requires canonical padding and rejects trailing data after it.
    STANDARD.decode(compact).map_err(|_| InvalidBase64)
}

/// Encodes bytes for a CONT challenge or a `resp=` field.
pub fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_rules() {
        assert_eq!(decode(b"YWxpY2U=").as_deref(), Ok(&b"alice"[..]));
        assert_eq!(decode(b"YWxp Y2U=").as_deref(), Ok(&b"alice"[..]));
        assert_eq!(decode(b"YWxp\r\nY2U=").as_deref(), Ok(&b"alice"[..]));
        assert_eq!(decode(b"=").as_deref(), Ok(&b""[..]));
        assert_eq!(decode(b" =\n").as_deref(), Ok(&b""[..]));
        assert_eq!(decode(b"").as_deref(), Ok(&b""[..]));
        assert_eq!(decode(b"AGFsaWNlAHNlY3JldA==").as_deref(), Ok(&b"\0alice\0secret"[..]));
        for bad in [&b"YWxpY2U"[..], b"YWxpY2U=YWxp", b"==", b"Y", b"YW=x", b"YWxpY2U==", b"*"] {
            assert_eq!(decode(bad), Err(InvalidBase64), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn round_trip() {
        for len in 0..40u8 {
            let data: Vec<u8> = (0..len).collect();
            assert_eq!(decode(encode(&data).as_bytes()), Ok(data));
        }
    }
}
