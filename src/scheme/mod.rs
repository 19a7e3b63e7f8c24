//! Dovecot 2.3 password schemes: `{SCHEME}` prefix parsing, verification and generation.
//!
//! This layer is pure: no I/O, no async, no clock. A passdb hands us the stored password field,
//! [`StoredPassword::parse`] splits off the `{SCHEME[.ENCODING]}` prefix exactly as Dovecot
//! 2.3.19's `password_get_scheme()` does, and [`StoredPassword::verify`] checks a plaintext
//! against it. [`generate`] produces what `doveadm pw -s SCHEME` prints (without the prefix).
//!
//! Invariants:
//! - Untrusted stored data never panics: malformed values give [`SchemeError`].
//! - Errors never contain the password or the stored hash, only the scheme and a static reason.
//! - Secret comparisons are constant-time (`subtle`).
//! - Work factors read from stored strings are capped (see the `MAX_*` constants), so a corrupt
//!   or hostile passdb entry cannot make one verification allocate gigabytes or run for hours.
//!
//! Where Dovecot verifies through libc `crypt()` (CRYPT, DES-CRYPT, SHA256-CRYPT, SHA512-CRYPT)
//! we dispatch on the crypt string ourselves, covering what Debian's libxcrypt accepts: DES,
//! BSDi `_`, `$1$`, `$2a$/$2b$/$2y$`, `$5$`, `$6$`, `$sha1$`, `$y$`, `$7$` and `$gy$`.

mod argon;
mod bcrypt;
mod blowfish_tables;
mod cram;
mod crypt;
mod crypt_b64;
mod crypt_yescrypt;
mod digest;
mod ntlm;
mod otp;
mod pbkdf;
mod plain;
mod scram;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use rand::RngCore as _;
use zeroize::Zeroizing;

pub use argon::{MAX_ARGON2_M_COST_KIB, MAX_ARGON2_T_COST, MAX_KEPT_ARGON2_MEMORY_KIB};
pub use cram::{cram_md5_context, cram_md5_response, CRAM_MD5_CONTEXT_LEN};
pub use crypt::{MAX_BCRYPT_COST, MAX_BSDI_ROUNDS, MAX_SHA_CRYPT_ROUNDS};
pub use crypt_yescrypt::MAX_YESCRYPT_MEMORY;
pub use otp::MAX_OTP_SEQUENCE;
pub use pbkdf::MAX_PBKDF2_ITERATIONS;
pub use scram::{scram_client_key, scram_salted_password, scram_server_key, scram_stored_key, ScramAlgorithm, ScramCredentials};

/// Why a stored password could not be used. None of the messages carries secret material.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemeError {
    /// The `{NAME}` prefix names no scheme we know, or its `.encoding` suffix is unknown.
    /// Dovecot: "Unknown scheme". The name is truncated to 64 characters.
    #[error("unknown password scheme {0:?}")]
    Unknown(String),
    /// The stored value does not have the shape the scheme requires (wrong length, bad
    /// base64/hex, bad crypt string ...).
    #[error("malformed {scheme} password in passdb: {why}")]
    Malformed { scheme: &'static str, why: &'static str },
    /// The stored value asks for more work or memory than this daemon allows.
    #[error("{scheme} password in passdb exceeds the cost limit: {why}")]
    TooExpensive { scheme: &'static str, why: &'static str },
    /// Valid for Dovecot, but this implementation cannot handle it (e.g. `$2x$` bcrypt).
    #[error("{scheme} password cannot be handled: {why}")]
    Unsupported { scheme: &'static str, why: &'static str },
    /// The operating system's random generator failed while generating a salt.
    #[error("random number generator failed")]
    Random,
}

impl SchemeError {
    fn malformed(scheme: Scheme, why: &'static str) -> Self {
        SchemeError::Malformed { scheme: scheme.as_str(), why }
    }
}

/// How the bytes of a stored password are written in the passdb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Stored as-is (crypt strings, plaintext, SCRAM ...).
    None,
    /// Standard base64 with padding (whitespace ignored, like Dovecot).
    Base64,
    /// Hexadecimal, either case.
    Hex,
}

