//! Retry decisions: an arbitrary policy (attempts, schedule, elapsed limit, retryable
//! kinds, budget) and an arbitrary sequence of failures, successes, requests and clock
//! moves (backwards too).
//!
//! Invariants: never more calls than `max_attempts`; every delay under the schedule's
//! cap and no larger than needed to respect a server hint; with `max_elapsed`, no retry
//! is scheduled to start after it; a kind outside the retryable set gives up at once;
//! once finished, every later failure answers `Finished`; the budget never holds more
//! than its bucket.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use sturdy_core::backoff::BackoffConfig;
use sturdy_core::retry::{
    Decision, GiveUpReason, RetryBudget, RetryBudgetConfig, RetryPolicy, RetryState,
};
use sturdy_core::{FailureKind, Instant, KindSet};

#[derive(Arbitrary, Debug)]
enum Op {
    /// A failed attempt of `kind`, `hint_ms` from a server, using the budget or not.
    Failure {
        kind: u8,
        hint_ms: Option<u16>,
        use_budget: bool,
    },
    /// The attempt succeeded.
    Success,
    /// A new request elsewhere deposits into the shared budget.
    Request,
    /// The clock moves by this many ms (negative: a backwards jump).
    Clock(i32),
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_attempts: u32,
    base_ms: u16,
    multiplier_permille: u16,
    cap_ms: u32,
    max_elapsed_ms: Option<u32>,
    retryable_bits: u16,
    budget: Option<(u16, u16, u16)>,
    seed: u64,
    ops: Vec<Op>,
}

fn kind_of(b: u8) -> FailureKind {
    FailureKind::ALL[usize::from(b) % FailureKind::ALL.len()]
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    crate::debug(&input);
    let ms = |v: u64| Duration::from_millis(v);
    let Ok(backoff) = BackoffConfig::exponential(
        ms(u64::from(input.base_ms)),
        u32::from(input.multiplier_permille).max(1_000),
        ms(u64::from(input.cap_ms)),
    ) else {
        return;
    };
    let policy = match RetryPolicy::new(input.max_attempts, backoff) {
        Ok(p) => p,
        Err(e) => {
            assert_eq!((input.max_attempts, e.field()), (0, "max_attempts"));
            return;
        }
    };
    let policy = match input
        .max_elapsed_ms
        .map(|m| policy.with_max_elapsed(ms(m.into())))
    {
        None => policy,
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            assert_eq!((input.max_elapsed_ms, e.field()), (Some(0), "max_elapsed"));
            return;
        }
    };
    let mut retryable = KindSet::EMPTY;
    for (i, k) in FailureKind::ALL.iter().enumerate() {
        if input.retryable_bits & (1 << i) != 0 {
            retryable = retryable.with(*k);
        }
    }
    let policy = policy.with_retryable(retryable);
    let mut budget = match input.budget {
        None => None,
        Some((ratio, floor, max)) => {
            match RetryBudgetConfig::new(ratio.into(), floor.into(), max.into()) {
                Ok(c) => Some((RetryBudget::new(c, Instant::ZERO), u64::from(max))),
                Err(e) => {
                    assert!(ratio > 1_000 || max == 0, "{e}");
                    return;
                }
            }
        }
    };

    let mut now = Instant::from_secs(1);
    let mut state = RetryState::new(now, input.seed);
    let started = now;
    let mut finished = false;
    for op in input.ops {
        match op {
            Op::Failure {
                kind,
                hint_ms,
                use_budget,
            } => {
                let kind = kind_of(kind);
                let attempts_before = state.attempts();
                let hint = hint_ms.map(|h| ms(h.into()));
                let b = if use_budget {
                    budget.as_mut().map(|(b, _)| b)
                } else {
                    None
                };
                let decision = state.on_failure_with(&policy, kind, now, hint, b);
                if finished {
                    assert_eq!(decision, Decision::GiveUp(GiveUpReason::Finished));
                    continue;
                }
                match decision {
                    Decision::RetryAfter(d) => {
                        assert!(retryable.contains(kind), "{kind:?} retried");
                        assert!(d <= policy.backoff().cap(), "{d:?} above the cap");
                        assert_eq!(state.attempts(), attempts_before + 1);
                        assert!(state.attempts() <= policy.max_attempts());
                        if let Some(limit) = policy.max_elapsed() {
                            let next_start = (now + d) - started;
                            assert!(next_start <= limit, "{next_start:?} past {limit:?}");
                        }
                        now = now + d;
                    }
                    Decision::GiveUp(reason) => {
                        finished = true;
                        assert!(state.is_finished());
                        match reason {
                            GiveUpReason::NotRetryable(k) => {
                                assert_eq!(k, kind);
                                assert!(!retryable.contains(kind));
                            }
                            GiveUpReason::AttemptsExhausted { attempts } => {
                                assert_eq!(attempts, policy.max_attempts());
                            }
                            GiveUpReason::ElapsedExceeded { .. } => {
                                assert!(policy.max_elapsed().is_some());
                            }
                            GiveUpReason::BudgetExhausted => assert!(use_budget),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
            }
            Op::Success => {
                state.on_success(now);
                finished = true;
                assert!(state.is_finished());
            }
            Op::Request => {
                if let Some((b, _)) = budget.as_mut() {
                    b.record_request(now);
                }
            }
            Op::Clock(delta) => {
                let d = ms(u64::from(delta.unsigned_abs()));
                now = if delta >= 0 { now + d } else { now - d };
            }
        }
        if let Some((b, max)) = &budget {
            assert!(b.tokens() <= *max, "{} tokens above {max}", b.tokens());
        }
        assert!(state.attempts() >= 1 && state.attempts() <= policy.max_attempts());
    }
}
