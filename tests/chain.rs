//! The passdb chain, table by table: result rules, deny, filters, skip, field templates,
//! rollback, internal failures, and the "certificate or password" setup with its attacks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use saslgate::auth::{AuthOutcome, Authenticator};
use saslgate::protocol::FailCode;
use saslgate::request::RequestInfo;
use saslgate::sasl::PlainCredentials;
use saslgate::secret::Secret;

struct Setup {
    _dir: tempfile::TempDir,
    auth: Authenticator,
}

/// Writes the files (name, content) and a config whose `passdbs:` section is `passdbs`.
fn setup(files: &[(&str, &str)], auth_extra: &str, passdbs: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        if content.is_empty() && name.ends_with('/') {
            std::fs::create_dir_all(path).unwrap();
        } else {
            std::fs::write(path, content).unwrap();
        }
    }
    let yaml = format!(
        "listeners:\n  - {{ path: s }}\nauth:\n  mechanisms: [plain, login, external, cram-md5]\n  failure_delay: 0s\n{auth_extra}\npassdbs:\n{passdbs}"
    );
    let config = saslgate::config::parse(&yaml, "chain.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let pool = saslgate::blocking::Pool::new(1, 16).unwrap();
    Setup { auth: Authenticator::from_config(&config, &pool), _dir: dir }
}

fn info(mech: &'static str) -> RequestInfo {
    RequestInfo {
        service: "imap".into(),
        mech: Some(mech),
        rip: Some("192.0.2.10".parse().unwrap()),
        real_rip: Some("192.0.2.10".parse().unwrap()),
        ..RequestInfo::default()
    }
}

async fn plain(s: &Setup, user: &str, pass: &str) -> AuthOutcome {
    let creds = PlainCredentials { authcid: user.into(), authzid: None, password: Secret::from(pass.as_bytes()) };
    s.auth.verify_plain(&info("PLAIN"), &creds).await
}

fn ok_fields(o: &AuthOutcome) -> Vec<(String, String)> {
    match o {
        AuthOutcome::Success { fields, .. } => fields.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        AuthOutcome::Failure(f) => panic!("expected success, got {f:?}"),
    }
}

fn is_ok(o: &AuthOutcome) -> bool {
    matches!(o, AuthOutcome::Success { .. })
}

fn code(o: &AuthOutcome) -> Option<FailCode> {
    match o {
        AuthOutcome::Failure(f) => f.code,
        AuthOutcome::Success { .. } => panic!("expected a failure"),
    }
}

const TWO: &[(&str, &str)] = &[("one", "alice:{PLAIN}pw1::::::from=one\nshared:{PLAIN}s1\n"), ("two", "alice:{PLAIN}pw2::::::from=two\nbob:{PLAIN}b\n")];

fn two(rules1: &str, rules2: &str) -> Setup {
    setup(
        TWO,
        "",
        &format!("  - {{ driver: passwd-file, path: one, scheme: PLAIN{rules1} }}\n  - {{ driver: passwd-file, path: two, scheme: PLAIN{rules2} }}\n"),
    )
}

