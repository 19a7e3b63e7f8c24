//! Dovecot's passwd-file format, shared by the passwd-file passdb and userdb.
//!
//! `user:password:uid:gid:gecos:home:shell:extra_fields`. Only the user is required. Everything
//! after the seventh colon is the extra-field list (colons kept), split on spaces into
//! `key=value` or bare `key` items. Empty lines and lines starting with `#` or `:` are skipped.
//! A user listed twice keeps its first entry. A malformed line is skipped and reported by line
//! number, never with its password.
//!
//! Files are re-read when their modification time, size or inode changes; the check is one
//! `stat` per lookup. A path may hold `%variables` (one file per domain); then each expanded
//! path is a file of its own, and `/` in a substituted value is cut away so a user name cannot
//! walk the file system.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One user's entry. `Debug` hides the stored password and the extra fields' values (they may
/// hold `pass=` or other secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The stored password, `None` when the line has no password field.
    pub password: Option<String>,
    /// The uid field, as written (a number or a user name), when non-empty.
    pub uid: Option<String>,
    /// The gid field, as written, when non-empty.
    pub gid: Option<String>,
    /// The home directory, when non-empty.
    pub home: Option<String>,
    /// Extra fields, in file order.
    pub extra_fields: Vec<(String, String)>,
}

/// A problem with one line of a file; the line is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never contains the password).
    pub what: String,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("home", &self.home)
            .field("extra_fields", &self.extra_fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

/// A parsed file. `Debug` shows only the number of users (the entries hold stored passwords).
#[derive(Default)]
pub struct Users {
    users: HashMap<String, Entry>,
    order: Vec<String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("users", &self.users.len()).finish_non_exhaustive()
    }
}

impl Users {
    /// The entry of `user`, matched exactly (case-sensitive, as Dovecot).
    pub fn get(&self, user: &str) -> Option<&Entry> {
        self.users.get(user)
    }

    /// User names in file order (for LIST).
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Longest line we accept; a longer one is reported and skipped (nothing legitimate comes close).
pub const MAX_LINE: usize = 64 * 1024;

/// Parses the contents of a passwd-file. Invalid UTF-8 in a line makes that line a problem.
pub fn parse(content: &[u8]) -> (Users, Vec<LineProblem>) {
    let mut users = Users::default();
    let mut problems = Vec::new();
    for (n, raw) in content.split(|&b| b == b'\n').enumerate() {
        let line_no = n + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() || raw[0] == b'#' || raw[0] == b':' {
            continue;
        }
        if raw.len() > MAX_LINE {
            problems.push(LineProblem { line: line_no, what: format!("line longer than {MAX_LINE} bytes") });
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            problems.push(LineProblem { line: line_no, what: "line is not valid UTF-8".into() });
            continue;
        };
        let (user, entry) = parse_line(line);
        if users.users.contains_key(user) {
            problems.push(LineProblem { line: line_no, what: format!("user {user} exists more than once; the first entry is used") });
            continue;
        }
        users.order.push(user.to_owned());
        users.users.insert(user.to_owned(), entry);
    }
    (users, problems)
}

fn non_empty(field: Option<&str>) -> Option<String> {
    field.filter(|f| !f.is_empty()).map(str::to_owned)
}

fn parse_line(line: &str) -> (&str, Entry) {
    let mut fields = line.splitn(8, ':');
    let user = fields.next().unwrap_or_default();
    let password = fields.next().map(libpam_pwdfile_compat);
    let uid = non_empty(fields.next());
    let gid = non_empty(fields.next());
    let _gecos = fields.next();
    let home = non_empty(fields.next());
    let _shell = fields.next();
    let extra_fields = fields.next().map(parse_extra_fields).unwrap_or_default();
    (user, Entry { password, uid, gid, home, extra_fields })
}

/// libpam-pwdfile writes `hash[NN]`: 34 is PLAIN-MD5, 56 DIGEST-MD5, anything else CRYPT.
fn libpam_pwdfile_compat(password: &str) -> String {
    let b = password.as_bytes();
    let n = b.len();
    if n > 4 && b[0] != b'{' && b[0] != b'$' && b[n - 1] == b']' && b[n - 4] == b'[' && b[n - 3].is_ascii_digit() && b[n - 2].is_ascii_digit() {
        let hash = &password[..n - 4];
        let scheme = match &password[n - 3..n - 1] {
            "34" => "PLAIN-MD5",
            "56" => "DIGEST-MD5",
            _ => "CRYPT",
        };
        return format!("{{{scheme}}}{hash}");
    }
    password.to_owned()
}

/// Splits a space-separated `key=value` list. A bare key has an empty value.
pub fn parse_extra_fields(list: &str) -> Vec<(String, String)> {
    list.split(' ')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (item.to_owned(), String::new()),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    mtime_nsec: i64,
    size: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp { mtime: meta.mtime(), mtime_nsec: meta.mtime_nsec(), size: meta.size(), ino: meta.ino() }
    }
}

