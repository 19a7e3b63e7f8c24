//! The layering of `src/`, checked on every test run: which top-level module may import which,
//! and no circle between them. The rules are README's "Layout" in code:
//!
//! - `protocol/`, `sasl/` and `scheme/` are pure;
//! - `request/` (the data a request carries) sits below `config/` and the drivers;
//! - `config/` is validated data: no request logic, driver or socket code;
//! - `db/`, `passdb/` and `userdb/` never import the request layer (`auth/`) or `server/`;
//! - `server/` talks to the request layer only, never to mechanisms, drivers or `db/`.
//!
//! Imports are read as text (`crate::name` paths and `use crate::{…}` groups), leaving out
//! `#[cfg(test)] mod tests` blocks, where tests may reach anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// (module, modules it must never import).
const NEVER: &[(&str, &[&str])] = &[
    ("protocol", &["auth", "server", "sasl", "passdb", "userdb", "config", "db", "request"]),
    ("scheme", &["auth", "server", "passdb", "userdb", "config", "sasl", "db", "request"]),
    ("sasl", &["passdb", "userdb", "auth", "server", "config", "db", "request"]),
    ("request", &["auth", "server", "passdb", "userdb", "db", "config"]),
    ("config", &["auth", "server", "passdb", "userdb", "db"]),
    ("db", &["auth", "server", "passdb", "userdb"]),
    ("passdb", &["auth", "server"]),
    ("userdb", &["auth", "server"]),
    ("server", &["sasl", "passdb", "userdb", "db"]),
];

fn without_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('{') else { break };
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != "self" && name.starts_with(|c: char| c.is_lowercase()) {
                    found.insert(name);
                }
            }
        } else {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = without_test_modules(&fs::read_to_string(&path).unwrap());
            for to in imports(&text) {
                if to != top {
                    edges.entry(top.clone()).or_default().entry(to).or_insert_with(|| rel.display().to_string());
                }
            }
        }
    }
    edges
}

#[test]
fn forbidden_imports() {
    let edges = graph();
    let mut broken = Vec::new();
    for (from, never) in NEVER {
        for to in *never {
            if let Some(file) = edges.get(*from).and_then(|e| e.get(*to)) {
                broken.push(format!("{from}/ imports {to}/ (in {file})"));
            }
        }
    }
    assert!(broken.is_empty(), "layer rules broken:\n{}", broken.join("\n"));
}

#[test]
fn no_import_circle() {
    let edges = graph();
    // Depth-first search for a back edge.
    fn visit(n: &str, edges: &BTreeMap<String, BTreeMap<String, String>>, state: &mut BTreeMap<String, u8>, path: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for to in edges.get(n).map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            match state.get(&to) {
                Some(1) => {
                    let start = path.iter().position(|p| *p == to).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(to);
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(&to, edges, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n) {
            if let Some(cycle) = visit(n, &edges, &mut state, &mut Vec::new()) {
                panic!("import circle: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_checker_sees_imports() {
    // The reader must find both forms, or the rules above could never fail.
    let found = imports("use crate::auth::Authenticator;\nuse crate::{config, db::Resources};\n// crate::server\n");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["auth", "config", "db"]);
    assert_eq!(without_test_modules("a\n#[cfg(test)]\nmod tests { use crate::x; { } }\nb"), "a\n\nb");
    let edges = graph();
    assert!(edges.get("server").is_some_and(|e| e.contains_key("auth")), "server/ talks to auth/");
}
