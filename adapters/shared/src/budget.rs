//! [`RetryBudget`]: one retry budget shared by every task and thread that retries
//! calls to the same dependency, lock-free.
//!
//! A retry budget exists to stop a fleet of callers from turning an outage into a retry
//! storm: retries may be at most a ratio of recent calls plus a small floor per second
//! (after Finagle's `RetryBudget` and gRPC's retry throttling; the rules are
//! [`RetryBudgetConfig`]'s). It only works shared, so it is a handle: clone it into
//! every caller, retry driver and tower layer; all clones draw from one bucket.
//!
//! ```
//! use sturdy_core::retry::RetryBudgetConfig;
//! use sturdy_core::retry_driver::RetryGate;
//! use sturdy_shared::{RetryBudget, SharedManualClock};
//!
//! // No deposits, no floor, 2 tokens: two retries in all, whoever asks.
//! let budget = RetryBudget::with_clock(RetryBudgetConfig::new(0, 0, 2)?, SharedManualClock::default());
//! let other = budget.clone();
//! assert!(budget.try_retry());
//! assert!(other.try_retry());
//! assert!(!budget.try_retry());
//! assert_eq!((budget.retries_allowed(), budget.retries_refused()), (2, 1));
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sturdy_core::retry::RetryBudgetConfig;
use sturdy_core::retry_driver::RetryGate;
use sturdy_core::{Clock, Instant};

/// Thousandths of a token in one token.
const MILLI: u64 = 1_000;

/// A shared retry budget: `Clone + Send + Sync`, every clone draws from one token
/// bucket of thousandths of a token, kept in atomics (no lock; a withdrawal is one
/// compare-and-swap loop).
///
/// - every call (a first attempt) deposits `ratio_permille` thousandths of a token;
/// - every retry takes one token, or gives up when there is none
///   ([`GiveUpReason::BudgetExhausted`](sturdy_core::retry::GiveUpReason::BudgetExhausted));
/// - `min_retries_per_sec` tokens trickle in each second by the budget's own clock `C`
///   (so callers whose retry clocks have other origins share it safely);
/// - the bucket starts full and holds at most `max_tokens`.
///
/// It is a [`RetryGate`]: pass it (or a reference) to the core's
/// [`Retry::budget`](sturdy_core::retry_driver::Retry::budget), or to the adapters'
/// retry functions and layers.
///
/// Running totals, never reset: [`calls`](Self::calls),
/// [`retries_allowed`](Self::retries_allowed), [`retries_refused`](Self::retries_refused).
pub struct RetryBudget<C> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    config: RetryBudgetConfig,
    clock: C,
    milli_tokens: AtomicU64,
    /// Nanoseconds of `clock` up to which the floor has been paid in.
    last_refill: AtomicU64,
    calls: AtomicU64,
    allowed: AtomicU64,
    refused: AtomicU64,
}

impl<C> Clone for RetryBudget<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock> fmt::Debug for RetryBudget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.inner.config)
            .field("tokens", &self.tokens())
            .field("retries_allowed", &self.retries_allowed())
            .field("retries_refused", &self.retries_refused())
            .finish()
    }
}

impl<C: Clock + Default> RetryBudget<C> {
    /// A full budget under `config`, on a new clock `C` (the adapters' clocks: the
    /// budget's own origin is its first reading).
    pub fn new(config: RetryBudgetConfig) -> Self {
        Self::with_clock(config, C::default())
    }
}

