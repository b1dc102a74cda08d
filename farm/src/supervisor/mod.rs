//! The supervisor: drives the core's [`Ledger`] in real time over a pool of workers.
//!
//! It holds no fault-tolerance decision of its own. Dispatch is
//! [`Ledger::assign`]; results go to [`Ledger::task_succeeded`] and
//! [`Ledger::task_failed_with_code`] (the retry policy answers); heartbeats, leases,
//! the per-worker circuit breakers and the deadline detector live in the ledger and are
//! advanced by [`Ledger::handle_timeout`]. The supervisor only does what needs I/O:
//! reads the clock, sleeps until [`Ledger::poll_timeout`], moves orders and reports
//! between the ledger and the [`WorkerPool`], kills a worker the ledger stopped trusting
//! (suspected silent, or whose task was taken away), restarts dead workers after a
//! [`BackoffConfig`](sturdy_core::backoff::BackoffConfig) delay, holds dispatch while the host is critical (health gating),
//! and tells an [`Observer`] every attempt and event.
//!
//! Workers sit behind [`WorkerPool`]: [`LocalPool`] runs in-process tokio tasks for
//! library users; the `sturdy` CLI runs child processes. Both get the same guarantees:
//! every task runs until it succeeds or fails for good, a crashed worker's task is
//! reassigned, a late result of a replaced attempt is rejected by its epoch.
//!
//! ```
//! use std::time::Duration;
//! use sturdy_core::FailureKind;
//! use sturdy_core::manager::LedgerConfig;
//! use sturdy_core::retry::fixed_policy;
//! use sturdy_farm::supervisor::{LocalPool, Supervisor, SupervisorConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let ledger = LedgerConfig::new(fixed_policy(3, Duration::from_millis(1)).unwrap());
//! // Each task is a number; the job fails on its first attempt for odd numbers.
//! let pool = LocalPool::new(Duration::from_millis(100), |n: u64, attempt: u32| async move {
//!     if n % 2 == 1 && attempt == 1 { Err(FailureKind::Network) } else { Ok(()) }
//! });
//! let mut sup: Box<Supervisor<_, 4, 64>> =
//!     Supervisor::new(SupervisorConfig::new(ledger), pool, 2).unwrap();
//! for n in 0..10u64 { sup.add_task(n, 0, n).unwrap(); }
//! let summary = sup.run(&mut ()).await;
//! assert_eq!((summary.succeeded, summary.retries), (10, 5));
//! # }
//! ```

mod config;
mod local;
mod pool;
mod record;
mod saved_run;
mod stop;

use std::time::{Duration, SystemTime};

use sturdy_core::backoff::BackoffState;
use sturdy_core::checkpoint::{self, DecodeError, Resume};
use sturdy_core::health::HealthStatus;
use sturdy_core::manager::{BreakerState, Event, Ledger, LedgerError, TaskState};
use sturdy_core::phi::PhiAccrual;
use sturdy_core::retry::Decision;
use sturdy_core::{FailureKind, Instant, TaskId, WorkerId};
use tokio::sync::{mpsc, watch};

use sturdy_tokio::checkpoint_store::CheckpointStore;

pub use config::{HostHealth, SupervisorConfig};
pub use local::LocalPool;
pub use pool::{Finish, Order, Report, Reporter, WorkerPool};
pub use record::{AttemptRecord, Observer, Summary, Verdict};

pub use saved_run::{SavedRun, read_checkpoint};
pub use stop::{Stop, StopHandle};

use saved_run::boxed_ledger;

use pool::Envelope;

/// Why a task could not be added.
#[derive(Debug)]
pub struct AddTaskError<T> {
    /// The ledger's refusal (its task table is full, or resumed counts that do not add
    /// up, see [`Supervisor::add_task_resumed`]).
    pub error: LedgerError,
    /// The task, handed back.
    pub payload: T,
}

impl<T> std::fmt::Display for AddTaskError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot add task: {}", self.error)
    }
}

impl<T: std::fmt::Debug> std::error::Error for AddTaskError<T> {}

