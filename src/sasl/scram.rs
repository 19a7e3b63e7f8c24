//! SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, as Dovecot 2.3
//! does them.
//!
//! 1. client-first `gs2-header client-first-bare` (as the initial response, or after an empty
//!    challenge): `n,[a=authzid],n=user,r=cnonce[,ext…]`. `p=` (channel binding) and `m=`
//!    (mandatory extensions) are refused.
//! 2. We look up the stored SCRAM credential (`iter,salt,StoredKey,ServerKey`) and send
//!    server-first `r=<cnonce><snonce>,s=<salt>,i=<iter>`.
//! 3. client-final `c=<base64 gs2-header>,r=<nonce>[,ext…],p=<proof>`; the proof is checked
//!    against StoredKey and the server's final data is `v=<ServerSignature>`.
//!
//! Dovecot 2.3.19 is lenient in places; we are strict where no conforming client can notice:
//! the gs2 flag must be exactly `n` or `y` (Dovecot looks at its first byte only), the client
//! nonce must be non-empty printable ASCII without `,`, and every extension must be
//! `ALPHA=value` (no empty fields).
//!
//! User existence (RFC 5802 §5.1): the credential is looked up after client-first, before the
//! server-first message, so a FAIL there would tell an unknown user from a known one. The
//! request layer (`auth::decoy`) hands this mechanism a decoy credential instead (a salt stable
//! for the name, 4096 iterations, random keys) and fails the request at the proof, with the same
//! FAIL line as a wrong password. The mechanism itself cannot tell a decoy from a real
//! credential. One difference remains, as with Dovecot: a user stored as plaintext gets a
//! credential derived with a fresh random salt on every attempt, while stored SCRAM credentials
//! and decoys keep theirs.

use std::fmt;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{identity, CredentialsRequest, MechContext, MechFailure, Mechanism, Step};
use crate::scheme::{scram_stored_key, ScramAlgorithm, ScramCredentials};

/// Random bytes behind the server nonce: 48 bytes are 64 base64 characters, the length of
/// Dovecot's printable nonce.
const SERVER_NONCE_BYTES: usize = 48;
/// Longest client message we parse (Dovecot's 16 KiB line limit bounds it anyway).
const MAX_MESSAGE_LEN: usize = 16 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// For the client proof: canonical padding, non-zero trailing bits tolerated (as Dovecot's
/// decoder does).
const B64_PROOF: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
);

/// A SCRAM-SHA-1 or SCRAM-SHA-256 exchange.
pub struct Scram {
    algorithm: ScramAlgorithm,
    server_nonce: String,
    state: State,
}

enum State {
    ExpectClientFirst,
    ExpectCredentials(ClientFirst),
    ExpectClientFinal(Box<Exchange>),
    Done,
}

impl fmt::Debug for Scram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::ExpectClientFirst => "ExpectClientFirst",
            State::ExpectCredentials(_) => "ExpectCredentials",
            State::ExpectClientFinal(_) => "ExpectClientFinal",
            State::Done => "Done",
        };
        f.debug_struct("Scram").field("algorithm", &self.algorithm).field("state", &state).finish_non_exhaustive()
    }
}

impl Scram {
    /// A new exchange for `algorithm`, with a fresh server nonce.
    pub fn new(algorithm: ScramAlgorithm, ctx: &MechContext) -> Self {
        Scram { algorithm, server_nonce: B64.encode(ctx.random(SERVER_NONCE_BYTES)), state: State::ExpectClientFirst }
    }

    /// SCRAM-SHA-1.
    pub fn sha1(ctx: &MechContext) -> Self {
        Scram::new(ScramAlgorithm::Sha1, ctx)
    }

    /// SCRAM-SHA-256.
    pub fn sha256(ctx: &MechContext) -> Self {
        Scram::new(ScramAlgorithm::Sha256, ctx)
    }
}

impl Mechanism for Scram {
    fn start(&mut self, initial: Option<&[u8]>) -> Step {
        match initial {
            // Dovecot's mech_generic_auth_initial: an empty challenge asks for client-first.
            None => Step::Challenge(Vec::new()),
            Some(data) => self.step(data),
        }
    }

