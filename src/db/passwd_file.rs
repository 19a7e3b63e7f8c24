//! Dovecot's passwd-file format, shared by the passwd-file passdb and userdb.
//!
//! `user:password:uid:gid:gecos:home:shell:extra_fields`. Only the user is required. Everything
//! after the seventh colon is the extra-field list (colons kept), split on spaces into
//! `key=value` or bare `key` items. Empty lines and lines starting with `#` or `:` are skipped.
//! A user listed twice keeps its first entry. A malformed line is skipped and reported by line
//! number, never with its password.
//!
//! # Storage
//! A parsed file ([`Users`]) is the file's bytes in one buffer plus an open-addressing hash
//! table of line offsets keyed by the user name (8 bytes a slot, at most ¾ full): no string per
//! user. A lookup finds the line through the table and parses that one line. Loading is one
//! read and one pass over the lines (memchr), with the table sized from the line count, so a
//! file of a million users loads in a fraction of a second and takes little more memory than
//! the file itself.
//!
//! # Re-reading
//! Files are re-read when their modification or change time, size or inode changes; the check
//! is one `stat` per lookup. Reading and parsing run on the blocking pool, never on the reactor,
//! one load at a time per file; the new table replaces the old one in one pointer swap, and the
//! old one is freed once the last lookup using it is done (at most two tables of a file are
//! alive at once). While a file of [`STALE_FROM`] bytes or more is being re-read, lookups keep
//! answering from the previous contents, so a reply never waits for a big reload: an answer can
//! be stale for the time a load takes (a few hundred milliseconds for a million users).
//! Dovecot is stale too (it checks a file at most once a second) and, worse, blocks every reply
//! while it re-reads. A smaller file is re-read before the lookup answers (a few milliseconds),
//! so a changed password takes effect at once.
//!
//! When a file that was read before cannot be read again (permissions, I/O error, a directory,
//! too large), the previous contents stay in use and the error is logged with the path; it is
//! retried when the file changes, or after [`RETRY_FAILED`]. A file that no longer exists is not
//! kept: its users are gone (a lookup fails, or with a per-domain path finds no user), as with
//! Dovecot.
//!
//! A path may hold `%variables` (one file per domain); then each expanded path is a file of its
//! own, and `/` in a substituted value is cut away so a user name cannot walk the file system.

use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{BuildHasher, RandomState};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// A passdb's part of a line ([`Users::get_passdb`]): the stored password and the extra fields.
pub type PassdbPart = (Option<String>, Vec<(String, String)>);

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

/// A parsed file: its bytes and an index of its users' lines. `Debug` shows only the number of
/// users (the bytes hold stored passwords).
#[derive(Default)]
pub struct Users {
    buf: Vec<u8>,
    index: Index,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("users", &self.index.len).finish_non_exhaustive()
    }
}

impl Users {
    /// The entry of `user`, matched exactly (case-sensitive, as Dovecot), parsed from its line.
    pub fn get(&self, user: &str) -> Option<Entry> {
        self.line(user).map(|line| parse_line(line).1)
    }

    /// A passdb's part of `user`'s line: the stored password and the extra fields, without
    /// copying the uid, gid or home a passdb does not use (the same fields as [`Users::get`]).
    pub fn get_passdb(&self, user: &str) -> Option<PassdbPart> {
        let c = columns(self.line(user)?);
        Some((c.password.map(libpam_pwdfile_compat), c.extra.map(parse_extra_fields).unwrap_or_default()))
    }

    /// `user`'s line, if the file has one.
    fn line(&self, user: &str) -> Option<&str> {
        let offset = self.index.find(&self.buf, user.as_bytes())?;
        // Every indexed line was checked to be UTF-8 when the file was read.
        std::str::from_utf8(line_at(&self.buf, offset)).ok()
    }

    /// User names in file order (for LIST).
    pub fn names(&self) -> Vec<String> {
        let mut offsets: Vec<u32> = self.index.offsets().collect();
        offsets.sort_unstable();
        offsets.into_iter().map(|o| String::from_utf8_lossy(name_at(&self.buf, o)).into_owned()).collect()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.index.len
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    /// Heap memory held: the file's bytes and the index.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.index.slots.capacity() * size_of::<u64>()
    }
}

/// Longest line we accept; a longer one is reported and skipped (nothing legitimate comes close).
pub const MAX_LINE: usize = 64 * 1024;

