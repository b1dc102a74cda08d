//! The fault-tolerance manager: a [`Ledger`] of workers and tasks that a supervisor
//! drives.
//!
//! It replaces the original design's `FaultToleranceManager` (MorphML): it keeps every
//! task until it succeeds or fails for good, gives runnable tasks to healthy workers with
//! room, retries failures after the retry policy's delay, moves work away from failed,
//! silent or tripped workers, and fences late results with epochs. It never loses a task
//! (nothing is dropped when no worker is healthy: tasks wait) and never completes one
//! twice.
//!
//! # Workers
//! Registered with a capacity ([`add_worker`](Ledger::add_worker)); each has a status
//! (alive, suspect, failed), a health mark set by the supervisor ([`WorkerHealth`]), a
//! [`DeadlineDetector`](crate::deadline::DeadlineDetector) fed by
//! [`heartbeat`](Ledger::heartbeat) (an outside detector such as phi accrual reports
//! through [`suspect_worker`](Ledger::suspect_worker)), and a
//! [`ConsecutiveBreaker`] (defaults after the
//! original: 3 failures in a row open it for 300 s, 2 successes in half-open close it;
//! one trial task at a time while half-open). Failed attempts on a worker count against
//! its breaker when they point at the worker ([`attribution`]: its own kinds always, a
//! task's own failure unless the task's previous attempt failed the same way on another
//! worker), successes for it; its reported failures, its suspicions and its lapsed
//! leases count against it too unless
//! [`with_crashes_open_breaker(false)`](LedgerConfig::with_crashes_open_breaker)
//! (then they never touch it: the lost attempts' permits go back uncounted).
//!
//! # Tasks
//! [`TaskState::Pending`] → [`TaskState::Running`] `{ worker, epoch, lease }` →
//! [`TaskState::Succeeded`] or, through retries, [`TaskState::Failed`]. Each assignment
//! increments the task's epoch, which is also its attempt number: every run of a task,
//! whether it follows its own failure or a crash, gets a new, larger epoch, so attempt
//! numbers never repeat. A task keeps two counts of its failed attempts: its own failures
//! (reported with [`task_failed`](Ledger::task_failed)), which the retry policy's
//! `max_attempts` bounds, and its crashes (attempts lost with their worker), which the
//! crash limit bounds ([`TaskView::crashes`]). A result counts only with the current
//! epoch:
//! - a result with an older epoch (the task was reassigned since) is rejected and
//!   counted;
//! - the current attempt's result completes the task exactly once; a second one is
//!   rejected;
//! - a late success for a task that was requeued (its worker failed) but not yet
//!   reassigned is accepted, and the task is not run again.
//!
//! A running task holds a lease (default 30 s) that every heartbeat of its worker renews;
//! a task whose lease lapses goes back to pending once and counts a crash.
//!
//! # Failures
//! - **Its own failure.** [`task_failed`](Ledger::task_failed) asks the task's
//!   [`RetryState`] (policy from [`LedgerConfig`]): a retry sets a retry timer (the task
//!   is not runnable before it; the delay follows the backoff over its own failures
//!   only), a give-up fails the task for good (counted once). `max_attempts` counts the
//!   task's own attempts: with `max_attempts` of 3, its 1st and 2nd own failures are
//!   retried and its 3rd gives up (`AttemptsExhausted { attempts: 3 }`), however many
//!   crashes came between them.
//! - **A crash.** [`worker_failed`](Ledger::worker_failed), a suspicion (the deadline
//!   detector in [`handle_timeout`](Ledger::handle_timeout), or
//!   [`suspect_worker`](Ledger::suspect_worker)) and a lapsed lease take the worker's
//!   running tasks (for a lease, that one task) back without asking the retry policy:
//!   no attempt of `max_attempts` is used and the backoff does not move. Each such task
//!   counts one crash (an `AttemptFailed` event, of the worker failure's kind, or
//!   `WorkerCrash` for a suspicion, or `TaskTimeout` for a lapsed lease). While its
//!   crashes are at most the crash limit ([`LedgerConfig::with_crash_limit`], default 3)
//!   it is pending and runnable at once (`Requeued`); the crash that takes it above the
//!   limit fails it for good (`GaveUp` with
//!   [`GiveUpReason::CrashLimit`], counted in
//!   [`Stats::failed_tasks`]). So an innocent task survives a crash storm of `limit`
//!   crashes, and a poison task that kills every worker still ends, at its
//!   `limit + 1`-th crash. (After Dask's `allowed-failures`.)
//! - **A restore.** A task that was running when a checkpoint was taken lost its worker
//!   with the process that crashed: it is charged an attempt of the retry policy, as an
//!   own failure of kind `WorkerCrash` (the crash counter is not in the checkpoint, and
//!   the retry state is, so a task that crashes the whole supervisor still ends).
//!
//! Tasks that were only waiting are never charged: a pending task is bound to no worker
//! until it is assigned.
//!
//! # Driving it (sans-IO)
//! Inputs take `now`; outputs are pulled. The order a supervisor follows:
//! 1. `add_worker` / `add_task` (or restore a checkpoint, see
//!    [`checkpoint`](crate::checkpoint), then replay the journal written after it with
//!    `mark_succeeded` / `mark_failed`; or, without a checkpoint, `add_task_resumed`
//!    or `add_task_with_prior_attempts`), then on every wake-up:
//! 2. feed what arrived: `heartbeat`, `task_succeeded`, `task_failed`, `worker_failed`,
//!    `suspect_worker`, `worker_recovered`, `set_worker_health`;
//! 3. `handle_timeout(now)` (detector deadlines, leases, retry timers, breakers);
//! 4. `assign(now)` in a loop until it returns `None`, dispatching each assignment;
//! 5. drain `poll_event()` (journal, metrics);
//! 6. sleep until `poll_timeout()` or the next input.
//!
//! Spurious or late calls are harmless; a `now` earlier than one already seen reads as
//! the latest seen.
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::{FailureKind, Instant};
//! use sturdy_core::manager::{Ledger, LedgerConfig, TaskState};
//! use sturdy_core::retry::fixed_policy;
//!
//! let config = LedgerConfig::new(fixed_policy(3, Duration::from_secs(5))?);
//! let mut ledger: Ledger<4, 16> = Ledger::new(config);
//! let mut now = Instant::ZERO;
//! let w = ledger.add_worker(1, now).unwrap();
//! let t = ledger.add_task(now).unwrap();
//!
//! let a = ledger.assign(now).unwrap();
//! assert_eq!((a.task, a.worker, a.epoch), (t, w, 1));
//! // The attempt fails: retry in 5 s.
//! now = Instant::from_secs(1);
//! ledger.task_failed(a.task, a.epoch, FailureKind::Evaluation, now).unwrap();
//! assert!(ledger.assign(now).is_none());
//! assert_eq!(ledger.poll_timeout(), Some(Instant::from_secs(6)));
//! now = Instant::from_secs(6);
//! ledger.heartbeat(w, now).unwrap();
//! ledger.handle_timeout(now);
//! let b = ledger.assign(now).unwrap();
//! assert_eq!(b.epoch, 2);
//! ledger.task_succeeded(b.task, b.epoch, now).unwrap();
//! assert_eq!(ledger.task(t).unwrap().state, TaskState::Succeeded);
//! // A late result of the first attempt is rejected and counted.
//! assert!(ledger.task_succeeded(t, 1, now).is_err());
//! assert_eq!(ledger.stats().stale_results_rejected, 1);
//! while let Some(event) = ledger.poll_event() { let _ = event; }
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```
//!
//! # Size
//! A ledger holds everything inline: about 232 bytes per worker, 176 bytes plus 40 per
//! history entry per task (336 with the default `HISTORY` of 4) and 48 per event slot
//! (64-bit targets). `Ledger<1024, 4096>` takes 1.6 MB, `Ledger<8, 10_000>` 3.3 MB: put
//! a large one in a `static`, or in a `Box` built on a thread with enough stack.

pub mod attribution;
mod config;
mod error;
mod event;
pub mod record;
#[cfg(feature = "postcard")]
pub(crate) mod snapshot;
mod stats;
mod task;
#[cfg(test)]
mod tests;
mod worker;

use heapless::binary_heap::Min;
use heapless::{BinaryHeap, Deque, Vec};

use crate::breaker::{ConsecutiveBreaker, Outcome, ParkedPermit, Permit};
use crate::failure::{FailureEvent, FailureKind, TaskId, WorkerId};
use crate::retry::{Decision, GiveUpReason, RetryState};
use crate::rng::SplitMix64;
use crate::time::{Instant, Monotonic};
use record::{Lost, Report};

pub use crate::breaker::State as BreakerState;
pub use config::LedgerConfig;
pub use error::{LedgerError, ResultError};
pub use event::{Event, RequeueReason, StaleReason};
#[cfg(feature = "postcard")]
pub use snapshot::Restored;
pub use stats::Stats;
pub use task::{Assignment, TaskState, TaskView};
pub use worker::{WorkerHealth, WorkerStatus, WorkerView};

/// The most prior own failures [`Ledger::add_task_resumed`] (and
/// [`Ledger::add_task_with_prior_attempts`]) replays through the backoff schedule: 4096 (far past the cap of any schedule that grows by 1 % a step).
pub const MAX_REPLAYED_ATTEMPTS: u32 = 4096;

use event::EventQueue;
use task::Task;
use worker::{NIL, Worker};

/// The fault-tolerance manager's ledger of `WORKERS` workers and `TASKS` tasks, with an
/// event queue of `EVENTS` entries and a failure history of the last `HISTORY` failures
/// per task. See the [module docs](self).
#[doc(alias = "FaultToleranceManager")]
#[derive(Clone, Debug)]
pub struct Ledger<
    const WORKERS: usize,
    const TASKS: usize,
    const EVENTS: usize = 256,
    const HISTORY: usize = 4,
> {
    config: LedgerConfig,
    clock: Monotonic,
    workers: Vec<Worker, WORKERS>,
    tasks: Vec<Task<HISTORY>, TASKS>,
    /// Pending tasks whose retry timer passed, in FIFO order (entries of tasks that
    /// finished meanwhile are skipped).
    ready: Deque<u32, TASKS>,
    /// Pending tasks waiting for their retry timer.
    delayed: BinaryHeap<(Instant, u32), Min, TASKS>,
    /// Where the next worker scan starts (round robin across calls).
    cursor: usize,
    events: EventQueue<EVENTS>,
    stats: Stats,
}

/// The original design's name for the [`Ledger`].
pub type FaultToleranceManager<const WORKERS: usize, const TASKS: usize> = Ledger<WORKERS, TASKS>;

impl<const WORKERS: usize, const TASKS: usize, const EVENTS: usize, const HISTORY: usize>
    Ledger<WORKERS, TASKS, EVENTS, HISTORY>
{
    /// An empty ledger (no worker, no task) at time zero.
    pub const fn new(config: LedgerConfig) -> Self {
        Self {
            config,
            clock: Monotonic::new(Instant::ZERO),
            workers: Vec::new(),
            tasks: Vec::new(),
            ready: Deque::new(),
            delayed: BinaryHeap::new(),
            cursor: 0,
            events: EventQueue::new(),
            stats: Stats {
                total_task_failures: 0,
                total_worker_failures: 0,
                failed_tasks: 0,
                failed_workers: 0,
                tasks_with_retries: 0,
                recovery_attempts: 0,
                retries: 0,
                reassignments: 0,
                stale_results_rejected: 0,
                assignments: 0,
                succeeded_tasks: 0,
                pending_tasks: 0,
                running_tasks: 0,
                breakers_open: 0,
                breakers_half_open: 0,
                events_dropped: 0,
            },
        }
    }

    // ----- getters -------------------------------------------------------------------

    /// The rules in force.
    pub const fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The latest `now` seen.
    pub const fn now(&self) -> Instant {
        self.clock.latest()
    }

    /// Tasks in the ledger (ids `0..task_count`).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Workers in the ledger (ids `0..worker_count`).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Whether every task has succeeded or failed for good (true for an empty ledger).
    pub fn is_finished(&self) -> bool {
        self.stats.pending_tasks == 0 && self.stats.running_tasks == 0
    }

    /// One task, or `None` for an unknown id.
    pub fn task(&self, task: TaskId) -> Option<TaskView> {
        self.tasks.get(task.0 as usize).map(|t| t.view(task))
    }

    /// Every task, in id order.
    pub fn tasks(&self) -> impl Iterator<Item = TaskView> + '_ {
        self.tasks
            .iter()
            .enumerate()
            .map(|(i, t)| t.view(TaskId(i as u32)))
    }

    /// Every worker, in id order.
    pub fn workers(&self) -> impl Iterator<Item = WorkerView> + '_ {
        (0..self.workers.len() as u32).filter_map(|i| self.worker(WorkerId(i)))
    }

    /// One task's latest failures (at most `HISTORY`), oldest first.
    pub fn failure_history(&self, task: TaskId) -> impl Iterator<Item = &FailureEvent> + '_ {
        self.tasks
            .get(task.0 as usize)
            .into_iter()
            .flat_map(|t| t.history.oldest_ordered())
    }

    /// One worker, or `None` for an unknown id.
    pub fn worker(&self, worker: WorkerId) -> Option<WorkerView> {
        self.workers.get(worker.0 as usize).map(|w| WorkerView {
            id: worker,
            status: w.status,
            health: w.health,
            load: w.load,
            capacity: w.capacity,
            breaker: w.breaker.state(),
            breaker_metrics: w.breaker.metrics(),
            last_heartbeat: w.detector.last_heartbeat(),
            heartbeat_deadline: w.detector.deadline(),
        })
    }

    /// Whether `worker` would be given a task at `now`: alive, not silent past its
    /// deadline, not marked critical, with a free slot, and its breaker admitting a call.
    /// The original's `is_worker_unhealthy` is roughly the negation (without the slot).
    /// `false` for an unknown worker.
    pub fn can_take_task(&self, worker: WorkerId, now: Instant) -> bool {
        let now = now.max(self.clock.latest());
        self.workers
            .get(worker.0 as usize)
            .is_some_and(|w| w.can_take_task(now))
    }

    /// Every worker's breaker state (the original's `circuit_breakers` statistic).
    pub fn breaker_states(&self) -> impl Iterator<Item = (WorkerId, BreakerState)> + '_ {
        self.workers
            .iter()
            .enumerate()
            .map(|(i, w)| (WorkerId(i as u32), w.breaker.state()))
    }

    /// The statistics (O(workers) for the breaker counts).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        for w in &self.workers {
            match w.breaker.state() {
                BreakerState::Open { .. } | BreakerState::ForcedOpen => s.breakers_open += 1,
                BreakerState::HalfOpen => s.breakers_half_open += 1,
                _ => {}
            }
        }
        s.events_dropped = self.events.dropped();
        s
    }

    /// Events waiting in the queue.
    pub fn events_pending(&self) -> usize {
        self.events.len()
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next event, oldest first. The queue holds `EVENTS` entries; when it is full
    /// new events are dropped and counted in [`Stats::events_dropped`], so drain it after
    /// every input. One input can emit several: a worker failure emits up to three per
    /// task it was running plus two, so size `EVENTS` to at least four times the most
    /// tasks that can run at once when a journal must see every event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next: the earliest retry
    /// timer, heartbeat deadline of an alive worker, lease of a running task, or end of
    /// an open breaker. `None` when nothing is timed. O(workers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.delayed.peek().map(|&(t, _)| t);
        let mut take = |t: Instant| {
            if t == Instant::MAX {
                return; // "never" (a disabled deadline, no probe timeout)
            }
            next = Some(match next {
                Some(n) if n <= t => n,
                _ => t,
            });
        };
        for w in &self.workers {
            if w.status.is_alive() {
                take(w.detector.deadline());
                if w.load > 0 {
                    take(w.lease_check);
                }
            }
            if let Some(t) = w.breaker.poll_timeout() {
                take(t);
            }
        }
        next
    }

    // ----- inputs: registration ------------------------------------------------------

    /// Registers a worker that runs up to `capacity` tasks at once; its grace period for
    /// the first heartbeat starts at `now`.
    ///
    /// # Errors
    /// [`LedgerError::WorkersFull`], [`LedgerError::ZeroCapacity`].
    pub fn add_worker(&mut self, capacity: u32, now: Instant) -> Result<WorkerId, LedgerError> {
        let now = self.clock.observe(now);
        if capacity == 0 {
            return Err(LedgerError::ZeroCapacity);
        }
        let id = WorkerId(self.workers.len() as u32);
        let w = Worker {
            capacity,
            load: 0,
            status: WorkerStatus::Alive,
            health: WorkerHealth::Healthy,
            detector: crate::deadline::DeadlineDetector::new(self.config.deadline, now),
            breaker: ConsecutiveBreaker::with_event_capacity(self.config.breaker),
            head: NIL,
            lease_check: Instant::MAX,
        };
        self.workers
            .push(w)
            .map_err(|_| LedgerError::WorkersFull { capacity: WORKERS })?;
        Ok(id)
    }

    /// Adds a task, pending and runnable at once.
    ///
    /// # Errors
    /// [`LedgerError::TasksFull`].
    pub fn add_task(&mut self, now: Instant) -> Result<TaskId, LedgerError> {
        let now = self.clock.observe(now);
        let idx = self.tasks.len() as u32;
        if self.tasks.push(Task::new(now)).is_err() {
            return Err(LedgerError::TasksFull { capacity: TASKS });
        }
        self.stats.pending_tasks += 1;
        self.enqueue(idx, now);
        Ok(TaskId(idx))
    }

    /// Adds a task that earlier runs (before a restart without a checkpoint) already
    /// tried `prior_attempts` times, each counted as an own failure:
    /// `add_task_resumed(prior_attempts, prior_attempts, 0, now)`. Attempt numbers and
    /// epochs continue from there, the prior attempts count toward the policy's
    /// `max_attempts`, and the backoff resumes where it was. With `prior_attempts` of 0
    /// this is [`add_task`](Self::add_task). At most [`MAX_REPLAYED_ATTEMPTS`] prior
    /// failures move the backoff; any beyond only count (so the cost is bounded for any
    /// `prior_attempts`, up to `u32::MAX`).
    ///
    /// # Errors
    /// [`LedgerError::TasksFull`].
    pub fn add_task_with_prior_attempts(
        &mut self,
        prior_attempts: u32,
        now: Instant,
    ) -> Result<TaskId, LedgerError> {
        self.add_task_resumed(prior_attempts, prior_attempts, 0, now)
    }

    /// Adds a task that earlier runs (before a restart without a checkpoint) already
    /// started `attempts_made` times, of which `own_failures` failed on their own
    /// (reported failures) and `crashes` were lost with their worker (the rest ended
    /// without a verdict, such as attempts cut off by the restart).
    ///
    /// - Epochs and attempt numbers continue: the next assignment is attempt (and epoch)
    ///   `attempts_made + 1`, and [`TaskView::attempts`] reads `attempts_made` at once.
    /// - `own_failures` count toward the retry policy's `max_attempts` and move the
    ///   backoff as if they had just happened (at most [`MAX_REPLAYED_ATTEMPTS`] move it;
    ///   any beyond only count, so the cost is bounded up to `u32::MAX`): with
    ///   `max_attempts` of 3 and 2 own failures, the next own failure gives up.
    /// - `crashes` preset the task's crash counter: the next crash counts
    ///   `crashes + 1` against the crash limit.
    ///
    /// With all three 0 this is [`add_task`](Self::add_task). Nothing is checked against
    /// the limits here: a task resumed at or past them still runs once more.
    ///
    /// # Errors
    /// [`LedgerError::TasksFull`]; [`LedgerError::ResumeCounts`] when
    /// `own_failures + crashes` exceeds `attempts_made` (nothing is added).
    pub fn add_task_resumed(
        &mut self,
        attempts_made: u32,
        own_failures: u32,
        crashes: u32,
        now: Instant,
    ) -> Result<TaskId, LedgerError> {
        check_resume_counts(attempts_made, own_failures, crashes)?;
        let id = self.add_task(now)?;
        self.apply_resume(id.0, attempts_made, own_failures, crashes);
        Ok(id)
    }

    /// Puts a new task in the slot of `task`, which has finished (succeeded or failed
    /// for good): the new task is pending and runnable at once, with a fresh retry
    /// state, crash count and failure history, and keeps the id. This is how a
    /// supervisor holds a bounded window of a longer task list in `TASKS` slots.
    ///
    /// The slot's epochs go on from the previous task's last one (the fencing tokens of
    /// a slot never repeat), so a late result of any attempt of the previous task is
    /// stale for the new one ([`StaleReason::OldEpoch`]); attempt numbers
    /// ([`Assignment::attempt`], [`TaskView::attempts`], events) start again from 1.
    /// The counters of [`Stats`] keep the previous task (they count every task the
    /// ledger held).
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`]; [`LedgerError::TaskNotFinished`] for a task
    /// pending or running; [`LedgerError::EpochsExhausted`] when the slot's epoch is
    /// past `u32::MAX / 2` (its fencing tokens could run out: use another slot).
    pub fn recycle_task(&mut self, task: TaskId, now: Instant) -> Result<TaskId, LedgerError> {
        let now = self.clock.observe(now);
        let Some(t) = self.tasks.get(task.0 as usize) else {
            return Err(LedgerError::UnknownTask(task));
        };
        if !t.state.is_finished() {
            return Err(LedgerError::TaskNotFinished(task));
        }
        if t.epoch > u32::MAX / 2 {
            return Err(LedgerError::EpochsExhausted(task));
        }
        let epoch = t.epoch;
        let mut fresh = Task::new(now);
        fresh.epoch = epoch;
        fresh.base = epoch;
        self.tasks[task.0 as usize] = fresh;
        self.stats.pending_tasks += 1;
        self.enqueue(task.0, now);
        Ok(task)
    }

    /// [`recycle_task`](Self::recycle_task) for a task that earlier runs already
    /// started: the counts mean what they mean for
    /// [`add_task_resumed`](Self::add_task_resumed) (attempt numbers continue after
    /// `attempts_made`; own failures and crashes count toward the limits).
    ///
    /// # Errors
    /// As [`recycle_task`](Self::recycle_task); [`LedgerError::ResumeCounts`] when
    /// `own_failures + crashes` exceeds `attempts_made` (nothing is changed).
    pub fn recycle_task_resumed(
        &mut self,
        task: TaskId,
        attempts_made: u32,
        own_failures: u32,
        crashes: u32,
        now: Instant,
    ) -> Result<TaskId, LedgerError> {
        check_resume_counts(attempts_made, own_failures, crashes)?;
        let id = self.recycle_task(task, now)?;
        self.apply_resume(id.0, attempts_made, own_failures, crashes);
        Ok(id)
    }

    /// Presets task `idx` (just added or recycled, pending) as resumed: see
    /// [`add_task_resumed`](Self::add_task_resumed).
    fn apply_resume(&mut self, idx: u32, attempts_made: u32, own_failures: u32, crashes: u32) {
        if attempts_made > 0 {
            let now = self.clock.latest();
            let policy = self.config.retry;
            // Replays the prior own failures on a policy that never gives up, so only
            // the counts and the backoff move.
            let replay = crate::retry::RetryPolicy::new(u32::MAX, *policy.backoff())
                .map(|p| p.with_retryable(crate::failure::KindSet::all()));
            let t = &mut self.tasks[idx as usize];
            t.retry = RetryState::new(now, task_seed(self.config.seed, idx));
            let replayed = own_failures.min(MAX_REPLAYED_ATTEMPTS);
            if let Ok(replay) = replay {
                for _ in 0..replayed {
                    let _ = t.retry.on_failure(&replay, FailureKind::Unknown, now);
                }
            }
            t.retry.add_attempts(own_failures - replayed);
            t.epoch = t.base.saturating_add(attempts_made);
            t.crashes = crashes;
        }
    }

    /// Sets a worker's health mark (from the supervisor's host and GPU assessment).
    ///
    /// # Errors
    /// [`LedgerError::UnknownWorker`].
    pub fn set_worker_health(
        &mut self,
        worker: WorkerId,
        health: WorkerHealth,
    ) -> Result<(), LedgerError> {
        let w = self
            .workers
            .get_mut(worker.0 as usize)
            .ok_or(LedgerError::UnknownWorker(worker))?;
        w.health = health;
        Ok(())
    }

    // ----- inputs: heartbeats and worker failures ------------------------------------

    /// A heartbeat from `worker` at `now`: it moves the worker's deadline and renews the
    /// leases of every task running on it. A suspect worker that heartbeats is back
    /// (`WorkerRecovered`).
    ///
    /// # Errors
    /// [`LedgerError::UnknownWorker`]; [`LedgerError::WorkerDown`] for a worker reported
    /// failed (call [`worker_recovered`](Self::worker_recovered) first).
    pub fn heartbeat(&mut self, worker: WorkerId, now: Instant) -> Result<(), LedgerError> {
        let now = self.clock.observe(now);
        let i = worker.0 as usize;
        let Some(w) = self.workers.get_mut(i) else {
            return Err(LedgerError::UnknownWorker(worker));
        };
        match w.status {
            WorkerStatus::Failed { .. } => return Err(LedgerError::WorkerDown(worker)),
            WorkerStatus::Suspect { .. } => {
                w.status = WorkerStatus::Alive;
                self.stats.failed_workers = self.stats.failed_workers.saturating_sub(1);
                self.stats.recovery_attempts = self.stats.recovery_attempts.saturating_add(1);
                self.events.push(Event::WorkerRecovered { worker, at: now });
            }
            WorkerStatus::Alive => {}
        }
        let w = &mut self.workers[i];
        w.detector.heartbeat(now);
        if w.load > 0 {
            let lease = now + self.config.lease;
            w.lease_check = lease;
            let mut cur = w.head;
            while cur != NIL {
                let t = &mut self.tasks[cur as usize];
                if let TaskState::Running { lease: l, .. } = &mut t.state {
                    *l = lease;
                }
                cur = t.next;
            }
        }
        Ok(())
    }

    /// Renews one running task's lease (for workers that renew per task rather than by
    /// heartbeat); returns the new lease.
    ///
    /// # Errors
    /// [`ResultError::UnknownTask`]; [`ResultError::Stale`] when the task is not running
    /// under `epoch` (not counted: no result was rejected).
    pub fn renew_lease(
        &mut self,
        task: TaskId,
        epoch: u32,
        now: Instant,
    ) -> Result<Instant, ResultError> {
        let now = self.clock.observe(now);
        let lease = now + self.config.lease;
        let t = self
            .tasks
            .get_mut(task.0 as usize)
            .ok_or(ResultError::UnknownTask(task))?;
        match &mut t.state {
            TaskState::Running {
                epoch: e, lease: l, ..
            } if *e == epoch => {
                *l = lease;
                Ok(lease)
            }
            s if s.is_finished() => Err(ResultError::Stale(StaleReason::Finished)),
            _ => Err(ResultError::Stale(StaleReason::OldEpoch {
                current: t.epoch,
            })),
        }
    }

    /// The supervisor reports `worker` failed (crashed, killed, unreachable): it gets no
    /// task until [`worker_recovered`](Self::worker_recovered); its breaker records a
    /// failure (unless [`crashes_open_breaker`](LedgerConfig::crashes_open_breaker) is
    /// off); each of its running tasks counts a crash of `kind` (not an attempt of the
    /// retry policy) and goes back to pending, runnable at once, or fails for good past
    /// the crash limit (see the [module docs](self#failures)). Reporting an already
    /// failed worker counts again on its breaker (the original: four reports open it).
    ///
    /// # Errors
    /// [`LedgerError::UnknownWorker`].
    pub fn worker_failed(
        &mut self,
        worker: WorkerId,
        kind: FailureKind,
        now: Instant,
    ) -> Result<(), LedgerError> {
        let now = self.clock.observe(now);
        let i = worker.0 as usize;
        let Some(w) = self.workers.get_mut(i) else {
            return Err(LedgerError::UnknownWorker(worker));
        };
        if w.status.is_alive() {
            self.stats.failed_workers += 1;
        }
        w.status = WorkerStatus::Failed { kind, since: now };
        self.stats.total_worker_failures = self.stats.total_worker_failures.saturating_add(1);
        self.events.push(Event::WorkerFailed {
            worker,
            kind,
            at: now,
        });
        self.requeue_worker(i, kind, RequeueReason::WorkerFailed, now);
        if self.config.crashes_open_breaker {
            self.breaker_fail(i, kind, now);
        }
        Ok(())
    }

    /// An outside failure detector (for example a
    /// [`PhiAccrual`](crate::phi::PhiAccrual) over the worker's heartbeats) suspects
    /// `worker`: the same as the built-in deadline detector's suspicion. Its running
    /// tasks count a crash each and go back to pending (or fail for good past the crash
    /// limit), its breaker records a failure (unless
    /// [`crashes_open_breaker`](LedgerConfig::crashes_open_breaker) is off), and its next
    /// heartbeat brings it back. Suspecting a worker that is not alive changes nothing.
    ///
    /// # Errors
    /// [`LedgerError::UnknownWorker`].
    pub fn suspect_worker(&mut self, worker: WorkerId, now: Instant) -> Result<(), LedgerError> {
        let now = self.clock.observe(now);
        let i = worker.0 as usize;
        let Some(w) = self.workers.get(i) else {
            return Err(LedgerError::UnknownWorker(worker));
        };
        if w.status.is_alive() {
            self.suspect(i, now);
        }
        Ok(())
    }

    /// A failed or suspect worker is back (restarted): it is alive again, with a fresh
    /// grace period for its first heartbeat. Its breaker keeps its state (an open breaker
    /// still half-opens on its own timer). Recovering an alive worker only restarts its
    /// grace period.
    ///
    /// # Errors
    /// [`LedgerError::UnknownWorker`].
    pub fn worker_recovered(&mut self, worker: WorkerId, now: Instant) -> Result<(), LedgerError> {
        let now = self.clock.observe(now);
        let Some(w) = self.workers.get_mut(worker.0 as usize) else {
            return Err(LedgerError::UnknownWorker(worker));
        };
        w.detector.restart(now);
        if !w.status.is_alive() {
            w.status = WorkerStatus::Alive;
            self.stats.failed_workers = self.stats.failed_workers.saturating_sub(1);
            self.stats.recovery_attempts = self.stats.recovery_attempts.saturating_add(1);
            self.events.push(Event::WorkerRecovered { worker, at: now });
        }
        Ok(())
    }

    // ----- inputs: results -----------------------------------------------------------

    /// The attempt `epoch` of `task` succeeded. Completes the task exactly once.
    ///
    /// # Errors
    /// [`ResultError::UnknownTask`]; [`ResultError::Stale`] (counted) for an old epoch
    /// or a finished task.
    pub fn task_succeeded(
        &mut self,
        task: TaskId,
        epoch: u32,
        now: Instant,
    ) -> Result<(), ResultError> {
        let now = self.clock.observe(now);
        let idx = task.0 as usize;
        let Some(t) = self.tasks.get(idx) else {
            return Err(ResultError::UnknownTask(task));
        };
        if let Err(reason) = t.record().accept(epoch, Report::Success) {
            return Err(self.reject(task, epoch, reason, now));
        }
        let worker = match t.state {
            TaskState::Running { worker, .. } => {
                let permit = self.unlink(idx as u32, worker.0 as usize);
                self.stats.running_tasks -= 1;
                self.breaker_record(worker.0 as usize, permit, Outcome::Success, now);
                Some(worker)
            }
            // Its claim was lost (requeued when its worker failed), not yet reassigned:
            // the work is done.
            _ => {
                self.stats.pending_tasks -= 1;
                (t.last_worker != NIL).then_some(WorkerId(t.last_worker))
            }
        };
        let t = &mut self.tasks[idx];
        t.state = TaskState::Succeeded;
        t.retry.on_success(now);
        let attempt = t.attempts();
        self.stats.succeeded_tasks += 1;
        self.events.push(Event::Succeeded {
            task,
            worker,
            epoch,
            attempt,
            at: now,
        });
        Ok(())
    }

    /// The attempt `epoch` of `task` failed with `kind`: the retry policy decides.
    /// On [`Decision::RetryAfter`] the task is pending behind a retry timer of that
    /// delay; on [`Decision::GiveUp`] it failed for good (counted once).
    ///
    /// # Errors
    /// [`ResultError::UnknownTask`]; [`ResultError::Stale`] (counted) for an old epoch, a
    /// finished task, or an attempt already charged when its worker failed.
    pub fn task_failed(
        &mut self,
        task: TaskId,
        epoch: u32,
        kind: FailureKind,
        now: Instant,
    ) -> Result<Decision, ResultError> {
        self.task_failed_with_code(task, epoch, kind, None, now)
    }

    /// [`task_failed`](Self::task_failed) with a numeric detail kept in the failure
    /// history (an exit status, a signal number, an XID code).
    ///
    /// # Errors
    /// As [`task_failed`](Self::task_failed).
    pub fn task_failed_with_code(
        &mut self,
        task: TaskId,
        epoch: u32,
        kind: FailureKind,
        code: Option<i32>,
        now: Instant,
    ) -> Result<Decision, ResultError> {
        let now = self.clock.observe(now);
        let idx = task.0 as usize;
        let Some(t) = self.tasks.get(idx) else {
            return Err(ResultError::UnknownTask(task));
        };
        if let Err(reason) = t.record().accept(epoch, Report::Failure) {
            return Err(self.reject(task, epoch, reason, now));
        }
        // Accepted: the newest claim, open, so the task is running.
        let TaskState::Running { worker, .. } = t.state else {
            return Err(self.reject(task, epoch, StaleReason::AlreadyCharged, now));
        };
        // Attribution: a failure the task already showed on another worker says nothing
        // about this one (see `attribution`).
        let outcome = attribution::breaker_outcome(kind, t.prior_failure(worker));
        let permit = self.unlink(idx as u32, worker.0 as usize);
        self.stats.running_tasks -= 1;
        self.stats.pending_tasks += 1;
        self.breaker_record(worker.0 as usize, permit, outcome, now);
        Ok(self.charge(idx as u32, worker, kind, code, None, now))
    }

    /// Records that `task` succeeded, whatever its epoch: for a supervisor replaying its
    /// journal after restoring a checkpoint (a task that finished after the checkpoint
    /// was taken must not run again). A running attempt is dropped (its breaker permit
    /// goes back uncounted). Idempotent: a succeeded task stays as it is.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`]; [`LedgerError::TaskFinished`] for a task failed for
    /// good.
    pub fn mark_succeeded(&mut self, task: TaskId, now: Instant) -> Result<(), LedgerError> {
        let now = self.clock.observe(now);
        match self.tasks.get(task.0 as usize).map(|t| t.state) {
            None => return Err(LedgerError::UnknownTask(task)),
            Some(TaskState::Succeeded) => return Ok(()),
            Some(TaskState::Failed) => return Err(LedgerError::TaskFinished(task)),
            Some(_) => {}
        }
        self.drop_attempt(task.0, now);
        let t = &mut self.tasks[task.0 as usize];
        t.state = TaskState::Succeeded;
        t.retry.on_success(now);
        let (epoch, attempt, last) = (t.epoch, t.attempts(), t.last_worker);
        self.stats.succeeded_tasks += 1;
        self.events.push(Event::Succeeded {
            task,
            worker: (last != NIL).then_some(WorkerId(last)),
            epoch,
            attempt,
            at: now,
        });
        Ok(())
    }

    /// Records that `task` failed for good with `kind`, whatever its epoch: the journal
    /// replay's other half (see [`mark_succeeded`](Self::mark_succeeded)). The
    /// `GaveUp` event's reason is `NotRetryable(kind)` when the policy does not retry
    /// `kind`, otherwise `AttemptsExhausted`. Idempotent for a task already failed.
    ///
    /// # Errors
    /// [`LedgerError::UnknownTask`]; [`LedgerError::TaskFinished`] for a succeeded task.
    pub fn mark_failed(
        &mut self,
        task: TaskId,
        kind: FailureKind,
        now: Instant,
    ) -> Result<(), LedgerError> {
        let now = self.clock.observe(now);
        match self.tasks.get(task.0 as usize).map(|t| t.state) {
            None => return Err(LedgerError::UnknownTask(task)),
            Some(TaskState::Failed) => return Ok(()),
            Some(TaskState::Succeeded) => return Err(LedgerError::TaskFinished(task)),
            Some(_) => {}
        }
        self.drop_attempt(task.0, now);
        let retryable = self.config.retry.retryable().contains(kind);
        let t = &mut self.tasks[task.0 as usize];
        t.state = TaskState::Failed;
        t.last_kind = Some(kind);
        let attempts = t.attempts();
        self.stats.failed_tasks += 1;
        self.events.push(Event::GaveUp {
            task,
            attempts,
            kind,
            reason: if retryable {
                GiveUpReason::AttemptsExhausted { attempts }
            } else {
                GiveUpReason::NotRetryable(kind)
            },
            at: now,
        });
        Ok(())
    }

    // ----- inputs: time --------------------------------------------------------------

    /// Does what is due at `now`: retry timers that passed make their tasks runnable;
    /// alive workers silent past their deadline become suspect (their running tasks count
    /// a crash each and go back to pending); lapsed leases requeue their tasks (a crash
    /// each, once); a task past the crash limit fails for good instead;
    /// open breakers whose period passed half-open. O(workers + work done).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        self.promote_due(now);
        for i in 0..self.workers.len() {
            if self.workers[i]
                .breaker
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.with_breaker(i, now, |b| b.handle_timeout(now));
            }
            let w = &self.workers[i];
            if !w.status.is_alive() {
                continue;
            }
            if w.detector.is_suspect(now) {
                self.suspect(i, now);
            } else if w.load > 0 && w.lease_check <= now {
                self.expire_leases(i, now);
            }
        }
    }

    // ----- assignment ----------------------------------------------------------------

    /// Gives the next runnable task (pending, retry timer passed, oldest first) to a
    /// worker that is alive, not silent past its deadline, not marked critical, has a
    /// free slot and whose breaker admits a call: healthy before degraded, then the least
    /// loaded (running / capacity), ties broken round robin from where the previous call
    /// stopped. `None` when no task is runnable or no worker can take one (the task
    /// waits). O(workers) at most; it stops at the first idle healthy worker.
    pub fn assign(&mut self, now: Instant) -> Option<Assignment> {
        let now = self.clock.observe(now);
        self.promote_due(now);
        let idx = loop {
            let &front = self.ready.front()?;
            let t = &self.tasks[front as usize];
            // An entry left by a recycled slot's previous task may meet the new task
            // waiting for its retry timer: its own entry is in `delayed`.
            if matches!(t.state, TaskState::Pending) && t.ready_at <= now {
                break front;
            }
            self.ready.pop_front();
        };
        // The scan mirrors the breakers' admission; should one still refuse (a probe
        // expired at this very instant), the scan runs again without it.
        let mut tries = self.workers.len();
        let (wi, permit) = loop {
            let wi = self.select_worker(now)?;
            match self.with_breaker(wi, now, |b| b.try_acquire(now)) {
                Ok(p) => break (wi, p),
                Err(_) if tries > 1 => tries -= 1,
                Err(_) => return None,
            }
        };
        self.ready.pop_front();
        let worker = WorkerId(wi as u32);
        let lease = now + self.config.lease;
        let seed = self.config.seed;
        let t = &mut self.tasks[idx as usize];
        if t.epoch == t.base {
            t.retry = RetryState::new(now, task_seed(seed, idx));
        }
        // (A task added with prior attempts has its retry state already.)
        t.epoch = t.epoch.saturating_add(1);
        let (epoch, attempt) = (t.epoch, t.attempts());
        t.state = TaskState::Running {
            worker,
            epoch,
            lease,
        };
        t.last_worker = wi as u32;
        t.permit = Some(permit.park());
        t.requeued = false;
        // Link at the head of the worker's list.
        let head = self.workers[wi].head;
        t.prev = NIL;
        t.next = head;
        if head != NIL {
            self.tasks[head as usize].prev = idx;
        }
        let w = &mut self.workers[wi];
        w.head = idx;
        if w.load == 0 || lease < w.lease_check {
            w.lease_check = lease;
        }
        w.load += 1;
        self.stats.pending_tasks -= 1;
        self.stats.running_tasks += 1;
        self.stats.assignments = self.stats.assignments.saturating_add(1);
        self.events.push(Event::Assigned {
            task: TaskId(idx),
            worker,
            epoch,
            attempt,
            at: now,
        });
        Some(Assignment {
            task: TaskId(idx),
            worker,
            epoch,
            attempt,
            lease,
        })
    }

    /// Forgets every task, worker, counter and event; keeps the config and the clock.
    pub fn reset(&mut self) {
        self.workers.clear();
        self.tasks.clear();
        self.ready.clear();
        self.delayed.clear();
        self.cursor = 0;
        self.events.clear();
        self.stats = Stats::default();
    }

    // ----- internals -----------------------------------------------------------------

    fn select_worker(&mut self, now: Instant) -> Option<usize> {
        let n = self.workers.len();
        if n == 0 {
            return None;
        }
        let start = if self.cursor >= n { 0 } else { self.cursor };
        // (index, health rank, load, capacity)
        let mut best: Option<(usize, WorkerHealth, u32, u32)> = None;
        let mut i = start;
        for _ in 0..n {
            let w = &self.workers[i];
            // The cheap comparison of health and load first: the admission checks
            // (liveness, heartbeat deadline, breaker) only for a worker that would win.
            if w.load == 0 && w.health == WorkerHealth::Healthy {
                if w.can_take_task(now) {
                    best = Some((i, w.health, 0, w.capacity));
                    break;
                }
            } else {
                let better = match best {
                    None => true,
                    Some((_, h, l, c)) => {
                        w.health < h
                            || (w.health == h
                                && (w.load as u64) * (c as u64) < (l as u64) * (w.capacity as u64))
                    }
                };
                if better && w.can_take_task(now) {
                    best = Some((i, w.health, w.load, w.capacity));
                }
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
        let (chosen, ..) = best?;
        self.cursor = if chosen + 1 == n { 0 } else { chosen + 1 };
        Some(chosen)
    }

    /// Puts a pending task in the right queue for its `ready_at`.
    fn enqueue(&mut self, idx: u32, now: Instant) {
        let t = &self.tasks[idx as usize];
        // Each task has at most one live entry across both queues, and entries of
        // finished tasks are never added again, so neither queue exceeds TASKS. A
        // recycled slot may still have its previous task's entry in `ready`: when that
        // fills the queue, the dead entries go.
        let ok = if t.ready_at <= now {
            self.ready.push_back(idx).is_ok()
                || self.compact_ready(idx, now)
                || self.ready.push_back(idx).is_ok()
        } else {
            self.delayed.push((t.ready_at, idx)).is_ok()
        };
        debug_assert!(ok, "ledger queues hold at most TASKS entries");
    }

    /// Drops the entries of `ready` that cannot be dispatched (tasks not pending or
    /// waiting for their retry timer) and repeated entries of one task; returns whether
    /// an entry of task `idx` stays. O(TASKS); runs only when the queue is full.
    fn compact_ready(&mut self, idx: u32, now: Instant) -> bool {
        // A pending task is linked in no worker's list: `prev` marks it kept here.
        const KEPT: u32 = NIL - 1;
        for _ in 0..self.ready.len() {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            let t = &mut self.tasks[i as usize];
            if matches!(t.state, TaskState::Pending) && t.ready_at <= now && t.prev != KEPT {
                t.prev = KEPT;
                let _ = self.ready.push_back(i);
            }
        }
        let kept = self.tasks[idx as usize].prev == KEPT;
        for &i in self.ready.iter() {
            self.tasks[i as usize].prev = NIL;
        }
        kept
    }

    fn promote_due(&mut self, now: Instant) {
        while let Some(&(at, idx)) = self.delayed.peek() {
            if at > now {
                break;
            }
            self.delayed.pop();
            let t = &self.tasks[idx as usize];
            if matches!(t.state, TaskState::Pending) && t.ready_at == at {
                let ok = self.ready.push_back(idx).is_ok();
                debug_assert!(ok, "ledger queues hold at most TASKS entries");
            }
        }
    }

    /// Removes task `idx` from worker `wi`'s running list; returns its breaker permit.
    fn unlink(&mut self, idx: u32, wi: usize) -> Option<Permit> {
        let (prev, next) = {
            let t = &self.tasks[idx as usize];
            (t.prev, t.next)
        };
        if prev == NIL {
            self.workers[wi].head = next;
        } else {
            self.tasks[prev as usize].next = next;
        }
        if next != NIL {
            self.tasks[next as usize].prev = prev;
        }
        let t = &mut self.tasks[idx as usize];
        t.prev = NIL;
        t.next = NIL;
        let permit = t.permit.take().map(ParkedPermit::unpark);
        let w = &mut self.workers[wi];
        w.load -= 1;
        if w.load == 0 {
            w.lease_check = Instant::MAX;
        }
        permit
    }

    /// Runs `f` on worker `wi`'s breaker; a change of state becomes an event.
    fn with_breaker<R>(
        &mut self,
        wi: usize,
        now: Instant,
        f: impl FnOnce(&mut ConsecutiveBreaker<1>) -> R,
    ) -> R {
        let b = &mut self.workers[wi].breaker;
        let from = b.state();
        let r = f(b);
        // The ledger reports transitions itself (below); the breaker's own slot is
        // drained so it never counts drops.
        while b.poll_event().is_some() {}
        let to = b.state();
        if from != to {
            self.events.push(Event::Breaker {
                worker: WorkerId(wi as u32),
                from,
                to,
                at: now,
            });
        }
        r
    }

    /// Hands a running task's permit back to its worker's breaker with the outcome.
    fn breaker_record(
        &mut self,
        wi: usize,
        permit: Option<Permit>,
        outcome: Outcome,
        now: Instant,
    ) {
        if let Some(p) = permit {
            self.with_breaker(wi, now, |b| b.record(p, outcome, now));
        }
    }

    /// Counts a failure of the worker itself (not of a task) against its breaker.
    fn breaker_fail(&mut self, wi: usize, kind: FailureKind, now: Instant) {
        self.with_breaker(wi, now, |b| {
            if let Ok(p) = b.try_acquire(now) {
                b.record(p, Outcome::Failure(kind), now);
            }
        });
    }

    /// Records the failed attempt of task `idx` (already unlinked from its worker and
    /// counted pending): history, last kind, counter, `AttemptFailed`. The task is
    /// pending afterwards; the caller decides what follows.
    fn record_failed_attempt(
        &mut self,
        idx: u32,
        worker: WorkerId,
        kind: FailureKind,
        code: Option<i32>,
        now: Instant,
    ) {
        let task = TaskId(idx);
        let t = &mut self.tasks[idx as usize];
        let (epoch, attempt) = (t.epoch, t.attempts());
        t.history.write(FailureEvent {
            at: now,
            kind,
            task: Some(task),
            worker: Some(worker),
            attempt,
            code,
        });
        t.last_kind = Some(kind);
        t.failed_on = worker.0;
        t.state = TaskState::Pending;
        self.stats.total_task_failures = self.stats.total_task_failures.saturating_add(1);
        self.events.push(Event::AttemptFailed {
            task,
            worker: Some(worker),
            epoch,
            attempt,
            kind,
            at: now,
        });
    }

    /// Marks task `idx` (pending, just failed) as retried once, for the statistics.
    fn note_retried(&mut self, idx: u32) {
        let t = &mut self.tasks[idx as usize];
        if !t.retried {
            t.retried = true;
            self.stats.tasks_with_retries += 1;
        }
    }

    /// Makes task `idx` (pending, just failed) runnable at once after losing its attempt
    /// for `reason`.
    fn requeue(&mut self, idx: u32, worker: WorkerId, reason: RequeueReason, now: Instant) {
        self.note_retried(idx);
        let t = &mut self.tasks[idx as usize];
        t.ready_at = now;
        t.requeued = true;
        let epoch = t.epoch;
        self.stats.reassignments = self.stats.reassignments.saturating_add(1);
        self.events.push(Event::Requeued {
            task: TaskId(idx),
            worker,
            epoch,
            reason,
            at: now,
        });
        self.enqueue(idx, now);
    }

    /// Fails task `idx` (pending, just failed) for good.
    fn give_up(&mut self, idx: u32, kind: FailureKind, reason: GiveUpReason, now: Instant) {
        let t = &mut self.tasks[idx as usize];
        t.state = TaskState::Failed;
        let attempts = t.attempts();
        self.stats.pending_tasks -= 1;
        self.stats.failed_tasks += 1;
        self.events.push(Event::GaveUp {
            task: TaskId(idx),
            attempts,
            kind,
            reason,
            at: now,
        });
    }

    /// Charges a failed attempt to task `idx` (already unlinked from its worker and
    /// counted pending) and applies the retry policy: the task's own failure, or (with
    /// `requeue` of `Restored`) an attempt lost in a restore. With a `requeue` reason the
    /// task is runnable at once; otherwise it waits for the retry delay.
    fn charge(
        &mut self,
        idx: u32,
        worker: WorkerId,
        kind: FailureKind,
        code: Option<i32>,
        requeue: Option<RequeueReason>,
        now: Instant,
    ) -> Decision {
        let policy = self.config.retry;
        self.record_failed_attempt(idx, worker, kind, code, now);
        let t = &mut self.tasks[idx as usize];
        let decision = t.retry.on_failure(&policy, kind, now);
        match (decision, requeue) {
            (Decision::RetryAfter(_), Some(reason)) => self.requeue(idx, worker, reason, now),
            (Decision::RetryAfter(delay), None) => {
                self.note_retried(idx);
                let t = &mut self.tasks[idx as usize];
                t.ready_at = now + delay;
                let (attempt, ready_at) = (t.attempts(), t.ready_at);
                self.stats.retries = self.stats.retries.saturating_add(1);
                self.events.push(Event::RetryScheduled {
                    task: TaskId(idx),
                    attempt: attempt.saturating_add(1),
                    delay,
                    ready_at,
                    at: now,
                });
                self.enqueue(idx, now);
            }
            (Decision::GiveUp(reason), _) => self.give_up(idx, kind, reason, now),
        }
        decision
    }

    /// Counts a crash against task `idx` (already unlinked from its worker and counted
    /// pending): its attempt was lost with its worker for `reason`. The retry policy is
    /// not asked (no attempt of `max_attempts`, no backoff step): the task is requeued,
    /// runnable at once, while its crashes are at most the crash limit, and fails for
    /// good (`CrashLimit`) at the crash that takes it above.
    fn crash(
        &mut self,
        idx: u32,
        worker: WorkerId,
        kind: FailureKind,
        reason: RequeueReason,
        now: Instant,
    ) {
        let t = &self.tasks[idx as usize];
        let lost = t.record().on_lost(t.epoch, self.config.crash_limit);
        self.record_failed_attempt(idx, worker, kind, None, now);
        match lost {
            Ok(Lost::GiveUp { crashes, .. }) => {
                self.tasks[idx as usize].crashes = crashes;
                self.give_up(idx, kind, GiveUpReason::CrashLimit { crashes }, now);
            }
            Ok(Lost::Requeue(record)) => {
                self.tasks[idx as usize].crashes = record.crashes;
                self.requeue(idx, worker, reason, now);
            }
            // Only a running attempt is lost (every caller unlinked one): nothing to
            // charge; the task runs again.
            Err(_) => self.requeue(idx, worker, reason, now),
        }
    }

    /// Requeues every task running on worker `wi`, each counting a crash of `kind`.
    fn requeue_worker(
        &mut self,
        wi: usize,
        kind: FailureKind,
        reason: RequeueReason,
        now: Instant,
    ) {
        let worker = WorkerId(wi as u32);
        while self.workers[wi].head != NIL {
            let idx = self.workers[wi].head;
            // The crash is counted on the task below; the worker's failure is counted
            // once against its breaker by the caller (if at all), so the permit goes
            // back uncounted.
            if let Some(p) = self.unlink(idx, wi) {
                self.with_breaker(wi, now, |b| b.release(p, now));
            }
            self.stats.running_tasks -= 1;
            self.stats.pending_tasks += 1;
            self.crash(idx, worker, kind, reason, now);
        }
    }

    /// Takes a pending or running task out of the counts (its queue entry goes stale,
    /// its running attempt is unlinked and its permit released).
    fn drop_attempt(&mut self, idx: u32, now: Instant) {
        match self.tasks[idx as usize].state {
            TaskState::Running { worker, .. } => {
                let wi = worker.0 as usize;
                if let Some(p) = self.unlink(idx, wi) {
                    self.with_breaker(wi, now, |b| b.release(p, now));
                }
                self.stats.running_tasks -= 1;
            }
            TaskState::Pending => self.stats.pending_tasks -= 1,
            _ => {}
        }
    }

    /// Marks alive worker `i` suspect: requeues its tasks (a crash each), counts a
    /// failure on its breaker (if crashes count there).
    fn suspect(&mut self, i: usize, now: Instant) {
        let silence = self.workers[i].detector.silence(now);
        self.workers[i].status = WorkerStatus::Suspect { since: now };
        self.stats.failed_workers += 1;
        self.stats.total_worker_failures = self.stats.total_worker_failures.saturating_add(1);
        self.events.push(Event::WorkerSuspected {
            worker: WorkerId(i as u32),
            silence,
            at: now,
        });
        self.requeue_worker(
            i,
            FailureKind::WorkerCrash,
            RequeueReason::WorkerSuspected,
            now,
        );
        if self.config.crashes_open_breaker {
            self.breaker_fail(i, FailureKind::WorkerCrash, now);
        }
    }

    fn expire_leases(&mut self, wi: usize, now: Instant) {
        let worker = WorkerId(wi as u32);
        let mut earliest = Instant::MAX;
        let mut cur = self.workers[wi].head;
        while cur != NIL {
            let t = &self.tasks[cur as usize];
            let next = t.next;
            if let TaskState::Running { epoch, lease, .. } = t.state {
                if lease <= now {
                    self.events.push(Event::LeaseExpired {
                        task: TaskId(cur),
                        worker,
                        epoch,
                        at: now,
                    });
                    let permit = self.unlink(cur, wi);
                    self.stats.running_tasks -= 1;
                    self.stats.pending_tasks += 1;
                    if self.config.crashes_open_breaker {
                        self.breaker_record(
                            wi,
                            permit,
                            Outcome::Failure(FailureKind::TaskTimeout),
                            now,
                        );
                    } else if let Some(p) = permit {
                        self.with_breaker(wi, now, |b| b.release(p, now));
                    }
                    self.crash(
                        cur,
                        worker,
                        FailureKind::TaskTimeout,
                        RequeueReason::LeaseExpired,
                        now,
                    );
                } else if lease < earliest {
                    earliest = lease;
                }
            }
            cur = next;
        }
        self.workers[wi].lease_check = earliest;
    }

    /// Rejects a result for `task` at `epoch` for `reason` (from the record rules),
    /// counting it.
    fn reject(
        &mut self,
        task: TaskId,
        epoch: u32,
        reason: StaleReason,
        now: Instant,
    ) -> ResultError {
        self.stats.stale_results_rejected = self.stats.stale_results_rejected.saturating_add(1);
        self.events.push(Event::StaleResult {
            task,
            epoch,
            reason,
            at: now,
        });
        ResultError::Stale(reason)
    }
}

impl<const WORKERS: usize, const TASKS: usize, const EVENTS: usize, const HISTORY: usize> Default
    for Ledger<WORKERS, TASKS, EVENTS, HISTORY>
{
    fn default() -> Self {
        Self::new(LedgerConfig::default())
    }
}

/// Each task's jitter stream: the ledger's seed mixed with the task's index.
fn task_seed(seed: u64, idx: u32) -> u64 {
    SplitMix64::new(seed ^ ((idx as u64) << 32 | idx as u64)).next_u64()
}

/// The rule of [`Ledger::add_task_resumed`] and [`Ledger::recycle_task_resumed`]: own
/// failures and crashes are attempts, so together they cannot exceed `attempts_made`.
///
/// # Errors
/// [`LedgerError::ResumeCounts`] when they do.
const fn check_resume_counts(
    attempts_made: u32,
    own_failures: u32,
    crashes: u32,
) -> Result<(), LedgerError> {
    if own_failures as u64 + crashes as u64 > attempts_made as u64 {
        return Err(LedgerError::ResumeCounts {
            attempts_made,
            own_failures,
            crashes,
        });
    }
    Ok(())
}
