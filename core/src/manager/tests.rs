//! The ledger's tests: the original's manager tests in our terms, then heartbeats,
//! leases, epochs, retries, health marks, and property tests over random operations.

use core::time::Duration;
use std::vec::Vec as StdVec;

use super::*;
use crate::breaker::ConsecutiveBreaker;
use crate::deadline::DeadlineConfig;
use crate::retry::{GiveUpReason, fixed_policy};
use std::string::ToString;

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// Fixed 5 s retry delay, 3 attempts, 30 s heartbeat timeout and grace, 30 s lease.
fn config() -> LedgerConfig {
    LedgerConfig::new(fixed_policy(3, Duration::from_secs(5)).unwrap())
}

fn drain<const W: usize, const T: usize>(l: &mut Ledger<W, T>) -> StdVec<Event> {
    core::iter::from_fn(|| l.poll_event()).collect()
}

#[test]
fn original_worker_failure_tracked_and_recovery_clears() {
    let mut l: Ledger<4, 8> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    l.worker_failed(w, FailureKind::WorkerCrash, secs(1))
        .unwrap();
    let v = l.worker(w).unwrap();
    assert_eq!(
        v.status,
        WorkerStatus::Failed {
            kind: FailureKind::WorkerCrash,
            since: secs(1)
        }
    );
    let s = l.stats();
    assert_eq!((s.failed_workers, s.total_worker_failures), (1, 1));
    // A failed worker's heartbeats are refused until it recovers.
    assert_eq!(l.heartbeat(w, secs(2)), Err(LedgerError::WorkerDown(w)));
    assert!(!l.can_take_task(w, secs(2)), "unhealthy while failed");
    l.worker_recovered(w, secs(3)).unwrap();
    assert_eq!(l.worker(w).unwrap().status, WorkerStatus::Alive);
    assert!(l.can_take_task(w, secs(3)));
    assert!(!l.can_take_task(WorkerId(9), secs(3)));
    let s = l.stats();
    assert_eq!(
        (
            s.failed_workers,
            s.total_worker_failures,
            s.recovery_attempts
        ),
        (0, 1, 1)
    );
    assert_eq!(
        drain(&mut l),
        [
            Event::WorkerFailed {
                worker: w,
                kind: FailureKind::WorkerCrash,
                at: secs(1)
            },
            Event::WorkerRecovered {
                worker: w,
                at: secs(3)
            },
        ]
    );
    // The recovered worker gets its grace period again from 3 s.
    assert_eq!(l.worker(w).unwrap().heartbeat_deadline, secs(33));
}

#[test]
fn original_reassignment_round_robin_continues_across_calls() {
    // w1 failed; three tasks go to w2, w3, w2 (the original's test), and the next call
    // continues the rotation instead of restarting at the first worker.
    let mut l: Ledger<4, 8> = Ledger::new(config());
    let w1 = l.add_worker(4, secs(0)).unwrap();
    let w2 = l.add_worker(4, secs(0)).unwrap();
    let w3 = l.add_worker(4, secs(0)).unwrap();
    l.worker_failed(w1, FailureKind::WorkerCrash, secs(0))
        .unwrap();
    for _ in 0..3 {
        l.add_task(secs(0)).unwrap();
    }
    let got: StdVec<_> = core::iter::from_fn(|| l.assign(secs(1))).collect();
    assert_eq!(
        got.iter().map(|a| a.worker).collect::<StdVec<_>>(),
        [w2, w3, w2]
    );
    assert_eq!(
        got.iter().map(|a| a.task).collect::<StdVec<_>>(),
        [TaskId(0), TaskId(1), TaskId(2)]
    );
    for a in &got {
        l.task_succeeded(a.task, a.epoch, secs(2)).unwrap();
    }
    let t = l.add_task(secs(3)).unwrap();
    let a = l.assign(secs(3)).unwrap();
    assert_eq!((a.task, a.worker), (t, w3));
    let t = l.add_task(secs(3)).unwrap();
    assert_eq!(l.assign(secs(3)).unwrap().worker, w2);
    assert_eq!(l.task(t).unwrap().epoch, 1);
}

#[test]
fn original_four_worker_failures_open_its_breaker() {
    let mut l: Ledger<2, 2> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    let other = l.add_worker(1, secs(0)).unwrap();
    for s in 1..=4 {
        l.worker_failed(w, FailureKind::Gpu, secs(s)).unwrap();
    }
    // Opened by the third failure, at 3 s, for 300 s.
    let until = secs(303);
    assert_eq!(l.worker(w).unwrap().breaker, BreakerState::Open { until });
    assert_eq!(l.worker(other).unwrap().breaker, BreakerState::Closed);
    let states: StdVec<_> = l.breaker_states().collect();
    assert_eq!(
        states,
        [
            (w, BreakerState::Open { until }),
            (other, BreakerState::Closed)
        ]
    );
    let s = l.stats();
    assert_eq!(
        (s.total_worker_failures, s.failed_workers, s.breakers_open),
        (4, 1, 1)
    );
    let breaker_events: StdVec<_> = drain(&mut l)
        .into_iter()
        .filter(|e| matches!(e, Event::Breaker { .. }))
        .collect();
    assert_eq!(
        breaker_events,
        [Event::Breaker {
            worker: w,
            from: BreakerState::Closed,
            to: BreakerState::Open { until },
            at: secs(3)
        }]
    );
    // Recovered but still open: no task until it half-opens at 303 s.
    l.worker_recovered(w, secs(5)).unwrap();
    assert!(
        !l.can_take_task(w, secs(5)),
        "unhealthy while its breaker is open"
    );
    l.heartbeat(other, secs(5)).unwrap();
    l.worker_failed(other, FailureKind::WorkerCrash, secs(5))
        .unwrap();
    l.add_task(secs(5)).unwrap();
    assert_eq!(l.assign(secs(6)), None);
    assert_eq!(l.poll_timeout(), Some(secs(35)));
    l.heartbeat(w, secs(290)).unwrap();
    assert!(!l.can_take_task(w, secs(302)));
    assert!(
        l.can_take_task(w, secs(303)),
        "its breaker admits a probe at 303 s"
    );
    assert_eq!(l.assign(secs(302)), None);
    l.heartbeat(w, secs(303)).unwrap();
    let a = l.assign(secs(303)).unwrap();
    assert_eq!(a.worker, w);
    assert_eq!(l.worker(w).unwrap().breaker, BreakerState::HalfOpen);
}

#[test]
fn original_statistics_and_reset() {
    let mut l: Ledger<4, 8> = Ledger::new(config());
    let w0 = l.add_worker(2, secs(0)).unwrap();
    let w1 = l.add_worker(2, secs(0)).unwrap();
    let t0 = l.add_task(secs(0)).unwrap();
    let t1 = l.add_task(secs(0)).unwrap();
    let t2 = l.add_task(secs(0)).unwrap();
    let a0 = l.assign(secs(0)).unwrap();
    let a1 = l.assign(secs(0)).unwrap();
    let a2 = l.assign(secs(0)).unwrap();
    assert_eq!(
        [a0.worker, a1.worker, a2.worker],
        [w0, w1, w0],
        "least loaded, round robin"
    );
    // t0 fails three times: retried twice, then failed for good (counted once).
    let mut now = secs(1);
    let mut epoch = a0.epoch;
    for attempt in 1..=3 {
        let d = l
            .task_failed(t0, epoch, FailureKind::Evaluation, now)
            .unwrap();
        if attempt < 3 {
            assert_eq!(d, Decision::RetryAfter(Duration::from_secs(5)));
            now = now + Duration::from_secs(5);
            l.heartbeat(w0, now).unwrap();
            l.heartbeat(w1, now).unwrap();
            let a = l.assign(now).unwrap();
            assert_eq!(a.task, t0);
            epoch = a.epoch;
        } else {
            assert_eq!(
                d,
                Decision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 3 })
            );
        }
    }
    // A late extra failure report does not count the task failed twice.
    assert_eq!(
        l.task_failed(t0, epoch, FailureKind::Evaluation, now),
        Err(ResultError::Stale(StaleReason::Finished))
    );
    // w0 crashes with t2 running: t2 requeued, charged, reassigned to w1.
    l.worker_failed(w0, FailureKind::WorkerCrash, now).unwrap();
    let a = l.assign(now).unwrap();
    assert_eq!((a.task, a.worker, a.epoch), (t2, w1, 2));
    l.task_succeeded(t1, a1.epoch, now).unwrap();
    l.task_succeeded(t2, a.epoch, now).unwrap();
    assert!(l.is_finished());
    let s = l.stats();
    assert_eq!(s.total_task_failures, 4);
    assert_eq!(s.total_worker_failures, 1);
    assert_eq!(s.failed_tasks, 1);
    assert_eq!(s.failed_workers, 1);
    assert_eq!(s.tasks_with_retries, 2);
    assert_eq!(s.recovery_attempts, 0);
    assert_eq!(s.retries, 2);
    assert_eq!(s.reassignments, 1);
    assert_eq!(s.stale_results_rejected, 1);
    assert_eq!(s.assignments, 6);
    assert_eq!(s.succeeded_tasks, 2);
    assert_eq!((s.pending_tasks, s.running_tasks), (0, 0));
    let hist: StdVec<_> = l.failure_history(t0).map(|e| (e.attempt, e.kind)).collect();
    assert_eq!(
        hist,
        [
            (1, FailureKind::Evaluation),
            (2, FailureKind::Evaluation),
            (3, FailureKind::Evaluation)
        ]
    );
    assert_eq!(l.task(t0).unwrap().state, TaskState::Failed);

    l.reset();
    assert_eq!(l.stats(), Stats::default());
    assert_eq!((l.task_count(), l.worker_count()), (0, 0));
    assert_eq!(l.poll_event(), None);
    assert_eq!(l.poll_timeout(), None);
    assert!(l.task(t0).is_none());
    // Usable again after the reset; the clock did not go back.
    let w = l.add_worker(1, secs(0)).unwrap();
    assert_eq!(
        l.worker(w).unwrap().heartbeat_deadline,
        now + Duration::from_secs(30)
    );
}

