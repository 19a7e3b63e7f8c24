//! Helper processes that a mechanism talks to, such as winbind's `ntlm_auth` for NTLM and
//! GSS-SPNEGO.
//!
//! The mechanism (in `sasl/`) speaks the helper's line protocol as a pure state machine; this
//! is the transport under it. A [`MechHelper`] hands out [`HelperSession`]s: one session is
//! one SASL exchange, pinned to one helper process from its first line to its last, because
//! such helpers keep the exchange's state between lines. Dropping a session gives the helper
//! back; a poisoned session's helper is killed and replaced instead.

use std::fmt;

use async_trait::async_trait;

/// Why a helper call gave no answer. Every kind is a temporary failure for the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    /// Every helper is busy with another exchange, and none freed up in time.
    #[error("every helper process is busy")]
    Busy,
    /// The helper did not answer within the call timeout (it is killed).
    #[error("the helper did not answer in time")]
    Timeout,
    /// The helper could not be started, exited, or broke its protocol (it is killed).
    #[error("helper failure: {0}")]
    Failed(String),
}

/// A source of helper sessions for one mechanism.
#[async_trait]
pub trait MechHelper: Send + Sync + fmt::Debug {
    /// Takes a helper for one exchange, starting one if needed.
    async fn session(&self) -> Result<Box<dyn HelperSession>, HelperError>;
}

/// One exchange with one helper process.
#[async_trait]
pub trait HelperSession: Send {
    /// Sends one line (without its line ending) and returns the helper's answer line (without
    /// its line ending).
    async fn call(&mut self, line: &[u8]) -> Result<Vec<u8>, HelperError>;

    /// Marks the helper as not to be trusted again: it is killed when the session ends.
    fn poison(&mut self);
}
