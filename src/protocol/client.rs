//! The client protocol (auth-client, login sockets): typed commands in, reply lines out.
//!
//! A line from the peer becomes a [`ClientCommand`] or a [`ProtocolError`]. AUTH parameters are
//! parsed into an [`AuthParams`] whose fields are typed (IP addresses, ports, flags); unknown
//! parameters are ignored, as Dovecot 2.3 does. `resp=` must be the last parameter.
//!
//! Replies are built by [`Reply`], which escapes every value and writes keys as Dovecot does
//! (a field with an empty value is written as the bare key).

use std::net::IpAddr;

use super::escape::{escape_into, unescape};
use super::{parse_u32, split_tabs, FailCode, ProtocolError, RequestId};

/// The client's `VERSION` line (the first line it sends).
pub fn parse_version(line: &[u8]) -> Result<(u32, u32), ProtocolError> {
    let fields = split_tabs(line);
    match fields.as_slice() {
        [b"VERSION", major, minor] => {
            let major = parse_u32(major).ok_or_else(|| hs("VERSION with a non-numeric major"))?;
            let minor = parse_u32(minor).ok_or_else(|| hs("VERSION with a non-numeric minor"))?;
            if major != super::MAJOR_VERSION {
                return Err(hs(format!("client speaks major version {major}, not 1")));
            }
            Ok((major, minor))
        }
        _ => Err(hs("the first line is not VERSION<TAB>major<TAB>minor")),
    }
}

/// The client's `CPID` line (the second line it sends). The pid must be non-zero.
pub fn parse_cpid(line: &[u8]) -> Result<u32, ProtocolError> {
    let fields = split_tabs(line);
    match fields.as_slice() {
        [b"CPID", pid] => match parse_u32(pid) {
            Some(0) | None => Err(hs("CPID is not a non-zero number")),
            Some(pid) => Ok(pid),
        },
        [verb, ..] => Err(hs(format!("unknown handshake command {:?}", super::sanitize(verb, 20)))),
        [] => Err(hs("empty line in the handshake")),
    }
}

fn hs(why: impl Into<String>) -> ProtocolError {
    ProtocolError::Handshake(why.into())
}

/// A command after the handshake. `Debug` shows the size of a `CONT`'s data, never the data
/// (it is a SASL response: a password, a hash).
#[derive(PartialEq, Eq)]
pub enum ClientCommand {
    /// Start an authentication (boxed: it is much larger than the other commands).
    Auth(Box<AuthCommand>),
    /// A SASL response for a request that got a `CONT`. The data is still base64 text; decoding
    /// it is per-request work, because bad base64 is the end user's fault, not the peer's.
    Cont {
        /// The request id.
        id: RequestId,
        /// The raw base64 text after the id (Dovecot does not un-escape CONT).
        data: Vec<u8>,
    },
    /// Abandon a request; nothing is sent back.
    Cancel {
        /// The request id (may be unknown; then nothing happens).
        id: u32,
    },
}

impl std::fmt::Debug for ClientCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCommand::Auth(auth) => f.debug_tuple("Auth").field(auth).finish(),
            ClientCommand::Cont { id, data } => f.debug_struct("Cont").field("id", id).field("data_len", &data.len()).finish(),
            ClientCommand::Cancel { id } => f.debug_struct("Cancel").field("id", id).finish(),
        }
    }
}

/// An `AUTH` command.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthCommand {
    /// The request id, unique among the live requests of the connection.
    pub id: RequestId,
    /// The mechanism name as sent (matching is case-insensitive).
    pub mechanism: String,
    /// Every parameter we understand.
    pub params: AuthParams,
    /// The initial response, if any, as raw base64 text (see [`InitialResponse`]).
    pub resp: InitialResponse,
}

/// The `resp=` parameter, before the absent/empty rule of the client's minor version is applied.
/// `Debug` shows the size of the base64 text, never the text (it holds credentials).
#[derive(Clone, PartialEq, Eq)]
pub enum InitialResponse {
    /// No `resp=` parameter.
    Absent,
    /// `resp=` with an empty value: absent for clients below 1.2, empty from 1.2 on.
    EmptyValue,
    /// Non-empty base64 text (`=` alone means an empty response).
    Base64(Vec<u8>),
}

impl std::fmt::Debug for InitialResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitialResponse::Absent => f.write_str("Absent"),
            InitialResponse::EmptyValue => f.write_str("EmptyValue"),
            InitialResponse::Base64(text) => write!(f, "Base64(<{} bytes>)", text.len()),
        }
    }
}

