//! NTLM and LANMAN stored hashes, which Dovecot removed in 2.3.13 together with the NTLM and
//! RPA mechanisms. Old passdbs still hold them, so we can verify them.
//!
//! - NTLM (NT hash): MD4 of the password in UTF-16LE.
//! - LANMAN (LM hash): the password upper-cased and converted to Latin-1 (characters outside
//!   it become `?`, as in the recorded vectors), cut or zero-padded to 14 bytes, each 7-byte
//!   half used as a DES key to encrypt `KGS!@#$%`.

use des::cipher::{BlockEncrypt as _, KeyInit as _};

use super::digest::hash;

/// MD4(UTF-16LE(password)). Non-UTF-8 input is taken as Latin-1, byte by byte.
pub(super) fn nt_hash(password: &[u8]) -> Vec<u8> {
    let units: Vec<u16> = match std::str::from_utf8(password) {
        Ok(text) => text.encode_utf16().collect(),
        Err(_) => password.iter().map(|b| u16::from(*b)).collect(),
    };
    let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
    hash::<md4::Md4>(&[&bytes])
}

/// The LM hash of a password.
pub(super) fn lm_hash(password: &[u8]) -> [u8; 16] {
    let mut key14 = [0u8; 14];
    let oem = to_upper_oem(password);
    for (k, b) in key14.iter_mut().zip(oem.iter()) {
        *k = *b;
    }
    let mut out = [0u8; 16];
    for (half, key7) in out.chunks_exact_mut(8).zip(key14.chunks_exact(7)) {
        let key = expand_des_key(key7);
        let mut block = des::cipher::generic_array::GenericArray::clone_from_slice(b"KGS!@#$%");
        if let Ok(cipher) = des::Des::new_from_slice(&key) {
            cipher.encrypt_block(&mut block);
        }
        half.copy_from_slice(&block);
    }
    out
}

/// Spreads 56 key bits over 8 bytes, 7 bits each in the high bits (parity bit unused).
fn expand_des_key(key7: &[u8]) -> [u8; 8] {
    let mut bits = 0u64;
    for b in key7 {
        bits = (bits << 8) | u64::from(*b);
    }
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = (((bits >> (49 - 7 * i)) & 0x7f) as u8) << 1;
    }
    key
}

/// Upper-cases (Unicode rules) and converts to Latin-1; characters beyond Latin-1 become `?`.
/// Non-UTF-8 input is taken as Latin-1 already and upper-cased as ASCII.
fn to_upper_oem(password: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(password) else {
        return password.to_ascii_uppercase();
    };
    text.chars().flat_map(char::to_uppercase).map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}
