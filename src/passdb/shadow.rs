//! The `shadow` passdb: system users' password hashes from a shadow file (`/etc/shadow`), as
//! Dovecot's `passdb shadow` has them, without PAM.
//!
//! The driver only finds the entry: the hash goes to the chain as `{CRYPT}…` and our schemes
//! verify it (SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT, bcrypt). Like Dovecot, a password field that
//! is empty or starts with `*` or `!` (a locked or password-less account) makes the user
//! disabled, never a login. Unlike Dovecot 2.3, which ignores it, an account whose expiry date
//! (the 8th field, days since 1970) has passed is disabled too: `usermod -e` is how admins close
//! accounts, and an expired account must not log in through saslgate when it cannot through
//! PAM. Password ageing (`chage -M`) is not checked, as in Dovecot.
//!
//! The file is read on the blocking pool on each lookup (as `getspnam` does), at most
//! [`MAX_SHADOW_BYTES`], and parsed by [`find`], a pure function over bytes.

use std::io::Read;
use std::path::PathBuf;

use async_trait::async_trait;

use super::{Lookup, Passdb, PassdbOutcome, PassdbReply};
use crate::blocking::Pool;
use crate::scheme::Scheme;

/// The default shadow file.
pub const DEFAULT_PATH: &str = "/etc/shadow";

/// The largest shadow file read (a larger one is an internal failure, not a partial read).
pub const MAX_SHADOW_BYTES: u64 = 64 * 1024 * 1024;

/// One user's line of a shadow file, as far as a login needs it. `Debug` hides the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    /// The user name, as written in the file.
    pub name: String,
    /// The password field (a crypt hash, or `!`/`*`/empty for a locked account).
    pub password: Vec<u8>,
    /// The account's expiry, in days since 1970-01-01; `None` when the field is empty or absent.
    pub expire_days: Option<i64>,
}

impl std::fmt::Debug for ShadowEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowEntry").field("name", &self.name).field("password", &"<hidden>").field("expire_days", &self.expire_days).finish()
    }
}

/// What the shadow file says about one user at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowState {
    /// Usable: the hash to verify (valid UTF-8, not a lock marker).
    Active(String),
    /// The password field is empty, or starts with `*` or `!` (Dovecot's `IS_VALID_PASSWD`).
    Locked,
    /// The account's expiry date has passed.
    Expired,
}

impl ShadowEntry {
    /// The state of this account at `now_secs` (seconds since 1970).
    pub fn state(&self, now_secs: i64) -> ShadowState {
        match self.password.first() {
            None | Some(b'*') | Some(b'!') => return ShadowState::Locked,
            Some(_) => {}
        }
        // Dovecot's and shadow-utils' reading: 0 or empty means "never expires"; the account
        // is closed from the start of the expiry day on.
        if let Some(days) = self.expire_days {
            if days > 0 && days.saturating_mul(86_400) <= now_secs {
                return ShadowState::Expired;
            }
        }
        // A crypt hash is ASCII; anything else can never verify: treat it as locked.
        match std::str::from_utf8(&self.password) {
            Ok(hash) => ShadowState::Active(hash.to_owned()),
            Err(_) => ShadowState::Locked,
        }
    }
}

/// Finds `user`'s line in the bytes of a shadow file. Lines are
/// `name:password:lastchg:min:max:warn:inactive:expire:reserved`; a line without a `:`, an empty
/// name, NIS `+`/`-` lines and `#` comments are skipped, as glibc's `getspnam` skips what it
/// cannot parse; a non-numeric expiry makes that line unusable (skipped, never "no expiry").
/// The first matching line wins. Never allocates more than the matching line.
pub fn find(data: &[u8], user: &str) -> Option<ShadowEntry> {
    if user.is_empty() || user.contains([':', '\n']) {
        return None;
    }
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_none_or(|&b| b == b'#' || b == b'+' || b == b'-') {
            continue;
        }
        let mut fields = line.split(|&b| b == b':');
        let name = fields.next().unwrap_or_default();
        if name != user.as_bytes() {
            continue;
        }
        let Some(password) = fields.next() else { continue };
        // lastchg, min, max, warn, inactive, then expire.
        let expire = fields.nth(5).unwrap_or_default();
        let expire_days = if expire.is_empty() {
            None
        } else {
            match std::str::from_utf8(expire).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(days) => Some(days),
                None => continue,
            }
        };
        return Some(ShadowEntry { name: user.to_owned(), password: password.to_vec(), expire_days });
    }
    None
}

/// Reads a shadow file, at most [`MAX_SHADOW_BYTES`] (call it on the blocking pool).
fn read_bounded(path: &std::path::Path) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut data = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_SHADOW_BYTES + 1).read_to_end(&mut data).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_SHADOW_BYTES {
        return Err(format!("{} is larger than {MAX_SHADOW_BYTES} bytes", path.display()));
    }
    Ok(data)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The shadow passdb.
#[derive(Debug)]
pub struct Shadow {
    path: PathBuf,
    pool: Pool,
}

