//! Next delay of an exponential schedule with full jitter, in steady state (the schedule
//! already at its cap): sturdy-core against backon, backoff and exponential-backoff.
//!
//! Every schedule: 100 ms base, doubling, capped at 10 s, the closest jitter each crate
//! offers to AWS "full jitter" (uniform in `[0, d]`):
//! - sturdy: `Jitter::Full`, exactly `[0, d]`;
//! - backon: `with_jitter()`, `d + [0, d)` (it only adds);
//! - backoff: `randomization_factor = 1.0`, `[0, 2d]`; it reads the system clock on every
//!   call for its elapsed-time limit, even when that limit is off;
//! - exponential-backoff: `jitter = 1.0`, `d * [0, 1.5)`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

const BASE: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_secs(10);
/// Calls made before measuring, so every schedule sits at its cap.
const WARM: usize = 64;

fn backoff_next_delay(c: &mut Criterion) {
    let mut g = c.benchmark_group("backoff_next_delay_full_jitter");

    let cfg = sturdy_core::backoff::BackoffConfig::exponential(BASE, 2_000, CAP)
        .and_then(|c| c.with_jitter(sturdy_core::backoff::Jitter::Full))
        .expect("valid schedule");
    let mut state = sturdy_core::backoff::BackoffState::new(42);
    for _ in 0..WARM {
        state.next_delay(&cfg);
    }
    g.bench_function("sturdy", |b| {
        b.iter(|| state.next_delay(black_box(&cfg)));
    });

    let mut backon = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(BASE)
            .with_factor(2.0)
            .with_max_delay(CAP)
            .with_jitter()
            .without_max_times(),
    );
    for _ in 0..WARM {
        backon.next();
    }
    g.bench_function("backon", |b| {
        b.iter(|| black_box(&mut backon).next());
    });

    let mut backoff = backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(BASE)
        .with_multiplier(2.0)
        .with_max_interval(CAP)
        .with_randomization_factor(1.0)
        .with_max_elapsed_time(None)
        .build();
    for _ in 0..WARM {
        backoff::backoff::Backoff::next_backoff(&mut backoff);
    }
    g.bench_function("backoff", |b| {
        b.iter(|| backoff::backoff::Backoff::next_backoff(black_box(&mut backoff)));
    });

    let mut eb = exponential_backoff::Backoff::new(u32::MAX, BASE, CAP);
    eb.set_jitter(1.0);
    let mut eb = eb.into_iter();
    for _ in 0..WARM {
        eb.next();
    }
    g.bench_function("exponential-backoff", |b| {
        b.iter(|| black_box(&mut eb).next());
    });

    g.finish();
}

criterion_group! {
    name = benches;
    config = sturdy_benches::criterion_config();
    targets = backoff_next_delay
}
criterion_main!(benches);
