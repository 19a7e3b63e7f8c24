//! ANONYMOUS (RFC 4505): any trace data, and the login is the configured anonymous user.

use super::{Mechanism, Step};

/// The ANONYMOUS mechanism.
#[derive(Debug, Default)]
pub struct Anonymous {
    done: bool,
}

impl Anonymous {
    /// A new exchange.
    pub fn new() -> Self {
        Anonymous::default()
    }
}

impl Mechanism for Anonymous {
    fn start(&mut self, initial: Option<&[u8]>) -> Step {
        match initial {
            None => Step::Challenge(Vec::new()),
            Some(trace) => self.step(trace),
        }
    }

    fn step(&mut self, trace: &[u8]) -> Step {
        if std::mem::replace(&mut self.done, true) {
            return Step::Fail(super::MechFailure::UnexpectedInput);
        }
        // The trace is free text (often an e-mail address); keep a bounded, printable copy.
        Step::Anonymous { trace: crate::protocol::sanitize(trace, 64) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_trace_is_accepted_once() {
        assert_eq!(Anonymous::new().start(Some(b"me@example.org")), Step::Anonymous { trace: "me@example.org".into() });
        assert_eq!(Anonymous::new().start(Some(b"")), Step::Anonymous { trace: String::new() });
        let mut m = Anonymous::new();
        assert_eq!(m.start(None), Step::Challenge(vec![]));
        assert_eq!(m.step(b"a\0b\nc"), Step::Anonymous { trace: "a?b?c".into() });
        assert_eq!(m.step(b"x"), Step::Fail(crate::sasl::MechFailure::UnexpectedInput));
    }
}