/// How the transport to the end user is protected (`secured` / `secured=tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secured {
    /// `secured`: a trusted or loopback network, or TLS on an older client.
    Yes,
    /// `secured=tls`: TLS.
    Tls,
}

/// The parameters of an AUTH line that Dovecot 2.3 understands, typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParams {
    /// `service=` (or 2.4's `protocol=`): imap, smtp, doveadm, ...
    pub service: String,
    /// `lip=`; an unparsable value is ignored.
    pub lip: Option<IpAddr>,
    /// `rip=`; the penalty key. An unparsable value is ignored.
    pub rip: Option<IpAddr>,
    /// `lport=`.
    pub lport: Option<u16>,
    /// `rport=`.
    pub rport: Option<u16>,
    /// `real_lip=`; defaults to `lip`.
    pub real_lip: Option<IpAddr>,
    /// `real_rip=`; defaults to `rip`.
    pub real_rip: Option<IpAddr>,
    /// `real_lport=`.
    pub real_lport: Option<u16>,
    /// `real_rport=`.
    pub real_rport: Option<u16>,
    /// `local_name=`: the TLS SNI host name.
    pub local_name: Option<String>,
    /// `session=`: the session id, for logs.
    pub session: Option<String>,
    /// `client_id=`: the IMAP ID string.
    pub client_id: Option<String>,
    /// `forward_fields=`, un-escaped into `forward_<key>` pairs.
    pub forward_fields: Vec<(String, String)>,
    /// `debug`.
    pub debug: bool,
    /// `secured` / `secured=tls`.
    pub secured: Option<Secured>,
    /// `valid-client-cert`.
    pub valid_client_cert: bool,
    /// `cert_username=`.
    pub cert_username: Option<String>,
    /// `no-penalty`.
    pub no_penalty: bool,
    /// `final-resp-ok`.
    pub final_resp_ok: bool,
}

impl ClientCommand {
    /// Parses one line (terminator removed) received after the handshake.
    pub fn parse(line: &[u8]) -> Result<ClientCommand, ProtocolError> {
        let (verb, rest) = match line.iter().position(|&b| b == b'\t') {
            Some(tab) => (&line[..tab], Some(&line[tab + 1..])),
            None => (line, None),
        };
        match verb {
            b"AUTH" => parse_auth(rest.unwrap_or_default()).map(|a| ClientCommand::Auth(Box::new(a))),
            b"CONT" => {
                let rest = rest.ok_or_else(|| ProtocolError::broken("CONT", "no id"))?;
                let tab = rest.iter().position(|&b| b == b'\t').ok_or_else(|| ProtocolError::broken("CONT", "no TAB after the id"))?;
                let id = parse_id(&rest[..tab]).ok_or_else(|| ProtocolError::broken("CONT", "bad id"))?;
                Ok(ClientCommand::Cont { id, data: rest[tab + 1..].to_vec() })
            }
            b"CANCEL" => {
                let id = rest.and_then(parse_u32).ok_or_else(|| ProtocolError::broken("CANCEL", "bad id"))?;
                Ok(ClientCommand::Cancel { id })
            }
            other => Err(ProtocolError::UnknownCommand(super::sanitize(other, 20))),
        }
    }
}

fn parse_id(field: &[u8]) -> Option<RequestId> {
    match parse_u32(field) {
        Some(0) | None => None,
        Some(id) => Some(RequestId(id)),
    }
}

