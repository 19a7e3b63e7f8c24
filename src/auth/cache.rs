//! The auth cache: remembered password verifications, so a client that logs in every minute
//! with the same password does not cost a BLF-CRYPT or ARGON2 computation every time.
//!
//! Dovecot caches passdb *lookups* by a key made of %variables and keeps answering from an entry
//! after the password changed, until its TTL runs out (old passwords keep working, new ones are
//! refused). Here an entry's key holds every input of the verification: which passdb, the user,
//! **the stored password itself** and the password tried. A changed password in the database
//! changes the key, so a stale entry can never answer. The key is an HMAC with a per-process
//! random key over length-prefixed fields, so it is injective (no two inputs share an entry) and
//! the cache never holds a password or a hash that could be read back.
//!
//! Successes and failures have their own TTLs; the size is bounded; entries can be flushed all
//! at once or per user (`CACHE-FLUSH` on the master socket, `SIGHUP`, `saslgate cache flush`).

use std::time::Instant;

use super::keyed::KeyedTable;
use crate::config::CacheConfig;

#[derive(Debug, Clone)]
struct Entry {
    user: String,
    ok: bool,
    at: Instant,
}

/// The verification cache. `Debug` hides the HMAC key.
pub struct VerifyCache {
    config: CacheConfig,
    entries: KeyedTable<Entry>,
}

impl std::fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyCache").field("config", &self.config).field("entries", &self.entries).finish()
    }
}

/// The inputs of one verification. `Debug` hides the stored and the tried password.
#[derive(Clone, Copy)]
pub struct CacheKey<'a> {
    /// Which passdb (its position in the chain).
    pub passdb: usize,
    /// The user name the passdb was asked about.
    pub user: &'a str,
    /// The stored password, as the passdb returned it.
    pub stored: &'a str,
    /// The password tried.
    pub password: &'a [u8],
}

impl std::fmt::Debug for CacheKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheKey").field("passdb", &self.passdb).field("user", &self.user).field("stored", &"<hidden>").field("password", &"<hidden>").finish()
    }
}

impl VerifyCache {
    /// A cache with a fresh random key.
    pub fn new(config: CacheConfig) -> VerifyCache {
        VerifyCache { config, entries: KeyedTable::new(config.size) }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.config.size > 0
    }

    fn digest(&self, k: &CacheKey<'_>) -> super::keyed::Digest {
        self.entries.digest(&[&(k.passdb as u64).to_be_bytes(), k.user.as_bytes(), k.stored.as_bytes(), k.password])
    }

