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
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the table stores instead of a key.
pub(crate) type Digest = [u8; 16];

/// Entries by keyed hash, at most `capacity` of them. A std Mutex: every critical section is
/// one map operation or a bounded sweep.
pub(crate) struct KeyedTable<V> {
    /// The HMAC key, random per table; never logged. Digests use `keyed`; tests check with it
    /// that the key shows nowhere.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) secret: [u8; 32],
    /// The HMAC state after the key (computed once: a digest then hashes only its fields).
    keyed: Option<Hmac<Sha256>>,
    capacity: usize,
    entries: Mutex<HashMap<Digest, V>>,
    /// `entries.len()`, written under the lock, so an empty table is known without taking it.
    len: AtomicUsize,
}

impl<V> fmt::Debug for KeyedTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedTable").field("capacity", &self.capacity).field("len", &self.len()).finish_non_exhaustive()
    }
}

impl<V> KeyedTable<V> {
    /// An empty table with a fresh random key.
    pub(crate) fn new(capacity: usize) -> KeyedTable<V> {
        let secret: [u8; 32] = rand::random();
        // HMAC takes a key of any length, so `new_from_slice` never fails (invariant of the
        // hmac crate); were it to, every key would share one entry rather than panic.
        let keyed = Hmac::<Sha256>::new_from_slice(&secret).ok();
        KeyedTable { secret, keyed, capacity, entries: Mutex::new(HashMap::new()), len: AtomicUsize::new(0) }
    }

    /// The digest of these fields (each length-prefixed, so the split between them counts).
    pub(crate) fn digest(&self, fields: &[&[u8]]) -> Digest {
        let Some(mut mac) = self.keyed.clone() else {
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
    pub(crate) fn lock(&self) -> Entries<'_, V> {
        Entries { map: self.entries.lock().unwrap_or_else(|e| e.into_inner()), len: &self.len }
    }

    /// Whether the table holds nothing, without taking its lock (so a request from an address
    /// that never failed costs no digest and no lock while nobody has failed).
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
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

/// The locked entries of a [`KeyedTable`]; unlocking records their count.
pub(crate) struct Entries<'a, V> {
    map: MutexGuard<'a, HashMap<Digest, V>>,
    len: &'a AtomicUsize,
}

impl<V> Deref for Entries<'_, V> {
    type Target = HashMap<Digest, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V> DerefMut for Entries<'_, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl<V> Drop for Entries<'_, V> {
    fn drop(&mut self) {
        // Still under the lock (the guard field drops after this).
        self.len.store(self.map.len(), Ordering::Release);
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
        assert!(off.is_empty());
        // The count readable without the lock follows every change.
        let t: KeyedTable<Instant> = KeyedTable::new(10);
        assert!(t.is_empty());
        t.upsert(t.digest(&[b"x"]), |_| true, |at| *at, |_| start);
        assert!(!t.is_empty());
        t.lock().remove(&t.digest(&[b"x"]));
        assert!(t.is_empty());
        // The precomputed key state gives the plain HMAC of the fields.
        let mut mac = Hmac::<Sha256>::new_from_slice(&t.secret).unwrap();
        mac.update(&1u64.to_be_bytes());
        mac.update(b"x");
        assert_eq!(t.digest(&[b"x"])[..], mac.finalize().into_bytes()[..16]);
    }
}
