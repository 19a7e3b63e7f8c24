//! Unit tests for the scheme registry, prefix parsing and encoding rules.

use super::*;

#[test]
fn registry_is_complete() {
    for info in SCHEMES {
        assert_eq!(info.scheme.as_str(), info.name);
        assert_eq!(info.name.parse::<Scheme>(), Ok(info.scheme));
    }
}
