//! DIGEST-MD5 (RFC 2831), authentication only (`qop=auth`), as Dovecot 2.3 does it.
//!
//! The server speaks first (an initial response is ignored):
//! `realm="…",…,nonce="<base64 of 16 random bytes>",qop="auth",charset="utf-8",algorithm="md5-sess"`,
//! with one `realm` per configured realm, or `realm=""` when there is none. The client answers
//! with a list of `key=value` directives; the credential looked up is the stored
//! `MD5(user:realm:password)` (scheme DIGEST-MD5), and on success the server's final data is
//! `rspauth=<hex>`.
//!
//! Where Dovecot 2.3.19 is lenient on *syntax* we are strict (an unterminated quoted string, a
//! bare word without `=`, text after a closing quote, or any known directive given twice fail
//! the request); its semantics we keep: `nc`, `qop` and `digest-uri` may be missing (they then
//! default to `00000001`, `auth` and nothing), `nc` is any decimal spelling of 1, `realm=""`
//! counts as no realm, and the lookup name is `username@realm` when a realm was given and the
//! username holds no `@`.
//!
//! User existence: the challenge is sent before the user name is known, and the credential is
//! looked up only with the client's digest-response, so an unknown user (or one without a
//! usable credential) fails at the same step, with the same `FAIL <id> user=<name>` line, as a
//! wrong password (tests/protocol.rs `digest_md5_hashes_the_name_the_client_sent`). No decoy
//! credential is needed (unlike SCRAM, see `auth::decoy`).

use std::fmt;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{identity, CredentialsRequest, MechContext, MechFailure, Mechanism, Step};
use crate::scheme::Scheme;

/// Random bytes in the nonce (Dovecot: 128 bits).
const NONCE_BYTES: usize = 16;
/// Longest client response we parse. RFC 2831 says a digest-response is under 4096 bytes;
/// Dovecot only has its 16 KiB line limit, so we allow what such a line can carry.
const MAX_RESPONSE_LEN: usize = 16 * 1024;
/// Length of the stored credential, `MD5(user:realm:password)`.
const CREDENTIAL_LEN: usize = 16;

/// The DIGEST-MD5 mechanism.
pub struct DigestMd5 {
    nonce: String,
    challenge: Vec<u8>,
    state: State,
}

enum State {
    ExpectResponse,
    ExpectCredentials(Box<Response>),
    Done,
}

impl fmt::Debug for DigestMd5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::ExpectResponse => "ExpectResponse",
            State::ExpectCredentials(_) => "ExpectCredentials",
            State::Done => "Done",
        };
        f.debug_struct("DigestMd5").field("nonce", &self.nonce).field("state", &state).finish()
    }
}

impl DigestMd5 {
    /// A new exchange with a fresh nonce; `ctx.realms` are offered as realms.
    pub fn new(ctx: &MechContext) -> Self {
        let nonce = base64::engine::general_purpose::STANDARD.encode(ctx.random(NONCE_BYTES));
        let challenge = challenge(&ctx.realms, &nonce);
        DigestMd5 { nonce, challenge, state: State::ExpectResponse }
    }
}

/// Dovecot's `get_digest_challenge()`, with realms quoted properly.
fn challenge(realms: &[String], nonce: &str) -> Vec<u8> {
    let mut out = String::with_capacity(128);
    if realms.is_empty() {
        // Dovecot: "If no realms are given, at least Cyrus SASL client defaults to destination
        // host name".
        out.push_str("realm=\"\",");
    }
    for realm in realms {
        out.push_str("realm=\"");
        for c in realm.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\",");
    }
    out.push_str("nonce=\"");
    out.push_str(nonce);
    out.push_str("\",qop=\"auth\",charset=\"utf-8\",algorithm=\"md5-sess\"");
    out.into_bytes()
}

impl Mechanism for DigestMd5 {
    fn start(&mut self, _initial: Option<&[u8]>) -> Step {
        // Server-first: Dovecot ignores an initial response ("no support for subsequent
        // authentication").
        Step::Challenge(self.challenge.clone())
    }

