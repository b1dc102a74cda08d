//! The shared breaker on embassy-time's mock driver: exact states, refusal times and
//! events; a guard dropped unrecorded (a cancelled task) releases its probe slot.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::sync::Mutex;
use std::time::Duration;

use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex};
use embassy_time::MockDriver;
use sturdy_core::breaker::{
    BreakerConfig, BreakerEvent, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig, NoWindow,
    Outcome, State,
};
use sturdy_core::{FailureKind, Instant, unwrap_config};
use sturdy_embassy::SharedBreaker;

/// The mock driver is one global: tests take turns.
static DRIVER: Mutex<()> = Mutex::new(());

const NET: FailureKind = FailureKind::Network;

/// 2 failures open it for 100 ms; 1 probe; 1 successful probe closes it.
const CONFIG: ConsecutiveConfig =
    unwrap_config(ConsecutiveConfig::new(2, Duration::from_millis(100), 1));

static SHARED: SharedBreaker<CriticalSectionRawMutex, ConsecutiveBreaker> =
    SharedBreaker::new(ConsecutiveBreaker::new(CONFIG));

fn advance_ms(ms: u64) {
    MockDriver::get().advance(embassy_time::Duration::from_millis(ms));
}

fn ms(v: u64) -> Instant {
    Instant::from_millis(v)
}

/// Polls `f` once.
fn poll_once<F: Future>(f: core::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn static_breaker_opens_half_opens_and_releases_dropped_probes() {
    let _turn = DRIVER.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();

    // Two tasks fail in turn at 10 ms: open until 110 ms.
    advance_ms(10);
    let a = SHARED.try_acquire().unwrap();
    let b = SHARED.try_acquire().unwrap();
    assert!(!a.is_probe());
    a.failure(NET);
    b.failure(NET);
    assert_eq!(SHARED.state(), State::Open { until: ms(110) });
    let r = SHARED.try_acquire().unwrap_err();
    assert_eq!(r.retry_at, ms(110));
    assert_eq!(SHARED.poll_timeout(), Some(ms(110)));

    // At 110 ms time alone makes it half-open; one probe, the next caller is refused.
    advance_ms(100);
    let probe = SHARED.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(SHARED.state(), State::HalfOpen);
    assert!(SHARED.try_acquire().is_err());
    assert_eq!(SHARED.metrics().probes_in_flight, 1);

    // The probing task is cancelled: its guard is dropped unrecorded and frees the slot
    // at once (no wait for the permit timeout), counting neither way.
    drop(probe);
    assert_eq!(SHARED.metrics().probes_in_flight, 0);
    assert_eq!(SHARED.state(), State::HalfOpen);

    // A probe inside a future that is dropped mid-call releases too.
    {
        let call = SHARED.call_with(|_: &()| Outcome::Success, core::future::pending::<()>());
        let mut call = pin!(call);
        assert!(poll_once(call.as_mut()).is_pending());
        assert_eq!(SHARED.metrics().probes_in_flight, 1);
    }
    assert_eq!(SHARED.metrics().probes_in_flight, 0);

    // A successful probe closes it.
    advance_ms(5);
    let done = pin!(SHARED.call_with(
        |v: &u8| if *v == 7 {
            Outcome::Success
        } else {
            Outcome::Failure(NET)
        },
        async { 7u8 }
    ));
    assert_eq!(poll_once(done), Poll::Ready(Ok(7)));
    assert_eq!(SHARED.state(), State::Closed);

    let events: Vec<BreakerEvent> = core::iter::from_fn(|| SHARED.poll_event()).collect();
    assert_eq!(
        events,
        [
            BreakerEvent::Opened {
                at: ms(10),
                until: ms(110)
            },
            BreakerEvent::HalfOpened { at: ms(110) },
            BreakerEvent::Closed { at: ms(115) },
        ]
    );
    assert_eq!(SHARED.metrics().events_dropped, 0);
}

#[test]
fn windowed_breaker_behind_a_noop_mutex() {
    let _turn = DRIVER.lock().unwrap_or_else(|p| p.into_inner());
    MockDriver::get().reset();

    let cfg = unwrap_config(
        unwrap_config(BreakerConfig::new().with_consecutive_failures(1))
            .with_open_duration(Duration::from_millis(50)),
    );
    let local: SharedBreaker<NoopRawMutex, CircuitBreaker<NoWindow, 4>> =
        SharedBreaker::new(CircuitBreaker::new(cfg, NoWindow, 0).unwrap());
    advance_ms(1);
    local.try_acquire().unwrap().failure(NET);
    assert_eq!(local.state(), State::Open { until: ms(51) });
    // `inspect` reaches what the handle does not mirror.
    local.inspect(|b, now| b.reset(now));
    assert_eq!(local.state(), State::Closed);
    assert_eq!(
        core::iter::from_fn(|| local.poll_event()).collect::<Vec<_>>(),
        [
            BreakerEvent::Opened {
                at: ms(1),
                until: ms(51)
            },
            BreakerEvent::Closed { at: ms(1) }
        ]
    );
}
