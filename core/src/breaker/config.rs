//! Breaker configurations, built by validating constructors.
//!
//! - [`ConsecutiveConfig`] for the small [`ConsecutiveBreaker`](super::ConsecutiveBreaker):
//!   trips after a run of consecutive failures, fixed open duration.
//! - [`BreakerConfig`] for [`CircuitBreaker`](super::CircuitBreaker): failure rate and
//!   slow-call rate over a sliding window, a minimum number of calls, an optional
//!   consecutive-failure rule, and an open duration drawn from a backoff schedule that
//!   grows with each consecutive reopen.
//!
//! Rates are given as `f32` fractions in `(0, 1]` and stored as parts per million, so the
//! breakers judge them with integer multiplications only.

use core::time::Duration;

use crate::backoff::{BackoffConfig, Jitter};
use crate::error::ConfigError;
use crate::failure::KindSet;
use crate::time::duration_to_nanos;

/// The most half-open permits a [`ConsecutiveBreaker`](super::ConsecutiveBreaker) can
/// hand out at once (its probe slots are inline, to keep it small and `Copy`).
pub const CONSECUTIVE_MAX_PROBES: usize = 2;

/// The most half-open permits a [`CircuitBreaker`](super::CircuitBreaker) can hand out
/// at once.
pub const CIRCUIT_MAX_PROBES: usize = 16;

/// Configuration of the small consecutive-failure breaker. Defaults follow the original
/// design: 3 failures in a row open it for 300 s, 2 successful probes close it.
///
/// A half-open probe that never reports back (a dropped future whose guard was leaked,
/// a hung call) expires after the permit timeout, which is **the open duration unless
/// set** (the same rule as [`BreakerConfig`]'s): a lost probe never holds the breaker
/// shut longer than it was configured to stay open.
///
/// For a server, prefer [`new`](Self::new) with values of its own scale, for example
/// `ConsecutiveConfig::new(5, Duration::from_secs(10), 1)` (5 failures in a row open
/// it for 10 s, one successful probe closes it); [`original`](Self::original) (300 s
/// open) is the original design's preset, kept for compatibility.
///
/// Shape: 32 bytes; `Copy`.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "ConsecutiveConfigUnchecked"))]
pub struct ConsecutiveConfig {
    pub(crate) open_ns: u64,
    pub(crate) permit_timeout_ns: u64,
    pub(crate) failure_threshold: u32,
    pub(crate) success_threshold: u16,
    pub(crate) counted: KindSet,
    pub(crate) half_open_permits: u8,
}

impl ConsecutiveConfig {
    /// The original design's breaker: `failure_threshold` 3, open 300 s,
    /// `success_threshold` 2; one probe at a time; a probe expires after 300 s; every
    /// kind but cancelled and permanent counts.
    pub const fn original() -> Self {
        Self {
            open_ns: 300_000_000_000,
            permit_timeout_ns: 300_000_000_000,
            failure_threshold: 3,
            success_threshold: 2,
            counted: KindSet::retryable_defaults(),
            half_open_permits: 1,
        }
    }

