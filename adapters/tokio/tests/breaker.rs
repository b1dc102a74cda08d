//! The shared `Breaker` handle: the fast path, stale and late outcomes, dropped
//! guards, and two threads on one breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sturdy_core::breaker::{
    BreakerConfig, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig, CountWindow, State,
};
use sturdy_core::{FailureKind, Instant};
use sturdy_tokio::{Breaker, BreakerError};

fn consecutive(failures: u32, open: Duration, successes: u16) -> Breaker {
    Breaker::new(ConsecutiveBreaker::new(
        ConsecutiveConfig::new(failures, open, successes).unwrap(),
    ))
}

#[tokio::test(start_paused = true)]
async fn opens_rejects_without_calling_probes_and_closes() {
    let b = consecutive(3, Duration::from_secs(10), 2);
    let calls = AtomicU32::new(0);
    let op = |ok: bool| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { if ok { Ok(()) } else { Err("refused") } }
    };
    for _ in 0..5 {
        assert_eq!(b.call(op(true)).await, Ok(()));
    }
    assert_eq!(b.metrics().calls, 5);
    for _ in 0..3 {
        assert_eq!(
            b.call(op(false)).await,
            Err(BreakerError::Failed("refused"))
        );
    }
    let opened_at = Instant::ZERO;
    assert_eq!(
        b.state(),
        State::Open {
            until: opened_at + Duration::from_secs(10)
        }
    );
    // Rejected at once, and the operation is not even built into a call.
    let before = calls.load(Ordering::SeqCst);
    match b.try_acquire() {
        Err(r) => assert_eq!(r.retry_at, Instant::from_secs(10)),
        Ok(_) => panic!("open breaker admitted a call"),
    }
    assert!(matches!(
        b.call(async { Ok::<_, &str>(()) }).await,
        Err(BreakerError::Rejected(_))
    ));
    assert_eq!(calls.load(Ordering::SeqCst), before);
    assert_eq!(b.metrics().rejected, 2);

    tokio::time::sleep(Duration::from_secs(10)).await;
    let probe = b.try_acquire().expect("half-open admits a probe");
    assert!(probe.is_probe());
    assert_eq!(b.state(), State::HalfOpen);
    probe.success();
    assert_eq!(b.state(), State::HalfOpen, "two probes needed");
    assert_eq!(b.call(op(true)).await, Ok(()));
    assert_eq!(b.state(), State::Closed);
    // Back on the fast path.
    assert_eq!(b.call(op(true)).await, Ok(()));
    assert_eq!(b.metrics().calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_late_failure_from_before_the_opening_changes_nothing() {
    let b = consecutive(2, Duration::from_secs(10), 1);
    let late = b.try_acquire().unwrap();
    b.try_acquire().unwrap().failure(FailureKind::Network);
    b.try_acquire().unwrap().failure(FailureKind::Network);
    let open = State::Open {
        until: Instant::from_secs(10),
    };
    assert_eq!(b.state(), open);
    tokio::time::sleep(Duration::from_secs(3)).await;
    late.failure(FailureKind::Network);
    assert_eq!(b.state(), open, "the open period is not restarted");
    assert_eq!(b.metrics().failures, 2);
}

#[tokio::test(start_paused = true)]
async fn a_success_after_a_failure_resets_the_run_even_if_admitted_fast() {
    let b = consecutive(2, Duration::from_secs(10), 1);
    let first = b.try_acquire().unwrap();
    let second = b.try_acquire().unwrap();
    second.failure(FailureKind::Network);
    assert_eq!(b.metrics().consecutive_failures, 1);
    first.success();
    assert_eq!(b.metrics().consecutive_failures, 0);
    b.try_acquire().unwrap().failure(FailureKind::Network);
    assert_eq!(b.state(), State::Closed, "1 failure in a row, not 2");
    // Uncounted kinds and ignored outcomes count neither way.
    b.try_acquire().unwrap().failure(FailureKind::Permanent);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_releases_its_slot() {
    let b = consecutive(1, Duration::from_secs(5), 1);
    b.try_acquire().unwrap().failure(FailureKind::Network);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert!(b.try_acquire().is_err(), "one probe slot, busy");
    drop(probe);
    assert!(
        b.try_acquire().unwrap().is_probe(),
        "the slot is free again"
    );

    // A probe cancelled by the caller's timeout frees the slot the same way.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        b.call(std::future::pending::<Result<(), ()>>()),
    )
    .await;
    assert!(cancelled.is_err());
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.call(async { Ok::<_, ()>(7) }).await, Ok(7));
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn two_threads_on_one_breaker() {
    let b = consecutive(3, Duration::from_secs(3600), 1);
    const N: u32 = 20_000;
    let run = |b: &Breaker, fail: bool, ran: &AtomicU32| {
        for _ in 0..N {
            if let Ok(g) = b.try_acquire() {
                ran.fetch_add(1, Ordering::Relaxed);
                if fail {
                    g.failure(FailureKind::Network);
                } else {
                    g.success();
                }
            }
        }
    };
    let ran = Arc::new(AtomicU32::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (b, ran) = (b.clone(), ran.clone());
            s.spawn(move || run(&b, false, &ran));
        }
    });
    assert_eq!(ran.load(Ordering::SeqCst), 2 * N);
    assert_eq!(b.metrics().calls, 2 * N);
    assert_eq!(b.state(), State::Closed);

    // Both threads fail every call: exactly 3 failures count, then everything is
    // rejected; at most one call per thread was admitted before it saw the opening.
    ran.store(0, Ordering::SeqCst);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (b, ran) = (b.clone(), ran.clone());
            s.spawn(move || run(&b, true, &ran));
        }
    });
    let admitted = ran.load(Ordering::SeqCst);
    assert!((3..=4).contains(&admitted), "{admitted} admitted");
    let m = b.metrics();
    assert_eq!(m.failures, 3);
    assert_eq!(m.rejected, u64::from(2 * N - admitted));
    assert!(matches!(b.state(), State::Open { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_windowed_breaker_through_the_handle() {
    let cfg = BreakerConfig::new()
        .with_minimum_calls(4)
        .unwrap()
        .with_failure_rate_threshold(0.5)
        .unwrap()
        .with_open_duration(Duration::from_secs(30))
        .unwrap();
    let core: CircuitBreaker<CountWindow<4>> =
        CircuitBreaker::new(cfg, CountWindow::new(), 1).unwrap();
    let b = Breaker::new(core).named("payments");
    assert_eq!(&*b.name(), "payments");
    for ok in [true, false, true] {
        let _ = b
            .call(async move { if ok { Ok(()) } else { Err(()) } })
            .await;
        assert_eq!(b.state(), State::Closed);
    }
    let _ = b.call(async { Err::<(), ()>(()) }).await;
    assert_eq!(
        b.state(),
        State::Open {
            until: Instant::from_secs(30)
        }
    );
    b.reset();
    assert_eq!(b.state(), State::Closed);
    b.force_open();
    assert_eq!(b.state(), State::ForcedOpen);
    assert_eq!(b.try_acquire().unwrap_err().retry_at, Instant::MAX);
}

/// `named()` on a handle that was already cloned names every clone (before: the name
/// was silently kept as "breaker").
#[test]
fn named_after_clone_names_every_clone() {
    let b: Breaker = Breaker::new(ConsecutiveBreaker::new(ConsecutiveConfig::original()));
    let early_clone = b.clone();
    let b = b.named("inventory");
    assert_eq!(&*b.name(), "inventory");
    assert_eq!(&*early_clone.name(), "inventory");
    assert_eq!(
        format!("{early_clone:?}"),
        "Breaker { name: \"inventory\", state: Closed }"
    );
}

/// Every state change reaches a subscriber with its cause, and every rejection; the
/// totals never go down, through a reset included.
#[tokio::test(start_paused = true)]
async fn subscribers_hear_every_change_with_its_cause_and_totals_never_reset() {
    use sturdy_core::breaker::{BreakerEvent, Outcome};
    use sturdy_tokio::{BreakerNotice, Cause, TokioClock};
    let clock = TokioClock::new();
    let b = Breaker::with_clock(
        ConsecutiveBreaker::new(ConsecutiveConfig::new(2, Duration::from_secs(10), 1).unwrap()),
        clock.clone(),
    )
    .named("db");
    let (tx, rx) = std::sync::mpsc::channel();
    b.subscribe(move |name, n| tx.send((name.to_owned(), *n)).unwrap());
    let ms = Instant::from_millis;
    let _ = b.call(async { Ok::<_, ()>(()) }).await; // fast path: no notice
    let _ = b.call(async { Err::<(), _>(()) }).await;
    let _ = b.call(async { Err::<(), _>(()) }).await; // opens at 0 until 10 s
    let rejected = b.try_acquire().unwrap_err();
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = b.call(async { Ok::<_, ()>(()) }).await; // half-open at 10 s, probe closes
    let failure = Outcome::Failure(FailureKind::Unknown);
    let got: Vec<_> = rx.try_iter().collect();
    assert!(got.iter().all(|(name, _)| name == "db"));
    assert_eq!(
        got.into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
        [
            BreakerNotice::Event {
                event: BreakerEvent::Opened {
                    at: ms(0),
                    until: ms(10_000)
                },
                cause: Cause::Outcome(failure)
            },
            BreakerNotice::Rejected(rejected),
            BreakerNotice::Event {
                event: BreakerEvent::HalfOpened { at: ms(10_000) },
                cause: Cause::Timer
            },
            BreakerNotice::Event {
                event: BreakerEvent::Closed { at: ms(10_000) },
                cause: Cause::Outcome(Outcome::Success)
            },
        ]
    );
    let t = b.totals();
    assert_eq!(
        (t.calls, t.successes, t.failures, t.rejections),
        (4, 2, 2, 1)
    );
    assert_eq!((t.opened, t.half_opened, t.closed), (1, 1, 1));
    b.reset();
    for _ in 0..3 {
        let _ = b.call(async { Ok::<_, ()>(()) }).await;
    }
    let t = b.totals();
    assert_eq!((t.calls, t.successes, t.failures, t.closed), (7, 5, 2, 2));
}

#[tokio::test(start_paused = true)]
async fn outcome_subscribers_hear_fast_path_successes_too() {
    use sturdy_core::breaker::Outcome;
    use sturdy_tokio::BreakerNotice;
    let b = consecutive(3, Duration::from_secs(10), 1);
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    b.subscribe_outcomes(move |_, n| {
        if *n == BreakerNotice::Recorded(Outcome::Success) {
            s.fetch_add(1, Ordering::Relaxed);
        }
    });
    for _ in 0..5 {
        let _ = b.call(async { Ok::<_, ()>(()) }).await;
    }
    assert_eq!(seen.load(Ordering::Relaxed), 5);
}
