//! Configs read back from bytes obey the same rules as the validating constructors:
//! a config that no constructor would build is a typed error naming the field, never a
//! breaker, schedule or ledger that misbehaves.
#![cfg(feature = "postcard")]

use core::time::Duration;

use serde::de::DeserializeOwned;
use sturdy_core::backoff::{BackoffConfig, BackoffState, Jitter};
use sturdy_core::breaker::{BreakerConfig, ConsecutiveConfig};
use sturdy_core::checkpoint::CheckpointInterval;
use sturdy_core::deadline::DeadlineConfig;
use sturdy_core::manager::LedgerConfig;
use sturdy_core::retry::{RetryBudget, RetryBudgetConfig, RetryPolicy};
use sturdy_core::{Instant, KindSet};

fn bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut buf = [0u8; 512];
    postcard::to_slice(v, &mut buf).unwrap().to_vec()
}

fn round_trip<T: serde::Serialize + DeserializeOwned + PartialEq + core::fmt::Debug>(v: T) {
    assert_eq!(postcard::from_bytes::<T>(&bytes(&v)).unwrap(), v);
}

/// Decodes `forged` as `T`, which must fail. (postcard keeps custom messages out of its
/// error type, so the field and rule are not visible here; a format with messages,
/// such as JSON, shows the `ConfigError`.)
fn refused<T: DeserializeOwned + core::fmt::Debug, F: serde::Serialize>(forged: &F) {
    if let Ok(v) = postcard::from_bytes::<T>(&bytes(forged)) {
        panic!("accepted {v:?}");
    }
}

// Mirrors of the serialized shapes (postcard encodes a struct as its fields in order;
// an enum as its variant index).
type Dur = (u64, u32);
#[derive(serde::Serialize)]
enum Growth {
    Constant,
    Linear(u64),
    Exponential(u32),
}
#[derive(serde::Serialize)]
struct Backoff(Growth, u64, u64, u8);

fn backoff_ok() -> Backoff {
    Backoff(Growth::Exponential(2_000), 10, 1_000, 1)
}

#[test]
fn valid_configs_round_trip() {
    round_trip(
        BackoffConfig::linear(
            Duration::from_millis(5),
            Duration::from_millis(5),
            Duration::from_secs(1),
        )
        .unwrap()
        .with_jitter(Jitter::Decorrelated)
        .unwrap(),
    );
    round_trip(BackoffConfig::constant(Duration::ZERO));
    round_trip(
        RetryPolicy::default()
            .with_max_elapsed(Duration::from_secs(9))
            .unwrap(),
    );
    round_trip(RetryBudgetConfig::new(100, 2, 7).unwrap());
    round_trip(
        ConsecutiveConfig::original()
            .with_half_open_permits(2)
            .unwrap(),
    );
    round_trip(BreakerConfig::default());
    round_trip(
        BreakerConfig::new()
            .with_slow_calls(Duration::from_millis(200), 0.5)
            .unwrap()
            .with_consecutive_failures(4)
            .unwrap()
            .with_half_open_permits(16)
            .unwrap(),
    );
    round_trip(LedgerConfig::default());
    round_trip(CheckpointInterval::new(3).unwrap());
}

#[test]
fn backoff_schedules_no_constructor_builds_are_refused() {
    // Decoded as it came, this one handed out 10 ns delays from a 1000 ns base and a
    // schedule that shrinks (a multiplier of 0.5).
    refused::<BackoffConfig, _>(&Backoff(Growth::Exponential(500), 1_000, 10, 0));
    refused::<BackoffConfig, _>(&Backoff(Growth::Exponential(0), 10, 1_000, 0));
    refused::<BackoffConfig, _>(&Backoff(Growth::Exponential(2_000), 0, 1_000, 0));
    refused::<BackoffConfig, _>(&Backoff(Growth::Exponential(1_000_001), 10, 1_000, 0));
    refused::<BackoffConfig, _>(&Backoff(Growth::Linear(5), 1_000, 10, 0));
    refused::<BackoffConfig, _>(&Backoff(Growth::Constant, 1_000, 10, 0));
    refused::<BackoffConfig, _>(&Backoff(Growth::Constant, 0, 0, 3)); // decorrelated, base 0
    let ok: BackoffConfig = postcard::from_bytes(&bytes(&backoff_ok())).unwrap();
    let mut s = BackoffState::new(1);
    assert_eq!(ok.cap(), Duration::from_nanos(1_000));
    assert!(s.next_delay(&ok) <= ok.cap());
}

#[test]
fn retry_policies_and_budgets_no_constructor_builds_are_refused() {
    let none: Option<Dur> = None;
    refused::<RetryPolicy, _>(&(0u32, backoff_ok(), none, 0x1ffu16));
    refused::<RetryPolicy, _>(&(3u32, backoff_ok(), Some((0u64, 0u32)), 0x1ffu16));
    refused::<RetryBudgetConfig, _>(&(1_001u32, 1u32, 1u32));
    refused::<RetryBudgetConfig, _>(&(100u32, 1u32, 0u32));
    refused::<RetryBudgetConfig, _>(&(u32::MAX, u32::MAX, 0u32));
    let p: RetryPolicy =
        postcard::from_bytes(&bytes(&(3u32, backoff_ok(), none, 0x1ffu16))).unwrap();
    assert_eq!((p.max_attempts(), p.retryable()), (3, KindSet::all()));
}