struct TaskSlot<T> {
    key: u64,
    prior_attempts: u32,
    payload: T,
    /// The ledger's epoch of the slot when this task took it (0 for a slot's first
    /// task): a report of an epoch up to it is of an earlier task of the slot.
    base_epoch: u32,
}

/// A task a [`Supervisor`] takes from its feed ([`Supervisor::set_feed`]): the caller's
/// `key`, what earlier runs already did (as for [`Supervisor::add_task_resumed`]; all
/// 0 for a fresh task), and the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FedTask<T> {
    /// The caller's key (shown in records).
    pub key: u64,
    /// Attempts earlier runs started.
    pub attempts_made: u32,
    /// Of those, failed on their own.
    pub own_failures: u32,
    /// Of those, lost with their worker.
    pub crashes: u32,
    /// The task.
    pub payload: T,
}

impl<T> FedTask<T> {
    /// A task never run before.
    pub const fn new(key: u64, payload: T) -> Self {
        Self {
            key,
            attempts_made: 0,
            own_failures: 0,
            crashes: 0,
            payload,
        }
    }

    /// A task earlier runs started `attempts_made` times, of which `own_failures`
    /// failed on their own and `crashes` were lost with their worker.
    pub const fn resumed(
        key: u64,
        attempts_made: u32,
        own_failures: u32,
        crashes: u32,
        payload: T,
    ) -> Self {
        Self {
            key,
            attempts_made,
            own_failures,
            crashes,
            payload,
        }
    }
}

/// A feed of tasks and what the window keeps of the tasks it let go.
struct Feed<T> {
    tasks: Box<dyn Iterator<Item = FedTask<T>>>,
    /// A task taken from `tasks` that found no slot yet.
    held: Option<FedTask<T>>,
    /// `tasks` returned `None`.
    done: bool,
    /// The most slots filled from the feed.
    window: usize,
    /// Slots whose task ended, to be given the next tasks.
    ended: Vec<TaskId>,
    /// Tasks whose slot went to a later task: how many, and how they ended.
    retired: usize,
    retired_succeeded: usize,
    retired_failed: Vec<(u64, FailureKind)>,
}

impl<T> Feed<T> {
    fn next(&mut self) -> Option<FedTask<T>> {
        if let Some(t) = self.held.take() {
            return Some(t);
        }
        if self.done {
            return None;
        }
        let t = self.tasks.next();
        self.done = t.is_none();
        t
    }

    fn exhausted(&self) -> bool {
        self.done && self.held.is_none()
    }
}

#[derive(Clone, Copy)]
struct Running {
    task: TaskId,
    epoch: u32,
    attempt: u32,
    started: SystemTime,
}

struct WorkerSlot {
    incarnation: u64,
    /// `Some(at)`: dead, to be restarted at `at`.
    restart_at: Option<Instant>,
    backoff: BackoffState,
    running: Option<Running>,
    phi: Option<PhiAccrual<PHI_WINDOW>>,
}

/// Heartbeat intervals the phi detector remembers per worker.
const PHI_WINDOW: usize = 64;

/// Drives a [`Ledger`] of `W` workers and `T` tasks over a [`WorkerPool`]. See the
/// [module docs](self).
pub struct Supervisor<P: WorkerPool, const W: usize, const T: usize> {
    ledger: Box<Ledger<W, T>>,
    pool: P,
    config: SupervisorConfig,
    tasks: Vec<TaskSlot<P::Task>>,
    workers: Vec<WorkerSlot>,
    origin: tokio::time::Instant,
    tx: mpsc::UnboundedSender<Envelope>,
    rx: mpsc::UnboundedReceiver<Envelope>,
    stop_tx: watch::Sender<Stop>,
    health: Option<watch::Receiver<HostHealth>>,
    summary: Summary,
    checkpoints: Option<Checkpointing>,
    feed: Option<Feed<P::Task>>,
}

struct Checkpointing {
    store: CheckpointStore,
    experiment: String,
    every: Duration,
    payload: Vec<u8>,
    generation: u64,
    last: tokio::time::Instant,
}