#[tokio::test]
async fn result_rules_table() {
    // (rules of passdb 1, rules of passdb 2, password, expected success, expected `from` field)
    let rows: &[(&str, &str, &str, bool, Option<&str>)] = &[
        ("", "", "pw1", true, Some("one")),
        ("", "", "pw2", true, Some("two")), // default result_failure=continue
        ("", "", "nope", false, None),
        (", result_failure: return-fail", "", "pw2", false, None),
        (", result_failure: return", "", "pw2", false, None),
        // After `continue` on an OK the password counts as verified: passdb 2 only adds fields.
        (", result_success: continue", "", "pw1", true, Some("two")),
        (", result_success: continue-ok", "", "pw1", true, Some("two")),
        (", result_success: return-fail", "", "pw1", false, None),
        (", result_success: continue-fail", ", result_failure: return", "pw1", false, None),
        // `continue-ok` on a failure marks success and verified: an admin's (odd) choice.
        (", result_failure: continue-ok", "", "nope", true, Some("two")),
        (", result_failure: continue-fail", "", "pw2", true, Some("two")),
        (", result_failure: continue-fail", ", result_success: return", "pw2", true, Some("two")),
        (", pass: true", "", "pw1", true, Some("two")),
        ("", ", deny: true", "pw1", true, Some("one")),
    ];
    for (r1, r2, pass, want_ok, from) in rows {
        let s = two(r1, r2);
        let o = plain(&s, "alice", pass).await;
        assert_eq!(is_ok(&o), *want_ok, "rules [{r1}] [{r2}] password {pass}: {o:?}");
        if let Some(from) = from {
            assert!(ok_fields(&o).contains(&("from".to_string(), from.to_string())), "{o:?}");
        }
    }
}

#[tokio::test]
async fn continue_after_success_only_adds_fields() {
    // passdb 1 verifies (continue); passdb 2 (any password) only contributes fields.
    let s = setup(
        &[("users", "alice:{PLAIN}pw::::::quota=1G\n")],
        "",
        "  - { driver: passwd-file, path: users, scheme: PLAIN, result_success: continue-ok }\n  - { driver: static, password: \"{PLAIN}other\", fields: { host: \"10.0.0.%d\" }, skip: unauthenticated }\n",
    );
    let o = plain(&s, "alice", "pw").await;
    assert_eq!(ok_fields(&o), [("quota".to_string(), "1G".to_string()), ("host".to_string(), "10.0.0.".to_string())]);
    // A wrong password never reaches the static passdb (skip: unauthenticated).
    assert!(!is_ok(&plain(&s, "alice", "other").await));
}