#[test]
fn worker_that_never_heartbeats_is_suspected_after_grace() {
    let cfg = config().with_deadline(
        DeadlineConfig::new(Duration::from_secs(10), Duration::from_secs(20)).unwrap(),
    );
    let mut l: Ledger<2, 4> = Ledger::new(cfg);
    let silent = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(1)).unwrap();
    assert_eq!(a.worker, silent);
    assert_eq!(l.poll_timeout(), Some(secs(20)));
    l.handle_timeout(secs(19));
    assert_eq!(
        l.task(t).unwrap().state,
        TaskState::Running {
            worker: silent,
            epoch: 1,
            lease: secs(31)
        }
    );
    drain(&mut l);
    l.handle_timeout(secs(20));
    assert_eq!(
        l.worker(silent).unwrap().status,
        WorkerStatus::Suspect { since: secs(20) }
    );
    assert_eq!(
        drain(&mut l),
        [
            Event::WorkerSuspected {
                worker: silent,
                silence: Duration::from_secs(20),
                at: secs(20)
            },
            Event::AttemptFailed {
                task: t,
                worker: Some(silent),
                epoch: 1,
                attempt: 1,
                kind: FailureKind::WorkerCrash,
                at: secs(20)
            },
            Event::Requeued {
                task: t,
                worker: silent,
                epoch: 1,
                reason: RequeueReason::WorkerSuspected,
                at: secs(20)
            },
        ]
    );
    // Nothing else can take it: it waits, it is not dropped.
    assert_eq!(l.assign(secs(21)), None);
    assert_eq!(l.task(t).unwrap().state, TaskState::Pending);
    assert_eq!(l.poll_timeout(), None);
    // The worker comes back by heartbeating, and gets the task again (attempt 2).
    l.heartbeat(silent, secs(25)).unwrap();
    assert_eq!(l.worker(silent).unwrap().status, WorkerStatus::Alive);
    let a = l.assign(secs(25)).unwrap();
    assert_eq!((a.task, a.epoch, a.attempt), (t, 2, 2));
    let s = l.stats();
    assert_eq!(
        (
            s.total_worker_failures,
            s.failed_workers,
            s.recovery_attempts
        ),
        (1, 0, 1)
    );
}

#[test]
fn outside_detector_suspicion_and_disabled_deadline() {
    // Deadlines off (a phi detector decides instead): nothing is ever timed by them.
    let cfg = config().with_deadline(DeadlineConfig::disabled());
    let mut l: Ledger<2, 2> = Ledger::new(cfg);
    let w0 = l.add_worker(1, secs(0)).unwrap();
    let w1 = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(a.worker, w0);
    // Only the lease is timed.
    assert_eq!(l.poll_timeout(), Some(secs(30)));
    l.heartbeat(w0, secs(20)).unwrap();
    l.suspect_worker(w0, secs(21)).unwrap();
    assert_eq!(
        l.worker(w0).unwrap().status,
        WorkerStatus::Suspect { since: secs(21) }
    );
    let b = l.assign(secs(21)).unwrap();
    assert_eq!((b.task, b.worker, b.epoch), (t, w1, 2));
    assert_eq!(l.stats().total_worker_failures, 1);
    // Suspecting again (not alive) changes nothing; a heartbeat brings it back.
    l.suspect_worker(w0, secs(22)).unwrap();
    assert_eq!(l.stats().total_worker_failures, 1);
    l.heartbeat(w0, secs(23)).unwrap();
    assert!(l.worker(w0).unwrap().status.is_alive());
    assert_eq!(
        l.suspect_worker(WorkerId(5), secs(23)),
        Err(LedgerError::UnknownWorker(WorkerId(5)))
    );
    // A clock that jumps to its maximum does not make a disabled deadline fire.
    l.handle_timeout(Instant::MAX);
    assert!(l.worker(w1).unwrap().status.is_alive());
    assert_eq!(l.stats().total_worker_failures, 1);
}

#[test]
fn half_open_trial_task_may_run_long() {
    // Breaker open after 3 failed tasks; the trial task after it half-opens runs for an
    // hour with heartbeats: no probe timeout reopens the breaker meanwhile.
    let cfg = LedgerConfig::new(fixed_policy(10, Duration::ZERO).unwrap());
    let mut l: Ledger<1, 4> = Ledger::new(cfg);
    let w = l.add_worker(1, secs(0)).unwrap();
    // Three different tasks' first attempts (a task's repeated failure would not count:
    // see `attribution`).
    let failing: StdVec<_> = (0..3).map(|_| l.add_task(secs(0)).unwrap()).collect();
    let t = l.add_task(secs(0)).unwrap();
    for f in &failing {
        let a = l.assign(secs(0)).unwrap();
        assert_eq!(a.task, *f);
        l.task_failed(a.task, a.epoch, FailureKind::Evaluation, secs(0))
            .unwrap();
    }
    assert_eq!(
        l.worker(w).unwrap().breaker,
        BreakerState::Open { until: secs(300) }
    );
    assert_eq!(l.assign(secs(299)), None);
    l.heartbeat(w, secs(300)).unwrap();
    let a = l.assign(secs(300)).unwrap();
    assert_eq!((a.task, a.epoch), (t, 1));
    for s in (310..4000).step_by(10) {
        l.heartbeat(w, secs(s)).unwrap();
        l.handle_timeout(secs(s));
        assert_eq!(l.worker(w).unwrap().breaker, BreakerState::HalfOpen);
    }
    l.task_succeeded(t, 1, secs(4000)).unwrap();
    assert_eq!(l.worker(w).unwrap().breaker, BreakerState::HalfOpen);
    assert_eq!(l.worker(w).unwrap().breaker_metrics.probes_in_flight, 0);
}

#[test]
fn renewed_lease_is_never_handed_to_a_second_worker() {
    let cfg = config().with_lease(Duration::from_secs(10)).unwrap();
    let mut l: Ledger<2, 2> = Ledger::new(cfg);
    let w0 = l.add_worker(1, secs(0)).unwrap();
    let w1 = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!((a.worker, a.lease), (w0, secs(10)));
    // A task running 1000 s, heartbeats every 5 s.
    for s in (5..=1000).step_by(5) {
        l.heartbeat(w0, secs(s)).unwrap();
        l.heartbeat(w1, secs(s)).unwrap();
        l.handle_timeout(secs(s));
        assert_eq!(l.assign(secs(s)), None);
    }
    assert_eq!(
        l.task(t).unwrap().state,
        TaskState::Running {
            worker: w0,
            epoch: 1,
            lease: secs(1010)
        }
    );
    assert_eq!(l.stats().assignments, 1);
    l.task_succeeded(t, 1, secs(1001)).unwrap();
}

