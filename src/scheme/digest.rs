//! Plain digest schemes: SHA/SHA1/SHA256/SHA512, PLAIN-MD4/MD5, LDAP-MD5, DIGEST-MD5, and the
//! salted `H(password ‖ salt) ‖ salt` family SSHA/SSHA256/SSHA512/SMD5.
//!
//! One generic helper (`hash`) serves every hash function; the salted schemes differ only in
//! the row `salted_hash` picks.

use sha2::Digest;

use super::{ct_eq, random_bytes, Scheme, SchemeError};

/// Dovecot generates 4-byte salts for SSHA*/SMD5; any length is accepted on verify.
const GENERATED_SALT_LEN: usize = 4;

/// `H(part1 ‖ part2 ‖ ...)`.
pub(super) fn hash<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
    let mut h = D::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().to_vec()
}

/// DIGEST-MD5 stored credential: `MD5(user ":" realm ":" password)`, where a user
/// `name@realm` is split at the LAST `@` (so `user@domain@realm` keeps `user@domain`);
/// without `@` the realm is empty.
pub(super) fn digest_md5(user: &str, password: &[u8]) -> Vec<u8> {
    let (name, realm) = user.rsplit_once('@').unwrap_or((user, ""));
    hash::<md5::Md5>(&[name.as_bytes(), b":", realm.as_bytes(), b":", password])
}

/// A hash over concatenated parts, e.g. `hash::<Sha1>`.
type HashFn = fn(&[&[u8]]) -> Vec<u8>;

/// The hash behind a salted scheme: its output length and the hash function.
fn salted_hash(scheme: Scheme) -> (usize, HashFn) {
    match scheme {
        Scheme::Ssha => (20, hash::<sha1::Sha1>),
        Scheme::Ssha256 => (32, hash::<sha2::Sha256>),
        Scheme::Ssha512 => (64, hash::<sha2::Sha512>),
        _ => (16, hash::<md5::Md5>),
    }
}

/// SSHA*/SMD5 verification: the stored bytes are the digest followed by a non-empty salt.
pub(super) fn verify_salted(scheme: Scheme, raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    let (len, hash_fn) = salted_hash(scheme);
    // Dovecot: "SSHA password is too short" unless at least one salt byte follows.
    if raw.len() <= len {
        return Err(SchemeError::malformed(scheme, "too short for digest and salt"));
    }
    let (expected, salt) = raw.split_at(len);
    Ok(ct_eq(&hash_fn(&[password, salt]), expected))
}

/// Raw `H(password ‖ salt) ‖ salt` with a fresh 4-byte salt; the caller base64-encodes it.
pub(super) fn generate_salted(scheme: Scheme, password: &[u8]) -> Result<Vec<u8>, SchemeError> {
    let (_, hash_fn) = salted_hash(scheme);
    let mut salt = [0u8; GENERATED_SALT_LEN];
    random_bytes(&mut salt)?;
    let mut out = hash_fn(&[password, &salt]);
    out.extend_from_slice(&salt);
    Ok(out)
}
