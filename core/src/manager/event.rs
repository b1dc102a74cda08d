//! What the ledger reports: [`Event`]s, pulled from a bounded queue.

use core::fmt;
use core::time::Duration;

use heapless::Deque;

use crate::failure::{FailureKind, TaskId, WorkerId};
use crate::retry::GiveUpReason;
use crate::time::Instant;

use crate::breaker::State as BreakerState;

/// Why a running task went back to pending without a result from its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum RequeueReason {
    /// The supervisor reported the worker failed ([`Ledger::worker_failed`](super::Ledger::worker_failed)).
    WorkerFailed,
    /// The deadline detector (or an outside one) suspected the worker.
    WorkerSuspected,
    /// The task's lease lapsed: nobody renewed it in time.
    LeaseExpired,
    /// The ledger was restored from a checkpoint while the task was running: its worker
    /// is gone with the process that crashed.
    Restored,
}

/// Why a result was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum StaleReason {
    /// The result's epoch is not the task's current one: the task was reassigned since
    /// (or the epoch was never issued).
    OldEpoch {
        /// The task's current epoch.
        current: u32,
    },
    /// The task had already succeeded or failed for good.
    Finished,
    /// A result for an attempt that already ended: its failure was reported, or (for a
    /// failure report) it was charged when its worker failed or its lease lapsed.
    AlreadyCharged,
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OldEpoch { current } => write!(f, "old epoch (current epoch is {current})"),
            Self::Finished => f.write_str("task already finished"),
            Self::AlreadyCharged => f.write_str("attempt already ended"),
        }
    }
}

/// Something that happened in the ledger. Every variant carries `at`, the ledger's time
/// (the latest `now` seen) when it happened. Shape: at most 48 bytes, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Event {
    /// A task was given to a worker ([`Ledger::assign`](super::Ledger::assign)).
    Assigned {
        /// The task.
        task: TaskId,
        /// The worker.
        worker: WorkerId,
        /// The new epoch (1 for the first assignment).
        epoch: u32,
        /// The attempt number (1 = first call).
        attempt: u32,
        /// When.
        at: Instant,
    },
    /// A task succeeded: its result was accepted (exactly once per task).
    Succeeded {
        /// The task.
        task: TaskId,
        /// The worker that ran the accepted attempt.
        worker: Option<WorkerId>,
        /// The attempt's epoch.
        epoch: u32,
        /// The attempt number.
        attempt: u32,
        /// When.
        at: Instant,
    },
    /// An attempt failed: reported by the supervisor (an own failure of the task), or
    /// lost because the worker failed, went silent or let the lease lapse (a crash,
    /// counted on the task's crash counter), or lost in a restore.
    AttemptFailed {
        /// The task.
        task: TaskId,
        /// The worker that ran it.
        worker: Option<WorkerId>,
        /// The attempt's epoch.
        epoch: u32,
        /// The attempt number.
        attempt: u32,
        /// The failure's kind.
        kind: FailureKind,
        /// When.
        at: Instant,
    },
    /// A failed task will be retried once its retry timer passes.
    RetryScheduled {
        /// The task.
        task: TaskId,
        /// The next attempt's number.
        attempt: u32,
        /// The delay drawn from the retry policy.
        delay: Duration,
        /// When the task becomes runnable again.
        ready_at: Instant,
        /// When.
        at: Instant,
    },
    /// A running task went back to pending without a result (a crash under the crash
    /// limit, or a restore); it is runnable at once.
    Requeued {
        /// The task.
        task: TaskId,
        /// The worker it was running on.
        worker: WorkerId,
        /// The epoch of the attempt that was lost.
        epoch: u32,
        /// Why.
        reason: RequeueReason,
        /// When.
        at: Instant,
    },
    /// A task failed for good (counted once): the retry policy gave up, or a crash took
    /// it past the crash limit ([`GiveUpReason::CrashLimit`]).
    GaveUp {
        /// The task.
        task: TaskId,
        /// Attempts made in total.
        attempts: u32,
        /// The last failure's kind.
        kind: FailureKind,
        /// Why no retry.
        reason: GiveUpReason,
        /// When.
        at: Instant,
    },
    /// A running task's lease lapsed (followed by `Requeued` or `GaveUp`).
    LeaseExpired {
        /// The task.
        task: TaskId,
        /// Its worker.
        worker: WorkerId,
        /// The epoch whose lease lapsed.
        epoch: u32,
        /// When.
        at: Instant,
    },
    /// A result was rejected: it came too late or twice. Counted in
    /// [`Stats::stale_results_rejected`](super::Stats::stale_results_rejected).
    StaleResult {
        /// The task.
        task: TaskId,
        /// The epoch the result carried.
        epoch: u32,
        /// Why.
        reason: StaleReason,
        /// When.
        at: Instant,
    },
    /// The deadline detector found a worker silent past its timeout (or its grace
    /// period, when it never heartbeated), or an outside detector suspected it
    /// ([`Ledger::suspect_worker`](super::Ledger::suspect_worker)).
    WorkerSuspected {
        /// The worker.
        worker: WorkerId,
        /// How long it had been silent.
        silence: Duration,
        /// When.
        at: Instant,
    },
    /// The supervisor reported a worker failed.
    WorkerFailed {
        /// The worker.
        worker: WorkerId,
        /// Why.
        kind: FailureKind,
        /// When.
        at: Instant,
    },
    /// A failed or suspect worker is back (recovered, or heartbeating again).
    WorkerRecovered {
        /// The worker.
        worker: WorkerId,
        /// When.
        at: Instant,
    },
    /// A worker's circuit breaker changed state.
    Breaker {
        /// The worker.
        worker: WorkerId,
        /// The state before.
        from: BreakerState,
        /// The state after.
        to: BreakerState,
        /// When.
        at: Instant,
    },
}

/// A bounded FIFO of events with a dropped-events counter: when full, the newest event
/// is dropped and counted (the queue never grows, never blocks).
#[derive(Clone, Debug)]
pub(crate) struct EventQueue<const N: usize> {
    queue: Deque<Event, N>,
    dropped: u64,
}

impl<const N: usize> EventQueue<N> {
    pub(crate) const fn new() -> Self {
        Self {
            queue: Deque::new(),
            dropped: 0,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, ev: Event) {
        if self.queue.push_back(ev).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.queue.pop_front()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.dropped = 0;
    }
}
