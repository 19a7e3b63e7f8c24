//! Real PAM services for tests, in a temp folder: nothing is written to /etc/pam.d.
//!
//! The folder holds a Berkeley DB of users for `pam_userdb` (crypt(3) SHA-512 hashes), an
//! htpasswd-like file for `pam_pwdfile`, a `denied-users` list for `pam_listfile`, a
//! `pam_exec` script that sleeps 30 s for the user `hang`, and `pam.d/`, the config folder the
//! daemon reads the services from (`config_dir`, i.e. `pam_start_confdir`). Dropping the
//! fixture removes it all.
//!
//! Users: `pamuser1`/`pampw1`, `pamuser2`/`pä ss€`, `locked`/`lockedpw` (refused by the
//! account stage), `hang`/`hangpw` (its auth stage hangs for 30 s).
//!
//! Services:
//! - `saslgate-userdb`: `pam_exec` (hangs for `hang`) + `pam_userdb`; account:
//!   `pam_listfile` deny + `pam_userdb`.
//! - `saslgate-pwdfile`: the same with `pam_pwdfile` (only when libpam-pwdfile is installed).

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};
use std::process::Command;

/// crypt(3) SHA-512 hashes (`openssl passwd -6 -salt saltsalt …`).
pub(crate) const USERS: &[(&str, &str, &str)] = &[
    ("pamuser1", "pampw1", "$6$saltsalt$s1S5rVbulyF9/0dCBcuwF4fwVjDUaOteNyBKpS1G56LuJ27TVvOVXBnqlEnmGmgIOlQikxv0cZiO0Rl9zDc6Y/"),
    ("pamuser2", "pä ss€", "$6$saltsalt$FFJgz/H0r7ta9qNGB/l1sARKixU8TqJcQEfPvkReCna7UwqG882fh6nkPnCvFCfybq5Ud0w0C3flR/26q3gBc."),
    ("locked", "lockedpw", "$6$saltsalt$3AZFRaUZx8i4MV7pmZwFYHF6AUBTzZHYpmPNLWGy/e0sR8C0Ilf1fhwq/2X3a.dA8QLrM5YuEuW/5lIpJrGRb1"),
    // hangpw; never checked (the user hangs first).
    ("hang", "hangpw", "$6$saltsalt$s1S5rVbulyF9/0dCBcuwF4fwVjDUaOteNyBKpS1G56LuJ27TVvOVXBnqlEnmGmgIOlQikxv0cZiO0Rl9zDc6Y/"),
];

const MODULES: &str = "/lib/x86_64-linux-gnu/security";
const DB_LOAD: &str = "db5.3_load";

pub(crate) struct PamFixture {
    dir: tempfile::TempDir,
    pub(crate) pwdfile_service: bool,
}

/// Why the PAM tests cannot run here, if they cannot.
pub(crate) fn missing() -> Option<String> {
    let module_dir =
        [MODULES, "/usr/lib/x86_64-linux-gnu/security", "/lib/security", "/usr/lib/security"].into_iter().find(|d| Path::new(d).join("pam_userdb.so").exists());
    if module_dir.is_none() {
        return Some("pam_userdb.so not found (install libpam-modules; scripts/install-deps.sh)".into());
    }
    for m in ["pam_exec.so", "pam_listfile.so"] {
        if !module_dir.map(|d| Path::new(d).join(m).exists()).unwrap_or(false) {
            return Some(format!("{m} not found (install libpam-modules)"));
        }
    }
    if Command::new(DB_LOAD).arg("-V").output().is_err() {
        return Some(format!("{DB_LOAD} not found (install db5.3-util; scripts/install-deps.sh)"));
    }
    None
}

fn module_exists(name: &str) -> bool {
    [MODULES, "/usr/lib/x86_64-linux-gnu/security", "/lib/security", "/usr/lib/security"].iter().any(|d| Path::new(d).join(name).exists())
}

impl PamFixture {
    /// Writes the folder; panics (a failed test) when a step fails.
    pub(crate) fn new() -> PamFixture {
        // PAM splits module arguments at spaces: the folder's path must have none.
        let dir = tempfile::Builder::new().prefix("saslgate-pam-").tempdir_in("/tmp").unwrap();
        let d = dir.path();
        assert!(!d.to_string_lossy().contains(' '));
        std::fs::create_dir(d.join("pam.d")).unwrap();

        // pam_userdb: key and value lines for db_load -T.
        let mut kv = String::new();
        for (user, _, hash) in USERS {
            kv.push_str(&format!("{user}\n{hash}\n"));
        }
        std::fs::write(d.join("userdb.txt"), kv).unwrap();
        let out = Command::new(DB_LOAD).args(["-T", "-t", "hash", "-f"]).arg(d.join("userdb.txt")).arg(d.join("userdb.db")).output().unwrap();
        assert!(out.status.success(), "db_load: {}", String::from_utf8_lossy(&out.stderr));

        let pwdfile: String = USERS.iter().map(|(u, _, h)| format!("{u}:{h}\n")).collect();
        std::fs::write(d.join("pwdfile"), pwdfile).unwrap();
        std::fs::write(d.join("denied-users"), "locked\n").unwrap();
        // pam_exec: hang for one user (the auth stage), succeed at once for everyone else.
        let hang = d.join("hang.sh");
        std::fs::write(&hang, "#!/bin/sh\n[ \"$PAM_USER\" = hang ] && exec sleep 30\nexit 0\n").unwrap();
        set_mode(&hang, 0o755);

        let dp = d.display();
        let account = format!("account required pam_listfile.so item=user sense=deny file={dp}/denied-users onerr=succeed\n");
        let userdb = format!(
            "# saslgate test service (tests/pam_fixture)\n\
             auth    requisite pam_exec.so quiet {dp}/hang.sh\n\
             auth    required pam_userdb.so db={dp}/userdb crypt=crypt\n\
             {account}\
             account required pam_userdb.so db={dp}/userdb crypt=crypt\n\
             session required pam_permit.so\n"
        );
        std::fs::write(d.join("pam.d/saslgate-userdb"), userdb).unwrap();
        let pwdfile_service = module_exists("pam_pwdfile.so");
        if pwdfile_service {
            let svc = format!(
                "# saslgate test service (tests/pam_fixture)\n\
                 auth    required pam_pwdfile.so pwdfile={dp}/pwdfile\n\
                 {account}\
                 account required pam_permit.so\n\
                 session required pam_permit.so\n"
            );
            std::fs::write(d.join("pam.d/saslgate-pwdfile"), svc).unwrap();
        }
        for f in ["userdb.db", "pwdfile", "denied-users"] {
            set_mode(&d.join(f), 0o644);
        }
        PamFixture { dir, pwdfile_service }
    }

    /// The folder the service files are in (`config_dir`).
    pub(crate) fn config_dir(&self) -> PathBuf {
        self.dir.path().join("pam.d")
    }

    /// The temp folder itself (sockets may go here).
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}
