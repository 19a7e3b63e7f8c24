//! OTP (RFC 2289 one-time passwords): stored as `<algo> <seq> <seed> <16 hex>`.
//!
//! Verifying a plaintext (the pass phrase) recomputes the state: hash `seed ‖ passphrase`, fold
//! it to 64 bits, then hash the result `seq` more times. Algorithms: md4, md5, sha1. The seed is
//! at most 16 alphanumerics and is lower-cased, as in Dovecot's `otp_parse_dbentry()`.

use sha2::Digest;

use super::{ct_eq, random_bytes, Scheme, SchemeError};

/// Largest sequence number accepted: each step is one hash call.
pub const MAX_OTP_SEQUENCE: u32 = 100_000;

const MAX_SEED_LEN: usize = 16;
const DEFAULT_SEQUENCE: u32 = 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Algo {
    Md4,
    Md5,
    Sha1,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Md4 => "md4",
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
        }
    }

    /// One OTP step: hash, then fold to 64 bits.
    fn step(self, parts: &[&[u8]]) -> [u8; 8] {
        let mut out = [0u8; 8];
        match self {
            Algo::Md4 => fold_halves(&super::digest::hash::<md4::Md4>(parts), &mut out),
            Algo::Md5 => fold_halves(&super::digest::hash::<md5::Md5>(parts), &mut out),
            Algo::Sha1 => {
                // RFC 2289's SHA-1 fold XORs words 0^2^4 and 1^3 and writes them byte-swapped.
                let d = sha1::Sha1::new().chain_update(parts.concat()).finalize();
                for j in 0..4 {
                    let x = |k: usize| d.get(k).copied().unwrap_or(0);
                    out[3 - j] = x(j) ^ x(8 + j) ^ x(16 + j);
                    out[7 - j] = x(4 + j) ^ x(12 + j);
                }
            }
        }
        out
    }
}

/// MD4/MD5 fold: XOR the two 64-bit halves.
fn fold_halves(digest: &[u8], out: &mut [u8; 8]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = digest.get(i).copied().unwrap_or(0) ^ digest.get(i + 8).copied().unwrap_or(0);
    }
}

/// `otp_hash()`: the state after `seq` steps.
fn otp_hash(algo: Algo, seed: &str, passphrase: &[u8], seq: u32) -> [u8; 8] {
    let mut result = algo.step(&[seed.as_bytes(), passphrase]);
    for _ in 0..seq {
        result = algo.step(&[&result]);
    }
    result
}

fn malformed(why: &'static str) -> SchemeError {
    SchemeError::malformed(Scheme::Otp, why)
}

/// Parses the stored entry, recomputes it from `password` and compares case-insensitively
/// (Dovecot compares the printed entries with `strcasecmp`).
pub(super) fn verify(raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed("not ASCII"))?;
    let mut fields = text.split(' ');
    let (Some(algo), Some(seq), Some(seed), Some(hash)) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(malformed("not <algo> <seq> <seed> <hash>"));
    };
    // Dovecot lets LWS appear inside the hex; stored entries never have it, keep it strict.
    if fields.next().is_some() {
        return Err(malformed("trailing data"));
    }
    let algo = match algo {
        "md4" => Algo::Md4,
        "md5" => Algo::Md5,
        "sha1" => Algo::Sha1,
        _ => return Err(malformed("unknown OTP algorithm")),
    };
    let seq = super::crypt::parse_decimal(seq).ok_or(malformed("bad sequence number"))?;
    if seq > MAX_OTP_SEQUENCE {
        return Err(SchemeError::TooExpensive { scheme: Scheme::Otp.as_str(), why: "sequence" });
    }
    if seed.is_empty() || seed.len() > MAX_SEED_LEN || !seed.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed("bad seed"));
    }
    let mut expected = [0u8; 8];
    hex::decode_to_slice(hash, &mut expected).map_err(|_| malformed("hash is not 16 hex digits"))?;
    let seed = seed.to_ascii_lowercase();
    Ok(ct_eq(&otp_hash(algo, &seed, password, seq), &expected))
}

/// A fresh sha1 state: sequence 1024 and a 16-hex-digit random seed, as `doveadm pw -s OTP`.
pub(super) fn generate(password: &[u8]) -> Result<String, SchemeError> {
    let mut seed = [0u8; MAX_SEED_LEN / 2];
    random_bytes(&mut seed)?;
    let seed = hex::encode(seed);
    let algo = Algo::Sha1;
    let hash = otp_hash(algo, &seed, password, DEFAULT_SEQUENCE);
    Ok(format!("{} {DEFAULT_SEQUENCE} {seed} {}", algo.name(), hex::encode(hash)))
}
