//! The core's hot paths never allocate: a counting global allocator watches each one.
//!
//! The counter is per thread, so the test harness (which runs tests on several threads
//! and allocates for its own bookkeeping) never disturbs a measurement: only the
//! allocations made on the measuring thread between the start and the end of the closure
//! count. A control test shows the counter does see an allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use sturdy_core::backoff::{BackoffConfig, BackoffState, Jitter};
use sturdy_core::health::{
    DiskSample, GpuReadout, GpuSample, HealthStatus, HostSample, MachineSample, Thresholds, assess,
};
use sturdy_core::retry::{Decision, RetryBudget, RetryBudgetConfig, RetryPolicy, RetryState};
use sturdy_core::{FailureKind, Instant};

/// The system allocator, counting allocations (and reallocations) per thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: during thread teardown the slot may be gone; such allocations are not
    // inside any measurement.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// only addition is a thread-local counter that itself never allocates (const-initialized).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded contract of `GlobalAlloc::alloc_zeroed`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs, and its result.
fn allocations_during<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let r = f();
    let after = ALLOCATIONS.with(Cell::get);
    (after - before, r)
}

#[test]
fn the_counter_sees_an_allocation() {
    let (n, v) = allocations_during(|| black_box(vec![1u8; 64]));
    assert_eq!(v.len(), 64);
    assert_eq!(n, 1);
    let (n, s) = allocations_during(|| {
        let mut s = String::new();
        for i in 0..100 {
            s.push_str(black_box("abcdefgh"));
            black_box(i);
        }
        s
    });
    assert_eq!(s.len(), 800);
    assert!(n >= 2, "growth reallocates: {n}");
}

#[test]
fn backoff_every_jitter_never_allocates() {
    let ms = Duration::from_millis;
    let schedules = [
        BackoffConfig::constant(ms(100)),
        BackoffConfig::linear(ms(100), ms(50), ms(5_000)).unwrap(),
        BackoffConfig::exponential(ms(100), 2_000, Duration::from_secs(10)).unwrap(),
    ];
    for cfg in schedules {
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let cfg = cfg.with_jitter(jitter).unwrap();
            let mut state = BackoffState::new(7);
            let (n, total) = allocations_during(|| {
                let mut total = Duration::ZERO;
                for _ in 0..1_000 {
                    total += state.next_delay(&cfg);
                }
                state.reset();
                total += cfg.raw_delay(u32::MAX);
                total
            });
            assert_eq!(n, 0, "{cfg:?}");
            assert!(total > Duration::ZERO, "{cfg:?}");
            assert_eq!(state.retries(), 0);
        }
    }
}

#[test]
fn retry_decisions_and_budget_never_allocate() {
    let backoff =
        BackoffConfig::exponential(Duration::from_millis(10), 2_000, Duration::from_secs(1))
            .unwrap();
    let policy = RetryPolicy::new(5, backoff)
        .unwrap()
        .with_max_elapsed(Duration::from_secs(60))
        .unwrap()
        .with_budget(RetryBudgetConfig::default());
    let mut budget = RetryBudget::new(RetryBudgetConfig::default(), Instant::ZERO);
    let (n, (retries, give_ups)) = allocations_during(|| {
        let (mut retries, mut give_ups) = (0u32, 0u32);
        for task in 0..200u64 {
            let mut now = Instant::from_millis(task);
            budget.record_request(now);
            let mut state = RetryState::new(now, task);
            loop {
                match state.on_failure_with(
                    &policy,
                    FailureKind::Network,
                    now,
                    Some(Duration::from_millis(3)),
                    Some(&mut budget),
                ) {
                    Decision::RetryAfter(d) => {
                        retries += 1;
                        now = now + d;
                    }
                    Decision::GiveUp(_) => {
                        give_ups += 1;
                        break;
                    }
                }
            }
            state.on_success(now);
        }
        (retries, give_ups)
    });
    assert_eq!(n, 0);
    assert_eq!(give_ups, 200);
    // The budget (100 tokens, 20 % of requests, 10/s) lets some retries through, not all
    // 4 per task.
    assert!(retries > 0 && retries < 800, "{retries}");
}

#[test]
fn health_rules_never_allocate() {
    // A sick machine, built outside the measurement: a nearly full disk, a hot GPU with
    // a double-bit ECC error and an XID.
    let mut host = HostSample {
        cpu_percent: Some(97.0),
        memory_used_bytes: Some(15 << 30),
        memory_available_bytes: Some(1 << 30),
        memory_total_bytes: Some(16 << 30),
        ..HostSample::default()
    };
    host.push_disk(DiskSample::new("/", Some(100 << 30), Some(1 << 30)))
        .unwrap();
    let mut gpu = GpuSample::new(0);
    gpu.temperature_c = Some(90.0);
    gpu.ecc_volatile_uncorrected = Some(1);
    gpu.xids_watched = true;
    gpu.push_xid(79).unwrap();
    let mut gpus = GpuReadout::empty();
    gpus.push(gpu).unwrap();
    let sample = MachineSample { host, gpus };
    let thresholds = Thresholds::default();
    let (n, report) = allocations_during(|| assess(&sample, &thresholds));
    assert_eq!(n, 0);
    assert_eq!(report.status, HealthStatus::Critical);
    assert!(report.issues.len() >= 4, "{report:?}");
}
