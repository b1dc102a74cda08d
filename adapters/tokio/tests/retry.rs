//! The retry loop on tokio's virtual time: exact call counts and call times.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::retry::{GiveUpReason, RetryPolicy, fixed_policy};
use sturdy_tokio::{RetryError, retry, retrying};
use tokio::time::Instant;

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

/// Milliseconds since `start` at each call.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<u64>>>);

impl Calls {
    fn record(&self, start: Instant) -> usize {
        let mut v = self.0.lock().unwrap();
        v.push(start.elapsed().as_millis() as u64);
        v.len()
    }
    fn times(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

fn exponential(max_attempts: u32) -> RetryPolicy {
    let b = BackoffConfig::exponential(Duration::from_millis(100), 2_000, Duration::from_secs(10))
        .unwrap()
        .with_jitter(Jitter::None)
        .unwrap();
    RetryPolicy::new(max_attempts, b).unwrap()
}

#[tokio::test(start_paused = true)]
async fn always_failing_makes_exactly_four_calls_at_the_scheduled_times() {
    let policy = exponential(4);
    let start = Instant::now();
    let calls = Calls::default();
    let out: Result<(), _> = retry(&policy, classify, || {
        calls.record(start);
        async { Err(Fault::Refused) }
    })
    .await;
    assert_eq!(calls.times(), [0, 100, 300, 700]);
    assert_eq!(
        out,
        Err(RetryError::Failed {
            error: Fault::Refused,
            attempts: 4,
            reason: GiveUpReason::AttemptsExhausted { attempts: 4 }
        })
    );
    // No final useless sleep.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_scheduling() {
    // Delays 100, 200, 400: starts at 0, 100, 300; the next would start at 700 > 500.
    let policy = exponential(10)
        .with_max_elapsed(Duration::from_millis(500))
        .unwrap();
    let start = Instant::now();
    let calls = Calls::default();
    let out: Result<(), _> = retry(&policy, classify, || {
        calls.record(start);
        async { Err(Fault::Refused) }
    })
    .await;
    assert_eq!(calls.times(), [0, 100, 300]);
    assert_eq!(
        out.unwrap_err().reason(),
        GiveUpReason::ElapsedExceeded {
            elapsed: Duration::from_millis(300)
        }
    );
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn first_try_success_makes_one_call_and_no_sleep() {
    let policy = exponential(4);
    let start = Instant::now();
    let calls = Calls::default();
    let out = retry(&policy, classify, || {
        calls.record(start);
        async { Ok::<_, Fault>(42) }
    })
    .await;
    assert_eq!(out, Ok(42));
    assert_eq!(calls.times(), [0]);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn permanent_error_makes_one_call() {
    let policy = exponential(4);
    let start = Instant::now();
    let calls = Calls::default();
    let out: Result<(), _> = retry(&policy, classify, || {
        calls.record(start);
        async { Err(Fault::BadRequest) }
    })
    .await;
    assert_eq!(calls.times(), [0]);
    assert_eq!(
        out.unwrap_err().reason(),
        GiveUpReason::NotRetryable(FailureKind::Permanent)
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failure_recovers_after_the_delays() {
    let policy = exponential(4);
    let start = Instant::now();
    let calls = Calls::default();
    let out = retry(&policy, classify, || {
        let n = calls.record(start);
        async move { if n < 3 { Err(Fault::Refused) } else { Ok(n) } }
    })
    .await;
    assert_eq!(out, Ok(3));
    assert_eq!(calls.times(), [0, 100, 300]);
}

#[tokio::test(start_paused = true)]
async fn a_callers_deadline_cancels_the_retry_after_one_attempt() {
    let policy = fixed_policy(10, Duration::from_secs(1)).unwrap();
    let start = Instant::now();
    let calls = Calls::default();
    let out = tokio::time::timeout(
        Duration::from_millis(500),
        retry(&policy, classify, || {
            calls.record(start);
            async { Err::<(), _>(Fault::Refused) }
        }),
    )
    .await;
    assert!(out.is_err(), "the caller's deadline fired");
    assert_eq!(calls.times(), [0]);
    // Time moves on: nothing left behind calls again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls.times(), [0]);
}

/// Counts live attempt futures: incremented when an attempt starts, decremented when its
/// future is dropped.
struct Live(Arc<AtomicU32>);
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_retry_future_leaves_nothing_running() {
    let policy = fixed_policy(10, Duration::from_millis(100)).unwrap();
    let live = Arc::new(AtomicU32::new(0));
    let calls = Arc::new(AtomicU32::new(0));
    let task = {
        let (live, calls) = (live.clone(), calls.clone());
        // `tokio::spawn` needs the retry future to be `Send + 'static`.
        tokio::spawn(async move {
            retrying(&policy)
                .attempt_timeout(Duration::from_secs(60))
                .unwrap()
                .run(classify, move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    live.fetch_add(1, Ordering::SeqCst);
                    let guard = Live(live.clone());
                    async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(guard);
                        Ok::<_, Fault>(())
                    }
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(live.load(Ordering::SeqCst), 1, "one attempt in flight");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(live.load(Ordering::SeqCst), 0, "the attempt was dropped");
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt after the drop");
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_is_a_task_timeout_failure() {
    let policy = fixed_policy(3, Duration::from_millis(100)).unwrap();
    let start = Instant::now();
    let calls = Calls::default();
    // Attempt 1 hangs for 10 s (timed out at 250 ms); attempt 2 answers in 50 ms.
    let out = retrying(&policy)
        .attempt_timeout(Duration::from_millis(250))
        .unwrap()
        .run(classify, || {
            let n = calls.record(start);
            async move {
                let work = if n == 1 { 10_000 } else { 50 };
                tokio::time::sleep(Duration::from_millis(work)).await;
                Ok::<_, Fault>(n)
            }
        })
        .await;
    assert_eq!(out, Ok(2));
    assert_eq!(calls.times(), [0, 350]);
    assert_eq!(start.elapsed(), Duration::from_millis(400));

    let out: Result<usize, _> = retrying(&policy)
        .attempt_timeout(Duration::from_millis(250))
        .unwrap()
        .run(classify, || async {
            std::future::pending::<()>().await;
            Err(Fault::Refused)
        })
        .await;
    assert_eq!(
        out,
        Err(RetryError::TimedOut {
            timeout: Duration::from_millis(250),
            attempts: 3,
            reason: GiveUpReason::AttemptsExhausted { attempts: 3 }
        })
    );
}

/// N concurrent callers, on tasks of a multi-threaded runtime, through one budget of
/// `TOKENS` tokens (no deposits, no floor): exactly `TOKENS` retries in all, whatever
/// the interleaving, though the policy alone would allow 5 calls each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_through_one_budget_make_exactly_its_retries() {
    use sturdy_core::retry::RetryBudgetConfig;
    use sturdy_tokio::RetryBudget;
    const CALLERS: u32 = 40;
    const TOKENS: u32 = 7;
    let budget = RetryBudget::new(RetryBudgetConfig::new(0, 0, TOKENS).unwrap());
    let policy = Arc::new(fixed_policy(5, Duration::ZERO).unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (budget, policy, calls) = (budget.clone(), policy.clone(), calls.clone());
            tokio::spawn(async move {
                retrying(&policy)
                    .budget(&budget)
                    .run(classify, || {
                        calls.fetch_add(1, Ordering::Relaxed);
                        async { Err::<(), _>(Fault::Refused) }
                    })
                    .await
                    .unwrap_err()
            })
        })
        .collect();
    let mut by_reason = (0, 0);
    for t in tasks {
        match t.await.unwrap().reason() {
            GiveUpReason::BudgetExhausted => by_reason.0 += 1,
            GiveUpReason::AttemptsExhausted { .. } => by_reason.1 += 1,
            other => panic!("unexpected reason {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::Relaxed), CALLERS + TOKENS);
    assert_eq!(budget.retries_allowed(), u64::from(TOKENS));
    assert_eq!(budget.calls(), u64::from(CALLERS));
    assert_eq!(budget.tokens(), 0);
    // Every caller stopped; at most one could have spent all 4 of its retries.
    assert_eq!(by_reason.0 + by_reason.1, CALLERS);
    assert!(by_reason.0 >= CALLERS - 1, "{by_reason:?}");
}

/// The ratio: each call deposits its share, so in a steady outage retries stay at
/// `ratio` of calls (after the bucket's start-up tokens are spent).
#[tokio::test(start_paused = true)]
async fn a_budget_limits_retries_to_its_ratio_of_calls() {
    use sturdy_core::retry::RetryBudgetConfig;
    use sturdy_tokio::RetryBudget;
    // 25 % of calls, no floor, one start-up token.
    let budget = RetryBudget::new(RetryBudgetConfig::new(250, 0, 1).unwrap());
    let policy = fixed_policy(3, Duration::from_millis(10)).unwrap();
    let mut calls = 0;
    for _ in 0..100 {
        let _ = retrying(&policy)
            .budget(&budget)
            .run(classify, || {
                calls += 1;
                async { Err::<(), _>(Fault::Refused) }
            })
            .await;
    }
    // The first call spends the start-up token (its deposit was lost to the cap, the
    // bucket being full); then every 4th call has saved up one token: 1 + 24 retries.
    assert_eq!(budget.retries_allowed(), 25);
    assert_eq!(calls, 125);
}
