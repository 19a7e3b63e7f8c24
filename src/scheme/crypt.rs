//! The crypt(3) family: CRYPT, DES-CRYPT, MD5-CRYPT, SHA256-CRYPT, SHA512-CRYPT, BLF-CRYPT.
//!
//! Dovecot verifies CRYPT, DES-CRYPT and SHA*-CRYPT with libc `crypt()`, so any format the
//! system library knows works under any of those names. We dispatch on the string's prefix
//! instead and cover what Debian's libxcrypt accepts. MD5-CRYPT and BLF-CRYPT use Dovecot's own
//! code in C; we mirror their rules (salt handling, prefix checks).
//!
//! Every verifier rebuilds the full crypt string and compares it with the stored one in constant
//! time, exactly like `strcmp(crypt(pw, stored), stored)`. Work factors are capped before any
//! hashing starts.

use md5::{Digest as _, Md5};

use base64::Engine as _;

use super::{bcrypt, crypt_b64, crypt_yescrypt, ct_eq, random_bytes, random_salt_chars, Scheme, SchemeError};

/// Highest `rounds=` accepted in `$5$`/`$6$` strings. glibc allows 999,999,999 (minutes of CPU
/// per attempt); real configurations stay far below one million (passlib's default is 656,000).
pub const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;
/// Highest bcrypt cost accepted (2^16 Blowfish key schedules, about 4 s). Dovecot accepts up to
/// 31, which would take days.
pub const MAX_BCRYPT_COST: u32 = 16;
/// Highest BSDi `_` iteration count accepted (the format allows 2^24 - 1).
pub const MAX_BSDI_ROUNDS: u32 = 1_000_000;

/// Dovecot's and libxcrypt's defaults and limits for generation.
const BCRYPT_DEFAULT_COST: u32 = 5;
const BCRYPT_MIN_COST: u32 = 4;
const BCRYPT_MAX_COST: u32 = 31;
const SHA_CRYPT_DEFAULT_ROUNDS: u32 = 5000;
const SHA_CRYPT_MIN_ROUNDS: u32 = 1000;
const SHA_CRYPT_MAX_ROUNDS: u32 = 999_999_999;
const SHA_CRYPT_SALT_MAX: usize = 16;
const MD5_CRYPT_SALT_MAX: usize = 8;

/// Byte order of the MD5-crypt digest before encoding (glibc's `b64_from_24bit` calls).
const MD5_CRYPT_ORDER: [usize; 16] = [12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11];
const SHA256_CRYPT_ORDER: [usize; 32] = [20, 10, 0, 11, 1, 21, 2, 22, 12, 23, 13, 3, 14, 4, 24, 5, 25, 15, 26, 16, 6, 17, 7, 27, 8, 28, 18, 29, 19, 9, 30, 31];
const SHA512_CRYPT_ORDER: [usize; 64] = [
    42, 21, 0, 1, 43, 22, 23, 2, 44, 45, 24, 3, 4, 46, 25, 26, 5, 47, 48, 27, 6, 7, 49, 28, 29, 8, 50, 51, 30, 9, 10, 52, 31, 32, 11, 53, 54, 33, 12, 13, 55,
    34, 35, 14, 56, 57, 36, 15, 16, 58, 37, 38, 17, 59, 60, 39, 18, 19, 61, 40, 41, 20, 62, 63,
];

fn malformed(scheme: Scheme, why: &'static str) -> SchemeError {
    SchemeError::malformed(scheme, why)
}

fn as_text(scheme: Scheme, raw: &[u8]) -> Result<&str, SchemeError> {
    std::str::from_utf8(raw).map_err(|_| malformed(scheme, "crypt string is not ASCII"))
}

/// Dovecot's `crypt_verify()` (CRYPT, DES-CRYPT, SHA256-CRYPT, SHA512-CRYPT): `$2?$` goes to the
/// bcrypt verifier, an empty value never matches, anything else is what libc crypt() accepts.
pub(super) fn verify(scheme: Scheme, raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    if raw.len() > 4 && raw.starts_with(b"$2") && raw.get(3) == Some(&b'$') {
        return verify_bcrypt(scheme, raw, password);
    }
    let text = as_text(scheme, raw)?;
    if text.is_empty() || text.starts_with('!') || text.starts_with('*') {
        // Empty: libc would "match" anything, Dovecot refuses. `!`/`*`: locked shadow accounts,
        // for which crypt() returns a failure token that never equals the input.
        return Ok(false);
    }
    if text.starts_with("$1$") {
        verify_md5_crypt(scheme, raw, password)
    } else if text.starts_with("$5$") || text.starts_with("$6$") {
        verify_sha_crypt(scheme, text, password)
    } else if text.starts_with("$y$") || text.starts_with("$gy$") || text.starts_with("$7$") {
        crypt_yescrypt::verify(scheme, text, password)
    } else if text.starts_with("$sha1$") {
        verify_sha1_crypt(scheme, text, password)
    } else if text.starts_with('_') {
        verify_bsdi(scheme, text, password)
    } else if text.starts_with('$') {
        Err(SchemeError::Unsupported { scheme: scheme.as_str(), why: "unknown crypt algorithm" })
    } else {
        verify_des(scheme, text, password)
    }
}

