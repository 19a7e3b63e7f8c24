//! Dovecot's tab-escaping of field values.
//!
//! The escape byte is `0x01`. NUL, `0x01`, TAB, CR and LF are written as `0x01` followed by `0`,
//! `1`, `t`, `r`, `n`. Decoding maps those back; `0x01` before any other byte yields that byte,
//! and a lone `0x01` at the end of a field is dropped. Dovecot's design doc says LF is `\001l`;
//! its code (and so every real peer) uses `\001n`, which is what we send. We accept `l` too.

const ESC: u8 = 0x01;

/// Escapes one field value for the wire.
pub fn escape(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    escape_into(value, &mut out);
    out
}

/// Appends the escaped form of `value` to `out`.
pub fn escape_into(value: &[u8], out: &mut Vec<u8>) {
    let mut rest = value;
    // Runs without a byte to escape (a whole value, usually) are copied in one go.
    while let Some(at) = rest.iter().position(|&b| matches!(b, 0x00 | ESC | b'\t' | b'\r' | b'\n')) {
        out.extend_from_slice(&rest[..at]);
        let code = match rest[at] {
            0x00 => b'0',
            ESC => b'1',
            b'\t' => b't',
            b'\r' => b'r',
            _ => b'n',
        };
        out.extend_from_slice(&[ESC, code]);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// Decodes one escaped field value.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    // Runs without an escape byte (a whole field, usually) are copied in one go.
    while let Some(at) = memchr::memchr(ESC, rest) {
        out.extend_from_slice(&rest[..at]);
        match rest.get(at + 1) {
            Some(b'0') => out.push(0),
            Some(b'1') => out.push(ESC),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') | Some(b'l') => out.push(b'\n'),
            Some(&other) => out.push(other),
            None => {}
        }
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let escaped = escape(&all);
        assert!(!escaped.iter().any(|&b| b == b'\t' || b == b'\n' || b == b'\r' || b == 0));
        assert_eq!(unescape(&escaped), all);
    }

    #[test]
    fn lf_is_sent_as_n_and_l_is_accepted() {
        assert_eq!(escape(b"a\nb"), b"a\x01nb");
        assert_eq!(unescape(b"a\x01lb"), b"a\nb");
    }

    #[test]
    fn odd_escapes() {
        assert_eq!(unescape(b"a\x01"), b"a");
        assert_eq!(unescape(b"\x01x"), b"x");
        assert_eq!(unescape(b"\x01\x01"), b"\x01");
        // forward_fields double escaping as verified against Dovecot 2.3.19.
        assert_eq!(escape(&escape(b"a\tb\x01c")), b"a\x011tb\x0111c");
    }
}
