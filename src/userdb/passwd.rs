//! The `passwd` userdb: system users through NSS (`getpwnam`), as Dovecot's `userdb passwd`.
//!
//! A lookup answers `system_groups_user`, `uid`, `gid` and `home` from the user's passwd entry,
//! in Dovecot 2.3's order. NSS may ask LDAP, SSSD or the network, so every call runs on the
//! blocking pool, never on the reactor.
//!
//! LIST iterates where NSS allows enumeration: `getpwent` is not in nix and cannot be called
//! without `unsafe`, so the enumeration runs `getent passwd` (the same NSS walk, through the
//! same `nsswitch.conf` and environment) on the pool, reads at most [`MAX_LIST_BYTES`] of its
//! output, and keeps the users whose uid is in `first_valid_uid..=last_valid_uid` (Dovecot's
//! filter: daemons' accounts are not mail users). NSS sources that do not enumerate (LDAP
//! with `enumerate = false`) list only the users they list.

use std::io::Read;
use std::process::{Command, Stdio};

use async_trait::async_trait;

use super::{Lookup, UserList, Userdb, UserdbOutcome};
use crate::blocking::Pool;
use crate::request::Fields;

/// The most output of `getent passwd` read for one LIST.
pub(crate) const MAX_LIST_BYTES: u64 = 64 * 1024 * 1024;

/// The passwd userdb.
#[derive(Debug)]
pub struct Passwd {
    pool: Pool,
    first_valid_uid: u32,
    last_valid_uid: Option<u32>,
}

impl Passwd {
    /// A userdb over NSS; LIST keeps uids from `first_valid_uid` to `last_valid_uid` (no upper
    /// bound when `None`).
    pub fn new(pool: Pool, first_valid_uid: u32, last_valid_uid: Option<u32>) -> Passwd {
        Passwd { pool, first_valid_uid, last_valid_uid }
    }
}

/// The user names in `getent passwd` output whose uid is in range, in order, each once.
/// Lines that are not `name:pw:uid:…` with a numeric uid are skipped.
pub(crate) fn list_names(output: &[u8], first_valid_uid: u32, last_valid_uid: Option<u32>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in output.split(|&b| b == b'\n') {
        let mut fields = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let Some(uid) = std::str::from_utf8(uid).ok().and_then(|u| u.parse::<u32>().ok()) else { continue };
        if uid < first_valid_uid || last_valid_uid.is_some_and(|last| uid > last) {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else { continue };
        if name.is_empty() || name.starts_with(['+', '-']) {
            continue;
        }
        if seen.insert(name.to_owned()) {
            names.push(name.to_owned());
        }
    }
    names
}

/// Runs `getent passwd` and reads at most [`MAX_LIST_BYTES`] (on the blocking pool).
fn enumerate() -> Result<Vec<u8>, String> {
    let mut child = Command::new("getent")
        .arg("passwd")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run getent passwd: {e}"))?;
    let mut out = Vec::new();
    let read = match child.stdout.take() {
        Some(stdout) => stdout.take(MAX_LIST_BYTES + 1).read_to_end(&mut out).map(|_| ()),
        None => Ok(()),
    };
    if out.len() as u64 > MAX_LIST_BYTES {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("getent passwd wrote more than {MAX_LIST_BYTES} bytes"));
    }
    let status = child.wait().map_err(|e| format!("getent passwd: {e}"))?;
    read.map_err(|e| format!("reading getent passwd: {e}"))?;
    // getent exits 2 when the database has no entries at all: an empty list, not a failure.
    match status.code() {
        Some(0) | Some(2) => Ok(out),
        _ => Err(format!("getent passwd failed ({status})")),
    }
}

#[async_trait]
impl Userdb for Passwd {
    fn driver(&self) -> &'static str {
        "passwd"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> UserdbOutcome {
        if lookup.user.is_empty() || lookup.user.contains('\0') {
            return UserdbOutcome::NotFound;
        }
        let name = lookup.user.to_owned();
        let found = self.pool.run(move || nix::unistd::User::from_name(&name)).await;
        let user = match found {
            Ok(Ok(Some(user))) => user,
            Ok(Ok(None)) => return UserdbOutcome::NotFound,
            // POSIX lets getpwnam_r say "not found" with these too (nss_wrapper, some NSS
            // modules); other errors are real failures.
            Ok(Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH)) => return UserdbOutcome::NotFound,
            Ok(Err(errno)) => return UserdbOutcome::InternalFailure(format!("getpwnam() failed: {errno}")),
            Err(e) => return UserdbOutcome::InternalFailure(e.to_string()),
        };
        // Dovecot stops on an NSS module that answers for another name (broken nss_ldap); a
        // lookup error here keeps the daemon up and the login out.
        if !user.name.eq_ignore_ascii_case(lookup.user) {
            return UserdbOutcome::InternalFailure(format!("getpwnam() returned a different user ({:?})", crate::protocol::sanitize(user.name.as_bytes(), 64)));
        }
        let Some(home) = user.dir.to_str() else {
            return UserdbOutcome::InternalFailure("the home directory is not UTF-8".into());
        };
        let mut fields = Fields::new();
        fields.set("system_groups_user", &user.name);
        fields.set("uid", &user.uid.to_string());
        fields.set("gid", &user.gid.to_string());
        fields.set("home", home);
        UserdbOutcome::Found(fields)
    }

    async fn iterate(&self) -> Option<UserList> {
        let (first, last) = (self.first_valid_uid, self.last_valid_uid);
        let listed = self.pool.run(move || enumerate().map(|out| list_names(&out, first, last))).await;
        Some(match listed {
            Ok(Ok(names)) => UserList::ready(names),
            Ok(Err(e)) => UserList::Failed(Some(e)),
            Err(e) => UserList::Failed(Some(e.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_users_in_the_uid_range_once() {
        let out = b"root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1::/:/usr/sbin/nologin\n\
alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
bob:x:1001:100::/home/bob:/bin/sh\n\
alice:x:1000:1000:dup:/x:/bin/sh\n\
+nis:x:5000:0:::\n\
bad:x:notanumber:0:::\n\
short:x\n\
\n\
nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(list_names(out, 500, None), ["alice", "bob", "nobody"]);
        assert_eq!(list_names(out, 500, Some(60000)), ["alice", "bob"]);
        assert_eq!(list_names(out, 0, Some(0)), ["root"]);
        assert!(list_names(b"", 0, None).is_empty());
        assert!(list_names(b"\xff:x:1000:1\n", 0, None).is_empty());
    }
}
