//! passwd-file parsing: never panics, and every user it returns has a usable name (non-empty,
//! no ':' or line feed), is listed once, and can be looked up. Problems name a real line.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use saslgate::db::passwd_file::parse;

fuzz_target!(|data: &[u8]| {
    let (users, problems) = parse(data);
    let lines = data.split(|&b| b == b'\n').count();
    assert_eq!(users.names().len(), users.len());
    let mut seen = HashSet::new();
    for name in users.names() {
        assert!(!name.is_empty(), "empty user name");
        assert!(!name.contains(':') && !name.contains('\n'), "bad user name {name:?}");
        assert!(seen.insert(name), "user {name:?} listed twice");
        assert!(users.get(name).is_some(), "listed user {name:?} cannot be looked up");
    }
    for p in &problems {
        assert!(p.line >= 1 && p.line <= lines, "problem on line {} of {lines}", p.line);
    }
});