impl Shadow {
    /// A passdb over the shadow file at `path`.
    pub fn new(path: PathBuf, pool: Pool) -> Shadow {
        Shadow { path, pool }
    }
}

#[async_trait]
impl Passdb for Shadow {
    fn driver(&self) -> &'static str {
        "shadow"
    }

    async fn lookup(&self, lookup: Lookup<'_>) -> PassdbReply {
        let (path, user) = (self.path.clone(), lookup.user.to_owned());
        let found = self.pool.run(move || read_bounded(&path).map(|data| find(&data, &user))).await;
        let entry = match found {
            Ok(Ok(Some(entry))) => entry,
            Ok(Ok(None)) => return PassdbReply::bare(PassdbOutcome::UserUnknown),
            Ok(Err(e)) => return PassdbReply::bare(PassdbOutcome::InternalFailure(e)),
            Err(e) => return PassdbReply::bare(PassdbOutcome::InternalFailure(e.to_string())),
        };
        match entry.state(now_secs()) {
            ShadowState::Active(hash) => PassdbReply {
                outcome: PassdbOutcome::Ok,
                fields: crate::request::Fields::new(),
                stored_password: Some(zeroize::Zeroizing::new(format!("{{CRYPT}}{hash}"))),
            },
            ShadowState::Locked | ShadowState::Expired => PassdbReply::bare(PassdbOutcome::UserDisabled),
        }
    }

    fn default_scheme(&self) -> Scheme {
        Scheme::Crypt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &[u8] = b"root:*:19000:0:99999:7:::\n\
alice:$6$salt$hash:19000:0:99999:7:::\n\
# a comment\n\
+nis::::::::\n\
locked:!$6$salt$hash:19000:0:99999:7:::\n\
star:*:19000::::::\n\
empty::19000::::::\n\
old:$6$salt$hash:19000:0:99999:7::100:\n\
zero:$6$salt$hash:19000:0:99999:7::0:\n\
short:$6$s$h\n\
badexp:$6$salt$hash:19000:0:99999:7::soon:\n\
crlf:$6$salt$hash::::::: \r\n";

    #[test]
    fn finds_a_user_and_its_hash() {
        let e = find(FILE, "alice").unwrap();
        assert_eq!(e.password, b"$6$salt$hash");
        assert_eq!(e.expire_days, None);
        assert_eq!(e.state(1_900_000_000), ShadowState::Active("$6$salt$hash".into()));
    }

    #[test]
    fn locked_and_empty_fields_are_disabled() {
        for user in ["locked", "star", "empty", "root"] {
            assert_eq!(find(FILE, user).unwrap().state(0), ShadowState::Locked, "{user}");
        }
    }

    #[test]
    fn expiry_counts_days_since_1970() {
        let e = find(FILE, "old").unwrap();
        assert_eq!(e.expire_days, Some(100));
        assert_eq!(e.state(100 * 86_400 - 1), ShadowState::Active("$6$salt$hash".into()));
        assert_eq!(e.state(100 * 86_400), ShadowState::Expired);
        // 0 means never, as in Dovecot and shadow-utils.
        assert!(matches!(find(FILE, "zero").unwrap().state(i64::MAX), ShadowState::Active(_)));
    }

    #[test]
    fn a_line_with_only_name_and_password_has_no_expiry() {
        let e = find(FILE, "short").unwrap();
        assert_eq!((e.password.as_slice(), e.expire_days), (&b"$6$s$h"[..], None));
    }

    #[test]
    fn unparsable_expiry_skips_the_line() {
        assert_eq!(find(FILE, "badexp"), None);
        let twice = b"u:$6$a$b::::::x:\nu:$6$c$d::::::5:\n";
        assert_eq!(find(twice, "u").unwrap().password, b"$6$c$d");
    }

    #[test]
    fn negative_cases() {
        assert_eq!(find(FILE, "nobody"), None);
        assert_eq!(find(FILE, ""), None, "an empty name never matches an odd line");
        assert_eq!(find(b":pw:::::::\n", ""), None);
        assert_eq!(find(FILE, "+nis"), None);
        assert_eq!(find(FILE, "# a comment"), None);
        assert_eq!(find(FILE, "alice:$6$salt$hash"), None);
        assert_eq!(find(b"alice\n", "alice"), None, "a line without a password field");
        assert_eq!(find(b"", "alice"), None);
        assert_eq!(find(b"\n\n\n", "alice"), None);
        assert_eq!(find(b"ALICE:$6$a$b\n", "alice"), None, "names are case-sensitive");
        // Non-UTF-8 in the hash: never verifiable, so locked.
        assert_eq!(find(b"u:\xff\xfe:::::::\n", "u").unwrap().state(0), ShadowState::Locked);
        // A CR before the line feed is not part of the last field.
        assert_eq!(find(FILE, "crlf").unwrap().expire_days, None);
    }

    #[test]
    fn debug_hides_the_hash() {
        let shown = format!("{:?}", find(FILE, "alice").unwrap());
        assert!(!shown.contains("$6$"), "{shown}");
    }
}
