//! Workers as the ledger sees them: status, health mark, load and capacity, heartbeat
//! deadline and circuit breaker.

use crate::breaker::{ConsecutiveBreaker, State as BreakerState};
use crate::deadline::DeadlineDetector;
use crate::failure::{FailureKind, WorkerId};
use crate::time::Instant;

/// Index value meaning "no task" in the per-worker list of running tasks.
pub(crate) const NIL: u32 = u32::MAX;

/// Whether a worker is up, as far as the ledger knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum WorkerStatus {
    /// Registered and not known to be down (it may not have heartbeated yet: its grace
    /// period applies).
    Alive,
    /// Silent past its heartbeat timeout (or grace period) since `since`. Its running
    /// tasks were requeued; its next heartbeat brings it back.
    Suspect {
        /// When the detector suspected it.
        since: Instant,
    },
    /// Reported failed by the supervisor. Its running tasks were requeued; only
    /// [`Ledger::worker_recovered`](super::Ledger::worker_recovered) brings it back
    /// (heartbeats from it are refused until then).
    Failed {
        /// Why it failed.
        kind: FailureKind,
        /// When.
        since: Instant,
    },
}

impl WorkerStatus {
    /// Whether the worker is up ([`Alive`](Self::Alive)).
    pub const fn is_alive(self) -> bool {
        matches!(self, Self::Alive)
    }
}

/// The health mark the supervisor sets from its host and GPU assessment.
///
/// Critical workers get no new task (their running tasks go on); degraded workers get
/// tasks only when no healthy worker can take one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum WorkerHealth {
    /// Use normally.
    #[default]
    Healthy,
    /// Use last.
    Degraded,
    /// Give nothing new.
    Critical,
}

/// One worker's record in the ledger.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Worker {
    pub(crate) capacity: u32,
    pub(crate) load: u32,
    pub(crate) status: WorkerStatus,
    pub(crate) health: WorkerHealth,
    pub(crate) detector: DeadlineDetector,
    /// Event queue of 1: the ledger reads states, never the breaker's events.
    pub(crate) breaker: ConsecutiveBreaker<1>,
    /// First running task on this worker (an intrusive list through the tasks), or NIL.
    pub(crate) head: u32,
    /// A lower bound of the earliest lease among its running tasks.
    pub(crate) lease_check: Instant,
}

/// A read-only view of one worker (from [`Ledger::worker`](super::Ledger::worker)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerView {
    /// Its id.
    pub id: WorkerId,
    /// Up, suspect or failed.
    pub status: WorkerStatus,
    /// The supervisor's health mark.
    pub health: WorkerHealth,
    /// Tasks running on it now.
    pub load: u32,
    /// Tasks it may run at once.
    pub capacity: u32,
    /// Its circuit breaker's state.
    pub breaker: BreakerState,
    /// Its circuit breaker's measurements (calls, failures, rejections, reopens).
    pub breaker_metrics: crate::breaker::Metrics,
    /// Its last heartbeat since registration or recovery, if any.
    pub last_heartbeat: Option<Instant>,
    /// When it becomes suspect without a further heartbeat.
    pub heartbeat_deadline: Instant,
}

impl Worker {
    /// Whether the ledger may give this worker a task at `now` (getter).
    #[inline]
    pub(crate) fn can_take_task(&self, now: Instant) -> bool {
        self.load < self.capacity
            && self.status.is_alive()
            && self.health != WorkerHealth::Critical
            && !self.detector.is_suspect(now)
            && self.breaker_admits(now)
    }

    /// Whether the breaker would admit a call at `now` (getter: mirrors
    /// `ConsecutiveBreaker::try_acquire` without changing it).
    #[inline]
    pub(crate) fn breaker_admits(&self, now: Instant) -> bool {
        match self.breaker.state() {
            s if s.admits_all() => true,
            BreakerState::Open { until } => now >= until,
            BreakerState::HalfOpen => {
                self.breaker.metrics().probes_in_flight < self.breaker.config().half_open_permits()
            }
            _ => false,
        }
    }
}