#[tokio::test]
async fn failed_passdb_fields_are_rolled_back() {
    let s = setup(
        &[("one", "alice:{PLAIN}pw1::::::nodelay reason=go_away quota=1\n"), ("two", "alice:{PLAIN}pw2::::::quota=2\n")],
        "",
        "  - { driver: passwd-file, path: one, scheme: PLAIN }\n  - { driver: passwd-file, path: two, scheme: PLAIN }\n",
    );
    let o = plain(&s, "alice", "pw2").await;
    assert_eq!(ok_fields(&o), [("quota".to_string(), "2".to_string())]);
    // A failing passdb's own nodelay does not survive: the failure is delayed.
    match plain(&s, "alice", "wrong").await {
        AuthOutcome::Failure(f) => assert!(!f.nodelay),
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn nodelay_from_a_kept_passdb_survives_a_later_failure() {
    let s = setup(
        &[("one", "alice:{PLAIN}pw::::::nodelay\n")],
        "",
        "  - { driver: passwd-file, path: one, scheme: PLAIN, result_success: continue }\n  - { driver: static, password: \"{PLAIN}x\", result_failure: return-fail, result_success: return-fail }\n",
    );
    match plain(&s, "alice", "pw").await {
        AuthOutcome::Failure(f) => assert!(f.nodelay, "{f:?}"),
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn deny_passdb() {
    let s = setup(
        &[("deny", "bad\n"), ("users", "alice:{PLAIN}pw\nbad:{PLAIN}pw\n")],
        "",
        "  - { driver: passwd-file, path: deny, deny: true }\n  - { driver: passwd-file, path: users, scheme: PLAIN }\n",
    );
    assert!(is_ok(&plain(&s, "alice", "pw").await));
    assert_eq!(code(&plain(&s, "bad", "pw").await), Some(FailCode::UserDisabled));
}

#[tokio::test]
async fn filters_and_all_skipped() {
    let s = setup(
        &[("users", "a@example.com:{PLAIN}pw\nb@other.org:{PLAIN}pw\nroot@example.com:{PLAIN}pw\n")],
        "",
        "  - { driver: passwd-file, path: users, scheme: PLAIN, username_filter: \"*@example.com !root@*\" }\n",
    );
    assert!(is_ok(&plain(&s, "a@example.com", "pw").await));
    // Every passdb skipped: an internal failure (temp_fail), as Dovecot.
    assert_eq!(code(&plain(&s, "b@other.org", "pw").await), Some(FailCode::TempFail));
    assert_eq!(code(&plain(&s, "root@example.com", "pw").await), Some(FailCode::TempFail));
    let s = setup(&[("users", "alice:{PLAIN}pw\n")], "", "  - { driver: passwd-file, path: users, scheme: PLAIN, mechanisms: [login] }\n");
    assert_eq!(code(&plain(&s, "alice", "pw").await), Some(FailCode::TempFail));
    let s = setup(&[("users", "alice:{PLAIN}pw\n")], "", "  - { driver: passwd-file, path: users, scheme: PLAIN, mechanisms: none }\n");
    assert_eq!(code(&plain(&s, "alice", "pw").await), Some(FailCode::TempFail));
    assert_eq!(s.auth.lookup_pass("alice", &RequestInfo::default()).await, saslgate::auth::PassLookup::Failed("all password databases were skipped".into()));
    let s = setup(&[("users", "alice:{PLAIN}pw\n")], "", "  - { driver: passwd-file, path: users, scheme: PLAIN, mechanisms: [plain, none] }\n");
    assert!(matches!(s.auth.lookup_pass("alice", &RequestInfo::default()).await, saslgate::auth::PassLookup::Found(_)));
    assert!(is_ok(&plain(&s, "alice", "pw").await));
}

#[tokio::test]
async fn internal_failures_are_temporary_never_ok() {
    // A passwd-file that cannot be read (a directory) is an internal failure.
    let files: &[(&str, &str)] = &[("broken/", ""), ("users", "alice:{PLAIN}pw\n")];
    let s = setup(files, "", "  - { driver: passwd-file, path: broken, scheme: PLAIN }\n  - { driver: passwd-file, path: users, scheme: PLAIN }\n");
    // The next passdb still decides a success...
    assert!(is_ok(&plain(&s, "alice", "pw").await));
    // ... but a failure after an outage is a temporary failure, not "wrong password".
    assert_eq!(code(&plain(&s, "alice", "nope").await), Some(FailCode::TempFail));
    assert_eq!(code(&plain(&s, "nobody", "pw").await), Some(FailCode::TempFail));
    let s = setup(
        files,
        "",
        "  - { driver: passwd-file, path: broken, scheme: PLAIN, result_internalfail: return-fail }\n  - { driver: passwd-file, path: users, scheme: PLAIN }\n",
    );
    assert_eq!(code(&plain(&s, "alice", "pw").await), Some(FailCode::TempFail));
}

#[tokio::test]
async fn field_template_order_default_driver_override() {
    let s = setup(
        &[("users", "alice:{PLAIN}pw::::::a=driver b=driver\n")],
        "",
        "  - driver: passwd-file\n    path: users\n    scheme: PLAIN\n    default_fields: { a: default, c: \"default-%n\" }\n    override_fields: { b: override, d: \"%s\" }\n",
    );
    let mut f = ok_fields(&plain(&s, "alice", "pw").await);
    f.sort();
    let want: Vec<(String, String)> =
        [("a", "driver"), ("b", "override"), ("c", "default-alice"), ("d", "imap")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(f, want);
}

#[tokio::test]
async fn allow_nets_and_fail_fields() {
    let s = setup(
        &[("users", "lan:{PLAIN}pw::::::allow_nets=192.0.2.0/24\nwan:{PLAIN}pw::::::allow_nets=10.0.0.0/8,::1\nlocked:{PLAIN}pw::::::fail\n")],
        "",
        "  - { driver: passwd-file, path: users, scheme: PLAIN }\n",
    );
    assert!(is_ok(&plain(&s, "lan", "pw").await));
    assert!(!is_ok(&plain(&s, "wan", "pw").await));
    assert!(!is_ok(&plain(&s, "locked", "pw").await));
    // allow_nets never appears in the reply.
    assert!(ok_fields(&plain(&s, "lan", "pw").await).is_empty());
}

#[tokio::test]
async fn noauthenticate_as_the_last_passdb_is_an_error() {
    let s = setup(&[("users", "alice:{PLAIN}pw::::::noauthenticate\n")], "", "  - { driver: passwd-file, path: users, scheme: PLAIN }\n");
    assert_eq!(code(&plain(&s, "alice", "whatever").await), Some(FailCode::TempFail));
    // Followed by a passdb that verifies: fields from both, password checked by the second.
    let s = setup(
        &[("first", "alice::::::: noauthenticate quota=5\n"), ("second", "alice:{PLAIN}pw\n")],
        "",
        "  - { driver: passwd-file, path: first, scheme: PLAIN }\n  - { driver: passwd-file, path: second, scheme: PLAIN }\n",
    );
    assert_eq!(ok_fields(&plain(&s, "alice", "pw").await), [("quota".to_string(), "5".to_string())]);
    assert!(!is_ok(&plain(&s, "alice", "whatever").await));
}

/// The classic "certificate or password" setup: passdb 1 hashed passwords for every
/// mechanism; passdb 2 user names only, EXTERNAL only, `nopassword` by override.
fn cert_or_password() -> Setup {
    let hash = saslgate::scheme::generate(saslgate::scheme::Scheme::Sha512Crypt, b"alicepw", "", Some(1000)).unwrap();
    setup(
        &[("passwords", &format!("alice:{{SHA512-CRYPT}}{hash}\nbob:{{SHA512-CRYPT}}{hash}\n")), ("certusers", "alice\ncertonly\n")],
        "  ssl_username_from_cert: true\n",
        "  - { driver: passwd-file, path: passwords }\n  - { driver: passwd-file, path: certusers, mechanisms: [external], override_fields: { nopassword: \"\" } }\n",
    )
}

#[tokio::test]
async fn certificate_or_password_setup() {
    let s = cert_or_password();
    assert!(is_ok(&plain(&s, "alice", "alicepw").await));
    assert!(!is_ok(&plain(&s, "alice", "wrong").await));
    // The attack: an empty password, or an empty user, without a certificate never succeeds.
    for (user, pass) in [("alice", ""), ("certonly", ""), ("certonly", "x"), ("", ""), ("nobody", "")] {
        assert!(!is_ok(&plain(&s, user, pass).await), "PLAIN {user:?}/{pass:?} must fail");
    }
    let ext = |cert: Option<&str>, valid: bool| {
        let mut i = info("EXTERNAL");
        i.valid_client_cert = valid;
        i.cert_username = cert.filter(|_| valid).map(str::to_owned);
        i
    };
    assert!(is_ok(&s.auth.external(&ext(Some("alice"), true), None).await));
    assert!(is_ok(&s.auth.external(&ext(Some("certonly"), true), None).await));
    assert!(!is_ok(&s.auth.external(&ext(Some("bob"), true), None).await), "bob has no certificate login");
    assert!(!is_ok(&s.auth.external(&ext(Some("alice"), false), None).await));
    assert!(!is_ok(&s.auth.external(&ext(None, true), None).await));
    assert!(!is_ok(&s.auth.external(&ext(Some("alice"), true), Some("bob")).await));
    // The EXTERNAL-only passdb serves no credentials lookups either.
    let req = saslgate::sasl::CredentialsRequest { authcid: "certonly".into(), authzid: None, scheme: saslgate::scheme::Scheme::CramMd5, hash_identity: None };
    assert!(matches!(s.auth.lookup_credentials(&info("CRAM-MD5"), &req).await, saslgate::auth::CredentialsOutcome::Failed(_)));
}

async fn plain_as(s: &Setup, authzid: &str, authcid: &str, pass: &str) -> AuthOutcome {
    let creds = PlainCredentials { authcid: authcid.into(), authzid: Some(authzid.into()), password: Secret::from(pass.as_bytes()) };
    s.auth.verify_plain(&info("PLAIN"), &creds).await
}

const MASTER_FILES: &[(&str, &str)] = &[("users", "bob:{PLAIN}bobpw\n"), ("masters", "admin:{PLAIN}adminpw\n")];

#[tokio::test]
async fn master_users() {
    // Without master passdbs, an authzid never logs anyone in.
    let s = setup(MASTER_FILES, "", "  - { driver: passwd-file, path: users, scheme: PLAIN }\n");
    assert!(!is_ok(&plain_as(&s, "bob", "admin", "adminpw").await));
    assert!(!is_ok(&plain_as(&s, "bob", "bob2", "bobpw").await));

    // A master passdb (default rule return-ok): the master logs in as anyone.
    let s = setup(
        MASTER_FILES,
        "  master_user_separator: \"*\"\n",
        "  - { driver: passwd-file, path: masters, scheme: PLAIN, master: true }\n  - { driver: passwd-file, path: users, scheme: PLAIN }\n",
    );
    match plain_as(&s, "bob", "admin", "adminpw").await {
        AuthOutcome::Success { user, fields, .. } => {
            assert_eq!(user, "bob");
            assert_eq!(fields.get("auth_user"), Some("admin"));
        }
        o => panic!("{o:?}"),
    }
    assert!(!is_ok(&plain_as(&s, "bob", "admin", "wrong").await));
    // The separator form.
    match plain(&s, "bob*admin", "adminpw").await {
        AuthOutcome::Success { user, .. } => assert_eq!(user, "bob"),
        o => panic!("{o:?}"),
    }
    // Master passdbs never serve normal logins, and normal users are no masters.
    assert!(!is_ok(&plain(&s, "admin", "adminpw").await));
    assert!(!is_ok(&plain_as(&s, "admin", "bob", "bobpw").await));
    assert!(is_ok(&plain(&s, "bob", "bobpw").await));

    // With result_success: continue, the target must exist in the normal passdbs.
    let s = setup(
        MASTER_FILES,
        "",
        "  - { driver: passwd-file, path: masters, scheme: PLAIN, master: true, result_success: continue }\n  - { driver: passwd-file, path: users, scheme: PLAIN }\n",
    );
    assert!(is_ok(&plain_as(&s, "bob", "admin", "adminpw").await));
    assert_eq!(code(&plain_as(&s, "ghost", "admin", "adminpw").await), Some(FailCode::AuthzFail));
    assert!(!is_ok(&plain_as(&s, "bob", "admin", "bobpw").await));
}

#[tokio::test]
async fn user_name_rules() {
    let files: &[(&str, &str)] = &[("users", "alice@example.org:{PLAIN}pw\nal+ice:{PLAIN}pw\n")];
    let passdb = "  - { driver: passwd-file, path: users, scheme: PLAIN }\n";
    // Dovecot's default username_chars: '+' and spaces are refused before any passdb.
    let s = setup(files, "", passdb);
    assert!(is_ok(&plain(&s, "ALICE@example.org", "pw").await));
    assert!(!is_ok(&plain(&s, "al+ice", "pw").await));
    assert!(!is_ok(&plain(&s, "alice@example.org ", "pw").await));
    assert!(s.auth.translate_user("a%u{b}", &info("PLAIN")).is_none());
    // An empty username_chars allows everything; default_realm and translation apply first.
    let s = setup(files, "  username_chars: \"\"\n  username_translation: \"#@\"\n", passdb);
    assert!(is_ok(&plain(&s, "al+ice", "pw").await), "any character");
    assert!(is_ok(&plain(&s, "alice#example.org", "pw").await), "translation");
    // Dovecot's order: default_realm is appended (to names without '@') before translation.
    let s = setup(files, "  username_chars: \"\"\n  default_realm: example.org\n  username_translation: \"#@\"\n", passdb);
    assert!(is_ok(&plain(&s, "alice", "pw").await), "default_realm");
    assert!(!is_ok(&plain(&s, "alice#example.org", "pw").await), "realm added before translating");
    match plain(&s, "alice", "pw").await {
        AuthOutcome::Success { user, original_user, .. } => {
            assert_eq!(user, "alice@example.org");
            assert_eq!(original_user.as_deref(), Some("alice"));
        }
        o => panic!("{o:?}"),
    }
}

#[tokio::test]
async fn proxy_with_nopassword_is_refused_on_auth_only_sockets() {
    let s = setup(&[("users", "px:::::::proxy=y host=10.9.8.7 nopassword nologin=yes\n")], "", "  - { driver: passwd-file, path: users, scheme: PLAIN }\n");
    // An auth-only socket (no CPID): Postfix would accept any password.
    assert!(!is_ok(&plain(&s, "px", "anything").await));
    // A login socket (with a CPID): the proxy target checks the password; flags are bare.
    let mut login = info("PLAIN");
    login.client_pid = Some(4242);
    let creds = PlainCredentials { authcid: "px".into(), authzid: None, password: Secret::from(&b"anything"[..]) };
    let fields = ok_fields(&s.auth.verify_plain(&login, &creds).await);
    assert_eq!(fields, [("proxy", ""), ("host", "10.9.8.7"), ("nologin", "")].map(|(k, v)| (k.to_string(), v.to_string())));
}

fn userdb_setup(userdbs: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "alice:{PLAIN}pw:1000:1000::/home/alice::userdb_quota=1G\nbob:{PLAIN}pw:1001:1001::/home/bob::\n").unwrap();
    std::fs::write(dir.path().join("extra"), "alice::2000:2000::/srv/alice::userdb_mail=maildir:~/M\n").unwrap();
    let yaml = format!("listeners:\n  - {{ path: s }}\npassdbs:\n  - {{ driver: passwd-file, path: users, scheme: PLAIN }}\nuserdbs:\n{userdbs}");
    let config = saslgate::config::parse(&yaml, "chain.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let pool = saslgate::blocking::Pool::new(1, 16).unwrap();
    Setup { auth: Authenticator::from_config(&config, &pool), _dir: dir }
}

async fn user_fields(s: &Setup, user: &str) -> Option<Vec<(String, String)>> {
    match s.auth.lookup_user(user, &RequestInfo { service: "lmtp".into(), ..RequestInfo::default() }, false).await {
        saslgate::userdb::UserdbOutcome::Found(f) => Some(f.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()),
        saslgate::userdb::UserdbOutcome::NotFound => None,
        saslgate::userdb::UserdbOutcome::InternalFailure(why) => panic!("{why}"),
    }
}

fn kv(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

#[tokio::test]
async fn userdb_chain() {
    // First found wins by default; templates around the driver's fields.
    let s = userdb_setup("  - driver: passwd-file\n    path: extra\n    default_fields: { quota: 5G, home: /nowhere }\n    override_fields: { gid: \"42\" }\n  - { driver: passwd-file, path: users }\n");
    assert_eq!(user_fields(&s, "alice").await, kv(&[("quota", "5G"), ("uid", "2000"), ("gid", "42"), ("home", "/srv/alice"), ("mail", "maildir:~/M")]));
    assert_eq!(user_fields(&s, "bob").await, kv(&[("uid", "1001"), ("gid", "1001"), ("home", "/home/bob")]));
    assert_eq!(user_fields(&s, "nobody").await, None);
    // continue-ok: later userdbs add to (and override) the fields, and a later "not found"
    // does not undo the success (Dovecot's advice for merging); skip: found.
    let s = userdb_setup("  - { driver: passwd-file, path: users, result_success: continue-ok }\n  - { driver: passwd-file, path: extra }\n  - { driver: static, fields: { home: /never }, skip: found }\n");
    assert_eq!(user_fields(&s, "alice").await, kv(&[("uid", "2000"), ("gid", "2000"), ("home", "/srv/alice"), ("quota", "1G"), ("mail", "maildir:~/M")]));
    assert_eq!(user_fields(&s, "bob").await, kv(&[("uid", "1001"), ("gid", "1001"), ("home", "/home/bob")]));
    // With plain continue, the last userdb's answer counts: bob is then not found by extra,
    // so the static userdb (skip: found) runs.
    let s = userdb_setup("  - { driver: passwd-file, path: users, result_success: continue }\n  - { driver: passwd-file, path: extra }\n  - { driver: static, fields: { home: /never }, skip: found }\n");
    assert_eq!(user_fields(&s, "bob").await, kv(&[("uid", "1001"), ("gid", "1001"), ("home", "/never")]));
    // return-fail on "not found" ends the chain.
    let s = userdb_setup("  - { driver: passwd-file, path: extra, result_failure: return-fail }\n  - { driver: passwd-file, path: users }\n");
    assert!(user_fields(&s, "bob").await.is_none());
    assert!(user_fields(&s, "alice").await.is_some());
    // A static userdb answers for existing users only (it asks the passdbs), unless allow_all_users.
    let s = userdb_setup("  - { driver: static, fields: { uid: \"5000\", home: \"/var/mail/%n\" } }\n");
    assert_eq!(user_fields(&s, "bob").await, kv(&[("uid", "5000"), ("home", "/var/mail/bob")]));
    assert_eq!(user_fields(&s, "nobody").await, None);
    let s = userdb_setup("  - { driver: static, fields: { uid: \"5000\" }, allow_all_users: true }\n");
    assert!(user_fields(&s, "nobody").await.is_some());
}

#[tokio::test]
async fn an_empty_stored_password_is_no_password() {
    let s = setup(&[("users", "a:{PLAIN}\nb:\nc:{PLAIN}::::::nopassword\n")], "", "  - { driver: passwd-file, path: users, scheme: PLAIN }\n");
    for user in ["a", "b"] {
        assert!(!is_ok(&plain(&s, user, "").await), "{user} with an empty password");
        assert!(!is_ok(&plain(&s, user, "x").await), "{user} with a password");
    }
    // The explicit way to accept any password.
    assert!(is_ok(&plain(&s, "c", "anything").await));
}

#[tokio::test]
async fn passwd_file_userdb_resolves_uid_and_gid_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "n:{PLAIN}pw:nobody:nogroup::/h::\nbad:{PLAIN}pw:no-such-user-here::::\n").unwrap();
    let yaml = "listeners:\n  - { path: s }\npassdbs:\n  - { driver: passwd-file, path: users }\nuserdbs:\n  - { driver: passwd-file, path: users }\n";
    let config = saslgate::config::parse(yaml, "t.yaml", dir.path()).unwrap();
    let pool = saslgate::blocking::Pool::new(1, 16).unwrap();
    let s = Setup { auth: Authenticator::from_config(&config, &pool), _dir: dir };
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.to_string();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap().gid.to_string();
    assert_eq!(user_fields(&s, "n").await, kv(&[("uid", &nobody), ("gid", &nogroup), ("home", "/h")]));
    // An unknown name is a temporary failure, not a login with a wrong uid.
    let info = RequestInfo { service: "lmtp".into(), ..RequestInfo::default() };
    assert!(matches!(s.auth.lookup_user("bad", &info, false).await, saslgate::userdb::UserdbOutcome::InternalFailure(_)));
}
