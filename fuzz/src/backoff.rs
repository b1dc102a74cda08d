//! Backoff: arbitrary configs (valid or not) and arbitrary attempt numbers.
//!
//! Invariants: building a config never panics, and fails exactly when a rule is broken,
//! naming the field; for a valid config, the un-jittered delay stays within
//! `[min(base, cap), cap]` and never decreases with the attempt number; every jittered
//! delay stays within its jitter's range and under the cap; the same seed gives the same
//! delays.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use sturdy_core::backoff::{BackoffConfig, BackoffState, Jitter};

/// Which schedule to build.
#[derive(Arbitrary, Debug)]
enum Shape {
    Constant {
        delay_ns: u64,
    },
    Linear {
        base_ns: u64,
        step_ns: u64,
        cap_ns: u64,
    },
    Exponential {
        base_ns: u64,
        multiplier_permille: u32,
        cap_ns: u64,
    },
}

/// One step on the schedule.
#[derive(Arbitrary, Debug)]
enum Op {
    /// `next_delay` once.
    Next,
    /// `next_delay` many times (up to 255).
    NextMany(u8),
    /// Back to retry 0.
    Reset,
    /// `raw_delay` at an arbitrary attempt number, compared with the next one.
    Raw(u32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    shape: Shape,
    jitter: u8,
    seed: u64,
    ops: Vec<Op>,
}

fn jitter_of(b: u8) -> Jitter {
    match b % 4 {
        0 => Jitter::None,
        1 => Jitter::Full,
        2 => Jitter::Equal,
        _ => Jitter::Decorrelated,
    }
}

/// Builds the config, checking that it is refused exactly when a rule is broken.
fn build(shape: &Shape, jitter: Jitter) -> Option<BackoffConfig> {
    let ns = Duration::from_nanos;
    let (built, base_ns, expected_err) = match *shape {
        Shape::Constant { delay_ns } => (Ok(BackoffConfig::constant(ns(delay_ns))), delay_ns, None),
        Shape::Linear {
            base_ns,
            step_ns,
            cap_ns,
        } => (
            BackoffConfig::linear(ns(base_ns), ns(step_ns), ns(cap_ns)),
            base_ns,
            (cap_ns < base_ns).then_some("cap"),
        ),
        Shape::Exponential {
            base_ns,
            multiplier_permille,
            cap_ns,
        } => {
            let err = if base_ns == 0 {
                Some("base")
            } else if !(1_000..=1_000_000).contains(&multiplier_permille) {
                Some("multiplier_permille")
            } else if cap_ns < base_ns {
                Some("cap")
            } else {
                None
            };
            (
                BackoffConfig::exponential(ns(base_ns), multiplier_permille, ns(cap_ns)),
                base_ns,
                err,
            )
        }
    };
    let cfg = match (built, expected_err) {
        (Ok(c), None) => c,
        (Err(e), Some(field)) => {
            assert_eq!(e.field(), field, "{shape:?}: wrong field in {e}");
            assert!(!e.rule().is_empty());
            return None;
        }
        (r, want) => panic!("{shape:?}: got {r:?}, expected error on {want:?}"),
    };
    match cfg.with_jitter(jitter) {
        Ok(c) => {
            assert!(!(jitter == Jitter::Decorrelated && base_ns == 0));
            Some(c)
        }
        Err(e) => {
            assert!(jitter == Jitter::Decorrelated && base_ns == 0, "{e}");
            assert_eq!(e.field(), "base");
            None
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("delays fit in u64 ns")
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    crate::debug(&input);
    let jitter = jitter_of(input.jitter);
    let Some(cfg) = build(&input.shape, jitter) else {
        return;
    };
    let (base, cap) = (nanos(cfg.base()), nanos(cfg.cap()));
    let mut state = BackoffState::new(input.seed);
    let mut twin = BackoffState::new(input.seed);
    let mut prev = base;
    let next = |state: &mut BackoffState, twin: &mut BackoffState, prev: &mut u64| {
        let d = state.next_delay_ns(&cfg);
        assert_eq!(d, twin.next_delay_ns(&cfg), "same seed, different delay");
        let raw = nanos(cfg.raw_delay(state.retries()));
        assert!(d <= cap, "{d} above cap {cap}");
        match jitter {
            Jitter::None => assert_eq!(d, raw),
            Jitter::Full => assert!(d <= raw, "{d} above {raw}"),
            Jitter::Equal => assert!(
                d >= raw - raw / 2 && d <= raw,
                "{d} outside equal range of {raw}"
            ),
            _ => {
                let hi = prev.saturating_mul(3).min(cap).max(base);
                assert!(d >= base.min(cap) && d <= hi, "{d} outside [{base}, {hi}]");
            }
        }
        *prev = d;
    };
    for op in input.ops {
        match op {
            Op::Next => next(&mut state, &mut twin, &mut prev),
            Op::NextMany(k) => {
                for _ in 0..k {
                    next(&mut state, &mut twin, &mut prev);
                }
            }
            Op::Reset => {
                state.reset();
                twin.reset();
                prev = base;
                assert_eq!(state.retries(), 0);
            }
            Op::Raw(attempt) => {
                let raw = nanos(cfg.raw_delay(attempt));
                assert!(
                    raw <= cap && raw >= base.min(cap),
                    "raw {raw} outside [{base}, {cap}]"
                );
                let later = nanos(cfg.raw_delay(attempt.saturating_add(1)));
                assert!(later >= raw, "raw delay decreased: {raw} then {later}");
            }
        }
    }
}