fn text(field: &[u8]) -> String {
    // Valid UTF-8 (the usual case) keeps the unescaped buffer: one allocation.
    String::from_utf8(unescape(field)).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn parse_auth(rest: &[u8]) -> Result<AuthCommand, ProtocolError> {
    // Walked in place (no list of fields is built): `AUTH` is the line every login sends.
    let mut fields = rest.split(|&b| b == b'\t');
    let (Some(id), Some(mech)) = (fields.next().filter(|_| !rest.is_empty()), fields.next()) else {
        return Err(ProtocolError::broken("AUTH", "fewer than two fields"));
    };
    let id = parse_id(id).ok_or_else(|| ProtocolError::broken("AUTH", "bad id"))?;
    let mechanism = text(mech);
    if mechanism.is_empty() {
        return Err(ProtocolError::broken("AUTH", "empty mechanism"));
    }
    let mut p = AuthParams::default();
    let mut service = None;
    let mut resp = InitialResponse::Absent;
    while let Some(field) = fields.next() {
        let (key, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], Some(&field[eq + 1..])),
            None => (field, None),
        };
        if key == b"resp" {
            if fields.clone().next().is_some() {
                return Err(ProtocolError::broken("AUTH", "parameters after 'resp'"));
            }
            // Base64 never contains escape bytes, but un-escape anyway as Dovecot does.
            let value = unescape(value.unwrap_or_default());
            resp = if value.is_empty() { InitialResponse::EmptyValue } else { InitialResponse::Base64(value) };
            continue;
        }
        let value = value.unwrap_or_default();
        match key {
            b"service" | b"protocol" => service = Some(text(value)),
            b"lip" => p.lip = ip(value),
            b"rip" => p.rip = ip(value),
            b"lport" => p.lport = port(value),
            b"rport" => p.rport = port(value),
            b"real_lip" => p.real_lip = ip(value),
            b"real_rip" => p.real_rip = ip(value),
            b"real_lport" => p.real_lport = port(value),
            b"real_rport" => p.real_rport = port(value),
            b"local_name" => p.local_name = Some(text(value)),
            b"session" => p.session = Some(text(value)),
            b"client_id" => p.client_id = Some(text(value)),
            b"forward_fields" => p.forward_fields = forward_fields(value),
            b"debug" => p.debug = true,
            b"secured" => p.secured = Some(if value == b"tls" { Secured::Tls } else { Secured::Yes }),
            b"valid-client-cert" => p.valid_client_cert = true,
            b"cert_username" => p.cert_username = Some(text(value)),
            b"no-penalty" => p.no_penalty = true,
            b"final-resp-ok" => p.final_resp_ok = true,
            _ => {} // unknown parameters are ignored (nologin, transport=, tls_*, ...)
        }
    }
    p.service = service.ok_or_else(|| ProtocolError::broken("AUTH", "no service"))?;
    p.real_lip = p.real_lip.or(p.lip);
    p.real_rip = p.real_rip.or(p.rip);
    p.real_lport = p.real_lport.or(p.lport);
    p.real_rport = p.real_rport.or(p.rport);
    Ok(AuthCommand { id, mechanism, params: p, resp })
}

fn ip(value: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(&unescape(value)).ok()?.parse().ok()
}

fn port(value: &[u8]) -> Option<u16> {
    parse_u32(value).and_then(|n| u16::try_from(n).ok())
}

/// `forward_fields` is escaped twice: once as a field of the line, and each `key=value` item of
/// the TAB-joined list on its own. An item without `=` keeps its bare name (Dovecot's quirk);
/// the others become `forward_<key>`.
fn forward_fields(value: &[u8]) -> Vec<(String, String)> {
    let list = unescape(value);
    split_tabs(&list)
        .into_iter()
        .map(|item| {
            let item = unescape(item);
            match item.iter().position(|&b| b == b'=') {
                Some(eq) => (format!("forward_{}", String::from_utf8_lossy(&item[..eq])), String::from_utf8_lossy(&item[eq + 1..]).into_owned()),
                None => (String::from_utf8_lossy(&item).into_owned(), String::new()),
            }
        })
        .collect()
}

/// Builds one reply line. Every value is escaped; a field with an empty value is written as its
/// bare key, as Dovecot does (`nologin`, not `nologin=`).
#[derive(Debug)]
pub struct Reply {
    line: Vec<u8>,
}

impl Reply {
    /// Starts a reply: `VERB<TAB>id`.
    pub fn new(verb: &str, id: impl std::fmt::Display) -> Reply {
        Reply { line: format!("{verb}\t{id}").into_bytes() }
    }

    /// Appends `<TAB>key=escaped value`, or `<TAB>key` when the value is empty.
    pub fn field(mut self, key: &str, value: &[u8]) -> Reply {
        self.line.push(b'\t');
        self.line.extend_from_slice(key.as_bytes());
        if !value.is_empty() {
            self.line.push(b'=');
            escape_into(value, &mut self.line);
        }
        self
    }

    /// Appends `<TAB>key=` even when the value is empty (Dovecot's `original_user=`).
    pub fn field_explicit(mut self, key: &str, value: &[u8]) -> Reply {
        self.line.push(b'\t');
        self.line.extend_from_slice(key.as_bytes());
        self.line.push(b'=');
        escape_into(value, &mut self.line);
        self
    }

    /// Appends a raw, unescaped positional field (base64 data, numbers).
    pub fn raw(mut self, value: &[u8]) -> Reply {
        self.line.push(b'\t');
        self.line.extend_from_slice(value);
        self
    }

    /// Appends `<TAB>code=<code>`.
    pub fn code(self, code: FailCode) -> Reply {
        self.field("code", code.as_str().as_bytes())
    }

