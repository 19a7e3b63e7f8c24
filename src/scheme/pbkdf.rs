//! PBKDF2: Dovecot's `$1$<salt>$<rounds>$<40 hex>` (PBKDF2-HMAC-SHA1, 20-byte key).
//!
//! The salt is used as text, exactly as stored. Not compatible with passlib's `$pbkdf2$`.

use super::{ct_eq, random_salt_chars, Scheme, SchemeError};

/// Largest iteration count accepted for PBKDF2, SCRAM and `$sha1$` (OWASP's 2023 advice for
/// PBKDF2-HMAC-SHA1 is 1.3 million; ten million HMAC pairs take a few seconds).
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

const DEFAULT_ROUNDS: u32 = 5000;
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 20;

fn malformed(why: &'static str) -> SchemeError {
    SchemeError::malformed(Scheme::Pbkdf2, why)
}

pub(super) fn verify(raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    let text = std::str::from_utf8(raw).map_err(|_| malformed("not ASCII"))?;
    let rest = text.strip_prefix("$1$").ok_or(malformed("missing $1$ prefix"))?;
    let mut fields = rest.split('$');
    let (Some(salt), Some(rounds), Some(key_hex), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(malformed("not $1$salt$rounds$hash"));
    };
    let rounds = super::crypt::parse_decimal(rounds).ok_or(malformed("bad rounds"))?;
    let mut expected = [0u8; KEY_LEN];
    hex::decode_to_slice(key_hex, &mut expected).map_err(|_| malformed("hash is not 40 hex digits"))?;
    if rounds == 0 {
        // Dovecot's pkcs5_pbkdf() fails and leaves a zero key, which then never matches.
        return Err(malformed("zero rounds"));
    }
    if rounds > MAX_PBKDF2_ITERATIONS {
        return Err(SchemeError::TooExpensive { scheme: Scheme::Pbkdf2.as_str(), why: "rounds" });
    }
    Ok(ct_eq(&derive(password, salt, rounds), &expected))
}

fn derive(password: &[u8], salt: &str, rounds: u32) -> [u8; KEY_LEN] {
    pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, KEY_LEN>(password, salt.as_bytes(), rounds)
}

/// `$1$<16 salt chars>$<rounds>$<hex>`, 5000 rounds by default.
pub(super) fn generate(password: &[u8], rounds: Option<u32>) -> Result<String, SchemeError> {
    let rounds = rounds.unwrap_or(DEFAULT_ROUNDS);
    if rounds > MAX_PBKDF2_ITERATIONS {
        return Err(SchemeError::TooExpensive { scheme: Scheme::Pbkdf2.as_str(), why: "rounds" });
    }
    let salt = random_salt_chars(SALT_LEN)?;
    Ok(format!("$1${salt}${rounds}${}", hex::encode(derive(password, &salt, rounds))))
}
