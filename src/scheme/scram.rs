//! SCRAM-SHA-1 and SCRAM-SHA-256 stored keys (RFC 5802 / RFC 7677), shared with the SASL layer.
//!
//! Dovecot stores `<iterations>,<base64 salt>,<base64 StoredKey>,<base64 ServerKey>`. The
//! mechanism needs those values as they are; verifying a plaintext (PLAIN/LOGIN against a SCRAM
//! passdb) recomputes StoredKey from the password.
//!
//! Key derivation, for the mechanism to reuse:
//! - `SaltedPassword = Hi(password, salt, i)` = PBKDF2-HMAC-H with the digest length:
//!   [`scram_salted_password`]
//! - `ClientKey = HMAC(SaltedPassword, "Client Key")`: [`scram_client_key`]
//! - `StoredKey = H(ClientKey)`: [`scram_stored_key`]
//! - `ServerKey = HMAC(SaltedPassword, "Server Key")`: [`scram_server_key`]

use base64::Engine as _;
use hmac::{Mac as _, SimpleHmac};
use sha2::digest::core_api::BlockSizeUser;
use sha2::Digest;
use zeroize::Zeroizing;

use super::{ct_eq, random_bytes, Scheme, SchemeError, MAX_PBKDF2_ITERATIONS};

/// Dovecot's SCRAM_MIN_ITERATE_COUNT (and the default for generated credentials).
const MIN_ITERATIONS: u32 = 4096;
const GENERATED_SALT_LEN: usize = 16;

/// The hash function of a SCRAM credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramAlgorithm {
    Sha1,
    Sha256,
}

impl ScramAlgorithm {
    /// Length of H's output, which is also the length of every key.
    pub fn digest_len(self) -> usize {
        match self {
            ScramAlgorithm::Sha1 => 20,
            ScramAlgorithm::Sha256 => 32,
        }
    }

    /// The matching stored-password scheme.
    pub fn scheme(self) -> Scheme {
        match self {
            ScramAlgorithm::Sha1 => Scheme::ScramSha1,
            ScramAlgorithm::Sha256 => Scheme::ScramSha256,
        }
    }

    /// The algorithm of a SCRAM scheme, `None` for other schemes.
    pub fn from_scheme(scheme: Scheme) -> Option<Self> {
        match scheme {
            Scheme::ScramSha1 => Some(ScramAlgorithm::Sha1),
            Scheme::ScramSha256 => Some(ScramAlgorithm::Sha256),
            _ => None,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            ScramAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    /// `HMAC-H(key, message)`.
    pub fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            ScramAlgorithm::Sha1 => hmac_with::<sha1::Sha1>(key, message),
            ScramAlgorithm::Sha256 => hmac_with::<sha2::Sha256>(key, message),
        }
    }
}

fn hmac_with<D: Digest + BlockSizeUser>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match <SimpleHmac<D> as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// `Hi(password, salt, iterations)`: PBKDF2-HMAC-H with dkLen = digest length. The caller must
/// bound `iterations` (see [`MAX_PBKDF2_ITERATIONS`]). Dovecot does not SASLprep the password.
pub fn scram_salted_password(algorithm: ScramAlgorithm, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; algorithm.digest_len()]);
    match algorithm {
        ScramAlgorithm::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out),
        ScramAlgorithm::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out),
    }
    out
}

/// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
pub fn scram_client_key(algorithm: ScramAlgorithm, salted_password: &[u8]) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(algorithm.hmac(salted_password, b"Client Key"))
}

/// `StoredKey = H(ClientKey)`.
pub fn scram_stored_key(algorithm: ScramAlgorithm, client_key: &[u8]) -> Vec<u8> {
    algorithm.hash(client_key)
}

/// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
pub fn scram_server_key(algorithm: ScramAlgorithm, salted_password: &[u8]) -> Vec<u8> {
    algorithm.hmac(salted_password, b"Server Key")
}

