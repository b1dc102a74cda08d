//! The ledger's rules: retry policy, crash limit, heartbeat deadline, lease and breaker.

use core::time::Duration;

use crate::deadline::DeadlineConfig;
use crate::error::ConfigError;
use crate::retry::RetryPolicy;

use crate::breaker::ConsecutiveConfig;

/// How a [`Ledger`](super::Ledger) decides. Build with [`new`](Self::new) or
/// [`default`](Self::default), then the `with_*` methods. Shape: about 160 bytes, `Copy`.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "LedgerConfigUnchecked"))]
#[non_exhaustive]
pub struct LedgerConfig {
    pub(crate) retry: RetryPolicy,
    pub(crate) deadline: DeadlineConfig,
    pub(crate) lease: Duration,
    pub(crate) breaker: ConsecutiveConfig,
    pub(crate) seed: u64,
    pub(crate) crash_limit: u32,
    pub(crate) crashes_open_breaker: bool,
}

/// The default crash limit: a task may be under 3 worker crashes and requeued each time;
/// the 4th fails it for good (Dask's `distributed.scheduler.allowed-failures` default).
const DEFAULT_CRASH_LIMIT: u32 = 3;

impl Default for LedgerConfig {
    /// [`LedgerConfig::ORIGINAL`].
    fn default() -> Self {
        Self::ORIGINAL
    }
}

impl LedgerConfig {
    /// The original's defaults made sound: [`RetryPolicy::default`] (3 attempts in
    /// total, 5 s doubling to 300 s, full jitter), heartbeat timeout and grace 30 s, lease
    /// 30 s, breaker 3 consecutive failures / open 300 s / 2 successes to close, seed 0,
    /// crash limit 3, crashes count against the worker's breaker. The [`Default`].
    pub const ORIGINAL: Self = Self {
        retry: RetryPolicy::ORIGINAL,
        deadline: DeadlineConfig::ORIGINAL,
        lease: Duration::from_secs(30),
        breaker: ledger_breaker(ConsecutiveConfig::original()),
        seed: 0,
        crash_limit: DEFAULT_CRASH_LIMIT,
        crashes_open_breaker: true,
    };
}

impl LedgerConfig {
    /// The defaults with `retry` as the tasks' retry policy.
    pub const fn new(retry: RetryPolicy) -> Self {
        Self {
            retry,
            ..Self::ORIGINAL
        }
    }

    /// Workers are suspect after `deadline.timeout()` without a heartbeat (or
    /// `deadline.grace()` after registration without any).
    pub const fn with_deadline(mut self, deadline: DeadlineConfig) -> Self {
        self.deadline = deadline;
        self
    }