    fn step(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectClientFirst => match parse_client_first(response) {
                Ok(first) => {
                    let request = CredentialsRequest {
                        authcid: first.authcid.clone(),
                        authzid: first.authzid.clone(),
                        scheme: self.algorithm.scheme(),
                        hash_identity: None,
                    };
                    self.state = State::ExpectCredentials(first);
                    Step::LookupCredentials(request)
                }
                Err(why) => Step::Fail(why),
            },
            State::ExpectClientFinal(exchange) => match exchange.finish(response) {
                Ok(server_final) => Step::Success { final_data: Some(server_final) },
                Err(why) => Step::Fail(why),
            },
            State::ExpectCredentials(_) | State::Done => Step::Fail(MechFailure::UnexpectedInput),
        }
    }

    fn credentials(&mut self, credential: &[u8]) -> Step {
        let State::ExpectCredentials(first) = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Fail(MechFailure::UnexpectedInput);
        };
        let Ok(text) = std::str::from_utf8(credential) else {
            return Step::Fail(MechFailure::BadCredential);
        };
        let Ok(credentials) = ScramCredentials::parse(self.algorithm, text) else {
            return Step::Fail(MechFailure::BadCredential);
        };
        let nonce = format!("{}{}", first.cnonce, self.server_nonce);
        let server_first = format!("r={nonce},s={},i={}", credentials.salt_base64(), credentials.iterations);
        let challenge = server_first.clone().into_bytes();
        self.state = State::ExpectClientFinal(Box::new(Exchange {
            gs2_header: first.gs2_header,
            client_first_bare: first.client_first_bare,
            server_first,
            nonce,
            credentials,
        }));
        Step::Challenge(challenge)
    }
}

/// What client-first told us.
#[derive(Debug, PartialEq, Eq)]
struct ClientFirst {
    /// `n,,` or `y,,` or with `a=…`: echoed base64-encoded in client-final's `c=`.
    gs2_header: String,
    client_first_bare: String,
    cnonce: String,
    authcid: String,
    /// The authorization identity, when given and different from `authcid`.
    authzid: Option<String>,
}

/// Everything needed to check client-final.
struct Exchange {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// Client nonce followed by server nonce.
    nonce: String,
    credentials: ScramCredentials,
}

impl Exchange {
    /// Checks client-final and returns server-final (`v=…`).
    fn finish(&self, data: &[u8]) -> Result<Vec<u8>, MechFailure> {
        let text = message_text(data)?;
        // client-final-message-without-proof "," proof; the proof is the last attribute.
        let Some((without_proof, proof)) = text.rsplit_once(',') else {
            return Err(MechFailure::InvalidInput("client-final has too few attributes"));
        };
        let mut fields = without_proof.split(',');
        let (Some(channel_binding), Some(nonce)) = (fields.next(), fields.next()) else {
            return Err(MechFailure::InvalidInput("client-final has too few attributes"));
        };
        // Dovecot compares the text with "c=" + base64(gs2-header); so do we (anything else,
        // bad base64 included, is a mismatch).
        if channel_binding.strip_prefix("c=") != Some(B64.encode(&self.gs2_header).as_str()) {
            return Err(MechFailure::InvalidInput("channel binding data does not match the gs2 header"));
        }
        if nonce.strip_prefix("r=") != Some(self.nonce.as_str()) {
            return Err(MechFailure::InvalidInput("wrong nonce in client-final"));
        }
        for ext in fields {
            check_extension(ext)?;
        }
        let Some(proof) = proof.strip_prefix("p=") else {
            return Err(MechFailure::InvalidInput("client-final does not end with the proof"));
        };
        let len = self.credentials.algorithm.digest_len();
        // Check the encoded length first: no allocation driven by the client.
        if proof.len() != len.div_ceil(3) * 4 {
            return Err(MechFailure::InvalidInput("ClientProof has the wrong length"));
        }
        let proof = B64_PROOF.decode(proof).map_err(|_| MechFailure::InvalidInput("ClientProof is not base64"))?;
        if proof.len() != len {
            return Err(MechFailure::InvalidInput("ClientProof has the wrong length"));
        }
        let auth_message = [self.client_first_bare.as_bytes(), b",", self.server_first.as_bytes(), b",", without_proof.as_bytes()].concat();
        match verify_proof(&self.credentials, &auth_message, &proof) {
            Some(server_final) => Ok(server_final),
            None => Err(MechFailure::PasswordMismatch),
        }
    }
}