/// Every scheme Dovecot 2.3.19 lists in `doveadm pw -l`, plus NTLM and LANMAN which 2.3.13
/// dropped but old passdbs still contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    Plain,
    Clear,
    Cleartext,
    PlainTrunc,
    Crypt,
    DesCrypt,
    Md5Crypt,
    /// Dovecot's `MD5` is MD5-CRYPT; verification also accepts a bare PLAIN-MD5 digest.
    Md5,
    Sha256Crypt,
    Sha512Crypt,
    BlfCrypt,
    Sha,
    Sha1,
    Sha256,
    Sha512,
    Ssha,
    Ssha256,
    Ssha512,
    Smd5,
    PlainMd4,
    PlainMd5,
    LdapMd5,
    HmacMd5,
    CramMd5,
    DigestMd5,
    ScramSha1,
    ScramSha256,
    Pbkdf2,
    Argon2i,
    Argon2id,
    Otp,
    Ntlm,
    Lanman,
}

/// The static description of one scheme: Dovecot's `struct password_scheme`, minus the
/// function pointers (dispatch is a `match` in [`verify_decoded`] and [`generate`]).
struct Info {
    scheme: Scheme,
    name: &'static str,
    /// Encoding used by `generate` and assumed by `verify` without a suffix.
    encoding: Encoding,
    /// Decoded length for fixed-size digests, 0 = variable. Drives the hex/base64 guess.
    raw_len: usize,
    /// Verification costs more than ~50 µs: run it on the blocking pool.
    expensive: bool,
    /// Schemes with the same `group` share a generate function; Dovecot treats them as aliases.
    group: Scheme,
}

const fn info(scheme: Scheme, name: &'static str, encoding: Encoding, raw_len: usize, expensive: bool, group: Scheme) -> Info {
    Info { scheme, name, encoding, raw_len, expensive, group }
}

// Short names keep the registry table on one line per scheme.
const RAW: Encoding = Encoding::None;
const B64: Encoding = Encoding::Base64;
const HEX: Encoding = Encoding::Hex;
use Scheme as S;

/// The registry, in `doveadm pw -l` order where it matters little; lookups are linear because
/// the table is tiny.
static SCHEMES: &[Info] = &[
    info(S::Plain, "PLAIN", RAW, 0, false, S::Plain),
    info(S::Clear, "CLEAR", RAW, 0, false, S::Plain),
    info(S::Cleartext, "CLEARTEXT", RAW, 0, false, S::Plain),
    info(S::PlainTrunc, "PLAIN-TRUNC", RAW, 0, false, S::Plain),
    info(S::Crypt, "CRYPT", RAW, 0, true, S::BlfCrypt),
    info(S::DesCrypt, "DES-CRYPT", RAW, 0, true, S::DesCrypt),
    info(S::Md5Crypt, "MD5-CRYPT", RAW, 0, true, S::Md5Crypt),
    info(S::Md5, "MD5", RAW, 0, true, S::Md5Crypt),
    info(S::Sha256Crypt, "SHA256-CRYPT", RAW, 0, true, S::Sha256Crypt),
    info(S::Sha512Crypt, "SHA512-CRYPT", RAW, 0, true, S::Sha512Crypt),
    info(S::BlfCrypt, "BLF-CRYPT", RAW, 0, true, S::BlfCrypt),
    info(S::Sha, "SHA", B64, 20, false, S::Sha1),
    info(S::Sha1, "SHA1", B64, 20, false, S::Sha1),
    info(S::Sha256, "SHA256", B64, 32, false, S::Sha256),
    info(S::Sha512, "SHA512", B64, 64, false, S::Sha512),
    info(S::Ssha, "SSHA", B64, 0, false, S::Ssha),
    info(S::Ssha256, "SSHA256", B64, 0, false, S::Ssha256),
    info(S::Ssha512, "SSHA512", B64, 0, false, S::Ssha512),
    info(S::Smd5, "SMD5", B64, 0, false, S::Smd5),
    info(S::PlainMd4, "PLAIN-MD4", HEX, 16, false, S::PlainMd4),
    info(S::PlainMd5, "PLAIN-MD5", HEX, 16, false, S::PlainMd5),
    info(S::LdapMd5, "LDAP-MD5", B64, 16, false, S::PlainMd5),
    info(S::HmacMd5, "HMAC-MD5", HEX, CRAM_MD5_CONTEXT_LEN, false, S::CramMd5),
    info(S::CramMd5, "CRAM-MD5", HEX, CRAM_MD5_CONTEXT_LEN, false, S::CramMd5),
    info(S::DigestMd5, "DIGEST-MD5", HEX, 16, false, S::DigestMd5),
    info(S::ScramSha1, "SCRAM-SHA-1", RAW, 0, true, S::ScramSha1),
    info(S::ScramSha256, "SCRAM-SHA-256", RAW, 0, true, S::ScramSha256),
    info(S::Pbkdf2, "PBKDF2", RAW, 0, true, S::Pbkdf2),
    info(S::Argon2i, "ARGON2I", RAW, 0, true, S::Argon2i),
    info(S::Argon2id, "ARGON2ID", RAW, 0, true, S::Argon2id),
    info(S::Otp, "OTP", RAW, 0, true, S::Otp),
    info(S::Ntlm, "NTLM", HEX, 16, false, S::Ntlm),
    info(S::Lanman, "LANMAN", HEX, 16, false, S::Lanman),
];