    fn step(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectResponse => match parse(response, &self.nonce) {
                Ok(resp) => {
                    let request = resp.request();
                    self.state = State::ExpectCredentials(Box::new(resp));
                    Step::LookupCredentials(request)
                }
                Err(why) => Step::Fail(why),
            },
            _ => Step::Fail(MechFailure::UnexpectedInput),
        }
    }

    fn credentials(&mut self, credential: &[u8]) -> Step {
        let State::ExpectCredentials(resp) = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Fail(MechFailure::UnexpectedInput);
        };
        let Ok(credential) = <&[u8; CREDENTIAL_LEN]>::try_from(credential) else {
            return Step::Fail(MechFailure::BadCredential);
        };
        let expected = resp.digest(credential, &self.nonce, b"AUTHENTICATE:");
        if !bool::from(expected.ct_eq(&resp.response)) {
            return Step::Fail(MechFailure::PasswordMismatch);
        }
        let mut rspauth = b"rspauth=".to_vec();
        rspauth.extend_from_slice(&resp.digest(credential, &self.nonce, b":"));
        Step::Success { final_data: Some(rspauth) }
    }
}

/// A parsed, checked digest-response. `Debug` hides `response` (a hash of the password that
/// could be attacked offline).
#[derive(PartialEq, Eq)]
struct Response {
    username: String,
    /// A non-empty `realm`.
    realm: Option<String>,
    cnonce: Vec<u8>,
    /// The `nc` value as sent (it goes into the hash), `00000001` when missing.
    nc: Vec<u8>,
    /// The `qop` value as sent (any case of `auth`), `auth` when missing.
    qop: Vec<u8>,
    digest_uri: Option<Vec<u8>>,
    authzid: Option<String>,
    /// The client's 32 hex digits, compared as text with our lower-case hex (as Dovecot does).
    response: [u8; 32],
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("cnonce", &String::from_utf8_lossy(&self.cnonce))
            .field("nc", &String::from_utf8_lossy(&self.nc))
            .field("qop", &String::from_utf8_lossy(&self.qop))
            .field("digest_uri", &self.digest_uri.as_deref().map(String::from_utf8_lossy))
            .field("authzid", &self.authzid)
            .field("response", &"<hidden>")
            .finish()
    }
}

impl Response {
    /// The credential lookup: `username@realm` when a realm was given and the username has no
    /// `@` of its own (Dovecot then marks the domain as the realm), else the username.
    fn request(&self) -> CredentialsRequest {
        let authcid = match &self.realm {
            Some(realm) if !self.username.contains('@') => format!("{}@{}", self.username, realm),
            _ => self.username.clone(),
        };
        let authzid = self.authzid.clone().filter(|z| *z != authcid);
        // What the client hashed: its username and realm as sent (Dovecot does the same).
        let hash_identity = Some((self.username.clone(), self.realm.clone().unwrap_or_default()));
        CredentialsRequest { authcid, authzid, scheme: Scheme::DigestMd5, hash_identity }
    }

    /// `HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2))))` with
    /// `A1 = H(user:realm:password):nonce:cnonce[:authzid]` and `A2 = a2_prefix digest-uri`
    /// (`AUTHENTICATE:` for the client's response, `:` for rspauth).
    fn digest(&self, credential: &[u8; CREDENTIAL_LEN], nonce: &str, a2_prefix: &[u8]) -> [u8; 32] {
        let mut a1 = Md5::new();
        a1.update(credential);
        a1.update(b":");
        a1.update(nonce.as_bytes());
        a1.update(b":");
        a1.update(&self.cnonce);
        if let Some(authzid) = &self.authzid {
            a1.update(b":");
            a1.update(authzid.as_bytes());
        }
        let a1_hex = Zeroizing::new(hex32(&a1.finalize()));

        let mut a2 = Md5::new();
        a2.update(a2_prefix);
        if let Some(uri) = &self.digest_uri {
            a2.update(uri);
        }
        let a2_hex = hex32(&a2.finalize());

        let mut kd = Md5::new();
        kd.update(a1_hex.as_slice());
        for part in [nonce.as_bytes(), self.nc.as_slice(), self.cnonce.as_slice(), self.qop.as_slice(), a2_hex.as_slice()] {
            kd.update(b":");
            kd.update(part);
        }
        hex32(&kd.finalize())
    }
}

/// Lower-case hex of an MD5 digest.
fn hex32(digest: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 16 bytes always fit 32 hex digits.
    let _ = hex::encode_to_slice(digest, &mut out);
    out
}

/// One directive: its name as sent, and its value with quoting undone.
type Directive<'a> = (&'a [u8], Vec<u8>);