/// RFC 5802 §3: `ClientKey = proof XOR HMAC(StoredKey, AuthMessage)` must hash to StoredKey.
/// On success returns server-final `v=base64(HMAC(ServerKey, AuthMessage))`.
fn verify_proof(credentials: &ScramCredentials, auth_message: &[u8], proof: &[u8]) -> Option<Vec<u8>> {
    let algorithm = credentials.algorithm;
    let signature = Zeroizing::new(algorithm.hmac(&credentials.stored_key, auth_message));
    if signature.len() != proof.len() {
        return None;
    }
    let client_key = Zeroizing::new(proof.iter().zip(signature.iter()).map(|(p, s)| p ^ s).collect::<Vec<u8>>());
    let stored_key = scram_stored_key(algorithm, &client_key);
    if !bool::from(stored_key.ct_eq(&credentials.stored_key)) {
        return None;
    }
    let server_signature = algorithm.hmac(&credentials.server_key, auth_message);
    let mut out = b"v=".to_vec();
    out.extend_from_slice(B64.encode(server_signature).as_bytes());
    Some(out)
}

/// A client message as text: bounded, no NUL, UTF-8.
fn message_text(data: &[u8]) -> Result<&str, MechFailure> {
    if data.is_empty() {
        return Err(MechFailure::InvalidInput("empty message"));
    }
    if data.len() > MAX_MESSAGE_LEN {
        return Err(MechFailure::InvalidInput("message too long"));
    }
    if data.contains(&0) {
        return Err(MechFailure::InvalidInput("NUL in the message"));
    }
    std::str::from_utf8(data).map_err(|_| MechFailure::InvalidInput("message is not UTF-8"))
}

/// `attr-val = ALPHA "=" value` (RFC 5802 §7); unknown optional extensions are ignored.
fn check_extension(field: &str) -> Result<(), MechFailure> {
    match field.as_bytes() {
        [a, b'=', ..] if a.is_ascii_alphabetic() => Ok(()),
        _ => Err(MechFailure::InvalidInput("malformed attribute")),
    }
}

