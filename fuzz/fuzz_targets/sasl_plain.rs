//! The PLAIN mechanism driven through `sasl::lookup`. Input: one flag byte (bit 0: send the first
//! chunk as the initial response, else start with none), then chunks separated by 0xFF, each one
//! client response. PLAIN takes exactly one response; what it accepts must be
//! `authzid NUL authcid NUL password` with exactly two NULs and a non-empty authcid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::sasl::{self, MechFailure, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let info = sasl::lookup("plain").expect("PLAIN is built in");
    assert!(info.allows_nul);
    let mut mech = info.start(&sasl::MechContext::default());
    let mut chunks = rest.split(|&b| b == 0xFF);
    let (mut step, mut last) = if flags & 1 == 1 {
        let first = chunks.next().unwrap_or_default();
        (mech.start(Some(first)), first)
    } else {
        let step = mech.start(None);
        assert_eq!(step, Step::Challenge(Vec::new()), "PLAIN without initial response gets an empty challenge");
        (step, &[][..])
    };
    let mut finished = false;
    loop {
        match &step {
            Step::Challenge(c) => {
                assert!(!finished, "challenge after the end");
                assert!(c.is_empty());
            }
            Step::VerifyPlain(creds) => {
                assert!(!finished, "a second verification");
                assert_eq!(last.iter().filter(|&&b| b == 0).count(), 2, "accepted without exactly two NULs");
                let mut parts = last.split(|&b| b == 0);
                let (z, c, p) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                assert!(!creds.authcid.is_empty());
                assert_eq!(creds.authcid.as_bytes(), c);
                assert_eq!(creds.password.expose(), p);
                match &creds.authzid {
                    None => assert!(z.is_empty() || z == c),
                    Some(authzid) => {
                        assert!(!authzid.is_empty() && authzid.as_bytes() == z && z != c)
                    }
                }
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
