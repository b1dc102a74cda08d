//! The embassy clock: `embassy_time::Instant` read as the core's [`Instant`].

use sturdy_core::retry_driver::Timer;
use sturdy_core::{Clock, Instant};

/// embassy-time's monotonic clock (ticks since boot, at the application's
/// `TICK_HZ`) as the core's [`Instant`] (nanoseconds since boot). Its [`Timer`] sleeps
/// are [`embassy_time::Timer`]s.
///
/// Conversions are exact in 128-bit arithmetic and saturate; a deadline is rounded up
/// to the next tick, so a sleep never ends before its deadline.
///
/// Shape: zero-sized; `Copy`, `Send + Sync`.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EmbassyClock;

impl EmbassyClock {
    /// The core instant of an embassy instant (nanoseconds since boot, saturating).
    /// The same as `Instant::from(at)` (the core's feature `embassy-time`).
    pub fn from_embassy(at: embassy_time::Instant) -> Instant {
        at.into()
    }

    /// The embassy instant of a core `at`, rounded up to the next tick (saturating at
    /// `embassy_time::Instant::MAX`, which is "never").
    /// The same as `embassy_time::Instant::from(at)`.
    pub fn to_embassy(at: Instant) -> embassy_time::Instant {
        at.into()
    }
}

impl Clock for EmbassyClock {
    fn now(&self) -> Instant {
        Self::from_embassy(embassy_time::Instant::now())
    }
}

impl Timer for EmbassyClock {
    type Sleep = embassy_time::Timer;

    fn now(&self) -> Instant {
        Clock::now(self)
    }

    fn sleep_until(&self, deadline: Instant) -> embassy_time::Timer {
        embassy_time::Timer::at(Self::to_embassy(deadline))
    }
}
