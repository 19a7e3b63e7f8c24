//! passwd-file parsing: never panics, and every user it returns has a usable name (non-empty,
//! no ':' or line feed), is listed once, and can be looked up. Problems name a real line. The
//! compact table answers like a plain map of the first entry per name, and its index stays
//! within a bound of the file's size.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use saslgate::db::passwd_file::parse;

fuzz_target!(|data: &[u8]| {
    let (users, problems) = parse(data);
    let lines = data.split(|&b| b == b'\n').count();
    let names = users.names();
    assert_eq!(names.len(), users.len());
    let mut seen = HashSet::new();
    for name in &names {
        assert!(!name.is_empty(), "empty user name");
        assert!(!name.contains(':') && !name.contains('\n'), "bad user name {name:?}");
        assert!(seen.insert(name), "user {name:?} listed twice");
        assert!(users.get(name).is_some(), "listed user {name:?} cannot be looked up");
    }
    // A name that is not listed is not found (prefixes and extensions of listed names included).
    for name in &names {
        for probe in [format!("{name}x"), name[..name.len() - name.chars().last().map_or(0, char::len_utf8)].to_owned(), format!("{name}:")] {
            assert_eq!(users.get(&probe).is_some(), seen.contains(&probe), "{probe:?}");
        }
    }
    assert!(users.heap_bytes() <= data.len() + 22 * users.len() + 64, "index of {} bytes", users.heap_bytes());
    for p in &problems {
        assert!(p.line >= 1 && p.line <= lines, "problem on line {} of {lines}", p.line);
    }
});