    /// A running task's lease: it lapses `lease` after the assignment or the latest
    /// renewal (a heartbeat of its worker, or `renew_lease`).
    ///
    /// # Errors
    /// A zero `lease`.
    pub const fn with_lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        if lease.is_zero() {
            return Err(ConfigError::new("lease", "must be > 0"));
        }
        self.lease = lease;
        Ok(self)
    }

    /// Each worker's circuit breaker opens after `failure_threshold` consecutive
    /// failures, stays open for `open_for`, then half-opens and lets one trial task
    /// through at a time; `success_threshold` successes close it, a failure reopens it.
    /// (A [`ConsecutiveBreaker`](crate::breaker::ConsecutiveBreaker) per worker.)
    ///
    /// # Errors
    /// A zero `failure_threshold`, `success_threshold` or `open_for`;
    /// `success_threshold` above 65 535.
    pub const fn with_breaker(
        mut self,
        failure_threshold: u32,
        open_for: Duration,
        success_threshold: u32,
    ) -> Result<Self, ConfigError> {
        if success_threshold > u16::MAX as u32 {
            return Err(ConfigError::new("success_threshold", "must be <= 65535"));
        }
        match ConsecutiveConfig::new(failure_threshold, open_for, success_threshold as u16) {
            Ok(c) => self.breaker = ledger_breaker(c),
            Err(e) => return Err(e),
        }
        Ok(self)
    }

    /// Each worker's circuit breaker follows `breaker` (probes in half-open, probe
    /// timeout, counted failure kinds). In a ledger a probe (a trial task) always comes
    /// back, through its result, its lease or its worker's failure, so the defaults set
    /// no probe timeout; a finite one here counts a trial task running longer than it as
    /// failed.
    pub const fn with_breaker_config(mut self, breaker: ConsecutiveConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The seed of the retry jitter (each task draws from its own stream derived from
    /// it); the same seed gives the same delays.
    pub const fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many crashes under a task it survives (after Dask's `allowed-failures`).
    /// A crash is an attempt lost because its worker failed
    /// ([`worker_failed`](super::Ledger::worker_failed)), was suspected (the deadline
    /// detector or [`suspect_worker`](super::Ledger::suspect_worker)) or let the task's
    /// lease lapse. A crash does not consume an attempt of the retry policy's
    /// `max_attempts` and does not move its backoff: it counts on the task's own crash
    /// counter, and the task is requeued, runnable at once, while the counter is at most
    /// `limit`; the crash that takes it above `limit` (the `limit + 1`-th) fails the task
    /// for good ([`GiveUpReason::CrashLimit`](crate::retry::GiveUpReason::CrashLimit)).
    /// `0` fails a task at its first crash. Default 3. Every `u32` is valid.
    pub const fn with_crash_limit(mut self, limit: u32) -> Self {
        self.crash_limit = limit;
        self
    }

    /// Whether crashes count against the crashed worker's circuit breaker. `true` (the
    /// default, the original's behaviour): a worker failure or a suspicion records one
    /// failure on the worker's breaker, and a lapsed lease records its permit as a
    /// `TaskTimeout` failure. `false`: none of the three ever counts against the breaker
    /// (the permits of the lost attempts are released uncounted); for a farm whose
    /// workers are its own processes, where a crash is a kill from outside, not the
    /// slot's fault. A task's own failures (`task_failed`) count either way.
    pub const fn with_crashes_open_breaker(mut self, open: bool) -> Self {
        self.crashes_open_breaker = open;
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

    /// Each worker's breaker rules.
    pub const fn breaker(&self) -> &ConsecutiveConfig {
        &self.breaker
    }

    /// The jitter seed.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// Crashes a task survives (see [`with_crash_limit`](Self::with_crash_limit)).
    pub const fn crash_limit(&self) -> u32 {
        self.crash_limit
    }

    /// Whether crashes count against the worker's breaker (see
    /// [`with_crashes_open_breaker`](Self::with_crashes_open_breaker)).
    pub const fn crashes_open_breaker(&self) -> bool {
        self.crashes_open_breaker
    }
}

/// A breaker config for a ledger: no probe timeout (a trial task's lease bounds it).
const fn ledger_breaker(c: ConsecutiveConfig) -> ConsecutiveConfig {
    match c.with_permit_timeout(Duration::MAX) {
        Ok(c) => c,
        Err(_) => c,
    }
}

/// The serialized shape of [`LedgerConfig`], checked on the way in (the retry policy
/// and the breaker check themselves). The two crash fields are last and default when
/// absent (a self-describing config written before they existed still reads).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct LedgerConfigUnchecked {
    retry: RetryPolicy,
    deadline: DeadlineConfig,
    lease: Duration,
    breaker: ConsecutiveConfig,
    seed: u64,
    #[serde(default = "default_crash_limit")]
    crash_limit: u32,
    #[serde(default = "default_true")]
    crashes_open_breaker: bool,
}

#[cfg(feature = "serde")]
const fn default_crash_limit() -> u32 {
    DEFAULT_CRASH_LIMIT
}

#[cfg(feature = "serde")]
const fn default_true() -> bool {
    true
}

#[cfg(feature = "serde")]
impl TryFrom<LedgerConfigUnchecked> for LedgerConfig {
    type Error = ConfigError;
    fn try_from(u: LedgerConfigUnchecked) -> Result<Self, ConfigError> {
        Ok(Self::new(u.retry)
            .with_deadline(u.deadline)
            .with_lease(u.lease)?
            .with_breaker_config(u.breaker)
            .with_seed(u.seed)
            .with_crash_limit(u.crash_limit)
            .with_crashes_open_breaker(u.crashes_open_breaker))
    }
}
