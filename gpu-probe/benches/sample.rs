//! One full sample of the real machine (host and every GPU), after warm-up.
//!
//! The CPU interval is set to 1 ns so that every iteration reads the CPU counters too:
//! the worst case of a sample. Run: `cargo bench -p sturdy-probe --bench sample`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sturdy_probe::{Probe, ProbeConfig};

fn full_sample(c: &mut Criterion) {
    let config = ProbeConfig::default()
        .with_cpu_min_interval(Duration::from_nanos(1))
        .expect("valid interval");
    let mut probe = Probe::with_config(config);
    probe.sample(); // loads NVML (or records why not) and takes the first CPU reading
    c.bench_function("probe_full_sample", |b| {
        b.iter(|| black_box(probe.sample()))
    });
    let sample = probe.sample();
    c.bench_function("prometheus_render", |b| {
        b.iter(|| black_box(sturdy_probe::prometheus(&sample)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = full_sample
}
criterion_main!(benches);