/// Space or tab (Dovecot's `IS_LWS`).
fn is_lws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 2616 token characters (for directive names).
fn is_token(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// Splits a digest-response into `(key, value)` directives, strictly:
/// `*LWS key *LWS "=" *LWS (quoted-string | value) *LWS`, separated by commas (empty list
/// elements allowed). Quoted strings take backslash escapes and must be closed.
struct Directives<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Directives<'a> {
    fn skip_lws(&mut self) {
        while self.data.get(self.pos).copied().is_some_and(is_lws) {
            self.pos += 1;
        }
    }

    fn next_directive(&mut self) -> Result<Option<Directive<'a>>, MechFailure> {
        let data = self.data;
        // Skip empty list elements.
        loop {
            self.skip_lws();
            match data.get(self.pos) {
                None => return Ok(None),
                Some(b',') => self.pos += 1,
                Some(_) => break,
            }
        }
        let start = self.pos;
        while data.get(self.pos).copied().is_some_and(is_token) {
            self.pos += 1;
        }
        let key = &data[start..self.pos];
        if key.is_empty() {
            return Err(MechFailure::InvalidInput("bad directive name"));
        }
        self.skip_lws();
        if data.get(self.pos) != Some(&b'=') {
            return Err(MechFailure::InvalidInput("directive without a value"));
        }
        self.pos += 1;
        self.skip_lws();
        let value = if data.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            let mut value = Vec::new();
            loop {
                match data.get(self.pos) {
                    None => return Err(MechFailure::InvalidInput("unterminated quoted string")),
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(b'\\') => match data.get(self.pos + 1) {
                        Some(&c) => {
                            value.push(c);
                            self.pos += 2;
                        }
                        None => return Err(MechFailure::InvalidInput("unterminated quoted string")),
                    },
                    Some(&c) => {
                        value.push(c);
                        self.pos += 1;
                    }
                }
            }
            value
        } else {
            let start = self.pos;
            while data.get(self.pos).is_some_and(|&b| b != b',') {
                self.pos += 1;
            }
            let mut raw = &data[start..self.pos];
            while let [rest @ .., last] = raw {
                if !is_lws(*last) {
                    break;
                }
                raw = rest;
            }
            if raw.contains(&b'"') {
                return Err(MechFailure::InvalidInput("stray quote in a value"));
            }
            raw.to_vec()
        };
        self.skip_lws();
        match data.get(self.pos) {
            None => {}
            Some(b',') => self.pos += 1,
            Some(_) => return Err(MechFailure::InvalidInput("text after a directive's value")),
        }
        Ok(Some((key, value)))
    }
}

/// Sets a directive seen at most once.
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), MechFailure> {
    if slot.is_some() {
        return Err(MechFailure::InvalidInput("a directive appears more than once"));
    }
    *slot = Some(value);
    Ok(())
}

