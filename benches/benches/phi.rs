//! The φ accrual failure detector with Akka's window of 1000 intervals: one heartbeat
//! followed by one φ reading, in steady state (window full, heartbeats every ~1 s with
//! a few ms of spread).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sturdy_core::Instant;
use sturdy_core::phi::{PhiAccrual, PhiConfig};

fn phi(c: &mut Criterion) {
    let mut g = c.benchmark_group("phi_accrual_1000");
    let mut d: PhiAccrual<1000> = PhiAccrual::new(PhiConfig::default(), Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut k: u64 = 0;
    let mut next = move || {
        k += 1;
        // 1 s +/- up to 7 ms: a spread that keeps the variance real.
        now = now + Duration::from_millis(993 + (k * 7919) % 15);
        now
    };
    for _ in 0..2_000 {
        d.heartbeat(next());
    }
    assert_eq!(d.samples(), 1000);
    g.bench_function("heartbeat_then_phi", |b| {
        b.iter(|| {
            let t = next();
            d.heartbeat(t);
            black_box(d.phi(t + Duration::from_millis(500)))
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = sturdy_benches::criterion_config();
    targets = phi
}
criterion_main!(benches);
