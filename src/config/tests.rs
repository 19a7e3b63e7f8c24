//! Config loading: good files, and bad ones whose errors must name file, line and setting.

use super::*;

fn dir_with_users() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), "a:{PLAIN}x\n").unwrap();
    dir
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = dir_with_users();
    parse(text, "test.yaml", dir.path())
}

const GOOD: &str = "listeners:\n  - { path: run/auth-client, type: client, mode: \"0660\" }\nauth:\n  mechanisms: [plain, login]\n  failure_delay: 2s\n  username_format: \"%Lu\"\npassdbs:\n  - { driver: passwd-file, path: users.passwd, scheme: CRYPT }\nuserdbs:\n  - { driver: static, fields: { uid: \"1000\", gid: 1000, home: \"/var/mail/%d/%n\" } }\n";

#[test]
fn the_issue_example_loads() {
    let dir = dir_with_users();
    let c = parse(GOOD, "test.yaml", dir.path()).unwrap();
    assert_eq!(c.listeners[0].path, dir.path().join("run/auth-client"));
    assert_eq!(c.listeners[0].kind, ListenerKind::Client);
    assert_eq!(c.listeners[0].mode, 0o660);
    assert_eq!(c.mechanisms.iter().map(|m| m.name).collect::<Vec<_>>(), ["PLAIN", "LOGIN"]);
    assert_eq!(c.auth.failure_delay, Duration::from_secs(2));
    assert_eq!(c.passdbs.len(), 1);
    let UserdbDriver::Static { fields, allow_all_users } = &c.userdbs[0].driver else { panic!() };
    assert!(!allow_all_users);
    assert_eq!(
        fields.iter().map(|(k, v)| (k.as_str(), v.source())).collect::<Vec<_>>(),
        [("uid", "1000"), ("gid", "1000"), ("home", "/var/mail/%d/%n")],
        "the order written in the YAML"
    );
}

#[test]
fn listener_type_defaults_to_dovecots_name_rule() {
    for (name, kind) in [
        ("auth-client", ListenerKind::Client),
        ("auth", ListenerKind::Client),
        ("login", ListenerKind::Login),
        ("auth-login", ListenerKind::Login),
        ("auth-master", ListenerKind::Master),
        ("ext-userdb", ListenerKind::Userdb),
        ("tokenlogin", ListenerKind::Client),
    ] {
        assert_eq!(ListenerKind::from_socket_name(Path::new(name)), kind, "{name}");
    }
}

#[test]
fn errors_name_file_line_and_setting() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("listeners:\n  - { path: a, mode: 660 }\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\n", 2, "listeners[0].mode", "quoted"),
        ("listeners:\n  - { path: a, type: bogus }\n", 2, "listeners[0].type", "expected one of `client`, `login`, `master`, `userdb`"),
        ("listeners:\n  - { path: a }\nauth:\n  failure_delay: soon\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\n", 4, "auth.failure_delay", "2s"),
        ("listeners:\n  - { path: a }\nauth:\n  mechanisms: [plain, nope]\n", 4, "auth.mechanisms[1]", "unknown mechanism"),
        ("listeners:\n  - { path: a }\npassdbs:\n  - driver: passwd-file\n    path: users.passwd\n    scheme: NOPE\n", 6, "passdbs[0].scheme", "pw -l"),
        ("listeners:\n  - { path: a }\npassdbs:\n  - { driver: ldapx }\n", 4, "passdbs[0].driver", "unknown passdb driver"),
        ("listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: missing.passwd }\n", 4, "passdbs[0].path", "does not exist"),
        ("listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: users.passwd, fields: {} }\n", 4, "passdbs[0].fields", "not a setting of driver passwd-file"),
        ("listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\nuserdbs:\n  - { driver: static, fields: { home: \"%q\" } }\n", 6, "userdbs[0].fields.home", "unknown variable"),
        ("listeners:\n  - { path: a }\n  - { path: a }\n", 3, "listeners[1].path", "already used"),
        ("listeners:\n  - { path: a }\n", 0, "passdbs", "no passdb"),
        ("listeners: []\n", 1, "listeners", "no listeners"),
        ("listeners:\n  - { path: a }\nauth:\n  failure_delay: 9s\n", 4, "auth.failure_delay", "Postfix"),
    ];
    for (text, line, setting, hint) in cases {
        let err = load_text(text).unwrap_err();
        assert_eq!(err.setting, *setting, "{text}: {err}");
        if *line > 0 {
            assert_eq!(err.line, Some(*line), "{text}: {err}");
        }
        assert!(err.to_string().contains(hint), "{text}: {err}");
        assert!(err.to_string().starts_with("test.yaml:"), "{err}");
    }
}

