//! The Dovecot auth wire protocol, as pure functions over bytes.
//!
//! Every wire token and limit lives in this module (verbs, parameter names, fail codes, version
//! numbers, line limits), so the rest of the crate never spells one by hand. Nothing here does
//! I/O: [`line`] finds line boundaries in a buffer the caller owns, [`client`] and [`master`]
//! turn one line into a typed command or a [`ProtocolError`], and the reply builders turn typed
//! replies back into bytes.
//!
//! Error tiers (see `protocol-spec/client.md`): a [`ProtocolError`] means the *peer program*
//! (Postfix, a login process, doveadm) broke the protocol, and the server closes that one
//! connection, as Dovecot does. Bad data from the *end user* (invalid base64 in a SASL response)
//! is not a protocol error; it becomes a per-request `FAIL` with a code.

pub mod base64;
pub mod client;
pub mod escape;
pub mod line;
pub mod master;

use std::fmt;

/// Protocol major version spoken on every socket.
pub const MAJOR_VERSION: u32 = 1;
/// Minor version the server announces on client sockets (Dovecot 2.3).
pub const CLIENT_MINOR_VERSION: u32 = 2;
/// Minor version the server announces on master/userdb sockets (Dovecot 2.3).
pub const MASTER_MINOR_VERSION: u32 = 1;
/// Client minor version from which an empty `resp=` means "empty", not "absent".
pub const MINOR_EMPTY_RESP_IS_EMPTY: u32 = 2;

/// Longest unprocessed input accepted from a client-protocol peer, in bytes, terminator
/// included (Dovecot's `AUTH_CLIENT_MAX_LINE_LENGTH`).
pub const CLIENT_MAX_LINE: usize = 16384;
/// Longest line accepted from a master/userdb peer (Dovecot's master input buffer).
pub const MASTER_MAX_LINE: usize = 1024;
/// Longest reply line Dovecot's master-protocol clients accept; USER replies stay below it.
pub const MASTER_CLIENT_MAX_REPLY: usize = 8192;

/// Seconds a request may live, from AUTH to its end (Dovecot's 3 min − 30 s).
pub const REQUEST_TIMEOUT_SECS: u64 = 150;

const _: () = assert!(MASTER_MAX_LINE < CLIENT_MAX_LINE);
const _: () = assert!(MASTER_CLIENT_MAX_REPLY <= CLIENT_MAX_LINE);

/// Codes a `FAIL` reply can carry in `code=` (Dovecot 2.3 spelling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailCode {
    /// Internal failure: a backend is down, every passdb was skipped, a helper died.
    TempFail,
    /// Authenticated, but the login as the requested (authorization) user was refused.
    AuthzFail,
    /// The account is disabled.
    UserDisabled,
    /// The password has expired.
    PassExpired,
    /// The client sent invalid base64 in a SASL response.
    InvalidBase64,
}

impl FailCode {
    /// The token as written after `code=`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailCode::TempFail => "temp_fail",
            FailCode::AuthzFail => "authz_fail",
            FailCode::UserDisabled => "user_disabled",
            FailCode::PassExpired => "pass_expired",
            FailCode::InvalidBase64 => "invalid_base64",
        }
    }
}

/// The peer broke the protocol; the connection that sent the line is closed.
///
/// The `Display` text is safe to log: it never contains a SASL payload, and any peer text in it
/// has been sanitized with [`sanitize`] and is quoted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A line longer than the socket type allows.
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// The handshake was not what the protocol requires.
    #[error("bad handshake: {0}")]
    Handshake(String),
    /// A command word this socket does not accept (sanitized peer text, logged quoted).
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A known command with malformed arguments.
    #[error("broken {verb} request: {why}")]
    Broken {
        /// The command word.
        verb: &'static str,
        /// What was wrong.
        why: String,
    },
}

impl ProtocolError {
    pub(crate) fn broken(verb: &'static str, why: impl Into<String>) -> Self {
        ProtocolError::Broken { verb, why: why.into() }
    }
}

/// Makes untrusted text safe for a log line: control bytes become `?`, invalid UTF-8 is replaced,
/// and the result is cut to `max` characters (with `...` appended when cut).
pub fn sanitize(bytes: &[u8], max: usize) -> String {
    // Printable ASCII within the limit (the usual name or service) is kept as it is.
    if bytes.len() <= max && bytes.iter().all(|b| b.is_ascii() && !b.is_ascii_control()) {
        if let Ok(text) = std::str::from_utf8(bytes) {
            return text.to_owned();
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max + 3));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

/// Parses a protocol number: unsigned decimal that fits in 32 bits, nothing else (no sign, no
/// spaces, no leading `+`), as Dovecot's `str_to_uint32`.
pub fn parse_u32(field: &[u8]) -> Option<u32> {
    if field.is_empty() || field.len() > 10 || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &b in field {
        n = n * 10 + u64::from(b - b'0');
    }
    u32::try_from(n).ok()
}

/// A request id as the client protocol uses it: a non-zero u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u32);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Splits a line (without its terminator) on TAB into raw fields. An empty line gives no fields,
/// `a\t\tb` gives three, a trailing TAB a trailing empty field (Dovecot's splitter).
pub fn split_tabs(line: &[u8]) -> Vec<&[u8]> {
    if line.is_empty() {
        return Vec::new();
    }
    line.split(|&b| b == b'\t').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict_u32() {
        assert_eq!(parse_u32(b"0"), Some(0));
        assert_eq!(parse_u32(b"4261281793"), Some(4_261_281_793));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        for bad in [&b""[..], b"4294967296", b"-1", b"+1", b" 1", b"1 ", b"1a", b"99999999999"] {
            assert_eq!(parse_u32(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn split_matches_dovecot() {
        assert!(split_tabs(b"").is_empty());
        assert_eq!(split_tabs(b"a\t\tb"), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split_tabs(b"a\t"), vec![&b"a"[..], b""]);
    }

    #[test]
    fn sanitize_strips_controls_and_cuts() {
        assert_eq!(sanitize(b"a\tb\x01c", 10), "a?b?c");
        assert_eq!(sanitize(b"abcdef", 3), "abc...");
        assert_eq!(sanitize(b"\xff", 3), "\u{fffd}");
        // The printable-ASCII shortcut keeps the same rules.
        assert_eq!(sanitize(b"abc", 3), "abc");
        assert_eq!(sanitize(b"a\x7fb", 3), "a?b");
        assert_eq!(sanitize("\u{e9}t\u{e9}".as_bytes(), 3), "\u{e9}t\u{e9}");
        assert_eq!(sanitize("\u{e9}t\u{e9}s".as_bytes(), 3), "\u{e9}t\u{e9}...");
    }
}
