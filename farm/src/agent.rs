//! The host agent: pulls tasks for its free slots, runs them, and records every attempt
//! in the engine under the core's per-task record rules.
//!
//! One agent runs on every host that does work (`sturdy agent`). It is generic over the
//! [`Engine`] (JetStream, or a simulated one) and over a [`Runner`] that starts one
//! attempt's command in a slot (child processes in the CLI, a fake in a simulation).
//!
//! # The rules, per slot
//!
//! - **R1 claim.** A slot pulls one delivery only while its [`ConsecutiveBreaker`] admits,
//!   the host's health gate admits it ([`Runner::admits`]) and the run is not draining. It reads the task's record and asks the core
//!   ([`CoreRecord::on_delivery`]): a finished task is acknowledged without running
//!   (`Skip`); a task whose lost claims are over the crash limit is written `gave_up`
//!   (kind `worker_crash`) with compare-and-set, then terminated; otherwise the claim is
//!   written with compare-and-set. A conflict re-reads once; a second conflict leaves the
//!   delivery alone. A first delivery (epoch 1) of generation 0 skips the read: its
//!   claim is written with compare-and-set against "no record" ([`Revision::NONE`]),
//!   and only if that is refused does the slot read and decide as above.
//! - **R2 renew.** Every [`AgentConfig::heartbeat`] the slot renews the lease with
//!   [`Engine::renew_fenced`] on its claim's revision. Stale: the command is killed, a
//!   [`Record::Stale`] note is written, and the delivery is never touched again.
//! - **R3 finish.** The [`Runner`] classifies the exit ([`Exit::failure`]); a failure
//!   asks the core's [`RetryPolicy`] (replayed from the claim count, jitter seeded with
//!   `seed ^ task`). The `ended` record is written with compare-and-set on the claim's
//!   revision, and **only then** the delivery is acked (done), nak'ed with the core's
//!   delay (retry) or terminated (gave up). The `ended` write is the fence; the ack
//!   after it may be lost (JetStream sends it without a reply): the finished task then
//!   comes back after the ack wait and R1 acknowledges it without running it. A conflict re-reads: a success is still
//!   accepted when the claim was lost and nobody claimed again; otherwise stale, as in
//!   R2. The slot's breaker hears the outcome only when it points at the slot
//!   ([`prior_failure`], [`attribution`]), so tasks
//!   that fail everywhere do not open every slot's breaker.
//! - **R6 drain and abort** come from a [`Control`] watch: drain stops pulling and lets
//!   running attempts finish; abort kills every command and settles nothing (the leases
//!   lapse, the tasks run again elsewhere or after `--resume`).
//!
//! # Determinism
//!
//! The agent is one future: its slots are futures in one [`FuturesUnordered`], which
//! polls only the slot whose waker fired (in the order they fired), with no spawned
//! tasks, no hash-map iteration and only `biased` selects; time is read only through
//! `tokio::time`. [`run_slot`] runs one slot alone, for a caller (the simulation) that
//! spawns each slot as its own task. On a paused-clock current-thread runtime with a simulated engine and a
//! fake runner, a run replays exactly.
//!
//! # Messages
//!
//! An idle slot waits on one long pull ([`AgentConfig::pull_wait`]) rather than pulling
//! again every second. A slot whose attempt ended `done` keeps the delivery unacknowledged
//! until it pulls again, and then acknowledges it and pulls in one message
//! ([`Engine::ack_next`], JetStream's `+NXT`); the `ended` record's compare-and-set was
//! written before, as R3 requires. If the slot stops pulling instead (drain, abort, its
//! breaker open), the delivery is acknowledged on its own first.

use std::future::Future;
use std::time::Duration;

use std::sync::Mutex;

use futures_util::FutureExt as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, Outcome as BreakerOutcome};
use sturdy_core::failure::FailureKind;
use sturdy_core::manager::attribution::{self, PriorFailure};
use sturdy_core::manager::record::{
    Delivery as CoreDelivery, Ending, Phase, Record as CoreRecord, Report,
};
use sturdy_core::retry::{Decision, RetryPolicy, RetryState};
use sturdy_core::time::Instant as CoreInstant;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, sleep, sleep_until};

use crate::engine::{
    Claim, Conflict, Delivery, Ended, Engine, Fenced, Generation, Outcome, Record, Revision,
    Settle, Stale, TaskId,
};
use crate::task_output::{self, OutputFile};

/// What the run's control says ([`run`]'s `control`): the coordinator writes it into the
/// run's definition subject; the CLI watches it and forwards it.
///
/// JSON: `"run"`, `"drain"`, `"abort"`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Pull and run.
    #[default]
    Run,
    /// Pull nothing more; let running attempts finish and settle; then return.
    Drain,
    /// Kill every running command, settle nothing, and return at once.
    Abort,
}

/// What a [`Runner`] is asked to start.
#[derive(Clone, Copy, Debug)]
pub struct Start<'a> {
    /// The task.
    pub task: TaskId,
    /// The attempt, from 1 (the claim's [`Claim::attempt`]).
    pub attempt: u32,
    /// The slot's name (`gpu:0`, `cpu`, `3`).
    pub slot: &'a str,
    /// The slot's index in [`AgentConfig::slots`], from 0.
    pub slot_index: usize,
    /// The work message's payload, as the coordinator enqueued it.
    pub payload: &'a [u8],
}

