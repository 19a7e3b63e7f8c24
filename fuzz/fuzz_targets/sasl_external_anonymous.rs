//! EXTERNAL and ANONYMOUS driven through `sasl::lookup`. Byte 0 picks the mechanism (bit 0 set:
//! ANONYMOUS); the rest is the layout of `common/mech_driver.rs` (flags byte, then responses
//! split on 0xFF), with its checks. Neither mechanism ever asks for a credential or succeeds by
//! itself; each ends at its own step after exactly one response:
//! - EXTERNAL: `External { authzid }` only for UTF-8 data, `None` exactly when the data is empty,
//!   else the data itself;
//! - ANONYMOUS: `Anonymous { trace }` for any data, the trace at most 64 characters (plus `...`)
//!   without control characters.
#![no_main]

#[path = "common/mech_driver.rs"]
mod mech_driver;

use libfuzzer_sys::fuzz_target;
use mech_driver::{run, Checks};
use saslgate::sasl::{self, MechInfo, Step};

struct NoCredentials;

impl Checks for NoCredentials {
    fn other(&self, info: &MechInfo, step: &Step, last: &[u8]) -> bool {
        match (info.name, step) {
            ("EXTERNAL", Step::External { authzid }) => {
                let text = std::str::from_utf8(last).expect("EXTERNAL accepted a non-UTF-8 authzid");
                match authzid {
                    None => assert!(text.is_empty()),
                    Some(z) => assert!(!z.is_empty() && z == text),
                }
            }
            ("ANONYMOUS", Step::Anonymous { trace }) => {
                let body = trace.strip_suffix("...").unwrap_or(trace);
                assert!(body.chars().count() <= 64, "trace of {} characters", body.chars().count());
                assert!(!trace.chars().any(char::is_control), "control character in {trace:?}");
                // Short printable UTF-8 is kept as it is.
                if let Ok(text) = std::str::from_utf8(last) {
                    if text.chars().count() <= 64 && !text.chars().any(char::is_control) {
                        assert_eq!(trace, text);
                    }
                }
            }
            _ => panic!("{} cannot yield {step:?}", info.name),
        }
        true
    }

    fn success(&self, info: &MechInfo, final_data: &Option<Vec<u8>>, _: bool) {
        panic!("{} succeeded by itself ({final_data:?})", info.name);
    }
}

fuzz_target!(|data: &[u8]| {
    let [select, flags, rest @ ..] = data else {
        return;
    };
    let name = if select & 1 == 0 { "EXTERNAL" } else { "ANONYMOUS" };
    let info = sasl::lookup(name).expect("built in");
    let no_lookup = |req: &sasl::CredentialsRequest, _: bool| -> Vec<u8> {
        panic!("{name} asked for a credential: {req:?}");
    };
    let r = run(info, *flags, rest, true, &no_lookup, &NoCredentials);
    assert!(!r.success);
});
