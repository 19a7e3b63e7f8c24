//! The master protocol (auth-master, auth-userdb sockets): REQUEST, USER, PASS, LIST,
//! CACHE-FLUSH.
//!
//! Master peers (Dovecot's mail processes, doveadm, lmtp) are trusted programs; a malformed line
//! from one closes its connection. Every field is un-escaped.

use super::escape::unescape;
use super::{parse_u32, split_tabs, ProtocolError};

/// The peer's `VERSION` line. Only the major version is checked, as Dovecot does.
pub fn parse_version(line: &[u8]) -> Result<u32, ProtocolError> {
    let fields = split_tabs(line);
    match fields.as_slice() {
        [b"VERSION", major, minor, ..] => match (parse_u32(major), parse_u32(minor)) {
            (Some(super::MAJOR_VERSION), Some(minor)) => Ok(minor),
            _ => Err(ProtocolError::Handshake("master not compatible".into())),
        },
        [b"CPID", ..] => Err(ProtocolError::Handshake("an authentication client is trying to connect to a master socket".into())),
        _ => Err(ProtocolError::Handshake("the first line is not VERSION".into())),
    }
}

/// The server's master handshake: exactly VERSION and SPID (imap checks that SPID follows).
pub fn handshake(spid: u32) -> Vec<u8> {
    format!("VERSION\t{}\t{}\nSPID\t{spid}\n", super::MAJOR_VERSION, super::MASTER_MINOR_VERSION).into_bytes()
}

/// Request information a master lookup carries (`service=`, IPs, ...), kept as key/value text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupInfo {
    /// `service=`, empty when not given (only LIST may omit it).
    pub service: String,
    /// Every other `key=value` parameter (un-escaped), in order.
    pub params: Vec<(String, String)>,
}

impl LookupInfo {
    /// The value of a parameter other than `service`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A command on a master or userdb socket. `Debug` hides a REQUEST's cookie.
#[derive(PartialEq, Eq)]
pub enum MasterCommand {
    /// Claim a login finished on a login socket.
    Request {
        /// Reply id.
        id: u32,
        /// The CPID of the login connection.
        client_pid: u32,
        /// The id the login process used in AUTH.
        client_id: u32,
        /// The login connection's COOKIE; `None` unless exactly 32 hex characters.
        cookie: Option<[u8; 16]>,
        /// `session_pid=`.
        session_pid: Option<u32>,
        /// `request_auth_token`.
        request_auth_token: bool,
    },
    /// A userdb lookup by name.
    User {
        /// Reply id.
        id: u32,
        /// The user name as given.
        user: String,
        /// Request information.
        info: LookupInfo,
    },
    /// A passdb lookup without authentication.
    Pass {
        /// Reply id.
        id: u32,
        /// The user name as given.
        user: String,
        /// Request information.
        info: LookupInfo,
    },
    /// Iterate the users.
    List {
        /// Reply id.
        id: u32,
        /// `user=` mask, handed to iterators that understand it.
        mask: Option<String>,
        /// Request information.
        info: LookupInfo,
    },
    /// Flush the auth cache, of some users or of all.
    CacheFlush {
        /// Reply id.
        id: u32,
        /// Users to flush; empty means everything.
        users: Vec<String>,
    },
}

impl std::fmt::Debug for MasterCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterCommand::Request { id, client_pid, client_id, cookie, session_pid, request_auth_token } => f
                .debug_struct("Request")
                .field("id", id)
                .field("client_pid", client_pid)
                .field("client_id", client_id)
                .field("cookie", &cookie.map(|_| "<hidden>"))
                .field("session_pid", session_pid)
                .field("request_auth_token", request_auth_token)
                .finish(),
            MasterCommand::User { id, user, info } => f.debug_struct("User").field("id", id).field("user", user).field("info", info).finish(),
            MasterCommand::Pass { id, user, info } => f.debug_struct("Pass").field("id", id).field("user", user).field("info", info).finish(),
            MasterCommand::List { id, mask, info } => f.debug_struct("List").field("id", id).field("mask", mask).field("info", info).finish(),
            MasterCommand::CacheFlush { id, users } => f.debug_struct("CacheFlush").field("id", id).field("users", users).finish(),
        }
    }
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

fn info(fields: &[&[u8]], service_required: bool, verb: &'static str) -> Result<(LookupInfo, Option<String>), ProtocolError> {
    let mut info = LookupInfo::default();
    let mut service = None;
    let mut mask = None;
    for field in fields {
        let (key, value) = match field.iter().position(|&b| b == b'=') {
            Some(eq) => (&field[..eq], &field[eq + 1..]),
            None => (&field[..], &b""[..]),
        };
        match key {
            b"service" | b"protocol" => service = Some(text(value)),
            b"user" if verb == "LIST" => mask = Some(text(value)),
            _ => info.params.push((text(key), text(value))),
        }
    }
    match service {
        Some(s) => info.service = s,
        None if service_required => return Err(ProtocolError::broken(verb, "no service")),
        None => {}
    }
    Ok((info, mask))
}