    /// `failure_threshold` counted failures in a row open the breaker for `open`; then
    /// `success_threshold` successful probes close it. One probe at a time; a probe
    /// permit expires after `open` (change it with
    /// [`with_permit_timeout`](Self::with_permit_timeout)).
    ///
    /// # Errors
    /// `failure_threshold` or `success_threshold` zero; `open` zero.
    pub const fn new(
        failure_threshold: u32,
        open: Duration,
        success_threshold: u16,
    ) -> Result<Self, ConfigError> {
        if failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be >= 1"));
        }
        if success_threshold == 0 {
            return Err(ConfigError::new("success_threshold", "must be >= 1"));
        }
        let open_ns = duration_to_nanos(open);
        if open_ns == 0 {
            return Err(ConfigError::new("open", "must be > 0"));
        }
        Ok(Self {
            open_ns,
            permit_timeout_ns: open_ns,
            failure_threshold,
            success_threshold,
            counted: KindSet::retryable_defaults(),
            half_open_permits: 1,
        })
    }

    /// At most `permits` probes in flight while half-open.
    ///
    /// # Errors
    /// `permits` outside `1..=CONSECUTIVE_MAX_PROBES` (2).
    pub const fn with_half_open_permits(mut self, permits: u8) -> Result<Self, ConfigError> {
        if permits == 0 || permits as usize > CONSECUTIVE_MAX_PROBES {
            return Err(ConfigError::new(
                "half_open_permits",
                "must be in 1..=2 (CONSECUTIVE_MAX_PROBES)",
            ));
        }
        self.half_open_permits = permits;
        Ok(self)
    }

    /// A half-open probe that has not reported back `timeout` after it was issued counts
    /// as failed (so a lost probe cannot wedge the breaker).
    ///
    /// # Errors
    /// `timeout` zero.
    pub const fn with_permit_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        let ns = duration_to_nanos(timeout);
        if ns == 0 {
            return Err(ConfigError::new("permit_timeout", "must be > 0"));
        }
        self.permit_timeout_ns = ns;
        Ok(self)
    }

    /// Which failure kinds count as failures (the others count neither way). Default:
    /// every kind but cancelled and permanent.
    pub const fn with_counted_kinds(mut self, counted: KindSet) -> Self {
        self.counted = counted;
        self
    }

    /// Consecutive counted failures that open the breaker.
    pub const fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Successful probes that close it.
    pub const fn success_threshold(&self) -> u16 {
        self.success_threshold
    }

    /// How long it stays open.
    pub const fn open_duration(&self) -> Duration {
        Duration::from_nanos(self.open_ns)
    }

    /// Probes allowed in flight while half-open.
    pub const fn half_open_permits(&self) -> u8 {
        self.half_open_permits
    }

    /// How long a probe may stay out before it counts as failed.
    pub const fn permit_timeout(&self) -> Duration {
        Duration::from_nanos(self.permit_timeout_ns)
    }

    /// The kinds that count as failures.
    pub const fn counted_kinds(&self) -> KindSet {
        self.counted
    }
}

impl Default for ConsecutiveConfig {
    fn default() -> Self {
        Self::original()
    }
}

const PPM: u64 = 1_000_000;

/// Converts a rate in `(0, 1]` to parts per million (rounded to nearest).
const fn rate_to_ppm(field: &'static str, rate: f32) -> Result<u32, ConfigError> {
    // `!(rate > 0.0)` also rejects NaN.
    if !(rate > 0.0 && rate <= 1.0) {
        return Err(ConfigError::new(field, "must be in (0, 1]"));
    }
    let ppm = (rate as f64 * PPM as f64 + 0.5) as u32;
    Ok(if ppm < 1 {
        1
    } else if ppm > PPM as u32 {
        PPM as u32
    } else {
        ppm
    })
}

