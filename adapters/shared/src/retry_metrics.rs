//! [`RetryMetrics`]: running totals of what retry loops decided, shared by every loop
//! and layer that reports into it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::retry::GiveUpReason;
use sturdy_core::retry_driver::{RetryEvent, RetryObserver};

/// Running totals of retry decisions: `Clone + Send + Sync`, every clone adds to the
/// same atomics; they never reset. A [`RetryObserver`] (pass a clone to
/// `retrying(..).observer(..)`, or to a layer's `metrics(..)`), or fed by hand with
/// [`record`](Self::record).
///
/// ```
/// use std::time::Duration;
/// use sturdy_core::FailureKind;
/// use sturdy_core::retry_driver::RetryEvent;
/// use sturdy_shared::RetryMetrics;
///
/// let m = RetryMetrics::new("inventory");
/// m.record(&RetryEvent::Succeeded { attempt: 1 });
/// let t = m.totals();
/// assert_eq!((t.successes, t.retries), (1, 0));
/// ```
#[derive(Clone)]
pub struct RetryMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    name: Box<str>,
    successes: AtomicU64,
    retries: AtomicU64,
    retry_delay_ns: AtomicU64,
    give_ups: [AtomicU64; GIVE_UP_REASONS.len()],
}

/// The give-up reasons, as the label values exporters use (snake case).
pub const GIVE_UP_REASONS: [&str; 7] = [
    "not_retryable",
    "attempts_exhausted",
    "elapsed_exceeded",
    "budget_exhausted",
    "breaker_open",
    "crash_limit",
    "other",
];

/// The label value of a give-up reason: one of [`GIVE_UP_REASONS`].
pub fn give_up_label(reason: &GiveUpReason) -> &'static str {
    GIVE_UP_REASONS[give_up_index(reason)]
}

fn give_up_index(reason: &GiveUpReason) -> usize {
    match reason {
        GiveUpReason::NotRetryable(_) => 0,
        GiveUpReason::AttemptsExhausted { .. } => 1,
        GiveUpReason::ElapsedExceeded { .. } => 2,
        GiveUpReason::BudgetExhausted => 3,
        GiveUpReason::BreakerOpen { .. } => 4,
        GiveUpReason::CrashLimit { .. } => 5,
        _ => 6,
    }
}

/// A snapshot of [`RetryMetrics`]' totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryTotals {
    /// Retried calls that ended in a success (at any attempt).
    pub successes: u64,
    /// Retries scheduled (each a sleep, then another attempt).
    pub retries: u64,
    /// The sum of the scheduled retry delays.
    pub retry_delay: Duration,
    /// Calls given up, by reason, in the order of [`GIVE_UP_REASONS`].
    pub give_ups: [u64; GIVE_UP_REASONS.len()],
}

impl RetryTotals {
    /// Give-ups of every reason.
    pub fn give_ups_total(&self) -> u64 {
        self.give_ups.iter().sum()
    }
}

impl RetryMetrics {
    /// Empty totals, named `name` (the exporters' `name` label).
    pub fn new(name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                successes: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                retry_delay_ns: AtomicU64::new(0),
                give_ups: Default::default(),
            }),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds one event.
    pub fn record(&self, event: &RetryEvent) {
        let i = &self.inner;
        match event {
            RetryEvent::Retry { delay, .. } => {
                i.retries.fetch_add(1, Ordering::Relaxed);
                let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
                i.retry_delay_ns.fetch_add(ns, Ordering::Relaxed);
            }
            RetryEvent::GiveUp { reason, .. } => {
                i.give_ups[give_up_index(reason)].fetch_add(1, Ordering::Relaxed);
            }
            RetryEvent::Succeeded { .. } => {
                i.successes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// The totals now.
    pub fn totals(&self) -> RetryTotals {
        let i = &self.inner;
        RetryTotals {
            successes: i.successes.load(Ordering::Relaxed),
            retries: i.retries.load(Ordering::Relaxed),
            retry_delay: Duration::from_nanos(i.retry_delay_ns.load(Ordering::Relaxed)),
            give_ups: std::array::from_fn(|k| i.give_ups[k].load(Ordering::Relaxed)),
        }
    }
}

impl fmt::Debug for RetryMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryMetrics")
            .field("name", &self.name())
            .field("totals", &self.totals())
            .finish()
    }
}

impl RetryObserver for RetryMetrics {
    fn on_retry(&mut self, attempt: u32, kind: FailureKind, delay: Duration) {
        self.record(&RetryEvent::Retry {
            attempt,
            kind,
            delay,
        });
    }
    fn on_give_up(&mut self, attempt: u32, kind: FailureKind, reason: GiveUpReason) {
        self.record(&RetryEvent::GiveUp {
            attempt,
            kind,
            reason,
        });
    }
    fn on_success(&mut self, attempt: u32) {
        self.record(&RetryEvent::Succeeded { attempt });
    }
}
