//! The retry loop on embassy-time's mock driver: exact call counts and call times.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::cell::RefCell;
use std::sync::Mutex;
use std::time::Duration;

use embassy_time::MockDriver;
use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::retry::{GiveUpReason, RetryPolicy, fixed_policy};
use sturdy_core::{Clock, FailureKind, Instant};
use sturdy_embassy::{EmbassyClock, RetryError, retry, retry_with_context, retrying};

/// The mock driver is one global: tests take turns.
static DRIVER: Mutex<()> = Mutex::new(());

/// Polls `f`, advancing the mock clock 1 ms whenever it is pending, for at most
/// `limit_ms`; `None` if it did not finish.
fn run<F: Future>(f: F, limit_ms: u64) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..=limit_ms {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        MockDriver::get().advance(embassy_time::Duration::from_millis(1));
    }
    None
}

fn now_ms() -> u64 {
    EmbassyClock.now().as_millis()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Nack,
    BadAddress,
}

fn classify(f: &Fault) -> FailureKind {
    match f {
        Fault::Nack => FailureKind::Network,
        Fault::BadAddress => FailureKind::Permanent,
    }
}

#[test]
fn schedules_exact_times_and_counts() {
    let _turn = DRIVER.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();

    // Always failing, 4 attempts, 10/20/40 ms: calls at 0, 10, 30, 70.
    let b = BackoffConfig::exponential(Duration::from_millis(10), 2_000, Duration::from_secs(1))
        .unwrap()
        .with_jitter(Jitter::None)
        .unwrap();
    let policy = RetryPolicy::new(4, b).unwrap();
    let times = RefCell::new(Vec::new());
    let out: Option<Result<(), _>> = run(
        retry(&policy, classify, || {
            times.borrow_mut().push(now_ms());
            async { Err(Fault::Nack) }
        }),
        1_000,
    );
    assert_eq!(*times.borrow(), [0, 10, 30, 70]);
    assert_eq!(
        out,
        Some(Err(RetryError::Failed {
            error: Fault::Nack,
            attempts: 4,
            reason: GiveUpReason::AttemptsExhausted { attempts: 4 }
        }))
    );
    assert_eq!(now_ms(), 70);

    // max_elapsed 25 ms with 10 ms steps: calls at 70, 80, 90; 100 would pass 25 ms.
    let policy = fixed_policy(100, Duration::from_millis(10))
        .unwrap()
        .with_max_elapsed(Duration::from_millis(25))
        .unwrap();
    times.borrow_mut().clear();
    let out: Option<Result<(), _>> = run(
        retry(&policy, classify, || {
            times.borrow_mut().push(now_ms());
            async { Err(Fault::Nack) }
        }),
        1_000,
    );
    assert_eq!(*times.borrow(), [70, 80, 90]);
    assert_eq!(
        out.unwrap().unwrap_err().reason(),
        GiveUpReason::ElapsedExceeded {
            elapsed: Duration::from_millis(20)
        }
    );

    // First-try success and a permanent error: one call each, no time passes.
    let calls = RefCell::new(0);
    let ok = run(
        retry(&policy, classify, || {
            *calls.borrow_mut() += 1;
            async { Ok::<_, Fault>(3) }
        }),
        0,
    );
    assert_eq!((ok, *calls.borrow()), (Some(Ok(3)), 1));
    let bad: Option<Result<(), _>> = run(
        retry(&policy, classify, || {
            *calls.borrow_mut() += 1;
            async { Err(Fault::BadAddress) }
        }),
        0,
    );
    assert_eq!(*calls.borrow(), 2);
    assert_eq!(
        bad.unwrap().unwrap_err().reason(),
        GiveUpReason::NotRetryable(FailureKind::Permanent)
    );
    assert_eq!(now_ms(), 90);
}

#[test]
fn attempt_timeout_and_cancellation() {
    let _turn = DRIVER.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();

    // Attempt 1 never answers and times out at 15 ms; 5 ms later attempt 2 answers.
    let policy = fixed_policy(3, Duration::from_millis(5)).unwrap();
    let times = RefCell::new(Vec::new());
    let out = run(
        retrying(&policy)
            .attempt_timeout(Duration::from_millis(15))
            .unwrap()
            .run(classify, || {
                times.borrow_mut().push(now_ms());
                let n = times.borrow().len();
                async move {
                    if n == 1 {
                        core::future::pending::<()>().await;
                    }
                    Ok::<_, Fault>(n)
                }
            }),
        1_000,
    );
    assert_eq!(out, Some(Ok(2)));
    assert_eq!(*times.borrow(), [0, 20]);

    // A caller's deadline (50 ms) cancels a retry sleeping 1 s after one attempt; the
    // dropped future leaves no timer that could call again.
    let policy = fixed_policy(10, Duration::from_secs(1)).unwrap();
    let calls = RefCell::new(0);
    let start = now_ms();
    let caller = embassy_time::with_timeout(
        embassy_time::Duration::from_millis(50),
        retry(&policy, classify, || {
            *calls.borrow_mut() += 1;
            async { Err::<(), _>(Fault::Nack) }
        }),
    );
    assert_eq!(run(caller, 1_000), Some(Err(embassy_time::TimeoutError)));
    assert_eq!((*calls.borrow(), now_ms() - start), (1, 50));
    MockDriver::get().advance(embassy_time::Duration::from_secs(10));
    assert_eq!(*calls.borrow(), 1);
}

