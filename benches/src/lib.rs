//! `sturdy-benches`: criterion benches of sturdy side by side with the peer crates people
//! use today, and the zero-allocation test of the core's hot paths.
//!
//! Run them all with `cargo bench -p sturdy-benches`; `benches/README.md` holds a table
//! from one run, the machine and the exact command. The library part only holds what
//! every bench shares.

use std::time::Duration;

/// The criterion settings every bench uses: 1 s of warm-up and 2 s of measurement per
/// function, so that the whole suite runs in a few minutes on 2 cores. Command-line
/// flags (`--warm-up-time`, `--measurement-time`) still override them.
pub fn criterion_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}
