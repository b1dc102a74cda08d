//! Tasks as the ledger sees them: state, epoch, retry state and a bounded failure history.

use heapless::HistoryBuf;

use crate::breaker::ParkedPermit;
use crate::failure::{FailureEvent, FailureKind, TaskId, WorkerId};
use crate::retry::RetryState;
use crate::time::Instant;

use super::attribution::PriorFailure;
use super::record::{Phase, Record};
use super::worker::NIL;

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for a worker (and for its retry timer, if one is set).
    Pending,
    /// Given to `worker` under `epoch`; the lease lapses at `lease` unless renewed.
    Running {
        /// The worker running it.
        worker: WorkerId,
        /// The attempt's epoch (its fencing token): only a result with this epoch counts.
        epoch: u32,
        /// When the lease lapses unless the worker heartbeats or renews it.
        lease: Instant,
    },
    /// Succeeded (a result was accepted; it is never run again).
    Succeeded,
    /// Failed for good (the retry policy gave up, or its workers crashed under it more
    /// often than the crash limit allows).
    Failed,
}

impl TaskState {
    /// Whether the task is finished (succeeded or failed for good).
    pub const fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// What the supervisor gets from [`Ledger::assign`](super::Ledger::assign): run `task`
/// on `worker`, and report the result with `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
#[must_use = "an assignment not dispatched is only recovered when its lease lapses"]
pub struct Assignment {
    /// The task to run.
    pub task: TaskId,
    /// The worker to run it on.
    pub worker: WorkerId,
    /// The epoch to quote in the result (`task_succeeded`, `task_failed`).
    pub epoch: u32,
    /// The attempt number (1 = first call), for the task's environment and the journal.
    pub attempt: u32,
    /// When the lease lapses unless renewed by the worker's heartbeats.
    pub lease: Instant,
}

/// A read-only view of one task (from [`Ledger::task`](super::Ledger::task)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskView {
    /// Its id.
    pub id: TaskId,
    /// Where it stands.
    pub state: TaskState,
    /// Its current epoch (the fencing token of its newest attempt): the number of times
    /// it was assigned (0 = never), counted on from the slot's previous task for a
    /// recycled slot ([`Ledger::recycle_task`](super::Ledger::recycle_task)).
    pub epoch: u32,
    /// Attempts started so far (equal to the epoch, less the epoch the slot had when a
    /// recycled slot took this task).
    pub attempts: u32,
    /// Crashes counted under it: attempts lost because their worker failed, was
    /// suspected or let the lease lapse (see
    /// [`LedgerConfig::with_crash_limit`](super::LedgerConfig::with_crash_limit)). They
    /// do not count toward the retry policy's `max_attempts`. Starts at 0 after a
    /// checkpoint restore (checkpoints do not keep it).
    pub crashes: u32,
    /// For a pending task, when its retry timer passes (it may run from then on).
    pub ready_at: Option<Instant>,
    /// The kind of its latest failure, if any.
    pub last_failure: Option<FailureKind>,
    /// The worker of its latest attempt, if any.
    pub last_worker: Option<WorkerId>,
}

/// One task's record in the ledger.
#[derive(Clone, Debug)]
pub(crate) struct Task<const H: usize> {
    pub(crate) state: TaskState,
    pub(crate) ready_at: Instant,
    pub(crate) epoch: u32,
    /// The epoch when this slot's task was put in it: 0 for a task added, the previous
    /// occupant's last epoch for a recycled slot (see
    /// [`Ledger::recycle_task`](super::Ledger::recycle_task)). Epochs of a slot never
    /// repeat; attempt numbers count from it (`attempt = epoch - base`).
    pub(crate) base: u32,
    pub(crate) retry: RetryState,
    pub(crate) last_worker: u32,
    pub(crate) last_kind: Option<FailureKind>,
    /// The worker of its last failed attempt (own failure or crash), or NIL: with
    /// `last_kind`, what breaker attribution compares a new failure with.
    pub(crate) failed_on: u32,
    pub(crate) retried: bool,
    /// Crashes counted under it (attempts lost with their worker).
    pub(crate) crashes: u32,
    /// Pending because its attempt was lost (worker failed, lease lapsed, restore), not
    /// because the attempt reported a result: a late success of that attempt counts.
    pub(crate) requeued: bool,
    /// The worker's breaker permit while running.
    pub(crate) permit: Option<ParkedPermit>,
    /// Links in the list of tasks running on the same worker.
    pub(crate) next: u32,
    pub(crate) prev: u32,
    pub(crate) history: HistoryBuf<FailureEvent, H>,
}

impl<const H: usize> Task<H> {
    pub(crate) const fn new(now: Instant) -> Self {
        Self {
            state: TaskState::Pending,
            ready_at: now,
            epoch: 0,
            base: 0,
            retry: RetryState::new(now, 0),
            last_worker: NIL,
            last_kind: None,
            failed_on: NIL,
            retried: false,
            crashes: 0,
            requeued: false,
            permit: None,
            next: NIL,
            prev: NIL,
            history: HistoryBuf::new(),
        }
    }

    /// The task's record, for the rules of [`record`](super::record): the phase from
    /// the state (a pending task is `Open` before its first claim, `Lost` when its
    /// claim was lost with its worker, `Retrying` after its own failure), claims = the
    /// epoch, own failures = those the retry state retried (no rule reads them; a
    /// final give-up's own failure is not among them).
    pub(crate) fn record(&self) -> Record {
        let phase = match self.state {
            TaskState::Running { .. } => Phase::Claimed,
            TaskState::Succeeded => Phase::Done,
            TaskState::Failed => Phase::GaveUp,
            TaskState::Pending if self.epoch == self.base => Phase::Open,
            TaskState::Pending if self.requeued => Phase::Lost,
            TaskState::Pending => Phase::Retrying,
        };
        Record {
            phase,
            claims: self.epoch,
            crashes: self.crashes,
            own_failures: self.retry.attempts().saturating_sub(1),
        }
    }

    /// Its previous failed attempt, as seen from an attempt on `worker` that failed now
    /// (before that failure is recorded), for [`attribution`](super::attribution);
    /// `None` when it never failed (or only before a checkpoint restore, which keeps no
    /// worker).
    pub(crate) fn prior_failure(&self, worker: WorkerId) -> Option<PriorFailure> {
        let kind = self.last_kind?;
        (self.failed_on != NIL).then_some(PriorFailure {
            kind,
            elsewhere: self.failed_on != worker.0,
        })
    }

    /// Attempts started for the slot's current task (its epoch less its base).
    pub(crate) const fn attempts(&self) -> u32 {
        self.epoch.saturating_sub(self.base)
    }

    pub(crate) fn view(&self, id: TaskId) -> TaskView {
        TaskView {
            id,
            state: self.state,
            epoch: self.epoch,
            attempts: self.attempts(),
            crashes: self.crashes,
            ready_at: matches!(self.state, TaskState::Pending).then_some(self.ready_at),
            last_failure: self.last_kind,
            last_worker: (self.last_worker != NIL).then_some(WorkerId(self.last_worker)),
        }
    }
}