/// `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` fails (RFC 5802 §5.1).
fn unescape_saslname(name: &str) -> Result<String, MechFailure> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3);
        match escape {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(MechFailure::InvalidInput("bad '=' escape in a name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Dovecot's `parse_scram_client_first()`, stricter on syntax.
fn parse_client_first(data: &[u8]) -> Result<ClientFirst, MechFailure> {
    let text = message_text(data)?;
    let mut gs2 = text.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (gs2.next(), gs2.next(), gs2.next()) else {
        return Err(MechFailure::InvalidInput("no gs2 header"));
    };
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(MechFailure::InvalidInput("channel binding is not supported")),
        _ => return Err(MechFailure::InvalidInput("bad gs2 channel binding flag")),
    }
    let gs2_header = text[..flag.len() + authzid.len() + 2].to_owned();
    let authzid = match authzid {
        "" => None,
        a => match a.strip_prefix("a=") {
            Some(escaped) => Some(identity(unescape_saslname(escaped)?.as_bytes(), "empty authzid")?),
            None => return Err(MechFailure::InvalidInput("bad authzid in the gs2 header")),
        },
    };

    let mut fields = bare.split(',');
    let user_field = fields.next().unwrap_or_default();
    if user_field.starts_with("m=") {
        return Err(MechFailure::InvalidInput("mandatory extensions are not supported"));
    }
    let Some(user) = user_field.strip_prefix("n=") else {
        return Err(MechFailure::InvalidInput("client-first has no user name"));
    };
    let authcid = identity(unescape_saslname(user)?.as_bytes(), super::EMPTY_USER_NAME)?;
    let Some(cnonce) = fields.next().and_then(|f| f.strip_prefix("r=")) else {
        return Err(MechFailure::InvalidInput("client-first has no nonce"));
    };
    // printable = %x21-2B / %x2D-7E; split(',') already removed commas.
    if cnonce.is_empty() || !cnonce.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MechFailure::InvalidInput("client nonce is empty or not printable"));
    }
    for ext in fields {
        check_extension(ext)?;
    }
    let authzid = authzid.filter(|z| *z != authcid);
    Ok(ClientFirst { gs2_header, client_first_bare: bare.to_owned(), cnonce: cnonce.to_owned(), authcid, authzid })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hmac::{Mac, SimpleHmac};
    use sha2::Digest;

    use super::*;
    use crate::sasl::FixedEntropy;
    use crate::scheme::Scheme;

    fn ctx() -> MechContext {
        MechContext { hostname: "mx.example".into(), realms: vec![], entropy: Arc::new(FixedEntropy { seed: 1, time: 1_700_000_000 }) }
    }

    /// FixedEntropy { seed: 1 }: base64 of bytes 1..=48.
    const SNONCE: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w";

    /// An independent client: RFC 5802 from the password, with the `hmac`/`pbkdf2` crates
    /// directly (not the scheme helpers).
    struct Client {
        algorithm: ScramAlgorithm,
        password: &'static str,
        gs2: String,
        bare: String,
    }

    fn hmac_raw(algorithm: ScramAlgorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
        match algorithm {
            ScramAlgorithm::Sha1 => {
                let mut m = <SimpleHmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            ScramAlgorithm::Sha256 => {
                let mut m = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    impl Client {
        fn new(algorithm: ScramAlgorithm, password: &'static str, gs2: &str, bare: &str) -> Self {
            Client { algorithm, password, gs2: gs2.into(), bare: bare.into() }
        }

        fn first(&self) -> Vec<u8> {
            format!("{}{}", self.gs2, self.bare).into_bytes()
        }

        /// client-final for `server_first`, and the server-final we expect.
        fn finish(&self, server_first: &[u8], extension: &str) -> (Vec<u8>, Vec<u8>) {
            let sf = std::str::from_utf8(server_first).unwrap();
            let mut nonce = "";
            let mut salt = Vec::new();
            let mut iter = 0;
            for attr in sf.split(',') {
                match attr.split_at(2) {
                    ("r=", v) => nonce = v,
                    ("s=", v) => salt = B64.decode(v).unwrap(),
                    ("i=", v) => iter = v.parse().unwrap(),
                    _ => panic!("unexpected {attr}"),
                }
            }
            let mut salted = vec![0u8; self.algorithm.digest_len()];
            match self.algorithm {
                ScramAlgorithm::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(self.password.as_bytes(), &salt, iter, &mut salted),
                ScramAlgorithm::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(self.password.as_bytes(), &salt, iter, &mut salted),
            }
            let client_key = hmac_raw(self.algorithm, &salted, b"Client Key");
            let stored_key = match self.algorithm {
                ScramAlgorithm::Sha1 => sha1::Sha1::digest(&client_key).to_vec(),
                ScramAlgorithm::Sha256 => sha2::Sha256::digest(&client_key).to_vec(),
            };
            let server_key = hmac_raw(self.algorithm, &salted, b"Server Key");
            let without_proof = format!("c={},r={nonce}{extension}", B64.encode(&self.gs2));
            let auth_message = format!("{},{sf},{without_proof}", self.bare);
            let signature = hmac_raw(self.algorithm, &stored_key, auth_message.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
            let server_signature = hmac_raw(self.algorithm, &server_key, auth_message.as_bytes());
            (format!("{without_proof},p={}", B64.encode(proof)).into_bytes(), format!("v={}", B64.encode(server_signature)).into_bytes())
        }
    }

    fn stored(algorithm: ScramAlgorithm, password: &str, salt: &[u8]) -> Vec<u8> {
        ScramCredentials::from_password(algorithm, password.as_bytes(), salt, 4096).to_stored_string().into_bytes()
    }

    fn lookup(algorithm: ScramAlgorithm, authcid: &str, authzid: Option<&str>) -> Step {
        Step::LookupCredentials(CredentialsRequest {
            authcid: authcid.into(),
            authzid: authzid.map(Into::into),
            scheme: algorithm.scheme(),
            hash_identity: None,
        })
    }

    fn server_first_of(step: Step) -> Vec<u8> {
        match step {
            Step::Challenge(c) => c,
            other => panic!("expected server-first, got {other:?}"),
        }
    }

    #[test]
    fn rfc_5802_example_sha1() {
        // RFC 5802 §5: user/pencil, client nonce fyko+d2lbbFgONRv9qkxdawL.
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let credentials = ScramCredentials::from_password(ScramAlgorithm::Sha1, b"pencil", &salt, 4096);
        let exchange = Exchange {
            gs2_header: "n,,".into(),
            client_first_bare: "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into(),
            server_first: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".into(),
            nonce: "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j".into(),
            credentials,
        };
        let client_final = b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
        assert_eq!(exchange.finish(client_final), Ok(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()));
        // One bit off in the proof.
        let bad = b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
        assert_eq!(exchange.finish(bad), Err(MechFailure::PasswordMismatch));
        // Non-zero trailing bits in the last base64 digit are tolerated, as Dovecot's decoder
        // does: "t" differs from "s" only in bits that encode nothing.
        let sloppy = b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=";
        assert_eq!(exchange.finish(sloppy), Ok(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=".to_vec()));
    }

    #[test]
    fn rfc_7677_example_sha256() {
        // RFC 7677 §3: user/pencil, client nonce rOprNGfwEbeRWgbNEkqO.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credentials = ScramCredentials::from_password(ScramAlgorithm::Sha256, b"pencil", &salt, 4096);
        // The client-first parses as the RFC's.
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.client_first_bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
        let exchange = Exchange {
            gs2_header: first.gs2_header,
            client_first_bare: first.client_first_bare,
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
            credentials,
        };
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(exchange.finish(client_final), Ok(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()));
        // The RFC 5802 (SHA-1) proof does not pass here.
        let other = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=";
        assert_eq!(exchange.finish(other), Err(MechFailure::PasswordMismatch));
    }

    #[test]
    fn full_exchanges() {
        let salt = b"0123456789abcdef";
        for algorithm in [ScramAlgorithm::Sha1, ScramAlgorithm::Sha256] {
            // An authzid equal to the user name is dropped.
            for (gs2, want_authzid) in [("n,,", None), ("y,,", None), ("n,a=bob,", Some("bob")), ("n,a=user,", None)] {
                let client = Client::new(algorithm, "pencil", gs2, "n=user,r=rOprNGfwEbeRWgbNEkqO");
                for initial in [true, false] {
                    let mut m = Scram::new(algorithm, &ctx());
                    let step = if initial {
                        m.start(Some(&client.first()))
                    } else {
                        assert_eq!(m.start(None), Step::Challenge(Vec::new()));
                        m.step(&client.first())
                    };
                    assert_eq!(step, lookup(algorithm, "user", want_authzid));
                    let sf = server_first_of(m.credentials(&stored(algorithm, "pencil", salt)));
                    assert_eq!(sf, format!("r=rOprNGfwEbeRWgbNEkqO{SNONCE},s={},i=4096", B64.encode(salt)).into_bytes());
                    let (client_final, server_final) = client.finish(&sf, "");
                    assert_eq!(m.step(&client_final), Step::Success { final_data: Some(server_final) });
                    // Nothing after success.
                    assert_eq!(m.step(b""), Step::Fail(MechFailure::UnexpectedInput));
                    assert_eq!(m.credentials(b"x"), Step::Fail(MechFailure::UnexpectedInput));
                }
            }
        }
    }

    #[test]
    fn extensions_and_escapes() {
        let algorithm = ScramAlgorithm::Sha256;
        // Escaped user name; an unknown optional extension in both client messages, which
        // still count in AuthMessage.
        let client = Client::new(algorithm, "pw", "n,a=x=3Dy=2Cz,", "n=a=2Cb=3Dc,r=abc,x=ext");
        let mut m = Scram::new(algorithm, &ctx());
        assert_eq!(m.start(Some(&client.first())), lookup(algorithm, "a,b=c", Some("x=y,z")));
        let sf = server_first_of(m.credentials(&stored(algorithm, "pw", b"salt")));
        let (client_final, server_final) = client.finish(&sf, ",y=more");
        assert_eq!(m.step(&client_final), Step::Success { final_data: Some(server_final) });
    }

    #[test]
    fn wrong_password_and_credentials() {
        for algorithm in [ScramAlgorithm::Sha1, ScramAlgorithm::Sha256] {
            let client = Client::new(algorithm, "wrong", "n,,", "n=user,r=abc");
            let mut m = Scram::new(algorithm, &ctx());
            m.start(Some(&client.first()));
            let sf = server_first_of(m.credentials(&stored(algorithm, "pencil", b"salt")));
            let (client_final, _) = client.finish(&sf, "");
            assert_eq!(m.step(&client_final), Step::Fail(MechFailure::PasswordMismatch));
        }
        // Unusable stored credentials.
        let other_alg = stored(ScramAlgorithm::Sha1, "pw", b"salt");
        let low_iter = b"4095,c2FsdA==,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec();
        let huge_iter = b"4000000000,c2FsdA==,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec();
        let bad: &[&[u8]] = &[b"", b"\xff\xfe", b"4096,c2FsdA==,AAAA", &other_alg, &low_iter, &huge_iter, &[b'9'; 20_000]];
        for cred in bad {
            let mut m = Scram::sha256(&ctx());
            m.start(Some(b"n,,n=user,r=abc"));
            assert_eq!(m.credentials(cred), Step::Fail(MechFailure::BadCredential), "{:?}", String::from_utf8_lossy(cred));
        }
    }

    #[test]
    fn client_first_negative_rows() {
        let rows: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("no comma", b"n"),
            ("one comma", b"n,"),
            ("gs2 header only", b"n,,"),
            ("channel binding", b"p=tls-unique,,n=user,r=abc"),
            ("bad flag", b"x,,n=user,r=abc"),
            ("flag with junk", b"nx,,n=user,r=abc"),
            ("empty flag", b",,n=user,r=abc"),
            ("authzid without a=", b"n,bob,n=user,r=abc"),
            ("empty authzid", b"n,a=,n=user,r=abc"),
            ("bad authzid escape", b"n,a=b=2c,n=user,r=abc"),
            ("mandatory extension", b"n,,m=foo,n=user,r=abc"),
            ("no user", b"n,,r=abc"),
            ("empty user", b"n,,n=,r=abc"),
            ("bad user escape", b"n,,n=us=41er,r=abc"),
            ("truncated user escape", b"n,,n=user=2,r=abc"),
            ("user escape at end", b"n,,n=user=,r=abc"),
            ("no nonce", b"n,,n=user"),
            ("nonce not r=", b"n,,n=user,x=abc"),
            ("empty nonce", b"n,,n=user,r="),
            ("nonce with space", b"n,,n=user,r=a c"),
            ("nonce with DEL", b"n,,n=user,r=a\x7fc"),
            ("nonce not ASCII", "n,,n=user,r=aé".as_bytes()),
            ("trailing comma", b"n,,n=user,r=abc,"),
            ("bad extension", b"n,,n=user,r=abc,1=x"),
            ("NUL", b"n,,n=us\0er,r=abc"),
            ("not UTF-8", b"n,,n=\xff,r=abc"),
            ("swapped", b"n,,r=abc,n=user"),
        ];
        for (name, input) in rows {
            let mut m = Scram::sha256(&ctx());
            assert!(matches!(m.start(Some(input)), Step::Fail(MechFailure::InvalidInput(_))), "{name}");
            // Failed stays failed.
            assert_eq!(m.step(b"n,,n=user,r=abc"), Step::Fail(MechFailure::UnexpectedInput), "{name}");
            // The same through a continuation.
            let mut m = Scram::sha1(&ctx());
            m.start(None);
            assert!(matches!(m.step(input), Step::Fail(MechFailure::InvalidInput(_))), "{name} (continued)");
        }
        let mut garbage = vec![b'A'; 20 * 1024];
        let mut m = Scram::sha256(&ctx());
        assert!(matches!(m.start(Some(&garbage)), Step::Fail(MechFailure::InvalidInput(_))));
        garbage[..9].copy_from_slice(b"n,,n=u,r=");
        let mut m = Scram::sha256(&ctx());
        assert!(matches!(m.start(Some(&garbage)), Step::Fail(MechFailure::InvalidInput(_))));
    }

    #[test]
    fn client_final_negative_rows() {
        let algorithm = ScramAlgorithm::Sha256;
        let client = Client::new(algorithm, "pencil", "n,,", "n=user,r=abc");
        let setup = || {
            let mut m = Scram::new(algorithm, &ctx());
            m.start(Some(&client.first()));
            let sf = server_first_of(m.credentials(&stored(algorithm, "pencil", b"salt")));
            (m, sf)
        };
        let (_, sf) = setup();
        let (good, _) = client.finish(&sf, "");
        let good = String::from_utf8(good).unwrap();
        let nonce = format!("abc{SNONCE}");
        let proof = good.rsplit_once(",p=").unwrap().1.to_owned();
        let rows: Vec<(&str, Vec<u8>)> = vec![
            ("empty", b"".to_vec()),
            ("truncated", good.as_bytes()[..good.len() - 10].to_vec()),
            ("proof only", format!("p={proof}").into_bytes()),
            ("two fields", format!("c=biws,p={proof}").into_bytes()),
            ("no proof", format!("c=biws,r={nonce}").into_bytes()),
            ("proof not last", format!("c=biws,r={nonce},p={proof},x=1").into_bytes()),
            ("empty proof", format!("c=biws,r={nonce},p=").into_bytes()),
            ("proof without =", format!("c=biws,r={nonce},p").into_bytes()),
            ("proof bad base64", format!("c=biws,r={nonce},p={}", "!".repeat(44)).into_bytes()),
            ("proof unpadded", format!("c=biws,r={nonce},p={}", proof.trim_end_matches('=')).into_bytes()),
            ("proof too short", format!("c=biws,r={nonce},p=AAAA").into_bytes()),
            ("proof SHA-1 length", format!("c=biws,r={nonce},p={}", B64.encode([0u8; 20])).into_bytes()),
            ("proof too long", format!("c=biws,r={nonce},p={}", B64.encode([0u8; 4096])).into_bytes()),
            ("c= other header", format!("c=eSws,r={nonce},p={proof}").into_bytes()),
            ("c= bad base64", format!("c=!!!!,r={nonce},p={proof}").into_bytes()),
            ("c= unpadded", format!("c=biw,r={nonce},p={proof}").into_bytes()),
            ("c= missing", format!("r={nonce},x=1,p={proof}").into_bytes()),
            ("nonce mismatch", format!("c=biws,r=abc{},p={proof}", &SNONCE[1..]).into_bytes()),
            ("client nonce only", format!("c=biws,r=abc,p={proof}").into_bytes()),
            ("nonce with extra", format!("c=biws,r={nonce}x,p={proof}").into_bytes()),
            ("nonce missing", format!("c=biws,x=1,p={proof}").into_bytes()),
            ("empty extension", format!("c=biws,r={nonce},,p={proof}").into_bytes()),
            ("NUL", format!("c=biws,r={nonce},p={proof}\0").into_bytes()),
            ("20 KB garbage", vec![b'A'; 20 * 1024]),
            ("20 KB of commas", vec![b','; 20 * 1024]),
            ("repeated client-first", client.first()),
        ];
        for (name, input) in rows {
            let (mut m, _) = setup();
            assert!(matches!(m.step(&input), Step::Fail(MechFailure::InvalidInput(_))), "{name}");
            // After a failure even the right answer is refused.
            assert_eq!(m.step(good.as_bytes()), Step::Fail(MechFailure::UnexpectedInput), "{name}");
        }
        // The good one passes, exactly once.
        let (mut m, _) = setup();
        assert!(matches!(m.step(good.as_bytes()), Step::Success { .. }));
        assert_eq!(m.step(good.as_bytes()), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn wrong_round() {
        // Credentials before client-first.
        let mut m = Scram::sha1(&ctx());
        assert_eq!(m.credentials(b"4096,c2FsdA==,AAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAA="), Step::Fail(MechFailure::UnexpectedInput));
        // A response while the lookup is pending.
        let mut m = Scram::sha1(&ctx());
        assert!(matches!(m.start(Some(b"n,,n=user,r=abc")), Step::LookupCredentials(_)));
        assert_eq!(m.step(b"c=biws,r=abc,p=AAAA"), Step::Fail(MechFailure::UnexpectedInput));
        // Credentials twice.
        let mut m = Scram::sha1(&ctx());
        m.start(Some(b"n,,n=user,r=abc"));
        let cred = stored(ScramAlgorithm::Sha1, "pw", b"salt");
        assert!(matches!(m.credentials(&cred), Step::Challenge(_)));
        assert_eq!(m.credentials(&cred), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn lookup_scheme_follows_the_algorithm() {
        let mut m = Scram::sha1(&ctx());
        assert_eq!(m.start(Some(b"y,,n=u,r=n")), lookup(ScramAlgorithm::Sha1, "u", None));
        assert_eq!(ScramAlgorithm::Sha1.scheme(), Scheme::ScramSha1);
        let mut m = Scram::sha256(&ctx());
        assert_eq!(m.start(Some(b"n,,n=u,r=n")), lookup(ScramAlgorithm::Sha256, "u", None));
    }

    #[test]
    fn saslname_unescaping() {
        assert_eq!(unescape_saslname("a=2Cb=3Dc"), Ok("a,b=c".into()));
        assert_eq!(unescape_saslname("=3D=3D"), Ok("==".into()));
        assert_eq!(unescape_saslname("plain"), Ok("plain".into()));
        for bad in ["=", "=2", "=2c", "=3d", "a=41", "é=", "a=é"] {
            assert!(unescape_saslname(bad).is_err(), "{bad}");
        }
    }
}
