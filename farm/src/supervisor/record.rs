//! What the supervisor tells its caller: attempt records, the [`Observer`] hooks and
//! the final [`Summary`].

use std::time::{Duration, SystemTime};

use sturdy_core::manager::Event;
use sturdy_core::{FailureKind, TaskId, WorkerId};

use super::pool::{Finish, Order};

/// What an attempt led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// The task succeeded with this attempt.
    Done,
    /// The attempt failed and the task will run again (after the retry delay, or at
    /// once on another worker when its worker crashed).
    Retry,
    /// The attempt failed and the task failed for good.
    GaveUp,
    /// The ledger rejected the result as stale (the task had been reassigned or had
    /// finished); nothing changed.
    Stale,
    /// The attempt was killed by an abort (a second interrupt); the task is unfinished.
    Interrupted,
}

impl Verdict {
    /// A short stable name: `done`, `retry`, `gave_up`, `stale`, `interrupted`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retry => "retry",
            Self::GaveUp => "gave_up",
            Self::Stale => "stale",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One ended attempt, as a journal records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The ledger's task id.
    pub task: TaskId,
    /// The caller's key of the task.
    pub key: u64,
    /// The attempt number (from 1, counting earlier runs when resumed).
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: WorkerId,
    /// The ledger's epoch of the attempt.
    pub epoch: u32,
    /// Wall-clock start (for people; decisions use the monotonic clock).
    pub started: SystemTime,
    /// Wall-clock end.
    pub ended: SystemTime,
    /// How it ended (failure kind, exit status, signal).
    pub finish: Finish,
    /// What it led to.
    pub verdict: Verdict,
}

/// Hooks the supervisor calls as the run goes; every method has an empty default.
/// They run on the supervisor's task: keep them short (append a line, bump a counter).
pub trait Observer<T> {
    /// An attempt was dispatched to `worker`.
    fn attempt_started(&mut self, worker: WorkerId, order: &Order<'_, T>) {
        let _ = (worker, order);
    }
    /// An attempt ended (reported, crashed with its worker, or interrupted).
    fn attempt_ended(&mut self, record: &AttemptRecord, payload: &T) {
        let _ = (record, payload);
    }
    /// Every ledger event, in order.
    fn event(&mut self, event: &Event) {
        let _ = event;
    }
    /// A checkpoint was written (its generation) or failed.
    fn checkpointed(&mut self, result: Result<u64, &std::io::Error>) {
        let _ = result;
    }
    /// A worker process or task died and will be restarted after `delay`.
    fn worker_restarting(&mut self, worker: WorkerId, delay: Duration) {
        let _ = (worker, delay);
    }
    /// Whether a checkpoint that is due may be written; false skips it (no
    /// [`checkpointed`](Self::checkpointed) call follows). A checkpoint must never hold
    /// more than the observer's own record: once that record failed to take an ending
    /// (a journal line not written on a full disk), a checkpoint of the ledger would
    /// call the task finished while the record does not. True by default.
    fn checkpoint_allowed(&mut self) -> bool {
        true
    }
    /// A checkpoint of a supervisor with a feed ([`Supervisor::set_feed`]) is about to
    /// be written: `keys[i]` is the key of the task in ledger slot `i` now (slots are
    /// recycled, so the mapping changes as the run goes). Return the payload to store
    /// with it, or `None` to keep the last one.
    ///
    /// [`Supervisor::set_feed`]: super::Supervisor::set_feed
    fn checkpoint_payload(&mut self, keys: &[u64]) -> Option<Vec<u8>> {
        let _ = keys;
        None
    }
}

/// The observer that observes nothing.
impl<T> Observer<T> for () {}

/// The outcome of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Tasks in the run: with a feed (`Supervisor::set_feed`), the tasks taken from it so
    /// far (a stop leaves the rest of the feed untaken and uncounted).
    pub tasks: usize,
    /// Tasks that succeeded.
    pub succeeded: usize,
    /// Tasks that failed for good, with the kind of their last failure: `(key, kind)`.
    pub failed: Vec<(u64, FailureKind)>,
    /// Tasks among `tasks` that neither succeeded nor failed (the run was stopped).
    pub unfinished: usize,
    /// Attempts dispatched.
    pub attempts: u64,
    /// Retries scheduled by the retry policy (ledger statistic).
    pub retries: u64,
    /// Tasks moved off a failed, silent or lease-lapsed worker (ledger statistic).
    pub reassignments: u64,
    /// Workers that died (exited, panicked, or were killed after missed heartbeats).
    pub worker_crashes: u64,
    /// Times a worker's circuit breaker opened.
    pub breaker_trips: u64,
    /// Late results rejected by epoch (ledger statistic).
    pub stale_results: u64,
    /// Whether the run was stopped by [`StopHandle`](super::StopHandle) before every
    /// task finished.
    pub interrupted: bool,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Summary {
    /// True when every task succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.succeeded == self.tasks
    }
}