impl MasterCommand {
    /// Parses one line (terminator removed).
    pub fn parse(line: &[u8]) -> Result<MasterCommand, ProtocolError> {
        let fields = split_tabs(line);
        let Some((verb, args)) = fields.split_first() else {
            return Err(ProtocolError::UnknownCommand(String::new()));
        };
        match *verb {
            b"REQUEST" => {
                let [id, pid, cid, cookie, extra @ ..] = args else {
                    return Err(ProtocolError::broken("REQUEST", "fewer than four fields"));
                };
                let num = |f: &[u8]| parse_u32(f).ok_or_else(|| ProtocolError::broken("REQUEST", "bad number"));
                let (id, client_pid, client_id) = (num(id)?, num(pid)?, num(cid)?);
                if cookie.len() % 2 != 0 || !cookie.iter().all(u8::is_ascii_hexdigit) {
                    return Err(ProtocolError::broken("REQUEST", "bad cookie"));
                }
                let cookie = hex::decode(cookie).ok().and_then(|c| <[u8; 16]>::try_from(c).ok());
                let mut session_pid = None;
                let mut request_auth_token = false;
                for field in extra {
                    if let Some(v) = field.strip_prefix(b"session_pid=") {
                        session_pid = parse_u32(v);
                    } else if *field == b"request_auth_token" {
                        request_auth_token = true;
                    }
                }
                Ok(MasterCommand::Request { id, client_pid, client_id, cookie, session_pid, request_auth_token })
            }
            b"USER" | b"PASS" => {
                let is_user = *verb == b"USER";
                let verb_name = if is_user { "USER" } else { "PASS" };
                let [id, user, rest @ ..] = args else {
                    return Err(ProtocolError::broken(verb_name, "fewer than two fields"));
                };
                let id = parse_u32(id).ok_or_else(|| ProtocolError::broken(verb_name, "bad id"))?;
                let user = text(user);
                let (info, _) = info(rest, true, verb_name)?;
                Ok(if is_user { MasterCommand::User { id, user, info } } else { MasterCommand::Pass { id, user, info } })
            }
            b"LIST" => {
                let [id, rest @ ..] = args else {
                    return Err(ProtocolError::broken("LIST", "no id"));
                };
                let id = parse_u32(id).ok_or_else(|| ProtocolError::broken("LIST", "bad id"))?;
                let (info, mask) = info(rest, false, "LIST")?;
                Ok(MasterCommand::List { id, mask, info })
            }
            b"CACHE-FLUSH" => {
                let [id, users @ ..] = args else {
                    return Err(ProtocolError::broken("CACHE-FLUSH", "no id"));
                };
                let id = parse_u32(id).ok_or_else(|| ProtocolError::broken("CACHE-FLUSH", "bad id"))?;
                Ok(MasterCommand::CacheFlush { id, users: users.iter().map(|u| text(u)).collect() })
            }
            other => Err(ProtocolError::UnknownCommand(super::sanitize(other, 20))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"VERSION\t1\t1"), Ok(1));
        assert_eq!(parse_version(b"VERSION\t1\t0"), Ok(0));
        assert!(parse_version(b"VERSION\t2\t0").is_err());
        assert!(parse_version(b"CPID\t1").is_err());
        assert!(parse_version(b"USER\t1\tx\tservice=y").is_err());
        assert_eq!(handshake(7), b"VERSION\t1\t1\nSPID\t7\n");
    }

    #[test]
    fn request_line_from_imap() {
        let cmd = MasterCommand::parse(b"REQUEST\t2609381377\t18413\t1\t71444db7316b0131114bc545f9675801\tsession_pid=18414\trequest_auth_token").unwrap();
        let MasterCommand::Request { id, client_pid, client_id, cookie, session_pid, request_auth_token } = cmd else {
            panic!("not a REQUEST");
        };
        assert_eq!((id, client_pid, client_id), (2_609_381_377, 18413, 1));
        assert_eq!(cookie.map(hex::encode).as_deref(), Some("71444db7316b0131114bc545f9675801"));
        assert_eq!(session_pid, Some(18414));
        assert!(request_auth_token);
        // A short cookie is a mismatch, not a protocol error; odd or non-hex ones are broken.
        assert!(matches!(MasterCommand::parse(b"REQUEST\t1\t2\t3\tabcd"), Ok(MasterCommand::Request { cookie: None, .. })));
        assert!(MasterCommand::parse(b"REQUEST\t1\t2\t3\tabc").is_err());
        assert!(MasterCommand::parse(b"REQUEST\t1\t2\t3\txyzw").is_err());
        assert!(MasterCommand::parse(b"REQUEST\t1\t2\t3").is_err());
    }

    #[test]
    fn lookups() {
        assert_eq!(
            MasterCommand::parse(b"USER\t1\talice\tservice=imap\trandom=1"),
            Ok(MasterCommand::User { id: 1, user: "alice".into(), info: LookupInfo { service: "imap".into(), params: vec![("random".into(), "1".into())] } })
        );
        assert!(MasterCommand::parse(b"USER\t1\talice").is_err());
        assert!(MasterCommand::parse(b"PASS\t1\talice").is_err());
        assert!(matches!(MasterCommand::parse(b"PASS\t3\tbob\tservice=doveadm\tdebug"), Ok(MasterCommand::Pass { id: 3, .. })));
        assert_eq!(
            MasterCommand::parse(b"LIST\t1\tuser=a*\tservice=doveadm"),
            Ok(MasterCommand::List { id: 1, mask: Some("a*".into()), info: LookupInfo { service: "doveadm".into(), params: vec![] } })
        );
        assert!(matches!(MasterCommand::parse(b"LIST\t2"), Ok(MasterCommand::List { id: 2, mask: None, .. })));
        assert_eq!(MasterCommand::parse(b"CACHE-FLUSH\t9"), Ok(MasterCommand::CacheFlush { id: 9, users: vec![] }));
        assert!(MasterCommand::parse(b"NOPE\t1").is_err());
        assert!(MasterCommand::parse(b"").is_err());
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn request_never_prints_the_cookie() {
        let cmd = MasterCommand::parse(b"REQUEST\t1\t42\t7\tabababababababababababababababab").unwrap();
        assert!(matches!(cmd, MasterCommand::Request { cookie: Some(_), .. }), "{cmd:?}");
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("171") && !shown.contains("abab"), "{shown}");
    }
}
