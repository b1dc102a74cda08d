//! The tokio clock: [`tokio::time::Instant`] read as the core's [`Instant`].

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use sturdy_core::retry_driver::Timer;
use sturdy_core::{Clock, Instant};

/// tokio's monotonic clock as the core's [`Instant`]: nanoseconds since this clock's
/// origin, the first time it was read (so instants of two clocks are not comparable).
///
/// Built on [`tokio::time::Instant`], so under `tokio::time::pause()` it reads virtual
/// time and tests run in virtual time. Its [`Timer`] sleeps are [`tokio::time::Sleep`]s.
///
/// Shape: a `OnceLock` of one tokio `Instant` (about 24 bytes); `Send + Sync`; a clone
/// shares the origin (cloning fixes it first).
#[derive(Debug, Default)]
pub struct TokioClock {
    origin: OnceLock<tokio::time::Instant>,
}

/// A clone shares the origin: cloning fixes it (reading the clock, if it had not been
/// read) and copies it, so instants of a clone and of its original are comparable even
/// when the clone was made before either was read.
impl Clone for TokioClock {
    fn clone(&self) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(self.origin());
        Self { origin: cell }
    }
}

impl TokioClock {
    /// A clock whose origin is fixed at its first reading.
    pub const fn new() -> Self {
        Self {
            origin: OnceLock::new(),
        }
    }

    /// A clock whose origin is `origin` (to share one origin between clocks).
    pub fn with_origin(origin: tokio::time::Instant) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(origin);
        Self { origin: cell }
    }

    fn origin(&self) -> tokio::time::Instant {
        *self.origin.get_or_init(tokio::time::Instant::now)
    }

    /// The tokio instant of a core `at`, in this clock's origin.
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let origin = self.origin();
        let d = std::time::Duration::from_nanos(at.as_nanos());
        origin.checked_add(d).unwrap_or_else(|| far_future(origin))
    }

    /// The core instant of a tokio `at` (saturating at the origin).
    pub fn from_tokio(&self, at: tokio::time::Instant) -> Instant {
        let d = at.saturating_duration_since(self.origin());
        Instant::ZERO.saturating_add(d)
    }
}

/// About 30 years after `origin`: what tokio itself uses as "never".
fn far_future(origin: tokio::time::Instant) -> tokio::time::Instant {
    origin + std::time::Duration::from_secs(86_400 * 365 * 30)
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        self.from_tokio(tokio::time::Instant::now())
    }
}

impl Timer for TokioClock {
    type Sleep = tokio::time::Sleep;

    fn now(&self) -> Instant {
        Clock::now(self)
    }

    fn sleep_until(&self, deadline: Instant) -> tokio::time::Sleep {
        tokio::time::sleep_until(self.to_tokio(deadline))
    }

    /// `now` mixed with std's per-call random hash keys, so that callers failing at
    /// the same instant draw different jitter.
    fn jitter_seed(&self, now: Instant) -> u64 {
        RandomState::new().hash_one(now.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn reads_virtual_time_and_converts_both_ways() {
        let c = TokioClock::new();
        assert_eq!(Clock::now(&c), Instant::ZERO);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(Clock::now(&c), Instant::from_millis(1500));
        let t = c.to_tokio(Instant::from_secs(3));
        assert_eq!(c.from_tokio(t), Instant::from_secs(3));
        // An instant before the origin reads as the origin; `MAX` maps to far away.
        let before = c.to_tokio(Instant::ZERO) - Duration::from_secs(1);
        assert_eq!(c.from_tokio(before), Instant::ZERO);
        assert!(c.to_tokio(Instant::MAX) > c.to_tokio(Instant::from_secs(86_400 * 365)));
        let shared = TokioClock::with_origin(c.to_tokio(Instant::ZERO));
        assert_eq!(Clock::now(&shared), Instant::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_clone_made_before_the_first_read_shares_the_origin() {
        // Before: each clone fixed its own origin at its own first read, so both read
        // zero below.
        let a = TokioClock::new();
        let b = a.clone();
        tokio::time::advance(Duration::from_secs(1)).await;
        let at_a = Clock::now(&a);
        tokio::time::advance(Duration::from_secs(1)).await;
        let at_b = Clock::now(&b);
        assert_eq!(at_a, Instant::from_secs(1));
        assert_eq!(at_b, Instant::from_secs(2));
    }
}
