//! ARGON2I and ARGON2ID: libsodium's `$argon2i$`/`$argon2id$` PHC strings, via the `argon2` crate.
//!
//! Like `crypto_pwhash_str_verify()`, either scheme name verifies either variant. Memory and
//! time costs are read from the stored string, so both are capped before hashing.
//!
//! Verification reuses one block buffer per thread (the hashing pool's threads, in the
//! daemon) instead of mapping, faulting in and unmapping tens of MiB per login. A buffer larger
//! than [`MAX_KEPT_ARGON2_MEMORY_KIB`] is freed after its job, so a rare expensive hash does
//! not pin its memory to a thread forever.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, CustomizedPasswordHasher as _, Params, Version};
use std::cell::RefCell;

use super::{random_bytes, Scheme, SchemeError};

/// Largest `m=` accepted, in KiB: 1 GiB, libsodium's ARGON2ID "sensitive" level.
pub const MAX_ARGON2_M_COST_KIB: u32 = 1 << 20;
/// Largest `t=` accepted (libsodium's levels go up to 8).
pub const MAX_ARGON2_T_COST: u32 = 32;
/// Largest `p=` accepted (libsodium writes 1).
const MAX_ARGON2_P_COST: u32 = 16;

/// Largest block buffer a thread keeps between verifications, in KiB (one block is 1 KiB):
/// 128 MiB covers libsodium's interactive ARGON2ID (64 MiB) and moderate ARGON2I (128 MiB).
pub const MAX_KEPT_ARGON2_MEMORY_KIB: usize = 128 * 1024;

thread_local! {
    /// This thread's reusable Argon2 memory. Not cleared between uses: argon2 writes every
    /// block before it reads it.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

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
    let rejected = || malformed(scheme, "argon2 parameters rejected");
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(|_| rejected())?;
    let version = hash.version.map(Version::try_from).transpose().map_err(|_| rejected())?.unwrap_or_default();
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(malformed(scheme, "salt or hash missing"));
    };
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = zeroize::Zeroizing::new(vec![0u8; expected.len()]);
    with_blocks(blocks, |memory| argon.hash_password_into_with_memory(password, salt, &mut out, memory))
        .map_err(|_| SchemeError::TooExpensive { scheme: scheme.as_str(), why: "argon2 memory could not be allocated" })?
        .map_err(|_| rejected())?;
    Ok(super::ct_eq(&out, expected.as_ref()))
}

/// Runs `f` with this thread's block buffer, grown to at least `count` blocks (an allocation
/// failure is an error, not an abort), and frees the buffer afterwards if it is larger than
/// [`MAX_KEPT_ARGON2_MEMORY_KIB`].
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> Result<T, std::collections::TryReserveError> {
    BLOCKS.with(|cell| {
        // Not re-entrant: a nested call (none exists) would get a fresh buffer instead.
        let mut taken = cell.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default();
        if taken.len() < count {
            taken.try_reserve_exact(count - taken.len())?;
            taken.resize(count, Block::default());
        }
        let value = f(&mut taken[..count]);
        if taken.len() <= MAX_KEPT_ARGON2_MEMORY_KIB {
            if let Ok(mut slot) = cell.try_borrow_mut() {
                *slot = taken;
            }
        }
        Ok(value)
    })
}

/// The size of this thread's kept Argon2 buffer, in blocks (KiB).
#[cfg(test)]
pub(super) fn kept_blocks() -> usize {
    BLOCKS.with(|cell| cell.borrow().len())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn phc(algorithm: Algorithm, m_kib: u32, password: &[u8]) -> String {
        let params = Params::new(m_kib, 1, 1, Some(HASH_LEN)).unwrap();
        Argon2::default().hash_password_customized(password, b"saltsaltsaltsalt", Some(algorithm.as_str()), None, params).unwrap().to_string()
    }

    #[test]
    fn a_thread_reuses_its_blocks_and_frees_oversized_ones() {
        std::thread::spawn(|| {
            assert_eq!(kept_blocks(), 0);
            let small = phc(Algorithm::Argon2id, 8 * 1024, b"secret");
            assert_eq!(verify(Scheme::Argon2id, small.as_bytes(), b"secret"), Ok(true));
            assert_eq!(kept_blocks(), 8 * 1024, "the buffer is kept for the next job");
            assert_eq!(verify(Scheme::Argon2id, small.as_bytes(), b"secreT"), Ok(false));
            // A smaller job after a larger one uses the start of the kept buffer.
            let smaller = phc(Algorithm::Argon2i, 1024, b"other");
            assert_eq!(verify(Scheme::Argon2i, smaller.as_bytes(), b"other"), Ok(true));
            assert_eq!(verify(Scheme::Argon2i, smaller.as_bytes(), b"secret"), Ok(false));
            assert_eq!(kept_blocks(), 8 * 1024);
            // Reused (dirty) memory gives the same answers as fresh memory.
            assert_eq!(verify(Scheme::Argon2id, small.as_bytes(), b"secret"), Ok(true));
            // Just over the limit: verified, then freed.
            let big = phc(Algorithm::Argon2id, MAX_KEPT_ARGON2_MEMORY_KIB as u32 + 8, b"big");
            assert_eq!(verify(Scheme::Argon2id, big.as_bytes(), b"big"), Ok(true));
            assert_eq!(kept_blocks(), 0, "an oversized buffer is not kept");
            assert_eq!(verify(Scheme::Argon2id, small.as_bytes(), b"secret"), Ok(true));
            assert_eq!(kept_blocks(), 8 * 1024);
        })
        .join()
        .unwrap();
    }

    /// libsodium's (Dovecot's) strings, from `doveadm pw -s ARGON2ID/ARGON2I -p password`, verify
    /// the same on one thread whatever ran on its buffer before.
    #[test]
    fn doveadm_hashes_verify_on_a_reused_buffer() {
        let id = "$argon2id$v=19$m=65536,t=3,p=1$Bov6ol+az0AAPEO5gZmPNQ$6bSo1dvbDKOjyR0GEAQ0Y1cvvEqDZVJ3JidBsf3HTAA";
        let i = "$argon2i$v=19$m=32768,t=4,p=1$ppmvx9ICqJZX9ynnOoTbSQ$cMxLy9wJiI26g2R/HLI+ZlSQQiR4mp/jdMzdAuapqRc";
        std::thread::spawn(move || {
            for _ in 0..2 {
                assert_eq!(verify(Scheme::Argon2id, id.as_bytes(), b"password"), Ok(true));
                assert_eq!(verify(Scheme::Argon2i, i.as_bytes(), b"password"), Ok(true));
                assert_eq!(verify(Scheme::Argon2i, i.as_bytes(), b"passwore"), Ok(false));
                assert_eq!(verify(Scheme::Argon2id, id.as_bytes(), b"Password"), Ok(false));
            }
            assert_eq!(kept_blocks(), 65536);
        })
        .join()
        .unwrap();
    }
}
