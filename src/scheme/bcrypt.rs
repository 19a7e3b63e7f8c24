//! bcrypt's EksBlowfish (Provos and Mazières, 1999), for BLF-CRYPT and `$2?$` CRYPT strings.
//!
//! Our own, because the hot loop is all there is to bcrypt and the generic `blowfish` crate
//! leaves speed on the table: it calls a non-inlined block function 521 times per key
//! expansion and re-derives the key's words from its bytes on every one of the 2^(cost+1)
//! expansions. Here the key and salt are turned into their 18 P-array words once, the block
//! function is inlined into the expansion loops, and every S-box lookup indexes a
//! `[u32; 256]` with a byte, so the compiler drops the bounds checks.
//!
//! The result is the same as the `bcrypt` crate's for every input (a property test checks
//! that): the key is the password truncated to 72 bytes, followed by a NUL if it fits.
//! `$2x$`'s sign-extension bug and Openwall's `$2a$` countermeasure are not modelled; the
//! caller decides which prefixes it accepts.

use zeroize::Zeroize as _;

use super::blowfish_tables::{P as P_INIT, S as S_INIT};

/// The longest key bcrypt uses, in bytes; longer passwords are truncated.
pub(super) const MAX_KEY_LEN: usize = 72;

/// bcrypt's base64: alphabet `./A-Za-z0-9`, no padding, and (as the `bcrypt` crate decodes)
/// no stray bits in the last character.
pub(super) const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(&base64::alphabet::BCRYPT, base64::engine::general_purpose::NO_PAD);

/// "OrpheanBeholderScryDoubt", the plaintext bcrypt encrypts 64 times.
const CTEXT: [u32; 6] = [0x4f72_7068, 0x6561_6e42, 0x6568_6f6c, 0x6465_7253, 0x6372_7944, 0x6f75_6274];

/// A Blowfish key schedule.
struct State {
    p: [u32; 18],
    s: [[u32; 256]; 4],
}

impl State {
    /// Blowfish's round function. The four indexes are bytes, so no bounds check.
    #[inline(always)]
    fn f(&self, x: u32) -> u32 {
        let a = self.s[0][(x >> 24) as usize];
        let b = self.s[1][(x >> 16) as u8 as usize];
        let c = self.s[2][(x >> 8) as u8 as usize];
        let d = self.s[3][x as u8 as usize];
        (a.wrapping_add(b) ^ c).wrapping_add(d)
    }

    /// One 64-bit block, 16 rounds (the loop has constant bounds and is unrolled).
    #[inline(always)]
    fn encrypt(&self, mut l: u32, mut r: u32) -> (u32, u32) {
        for i in 0..8 {
            l ^= self.p[2 * i];
            r ^= self.f(l) ^ self.p[2 * i + 1];
            l ^= self.f(r);
        }
        (r ^ self.p[17], l ^ self.p[16])
    }

    /// Blowfish's key expansion with the P-array XORed with `key` (the key's byte stream as 18
    /// words) and, for EksBlowfish's first expansion, `salt` words XORed into each block
    /// before it is encrypted (`None`: plain expansion from a zero block).
    #[inline(always)]
    fn expand(&mut self, key: &[u32; 18], salt: Option<&[u32; 4]>) {
        for (p, k) in self.p.iter_mut().zip(key) {
            *p ^= k;
        }
        let (mut l, mut r) = (0u32, 0u32);
        let mut n = 0usize;
        for i in 0..9 {
            if let Some(salt) = salt {
                l ^= salt[n & 3];
                r ^= salt[(n + 1) & 3];
                n += 2;
            }
            (l, r) = self.encrypt(l, r);
            self.p[2 * i] = l;
            self.p[2 * i + 1] = r;
        }
        for k in 0..4 {
            for j in 0..128 {
                if let Some(salt) = salt {
                    l ^= salt[n & 3];
                    r ^= salt[(n + 1) & 3];
                    n += 2;
                }
                (l, r) = self.encrypt(l, r);
                self.s[k][2 * j] = l;
                self.s[k][2 * j + 1] = r;
            }
        }
    }

    /// The expensive part, split out so the unsalted expansion is its own inlined copy.
    fn expand_rounds(&mut self, key: &[u32; 18], salt: &[u32; 18], rounds: u64) {
        for _ in 0..rounds {
            self.expand(key, None);
            self.expand(salt, None);
        }
    }
}

/// The bytes `data` cycled to 72 bytes, read as 18 big-endian words (Blowfish's key stream).
fn stream_words(data: &[u8]) -> [u32; 18] {
    let mut words = [0u32; 18];
    let mut bytes = data.iter().copied().cycle();
    for w in &mut words {
        for _ in 0..4 {
            *w = (*w << 8) | u32::from(bytes.next().unwrap_or(0));
        }
    }
    words
}