impl Scheme {
    fn info(self) -> &'static Info {
        // Every variant has exactly one row; the unit test `registry_is_complete` checks it.
        // Falling back to the first row keeps this total without a panic path.
        SCHEMES.iter().find(|i| i.scheme == self).unwrap_or(&SCHEMES[0])
    }

    /// Dovecot's upper-case name, e.g. `"SHA512-CRYPT"`.
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// Every scheme, in registry order (for `doveadm pw -l`-style listings).
    pub fn all() -> impl Iterator<Item = Scheme> {
        SCHEMES.iter().map(|i| i.scheme)
    }

    /// The encoding `generate` uses and `verify` assumes when there is no suffix.
    pub fn default_encoding(self) -> Encoding {
        self.info().encoding
    }

    /// Whether verification is costly enough (> ~50 µs) to belong on the blocking pool.
    /// For `MD5` this is the MD5-CRYPT answer; [`StoredPassword::is_expensive`] is exact.
    pub fn is_expensive(self) -> bool {
        self.info().expensive
    }

    /// Dovecot's `password_scheme_is_alias()`: two schemes are interchangeable when a mechanism
    /// asks for one and the passdb stores the other (same generate function), e.g. SHA/SHA1,
    /// PLAIN/CLEAR/CLEARTEXT/PLAIN-TRUNC, CRAM-MD5/HMAC-MD5, PLAIN-MD5/LDAP-MD5, MD5/MD5-CRYPT.
    pub fn is_alias_of(self, other: Scheme) -> bool {
        self.info().group == other.info().group
    }

    /// Whether the stored form is the plaintext itself, so any credential can be derived from it.
    pub fn is_plaintext(self) -> bool {
        self.info().group == Scheme::Plain
    }

    /// Whether verification depends on the user name (DIGEST-MD5 binds user and realm).
    pub fn is_user_dependent(self) -> bool {
        self == Scheme::DigestMd5
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = SchemeError;

    /// Case-insensitive scheme name, without an encoding suffix.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SCHEMES.iter().find(|i| i.name.eq_ignore_ascii_case(name)).map(|i| i.scheme).ok_or_else(|| unknown(name))
    }
}

fn unknown(name: &str) -> SchemeError {
    SchemeError::Unknown(name.chars().take(64).collect())
}

/// A password field from a passdb, split into scheme, forced encoding and the stored text.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredPassword {
    scheme: Scheme,
    /// `Some` when the prefix carried `.HEX`, `.B64` or `.BASE64`.
    forced: Option<Encoding>,
    /// Everything after the prefix. For PLAIN this is the password itself: wiped on drop.
    raw: Zeroizing<String>,
}

impl fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredPassword").field("scheme", &self.scheme).field("forced", &self.forced).field("raw", &"<hidden>").finish()
    }
}

/// A password field split in place: [`StoredPassword`] without the copy, for a verification
/// that ends before the field does (the cheap schemes, checked inline).
#[derive(Clone, Copy)]
pub struct StoredRef<'a> {
    scheme: Scheme,
    forced: Option<Encoding>,
    text: &'a str,
}

impl fmt::Debug for StoredRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRef").field("scheme", &self.scheme).field("forced", &self.forced).field("text", &"<hidden>").finish()
    }
}