#[test]
fn lapsed_lease_is_reassigned_exactly_once() {
    let cfg = config()
        .with_lease(Duration::from_secs(10))
        .unwrap()
        .with_deadline(
            DeadlineConfig::new(Duration::from_secs(60), Duration::from_secs(60)).unwrap(),
        );
    let mut l: Ledger<2, 2> = Ledger::new(cfg);
    let w0 = l.add_worker(1, secs(0)).unwrap();
    let w1 = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(a.worker, w0);
    // Per-task renewal keeps it once.
    assert_eq!(l.renew_lease(t, 1, secs(5)), Ok(secs(15)));
    assert_eq!(
        l.renew_lease(t, 7, secs(5)),
        Err(ResultError::Stale(StaleReason::OldEpoch { current: 1 }))
    );
    // The worker's lease check is a lower bound: one spurious wake-up at 10 s, harmless.
    assert_eq!(l.poll_timeout(), Some(secs(10)));
    l.handle_timeout(secs(10));
    assert_eq!(l.poll_timeout(), Some(secs(15)));
    drain(&mut l);
    l.handle_timeout(secs(15));
    assert_eq!(
        drain(&mut l),
        [
            Event::LeaseExpired {
                task: t,
                worker: w0,
                epoch: 1,
                at: secs(15)
            },
            Event::AttemptFailed {
                task: t,
                worker: Some(w0),
                epoch: 1,
                attempt: 1,
                kind: FailureKind::TaskTimeout,
                at: secs(15)
            },
            Event::Requeued {
                task: t,
                worker: w0,
                epoch: 1,
                reason: RequeueReason::LeaseExpired,
                at: secs(15)
            },
        ]
    );
    let b = l.assign(secs(15)).unwrap();
    assert_eq!((b.task, b.worker, b.epoch), (t, w1, 2));
    assert_eq!(l.assign(secs(15)), None);
    // Further timeouts do not requeue it again while w1 renews.
    for s in 16..40 {
        l.heartbeat(w1, secs(s)).unwrap();
        l.handle_timeout(secs(s));
        assert_eq!(l.assign(secs(s)), None);
    }
    let s = l.stats();
    assert_eq!((s.reassignments, s.assignments), (1, 2));
    // The first attempt's late result is stale.
    assert_eq!(
        l.task_succeeded(t, 1, secs(40)),
        Err(ResultError::Stale(StaleReason::OldEpoch { current: 2 }))
    );
    l.task_succeeded(t, 2, secs(41)).unwrap();
}

#[test]
fn epochs_fence_late_results() {
    let mut l: Ledger<2, 4> = Ledger::new(config());
    let w0 = l.add_worker(1, secs(0)).unwrap();
    let w1 = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!((a.worker, a.epoch), (w0, 1));
    l.worker_failed(w0, FailureKind::WorkerCrash, secs(1))
        .unwrap();
    let b = l.assign(secs(1)).unwrap();
    assert_eq!((b.worker, b.epoch, b.attempt), (w1, 2, 2));
    drain(&mut l);
    // The old attempt's results: rejected, counted, evented.
    assert_eq!(
        l.task_succeeded(t, 1, secs(2)),
        Err(ResultError::Stale(StaleReason::OldEpoch { current: 2 }))
    );
    assert_eq!(
        l.task_failed(t, 1, FailureKind::Evaluation, secs(2)),
        Err(ResultError::Stale(StaleReason::OldEpoch { current: 2 }))
    );
    // Never issued.
    assert_eq!(
        l.task_succeeded(t, 3, secs(2)),
        Err(ResultError::Stale(StaleReason::OldEpoch { current: 2 }))
    );
    assert_eq!(
        l.task_succeeded(TaskId(9), 1, secs(2)),
        Err(ResultError::UnknownTask(TaskId(9)))
    );
    // The current attempt completes it exactly once.
    l.task_succeeded(t, 2, secs(3)).unwrap();
    assert_eq!(
        l.task_succeeded(t, 2, secs(3)),
        Err(ResultError::Stale(StaleReason::Finished))
    );
    assert_eq!(l.stats().stale_results_rejected, 4);
    assert_eq!(l.stats().succeeded_tasks, 1);
    let evs = drain(&mut l);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::StaleResult { .. }))
            .count(),
        4
    );
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::Succeeded { .. }))
            .count(),
        1
    );
}

#[test]
fn late_result_for_requeued_task_is_accepted_and_not_run_again() {
    let mut l: Ledger<2, 4> = Ledger::new(config());
    let w0 = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let u = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(a.task, t);
    l.worker_failed(w0, FailureKind::Network, secs(1)).unwrap();
    assert_eq!(l.task(t).unwrap().state, TaskState::Pending);
    // The failure report of the lost attempt was already charged.
    assert_eq!(
        l.task_failed(t, 1, FailureKind::Network, secs(2)),
        Err(ResultError::Stale(StaleReason::AlreadyCharged))
    );
    // Its success arrives before anyone reran it: accepted.
    l.task_succeeded(t, 1, secs(2)).unwrap();
    assert_eq!(l.task(t).unwrap().state, TaskState::Succeeded);
    l.worker_recovered(w0, secs(3)).unwrap();
    let b = l.assign(secs(3)).unwrap();
    assert_eq!(b.task, u, "t is not run again");
    assert_eq!(l.assign(secs(3)), None);
    let s = l.stats();
    assert_eq!(
        (s.succeeded_tasks, s.pending_tasks, s.running_tasks),
        (1, 0, 1)
    );
}

#[test]
fn success_after_a_reported_failure_of_the_same_attempt_is_rejected() {
    let mut l: Ledger<1, 2> = Ledger::new(config());
    l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    l.task_failed(t, a.epoch, FailureKind::Evaluation, secs(1))
        .unwrap();
    assert_eq!(
        l.task_succeeded(t, a.epoch, secs(2)),
        Err(ResultError::Stale(StaleReason::AlreadyCharged))
    );
    assert_eq!(l.task(t).unwrap().state, TaskState::Pending);
    assert_eq!(l.stats().stale_results_rejected, 1);
}

#[test]
fn journal_replay_marks_tasks_finished() {
    let mut l: Ledger<2, 8> = Ledger::new(config());
    let w = l.add_worker(2, secs(0)).unwrap();
    let ids: StdVec<_> = (0..4).map(|_| l.add_task(secs(0)).unwrap()).collect();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(a.task, ids[0]);
    drain(&mut l);
    // Pending and running tasks found finished in the journal.
    l.mark_succeeded(ids[1], secs(1)).unwrap();
    l.mark_succeeded(ids[0], secs(1)).unwrap();
    l.mark_failed(ids[2], FailureKind::Permanent, secs(1))
        .unwrap();
    // Idempotent; contradictions refused.
    l.mark_succeeded(ids[1], secs(1)).unwrap();
    l.mark_failed(ids[2], FailureKind::Permanent, secs(1))
        .unwrap();
    assert_eq!(
        l.mark_failed(ids[1], FailureKind::Evaluation, secs(1)),
        Err(LedgerError::TaskFinished(ids[1]))
    );
    assert_eq!(
        l.mark_succeeded(ids[2], secs(1)),
        Err(LedgerError::TaskFinished(ids[2]))
    );
    assert_eq!(
        l.mark_succeeded(TaskId(99), secs(1)),
        Err(LedgerError::UnknownTask(TaskId(99)))
    );
    assert_eq!(l.worker(w).unwrap().load, 0);
    // Only the one task left runs; the dropped attempt's result is stale.
    let b = l.assign(secs(2)).unwrap();
    assert_eq!(b.task, ids[3]);
    assert_eq!(l.assign(secs(2)), None);
    assert_eq!(
        l.task_succeeded(ids[0], a.epoch, secs(3)),
        Err(ResultError::Stale(StaleReason::Finished))
    );
    let s = l.stats();
    assert_eq!(
        (
            s.succeeded_tasks,
            s.failed_tasks,
            s.pending_tasks,
            s.running_tasks
        ),
        (2, 1, 0, 1)
    );
    let evs = drain(&mut l);
    assert_eq!(
        evs[..3],
        [
            Event::Succeeded {
                task: ids[1],
                worker: None,
                epoch: 0,
                attempt: 0,
                at: secs(1)
            },
            Event::Succeeded {
                task: ids[0],
                worker: Some(w),
                epoch: 1,
                attempt: 1,
                at: secs(1)
            },
            Event::GaveUp {
                task: ids[2],
                attempts: 0,
                kind: FailureKind::Permanent,
                reason: GiveUpReason::NotRetryable(FailureKind::Permanent),
                at: secs(1)
            },
        ]
    );
    let views: StdVec<_> = l.tasks().map(|v| v.state).collect();
    assert_eq!(
        views,
        [
            TaskState::Succeeded,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Running {
                worker: w,
                epoch: 1,
                lease: secs(32)
            }
        ]
    );
    assert_eq!(l.workers().map(|v| v.load).collect::<StdVec<_>>(), [1]);
}

#[test]
fn retry_timer_is_enforced_and_poll_timeout_says_when() {
    let mut l: Ledger<1, 2> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    l.heartbeat(w, secs(10)).unwrap();
    assert_eq!(
        l.task_failed_with_code(t, a.epoch, FailureKind::Evaluation, Some(2), secs(10)),
        Ok(Decision::RetryAfter(Duration::from_secs(5)))
    );
    assert_eq!(l.task(t).unwrap().ready_at, Some(secs(15)));
    assert_eq!(l.failure_history(t).next().unwrap().code, Some(2));
    assert_eq!(l.poll_timeout(), Some(secs(15)));
    assert_eq!(l.assign(secs(14)), None);
    // A clock that jumps backwards changes nothing.
    assert_eq!(l.assign(secs(1)), None);
    l.handle_timeout(secs(15));
    assert_eq!(l.poll_timeout(), Some(secs(40)));
    let b = l.assign(secs(15)).unwrap();
    assert_eq!((b.task, b.epoch), (t, 2));
    assert_eq!(
        drain(&mut l)
            .into_iter()
            .filter(|e| matches!(e, Event::RetryScheduled { .. }))
            .collect::<StdVec<_>>(),
        [Event::RetryScheduled {
            task: t,
            attempt: 2,
            delay: Duration::from_secs(5),
            ready_at: secs(15),
            at: secs(10)
        }]
    );
}

