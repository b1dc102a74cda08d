//! Sliding windows of call outcomes, judged by [`CircuitBreaker`](super::CircuitBreaker):
//! a count-based ring of the last `N` calls ([`CountWindow`]), time-based buckets
//! ([`TimeWindow`]), or none ([`NoWindow`], for a consecutive-failure rule alone).

use core::time::Duration;

use crate::error::ConfigError;
use crate::time::{Instant, duration_to_nanos};

/// What a window holds at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowTotals {
    /// Counted outcomes in the window.
    pub calls: u32,
    /// Failures among them.
    pub failures: u32,
    /// Slow calls among them.
    pub slow_calls: u32,
}

/// A sliding window of counted outcomes. The breaker hands it monotonic instants (after
/// its watermark), so `now` never decreases between calls.
pub trait SlidingWindow {
    /// Adds one counted outcome observed at `now`.
    fn record(&mut self, now: Instant, failed: bool, slow: bool);
    /// The outcomes the window holds at `now`. A getter: changes nothing.
    fn totals(&self, now: Instant) -> WindowTotals;
    /// Forgets every outcome.
    fn clear(&mut self);
    /// The most calls the window can ever hold, if bounded (a count window's size); the
    /// breaker refuses a `minimum_calls` above it, which could never be reached.
    fn max_calls(&self) -> Option<u32> {
        None
    }
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

/// The last `N` counted outcomes, as a ring: when a new outcome comes and the ring is
/// full, the oldest leaves (resilience4j's `COUNT_BASED` window). Totals are kept
/// incrementally: recording and reading are O(1).
///
/// Shape: `N` bytes plus 20, rounded up to 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountWindow<const N: usize> {
    ring: [u8; N],
    head: u32,
    len: u32,
    totals: WindowTotals,
}

impl<const N: usize> Default for CountWindow<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CountWindow<N> {
    /// An empty window of the last `N` calls. `N` must be in `1..=u32::MAX` (checked at
    /// compile time).
    pub const fn new() -> Self {
        const {
            assert!(
                N > 0 && N as u64 <= u32::MAX as u64,
                "CountWindow size must be in 1..=u32::MAX"
            );
        }
        Self {
            ring: [0; N],
            head: 0,
            len: 0,
            totals: WindowTotals {
                calls: 0,
                failures: 0,
                slow_calls: 0,
            },
        }
    }
}

impl<const N: usize> SlidingWindow for CountWindow<N> {
    #[inline]
    fn record(&mut self, _now: Instant, failed: bool, slow: bool) {
        let head = self.head as usize;
        // The outcome leaving the ring (none while it fills).
        let old = if self.len as usize == N {
            self.ring[head]
        } else {
            self.len += 1;
            self.totals.calls += 1;
            0
        };
        self.ring[head] = (failed as u8) | ((slow as u8) << 1);
        // Each count written once: separate `-=` and `+=` on the pair of counts
        // compiled to stores of different widths, stalling the next call's loads.
        self.totals.failures = self.totals.failures - (old & FAILED) as u32 + failed as u32;
        self.totals.slow_calls = self.totals.slow_calls - ((old & SLOW) >> 1) as u32 + slow as u32;
        self.head = if head + 1 == N { 0 } else { self.head + 1 };
    }

    #[inline]
    fn totals(&self, _now: Instant) -> WindowTotals {
        self.totals
    }

    fn clear(&mut self) {
        *self = Self::new();
    }

    fn max_calls(&self) -> Option<u32> {
        Some(N as u32)
    }
}

/// One time bucket: its number (`now / width`) and its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    number: u64,
    calls: u32,
    failures: u32,
    slow_calls: u32,
}

const EMPTY: Bucket = Bucket {
    number: u64::MAX,
    calls: 0,
    failures: 0,
    slow_calls: 0,
};

/// Outcomes of the last `B` time buckets of a fixed width (resilience4j's `TIME_BASED`
/// window, Polly's sampling duration). Buckets are aligned on multiples of the width
/// since the clock's origin; the window holds the current bucket and the `B - 1`
/// before it, so it spans between `(B - 1) * width` and `B * width` of the most recent
/// time. Old buckets are reused in place: no allocation, O(1) record, O(B) totals.
///
/// Shape: `24 * B + 8` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow<const B: usize> {
    width_ns: u64,
    buckets: [Bucket; B],
}

impl<const B: usize> TimeWindow<B> {
    /// A window of `B` buckets of `width` each (so spanning `B * width`).
    ///
    /// # Errors
    /// `width` zero. `B` must be at least 1 (checked at compile time).
    pub const fn new(width: Duration) -> Result<Self, ConfigError> {
        const {
            assert!(B > 0, "TimeWindow needs at least one bucket");
        }
        let width_ns = duration_to_nanos(width);
        if width_ns == 0 {
            return Err(ConfigError::new("bucket_width", "must be > 0"));
        }
        Ok(Self {
            width_ns,
            buckets: [EMPTY; B],
        })
    }

    /// The width of one bucket.
    pub const fn bucket_width(&self) -> Duration {
        Duration::from_nanos(self.width_ns)
    }

