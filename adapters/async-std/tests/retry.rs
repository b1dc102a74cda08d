//! The retry loop on async-io timers, under both async-std and smol: exact call counts,
//! and calls never earlier than scheduled (real time: the timers may be late, never
//! early).

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sturdy_async_std::{RetryError, retry, retrying};
use sturdy_core::FailureKind;
use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::retry::{GiveUpReason, RetryPolicy, fixed_policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Refused,
    BadRequest,
}

fn classify(f: &Fault) -> FailureKind {
    match f {
        Fault::Refused => FailureKind::Network,
        Fault::BadRequest => FailureKind::Permanent,
    }
}

/// Runs `make()` under async-std, then under smol.
fn both<F: Future<Output = ()>>(make: impl Fn() -> F) {
    async_std::task::block_on(make());
    smol::block_on(make());
}

fn exponential(max_attempts: u32) -> RetryPolicy {
    let b = BackoffConfig::exponential(Duration::from_millis(10), 2_000, Duration::from_secs(1))
        .unwrap()
        .with_jitter(Jitter::None)
        .unwrap();
    RetryPolicy::new(max_attempts, b).unwrap()
}

/// Each call's offset from the first, in ms, must be at least the schedule's.
fn assert_not_early(times: &[Duration], schedule_ms: &[u64]) {
    assert_eq!(times.len(), schedule_ms.len(), "calls: {times:?}");
    for (t, s) in times.iter().zip(schedule_ms) {
        assert!(
            *t >= Duration::from_millis(*s),
            "{times:?} vs {schedule_ms:?}"
        );
    }
}

#[test]
fn always_failing_makes_exactly_four_calls_not_before_their_times() {
    both(|| async {
        let policy = exponential(4);
        let start = Instant::now();
        let times = RefCell::new(Vec::new());
        let out: Result<(), _> = retry(&policy, classify, || {
            times.borrow_mut().push(start.elapsed());
            async { Err(Fault::Refused) }
        })
        .await;
        assert_not_early(&times.borrow(), &[0, 10, 30, 70]);
        assert_eq!(
            out,
            Err(RetryError::Failed {
                error: Fault::Refused,
                attempts: 4,
                reason: GiveUpReason::AttemptsExhausted { attempts: 4 }
            })
        );
    });
}

#[test]
fn max_elapsed_stops_scheduling() {
    both(|| async {
        // Constant 20 ms under a 50 ms budget: starts at 0, 20, 40; 60 > 50 stops.
        let policy = fixed_policy(100, Duration::from_millis(20))
            .unwrap()
            .with_max_elapsed(Duration::from_millis(50))
            .unwrap();
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = retry(&policy, classify, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Fault::Refused) }
        })
        .await;
        // A slow machine may stop earlier (elapsed is real time), never later.
        let n = calls.load(Ordering::SeqCst);
        assert!((1..=3).contains(&n), "{n} calls");
        assert!(matches!(
            out.unwrap_err().reason(),
            GiveUpReason::ElapsedExceeded { .. }
        ));
    });
}

#[test]
fn first_try_success_and_permanent_error_make_one_call() {
    both(|| async {
        let policy = exponential(4);
        let calls = AtomicU32::new(0);
        let out = retry(&policy, classify, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Fault>(7) }
        })
        .await;
        assert_eq!((out, calls.swap(0, Ordering::SeqCst)), (Ok(7), 1));
        let out: Result<(), _> = retry(&policy, classify, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(Fault::BadRequest) }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            out.unwrap_err().reason(),
            GiveUpReason::NotRetryable(FailureKind::Permanent)
        );
    });
}

#[test]
fn a_callers_deadline_cancels_after_one_attempt_and_a_dropped_future_leaves_nothing() {
    both(|| async {
        let policy = fixed_policy(10, Duration::from_secs(5)).unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let retried = retry(&policy, classify, move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(Fault::Refused) }
        });
        let deadline = async {
            async_io::Timer::after(Duration::from_millis(30)).await;
            None
        };
        let out = futures_lite::future::or(async { Some(retried.await) }, deadline).await;
        assert_eq!(out, None, "the caller's deadline fired first");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The retry future is gone with its closure: nothing else holds `calls`.
        assert_eq!(Arc::strong_count(&calls), 1);
    });
}

#[test]
fn attempt_timeout_is_a_task_timeout_failure() {
    both(|| async {
        let policy = fixed_policy(3, Duration::from_millis(5)).unwrap();
        let calls = AtomicU32::new(0);
        let out = retrying(&policy)
            .attempt_timeout(Duration::from_millis(20))
            .unwrap()
            .run(classify, || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n == 1 {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, Fault>(n)
                }
            })
            .await;
        assert_eq!(out, Ok(2));
    });
}

/// N concurrent callers on threads through one budget of 5 tokens (no deposits, no
/// floor): exactly 5 retries in all, under async-std and under smol.
#[test]
fn concurrent_callers_through_one_budget_make_exactly_its_retries() {
    use sturdy_async_std::RetryBudget;
    use sturdy_core::retry::RetryBudgetConfig;
    const CALLERS: u32 = 16;
    type BoxFut = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
    let runners: [fn(BoxFut); 2] = [|f| async_std::task::block_on(f), |f| smol::block_on(f)];
    for run in runners {
        let budget = RetryBudget::new(RetryBudgetConfig::new(0, 0, 5).unwrap());
        let policy = Arc::new(fixed_policy(4, Duration::ZERO).unwrap());
        let calls = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (budget, policy, calls) = (budget.clone(), policy.clone(), calls.clone());
                std::thread::spawn(move || {
                    run(Box::pin(async move {
                        let out: Result<(), _> = retrying(&policy)
                            .budget(&budget)
                            .run(classify, || {
                                calls.fetch_add(1, Ordering::Relaxed);
                                async { Err(Fault::Refused) }
                            })
                            .await;
                        assert!(out.is_err());
                    }));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(calls.load(Ordering::Relaxed), CALLERS + 5);
        assert_eq!(budget.retries_allowed(), 5);
        assert_eq!(budget.calls(), u64::from(CALLERS));
    }
}