/// How an attempt's command ended, classified by the runner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// `None`: success. Otherwise the failure's kind, which the core's retry policy and
    /// the slot's breaker judge.
    pub failure: Option<FailureKind>,
    /// The exit status, when the command exited.
    pub exit: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Free text for the record (output path, tail of stderr); keep it to a few KiB.
    pub detail: String,
}

/// Starts attempts' commands in slots.
pub trait Runner {
    /// One running command.
    type Running: Running;

    /// Starts task `start.task`'s attempt `start.attempt` in slot `start.slot`.
    ///
    /// # Errors
    /// Why it could not start (shown in the record's `detail`); the attempt then fails
    /// with [`FailureKind::Unknown`].
    fn start(&self, start: Start<'_>) -> impl Future<Output = Result<Self::Running, String>>;

    /// Whether slot `slot_index` (an index into [`AgentConfig::slots`]) may pull new work
    /// now: the host's health gate, closed while the host (or the slot's device) is
    /// unhealthy. Asked before every pull; while it refuses, the slot pulls nothing,
    /// reports [`Event::HealthGateClosed`] once, and asks again every
    /// [`AgentConfig::pull_wait`]. Running attempts are not touched. The default admits
    /// always.
    fn admits(&self, slot_index: usize) -> bool {
        let _ = slot_index;
        true
    }
}

/// One running command, from [`Runner::start`].
pub trait Running {
    /// Waits until the command ends and classifies how. Must be cancel-safe: the agent
    /// drops this future whenever a renewal, a timeout or a control change comes first,
    /// and calls it again.
    fn wait(&mut self) -> impl Future<Output = Exit>;

    /// Kills the command (and everything it started) for sure; returns once it is gone.
    /// [`Running::wait`] may be called after it.
    fn kill(&mut self) -> impl Future<Output = ()>;

    /// The attempt's output kept on this host, once [`Running::wait`] returned: one
    /// file per stream that printed something (none for a quiet attempt). When the
    /// attempt's end is final for its task, the agent ships them to the coordinator
    /// through the engine before the `ended` record
    /// ([`task_output::ship`]). The default: none.
    fn output(&self) -> Vec<OutputFile> {
        Vec::new()
    }
}

/// The agent's settings. [`AgentConfig::new`] gives the defaults; set fields after.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AgentConfig {
    /// This host's name, written into every claim and ended record.
    pub host: String,
    /// The slots, by name (`gpu:0`, `cpu`, `0`): one attempt at a time each.
    pub slots: Vec<String>,
    /// How often a running attempt renews its lease (R2); at most a third of the
    /// engine's ack wait. Default 1 s.
    pub heartbeat: Duration,
    /// How long one pull waits for a task before the slot pulls again (a control change
    /// ends the wait at once). Long, so that an idle slot costs the engine one request
    /// per `pull_wait`; keep it below the engine's own limit on a pull's expiry. Default
    /// 30 s.
    pub pull_wait: Duration,
    /// How long to pause after an engine error before trying again. Default 200 ms.
    pub engine_pause: Duration,
    /// A command running longer is killed and fails with [`FailureKind::TaskTimeout`];
    /// `None` (default): no limit.
    pub timeout: Option<Duration>,
    /// The retry policy for the task's own failures. Default [`RetryPolicy::ORIGINAL`].
    pub retry: RetryPolicy,
    /// Claims lost with their worker (crashed or paused host) that a task survives; the
    /// next lost claim gives it up (`gave_up`, kind `worker_crash`). Default 2.
    pub crash_limit: u32,
    /// The run's seed; the retry jitter of task `n` is drawn from `seed ^ n`.
    pub seed: u64,
    /// Each slot's breaker: consecutive failures open it and the slot stops pulling.
    /// It hears only failures that point at the slot
    /// ([`attribution`]): the slot's own kinds
    /// (GPU, out of memory, crash, a command that could not start) always; a task's own
    /// failure unless the task's previous attempt failed the same way on another host
    /// ([`prior_failure`]). Default [`ConsecutiveConfig::original`].
    pub breaker: ConsecutiveConfig,
    /// `--delay`: the least time between two starts of attempts on this agent (GNU
    /// parallel's pause between starting jobs, per host): a slot waits for its turn
    /// before it pulls, and its turn moves on by `delay` when the pull brings a task.
    /// Zero (default): no pause.
    pub delay: Duration,
}