/// Traditional DES: 2 salt characters and 11 hash characters. Only the first 8 password bytes
/// count, 7 bits each.
fn verify_des(scheme: Scheme, text: &str, password: &[u8]) -> Result<bool, SchemeError> {
    if text.len() != 13 || !crypt_b64::is_valid(text) {
        return Err(malformed(scheme, "not a 13-character DES crypt string"));
    }
    #[allow(deprecated)] // "don't use for new passwords": we only verify old ones.
    let computed = pwhash::unix_crypt::hash_with(text.get(..2).unwrap_or(text), password).map_err(|_| malformed(scheme, "bad DES salt"))?;
    Ok(ct_eq(computed.as_bytes(), text.as_bytes()))
}

/// BSDi extended DES: `_` + 4 characters count + 4 characters salt + 11 characters hash.
fn verify_bsdi(scheme: Scheme, text: &str, password: &[u8]) -> Result<bool, SchemeError> {
    if text.len() != 20 || !crypt_b64::is_valid(text.get(1..).unwrap_or("")) {
        return Err(malformed(scheme, "not a 20-character BSDi crypt string"));
    }
    let rounds = text.get(1..5).and_then(crypt_b64::decode_u32).unwrap_or(0);
    if rounds == 0 {
        return Err(malformed(scheme, "BSDi iteration count is zero"));
    }
    if rounds > MAX_BSDI_ROUNDS {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "BSDi count" });
    }
    #[allow(deprecated)] // "don't use for new passwords": we only verify old ones.
    let computed = pwhash::bsdi_crypt::hash_with(text, password).map_err(|_| malformed(scheme, "bad BSDi crypt string"))?;
    Ok(ct_eq(computed.as_bytes(), text.as_bytes()))
}

/// NetBSD `$sha1$<rounds>$<salt>$<28 chars>`: HMAC-SHA1 iterated `rounds` times.
fn verify_sha1_crypt(scheme: Scheme, text: &str, password: &[u8]) -> Result<bool, SchemeError> {
    let mut fields = text.get(6..).unwrap_or("").split('$');
    let (Some(rounds), Some(salt), Some(hash), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(malformed(scheme, "not a $sha1$rounds$salt$hash string"));
    };
    let rounds: u32 = parse_decimal(rounds).ok_or(malformed(scheme, "bad $sha1$ rounds"))?;
    if rounds == 0 || salt.is_empty() || salt.len() > 64 || hash.len() != 28 {
        return Err(malformed(scheme, "bad $sha1$ field lengths"));
    }
    if !crypt_b64::is_valid(salt) || !crypt_b64::is_valid(hash) {
        return Err(malformed(scheme, "bad $sha1$ characters"));
    }
    if rounds > super::MAX_PBKDF2_ITERATIONS {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "$sha1$ rounds" });
    }
    let computed = pwhash::sha1_crypt::hash_with(text, password).map_err(|_| malformed(scheme, "bad $sha1$ crypt string"))?;
    Ok(ct_eq(computed.as_bytes(), text.as_bytes()))
}

/// Digits only (no sign, no spaces), like the C parsers that stop at the next `$`.
pub(super) fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// MD5-CRYPT (and `{MD5}` with `$1$`): Dovecot's `password_generate_md5_crypt()`. The salt is
/// what follows `$1$`, up to 8 characters, stopping at `$`.
pub(super) fn verify_md5_crypt(scheme: Scheme, raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    if raw.is_empty() {
        return Ok(false);
    }
    let rest = raw.strip_prefix(b"$1$").unwrap_or(raw);
    let salt_len = rest.iter().take(MD5_CRYPT_SALT_MAX).take_while(|b| **b != b'$').count();
    let salt = rest.get(..salt_len).ok_or(malformed(scheme, "bad MD5-CRYPT salt"))?;
    Ok(ct_eq(md5_crypt(password, salt).as_bytes(), raw))
}