/// `1*DIGIT` as a number, `None` when not all digits or too large.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// Dovecot's `parse_digest_response()` + `auth_handle_response()`, strict on syntax.
fn parse(data: &[u8], our_nonce: &str) -> Result<Response, MechFailure> {
    if data.is_empty() {
        return Err(MechFailure::InvalidInput("empty response"));
    }
    if data.len() > MAX_RESPONSE_LEN {
        return Err(MechFailure::InvalidInput("response too long"));
    }
    if data.contains(&0) {
        return Err(MechFailure::InvalidInput("NUL in the response"));
    }
    let text = |v: Vec<u8>, what| String::from_utf8(v).map_err(|_| MechFailure::InvalidInput(what));

    let mut realm: Option<Option<String>> = None;
    let mut username = None;
    let mut nonce_seen = None;
    let mut cnonce = None;
    let mut nc = None;
    let mut qop = None;
    let mut digest_uri = None;
    let mut maxbuf = None;
    let mut charset = None;
    let mut response = None;
    let mut authzid = None;

    let mut directives = Directives { data, pos: 0 };
    while let Some((key, value)) = directives.next_directive()? {
        let key = key.to_ascii_lowercase();
        match key.as_slice() {
            b"realm" => {
                let value = if value.is_empty() { None } else { Some(text(value, "realm is not UTF-8")?) };
                once(&mut realm, value)?;
            }
            b"username" => once(&mut username, identity(&value, "empty username")?)?,
            b"nonce" => {
                if value != our_nonce.as_bytes() {
                    return Err(MechFailure::InvalidInput("invalid nonce"));
                }
                once(&mut nonce_seen, ())?;
            }
            b"cnonce" => {
                if value.is_empty() {
                    return Err(MechFailure::InvalidInput("empty cnonce"));
                }
                once(&mut cnonce, value)?;
            }
            b"nc" => {
                // Dovecot: str_to_uint(value) == 1, else "re-auth not supported".
                if decimal(&value) != Some(1) {
                    return Err(MechFailure::InvalidInput("nonce-count is not 1 (re-auth is not supported)"));
                }
                once(&mut nc, value)?;
            }
            b"qop" => {
                if value.eq_ignore_ascii_case(b"auth-int") || value.eq_ignore_ascii_case(b"auth-conf") {
                    return Err(MechFailure::InvalidInput("only qop=auth is supported"));
                }
                if !value.eq_ignore_ascii_case(b"auth") {
                    return Err(MechFailure::InvalidInput("unknown qop value"));
                }
                once(&mut qop, value)?;
            }
            b"digest-uri" => {
                // serv-type "/" host [ "/" serv-name ]; Dovecot only checks for the first "/".
                if !value.contains(&b'/') {
                    return Err(MechFailure::InvalidInput("invalid digest-uri"));
                }
                once(&mut digest_uri, value)?;
            }
            b"maxbuf" => match decimal(&value) {
                Some(n) if n > 0 => once(&mut maxbuf, n)?,
                _ => return Err(MechFailure::InvalidInput("invalid maxbuf value")),
            },
            b"charset" => {
                if !value.eq_ignore_ascii_case(b"utf-8") {
                    return Err(MechFailure::InvalidInput("only charset=utf-8 is allowed"));
                }
                once(&mut charset, ())?;
            }
            b"response" => {
                let Ok(digest) = <[u8; 32]>::try_from(value.as_slice()) else {
                    return Err(MechFailure::InvalidInput("response is not 32 hex digits"));
                };
                once(&mut response, digest)?;
            }
            b"authzid" => once(&mut authzid, identity(&value, "empty authzid")?)?,
            // "cipher" (we offer no confidentiality layer) and unknown directives are ignored.
            _ => {}
        }
    }

    if nonce_seen.is_none() {
        return Err(MechFailure::InvalidInput("missing nonce"));
    }
    let Some(cnonce) = cnonce else {
        return Err(MechFailure::InvalidInput("missing cnonce"));
    };
    let Some(username) = username else {
        return Err(MechFailure::InvalidInput("missing username"));
    };
    // Dovecot would look the user up and then fail the comparison against an all-zero response.
    let Some(response) = response else {
        return Err(MechFailure::InvalidInput("missing response"));
    };
    Ok(Response {
        username,
        realm: realm.flatten(),
        cnonce,
        nc: nc.unwrap_or_else(|| b"00000001".to_vec()),
        qop: qop.unwrap_or_else(|| b"auth".to_vec()),
        digest_uri,
        authzid,
        response,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sasl::FixedEntropy;

    fn ctx(realms: &[&str]) -> MechContext {
        MechContext {
            hostname: "mx.example".into(),
            realms: realms.iter().map(|r| (*r).to_owned()).collect(),
            entropy: Arc::new(FixedEntropy { seed: 1, time: 1_700_000_000 }),
        }
    }

    /// The nonce FixedEntropy { seed: 1 } gives: base64 of bytes 1..=16.
    const NONCE: &str = "AQIDBAUGBwgJCgsMDQ4PEA==";

    fn md5_hex(parts: &[&[u8]]) -> String {
        let mut h = Md5::new();
        for p in parts {
            h.update(p);
        }
        hex::encode(h.finalize())
    }

    /// Stored credential MD5(user:realm:password).
    fn cred(user: &str, realm: &str, password: &str) -> [u8; 16] {
        let mut h = Md5::new();
        h.update(format!("{user}:{realm}:{password}"));
        h.finalize().into()
    }

    /// An independent client computation (RFC 2831 §2.1.2.1), `a2_prefix` "AUTHENTICATE:" for
    /// the response and ":" for rspauth.
    #[allow(clippy::too_many_arguments)]
    fn client_digest(
        user: &str,
        realm: &str,
        password: &str,
        nonce: &str,
        cnonce: &str,
        nc: &str,
        qop: &str,
        uri: &str,
        authzid: Option<&str>,
        a2_prefix: &str,
    ) -> String {
        let mut a1 = Md5::new();
        a1.update(cred(user, realm, password));
        a1.update(format!(":{nonce}:{cnonce}"));
        if let Some(z) = authzid {
            a1.update(format!(":{z}"));
        }
        let ha1 = hex::encode(a1.finalize());
        let ha2 = md5_hex(&[a2_prefix.as_bytes(), uri.as_bytes()]);
        md5_hex(&[format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes()])
    }

    fn started(realms: &[&str]) -> DigestMd5 {
        let mut m = DigestMd5::new(&ctx(realms));
        assert!(matches!(m.start(None), Step::Challenge(_)));
        m
    }

    fn good_response(user: &str, realm: &str, password: &str) -> Vec<u8> {
        let d = client_digest(user, realm, password, NONCE, "cn0", "00000001", "auth", "imap/mx.example", None, "AUTHENTICATE:");
        format!(
            "charset=utf-8,username=\"{user}\",realm=\"{realm}\",nonce=\"{NONCE}\",nc=00000001,cnonce=\"cn0\",digest-uri=\"imap/mx.example\",response={d},qop=auth"
        )
        .into_bytes()
    }

    /// The request with its hash identity removed, to compare the lookup itself.
    fn without_identity(step: Step) -> Step {
        match step {
            Step::LookupCredentials(r) => Step::LookupCredentials(CredentialsRequest { hash_identity: None, ..r }),
            other => other,
        }
    }

    #[test]
    fn hash_identity_is_the_name_and_realm_as_sent() {
        for (user, realm) in [("alice", "example.org"), ("alice@dom.example", ""), ("Alice", "")] {
            let mut m = started(&[]);
            match m.step(&good_response(user, realm, "pw")) {
                Step::LookupCredentials(r) => assert_eq!(r.hash_identity, Some((user.to_string(), realm.to_string()))),
                other => panic!("{other:?}"),
            }
        }
    }

    fn lookup(authcid: &str, authzid: Option<&str>) -> Step {
        Step::LookupCredentials(CredentialsRequest {
            authcid: authcid.into(),
            authzid: authzid.map(Into::into),
            scheme: Scheme::DigestMd5,
            hash_identity: None,
        })
    }

    #[test]
    fn challenge_matches_dovecot_format() {
        // Dovecot 2.3.19 without auth_realms sends realm="" (checked live).
        let mut m = DigestMd5::new(&ctx(&[]));
        let want = format!("realm=\"\",nonce=\"{NONCE}\",qop=\"auth\",charset=\"utf-8\",algorithm=\"md5-sess\"");
        assert_eq!(m.start(None), Step::Challenge(want.clone().into_bytes()));
        // The initial response is ignored: the server speaks first.
        assert_eq!(DigestMd5::new(&ctx(&[])).start(Some(b"username=\"x\"")), Step::Challenge(want.into_bytes()));

        let mut m = DigestMd5::new(&ctx(&["a.example", "b\"q"]));
        let want = format!("realm=\"a.example\",realm=\"b\\\"q\",nonce=\"{NONCE}\",qop=\"auth\",charset=\"utf-8\",algorithm=\"md5-sess\"");
        assert_eq!(m.start(None), Step::Challenge(want.into_bytes()));
    }

    #[test]
    fn rfc_2831_example() {
        // RFC 2831 §4, the IMAP example: chris / secret at elwood.innosoft.com.
        let mut m = started(&["elwood.innosoft.com"]);
        m.nonce = "OA6MG9tEQGm2hh".into();
        let resp = b"charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\",digest-uri=\"imap/elwood.innosoft.com\",response=d388dad90d4bbd760a152321f2143af7,qop=auth";
        assert_eq!(without_identity(m.step(resp)), lookup("chris@elwood.innosoft.com", None));
        assert_eq!(
            m.credentials(&cred("chris", "elwood.innosoft.com", "secret")),
            Step::Success { final_data: Some(b"rspauth=ea40f60335c427b5527b84dbabcdfffd".to_vec()) }
        );
        // Nothing after success.
        assert_eq!(m.step(b"x"), Step::Fail(MechFailure::UnexpectedInput));
        assert_eq!(m.credentials(&[0; 16]), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn exchange_with_independent_client() {
        let mut m = started(&["example.org"]);
        assert_eq!(without_identity(m.step(&good_response("alice", "example.org", "pw"))), lookup("alice@example.org", None));
        let rspauth = client_digest("alice", "example.org", "pw", NONCE, "cn0", "00000001", "auth", "imap/mx.example", None, ":");
        assert_eq!(m.credentials(&cred("alice", "example.org", "pw")), Step::Success { final_data: Some(format!("rspauth={rspauth}").into_bytes()) });

        // Wrong password.
        let mut m = started(&[]);
        assert_eq!(without_identity(m.step(&good_response("alice", "example.org", "pw"))), lookup("alice@example.org", None));
        assert_eq!(m.credentials(&cred("alice", "example.org", "other")), Step::Fail(MechFailure::PasswordMismatch));

        // A stored credential of the wrong size.
        let mut m = started(&[]);
        m.step(&good_response("alice", "", "pw"));
        assert_eq!(m.credentials(&[0; 15]), Step::Fail(MechFailure::BadCredential));
    }

    #[test]
    fn lookup_name_follows_dovecot() {
        // No realm, or realm="": the username as is.
        let mut m = started(&[]);
        assert_eq!(without_identity(m.step(&good_response("alice", "", "pw"))), lookup("alice", None));
        assert_eq!(m.credentials(&cred("alice", "", "pw")), {
            let r = client_digest("alice", "", "pw", NONCE, "cn0", "00000001", "auth", "imap/mx.example", None, ":");
            Step::Success { final_data: Some(format!("rspauth={r}").into_bytes()) }
        });
        // A username with its own @domain keeps it; the realm is not appended.
        let mut m = started(&[]);
        assert_eq!(without_identity(m.step(&good_response("alice@dom.example", "other.example", "pw"))), lookup("alice@dom.example", None));
        let mut m = started(&[]);
        assert_eq!(without_identity(m.step(&good_response("alice@dom.example", "", "pw"))), lookup("alice@dom.example", None));
    }

    #[test]
    fn authzid_goes_into_a1_and_the_request() {
        for (authzid, want) in [("bob", Some("bob")), ("alice@ex", None)] {
            let d = client_digest("alice", "ex", "pw", NONCE, "c", "00000001", "auth", "smtp/h", Some(authzid), "AUTHENTICATE:");
            let resp = format!(
                "username=\"alice\",realm=\"ex\",authzid=\"{authzid}\",nonce=\"{NONCE}\",cnonce=\"c\",nc=00000001,qop=auth,digest-uri=\"smtp/h\",response={d}"
            );
            let mut m = started(&[]);
            assert_eq!(without_identity(m.step(resp.as_bytes())), lookup("alice@ex", want));
            let r = client_digest("alice", "ex", "pw", NONCE, "c", "00000001", "auth", "smtp/h", Some(authzid), ":");
            assert_eq!(m.credentials(&cred("alice", "ex", "pw")), Step::Success { final_data: Some(format!("rspauth={r}").into_bytes()) });
        }
    }

    #[test]
    fn lenient_where_dovecot_is() {
        // Each of these Dovecot 2.3.19 accepted live; `nc`, `qop` and `uri` are what the client
        // hashed with (missing nc = 00000001, missing qop = auth, missing uri = empty).
        let cases: &[(&str, &str, &str, &str)] = &[
            // (directives before response, nc, qop, uri)
            ("nc=1,qop=auth,digest-uri=\"imap/h\"", "1", "auth", "imap/h"),
            ("qop=auth,digest-uri=\"imap/h\"", "00000001", "auth", "imap/h"),
            ("nc=00000001,digest-uri=\"imap/h\"", "00000001", "auth", "imap/h"),
            ("nc=00000001,qop=auth", "00000001", "auth", ""),
            ("nc=00000001,qop=AUTH,digest-uri=imap/h", "00000001", "AUTH", "imap/h"),
            ("foo=\"bar\",cipher=rc4,maxbuf=65536,nc=00000001,qop=auth,digest-uri=\"imap/h\"", "00000001", "auth", "imap/h"),
            (" NC = 00000001 ,, QOP=\"auth\"\t,Digest-URI=\"imap/h\"", "00000001", "auth", "imap/h"),
        ];
        for (dirs, nc, qop, uri) in cases {
            let d = client_digest("alice", "", "pw", NONCE, "c\"x", nc, qop, uri, None, "AUTHENTICATE:");
            let resp = format!("username=\"alice\",nonce=\"{NONCE}\",cnonce=\"c\\\"x\",{dirs},response={d}");
            let mut m = started(&[]);
            assert_eq!(without_identity(m.step(resp.as_bytes())), lookup("alice", None), "{resp}");
            assert!(matches!(m.credentials(&cred("alice", "", "pw")), Step::Success { .. }), "{resp}");
        }
        // Upper-case hex in `response` parses but does not match (Dovecot compares text).
        let d = client_digest("alice", "", "pw", NONCE, "c", "00000001", "auth", "imap/h", None, "AUTHENTICATE:").to_uppercase();
        let resp = format!("username=\"alice\",nonce=\"{NONCE}\",cnonce=\"c\",digest-uri=\"imap/h\",response={d}");
        let mut m = started(&[]);
        m.step(resp.as_bytes());
        assert_eq!(m.credentials(&cred("alice", "", "pw")), Step::Fail(MechFailure::PasswordMismatch));
        // Escapes in quoted strings are undone before use.
        let mut m = started(&[]);
        let resp = format!("username=\"al\\\\ice\\\"\",nonce=\"{NONCE}\",cnonce=\"c\",response=00000000000000000000000000000000");
        assert_eq!(without_identity(m.step(resp.as_bytes())), lookup("al\\ice\"", None));
    }

    #[test]
    fn negative_rows() {
        let r = "response=00000000000000000000000000000000";
        let base = format!("username=\"alice\",nonce=\"{NONCE}\",cnonce=\"c\",nc=00000001,qop=auth,digest-uri=\"imap/h\"");
        let rows: Vec<(&str, Vec<u8>)> = vec![
            ("empty", b"".to_vec()),
            ("only commas and blanks", b" , ,\t".to_vec()),
            ("truncated", format!("username=\"alice\",nonce=\"{NONCE}").into_bytes()),
            ("empty response value", format!("{base},response=").into_bytes()),
            ("missing username", format!("nonce=\"{NONCE}\",cnonce=\"c\",{r}").into_bytes()),
            ("missing nonce", format!("username=\"alice\",cnonce=\"c\",{r}").into_bytes()),
            ("missing cnonce", format!("username=\"alice\",nonce=\"{NONCE}\",{r}").into_bytes()),
            ("missing response", base.clone().into_bytes()),
            ("wrong nonce", format!("username=\"alice\",nonce=\"AAAA\",cnonce=\"c\",{r}").into_bytes()),
            ("empty nonce", format!("username=\"alice\",nonce=\"\",cnonce=\"c\",{r}").into_bytes()),
            ("empty username", format!("username=\"\",nonce=\"{NONCE}\",cnonce=\"c\",{r}").into_bytes()),
            ("empty cnonce", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"\",{r}").into_bytes()),
            ("empty authzid", format!("{base},{r},authzid=\"\"").into_bytes()),
            ("nc 2", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",nc=00000002,{r}").into_bytes()),
            ("nc 0", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",nc=00000000,{r}").into_bytes()),
            ("nc hex", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",nc=0000000x,{r}").into_bytes()),
            ("nc empty", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",nc=,{r}").into_bytes()),
            ("nc huge", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",nc=99999999999999999999999,{r}").into_bytes()),
            ("auth-int", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",qop=auth-int,{r}").into_bytes()),
            ("auth-conf", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",qop=\"auth-conf\",{r}").into_bytes()),
            ("unknown qop", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",qop=authx,{r}").into_bytes()),
            ("digest-uri without /", format!("username=\"a\",nonce=\"{NONCE}\",cnonce=\"c\",digest-uri=\"imap\",{r}").into_bytes()),
            ("charset latin1", format!("charset=iso-8859-1,{base},{r}").into_bytes()),
            ("maxbuf 0", format!("maxbuf=0,{base},{r}").into_bytes()),
            ("maxbuf not a number", format!("maxbuf=12k,{base},{r}").into_bytes()),
            ("short response", format!("{base},response=0000").into_bytes()),
            ("long response", format!("{base},{r}0").into_bytes()),
            ("duplicate username", format!("username=\"bob\",{base},{r}").into_bytes()),
            ("duplicate nonce", format!("nonce=\"{NONCE}\",{base},{r}").into_bytes()),
            ("duplicate cnonce", format!("cnonce=\"d\",{base},{r}").into_bytes()),
            ("duplicate nc", format!("nc=1,{base},{r}").into_bytes()),
            ("duplicate qop", format!("qop=auth,{base},{r}").into_bytes()),
            ("duplicate digest-uri", format!("digest-uri=\"imap/x\",{base},{r}").into_bytes()),
            ("duplicate response", format!("{base},{r},{r}").into_bytes()),
            ("duplicate realm", format!("realm=\"\",realm=\"x\",{base},{r}").into_bytes()),
            ("duplicate authzid", format!("authzid=\"x\",authzid=\"x\",{base},{r}").into_bytes()),
            ("duplicate charset", format!("charset=utf-8,charset=utf-8,{base},{r}").into_bytes()),
            ("duplicate maxbuf", format!("maxbuf=1,maxbuf=1,{base},{r}").into_bytes()),
            ("unterminated quote", format!("{base},{r},realm=\"x").into_bytes()),
            ("unterminated quote after escape", format!("{base},{r},realm=\"x\\").into_bytes()),
            ("unterminated quote mid-list", format!("username=\"alice,nonce=\"{NONCE}\",cnonce=\"c\",{r}").into_bytes()),
            ("text after closing quote", format!("{base},{r},realm=\"x\"y").into_bytes()),
            ("stray quote in token", format!("{base},{r},realm=x\"y\"").into_bytes()),
            ("bare word", format!("garbage,{base},{r}").into_bytes()),
            ("key without =", format!("{base},{r},realm").into_bytes()),
            ("empty key", format!("=x,{base},{r}").into_bytes()),
            ("NUL", format!("{base},{r},x=\"\0\"").into_bytes()),
            ("non-UTF-8 username", [b"username=\"\xff\",".as_slice(), format!("nonce=\"{NONCE}\",cnonce=\"c\",{r}").as_bytes()].concat()),
            ("non-UTF-8 realm", [format!("{base},{r},").as_bytes(), b"realm=\"\xc3\"".as_slice()].concat()),
            ("20 KB garbage", vec![b'A'; 20 * 1024]),
            ("20 KB of commas", vec![b','; 20 * 1024]),
            ("16 KB of valid-looking unknown directives", "x=1,".repeat(4097).into_bytes()),
        ];
        for (name, input) in rows {
            let mut m = started(&[]);
            assert!(matches!(m.step(&input), Step::Fail(MechFailure::InvalidInput(_))), "{name}");
            // A failed exchange stays failed.
            assert_eq!(m.step(&good_response("alice", "", "pw")), Step::Fail(MechFailure::UnexpectedInput), "{name}");
            assert_eq!(m.credentials(&[0; 16]), Step::Fail(MechFailure::UnexpectedInput), "{name}");
        }
    }

    #[test]
    fn wrong_round() {
        // Credentials before any response.
        let mut m = started(&[]);
        assert_eq!(m.credentials(&[0; 16]), Step::Fail(MechFailure::UnexpectedInput));
        // A second response while the lookup is pending.
        let mut m = started(&[]);
        assert!(matches!(m.step(&good_response("a", "", "p")), Step::LookupCredentials(_)));
        assert_eq!(m.step(&good_response("a", "", "p")), Step::Fail(MechFailure::UnexpectedInput));
        // Credentials twice.
        let mut m = started(&[]);
        m.step(&good_response("a", "", "p"));
        assert!(matches!(m.credentials(&cred("a", "", "p")), Step::Success { .. }));
        assert_eq!(m.credentials(&cred("a", "", "p")), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn directive_tokenizer() {
        let mut d = Directives { data: b" a = \"x\\\"y\" ,, b=plain  ,c=\"\"", pos: 0 };
        assert_eq!(d.next_directive(), Ok(Some((b"a".as_slice(), b"x\"y".to_vec()))));
        assert_eq!(d.next_directive(), Ok(Some((b"b".as_slice(), b"plain".to_vec()))));
        assert_eq!(d.next_directive(), Ok(Some((b"c".as_slice(), b"".to_vec()))));
        assert_eq!(d.next_directive(), Ok(None));
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn response_never_prints_the_digest() {
        let data = b"username=\"chris\",realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",cnonce=\"OA6MHXh6VqTrRk\",nc=00000001,qop=auth,digest-uri=\"imap/elwood.innosoft.com\",response=d388dad90d4bbd760a152321f2143af7";
        let r = parse(data, "OA6MG9tEQGm2hh").unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("d388dad9") && !shown.contains("100, 51"), "{shown}");
        assert!(shown.contains("chris"), "{shown}");
    }
}