impl AgentConfig {
    /// The defaults, for host `host` with slots `slots`.
    pub fn new(host: impl Into<String>, slots: Vec<String>) -> Self {
        Self {
            host: host.into(),
            slots,
            heartbeat: Duration::from_secs(1),
            pull_wait: Duration::from_secs(30),
            engine_pause: Duration::from_millis(200),
            timeout: None,
            retry: RetryPolicy::ORIGINAL,
            crash_limit: 2,
            seed: 0,
            breaker: ConsecutiveConfig::original(),
            delay: Duration::ZERO,
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`AgentError::Config`] naming the field: `host` empty, `slots` empty or a name
    /// repeated or empty, `heartbeat`, `pull_wait` or `engine_pause` zero.
    pub fn validate(&self) -> Result<(), AgentError> {
        let bad = |field: &'static str, rule: &'static str| Err(AgentError::Config { field, rule });
        if self.host.is_empty() {
            return bad("host", "must not be empty");
        }
        if self.slots.is_empty() {
            return bad("slots", "must name at least one slot");
        }
        let mut names: Vec<&str> = self.slots.iter().map(String::as_str).collect();
        if names.iter().any(|n| n.is_empty()) {
            return bad("slots", "a slot name must not be empty");
        }
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return bad("slots", "each slot name must appear once");
        }
        if self.heartbeat.is_zero() {
            return bad("heartbeat", "must be above zero");
        }
        if self.pull_wait.is_zero() {
            return bad("pull_wait", "must be above zero");
        }
        if self.engine_pause.is_zero() {
            return bad("engine_pause", "must be above zero");
        }
        Ok(())
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A field of [`AgentConfig`] broke its rule.
    #[error("agent config: {field} {rule}")]
    Config {
        /// The field.
        field: &'static str,
        /// The rule.
        rule: &'static str,
    },
}

/// Something the agent did or met, for its log ([`run`]'s `events`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A slot claimed a task and starts its command.
    Claimed {
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
        /// The slot.
        slot: String,
    },
    /// An attempt ended and its record was written.
    Ended {
        /// The task.
        task: TaskId,
        /// The record written.
        ended: Ended,
    },
    /// A finished task was delivered again; acknowledged without running.
    Skipped {
        /// The task.
        task: TaskId,
    },
    /// A task's lost claims went over the crash limit: written `gave_up`.
    GaveUpOnCrashes {
        /// The task.
        task: TaskId,
        /// The crashes counted.
        crashes: u32,
    },
    /// An attempt found itself stale: its command was killed (or had already ended; its
    /// result is refused), its delivery left alone.
    Stale {
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
        /// The slot.
        slot: String,
        /// Why.
        reason: String,
    },
    /// A slot's breaker refused work; the slot waits.
    BreakerOpen {
        /// The slot.
        slot: String,
    },
    /// The host's health gate closed for a slot ([`Runner::admits`]); it pulls nothing
    /// until the gate opens.
    HealthGateClosed {
        /// The slot.
        slot: String,
    },
    /// An engine operation failed; the slot pauses and goes on.
    EngineError {
        /// The slot.
        slot: String,
        /// The error, as text.
        error: String,
    },
}

/// What the agent did, over all its slots, when [`run`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentSummary {
    /// Attempts started (claims written).
    pub attempts: u64,
    /// Attempts that ended `done`.
    pub done: u64,
    /// Attempts that ended `retry` or `gave_up`.
    pub failed: u64,
    /// Attempts found stale (their command killed, their delivery left alone).
    pub stale: u64,
    /// Finished tasks delivered again and acknowledged without running.
    pub skipped: u64,
}

impl AgentSummary {
    fn add(&mut self, other: &Self) {
        self.attempts += other.attempts;
        self.done += other.done;
        self.failed += other.failed;
        self.stale += other.stale;
        self.skipped += other.skipped;
    }
}

/// The core's view of a task's newest engine record: `None` (no record) and a
/// `reopened` record (`--retry-failed`: a fresh attempt budget) are [`CoreRecord::NEW`].
/// `None` is kept for a record kind the rules could not read (none today).
pub fn core_record(record: Option<&Record>) -> Option<CoreRecord> {
    let Some(record) = record else {
        return Some(CoreRecord::NEW);
    };
    let (phase, claims, crashes, own_failures) = match record {
        Record::Reopened { .. } => return Some(CoreRecord::NEW),
        Record::Claimed(c) => (Phase::Claimed, c.attempt, c.crashes, c.own_failures),
        Record::Ended(e) => (
            match e.outcome {
                Outcome::Done => Phase::Done,
                Outcome::Retry => Phase::Retrying,
                Outcome::GaveUp => Phase::GaveUp,
            },
            e.attempt,
            e.crashes,
            e.own_failures,
        ),
        Record::Stale(s) => (Phase::Lost, s.attempt, s.crashes, s.own_failures),
    };
    Some(CoreRecord {
        phase,
        claims,
        crashes,
        own_failures,
    })
}

/// Whether `record` is the claim `claim` itself, or the stale record a reconciler wrote
/// over it (same attempt, epoch, host and slot): the only records a late result of that
/// claim may be accepted onto.
fn is_own_claim(record: Option<&Record>, claim: &Claim) -> bool {
    match record {
        Some(Record::Claimed(c)) => {
            c.attempt == claim.attempt
                && c.epoch == claim.epoch
                && c.host == claim.host
                && c.slot == claim.slot
        }
        Some(Record::Stale(s)) => {
            s.attempt == claim.attempt
                && s.epoch == claim.epoch
                && s.host == claim.host
                && s.slot == claim.slot
        }
        _ => false,
    }
}

/// The task's previous failed attempt as its newest record (read before the claim)
/// tells, for breaker attribution on host `host` ([`attribution`]): an `ended retry` or
/// `ended gave_up` record with a known kind, *elsewhere* when it ran on another host (a
/// host-wide fault fails every slot of the host alike, so another slot of the same host
/// is not elsewhere); `None` for anything else (no record, a lost claim, a stale note),
/// so such an attempt's failure counts against the slot.
pub fn prior_failure(record: Option<&Record>, host: &str) -> Option<PriorFailure> {
    match record {
        Some(Record::Ended(e)) if e.outcome != Outcome::Done => Some(PriorFailure {
            kind: FailureKind::from_name(&e.kind)?,
            elsewhere: e.host != host,
        }),
        _ => None,
    }
}

