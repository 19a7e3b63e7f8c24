//! CRAM-MD5 (RFC 2195): the server sends `<random.time@host>`, the client answers
//! `user SP hex(HMAC-MD5(password, challenge))`.
//!
//! The check needs the stored CRAM-MD5 credential (the HMAC-MD5 inner and outer states) or a
//! plaintext password the request layer converts to it. An initial response is ignored: the
//! server always speaks first.
//!
//! User existence: the challenge is sent before the user name is known, and the credential is
//! looked up only with the client's one answer, so an unknown user (or one without a CRAM-MD5
//! credential) fails at the same step, with the same `FAIL <id> user=<name>` line, as a wrong
//! password (tests/protocol.rs `cram_md5_with_stored_context_and_with_plaintext`). No decoy
//! credential is needed (unlike SCRAM, see `auth::decoy`).

use subtle::ConstantTimeEq;

use super::{identity, CredentialsRequest, MechContext, MechFailure, Mechanism, Step};
use crate::scheme::{cram_md5_response, Scheme, CRAM_MD5_CONTEXT_LEN};

/// The CRAM-MD5 mechanism.
#[derive(Debug)]
pub struct CramMd5 {
    challenge: Vec<u8>,
    state: State,
}

#[derive(Debug)]
enum State {
    ExpectResponse,
    ExpectCredentials { digest: [u8; 16] },
    Done,
}

impl CramMd5 {
    /// A new exchange with a fresh challenge.
    pub fn new(ctx: &MechContext) -> Self {
        let random = ctx.random(8);
        let mut n = [0u8; 8];
        n.copy_from_slice(&random);
        let challenge = format!("<{}.{}@{}>", u64::from_le_bytes(n), ctx.entropy.unix_time(), ctx.hostname).into_bytes();
        CramMd5 { challenge, state: State::ExpectResponse }
    }
}

impl Mechanism for CramMd5 {
    fn start(&mut self, _initial: Option<&[u8]>) -> Step {
        Step::Challenge(self.challenge.clone())
    }

    fn step(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectResponse => match parse(response) {
                Ok((user, digest)) => {
                    self.state = State::ExpectCredentials { digest };
                    Step::LookupCredentials(CredentialsRequest { authcid: user, authzid: None, scheme: Scheme::CramMd5, hash_identity: None })
                }
                Err(why) => Step::Fail(why),
            },
            _ => Step::Fail(MechFailure::UnexpectedInput),
        }
    }

    fn credentials(&mut self, credential: &[u8]) -> Step {
        let State::ExpectCredentials { digest } = std::mem::replace(&mut self.state, State::Done) else {
            return Step::Fail(MechFailure::UnexpectedInput);
        };
        let Ok(context) = <&[u8; CRAM_MD5_CONTEXT_LEN]>::try_from(credential) else {
            return Step::Fail(MechFailure::BadCredential);
        };
        let expected = cram_md5_response(context, &self.challenge);
        if bool::from(expected.ct_eq(&digest)) {
            Step::Success { final_data: None }
        } else {
            Step::Fail(MechFailure::PasswordMismatch)
        }
    }
}

/// `user SP 32-hex-digits`, split at the last space (user names may hold spaces).
fn parse(response: &[u8]) -> Result<(String, [u8; 16]), MechFailure> {
    let space = response.iter().rposition(|&b| b == b' ').ok_or(MechFailure::InvalidInput("no space in the response"))?;
    let user = identity(&response[..space], "empty user name")?;
    let hex_digest = &response[space + 1..];
    let mut digest = [0u8; 16];
    if hex_digest.len() != 32 || hex::decode_to_slice(hex_digest, &mut digest).is_err() {
        return Err(MechFailure::InvalidInput("the digest is not 32 hex digits"));
    }
    Ok((user, digest))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sasl::FixedEntropy;
    use crate::scheme::cram_md5_context;

    fn ctx() -> MechContext {
        MechContext { hostname: "mx.example".into(), realms: vec![], entropy: Arc::new(FixedEntropy { seed: 1, time: 1_700_000_000 }) }
    }

    fn answer(m: &CramMd5, user: &str, password: &[u8]) -> Vec<u8> {
        let digest = cram_md5_response(&cram_md5_context(password), &m.challenge);
        format!("{user} {}", hex::encode(digest)).into_bytes()
    }

    #[test]
    fn challenge_is_deterministic_with_fixed_entropy() {
        let mut m = CramMd5::new(&ctx());
        assert_eq!(m.start(None), Step::Challenge(b"<578437695752307201.1700000000@mx.example>".to_vec()));
        // An initial response does not change that the server speaks first.
        assert_eq!(CramMd5::new(&ctx()).start(Some(b"junk")), Step::Challenge(b"<578437695752307201.1700000000@mx.example>".to_vec()));
    }

    #[test]
    fn right_and_wrong_password() {
        let mut m = CramMd5::new(&ctx());
        m.start(None);
        let resp = answer(&m, "alice smith", b"secret");
        assert_eq!(
            m.step(&resp),
            Step::LookupCredentials(CredentialsRequest { authcid: "alice smith".into(), authzid: None, scheme: Scheme::CramMd5, hash_identity: None })
        );
        assert_eq!(m.credentials(&cram_md5_context(b"secret")), Step::Success { final_data: None });
        assert_eq!(m.step(b"x"), Step::Fail(MechFailure::UnexpectedInput));

        let mut m = CramMd5::new(&ctx());
        m.start(None);
        let resp = answer(&m, "alice", b"secret");
        m.step(&resp);
        assert_eq!(m.credentials(&cram_md5_context(b"other")), Step::Fail(MechFailure::PasswordMismatch));
    }

    #[test]
    fn rfc_2195_example() {
        let mut m = CramMd5::new(&ctx());
        m.challenge = b"<1896.697170952@postoffice.reston.mci.net>".to_vec();
        m.step(b"tim b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(m.credentials(&cram_md5_context(b"tanstaaftanstaaf")), Step::Success { final_data: None });
    }

    #[test]
    fn negative_rows() {
        let bad: &[&[u8]] = &[
            b"",
            b"alice",
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"alice b913a602c7eda7a495b4e6e7334d389",
            b"alice b913a602c7eda7a495b4e6e7334d38900",
            b"alice z913a602c7eda7a495b4e6e7334d3890",
            b"alice ",
            b"\xff b913a602c7eda7a495b4e6e7334d3890",
        ];
        for input in bad {
            let mut m = CramMd5::new(&ctx());
            m.start(None);
            assert!(matches!(m.step(input), Step::Fail(MechFailure::InvalidInput(_))), "{:?}", String::from_utf8_lossy(input));
        }
        // Credentials out of turn, or of the wrong size.
        let mut m = CramMd5::new(&ctx());
        assert_eq!(m.credentials(&[0; 32]), Step::Fail(MechFailure::UnexpectedInput));
        let mut m = CramMd5::new(&ctx());
        m.start(None);
        m.step(b"alice b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(m.credentials(&[0; 31]), Step::Fail(MechFailure::BadCredential));
    }
}