    fn fresh(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.at) < if e.ok { self.config.ttl } else { self.config.negative_ttl }
    }

    /// A remembered result for these exact inputs, if still fresh.
    pub fn get(&self, k: &CacheKey<'_>, now: Instant) -> Option<bool> {
        if !self.enabled() {
            return None;
        }
        let digest = self.digest(k);
        let entries = self.entries.lock();
        let e = entries.get(&digest)?;
        (self.fresh(e, now) && e.user == k.user).then_some(e.ok)
    }

    /// Remembers a result.
    pub fn put(&self, k: &CacheKey<'_>, ok: bool, now: Instant) {
        if !self.enabled() {
            return;
        }
        let digest = self.digest(k);
        self.entries.upsert(digest, |e| self.fresh(e, now), |e| e.at, |_| Entry { user: k.user.to_owned(), ok, at: now });
    }

    /// Flushes everything (`users` empty) or the entries of these users; returns how many.
    pub fn flush(&self, users: &[String]) -> usize {
        let mut entries = self.entries.lock();
        let before = entries.len();
        if users.is_empty() {
            entries.clear();
        } else {
            entries.retain(|_, e| !users.contains(&e.user));
        }
        before - entries.len()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache as the drivers see it: outcomes of password checks a driver makes itself (LDAP
/// `auth_bind`), keyed on the driver instance, the user, the bind DN and the password. Unlike a
/// verification against a stored hash, the key cannot hold the directory's password: a password
/// changed in the directory is answered from here until the TTL runs out (the old password still
/// works for `ttl`, the new one is refused for `negative_ttl`), as with Dovecot's cache.
impl crate::db::CheckMemo for VerifyCache {
    fn get(&self, k: &crate::db::MemoKey<'_>) -> Option<bool> {
        if !self.enabled() {
            return None;
        }
        let digest = self.memo_digest(k);
        let entries = self.entries.lock();
        let e = entries.get(&digest)?;
        (self.fresh(e, Instant::now()) && e.user == k.user).then_some(e.ok)
    }

    fn put(&self, k: &crate::db::MemoKey<'_>, ok: bool) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let digest = self.memo_digest(k);
        self.entries.upsert(digest, |e| self.fresh(e, now), |e| e.at, |_| Entry { user: k.user.to_owned(), ok, at: now });
    }
}

impl VerifyCache {
    /// Five length-prefixed fields, the first a 4-byte tag: never the digest of a [`CacheKey`]
    /// (four fields, the first 8 bytes long).
    fn memo_digest(&self, k: &crate::db::MemoKey<'_>) -> super::keyed::Digest {
        self.entries.digest(&[b"bind", &k.scope.to_be_bytes(), k.user.as_bytes(), k.against.as_bytes(), k.password])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cache(size: usize) -> VerifyCache {
        VerifyCache::new(CacheConfig { size, ttl: Duration::from_secs(60), negative_ttl: Duration::from_secs(5) })
    }

    fn key<'a>(user: &'a str, stored: &'a str, password: &'a [u8]) -> CacheKey<'a> {
        CacheKey { passdb: 0, user, stored, password }
    }

    #[test]
    fn bind_outcomes_are_kept_apart_per_scope_dn_and_password_and_flush_by_user() {
        use crate::db::{CheckMemo, MemoKey};
        let c = cache(100);
        let k = |scope: u64, user: &'static str, dn: &'static str, password: &'static [u8]| MemoKey { scope, user, against: dn, password };
        assert_eq!(CheckMemo::get(&c, &k(1, "a", "uid=a", b"pw")), None);
        CheckMemo::put(&c, &k(1, "a", "uid=a", b"pw"), true);
        CheckMemo::put(&c, &k(1, "a", "uid=a", b"bad"), false);
        assert_eq!(CheckMemo::get(&c, &k(1, "a", "uid=a", b"pw")), Some(true));
        assert_eq!(CheckMemo::get(&c, &k(1, "a", "uid=a", b"bad")), Some(false));
        for other in [k(2, "a", "uid=a", b"pw"), k(1, "a", "uid=b", b"pw"), k(1, "a", "uid=a", b"pw2"), k(1, "b", "uid=a", b"pw")] {
            assert_eq!(CheckMemo::get(&c, &other), None, "{other:?}");
        }
        // Never the entry of a verification with the same bytes.
        assert_eq!(c.get(&CacheKey { passdb: 1, user: "a", stored: "uid=a", password: b"pw" }, Instant::now()), None);
        assert!(!format!("{:?}", k(1, "a", "uid=a", b"secretpw")).contains("secretpw"));
        assert_eq!(c.flush(&["a".to_string()]), 2);
        assert_eq!(CheckMemo::get(&c, &k(1, "a", "uid=a", b"pw")), None);
        let off = VerifyCache::new(CacheConfig::default());
        CheckMemo::put(&off, &k(1, "a", "uid=a", b"pw"), true);
        assert_eq!(CheckMemo::get(&off, &k(1, "a", "uid=a", b"pw")), None);
    }

    #[test]
    fn hits_expire_and_flush() {
        let c = cache(100);
        let t = Instant::now();
        assert_eq!(c.get(&key("a", "{X}1", b"pw"), t), None);
        c.put(&key("a", "{X}1", b"pw"), true, t);
        c.put(&key("a", "{X}1", b"bad"), false, t);
        assert_eq!(c.get(&key("a", "{X}1", b"pw"), t), Some(true));
        assert_eq!(c.get(&key("a", "{X}1", b"bad"), t), Some(false));
        assert_eq!(c.get(&key("a", "{X}1", b"bad"), t + Duration::from_secs(6)), None, "negative TTL");
        assert_eq!(c.get(&key("a", "{X}1", b"pw"), t + Duration::from_secs(59)), Some(true));
        assert_eq!(c.get(&key("a", "{X}1", b"pw"), t + Duration::from_secs(61)), None);
        // A changed stored password never hits an old entry, positive or negative.
        assert_eq!(c.get(&key("a", "{X}2", b"pw"), t), None);
        assert_eq!(c.get(&key("a", "{X}2", b"bad"), t), None);
        c.put(&key("b", "{X}1", b"pw"), true, t);
        assert_eq!(c.flush(&["a".to_string()]), 2);
        assert_eq!(c.get(&key("b", "{X}1", b"pw"), t), Some(true));
        assert_eq!(c.flush(&[]), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn off_by_default_and_bounded() {
        let off = VerifyCache::new(CacheConfig::default());
        off.put(&key("a", "s", b"p"), true, Instant::now());
        assert_eq!(off.get(&key("a", "s", b"p"), Instant::now()), None);
        let c = cache(50);
        let t = Instant::now();
        for i in 0..500u32 {
            c.put(&key("u", "s", &i.to_be_bytes()), true, t + Duration::from_millis(u64::from(i)));
            assert!(c.len() <= 50);
        }
    }

    /// Property: entries of different inputs never answer for each other. Field boundaries are
    /// length-prefixed, so shifting bytes between user, stored and password changes the key.
    #[test]
    fn two_users_never_share_an_entry() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let c = cache(100_000);
        let t = Instant::now();
        let pick = |rng: &mut rand::rngs::StdRng| -> String {
            let alphabet = ['a', 'b', '\0', '@', '\t', 'x'];
            (0..rng.gen_range(0..4)).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect()
        };
        let mut seen: Vec<(String, String, String)> = Vec::new();
        for _ in 0..3000 {
            let (u, s, p) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            if let Some(hit) = c.get(&key(&u, &s, p.as_bytes()), t) {
                // Only the very same inputs may hit.
                assert!(seen.iter().any(|e| e == &(u.clone(), s.clone(), p.clone())), "{u:?} {s:?} {p:?} hit {hit}");
            }
            c.put(&key(&u, &s, p.as_bytes()), true, t);
            seen.push((u, s, p));
        }
        // The classic boundary shift: ("a", "b\0c") vs ("a\0b", "c").
        let c = cache(10);
        c.put(&key("a", "s", b"b\0c"), true, t);
        assert_eq!(c.get(&key("a\0b", "s", b"c"), t), None);
        assert_eq!(c.get(&CacheKey { passdb: 1, user: "a", stored: "s", password: b"b\0c" }, t), None);
    }
}

#[cfg(test)]
mod debug_redaction_tests {
    use super::*;

    #[test]
    fn cache_and_key_never_print_passwords_or_the_hmac_key() {
        let cache = VerifyCache::new(CacheConfig { size: 10, ..CacheConfig::default() });
        let k = CacheKey { passdb: 0, user: "alice", stored: "{PLAIN}storedsecret", password: b"triedsecret" };
        cache.put(&k, true, Instant::now());
        let shown = format!("{k:?} {cache:?}");
        assert!(!shown.contains("storedsecret") && !shown.contains("triedsecret"), "{shown}");
        let key_hex = cache.entries.secret.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        assert!(!shown.contains(&key_hex), "{shown}");
    }
}