/// Configuration of the windowed [`CircuitBreaker`](super::CircuitBreaker).
///
/// Trip rules, judged after each counted outcome while closed (any one opens it):
/// - failure rate: `failures / calls >= failure_rate_threshold` over the window, once
///   the window holds at least `minimum_calls` calls;
/// - slow-call rate (off unless set): `slow_calls / calls >= slow_call_rate_threshold`,
///   with the same minimum; a call is slow when `now - permit.issued_at()` at `record`
///   exceeds `slow_call_duration`;
/// - consecutive failures (off unless set): that many counted failures in a row.
///
/// Defaults (after resilience4j's, with the original design's half-open rule): failure
/// rate 50 %, minimum 10 calls, no slow-call or consecutive rule, open 60 s fixed, 1
/// half-open permit, 2 successful probes to close, counted kinds all but cancelled and
/// permanent.
///
/// The permit timeout (how long a half-open probe may stay out before it counts as
/// failed) is **the first open duration unless set** (the fixed open duration, or the
/// open schedule's first delay), the same rule as [`ConsecutiveConfig`]'s: a probe that
/// never reports back never holds the breaker shut longer than it was configured to
/// stay open.
///
/// Shape: 80 bytes; `Copy`.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "BreakerConfigUnchecked"))]
#[non_exhaustive]
pub struct BreakerConfig {
    pub(crate) open: BackoffConfig,
    pub(crate) slow_call_ns: u64,
    /// [`PERMIT_TIMEOUT_FOLLOWS_OPEN`] = the first open duration.
    pub(crate) permit_timeout_ns: u64,
    pub(crate) failure_rate_ppm: u32,
    /// 0 = rule off.
    pub(crate) slow_rate_ppm: u32,
    pub(crate) minimum_calls: u32,
    /// 0 = rule off.
    pub(crate) consecutive_failures: u32,
    pub(crate) success_threshold: u16,
    pub(crate) counted: KindSet,
    pub(crate) half_open_permits: u8,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl BreakerConfig {
    /// The defaults (see the type's docs).
    pub const fn new() -> Self {
        Self {
            open: fixed_schedule(Duration::from_secs(60)),
            slow_call_ns: u64::MAX,
            permit_timeout_ns: PERMIT_TIMEOUT_FOLLOWS_OPEN,
            failure_rate_ppm: 500_000,
            slow_rate_ppm: 0,
            minimum_calls: 10,
            consecutive_failures: 0,
            success_threshold: 2,
            counted: KindSet::retryable_defaults(),
            half_open_permits: 1,
        }
    }

    /// Opens when `failures / calls >= rate` over the window.
    ///
    /// # Errors
    /// `rate` outside `(0, 1]` (NaN included).
    pub const fn with_failure_rate_threshold(mut self, rate: f32) -> Result<Self, ConfigError> {
        self.failure_rate_ppm = match rate_to_ppm("failure_rate_threshold", rate) {
            Ok(ppm) => ppm,
            Err(e) => return Err(e),
        };
        Ok(self)
    }

    /// Turns the slow-call rule on: a call slower than `duration` is slow, and the
    /// breaker opens when `slow_calls / calls >= rate` over the window.
    ///
    /// # Errors
    /// `rate` outside `(0, 1]`.
    pub const fn with_slow_calls(
        mut self,
        duration: Duration,
        rate: f32,
    ) -> Result<Self, ConfigError> {
        self.slow_rate_ppm = match rate_to_ppm("slow_call_rate_threshold", rate) {
            Ok(ppm) => ppm,
            Err(e) => return Err(e),
        };
        self.slow_call_ns = duration_to_nanos(duration);
        Ok(self)
    }

    /// No rate is judged before the window holds `calls` calls.
    ///
    /// # Errors
    /// `calls` zero.
    pub const fn with_minimum_calls(mut self, calls: u32) -> Result<Self, ConfigError> {
        if calls == 0 {
            return Err(ConfigError::new("minimum_calls", "must be >= 1"));
        }
        self.minimum_calls = calls;
        Ok(self)
    }

    /// Also opens after `failures` counted failures in a row.
    ///
    /// # Errors
    /// `failures` zero.
    pub const fn with_consecutive_failures(mut self, failures: u32) -> Result<Self, ConfigError> {
        if failures == 0 {
            return Err(ConfigError::new("consecutive_failures", "must be >= 1"));
        }
        self.consecutive_failures = failures;
        Ok(self)
    }

    /// A fixed open duration.
    ///
    /// # Errors
    /// `open` zero.
    pub const fn with_open_duration(mut self, open: Duration) -> Result<Self, ConfigError> {
        if duration_to_nanos(open) == 0 {
            return Err(ConfigError::new("open_duration", "must be > 0"));
        }
        self.open = fixed_schedule(open);
        Ok(self)
    }

    /// Open durations drawn from `schedule`: the first opening waits its first delay,
    /// each consecutive reopen (a failed probe) the next one; closing starts over.
    ///
    /// # Errors
    /// A schedule whose cap is zero (every open period would be empty).
    pub const fn with_open_backoff(mut self, schedule: BackoffConfig) -> Result<Self, ConfigError> {
        if schedule.cap().is_zero() {
            return Err(ConfigError::new("open_backoff", "must have a cap > 0"));
        }
        self.open = schedule;
        Ok(self)
    }

    /// At most `permits` probes in flight while half-open.
    ///
    /// # Errors
    /// `permits` outside `1..=CIRCUIT_MAX_PROBES` (16).
    pub const fn with_half_open_permits(mut self, permits: u8) -> Result<Self, ConfigError> {
        if permits == 0 || permits as usize > CIRCUIT_MAX_PROBES {
            return Err(ConfigError::new(
                "half_open_permits",
                "must be in 1..=16 (CIRCUIT_MAX_PROBES)",
            ));
        }
        self.half_open_permits = permits;
        Ok(self)
    }

    /// Successful probes needed to close.
    ///
    /// # Errors
    /// `successes` zero.
    pub const fn with_success_threshold(mut self, successes: u16) -> Result<Self, ConfigError> {
        if successes == 0 {
            return Err(ConfigError::new("success_threshold", "must be >= 1"));
        }
        self.success_threshold = successes;
        Ok(self)
    }

    /// A half-open probe not reported back `timeout` after it was issued counts as failed
    /// (default: the first open duration).
    ///
    /// # Errors
    /// `timeout` zero.
    pub const fn with_permit_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        let ns = duration_to_nanos(timeout);
        if ns == 0 {
            return Err(ConfigError::new("permit_timeout", "must be > 0"));
        }
        self.permit_timeout_ns = ns;
        Ok(self)
    }

