//! Brute-force penalty per remote address, as Dovecot's anvil does it, bounded in memory.
//!
//! Each failed authentication from an address raises its penalty; the next request from it
//! waits `2^n` seconds (n = recent failures, at most 4), counted from the last failure, capped at
//! `penalty_max`. A success clears it. IPv6 addresses share a penalty per /48, as in Dovecot, and
//! requests without `rip` share one bucket. The cap keeps penalty + failure delay below
//! Postfix's 10 s reply timeout (Dovecot's 15 s cap makes Postfix answer 454 instead of 535).
//! The same table, keyed by user name, gives the optional per-account penalty.
//!
//! The table never stores a key as given: it stores a 128-bit HMAC-SHA256 of it under a random
//! key made when the table is (one per process run). Every entry has the same small size
//! whatever the client sent, so a flood of failures with long user names cannot grow memory
//! past `MAX_KEYS` fixed-size entries, and nobody without the key can aim two names at one
//! entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// At most this many keys are remembered; beyond it, the stalest are dropped.
const MAX_KEYS: usize = 100_000;
/// The exponent stops growing here.
const MAX_FAILURES: u32 = 4;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// What the table stores instead of a key: its keyed hash, truncated to 128 bits.
type Digest = [u8; 16];

/// Penalties by key. A std Mutex: every critical section is one map operation.
pub struct Penalty {
    max: Duration,
    /// The HMAC key, random per table; never logged.
    secret: [u8; 32],
    table: Mutex<HashMap<Digest, Entry>>,
}

impl std::fmt::Debug for Penalty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Penalty").field("max", &self.max).field("keys", &self.len()).finish_non_exhaustive()
    }
}

impl Penalty {
    /// A table whose delays never exceed `max`.
    pub fn new(max: Duration) -> Penalty {
        Penalty { max, secret: rand::random(), table: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fixed-size form of a key in this table.
    fn digest(&self, key: &str) -> Digest {
        // HMAC takes a key of any length, so `new_from_slice` never fails (invariant of the
        // hmac crate); were it to, every key would share one entry rather than panic.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return [0; 16];
        };
        mac.update(key.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// How long a new request with this key must wait now.
    pub fn delay(&self, key: &str, now: Instant) -> Duration {
        let digest = self.digest(key);
        let Some(e) = self.lock().get(&digest).copied() else {
            return Duration::ZERO;
        };
        if e.failures == 0 || now.duration_since(e.last) >= FORGET_AFTER {
            return Duration::ZERO;
        }
        let full = Duration::from_secs(1u64 << e.failures.min(MAX_FAILURES)).min(self.max);
        full.saturating_sub(now.duration_since(e.last))
    }

    /// Records a failed authentication.
    pub fn failed(&self, key: &str, now: Instant) {
        let digest = self.digest(key);
        let mut table = self.lock();
        if table.len() >= MAX_KEYS && !table.contains_key(&digest) {
            table.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
            if table.len() >= MAX_KEYS {
                // Still full: forget the stalest tenth rather than grow.
                let mut ages: Vec<Instant> = table.values().map(|e| e.last).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 10];
                table.retain(|_, e| e.last > cut);
            }
        }
        let e = table.entry(digest).or_insert(Entry { failures: 0, last: now });
        if now.duration_since(e.last) >= FORGET_AFTER {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
    }

    /// Clears the key after a success.
    pub fn succeeded(&self, key: &str) {
        let digest = self.digest(key);
        self.lock().remove(&digest);
    }

    /// Keys remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The penalty key of a remote address: IPv4 as is, IPv6 masked to /48, none → "".
pub fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        None => String::new(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let masked = u128::from(v6) & !((1u128 << 80) - 1);
                format!("{}/48", std::net::Ipv6Addr::from(masked))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_decays_and_resets() {
        let p = Penalty::new(Duration::from_secs(6));
        let t0 = Instant::now();
        assert_eq!(p.delay("a", t0), Duration::ZERO);
        p.failed("a", t0);
        assert_eq!(p.delay("a", t0), Duration::from_secs(2));
        assert_eq!(p.delay("a", t0 + Duration::from_millis(500)), Duration::from_millis(1500));
        p.failed("a", t0);
        assert_eq!(p.delay("a", t0), Duration::from_secs(4));
        for _ in 0..10 {
            p.failed("a", t0);
        }
        assert_eq!(p.delay("a", t0), Duration::from_secs(6), "capped");
        assert_eq!(p.delay("a", t0 + Duration::from_secs(7)), Duration::ZERO);
        assert_eq!(p.delay("b", t0), Duration::ZERO, "keys are separate");
        p.succeeded("a");
        assert_eq!(p.delay("a", t0), Duration::ZERO);
        p.failed("a", t0);
        assert_eq!(p.delay("a", t0 + FORGET_AFTER), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded() {
        let p = Penalty::new(Duration::from_secs(6));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 5000) {
            p.failed(&i.to_string(), t0 + Duration::from_micros(i as u64));
        }
        assert!(p.len() <= MAX_KEYS, "{}", p.len());
    }

    #[test]
    fn keys_are_stored_as_fixed_size_keyed_hashes() {
        let (a, b) = (Penalty::new(Duration::from_secs(6)), Penalty::new(Duration::from_secs(6)));
        let long = "x".repeat(12_000);
        assert_eq!(a.digest(&long).len(), 16);
        assert_eq!(a.digest(&long), a.digest(&long), "stable within a table");
        assert_ne!(a.digest(&long), b.digest(&long), "each table has its own key");
        assert_ne!(a.digest("alice"), a.digest("alicf"));
        let t0 = Instant::now();
        a.failed(&long, t0);
        assert_eq!(a.delay(&long, t0), Duration::from_secs(2));
        assert_eq!(a.delay(&long[1..], t0), Duration::ZERO);
        assert!(!format!("{a:?}").contains("secret"), "the HMAC key is not printed");
    }

    #[test]
    fn keys() {
        assert_eq!(ip_key(None), "");
        assert_eq!(ip_key(Some("192.0.2.1".parse().unwrap())), "192.0.2.1");
        assert_eq!(ip_key(Some("2001:db8:1:2::5".parse().unwrap())), "2001:db8:1::/48");
        assert_eq!(ip_key(Some("2001:db8:1:ffff::5".parse().unwrap())), "2001:db8:1::/48");
        assert_eq!(ip_key(Some("::ffff:192.0.2.1".parse().unwrap())), "192.0.2.1");
    }
}