impl<'a> StoredRef<'a> {
    /// `raw` is the password field from a passdb. No `{...}` prefix -> `default` scheme
    /// (with Dovecot's `$1$` -> MD5-CRYPT auto-detection). `{` without `}` -> no scheme (use
    /// default). Unknown scheme or unknown encoding suffix -> `Err(SchemeError::Unknown(name))`.
    pub fn parse(raw: &'a str, default: Scheme) -> Result<StoredRef<'a>, SchemeError> {
        let new = |scheme, forced, text| StoredRef { scheme, forced, text };
        // Dovecot checks `$1$` first: "$1$<salt>$<hash>[$<ignored>]" is MD5-CRYPT, with anything
        // after a third `$` cut off. Without a `$` after the salt it is not detected.
        if let Some(rest) = raw.strip_prefix("$1$") {
            if let Some(salt_end) = rest.find('$') {
                let after_salt = 3 + salt_end + 1;
                let end = raw.get(after_salt..).and_then(|tail| tail.find('$')).map_or(raw.len(), |i| after_salt + i);
                return Ok(new(Scheme::Md5Crypt, None, raw.get(..end).unwrap_or(raw)));
            }
        }
        let Some(body) = raw.strip_prefix('{') else {
            return Ok(new(default, None, raw));
        };
        let Some(close) = body.find('}') else {
            // `{` without `}`: no scheme. This input once crashed Dovecot.
            return Ok(new(default, None, raw));
        };
        let (label, rest) = (&body[..close], &body[close + 1..]);
        let (name, suffix) = match label.split_once('.') {
            Some((name, suffix)) => (name, Some(suffix)),
            None => (label, None),
        };
        let scheme: Scheme = name.parse().map_err(|_| unknown(label))?;
        let forced = match suffix {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("b64") || s.eq_ignore_ascii_case("base64") => Some(Encoding::Base64),
            Some(s) if s.eq_ignore_ascii_case("hex") => Some(Encoding::Hex),
            // Dovecot: "unknown encoding. treat as invalid scheme."
            Some(_) => return Err(unknown(label)),
        };
        Ok(new(scheme, forced, rest))
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The stored text after the prefix. It may be a plaintext password: never log it.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The owned form, to take to another thread.
    pub fn to_owned(&self) -> StoredPassword {
        StoredPassword::new(self.scheme, self.forced, self.text)
    }

    /// See [`StoredPassword::verify`].
    pub fn verify(&self, password: &[u8], user: &str) -> Result<bool, SchemeError> {
        let raw = decode(self.scheme, self.forced, self.text)?;
        verify_decoded(self.scheme, &raw, password, user)
    }

    /// See [`StoredPassword::is_expensive`].
    pub fn is_expensive(&self) -> bool {
        match self.scheme {
            // `{MD5}` holding a bare digest is one MD5 call; only the `$1$` form is slow.
            Scheme::Md5 => self.text.starts_with("$1$") || self.forced.is_some(),
            s => s.is_expensive(),
        }
    }
}

impl StoredPassword {
    /// `raw` is the password field from a passdb, split as [`StoredRef::parse`] does.
    pub fn parse(raw: &str, default: Scheme) -> Result<StoredPassword, SchemeError> {
        StoredRef::parse(raw, default).map(|r| r.to_owned())
    }

    fn as_ref(&self) -> StoredRef<'_> {
        StoredRef { scheme: self.scheme, forced: self.forced, text: &self.raw }
    }

    /// Wraps an already split value (e.g. `password_noscheme` with a known scheme).
    pub fn new(scheme: Scheme, forced: Option<Encoding>, text: &str) -> StoredPassword {
        StoredPassword { scheme, forced, raw: Zeroizing::new(text.to_owned()) }
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The encoding forced by a `.HEX`/`.B64` suffix, if any.
    pub fn forced_encoding(&self) -> Option<Encoding> {
        self.forced
    }

    /// The stored text after the prefix. It may be a plaintext password: never log it.
    pub fn text(&self) -> &str {
        &self.raw
    }

    /// The stored credential as raw bytes: suffix or default encoding applied, with Dovecot's
    /// hex-or-base64 guess for fixed-length digests, and the length checked. This is what a
    /// challenge-response mechanism (CRAM-MD5, DIGEST-MD5) gets from `lookup_credentials`.
    pub fn decoded(&self) -> Result<Zeroizing<Vec<u8>>, SchemeError> {
        decode(self.scheme, self.forced, &self.raw).map(|c| Zeroizing::new(c.into_owned()))
    }

    /// Verify a plaintext password (bytes, may be non-UTF-8) for `user` (needed by DIGEST-MD5).
    /// `Ok(true)` = match, `Ok(false)` = mismatch, `Err` = malformed stored value. Never panics.
    pub fn verify(&self, password: &[u8], user: &str) -> Result<bool, SchemeError> {
        self.as_ref().verify(password, user)
    }

    /// True when `verify` costs more than ~50 µs: the caller runs it on the blocking pool.
    pub fn is_expensive(&self) -> bool {
        self.as_ref().is_expensive()
    }
}

/// Dovecot's `password_decode()`.
fn decode<'a>(scheme: Scheme, forced: Option<Encoding>, text: &'a str) -> Result<Cow<'a, [u8]>, SchemeError> {
    let info = scheme.info();
    let mut encoding = forced.unwrap_or(info.encoding);
    let mut guessed = false;
    if forced.is_none() && info.encoding != Encoding::None && info.raw_len != 0 {
        // Fixed-length digest with no suffix: hex if exactly twice the raw length, else base64.
        encoding = if text.len() == info.raw_len * 2 { Encoding::Hex } else { Encoding::Base64 };
        guessed = true;
    }
    let bytes: Cow<'a, [u8]> = match encoding {
        Encoding::None => Cow::Borrowed(text.as_bytes()),
        Encoding::Hex => match hex::decode(text) {
            Ok(b) => Cow::Owned(b),
            // Some lengths are valid both ways; Dovecot retries base64 after a failed guess.
            Err(_) if guessed => Cow::Owned(decode_base64(scheme, text)?),
            Err(_) => return Err(SchemeError::malformed(scheme, "not valid hex")),
        },
        Encoding::Base64 => Cow::Owned(decode_base64(scheme, text)?),
    };
    if info.raw_len != 0 && bytes.len() != info.raw_len {
        return Err(SchemeError::malformed(scheme, "decoded length is wrong"));
    }
    Ok(bytes)
}

