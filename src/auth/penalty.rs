//! Brute-force penalty per remote address, as Dovecot's anvil does it, bounded in memory.
//!
//! Each failed authentication from an address raises its penalty; the next request from it
//! waits `2^n` seconds (n = recent failures, at most 4), counted from the last failure, capped at
//! `penalty_max`. A success clears it. IPv6 addresses share a penalty per /48, as in Dovecot, and
//! requests without `rip` share one bucket. The cap keeps penalty + failure delay below
//! Postfix's 10 s reply timeout (Dovecot's 15 s cap makes Postfix answer 454 instead of 535).
//! The same table, keyed by user name, gives the optional per-account penalty.
//!
//! The table never stores a key as given ([`KeyedTable`]): every entry has the same small size
//! whatever the client sent, so a flood of failures with long user names cannot grow memory
//! past `MAX_KEYS` fixed-size entries, and nobody without the key can aim two names at one
//! entry.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::keyed::KeyedTable;

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

/// Penalties by key.
pub struct Penalty {
    max: Duration,
    table: KeyedTable<Entry>,
}

impl std::fmt::Debug for Penalty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Penalty").field("max", &self.max).field("keys", &self.len()).finish_non_exhaustive()
    }
}

impl Penalty {
    /// A table whose delays never exceed `max`.
    pub fn new(max: Duration) -> Penalty {
        Penalty { max, table: KeyedTable::new(MAX_KEYS) }
    }

    /// The fixed-size form of a key in this table.
    fn digest(&self, key: &str) -> super::keyed::Digest {
        self.table.digest(&[key.as_bytes()])
    }

    /// How long a new request with this key must wait now.
    pub fn delay(&self, key: &str, now: Instant) -> Duration {
        if self.table.is_empty() {
            return Duration::ZERO;
        }
        let digest = self.digest(key);
        let Some(e) = self.table.lock().get(&digest).copied() else {
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
        let alive = |e: &Entry| now.duration_since(e.last) < FORGET_AFTER;
        self.table.upsert(
            digest,
            alive,
            |e| e.last,
            |old| {
                let failures = old.filter(alive).map_or(0, |e| e.failures);
                Entry { failures: failures.saturating_add(1), last: now }
            },
        );
    }

    /// Clears the key after a success.
    pub fn succeeded(&self, key: &str) {
        if self.table.is_empty() {
            return;
        }
        let digest = self.digest(key);
        self.table.lock().remove(&digest);
    }

    /// Keys remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is remembered (without taking the table's lock).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
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
