//! The worker side of the supervisor: the [`WorkerPool`] trait, the [`Order`]s it
//! receives and the [`Report`]s it sends back through a [`Reporter`].

use std::time::Duration;

use sturdy_core::{FailureKind, TaskId, WorkerId};
use tokio::sync::mpsc::UnboundedSender;

/// One attempt handed to a worker.
#[derive(Debug)]
#[non_exhaustive]
pub struct Order<'a, T> {
    /// The ledger's id of the task; echo it in [`Report::Finished`].
    pub task: TaskId,
    /// The caller's key of the task (for example its line number).
    pub key: u64,
    /// The attempt number, from 1, counting attempts of earlier runs when resumed.
    pub attempt: u32,
    /// The ledger's epoch of this attempt; echo it in [`Report::Finished`].
    pub epoch: u32,
    /// What to run.
    pub payload: &'a T,
    /// The per-attempt timeout the worker enforces, if any (a timed-out attempt is
    /// reported as [`FailureKind::TaskTimeout`]).
    pub timeout: Option<Duration>,
}

/// How an attempt ended, as its worker saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finish {
    /// `None` on success, else the classified failure.
    pub failure: Option<FailureKind>,
    /// An exit status, when the attempt was a process that exited.
    pub exit: Option<i32>,
    /// A signal number, when the attempt was a process killed by a signal.
    pub signal: Option<i32>,
}

impl Finish {
    /// A success.
    pub const OK: Self = Self {
        failure: None,
        exit: None,
        signal: None,
    };

    /// A failure of `kind` with no further detail.
    pub const fn failed(kind: FailureKind) -> Self {
        Self {
            failure: Some(kind),
            exit: None,
            signal: None,
        }
    }

    /// A process result: its exit status or signal and the classification.
    pub const fn process(
        failure: Option<FailureKind>,
        exit: Option<i32>,
        signal: Option<i32>,
    ) -> Self {
        Self {
            failure,
            exit,
            signal,
        }
    }
}

/// A report from a worker to the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// The worker is alive; renews its deadline and its tasks' leases.
    Heartbeat,
    /// An attempt ended.
    Finished {
        /// The task, as in the [`Order`].
        task: TaskId,
        /// The epoch, as in the [`Order`].
        epoch: u32,
        /// How it ended.
        finish: Finish,
    },
    /// The worker is gone (its process died, its task panicked, its pipe closed). Its
    /// running attempt is charged as a worker crash and it is restarted with backoff.
    Exited,
}

/// The channel a worker reports through; tagged with the worker and its incarnation so
/// that reports from a worker that has since been replaced are ignored.
#[derive(Clone, Debug)]
pub struct Reporter {
    pub(crate) worker: WorkerId,
    pub(crate) incarnation: u64,
    pub(crate) tx: UnboundedSender<Envelope>,
}

#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) worker: WorkerId,
    pub(crate) incarnation: u64,
    pub(crate) report: Report,
}

impl Reporter {
    /// The worker this reporter speaks for.
    pub const fn worker(&self) -> WorkerId {
        self.worker
    }

    /// Sends a report; returns false when the supervisor is gone.
    pub fn send(&self, report: Report) -> bool {
        self.tx
            .send(Envelope {
                worker: self.worker,
                incarnation: self.incarnation,
                report,
            })
            .is_ok()
    }
}

/// Workers the supervisor drives: in-process tokio tasks ([`LocalPool`](super::LocalPool))
/// or child processes (the `sturdy` CLI).
///
/// Methods must not block: a pool spawns what it needs and reports back through the
/// [`Reporter`] given at [`start`](Self::start). Every dispatched order must end in a
/// [`Report::Finished`] or a [`Report::Exited`] of that worker.
pub trait WorkerPool {
    /// What a task is (a shell command, a closure's input).
    type Task;

    /// Starts worker `worker` (first start or restart after a crash); its reports go
    /// through `reporter`. A worker that cannot start reports [`Report::Exited`].
    fn start(&mut self, worker: WorkerId, reporter: Reporter);

    /// Whether the last [`start`](Self::start) of worker `worker` got it running: false
    /// when it could not start (it then reports [`Report::Exited`]), and the supervisor
    /// gives it no task until a restart succeeds (a task sent to it would be charged a
    /// worker crash that no command caused). True by default.
    fn started(&self, worker: WorkerId) -> bool {
        let _ = worker;
        true
    }

    /// Hands worker `worker` one attempt. It runs one at a time (capacity 1).
    fn dispatch(&mut self, worker: WorkerId, order: Order<'_, Self::Task>);

    /// Kills worker `worker` and its running attempt at once (after missed heartbeats, a
    /// lapsed lease, or a second interrupt). No report is expected afterwards.
    fn kill(&mut self, worker: WorkerId);

    /// Asks every worker to exit once idle (the run is over).
    fn shutdown(&mut self);
}
