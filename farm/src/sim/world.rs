//! The simulated world: hosts with slots and breakers, commands with run times and
//! failure modes, faults, and the host agents that run tasks through a [`SimEngine`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, Outcome as BreakerOutcome};
use sturdy_core::retry::{Decision, RetryPolicy, RetryState};
use sturdy_core::rng::SplitMix64;
use sturdy_core::{FailureKind, Instant as CoreInstant};
use tokio::time::Instant;

use super::dist::Dist;
use super::engine::{NetConfig, SimEngine, SimServer, unit};
use super::server::ServerConfig;
use crate::engine::{
    Claim, Delivery, Ended, Engine, Fenced, Generation, Outcome, Record, Settle, Stale, TaskId,
};

/// Everything that makes a simulated run. Times in milliseconds of virtual time.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// The seed of every random draw.
    pub seed: u64,
    /// Slots (workers) in all.
    pub workers: u32,
    /// Slots per host: the hosts are `workers / slots_per_host` rounded up, the last one
    /// with the rest.
    pub slots_per_host: u32,
    /// Tasks.
    pub tasks: u32,
    /// A command's run time.
    pub duration: Dist,
    /// Probability that an attempt fails on its own, transiently (retryable).
    pub transient: f64,
    /// Fraction of tasks that always fail permanently (not retryable).
    pub permanent: f64,
    /// Fraction of tasks that kill their slot's worker at every attempt (poison).
    pub poison: f64,
    /// Probability that an attempt hangs (ends only by the command timeout).
    pub hang: f64,
    /// The command timeout (`--timeout`).
    pub command_timeout_ms: u64,
    /// AckWait: the lease, `--heartbeat-timeout`.
    pub heartbeat_timeout_ms: u64,
    /// How often a running attempt renews its lease.
    pub heartbeat_interval_ms: u64,
    /// The retry policy (`--max-attempts`, backoff).
    pub retry: RetryPolicy,
    /// Each slot's breaker.
    pub breaker: ConsecutiveConfig,
    /// The consumer's MaxDeliver, MaxAckPending, MaxWaiting (and whether to keep the
    /// journal); its `ack_wait_ms` is replaced by `heartbeat_timeout_ms`.
    pub server: ServerConfig,
    /// The network.
    pub net: NetConfig,
    /// Host crashes per host per hour (exponential inter-arrival).
    pub host_crash_per_hour: f64,
    /// How long a crashed host stays down.
    pub host_restart_ms: u64,
    /// Host pauses (SIGSTOP, GC, VM freeze) per host per hour.
    pub pause_per_hour: f64,
    /// How long a pause lasts.
    pub pause_ms: Dist,
    /// Fraction of hosts that are slow.
    pub slow_hosts: f64,
    /// How much longer commands take on a slow host.
    pub slow_factor: f64,
    /// Server restarts: [start, end).
    pub outages: Vec<(u64, u64)>,
    /// Partitions: (start, length, fraction of hosts cut off).
    pub partitions: Vec<(u64, u64, f64)>,
    /// Give up the run (tasks left unfinished) at this virtual time.
    pub time_limit_ms: u64,
    /// For testing the model only: the agents trust the engine's own fence, which it does
    /// not have (they renew without reading the record, and settle after a refused
    /// write). The model must punish this; the real agent never does it.
    pub unfenced_agent: bool,
    /// Which host agent runs.
    pub agent: AgentKind,
    /// Lost claims a task survives (the real agent's `crash_limit`).
    pub crash_limit: u32,
}

/// Which host agent logic a simulated host runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentKind {
    /// `farm::agent::run`, the real host agent, unchanged, with a simulated command
    /// runner.
    #[default]
    Real,
    /// The simulation's own reference loop of the record rules (R1-R3), one task per
    /// slot; faster, and able to break the rules on purpose
    /// ([`WorldConfig::unfenced_agent`]).
    Reference,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            workers: 8,
            slots_per_host: 2,
            tasks: 100,
            duration: Dist::LogNormal(60_000.0, 0.5),
            transient: 0.0,
            permanent: 0.0,
            poison: 0.0,
            hang: 0.0,
            command_timeout_ms: 3_600_000,
            heartbeat_timeout_ms: 10_000,
            heartbeat_interval_ms: 3_333,
            retry: RetryPolicy::new(
                3,
                sturdy_core::backoff::BackoffConfig::constant(Duration::from_secs(1)),
            )
            .expect("a valid policy"),
            breaker: ConsecutiveConfig::original(),
            server: ServerConfig::default(),
            net: NetConfig::default(),
            host_crash_per_hour: 0.0,
            host_restart_ms: 60_000,
            pause_per_hour: 0.0,
            pause_ms: Dist::Const(30_000.0),
            slow_hosts: 0.0,
            slow_factor: 1.0,
            outages: Vec::new(),
            partitions: Vec::new(),
            time_limit_ms: 30 * 24 * 3_600_000,
            unfenced_agent: false,
            agent: AgentKind::Real,
            crash_limit: 2,
        }
    }
}

