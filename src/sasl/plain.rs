//! PLAIN (RFC 4616): `authzid NUL authcid NUL password`, exactly two NULs.
//!
//! An authzid equal to the authcid is ignored; a different non-empty one asks for a master-user
//! login, which the request layer decides on.

use super::{identity, MechFailure, Mechanism, PlainCredentials, Step};
use crate::secret::Secret;

/// The PLAIN mechanism.
#[derive(Debug)]
pub struct Plain {
    state: State,
}

#[derive(Debug)]
enum State {
    ExpectResponse,
    Done,
}

impl Plain {
    /// A new exchange.
    pub fn new() -> Self {
        Plain { state: State::ExpectResponse }
    }
}

impl Default for Plain {
    fn default() -> Self {
        Plain::new()
    }
}

impl Mechanism for Plain {
    fn start(&mut self, initial: Option<&[u8]>) -> Step {
        match initial {
            None => Step::Challenge(Vec::new()),
            Some(data) => self.step(data),
        }
    }

    fn step(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectResponse => match parse(response) {
                Ok(creds) => Step::VerifyPlain(creds),
                Err(why) => Step::Fail(why),
            },
            State::Done => Step::Fail(MechFailure::UnexpectedInput),
        }
    }
}

fn parse(data: &[u8]) -> Result<PlainCredentials, MechFailure> {
    let mut parts = data.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(MechFailure::InvalidInput("PLAIN needs exactly two NULs"));
    };
    let authcid = identity(authcid, super::EMPTY_USER_NAME)?;
    let authzid = match authzid {
        b"" => None,
        z if z == authcid.as_bytes() => None,
        z => Some(identity(z, "empty authzid")?),
    };
    Ok(PlainCredentials { authcid, authzid, password: Secret::from(password) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(initial: Option<&[u8]>) -> Step {
        Plain::new().start(initial)
    }

    fn ok(user: &str, authzid: Option<&str>, pass: &[u8]) -> Step {
        Step::VerifyPlain(PlainCredentials { authcid: user.into(), authzid: authzid.map(Into::into), password: Secret::from(pass) })
    }

    #[test]
    fn table() {
        let invalid = |why| Step::Fail(MechFailure::InvalidInput(why));
        let two = "PLAIN needs exactly two NULs";
        let rows: &[(&[u8], Step)] = &[
            (b"\0alice\0secret", ok("alice", None, b"secret")),
            (b"alice\0alice\0secret", ok("alice", None, b"secret")),
            (b"bob\0alice\0secret", ok("alice", Some("bob"), b"secret")),
            (b"\0alice\0", ok("alice", None, b"")),
            (b"\0al ice\0p\xffw", ok("al ice", None, b"p\xffw")),
            (b"", invalid(two)),
            (b"alice", invalid(two)),
            (b"\0alice", invalid(two)),
            (b"\0alice\0secret\0", invalid(two)),
            (b"\0alice\0se\0cret", invalid(two)),
            (b"\0\0\0", invalid(two)),
            (b"\0\0secret", invalid(crate::sasl::EMPTY_USER_NAME)),
            (b"\0\xff\xfe\0secret", invalid("identity is not UTF-8")),
            (b"\xff\0alice\0secret", invalid("identity is not UTF-8")),
        ];
        for (input, want) in rows {
            assert_eq!(&run(Some(input)), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn no_initial_response_gets_empty_challenge_then_one_response() {
        let mut m = Plain::new();
        assert_eq!(m.start(None), Step::Challenge(vec![]));
        assert_eq!(m.step(b"\0alice\0secret"), ok("alice", None, b"secret"));
        assert_eq!(m.step(b"\0alice\0secret"), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn over_long_input_is_handled() {
        let mut big = vec![b'a'; 100_000];
        big.extend_from_slice(b"\0b\0c");
        assert!(matches!(run(Some(&big)), Step::VerifyPlain(_)));
    }
}