/// The core's retry decision after attempt `attempt` (claims so far) of `task` failed
/// with `kind`: the retry state is replayed through `attempt - 1` earlier failures, so
/// the backoff (and its seeded jitter) continues where the previous attempt left it.
pub fn retry_decision(
    policy: &RetryPolicy,
    seed: u64,
    task: TaskId,
    attempt: u32,
    kind: FailureKind,
) -> Decision {
    let mut state = RetryState::new(CoreInstant::ZERO, seed ^ u64::from(task.0));
    let replay_kind = if policy.retryable().contains(kind) {
        kind
    } else {
        FailureKind::Unknown
    };
    // Bounded: past max_attempts every replayed step gives up anyway.
    let earlier = attempt
        .saturating_sub(1)
        .min(policy.max_attempts().saturating_add(1));
    for _ in 0..earlier {
        if let Decision::GiveUp(reason) = state.on_failure(policy, replay_kind, CoreInstant::ZERO) {
            return Decision::GiveUp(reason);
        }
    }
    state.on_failure(policy, kind, CoreInstant::ZERO)
}

/// Runs the host agent until [`Control::Drain`] (after every running attempt settled)
/// or [`Control::Abort`] (at once, commands killed, nothing settled).
///
/// `engine` is an opened run; `runner` starts commands; `control` carries the run's
/// control (a dropped sender counts as [`Control::Run`] for ever); `events` hears
/// everything the agent does, from any slot (it must not block).
///
/// Engine errors are never fatal: the slot reports an [`Event::EngineError`], pauses
/// [`AgentConfig::engine_pause`] and goes on (a restarted server is picked up again).
///
/// # Errors
/// [`AgentError::Config`] when `config` breaks a rule (nothing is pulled).
pub async fn run<E: Engine, R: Runner>(
    engine: &E,
    runner: &R,
    config: &AgentConfig,
    control: watch::Receiver<Control>,
    events: &(dyn Fn(&Event) + Sync),
) -> Result<AgentSummary, AgentError> {
    config.validate()?;
    let origin = Instant::now();
    // `--delay`: the next start this agent allows (slots take turns through the lock).
    let next_start = tokio::sync::Mutex::new(origin);
    // Each slot is its own future; a wake-up polls only the slot that woke.
    let mut slots: FuturesUnordered<_> = config
        .slots
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let slot = SlotCtx {
                engine,
                runner,
                config,
                events,
                origin,
                index,
                name,
                unacked: Mutex::new(None),
                next_start: &next_start,
            };
            slot.run(control.clone())
        })
        .collect();
    let mut summary = AgentSummary::default();
    while let Some(one) = slots.next().await {
        summary.add(&one);
    }
    Ok(summary)
}

/// Runs slot `index` of `config` alone: what [`run`] does for each of its slots, for a
/// caller that runs each slot as its own task (the simulation spawns one task per slot,
/// so a wake-up reaches only its slot, with no host-level future in between). `origin`
/// is the instant the agent's clock counts from (the same for every slot of a host).
/// `shared` is what the slots of one agent share (see [`SlotsShared`]). The slot follows
/// the same rules as under [`run`]; it returns on drain or abort.
///
/// # Errors
/// [`AgentError::Config`] when `config` breaks a rule or `index` is not one of its slots.
pub async fn run_slot<E: Engine, R: Runner>(
    engine: &E,
    runner: &R,
    config: &AgentConfig,
    index: usize,
    shared: &SlotsShared,
    control: watch::Receiver<Control>,
    events: &(dyn Fn(&Event) + Sync),
) -> Result<AgentSummary, AgentError> {
    config.validate()?;
    let Some(name) = config.slots.get(index) else {
        return Err(AgentError::Config {
            field: "slot index",
            rule: "must be below the number of slots",
        });
    };
    let slot = SlotCtx {
        engine,
        runner,
        config,
        events,
        origin: shared.origin,
        index,
        name,
        unacked: Mutex::new(None),
        next_start: &shared.next_start,
    };
    Ok(slot.run(control).await)
}

/// What the slots of one agent share when each runs on its own ([`run_slot`]).
#[derive(Debug)]
pub struct SlotsShared {
    /// The instant the agent's clock counts from.
    origin: Instant,
    /// The agent's next allowed start under [`AgentConfig::delay`].
    next_start: tokio::sync::Mutex<Instant>,
}

impl SlotsShared {
    /// An agent whose clock counts from `origin` (its first start allowed then).
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            next_start: tokio::sync::Mutex::new(origin),
        }
    }
}

struct SlotCtx<'a, E: Engine, R> {
    engine: &'a E,
    runner: &'a R,
    config: &'a AgentConfig,
    events: &'a (dyn Fn(&Event) + Sync),
    origin: Instant,
    index: usize,
    name: &'a str,
    /// A delivery whose task is finished (its `ended` record written, or found final on
    /// redelivery), still to be acknowledged: by the slot's next pull in the same message
    /// ([`Engine::ack_next`]), or on its own when the slot stops pulling.
    unacked: Mutex<Option<Delivery<E::Handle>>>,
    /// With [`AgentConfig::delay`]: the agent's next allowed start, shared by its slots.
    next_start: &'a tokio::sync::Mutex<Instant>,
}

