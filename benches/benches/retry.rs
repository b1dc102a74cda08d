//! An async retry around an operation that succeeds at once: the cost a retry wrapper
//! adds to every healthy call. sturdy-tokio's `retry` against backon's `Retryable`,
//! with a bare `op().await` as the floor.
//!
//! Both retry up to 3 calls on an exponential schedule with jitter (never used here);
//! every call runs on a current-thread tokio runtime, inside one `block_on` per sample.

use std::hint::black_box;
use std::time::{Duration, Instant};

use backon::Retryable as _;
use criterion::{Criterion, criterion_group, criterion_main};
use sturdy_core::FailureKind;
use sturdy_core::backoff::BackoffConfig;
use sturdy_core::retry::RetryPolicy;

/// The operation: ready at once, never fails.
async fn op() -> Result<u64, std::io::Error> {
    Ok(black_box(7))
}

fn timed<F: Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    mut call: impl FnMut() -> F,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            call().await;
        }
        start.elapsed()
    })
}

fn retry(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_immediate_success");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");

    g.bench_function("bare_await", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                black_box(op().await.expect("ok"));
            })
        });
    });

    let schedule =
        BackoffConfig::exponential(Duration::from_secs(1), 2_000, Duration::from_secs(60))
            .expect("valid schedule");
    let policy = RetryPolicy::new(3, schedule).expect("valid policy");
    g.bench_function("sturdy_tokio", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                let r =
                    sturdy_tokio::retry(&policy, |_e: &std::io::Error| FailureKind::Network, op)
                        .await;
                black_box(r.expect("ok"));
            })
        });
    });

    let builder = backon::ExponentialBuilder::default().with_jitter();
    g.bench_function("backon", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, || async {
                let r = op.retry(builder).await;
                black_box(r.expect("ok"));
            })
        });
    });

    g.finish();
}

criterion_group! {
    name = benches;
    config = sturdy_benches::criterion_config();
    targets = retry
}
criterion_main!(benches);