    /// The number of the bucket holding `now`. `u64::MAX` marks an empty bucket, so the
    /// last instant of a 1 ns-wide window ([`Instant::MAX`]) joins the bucket before it.
    const fn number(&self, now: Instant) -> u64 {
        let n = now.as_nanos() / self.width_ns;
        if n == u64::MAX { n - 1 } else { n }
    }
}

impl<const B: usize> SlidingWindow for TimeWindow<B> {
    fn record(&mut self, now: Instant, failed: bool, slow: bool) {
        let number = self.number(now);
        let b = &mut self.buckets[(number % B as u64) as usize];
        if b.number != number {
            *b = Bucket { number, ..EMPTY };
        }
        b.calls = b.calls.saturating_add(1);
        b.failures = b.failures.saturating_add(failed as u32);
        b.slow_calls = b.slow_calls.saturating_add(slow as u32);
    }

    fn totals(&self, now: Instant) -> WindowTotals {
        let current = self.number(now);
        let oldest = current.saturating_sub(B as u64 - 1);
        let mut t = WindowTotals::default();
        for b in &self.buckets {
            if b.number != u64::MAX && b.number >= oldest && b.number <= current {
                t.calls = t.calls.saturating_add(b.calls);
                t.failures = t.failures.saturating_add(b.failures);
                t.slow_calls = t.slow_calls.saturating_add(b.slow_calls);
            }
        }
        t
    }

    fn clear(&mut self) {
        self.buckets = [EMPTY; B];
    }
}

/// No window: rates are never judged. For a [`CircuitBreaker`](super::CircuitBreaker)
/// driven by its consecutive-failure rule alone (with a growing open duration, which
/// the small [`ConsecutiveBreaker`](super::ConsecutiveBreaker) lacks). Zero bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoWindow;

impl SlidingWindow for NoWindow {
    fn record(&mut self, _now: Instant, _failed: bool, _slow: bool) {}
    fn totals(&self, _now: Instant) -> WindowTotals {
        WindowTotals::default()
    }
    fn clear(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(calls: u32, failures: u32, slow_calls: u32) -> WindowTotals {
        WindowTotals {
            calls,
            failures,
            slow_calls,
        }
    }

    #[test]
    fn count_window_evicts_the_oldest() {
        let mut w = CountWindow::<3>::new();
        let now = Instant::ZERO;
        w.record(now, true, false);
        w.record(now, true, true);
        assert_eq!(w.totals(now), t(2, 2, 1));
        w.record(now, false, false);
        assert_eq!(w.totals(now), t(3, 2, 1));
        // The 4th outcome pushes out the 1st (a failure).
        w.record(now, false, false);
        assert_eq!(w.totals(now), t(3, 1, 1));
        // The 5th pushes out the 2nd (failed and slow).
        w.record(now, false, false);
        assert_eq!(w.totals(now), t(3, 0, 0));
        w.record(now, true, true);
        assert_eq!(w.totals(now), t(3, 1, 1));
        assert_eq!(w.max_calls(), Some(3));
        w.clear();
        assert_eq!(w.totals(now), t(0, 0, 0));
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let mut w = TimeWindow::<3>::new(Duration::from_secs(1)).unwrap();
        w.record(Instant::from_millis(100), true, false); // bucket 0
        w.record(Instant::from_millis(1500), false, true); // bucket 1
        w.record(Instant::from_millis(2999), true, false); // bucket 2
        assert_eq!(w.totals(Instant::from_millis(2999)), t(3, 2, 1));
        // At 3.0 s bucket 0 has left the window.
        assert_eq!(w.totals(Instant::from_secs(3)), t(2, 1, 1));
        // Bucket 3 reuses bucket 0's slot.
        w.record(Instant::from_millis(3200), false, false);
        assert_eq!(w.totals(Instant::from_millis(3200)), t(3, 1, 1));
        assert_eq!(w.totals(Instant::from_secs(5)), t(1, 0, 0));
        assert_eq!(w.totals(Instant::from_secs(6)), t(0, 0, 0));
        assert_eq!(w.bucket_width(), Duration::from_secs(1));
        w.clear();
        assert_eq!(w.totals(Instant::from_millis(3200)), t(0, 0, 0));
        assert_eq!(
            TimeWindow::<3>::new(Duration::ZERO).unwrap_err().field(),
            "bucket_width"
        );
    }

    #[test]
    fn time_window_counts_outcomes_at_the_end_of_time() {
        // 1 ns buckets: Instant::MAX would be bucket u64::MAX, the empty marker.
        let mut w = TimeWindow::<2>::new(Duration::from_nanos(1)).unwrap();
        w.record(Instant::MAX, true, false);
        w.record(Instant::MAX, false, true);
        assert_eq!(w.totals(Instant::MAX), t(2, 1, 1));
        let mut w = TimeWindow::<2>::new(Duration::from_secs(1)).unwrap();
        w.record(Instant::MAX, true, false);
        assert_eq!(w.totals(Instant::MAX), t(1, 1, 0));
    }

    #[test]
    fn no_window_holds_nothing() {
        let mut w = NoWindow;
        w.record(Instant::ZERO, true, true);
        assert_eq!(w.totals(Instant::ZERO), t(0, 0, 0));
        assert_eq!(w.max_calls(), None);
    }
}