/// A parsed SCRAM credential, what the SCRAM mechanism needs from the passdb.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub algorithm: ScramAlgorithm,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials").field("algorithm", &self.algorithm).field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Parses Dovecot's `iter,salt,StoredKey,ServerKey` (its `scram_scheme_parse()` rules:
    /// exactly four fields, at least 4096 iterations, keys of the digest length). We also
    /// refuse more than [`MAX_PBKDF2_ITERATIONS`].
    pub fn parse(algorithm: ScramAlgorithm, text: &str) -> Result<Self, SchemeError> {
        let scheme = algorithm.scheme();
        let bad = |why| SchemeError::malformed(scheme, why);
        let mut fields = text.split(',');
        let (Some(iter), Some(salt), Some(stored), Some(server), None) = (fields.next(), fields.next(), fields.next(), fields.next(), fields.next()) else {
            return Err(bad("not iter,salt,StoredKey,ServerKey"));
        };
        let iterations = super::crypt::parse_decimal(iter).ok_or(bad("bad iteration count"))?;
        if iterations < MIN_ITERATIONS {
            return Err(bad("iteration count below 4096"));
        }
        if iterations > MAX_PBKDF2_ITERATIONS {
            return Err(SchemeError::TooExpensive { scheme: scheme.as_str(), why: "iterations" });
        }
        let salt = super::decode_base64(scheme, salt)?;
        let stored_key = super::decode_base64(scheme, stored)?;
        let server_key = super::decode_base64(scheme, server)?;
        let len = algorithm.digest_len();
        if stored_key.len() != len || server_key.len() != len {
            return Err(bad("StoredKey or ServerKey has the wrong length"));
        }
        Ok(ScramCredentials { algorithm, iterations, salt, stored_key, server_key })
    }

    /// Derives the credential from a plaintext (for a plaintext passdb, or to generate one).
    pub fn from_password(algorithm: ScramAlgorithm, password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let salted = scram_salted_password(algorithm, password, salt, iterations);
        let client_key = scram_client_key(algorithm, &salted);
        ScramCredentials {
            algorithm,
            iterations,
            salt: salt.to_vec(),
            stored_key: scram_stored_key(algorithm, &client_key),
            server_key: scram_server_key(algorithm, &salted),
        }
    }

    /// Whether `password` derives this credential's StoredKey (constant-time).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let salted = scram_salted_password(self.algorithm, password, &self.salt, self.iterations);
        let client_key = scram_client_key(self.algorithm, &salted);
        ct_eq(&scram_stored_key(self.algorithm, &client_key), &self.stored_key)
    }

    /// The salt in base64, as sent in the server-first message.
    pub fn salt_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.salt)
    }

    /// Dovecot's stored form (without the `{SCRAM-SHA-*}` prefix).
    pub fn to_stored_string(&self) -> String {
        let b64 = &base64::engine::general_purpose::STANDARD;
        format!("{},{},{},{}", self.iterations, self.salt_base64(), b64.encode(&self.stored_key), b64.encode(&self.server_key))
    }
}

pub(super) fn verify(scheme: Scheme, raw: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    let algorithm = ScramAlgorithm::from_scheme(scheme).ok_or(SchemeError::malformed(scheme, "not a SCRAM scheme"))?;
    let text = std::str::from_utf8(raw).map_err(|_| SchemeError::malformed(scheme, "not ASCII"))?;
    Ok(ScramCredentials::parse(algorithm, text)?.verify_password(password))
}

/// 4096 iterations and a 16-byte random salt; Dovecot 2.3.19 ignores `-r` for SCRAM.
pub(super) fn generate(scheme: Scheme, password: &[u8]) -> Result<String, SchemeError> {
    let algorithm = ScramAlgorithm::from_scheme(scheme).ok_or(SchemeError::malformed(scheme, "not a SCRAM scheme"))?;
    let mut salt = [0u8; GENERATED_SALT_LEN];
    random_bytes(&mut salt)?;
    Ok(ScramCredentials::from_password(algorithm, password, &salt, MIN_ITERATIONS).to_stored_string())
}