#[test]
fn prior_attempts_continue_numbering_and_count_toward_the_limit() {
    // 3 attempts in total; 2 were made by an earlier run.
    let mut l: Ledger<1, 4> = Ledger::new(config());
    l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task_with_prior_attempts(2, secs(0)).unwrap();
    assert_eq!(l.task(t).unwrap().attempts, 2);
    let a = l.assign(secs(0)).unwrap();
    assert_eq!((a.epoch, a.attempt), (3, 3));
    assert_eq!(
        l.task_failed(t, 3, FailureKind::Evaluation, secs(1)),
        Ok(Decision::GiveUp(GiveUpReason::AttemptsExhausted {
            attempts: 3
        }))
    );
    // A fresh task next to it still has its three.
    let u = l.add_task_with_prior_attempts(0, secs(1)).unwrap();
    let b = l.assign(secs(1)).unwrap();
    assert_eq!((b.task, b.epoch), (u, 1));
    assert_eq!(
        l.task_failed(u, 1, FailureKind::Evaluation, secs(1)),
        Ok(Decision::RetryAfter(Duration::from_secs(5)))
    );
}

#[test]
fn any_number_of_prior_attempts_is_added_at_bounded_cost() {
    // Replaying u32::MAX failures one by one took minutes; the count still holds.
    let mut l: Ledger<1, 4> = Ledger::new(config());
    l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task_with_prior_attempts(u32::MAX, secs(0)).unwrap();
    assert_eq!(l.task(t).unwrap().attempts, u32::MAX);
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(
        l.task_failed(t, a.epoch, FailureKind::Evaluation, secs(1)),
        Ok(Decision::GiveUp(GiveUpReason::AttemptsExhausted {
            attempts: u32::MAX
        }))
    );
    // Past the replay limit the backoff stays where the replay left it: at the cap.
    let doubling = crate::backoff::BackoffConfig::exponential(
        Duration::from_millis(1),
        2_000,
        Duration::from_secs(60),
    )
    .unwrap()
    .with_jitter(crate::backoff::Jitter::None)
    .unwrap();
    let p = crate::retry::RetryPolicy::new(u32::MAX, doubling).unwrap();
    let mut l: Ledger<1, 4> = Ledger::new(LedgerConfig::new(p));
    l.add_worker(1, secs(0)).unwrap();
    let t = l
        .add_task_with_prior_attempts(MAX_REPLAYED_ATTEMPTS + 10, secs(0))
        .unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(a.attempt, MAX_REPLAYED_ATTEMPTS + 11);
    assert_eq!(
        l.task_failed(t, a.epoch, FailureKind::Evaluation, secs(1)),
        Ok(Decision::RetryAfter(Duration::from_secs(60)))
    );
}

#[test]
fn innocent_task_survives_its_crash_limit_with_one_attempt() {
    // max_attempts 1: an own failure would end it at once, yet three crashes (one of
    // each kind) do not use that attempt; the run after them succeeds.
    let cfg = LedgerConfig::new(fixed_policy(1, Duration::from_secs(5)).unwrap())
        .with_lease(Duration::from_secs(10))
        .unwrap()
        .with_deadline(
            DeadlineConfig::new(Duration::from_secs(60), Duration::from_secs(60)).unwrap(),
        );
    assert_eq!((cfg.crash_limit(), cfg.crashes_open_breaker()), (3, true));
    let mut l: Ledger<4, 4> = Ledger::new(cfg);
    let w: StdVec<_> = (0..4).map(|_| l.add_worker(1, secs(0)).unwrap()).collect();
    let t = l.add_task(secs(0)).unwrap();
    let mut epochs = StdVec::new();

    let a = l.assign(secs(0)).unwrap();
    epochs.push(a.epoch);
    l.worker_failed(a.worker, FailureKind::WorkerCrash, secs(1))
        .unwrap();
    assert_eq!(l.task(t).unwrap().crashes, 1);
    let a = l.assign(secs(1)).unwrap();
    epochs.push(a.epoch);
    l.suspect_worker(a.worker, secs(2)).unwrap();
    assert_eq!(l.task(t).unwrap().crashes, 2);
    let a = l.assign(secs(2)).unwrap();
    epochs.push(a.epoch);
    drain(&mut l);
    // Nobody renews the lease: it lapses at 12 s, the third crash.
    l.handle_timeout(secs(12));
    assert_eq!(
        drain(&mut l),
        [
            Event::LeaseExpired {
                task: t,
                worker: w[2],
                epoch: 3,
                at: secs(12)
            },
            Event::AttemptFailed {
                task: t,
                worker: Some(w[2]),
                epoch: 3,
                attempt: 3,
                kind: FailureKind::TaskTimeout,
                at: secs(12)
            },
            Event::Requeued {
                task: t,
                worker: w[2],
                epoch: 3,
                reason: RequeueReason::LeaseExpired,
                at: secs(12)
            },
        ]
    );
    let a = l.assign(secs(12)).unwrap();
    epochs.push(a.epoch);
    assert_eq!(a.worker, w[3]);
    l.task_succeeded(t, a.epoch, secs(13)).unwrap();

    assert_eq!(epochs, (1..=4).collect::<StdVec<u32>>());
    let v = l.task(t).unwrap();
    assert_eq!(
        (v.state, v.epoch, v.attempts, v.crashes),
        (TaskState::Succeeded, 4, 4, 3)
    );
    assert_eq!(v.last_failure, Some(FailureKind::TaskTimeout));
    let s = l.stats();
    assert_eq!(
        (
            s.succeeded_tasks,
            s.failed_tasks,
            s.total_task_failures,
            s.reassignments,
            s.retries,
            s.tasks_with_retries
        ),
        (1, 0, 3, 3, 0, 1)
    );
    let hist: StdVec<_> = l.failure_history(t).map(|e| (e.attempt, e.kind)).collect();
    assert_eq!(
        hist,
        [
            (1, FailureKind::WorkerCrash),
            (2, FailureKind::WorkerCrash),
            (3, FailureKind::TaskTimeout)
        ]
    );
}

#[test]
fn poison_task_fails_for_good_at_crash_limit_plus_one() {
    // A task that kills every worker it runs on: requeued after crashes 1..=3, failed for
    // good at the 4th, with plenty of its own attempts left.
    let cfg = LedgerConfig::new(fixed_policy(10, Duration::from_secs(5)).unwrap())
        .with_crashes_open_breaker(false);
    let mut l: Ledger<1, 2> = Ledger::new(cfg);
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    for n in 1..=4u32 {
        let now = secs(u64::from(n) * 10);
        l.worker_recovered(w, now).unwrap();
        let a = l.assign(now).unwrap();
        assert_eq!((a.task, a.epoch, a.attempt), (t, n, n));
        drain(&mut l);
        l.worker_failed(w, FailureKind::Gpu, now).unwrap();
        let last = *drain(&mut l).last().unwrap();
        if n <= 3 {
            assert_eq!(
                last,
                Event::Requeued {
                    task: t,
                    worker: w,
                    epoch: n,
                    reason: RequeueReason::WorkerFailed,
                    at: now
                }
            );
            assert_eq!(l.task(t).unwrap().state, TaskState::Pending);
        } else {
            assert_eq!(
                last,
                Event::GaveUp {
                    task: t,
                    attempts: 4,
                    kind: FailureKind::Gpu,
                    reason: GiveUpReason::CrashLimit { crashes: 4 },
                    at: now
                }
            );
        }
        assert_eq!(l.task(t).unwrap().crashes, n);
    }
    let v = l.task(t).unwrap();
    assert_eq!(
        (v.state, v.epoch, v.last_failure),
        (TaskState::Failed, 4, Some(FailureKind::Gpu))
    );
    assert!(l.is_finished());
    let s = l.stats();
    assert_eq!(
        (s.failed_tasks, s.pending_tasks, s.reassignments, s.retries),
        (1, 0, 3, 0)
    );
    l.worker_recovered(w, secs(50)).unwrap();
    assert_eq!(l.assign(secs(50)), None);
    assert_eq!(
        l.task_succeeded(t, 4, secs(50)),
        Err(ResultError::Stale(StaleReason::Finished))
    );
    assert_eq!(
        GiveUpReason::CrashLimit { crashes: 4 }.to_string(),
        "gave up after its worker crashed 4 times"
    );

    // A limit of 0 fails a task at its first crash; a suspicion's kind is WorkerCrash.
    let mut l: Ledger<1, 2> = Ledger::new(config().with_crash_limit(0));
    assert_eq!(l.config().crash_limit(), 0);
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    drain(&mut l);
    l.suspect_worker(w, secs(1)).unwrap();
    assert!(drain(&mut l).contains(&Event::GaveUp {
        task: t,
        attempts: a.epoch,
        kind: FailureKind::WorkerCrash,
        reason: GiveUpReason::CrashLimit { crashes: 1 },
        at: secs(1)
    }));
    assert_eq!(l.stats().failed_tasks, 1);
}