/// What a simulated run measured. Times in seconds of virtual time.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Tasks in the run.
    pub tasks: u64,
    /// Tasks whose record ends `done`.
    pub succeeded: u64,
    /// Tasks whose record ends `gave_up`.
    pub failed: u64,
    /// Tasks not finished when the run stopped (time limit).
    pub unfinished: u64,
    /// Tasks with a second `ended done` record (the exactly-once check: always 0).
    pub done_records_twice: u64,
    /// Writes accepted for an attempt older than the task's newest claim (always 0).
    pub writes_after_newer_claim: u64,
    /// The most claims any task got.
    pub max_claims: u32,
    /// Commands still running a grace period after every task ended (always 0).
    pub orphan_commands: u64,
    /// When the last task ended.
    pub makespan_s: f64,
    /// The makespan with no faults and perfect packing: the larger of (total run time /
    /// slots) and the longest task.
    pub ideal_makespan_s: f64,
    /// Slot time spent on executions whose result did not count (killed by a crash, found
    /// stale, refused at the end, poison).
    pub wasted_worker_s: f64,
    /// Commands started.
    pub executions: u64,
    /// Executions whose result did not count (started again elsewhere, or killed).
    pub duplicate_executions: u64,
    /// From a host's crash or pause to its tasks' next claim elsewhere: median.
    pub detection_latency_p50_s: f64,
    /// The same, 99th percentile.
    pub detection_latency_p99_s: f64,
    /// Messages between hosts and the server.
    pub engine_messages: u64,
    /// `engine_messages / makespan_s`.
    pub engine_messages_per_s: f64,
    /// Deliveries handed out.
    pub deliveries: u64,
    /// Redeliveries (lapsed or nak'd).
    pub redeliveries: u64,
    /// Compare-and-set conflicts.
    pub cas_conflicts: u64,
    /// Pulls refused for MaxWaiting.
    pub pulls_refused: u64,
    /// Messages that lapsed during a server outage and were redelivered together when it
    /// ended (the largest burst).
    pub redelivery_burst: u64,
    /// Host crashes.
    pub host_crashes: u64,
    /// Host pauses.
    pub host_pauses: u64,
    /// A hash of every engine operation in order: equal for equal runs.
    pub trace_hash: String,
    /// The seed.
    pub seed: u64,
}

#[derive(Clone, Copy, Debug)]
struct Exec {
    task: u32,
    start: u64,
    /// The command exited by itself (its result awaits the record).
    exited: bool,
}

#[derive(Default)]
struct Stats {
    executions: u64,
    accepted: u64,
    wasted_ms: u64,
    running: BTreeMap<(u32, u32), Exec>,
    lost_at: BTreeMap<u32, u64>,
    detection_ms: Vec<u64>,
    host_crashes: u64,
    host_pauses: u64,
    /// Attempts found stale (and noted) while their command still ran.
    refused_running: u64,
}

/// What one attempt of a task does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Runs this long, then succeeds.
    Succeed(u64),
    /// Runs this long, then fails with this kind.
    Fail(u64, FailureKind),
    /// Kills its worker after this long.
    Poison(u64),
    /// Never ends by itself.
    Hang,
}