/// Base64 as Dovecot's decoder takes it: whitespace skipped, padding required, no trailing data.
fn decode_base64(scheme: Scheme, text: &str) -> Result<Vec<u8>, SchemeError> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(text.bytes().filter(|b| !b.is_ascii_whitespace()).collect());
    B64_LENIENT.decode(&*compact).map_err(|_| SchemeError::malformed(scheme, "not valid base64"))
}

/// Standard alphabet, canonical padding required, non-zero trailing bits tolerated (as in C).
const B64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// Verification on the decoded stored bytes: Dovecot's per-scheme `password_verify` functions,
/// or "generate and compare" for the plain digests.
fn verify_decoded(scheme: Scheme, raw: &[u8], password: &[u8], user: &str) -> Result<bool, SchemeError> {
    match scheme {
        S::Plain | S::Clear | S::Cleartext => Ok(plain::verify(raw, password)),
        S::PlainTrunc => plain::verify_trunc(raw, password),
        S::Crypt | S::DesCrypt | S::Sha256Crypt | S::Sha512Crypt => crypt::verify(scheme, raw, password),
        S::Md5Crypt => crypt::verify_md5_crypt(scheme, raw, password),
        S::Md5 => {
            if raw.starts_with(b"$1$") {
                crypt::verify_md5_crypt(scheme, raw, password)
            } else {
                // Dovecot re-decodes the text as PLAIN-MD5 (hex or base64 guess).
                let text = std::str::from_utf8(raw).map_err(|_| md5_neither())?;
                let digest = decode(S::PlainMd5, None, text).map_err(|_| md5_neither())?;
                verify_decoded(S::PlainMd5, &digest, password, user)
            }
        }
        S::BlfCrypt => crypt::verify_bcrypt(scheme, raw, password),
        S::Ssha | S::Ssha256 | S::Ssha512 | S::Smd5 => digest::verify_salted(scheme, raw, password),
        S::ScramSha1 | S::ScramSha256 => scram::verify(scheme, raw, password),
        S::Pbkdf2 => pbkdf::verify(raw, password),
        S::Argon2i | S::Argon2id => argon::verify(scheme, raw, password),
        S::Otp => otp::verify(raw, password),
        // Fixed-length digests: regenerate and compare.
        _ => {
            let expected = raw_digest(scheme, password, user)?;
            Ok(ct_eq(&expected, raw))
        }
    }
}

fn md5_neither() -> SchemeError {
    SchemeError::malformed(Scheme::Md5, "not a valid MD5-CRYPT or PLAIN-MD5 password")
}

