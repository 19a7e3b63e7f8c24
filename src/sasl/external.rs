//! EXTERNAL (RFC 4422 appendix A): the identity comes from the TLS client certificate.
//!
//! The client's data is only the authorization identity: empty means "the certificate's user".
//! The request layer supplies the certificate user and checks it with an empty password, so
//! the passdb serving EXTERNAL must say `nopassword`.

use super::{MechFailure, Mechanism, Step};

/// The EXTERNAL mechanism.
#[derive(Debug, Default)]
pub struct External {
    done: bool,
}

impl External {
    /// A new exchange.
    pub fn new() -> Self {
        External::default()
    }
}

impl Mechanism for External {
    fn start(&mut self, initial: Option<&[u8]>) -> Step {
        match initial {
            None => Step::Challenge(Vec::new()),
            Some(authzid) => self.step(authzid),
        }
    }

    fn step(&mut self, authzid: &[u8]) -> Step {
        if std::mem::replace(&mut self.done, true) {
            return Step::Fail(MechFailure::UnexpectedInput);
        }
        match std::str::from_utf8(authzid) {
            Ok("") => Step::External { authzid: None },
            Ok(z) => Step::External { authzid: Some(z.to_owned()) },
            Err(_) => Step::Fail(MechFailure::InvalidInput("authzid is not UTF-8")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authzid_rows() {
        assert_eq!(External::new().start(Some(b"")), Step::External { authzid: None });
        assert_eq!(External::new().start(Some(b"bob")), Step::External { authzid: Some("bob".into()) });
        assert_eq!(External::new().start(Some(b"\xff")), Step::Fail(MechFailure::InvalidInput("authzid is not UTF-8")));
        let mut m = External::new();
        assert_eq!(m.start(None), Step::Challenge(vec![]));
        assert_eq!(m.step(b""), Step::External { authzid: None });
        assert_eq!(m.step(b""), Step::Fail(MechFailure::UnexpectedInput));
    }
}