    /// Which failure kinds count as failures (the others count neither way).
    pub const fn with_counted_kinds(mut self, counted: KindSet) -> Self {
        self.counted = counted;
        self
    }

    /// The failure-rate threshold, as a fraction.
    pub fn failure_rate_threshold(&self) -> f32 {
        self.failure_rate_ppm as f32 / PPM as f32
    }

    /// The slow-call rule (`duration`, rate), if on.
    pub fn slow_calls(&self) -> Option<(Duration, f32)> {
        (self.slow_rate_ppm != 0).then(|| {
            (
                Duration::from_nanos(self.slow_call_ns),
                self.slow_rate_ppm as f32 / PPM as f32,
            )
        })
    }

    /// Calls needed in the window before a rate is judged.
    pub const fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The consecutive-failure rule, if on.
    pub const fn consecutive_failures(&self) -> Option<u32> {
        if self.consecutive_failures == 0 {
            None
        } else {
            Some(self.consecutive_failures)
        }
    }

    /// The schedule of open durations.
    pub const fn open_backoff(&self) -> BackoffConfig {
        self.open
    }

    /// Probes allowed in flight while half-open.
    pub const fn half_open_permits(&self) -> u8 {
        self.half_open_permits
    }

    /// Successful probes needed to close.
    pub const fn success_threshold(&self) -> u16 {
        self.success_threshold
    }

    /// How long a probe may stay out before it counts as failed: the value set with
    /// [`with_permit_timeout`](Self::with_permit_timeout), else the first open duration.
    pub fn permit_timeout(&self) -> Duration {
        Duration::from_nanos(self.permit_timeout_ns())
    }

    /// [`permit_timeout`](Self::permit_timeout) in nanoseconds.
    pub(crate) fn permit_timeout_ns(&self) -> u64 {
        match self.permit_timeout_ns {
            PERMIT_TIMEOUT_FOLLOWS_OPEN => self.open.raw_delay_ns(1).max(1),
            ns => ns,
        }
    }

    /// The kinds that count as failures.
    pub const fn counted_kinds(&self) -> KindSet {
        self.counted
    }
}

/// The stored permit timeout that means "the first open duration" (a set one is > 0).
const PERMIT_TIMEOUT_FOLLOWS_OPEN: u64 = 0;

/// A constant schedule without jitter: every open period lasts `open`.
/// The serialized shape of [`ConsecutiveConfig`], checked on the way in by the rules of
/// its constructors.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct ConsecutiveConfigUnchecked {
    open_ns: u64,
    permit_timeout_ns: u64,
    failure_threshold: u32,
    success_threshold: u16,
    counted: KindSet,
    half_open_permits: u8,
}