/// Largest file we read: line offsets are 32-bit.
pub const MAX_FILE: usize = u32::MAX as usize;

/// The line starting at `offset`, without its line feed and a carriage return before it.
fn line_at(buf: &[u8], offset: u32) -> &[u8] {
    let rest = buf.get(offset as usize..).unwrap_or_default();
    let raw = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// The user name of the line starting at `offset`: up to the first `:`, or the whole line.
fn name_at(buf: &[u8], offset: u32) -> &[u8] {
    let rest = buf.get(offset as usize..).unwrap_or_default();
    match memchr::memchr2(b':', b'\n', rest) {
        Some(i) if rest[i] == b':' => &rest[..i],
        end => {
            let raw = &rest[..end.unwrap_or(rest.len())];
            raw.strip_suffix(b"\r").unwrap_or(raw)
        }
    }
}

/// An open-addressing hash table (linear probing) of line offsets, keyed by the user name on
/// the line. A slot holds the name's 32-bit hash in its high half and the offset in its low
/// half, so probes rarely touch the file's bytes and growing never re-hashes a name. The hash
/// is keyed per table (SipHash with a random key): client-chosen names cannot aim at long
/// probe runs.
#[derive(Default)]
struct Index {
    slots: Vec<u64>,
    len: usize,
    hasher: RandomState,
}

/// An empty slot: its offset half is `u32::MAX`, which no line of a file below [`MAX_FILE`]
/// bytes starts at.
const EMPTY: u64 = u64::MAX;

impl Index {
    /// Slots for `n` users: a power of two, at most ¾ full.
    fn slots_for(n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(8)
        }
    }

    fn with_capacity(n: usize) -> Index {
        Index { slots: vec![EMPTY; Index::slots_for(n)], len: 0, hasher: RandomState::new() }
    }

    fn hash(&self, name: &[u8]) -> u32 {
        let h = self.hasher.hash_one(name);
        (h ^ (h >> 32)) as u32
    }

    fn offsets(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().filter(|&&s| s != EMPTY).map(|&s| s as u32)
    }

    fn find(&self, buf: &[u8], name: &[u8]) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let (h, mask) = (self.hash(name), self.slots.len() - 1);
        let mut i = h as usize & mask;
        // Terminates: the table is never more than ¾ full, so an empty slot comes.
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == h && name_at(buf, s as u32) == name {
                return Some(s as u32);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds the line at `offset` under `name`; `false` (and nothing added) when the name is
    /// already there.
    fn insert(&mut self, buf: &[u8], name: &[u8], offset: u32) -> bool {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.resize(Index::slots_for((self.len + 1) * 2));
        }
        let (h, mask) = (self.hash(name), self.slots.len() - 1);
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                self.slots[i] = (u64::from(h) << 32) | u64::from(offset);
                self.len += 1;
                return true;
            }
            if (s >> 32) as u32 == h && name_at(buf, s as u32) == name {
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// Moves every slot into a table of `n` slots (a power of two with room for them all).
    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; n]);
        let mask = n.wrapping_sub(1);
        for s in old.into_iter().filter(|&s| s != EMPTY) {
            let mut i = (s >> 32) as usize & mask;
            while self.slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// Gives back the room of a table sized for more users than the file turned out to hold.
    fn shrink_to_fit(&mut self) {
        let n = Index::slots_for(self.len);
        if n < self.slots.len() {
            self.resize(n);
        }
    }
}

/// Parses the contents of a passwd-file. Invalid UTF-8 in a line makes that line a problem.
pub fn parse(content: &[u8]) -> (Users, Vec<LineProblem>) {
    parse_owned(content.to_vec())
}

