//! A bounded table whose keys are keyed hashes: what the penalty table and the auth cache are
//! both made of.
//!
//! A key is never stored as given. It is stored as a 128-bit HMAC-SHA256 under a random key
//! made with the table (one per process run), over length-prefixed fields, so two different
//! inputs cannot be aimed at one entry by anyone without the key, every entry has the same
//! small size whatever a client sent, and nothing in the table can be read back (a password
//! tried, a stored hash). When the table is full, dead entries go first, then the oldest tenth.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the table stores instead of a key.
pub(crate) type Digest = [u8; 16];

/// Entries by keyed hash, at most `capacity` of them. A std Mutex: every critical section is
/// one map operation or a bounded sweep.
pub(crate) struct KeyedTable<V> {
    /// The HMAC key, random per table; never logged.
    pub(super) secret: [u8; 32],
    capacity: usize,
    entries: Mutex<HashMap<Digest, V>>,
}

impl<V> fmt::Debug for KeyedTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTable").field("capacity", &self.capacity).field("len", &self.len()).finish_non_exhaustive()
    }
}

impl<V> KeyedTable<V> {
    /// An empty table with a fresh random key.
    pub(crate) fn new(capacity: usize) -> KeyedTable<V> {
        KeyedTable { secret: rand::random(), capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The digest of these fields (each length-prefixed, so the split between them counts).
    pub(crate) fn digest(&self, fields: &[&[u8]]) -> Digest {
        // HMAC takes a key of any length, so `new_from_slice` never fails (invariant of the
        // hmac crate); were it to, every key would share one entry rather than panic.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return [0; 16];
        };
        for field in fields {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The entries, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Digest, V>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or updates the entry of `digest` with `update`, first making room when the
    /// table is full: entries `alive` rejects go, then (still full) the oldest tenth by
    /// `stamp`, at least one.
    pub(crate) fn upsert(&self, digest: Digest, alive: impl Fn(&V) -> bool, stamp: impl Fn(&V) -> Instant, update: impl FnOnce(Option<V>) -> V) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, v| alive(v));
            if entries.len() >= self.capacity {
                let mut ages: Vec<Instant> = entries.values().map(&stamp).collect();
                ages.sort_unstable();
                let cut = ages[(ages.len() / 10).min(ages.len() - 1)];
                entries.retain(|_, v| stamp(v) > cut);
            }
        }
        let old = entries.remove(&digest);
        entries.insert(digest, update(old));
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bounded_and_keyed() {
        let t: KeyedTable<Instant> = KeyedTable::new(10);
        let start = Instant::now();
        for i in 0..100u32 {
            let d = t.digest(&[&i.to_be_bytes()]);
            t.upsert(d, |_| true, |at| *at, |_| start + Duration::from_millis(u64::from(i)));
            assert!(t.len() <= 10);
        }
        // The newest entries survive an eviction.
        let newest = t.digest(&[&99u32.to_be_bytes()]);
        assert!(t.lock().contains_key(&newest));
        // Length prefixes: ("ab", "c") and ("a", "bc") differ; another table's key differs.
        assert_ne!(t.digest(&[b"ab", b"c"]), t.digest(&[b"a", b"bc"]));
        let other: KeyedTable<Instant> = KeyedTable::new(1);
        assert_ne!(t.digest(&[b"x"]), other.digest(&[b"x"]));
        // Capacity 0 keeps nothing.
        let off: KeyedTable<Instant> = KeyedTable::new(0);
        off.upsert(off.digest(&[b"x"]), |_| true, |at| *at, |_| start);
        assert_eq!(off.len(), 0);
    }
}