/// Waits for the next control change; never returns once the sender is gone.
async fn changed(control: &mut watch::Receiver<Control>) {
    if control.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits for the next control change on its own receiver; gives back the control and the
/// receiver (to wait again).
async fn next_control(
    mut control: watch::Receiver<Control>,
) -> (Control, watch::Receiver<Control>) {
    changed(&mut control).await;
    let now = *control.borrow_and_update();
    (now, control)
}

/// Waits until the control is no longer [`Control::Run`] (a change that keeps it
/// [`Control::Run`] does not end the wait, so a pull in flight is not dropped for it: a
/// dropped pull may leave a handed-out message leased to nobody for an ack wait).
async fn stopped(control: &mut watch::Receiver<Control>) {
    loop {
        if *control.borrow_and_update() != Control::Run {
            return;
        }
        changed(control).await;
    }
}

/// How one attempt ended, for the slot's loop.
enum Finished {
    /// Ran and settled (or tried to): the breaker hears `outcome`.
    Ran(BreakerOutcome),
    /// Nothing ran (skipped, gave up on crashes, conflict, engine error).
    NotRun,
    /// The attempt was stale or aborted: the breaker hears nothing.
    Dropped,
    /// Control said abort.
    Abort,
}

impl<E: Engine, R: Runner> SlotCtx<'_, E, R> {
    fn now(&self) -> CoreInstant {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        CoreInstant::from_nanos(nanos)
    }

    fn emit(&self, event: Event) {
        (self.events)(&event);
    }

    fn engine_error(&self, error: &dyn std::fmt::Display) {
        self.emit(Event::EngineError {
            slot: self.name.to_string(),
            error: error.to_string(),
        });
    }

    /// Keeps a finished task's delivery to be acknowledged by the next pull.
    fn defer_ack(&self, delivery: Delivery<E::Handle>) {
        let mut unacked = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        debug_assert!(
            unacked.is_none(),
            "one finished delivery per slot at a time"
        );
        *unacked = Some(delivery);
    }

    fn take_unacked(&self) -> Option<Delivery<E::Handle>> {
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Acknowledges the deferred delivery on its own, when the slot does not pull next.
    async fn ack_unacked(&self) {
        if let Some(delivery) = self.take_unacked()
            && let Err(e) = self.engine.settle(delivery, Settle::Ack).await
        {
            self.engine_error(&e);
        }
    }

    /// Pulls the next delivery, acknowledging the deferred one in the same message.
    async fn pull(&self) -> Result<Option<Delivery<E::Handle>>, crate::engine::Error> {
        match self.take_unacked() {
            Some(done) => self.engine.ack_next(done, self.config.pull_wait).await,
            None => self.engine.next_within(self.config.pull_wait).await,
        }
    }

    /// [`Self::pull`], spaced by [`AgentConfig::delay`]: the slot waits for the agent's
    /// next allowed start (holding the turn while it pulls), and a pull that brings a
    /// task moves that start `delay` on.
    async fn spaced_pull(&self) -> Result<Option<Delivery<E::Handle>>, crate::engine::Error> {
        if self.config.delay.is_zero() {
            return self.pull().await;
        }
        let mut next = self.next_start.lock().await;
        sleep_until(*next).await;
        let pulled = self.pull().await;
        if let Ok(Some(_)) = &pulled {
            *next = Instant::now() + self.config.delay;
        }
        pulled
    }

    async fn run(self, mut control: watch::Receiver<Control>) -> AgentSummary {
        let mut summary = AgentSummary::default();
        let mut breaker: ConsecutiveBreaker = ConsecutiveBreaker::new(self.config.breaker);
        let mut told_open = false;
        let mut told_gated = false;
        loop {
            if *control.borrow_and_update() != Control::Run {
                self.ack_unacked().await;
                return summary;
            }
            if !self.runner.admits(self.index) {
                self.ack_unacked().await;
                if !told_gated {
                    told_gated = true;
                    self.emit(Event::HealthGateClosed {
                        slot: self.name.to_string(),
                    });
                }
                tokio::select! {
                    biased;
                    () = stopped(&mut control) => {}
                    () = sleep(self.config.pull_wait) => {}
                }
                continue;
            }
            told_gated = false;
            let permit = match breaker.try_acquire(self.now()) {
                Ok(permit) => {
                    told_open = false;
                    permit
                }
                Err(_) => {
                    self.ack_unacked().await;
                    if !told_open {
                        told_open = true;
                        self.emit(Event::BreakerOpen {
                            slot: self.name.to_string(),
                        });
                    }
                    let wait = breaker
                        .poll_timeout()
                        .map(|at| {
                            Duration::from_nanos(
                                at.as_nanos().saturating_sub(self.now().as_nanos()),
                            )
                        })
                        .unwrap_or(self.config.pull_wait)
                        .clamp(Duration::from_millis(1), self.config.pull_wait);
                    tokio::select! {
                        biased;
                        () = stopped(&mut control) => {}
                        () = sleep(wait) => breaker.handle_timeout(self.now()),
                    }
                    continue;
                }
            };
            let pulled = tokio::select! {
                biased;
                () = stopped(&mut control) => None,
                pulled = self.spaced_pull() => Some(pulled),
            };
            let delivery = match pulled {
                None | Some(Ok(None)) => {
                    breaker.release(permit, self.now());
                    continue;
                }
                Some(Err(e)) => {
                    breaker.release(permit, self.now());
                    self.engine_error(&e);
                    sleep(self.config.engine_pause).await;
                    continue;
                }
                Some(Ok(Some(delivery))) => delivery,
            };
            match self.attempt(delivery, &mut control, &mut summary).await {
                Finished::Ran(outcome) => breaker.record(permit, outcome, self.now()),
                Finished::NotRun | Finished::Dropped => breaker.release(permit, self.now()),
                Finished::Abort => {
                    breaker.release(permit, self.now());
                    self.ack_unacked().await;
                    return summary;
                }
            }
        }
    }

    /// R1: reads, decides and writes the claim; then runs it.
    async fn attempt(
        &self,
        delivery: Delivery<E::Handle>,
        control: &mut watch::Receiver<Control>,
        summary: &mut AgentSummary,
    ) -> Finished {
        let task = delivery.task();
        let mut conflicts = 0;
        // A first delivery of a first enqueueing almost always finds no record: write the
        // claim with compare-and-set against "no record" without reading first (one round
        // trip less). If a record exists after all (a resumed or re-enqueued task), the
        // write is refused, nothing was written, and the loop reads and decides as below;
        // that refusal does not count as the one conflict allowed.
        let mut optimistic = delivery.epoch() == 1 && delivery.generation() == Generation(0);
        let (claim, revision) = loop {
            let read = if optimistic {
                Ok((None, Revision::NONE))
            } else {
                self.engine.read(task).await
            };
            let (record, revision) = match read {
                Ok(read) => read,
                Err(e) => {
                    self.engine_error(&e);
                    return Finished::NotRun; // the lease lapses; nothing was charged
                }
            };
            if let Some(Record::Reopened { generation }) = &record
                && Generation(*generation) != delivery.generation()
            {
                // A work message from before the reopening (its settlement was lost):
                // only the reopening's own message may claim the fresh budget.
                self.defer_ack(delivery);
                summary.skipped += 1;
                self.emit(Event::Skipped { task });
                return Finished::NotRun;
            }
            let Some(core) = core_record(record.as_ref()) else {
                self.engine_error(&format!(
                    "task {}: record ({}) is not one the agent can claim; left alone",
                    task.0,
                    describe(record.as_ref())
                ));
                return Finished::NotRun;
            };
            let written = match core.on_delivery(self.config.crash_limit) {
                CoreDelivery::Skip => {
                    self.defer_ack(delivery);
                    summary.skipped += 1;
                    self.emit(Event::Skipped { task });
                    return Finished::NotRun;
                }
                CoreDelivery::GiveUp {
                    record: next,
                    crashes,
                } => {
                    let ended = Record::Ended(Ended {
                        attempt: next.claims,
                        epoch: delivery.epoch(),
                        host: self.config.host.clone(),
                        slot: self.name.to_string(),
                        outcome: Outcome::GaveUp,
                        kind: FailureKind::WorkerCrash.as_str().to_string(),
                        exit: None,
                        signal: None,
                        runtime_ms: 0,
                        next_ms: None,
                        detail: format!("its claims were lost {crashes} times"),
                        crashes: next.crashes,
                        own_failures: next.own_failures,
                        output: None,
                    });
                    match self.engine.write(task, revision, &ended).await {
                        Ok(Ok(_)) => {
                            if let Err(e) = self.engine.settle(delivery, Settle::Term).await {
                                self.engine_error(&e);
                            }
                            self.emit(Event::GaveUpOnCrashes { task, crashes });
                            return Finished::NotRun;
                        }
                        Ok(Err(conflict)) => Err(conflict),
                        Err(e) => {
                            self.engine_error(&e);
                            return Finished::NotRun;
                        }
                    }
                }
                CoreDelivery::Claim {
                    record: next,
                    attempt,
                    ..
                } => {
                    let prior = prior_failure(record.as_ref(), &self.config.host);
                    let claim = Claim {
                        attempt,
                        epoch: delivery.epoch(),
                        host: self.config.host.clone(),
                        slot: self.name.to_string(),
                        crashes: next.crashes,
                        own_failures: next.own_failures,
                    };
                    match self
                        .engine
                        .write(task, revision, &Record::Claimed(claim.clone()))
                        .await
                    {
                        Ok(Ok(mine)) => Ok((claim, next, prior, mine)),
                        Ok(Err(conflict)) => Err(conflict),
                        Err(e) => {
                            // Unknown whether it was written: leave the delivery; if it
                            // was, the next delivery charges it as a lost claim.
                            self.engine_error(&e);
                            return Finished::NotRun;
                        }
                    }
                }
            };
            match written {
                Ok((claim, next, prior, mine)) => break ((claim, next, prior), mine),
                Err(Conflict { .. }) if optimistic => optimistic = false,
                Err(Conflict { .. }) if conflicts == 0 => conflicts += 1,
                Err(_) => return Finished::NotRun, // stale: touch nothing
            }
        };
        summary.attempts += 1;
        self.emit(Event::Claimed {
            task,
            attempt: claim.0.attempt,
            slot: self.name.to_string(),
        });
        // Boxed: a running attempt is polled at every renewal, and its state is then a
        // small allocation of its own rather than a part of the slot's whole future (the
        // claim's writes, the finish), which spans kilobytes: fewer cache lines touched
        // per renewal when thousands of slots share a thread (the simulation).
        Box::pin(self.execute(delivery, claim, revision, control, summary)).await
    }

    /// Runs the claimed attempt, renewing (R2); then finishes it (R3).
    async fn execute(
        &self,
        delivery: Delivery<E::Handle>,
        (claim, core, mut prior): (Claim, CoreRecord, Option<PriorFailure>),
        mine: Revision,
        control: &mut watch::Receiver<Control>,
        summary: &mut AgentSummary,
    ) -> Finished {
        let task = delivery.task();
        let started = Instant::now();
        let start = Start {
            task,
            attempt: claim.attempt,
            slot: self.name,
            slot_index: self.index,
            payload: delivery.payload(),
        };
        let mut output = Vec::new();
        let exit = match self.runner.start(start).await {
            Err(why) => {
                // The slot could not start a command: its own fault, counted always.
                prior = None;
                Exit {
                    failure: Some(FailureKind::Unknown),
                    detail: format!("could not start: {why}"),
                    ..Exit::default()
                }
            }
            Ok(mut running) => {
                let mut renew = tokio::time::interval_at(
                    started + self.config.heartbeat,
                    self.config.heartbeat,
                );
                renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let deadline = self.config.timeout.map(|t| started + t);
                // One timer for the whole attempt, not one per renewal.
                let timeout = sleep_until(deadline.unwrap_or(started));
                tokio::pin!(timeout);
                // One control watch for the whole attempt, not one per renewal.
                let mut stop = std::pin::pin!(next_control(control.clone()));
                enum Step {
                    Control(Control, watch::Receiver<Control>),
                    Renew,
                    Timeout,
                    Exited(Exit),
                }
                let exit = loop {
                    let step = tokio::select! {
                        biased;
                        (now, rx) = &mut stop => Step::Control(now, rx),
                        _ = renew.tick() => Step::Renew,
                        () = &mut timeout, if deadline.is_some() => {
                            Step::Timeout
                        }
                        exit = running.wait() => Step::Exited(exit),
                    };
                    match step {
                        Step::Exited(exit) => break exit,
                        Step::Control(now, rx) => {
                            if now == Control::Abort {
                                running.kill().await;
                                return Finished::Abort;
                            }
                            stop.set(next_control(rx));
                        }
                        Step::Timeout => {
                            running.kill().await;
                            let mut exit = running.wait().await;
                            exit.failure = Some(FailureKind::TaskTimeout);
                            break exit;
                        }
                        Step::Renew => match self.engine.renew_fenced(&delivery, mine).await {
                            Ok(Fenced::Renewed) => {}
                            Ok(Fenced::Stale { record, .. }) => {
                                // A renewal held up (a partition, a paused host) may come
                                // back after the command ended: say which.
                                let ended = running.wait().now_or_never().is_some();
                                running.kill().await;
                                let what = if ended {
                                    "its command had already ended; its result is refused"
                                } else {
                                    "its command was killed"
                                };
                                let reason = format!(
                                    "record moved on while running (now: {}); {what}",
                                    describe(record.as_ref())
                                );
                                Box::pin(self.stale(task, &claim, &reason, summary)).await;
                                return Finished::Dropped;
                            }
                            // The command goes on; a lapsed lease shows at the next
                            // renewal or at the ended write.
                            Err(e) => self.engine_error(&e),
                        },
                    }
                };
                output = running.output();
                exit
            }
        };
        let runtime = started.elapsed();
        // Boxed, as the attempt's stale note above: the renewal loop's state stays small.
        Box::pin(self.finish(
            delivery,
            &claim,
            (core, prior),
            mine,
            (exit, output),
            runtime,
            control,
            summary,
        ))
        .await
    }

    /// R3: the ended record with compare-and-set on `mine`, then the settle.
    #[expect(clippy::too_many_arguments, reason = "one attempt's whole state")]
    async fn finish(
        &self,
        delivery: Delivery<E::Handle>,
        claim: &Claim,
        (core, prior): (CoreRecord, Option<PriorFailure>),
        mine: Revision,
        (exit, output): (Exit, Vec<OutputFile>),
        runtime: Duration,
        control: &mut watch::Receiver<Control>,
        summary: &mut AgentSummary,
    ) -> Finished {
        let task = delivery.task();
        let (ending, settle, outcome, next_ms) = match exit.failure {
            None => (Ending::Done, Settle::Ack, Outcome::Done, None),
            Some(kind) => match retry_decision(
                &self.config.retry,
                self.config.seed,
                task,
                claim.attempt,
                kind,
            ) {
                Decision::RetryAfter(delay) => (
                    Ending::Retry,
                    Settle::Nak(delay),
                    Outcome::Retry,
                    Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                ),
                Decision::GiveUp(_) => (Ending::GaveUp, Settle::Term, Outcome::GaveUp, None),
            },
        };
        let report = if exit.failure.is_none() {
            Report::Success
        } else {
            Report::Failure
        };
        let breaker_outcome = exit.failure.map_or(BreakerOutcome::Success, |kind| {
            attribution::breaker_outcome(kind, prior)
        });
        let after = core.finish(ending);
        // A final end ships what the attempt printed before its record says so (a
        // quiet attempt ships nothing and costs no message).
        let output = if outcome == Outcome::Retry || output.is_empty() {
            None
        } else {
            let mark =
                task_output::ship(self.engine, task, claim.attempt, claim.epoch, &output).await;
            if !mark.error.is_empty() {
                self.engine_error(&format_args!(
                    "task {}'s output was not shipped ({}); it stays in {}.out and .err",
                    task.0, mark.error, mark.path
                ));
            }
            Some(Box::new(mark))
        };
        let ended = Ended {
            attempt: claim.attempt,
            epoch: claim.epoch,
            host: self.config.host.clone(),
            slot: self.name.to_string(),
            outcome,
            kind: exit
                .failure
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
            exit: exit.exit,
            signal: exit.signal,
            runtime_ms: u64::try_from(runtime.as_millis()).unwrap_or(u64::MAX),
            next_ms,
            detail: exit.detail,
            crashes: after.crashes,
            own_failures: after.own_failures,
            output,
        };
        let record = Record::Ended(ended.clone());
        let mut expect = mine;
        loop {
            match self.engine.write(task, expect, &record).await {
                Ok(Ok(_)) => break,
                Ok(Err(_)) => {
                    // Moved on: by our own write whose answer was lost, by a reconciler
                    // that marked the claim lost (a success is still accepted), or by a
                    // new owner (stale).
                    let (now, revision) = match self.engine.read(task).await {
                        Ok(read) => read,
                        Err(e) => {
                            self.engine_error(&e);
                            sleep(self.config.engine_pause).await;
                            continue;
                        }
                    };
                    if now.as_ref() == Some(&record) {
                        break;
                    }
                    // Only this attempt's own claim (or the note that marked it lost):
                    // after a reopening (`--retry-failed`) attempt numbers start again
                    // at 1, so the number alone does not fence an attempt of the old
                    // budget.
                    let accepted = is_own_claim(now.as_ref(), claim)
                        && core_record(now.as_ref())
                            .is_some_and(|c| c.accept(claim.attempt, report).is_ok());
                    if accepted && revision != expect {
                        expect = revision;
                        continue;
                    }
                    let reason = format!("record moved on before the result: {now:?}");
                    self.stale(task, claim, &reason, summary).await;
                    return Finished::Dropped;
                }
                Err(e) => {
                    // The server may be down or restarting: try again, unless aborted.
                    self.engine_error(&e);
                    tokio::select! {
                        biased;
                        () = changed(control) => {
                            if *control.borrow_and_update() == Control::Abort {
                                return Finished::Abort;
                            }
                        }
                        () = sleep(self.config.engine_pause) => {}
                    }
                }
            }
        }
        match outcome {
            Outcome::Done => summary.done += 1,
            Outcome::Retry | Outcome::GaveUp => summary.failed += 1,
        }
        if settle == Settle::Ack {
            // Acknowledged by the slot's next pull, in the same message.
            self.defer_ack(delivery);
        } else if let Err(e) = self.engine.settle(delivery, settle).await {
            // The record is written; the message comes back after the ack wait and R1
            // settles it then (done: ack; retry: it simply runs).
            self.engine_error(&e);
        }
        self.emit(Event::Ended { task, ended });
        Finished::Ran(breaker_outcome)
    }

    /// An attempt found itself stale: a journal note, and the delivery is dropped
    /// untouched.
    async fn stale(&self, task: TaskId, claim: &Claim, reason: &str, summary: &mut AgentSummary) {
        summary.stale += 1;
        let note = Record::Stale(Stale {
            attempt: claim.attempt,
            epoch: claim.epoch,
            host: self.config.host.clone(),
            slot: self.name.to_string(),
            reason: reason.to_string(),
            crashes: claim.crashes,
            own_failures: claim.own_failures,
        });
        if let Err(e) = self.engine.note(task, &note).await {
            self.engine_error(&e);
        }
        self.emit(Event::Stale {
            task,
            attempt: claim.attempt,
            slot: self.name.to_string(),
            reason: reason.to_string(),
        });
    }
}

/// A task's record in words for the journal and the log (`attempt 2 claimed by b/cpu`,
/// `attempt 2 ended done on b/cpu`, `no record`).
fn describe(record: Option<&Record>) -> String {
    match record {
        None => "no record".to_string(),
        Some(Record::Claimed(c)) => {
            format!("attempt {} claimed by {}/{}", c.attempt, c.host, c.slot)
        }
        Some(Record::Ended(e)) => {
            let outcome = match e.outcome {
                Outcome::Done => "done",
                Outcome::Retry => "retry",
                Outcome::GaveUp => "gave_up",
            };
            format!(
                "attempt {} ended {outcome} on {}/{}",
                e.attempt, e.host, e.slot
            )
        }
        Some(Record::Stale(st)) => {
            format!("attempt {} stale on {}/{}", st.attempt, st.host, st.slot)
        }
        Some(Record::Reopened { generation }) => format!("reopened, generation {generation}"),
    }
}

#[cfg(test)]
mod reopen_tests {
    use super::*;

    fn claim(attempt: u32, host: &str) -> Claim {
        Claim {
            attempt,
            epoch: 1,
            host: host.into(),
            slot: "0".into(),
            crashes: 0,
            own_failures: 0,
        }
    }

    #[test]
    fn a_reopened_task_is_new_and_an_old_attempt_is_not_its_new_claim() {
        assert_eq!(
            core_record(Some(&Record::Reopened { generation: 7 })),
            Some(CoreRecord::NEW)
        );
        // After a reopening attempt numbers start at 1 again: attempt 1 of the old budget
        // (host a) is not the new claim's owner (host b), though the numbers match.
        let old = claim(1, "a");
        let new = Record::Claimed(claim(1, "b"));
        assert!(!is_own_claim(Some(&new), &old));
        assert!(is_own_claim(Some(&Record::Claimed(old.clone())), &old));
        assert!(!is_own_claim(
            Some(&Record::Reopened { generation: 7 }),
            &old
        ));
    }
}
