//! Time as the core sees it: a monotonic [`Instant`] handed in by the caller.
//!
//! The core never reads a clock. Every input that depends on time takes a `now:
//! Instant`, a `u64` count of **nanoseconds** since an origin that the adapter picks (the
//! process start, the boot of a board, zero in a simulation). Spans are
//! [`core::time::Duration`]. All arithmetic saturates: `Instant::MAX` plus anything is
//! `Instant::MAX`, `Instant::ZERO` minus anything is `Instant::ZERO`.
//!
//! A state machine keeps a [`Monotonic`] watermark of the latest `now` it has seen. A
//! `now` earlier than that (a clock that jumped backwards, two threads racing to report)
//! is treated as the latest seen: time never runs backwards inside the core, nothing
//! panics and nothing fires early.

use core::cell::Cell;
use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time: nanoseconds since an adapter-chosen, monotonic origin.
///
/// Shape: one `u64` (8 bytes); the range covers about 584 years from the origin.
///
/// `Debug` reads in milliseconds with a unit, exact to the nanosecond:
/// `Instant(1.500000 ms)`, and `Instant::MAX` ("never"); `Display` in seconds.
///
/// With the feature `embassy-time`, `From` converts to and from
/// `embassy_time::Instant` (ticks since boot at the application's `TICK_HZ`): from
/// embassy exactly (128-bit arithmetic, saturating at [`Instant::MAX`]), to embassy
/// rounded **up** to the next tick (a deadline never fires early), saturating at
/// `embassy_time::Instant::MAX`. Spans need nothing from sturdy: the core's spans are
/// `core::time::Duration`, which embassy-time converts itself
/// (`From<embassy_time::Duration>`, `TryFrom<core::time::Duration>`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant(u64);

impl Instant {
    /// The origin (0 ns).
    pub const ZERO: Self = Self(0);
    /// The latest representable instant (`u64::MAX` ns); used as "never".
    pub const MAX: Self = Self(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    #[inline]
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// An instant `micros` microseconds after the origin (saturating).
    #[inline]
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros.saturating_mul(1_000))
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    #[inline]
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// An instant `secs` seconds after the origin (saturating).
    #[inline]
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the origin.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the origin (truncated).
    #[inline]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    #[inline]
    pub const fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_to_nanos(d)))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    #[inline]
    pub const fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_to_nanos(d)))
    }

    /// The span from `earlier` to `self`; zero when `earlier` is later than `self`.
    #[inline]
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The span from `earlier` to `self`, or `None` when `earlier` is later.
    #[inline]
    pub const fn checked_duration_since(self, earlier: Self) -> Option<Duration> {
        match self.0.checked_sub(earlier.0) {
            Some(ns) => Some(Duration::from_nanos(ns)),
            None => None,
        }
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    /// Saturating addition.
    #[inline]
    fn add(self, rhs: Duration) -> Self {
        self.saturating_add(rhs)
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    /// Saturating subtraction.
    #[inline]
    fn sub(self, rhs: Duration) -> Self {
        self.saturating_sub(rhs)
    }
}

impl Sub for Instant {
    type Output = Duration;
    /// Saturating: zero when `rhs` is later than `self`.
    #[inline]
    fn sub(self, rhs: Self) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::MAX {
            return f.write_str("Instant::MAX");
        }
        let ms = self.0 / 1_000_000;
        let ns = self.0 % 1_000_000;
        write!(f, "Instant({ms}.{ns:06} ms)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Instant {
    /// As `Debug`: `Instant(1.500000 ms)`, `Instant::MAX`.
    fn format(&self, f: defmt::Formatter<'_>) {
        if *self == Self::MAX {
            defmt::write!(f, "Instant::MAX");
        } else {
            defmt::write!(
                f,
                "Instant({=u64}.{=u64:06} ms)",
                self.0 / 1_000_000,
                self.0 % 1_000_000
            );
        }
    }
}

#[cfg(feature = "embassy-time")]
impl From<embassy_time::Instant> for Instant {
    /// Exact: `ticks * 1e9 / TICK_HZ` ns, saturating at [`Instant::MAX`].
    fn from(at: embassy_time::Instant) -> Self {
        let ns = at.as_ticks() as u128 * 1_000_000_000 / embassy_time::TICK_HZ as u128;
        Self(if ns > u64::MAX as u128 {
            u64::MAX
        } else {
            ns as u64
        })
    }
}

#[cfg(feature = "embassy-time")]
impl From<Instant> for embassy_time::Instant {
    /// Rounded up to the next tick (a deadline never fires early), saturating at
    /// `embassy_time::Instant::MAX`.
    fn from(at: Instant) -> Self {
        let ticks = (at.0 as u128 * embassy_time::TICK_HZ as u128).div_ceil(1_000_000_000);
        Self::from_ticks(if ticks > u64::MAX as u128 {
            u64::MAX
        } else {
            ticks as u64
        })
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let nanos = self.0 % 1_000_000_000;
        write!(f, "{secs}.{nanos:09}s")
    }
}

/// Converts a [`Duration`] to whole nanoseconds, saturating at `u64::MAX` (about 584 years).
#[inline]
pub const fn duration_to_nanos(d: Duration) -> u64 {
    let n = d.as_nanos();
    if n > u64::MAX as u128 {
        u64::MAX
    } else {
        n as u64
    }
}

/// A source of [`Instant`]s. Adapters implement it on their runtime's monotonic clock.
///
/// After governor's `Clock`: the core never calls it; adapters and tests do, and hand
/// the reading to the core.
pub trait Clock {
    /// The current time. Implementations should be monotonic; the core tolerates a
    /// reading that goes backwards (see [`Monotonic`]).
    fn now(&self) -> Instant;
}

/// A clock that moves only when told to: for tests, simulations and fuzzing.
///
/// Not `Sync` (it uses a [`Cell`]); a multi-threaded test wraps its own.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Cell<Instant>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub const fn new(start: Instant) -> Self {
        Self {
            now: Cell::new(start),
        }
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        self.now.set(self.now.get().saturating_add(d));
    }

    /// Sets the clock to `t`, which may be earlier than the current reading (to test
    /// clocks that jump backwards).
    pub fn set(&self, t: Instant) {
        self.now.set(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now.get()
    }
}

/// The latest `now` a state machine has seen; an earlier `now` reads as this one.
///
/// Shape: one [`Instant`] (8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Monotonic {
    latest: Instant,
}

