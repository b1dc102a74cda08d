//! The ledger's errors: refused inputs and rejected results.

use core::fmt;

use crate::failure::{TaskId, WorkerId};

use super::event::StaleReason;

/// An input the ledger refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LedgerError {
    /// The task table is full (`capacity` tasks, the `TASKS` parameter).
    TasksFull {
        /// The table's capacity.
        capacity: usize,
    },
    /// The worker table is full (`capacity` workers, the `WORKERS` parameter).
    WorkersFull {
        /// The table's capacity.
        capacity: usize,
    },
    /// A worker's capacity must be at least 1.
    ZeroCapacity,
    /// No such task in this ledger.
    UnknownTask(TaskId),
    /// No such worker in this ledger.
    UnknownWorker(WorkerId),
    /// The task already ended the other way (`mark_succeeded` on a task failed for good,
    /// or `mark_failed` on a succeeded one).
    TaskFinished(TaskId),
    /// The task has not finished (it is pending or running), so its slot cannot take a
    /// new task ([`Ledger::recycle_task`](super::Ledger::recycle_task)).
    TaskNotFinished(TaskId),
    /// The slot's epoch is past `u32::MAX / 2`: recycling it again could wrap its
    /// fencing tokens ([`Ledger::recycle_task`](super::Ledger::recycle_task)).
    EpochsExhausted(TaskId),
    /// The worker was reported failed: heartbeats are refused until
    /// `worker_recovered`.
    WorkerDown(WorkerId),
    /// [`add_task_resumed`](super::Ledger::add_task_resumed) was given more own failures
    /// and crashes than attempts made (`own_failures + crashes > attempts_made`).
    ResumeCounts {
        /// Attempts made, as given.
        attempts_made: u32,
        /// Own failures, as given.
        own_failures: u32,
        /// Crashes, as given.
        crashes: u32,
    },
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TasksFull { capacity } => write!(f, "task table full ({capacity} tasks)"),
            Self::WorkersFull { capacity } => {
                write!(f, "worker table full ({capacity} workers)")
            }
            Self::ZeroCapacity => f.write_str("worker capacity must be >= 1"),
            Self::UnknownTask(t) => write!(f, "unknown {t}"),
            Self::UnknownWorker(w) => write!(f, "unknown {w}"),
            Self::TaskFinished(t) => write!(f, "{t} already finished"),
            Self::TaskNotFinished(t) => write!(f, "{t} has not finished; its slot is in use"),
            Self::EpochsExhausted(t) => {
                write!(
                    f,
                    "{t}: the slot's epochs are past u32::MAX / 2; use another slot"
                )
            }
            Self::WorkerDown(w) => write!(f, "{w} is marked failed; recover it first"),
            Self::ResumeCounts {
                attempts_made,
                own_failures,
                crashes,
            } => write!(
                f,
                "own_failures + crashes must be <= attempts_made \
                 ({own_failures} + {crashes} > {attempts_made})"
            ),
        }
    }
}

impl core::error::Error for LedgerError {}

/// A result (or lease renewal) the ledger did not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ResultError {
    /// No such task in this ledger (not counted).
    UnknownTask(TaskId),
    /// The result came too late or twice; counted in
    /// [`Stats::stale_results_rejected`](super::Stats::stale_results_rejected).
    Stale(StaleReason),
}

impl fmt::Display for ResultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownTask(t) => write!(f, "unknown {t}"),
            Self::Stale(r) => write!(f, "stale result: {r}"),
        }
    }
}

impl core::error::Error for ResultError {}