/// [`parse`], keeping `content` as the table's buffer (no copy). Beyond [`MAX_FILE`] bytes the
/// rest is reported as one problem and ignored.
pub fn parse_owned(content: Vec<u8>) -> (Users, Vec<LineProblem>) {
    let mut problems = Vec::new();
    // Size the table once for the lines there are (at most one user each), but not beyond one
    // user per 8 bytes: a file of mostly blank or comment lines then grows the table instead.
    let lines = memchr::memchr_iter(b'\n', &content).count() + 1;
    let mut index = Index::with_capacity(lines.min(content.len() / 8 + 1));
    let buf = &content[..];
    let (mut start, mut line_no) = (0usize, 0usize);
    loop {
        line_no += 1;
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |i| start + i);
        let raw = &buf[start..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let offset = match u32::try_from(start) {
            Ok(offset) if offset != u32::MAX => offset,
            _ => {
                problems.push(LineProblem { line: line_no, what: format!("file longer than {MAX_FILE} bytes; the rest is ignored") });
                break;
            }
        };
        if raw.is_empty() || raw[0] == b'#' || raw[0] == b':' {
            // skipped
        } else if raw.len() > MAX_LINE {
            problems.push(LineProblem { line: line_no, what: format!("line longer than {MAX_LINE} bytes") });
        } else if let Ok(line) = std::str::from_utf8(raw) {
            let user = line.split(':').next().unwrap_or_default();
            if !index.insert(buf, user.as_bytes(), offset) {
                problems.push(LineProblem { line: line_no, what: format!("user {user} exists more than once; the first entry is used") });
            }
        } else {
            problems.push(LineProblem { line: line_no, what: "line is not valid UTF-8".into() });
        }
        if end >= buf.len() {
            break;
        }
        start = end + 1;
    }
    index.shrink_to_fit();
    (Users { buf: content, index }, problems)
}

fn non_empty(field: Option<&str>) -> Option<String> {
    field.filter(|f| !f.is_empty()).map(str::to_owned)
}

/// The columns of a line, borrowed: `user:password:uid:gid:gecos:home:shell:extra fields`.
struct Columns<'a> {
    user: &'a str,
    password: Option<&'a str>,
    uid: Option<&'a str>,
    gid: Option<&'a str>,
    home: Option<&'a str>,
    extra: Option<&'a str>,
}

fn columns(line: &str) -> Columns<'_> {
    // One pass over the line's bytes, at most seven `:` looked for: the eighth column (extra
    // fields) is the rest of the line, colons and all.
    let mut rest = Some(line);
    let mut next = |last: bool| {
        let text = rest?;
        match memchr::memchr(b':', text.as_bytes()).filter(|_| !last) {
            // `:` is ASCII: both halves are on character boundaries.
            Some(i) => {
                rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    };
    let user = next(false).unwrap_or_default();
    let password = next(false);
    let uid = next(false);
    let gid = next(false);
    let _gecos = next(false);
    let home = next(false);
    let _shell = next(false);
    Columns { user, password, uid, gid, home, extra: next(true) }
}

fn parse_line(line: &str) -> (&str, Entry) {
    let c = columns(line);
    let entry = Entry {
        password: c.password.map(libpam_pwdfile_compat),
        uid: non_empty(c.uid),
        gid: non_empty(c.gid),
        home: non_empty(c.home),
        extra_fields: c.extra.map(parse_extra_fields).unwrap_or_default(),
    };
    (c.user, entry)
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

/// What identifies one version of a file: a change to any of these re-reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    size: u64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            size: meta.size(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
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
    /// The file is larger than [`MAX_FILE`].
    #[error("{0}: file larger than {MAX_FILE} bytes")]
    TooLarge(PathBuf),
}

/// Files of this size or more are re-read in the background while the previous contents keep
/// answering; smaller ones are re-read before the lookup answers.
pub const STALE_FROM: u64 = 1 << 20;

/// How long a file that failed to load (unchanged since) is not tried again.
pub const RETRY_FAILED: Duration = Duration::from_secs(5);

/// A file found unchanged is not `stat`ed again for this long: under a flood of cheap logins,
/// one `stat` (a path walk in the kernel) per lookup was a tenth of the CPU per login. A change
/// is seen by the first lookup that starts more than this after the previous check (Dovecot
/// checks at most once a second, and only the mtime's seconds).
pub const RECHECK: Duration = Duration::from_millis(1);

/// Nanoseconds since the first call (never 0): a cheap monotonic clock for [`Slot::checked`].
fn since_start() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// How many loads one lookup may wait for when the file keeps changing under it.
const MAX_WAITS: u32 = 3;

/// A set of passwd-files, re-read when they change. `Debug` shows only how many.
#[derive(Default)]
pub struct Files {
    // A std Mutex: held only to find or insert a slot, never across an await or a parse.
    // Keyed by the path's bytes: hashing a `Path` walks its components, a tenth of a cheap
    // lookup's time.
    slots: Mutex<HashMap<OsString, Arc<Slot>>>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("files", &lock(&self.slots).len()).finish()
    }
}