impl<P: WorkerPool, const W: usize, const T: usize> Supervisor<P, W, T> {
    /// A supervisor of `workers` workers (capacity 1 each) with no task yet.
    ///
    /// # Errors
    /// More workers than `W`, or zero.
    pub fn new(
        config: SupervisorConfig,
        pool: P,
        workers: usize,
    ) -> Result<Box<Self>, LedgerError> {
        if workers == 0 {
            return Err(LedgerError::ZeroCapacity);
        }
        let mut ledger = boxed_ledger::<W, T>(config.ledger);
        for _ in 0..workers {
            ledger.add_worker(1, Instant::ZERO)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, _) = watch::channel(Stop::Run);
        let slots = (0..workers)
            .map(|i| WorkerSlot {
                incarnation: 0,
                restart_at: None,
                backoff: BackoffState::new(
                    config.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ),
                running: None,
                phi: None,
            })
            .collect();
        Ok(Box::new(Self {
            ledger,
            pool,
            config,
            tasks: Vec::new(),
            workers: slots,
            origin: tokio::time::Instant::now(),
            tx,
            rx,
            stop_tx,
            health: None,
            summary: Summary::default(),
            checkpoints: None,
            feed: None,
        }))
    }

    /// Adds a task with the caller's `key` (shown in records), the number of attempts
    /// earlier runs already made (`prior_attempts`, for resumed runs; attempt numbers
    /// continue from it), and its payload.
    ///
    /// # Errors
    /// The ledger's task table is full; the payload is handed back.
    pub fn add_task(
        &mut self,
        key: u64,
        prior_attempts: u32,
        payload: P::Task,
    ) -> Result<TaskId, AddTaskError<P::Task>> {
        match self.ledger.add_task(self.now()) {
            Ok(id) => {
                debug_assert_eq!(id.0 as usize, self.tasks.len());
                self.tasks.push(TaskSlot {
                    key,
                    prior_attempts,
                    payload,
                    base_epoch: 0,
                });
                Ok(id)
            }
            Err(error) => Err(AddTaskError { error, payload }),
        }
    }

    /// Adds a task that earlier runs (before a restart without a checkpoint) already
    /// started `attempts_made` times, of which `own_failures` failed on their own and
    /// `crashes` were lost with their worker: the ledger's
    /// [`add_task_resumed`](sturdy_core::manager::Ledger::add_task_resumed). Attempt
    /// numbers continue after `attempts_made`, and the earlier failures and crashes
    /// count toward the retry policy's `max_attempts` and the crash limit, so that
    /// neither budget starts over on a resume. With all three 0 this is
    /// [`add_task`](Self::add_task) with no prior attempts.
    ///
    /// # Errors
    /// The ledger's task table is full, or `own_failures + crashes` exceeds
    /// `attempts_made` (`LedgerError::ResumeCounts`); the payload is handed back.
    pub fn add_task_resumed(
        &mut self,
        key: u64,
        attempts_made: u32,
        own_failures: u32,
        crashes: u32,
        payload: P::Task,
    ) -> Result<TaskId, AddTaskError<P::Task>> {
        let now = self.now();
        match self
            .ledger
            .add_task_resumed(attempts_made, own_failures, crashes, now)
        {
            Ok(id) => {
                debug_assert_eq!(id.0 as usize, self.tasks.len());
                // The ledger numbers the attempts after `attempts_made` itself.
                self.tasks.push(TaskSlot {
                    key,
                    prior_attempts: 0,
                    payload,
                    base_epoch: 0,
                });
                Ok(id)
            }
            Err(error) => Err(AddTaskError { error, payload }),
        }
    }