/// The unsalted, deterministic digest schemes: the raw bytes `generate` encodes.
fn raw_digest(scheme: Scheme, password: &[u8], user: &str) -> Result<Zeroizing<Vec<u8>>, SchemeError> {
    let out = match scheme {
        S::Sha | S::Sha1 => digest::hash::<sha1::Sha1>(&[password]),
        S::Sha256 => digest::hash::<sha2::Sha256>(&[password]),
        S::Sha512 => digest::hash::<sha2::Sha512>(&[password]),
        S::PlainMd4 => digest::hash::<md4::Md4>(&[password]),
        S::PlainMd5 | S::LdapMd5 => digest::hash::<md5::Md5>(&[password]),
        S::DigestMd5 => digest::digest_md5(user, password),
        S::HmacMd5 | S::CramMd5 => cram_md5_context(password).to_vec(),
        S::Ntlm => ntlm::nt_hash(password),
        S::Lanman => ntlm::lm_hash(password).to_vec(),
        _ => return Err(SchemeError::Unsupported { scheme: scheme.as_str(), why: "not a digest" }),
    };
    Ok(Zeroizing::new(out))
}

/// Constant-time equality of two byte strings (a length difference is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Fills `buf` from the OS random generator.
fn random_bytes(buf: &mut [u8]) -> Result<(), SchemeError> {
    rand::rngs::OsRng.try_fill_bytes(buf).map_err(|_| SchemeError::Random)
}

/// Dovecot's `password_generate_salt()`: `len` characters from `./0-9A-Za-z`.
fn random_salt_chars(len: usize) -> Result<String, SchemeError> {
    const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = vec![0u8; len];
    random_bytes(&mut bytes)?;
    // 256 is a multiple of 64, so the modulo is unbiased.
    Ok(bytes.iter().map(|b| char::from(SALT_CHARS[usize::from(*b) % SALT_CHARS.len()])).collect())
}

/// The DIGEST-MD5 credential `MD5(name:realm:password)` for a name and realm as a client sent
/// them. Unlike `generate(DigestMd5, …, "name@realm")`, nothing is split, so a realm (or name)
/// holding `@` is hashed exactly as the client hashed it.
pub fn digest_md5_credential(name: &str, realm: &str, password: &[u8]) -> Vec<u8> {
    digest::hash::<md5::Md5>(&[name.as_bytes(), b":", realm.as_bytes(), b":", password])
}

/// Returns the value WITHOUT the `{SCHEME}` prefix, in Dovecot's default encoding, exactly as
/// `doveadm pw -s SCHEME [-r ROUNDS]` would (random salt where the scheme has one). `rounds`
/// follows Dovecot: cost for BLF-CRYPT/CRYPT, rounds for SHA*-CRYPT and PBKDF2, ops limit for
/// ARGON2*; ignored elsewhere. `user` matters only for DIGEST-MD5.
pub fn generate(scheme: Scheme, password: &[u8], user: &str, rounds: Option<u32>) -> Result<String, SchemeError> {
    let rounds = rounds.filter(|r| *r != 0);
    let text = match scheme {
        S::Plain | S::Clear | S::Cleartext | S::PlainTrunc => plain::generate(scheme, password)?,
        S::Crypt | S::BlfCrypt => crypt::generate_bcrypt(password, rounds)?,
        S::DesCrypt => crypt::generate_des(scheme, password)?,
        S::Md5Crypt | S::Md5 => crypt::generate_md5_crypt(password)?,
        S::Sha256Crypt | S::Sha512Crypt => crypt::generate_sha_crypt(scheme, password, rounds)?,
        S::Ssha | S::Ssha256 | S::Ssha512 | S::Smd5 => encode(scheme, &digest::generate_salted(scheme, password)?),
        S::ScramSha1 | S::ScramSha256 => scram::generate(scheme, password)?,
        S::Pbkdf2 => pbkdf::generate(password, rounds)?,
        S::Argon2i | S::Argon2id => argon::generate(scheme, password, rounds)?,
        S::Otp => otp::generate(password)?,
        _ => encode(scheme, &raw_digest(scheme, password, user)?),
    };
    Ok(text)
}

/// Encodes raw bytes in the scheme's default encoding (only called for digest schemes).
fn encode(scheme: Scheme, raw: &[u8]) -> String {
    match scheme.default_encoding() {
        Encoding::Hex => hex::encode(raw),
        Encoding::Base64 | Encoding::None => base64::engine::general_purpose::STANDARD.encode(raw),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