impl Monotonic {
    /// A watermark starting at `start`.
    pub const fn new(start: Instant) -> Self {
        Self { latest: start }
    }

    /// Takes `now` into account and returns the effective time: `max(now, latest)`.
    #[inline]
    pub fn observe(&mut self, now: Instant) -> Instant {
        if now > self.latest {
            self.latest = now;
        }
        self.latest
    }

    /// The latest instant seen (getter; changes nothing).
    #[inline]
    pub const fn latest(&self) -> Instant {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    #[test]
    fn debug_reads_in_milliseconds_with_a_unit() {
        assert_eq!(
            format!("{:?}", Instant::from_micros(1_500)),
            "Instant(1.500000 ms)"
        );
        assert_eq!(
            format!("{:?}", Instant::from_secs(3)),
            "Instant(3000.000000 ms)"
        );
        assert_eq!(
            format!("{:?}", Instant::from_nanos(7)),
            "Instant(0.000007 ms)"
        );
        assert_eq!(format!("{:?}", Instant::ZERO), "Instant(0.000000 ms)");
        assert_eq!(format!("{:?}", Instant::MAX), "Instant::MAX");
        assert_eq!(
            format!("{:?}", Some(Instant::from_millis(2))),
            "Some(Instant(2.000000 ms))"
        );
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(
            Instant::from_secs(1) - Instant::from_secs(3),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_secs(3) - Instant::from_millis(1500),
            Duration::from_millis(1500)
        );
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
        assert_eq!(
            Instant::from_secs(1).checked_duration_since(Instant::from_secs(2)),
            None
        );
        assert_eq!(Instant::from_millis(1500).to_string(), "1.500000000s");
    }

    #[test]
    fn watermark_ignores_backward_jumps() {
        let mut m = Monotonic::new(Instant::from_secs(10));
        assert_eq!(m.observe(Instant::from_secs(5)), Instant::from_secs(10));
        assert_eq!(m.observe(Instant::from_secs(12)), Instant::from_secs(12));
        assert_eq!(m.observe(Instant::ZERO), Instant::from_secs(12));
        assert_eq!(m.latest(), Instant::from_secs(12));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Instant::from_secs(1));
        assert_eq!(c.now(), Instant::from_secs(1));
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now(), Instant::from_millis(1250));
        c.set(Instant::ZERO);
        assert_eq!(c.now(), Instant::ZERO);
    }
}