impl<C: Clock> RetryBudget<C> {
    /// A full budget under `config` whose floor trickles in by `clock`.
    pub fn with_clock(config: RetryBudgetConfig, clock: C) -> Self {
        let start = clock.now().as_nanos();
        Self {
            inner: Arc::new(Inner {
                milli_tokens: AtomicU64::new(u64::from(config.max_tokens()) * MILLI),
                last_refill: AtomicU64::new(start),
                config,
                clock,
                calls: AtomicU64::new(0),
                allowed: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    fn cap(&self) -> u64 {
        u64::from(self.inner.config.max_tokens()) * MILLI
    }

    /// Adds `add` thousandths of a token, never above the cap.
    fn deposit(&self, add: u64) {
        let cap = self.cap();
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        let _ = self
            .inner
            .milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(add).min(cap))
            });
    }

    /// Pays in the floor for the time since the last payment. The thread that moves
    /// `last_refill` forward pays for that span; a racing one pays nothing for it.
    fn refill(&self, now: Instant) {
        let per_sec = u128::from(self.inner.config.min_retries_per_sec());
        if per_sec == 0 {
            return;
        }
        let now = now.as_nanos();
        let last = self.inner.last_refill.load(Ordering::Acquire);
        if now <= last {
            return;
        }
        // `per_sec` tokens per second = `per_sec` thousandths per millisecond.
        let add = u128::from(now - last) * per_sec / 1_000_000;
        if add == 0 {
            // Keep `last` so that short spans add up instead of rounding to nothing.
            return;
        }
        if self
            .inner
            .last_refill
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.deposit(u64::try_from(add).unwrap_or(u64::MAX));
        }
    }

    /// Whole tokens available now (the floor paid in first).
    pub fn tokens(&self) -> u64 {
        self.refill(self.inner.clock.now());
        self.inner.milli_tokens.load(Ordering::Acquire) / MILLI
    }

    /// The rules this budget follows.
    pub fn config(&self) -> RetryBudgetConfig {
        self.inner.config
    }

    /// Calls (first attempts) counted so far, by every clone.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Retries the budget let through so far, by every clone.
    pub fn retries_allowed(&self) -> u64 {
        self.inner.allowed.load(Ordering::Relaxed)
    }

    /// Retries refused for lack of a token so far, by every clone.
    pub fn retries_refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

impl<C: Clock> RetryGate for RetryBudget<C> {
    fn on_call(&self) {
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let ratio = u64::from(self.inner.config.ratio_permille());
        if ratio > 0 {
            self.deposit(ratio);
        }
    }

    fn try_retry(&self) -> bool {
        self.refill(self.inner.clock.now());
        let taken = self
            .inner
            .milli_tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                t.checked_sub(MILLI)
            })
            .is_ok();
        let counter = if taken {
            &self.inner.allowed
        } else {
            &self.inner.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedManualClock;
    use std::time::Duration;

    fn budget(
        ratio: u32,
        floor: u32,
        max: u32,
    ) -> (RetryBudget<SharedManualClock>, SharedManualClock) {
        let clock = SharedManualClock::default();
        let b = RetryBudget::with_clock(
            RetryBudgetConfig::new(ratio, floor, max).unwrap(),
            clock.clone(),
        );
        (b, clock)
    }

    #[test]
    fn deposits_ratio_per_call_and_caps() {
        let (b, _) = budget(200, 0, 2);
        assert!(b.try_retry() && b.try_retry());
        assert!(!b.try_retry());
        // Five calls at 20 % earn one retry.
        for _ in 0..5 {
            b.on_call();
        }
        assert_eq!(b.tokens(), 1);
        assert!(b.try_retry());
        assert!(!b.try_retry());
        // Never above the cap.
        for _ in 0..100 {
            b.on_call();
        }
        assert_eq!(b.tokens(), 2);
        assert_eq!(
            (b.calls(), b.retries_allowed(), b.retries_refused()),
            (105, 3, 2)
        );
    }

    #[test]
    fn the_floor_trickles_in_by_the_budgets_clock() {
        let (b, clock) = budget(0, 10, 100);
        for _ in 0..100 {
            assert!(b.try_retry());
        }
        assert!(!b.try_retry());
        clock.advance(Duration::from_millis(99));
        assert!(!b.try_retry());
        // Short spans add up: 99 ms + 1 ms pays one token (10 per second).
        clock.advance(Duration::from_millis(1));
        assert!(b.try_retry());
        assert!(!b.try_retry());
        clock.advance(Duration::from_secs(3600));
        assert_eq!(b.tokens(), 100);
    }

    #[test]
    fn threads_draw_exactly_the_tokens_there_are() {
        let (b, _) = budget(0, 0, 1_000);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..500).filter(|_| b.try_retry()).count())
            })
            .collect();
        let taken: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(taken, 1_000);
        assert_eq!((b.retries_allowed(), b.retries_refused()), (1_000, 3_000));
    }

    #[test]
    fn is_send_sync_clone() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<RetryBudget<SharedManualClock>>();
    }
}