#[derive(Debug)]
struct Loaded {
    stamp: Stamp,
    users: Arc<Users>,
}

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not exist (with a per-domain path: an unknown domain).
    #[error("{0}: no such file")]
    Missing(PathBuf),
    /// Any other I/O error.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
}

/// A set of passwd-files, re-read when they change.
#[derive(Debug, Default)]
pub struct Files {
    // A std Mutex: held only to look up or swap an `Arc`, never across an await or a parse.
    loaded: Mutex<HashMap<PathBuf, Loaded>>,
}

/// The most files with `%variables` paths kept parsed at once; beyond it the map is cleared, so
/// requests naming many domains cannot grow memory without bound.
const MAX_FILES: usize = 1024;

impl Files {
    /// The users of `path`, re-reading the file when it changed since the last call. This does
    /// blocking file I/O: call it from the blocking pool, or when the file is known to be small.
    pub fn users(&self, path: &Path) -> Result<Arc<Users>, LoadError> {
        let meta = std::fs::metadata(path).map_err(|err| io_error(path, err))?;
        let stamp = Stamp::of(&meta);
        if let Some(users) = self.cached(path, stamp) {
            return Ok(users);
        }
        let content = std::fs::read(path).map_err(|err| io_error(path, err))?;
        let (users, problems) = parse(&content);
        for p in &problems {
            tracing::warn!(file = %path.display(), line = p.line, "passwd-file: {}", p.what);
        }
        tracing::info!(file = %path.display(), users = users.len(), "passwd-file read");
        let users = Arc::new(users);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.len() >= MAX_FILES && !loaded.contains_key(path) {
            loaded.clear();
        }
        loaded.insert(path.to_owned(), Loaded { stamp, users: Arc::clone(&users) });
        Ok(users)
    }

    /// The users of `path` when it is parsed and unchanged (one `stat`); `None` means it must
    /// be (re-)read with [`Files::users`], off the reactor.
    pub fn fresh(&self, path: &Path) -> Option<Arc<Users>> {
        std::fs::metadata(path).ok().and_then(|m| self.cached(path, Stamp::of(&m)))
    }

    fn cached(&self, path: &Path, stamp: Stamp) -> Option<Arc<Users>> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.get(path).filter(|l| l.stamp == stamp).map(|l| Arc::clone(&l.users))
    }
}

