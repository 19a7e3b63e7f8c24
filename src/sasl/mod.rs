//! SASL mechanisms as pure state machines.
//!
//! A mechanism sees only bytes (already base64-decoded) and answers with a [`Step`]: send a
//! challenge, ask the request layer to check a password or to fetch a stored credential in a
//! scheme, or finish. It never talks to a passdb; what it needs from one is declared in its
//! [`MechInfo`], so start-up can refuse a mechanism that no configured passdb can serve.
//! Mechanism states are named `Expect…` and are consumed on every transition; input in a state
//! that does not expect it is a typed failure, never a panic. Randomness and time come from a
//! [`MechContext`], so tests and fuzzers can fix them.

mod anonymous;
mod cram_md5;
mod digest_md5;
mod external;
mod login;
mod plain;
mod scram;
pub mod winbind;

use std::fmt;
use std::sync::Arc;

use crate::scheme::Scheme;
use crate::secret::Secret;

pub use anonymous::Anonymous;
pub use cram_md5::CramMd5;
pub use digest_md5::DigestMd5;
pub use external::External;
pub use login::Login;
pub use plain::Plain;
pub use scram::Scram;
pub use winbind::Winbind;

/// Where a mechanism gets random bytes and the time.
pub trait Entropy: Send + Sync + fmt::Debug {
    /// Fills `buf` with unpredictable bytes.
    fn fill(&self, buf: &mut [u8]);
    /// Seconds since the Unix epoch.
    fn unix_time(&self) -> u64;
}

/// The operating system's random generator and clock.
#[derive(Debug, Default)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, buf);
    }

    fn unix_time(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// Fixed "randomness" for tests and fuzzing: bytes counting up from a seed, and a fixed time.
#[derive(Debug)]
pub struct FixedEntropy {
    /// The first byte; later bytes count up from it.
    pub seed: u8,
    /// The time reported.
    pub time: u64,
}

impl Entropy for FixedEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.seed.wrapping_add(i as u8);
        }
    }

    fn unix_time(&self) -> u64 {
        self.time
    }
}

/// What every mechanism instance may use.
#[derive(Debug, Clone)]
pub struct MechContext {
    /// Host name for challenges (CRAM-MD5's `<…@host>`).
    pub hostname: String,
    /// Realms offered by DIGEST-MD5.
    pub realms: Vec<String>,
    /// Randomness and time.
    pub entropy: Arc<dyn Entropy>,
}

impl Default for MechContext {
    fn default() -> Self {
        MechContext { hostname: "localhost".into(), realms: Vec::new(), entropy: Arc::new(SystemEntropy) }
    }
}

impl MechContext {
    /// `n` random bytes.
    pub fn random(&self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.entropy.fill(&mut buf);
        buf
    }
}

/// What a mechanism needs from the passdbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassdbNeed {
    /// Nothing (ANONYMOUS).
    Nothing,
    /// A helper process that authenticates by itself (winbind's `ntlm_auth`); no passdb.
    Helper,
    /// A plaintext password check (`verify_plain`).
    VerifyPlain,
    /// The stored credential in this scheme (a plaintext password is converted to it).
    Credentials(Scheme),
}

/// Static description of a mechanism.
#[derive(Debug)]
pub struct MechInfo {
    /// Upper-case name as advertised in `MECH`.
    pub name: &'static str,
    /// Security flags, in Dovecot's advertising order (`private`, `anonymous`, `plaintext`,
    /// `dictionary`, `active`, `forward-secrecy`, `mutual-auth`).
    pub flags: &'static [&'static str],
    /// Whether client data may contain NUL bytes. When not, data with a NUL fails the request
    /// before the mechanism sees it.
    pub allows_nul: bool,
    /// What the mechanism needs from the passdbs.
    pub need: PassdbNeed,
    new: fn(&MechContext) -> Box<dyn Mechanism>,
}

impl MechInfo {
    /// A fresh mechanism instance for one request.
    pub fn start(&self, ctx: &MechContext) -> Box<dyn Mechanism> {
        (self.new)(ctx)
    }
}

