//! The ledger's rules: retry policy, heartbeat deadline, lease and breaker.

use core::time::Duration;

use crate::deadline::DeadlineConfig;
use crate::error::ConfigError;
use crate::retry::RetryPolicy;

use super::worker::BreakerRules;

/// How a [`Ledger`](super::Ledger) decides. Build with [`new`](Self::new) or
/// [`default`](Self::default), then the `with_*` methods. Shape: about 160 bytes, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct LedgerConfig {
    pub(crate) retry: RetryPolicy,
    pub(crate) deadline: DeadlineConfig,
    pub(crate) lease: Duration,
    pub(crate) breaker: BreakerRules,
    pub(crate) seed: u64,
}

impl Default for LedgerConfig {
    /// The original's defaults made sound: [`RetryPolicy::default`] (3 attempts in
    /// total, 5 s doubling to 300 s, full jitter), heartbeat timeout and grace 30 s, lease
    /// 30 s, breaker 3 consecutive failures / open 300 s / 2 successes to close, seed 0.
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            deadline: DeadlineConfig::default(),
            lease: Duration::from_secs(30),
            breaker: BreakerRules::default(),
            seed: 0,
        }
    }
}

impl LedgerConfig {
    /// The defaults with `retry` as the tasks' retry policy.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..Self::default()
        }
    }

    /// Workers are suspect after `deadline.timeout` without a heartbeat (or
    /// `deadline.grace` after registration without any).
    pub fn with_deadline(mut self, deadline: DeadlineConfig) -> Self {
        self.deadline = deadline;
        self
    }

    /// A running task's lease: it lapses `lease` after the assignment or the latest
    /// renewal (a heartbeat of its worker, or `renew_lease`).
    ///
    /// # Errors
    /// A zero `lease`.
    pub fn with_lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        if lease.is_zero() {
            return Err(ConfigError::new("lease", "must be > 0"));
        }
        self.lease = lease;
        Ok(self)
    }

    /// Each worker's circuit breaker opens after `failure_threshold` consecutive
    /// failures, stays open for `open_for`, then half-opens and lets up to
    /// `success_threshold` trial tasks through; that many successes close it, a failure
    /// reopens it.
    ///
    /// # Errors
    /// A zero `failure_threshold` or `success_threshold`.
    pub fn with_breaker(
        mut self,
        failure_threshold: u32,
        open_for: Duration,
        success_threshold: u32,
    ) -> Result<Self, ConfigError> {
        if failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be >= 1"));
        }
        if success_threshold == 0 {
            return Err(ConfigError::new("success_threshold", "must be >= 1"));
        }
        self.breaker = BreakerRules {
            failure_threshold,
            open_for,
            success_threshold,
        };
        Ok(self)
    }

    /// The seed of the retry jitter (each task draws from its own stream derived from
    /// it); the same seed gives the same delays.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The tasks' retry policy.
    pub const fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The heartbeat deadline rules.
    pub const fn deadline(&self) -> &DeadlineConfig {
        &self.deadline
    }

    /// The lease of a running task.
    pub const fn lease(&self) -> Duration {
        self.lease
    }

    /// The breaker's consecutive failures to open.
    pub const fn breaker_failure_threshold(&self) -> u32 {
        self.breaker.failure_threshold
    }

    /// How long a breaker stays open.
    pub const fn breaker_open_for(&self) -> Duration {
        self.breaker.open_for
    }

    /// The breaker's successes in half-open to close.
    pub const fn breaker_success_threshold(&self) -> u32 {
        self.breaker.success_threshold
    }

    /// The jitter seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }
}
