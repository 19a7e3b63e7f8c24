//! LOGIN (draft-murchison-sasl-login): the `Username:` and `Password:` prompts.
//!
//! A non-empty initial response is taken as the user name and answered with the password
//! prompt at once; an empty one gets the user name prompt, as Dovecot does.

use super::{identity, MechFailure, Mechanism, PlainCredentials, Step};
use crate::secret::Secret;

const USERNAME_PROMPT: &[u8] = b"Username:";
const PASSWORD_PROMPT: &[u8] = b"Password:";

/// The LOGIN mechanism.
#[derive(Debug)]
pub struct Login {
    state: State,
}

#[derive(Debug)]
enum State {
    ExpectUsername,
    ExpectPassword { user: String },
    Done,
}

impl Login {
    /// A new exchange.
    pub fn new() -> Self {
        Login { state: State::ExpectUsername }
    }
}

impl Default for Login {
    fn default() -> Self {
        Login::new()
    }
}

impl Mechanism for Login {
    fn start(&mut self, initial: Option<&[u8]>) -> Step {
        match initial {
            None | Some(b"") => Step::Challenge(USERNAME_PROMPT.to_vec()),
            Some(user) => self.step(user),
        }
    }

    fn step(&mut self, response: &[u8]) -> Step {
        match std::mem::replace(&mut self.state, State::Done) {
            State::ExpectUsername => match identity(response, super::EMPTY_USER_NAME) {
                Ok(user) => {
                    self.state = State::ExpectPassword { user };
                    Step::Challenge(PASSWORD_PROMPT.to_vec())
                }
                Err(why) => Step::Fail(why),
            },
            State::ExpectPassword { user } => Step::VerifyPlain(PlainCredentials { authcid: user, authzid: None, password: Secret::from(response) }),
            State::Done => Step::Fail(MechFailure::UnexpectedInput),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(user: &str, pass: &[u8]) -> Step {
        Step::VerifyPlain(PlainCredentials { authcid: user.into(), authzid: None, password: Secret::from(pass) })
    }

    #[test]
    fn prompts() {
        let mut m = Login::new();
        assert_eq!(m.start(None), Step::Challenge(b"Username:".to_vec()));
        assert_eq!(m.step(b"alice"), Step::Challenge(b"Password:".to_vec()));
        assert_eq!(m.step(b"secret"), verify("alice", b"secret"));
        assert_eq!(m.step(b"again"), Step::Fail(MechFailure::UnexpectedInput));
    }

    #[test]
    fn initial_response_is_the_user_name() {
        let mut m = Login::new();
        assert_eq!(m.start(Some(b"alice")), Step::Challenge(b"Password:".to_vec()));
        assert_eq!(m.step(b""), verify("alice", b""));
        assert_eq!(Login::new().start(Some(b"")), Step::Challenge(b"Username:".to_vec()));
    }

    #[test]
    fn negative_rows() {
        let mut m = Login::new();
        m.start(None);
        assert_eq!(m.step(b""), Step::Fail(MechFailure::InvalidInput("empty user name")));
        assert_eq!(m.step(b"x"), Step::Fail(MechFailure::UnexpectedInput));
        assert_eq!(Login::new().start(Some(b"\xff\xfe")), Step::Fail(MechFailure::InvalidInput("identity is not UTF-8")));
        let long = vec![b'u'; 20_000];
        assert_eq!(Login::new().start(Some(&long)), Step::Challenge(b"Password:".to_vec()));
    }
}
