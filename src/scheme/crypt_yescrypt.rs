//! libxcrypt's memory-hard crypt formats: yescrypt `$y$`, scrypt `$7$` and gost-yescrypt `$gy$`,
//! all computed by the pure-Rust `yescrypt` crate (scrypt is yescrypt's "classic" mode).
//!
//! - `$y$<params>$<salt>$<hash>`: the salt text is decoded from crypt base64 before use.
//! - `$7$<N:1><r:5><p:5><salt>$<hash>`: the salt text is used as-is.
//! - `$gy$...`: yescrypt as for `$y$`, then
//!   `HMAC_GOST256(HMAC_GOST256(GOST256(password), "$gy$<params>$<salt>"), yescrypt_output)`.
//!
//! The hash is always 32 bytes (43 characters). Memory is capped before anything is allocated.

use hmac::{Hmac, Mac};
use streebog::{Digest as _, Streebog256};
use yescrypt::{Mode, Params};

use super::{crypt_b64, ct_eq, Scheme, SchemeError};

/// Largest memory one verification may use (N * r * 128 bytes plus the p blocks): 1 GiB.
pub const MAX_YESCRYPT_MEMORY: u64 = 1 << 30;
/// Parallelism beyond this is refused (libxcrypt always writes p = 1).
const MAX_P: u32 = 64;
const HASH_LEN: usize = 32;

fn malformed(scheme: Scheme, why: &'static str) -> SchemeError {
    SchemeError::malformed(scheme, why)
}

/// Verifies a `$y$`, `$gy$` or `$7$` string.
pub(super) fn verify(scheme: Scheme, text: &str, password: &[u8]) -> Result<bool, SchemeError> {
    // The setting is everything before the last `$`; the hash follows it.
    let (setting, hash) = text.rsplit_once('$').ok_or(malformed(scheme, "no hash part"))?;
    if hash.len() != 43 || !crypt_b64::is_valid(hash) {
        return Err(malformed(scheme, "hash part is not 43 crypt-base64 characters"));
    }
    let computed = if let Some(rest) = setting.strip_prefix("$7$") {
        scrypt(scheme, rest, password)?
    } else if let Some(rest) = setting.strip_prefix("$y$") {
        yescrypt_setting(scheme, rest, password)?
    } else if let Some(rest) = setting.strip_prefix("$gy$") {
        let y = yescrypt_setting(scheme, rest, password)?;
        gost_finish(password, setting.as_bytes(), &y)
    } else {
        return Err(malformed(scheme, "unknown yescrypt family prefix"));
    };
    Ok(ct_eq(crypt_b64::encode(&computed).as_bytes(), hash.as_bytes()))
}

/// `<params>$<salt>` for `$y$`/`$gy$`.
fn yescrypt_setting(scheme: Scheme, rest: &str, password: &[u8]) -> Result<Vec<u8>, SchemeError> {
    let (params, salt) = rest.split_once('$').ok_or(malformed(scheme, "no yescrypt salt"))?;
    let params: Params = params.parse().map_err(|_| malformed(scheme, "bad yescrypt parameters"))?;
    let salt = crypt_b64::decode(salt).ok_or(malformed(scheme, "bad yescrypt salt"))?;
    run(scheme, password, &salt, &params)
}

/// `<N_log2:1><r:5><p:5><salt>` for `$7$`.
fn scrypt(scheme: Scheme, rest: &str, password: &[u8]) -> Result<Vec<u8>, SchemeError> {
    let bad = || malformed(scheme, "bad scrypt parameters");
    let n_log2 = rest.get(..1).and_then(crypt_b64::decode_u32).ok_or_else(bad)?;
    let r = rest.get(1..6).and_then(crypt_b64::decode_u32).ok_or_else(bad)?;
    let p = rest.get(6..11).and_then(crypt_b64::decode_u32).ok_or_else(bad)?;
    let salt = rest.get(11..).ok_or_else(bad)?;
    if !(1..=63).contains(&n_log2) {
        return Err(bad());
    }
    let params = Params::new(Mode::Classic, 1u64 << n_log2, r, p).map_err(|_| bad())?;
    run(scheme, password, salt.as_bytes(), &params)
}

/// Checks the cost against our caps, then runs the KDF for a 32-byte output.
fn run(scheme: Scheme, password: &[u8], salt: &[u8], params: &Params) -> Result<Vec<u8>, SchemeError> {
    let (n, r, p) = (params.n(), u64::from(params.r()), u64::from(params.p()));
    let memory = n.checked_mul(r).and_then(|nr| nr.checked_add(r.saturating_mul(p))).and_then(|blocks| blocks.checked_mul(128));
    if r == 0 || p == 0 || p > u64::from(MAX_P) || memory.is_none_or(|m| m > MAX_YESCRYPT_MEMORY) {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "yescrypt memory" });
    }
    // yescrypt's `t` multiplies the running time without bound and the crate does not expose
    // it. libxcrypt always writes t = 0, so accept only parameters equal to a t = 0 set.
    let plain = [Mode::Rw, Mode::Worm, Mode::Classic].into_iter().any(|mode| Params::new(mode, n, params.r(), params.p()).is_ok_and(|q| q == *params));
    if !plain {
        return Err(SchemeError::Unsupported { scheme: scheme.as_str(), why: "yescrypt t > 0" });
    }
    let mut out = vec![0u8; HASH_LEN];
    yescrypt::yescrypt(password, salt, params, &mut out).map_err(|_| malformed(scheme, "yescrypt parameters rejected"))?;
    Ok(out)
}

/// The GOST R 34.11-2012 finish of `$gy$` (libxcrypt `crypt-gost-yescrypt.c`).
fn gost_finish(password: &[u8], setting: &[u8], y: &[u8]) -> Vec<u8> {
    let hk = Streebog256::digest(password);
    let interm = hmac_gost(&hk, setting);
    hmac_gost(&interm, y)
}

fn hmac_gost(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    match <Hmac<Streebog256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}
