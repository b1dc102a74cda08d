//! Workers as the ledger sees them: status, health mark, load and capacity, heartbeat
//! deadline and circuit breaker.

use core::time::Duration;

use crate::deadline::DeadlineDetector;
use crate::failure::{FailureKind, WorkerId};
use crate::time::Instant;

/// Index value meaning "no task" in the per-worker list of running tasks.
pub(crate) const NIL: u32 = u32::MAX;

/// Whether a worker is up, as far as the ledger knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// A worker's circuit breaker state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// No call passes until `until`, when the breaker half-opens.
    Open {
        /// When the breaker half-opens.
        until: Instant,
    },
    /// A few trial calls pass; enough successes close the breaker, a failure reopens it.
    HalfOpen,
}

/// The breaker rules the ledger gives each worker. Defaults are the original's
/// (`circuit_breaker_threshold = 3`, `timeout = 300 s`, `success_threshold = 2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct BreakerRules {
    pub(crate) failure_threshold: u32,
    pub(crate) open_for: Duration,
    pub(crate) success_threshold: u32,
}

impl Default for BreakerRules {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            open_for: Duration::from_secs(300),
            success_threshold: 2,
        }
    }
}

/// A worker's consecutive-failure breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WorkerBreaker {
    state: BreakerState,
    failures: u32,
    successes: u32,
    in_flight: u32,
}

impl WorkerBreaker {
    pub(crate) const fn new() -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            successes: 0,
            in_flight: 0,
        }
    }

    pub(crate) const fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call would be admitted at `now` (getter).
    #[inline]
    pub(crate) fn admits(&self, rules: &BreakerRules, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } => now >= until,
            BreakerState::HalfOpen => self.in_flight < rules.success_threshold,
        }
    }

    /// Moves open to half-open once the open period passed; returns the transition.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<(BreakerState, BreakerState)> {
        if let BreakerState::Open { until } = self.state
            && now >= until
        {
            let from = self.state;
            self.state = BreakerState::HalfOpen;
            self.successes = 0;
            self.in_flight = 0;
            return Some((from, self.state));
        }
        None
    }

    /// Takes a permit for one call (the caller checked [`admits`](Self::admits)).
    pub(crate) fn acquire(&mut self, now: Instant) -> Option<(BreakerState, BreakerState)> {
        let t = self.handle_timeout(now);
        if self.state == BreakerState::HalfOpen {
            self.in_flight += 1;
        }
        t
    }

    /// A call ended (successfully or not), or failure outside a call (`in_call` false).
    pub(crate) fn record(
        &mut self,
        rules: &BreakerRules,
        success: bool,
        in_call: bool,
        now: Instant,
    ) -> Option<(BreakerState, BreakerState)> {
        let from = self.state;
        if in_call && self.state == BreakerState::HalfOpen {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        match (self.state, success) {
            (BreakerState::Closed, true) => self.failures = 0,
            (BreakerState::Closed, false) => {
                self.failures += 1;
                if self.failures >= rules.failure_threshold {
                    self.open(rules, now);
                }
            }
            (BreakerState::HalfOpen, true) => {
                self.successes += 1;
                if self.successes >= rules.success_threshold {
                    self.state = BreakerState::Closed;
                    self.failures = 0;
                    self.successes = 0;
                    self.in_flight = 0;
                }
            }
            (BreakerState::HalfOpen, false) => self.open(rules, now),
            // While open: a late success or failure of a call admitted before it opened
            // changes nothing (the open period is not restarted).
            (BreakerState::Open { .. }, _) => {}
        }
        (from != self.state).then_some((from, self.state))
    }

    fn open(&mut self, rules: &BreakerRules, now: Instant) {
        self.state = BreakerState::Open {
            until: now + rules.open_for,
        };
        self.failures = 0;
        self.successes = 0;
        self.in_flight = 0;
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }
}

/// One worker's record in the ledger.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Worker {
    pub(crate) capacity: u32,
    pub(crate) load: u32,
    pub(crate) status: WorkerStatus,
    pub(crate) health: WorkerHealth,
    pub(crate) detector: DeadlineDetector,
    pub(crate) breaker: WorkerBreaker,
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
    /// Its last heartbeat since registration or recovery, if any.
    pub last_heartbeat: Option<Instant>,
    /// When it becomes suspect without a further heartbeat.
    pub heartbeat_deadline: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_original_semantics_made_sound() {
        let r = BreakerRules::default();
        let mut b = WorkerBreaker::new();
        let t = Instant::from_secs(1);
        assert_eq!(b.record(&r, false, false, t), None);
        assert_eq!(b.record(&r, false, false, t), None);
        // A success in closed resets the consecutive count.
        assert_eq!(b.record(&r, true, true, t), None);
        assert_eq!(b.record(&r, false, false, t), None);
        assert_eq!(b.record(&r, false, false, t), None);
        let until = Instant::from_secs(301);
        assert_eq!(
            b.record(&r, false, false, t),
            Some((BreakerState::Closed, BreakerState::Open { until }))
        );
        assert!(!b.admits(&r, Instant::from_secs(300)));
        assert!(b.admits(&r, until));
        assert_eq!(b.poll_timeout(), Some(until));
        assert_eq!(
            b.acquire(until),
            Some((BreakerState::Open { until }, BreakerState::HalfOpen))
        );
        assert!(b.admits(&r, until));
        assert_eq!(b.acquire(until), None);
        // Two trial calls in flight: no third.
        assert!(!b.admits(&r, until));
        assert_eq!(b.record(&r, true, true, until), None);
        assert_eq!(
            b.record(&r, true, true, until),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
        assert_eq!(b.poll_timeout(), None);
    }

    #[test]
    fn half_open_failure_reopens() {
        let r = BreakerRules::default();
        let mut b = WorkerBreaker::new();
        for _ in 0..3 {
            b.record(&r, false, false, Instant::ZERO);
        }
        let t = Instant::from_secs(300);
        assert_eq!(b.handle_timeout(Instant::from_secs(299)), None);
        assert!(b.handle_timeout(t).is_some());
        b.acquire(t);
        assert_eq!(
            b.record(&r, false, true, t),
            Some((
                BreakerState::HalfOpen,
                BreakerState::Open {
                    until: Instant::from_secs(600)
                }
            ))
        );
    }
}