/// One file: the table in use, and its loading state.
#[derive(Default)]
struct Slot {
    // A std Mutex: held only to clone or swap the table's `Arc` and flip the flags.
    state: Mutex<State>,
    /// When a `stat` last found the file unchanged from the table in use ([`since_start`]
    /// nanoseconds, 0 = never): within [`RECHECK`] of it, a lookup does not `stat` again.
    checked: AtomicU64,
    /// Woken when a load of this file finishes, successful or not.
    loaded: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// The table in use and the version of the file it was read from.
    current: Option<(Stamp, Arc<Users>)>,
    /// A load is queued or running (one at a time).
    loading: bool,
    /// The error of the last load, when it failed.
    last_error: Option<String>,
    /// The version whose load failed last, and when: not retried before [`RETRY_FAILED`].
    failed: Option<(Stamp, Instant)>,
}

/// The most files with `%variables` paths kept parsed at once; beyond it the map is cleared, so
/// requests naming many domains cannot grow memory without bound.
const MAX_FILES: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Files {
    fn slot(&self, path: &Path) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(path.as_os_str()) {
            return Arc::clone(slot);
        }
        if slots.len() >= MAX_FILES {
            slots.clear();
        }
        Arc::clone(slots.entry(path.as_os_str().to_owned()).or_default())
    }

    /// The slot of a file already known, if any.
    fn known(&self, path: &Path) -> Option<Arc<Slot>> {
        lock(&self.slots).get(path.as_os_str()).cloned()
    }

    /// Forgets a file that no longer exists (its table is freed once no lookup uses it).
    fn forget(&self, path: &Path) {
        let removed = lock(&self.slots).remove(path.as_os_str());
        drop(removed);
    }

    /// The number of files known (for tests).
    #[cfg(test)]
    fn count(&self) -> usize {
        lock(&self.slots).len()
    }
}

/// The users of `path`. A file read before and unchanged is answered at once (one `stat`);
/// otherwise it is (re-)read on the blocking pool, by one load at a time: a lookup waits for
/// the first load of a file and for the re-read of a small one, and answers from the previous
/// contents while a big one ([`STALE_FROM`]) is re-read. With `missing_is_empty` (a per-domain
/// path), a file that does not exist holds no users: an unknown domain, not an error.
pub async fn load(files: &Arc<Files>, path: impl AsRef<Path>, pool: &crate::blocking::Pool, missing_is_empty: bool) -> Result<Arc<Users>, String> {
    let path = path.as_ref();
    if let Some(users) = fresh(files, path) {
        return Ok(users);
    }
    let checking = since_start();
    let stamp = match std::fs::metadata(path) {
        Ok(meta) => Stamp::of(&meta),
        Err(err) => {
            files.forget(path);
            return match io_error(path, err) {
                LoadError::Missing(_) if missing_is_empty => Ok(Arc::default()),
                e => Err(e.to_string()),
            };
        }
    };
    let slot = files.slot(path);
    let mut waits = 0;
    loop {
        let loaded = {
            let mut state = lock(&slot.state);
            if let Some((s, users)) = &state.current {
                if *s == stamp {
                    slot.checked.store(checking, Ordering::Release);
                    return Ok(Arc::clone(users));
                }
            }
            let failed_recently = state.failed.is_some_and(|(s, at)| s == stamp && at.elapsed() < RETRY_FAILED);
            if !state.loading && !failed_recently && waits < MAX_WAITS {
                state.loading = true;
                start_load(Arc::clone(&slot), path.to_path_buf(), pool.clone(), stamp);
            }
            match &state.current {
                // Stale while re-read (big file), kept after a failed re-read, or changing faster
                // than it can be read.
                Some((_, users)) if stamp.size >= STALE_FROM || failed_recently || waits >= MAX_WAITS || !state.loading => return Ok(Arc::clone(users)),
                None if !state.loading => return Err(state.last_error.clone().unwrap_or_else(|| format!("{}: could not be read", path.display()))),
                _ => {}
            }
            // Registered before the lock is released: the loader's wake-up cannot be missed.
            slot.loaded.notified()
        };
        loaded.await;
        waits += 1;
    }
}

