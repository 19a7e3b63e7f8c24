//! SASL mechanisms as pure state machines.
//!
//! A mechanism sees only bytes (already base64-decoded) and answers with a [`Step`]: send a
//! challenge, ask the request layer to check a password, or fail. It never talks to a passdb;
//! what it needs from one is declared in its [`MechInfo`], so start-up can refuse a mechanism
//! that no configured passdb can serve. Mechanism states are named `Expect…` and are consumed on
//! every transition; input in a state that does not expect it is a typed failure, never a panic.

mod login;
mod plain;

use std::fmt;

use crate::secret::Secret;

pub use login::Login;
pub use plain::Plain;

/// What a mechanism needs from the passdbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassdbNeed {
    /// Nothing (ANONYMOUS, helpers that decide themselves).
    Nothing,
    /// A plaintext password check (`verify_plain`).
    VerifyPlain,
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
    new: fn() -> Box<dyn Mechanism>,
}

impl MechInfo {
    /// A fresh mechanism instance for one request.
    pub fn start(&self) -> Box<dyn Mechanism> {
        (self.new)()
    }
}

/// Every mechanism this build knows, in the order Dovecot lists them by default.
pub static MECHANISMS: &[MechInfo] = &[
    MechInfo { name: "PLAIN", flags: &["plaintext"], allows_nul: true, need: PassdbNeed::VerifyPlain, new: || Box::new(Plain::new()) },
    MechInfo { name: "LOGIN", flags: &["plaintext"], allows_nul: false, need: PassdbNeed::VerifyPlain, new: || Box::new(Login::new()) },
];

/// Finds a mechanism by name, case-insensitively.
pub fn lookup(name: &str) -> Option<&'static MechInfo> {
    MECHANISMS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// The next thing a mechanism wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (`CONT`) and wait for the client's next response.
    Challenge(Vec<u8>),
    /// Check this password for this user through the passdbs.
    VerifyPlain(PlainCredentials),
    /// The exchange failed.
    Fail(MechFailure),
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
}

impl fmt::Display for MechFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MechFailure::InvalidInput(why) => write!(f, "invalid input: {why}"),
            MechFailure::UnexpectedInput => f.write_str("unexpected input"),
        }
    }
}

/// One SASL exchange, server side.
pub trait Mechanism: Send {
    /// Starts the exchange. `initial` is the initial response, `None` when the client sent none.
    fn start(&mut self, initial: Option<&[u8]>) -> Step;
    /// Takes the client's response to the last challenge.
    fn step(&mut self, response: &[u8]) -> Step;
}

/// A SASL identity must be valid UTF-8 (we compare and log it as text) and non-empty.
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
        assert!(lookup("PLAINX").is_none());
        assert!(lookup("").is_none());
    }
}
