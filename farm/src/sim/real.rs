//! The real host agent's slots ([`crate::agent::run_slot`], what [`crate::agent::run`]
//! runs for each slot) in the simulated world, one task per slot: a simulated command
//! [`Runner`], and a host that can be stopped (SIGSTOP) as a whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use sturdy_core::FailureKind;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::engine::SimEngine;
use super::world::{Plan, World};
use crate::agent::{self, AgentConfig, Control, Event, Exit, Runner, Running, Start};

/// Starts simulated commands on one host.
pub(crate) struct SimRunner {
    w: Arc<World>,
    host: u32,
}

/// One simulated command: it runs its plan's time, stretched by the host's pauses.
pub(crate) struct SimRunning {
    w: Arc<World>,
    host: u32,
    slot: u32,
    plan: Plan,
    start: u64,
    paused_at_start: u64,
    killed: bool,
    /// The timer of the command's end, kept across [`Running::wait`] calls (the agent
    /// drops the wait at each renewal and waits again): one timer per command, not one
    /// per renewal.
    end: Option<Pin<Box<Sleep>>>,
    /// The end (ms) that timer was last polled for, and the waker it holds: while both
    /// stand, a new [`Running::wait`] (the agent waits again after each renewal) need not
    /// poll the timer again (one allocation less touched per renewal).
    armed: Option<(u64, Waker)>,
}

impl Runner for SimRunner {
    type Running = SimRunning;

    async fn start(&self, start: Start<'_>) -> Result<SimRunning, String> {
        let slot = start.slot_index as u32;
        let plan = self.w.plan(start.task.0, start.attempt, self.host);
        self.w.exec_start(self.host, slot, start.task.0);
        Ok(SimRunning {
            w: self.w.clone(),
            host: self.host,
            slot,
            plan,
            start: self.w.now(),
            paused_at_start: self.w.paused_total[self.host as usize].load(Ordering::Relaxed),
            killed: false,
            end: None,
            armed: None,
        })
    }
}

impl SimRunning {
    /// Sleeps until `ms` of the command's own (unpaused) time have passed.
    async fn run_for(&mut self, ms: u64) {
        std::future::poll_fn(|cx| self.poll_run_for(cx, ms)).await;
    }

    fn poll_run_for(&mut self, cx: &mut Context<'_>, ms: u64) -> Poll<()> {
        loop {
            let paused = self.w.paused_total[self.host as usize].load(Ordering::Relaxed)
                - self.paused_at_start;
            let end = self.start + ms + paused;
            if self.w.now() >= end {
                return Poll::Ready(());
            }
            if let Some((armed, waker)) = &self.armed
                && *armed == end
                && waker.will_wake(cx.waker())
            {
                // The timer holds this task's waker for this end already.
                return Poll::Pending;
            }
            let at = self.w.start + Duration::from_millis(end);
            let sleep = match &mut self.end {
                Some(sleep) => {
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    sleep
                }
                None => self.end.insert(Box::pin(tokio::time::sleep_until(at))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                self.armed = Some((end, cx.waker().clone()));
                return Poll::Pending;
            }
            // Due: the loop finds `now >= end` (or a pause moved the end on).
            self.armed = None;
        }
    }
}

impl Running for SimRunning {
    async fn wait(&mut self) -> Exit {
        if self.killed {
            return Exit {
                failure: Some(FailureKind::Cancelled),
                signal: Some(9),
                ..Exit::default()
            };
        }
        let failure = match self.plan {
            Plan::Hang => std::future::pending().await,
            Plan::Poison(ms) => {
                self.run_for(ms).await;
                // The command takes its agent down with it.
                self.w.poisoned[self.host as usize].notify_one();
                std::future::pending().await
            }
            Plan::Succeed(ms) => {
                self.run_for(ms).await;
                None
            }
            Plan::Fail(ms, kind) => {
                self.run_for(ms).await;
                Some(kind)
            }
        };
        self.w.exec_exited(self.host, self.slot);
        Exit {
            failure,
            exit: Some(i32::from(failure.is_some())),
            signal: None,
            detail: String::new(),
        }
    }

    async fn kill(&mut self) {
        if !self.killed {
            self.killed = true;
            self.w.exec_end(self.host, self.slot, false);
        }
    }
}

/// A future that is not polled while its host is stopped: the whole agent freezes, its
/// timers included, as under SIGSTOP.
struct Stoppable<F> {
    inner: Pin<Box<F>>,
    w: Arc<World>,
    host: u32,
    sleep: Pin<Box<Sleep>>,
}

impl<F: Future> Future for Stoppable<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let until = self.w.paused_until[self.host as usize].load(Ordering::Relaxed);
        // `until` is 0 for a host never paused: no clock read then.
        if until > 0 && self.w.now() < until {
            let at = self.w.start + Duration::from_millis(until);
            self.sleep.as_mut().reset(at);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        self.inner.as_mut().poll(cx)
    }
}

/// Host `host`'s agent: each of its slots runs [`agent::run_slot`] (the real slot logic
/// of `farm::agent::run`) over the simulated engine and runner as its own task in
/// `slots`, so a wake-up reaches only its slot; the host crashes when the caller aborts
/// `slots` (every slot at once, as the whole agent before).
pub(crate) fn spawn_host_agent(
    w: &Arc<World>,
    engine: &SimEngine,
    host: u32,
    slots: &mut tokio::task::JoinSet<()>,
) {
    let c = &w.cfg;
    let mut config = AgentConfig::new(
        format!("h{host}"),
        (0..c.slots_of(host)).map(|s| s.to_string()).collect(),
    );
    config.heartbeat = Duration::from_millis(c.heartbeat_interval_ms);
    config.timeout = Some(Duration::from_millis(c.command_timeout_ms));
    config.retry = c.retry;
    config.crash_limit = c.crash_limit;
    config.seed = c.seed;
    config.breaker = c.breaker;
    let config = Arc::new(config);
    // The control sender lives as long as any slot: the simulation never drains.
    let (control, rx) = watch::channel(Control::Run);
    let control = Arc::new(control);
    let origin = tokio::time::Instant::now();
    // What the agent's slots share (its clock, its `--delay` turn: the simulation sets
    // no delay).
    let shared = Arc::new(agent::SlotsShared::new(origin));
    for index in 0..config.slots.len() {
        let slot_w = w.clone();
        let engine = engine.clone();
        let config = config.clone();
        let rx = rx.clone();
        let control = control.clone();
        let shared = Arc::clone(&shared);
        let run = async move {
            let _control = control;
            let w = slot_w;
            let runner = SimRunner { w: w.clone(), host };
            let events = |e: &Event| on_event(&w, host, e);
            // The slot returns only on drain or abort, which the simulation never sends.
            let _ = agent::run_slot(&engine, &runner, &config, index, &shared, rx, &events).await;
        };
        slots.spawn_local(Stoppable {
            inner: Box::pin(run),
            w: w.clone(),
            host,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        });
    }
}

/// What the world records of a slot's event.
fn on_event(w: &World, host: u32, e: &Event) {
    match e {
        Event::Claimed { task, .. } | Event::GaveUpOnCrashes { task, .. } => w.claimed(task.0),
        Event::Ended { ended, .. } => {
            if let Ok(slot) = ended.slot.parse::<u32>() {
                w.exec_end(host, slot, true);
            }
        }
        Event::Stale { slot, .. } => {
            if let Ok(slot) = slot.parse::<u32>() {
                w.exec_refused(host, slot);
            }
        }
        _ => {}
    }
}
