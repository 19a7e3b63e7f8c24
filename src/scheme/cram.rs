//! CRAM-MD5 / HMAC-MD5 stored credentials: the HMAC-MD5 inner and outer states.
//!
//! HMAC-MD5(key, m) = MD5(key^opad ‖ MD5(key^ipad ‖ m)). Both halves start with one fixed
//! 64-byte block that depends only on the password, so Dovecot stores the MD5 chaining state
//! after that block: 4 little-endian words of the outer state, then 4 of the inner state
//! (`hmac_md5_get_cram_context()`). The CRAM-MD5 mechanism finishes the HMAC from those states
//! with [`cram_md5_response`] without ever seeing the password.
//!
//! The RustCrypto MD5 type does not expose its state, hence the small block function here.

use md5::{Digest as _, Md5};

/// Length of the stored context: two MD5 states of 16 bytes.
pub const CRAM_MD5_CONTEXT_LEN: usize = 32;

const BLOCK: usize = 64;
const IV: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// Dovecot's CRAM-MD5 credential for a password: outer state ‖ inner state.
pub fn cram_md5_context(password: &[u8]) -> [u8; CRAM_MD5_CONTEXT_LEN] {
    // Keys longer than a block are hashed first, as HMAC requires.
    let mut key = [0u8; BLOCK];
    if password.len() > BLOCK {
        key[..16].copy_from_slice(&Md5::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let pad = |byte: u8| {
        let mut block = [0u8; BLOCK];
        for (b, k) in block.iter_mut().zip(key.iter()) {
            *b = k ^ byte;
        }
        let mut state = IV;
        compress(&mut state, &block);
        state
    };
    let (outer, inner) = (pad(0x5c), pad(0x36));
    let mut out = [0u8; CRAM_MD5_CONTEXT_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(outer.iter().chain(inner.iter())) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// HMAC-MD5(password, challenge) computed from a stored context: what a CRAM-MD5 client must
/// send (as lowercase hex) after the user name.
pub fn cram_md5_response(context: &[u8; CRAM_MD5_CONTEXT_LEN], challenge: &[u8]) -> [u8; 16] {
    let mut words = [0u32; 8];
    for (w, chunk) in words.iter_mut().zip(context.chunks_exact(4)) {
        *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let outer = [words[0], words[1], words[2], words[3]];
    let inner = [words[4], words[5], words[6], words[7]];
    let inner_digest = finish(inner, challenge);
    finish(outer, &inner_digest)
}

/// MD5 of (one already-processed block ‖ `tail`), continuing from `state`.
fn finish(mut state: [u32; 4], tail: &[u8]) -> [u8; 16] {
    let total_bits = ((BLOCK + tail.len()) as u64).wrapping_mul(8);
    let mut data = tail.to_vec();
    data.push(0x80);
    while data.len() % BLOCK != BLOCK - 8 {
        data.push(0);
    }
    data.extend_from_slice(&total_bits.to_le_bytes());
    for block in data.chunks_exact(BLOCK) {
        compress(&mut state, block);
    }
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// Per-round shift amounts and sine-derived constants of RFC 1321.
const SHIFTS: [u32; 16] = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122,
    0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6,
    0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60,
    0xbebfbc70, 0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
    0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// The MD5 compression function on one 64-byte block (`block` is always exactly 64 bytes).
fn compress(state: &mut [u32; 4], block: &[u8]) {
    let mut m = [0u32; 16];
    for (w, chunk) in m.iter_mut().zip(block.chunks_exact(4)) {
        *w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g) = match i / 16 {
            0 => ((b & c) | (!b & d), i),
            1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
            2 => (b ^ c ^ d, (3 * i + 5) % 16),
            _ => (c ^ (b | !d), (7 * i) % 16),
        };
        let rotated = a.wrapping_add(f).wrapping_add(K[i]).wrapping_add(m[g]).rotate_left(SHIFTS[(i / 16) * 4 + i % 4]);
        a = d;
        d = c;
        c = b;
        b = b.wrapping_add(rotated);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn finish_matches_md5() {
        // MD5(64 zero bytes ‖ "abc") through compress + finish equals the library's answer.
        let mut state = IV;
        compress(&mut state, &[0u8; 64]);
        let mut data = vec![0u8; 64];
        data.extend_from_slice(b"abc");
        assert_eq!(finish(state, b"abc").as_slice(), Md5::digest(&data).as_slice());
    }

    #[test]
    fn response_matches_hmac() {
        use hmac::{Hmac, Mac};
        for key in [&b"tanstaaftanstaaf"[..], b"", &[0x41; 100]] {
            let challenge = b"<1896.697170952@postoffice.example.net>";
            let mut mac = Hmac::<Md5>::new_from_slice(key).expect("any key length");
            mac.update(challenge);
            let expected = mac.finalize().into_bytes();
            let got = cram_md5_response(&cram_md5_context(key), challenge);
            assert_eq!(got.as_slice(), expected.as_slice());
        }
    }
}
