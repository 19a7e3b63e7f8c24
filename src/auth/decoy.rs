//! Decoy credentials: SCRAM must not tell whether a user exists (RFC 5802 §5.1).
//!
//! SCRAM looks the credential up after client-first and answers with the user's salt and
//! iteration count, so a FAIL right there would say "no such user" (and a CONT "this user
//! exists"). When the passdb chain finds no usable SCRAM credential and the failure is an
//! ordinary one (unknown user, no SCRAM credential, password-mismatch-like results; not a
//! temporary failure or a disabled account, which Dovecot reports with a code anyway), the
//! request layer hands the mechanism a decoy instead: the same iteration count as a real
//! credential (4096, what `saslgate pw` and Dovecot generate), a salt derived from the user name
//! with a per-process random key (the same name always gets the same salt while the process
//! lives, different names get different salts), and fresh random keys no proof can match. The
//! request is marked to fail whatever the client sends, and its log line keeps the real reason.
//!
//! CRAM-MD5 and DIGEST-MD5 need no decoy: they send their challenge before the user name is
//! known and look the credential up only with the client's last message, so an unknown user
//! fails at the same step, with the same FAIL line, as a wrong password (see their modules).

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::scheme::{Scheme, ScramAlgorithm, ScramCredentials};
use crate::secret::Secret;

/// The iteration count of a decoy: the default of real credentials.
pub const SCRAM_DECOY_ITERATIONS: u32 = 4096;
/// The salt length of a decoy: that of generated credentials.
const SCRAM_DECOY_SALT_LEN: usize = 16;

/// The per-process key of the salt derivation, drawn on first use.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// The decoy salt of `user` for `algorithm`: HMAC-SHA256 over both with the process key.
pub fn scram_salt(algorithm: ScramAlgorithm, user: &str) -> [u8; SCRAM_DECOY_SALT_LEN] {
    let mut salt = [0u8; SCRAM_DECOY_SALT_LEN];
    // `new_from_slice` accepts any key length for HMAC; 32 bytes never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key()) else { return salt };
    mac.update(b"saslgate scram decoy salt\0");
    mac.update(algorithm.scheme().as_str().as_bytes());
    mac.update(b"\0");
    mac.update(user.as_bytes());
    let digest = mac.finalize().into_bytes();
    salt.copy_from_slice(&digest[..SCRAM_DECOY_SALT_LEN]);
    salt
}

/// A decoy credential in `scheme` for `user`, for the schemes whose mechanism would otherwise
/// show the user's existence (SCRAM); `None` for the others.
pub fn credential(scheme: Scheme, user: &str) -> Option<Secret> {
    let algorithm = ScramAlgorithm::from_scheme(scheme)?;
    let len = algorithm.digest_len();
    let random = |n: usize| (0..n).map(|_| rand::random::<u8>()).collect::<Vec<u8>>();
    let decoy = ScramCredentials {
        algorithm,
        iterations: SCRAM_DECOY_ITERATIONS,
        salt: scram_salt(algorithm, user).to_vec(),
        stored_key: random(len),
        server_key: random(len),
    };
    Some(Secret::new(decoy.to_stored_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_are_stable_per_name_and_differ_between_names() {
        let a = scram_salt(ScramAlgorithm::Sha256, "nobody@example.org");
        assert_eq!(a, scram_salt(ScramAlgorithm::Sha256, "nobody@example.org"));
        assert_ne!(a, scram_salt(ScramAlgorithm::Sha256, "nobody2@example.org"));
        assert_ne!(a, scram_salt(ScramAlgorithm::Sha1, "nobody@example.org"));
    }

    #[test]
    fn decoys_parse_as_real_credentials_only_for_scram() {
        for algorithm in [ScramAlgorithm::Sha1, ScramAlgorithm::Sha256] {
            let secret = credential(algorithm.scheme(), "ghost").unwrap();
            let parsed = ScramCredentials::parse(algorithm, std::str::from_utf8(secret.expose()).unwrap()).unwrap();
            assert_eq!(parsed.iterations, 4096);
            assert_eq!(parsed.salt, scram_salt(algorithm, "ghost"));
            // Fresh keys every time: nothing about a decoy is worth attacking.
            let again = credential(algorithm.scheme(), "ghost").unwrap();
            assert_ne!(secret.expose(), again.expose());
        }
        assert!(credential(Scheme::CramMd5, "ghost").is_none());
        assert!(credential(Scheme::DigestMd5, "ghost").is_none());
    }
}