#[test]
fn own_failures_are_limited_by_max_attempts_whatever_the_crashes() {
    // max_attempts 3, backoff 5 s doubling: crash, crash, own failure (retried after
    // 5 s), crash, own failure (retried after 10 s: the crash did not move the
    // backoff), own failure: the third own failure gives up, at epoch 6.
    let backoff = crate::backoff::BackoffConfig::exponential(
        Duration::from_secs(5),
        2_000,
        Duration::from_secs(60),
    )
    .unwrap()
    .with_jitter(crate::backoff::Jitter::None)
    .unwrap();
    let cfg = LedgerConfig::new(crate::retry::RetryPolicy::new(3, backoff).unwrap())
        .with_crashes_open_breaker(false);
    let mut l: Ledger<1, 2> = Ledger::new(cfg);
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let mut now = secs(0);
    let run = |l: &mut Ledger<1, 2>, now: Instant| {
        l.worker_recovered(w, now).unwrap();
        l.heartbeat(w, now).unwrap();
        l.handle_timeout(now);
        l.assign(now).unwrap()
    };
    let crash = |l: &mut Ledger<1, 2>, now: Instant| {
        l.worker_failed(w, FailureKind::WorkerCrash, now).unwrap();
    };
    let a = run(&mut l, now);
    assert_eq!(a.epoch, 1);
    crash(&mut l, now);
    let a = run(&mut l, now);
    assert_eq!(a.epoch, 2);
    crash(&mut l, now);
    let a = run(&mut l, now);
    assert_eq!(a.epoch, 3);
    assert_eq!(
        l.task_failed(t, 3, FailureKind::Evaluation, now),
        Ok(Decision::RetryAfter(Duration::from_secs(5)))
    );
    now = now + Duration::from_secs(5);
    let a = run(&mut l, now);
    assert_eq!(a.epoch, 4);
    crash(&mut l, now);
    let a = run(&mut l, now);
    assert_eq!(a.epoch, 5);
    assert_eq!(
        l.task_failed(t, 5, FailureKind::Evaluation, now),
        Ok(Decision::RetryAfter(Duration::from_secs(10)))
    );
    now = now + Duration::from_secs(10);
    let a = run(&mut l, now);
    assert_eq!(a.epoch, 6);
    drain(&mut l);
    assert_eq!(
        l.task_failed(t, 6, FailureKind::Evaluation, now),
        Ok(Decision::GiveUp(GiveUpReason::AttemptsExhausted {
            attempts: 3
        }))
    );
    assert_eq!(
        *drain(&mut l).last().unwrap(),
        Event::GaveUp {
            task: t,
            attempts: 6,
            kind: FailureKind::Evaluation,
            reason: GiveUpReason::AttemptsExhausted { attempts: 3 },
            at: now
        }
    );
    let v = l.task(t).unwrap();
    assert_eq!(
        (v.state, v.epoch, v.attempts, v.crashes),
        (TaskState::Failed, 6, 6, 3)
    );
    let s = l.stats();
    assert_eq!(
        (
            s.failed_tasks,
            s.total_task_failures,
            s.retries,
            s.reassignments
        ),
        (1, 6, 2, 3)
    );
}

#[test]
fn crashes_open_the_breaker_only_when_configured() {
    // Off: ten worker failures, suspicions and lapsed leases (with tasks running)
    // leave the breaker closed and its counts untouched.
    let cfg = config()
        .with_crash_limit(100)
        .with_crashes_open_breaker(false)
        .with_lease(Duration::from_secs(10))
        .unwrap()
        .with_deadline(
            DeadlineConfig::new(Duration::from_secs(60), Duration::from_secs(60)).unwrap(),
        );
    assert!(!cfg.crashes_open_breaker());
    let mut l: Ledger<1, 2> = Ledger::new(cfg);
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    for n in 1..=10u64 {
        let now = secs(n);
        l.worker_recovered(w, now).unwrap();
        let a = l.assign(now).expect("the breaker admits the worker");
        assert_eq!(a.epoch, n as u32);
        l.worker_failed(w, FailureKind::WorkerCrash, now).unwrap();
    }
    l.worker_recovered(w, secs(11)).unwrap();
    assert_eq!(l.assign(secs(11)).unwrap().epoch, 11);
    l.suspect_worker(w, secs(12)).unwrap();
    l.heartbeat(w, secs(13)).unwrap();
    assert_eq!(l.assign(secs(13)).unwrap().epoch, 12);
    l.handle_timeout(secs(23)); // the lease lapses
    let v = l.worker(w).unwrap();
    assert_eq!(v.breaker, BreakerState::Closed);
    assert_eq!(
        v.breaker_metrics,
        ConsecutiveBreaker::new(*cfg.breaker()).metrics()
    );
    assert!(
        !drain(&mut l)
            .iter()
            .any(|e| matches!(e, Event::Breaker { .. }))
    );
    assert_eq!(l.task(t).unwrap().crashes, 12);
    assert_eq!(l.stats().total_worker_failures, 11);
    let a = l.assign(secs(23)).unwrap();
    assert_eq!(a.epoch, 13);
    // The task's own failures still count against the breaker.
    l.task_failed(t, 13, FailureKind::Evaluation, secs(23))
        .unwrap();
    assert_eq!(l.worker(w).unwrap().breaker_metrics.consecutive_failures, 1);

    // On (the default): the third worker failure opens it, for 300 s.
    let mut l: Ledger<1, 2> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    for n in 1..=3u64 {
        l.worker_recovered(w, secs(n)).unwrap();
        assert_eq!(l.assign(secs(n)).unwrap().epoch, n as u32);
        l.worker_failed(w, FailureKind::WorkerCrash, secs(n))
            .unwrap();
    }
    let until = secs(303);
    assert_eq!(l.worker(w).unwrap().breaker, BreakerState::Open { until });
    assert!(drain(&mut l).contains(&Event::Breaker {
        worker: w,
        from: BreakerState::Closed,
        to: BreakerState::Open { until },
        at: secs(3)
    }));
    l.worker_recovered(w, secs(4)).unwrap();
    assert_eq!(l.assign(secs(4)), None);
    assert_eq!(l.task(t).unwrap().crashes, 3);
}

#[test]
fn resumed_task_continues_epochs_and_both_counts() {
    // (Its three own failures below would open a breaker of 3.)
    let cfg = config()
        .with_crashes_open_breaker(false)
        .with_breaker(10, Duration::from_secs(300), 1)
        .unwrap();
    let mut l: Ledger<1, 4> = Ledger::new(cfg);
    let w = l.add_worker(1, secs(0)).unwrap();
    // 5 attempts made: 1 own failure, 2 crashes, 2 cut off by the restart.
    let t = l.add_task_resumed(5, 1, 2, secs(0)).unwrap();
    let v = l.task(t).unwrap();
    assert_eq!((v.epoch, v.attempts, v.crashes), (5, 5, 2));
    assert_eq!(v.state, TaskState::Pending);
    let a = l.assign(secs(0)).unwrap();
    assert_eq!((a.epoch, a.attempt), (6, 6));
    // Own attempts: 1 + 1 < 3, retried.
    assert_eq!(
        l.task_failed(t, 6, FailureKind::Evaluation, secs(1)),
        Ok(Decision::RetryAfter(Duration::from_secs(5)))
    );
    // Crash 3 is within the limit, crash 4 is past it.
    l.heartbeat(w, secs(6)).unwrap();
    l.handle_timeout(secs(6));
    assert_eq!(l.assign(secs(6)).unwrap().epoch, 7);
    l.worker_failed(w, FailureKind::WorkerCrash, secs(7))
        .unwrap();
    assert_eq!(l.task(t).unwrap().state, TaskState::Pending);
    l.worker_recovered(w, secs(7)).unwrap();
    assert_eq!(l.assign(secs(7)).unwrap().epoch, 8);
    drain(&mut l);
    l.worker_failed(w, FailureKind::WorkerCrash, secs(8))
        .unwrap();
    assert_eq!(
        *drain(&mut l).last().unwrap(),
        Event::GaveUp {
            task: t,
            attempts: 8,
            kind: FailureKind::WorkerCrash,
            reason: GiveUpReason::CrashLimit { crashes: 4 },
            at: secs(8)
        }
    );

    // 4 attempts made, 2 of them own failures: the next own failure is the third.
    l.worker_recovered(w, secs(9)).unwrap();
    let u = l.add_task_resumed(4, 2, 1, secs(9)).unwrap();
    let a = l.assign(secs(9)).unwrap();
    assert_eq!((a.task, a.epoch), (u, 5));
    assert_eq!(
        l.task_failed(u, 5, FailureKind::Evaluation, secs(9)),
        Ok(Decision::GiveUp(GiveUpReason::AttemptsExhausted {
            attempts: 3
        }))
    );
    assert_eq!(l.task(u).unwrap().crashes, 1);

    // Prior attempts are all own failures; inconsistent counts add nothing.
    let p = l.add_task_with_prior_attempts(2, secs(9)).unwrap();
    let v = l.task(p).unwrap();
    assert_eq!((v.epoch, v.crashes), (2, 0));
    let a = l.assign(secs(9)).unwrap();
    assert_eq!(
        l.task_failed(p, a.epoch, FailureKind::Evaluation, secs(9)),
        Ok(Decision::GiveUp(GiveUpReason::AttemptsExhausted {
            attempts: 3
        }))
    );
    assert_eq!(
        l.add_task_resumed(2, 2, 1, secs(9)),
        Err(LedgerError::ResumeCounts {
            attempts_made: 2,
            own_failures: 2,
            crashes: 1
        })
    );
    assert_eq!(
        l.add_task_resumed(u32::MAX, u32::MAX, 1, secs(9)),
        Err(LedgerError::ResumeCounts {
            attempts_made: u32::MAX,
            own_failures: u32::MAX,
            crashes: 1
        })
    );
    assert_eq!(l.task_count(), 3);
    assert_eq!(
        LedgerError::ResumeCounts {
            attempts_made: 2,
            own_failures: 2,
            crashes: 1
        }
        .to_string(),
        "own_failures + crashes must be <= attempts_made (2 + 1 > 2)"
    );
    // All zero is add_task.
    let z = l.add_task_resumed(0, 0, 0, secs(9)).unwrap();
    let v = l.task(z).unwrap();
    assert_eq!((v.epoch, v.crashes), (0, 0));
    assert_eq!(l.assign(secs(9)).unwrap().epoch, 1);
}

