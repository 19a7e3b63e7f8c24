//! The `./0-9A-Za-z` base64 of crypt(3) strings, little-endian flavour.
//!
//! MD5-crypt, SHA-crypt, yescrypt, scrypt `$7$` and the DES family all write 6-bit groups
//! least-significant first. The older algorithms shuffle digest bytes first; callers do that
//! with a transposition table and then use [`encode`].

pub(super) const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 6-bit value of one character, `None` outside the alphabet.
pub(super) fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).and_then(|p| u32::try_from(p).ok())
}

/// Whether every byte of `text` is in the alphabet.
pub(super) fn is_valid(text: &str) -> bool {
    text.bytes().all(|c| value(c).is_some())
}

/// Encodes groups of up to 3 bytes, each read little-endian and written as 6-bit characters,
/// least significant first: 3 bytes -> 4 characters, 2 -> 3, 1 -> 2.
pub(super) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in group.iter().enumerate() {
            acc |= u32::from(*b) << (8 * i);
        }
        for _ in 0..(group.len() * 8).div_ceil(6) {
            out.push(char::from(ALPHABET[(acc & 0x3f) as usize]));
            acc >>= 6;
        }
    }
    out
}

/// The inverse of [`encode`], strict like yescrypt's `decode64`: a lone trailing character is
/// invalid and the unused high bits of a partial group must be zero.
pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for group in text.as_bytes().chunks(4) {
        if group.len() < 2 {
            return None;
        }
        let mut acc = 0u32;
        for (i, c) in group.iter().enumerate() {
            acc |= value(*c)? << (6 * i);
        }
        let nbytes = group.len() * 6 / 8;
        for _ in 0..nbytes {
            out.push((acc & 0xff) as u8);
            acc >>= 8;
        }
        if acc != 0 {
            return None;
        }
    }
    Some(out)
}

/// A little-endian number written in `text` (e.g. scrypt's 30-bit r and p, BSDi's 24-bit count).
pub(super) fn decode_u32(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 5 {
        return None;
    }
    text.bytes().enumerate().try_fold(0u32, |acc, (i, c)| Some(acc | value(c)? << (6 * i)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_lengths() {
        let data: Vec<u8> = (0u8..=40).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..data.len() {
            let text = encode(&data[..n]);
            assert_eq!(decode(&text).as_deref(), Some(&data[..n]), "length {n}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("a"), None);
        assert_eq!(decode("!!"), None);
        // Two characters carry 12 bits for one byte: the high 4 bits must be zero.
        assert_eq!(decode("zz"), None);
        assert_eq!(decode_u32("/...."), Some(1));
        assert_eq!(decode_u32("......"), None);
    }
}