#[cfg(feature = "serde")]
impl TryFrom<ConsecutiveConfigUnchecked> for ConsecutiveConfig {
    type Error = ConfigError;
    fn try_from(u: ConsecutiveConfigUnchecked) -> Result<Self, ConfigError> {
        Ok(Self::new(
            u.failure_threshold,
            Duration::from_nanos(u.open_ns),
            u.success_threshold,
        )?
        .with_permit_timeout(Duration::from_nanos(u.permit_timeout_ns))?
        .with_half_open_permits(u.half_open_permits)?
        .with_counted_kinds(u.counted))
    }
}

/// The serialized shape of [`BreakerConfig`], checked on the way in by the rules of its
/// `with_*` methods (the open schedule checks itself).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct BreakerConfigUnchecked {
    open: BackoffConfig,
    slow_call_ns: u64,
    permit_timeout_ns: u64,
    failure_rate_ppm: u32,
    slow_rate_ppm: u32,
    minimum_calls: u32,
    consecutive_failures: u32,
    success_threshold: u16,
    counted: KindSet,
    half_open_permits: u8,
}

#[cfg(feature = "serde")]
impl TryFrom<BreakerConfigUnchecked> for BreakerConfig {
    type Error = ConfigError;
    fn try_from(u: BreakerConfigUnchecked) -> Result<Self, ConfigError> {
        let ppm = |field, v: u32| {
            if v == 0 || v as u64 > PPM {
                Err(ConfigError::new(field, "must be in (0, 1]"))
            } else {
                Ok(v)
            }
        };
        let mut c = Self::new().with_open_backoff(u.open)?;
        if u.permit_timeout_ns != PERMIT_TIMEOUT_FOLLOWS_OPEN {
            c = c.with_permit_timeout(Duration::from_nanos(u.permit_timeout_ns))?;
        }
        let mut c = c
            .with_minimum_calls(u.minimum_calls)?
            .with_success_threshold(u.success_threshold)?
            .with_half_open_permits(u.half_open_permits)?
            .with_counted_kinds(u.counted);
        c.failure_rate_ppm = ppm("failure_rate_threshold", u.failure_rate_ppm)?;
        if u.slow_rate_ppm != 0 {
            c.slow_rate_ppm = ppm("slow_call_rate_threshold", u.slow_rate_ppm)?;
            c.slow_call_ns = u.slow_call_ns;
        }
        if u.consecutive_failures != 0 {
            c = c.with_consecutive_failures(u.consecutive_failures)?;
        }
        Ok(c)
    }
}