/// Every mechanism this build knows, in the order Dovecot lists them by default.
pub static MECHANISMS: &[MechInfo] = &[
    MechInfo { name: "PLAIN", flags: &["plaintext"], allows_nul: true, need: PassdbNeed::VerifyPlain, new: |_| Box::new(Plain::new()) },
    MechInfo { name: "LOGIN", flags: &["plaintext"], allows_nul: false, need: PassdbNeed::VerifyPlain, new: |_| Box::new(Login::new()) },
    MechInfo {
        name: "CRAM-MD5",
        flags: &["dictionary", "active"],
        allows_nul: false,
        need: PassdbNeed::Credentials(Scheme::CramMd5),
        new: |c| Box::new(CramMd5::new(c)),
    },
    MechInfo {
        name: "DIGEST-MD5",
        flags: &["dictionary", "active", "mutual-auth"],
        allows_nul: false,
        need: PassdbNeed::Credentials(Scheme::DigestMd5),
        new: |c| Box::new(DigestMd5::new(c)),
    },
    MechInfo {
        name: "SCRAM-SHA-1",
        flags: &["mutual-auth"],
        allows_nul: false,
        need: PassdbNeed::Credentials(Scheme::ScramSha1),
        new: |c| Box::new(Scram::sha1(c)),
    },
    MechInfo {
        name: "SCRAM-SHA-256",
        flags: &["mutual-auth"],
        allows_nul: false,
        need: PassdbNeed::Credentials(Scheme::ScramSha256),
        new: |c| Box::new(Scram::sha256(c)),
    },
    MechInfo { name: "EXTERNAL", flags: &[], allows_nul: false, need: PassdbNeed::VerifyPlain, new: |_| Box::new(External::new()) },
    MechInfo { name: "ANONYMOUS", flags: &["anonymous"], allows_nul: true, need: PassdbNeed::Nothing, new: |_| Box::new(Anonymous::new()) },
    // Dovecot's mech_winbind_ntlm / mech_winbind_spnego. GSS-SPNEGO allows NULs (DER tokens
    // always have them), as Dovecot 2.4.2 fixed; 2.3 refused every real token.
    MechInfo { name: "NTLM", flags: &["dictionary", "active"], allows_nul: true, need: PassdbNeed::Helper, new: |_| Box::new(Winbind::ntlm()) },
    MechInfo { name: "GSS-SPNEGO", flags: &[], allows_nul: true, need: PassdbNeed::Helper, new: |_| Box::new(Winbind::gss_spnego()) },
];

/// Finds a mechanism by name, case-insensitively.
pub fn lookup(name: &str) -> Option<&'static MechInfo> {
    MECHANISMS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// The next thing a mechanism wants done.
#[derive(PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (`CONT`) and wait for the client's next response.
    Challenge(Vec<u8>),
    /// Check this password for this user through the passdbs.
    VerifyPlain(PlainCredentials),
    /// Fetch this user's stored credential in a scheme, then call [`Mechanism::credentials`].
    LookupCredentials(CredentialsRequest),
    /// Log in as the configured anonymous user (no passdb).
    Anonymous {
        /// The client's trace text, for the log.
        trace: String,
    },
    /// Hand these bytes to the mechanism's helper process (winbind's `ntlm_auth` for NTLM and
    /// GSS-SPNEGO), then give its answer to [`Mechanism::helper_reply`]. One exchange talks to
    /// one helper from its first call to its last.
    Helper(Vec<u8>),
    /// The mechanism (through its helper) authenticated this user itself: no passdb is asked.
    /// The request layer applies its user-name rules, and the userdb chain runs as for any
    /// login. `final_data` is sent before or with the OK, as for [`Step::Success`].
    Authenticated {
        /// The user name the helper vouched for, in Dovecot's form: winbind's `DOMAIN\user`
        /// becomes `user@DOMAIN` (mech-winbind.c does this in the mechanism).
        user: String,
        /// Final server data (a last GSS-SPNEGO token), if any.
        final_data: Option<Vec<u8>>,
    },
    /// Log in as the user named by the client certificate, with an empty password.
    External {
        /// The requested authorization identity, when given and not empty.
        authzid: Option<String>,
    },
    /// The client proved it knows the credential. `final_data` is the server's last message
    /// (SCRAM's server signature, DIGEST-MD5's rspauth), sent before or with the OK.
    Success {
        /// Final server data, if the mechanism has any.
        final_data: Option<Vec<u8>>,
    },
    /// The exchange failed.
    Fail(MechFailure),
}

/// Challenges, helper lines and final data can be cracked offline (NTLM responses) or hold a
/// password (PLAIN's credentials print through [`Secret`]): `{:?}` shows only their sizes.
impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Challenge(c) => write!(f, "Challenge(<{} bytes>)", c.len()),
            Step::VerifyPlain(creds) => f.debug_tuple("VerifyPlain").field(creds).finish(),
            Step::LookupCredentials(req) => f.debug_tuple("LookupCredentials").field(req).finish(),
            Step::Helper(line) => write!(f, "Helper(<{} bytes>)", line.len()),
            Step::Authenticated { user, final_data } => {
                f.debug_struct("Authenticated").field("user", user).field("final_data", &final_data.as_ref().map(Vec::len)).finish()
            }
            Step::Anonymous { trace } => f.debug_struct("Anonymous").field("trace", trace).finish(),
            Step::External { authzid } => f.debug_struct("External").field("authzid", authzid).finish(),
            Step::Success { final_data } => f.debug_struct("Success").field("final_data", &final_data.as_ref().map(Vec::len)).finish(),
            Step::Fail(why) => f.debug_tuple("Fail").field(why).finish(),
        }
    }
}