    /// Takes the run's tasks from `tasks` as it goes, holding at most `window` of them
    /// (and at most `T`) in the ledger at once: when a task ends (succeeded or failed
    /// for good, its last attempt recorded) and no worker still runs anything of it,
    /// its slot takes the next task ([`Ledger::recycle_task_resumed`]), whose epochs go
    /// on from the slot's (a late report of the earlier task is stale and is not
    /// recorded: [`Observer::attempt_ended`] never sees it under the new task's key).
    /// The run ends when the feed is empty and every task it gave has ended. Tasks
    /// added with [`add_task`](Self::add_task) before count toward the window. The
    /// [`Summary`] counts every task of the feed that the run took.
    ///
    /// A window of 0 is taken as 1.
    pub fn set_feed(
        &mut self,
        tasks: impl Iterator<Item = FedTask<P::Task>> + 'static,
        window: usize,
    ) {
        self.feed = Some(Feed {
            tasks: Box::new(tasks),
            held: None,
            done: false,
            window: window.clamp(1, T),
            ended: Vec::new(),
            retired: 0,
            retired_succeeded: 0,
            retired_failed: Vec::new(),
        });
    }

    /// Gives the slots of ended tasks, and free slots up to the window, the feed's
    /// next tasks.
    fn refill(&mut self) {
        let now = self.now();
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        let mut i = 0;
        while i < feed.ended.len() {
            let id = feed.ended[i];
            let busy = self
                .workers
                .iter()
                .any(|w| w.running.is_some_and(|r| r.task == id));
            if busy {
                i += 1;
                continue;
            }
            feed.ended.swap_remove(i);
            let Some(view) = self.ledger.task(id).filter(|v| v.state.is_finished()) else {
                continue; // already given a new task
            };
            let Some(next) = feed.next() else {
                continue; // nothing left: the slot keeps its task for the summary
            };
            match self.ledger.recycle_task_resumed(
                id,
                next.attempts_made,
                next.own_failures,
                next.crashes,
                now,
            ) {
                Ok(_) => {
                    let slot = &mut self.tasks[id.0 as usize];
                    feed.retired += 1;
                    if view.state == TaskState::Succeeded {
                        feed.retired_succeeded += 1;
                    } else {
                        feed.retired_failed
                            .push((slot.key, view.last_failure.unwrap_or(FailureKind::Unknown)));
                    }
                    *slot = TaskSlot {
                        key: next.key,
                        prior_attempts: 0,
                        payload: next.payload,
                        base_epoch: view.epoch,
                    };
                }
                // The slot is spent (its epochs ran high) or the counts do not add
                // up: the task waits for a new slot.
                Err(_) => feed.held = Some(next),
            }
        }
        while self.tasks.len() < feed.window {
            let Some(next) = feed.next() else { break };
            match self.ledger.add_task_resumed(
                next.attempts_made,
                next.own_failures,
                next.crashes,
                now,
            ) {
                Ok(id) => {
                    debug_assert_eq!(id.0 as usize, self.tasks.len());
                    self.tasks.push(TaskSlot {
                        key: next.key,
                        prior_attempts: 0,
                        payload: next.payload,
                        base_epoch: 0,
                    });
                }
                Err(LedgerError::ResumeCounts { .. }) => {
                    // Counts that do not add up: run it as a fresh task.
                    tracing::warn!(key = next.key, "resumed counts do not add up; fresh budget");
                    feed.held = Some(FedTask::new(next.key, next.payload));
                }
                Err(_) => {
                    feed.held = Some(next);
                    break;
                }
            }
        }
    }

    fn feed_exhausted(&self) -> bool {
        self.feed.as_ref().is_none_or(Feed::exhausted)
    }

    /// Gates dispatch on the host's health, read from a watch channel (for example fed
    /// by [`HealthMonitor`](crate) reports).
    pub fn set_health(&mut self, health: watch::Receiver<HostHealth>) {
        self.health = Some(health);
    }

    /// Writes a checkpoint (the ledger's snapshot and `payload`, in the core's
    /// [`checkpoint`] format) to `store` under `experiment` every `every` while
    /// running, and once more when the run ends (finished, drained or aborted).
    /// Generations continue after the newest one stored.
    ///
    /// # Errors
    /// The store's directory cannot be listed, or `experiment` is not a valid name.
    pub fn enable_checkpoints(
        &mut self,
        store: CheckpointStore,
        experiment: impl Into<String>,
        every: Duration,
        payload: Vec<u8>,
    ) -> std::io::Result<()> {
        let experiment = experiment.into();
        let generation = store.list(&experiment)?.last().copied().unwrap_or(0);
        self.checkpoints = Some(Checkpointing {
            store,
            experiment,
            every,
            payload,
            generation,
            last: tokio::time::Instant::now(),
        });
        Ok(())
    }