#[test]
fn health_marks_critical_gets_nothing_degraded_last() {
    let mut l: Ledger<3, 8> = Ledger::new(config());
    let w0 = l.add_worker(2, secs(0)).unwrap();
    let w1 = l.add_worker(2, secs(0)).unwrap();
    let w2 = l.add_worker(2, secs(0)).unwrap();
    l.set_worker_health(w0, WorkerHealth::Degraded).unwrap();
    l.set_worker_health(w1, WorkerHealth::Critical).unwrap();
    assert_eq!(
        l.set_worker_health(WorkerId(7), WorkerHealth::Healthy),
        Err(LedgerError::UnknownWorker(WorkerId(7)))
    );
    for _ in 0..5 {
        l.add_task(secs(0)).unwrap();
    }
    let got: StdVec<_> = core::iter::from_fn(|| l.assign(secs(0)))
        .map(|a| a.worker)
        .collect();
    assert_eq!(got, [w2, w2, w0, w0]);
    assert_eq!(l.stats().pending_tasks, 1);
}

#[test]
fn no_healthy_worker_means_tasks_wait() {
    let mut l: Ledger<2, 4> = Ledger::new(config());
    assert_eq!(l.assign(secs(0)), None);
    let t = l.add_task(secs(0)).unwrap();
    assert_eq!(l.assign(secs(0)), None, "no worker at all");
    let w = l.add_worker(1, secs(0)).unwrap();
    l.worker_failed(w, FailureKind::WorkerCrash, secs(0))
        .unwrap();
    for s in 0..100 {
        l.handle_timeout(secs(s));
        assert_eq!(l.assign(secs(s)), None);
    }
    assert_eq!(l.task(t).unwrap().state, TaskState::Pending);
    l.worker_recovered(w, secs(100)).unwrap();
    assert_eq!(l.assign(secs(100)).unwrap().task, t);
}

#[test]
fn full_containers_are_typed_errors() {
    let mut l: Ledger<1, 2, 2> = Ledger::new(config());
    assert_eq!(l.add_worker(0, secs(0)), Err(LedgerError::ZeroCapacity));
    l.add_worker(1, secs(0)).unwrap();
    assert_eq!(
        l.add_worker(1, secs(0)),
        Err(LedgerError::WorkersFull { capacity: 1 })
    );
    l.add_task(secs(0)).unwrap();
    l.add_task(secs(0)).unwrap();
    assert_eq!(
        l.add_task(secs(0)),
        Err(LedgerError::TasksFull { capacity: 2 })
    );
    assert_eq!(
        l.heartbeat(WorkerId(3), secs(0)),
        Err(LedgerError::UnknownWorker(WorkerId(3)))
    );
    // Events beyond the queue's 2 entries are dropped and counted.
    let a = l.assign(secs(0)).unwrap();
    l.task_succeeded(a.task, a.epoch, secs(0)).unwrap();
    let _ = l.assign(secs(0)).unwrap();
    assert_eq!(l.events_pending(), 2);
    assert_eq!(l.stats().events_dropped, 1);
    assert!(matches!(l.poll_event(), Some(Event::Assigned { .. })));
    assert!(matches!(l.poll_event(), Some(Event::Succeeded { .. })));
    assert_eq!(l.poll_event(), None);
}

#[test]
fn error_messages_are_clear() {
    use std::string::ToString;
    assert_eq!(
        LedgerError::TasksFull { capacity: 8 }.to_string(),
        "task table full (8 tasks)"
    );
    assert_eq!(
        ResultError::Stale(StaleReason::OldEpoch { current: 3 }).to_string(),
        "stale result: old epoch (current epoch is 3)"
    );
    assert_eq!(
        LedgerConfig::default()
            .with_lease(Duration::ZERO)
            .unwrap_err()
            .field(),
        "lease"
    );
    assert_eq!(
        LedgerConfig::default()
            .with_breaker(0, Duration::from_secs(1), 1)
            .unwrap_err()
            .field(),
        "failure_threshold"
    );
}

#[test]
fn tasks_that_fail_everywhere_do_not_open_every_breaker() {
    // 4 workers, 3 tasks that fail (evaluation) on every attempt, then good ones. Each
    // bad task's retries land on other workers (round robin): had every failure
    // counted, workers 0, 1 and 2 would each hear three in a row and open for 300 s.
    let mut l: Ledger<4, 16> = Ledger::new(config());
    let workers: StdVec<_> = (0..4).map(|_| l.add_worker(1, secs(0)).unwrap()).collect();
    let bad: StdVec<_> = (0..3).map(|_| l.add_task(secs(0)).unwrap()).collect();
    let mut now = secs(0);
    for _round in 0..3 {
        for w in &workers {
            l.heartbeat(*w, now).unwrap();
        }
        l.handle_timeout(now);
        while let Some(a) = l.assign(now) {
            l.task_failed(a.task, a.epoch, FailureKind::Evaluation, now)
                .unwrap();
        }
        now = now + Duration::from_secs(5);
    }
    // Every bad task ran its 3 attempts and gave up.
    for t in &bad {
        assert_eq!(l.task(*t).unwrap().state, TaskState::Failed);
        assert_eq!(l.task(*t).unwrap().attempts, 3);
    }
    for w in &workers {
        assert_eq!(l.worker(*w).unwrap().breaker, BreakerState::Closed, "{w:?}");
    }
    // The retries moved: the breakers heard the first attempts only.
    assert_eq!(
        workers
            .iter()
            .map(|w| l.worker(*w).unwrap().breaker_metrics.failures)
            .collect::<StdVec<_>>(),
        [1, 1, 1, 0]
    );
    // Good tasks run on every worker.
    let good: StdVec<_> = (0..6).map(|_| l.add_task(now).unwrap()).collect();
    while let Some(a) = l.assign(now) {
        l.task_succeeded(a.task, a.epoch, now).unwrap();
    }
    for t in &good {
        assert_eq!(l.task(*t).unwrap().state, TaskState::Succeeded);
    }
}

#[test]
fn a_worker_whose_attempts_always_fail_still_opens_its_breaker() {
    // Fresh tasks failing on one worker: first attempts, each counts.
    let mut l: Ledger<2, 8> = Ledger::new(config());
    let bad = l.add_worker(1, secs(0)).unwrap();
    let good = l.add_worker(1, secs(0)).unwrap();
    for _ in 0..3 {
        let _ = l.add_task(secs(1)).unwrap();
    }
    l.set_worker_health(good, WorkerHealth::Critical).unwrap();
    for _ in 0..3 {
        let a = l.assign(secs(1)).unwrap();
        assert_eq!(a.worker, bad);
        l.task_failed(a.task, a.epoch, FailureKind::Evaluation, secs(1))
            .unwrap();
    }
    assert_eq!(
        l.worker(bad).unwrap().breaker,
        BreakerState::Open { until: secs(301) }
    );
}