/// A request for a stored credential.
#[derive(Debug, PartialEq, Eq)]
pub struct CredentialsRequest {
    /// The authentication identity.
    pub authcid: String,
    /// The authorization identity, when it differs from `authcid`.
    pub authzid: Option<String>,
    /// The scheme the credential must be in.
    pub scheme: Scheme,
    /// For user-dependent credentials (DIGEST-MD5) derived from a plaintext password: the user
    /// name and realm exactly as the client sent them, which is what the client hashed. The
    /// credential is `MD5(name:realm:password)` over these, not over the translated user.
    pub hash_identity: Option<(String, String)>,
}

/// A user name and password taken from a plaintext mechanism.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authentication identity (whose password this is).
    pub authcid: String,
    /// The authorization identity, when it differs from `authcid` (a master-user login).
    pub authzid: Option<String>,
    /// The password.
    pub password: Secret,
}

/// Why a mechanism failed. Logged, never sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MechFailure {
    /// The client's data does not have the mechanism's format.
    InvalidInput(&'static str),
    /// A response arrived in a state that expects none.
    UnexpectedInput,
    /// The client's proof does not match the stored credential (a wrong password).
    PasswordMismatch,
    /// The stored credential cannot be used (wrong length, malformed).
    BadCredential,
    /// The helper answered something this mechanism cannot use (or said it is broken): the
    /// request is a temporary failure, and the helper is not trusted again.
    HelperBroken(&'static str),
    /// The helper answered properly, but what it depends on (winbindd, the domain controller)
    /// cannot be reached (e.g. `NT_STATUS_NO_LOGON_SERVERS`): a temporary failure, not a wrong
    /// password, and the helper stays in use.
    Unavailable(&'static str),
}

impl fmt::Display for MechFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MechFailure::InvalidInput(why) => write!(f, "invalid input: {why}"),
            MechFailure::UnexpectedInput => f.write_str("unexpected input"),
            MechFailure::PasswordMismatch => f.write_str("password mismatch"),
            MechFailure::BadCredential => f.write_str("the stored credential is not usable"),
            MechFailure::HelperBroken(why) => write!(f, "helper failure: {why}"),
            MechFailure::Unavailable(why) => write!(f, "authentication service unavailable: {why}"),
        }
    }
}

/// One SASL exchange, server side.
pub trait Mechanism: Send {
    /// Starts the exchange. `initial` is the initial response, `None` when the client sent none.
    fn start(&mut self, initial: Option<&[u8]>) -> Step;
    /// Takes the client's response to the last challenge.
    fn step(&mut self, response: &[u8]) -> Step;
    /// Takes the credential asked for with [`Step::LookupCredentials`], decoded to raw bytes
    /// (for SCRAM: the `iter,salt,StoredKey,ServerKey` text).
    fn credentials(&mut self, credential: &[u8]) -> Step {
        let _ = credential;
        Step::Fail(MechFailure::UnexpectedInput)
    }
    /// Takes the helper's answer to the bytes of the last [`Step::Helper`], without its line
    /// ending.
    fn helper_reply(&mut self, reply: &[u8]) -> Step {
        let _ = reply;
        Step::Fail(MechFailure::UnexpectedInput)
    }
}

/// A SASL identity must be valid UTF-8 (we compare and log it as text) and non-empty.
/// The [`MechFailure::InvalidInput`] reason for an empty user name (PLAIN authcid, LOGIN name,
/// SCRAM `n=`): the request layer answers it as Dovecot does, `user=` and `original_user=`
/// both empty.
pub const EMPTY_USER_NAME: &str = "empty user name";

fn identity(bytes: &[u8], what: &'static str) -> Result<String, MechFailure> {
    match std::str::from_utf8(bytes) {
        Ok("") => Err(MechFailure::InvalidInput(what)),
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(MechFailure::InvalidInput("identity is not UTF-8")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup("plain").map(|m| m.name), Some("PLAIN"));
        assert_eq!(lookup("Login").map(|m| m.name), Some("LOGIN"));
        assert_eq!(lookup("cram-md5").map(|m| m.name), Some("CRAM-MD5"));
        assert!(lookup("PLAINX").is_none());
        assert!(lookup("").is_none());
    }
}