/// The MD5-crypt algorithm (Poul-Henning Kamp), returning `$1$<salt>$<22 chars>`.
fn md5_crypt(password: &[u8], salt: &[u8]) -> String {
    let alternate = Md5::new().chain_update(password).chain_update(salt).chain_update(password).finalize();
    let mut ctx = Md5::new().chain_update(password).chain_update(b"$1$").chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(alternate.get(..chunk.len()).unwrap_or_default());
    }
    // Odd as it is, the bits of the length pick a zero byte or the first password byte.
    let mut bits = password.len();
    while bits > 0 {
        ctx.update(if bits & 1 == 1 { &[0u8][..] } else { password.get(..1).unwrap_or_default() });
        bits >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round % 2 == 1 {
            ctx.update(password)
        } else {
            ctx.update(digest)
        }
        if round % 3 != 0 {
            ctx.update(salt)
        }
        if round % 7 != 0 {
            ctx.update(password)
        }
        if round % 2 == 1 {
            ctx.update(digest)
        } else {
            ctx.update(password)
        }
        digest = ctx.finalize();
    }
    format!("$1${}${}", String::from_utf8_lossy(salt), transpose_encode(&digest, &MD5_CRYPT_ORDER))
}

/// Reorders digest bytes as the crypt algorithm prescribes, then encodes them.
fn transpose_encode(digest: &[u8], order: &[usize]) -> String {
    let shuffled: Vec<u8> = order.iter().map(|&i| digest.get(i).copied().unwrap_or(0)).collect();
    crypt_b64::encode(&shuffled)
}

/// `$5$` / `$6$`, optional `rounds=N$`, salt (glibc uses at most 16 characters), hash.
fn verify_sha_crypt(scheme: Scheme, text: &str, password: &[u8]) -> Result<bool, SchemeError> {
    let is_512 = text.starts_with("$6$");
    let mut rest = text.get(3..).unwrap_or("");
    let mut rounds = None;
    if let Some(after) = rest.strip_prefix("rounds=") {
        let (digits, tail) = after.split_once('$').ok_or(malformed(scheme, "rounds= without a following $"))?;
        let n = parse_decimal(digits).ok_or(malformed(scheme, "bad rounds= value"))?;
        // glibc clamps out-of-range values and then writes the clamped number, so such strings
        // can never match; the upper cap is ours.
        if n > MAX_SHA_CRYPT_ROUNDS {
            return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "rounds=" });
        }
        rounds = Some(n.clamp(SHA_CRYPT_MIN_ROUNDS, SHA_CRYPT_MAX_ROUNDS));
        rest = tail;
    }
    let salt_end = rest.find('$').unwrap_or(rest.len());
    let salt = rest.get(..salt_end.min(SHA_CRYPT_SALT_MAX)).unwrap_or(rest);
    if salt_end == rest.len() {
        return Err(malformed(scheme, "SHA-crypt string has no hash part"));
    }
    Ok(ct_eq(sha_crypt(is_512, password, salt, rounds)?.as_bytes(), text.as_bytes()))
}

/// SHA-crypt output string for a salt (at most 16 characters) and optional custom rounds.
fn sha_crypt(is_512: bool, password: &[u8], salt: &str, rounds: Option<u32>) -> Result<String, SchemeError> {
    let scheme = if is_512 { Scheme::Sha512Crypt } else { Scheme::Sha256Crypt };
    let params = sha_crypt::Params::new(rounds.unwrap_or(SHA_CRYPT_DEFAULT_ROUNDS)).map_err(|_| malformed(scheme, "bad rounds"))?;
    let (magic, hash) = if is_512 {
        ("$6$", transpose_encode(&sha_crypt::sha512_crypt(password, salt.as_bytes(), params), &SHA512_CRYPT_ORDER))
    } else {
        ("$5$", transpose_encode(&sha_crypt::sha256_crypt(password, salt.as_bytes(), params), &SHA256_CRYPT_ORDER))
    };
    Ok(match rounds {
        Some(n) => format!("{magic}rounds={n}${salt}${hash}"),
        None => format!("{magic}{salt}${hash}"),
    })
}

