//! The ledger's persistent part, task by task, and its restore (used by
//! [`checkpoint`](crate::checkpoint)).
//!
//! A snapshot keeps, per task: its state, epoch, retry state (attempts, backoff
//! position and jitter stream), the kind of its latest failure and the worker of its
//! latest attempt; and the counters. It does not keep workers (they are gone after a
//! crash and register again), retry timers (the clock's origin changes with the process;
//! pending tasks are runnable at once after a restore), the failure histories or the
//! event queue.
//!
//! Nor does it keep a task's crash counter ([`TaskView::crashes`](super::TaskView::crashes)):
//! a restored task's crash count starts at 0 (its own failures, in the retry state, are
//! kept). The encoded format is the same as before crash counting.

use crate::failure::{FailureKind, WorkerId};
use crate::retry::RetryState;
use crate::time::Instant;

use super::Ledger;
use super::event::RequeueReason;
use super::stats::Stats;
use super::task::{Task, TaskState};
use super::worker::NIL;

/// A task's state as saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum SavedState {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One task as saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TaskRecord {
    pub(crate) state: SavedState,
    pub(crate) epoch: u32,
    pub(crate) retried: bool,
    pub(crate) last_kind: Option<FailureKind>,
    pub(crate) last_worker: Option<u32>,
    /// Present once the task was assigned and while it is not finished.
    pub(crate) retry: Option<RetryState>,
}

impl TaskRecord {
    /// Whether the record is self-consistent (a running or once-assigned task has an
    /// epoch and a worker; a running one has a retry state).
    pub(crate) fn is_valid(&self) -> bool {
        match self.state {
            SavedState::Running => {
                self.epoch > 0 && self.last_worker.is_some() && self.retry.is_some()
            }
            SavedState::Pending => self.epoch == 0 || self.retry.is_some(),
            SavedState::Succeeded | SavedState::Failed => true,
        }
    }
}

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Tasks restored in all.
    pub tasks: u32,
    /// Tasks that had succeeded (they are never run again).
    pub succeeded: u32,
    /// Tasks that had failed for good.
    pub failed: u32,
    /// Tasks pending now (runnable at once), the requeued ones included.
    pub pending: u32,
    /// Tasks that were running when the snapshot was taken: back to pending, each
    /// charged one attempt of the retry policy (not a crash: crash counts are not saved,
    /// and the saved attempts bound a task that crashes the whole process), or failed
    /// for good when that was their last.
    pub requeued: u32,
}

impl<const WORKERS: usize, const TASKS: usize, const EVENTS: usize, const HISTORY: usize>
    Ledger<WORKERS, TASKS, EVENTS, HISTORY>
{
    /// The saved form of task `idx` (which must exist).
    pub(crate) fn task_record(&self, idx: usize) -> TaskRecord {
        let t = &self.tasks[idx];
        let (state, worker) = match t.state {
            TaskState::Pending => (SavedState::Pending, None),
            TaskState::Running { worker, .. } => (SavedState::Running, Some(worker.0)),
            TaskState::Succeeded => (SavedState::Succeeded, None),
            TaskState::Failed => (SavedState::Failed, None),
        };
        let last_worker = worker.or((t.last_worker != NIL).then_some(t.last_worker));
        TaskRecord {
            state,
            // A recycled slot saves its task's own count: a restore starts its
            // epochs there (restored attempts are requeued, never reported on).
            epoch: t.attempts(),
            retried: t.retried,
            last_kind: t.last_kind,
            last_worker,
            retry: (t.attempts() > 0 && !t.state.is_finished()).then_some(t.retry),
        }
    }

    /// The counters to save.
    pub(crate) fn saved_stats(&self) -> Stats {
        self.stats
    }

    /// Replaces every task and counter with the saved ones, at `now`. Workers stay
    /// registered with nothing running. The caller checked that `records` holds at
    /// most `TASKS` valid records.
    pub(crate) fn restore_records(
        &mut self,
        stats: &Stats,
        records: impl Iterator<Item = TaskRecord> + Clone,
        now: Instant,
    ) -> Restored {
        let now = self.clock.observe(now);
        // Attempts running in this ledger end here: their breaker permits go back
        // uncounted (a half-open probe slot must not stay busy).
        for idx in 0..self.tasks.len() {
            if let TaskState::Running { worker, .. } = self.tasks[idx].state
                && let Some(p) = self.tasks[idx].permit.take()
            {
                self.with_breaker(worker.0 as usize, now, |b| b.release(p.unpark(), now));
            }
        }
        self.tasks.clear();
        self.ready.clear();
        self.delayed.clear();
        self.events.clear();
        let mut failed_workers = 0;
        for w in self.workers.iter_mut() {
            w.head = NIL;
            w.load = 0;
            w.lease_check = Instant::MAX;
            if !w.status.is_alive() {
                failed_workers += 1;
            }
        }
        self.stats = Stats {
            pending_tasks: 0,
            running_tasks: 0,
            succeeded_tasks: 0,
            failed_tasks: 0,
            tasks_with_retries: 0,
            failed_workers,
            breakers_open: 0,
            breakers_half_open: 0,
            events_dropped: 0,
            ..*stats
        };
        self.stats.recovery_attempts = self.stats.recovery_attempts.saturating_add(1);
        let mut out = Restored::default();
        let mut running: u32 = 0;
        for rec in records.clone() {
            let idx = self.tasks.len() as u32;
            let mut t = Task::new(now);
            t.epoch = rec.epoch;
            t.retried = rec.retried;
            t.last_kind = rec.last_kind;
            t.last_worker = rec.last_worker.unwrap_or(NIL);
            if let Some(r) = rec.retry {
                t.retry = r;
            }
            t.state = match rec.state {
                SavedState::Succeeded => TaskState::Succeeded,
                SavedState::Failed => TaskState::Failed,
                SavedState::Pending | SavedState::Running => TaskState::Pending,
            };
            if self.tasks.push(t).is_err() {
                break; // the caller checked the count; stay total anyway
            }
            out.tasks += 1;
            if rec.retried {
                self.stats.tasks_with_retries += 1;
            }
            match rec.state {
                SavedState::Succeeded => {
                    self.stats.succeeded_tasks += 1;
                    out.succeeded += 1;
                }
                SavedState::Failed => {
                    self.stats.failed_tasks += 1;
                    out.failed += 1;
                }
                SavedState::Pending => {
                    self.stats.pending_tasks += 1;
                    self.enqueue(idx, now);
                }
                SavedState::Running => {
                    running += 1;
                }
            }
        }
        // Running tasks lost their workers with the crashed process: charge each one
        // attempt (a task that crashed the whole master still ends) and requeue it.
        if running > 0 {
            for (idx, rec) in records.enumerate().take(self.tasks.len()) {
                if rec.state != SavedState::Running {
                    continue;
                }
                let worker = WorkerId(rec.last_worker.unwrap_or(NIL));
                self.stats.pending_tasks += 1;
                out.requeued += 1;
                self.charge(
                    idx as u32,
                    worker,
                    FailureKind::WorkerCrash,
                    None,
                    Some(RequeueReason::Restored),
                    now,
                );
            }
        }
        out.pending = self.stats.pending_tasks;
        out
    }
}
