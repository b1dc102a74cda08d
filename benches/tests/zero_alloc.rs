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
use sturdy_core::breaker::{
    BreakerConfig, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig, CountWindow, Outcome,
    State, TimeWindow,
};
use sturdy_core::checkpoint::{self, max_encoded_len};
use sturdy_core::deadline::{DeadlineConfig, DeadlineDetector};
use sturdy_core::health::{
    DiskSample, GpuReadout, GpuSample, HealthStatus, HostSample, MachineSample, Thresholds, assess,
};
use sturdy_core::manager::{Ledger, LedgerConfig, TaskState};
use sturdy_core::phi::{PhiAccrual, PhiConfig};
use sturdy_core::retry::{Decision, RetryBudget, RetryBudgetConfig, RetryPolicy, RetryState};
use sturdy_core::{FailureKind, Instant, WorkerId};

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
        .unwrap();
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

const NET: Outcome = Outcome::Failure(FailureKind::Network);

#[test]
fn consecutive_breaker_whole_cycle_never_allocates() {
    let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
    let (n, states) = allocations_during(|| {
        let mut seen = [State::Closed; 4];
        let t = Instant::from_secs(1);
        for _ in 0..1_000 {
            let p = b.try_acquire(t).unwrap();
            b.record(p, Outcome::Success, t);
        }
        for _ in 0..3 {
            let p = b.try_acquire(t).unwrap();
            b.record(p, NET, t);
        }
        seen[0] = b.state();
        assert!(b.try_acquire(t).is_err());
        let t = b.poll_timeout().unwrap();
        b.handle_timeout(t);
        seen[1] = b.state();
        for _ in 0..2 {
            let p = b.try_acquire(t).unwrap();
            b.record(p, Outcome::Success, t);
        }
        seen[2] = b.state();
        while b.poll_event().is_some() {}
        b.force_open(t);
        seen[3] = b.state();
        b.reset(t);
        (seen, b.metrics(), b.snapshot())
    });
    assert_eq!(n, 0);
    let (seen, metrics, snapshot) = states;
    assert!(matches!(seen[0], State::Open { .. }));
    assert_eq!(
        &seen[1..],
        &[State::HalfOpen, State::Closed, State::ForcedOpen]
    );
    assert_eq!(metrics.rejected, 1);
    assert_eq!(snapshot.state, State::Closed);
}

#[test]
fn windowed_breakers_never_allocate() {
    let cfg = BreakerConfig::new()
        .with_slow_calls(Duration::from_millis(50), 0.5)
        .unwrap()
        .with_minimum_calls(10)
        .unwrap();
    let mut count = CircuitBreaker::<CountWindow<100>>::new(cfg, CountWindow::new(), 1).unwrap();
    let mut time = CircuitBreaker::<TimeWindow<10>>::new(
        cfg,
        TimeWindow::new(Duration::from_secs(1)).unwrap(),
        1,
    )
    .unwrap();
    let (n, opened) = allocations_during(|| {
        let mut opened = 0;
        for i in 0..1_000u64 {
            let t = Instant::from_millis(i * 37);
            let outcome = if i % 2 == 0 { NET } else { Outcome::Success };
            if let Ok(p) = count.try_acquire(t) {
                count.record(p, outcome, t + Duration::from_millis(i % 90));
            }
            if let Ok(p) = time.try_acquire(t) {
                time.record(p, outcome, t + Duration::from_millis(i % 90));
            }
            count.handle_timeout(t);
            time.handle_timeout(t);
            while let Some(ev) = count.poll_event() {
                opened += u32::from(matches!(
                    ev,
                    sturdy_core::breaker::BreakerEvent::Opened { .. }
                ));
            }
            while time.poll_event().is_some() {}
            black_box((count.metrics(), time.metrics()));
        }
        opened
    });
    assert_eq!(n, 0);
    assert!(opened > 0, "half the calls failing opens the breaker");
}

#[test]
fn detectors_never_allocate() {
    let mut phi: PhiAccrual<1000> = PhiAccrual::new(PhiConfig::default(), Instant::ZERO);
    let mut deadline = DeadlineDetector::new(
        DeadlineConfig::new(Duration::from_secs(30), Duration::from_secs(30)).unwrap(),
        Instant::ZERO,
    );
    let (n, (suspected_late, suspect_deadline)) = allocations_during(|| {
        let mut now = Instant::ZERO;
        for i in 0..2_000u64 {
            now = now + Duration::from_millis(990 + i % 20);
            phi.heartbeat(now);
            deadline.heartbeat(now);
            black_box(phi.phi(now + Duration::from_millis(500)));
            black_box(phi.poll_timeout());
        }
        let late = now + Duration::from_secs(60);
        (phi.suspected(late), deadline.is_suspect(late))
    });
    assert_eq!(n, 0);
    assert!(suspected_late && suspect_deadline);
    assert_eq!(phi.samples(), 1000);
}

#[test]
fn ledger_and_checkpoint_never_allocate() {
    // Built outside the measurement; small enough for a test thread's stack.
    let mut ledger: Ledger<8, 64> = Ledger::new(LedgerConfig::default());
    let mut restored: Ledger<8, 64> = Ledger::new(LedgerConfig::default());
    let mut buf = [0u8; max_encoded_len(64, 16)];
    let (n, (written, succeeded, next_generation)) = allocations_during(|| {
        let t = Instant::from_secs(1);
        for _ in 0..8 {
            ledger.add_worker(2, Instant::ZERO).unwrap();
            restored.add_worker(2, Instant::ZERO).unwrap();
        }
        for _ in 0..64 {
            ledger.add_task(Instant::ZERO).unwrap();
        }
        let mut succeeded = 0;
        for round in 0..4u64 {
            let t = t + Duration::from_secs(round * 400);
            for w in 0..8 {
                let _ = ledger.heartbeat(WorkerId(w), t);
            }
            ledger.handle_timeout(t);
            while let Some(a) = ledger.assign(t) {
                if a.task.0 % 3 == 0 {
                    ledger
                        .task_failed(a.task, a.epoch, FailureKind::Gpu, t)
                        .unwrap();
                } else {
                    ledger.task_succeeded(a.task, a.epoch, t).unwrap();
                    succeeded += 1;
                }
            }
            ledger
                .worker_failed(WorkerId(round as u32), FailureKind::WorkerCrash, t)
                .unwrap();
            ledger.worker_recovered(WorkerId(round as u32), t).unwrap();
            while ledger.poll_event().is_some() {}
            black_box((ledger.stats(), ledger.poll_timeout()));
        }
        let written = checkpoint::encode(&ledger, 7, b"optimizer state!", &mut buf).unwrap();
        let saved = checkpoint::decode(&buf[..written]).unwrap();
        let resume = saved.restore_into(&mut restored, t).unwrap();
        (written, succeeded, resume.next_generation)
    });
    assert_eq!(n, 0);
    assert!(written > 16 && succeeded > 0);
    assert_eq!(next_generation, 8);
    let done = (0..64)
        .filter(|&i| restored.task(sturdy_core::TaskId(i)).unwrap().state == TaskState::Succeeded)
        .count();
    assert_eq!(done, succeeded);
}