#[test]
fn a_budget_state_full_to_the_brim_does_not_overflow() {
    // A decoded budget state with more tokens than its cap: a new request fills it to
    // the cap instead of overflowing.
    let forged = ((1_000u32, 10u32, 10u32), u64::MAX, 0u64, 0u64);
    let mut b: RetryBudget = postcard::from_bytes(&bytes(&forged)).unwrap();
    b.record_request(Instant::ZERO);
    assert_eq!(b.tokens(), 10);
}

#[test]
fn breaker_configs_no_constructor_builds_are_refused() {
    // (open_ns, permit_timeout_ns, failure_threshold, success_threshold, counted, permits)
    let good = (1u64, 1u64, 1u32, 1u16, 0x1ffu16, 1u8);
    assert!(postcard::from_bytes::<ConsecutiveConfig>(&bytes(&good)).is_ok());
    refused::<ConsecutiveConfig, _>(&(0u64, 1u64, 1u32, 1u16, 0x1ffu16, 1u8));
    refused::<ConsecutiveConfig, _>(&(1u64, 0u64, 1u32, 1u16, 0x1ffu16, 1u8));
    refused::<ConsecutiveConfig, _>(&(1u64, 1u64, 0u32, 1u16, 0x1ffu16, 1u8));
    refused::<ConsecutiveConfig, _>(&(1u64, 1u64, 1u32, 0u16, 0x1ffu16, 1u8));
    refused::<ConsecutiveConfig, _>(&(1u64, 1u64, 1u32, 1u16, 0x1ffu16, 0u8));
    refused::<ConsecutiveConfig, _>(&(1u64, 1u64, 1u32, 1u16, 0x1ffu16, 255u8));

    // (open, slow_call_ns, permit_timeout_ns, failure_rate_ppm, slow_rate_ppm,
    //  minimum_calls, consecutive_failures, success_threshold, counted, permits)
    let brk =
        |open: Backoff, ppm: u32, slow: u32, min: u32, succ: u16, permits: u8, timeout: u64| {
            (
                open,
                u64::MAX,
                timeout,
                ppm,
                slow,
                min,
                0u32,
                succ,
                0x1ffu16,
                permits,
            )
        };
    let c: BreakerConfig =
        postcard::from_bytes(&bytes(&brk(backoff_ok(), 500_000, 0, 10, 2, 1, 1))).unwrap();
    assert_eq!((c.failure_rate_threshold(), c.slow_calls()), (0.5, None));
    refused::<BreakerConfig, _>(&brk(backoff_ok(), 0, 0, 10, 2, 1, 1));
    refused::<BreakerConfig, _>(&brk(backoff_ok(), 1_000_001, 0, 10, 2, 1, 1));
    refused::<BreakerConfig, _>(&brk(backoff_ok(), 500_000, u32::MAX, 10, 2, 1, 1));
    refused::<BreakerConfig, _>(&brk(backoff_ok(), 500_000, 0, 0, 2, 1, 1));
    refused::<BreakerConfig, _>(&brk(backoff_ok(), 500_000, 0, 10, 0, 1, 1));
    refused::<BreakerConfig, _>(&brk(backoff_ok(), 500_000, 0, 10, 2, 17, 1));
    // A stored permit timeout of 0 means "the first open duration" (the default).
    let c: BreakerConfig =
        postcard::from_bytes(&bytes(&brk(backoff_ok(), 500_000, 0, 10, 2, 1, 0))).unwrap();
    assert_eq!(c.permit_timeout(), c.open_backoff().raw_delay(1));
    refused::<BreakerConfig, _>(&brk(
        Backoff(Growth::Constant, 0, 0, 0),
        500_000,
        0,
        10,
        2,
        1,
        1,
    ));
}

#[test]
fn ledger_configs_and_intervals_no_constructor_builds_are_refused() {
    refused::<CheckpointInterval, _>(&0u64);
    refused::<DeadlineConfig, _>(&(Duration::ZERO, Duration::from_secs(1)));
    refused::<DeadlineConfig, _>(&(Duration::from_secs(1), Duration::ZERO));
    round_trip(DeadlineConfig::disabled());
    round_trip(DeadlineConfig::new(Duration::from_secs(3), Duration::from_secs(9)).unwrap());
    let d = LedgerConfig::default();
    let ok: LedgerConfig = postcard::from_bytes(&bytes(&d)).unwrap();
    assert_eq!(ok, d);
    let fields = |lease: Duration| {
        (
            *d.retry(),
            *d.deadline(),
            lease,
            *d.breaker(),
            d.seed(),
            d.crash_limit(),
            d.crashes_open_breaker(),
        )
    };
    assert_eq!(bytes(&fields(d.lease())), bytes(&d));
    // The crash rules travel too (every value is valid).
    let c = d.with_crash_limit(0).with_crashes_open_breaker(false);
    let back: LedgerConfig = postcard::from_bytes(&bytes(&c)).unwrap();
    assert_eq!(
        (back.crash_limit(), back.crashes_open_breaker()),
        (0, false)
    );
    assert_eq!(back, c);
    refused::<LedgerConfig, _>(&fields(Duration::ZERO));
}
