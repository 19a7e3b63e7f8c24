//! NTLM and GSS-SPNEGO through Samba winbind's `ntlm_auth` helper, as Dovecot's
//! `mech-winbind.c` does them.
//!
//! The mechanism never checks a password: it forwards the client's tokens to `ntlm_auth`
//! (`--helper-protocol=squid-2.5-ntlmssp` for NTLM, `--helper-protocol=gss-spnego` for
//! GSS-SPNEGO) as [`Step::Helper`] lines and turns the helper's answers into steps:
//!
//! - first client message: `YR <base64>`; every later one (after a `TT`): `KK <base64>`;
//! - `TT <b64>` (NTLM) / `TT <b64> *` (GSS-SPNEGO): a challenge for the client;
//! - `AF <user>` (NTLM) / `AF <b64 or *> <user>` (GSS-SPNEGO): authenticated. Fields after the
//!   code are split on runs of spaces and the user is the rest joined with one space, and the
//!   first `\` turns `DOMAIN\user` into `user@DOMAIN`, exactly as Dovecot does (no winbind
//!   separator logic: `DOMAIN+user` stays as it is). A GSS-SPNEGO final token other than `*`
//!   is the success data;
//! - `NA <reason>` (NTLM) / `NA * <reason>` (GSS-SPNEGO): the client failed, unless the reason
//!   says the domain cannot be reached ([`UNAVAILABLE_STATUSES`]), which is a temporary failure;
//! - `BH [reason]`, anything else, too few fields, bad base64, a user that is not UTF-8 or
//!   has control characters, an overlong line: the helper is broken (temporary failure, the
//!   helper is replaced).
//!
//! Without an initial response the client first gets an empty challenge and the helper is not
//! asked (Dovecot's `mech_generic_auth_initial`). An empty initial response is sent as `YR `
//! (`ntlm_auth` answers `NA NT_STATUS_INVALID_PARAMETER`). Client data may contain NUL bytes
//! (NTLMSSP and DER always do): unlike Dovecot 2.3, GSS-SPNEGO allows them too (Dovecot fixed
//! this in 2.4.2).

use std::fmt;

use base64::Engine as _;

use super::{MechFailure, Mechanism, Step};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Longest helper line we accept or send, without its line ending: Dovecot reads the helper's
/// answers with its 16 KiB client line limit, which also bounds what a client can send.
pub const MAX_HELPER_LINE: usize = 16 * 1024;

/// `NA` reasons that mean "the domain (controller) or winbindd cannot be reached", not "wrong
/// password": the request is a temporary failure ([`MechFailure::Unavailable`]).
pub const UNAVAILABLE_STATUSES: &[&str] = &[
    "NT_STATUS_NO_LOGON_SERVERS",
    "NT_STATUS_DOMAIN_CONTROLLER_NOT_FOUND",
    "NT_STATUS_NETLOGON_NOT_STARTED",
    "NT_STATUS_CANT_ACCESS_DOMAIN_INFO",
    "NT_STATUS_TRUSTED_DOMAIN_FAILURE",
    "NT_STATUS_TRUSTED_RELATIONSHIP_FAILURE",
    "NT_STATUS_IO_TIMEOUT",
    "NT_STATUS_CONNECTION_REFUSED",
    "NT_STATUS_CONNECTION_RESET",
    "NT_STATUS_CONNECTION_DISCONNECTED",
    "NT_STATUS_HOST_UNREACHABLE",
    "NT_STATUS_NETWORK_UNREACHABLE",
    "NT_STATUS_PIPE_BROKEN",
    "NT_STATUS_PIPE_NOT_AVAILABLE",
    "NT_STATUS_SERVER_UNAVAILABLE",
    "NT_STATUS_INSUFFICIENT_RESOURCES",
    "NT_STATUS_NO_MEMORY",
    "NT_STATUS_INTERNAL_ERROR",
];

/// Which `ntlm_auth` helper protocol a mechanism speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperProtocol {
    /// NTLM: `--helper-protocol=squid-2.5-ntlmssp`, two-field replies.
    Ntlmssp,
    /// GSS-SPNEGO: `--helper-protocol=gss-spnego`, three-field replies.
    GssSpnego,
}

