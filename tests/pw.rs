//! `saslgate pw` against the real `doveadm pw` (Debian package `dovecot-core`): the same output
//! for deterministic schemes, and each one verifies the other's salted hashes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Output};

fn saslgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saslgate")).arg("pw").args(args).output().unwrap()
}

fn doveadm(args: &[&str]) -> Output {
    match Command::new("doveadm").arg("pw").args(args).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run doveadm ({e}): install the Debian package dovecot-core (scripts/install-deps.sh does)"),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

const PASSWORDS: &[&str] = &["secret", "pässwörd€🔑", "Tr0ub4dor&3 x\"'\\%{}", ""];

#[test]
fn deterministic_schemes_match_doveadm_byte_for_byte() {
    for scheme in ["PLAIN", "CLEAR", "SHA", "SHA1", "SHA256", "SHA512", "PLAIN-MD4", "PLAIN-MD5", "LDAP-MD5", "CRAM-MD5", "HMAC-MD5", "SHA256.HEX", "SHA1.B64"]
    {
        for pass in PASSWORDS {
            let ours = saslgate(&["-s", scheme, "-p", pass]);
            let theirs = doveadm(&["-s", scheme, "-p", pass]);
            if !theirs.status.success() {
                // doveadm refuses some forms (e.g. an encoding suffix); we only compare what it makes.
                continue;
            }
            assert!(ours.status.success(), "{scheme}: {}", String::from_utf8_lossy(&ours.stderr));
            assert_eq!(stdout(&ours), stdout(&theirs), "{scheme} {pass:?}");
        }
    }
    let ours = saslgate(&["-s", "DIGEST-MD5", "-u", "alice@example.org", "-p", "secret"]);
    let theirs = doveadm(&["-s", "DIGEST-MD5", "-u", "alice@example.org", "-p", "secret"]);
    assert_eq!(stdout(&ours), stdout(&theirs));
}

#[test]
fn salted_hashes_verify_both_ways() {
    for scheme in [
        "CRYPT",
        "MD5-CRYPT",
        "SHA256-CRYPT",
        "SHA512-CRYPT",
        "BLF-CRYPT",
        "SSHA",
        "SSHA256",
        "SSHA512",
        "SMD5",
        "PBKDF2",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "ARGON2I",
        "ARGON2ID",
    ] {
        let pass = "pässwörd€🔑";
        let ours = saslgate(&["-s", scheme, "-p", pass]);
        assert!(ours.status.success(), "{scheme}: {}", String::from_utf8_lossy(&ours.stderr));
        let hash = stdout(&ours);
        assert!(hash.starts_with(&format!("{{{scheme}}}")), "{hash}");
        let check = doveadm(&["-t", &hash, "-p", pass]);
        assert!(check.status.success(), "doveadm rejects our {scheme}: {hash}: {}", String::from_utf8_lossy(&check.stderr));
        assert!(!doveadm(&["-t", &hash, "-p", "wrong"]).status.success(), "{scheme}");

        let theirs = stdout(&doveadm(&["-s", scheme, "-p", pass]));
        let check = saslgate(&["-t", &theirs, "-p", pass]);
        assert!(check.status.success(), "we reject doveadm's {scheme}: {theirs}: {}", String::from_utf8_lossy(&check.stderr));
        assert_eq!(stdout(&check), format!("{theirs} (verified)"));
        let wrong = saslgate(&["-t", &theirs, "-p", "wrong"]);
        assert_eq!(wrong.status.code(), Some(1), "{scheme}");
    }
}

#[test]
fn rounds_are_honoured_like_doveadm() {
    let ours = stdout(&saslgate(&["-s", "SHA512-CRYPT", "-r", "1000", "-p", "x"]));
    assert!(ours.starts_with("{SHA512-CRYPT}$6$rounds=1000$"), "{ours}");
    let ours = stdout(&saslgate(&["-s", "BLF-CRYPT", "-r", "6", "-p", "x"]));
    assert!(ours.starts_with("{BLF-CRYPT}$2y$06$"), "{ours}");
}

#[test]
fn exit_codes_and_messages() {
    let out = saslgate(&["-s", "NOPE", "-p", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "Fatal: Unknown scheme: NOPE");
    let out = saslgate(&["-t", "nobrace", "-p", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "Fatal: Missing {scheme} prefix from hash");
    let out = saslgate(&["-t", "{NOSUCH}abc", "-p", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = saslgate(&["-t", "{SHA256}LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=", "-p", "y"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "Fatal: reverse password verification check failed: Password mismatch");
    let out = saslgate(&["-s", "DIGEST-MD5", "-p", "x"]);
    assert_eq!(out.status.code(), Some(2));
    // The list holds every scheme of doveadm 2.3.19's list.
    let ours = stdout(&saslgate(&["-l"]));
    let theirs = stdout(&doveadm(&["-l"]));
    for name in theirs.split_whitespace() {
        assert!(ours.split_whitespace().any(|n| n == name), "{name} missing from saslgate pw -l");
    }
    // A password from stdin when there is no terminal.
    let mut child = Command::new(env!("CARGO_BIN_EXE_saslgate"))
        .args(["pw", "-s", "SHA256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"x\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "{SHA256}LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=");
}