/// The users of `path` at once, without a `stat`, when its table is in use and a `stat` found
/// the file unchanged within [`RECHECK`]; `None` means [`load`] must look.
pub fn fresh(files: &Files, path: &Path) -> Option<Arc<Users>> {
    let slot = files.known(path)?;
    let checked = slot.checked.load(Ordering::Acquire);
    if checked == 0 || since_start().saturating_sub(checked) >= RECHECK.as_nanos() as u64 {
        return None;
    }
    let state = lock(&slot.state);
    state.current.as_ref().map(|(_, users)| Arc::clone(users))
}

/// Queues a load of `path` into `slot` on the blocking pool. The caller set `loading`;
/// `seen` is the version its `stat` saw.
fn start_load(slot: Arc<Slot>, path: PathBuf, pool: crate::blocking::Pool, seen: Stamp) {
    let job_slot = Arc::clone(&slot);
    // A task of its own awaits the job, so a request that goes away does not cancel it.
    tokio::spawn(async move {
        let job_path = path.clone();
        let outcome = pool.run(move || read_into(&job_slot, &job_path, seen)).await;
        if let Err(e) = outcome {
            // The job never ran (pool busy or closing) or panicked: nothing was installed, and
            // the next lookup tries again.
            finish(&slot, &path, Err((None, format!("{}: {e}", path.display()))));
        }
    });
}

/// Reads and parses `path` and installs the result in `slot`. Runs on the blocking pool.
fn read_into(slot: &Slot, path: &Path, seen: Stamp) {
    let started = Instant::now();
    match read_file(path, seen) {
        Ok((stamp, content)) => {
            let (users, problems) = parse_owned(content);
            for p in &problems {
                tracing::warn!(file = %path.display(), line = p.line, "passwd-file: {}", p.what);
            }
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::info!(file = %path.display(), users = users.len(), ms, "passwd-file read");
            let old = finish(slot, path, Ok((stamp, Arc::new(users))));
            free_here(old);
        }
        Err((stamp, e)) => {
            finish(slot, path, Err((Some(stamp), e.to_string())));
        }
    }
}

/// The outcome of one load: the table and the version it was read from, or the error and the
/// version that failed (when known: it is then not retried before [`RETRY_FAILED`]).
type Loaded = Result<(Stamp, Arc<Users>), (Option<Stamp>, String)>;

/// Ends a load: installs its table (or keeps the one in use when it failed), lets the next
/// load start and wakes the lookups waiting. Returns the table replaced.
fn finish(slot: &Slot, path: &Path, loaded: Loaded) -> Option<Arc<Users>> {
    let mut old = None;
    {
        let mut state = lock(&slot.state);
        state.loading = false;
        match loaded {
            Ok((stamp, users)) => {
                old = state.current.replace((stamp, users)).map(|(_, users)| users);
                state.last_error = None;
                state.failed = None;
            }
            Err((stamp, e)) => {
                if state.current.is_some() {
                    tracing::error!(file = %path.display(), "passwd-file: re-reading failed, the previous contents stay in use: {e}");
                }
                state.last_error = Some(e);
                state.failed = stamp.map(|s| (s, Instant::now()));
            }
        }
    }
    slot.loaded.notify_waiters();
    old
}