fn mix(a: u64, b: u64) -> u64 {
    SplitMix64::new(a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

pub(crate) struct World {
    pub(crate) cfg: WorldConfig,
    pub(crate) start: Instant,
    pub(crate) paused_until: Vec<AtomicU64>,
    /// Per host: every pause so far, summed (ms): a stopped host's commands stop too.
    pub(crate) paused_total: Vec<AtomicU64>,
    /// Per host: a poison command killed its agent.
    pub(crate) poisoned: Vec<tokio::sync::Notify>,
    slow: Vec<bool>,
    stats: Mutex<Stats>,
}

impl WorldConfig {
    /// The number of hosts.
    pub fn hosts(&self) -> u32 {
        self.workers.div_ceil(self.slots_per_host.max(1))
    }

    pub(crate) fn slots_of(&self, h: u32) -> u32 {
        self.slots_per_host
            .min(self.workers - h * self.slots_per_host)
    }
}

impl World {
    pub(crate) fn now(&self) -> u64 {
        Instant::now().duration_since(self.start).as_millis() as u64
    }

    fn core_now(&self) -> CoreInstant {
        CoreInstant::from_millis(self.now())
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits while host `h` is paused.
    async fn gate(&self, h: u32) {
        loop {
            let until = self.paused_until[h as usize].load(Ordering::Relaxed);
            if self.now() >= until {
                return;
            }
            tokio::time::sleep_until(self.start + Duration::from_millis(until)).await;
        }
    }

    /// The task's base run time (its first attempt on a normal host).
    fn base_ms(&self, task: u32) -> u64 {
        let mut r = SplitMix64::new(mix(self.cfg.seed, u64::from(task) << 8));
        self.cfg.duration.sample_ms(&mut r).max(1)
    }

    pub(crate) fn plan(&self, task: u32, attempt: u32, host: u32) -> Plan {
        let c = &self.cfg;
        let mut t = SplitMix64::new(mix(c.seed ^ 0x5bd1_e995, u64::from(task)));
        let kind = unit(&mut t);
        let mut a = SplitMix64::new(mix(
            c.seed ^ 0x27d4_eb2f,
            (u64::from(task) << 16) | u64::from(attempt),
        ));
        let mut ms = self.base_ms(task);
        if self.slow[host as usize] {
            ms = (ms as f64 * c.slow_factor) as u64;
        }
        if kind < c.permanent {
            return Plan::Fail(ms / 2, FailureKind::Permanent);
        }
        if kind < c.permanent + c.poison {
            return Plan::Poison(ms / 2);
        }
        if unit(&mut a) < c.hang {
            return Plan::Hang;
        }
        if unit(&mut a) < c.transient {
            return Plan::Fail((ms as f64 * unit(&mut a)) as u64, FailureKind::Network);
        }
        Plan::Succeed(ms)
    }

    pub(crate) fn exec_start(&self, host: u32, slot: u32, task: u32) {
        let now = self.now();
        let mut s = self.stats();
        s.executions += 1;
        s.running.insert(
            (host, slot),
            Exec {
                task,
                start: now,
                exited: false,
            },
        );
    }

    /// The execution on `host`/`slot` ended; `counted`: its result was accepted.
    pub(crate) fn exec_end(&self, host: u32, slot: u32, counted: bool) {
        let now = self.now();
        let mut s = self.stats();
        if let Some(e) = s.running.remove(&(host, slot)) {
            if counted {
                s.accepted += 1;
                s.lost_at.remove(&e.task);
            } else {
                s.wasted_ms += now - e.start;
            }
        }
    }

    /// The command on `host`/`slot` exited by itself.
    pub(crate) fn exec_exited(&self, host: u32, slot: u32) {
        if let Some(e) = self.stats().running.get_mut(&(host, slot)) {
            e.exited = true;
        }
    }

    /// The attempt on `host`/`slot` was found stale and noted: its command must be gone.
    pub(crate) fn exec_refused(&self, host: u32, slot: u32) {
        {
            let mut s = self.stats();
            if s.running.get(&(host, slot)).is_some_and(|e| !e.exited) {
                s.refused_running += 1;
            }
        }
        self.exec_end(host, slot, false);
    }

    /// Host `h` crashed: its executions die with it.
    fn crash(&self, h: u32) {
        let now = self.now();
        let mut s = self.stats();
        s.host_crashes += 1;
        let dead: Vec<(u32, u32)> = s
            .running
            .range((h, 0)..=(h, u32::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in dead {
            let e = s.running.remove(&k).expect("listed");
            s.wasted_ms += now - e.start;
            s.lost_at.entry(e.task).or_insert(now);
        }
    }

    fn pause(&self, h: u32, until: u64) {
        let now = self.now();
        self.paused_until[h as usize].store(until, Ordering::Relaxed);
        self.paused_total[h as usize].fetch_add(until.saturating_sub(now), Ordering::Relaxed);
        let mut s = self.stats();
        s.host_pauses += 1;
        let tasks: Vec<u32> = s
            .running
            .range((h, 0)..=(h, u32::MAX))
            .map(|(_, e)| e.task)
            .collect();
        for t in tasks {
            s.lost_at.entry(t).or_insert(now);
        }
    }

    pub(crate) fn claimed(&self, task: u32) {
        let now = self.now();
        let mut s = self.stats();
        if let Some(at) = s.lost_at.remove(&task) {
            s.detection_ms.push(now - at);
        }
    }

    /// The retry policy's decision for a failure of attempt `attempt` (attempts count
    /// claims), drawn from seed ^ task.
    fn decide(&self, task: u32, attempt: u32, kind: FailureKind) -> Decision {
        let mut state = RetryState::new(CoreInstant::ZERO, self.cfg.seed ^ u64::from(task));
        let mut d = Decision::RetryAfter(Duration::ZERO);
        for _ in 0..attempt.max(1) {
            d = state.on_failure(&self.cfg.retry, kind, CoreInstant::ZERO);
            if matches!(d, Decision::GiveUp(_)) {
                break;
            }
        }
        d
    }
}

fn attempt_of(r: &Option<Record>) -> u32 {
    match r {
        Some(Record::Claimed(c)) => c.attempt,
        Some(Record::Ended(e)) => e.attempt,
        Some(Record::Stale(s)) => s.attempt,
        _ => 0,
    }
}

/// One slot's agent loop: the record rules R1-R3 of SCALE-OUT.md 5.3 (the stand-in for
/// the real host agent).
async fn slot_loop(w: Arc<World>, eng: SimEngine, host: u32, slot: u32) {
    let mut breaker: ConsecutiveBreaker = ConsecutiveBreaker::new(w.cfg.breaker);
    loop {
        w.gate(host).await;
        let now = w.core_now();
        let permit = match breaker.try_acquire(now) {
            Ok(p) => p,
            Err(r) => {
                let wait = r
                    .retry_at
                    .saturating_duration_since(now)
                    .min(Duration::from_secs(60));
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                continue;
            }
        };
        let d = match eng.next().await {
            Ok(d) => d,
            Err(_) => {
                breaker.release(permit, w.core_now());
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        w.gate(host).await;
        match attempt(&w, &eng, d, host, slot).await {
            Some(o) => breaker.record(permit, o, w.core_now()),
            None => breaker.release(permit, w.core_now()),
        }
    }
}

/// One delivery, from the claim to the settle. Returns the breaker outcome of an attempt
/// that ran and was accepted.
async fn attempt(
    w: &World,
    eng: &SimEngine,
    d: Delivery<super::engine::SimHandle>,
    host: u32,
    slot: u32,
) -> Option<BreakerOutcome> {
    let task = d.task();
    let (rec, rev) = eng.read(task).await.ok()?;
    if rec.as_ref().is_some_and(super::server::is_final) {
        // R1: finished, delivered again (a crash between its end and its ack).
        let _ = eng.settle(d, Settle::Ack).await;
        return None;
    }
    let prev = attempt_of(&rec);
    let host_name = format!("h{host}");
    let slot_name = slot.to_string();
    let max = w.cfg.retry.max_attempts();
    if matches!(rec, Some(Record::Claimed(_))) && prev >= max {
        // R1: the budget is spent and the last claim was lost: give up.
        let gave_up = Record::Ended(Ended {
            attempt: prev,
            epoch: d.epoch(),
            host: host_name,
            slot: slot_name,
            outcome: Outcome::GaveUp,
            kind: "worker_crash".into(),
            exit: None,
            signal: None,
            runtime_ms: 0,
            next_ms: None,
            detail: String::new(),
            crashes: 0,
            own_failures: 0,
            output: None,
        });
        if let Ok(Ok(_)) = eng.write(task, rev, &gave_up).await {
            w.claimed(task.0);
            let _ = eng.settle(d, Settle::Term).await;
        }
        return None;
    }
    let attempt = prev + 1;
    let claim = Record::Claimed(Claim {
        attempt,
        epoch: d.epoch(),
        host: host_name.clone(),
        slot: slot_name.clone(),
        crashes: 0,
        own_failures: 0,
    });
    let mine = match eng.write(task, rev, &claim).await {
        Ok(Ok(r)) => r,
        // R1: conflict or unreachable: stale, touch nothing.
        _ => return None,
    };
    w.claimed(task.0);
    w.exec_start(host, slot, task.0);
    let plan = w.plan(task.0, attempt, host);
    let (mut left, end) = match plan {
        Plan::Succeed(ms) => (ms, None),
        Plan::Fail(ms, k) => (ms, Some(k)),
        Plan::Poison(ms) => (ms, Some(FailureKind::WorkerCrash)),
        Plan::Hang => (u64::MAX, None),
    };
    let mut timeout_left = w.cfg.command_timeout_ms;
    let started = w.now();
    let mut kind = end;
    loop {
        let step = left.min(timeout_left).min(w.cfg.heartbeat_interval_ms);
        tokio::time::sleep(Duration::from_millis(step)).await;
        w.gate(host).await;
        left -= step;
        timeout_left -= step;
        if left == 0 {
            break;
        }
        if timeout_left == 0 {
            kind = Some(FailureKind::TaskTimeout);
            break;
        }
        if w.cfg.unfenced_agent {
            let _ = eng.renew(&d).await;
            continue;
        }
        // R2: renew only while the record is still this attempt's claim.
        match eng.renew_fenced(&d, mine).await {
            Ok(Fenced::Renewed) | Err(_) => {}
            Ok(Fenced::Stale { .. }) => {
                w.exec_end(host, slot, false);
                let _ = eng
                    .note(task, &stale(attempt, &d, &host_name, &slot_name))
                    .await;
                return None;
            }
        }
    }
    if matches!(plan, Plan::Poison(_)) && kind == Some(FailureKind::WorkerCrash) {
        // The worker died with the command: nothing is written or settled; the lease
        // lapses and the next claim charges this one.
        w.exec_end(host, slot, false);
        {
            let mut s = w.stats();
            let now = w.now();
            s.lost_at.entry(task.0).or_insert(now);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        return None;
    }
    let runtime_ms = w.now() - started;
    let (outcome, next_ms, settle, breaker) = match kind {
        None => (Outcome::Done, None, Settle::Ack, BreakerOutcome::Success),
        Some(k) => match w.decide(task.0, attempt, k) {
            Decision::RetryAfter(delay) => (
                Outcome::Retry,
                Some(delay.as_millis() as u64),
                Settle::Nak(delay),
                BreakerOutcome::Failure(k),
            ),
            Decision::GiveUp(_) => (
                Outcome::GaveUp,
                None,
                Settle::Term,
                BreakerOutcome::Failure(k),
            ),
        },
    };
    let ended = Record::Ended(Ended {
        attempt,
        epoch: d.epoch(),
        host: host_name.clone(),
        slot: slot_name.clone(),
        outcome,
        kind: kind.map_or(String::new(), |k| format!("{k:?}").to_lowercase()),
        exit: Some(i32::from(kind.is_some())),
        signal: None,
        runtime_ms,
        next_ms,
        detail: String::new(),
        crashes: 0,
        own_failures: 0,
        output: None,
    });
    // R3: settle only after our own compare-and-set succeeded.
    let written = match eng.write(task, mine, &ended).await {
        Ok(Ok(_)) => true,
        Ok(Err(_)) => false,
        // The reply was lost: the write may have landed. Look.
        Err(_) => matches!(eng.read(task).await, Ok((Some(r), _)) if r == ended),
    };
    w.exec_end(host, slot, written);
    if !written && w.cfg.unfenced_agent {
        let _ = eng.settle(d, settle).await;
        return None;
    }
    if !written {
        let _ = eng
            .note(task, &stale(attempt, &d, &host_name, &slot_name))
            .await;
        return None;
    }
    let _ = eng.settle(d, settle).await;
    Some(breaker)
}

fn stale(attempt: u32, d: &Delivery<super::engine::SimHandle>, host: &str, slot: &str) -> Record {
    Record::Stale(Stale {
        attempt,
        epoch: d.epoch(),
        host: host.into(),
        slot: slot.into(),
        reason: "record moved on".into(),
        crashes: 0,
        own_failures: 0,
    })
}

/// Host `h`'s life: its slots run until it crashes; it comes back after the restart
/// delay. Pauses freeze it.
async fn host_life(w: Arc<World>, server: SimServer, h: u32) {
    let c = &w.cfg;
    let mut rng = SplitMix64::new(mix(c.seed ^ 0x1234_5678, u64::from(h)));
    let exp_ms = |rng: &mut SplitMix64, per_hour: f64| -> u64 {
        if per_hour <= 0.0 {
            u64::MAX
        } else {
            (-(3_600_000.0 / per_hour) * (1.0 - unit(rng)).ln()) as u64
        }
    };
    let mut next_pause = w.now().saturating_add(exp_ms(&mut rng, c.pause_per_hour));
    loop {
        let mut slots = tokio::task::JoinSet::new();
        match c.agent {
            AgentKind::Real => {
                super::real::spawn_host_agent(&w, &server.engine(h), h, &mut slots);
            }
            AgentKind::Reference => {
                for s in 0..c.slots_of(h) {
                    slots.spawn_local(slot_loop(w.clone(), server.engine(h), h, s));
                }
            }
        }
        let crash_at = w
            .now()
            .saturating_add(exp_ms(&mut rng, c.host_crash_per_hour));
        while next_pause < crash_at {
            sleep_until_ms(&w, next_pause).await;
            let len = c.pause_ms.sample_ms(&mut rng);
            w.pause(h, w.now() + len);
            next_pause = (w.now() + len).saturating_add(exp_ms(&mut rng, c.pause_per_hour));
        }
        let poisoned = tokio::select! {
            biased;
            () = w.poisoned[h as usize].notified() => true,
            () = sleep_until_ms(&w, crash_at) => false,
        };
        slots.abort_all();
        w.crash(h);
        let down = if poisoned { 1_000 } else { c.host_restart_ms };
        tokio::time::sleep(Duration::from_millis(down)).await;
    }
}

async fn sleep_until_ms(w: &World, at: u64) {
    match w.start.checked_add(Duration::from_millis(at)) {
        Some(t) if at < u64::MAX / 2 => tokio::time::sleep_until(t).await,
        _ => std::future::pending().await,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs the world on the current (paused, current-thread) runtime.
pub(crate) async fn run_world(cfg: WorldConfig, progress: &mut dyn FnMut(u64, u64)) -> Report {
    let mut server_cfg = cfg.server;
    server_cfg.ack_wait_ms = cfg.heartbeat_timeout_ms;
    let mut net = cfg.net.clone();
    let mut prng = SplitMix64::new(mix(cfg.seed, 0xFA57));
    for &(start, len, frac) in &cfg.partitions {
        for h in 0..cfg.hosts() {
            if unit(&mut prng) < frac {
                net.partitions
                    .entry(h)
                    .or_default()
                    .push((start, start + len));
            }
        }
    }
    let server = SimServer::start(server_cfg, cfg.outages.clone(), net, mix(cfg.seed, 0x5E4));
    let mut srng = SplitMix64::new(mix(cfg.seed, 0x510));
    let slow = (0..cfg.hosts())
        .map(|_| unit(&mut srng) < cfg.slow_hosts)
        .collect();
    let w = Arc::new(World {
        start: Instant::now(),
        paused_until: (0..cfg.hosts()).map(|_| AtomicU64::new(0)).collect(),
        paused_total: (0..cfg.hosts()).map(|_| AtomicU64::new(0)).collect(),
        poisoned: (0..cfg.hosts())
            .map(|_| tokio::sync::Notify::new())
            .collect(),
        slow,
        stats: Mutex::new(Stats::default()),
        cfg,
    });
    let c = &w.cfg;
    // With the journal kept, the real coordinator (`crate::coordinator`) enqueues over the
    // simulated network and follows the journal into its projection, which says when the
    // run is complete. Without it (large runs), a bulk enqueue and the server's count of
    // final records stand in.
    let coordinated = c.server.journal;
    let coordinator = server.engine(c.hosts());
    let mut total_ms: u128 = 0;
    let mut longest = 0;
    for t in 0..c.tasks {
        let ms = w.base_ms(t);
        total_ms += u128::from(ms);
        longest = longest.max(ms);
        if !coordinated {
            server.enqueue_local(TaskId(t), Generation(0));
        }
    }
    if coordinated {
        let list: Vec<(TaskId, Vec<u8>)> = (0..c.tasks).map(|t| (TaskId(t), Vec::new())).collect();
        // Enqueueing again is idempotent: retry until every task is in (a lost request).
        while crate::coordinator::enqueue(&coordinator, &list, true)
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let slots = u128::from(c.workers);
    let ideal_ms = (total_ms / slots.max(1)).max(u128::from(longest)) as f64;
    let mut hosts = tokio::task::JoinSet::new();
    for h in 0..c.hosts() {
        hosts.spawn_local(host_life(w.clone(), server.clone(), h));
    }
    let shared = server.shared().clone();
    let limit = w.start + Duration::from_millis(c.time_limit_ms);
    if coordinated {
        let mut projection = crate::coordinator::Projection::new((0..c.tasks).map(TaskId));
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let follow = async {
            loop {
                let followed = crate::coordinator::follow(
                    &coordinator,
                    &mut projection,
                    stop.clone(),
                    |_, _| progress(shared.lock().server.finals, w.now()),
                )
                .await;
                if followed.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            biased;
            () = follow => {}
            () = tokio::time::sleep_until(limit) => {}
        }
    }
    loop {
        let notified = shared.progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let finals = shared.lock().server.finals;
        progress(finals, w.now());
        if finals >= u64::from(c.tasks) {
            break;
        }
        tokio::select! {
            biased;
            () = notified => {}
            () = tokio::time::sleep_until(limit) => break,
        }
    }
    let makespan_ms = w.now();
    // Grace: a paused host wakes, a stale attempt learns it and stops its command.
    let grace = match c.pause_ms {
        _ if c.pause_per_hour <= 0.0 => 0,
        Dist::Const(v) => v as u64,
        Dist::Uniform(_, b) => b as u64,
        d => (d.mean_ms() * 20.0) as u64,
    } + 2 * c.heartbeat_interval_ms
        + 3 * c.net.request_timeout_ms;
    tokio::time::sleep(Duration::from_millis(grace)).await;
    hosts.abort_all();
    let mut g = shared.lock();
    // Leases lapse when the server is looked at: count those that lapsed by now.
    let now = g.now();
    g.sync(now);
    let s = w.stats();
    let mut det = s.detection_ms.clone();
    det.sort_unstable();
    let finals = g.server.finals;
    let (mut succeeded, mut failed) = (0, 0);
    for t in 0..c.tasks {
        if let (Some(Record::Ended(e)), _) = g.server.read(TaskId(t)) {
            match e.outcome {
                Outcome::Done => succeeded += 1,
                Outcome::GaveUp => failed += 1,
                Outcome::Retry => {}
            }
        }
    }
    let makespan_s = makespan_ms as f64 / 1000.0;
    Report {
        tasks: u64::from(c.tasks),
        succeeded,
        failed,
        unfinished: u64::from(c.tasks) - finals,
        done_records_twice: g.server.checks.done_records_twice,
        writes_after_newer_claim: g.server.checks.writes_after_newer_claim,
        max_claims: g.server.checks.max_claims,
        orphan_commands: s.running.values().filter(|e| !e.exited).count() as u64
            + s.refused_running,
        makespan_s,
        ideal_makespan_s: ideal_ms / 1000.0,
        wasted_worker_s: s.wasted_ms as f64 / 1000.0,
        executions: s.executions,
        duplicate_executions: s.executions - s.accepted,
        detection_latency_p50_s: percentile(&det, 0.5),
        detection_latency_p99_s: percentile(&det, 0.99),
        engine_messages: g.messages,
        engine_messages_per_s: if makespan_s > 0.0 {
            g.messages as f64 / makespan_s
        } else {
            0.0
        },
        deliveries: g.server.stats.deliveries,
        redeliveries: g.server.stats.redeliveries,
        cas_conflicts: g.server.stats.conflicts,
        pulls_refused: g.server.stats.pulls_refused,
        redelivery_burst: g.server.stats.redelivery_burst,
        host_crashes: s.host_crashes,
        host_pauses: s.host_pauses,
        trace_hash: format!("{:016x}", g.trace),
        seed: c.seed,
    }
}