impl HelperProtocol {
    /// The `ntlm_auth` argument that selects this protocol.
    pub fn helper_arg(self) -> &'static str {
        match self {
            HelperProtocol::Ntlmssp => "--helper-protocol=squid-2.5-ntlmssp",
            HelperProtocol::GssSpnego => "--helper-protocol=gss-spnego",
        }
    }

    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            HelperProtocol::Ntlmssp => "NTLM",
            HelperProtocol::GssSpnego => "GSS-SPNEGO",
        }
    }
}

/// One helper answer, parsed.
#[derive(PartialEq, Eq)]
pub enum HelperReply {
    /// `TT`: send this challenge to the client.
    Challenge(Vec<u8>),
    /// `AF`: the helper authenticated this user (already in `user@DOMAIN` form).
    Authenticated {
        /// The user name.
        user: String,
        /// GSS-SPNEGO's final token, when the helper gave one.
        final_data: Option<Vec<u8>>,
    },
    /// `NA`: the helper refused the client; the reason as given (an `NT_STATUS_…` name).
    Rejected(String),
    /// `BH`: the helper says it is broken; the reason as given.
    Broken(String),
}

impl fmt::Debug for HelperReply {
    // Tokens are hash-derived (offline-crackable), so they are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperReply::Challenge(c) => write!(f, "Challenge(<{} bytes>)", c.len()),
            HelperReply::Authenticated { user, final_data } => {
                f.debug_struct("Authenticated").field("user", user).field("final_data", &final_data.as_ref().map(|d| format!("<{} bytes>", d.len()))).finish()
            }
            HelperReply::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
            HelperReply::Broken(r) => f.debug_tuple("Broken").field(r).finish(),
        }
    }
}

/// Parses one helper line (without its line ending) as Dovecot's `do_auth_continue` reads it.
/// Every error means the helper is broken.
pub fn parse_reply(protocol: HelperProtocol, line: &[u8]) -> Result<HelperReply, &'static str> {
    if line.len() > MAX_HELPER_LINE {
        return Err("overlong helper reply");
    }
    let line = std::str::from_utf8(line).map_err(|_| "helper reply is not UTF-8")?;
    if line.chars().any(char::is_control) {
        return Err("control character in helper reply");
    }
    // t_strsplit_spaces(answer, " "): runs of spaces separate, empty fields vanish.
    let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).collect();
    let spnego = protocol == HelperProtocol::GssSpnego;
    let Some((&code, rest)) = fields.split_first() else {
        return Err("empty helper reply");
    };
    if code == "BH" {
        return Ok(HelperReply::Broken(rest.join(" ")));
    }
    let needed = if spnego { 2 } else { 1 };
    if rest.len() < needed {
        return Err("too few fields in helper reply");
    }
    match code {
        "TT" => {
            if rest.len() != needed {
                return Err("too many fields in helper TT reply");
            }
            let challenge = B64.decode(rest[0]).map_err(|_| "bad base64 in helper TT reply")?;
            Ok(HelperReply::Challenge(challenge))
        }
        "NA" => Ok(HelperReply::Rejected(rest[needed - 1..].join(" "))),
        "AF" => {
            let final_data = match rest[0] {
                "*" if spnego => None,
                blob if spnego => {
                    let data = B64.decode(blob).map_err(|_| "bad base64 in helper AF reply")?;
                    (!data.is_empty()).then_some(data)
                }
                _ => None,
            };
            let user = dovecot_user(&rest[needed - 1..].join(" "))?;
            Ok(HelperReply::Authenticated { user, final_data })
        }
        _ => Err("unknown helper reply code"),
    }
}

/// `DOMAIN\user` → `user@DOMAIN` at the first `\` (mech-winbind.c); a bare `user` stays.
fn dovecot_user(name: &str) -> Result<String, &'static str> {
    let user = match name.split_once('\\') {
        None => name.to_owned(),
        Some((_, "")) => return Err("empty user name in helper AF reply"),
        Some(("", user)) => user.to_owned(),
        Some((domain, user)) => format!("{user}@{domain}"),
    };
    if user.is_empty() {
        return Err("empty user name in helper AF reply");
    }
    Ok(user)
}

/// An NTLM or GSS-SPNEGO exchange through `ntlm_auth`.
pub struct Winbind {
    protocol: HelperProtocol,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The client's first message (YR next).
    ExpectFirst,
    /// The helper's answer to the line we handed out.
    ExpectHelperReply,
    /// The client's answer to a TT challenge (KK next).
    ExpectResponse,
    Done,
}

