//! `cargo bench --bench schemes`: password verifications per second per core, per scheme.
//!
//! Each scheme's hash is made with `saslgate::scheme::generate` at its default cost (Dovecot's
//! `doveadm pw` defaults), then verified in a loop on one thread for a fixed time. Prints a
//! Markdown table. `SCHEME_BENCH_SECS` sets the time per scheme (default 1).

use std::time::{Duration, Instant};

use saslgate::scheme::{generate, Scheme, StoredPassword};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it, and
    // then one verification per scheme is enough to show the bench still works.
    let benching = std::env::args().any(|a| a == "--bench");
    // A filter argument selects schemes by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let secs: f64 = if benching { std::env::var("SCHEME_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0) } else { 0.0 };
    let budget = Duration::from_secs_f64(secs);
    println!("| scheme | verifications/s per core | µs per verification |");
    println!("|---|---:|---:|");
    for scheme in Scheme::all() {
        if !filter.is_empty() && !filter.iter().any(|f| scheme.as_str().eq_ignore_ascii_case(f)) {
            continue;
        }
        let user = "alice@example.org";
        let Ok(text) = generate(scheme, b"correct horse", user, None) else {
            println!("| {} | (cannot generate) | |", scheme.as_str());
            continue;
        };
        let stored = match StoredPassword::parse(&format!("{{{}}}{text}", scheme.as_str()), Scheme::Plain) {
            Ok(s) => s,
            Err(e) => {
                println!("| {} | ({e}) | |", scheme.as_str());
                continue;
            }
        };
        if stored.verify(b"correct horse", user).ok() != Some(true) {
            // PLAIN-TRUNC's generated form never verifies (as with doveadm); skip it.
            println!("| {} | (generated hash does not verify) | |", scheme.as_str());
            continue;
        }
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < budget || n < 1 {
            std::hint::black_box(stored.verify(std::hint::black_box(b"correct horse"), user).ok());
            n += 1;
        }
        let per = start.elapsed().as_secs_f64() / n as f64;
        println!("| {} | {:.0} | {:.1} |", scheme.as_str(), 1.0 / per, per * 1e6);
    }
    // Reference: the `bcrypt` crate our own EksBlowfish replaced (a dev-dependency now), at
    // BLF-CRYPT's default cost 5, to show the per-core gain in the same run.
    if filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case("bcrypt-crate")) {
        if let Ok(hash) = bcrypt::hash(b"correct horse", 5) {
            let start = Instant::now();
            let mut n: u64 = 0;
            while start.elapsed() < budget || n < 1 {
                std::hint::black_box(bcrypt::verify(std::hint::black_box(b"correct horse"), &hash).ok());
                n += 1;
            }
            let per = start.elapsed().as_secs_f64() / n as f64;
            println!("| (bcrypt crate, cost 5) | {:.0} | {:.1} |", 1.0 / per, per * 1e6);
        }
    }
}