pub(crate) const fn fixed_schedule(open: Duration) -> BackoffConfig {
    let c = BackoffConfig::constant(open);
    // Turning jitter off cannot fail (only decorrelated jitter is checked).
    match c.with_jitter(Jitter::None) {
        Ok(c) => c,
        Err(_) => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_validation_names_field_and_rule() {
        let e = ConsecutiveConfig::new(0, Duration::from_secs(1), 1).unwrap_err();
        assert_eq!((e.field(), e.rule()), ("failure_threshold", "must be >= 1"));
        let e = ConsecutiveConfig::new(1, Duration::from_secs(1), 0).unwrap_err();
        assert_eq!(e.field(), "success_threshold");
        let e = ConsecutiveConfig::new(1, Duration::ZERO, 1).unwrap_err();
        assert_eq!(e.field(), "open");
        let c = ConsecutiveConfig::original();
        let e = c.with_half_open_permits(3).unwrap_err();
        assert_eq!(e.rule(), "must be in 1..=2 (CONSECUTIVE_MAX_PROBES)");
        assert!(c.with_half_open_permits(0).is_err());
        assert_eq!(c.with_half_open_permits(2).unwrap().half_open_permits(), 2);
        assert_eq!(
            c.with_permit_timeout(Duration::ZERO).unwrap_err().field(),
            "permit_timeout"
        );
        assert_eq!(c.failure_threshold(), 3);
        assert_eq!(c.success_threshold(), 2);
        assert_eq!(c.open_duration(), Duration::from_secs(300));
        assert_eq!(c.permit_timeout(), Duration::from_secs(300));
        assert_eq!(
            ConsecutiveConfig::new(3, Duration::from_secs(300), 2).unwrap(),
            c
        );
    }

    #[test]
    fn rate_validation() {
        let c = BreakerConfig::new();
        for bad in [0.0, -0.1, 1.01, f32::NAN, f32::INFINITY] {
            let e = c.with_failure_rate_threshold(bad).unwrap_err();
            assert_eq!(
                (e.field(), e.rule()),
                ("failure_rate_threshold", "must be in (0, 1]")
            );
        }
        assert_eq!(
            c.with_failure_rate_threshold(0.25)
                .unwrap()
                .failure_rate_ppm,
            250_000
        );
        assert_eq!(
            c.with_failure_rate_threshold(1.0).unwrap().failure_rate_ppm,
            1_000_000
        );
        assert_eq!(
            c.with_failure_rate_threshold(1e-9)
                .unwrap()
                .failure_rate_ppm,
            1
        );
        let e = c
            .with_slow_calls(Duration::from_millis(5), 2.0)
            .unwrap_err();
        assert_eq!(e.field(), "slow_call_rate_threshold");
        assert_eq!(c.slow_calls(), None);
        let s = c.with_slow_calls(Duration::from_millis(5), 0.5).unwrap();
        assert_eq!(s.slow_calls(), Some((Duration::from_millis(5), 0.5)));
        assert_eq!(
            c.with_minimum_calls(0).unwrap_err().field(),
            "minimum_calls"
        );
        assert_eq!(
            c.with_consecutive_failures(0).unwrap_err().field(),
            "consecutive_failures"
        );
        assert_eq!(
            c.with_open_duration(Duration::ZERO).unwrap_err().field(),
            "open_duration"
        );
        assert_eq!(
            c.with_open_backoff(fixed_schedule(Duration::ZERO))
                .unwrap_err()
                .field(),
            "open_backoff"
        );
        assert_eq!(
            c.with_half_open_permits(17).unwrap_err().field(),
            "half_open_permits"
        );
        assert_eq!(
            c.with_success_threshold(0).unwrap_err().field(),
            "success_threshold"
        );
        assert_eq!(
            c.with_permit_timeout(Duration::ZERO).unwrap_err().field(),
            "permit_timeout"
        );
        assert_eq!(c.failure_rate_threshold(), 0.5);
        assert_eq!(c.minimum_calls(), 10);
        assert_eq!(c.consecutive_failures(), None);
        assert_eq!(c.half_open_permits(), 1);
        assert_eq!(c.success_threshold(), 2);
        assert_eq!(c.permit_timeout(), Duration::from_secs(60));
        assert_eq!(c.open_backoff().raw_delay(9), Duration::from_secs(60));
    }

    #[test]
    fn the_permit_timeout_follows_the_open_duration_in_both_breakers_unless_set() {
        // Before: BreakerConfig kept a fixed 60 s whatever the open duration.
        let c = BreakerConfig::new()
            .with_open_duration(Duration::from_secs(5))
            .unwrap();
        assert_eq!(c.permit_timeout(), Duration::from_secs(5));
        let k = ConsecutiveConfig::new(3, Duration::from_secs(5), 1).unwrap();
        assert_eq!(k.permit_timeout(), Duration::from_secs(5));
        // A growing schedule: its first delay.
        let grow =
            BackoffConfig::exponential(Duration::from_secs(2), 2_000, Duration::from_secs(64))
                .unwrap();
        let c = BreakerConfig::new().with_open_backoff(grow).unwrap();
        assert_eq!(c.permit_timeout(), Duration::from_secs(2));
        // Set: kept, whatever the open duration set after it.
        let c = BreakerConfig::new()
            .with_permit_timeout(Duration::from_secs(7))
            .unwrap()
            .with_open_duration(Duration::from_secs(1))
            .unwrap();
        assert_eq!(c.permit_timeout(), Duration::from_secs(7));
        // The compatibility preset: 300 s open, 300 s permit timeout.
        assert_eq!(
            ConsecutiveConfig::original().permit_timeout(),
            ConsecutiveConfig::original().open_duration()
        );
    }
}
