//! A manual clock that threads can share.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sturdy_core::{Clock, Instant};

/// A clock that moves only when told to, shared by clones across threads: for tests,
/// simulations and benchmarks of the shared handles (the core's `ManualClock` is not
/// `Sync`).
///
/// Shape: one `Arc<AtomicU64>` of nanoseconds; clones read and move the same time.
#[derive(Clone, Debug, Default)]
pub struct SharedManualClock {
    nanos: Arc<AtomicU64>,
}

impl SharedManualClock {
    /// A clock reading `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(start.as_nanos())),
        }
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(add))
            });
    }

    /// Sets the clock to `t`, earlier or later.
    pub fn set(&self, t: Instant) {
        self.nanos.store(t.as_nanos(), Ordering::SeqCst);
    }
}

impl Clock for SharedManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_time() {
        let a = SharedManualClock::new(Instant::from_secs(1));
        let b = a.clone();
        b.advance(Duration::from_millis(500));
        assert_eq!(a.now(), Instant::from_millis(1500));
        a.set(Instant::ZERO);
        assert_eq!(b.now(), Instant::ZERO);
        a.advance(Duration::MAX);
        assert_eq!(b.now(), Instant::MAX);
    }
}
