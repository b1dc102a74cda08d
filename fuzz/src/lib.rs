//! The drivers behind the cargo-fuzz targets of `fuzz_targets/`, one module per target.
//!
//! Each driver turns the fuzzer's bytes into an `Arbitrary` list of operations, applies
//! them to a `sturdy-core` state machine and checks the invariants after every step,
//! panicking (which libFuzzer reports as a crash) when one breaks. They live in a library
//! so that `tests/regressions.rs` replays every saved finding on stable Rust.

pub mod backoff;
pub mod breaker;
pub mod checkpoint;
pub mod health;
pub mod ledger;
pub mod phi;
pub mod retry;

/// Prints the decoded input when `STURDY_FUZZ_DEBUG` is set: for triage, with
/// `cargo fuzz run TARGET ARTIFACT` or `cargo test` on a saved input.
fn debug(input: &impl core::fmt::Debug) {
    if std::env::var_os("STURDY_FUZZ_DEBUG").is_some() {
        eprintln!("{input:#?}");
    }
}