/// BLF-CRYPT: Dovecot's `crypt_verify_blowfish()`. `$2a$`, `$2b$` and `$2y$` are the same
/// algorithm for us (Openwall's extra `$2a$` countermeasure only changes results in a rare
/// collision case with 8-bit passwords). `$2x$` works for ASCII passwords only.
pub(super) fn verify_bcrypt(scheme: Scheme, raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    if raw.is_empty() {
        return Ok(false);
    }
    let text = as_text(scheme, raw)?;
    let bytes = text.as_bytes();
    if bytes.len() < 30 || !text.starts_with("$2") || bytes.get(3) != Some(&b'$') {
        return Err(malformed(scheme, "not a bcrypt string"));
    }
    match bytes.get(2) {
        Some(b'a' | b'b' | b'y') => {}
        // `$2x$` reproduces the old sign-extension bug, which only touches bytes >= 0x80;
        // for ASCII passwords it equals `$2a$` (and the crate computes it that way).
        Some(b'x') if password.is_ascii() => {}
        Some(b'x') => return Err(SchemeError::Unsupported { scheme: scheme.as_str(), why: "$2x$ bcrypt with a non-ASCII password" }),
        _ => return Err(malformed(scheme, "unknown bcrypt variant")),
    }
    let cost = text.get(4..6).filter(|_| bytes.get(6) == Some(&b'$')).and_then(parse_decimal).ok_or(malformed(scheme, "bad bcrypt cost"))?;
    if !(BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&cost) {
        return Err(malformed(scheme, "bcrypt cost outside 4..31"));
    }
    if cost > MAX_BCRYPT_COST {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "bcrypt cost" });
    }
    if bytes.len() != 60 || !text.get(7..).is_some_and(is_bcrypt_b64) {
        return Err(malformed(scheme, "bcrypt string is not 60 characters of bcrypt base64"));
    }
    // The `bcrypt` crate's decoding rules (no stray bits in the last character of either part).
    let (mut salt, mut stored) = ([0u8; 16], [0u8; 23]);
    let parts = text.get(7..29).zip(text.get(29..));
    let decoded =
        parts.is_some_and(|(s, h)| matches!(bcrypt::B64.decode_slice(s, &mut salt), Ok(16)) && matches!(bcrypt::B64.decode_slice(h, &mut stored), Ok(23)));
    if !decoded {
        return Err(malformed(scheme, "bad bcrypt salt or hash"));
    }
    Ok(ct_eq(&bcrypt::bcrypt(cost, &salt, password), &stored))
}

/// bcrypt's own base64 alphabet `./A-Za-z0-9`.
fn is_bcrypt_b64(text: &str) -> bool {
    text.bytes().all(|b| b == b'.' || b == b'/' || b.is_ascii_alphanumeric())
}

/// `$2y$CC$...` as Dovecot's `crypt_generate_blowfish()` (cost 5 by default, clamped to 4..31).
pub(super) fn generate_bcrypt(password: &[u8], rounds: Option<u32>) -> Result<String, SchemeError> {
    let cost = rounds.unwrap_or(BCRYPT_DEFAULT_COST).clamp(BCRYPT_MIN_COST, BCRYPT_MAX_COST);
    if cost > MAX_BCRYPT_COST {
        return Err(SchemeError::TooExpensive { scheme: "BLF-CRYPT", why: "bcrypt cost" });
    }
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let hash = bcrypt::bcrypt(cost, &salt, password);
    Ok(format!("$2y${cost:02}${}{}", bcrypt::B64.encode(salt), bcrypt::B64.encode(hash)))
}

/// `$5$`/`$6$` with a 16-character salt; `rounds=` only when not the default 5000.
pub(super) fn generate_sha_crypt(scheme: Scheme, password: &[u8], rounds: Option<u32>) -> Result<String, SchemeError> {
    let rounds = rounds.map(|r| r.clamp(SHA_CRYPT_MIN_ROUNDS, SHA_CRYPT_MAX_ROUNDS)).filter(|r| *r != SHA_CRYPT_DEFAULT_ROUNDS);
    if rounds.is_some_and(|r| r > MAX_SHA_CRYPT_ROUNDS) {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "rounds" });
    }
    let salt = random_salt_chars(SHA_CRYPT_SALT_MAX)?;
    sha_crypt(scheme == Scheme::Sha512Crypt, password, &salt, rounds)
}

/// `$1$` with an 8-character salt.
pub(super) fn generate_md5_crypt(password: &[u8]) -> Result<String, SchemeError> {
    let salt = random_salt_chars(MD5_CRYPT_SALT_MAX)?;
    Ok(md5_crypt(password, salt.as_bytes()))
}

/// Traditional DES with a 2-character salt.
pub(super) fn generate_des(scheme: Scheme, password: &[u8]) -> Result<String, SchemeError> {
    let salt = random_salt_chars(2)?;
    #[allow(deprecated)] // DES-CRYPT is weak; Dovecot still generates it on request.
    pwhash::unix_crypt::hash_with(&salt, password).map_err(|_| SchemeError::Unsupported { scheme: scheme.as_str(), why: "DES crypt failed" })
}
