//! Replays every saved input under `regressions/<target>/` (findings that were fixed, and
//! seeds worth keeping) through its driver, on stable Rust: `cargo test` in `fuzz/`.

use std::fs;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let mut n = 0;
    if let Ok(entries) = fs::read_dir(&dir) {
        for entry in entries {
            let path = entry.expect("readable directory").path();
            let data = fs::read(&path).expect("readable regression input");
            eprintln!("replaying {}", path.display());
            run(&data);
            n += 1;
        }
    }
    n
}

/// A cheap deterministic byte source, so each driver also runs on a few hundred inputs
/// in every `cargo test` (not a substitute for fuzzing; a smoke test of the driver).
fn pseudo_random_inputs(seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut s = seed;
    (0..count).map(move |i| {
        let len = 1 + (i * 37) % 512;
        (0..len)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let z = (s ^ (s >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                (z >> 56) as u8
            })
            .collect()
    })
}

/// Replays the saved inputs of `target`, then a few hundred pseudo-random ones.
fn check(target: &str, run: fn(&[u8])) {
    replay(target, run);
    for input in pseudo_random_inputs(target.len() as u64, 300) {
        run(&input);
    }
    run(&[]);
}

#[test]
fn backoff() {
    check("backoff", sturdy_fuzz::backoff::run);
}

#[test]
fn retry() {
    check("retry", sturdy_fuzz::retry::run);
}

#[test]
fn health() {
    check("health", sturdy_fuzz::health::run);
}

#[test]
fn breaker() {
    check("breaker", sturdy_fuzz::breaker::run);
}

#[test]
fn ledger() {
    check("ledger", sturdy_fuzz::ledger::run);
}

#[test]
fn checkpoint() {
    check("checkpoint", sturdy_fuzz::checkpoint::run);
}

#[test]
fn phi() {
    check("phi", sturdy_fuzz::phi::run);
}
