//! The closed path of a circuit breaker (acquire a permit, run nothing, record a
//! success), alone and with two threads on one breaker: sturdy against failsafe,
//! recloser and tower-resilience.
//!
//! sturdy's core breakers are `&mut` values (the caller owns them; one per worker in a
//! ledger): `ConsecutiveBreaker::original()` (3 failures in a row) and the windowed
//! `CircuitBreaker` over a 100-call count window (recloser's shape), each
//! `try_acquire(now)` then `record(permit, Outcome::Success, now)`.
//!
//! sturdy-tokio's `Breaker` is the shared handle (`Clone + Send + Sync`, a lock-free
//! closed path) around a `ConsecutiveBreaker::original()`: `try_acquire()` then
//! `guard.success()`.
//!
//! Each peer in its default configuration:
//! - failsafe: `Config::new().build()` (consecutive failures with an exponential open
//!   time), `call(|| Ok(()))`;
//! - recloser: `Recloser::default()` (ring buffer of 100 calls, 50 % error rate),
//!   `call(|| Ok(()))`;
//! - tower-resilience: the `CircuitBreakerLayer` default around a `service_fn` that
//!   answers at once, built once and called as `ready().await?.call(()).await` on a
//!   current-thread tokio runtime (it needs one: its state is behind a tokio `Mutex`).
//!
//! Two threads: both threads call the same breaker `iters` times after a barrier; the
//! time reported is the slower thread's time divided by `iters` (the latency of a call
//! while the other thread also calls). The line `atomic_counter` is one shared
//! `fetch_add` under the same harness: the floor any shared state pays.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use sturdy_core::breaker::{
    BreakerConfig, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig, CountWindow, Outcome,
};

/// Runs `call` `iters` times on each of two threads at once; returns the slower
/// thread's time.
fn two_threads<F: Fn() + Sync>(iters: u64, call: F) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let run = || {
            barrier.wait();
            let start = Instant::now();
            for _ in 0..iters {
                call();
            }
            start.elapsed()
        };
        let other = s.spawn(run);
        let mine = run();
        mine.max(other.join().expect("bench thread"))
    })
}

fn closed_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_closed_path");

    let counter = AtomicU64::new(0);
    g.bench_function("atomic_counter", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::AcqRel));
    });

    let now = sturdy_core::Instant::from_secs(1);
    let mut consecutive = ConsecutiveBreaker::new(ConsecutiveConfig::original());
    g.bench_function("sturdy_consecutive", |b| {
        b.iter(|| {
            let now = black_box(now);
            // Through black_box, as the peers are: the breaker's state may not be
            // kept in registers across iterations nor its updates folded together.
            let breaker = black_box(&mut consecutive);
            let permit = breaker.try_acquire(now).expect("closed");
            breaker.record(permit, Outcome::Success, now);
        });
    });

    let mut windowed =
        CircuitBreaker::<CountWindow<100>>::new(BreakerConfig::new(), CountWindow::new(), 1)
            .expect("valid config");
    g.bench_function("sturdy_count_window_100", |b| {
        b.iter(|| {
            let now = black_box(now);
            // Through black_box, as the peers are: the breaker's state may not be
            // kept in registers across iterations nor its updates folded together.
            let breaker = black_box(&mut windowed);
            let permit = breaker.try_acquire(now).expect("closed");
            breaker.record(permit, Outcome::Success, now);
        });
    });

    let shared = sturdy_tokio::Breaker::new(ConsecutiveBreaker::new(ConsecutiveConfig::original()));
    g.bench_function("sturdy_tokio_shared", |b| {
        b.iter(|| black_box(&shared).try_acquire().expect("closed").success());
    });

    let failsafe = failsafe::Config::new().build();
    g.bench_function("failsafe", |b| {
        b.iter(|| black_box(&failsafe).call(|| Ok::<(), ()>(())));
    });

    let recloser = recloser::Recloser::default();
    g.bench_function("recloser", |b| {
        b.iter(|| black_box(&recloser).call(|| Ok::<(), ()>(())));
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    let layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("default config");
    let mut svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|()| async { Ok::<(), std::io::Error>(()) }),
    );
    g.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let ready = tower::ServiceExt::ready(&mut svc).await.expect("ready");
                    black_box(tower::Service::call(ready, ()).await).expect("closed");
                }
                start.elapsed()
            })
        });
    });

    g.finish();
}

fn two_threads_one_breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_closed_path_two_threads");

    let counter = AtomicU64::new(0);
    g.bench_function("atomic_counter", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(&counter).fetch_add(1, Ordering::AcqRel);
            })
        });
    });

    let shared = sturdy_tokio::Breaker::new(ConsecutiveBreaker::new(ConsecutiveConfig::original()));
    g.bench_function("sturdy_tokio_shared", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(&shared).try_acquire().expect("closed").success();
            })
        });
    });

    let failsafe = Arc::new(failsafe::Config::new().build());
    g.bench_function("failsafe", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                let _ = black_box(&failsafe).call(|| Ok::<(), ()>(()));
            })
        });
    });

    let recloser = recloser::Recloser::default();
    g.bench_function("recloser", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                let _ = black_box(&recloser).call(|| Ok::<(), ()>(()));
            })
        });
    });

    g.finish();
}

criterion_group! {
    name = benches;
    config = sturdy_benches::criterion_config();
    targets = closed_path, two_threads_one_breaker
}
criterion_main!(benches);
