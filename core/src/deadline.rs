//! The deadline failure detector: a worker is suspect when no heartbeat came within its
//! timeout.
//!
//! The original design (MorphML's master/worker) had workers heartbeat every 10 s and
//! declared a worker dead 30 s after its last heartbeat; those are the defaults here
//! ([`DeadlineConfig::default`]: 30 s timeout, 30 s grace). A worker that registered but
//! never sent a heartbeat is suspect once its grace period after registration passes (the
//! original never noticed such a worker).
//!
//! The rule, with `t` the last heartbeat (or the registration when none came) and `d` the
//! timeout (or the grace): the worker is suspect at every `now >= t + d`. A silence of
//! exactly the timeout trips it. [`DeadlineDetector::deadline`] is that instant, so an
//! adapter arms one timer for it.
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::Instant;
//! use sturdy_core::deadline::{DeadlineConfig, DeadlineDetector};
//!
//! let cfg = DeadlineConfig::new(Duration::from_secs(30), Duration::from_secs(60))?;
//! let mut d = DeadlineDetector::new(cfg, Instant::ZERO); // registered at 0
//! assert!(!d.is_suspect(Instant::from_secs(59)));        // within the grace period
//! assert!(d.is_suspect(Instant::from_secs(60)));         // never heartbeated
//! d.heartbeat(Instant::from_secs(61));
//! assert_eq!(d.deadline(), Instant::from_secs(91));
//! assert!(!d.is_suspect(Instant::from_secs(90)));
//! assert!(d.is_suspect(Instant::from_secs(91)));
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```

use core::time::Duration;

use crate::error::ConfigError;
use crate::time::{Instant, Monotonic};

/// The detector's rules: how long a silence may last. Shape: two `Duration`s (32 bytes),
/// `Copy`. Built by [`new`](Self::new), [`disabled`](Self::disabled) or
/// [`default`](Self::default); deserializing (feature `serde`) checks the rules of `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "DeadlineConfigUnchecked"))]
#[non_exhaustive]
pub struct DeadlineConfig {
    timeout: Duration,
    grace: Duration,
}

/// The serialized shape of [`DeadlineConfig`], checked on the way in.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct DeadlineConfigUnchecked {
    timeout: Duration,
    grace: Duration,
}

#[cfg(feature = "serde")]
impl TryFrom<DeadlineConfigUnchecked> for DeadlineConfig {
    type Error = ConfigError;
    fn try_from(u: DeadlineConfigUnchecked) -> Result<Self, ConfigError> {
        Self::new(u.timeout, u.grace)
    }
}

impl DeadlineConfig {
    /// Suspect after `timeout` without a heartbeat, or `grace` after registration when
    /// no heartbeat came at all.
    ///
    /// # Errors
    /// A zero `timeout` or a zero `grace` (every worker would be suspect at once).
    pub const fn new(timeout: Duration, grace: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be > 0"));
        }
        if grace.is_zero() {
            return Err(ConfigError::new("grace", "must be > 0"));
        }
        Ok(Self { timeout, grace })
    }

    /// The longest silence after a heartbeat before the worker is suspect.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The longest wait for the first heartbeat after registration (or recovery).
    pub const fn grace(&self) -> Duration {
        self.grace
    }
}

impl DeadlineConfig {
    /// Never suspects (timeout and grace of [`Duration::MAX`]): for a caller that
    /// detects failures another way, for example with a
    /// [`PhiAccrual`](crate::phi::PhiAccrual) detector. The deadline reads
    /// [`Instant::MAX`], "never".
    pub const fn disabled() -> Self {
        Self {
            timeout: Duration::MAX,
            grace: Duration::MAX,
        }
    }
}

impl Default for DeadlineConfig {
    /// [`DeadlineConfig::ORIGINAL`].
    fn default() -> Self {
        Self::ORIGINAL
    }
}

impl DeadlineConfig {
    /// The original's master: dead after 30 s without a heartbeat (workers heartbeat
    /// every 10 s); the grace period for the first heartbeat is the same 30 s. The
    /// [`Default`].
    pub const ORIGINAL: Self = Self {
        timeout: Duration::from_secs(30),
        grace: Duration::from_secs(30),
    };
}

/// Watches one worker's heartbeats. Shape: about 64 bytes, `Copy`.
///
/// Inputs: [`heartbeat`](Self::heartbeat), [`restart`](Self::restart). Getters (`&self`,
/// change nothing): [`deadline`](Self::deadline), [`is_suspect`](Self::is_suspect),
/// [`last_heartbeat`](Self::last_heartbeat), [`silence`](Self::silence). A heartbeat
/// whose `now` is earlier than one already seen counts at the latest time seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeadlineDetector {
    config: DeadlineConfig,
    since: Instant,
    last: Option<Instant>,
    clock: Monotonic,
}

impl DeadlineDetector {
    /// A detector for a worker registered at `now`; its grace period starts now.
    pub const fn new(config: DeadlineConfig, now: Instant) -> Self {
        Self {
            config,
            since: now,
            last: None,
            clock: Monotonic::new(now),
        }
    }

