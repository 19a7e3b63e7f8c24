//! ARGON2I and ARGON2ID: libsodium's `$argon2i$`/`$argon2id$` PHC strings, via the `argon2` crate.
//!
//! Like `crypto_pwhash_str_verify()`, either scheme name verifies either variant. Memory and
//! time costs are read from the stored string, so both are capped before hashing.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, CustomizedPasswordHasher as _, Params, PasswordVerifier as _};

use super::{random_bytes, Scheme, SchemeError};

/// Largest `m=` accepted, in KiB: 1 GiB, libsodium's ARGON2ID "sensitive" level.
pub const MAX_ARGON2_M_COST_KIB: u32 = 1 << 20;
/// Largest `t=` accepted (libsodium's levels go up to 8).
pub const MAX_ARGON2_T_COST: u32 = 32;
/// Largest `p=` accepted (libsodium writes 1).
const MAX_ARGON2_P_COST: u32 = 16;

const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

fn malformed(scheme: Scheme, why: &'static str) -> SchemeError {
    SchemeError::malformed(scheme, why)
}

pub(super) fn verify(scheme: Scheme, raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed(scheme, "not ASCII"))?;
    let hash = PasswordHash::new(text).map_err(|_| malformed(scheme, "not an argon2 PHC string"))?;
    match hash.algorithm.as_str() {
        "argon2i" | "argon2id" => {}
        _ => return Err(malformed(scheme, "not argon2i or argon2id")),
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(malformed(scheme, "salt or hash missing"));
    }
    let params = Params::try_from(&hash).map_err(|_| malformed(scheme, "bad argon2 parameters"))?;
    if params.m_cost() > MAX_ARGON2_M_COST_KIB || params.t_cost() > MAX_ARGON2_T_COST || params.p_cost() > MAX_ARGON2_P_COST {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "argon2 m/t/p" });
    }
    match Argon2::default().verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(_) => Err(malformed(scheme, "argon2 parameters rejected")),
    }
}

/// Dovecot's `generate_argon2i/id()`: `rounds` is libsodium's ops limit and selects the memory
/// limit (interactive / moderate / sensitive).
pub(super) fn generate(scheme: Scheme, password: &[u8], rounds: Option<u32>) -> Result<String, SchemeError> {
    const MIB: u32 = 1024; // m is in KiB
    let (algorithm, t_cost, m_cost) = if scheme == Scheme::Argon2i {
        let ops = rounds.unwrap_or(4);
        let mem = match ops {
            8.. => 512 * MIB,
            6.. => 128 * MIB,
            _ => 32 * MIB,
        };
        (Algorithm::Argon2i, ops, mem)
    } else {
        let ops = rounds.unwrap_or(2);
        let mem = match ops {
            4.. => 1024 * MIB,
            3.. => 256 * MIB,
            _ => 64 * MIB,
        };
        // Dovecot: "Bug in sodium-1.0.13, it expects rounds to be 3".
        (Algorithm::Argon2id, ops.max(3), mem)
    };
    if t_cost > MAX_ARGON2_T_COST {
        return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "argon2 t" });
    }
    let params = Params::new(m_cost, t_cost, 1, Some(HASH_LEN)).map_err(|_| SchemeError::Unsupported { scheme: scheme.as_str(), why: "argon2 params" })?;
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt)?;
    let hash = Argon2::default()
        .hash_password_customized(password, &salt, Some(algorithm.as_str()), None, params)
        .map_err(|_| SchemeError::Unsupported { scheme: scheme.as_str(), why: "argon2 failed" })?;
    Ok(hash.to_string())
}