#[test]
fn syntax_and_unknown_keys_have_lines() {
    let err = load_text("listeners:\n  - { path: a }\nauht:\n  x: 1\n").unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.message.contains("auht"), "{err}");
    let err = load_text("listeners: [\n").unwrap_err();
    assert!(err.line.is_some(), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
    assert_eq!(parse_duration("2 secs"), Some(Duration::from_secs(2)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    for bad in ["", "s", "2", "-1s", "2 parsecs", "99999999999999999999s"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 2, "conf.example/ should hold minimal.yaml and saslgate.yaml");
}

#[test]
fn embedded_default_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.passwd"), EMBEDDED_USERS).unwrap();
    let c = parse(EMBEDDED_DEFAULT, "<embedded default>", dir.path()).unwrap();
    assert_eq!(c.listeners.len(), 4);
    assert_eq!(c.listeners.iter().map(|l| l.kind).collect::<Vec<_>>(), [ListenerKind::Client, ListenerKind::Login, ListenerKind::Master, ListenerKind::Userdb]);
}

#[test]
fn the_packaged_config_loads() {
    // The Debian package's config names /etc/saslgate/users.passwd: point it at a temp copy.
    let dir = tempfile::tempdir().unwrap();
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    std::fs::copy(packaging.join("users.passwd"), dir.path().join("users.passwd")).unwrap();
    let text = std::fs::read_to_string(packaging.join("saslgate.yaml")).unwrap().replace("/etc/saslgate/", &format!("{}/", dir.path().display()));
    let c = parse(&text, "packaging/saslgate.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.user.as_deref(), Some("saslgate"));
    assert!(c.listeners.iter().all(|l| l.path.starts_with("/run/saslgate")));
}

#[test]
fn pam_passdb_settings_and_errors() {
    let with = |pam: &str| format!("listeners:\n  - {{ path: auth }}\nauth:\n  mechanisms: [plain, login]\npassdbs:\n  - {{ driver: pam{pam} }}\n");
    let c = load_text(&with("")).unwrap();
    let PassdbDriver::Pam { service, failure_show_msg, session, setcred, timeout, max_requests, config_dir } = &c.passdbs[0].driver else { panic!() };
    assert_eq!((service.source(), *failure_show_msg, *session, *setcred), ("saslgate", false, false, false));
    assert_eq!((*timeout, *max_requests, config_dir.as_deref()), (PAM_DEFAULT_TIMEOUT, PAM_DEFAULT_MAX_REQUESTS, None));
    assert!(!c.passdbs[0].can_lookup_credentials());
    let c = load_text(&with(", service: \"*\", session: true, timeout: 5s, max_requests: 3")).unwrap();
    let PassdbDriver::Pam { service, session, timeout, max_requests, .. } = &c.passdbs[0].driver else { panic!() };
    assert_eq!((service.source(), *session, *timeout, *max_requests), ("%Ls", true, Duration::from_secs(5), 3));
    for (bad, setting, says) in [
        (", timeout: 0s", "passdbs[0].timeout", "positive duration"),
        (", max_requests: 0", "passdbs[0].max_requests", "1 to 1024"),
        (", service: /etc/pam.d/x", "passdbs[0].service", "is a path"),
        (", config_dir: no-such-dir", "passdbs[0].config_dir", "not a folder"),
        (", scheme: CRYPT", "passdbs[0].scheme", "not a setting of driver pam"),
    ] {
        let e = load_text(&with(bad)).unwrap_err();
        assert_eq!((e.file.as_str(), e.line, e.setting.as_str()), ("test.yaml", Some(6), setting), "{bad}: {e}");
        assert!(e.message.contains(says), "{bad}: {e}");
    }
}

#[test]
fn winbind_mechanisms_need_no_passdb() {
    let text = "listeners:\n  - { path: run/auth-client, type: client }\nauth:\n  mechanisms: [ntlm, gss-spnego]\n  winbind_helper_path: /opt/ntlm_auth-wrapper\n  winbind: { args: [\"--require-membership-of=S-1-5-32-545\"], env: { KRB5_KTNAME: /etc/k.keytab }, helpers: 2, timeout: 3s, busy_timeout: 500ms }\n";
    let c = load_text(text).unwrap();
    assert_eq!(c.mechanisms.iter().map(|m| m.name).collect::<Vec<_>>(), ["NTLM", "GSS-SPNEGO"]);
    assert!(c.passdbs.is_empty());
    assert_eq!(c.winbind.helper_path, Path::new("/opt/ntlm_auth-wrapper"));
    assert_eq!(c.winbind.args, ["--require-membership-of=S-1-5-32-545"]);
    assert_eq!(c.winbind.env.get("KRB5_KTNAME").map(String::as_str), Some("/etc/k.keytab"));
    assert_eq!((c.winbind.helpers, c.winbind.timeout, c.winbind.busy_timeout), (2, Duration::from_secs(3), Duration::from_millis(500)));
    let d = load_text("listeners:\n  - { path: run/auth-client, type: client }\nauth:\n  mechanisms: [ntlm]\n").unwrap();
    assert_eq!(d.winbind.helper_path, Path::new("/usr/bin/ntlm_auth"));
    assert_eq!(d.winbind.helpers, 4);
}

#[test]
fn bad_winbind_settings_are_refused() {
    let base = "listeners:\n  - { path: run/auth-client, type: client }\nauth:\n  mechanisms: [ntlm]\n";
    for (extra, needle) in [
        ("  winbind_helper_path: ntlm_auth\n", "winbind_helper_path"),
        ("  winbind: { helpers: 0 }\n", "helpers"),
        ("  winbind: { timeout: soon }\n", "timeout"),
        ("  winbind: { args: [--helper-protocol=x] }\n", "args"),
        ("  winbind: { bogus: 1 }\n", "bogus"),
    ] {
        let e = load_text(&format!("{base}{extra}")).unwrap_err().to_string();
        assert!(e.contains(needle), "{extra}: {e}");
    }
}

#[test]
fn ldap_example_loads_with_dovecots_keys() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf.example/ldap.yaml");
    let c = load(&path).unwrap();
    let PassdbDriver::Ldap(p) = &c.passdbs[0].driver else { panic!() };
    assert!(p.auth_bind && p.auth_bind_userdn.is_none());
    assert_eq!(p.conn.uris, ["ldap://ldap1.example.org", "ldap://ldap2.example.org"]);
    assert_eq!(p.conn.timeout, Duration::from_secs(5));
    assert_eq!((p.conn.connections, p.auth_bind_connections, p.conn.max_ops_per_connection), (4, 16, 64));
    assert!(!format!("{p:?}").contains("change me"), "dnpass stays out of Debug");
    let UserdbDriver::Ldap(u) = &c.userdbs[0].driver else { panic!() };
    assert_eq!(u.user_attrs.len(), 4);
    assert!(matches!(&u.user_attrs[2], ldap::AttrMap::Template { field, template } if field == "home" && template.ldap_attrs() == ["uid"]));
}

#[test]
fn ldap_errors_name_the_setting() {
    let head = "listeners:\n  - { path: a }\npassdbs:\n";
    let cases: &[(&str, &str, &str)] = &[
        ("  - { driver: ldap, base: dc=x }\n", "passdbs[0].driver", "needs `uris`"),
        ("  - { driver: ldap, uris: [ \"http://x\" ], base: dc=x }\n", "passdbs[0].uris[0]", "not an LDAP URI"),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, scope: deep }\n", "passdbs[0].scope", "subtree"),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, pass_attrs: { uid: user } }\n", "passdbs[0].pass_attrs", "needs the password"),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, pass_filter: \"uid=%u\" }\n", "passdbs[0].pass_filter", "parentheses"),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, auth_bind_userdn: \"uid=%u\" }\n", "passdbs[0].auth_bind_userdn", "auth_bind: true"),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, user_attrs: {} }\n", "passdbs[0].user_attrs", "not a setting of driver ldap"),
        (
            "  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, pass_attrs: { userPassword: password, home: \"=%{ldap:a)(}\" } }\n",
            "passdbs[0].pass_attrs.home",
            "not an LDAP attribute",
        ),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, dnpass_file: /nonexistent/x, dn: cn=a }\n", "passdbs[0].dnpass_file", "cannot read"),
        ("  - { driver: ldap, uris: [ \"ldap://x\" ], base: dc=x, timeout: 2h }\n", "passdbs[0].timeout", "between"),
    ];
    for (text, setting, message) in cases {
        let e = load_text(&format!("{head}{text}")).unwrap_err();
        assert_eq!(e.setting, *setting, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert_eq!(e.line, Some(4), "{text}: {e}");
    }
}

