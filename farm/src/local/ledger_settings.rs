//! The local farm's fault-tolerance settings and the core ledger's config they make.

use std::time::Duration;

use sturdy_core::ConfigError;
use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::deadline::DeadlineConfig;
use sturdy_core::manager::LedgerConfig;
use sturdy_core::retry::RetryPolicy;

/// How a dead worker is detected from its heartbeats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Detector {
    /// Silent longer than this.
    Deadline(Duration),
    /// Phi accrual above this threshold.
    Phi(f64),
}

/// A local run's retry, backoff, detection and breaker settings (`sturdy run`'s
/// options), from which [`LedgerSettings::ledger_config`] makes the core ledger's config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LedgerSettings {
    /// Attempts a task gets for its own failures (`--max-attempts`).
    pub max_attempts: u32,
    /// The first retry's delay (`--backoff-base`); zero: retry at once.
    pub backoff_base: Duration,
    /// The longest retry delay (`--backoff-cap`).
    pub backoff_cap: Duration,
    /// The retry delay's jitter (`--jitter`).
    pub jitter: Jitter,
    /// How a dead worker is detected.
    pub detector: Detector,
    /// How often workers heartbeat (`--heartbeat-interval`).
    pub heartbeat_interval: Duration,
    /// Consecutive failures that open a worker's breaker (`--breaker-failures`).
    pub breaker_failures: u32,
    /// How long an open breaker stays open (`--breaker-open`).
    pub breaker_open: Duration,
    /// Worker crashes a task survives (`--max-worker-crashes`).
    pub max_worker_crashes: u32,
    /// The ledger's seed (retry jitter).
    pub seed: u64,
}

impl LedgerSettings {
    /// The core ledger's config: exponential backoff (factor 2) from
    /// [`backoff_base`](Self::backoff_base) up to [`backoff_cap`](Self::backoff_cap)
    /// with the jitter; the deadline detector's timeout (with the phi detector, which
    /// the supervisor runs, the ledger's deadline only backs it up at 30 heartbeats, at
    /// least 30 s), at least 5 s of grace for a fresh worker, a lease of twice the
    /// timeout, the breaker, and a worker's crash counted apart from the task's own
    /// failures and never opening its breaker (a worker is the farm's own process: its
    /// crash is an outside kill or an OOM kill, not the slot's fault).
    ///
    /// # Errors
    /// The core's [`ConfigError`] naming the field and the rule broken.
    pub fn ledger_config(&self) -> Result<LedgerConfig, ConfigError> {
        let s = self;
        let backoff = if s.backoff_base.is_zero() {
            BackoffConfig::constant(Duration::ZERO)
        } else {
            BackoffConfig::exponential(s.backoff_base, 2000, s.backoff_cap)
                .and_then(|b| b.with_jitter(s.jitter))?
        };
        let retry = RetryPolicy::new(s.max_attempts, backoff)?;
        // With the phi detector the supervisor suspects workers; the ledger's deadline
        // then only backs it up at a generous silence.
        let timeout = match s.detector {
            Detector::Deadline(t) => t,
            Detector::Phi(_) => (s.heartbeat_interval * 30).max(Duration::from_secs(30)),
        };
        // A fresh worker process needs a moment before its first heartbeat.
        let grace = timeout.max(Duration::from_secs(5));
        let deadline = DeadlineConfig::new(timeout, grace)?;
        LedgerConfig::new(retry)
            .with_deadline(deadline)
            .with_lease(timeout.saturating_mul(2))
            .and_then(|c| c.with_breaker(s.breaker_failures, s.breaker_open, 1))
            // A worker is our own process: its crash is an outside kill or an OOM kill,
            // not the slot's fault, and not the task's (counted apart, see
            // --max-worker-crashes).
            .map(|c| {
                c.with_crash_limit(s.max_worker_crashes)
                    .with_crashes_open_breaker(false)
            })
            .map(|c| c.with_seed(s.seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(detector: Detector) -> LedgerSettings {
        LedgerSettings {
            max_attempts: 3,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(2),
            jitter: Jitter::Full,
            detector,
            heartbeat_interval: Duration::from_millis(200),
            breaker_failures: 3,
            breaker_open: Duration::from_secs(30),
            max_worker_crashes: 4,
            seed: 7,
        }
    }

    #[test]
    fn the_lease_is_twice_the_detector_s_timeout_and_crashes_never_open_the_breaker() {
        let c = settings(Detector::Deadline(Duration::from_secs(2)))
            .ledger_config()
            .unwrap();
        assert_eq!(c.lease(), Duration::from_secs(4));
        assert_eq!(c.deadline().timeout(), Duration::from_secs(2));
        assert_eq!(c.deadline().grace(), Duration::from_secs(5));
        assert_eq!((c.crash_limit(), c.seed()), (4, 7));
        assert!(!c.crashes_open_breaker());
        // With phi, the ledger's deadline backs it up at 30 heartbeats, at least 30 s.
        let c = settings(Detector::Phi(8.0)).ledger_config().unwrap();
        assert_eq!(c.lease(), Duration::from_secs(60));
        assert_eq!(c.deadline().timeout(), Duration::from_secs(30));
    }

    #[test]
    fn a_broken_setting_is_the_core_s_error() {
        let mut s = settings(Detector::Deadline(Duration::from_secs(2)));
        s.max_attempts = 0;
        assert!(s.ledger_config().is_err());
    }
}