/// bcrypt's raw output: 23 bytes (the 24th is dropped by every implementation's encoding).
/// `cost` must be at most 31 (the caller caps it far lower); the password is truncated to 72
/// bytes and, if shorter, NUL-terminated.
pub(super) fn bcrypt(cost: u32, salt: &[u8; 16], password: &[u8]) -> [u8; 23] {
    let mut key = [0u8; MAX_KEY_LEN];
    let used = password.len().min(MAX_KEY_LEN);
    key[..used].copy_from_slice(&password[..used]);
    let key_len = (used + 1).min(MAX_KEY_LEN); // the NUL terminator, when it fits
    let mut key_words = stream_words(&key[..key_len]);
    key.zeroize();
    let salt_words = stream_words(salt);
    let salt4 = [salt_words[0], salt_words[1], salt_words[2], salt_words[3]];

    let mut state = State { p: P_INIT, s: S_INIT };
    state.expand(&key_words, Some(&salt4));
    state.expand_rounds(&key_words, &salt_words, 1u64 << cost.min(31));
    key_words.zeroize();

    let mut ctext = CTEXT;
    for pair in ctext.chunks_exact_mut(2) {
        let (mut l, mut r) = (pair[0], pair[1]);
        for _ in 0..64 {
            (l, r) = state.encrypt(l, r);
        }
        pair[0] = l;
        pair[1] = r;
    }
    state.p.zeroize();
    state.s.iter_mut().for_each(|s| s.zeroize());

    let mut out = [0u8; 24];
    for (chunk, word) in out.chunks_exact_mut(4).zip(ctext) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    let mut hash = [0u8; 23];
    hash.copy_from_slice(&out[..23]);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// Raw vectors from jBCrypt's test suite (salt and hash decoded from the `$2a$` strings).
    #[test]
    fn raw_vectors() {
        // $2a$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s.
        let salt = [0x14, 0x4b, 0x3d, 0x69, 0x1a, 0x7b, 0x4e, 0xcf, 0x39, 0xcf, 0x73, 0x5c, 0x7f, 0xa7, 0xa7, 0x9c];
        let want = [0x55, 0x7e, 0x94, 0xf3, 0x4b, 0xf2, 0x86, 0xe8, 0x71, 0x9a, 0x26, 0xbe, 0x94, 0xac, 0x1e, 0x16, 0xd9, 0x5e, 0xf9, 0xf8, 0x19, 0xde, 0xe0];
        assert_eq!(bcrypt(6, &salt, b""), want);
        // $2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe
        let salt = [0xa3, 0x61, 0x2d, 0x8c, 0x9a, 0x37, 0xda, 0xc2, 0xf9, 0x9d, 0x94, 0xda, 0x03, 0xbd, 0x45, 0x21];
        let want = [0xe6, 0xd5, 0x38, 0x31, 0xf8, 0x20, 0x60, 0xdc, 0x08, 0xa2, 0xe8, 0x48, 0x9c, 0xe8, 0x50, 0xce, 0x48, 0xfb, 0xf9, 0x76, 0x97, 0x87, 0x38];
        assert_eq!(bcrypt(6, &salt, b"a"), want);
    }

    fn verifies(hash: &str, password: &[u8]) -> bool {
        let stored = crate::scheme::StoredPassword::parse(&format!("{{BLF-CRYPT}}{hash}"), crate::scheme::Scheme::Plain).unwrap();
        stored.verify(password, "user").unwrap()
    }

    /// crypt_blowfish's (Openwall) and OpenBSD's vectors, each confirmed with libxcrypt's
    /// crypt(): empty password, 72-byte truncation, 8-bit bytes in `$2b$`/`$2y$`, `$2x$` for ASCII.
    const OPENWALL: &[(&str, &[u8])] = &[
        ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", b"U*U"),
        ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK", b"U*U*"),
        ("$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a", b"U*U*U"),
        (
            "$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
            b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored",
        ),
        ("$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy", b""),
        ("$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq", b"\xa3"),
        ("$2a$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq", b"\xa3"),
        ("$2b$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e", b"\xff\xff\xa3"),
        ("$2y$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e", b"\xff\xff\xa3"),
        ("$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", b"U*U"),
        ("$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", b"U*U"),
        ("$2b$06$DCq7YPn5Rq63x1Lad4cll.TV4S6ytwfsfvkgY8jIucDrjc8deX1s.", b""),
        ("$2a$06$m0CrhHm10qJ3lXRY.5zDGO3rS2KdeeWLuGmsfGlMfOxih58VYVfxe", b"a"),
    ];

    /// `doveadm pw -s BLF-CRYPT -r COST -p PASSWORD` (Dovecot 2.3.19), costs 4 to 6.
    const DOVEADM: &[(&str, &[u8])] = &[
        ("$2y$04$h3M7xKzeZ2.ZkjWwqGm7eenD.EeIGq/xBUg9DFnKmfxH8kiqr3ov.", b"correct horse"),
        ("$2y$05$/jwL9M3DdigCH0VcbWTKjuU/KDKY9K7tmi6XE4gltu5G.0K0fu122", b"correct horse"),
        ("$2y$06$t2dAoBdDWi/3IQfhLri7/.HKqwKhVgj3bZkh65veXRluTUsPQ7bM.", b"correct horse"),
        ("$2y$04$UViWWdb.Ild/0tko8e//nuSaG6MHTHegk46F7UVbRsg9Rejf21v2a", b"p"),
        ("$2y$05$nPsSeNKUAeYO1ehMH71rk.u6ppGs7A6Qk.bnVkXhFbJy8Uhg1O01y", b"p"),
        ("$2y$06$nl0VU8WEorPu8OKzsWbqBenZF7LIGvUApLKWydKpLFs9AEzcS6Y.C", b"p"),
        ("$2y$04$wLg1suIgVQWJ3FZZU8OvFuqoqVUMllJ/2dxtYnnc4aLvh.mhwL3jq", "été".as_bytes()),
        ("$2y$05$N5YMtNHyeZW2b5XiS9CZgOnx.I/Nq6/TS/6lpa7tHD.yvGk8r7CY2", "été".as_bytes()),
        ("$2y$06$nOlHF8Z3eGyg.777MuHYdO9Oyj2CbcVZb8EPnCy7.iODubwQpChNK", "été".as_bytes()),
        ("$2y$04$MgooiVbcOP.c/OtaQkgauOhJLq0vp6tWkMIqk6QHJVTCOSdJYEByi", b"0123456789012345678901234567890123456789012345678901234567890123456789XYZ"),
        ("$2y$05$hmB9IXWa4NwZruoUjeO6MOMmWJnsbL7Asry1hMKmJukJJn3/cgXum", b"0123456789012345678901234567890123456789012345678901234567890123456789XYZ"),
        ("$2y$06$Twm2FJWeDxjaMRbcAAUkYecdsqWYWw6NRPmBaDFigJ5PUKW2vEETy", b"0123456789012345678901234567890123456789012345678901234567890123456789XYZ"),
    ];

    #[test]
    fn openwall_and_doveadm_vectors() {
        for (hash, password) in OPENWALL.iter().chain(DOVEADM) {
            assert!(verifies(hash, password), "{hash} does not verify");
            // Any change within the first 72 bytes is a mismatch.
            let mut wrong = password.to_vec();
            match wrong.first_mut() {
                Some(b) => *b ^= 1,
                None => wrong.push(b'x'),
            }
            assert!(!verifies(hash, &wrong), "{hash} verifies a wrong password");
        }
    }

    #[test]
    fn only_the_first_72_bytes_count() {
        let long = [b'k'; 100];
        let salt = [7u8; 16];
        assert_eq!(bcrypt(4, &salt, &long[..72]), bcrypt(4, &salt, &long));
        assert_eq!(bcrypt(4, &salt, &long[..72]), bcrypt(4, &salt, &long[..73]));
        // 71 bytes get the NUL terminator, 72 do not: different keys.
        assert_ne!(bcrypt(4, &salt, &long[..71]), bcrypt(4, &salt, &long[..72]));
        assert!(verifies(OPENWALL[3].0, &OPENWALL[3].1[..72]));
        assert!(!verifies(OPENWALL[3].0, &OPENWALL[3].1[..71]));
    }

    /// The same output as the `bcrypt` crate (which this replaced) for random passwords of any
    /// bytes and length (past 72 too), random salts and costs 4 to 6.
    #[test]
    fn matches_the_bcrypt_crate() {
        use rand::{Rng as _, RngCore as _};
        let mut rng = rand::thread_rng();
        for case in 0..48 {
            let len = rng.gen_range(0..90);
            let mut password = vec![0u8; len];
            rng.fill_bytes(&mut password);
            if case % 3 == 0 {
                password.iter_mut().for_each(|b| *b = b'!' + *b % 90); // printable ASCII
            }
            let mut salt = [0u8; 16];
            rng.fill_bytes(&mut salt);
            let cost = [4, 4, 5, 6][case % 4];
            let theirs = ::bcrypt::hash_with_salt(&password, cost, salt).unwrap();
            let ours = bcrypt(cost, &salt, &password);
            let encoded = theirs.format_for_version(::bcrypt::Version::TwoB);
            assert_eq!(&encoded[29..], B64.encode(ours), "password {password:02x?} cost {cost}");
            assert!(verifies(&encoded, &password));
        }
    }

    #[test]
    fn key_stream_wraps_like_blowfish() {
        // "ab\0" cycled: 61 62 00 61 | 62 00 61 62 | ...
        let w = stream_words(b"ab\0");
        assert_eq!(w[0], 0x6162_0061);
        assert_eq!(w[1], 0x6200_6162);
        assert_eq!(w[2], 0x0061_6200);
        assert_eq!(w[3], 0x6162_0061);
    }
}