#[test]
fn a_task_failure_counts_unless_it_failed_the_same_way_on_another_worker() {
    let mut l: Ledger<2, 8> = Ledger::new(config());
    let w0 = l.add_worker(1, secs(0)).unwrap();
    let w1 = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    l.set_worker_health(w1, WorkerHealth::Critical).unwrap();
    let a = l.assign(secs(0)).unwrap();
    assert_eq!(a.worker, w0);
    l.task_failed(t, a.epoch, FailureKind::Network, secs(0))
        .unwrap();
    // Its retry on w1 fails the same way: not w1's fault.
    l.set_worker_health(w0, WorkerHealth::Critical).unwrap();
    l.set_worker_health(w1, WorkerHealth::Healthy).unwrap();
    l.handle_timeout(secs(5));
    let a = l.assign(secs(5)).unwrap();
    assert_eq!(a.worker, w1);
    l.task_failed(t, a.epoch, FailureKind::Network, secs(5))
        .unwrap();
    let m = l.worker(w1).unwrap().breaker_metrics;
    assert_eq!((m.failures, m.consecutive_failures), (0, 0));
    assert_eq!(l.worker(w0).unwrap().breaker_metrics.failures, 1);
    // Again on w1, where it failed just before: counts.
    l.heartbeat(w1, secs(10)).unwrap();
    l.handle_timeout(secs(10));
    let a = l.assign(secs(10)).unwrap();
    assert_eq!(a.worker, w1);
    l.task_failed(t, a.epoch, FailureKind::Network, secs(10))
        .unwrap();
    assert_eq!(l.worker(w1).unwrap().breaker_metrics.failures, 1);
    // A GPU failure counts wherever the task failed before.
    let t = l.add_task(secs(10)).unwrap();
    let a = l.assign(secs(10)).unwrap();
    assert_eq!(a.worker, w1);
    l.task_failed(t, a.epoch, FailureKind::Gpu, secs(10))
        .unwrap();
    l.set_worker_health(w0, WorkerHealth::Healthy).unwrap();
    l.set_worker_health(w1, WorkerHealth::Critical).unwrap();
    l.heartbeat(w0, secs(15)).unwrap();
    l.handle_timeout(secs(15));
    let a = l.assign(secs(15)).unwrap();
    assert_eq!(a.worker, w0);
    l.task_failed(t, a.epoch, FailureKind::Gpu, secs(15))
        .unwrap();
    assert_eq!(l.worker(w0).unwrap().breaker_metrics.failures, 2);
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::vec;

    #[derive(Clone, Debug)]
    enum Op {
        AddTask,
        Assign,
        Succeed(usize, u32),
        Fail(usize, u32, bool),
        WorkerFailed(usize),
        Suspect(usize),
        MarkSucceeded(usize),
        MarkFailed(usize),
        Recover(usize),
        Heartbeat(usize),
        Health(usize, u8),
        Advance(u64),
        Back(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::AddTask),
            4 => Just(Op::Assign),
            3 => (0..12usize, 0..4u32).prop_map(|(t, e)| Op::Succeed(t, e)),
            3 => (0..12usize, 0..4u32, any::<bool>()).prop_map(|(t, e, p)| Op::Fail(t, e, p)),
            1 => (0..4usize).prop_map(Op::WorkerFailed),
            1 => (0..4usize).prop_map(Op::Suspect),
            1 => (0..12usize).prop_map(Op::MarkSucceeded),
            1 => (0..12usize).prop_map(Op::MarkFailed),
            1 => (0..4usize).prop_map(Op::Recover),
            3 => (0..4usize).prop_map(Op::Heartbeat),
            1 => (0..4usize, 0..3u8).prop_map(|(w, h)| Op::Health(w, h)),
            3 => (0..20_000u64).prop_map(Op::Advance),
            1 => (0..5_000u64).prop_map(Op::Back),
        ]
    }

    /// Event tallies to compare with the statistics.
    #[derive(Default, Debug)]
    struct Tally {
        assigned: u64,
        succeeded: u64,
        attempt_failed: u64,
        retries: u64,
        requeued: u64,
        gave_up: u64,
        stale: u64,
        worker_failures: u64,
        recovered: u64,
    }

    proptest! {
        #[test]
        fn random_operations_keep_the_invariants(
            ops in proptest::collection::vec(op(), 1..200),
            crashes_open_breaker in any::<bool>(),
        ) {
            const CRASH_LIMIT: u32 = 2;
            let cfg = LedgerConfig::new(fixed_policy(3, Duration::from_secs(2)).unwrap())
                .with_crash_limit(CRASH_LIMIT)
                .with_crashes_open_breaker(crashes_open_breaker)
                .with_deadline(DeadlineConfig::new(Duration::from_secs(8), Duration::from_secs(8)).unwrap())
                .with_lease(Duration::from_secs(6)).unwrap()
                .with_breaker(3, Duration::from_secs(20), 1).unwrap();
            let mut l: Ledger<4, 12, 4096> = Ledger::new(cfg);
            let mut now = Instant::ZERO;
            for _ in 0..4 { l.add_worker(2, now).unwrap(); }
            let mut tally = Tally::default();
            // Per task: succeeded events, and live (task, epoch) runs we handed out.
            let mut succeeded = [0u32; 12];
            let mut live: StdVec<(u32, u32)> = StdVec::new();
            let mut added = 0usize;
            for op in ops {
                match op {
                    Op::AddTask => { if l.add_task(now).is_ok() { added += 1; } }
                    Op::Assign => {
                        if let Some(a) = l.assign(now) {
                            // Never two live runs of one task with the same epoch, nor
                            // two live runs of one task at all.
                            prop_assert!(!live.iter().any(|&(t, _)| t == a.task.0));
                            live.push((a.task.0, a.epoch));
                        }
                    }
                    Op::Succeed(t, e) => {
                        let _ = l.task_succeeded(TaskId(t as u32), e, now);
                    }
                    Op::Fail(t, e, perm) => {
                        let kind = if perm { FailureKind::Permanent } else { FailureKind::Evaluation };
                        let id = TaskId(t as u32);
                        // Attribution: the worker's breaker hears the failure unless the
                        // task's previous failure was of the same kind on another worker.
                        let before = l.task(id).and_then(|v| match v.state {
                            TaskState::Running { worker, .. } => {
                                let prior = l.failure_history(id).last().map(|f| (f.kind, f.worker));
                                Some((worker, prior, l.worker(worker).unwrap()))
                            }
                            _ => None,
                        });
                        if l.task_failed(id, e, kind, now).is_ok() {
                            let (worker, prior, was) = before.expect("accepted: it was running");
                            let now_m = l.worker(worker).unwrap().breaker_metrics;
                            let elsewhere_same = prior.is_some_and(|(k, w)| k == kind && w != Some(worker));
                            if elsewhere_same || perm {
                                prop_assert_eq!(now_m.failures, was.breaker_metrics.failures);
                            } else if was.breaker == BreakerState::Closed {
                                prop_assert_eq!(now_m.failures, was.breaker_metrics.failures + 1);
                            }
                        }
                    }
                    Op::WorkerFailed(w) => { let _ = l.worker_failed(WorkerId(w as u32), FailureKind::WorkerCrash, now); }
                    Op::Suspect(w) => { l.suspect_worker(WorkerId(w as u32), now).unwrap(); }
                    Op::MarkSucceeded(t) => { let _ = l.mark_succeeded(TaskId(t as u32), now); }
                    Op::MarkFailed(t) => { let _ = l.mark_failed(TaskId(t as u32), FailureKind::Gpu, now); }
                    Op::Recover(w) => { let _ = l.worker_recovered(WorkerId(w as u32), now); }
                    Op::Heartbeat(w) => { let _ = l.heartbeat(WorkerId(w as u32), now); }
                    Op::Health(w, h) => {
                        let h = [WorkerHealth::Healthy, WorkerHealth::Degraded, WorkerHealth::Critical][h as usize];
                        l.set_worker_health(WorkerId(w as u32), h).unwrap();
                    }
                    Op::Advance(ms) => {
                        now = now + Duration::from_millis(ms);
                        l.handle_timeout(now);
                        // After handle_timeout nothing is due: the next wake-up is later.
                        if let Some(t) = l.poll_timeout() { prop_assert!(t > now); }
                    }
                    Op::Back(ms) => { l.handle_timeout(now - Duration::from_millis(ms)); }
                }
                // Keep only runs that are still live per the ledger.
                live.retain(|&(t, e)| matches!(l.task(TaskId(t)).unwrap().state,
                    TaskState::Running { epoch, .. } if epoch == e));
                while let Some(ev) = l.poll_event() {
                    match ev {
                        Event::Assigned { .. } => tally.assigned += 1,
                        Event::Succeeded { task, .. } => { tally.succeeded += 1; succeeded[task.0 as usize] += 1; }
                        Event::AttemptFailed { .. } => tally.attempt_failed += 1,
                        Event::RetryScheduled { .. } => tally.retries += 1,
                        Event::Requeued { .. } => tally.requeued += 1,
                        Event::GaveUp { task, reason, .. } => {
                            tally.gave_up += 1;
                            // A crash gives up exactly past the limit.
                            if let GiveUpReason::CrashLimit { crashes } = reason {
                                prop_assert_eq!(crashes, CRASH_LIMIT + 1);
                                prop_assert_eq!(l.task(task).unwrap().crashes, crashes);
                            }
                        }
                        Event::StaleResult { .. } => tally.stale += 1,
                        Event::WorkerFailed { .. } | Event::WorkerSuspected { .. } => tally.worker_failures += 1,
                        Event::WorkerRecovered { .. } => tally.recovered += 1,
                        Event::LeaseExpired { .. } | Event::Breaker { .. } => {}
                    }
                }
                // No task lost: every task is in exactly one state and the counts add up.
                let s = l.stats();
                let (mut p, mut r, mut ok, mut failed) = (0u32, 0u32, 0u32, 0u32);
                for i in 0..l.task_count() {
                    let v = l.task(TaskId(i as u32)).unwrap();
                    // Crashes are bounded by the limit and by the attempts made.
                    prop_assert!(v.crashes <= CRASH_LIMIT + 1 && v.crashes <= v.epoch);
                    prop_assert!(v.crashes <= CRASH_LIMIT || v.state == TaskState::Failed);
                    match v.state {
                        TaskState::Pending => p += 1,
                        TaskState::Running { worker, .. } => {
                            r += 1;
                            prop_assert!(l.worker(worker).unwrap().status.is_alive());
                        }
                        TaskState::Succeeded => ok += 1,
                        TaskState::Failed => failed += 1,
                    }
                }
                prop_assert_eq!(l.task_count(), added);
                prop_assert_eq!((p, r, ok, failed), (s.pending_tasks, s.running_tasks, s.succeeded_tasks, s.failed_tasks));
                let load: u32 = (0..4).map(|w| l.worker(WorkerId(w)).unwrap().load).sum();
                prop_assert_eq!(load, r);
                for w in 0..4 {
                    let v = l.worker(WorkerId(w)).unwrap();
                    prop_assert!(v.load <= v.capacity);
                }
                // None completed twice.
                prop_assert!(succeeded.iter().all(|&n| n <= 1));
                // The statistics agree with the events.
                prop_assert_eq!(s.events_dropped, 0);
                prop_assert_eq!(s.assignments, tally.assigned);
                prop_assert_eq!(s.succeeded_tasks as u64, tally.succeeded);
                prop_assert_eq!(s.total_task_failures, tally.attempt_failed);
                prop_assert_eq!(s.retries, tally.retries);
                prop_assert_eq!(s.reassignments, tally.requeued);
                prop_assert_eq!(s.failed_tasks as u64, tally.gave_up);
                prop_assert_eq!(s.stale_results_rejected, tally.stale);
                prop_assert_eq!(s.total_worker_failures, tally.worker_failures);
                prop_assert_eq!(s.recovery_attempts, tally.recovered);
            }
            // Drive to completion: with all workers recovered, healthy and heartbeating,
            // every task ends succeeded or failed, none lost.
            for w in 0..4 {
                l.worker_recovered(WorkerId(w), now).unwrap();
                l.set_worker_health(WorkerId(w), WorkerHealth::Healthy).unwrap();
            }
            for _ in 0..200 {
                now = now + Duration::from_secs(1);
                for w in 0..4 { let _ = l.heartbeat(WorkerId(w), now); }
                l.handle_timeout(now);
                for i in 0..l.task_count() {
                    if let TaskState::Running { epoch, .. } = l.task(TaskId(i as u32)).unwrap().state {
                        l.task_succeeded(TaskId(i as u32), epoch, now).unwrap();
                    }
                }
                while let Some(a) = l.assign(now) {
                    l.task_succeeded(a.task, a.epoch, now).unwrap();
                }
                if l.is_finished() { break; }
            }
            prop_assert!(l.is_finished());
            let s = l.stats();
            prop_assert_eq!((s.succeeded_tasks + s.failed_tasks) as usize, added);
        }
    }
}