impl fmt::Debug for Winbind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Winbind").field("protocol", &self.protocol).field("state", &self.state).finish()
    }
}

impl Winbind {
    /// A new exchange speaking `protocol`.
    pub fn new(protocol: HelperProtocol) -> Self {
        Winbind { protocol, state: State::ExpectFirst }
    }

    /// NTLM.
    pub fn ntlm() -> Self {
        Winbind::new(HelperProtocol::Ntlmssp)
    }

    /// GSS-SPNEGO.
    pub fn gss_spnego() -> Self {
        Winbind::new(HelperProtocol::GssSpnego)
    }

    /// The helper protocol this exchange speaks.
    pub fn protocol(&self) -> HelperProtocol {
        self.protocol
    }

    fn request(&mut self, verb: &str, data: &[u8]) -> Step {
        if base64::encoded_len(data.len(), true).is_none_or(|n| n + verb.len() + 1 > MAX_HELPER_LINE) {
            return Step::Fail(MechFailure::InvalidInput("client message too long for the helper"));
        }
        let mut line = Vec::with_capacity(verb.len() + 1 + data.len().div_ceil(3) * 4);
        line.extend_from_slice(verb.as_bytes());
        line.push(b' ');
        line.extend_from_slice(B64.encode(data).as_bytes());
        self.state = State::ExpectHelperReply;
        Step::Helper(line)
    }
}

impl Mechanism for Winbind {
    fn start(&mut self, initial: Option<&[u8]>) -> Step {
        match initial {
            None if self.state == State::ExpectFirst => Step::Challenge(Vec::new()),
            None => {
                self.state = State::Done;
                Step::Fail(MechFailure::UnexpectedInput)
            }
            Some(data) => self.step(data),
        }
    }

    fn step(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectFirst => self.request("YR", response),
            State::ExpectResponse => self.request("KK", response),
            State::ExpectHelperReply | State::Done => Step::Fail(MechFailure::UnexpectedInput),
        }
    }

    fn helper_reply(&mut self, reply: &[u8]) -> Step {
        if std::mem::replace(&mut self.state, State::Done) != State::ExpectHelperReply {
            return Step::Fail(MechFailure::UnexpectedInput);
        }
        match parse_reply(self.protocol, reply) {
            Ok(HelperReply::Challenge(challenge)) => {
                self.state = State::ExpectResponse;
                Step::Challenge(challenge)
            }
            Ok(HelperReply::Authenticated { user, final_data }) => Step::Authenticated { user, final_data },
            Ok(HelperReply::Rejected(reason)) => Step::Fail(rejection(&reason)),
            Ok(HelperReply::Broken(_)) => Step::Fail(MechFailure::HelperBroken("the helper reports itself broken (BH)")),
            Err(why) => Step::Fail(MechFailure::HelperBroken(why)),
        }
    }
}