    /// Finishes the line with its LF.
    pub fn finish(mut self) -> Vec<u8> {
        self.line.push(b'\n');
        self.line
    }
}

/// The server's handshake on a client socket: VERSION, the MECH lines (before SPID, which
/// Postfix requires), SPID, CUID, COOKIE, DONE.
pub fn handshake(mechs: &[(&str, Vec<&str>)], spid: u32, cuid: u32, cookie: &[u8; 16]) -> Vec<u8> {
    let mut out = format!("VERSION\t{}\t{}\n", super::MAJOR_VERSION, super::CLIENT_MINOR_VERSION);
    for (name, flags) in mechs {
        out.push_str("MECH\t");
        out.push_str(name);
        for flag in flags {
            out.push('\t');
            out.push_str(flag);
        }
        out.push('\n');
    }
    out.push_str(&format!("SPID\t{spid}\nCUID\t{cuid}\nCOOKIE\t{}\nDONE\n", hex::encode(cookie)));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(line: &[u8]) -> AuthCommand {
        match ClientCommand::parse(line) {
            Ok(ClientCommand::Auth(a)) => *a,
            other => panic!("not an AUTH: {other:?}"),
        }
    }

    #[test]
    fn handshake_lines() {
        assert_eq!(parse_version(b"VERSION\t1\t2"), Ok((1, 2)));
        assert_eq!(parse_version(b"VERSION\t1\t0"), Ok((1, 0)));
        assert!(parse_version(b"VERSION\t2\t0").is_err());
        assert!(parse_version(b"VERSION\t1\t2\tx").is_err());
        assert!(parse_version(b"VERSION\t1").is_err());
        assert!(parse_version(b"CPID\t1").is_err());
        assert_eq!(parse_cpid(b"CPID\t4242"), Ok(4242));
        assert!(parse_cpid(b"CPID\t0").is_err());
        assert!(parse_cpid(b"CPID\tx").is_err());
        assert!(parse_cpid(b"AUTH\t1\tPLAIN\tservice=x").is_err());
    }

    #[test]
    fn imap_login_auth_line() {
        let a = auth(b"AUTH\t1\tPLAIN\tservice=imap\tsecured\tsession=SQv4HfZgIJR/AAAB\tlip=127.0.0.1\trip=127.0.0.1\tlport=14143\trport=37920\tresp=AGFsaWNlAHNlY3JldA==");
        assert_eq!(a.id, RequestId(1));
        assert_eq!(a.mechanism, "PLAIN");
        assert_eq!(a.params.service, "imap");
        assert_eq!(a.params.secured, Some(Secured::Yes));
        assert_eq!(a.params.session.as_deref(), Some("SQv4HfZgIJR/AAAB"));
        assert_eq!(a.params.lip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(a.params.real_rip, a.params.rip);
        assert_eq!(a.params.lport, Some(14143));
        assert_eq!(a.params.real_rport, Some(37920));
        assert_eq!(a.resp, InitialResponse::Base64(b"AGFsaWNlAHNlY3JldA==".to_vec()));
    }

    #[test]
    fn every_parameter() {
        let a = auth(b"AUTH\t7\tlogin\tservice=smtp\tnologin\tlip=::1\trip=10.1.2.3\treal_rip=192.0.2.1\treal_lip=192.0.2.2\treal_lport=1\treal_rport=2\tlocal_name=mx.example\tclient_id=x\x01ty\tdebug\tsecured=tls\tvalid-client-cert\tcert_username=bob\tno-penalty\tfinal-resp-ok\ttransport=TLS\tresp=");
        let p = &a.params;
        assert_eq!(a.mechanism, "login");
        assert_eq!(p.lip, Some("::1".parse().unwrap()));
        assert_eq!(p.rip, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(p.real_rip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(p.real_lip, Some("192.0.2.2".parse().unwrap()));
        assert_eq!((p.real_lport, p.real_rport), (Some(1), Some(2)));
        assert_eq!(p.local_name.as_deref(), Some("mx.example"));
        assert_eq!(p.client_id.as_deref(), Some("x\ty"));
        assert!(p.debug && p.valid_client_cert && p.no_penalty && p.final_resp_ok);
        assert_eq!(p.secured, Some(Secured::Tls));
        assert_eq!(p.cert_username.as_deref(), Some("bob"));
        assert_eq!(a.resp, InitialResponse::EmptyValue);
    }

    #[test]
    fn bad_values_are_ignored_not_fatal() {
        let a = auth(b"AUTH\t1\tPLAIN\tservice=x\tlip=not-an-ip\trport=70000\trip=");
        assert_eq!(a.params.lip, None);
        assert_eq!(a.params.rport, None);
        assert_eq!(a.params.rip, None);
        assert_eq!(a.resp, InitialResponse::Absent);
    }

    #[test]
    fn protocol_field_of_2_4_is_the_service() {
        assert_eq!(auth(b"AUTH\t1\tPLAIN\tprotocol=imap").params.service, "imap");
    }

    #[test]
    fn forward_fields_are_double_unescaped() {
        let a = auth(b"AUTH\t1\tPLAIN\tservice=doveadm\tforward_fields=k=a\x011tb\x0111c\x01tbare");
        assert_eq!(a.params.forward_fields, vec![("forward_k".to_string(), "a\tb\x01c".to_string()), ("bare".to_string(), String::new())]);
    }

    #[test]
    fn broken_auth_lines() {
        for line in [
            &b"AUTH"[..],
            b"AUTH\t1",
            b"AUTH\t0\tPLAIN\tservice=x",
            b"AUTH\tx\tPLAIN\tservice=x",
            b"AUTH\t-1\tPLAIN\tservice=x",
            b"AUTH\t4294967296\tPLAIN\tservice=x",
            b"AUTH\t1\tPLAIN",
            b"AUTH\t1\tPLAIN\tlip=1.2.3.4",
            b"AUTH\t1\t\tservice=x",
            b"AUTH\t1\tPLAIN\tservice=x\tresp=AA==\tdebug",
            b"AUTH\t1\tPLAIN\tresp=AA==\tservice=x",
        ] {
            assert!(matches!(ClientCommand::parse(line), Err(ProtocolError::Broken { verb: "AUTH", .. })), "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn cont_and_cancel() {
        assert_eq!(ClientCommand::parse(b"CONT\t4\tAGFs\taWNl"), Ok(ClientCommand::Cont { id: RequestId(4), data: b"AGFs\taWNl".to_vec() }));
        assert_eq!(ClientCommand::parse(b"CONT\t1\t"), Ok(ClientCommand::Cont { id: RequestId(1), data: vec![] }));
        assert!(ClientCommand::parse(b"CONT\t1").is_err());
        assert!(ClientCommand::parse(b"CONT\tx\tAA==").is_err());
        assert!(ClientCommand::parse(b"CONT").is_err());
        assert_eq!(ClientCommand::parse(b"CANCEL\t9"), Ok(ClientCommand::Cancel { id: 9 }));
        assert!(ClientCommand::parse(b"CANCEL\tx").is_err());
        assert!(ClientCommand::parse(b"CANCEL").is_err());
        assert!(matches!(ClientCommand::parse(b""), Err(ProtocolError::UnknownCommand(_))));
        assert!(matches!(ClientCommand::parse(b"VERSION\t1\t2"), Err(ProtocolError::UnknownCommand(_))));
    }

    #[test]
    fn replies() {
        let ok = Reply::new("OK", 1).field("user", b"al\tice").field("nologin", b"").finish();
        assert_eq!(ok, b"OK\t1\tuser=al\x01tice\tnologin\n");
        let fail = Reply::new("FAIL", 2).code(FailCode::InvalidBase64).field("reason", b"x").finish();
        assert_eq!(fail, b"FAIL\t2\tcode=invalid_base64\treason=x\n");
        assert_eq!(Reply::new("CONT", 3).raw(b"").finish(), b"CONT\t3\t\n");
        assert_eq!(Reply::new("OK", 1).field_explicit("original_user", b"").finish(), b"OK\t1\toriginal_user=\n");
    }

    #[test]
    fn handshake_order() {
        let hs = handshake(&[("PLAIN", vec!["plaintext"]), ("EXTERNAL", vec![])], 42, 1, &[0xab; 16]);
        assert_eq!(
            String::from_utf8(hs).unwrap(),
            "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tEXTERNAL\nSPID\t42\nCUID\t1\nCOOKIE\tabababababababababababababababab\nDONE\n"
        );
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn auth_and_cont_never_print_the_sasl_data() {
        // base64 of "\0alice\0hunter2"
        let auth = ClientCommand::parse(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlAGh1bnRlcjI=").unwrap();
        let cont = ClientCommand::parse(b"CONT\t1\tAGFsaWNlAGh1bnRlcjI=").unwrap();
        for shown in [format!("{auth:?}"), format!("{cont:?}")] {
            assert!(!shown.contains("AGFsaWNlAGh1bnRlcjI") && !shown.contains("65, 71"), "{shown}");
            assert!(shown.contains("20"), "the size is shown: {shown}");
        }
    }
}
