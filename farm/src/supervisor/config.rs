//! The supervisor's settings and the host health it is gated on.

#[cfg(doc)]
use super::{Order, Supervisor};

use std::time::Duration;

use sturdy_core::WorkerId;
use sturdy_core::backoff::BackoffConfig;
use sturdy_core::health::HealthStatus;
use sturdy_core::manager::{LedgerConfig, WorkerHealth};
use sturdy_core::phi::PhiConfig;

/// Settings of a [`Supervisor`] beyond the ledger's own.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SupervisorConfig {
    /// The ledger's configuration (retry policy, deadline detector, lease, breakers).
    pub ledger: LedgerConfig,
    /// Delay before restarting a dead worker, growing with consecutive crashes of that
    /// worker and reset by its next success. Default: exponential from 100 ms, doubling,
    /// capped at 10 s, full jitter.
    pub restart_backoff: BackoffConfig,
    /// Per-attempt timeout handed to the workers in each [`Order`].
    pub task_timeout: Option<Duration>,
    /// Seed of the restart backoff's jitter.
    pub seed: u64,
    /// A phi accrual detector per worker (after Hayashibara et al. 2004, as Akka
    /// computes it) in addition to the ledger's deadline detector: a worker whose phi
    /// reaches the threshold is killed and restarted like a silent one.
    pub phi: Option<PhiConfig>,
}

impl SupervisorConfig {
    /// The defaults around a ledger configuration.
    pub fn new(ledger: LedgerConfig) -> Self {
        let restart_backoff =
            BackoffConfig::exponential(Duration::from_millis(100), 2000, Duration::from_secs(10))
                .unwrap_or_else(|_| BackoffConfig::constant(Duration::from_millis(100)));
        Self {
            ledger,
            restart_backoff,
            task_timeout: None,
            seed: 0x5eed,
            phi: None,
        }
    }

    /// With a restart backoff.
    pub fn with_restart_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.restart_backoff = backoff;
        self
    }

    /// With a phi accrual detector per worker.
    pub fn with_phi(mut self, phi: PhiConfig) -> Self {
        self.phi = Some(phi);
        self
    }

    /// With a per-attempt timeout.
    pub fn with_task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.task_timeout = timeout;
        self
    }
}

/// The host's health as the supervisor uses it: the overall status gates dispatch
/// (nothing new while [`HealthStatus::Critical`]); per-worker marks order it (a
/// degraded worker is used last, a critical one not at all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostHealth {
    /// The host's assessment.
    pub status: HealthStatus,
    /// Marks for single workers (for example the worker of a degraded GPU).
    pub workers: Vec<(WorkerId, WorkerHealth)>,
}
