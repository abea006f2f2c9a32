//! How an exchange's replay check costs as the replay set grows: `cargo bench --bench replay`.
//! Side by side with the set as it was before (a map swept whole when full), at 1,000 to
//! 2,000,000 unexpired used grants. Prints nanoseconds per check; no timing is asserted.

use std::collections::HashMap;
use std::time::Instant;

use tokenauth::server::replay::{CAPACITY, ReplaySet, Seen};

fn grant(i: u64) -> [u8; 16] {
    let mut g = [0; 16];
    g[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    g[8..].copy_from_slice(&i.to_le_bytes());
    g
}

/// The set before: a map, swept whole whenever it was full.
fn old_first_use(seen: &mut HashMap<[u8; 16], i64>, key: [u8; 16], exp: i64, now: i64) -> bool {
    if seen.len() >= CAPACITY {
        seen.retain(|_, e| *e >= now);
    }
    match seen.get(&key) {
        Some(e) if *e >= now => false,
        _ if seen.len() >= CAPACITY => true,
        _ => {
            seen.insert(key, exp);
            true
        }
    }
}

fn main() {
    const CHECKS: u64 = 20_000;
    println!(
        "{:>10} {:>14} {:>14}",
        "held", "now ns/check", "before ns/check"
    );
    let keys: Vec<String> = (0..1000).map(|k| format!("key-{k}")).collect();
    for held in [1_000u64, 100_000, 1_000_000, CAPACITY as u64] {
        // Grants from 1,000 keys, expiring over the next day; the checks that follow are new
        // grants, a second apart, so expired ones are evicted as time passes.
        let mut set = ReplaySet::default();
        let mut old = HashMap::new();
        for i in 0..held {
            let exp = 86_400 + (i % 3600) as i64;
            let key = &keys[(i % 1000) as usize];
            assert_eq!(set.first_use(grant(i), exp, key, 0), Seen::First);
            old_first_use(&mut old, grant(i), exp, 0);
        }
        let started = Instant::now();
        for i in held..held + CHECKS {
            let key = &keys[(i % 1000) as usize];
            std::hint::black_box(set.first_use(
                grant(i),
                86_400 + 60,
                key,
                1 + (i - held) as i64 / 1000,
            ));
        }
        let now = started.elapsed().as_nanos() as f64 / CHECKS as f64;
        // The old set is swept whole on every check once full: fewer checks, or this takes
        // minutes.
        let old_checks = if old.len() >= CAPACITY { 20 } else { CHECKS };
        let started = Instant::now();
        for i in held..held + old_checks {
            std::hint::black_box(old_first_use(
                &mut old,
                grant(i),
                86_460,
                1 + (i - held) as i64 / 1000,
            ));
        }
        let before = started.elapsed().as_nanos() as f64 / old_checks as f64;
        println!("{held:>10} {now:>14.0} {before:>14.0}");
    }
}