/// What an `NA` reason means for the request.
fn rejection(reason: &str) -> MechFailure {
    let status = reason.split(' ').next().unwrap_or("");
    match UNAVAILABLE_STATUSES.iter().find(|s| s.eq_ignore_ascii_case(status)) {
        Some(s) => MechFailure::Unavailable(s),
        None => MechFailure::PasswordMismatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NTLM: HelperProtocol = HelperProtocol::Ntlmssp;
    const SPNEGO: HelperProtocol = HelperProtocol::GssSpnego;

    fn broken(why: &'static str) -> Step {
        Step::Fail(MechFailure::HelperBroken(why))
    }

    fn authed(user: &str, final_data: Option<&[u8]>) -> Step {
        Step::Authenticated { user: user.into(), final_data: final_data.map(<[u8]>::to_vec) }
    }

    /// Runs a fresh exchange with initial response `b"x"` and then `reply` from the helper.
    fn answer(protocol: HelperProtocol, reply: &[u8]) -> Step {
        let mut m = Winbind::new(protocol);
        assert_eq!(m.start(Some(b"x")), Step::Helper(b"YR eA==".to_vec()));
        m.helper_reply(reply)
    }

    #[test]
    fn recorded_ntlm_exchange() {
        // From /work/shared/vectors/ntlm-exchanges.txt (client v2, user ntuser1).
        let mut m = Winbind::ntlm();
        assert_eq!(m.start(None), Step::Challenge(vec![]));
        let t1 = B64.decode("TlRMTVNTUAABAAAAB4IIoAAAAAAgAAAAAAAAACAAAAA=").unwrap();
        assert_eq!(m.step(&t1), Step::Helper(b"YR TlRMTVNTUAABAAAAB4IIoAAAAAAgAAAAAAAAACAAAAA=".to_vec()));
        let Step::Challenge(c) = m.helper_reply(b"TT TlRMTVNTUAACAAAAEAAQADgAAAAFgoqi") else { panic!("no challenge") };
        assert_eq!(&c[..8], b"NTLMSSP\0");
        assert_eq!(m.step(b"\0\x01NTLM"), Step::Helper(b"KK AAFOVExN".to_vec()));
        assert_eq!(m.helper_reply(b"AF TESTHOST\\ntuser1"), authed("ntuser1@TESTHOST", None));
        assert_eq!(m.step(b"more"), Step::Fail(MechFailure::UnexpectedInput));
        assert_eq!(m.helper_reply(b"AF x"), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn recorded_spnego_exchange() {
        let mut m = Winbind::gss_spnego();
        let Step::Helper(line) = m.start(Some(b"\x60\x48\x06\x06\0\0")) else { panic!("no helper step") };
        assert!(line.starts_with(b"YR "));
        assert_eq!(m.helper_reply(b"TT oYGoMIGloAMKAQGh *"), Step::Challenge(B64.decode("oYGoMIGloAMKAQGh").unwrap()));
        assert!(matches!(m.step(b"\xa1\0\0"), Step::Helper(l) if l.starts_with(b"KK ")));
        assert_eq!(m.helper_reply(b"AF oQcwBaADCgEA TESTHOST\\ntuser1"), authed("ntuser1@TESTHOST", Some(&B64.decode("oQcwBaADCgEA").unwrap())));
    }

    #[test]
    fn spnego_af_without_token() {
        assert_eq!(answer(SPNEGO, b"AF * TESTHOST\\ntuser1"), authed("ntuser1@TESTHOST", None));
    }

    #[test]
    fn user_names_follow_dovecot() {
        let rows: &[(&[u8], &str)] = &[
            (b"AF alice", "alice"),
            (b"AF WORKGROUP\\alice", "alice@WORKGROUP"),
            (b"AF D\\a\\b", "a\\b@D"),
            (b"AF DOM+alice", "DOM+alice"),
            (b"AF   DOM\\al   ice  ", "al ice@DOM"),
            (b"AF \\alice", "alice"),
            (b"AF TESTHOST\\p\xc3\xa4ul", "p\u{e4}ul@TESTHOST"),
        ];
        for (line, user) in rows {
            assert_eq!(answer(NTLM, line), authed(user, None), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn rejections() {
        assert_eq!(answer(NTLM, b"NA NT_STATUS_LOGON_FAILURE"), Step::Fail(MechFailure::PasswordMismatch));
        assert_eq!(answer(NTLM, b"NA NT_STATUS_INVALID_PARAMETER"), Step::Fail(MechFailure::PasswordMismatch));
        assert_eq!(answer(NTLM, b"NA some text"), Step::Fail(MechFailure::PasswordMismatch));
        assert_eq!(answer(SPNEGO, b"NA * NT_STATUS_LOGON_FAILURE"), Step::Fail(MechFailure::PasswordMismatch));
        assert_eq!(answer(NTLM, b"NA NT_STATUS_NO_LOGON_SERVERS"), Step::Fail(MechFailure::Unavailable("NT_STATUS_NO_LOGON_SERVERS")));
        assert_eq!(answer(SPNEGO, b"NA * NT_STATUS_NO_LOGON_SERVERS"), Step::Fail(MechFailure::Unavailable("NT_STATUS_NO_LOGON_SERVERS")));
    }

    #[test]
    fn hostile_and_broken_replies() {
        let long = [b"AF ".as_slice(), &vec![b'a'; MAX_HELPER_LINE]].concat();
        let rows: &[(HelperProtocol, &[u8], Step)] = &[
            (NTLM, b"BH", broken("the helper reports itself broken (BH)")),
            (NTLM, b"BH NT_STATUS_ACCESS_DENIED x", broken("the helper reports itself broken (BH)")),
            (SPNEGO, b"BH", broken("the helper reports itself broken (BH)")),
            (NTLM, b"", broken("empty helper reply")),
            (NTLM, b"   ", broken("empty helper reply")),
            (NTLM, b"AF", broken("too few fields in helper reply")),
            (NTLM, b"AF ", broken("too few fields in helper reply")),
            (NTLM, b"NA", broken("too few fields in helper reply")),
            (NTLM, b"TT", broken("too few fields in helper reply")),
            (SPNEGO, b"AF alice", broken("too few fields in helper reply")),
            (SPNEGO, b"NA NT_STATUS_LOGON_FAILURE", broken("too few fields in helper reply")),
            (SPNEGO, b"TT oQcw", broken("too few fields in helper reply")),
            (NTLM, b"TT !!!", broken("bad base64 in helper TT reply")),
            (NTLM, b"TT oQcw x", broken("too many fields in helper TT reply")),
            (SPNEGO, b"AF %%% alice", broken("bad base64 in helper AF reply")),
            (NTLM, b"OK alice", broken("unknown helper reply code")),
            (NTLM, b"af alice", broken("unknown helper reply code")),
            (NTLM, b"AF\talice", broken("control character in helper reply")),
            (NTLM, b"AF alice\r", broken("control character in helper reply")),
            (NTLM, b"AF al\0ice", broken("control character in helper reply")),
            (NTLM, b"AF D\\al\nice", broken("control character in helper reply")),
            (NTLM, b"AF \xff\xfe", broken("helper reply is not UTF-8")),
            (NTLM, b"AF DOMAIN\\", broken("empty user name in helper AF reply")),
            (NTLM, &long, broken("overlong helper reply")),
        ];
        for (protocol, line, want) in rows {
            assert_eq!(&answer(*protocol, line), want, "{:?} {}", protocol, String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn empty_initial_response_is_sent_as_empty_yr() {
        assert_eq!(Winbind::ntlm().start(Some(b"")), Step::Helper(b"YR ".to_vec()));
    }

    #[test]
    fn out_of_order_calls_fail() {
        let mut m = Winbind::ntlm();
        assert_eq!(m.helper_reply(b"AF alice"), Step::Fail(MechFailure::UnexpectedInput));
        assert_eq!(m.step(b"x"), Step::Fail(MechFailure::UnexpectedInput));
        let mut m = Winbind::ntlm();
        assert!(matches!(m.step(b"x"), Step::Helper(_)));
        assert_eq!(m.step(b"y"), Step::Fail(MechFailure::UnexpectedInput));
        assert_eq!(m.helper_reply(b"AF alice"), Step::Fail(MechFailure::UnexpectedInput));
        let mut m = Winbind::ntlm();
        assert!(matches!(m.step(b"x"), Step::Helper(_)));
        assert!(matches!(m.helper_reply(b"TT oQcw"), Step::Challenge(_)));
        assert_eq!(m.helper_reply(b"AF alice"), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn overlong_client_message_never_reaches_the_helper() {
        let big = vec![0u8; MAX_HELPER_LINE];
        assert_eq!(Winbind::ntlm().start(Some(&big)), Step::Fail(MechFailure::InvalidInput("client message too long for the helper")));
        let fits = vec![0u8; (MAX_HELPER_LINE - 3) / 4 * 3];
        assert!(matches!(Winbind::ntlm().start(Some(&fits)), Step::Helper(l) if l.len() <= MAX_HELPER_LINE));
    }

    #[test]
    fn debug_output_hides_tokens() {
        let r = parse_reply(SPNEGO, b"AF oQcwBaADCgEA D\\u").unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains("161") && text.contains("<9 bytes>"), "{text}");
        assert_eq!(format!("{:?}", parse_reply(NTLM, b"TT oQcw").unwrap()), "Challenge(<3 bytes>)");
    }

    #[test]
    fn registered_with_dovecots_flags() {
        let ntlm = crate::sasl::lookup("ntlm").unwrap();
        assert_eq!(ntlm.flags, &["dictionary", "active"]);
        assert!(ntlm.allows_nul);
        assert_eq!(ntlm.need, crate::sasl::PassdbNeed::Helper);
        let spnego = crate::sasl::lookup("gss-spnego").unwrap();
        assert!(spnego.flags.is_empty());
        assert!(spnego.allows_nul);
        assert_eq!(spnego.need, crate::sasl::PassdbNeed::Helper);
    }
}
