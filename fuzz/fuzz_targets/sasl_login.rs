//! The LOGIN mechanism driven through `sasl::lookup`. Input: one flag byte (bit 0: send the first
//! chunk as the initial response, else start with none), then chunks separated by 0xFF, each one
//! client response. A verification must come from exactly a user-name response (non-empty) and
//! the password response right after it, and nothing is accepted after the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::sasl::{self, MechFailure, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let info = sasl::lookup("LOGIN").expect("LOGIN is built in");
    assert!(!info.allows_nul);
    let mut mech = info.start(&sasl::MechContext::default());
    let mut chunks = rest.split(|&b| b == 0xFF);
    let initial = if flags & 1 == 1 { Some(chunks.next().unwrap_or_default()) } else { None };
    let mut step = mech.start(initial);
    // The response that got the Password prompt, and the one just sent.
    let mut user: Option<&[u8]> = None;
    let mut last: &[u8] = initial.unwrap_or_default();
    let mut finished = false;
    loop {
        match &step {
            Step::Challenge(prompt) => {
                assert!(!finished, "challenge after the end");
                match prompt.as_slice() {
                    b"Username:" => assert!(user.is_none() && last.is_empty()),
                    b"Password:" => {
                        assert!(user.is_none(), "a second Password prompt");
                        assert!(!last.is_empty() && std::str::from_utf8(last).is_ok());
                        user = Some(last);
                    }
                    other => panic!("unexpected prompt {other:?}"),
                }
            }
            Step::VerifyPlain(creds) => {
                assert!(!finished, "a second verification");
                let u = user.expect("verification without a user name");
                assert!(!creds.authcid.is_empty());
                assert_eq!(creds.authcid.as_bytes(), u);
                assert_eq!(creds.authzid, None);
                assert_eq!(creds.password.expose(), last);
                finished = true;
            }
            Step::Fail(_) => finished = true,
            other => panic!("{} cannot yield {other:?}", info.name),
        }
        let Some(chunk) = chunks.next() else { break };
        last = chunk;
        step = mech.step(chunk);
        if finished {
            assert_eq!(step, Step::Fail(MechFailure::UnexpectedInput), "input accepted after the end");
        }
    }
});