// ----- recycled slots ---------------------------------------------------------------

#[test]
fn a_recycled_slot_fences_every_attempt_of_its_previous_task() {
    let mut l: Ledger<2, 1> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a1 = l.assign(secs(0)).unwrap();
    l.task_failed(t, a1.epoch, FailureKind::Evaluation, secs(1))
        .unwrap();
    let a2 = l.assign(secs(6)).unwrap();
    assert_eq!((a2.epoch, a2.attempt), (2, 2));
    l.task_succeeded(t, a2.epoch, secs(7)).unwrap();
    // The table is full; the finished task's slot takes the next task.
    assert_eq!(
        l.add_task(secs(7)),
        Err(LedgerError::TasksFull { capacity: 1 })
    );
    assert_eq!(
        l.recycle_task(TaskId(5), secs(7)),
        Err(LedgerError::UnknownTask(TaskId(5)))
    );
    assert_eq!(l.recycle_task(t, secs(7)), Ok(t));
    assert_eq!(
        l.recycle_task(t, secs(7)),
        Err(LedgerError::TaskNotFinished(t))
    );
    let v = l.task(t).unwrap();
    assert_eq!((v.state, v.epoch, v.attempts), (TaskState::Pending, 2, 0));
    let b1 = l.assign(secs(8)).unwrap();
    assert_eq!((b1.task, b1.worker, b1.epoch, b1.attempt), (t, w, 3, 1));
    // Late reports of the previous task's attempts are stale for the new one.
    for old in [a1.epoch, a2.epoch] {
        assert_eq!(
            l.task_succeeded(t, old, secs(9)),
            Err(ResultError::Stale(StaleReason::OldEpoch { current: 3 }))
        );
        assert!(
            l.task_failed(t, old, FailureKind::Network, secs(9))
                .is_err()
        );
    }
    assert!(matches!(
        l.task(t).unwrap().state,
        TaskState::Running { epoch: 3, .. }
    ));
    l.task_succeeded(t, b1.epoch, secs(10)).unwrap();
    let s = l.stats();
    assert_eq!((s.succeeded_tasks, s.stale_results_rejected), (2, 4));
    assert!(l.is_finished());
}

#[test]
fn a_recycled_slot_starts_a_fresh_budget_or_a_resumed_one() {
    let mut l: Ledger<2, 1> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    // The first task fails for good after 3 attempts.
    for i in 0..3 {
        let a = l.assign(secs(10 * i)).unwrap();
        let _ = l.task_failed(t, a.epoch, FailureKind::Evaluation, secs(10 * i + 1));
    }
    assert_eq!(l.task(t).unwrap().state, TaskState::Failed);
    let _ = drain(&mut l);
    // The next task in the slot gets its own 3 attempts, numbered 1..=3.
    // (Far apart: the worker's breaker opens after failures in a row.)
    l.recycle_task(t, secs(40)).unwrap();
    let mut attempts = StdVec::new();
    for i in 1..=3 {
        l.heartbeat(w, secs(1000 * i)).unwrap();
        let a = l.assign(secs(1000 * i)).unwrap();
        attempts.push((a.epoch, a.attempt));
        let _ = l.task_failed(t, a.epoch, FailureKind::Evaluation, secs(1000 * i + 1));
    }
    assert_eq!(attempts, [(4, 1), (5, 2), (6, 3)]);
    assert_eq!(l.task(t).unwrap().state, TaskState::Failed);
    assert!(
        drain(&mut l)
            .iter()
            .any(|e| matches!(e, Event::GaveUp { attempts: 3, .. }))
    );
    // A resumed task that failed twice before has one attempt left; numbering goes on.
    assert_eq!(
        l.recycle_task_resumed(t, 1, 1, 1, secs(4000)),
        Err(LedgerError::ResumeCounts {
            attempts_made: 1,
            own_failures: 1,
            crashes: 1
        })
    );
    l.recycle_task_resumed(t, 2, 2, 0, secs(4000)).unwrap();
    assert_eq!(l.task(t).unwrap().attempts, 2);
    l.heartbeat(w, secs(5000)).unwrap();
    let a = l.assign(secs(5000)).unwrap();
    assert_eq!((a.epoch, a.attempt), (9, 3));
    assert_eq!(
        l.task_failed(t, a.epoch, FailureKind::Evaluation, secs(5001))
            .unwrap(),
        Decision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 3 })
    );
}

#[test]
fn recycling_a_slot_whose_task_succeeded_while_requeued_keeps_one_live_entry() {
    // Task 0 is lost with its worker and requeued (an entry in `ready`), then its late
    // success is accepted: the entry is dead. The slot is recycled many times over:
    // the queue (of one entry) never overflows and the new task runs once per recycle.
    let mut l: Ledger<2, 1> = Ledger::new(config());
    let w = l.add_worker(1, secs(0)).unwrap();
    let t = l.add_task(secs(0)).unwrap();
    let a = l.assign(secs(0)).unwrap();
    l.worker_failed(w, FailureKind::WorkerCrash, secs(1))
        .unwrap();
    l.task_succeeded(t, a.epoch, secs(2)).unwrap();
    l.worker_recovered(w, secs(3)).unwrap();
    for i in 0..10 {
        l.recycle_task(t, secs(4 + i)).unwrap();
        let b = l.assign(secs(4 + i)).unwrap();
        assert_eq!((b.task, b.attempt), (t, 1));
        assert_eq!(l.assign(secs(4 + i)), None, "one copy of the task runs");
        l.task_succeeded(t, b.epoch, secs(4 + i)).unwrap();
    }
    assert!(l.is_finished());
}
