//! The winbind helper-reply parser and the NTLM / GSS-SPNEGO mechanisms driven with arbitrary
//! client data and arbitrary `ntlm_auth` answers. Input: one flag byte (bit 0: GSS-SPNEGO, else
//! NTLM; bit 1: the first chunk is the initial response, else start with none), then chunks
//! separated by 0xFF. A chunk is given to the mechanism as the helper's answer when it asked the
//! helper, else as the client's response. Never a panic; `Authenticated` only from an `AF`
//! line, never from `NA` or `BH`; helper lines are `YR`/`KK` with the client's data in base64,
//! and `KK` only after a `TT`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::protocol::base64;
use saslgate::sasl::winbind::{parse_reply, HelperProtocol, HelperReply, MAX_HELPER_LINE};
use saslgate::sasl::{self, MechFailure, Step};

fn first_field(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b' ').find(|f| !f.is_empty()).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let protocol = if flags & 1 == 1 { HelperProtocol::GssSpnego } else { HelperProtocol::Ntlmssp };

    // The parser alone, on every chunk, for both protocols.
    for chunk in rest.split(|&b| b == 0xFF) {
        for p in [HelperProtocol::Ntlmssp, HelperProtocol::GssSpnego] {
            match parse_reply(p, chunk) {
                Ok(HelperReply::Authenticated { user, .. }) => {
                    assert_eq!(first_field(chunk), b"AF");
                    assert!(!user.is_empty() && !user.chars().any(char::is_control));
                    assert!(chunk.len() <= MAX_HELPER_LINE);
                }
                Ok(HelperReply::Challenge(_)) => assert_eq!(first_field(chunk), b"TT"),
                Ok(HelperReply::Rejected(_)) => assert_eq!(first_field(chunk), b"NA"),
                Ok(HelperReply::Broken(_)) => assert_eq!(first_field(chunk), b"BH"),
                Err(_) => {}
            }
        }
    }

    let info = sasl::lookup(protocol.mechanism()).expect("built in");
    assert!(info.allows_nul);
    let mut mech = info.start(&sasl::MechContext::default());
    let mut chunks = rest.split(|&b| b == 0xFF);
    let (mut step, mut last_client) = if flags & 2 == 2 {
        let first = chunks.next().unwrap_or_default();
        (mech.start(Some(first)), first)
    } else {
        let step = mech.start(None);
        assert_eq!(step, Step::Challenge(Vec::new()), "no initial response: an empty challenge first");
        (step, &[][..])
    };
    let mut challenged = false; // a TT came, so the next client data is a KK
    let mut sent_first = false;
    let mut finished = false;
    let mut last_reply: &[u8] = &[];
    loop {
        let wants_helper = match &step {
            Step::Helper(line) => {
                assert!(!finished, "helper asked after the end");
                let verb = if sent_first { &b"KK "[..] } else { &b"YR "[..] };
                assert!(!sent_first || challenged, "KK without a TT");
                assert!(line.starts_with(verb), "wrong verb");
                assert_eq!(&line[3..], base64::encode(last_client).as_bytes(), "line is not the client's data");
                assert!(line.len() <= MAX_HELPER_LINE);
                sent_first = true;
                challenged = false;
                true
            }
            Step::Challenge(_) => {
                assert!(!finished, "challenge after the end");
                if sent_first {
                    assert_eq!(first_field(last_reply), b"TT");
                    challenged = true;
                }
                false
            }
            Step::Authenticated { user, .. } => {
                assert!(!finished, "authenticated twice");
                assert_eq!(first_field(last_reply), b"AF", "Authenticated from a non-AF reply");
                assert!(!user.is_empty());
                finished = true;
                false
            }
            Step::Fail(why) => {
                if matches!(why, MechFailure::PasswordMismatch | MechFailure::Unavailable(_)) {
                    assert_eq!(first_field(last_reply), b"NA");
                }
                finished = true;
                false
            }
            other => panic!("{} cannot yield {other:?}", info.name),
        };
        let Some(chunk) = chunks.next() else { break };
        step = if wants_helper {
            last_reply = chunk;
            mech.helper_reply(chunk)
        } else {
            last_client = chunk;
            mech.step(chunk)
        };
        if finished {
            assert_eq!(step, Step::Fail(MechFailure::UnexpectedInput), "input accepted after the end");
        }
    }
});
