//! The fault-tolerance manager's ledger, driven by arbitrary operation lists: workers
//! join, fail, recover, heartbeat or go silent; tasks are assigned, succeed, fail, have
//! their leases renewed or lapse; results arrive late, twice, or with old epochs; the
//! clock jumps (backwards too).
//!
//! Invariants after every step: nothing lost (every added task is still there and the
//! state counts add up to the task count); nothing completed twice (a task's success is
//! accepted at most once, a finished task never runs again, and stays finished); never
//! two live runs of one task with the same epoch (every assignment's epoch is new for
//! its task); no worker runs more tasks than its capacity; the statistics agree with the
//! tasks; a task's crash count stays within the crash limit plus one (or its preset
//! count plus one, for a task resumed past the limit) and the attempts made, and a task
//! past that has failed for good; a resumed task keeps the counts
//! it was given (inconsistent ones are refused); a finished task's recycled slot
//! never accepts a result of an earlier task's attempt, and its epochs never repeat. At the end, with every worker back and time moving on, every task finishes:
//! none waits forever.

use core::time::Duration;
use std::collections::{HashMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use sturdy_core::backoff::BackoffConfig;
use sturdy_core::deadline::DeadlineConfig;
use sturdy_core::manager::{
    Assignment, Ledger, LedgerConfig, LedgerError, TaskState, WorkerHealth,
};
use sturdy_core::retry::RetryPolicy;
use sturdy_core::{FailureKind, Instant, TaskId, WorkerId};

const WORKERS: usize = 4;
const TASKS: usize = 12;
type Small = Ledger<WORKERS, TASKS, 8, 2>;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    AddWorker(u8),
    AddTask,
    /// `add_task_resumed(attempts % 8, own % 8, crashes % 8)`.
    AddTaskResumed(u8, u8, u8),
    Assign,
    /// Report success for an assignment (index modulo those made; may be stale).
    Succeed(u8),
    Fail(u8, u8),
    Renew(u8),
    WorkerFailed(u8, u8),
    WorkerRecovered(u8),
    Suspect(u8),
    Heartbeat(u8),
    Health(u8, u8),
    Clock(i32),
    HandleTimeout,
    Drain,
    /// `recycle_task_resumed(task % tasks, attempts % 8, own % 8, crashes % 8)`: a
    /// finished task's slot takes a new task.
    Recycle(u8, u8, u8, u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_attempts: u8,
    retry_ms: u16,
    timeout_ms: u16,
    lease_ms: u16,
    breaker_failures: u8,
    breaker_open_ms: u16,
    crash_limit: u8,
    crashes_open_breaker: bool,
    ops: Vec<Op>,
}

fn kind_of(b: u8) -> FailureKind {
    FailureKind::ALL[usize::from(b) % FailureKind::ALL.len()]
}

fn config(input: &Input) -> Option<LedgerConfig> {
    let ms = |v: u16| Duration::from_millis(u64::from(v).max(1));
    let backoff =
        BackoffConfig::exponential(ms(input.retry_ms), 2_000, ms(input.retry_ms) * 8).ok()?;
    let retry = RetryPolicy::new(u32::from(input.max_attempts % 6).max(1), backoff).ok()?;
    let deadline = DeadlineConfig::new(ms(input.timeout_ms), ms(input.timeout_ms)).ok()?;
    LedgerConfig::new(retry)
        .with_crash_limit(u32::from(input.crash_limit % 4))
        .with_crashes_open_breaker(input.crashes_open_breaker)
        .with_deadline(deadline)
        .with_lease(ms(input.lease_ms))
        .ok()?
        .with_breaker(
            u32::from(input.breaker_failures % 5).max(1),
            ms(input.breaker_open_ms),
            1,
        )
        .ok()
}

struct Tracker {
    tasks: u32,
    crash_limit: u32,
    /// Crash counts preset by `add_task_resumed` (may exceed the limit).
    preset_crashes: HashMap<u32, u32>,
    /// Epochs handed out per task.
    epochs: HashMap<u32, HashSet<u32>>,
    succeeded: HashSet<u32>,
    finished: HashSet<u32>,
    /// Per recycled slot, its epoch when its current task took it: a result of an
    /// epoch up to it is of an earlier task and must never be accepted.
    base: HashMap<u32, u32>,
    /// Tasks whose slot went to a later task, by how they ended.
    retired_succeeded: u32,
    retired_failed: u32,
}

impl Tracker {
    /// Checks that an accepted result of `a` is of the slot's current task.
    fn accepted(&self, a: &Assignment, step: usize) {
        let base = self.base.get(&a.task.0).copied().unwrap_or(0);
        assert!(
            a.epoch > base,
            "step {step}: a result of epoch {} of an earlier task of slot {:?} (recycled at {base}) was accepted",
            a.epoch,
            a.task
        );
    }
}

fn check(l: &Small, tr: &mut Tracker, step: usize) {
    assert_eq!(
        l.task_count() as u32,
        tr.tasks,
        "step {step}: a task was lost"
    );
    let (mut pending, mut running, mut succeeded, mut failed) = (0u32, 0u32, 0u32, 0u32);
    let mut load = [0u32; WORKERS];
    for i in 0..tr.tasks {
        let v = l.task(TaskId(i)).expect("every added task is there");
        // A resumed task may start past the limit; its next crash fails it.
        let preset = tr.preset_crashes.get(&i).copied().unwrap_or(0);
        let limit = tr.crash_limit.max(preset);
        assert!(
            v.crashes <= limit + 1 && v.crashes <= v.epoch,
            "step {step}: task {i} counts {} crashes in {} attempts (limit {limit})",
            v.crashes,
            v.epoch,
        );
        if v.crashes > limit {
            assert_eq!(
                v.state,
                TaskState::Failed,
                "step {step}: task {i} past the crash limit"
            );
        }
        match v.state {
            TaskState::Pending => pending += 1,
            TaskState::Running { worker, epoch, .. } => {
                running += 1;
                load[worker.0 as usize] += 1;
                assert_eq!(epoch, v.epoch, "step {step}: running under an old epoch");
                assert!(tr.epochs.get(&i).is_some_and(|e| e.contains(&epoch)));
            }
            TaskState::Succeeded => succeeded += 1,
            TaskState::Failed => failed += 1,
            other => panic!("step {step}: a state this driver does not know: {other:?}"),
        }
        if tr.finished.contains(&i) {
            assert!(
                v.state.is_finished(),
                "step {step}: task {i} left its final state"
            );
        }
        if v.state.is_finished() {
            tr.finished.insert(i);
        }
        if v.state == TaskState::Succeeded {
            assert!(
                tr.succeeded.contains(&i),
                "step {step}: task {i} succeeded without a result"
            );
        }
    }
    for (w, &expected) in load.iter().enumerate().take(l.worker_count()) {
        let v = l.worker(WorkerId(w as u32)).expect("registered");
        assert_eq!(v.load, expected, "step {step}: worker {w} load");
        assert!(
            v.load <= v.capacity,
            "step {step}: worker {w} over capacity"
        );
    }
    let s = l.stats();
    assert_eq!(
        (
            s.pending_tasks,
            s.running_tasks,
            s.succeeded_tasks,
            s.failed_tasks
        ),
        (
            pending,
            running,
            succeeded + tr.retired_succeeded,
            failed + tr.retired_failed
        ),
        "step {step}: statistics disagree with the tasks"
    );
    assert_eq!(succeeded as usize, tr.succeeded.len(), "step {step}");
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    crate::debug(&input);
    let Some(cfg) = config(&input) else {
        return;
    };
    let mut l: Small = Ledger::new(cfg);
    let mut tr = Tracker {
        tasks: 0,
        crash_limit: cfg.crash_limit(),
        preset_crashes: HashMap::new(),
        epochs: HashMap::new(),
        succeeded: HashSet::new(),
        finished: HashSet::new(),
        base: HashMap::new(),
        retired_succeeded: 0,
        retired_failed: 0,
    };
    let mut assigned: Vec<Assignment> = Vec::new();
    let mut now = Instant::from_secs(1);
    let pick = |assigned: &[Assignment], i: u8| {
        (!assigned.is_empty()).then(|| assigned[usize::from(i) % assigned.len()])
    };
    let worker = |l: &Small, b: u8| WorkerId(u32::from(b) % (l.worker_count().max(1) as u32));
    for (step, op) in input.ops.iter().enumerate() {
        match *op {
            Op::AddWorker(cap) => {
                let _ = l.add_worker(u32::from(cap % 4), now);
            }
            Op::AddTask => {
                if l.add_task(now).is_ok() {
                    tr.tasks += 1;
                }
            }
            Op::AddTaskResumed(a, o, c) => {
                let (made, own, crashes) = (u32::from(a % 8), u32::from(o % 8), u32::from(c % 8));
                match l.add_task_resumed(made, own, crashes, now) {
                    Ok(t) => {
                        assert!(own + crashes <= made, "step {step}: counts not checked");
                        tr.tasks += 1;
                        tr.preset_crashes.insert(t.0, crashes);
                        let v = l.task(t).expect("just added");
                        assert_eq!(
                            (v.state, v.epoch, v.attempts, v.crashes),
                            (TaskState::Pending, made, made, crashes),
                            "step {step}: resumed task"
                        );
                    }
                    Err(LedgerError::ResumeCounts { .. }) => {
                        assert!(
                            own + crashes > made,
                            "step {step}: consistent counts refused"
                        );
                    }
                    Err(LedgerError::TasksFull { .. }) => {}
                    Err(e) => panic!("step {step}: unexpected {e:?}"),
                }
            }
            Op::Assign => {
                if let Some(a) = l.assign(now) {
                    let before = tr.finished.contains(&a.task.0);
                    assert!(!before, "step {step}: finished task {:?} assigned", a.task);
                    let fresh = tr.epochs.entry(a.task.0).or_default().insert(a.epoch);
                    assert!(
                        fresh,
                        "step {step}: epoch {} of {:?} handed out twice",
                        a.epoch, a.task
                    );
                    assigned.push(a);
                }
            }
            Op::Succeed(i) => {
                if let Some(a) = pick(&assigned, i)
                    && l.task_succeeded(a.task, a.epoch, now).is_ok()
                {
                    tr.accepted(&a, step);
                    let first = tr.succeeded.insert(a.task.0);
                    assert!(first, "step {step}: {:?} completed twice", a.task);
                }
            }
            Op::Fail(i, k) => {
                if let Some(a) = pick(&assigned, i)
                    && l.task_failed(a.task, a.epoch, kind_of(k), now).is_ok()
                {
                    tr.accepted(&a, step);
                }
            }
            Op::Renew(i) => {
                if let Some(a) = pick(&assigned, i)
                    && let Ok(lease) = l.renew_lease(a.task, a.epoch, now)
                {
                    assert!(
                        lease > l.now(),
                        "step {step}: renewed lease {lease} not after now"
                    );
                }
            }
            Op::WorkerFailed(w, k) => {
                let _ = l.worker_failed(worker(&l, w), kind_of(k), now);
            }
            Op::WorkerRecovered(w) => {
                let _ = l.worker_recovered(worker(&l, w), now);
            }
            Op::Suspect(w) => {
                let _ = l.suspect_worker(worker(&l, w), now);
            }
            Op::Heartbeat(w) => {
                let _ = l.heartbeat(worker(&l, w), now);
            }
            Op::Health(w, h) => {
                let h = match h % 3 {
                    0 => WorkerHealth::Healthy,
                    1 => WorkerHealth::Degraded,
                    _ => WorkerHealth::Critical,
                };
                let _ = l.set_worker_health(worker(&l, w), h);
            }
            Op::Clock(d) => {
                let ms = Duration::from_millis(u64::from(d.unsigned_abs()));
                now = if d >= 0 { now + ms } else { now - ms };
            }
            Op::HandleTimeout => l.handle_timeout(now),
            Op::Drain => while l.poll_event().is_some() {},
            Op::Recycle(t, made, own, crashes) => {
                if tr.tasks == 0 {
                    continue;
                }
                let t = TaskId(u32::from(t) % tr.tasks);
                let (made, own, crashes) = (
                    u32::from(made % 8),
                    u32::from(own % 8),
                    u32::from(crashes % 8),
                );
                let before = l.task(t).expect("every added task is there");
                match l.recycle_task_resumed(t, made, own, crashes, now) {
                    Ok(id) => {
                        assert_eq!(id, t);
                        assert!(
                            before.state.is_finished(),
                            "step {step}: {t:?} recycled unfinished"
                        );
                        if tr.succeeded.remove(&t.0) {
                            tr.retired_succeeded += 1;
                        } else {
                            tr.retired_failed += 1;
                        }
                        tr.finished.remove(&t.0);
                        tr.preset_crashes.insert(t.0, crashes);
                        tr.base.insert(t.0, before.epoch);
                        let v = l.task(t).expect("still there");
                        assert_eq!(
                            (v.state, v.epoch, v.attempts, v.crashes),
                            (TaskState::Pending, before.epoch + made, made, crashes),
                            "step {step}: recycled task"
                        );
                    }
                    Err(LedgerError::TaskNotFinished(_)) => {
                        assert!(
                            !before.state.is_finished(),
                            "step {step}: {t:?} not recycled"
                        );
                    }
                    Err(LedgerError::ResumeCounts { .. }) => {
                        assert!(
                            own + crashes > made,
                            "step {step}: consistent counts refused"
                        );
                    }
                    Err(e) => panic!("step {step}: unexpected {e:?}"),
                }
            }
        }
        if let Some(t) = l.poll_timeout() {
            assert!(t < Instant::MAX, "step {step}: poll_timeout of never");
        }
        check(&l, &mut tr, step);
    }
    // Liveness: with every worker back, healthy and heartbeating, and time moving on,
    // every task ends.
    if l.worker_count() == 0
        || (0..l.worker_count()).all(|w| {
            l.worker(WorkerId(w as u32))
                .is_some_and(|v| v.capacity == 0)
        })
    {
        return;
    }
    for w in 0..l.worker_count() as u32 {
        let _ = l.worker_recovered(WorkerId(w), now);
        let _ = l.set_worker_health(WorkerId(w), WorkerHealth::Healthy);
    }
    let step = input.ops.len();
    // Time inside the ledger never runs backwards: continue from the latest it saw.
    now = now.max(l.now());
    // The attempts still out report back (the stale ones are rejected).
    for a in &assigned {
        if l.task_succeeded(a.task, a.epoch, now).is_ok() {
            tr.accepted(a, step);
            assert!(
                tr.succeeded.insert(a.task.0),
                "{:?} completed twice",
                a.task
            );
        }
    }
    for _ in 0..400 {
        if l.is_finished() {
            break;
        }
        now = now + Duration::from_secs(60);
        for w in 0..l.worker_count() as u32 {
            let _ = l.heartbeat(WorkerId(w), now);
        }
        l.handle_timeout(now);
        while let Some(a) = l.assign(now) {
            assert!(tr.epochs.entry(a.task.0).or_default().insert(a.epoch));
            if l.task_succeeded(a.task, a.epoch, now).is_ok() {
                assert!(
                    tr.succeeded.insert(a.task.0),
                    "{:?} completed twice",
                    a.task
                );
            }
        }
        while l.poll_event().is_some() {}
        check(&l, &mut tr, step);
    }
    if !l.is_finished() {
        let workers: Vec<_> = (0..l.worker_count() as u32)
            .map(|w| l.worker(WorkerId(w)))
            .collect();
        let tasks: Vec<_> = (0..tr.tasks).map(|t| l.task(TaskId(t))).collect();
        panic!(
            "tasks still waiting after the workers came back, at {now}\n{:?}\nworkers {workers:#?}\ntasks {tasks:#?}\ninput {input:?}",
            l.stats()
        );
    }
}