    /// A heartbeat arrived at `now`: the deadline moves to `now + timeout`.
    pub fn heartbeat(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        self.last = Some(now);
    }

    /// Starts over at `now` as if the worker had just registered (after a restart of the
    /// worker): the grace period applies again and earlier heartbeats are forgotten.
    pub fn restart(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        self.since = now;
        self.last = None;
    }

    /// The first instant at which the worker is suspect: the last heartbeat plus the
    /// timeout, or the registration plus the grace when no heartbeat came.
    #[inline]
    pub fn deadline(&self) -> Instant {
        match self.last {
            Some(t) => t + self.config.timeout,
            None => self.since + self.config.grace,
        }
    }

    /// Whether the worker is suspect at `now` (`now >= deadline`). A `now` earlier than
    /// the latest seen reads as the latest seen. A deadline of [`Instant::MAX`] (a
    /// disabled detector, or one that saturated) is "never", even at `Instant::MAX`.
    #[inline]
    pub fn is_suspect(&self, now: Instant) -> bool {
        let now = if now < self.clock.latest() {
            self.clock.latest()
        } else {
            now
        };
        let deadline = self.deadline();
        deadline != Instant::MAX && now >= deadline
    }

    /// When the last heartbeat arrived, if one did since registration.
    pub const fn last_heartbeat(&self) -> Option<Instant> {
        self.last
    }

    /// When the worker registered (or last restarted).
    pub const fn registered_at(&self) -> Instant {
        self.since
    }

    /// How long the worker has been silent at `now`: since its last heartbeat, or since
    /// registration when none came. Zero for a `now` before that.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last.unwrap_or(self.since))
    }

    /// The rules in force.
    pub const fn config(&self) -> &DeadlineConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_defaults_dead_after_30_s() {
        let mut d = DeadlineDetector::new(DeadlineConfig::default(), Instant::ZERO);
        // Heartbeats every 10 s keep it alive.
        for s in [10, 20, 30, 40] {
            d.heartbeat(Instant::from_secs(s));
            assert!(!d.is_suspect(Instant::from_secs(s + 29)));
        }
        assert_eq!(d.deadline(), Instant::from_secs(70));
        assert!(!d.is_suspect(Instant::from_nanos(69_999_999_999)));
        assert!(d.is_suspect(Instant::from_secs(70)));
        assert_eq!(d.silence(Instant::from_secs(70)), Duration::from_secs(30));
        assert_eq!(d.last_heartbeat(), Some(Instant::from_secs(40)));
    }

    #[test]
    fn never_heartbeats_suspect_after_grace() {
        let cfg = DeadlineConfig::new(Duration::from_secs(5), Duration::from_secs(20)).unwrap();
        let d = DeadlineDetector::new(cfg, Instant::from_secs(100));
        assert_eq!(d.last_heartbeat(), None);
        assert_eq!(d.deadline(), Instant::from_secs(120));
        assert!(!d.is_suspect(Instant::from_secs(119)));
        assert!(d.is_suspect(Instant::from_secs(120)));
        assert_eq!(d.silence(Instant::from_secs(125)), Duration::from_secs(25));
    }

    #[test]
    fn backward_clock_is_harmless() {
        let cfg = DeadlineConfig::new(Duration::from_secs(5), Duration::from_secs(5)).unwrap();
        let mut d = DeadlineDetector::new(cfg, Instant::from_secs(10));
        d.heartbeat(Instant::from_secs(20));
        // A heartbeat stamped in the past counts at the latest time seen.
        d.heartbeat(Instant::from_secs(1));
        assert_eq!(d.last_heartbeat(), Some(Instant::from_secs(20)));
        assert_eq!(d.deadline(), Instant::from_secs(25));
        // A query in the past reads as the latest seen.
        assert!(!d.is_suspect(Instant::ZERO));
        d.restart(Instant::from_secs(3));
        assert_eq!(d.registered_at(), Instant::from_secs(20));
        assert_eq!(d.deadline(), Instant::from_secs(25));
    }

    #[test]
    fn disabled_never_suspects() {
        let mut d = DeadlineDetector::new(DeadlineConfig::disabled(), Instant::from_secs(5));
        assert_eq!(d.deadline(), Instant::MAX);
        assert!(!d.is_suspect(Instant::from_secs(1_000_000_000)));
        d.heartbeat(Instant::from_secs(6));
        assert_eq!(d.deadline(), Instant::MAX);
        // Not even at the end of time (a clock that jumped to its maximum).
        assert!(!d.is_suspect(Instant::MAX));
        d.heartbeat(Instant::MAX);
        assert!(!d.is_suspect(Instant::MAX));
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert_eq!(
            DeadlineConfig::new(Duration::ZERO, Duration::from_secs(1))
                .unwrap_err()
                .field(),
            "timeout"
        );
        assert_eq!(
            DeadlineConfig::new(Duration::from_secs(1), Duration::ZERO)
                .unwrap_err()
                .field(),
            "grace"
        );
    }
}