#[test]
fn template_numbers_that_would_overflow_are_refused_at_load() {
    for (tmpl, line) in [("%1.18446744073709551615u", 4), ("%-9223372036854775808u", 4), ("%65536n", 4)] {
        let text = format!("listeners:\n  - {{ path: a }}\npassdbs:\n  - {{ driver: passwd-file, path: users.passwd, username_format: \"{tmpl}\" }}\n");
        let err = load_text(&text).unwrap_err();
        assert_eq!(err.line, Some(line), "{err}");
        assert_eq!(err.setting, "passdbs[0].username_format", "{err}");
        assert!(err.message.contains("65535"), "{err}");
    }
    let ok = load_text("listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: users.passwd, username_format: \"%1.65535u\" }\n");
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn warnings_are_collected_with_file_line_and_setting() {
    let c = load_text(
        "listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\n  - driver: static\n    fields: { nopassword: \"\" }\n",
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert_eq!((w.file.as_str(), w.line, w.setting.as_str()), ("test.yaml", Some(5), "passdbs[1]"));
    assert!(w.message.contains("any password is accepted"), "{w}");
    assert!(w.to_string().starts_with("test.yaml:5: passdbs[1]: "), "{w}");
    let c = load_text("listeners:\n  - { path: a }\npassdbs:\n  - { driver: static, fields: { nopassword: \"\" }, mechanisms: [external] }\n").unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(load_text(GOOD).unwrap().warnings.is_empty());
}

#[test]
fn debug_never_prints_a_static_password() {
    let text = "listeners:\n  - { path: a }\npassdbs:\n  - { driver: static, password: \"{PLAIN}hunter2\" }\n";
    let c = load_text(text).unwrap();
    for shown in [format!("{c:?}"), format!("{:?}", c.passdbs[0].driver)] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    let raw: raw::Root = serde_norway::from_str(text).unwrap();
    let shown = format!("{raw:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn system_user_drivers_settings_and_errors() {
    let c = load_text("listeners:\n  - { path: a }\npassdbs:\n  - { driver: shadow }\n  - { driver: shadow, path: my.shadow }\nuserdbs:\n  - { driver: passwd }\n  - { driver: passwd, first_valid_uid: 1000, last_valid_uid: 0 }\n  - { driver: passwd, first_valid_uid: 0, last_valid_uid: 2000 }\n").unwrap();
    assert_eq!(c.passdbs[0].driver, PassdbDriver::Shadow { path: PathBuf::from("/etc/shadow") });
    let PassdbDriver::Shadow { path } = &c.passdbs[1].driver else { panic!() };
    assert!(path.is_absolute() && path.ends_with("my.shadow"), "{path:?}");
    assert!(!c.passdbs[0].can_lookup_credentials(), "crypt hashes give no credentials");
    assert_eq!(c.userdbs[0].driver, UserdbDriver::Passwd { first_valid_uid: 500, last_valid_uid: None });
    assert_eq!(c.userdbs[1].driver, UserdbDriver::Passwd { first_valid_uid: 1000, last_valid_uid: None }, "0 means no bound, as in Dovecot");
    assert_eq!(c.userdbs[2].driver, UserdbDriver::Passwd { first_valid_uid: 0, last_valid_uid: Some(2000) });
    let cases: &[(&str, usize, &str, &str)] = &[
        ("listeners:\n  - { path: a }\npassdbs:\n  - { driver: shadow, scheme: CRYPT }\n", 4, "passdbs[0].scheme", "not a setting of driver shadow"),
        ("listeners:\n  - { path: a }\npassdbs:\n  - { driver: shadow, path: \"/etc/%d/shadow\" }\n", 4, "passdbs[0].path", "without %variables"),
        (
            "listeners:\n  - { path: a }\npassdbs:\n  - { driver: shadow, first_valid_uid: 1 }\n",
            4,
            "passdbs[0].first_valid_uid",
            "not a setting of driver shadow",
        ),
        (
            "listeners:\n  - { path: a }\npassdbs:\n  - { driver: shadow }\nuserdbs:\n  - { driver: passwd, path: x }\n",
            6,
            "userdbs[0].path",
            "not a setting of driver passwd",
        ),
        (
            "listeners:\n  - { path: a }\npassdbs:\n  - { driver: shadow }\nuserdbs:\n  - { driver: passwd, first_valid_uid: 1000, last_valid_uid: 10 }\n",
            6,
            "userdbs[0].last_valid_uid",
            "below first_valid_uid",
        ),
    ];
    for (text, line, setting, hint) in cases {
        let e = load_text(text).unwrap_err().to_string();
        assert!(e.contains(&format!("test.yaml:{line}")) && e.contains(setting) && e.contains(hint), "{text}\n=> {e}");
    }
}

#[test]
fn pool_priority_settings_and_errors() {
    use crate::blocking::{Priority, Scheduling};
    let base = "listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\npool:\n";
    let c = load_text(base).unwrap();
    assert_eq!(c.pool.priority, Priority { nice: DEFAULT_POOL_NICE, scheduling: Scheduling::Normal });
    for (set, want) in [
        ("  nice: 0\n", Priority { nice: 0, scheduling: Scheduling::Normal }),
        ("  nice: 19\n  scheduling: batch\n", Priority { nice: 19, scheduling: Scheduling::Batch }),
        ("  scheduling: idle\n", Priority { nice: DEFAULT_POOL_NICE, scheduling: Scheduling::Idle }),
        ("  scheduling: normal\n", Priority { nice: DEFAULT_POOL_NICE, scheduling: Scheduling::Normal }),
    ] {
        assert_eq!(load_text(&format!("{base}{set}")).unwrap().pool.priority, want, "{set}");
    }
    for (set, line, setting, says) in [
        ("  nice: 20\n", 6, "pool.nice", "0 (the reactor's) to 19"),
        ("  nice: -5\n", 6, "pool.nice", "0 (the reactor's) to 19"),
        ("  threads: 2\n  scheduling: fifo\n", 7, "pool.scheduling", "normal, batch or idle"),
    ] {
        let e = load_text(&format!("{base}{set}")).unwrap_err();
        assert_eq!((e.file.as_str(), e.line, e.setting.as_str()), ("test.yaml", Some(line), setting), "{set}: {e}");
        assert!(e.message.contains(says), "{set}: {e}");
    }
}

#[test]
fn reactor_threads_setting_and_error() {
    let base = "listeners:\n  - { path: a }\npassdbs:\n  - { driver: passwd-file, path: users.passwd }\n";
    assert_eq!(load_text(base).unwrap().reactor_threads, 1, "one reactor thread by default");
    assert_eq!(load_text(&format!("{base}reactor:\n  threads: 0\n")).unwrap().reactor_threads, 0);
    assert_eq!(load_text(&format!("{base}reactor:\n  threads: 4\n")).unwrap().reactor_threads, 4);
    let e = load_text(&format!("{base}reactor:\n  threads: 100000\n")).unwrap_err();
    assert_eq!((e.file.as_str(), e.line, e.setting.as_str()), ("test.yaml", Some(6), "reactor.threads"), "{e}");
    assert!(e.message.contains("0 for one per core"), "{e}");
}
