//! The async-io clock: `std::time::Instant` read as the core's [`Instant`], sleeping
//! on `async_io::Timer`.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use sturdy_core::retry_driver::Timer;
use sturdy_core::{Clock, Instant};

/// The monotonic `std::time::Instant` as the core's [`Instant`]: nanoseconds since
/// this clock's origin, its first reading. Its [`Timer`] sleeps are
/// [`async_io::Timer`]s, which run under async-std, smol or any executor (async-io
/// drives them from its own thread when nobody else does).
///
/// Shape: a `OnceLock` of one `std::time::Instant` (about 24 bytes); `Send + Sync`; a
/// clone shares the origin (cloning fixes it first).
#[derive(Debug, Default)]
pub struct AsyncIoClock {
    origin: OnceLock<std::time::Instant>,
}

/// A clone shares the origin: cloning fixes it (reading the clock, if it had not been
/// read) and copies it, so instants of a clone and of its original are comparable even
/// when the clone was made before either was read.
impl Clone for AsyncIoClock {
    fn clone(&self) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(self.origin());
        Self { origin: cell }
    }
}

impl AsyncIoClock {
    /// A clock whose origin is fixed at its first reading.
    pub const fn new() -> Self {
        Self {
            origin: OnceLock::new(),
        }
    }

    fn origin(&self) -> std::time::Instant {
        *self.origin.get_or_init(std::time::Instant::now)
    }

    /// The `std` instant of a core `at`, in this clock's origin; `None` past what
    /// `std::time::Instant` can represent.
    pub fn to_std(&self, at: Instant) -> Option<std::time::Instant> {
        self.origin()
            .checked_add(std::time::Duration::from_nanos(at.as_nanos()))
    }

    /// The core instant of a `std` `at` (saturating at the origin).
    pub fn from_std(&self, at: std::time::Instant) -> Instant {
        Instant::ZERO.saturating_add(at.saturating_duration_since(self.origin()))
    }
}

impl Clock for AsyncIoClock {
    fn now(&self) -> Instant {
        self.from_std(std::time::Instant::now())
    }
}

impl Timer for AsyncIoClock {
    type Sleep = async_io::Timer;

    fn now(&self) -> Instant {
        Clock::now(self)
    }

    fn sleep_until(&self, deadline: Instant) -> async_io::Timer {
        match self.to_std(deadline) {
            Some(at) => async_io::Timer::at(at),
            None => async_io::Timer::never(),
        }
    }

    /// `now` mixed with std's per-call random hash keys.
    fn jitter_seed(&self, now: Instant) -> u64 {
        RandomState::new().hash_one(now.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_made_before_the_first_read_shares_the_origin() {
        // Before: the original fixed its own origin at its first read, after the sleep,
        // and read zero.
        let a = AsyncIoClock::new();
        let b = a.clone();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let at_a = Clock::now(&a);
        assert!(at_a >= Instant::from_millis(2), "{at_a:?}");
        assert!(Clock::now(&b) >= at_a);
    }
}