/// Frees a replaced table on this (pool) thread rather than on the reactor, waiting briefly
/// for lookups still using it (they hold it only while they copy one entry out).
fn free_here(mut table: Option<Arc<Users>>) {
    for _ in 0..100 {
        match table.map(Arc::try_unwrap) {
            None | Some(Ok(_)) => return,
            Some(Err(shared)) => table = Some(shared),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Still in use (a LIST): its last user frees it.
}

/// One read of the file into a buffer of its size, with the version read (from the open file,
/// so a change during the read shows as a new version at the next lookup). A failure carries
/// the version that failed (`seen` when the file could not even be opened).
fn read_file(path: &Path, seen: Stamp) -> Result<(Stamp, Vec<u8>), (Stamp, LoadError)> {
    let mut file = std::fs::File::open(path).map_err(|e| (seen, io_error(path, e)))?;
    let meta = file.metadata().map_err(|e| (seen, io_error(path, e)))?;
    let stamp = Stamp::of(&meta);
    let too_large = || (stamp, LoadError::TooLarge(path.to_owned()));
    let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if size >= MAX_FILE {
        return Err(too_large());
    }
    let mut content = Vec::new();
    content.try_reserve_exact(size).map_err(|_| too_large())?;
    // Bounded: a file growing while it is read stops at the limit.
    (&mut file).take(MAX_FILE as u64).read_to_end(&mut content).map_err(|e| (stamp, io_error(path, e)))?;
    if content.len() >= MAX_FILE {
        return Err(too_large());
    }
    Ok((stamp, content))
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

    fn pool() -> crate::blocking::Pool {
        crate::blocking::Pool::new(2, 64).unwrap()
    }

    /// The password of `user` in `path`, through the cache.
    async fn password(files: &Arc<Files>, path: &Path, pool: &crate::blocking::Pool, user: &str) -> Result<Option<String>, String> {
        load(files, path.to_owned(), pool, false).await.map(|u| u.get(user).and_then(|e| e.password))
    }

    /// Replaces `path` in one step (write a temp file, rename it over), as an admin's tool would.
    fn replace(path: &Path, content: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test]
    async fn files_reload_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "a:{PLAIN}1\n").unwrap();
        let (files, pool) = (Arc::new(Files::default()), pool());
        let first = load(&files, path.clone(), &pool, false).await.unwrap();
        assert!(first.get("a").is_some());
        // Unchanged: the same table, not a re-read.
        assert!(Arc::ptr_eq(&first, &load(&files, path.clone(), &pool, false).await.unwrap()));
        // A small file is re-read before the lookup answers: the change shows at once (once
        // RECHECK has passed since the file was last found unchanged).
        tokio::time::sleep(RECHECK * 2).await;
        std::fs::write(&path, "b:{PLAIN}22\n").unwrap();
        let users = load(&files, path.clone(), &pool, false).await.unwrap();
        assert!(users.get("a").is_none() && users.get("b").is_some());
        let missing = load(&files, dir.path().join("nope"), &pool, false).await.unwrap_err();
        assert!(missing.ends_with("nope: no such file"), "{missing}");
        assert!(load(&files, dir.path().join("nope"), &pool, true).await.unwrap().is_empty());
    }

    /// The old `HashMap` parser, as a reference for the compact table.
    fn reference(content: &[u8]) -> (Vec<(String, Entry)>, Vec<usize>) {
        let (mut users, mut problems, mut seen) = (Vec::new(), Vec::new(), std::collections::HashSet::new());
        for (n, raw) in content.split(|&b| b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() || raw[0] == b'#' || raw[0] == b':' {
                continue;
            }
            let Some(line) = std::str::from_utf8(raw).ok().filter(|_| raw.len() <= MAX_LINE) else {
                problems.push(n + 1);
                continue;
            };
            let (user, entry) = parse_line(line);
            if seen.insert(user.to_owned()) {
                users.push((user.to_owned(), entry));
            } else {
                problems.push(n + 1);
            }
        }
        (users, problems)
    }

    fn check_against_reference(content: &[u8]) {
        let (users, problems) = parse(content);
        let (want, want_problems) = reference(content);
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), want_problems);
        assert_eq!(users.len(), want.len());
        assert_eq!(users.names(), want.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>());
        for (user, entry) in &want {
            assert_eq!(users.get(user).as_ref(), Some(entry), "{user}");
            // The passdb's shortcut reads the same password and extra fields.
            assert_eq!(users.get_passdb(user), Some((entry.password.clone(), entry.extra_fields.clone())), "{user}");
        }
    }

    #[test]
    fn compact_table_lookups() {
        let mut file = String::from("# users\n\nfirst:{PLAIN}f:1:1::/home/first::userdb_x=1\r\n");
        for n in 0..5000 {
            file.push_str(&format!("user{n}:{{PLAIN}}pw{n}:{n}:{n}::/home/user{n}::\n"));
            if n % 1000 == 0 {
                file.push_str(&format!("# comment {n}\r\n\r\nuser{n}:{{PLAIN}}duplicate\n:no user\n"));
            }
        }
        file.push_str(&format!("{}:pw\nlast:{{PLAIN}}l", "y".repeat(MAX_LINE + 1)));
        let (u, p) = parse(file.as_bytes());
        assert_eq!(u.len(), 5002);
        let first = u.get("first").unwrap();
        assert_eq!((first.password.as_deref(), first.home.as_deref()), (Some("{PLAIN}f"), Some("/home/first")));
        assert_eq!(first.extra_fields, vec![("userdb_x".into(), "1".into())], "CRLF: no carriage return in the last field");
        assert_eq!(u.get("user2500").unwrap().password.as_deref(), Some("{PLAIN}pw2500"));
        assert_eq!(u.get("user3000").unwrap().password.as_deref(), Some("{PLAIN}pw3000"), "a duplicate keeps the first entry");
        assert_eq!(u.get("last").unwrap().password.as_deref(), Some("{PLAIN}l"), "the last line without a line feed");
        for absent in ["", "user", "user5000", "First", "first:", "#", "# users", "no user", "y"] {
            assert!(u.get(absent).is_none(), "{absent:?}");
        }
        assert_eq!(p.len(), 6, "five duplicates and one long line: {p:?}");
        assert!(p.last().unwrap().what.contains("longer than"));
        let names = u.names();
        assert_eq!((names[0].as_str(), names[1].as_str(), names[5001].as_str()), ("first", "user0", "last"));
        check_against_reference(file.as_bytes());
    }

    #[test]
    fn compact_table_matches_the_reference_parser() {
        // Random files from a small alphabet that makes duplicates, empty fields, comments,
        // CRLF, bare names and bad UTF-8 common.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet: &[&[u8]] = &[b"a", b"b", b":", b":", b"\n", b"\r\n", b"#", b" ", b"=", b"\xff", b"x=y", b"\r", b"{PLAIN}"];
        for _ in 0..2000 {
            let len = (next() % 60) as usize;
            let content: Vec<u8> = (0..len).flat_map(|_| alphabet[(next() % alphabet.len() as u64) as usize].iter().copied()).collect();
            check_against_reference(&content);
        }
        check_against_reference(b"");
        check_against_reference(b"\n\n");
    }

    #[test]
    fn index_memory_is_bounded() {
        for n in [1usize, 7, 1000, 100_000] {
            let file: String = (0..n).map(|i| format!("u{i}:{{PLAIN}}p:1:1::/h::\n")).collect();
            let (u, _) = parse(file.as_bytes());
            assert_eq!(u.len(), n);
            // The file's bytes plus at most 22 bytes a user (8-byte slots, at least a quarter
            // of them free, rounded up to a power of two), and a minimal table of 8 slots.
            assert!(u.heap_bytes() <= file.len() + 22 * n + 64, "{n} users: {} bytes for a file of {}", u.heap_bytes(), file.len());
        }
        // A file of blank lines, comments and duplicates holds few users: little table.
        let mut hostile = "\n".repeat(200_000);
        hostile.push_str(&"#\n".repeat(100_000));
        hostile.push_str(&"d\n".repeat(100_000));
        let (u, p) = parse(hostile.as_bytes());
        assert_eq!((u.len(), p.len()), (1, 99_999));
        assert!(u.heap_bytes() <= hostile.len() + 64, "{}", u.heap_bytes());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn reloads_are_atomic_under_concurrent_lookups() {
        for users in [50usize, 30_000] {
            // 30,000 users make a file above STALE_FROM: lookups answer from the old table while
            // it is re-read. 50 users: lookups wait for the (short) re-read.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("users");
            let version = |v: usize| -> Vec<u8> {
                let mut f: String = (0..users).map(|i| format!("user{i}:{{PLAIN}}v{v}-{i}:1000:1000::/home/user{i}::\n")).collect();
                f.push_str(&format!("only{v}:{{PLAIN}}x\n"));
                f.into_bytes()
            };
            assert_eq!(version(0).len() as u64 >= STALE_FROM, users > 1000);
            replace(&path, &version(0));
            let (files, pool) = (Arc::new(Files::default()), pool());
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut readers = Vec::new();
            for r in 0..8 {
                let (files, pool, path, done) = (Arc::clone(&files), pool.clone(), path.clone(), Arc::clone(&done));
                readers.push(tokio::spawn(async move {
                    let mut seen = std::collections::BTreeSet::new();
                    let mut n = r;
                    while !done.load(Ordering::Relaxed) {
                        let i = (n * 7919) % users;
                        n += 1;
                        let pw = password(&files, &path, &pool, &format!("user{i}")).await.unwrap().unwrap();
                        let v: usize = pw.strip_prefix("{PLAIN}v").and_then(|p| p.strip_suffix(&format!("-{i}"))).unwrap().parse().unwrap();
                        seen.insert(v);
                        tokio::task::yield_now().await;
                    }
                    seen
                }));
            }
            for v in 1..=5 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                replace(&path, &version(v));
            }
            // The last version comes in (a big file in the background).
            let deadline = Instant::now() + Duration::from_secs(20);
            while password(&files, &path, &pool, "user0").await.unwrap().as_deref() != Some("{PLAIN}v5-0") {
                assert!(Instant::now() < deadline, "the last version never came in");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            done.store(true, Ordering::Relaxed);
            let mut all = std::collections::BTreeSet::new();
            for r in readers {
                all.extend(r.await.unwrap());
            }
            assert!(all.iter().all(|v| *v <= 5) && all.len() >= 2, "{users} users: versions seen {all:?}");
            let last = load(&files, path.clone(), &pool, false).await.unwrap();
            assert!(last.get("only5").is_some() && last.get("only4").is_none());
        }
    }

    #[tokio::test]
    async fn a_big_file_answers_from_the_old_table_while_it_is_re_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let big = |pw: &str| -> String { (0..40_000).map(|i| format!("user{i}:{{PLAIN}}{pw}::::::\n")).collect() };
        assert!(big("old").len() as u64 >= STALE_FROM);
        replace(&path, big("old").as_bytes());
        // One pool thread, kept busy: a re-read can only queue behind the blocker.
        let (files, pool) = (Arc::new(Files::default()), crate::blocking::Pool::new(1, 4).unwrap());
        assert_eq!(password(&files, &path, &pool, "user7").await.unwrap().as_deref(), Some("{PLAIN}old"));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || wait.recv_timeout(Duration::from_secs(30))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        replace(&path, big("new").as_bytes());
        for _ in 0..3 {
            let pw = tokio::time::timeout(Duration::from_secs(5), password(&files, &path, &pool, "user7")).await.expect("a lookup waited for the re-read");
            assert_eq!(pw.unwrap().as_deref(), Some("{PLAIN}old"));
        }
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while password(&files, &path, &pool, "user7").await.unwrap().as_deref() != Some("{PLAIN}new") {
            assert!(Instant::now() < deadline, "the new version never came in");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_failed_re_read_keeps_the_old_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "alice:{PLAIN}old\n").unwrap();
        let (files, pool) = (Arc::new(Files::default()), pool());
        assert_eq!(password(&files, &path, &pool, "alice").await.unwrap().as_deref(), Some("{PLAIN}old"));
        // The path becomes something that cannot be read as a file.
        tokio::time::sleep(RECHECK * 2).await;
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        for _ in 0..3 {
            assert_eq!(password(&files, &path, &pool, "alice").await.unwrap().as_deref(), Some("{PLAIN}old"));
        }
        // Readable again: the new contents.
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, "alice:{PLAIN}new\n").unwrap();
        assert_eq!(password(&files, &path, &pool, "alice").await.unwrap().as_deref(), Some("{PLAIN}new"));
        // Never read: the error, as before.
        let other = dir.path().join("dir");
        std::fs::create_dir(&other).unwrap();
        let e = password(&files, &other, &pool, "alice").await.unwrap_err();
        assert!(e.contains("dir: ") && e.contains("directory"), "{e}");
        // A file that is gone is not kept: its users are gone too.
        tokio::time::sleep(RECHECK * 2).await;
        std::fs::remove_file(&path).unwrap();
        assert!(password(&files, &path, &pool, "alice").await.unwrap_err().ends_with("users: no such file"));
        assert_eq!(files.count(), 1, "the vanished file is forgotten");
    }

    #[tokio::test]
    async fn one_load_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "alice:{PLAIN}pw\n").unwrap();
        // Room for one queued job: a load per lookup would be refused as busy.
        let (files, pool) = (Arc::new(Files::default()), crate::blocking::Pool::new(1, 1).unwrap());
        let lookups: Vec<_> = (0..64)
            .map(|_| {
                let (files, pool, path) = (Arc::clone(&files), pool.clone(), path.clone());
                tokio::spawn(async move { password(&files, &path, &pool, "alice").await })
            })
            .collect();
        for l in lookups {
            assert_eq!(l.await.unwrap().unwrap().as_deref(), Some("{PLAIN}pw"));
        }
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
        let files = Arc::new(Files::default());
        let loaded = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(load(&files, path, &crate::blocking::Pool::new(1, 1).unwrap(), false))
            .unwrap();
        assert_eq!(loaded.len(), 1);
        for shown in [format!("{files:?}"), format!("{loaded:?}")] {
            assert!(!shown.contains(HASH), "{shown}");
        }
    }
}