/// The users of `path` without blocking the reactor: parsed and unchanged, at once (one
/// `stat`); otherwise (re-)read on the blocking pool. With `missing_is_empty` (a per-domain
/// path), a file that does not exist holds no users: an unknown domain, not an error.
pub async fn load(files: &Arc<Files>, path: PathBuf, pool: &crate::blocking::Pool, missing_is_empty: bool) -> Result<Arc<Users>, String> {
    if let Some(users) = files.fresh(&path) {
        return Ok(users);
    }
    let files = Arc::clone(files);
    match pool.run(move || files.users(&path)).await {
        Ok(Ok(users)) => Ok(users),
        Ok(Err(LoadError::Missing(_))) if missing_is_empty => Ok(Arc::default()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn io_error(path: &Path, err: std::io::Error) -> LoadError {
    if err.kind() == std::io::ErrorKind::NotFound {
        LoadError::Missing(path.to_owned())
    } else {
        LoadError::Io { path: path.to_owned(), err }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_short_lines() {
        let (u, p) = parse(
            b"alice:{PLAIN}secret:1000:1000:Alice A:/home/alice:/bin/sh:quota=1G nodelay userdb_mail=maildir:~/M\nbob:$1$x$y\ncarol\n# comment\n:nouser\n\n",
        );
        assert!(p.is_empty(), "{p:?}");
        let a = u.get("alice").unwrap();
        assert_eq!(a.password.as_deref(), Some("{PLAIN}secret"));
        assert_eq!((a.uid.as_deref(), a.gid.as_deref(), a.home.as_deref()), (Some("1000"), Some("1000"), Some("/home/alice")));
        assert_eq!(a.extra_fields, vec![("quota".into(), "1G".into()), ("nodelay".into(), String::new()), ("userdb_mail".into(), "maildir:~/M".into())]);
        assert_eq!(u.get("bob").unwrap().password.as_deref(), Some("$1$x$y"));
        assert_eq!(u.get("carol").unwrap().password, None);
        assert_eq!(u.names(), ["alice", "bob", "carol"]);
        assert!(u.get("Alice").is_none());
    }

    #[test]
    fn duplicates_keep_the_first() {
        let (u, p) = parse(b"a:{PLAIN}1\na:{PLAIN}2\n");
        assert_eq!(u.get("a").unwrap().password.as_deref(), Some("{PLAIN}1"));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 2);
        assert!(!p[0].what.contains("{PLAIN}"));
    }

    #[test]
    fn hostile_lines() {
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.extend_from_slice(b":pw\nok:pw\n\xff\xfe:pw\r\n");
        let (u, p) = parse(&long);
        assert_eq!(u.names(), ["ok"]);
        assert_eq!(p.iter().map(|p| p.line).collect::<Vec<_>>(), vec![1, 3]);
        let (u, _) = parse(b"::::::::::::\nx::::::::::\n");
        // Everything after the seventh colon is the extra-field list, colons kept (as Dovecot).
        assert_eq!(u.get("x").unwrap().extra_fields, vec![(":::".to_string(), String::new())]);
    }

    #[test]
    fn pam_pwdfile_suffixes() {
        let (u, _) = parse(b"a:abc[34]\nb:xyzw[13]\nc:{PLAIN}x[34]\n");
        assert_eq!(u.get("a").unwrap().password.as_deref(), Some("{PLAIN-MD5}abc"));
        assert_eq!(u.get("b").unwrap().password.as_deref(), Some("{CRYPT}xyzw"));
        assert_eq!(u.get("c").unwrap().password.as_deref(), Some("{PLAIN}x[34]"));
    }

    #[test]
    fn files_reload_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "a:{PLAIN}1\n").unwrap();
        let files = Files::default();
        assert!(files.users(&path).unwrap().get("a").is_some());
        assert!(files.fresh(&path).is_some());
        std::fs::write(&path, "b:{PLAIN}22\n").unwrap();
        let users = files.users(&path).unwrap();
        assert!(users.get("a").is_none() && users.get("b").is_some());
        assert!(matches!(files.users(&dir.path().join("nope")), Err(LoadError::Missing(_))));
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    const HASH: &str = "$6$saltsalt$9cLFTsV3MHQE2oXGo7BqvdzkT1JVgWw6UrPDeqJN.hashhashhash";

    #[test]
    fn entry_users_and_files_never_print_a_hash() {
        let (users, _) = parse(format!("alice:{{SHA512-CRYPT}}{HASH}:1000:1000::/home/alice::userdb_pass=extrasecret\n").as_bytes());
        let entry = users.get("alice").unwrap();
        assert_eq!(entry.password.as_deref(), Some(format!("{{SHA512-CRYPT}}{HASH}").as_str()));
        for shown in [format!("{entry:?}"), format!("{users:?}")] {
            assert!(!shown.contains(HASH) && !shown.contains("saltsalt") && !shown.contains("extrasecret"), "{shown}");
        }
        assert!(format!("{entry:?}").contains("/home/alice"), "the rest stays visible");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, format!("alice:{{SHA512-CRYPT}}{HASH}\n")).unwrap();
        let files = Files::default();
        let loaded = files.users(&path).unwrap();
        for shown in [format!("{files:?}"), format!("{loaded:?}")] {
            assert!(!shown.contains(HASH), "{shown}");
        }
    }
}