#[test]
fn from_and_into_between_core_and_embassy_time() {
    // Instants: exact from embassy, rounded up to the tick into embassy (1 MHz here).
    let core_at: Instant = embassy_time::Instant::from_ticks(1_500).into();
    assert_eq!(core_at, Instant::from_micros(1_500));
    let tick: embassy_time::Instant = Instant::from_nanos(1_000_001).into();
    assert_eq!(tick.as_ticks(), 1_001);
    assert_eq!(
        embassy_time::Instant::from(Instant::MAX),
        embassy_time::Instant::from_ticks(u64::MAX / 1_000 + 1)
    );
    assert_eq!(Instant::from(embassy_time::Instant::MAX), Instant::MAX);
    // Spans: the core's spans are `core::time::Duration`, which embassy-time converts.
    let span: Duration = embassy_time::Duration::from_micros(2_500).into();
    assert_eq!(span, Duration::from_micros(2_500));
    let back = embassy_time::Duration::try_from(Duration::from_millis(3)).unwrap();
    assert_eq!(back.as_ticks(), 3_000);
    // A deadline computed in the core and slept on in embassy-time.
    let deadline = Instant::from(embassy_time::Instant::from_ticks(10)) + span;
    assert_eq!(
        embassy_time::Instant::from(deadline),
        embassy_time::Instant::from_ticks(2_510)
    );
}

#[test]
fn conversions_round_up_and_saturate() {
    let at = Instant::from_nanos(1_500);
    // 1 MHz ticks in the tests: 1.5 µs rounds up to 2 ticks.
    assert_eq!(EmbassyClock::to_embassy(at).as_ticks(), 2);
    assert_eq!(
        EmbassyClock::from_embassy(embassy_time::Instant::from_ticks(2)),
        Instant::from_micros(2)
    );
    assert_eq!(
        EmbassyClock::to_embassy(Instant::MAX),
        embassy_time::Instant::from_ticks(u64::MAX / 1_000 + 1)
    );
    assert_eq!(
        EmbassyClock::from_embassy(embassy_time::Instant::MAX),
        Instant::MAX
    );
}

/// A firmware-style I2C sensor: `read` takes `&mut self`, as embedded-hal drivers do.
struct Sensor {
    reads: Vec<u64>,
    nacks: usize,
}

impl Sensor {
    async fn read(&mut self) -> Result<i16, Fault> {
        self.reads.push(now_ms());
        // The bus transfer takes 2 ms.
        embassy_time::Timer::after_millis(2).await;
        if self.reads.len() <= self.nacks {
            Err(Fault::Nack)
        } else {
            Ok(215)
        }
    }
}

#[test]
fn a_mut_sensor_is_lent_to_each_attempt_and_handed_back() {
    let _turn = DRIVER.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();

    let policy = fixed_policy(4, Duration::from_millis(10)).unwrap();
    let mut sensor = Sensor {
        reads: Vec::new(),
        nacks: 2,
    };
    // Before: `retry(&policy, classify, || sensor.read())` does not compile ("captured
    // variable cannot escape `FnMut` closure body"). Now the sensor is lent per attempt.
    let (back, out) = run(
        retry_with_context(
            &policy,
            &mut sensor,
            classify,
            async |s: &mut &mut Sensor| s.read().await,
        ),
        1_000,
    )
    .unwrap();
    assert_eq!(out, Ok(215));
    // Reads at 0, then 2 + 10, then 14 + 10 ms; the sensor is usable again at once.
    assert_eq!(back.reads, [0, 12, 24]);
    back.nacks = 0;
    assert_eq!(run(sensor.read(), 10), Some(Ok(215)));
    assert_eq!(sensor.reads.len(), 4);

    // Owned, with an attempt timeout shorter than the transfer: every attempt is
    // dropped mid-transfer, and the sensor still comes back with the error.
    let owned = Sensor {
        reads: Vec::new(),
        nacks: 0,
    };
    let start = now_ms();
    let (owned, out) = run(
        retrying(&policy)
            .attempt_timeout(Duration::from_millis(1))
            .unwrap()
            .run_with_context(owned, classify, async |s: &mut Sensor| s.read().await),
        1_000,
    )
    .unwrap();
    assert_eq!(owned.reads.len(), 4);
    assert_eq!(owned.reads[0], start);
    assert!(matches!(out, Err(RetryError::TimedOut { attempts: 4, .. })));
}

/// Four tasks, joined on one executor, through one budget of 2 tokens (no deposits,
/// no floor): exactly 2 retries in all, though the policy allows 3 calls each.
#[test]
fn tasks_sharing_a_budget_make_exactly_its_retries() {
    use sturdy_core::retry::RetryBudgetConfig;
    use sturdy_embassy::SharedRetryBudget;
    let _turn = DRIVER.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();
    let budget = SharedRetryBudget::new(RetryBudgetConfig::new(0, 0, 2).unwrap());
    let policy = fixed_policy(3, Duration::from_millis(5)).unwrap();
    let calls = core::cell::Cell::new(0u32);
    let caller = || {
        retrying(&policy).budget(&budget).run(classify, || {
            calls.set(calls.get() + 1);
            async { Err::<(), _>(Fault::Nack) }
        })
    };
    let all = async {
        let (a, b) = futures_join(caller(), caller()).await;
        let (c, d) = futures_join(caller(), caller()).await;
        [a, b, c, d].map(|r| r.unwrap_err().reason())
    };
    let reasons = run(all, 100).unwrap();
    assert_eq!(calls.get(), 4 + 2);
    assert_eq!(budget.tokens(), 0);
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == GiveUpReason::BudgetExhausted)
            .count(),
        // The first pair fail together and take a token each; their second failures
        // and the second pair's first find the budget empty.
        4
    );
}

/// Polls two futures to completion together.
async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    core::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}