    /// Writes a checkpoint now (crash-safe, see [`CheckpointStore::save`]); returns its
    /// generation. `Ok(None)` when checkpoints are not enabled.
    ///
    /// # Errors
    /// Encoding or the store's write failed; the previous checkpoints are intact.
    pub fn checkpoint_now(&mut self) -> std::io::Result<Option<u64>> {
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(None);
        };
        let mut buf =
            vec![0u8; checkpoint::max_encoded_len(self.ledger.task_count(), c.payload.len())];
        let n = checkpoint::encode(&self.ledger, c.generation + 1, &c.payload, &mut buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        c.store.save(&c.experiment, c.generation + 1, &buf[..n])?;
        c.generation += 1;
        c.last = tokio::time::Instant::now();
        Ok(Some(c.generation))
    }

    /// Restores a checkpoint's snapshot into this supervisor's ledger before [`run`]
    /// (add the same tasks in the same order first): finished tasks stay finished and
    /// are never run again; tasks that were running go back to pending, charged one
    /// attempt.
    ///
    /// [`run`]: Self::run
    ///
    /// # Errors
    /// Any [`DecodeError`]; the ledger is then unchanged.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Resume, DecodeError> {
        let now = self.now();
        checkpoint::decode(bytes)?.restore_into(&mut *self.ledger, now)
    }

    fn checkpoint_if_due<O: Observer<P::Task>>(&mut self, observer: &mut O, force: bool) {
        let due = self
            .checkpoints
            .as_ref()
            .is_some_and(|c| force || c.last.elapsed() >= c.every);
        if due && observer.checkpoint_allowed() {
            if self.feed.is_some() {
                let keys: Vec<u64> = self.tasks.iter().map(|t| t.key).collect();
                if let Some(p) = observer.checkpoint_payload(&keys)
                    && let Some(c) = self.checkpoints.as_mut()
                {
                    c.payload = p;
                }
            }
            let result = self.checkpoint_now();
            if let Err(e) = &result {
                tracing::warn!(error = %e, "checkpoint not written");
            }
            observer.checkpointed(result.as_ref().map(|g| g.unwrap_or(0)));
        }
    }

    /// A handle to stop the run from elsewhere.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop_tx.clone())
    }

    /// The ledger (statistics, task and worker views, checkpoints).
    pub fn ledger(&self) -> &Ledger<W, T> {
        &self.ledger
    }

    /// The pool.
    pub fn pool(&self) -> &P {
        &self.pool
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn reporter(&self, w: usize) -> Reporter {
        Reporter {
            worker: WorkerId(w as u32),
            incarnation: self.workers[w].incarnation,
            tx: self.tx.clone(),
        }
    }

    fn gate_open(&self) -> bool {
        self.health
            .as_ref()
            .is_none_or(|h| h.borrow().status != HealthStatus::Critical)
    }

    fn apply_health(&mut self) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        let marks = h.borrow_and_update().workers.clone();
        for (w, mark) in marks {
            let _ = self.ledger.set_worker_health(w, mark);
        }
    }

    fn drain_events<O: Observer<P::Task>>(&mut self, observer: &mut O) {
        while let Some(ev) = self.ledger.poll_event() {
            match ev {
                Event::Breaker {
                    to: BreakerState::Open { .. },
                    ..
                } => self.summary.breaker_trips += 1,
                Event::WorkerSuspected { worker, .. } => {
                    // The ledger stopped trusting a silent worker and requeued its task:
                    // make sure it is really gone before a second copy runs.
                    self.worker_died(worker, false, observer);
                }
                _ => {}
            }
            observer.event(&ev);
        }
    }

    /// Marks worker `w` dead: kills it (when `exited` is false), bumps its incarnation,
    /// tells the ledger (when it exited on its own), closes its attempt, and schedules a
    /// restart.
    fn worker_died<O: Observer<P::Task>>(
        &mut self,
        worker: WorkerId,
        exited: bool,
        observer: &mut O,
    ) {
        let w = worker.0 as usize;
        if w >= self.workers.len() || self.workers[w].restart_at.is_some() {
            return;
        }
        let now = self.now();
        if !exited {
            self.pool.kill(worker);
        }
        self.summary.worker_crashes += 1;
        let slot = &mut self.workers[w];
        slot.incarnation += 1;
        let delay = slot.backoff.next_delay(&self.config.restart_backoff);
        slot.restart_at = Some(now.saturating_add(delay));
        let alive = self
            .ledger
            .worker(worker)
            .is_some_and(|v| v.status.is_alive());
        if exited || alive {
            let _ = self
                .ledger
                .worker_failed(worker, FailureKind::WorkerCrash, now);
        }
        observer.worker_restarting(worker, delay);
        self.close_orphan(w, FailureKind::WorkerCrash, observer);
    }

    /// Closes worker `w`'s running attempt when the ledger no longer runs it there.
    fn close_orphan<O: Observer<P::Task>>(
        &mut self,
        w: usize,
        kind: FailureKind,
        observer: &mut O,
    ) {
        let Some(run) = self.workers[w].running else {
            return;
        };
        let still = self.ledger.task(run.task).is_some_and(|v| {
            matches!(v.state, TaskState::Running { worker, epoch, .. } if worker.0 as usize == w && epoch == run.epoch)
        });
        if still {
            return;
        }
        self.workers[w].running = None;
        let verdict = match self.ledger.task(run.task).map(|v| v.state) {
            Some(TaskState::Failed) => Verdict::GaveUp,
            Some(TaskState::Succeeded) => Verdict::Stale,
            _ => Verdict::Retry,
        };
        self.record(w, run, Finish::failed(kind), verdict, observer);
        if self.workers[w].restart_at.is_none() {
            // The ledger took the task away from a live worker (its lease lapsed): stop
            // the old copy before the new one runs.
            self.worker_died(WorkerId(w as u32), false, observer);
        }
    }

    fn record<O: Observer<P::Task>>(
        &mut self,
        w: usize,
        run: Running,
        finish: Finish,
        verdict: Verdict,
        observer: &mut O,
    ) {
        if matches!(verdict, Verdict::Done | Verdict::GaveUp)
            && let Some(feed) = self.feed.as_mut()
        {
            feed.ended.push(run.task);
        }
        let slot = &self.tasks[run.task.0 as usize];
        let rec = AttemptRecord {
            task: run.task,
            key: slot.key,
            attempt: run.attempt,
            worker: WorkerId(w as u32),
            epoch: run.epoch,
            started: run.started,
            ended: SystemTime::now(),
            finish,
            verdict,
        };
        observer.attempt_ended(&rec, &slot.payload);
    }

    fn handle<O: Observer<P::Task>>(&mut self, env: Envelope, observer: &mut O) {
        let w = env.worker.0 as usize;
        if w >= self.workers.len()
            || env.incarnation != self.workers[w].incarnation
            || self.workers[w].restart_at.is_some()
        {
            return; // a report from a worker since replaced
        }
        let now = self.now();
        if let Some(phi) = self.workers[w].phi.as_mut() {
            phi.heartbeat(now);
        }
        match env.report {
            Report::Heartbeat => {
                let _ = self.ledger.heartbeat(env.worker, now);
                // A worker that came up and reports is healthy to restart: a crash
                // storm from outside (kills spread over every worker) must not grow the
                // restart delays of them all; only a worker that dies before it ever
                // reports backs off further.
                self.workers[w].backoff.reset();
            }
            Report::Finished {
                task,
                epoch,
                finish,
            } => {
                let _ = self.ledger.heartbeat(env.worker, now);
                let verdict = match finish.failure {
                    None => match self.ledger.task_succeeded(task, epoch, now) {
                        Ok(_) => Verdict::Done,
                        Err(_) => Verdict::Stale,
                    },
                    Some(kind) => {
                        let code = finish.exit.or(finish.signal);
                        match self
                            .ledger
                            .task_failed_with_code(task, epoch, kind, code, now)
                        {
                            Ok(Decision::RetryAfter(_)) => Verdict::Retry,
                            Ok(_) => Verdict::GaveUp,
                            Err(_) => Verdict::Stale,
                        }
                    }
                };
                if verdict == Verdict::Done {
                    self.workers[w].backoff.reset();
                }
                let run = match self.workers[w].running {
                    Some(r) if r.task == task && r.epoch == epoch => {
                        self.workers[w].running = None;
                        r
                    }
                    _ => Running {
                        task,
                        epoch,
                        attempt: epoch,
                        started: SystemTime::now(),
                    },
                };
                // A report of an earlier task of a recycled slot is not this task's.
                if self
                    .tasks
                    .get(task.0 as usize)
                    .is_some_and(|slot| epoch > slot.base_epoch)
                {
                    self.record(w, run, finish, verdict, observer);
                }
            }
            Report::Exited => self.worker_died(env.worker, true, observer),
        }
    }

    fn restart_due(&mut self, now: Instant) {
        for w in 0..self.workers.len() {
            if self.workers[w].restart_at.is_some_and(|at| at <= now) {
                self.workers[w].restart_at = None;
                self.workers[w].phi = self.config.phi.map(|c| PhiAccrual::new(c, now));
                let r = self.reporter(w);
                self.pool.start(WorkerId(w as u32), r);
                // One that could not start stays down: its report brings the next restart.
                if self.pool.started(WorkerId(w as u32)) {
                    let _ = self.ledger.worker_recovered(WorkerId(w as u32), now);
                }
            }
        }
    }

    fn dispatch_all<O: Observer<P::Task>>(&mut self, now: Instant, observer: &mut O) {
        while let Some(a) = self.ledger.assign(now) {
            let w = a.worker.0 as usize;
            let slot = &self.tasks[a.task.0 as usize];
            let attempt = slot.prior_attempts.saturating_add(a.attempt);
            let order = Order {
                task: a.task,
                key: slot.key,
                attempt,
                epoch: a.epoch,
                payload: &slot.payload,
                timeout: self.config.task_timeout,
            };
            observer.attempt_started(a.worker, &order);
            self.pool.dispatch(a.worker, order);
            // Drain as we go: a burst of assignments must not overflow the event queue.
            self.drain_events(observer);
            self.summary.attempts += 1;
            if let Some(ws) = self.workers.get_mut(w) {
                ws.running = Some(Running {
                    task: a.task,
                    epoch: a.epoch,
                    attempt,
                    started: SystemTime::now(),
                });
            }
        }
    }

    fn running(&self) -> usize {
        self.workers.iter().filter(|w| w.running.is_some()).count()
    }

    fn abort<O: Observer<P::Task>>(&mut self, observer: &mut O) {
        for w in 0..self.workers.len() {
            if let Some(run) = self.workers[w].running.take() {
                self.pool.kill(WorkerId(w as u32));
                self.workers[w].incarnation += 1;
                self.record(
                    w,
                    run,
                    Finish::failed(FailureKind::Cancelled),
                    Verdict::Interrupted,
                    observer,
                );
            }
        }
    }

    fn check_phi<O: Observer<P::Task>>(&mut self, now: Instant, observer: &mut O) {
        for w in 0..self.workers.len() {
            let slot = &self.workers[w];
            if slot.restart_at.is_none() && slot.phi.as_ref().is_some_and(|p| p.suspected(now)) {
                self.worker_died(WorkerId(w as u32), false, observer);
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let restart = self
            .workers
            .iter()
            .filter_map(|w| match (&w.restart_at, &w.phi) {
                (Some(at), _) => Some(*at),
                (None, Some(phi)) => phi.poll_timeout(),
                (None, None) => None,
            })
            .min();
        match (self.ledger.poll_timeout(), restart) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until every task succeeded or failed for good, or a stop request ends it;
    /// returns the summary. Workers are started on entry and shut down on return.
    pub async fn run<O: Observer<P::Task>>(&mut self, observer: &mut O) -> Summary {
        let wall = std::time::Instant::now();
        let mut stop_rx = self.stop_tx.subscribe();
        let now = self.now();
        for w in 0..self.workers.len() {
            self.workers[w].phi = self.config.phi.map(|c| PhiAccrual::new(c, now));
            let r = self.reporter(w);
            self.pool.start(WorkerId(w as u32), r);
            if self.pool.started(WorkerId(w as u32)) {
                let _ = self.ledger.worker_recovered(WorkerId(w as u32), now);
            } else {
                // Down until its report brings a restart; no task goes to it meanwhile.
                let _ =
                    self.ledger
                        .worker_failed(WorkerId(w as u32), FailureKind::WorkerCrash, now);
            }
        }
        self.apply_health();
        loop {
            let now = self.now();
            self.ledger.handle_timeout(now);
            self.drain_events(observer);
            self.check_phi(now, observer);
            for w in 0..self.workers.len() {
                self.close_orphan(w, FailureKind::WorkerCrash, observer);
            }
            let stop = *stop_rx.borrow_and_update();
            if stop == Stop::Abort {
                self.abort(observer);
                break;
            }
            if stop == Stop::Run {
                self.refill();
                self.restart_due(now);
                if self.gate_open() {
                    self.dispatch_all(now, observer);
                    self.drain_events(observer);
                }
            }
            if (self.ledger.is_finished() && self.feed_exhausted())
                || (stop != Stop::Run && self.running() == 0)
            {
                break;
            }
            self.checkpoint_if_due(observer, false);
            let mut wake = self.next_wake();
            if let Some(c) = &self.checkpoints {
                let at = Instant::from_nanos(
                    u64::try_from(
                        (c.last + c.every)
                            .saturating_duration_since(self.origin)
                            .as_nanos(),
                    )
                    .unwrap_or(u64::MAX),
                );
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            let sleep_to = wake.map(|at| self.origin + Duration::from_nanos(at.as_nanos()));
            let health_changed = async {
                match self.health.as_mut() {
                    Some(h) => {
                        if h.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop_rx.changed() => {}
                env = self.rx.recv() => {
                    if let Some(env) = env {
                        self.handle(env, observer);
                        while let Ok(env) = self.rx.try_recv() {
                            self.handle(env, observer);
                        }
                    }
                }
                () = async {
                    match sleep_to {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending::<()>().await,
                    }
                } => {}
                () = health_changed => self.apply_health(),
            }
        }
        self.pool.shutdown();
        self.checkpoint_if_due(observer, true);
        self.finish_summary(wall.elapsed(), *stop_rx.borrow() != Stop::Run)
    }

    fn finish_summary(&mut self, wall: Duration, stopped: bool) -> Summary {
        let stats = self.ledger.stats();
        let mut s = std::mem::take(&mut self.summary);
        s.tasks = self.tasks.len();
        s.succeeded = 0;
        s.failed.clear();
        s.unfinished = 0;
        for (i, slot) in self.tasks.iter().enumerate() {
            match self.ledger.task(TaskId(i as u32)) {
                Some(v) if v.state == TaskState::Succeeded => s.succeeded += 1,
                Some(v) if v.state == TaskState::Failed => s
                    .failed
                    .push((slot.key, v.last_failure.unwrap_or(FailureKind::Unknown))),
                _ => s.unfinished += 1,
            }
        }
        let mut more = false;
        if let Some(feed) = self.feed.as_mut() {
            s.tasks += feed.retired;
            s.succeeded += feed.retired_succeeded;
            let mut failed = std::mem::take(&mut feed.retired_failed);
            failed.append(&mut s.failed);
            s.failed = failed;
            more = !feed.exhausted();
        }
        s.retries = stats.retries;
        s.reassignments = stats.reassignments;
        s.stale_results = stats.stale_results_rejected;
        s.interrupted = stopped && (s.unfinished > 0 || more);
        s.wall = wall;
        s
    }
}
