//! The supervisor over in-process workers (`LocalPool`), in virtual time: the same
//! guarantees the CLI gives with processes.

use std::collections::BTreeMap;
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::manager::LedgerConfig;
use sturdy_core::retry::fixed_policy;
use sturdy_farm::supervisor::{
    AttemptRecord, LocalPool, Observer, Summary, Supervisor, SupervisorConfig, Verdict,
};
use sturdy_tokio::checkpoint_store::{CheckpointStore, StoreConfig};

#[derive(Default)]
struct Tally {
    done: BTreeMap<u64, u32>,
    records: Vec<AttemptRecord>,
}

impl<T> Observer<T> for Tally {
    fn attempt_ended(&mut self, rec: &AttemptRecord, _payload: &T) {
        if rec.verdict == Verdict::Done {
            *self.done.entry(rec.key).or_insert(0) += 1;
        }
        self.records.push(*rec);
    }
}

fn config(max_attempts: u32) -> SupervisorConfig {
    SupervisorConfig::new(LedgerConfig::new(
        fixed_policy(max_attempts, Duration::from_millis(10)).unwrap(),
    ))
}

#[tokio::test(start_paused = true)]
async fn panicking_attempts_crash_their_worker_and_the_task_moves_on() {
    let pool = LocalPool::new(
        Duration::from_millis(100),
        |n: u64, attempt: u32| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if n.is_multiple_of(7) && attempt == 1 {
                panic!("worker dies under task {n}");
            }
            Ok(())
        },
    );
    let mut sup: Box<Supervisor<_, 4, 64>> = Supervisor::new(config(3), pool, 3).unwrap();
    for n in 0..50u64 {
        sup.add_task(n, 0, n).unwrap();
    }
    let mut tally = Tally::default();
    let s: Summary = sup.run(&mut tally).await;
    assert_eq!((s.tasks, s.succeeded, s.failed.len()), (50, 50, 0));
    // Tasks 0, 7, ..., 49: eight crashes, each charged and reassigned.
    assert_eq!(s.worker_crashes, 8);
    assert_eq!(s.attempts, 58);
    assert!(tally.done.values().all(|&c| c == 1) && tally.done.len() == 50);
    let crashed: Vec<u64> = tally
        .records
        .iter()
        .filter(|r| r.finish.failure == Some(FailureKind::WorkerCrash))
        .map(|r| r.key)
        .collect();
    assert_eq!(crashed.len(), 8);
    assert!(crashed.iter().all(|k| k.is_multiple_of(7)));
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_permanent_failures_end_failed_for_good() {
    let pool = LocalPool::new(
        Duration::from_millis(100),
        |n: u64, _attempt: u32| async move {
            match n {
                3 => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
                5 => Err(FailureKind::Evaluation),
                _ => Ok(()),
            }
        },
    );
    let cfg = config(2).with_task_timeout(Some(Duration::from_millis(200)));
    let mut sup: Box<Supervisor<_, 2, 16>> = Supervisor::new(cfg, pool, 2).unwrap();
    for n in 0..10u64 {
        sup.add_task(n, 0, n).unwrap();
    }
    let start = tokio::time::Instant::now();
    let mut tally = Tally::default();
    let s = sup.run(&mut tally).await;
    let mut failed = s.failed.clone();
    failed.sort();
    assert_eq!(
        failed,
        vec![(3, FailureKind::TaskTimeout), (5, FailureKind::Evaluation)]
    );
    assert_eq!(s.succeeded, 8);
    assert_eq!(s.attempts, 12);
    // Two 200 ms timeouts and a 10 ms retry delay, not an hour.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let five: Vec<Verdict> = tally
        .records
        .iter()
        .filter(|r| r.key == 5)
        .map(|r| r.verdict)
        .collect();
    assert_eq!(five, [Verdict::Retry, Verdict::GaveUp]);
}

#[tokio::test(start_paused = true)]
async fn drain_stops_dispatch_and_lets_running_attempts_finish() {
    let pool = LocalPool::new(Duration::from_millis(100), |_n: u64, _a: u32| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    });
    let mut sup: Box<Supervisor<_, 2, 32>> = Supervisor::new(config(3), pool, 2).unwrap();
    for n in 0..20u64 {
        sup.add_task(n, 0, n).unwrap();
    }
    let stop = sup.stop_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stop.drain();
    });
    let s = sup.run(&mut ()).await;
    // Two workers, 100 ms each: 2 at 100 ms, 2 at 200 ms, the 2 started at 200 ms finish.
    assert_eq!((s.succeeded, s.unfinished, s.interrupted), (6, 14, true));
}

#[tokio::test(start_paused = true)]
async fn checkpoint_then_restore_never_runs_a_finished_task_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(dir.path(), StoreConfig::DEFAULT).unwrap();
    let job = |_n: u64, _a: u32| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    };
    let mut first: Box<Supervisor<_, 2, 32>> =
        Supervisor::new(config(3), LocalPool::new(Duration::from_millis(50), job), 2).unwrap();
    for n in 0..20u64 {
        first.add_task(n, 0, n).unwrap();
    }
    first
        .enable_checkpoints(
            store.clone(),
            "farm",
            Duration::from_secs(60),
            b"payload".to_vec(),
        )
        .unwrap();
    let stop = first.stop_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(350)).await;
        stop.abort();
    });
    let s1 = first.run(&mut ()).await;
    assert_eq!(s1.succeeded, 6);
    let saved = store.load_latest("farm").unwrap().unwrap();

    let mut second: Box<Supervisor<_, 2, 32>> =
        Supervisor::new(config(3), LocalPool::new(Duration::from_millis(50), job), 2).unwrap();
    for n in 0..20u64 {
        second.add_task(n, 0, n).unwrap();
    }
    second.restore(&saved.bytes).unwrap();
    let mut tally = Tally::default();
    let s2 = second.run(&mut tally).await;
    assert_eq!(s2.succeeded, 20);
    assert_eq!(s2.attempts, 14);
    assert_eq!(tally.done.len(), 14);
}

#[derive(Default)]
struct StartTimes(Vec<tokio::time::Instant>);

impl<T> Observer<T> for StartTimes {
    fn attempt_started(
        &mut self,
        _w: sturdy_core::WorkerId,
        _o: &sturdy_farm::supervisor::Order<'_, T>,
    ) {
        self.0.push(tokio::time::Instant::now());
    }
}

#[tokio::test(start_paused = true)]
async fn a_critical_host_holds_dispatch_until_it_recovers() {
    use sturdy_core::health::HealthStatus;
    use sturdy_farm::supervisor::HostHealth;
    let pool = LocalPool::new(Duration::from_millis(100), |_n: u64, _a: u32| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    });
    let mut sup: Box<Supervisor<_, 2, 16>> = Supervisor::new(config(3), pool, 2).unwrap();
    for n in 0..5u64 {
        sup.add_task(n, 0, n).unwrap();
    }
    let (tx, rx) = tokio::sync::watch::channel(HostHealth {
        status: HealthStatus::Critical,
        workers: Vec::new(),
    });
    sup.set_health(rx);
    let start = tokio::time::Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.send_replace(HostHealth {
            status: HealthStatus::Healthy,
            workers: Vec::new(),
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(tx);
    });
    let mut starts = StartTimes::default();
    let s = sup.run(&mut starts).await;
    assert_eq!(s.succeeded, 5);
    assert_eq!(starts.0.len(), 5);
    assert!(
        starts
            .0
            .iter()
            .all(|t| t.duration_since(start) >= Duration::from_secs(2))
    );
}

/// A deterministic mix of crashes (panics), retryable errors, hangs past the timeout
/// and successes, from a seed.
fn fate(seed: u64, n: u64, attempt: u32) -> u64 {
    let mut x = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(attempt) << 40;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x % 100
}

#[tokio::test(start_paused = true)]
async fn random_chaos_never_loses_or_repeats_a_task() {
    for seed in 0..20u64 {
        let pool = LocalPool::new(
            Duration::from_millis(50),
            move |n: u64, attempt: u32| async move {
                let f = fate(seed, n, attempt);
                tokio::time::sleep(Duration::from_millis(1 + f % 7)).await;
                match f {
                    0..=9 => panic!("chaos: crash"),
                    10..=29 => Err(FailureKind::Network),
                    30..=34 => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            },
        );
        let cfg = config(4).with_task_timeout(Some(Duration::from_millis(300)));
        let mut sup: Box<Supervisor<_, 4, 64>> = Supervisor::new(cfg, pool, 3).unwrap();
        for n in 0..40u64 {
            sup.add_task(n, 0, n).unwrap();
        }
        let mut tally = Tally::default();
        let s = sup.run(&mut tally).await;
        assert_eq!(s.succeeded + s.failed.len(), 40, "seed {seed}: {s:?}");
        assert_eq!(s.unfinished, 0);
        assert!(
            tally.done.values().all(|&c| c == 1),
            "seed {seed}: a task succeeded twice"
        );
        assert_eq!(tally.done.len(), s.succeeded);
        for (key, kind) in &s.failed {
            assert!(
                !tally.done.contains_key(key),
                "seed {seed}: task {key} both done and failed"
            );
            let attempts: Vec<&AttemptRecord> =
                tally.records.iter().filter(|r| r.key == *key).collect();
            // Every own failure is charged once: four, then give up; a crash of the
            // worker under the task is counted apart (the ledger's crash limit).
            let own = attempts
                .iter()
                .filter(|r| r.finish.failure != Some(FailureKind::WorkerCrash))
                .count();
            let crashes = attempts.len() - own;
            if *kind == FailureKind::WorkerCrash {
                let limit = sup.ledger().config().crash_limit() as usize;
                assert_eq!(crashes, limit + 1, "seed {seed} task {key}: {attempts:?}");
            } else {
                assert_eq!(own, 4, "seed {seed} task {key}: {attempts:?}");
            }
            assert_eq!(attempts.last().unwrap().finish.failure, Some(*kind));
            assert_eq!(attempts.last().unwrap().verdict, Verdict::GaveUp);
        }
        assert_eq!(s.attempts as usize, tally.records.len(), "seed {seed}");
        assert_eq!(s.stale_results, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_resumed_task_keeps_its_earlier_failures_and_crashes() {
    let pool = LocalPool::new(
        Duration::from_millis(100),
        |_n: u64, _attempt: u32| async move { Err(FailureKind::Evaluation) },
    );
    let mut sup: Box<Supervisor<_, 2, 16>> = Supervisor::new(config(3), pool, 1).unwrap();
    // Task 1: 3 attempts made, 2 of them its own failures; task 2: made 1, nothing
    // charged (cut off by the restart).
    sup.add_task_resumed(1, 3, 2, 0, 1).unwrap();
    sup.add_task_resumed(2, 1, 0, 0, 2).unwrap();
    // More failures and crashes than attempts is refused, the payload handed back.
    let e = sup.add_task_resumed(3, 1, 1, 1, 3).unwrap_err();
    assert_eq!(e.payload, 3);
    let mut tally = Tally::default();
    let s = sup.run(&mut tally).await;
    let attempts = |key: u64| -> Vec<(u32, Verdict)> {
        tally
            .records
            .iter()
            .filter(|r| r.key == key)
            .map(|r| (r.attempt, r.verdict))
            .collect()
    };
    // One more own failure reaches max_attempts 3; numbering continues after 3.
    assert_eq!(attempts(1), vec![(4, Verdict::GaveUp)]);
    assert_eq!(
        attempts(2),
        vec![
            (2, Verdict::Retry),
            (3, Verdict::Retry),
            (4, Verdict::GaveUp)
        ]
    );
    assert_eq!(s.failed.len(), 2);
}

/// A pool whose one worker, before each report, replays the reports of earlier
/// attempts (success and failure), as a confused or delayed worker might: the late
/// reports of a recycled slot's earlier tasks must never count, nor be recorded under
/// the slot's new task.
struct Replayer {
    reporter: Option<sturdy_farm::supervisor::Reporter>,
    /// Every attempt dispatched: (slot, epoch, key).
    sent: std::rc::Rc<std::cell::RefCell<Vec<(sturdy_core::TaskId, u32, u64)>>>,
}

impl sturdy_farm::supervisor::WorkerPool for Replayer {
    type Task = u64;
    fn start(
        &mut self,
        _worker: sturdy_core::WorkerId,
        reporter: sturdy_farm::supervisor::Reporter,
    ) {
        reporter.send(sturdy_farm::supervisor::Report::Heartbeat);
        self.reporter = Some(reporter);
    }
    fn dispatch(
        &mut self,
        _worker: sturdy_core::WorkerId,
        order: sturdy_farm::supervisor::Order<'_, u64>,
    ) {
        use sturdy_farm::supervisor::{Finish, Report};
        let r = self.reporter.as_ref().unwrap();
        let mut sent = self.sent.borrow_mut();
        for &(task, epoch, _) in sent.iter().rev().take(4) {
            r.send(Report::Finished {
                task,
                epoch,
                finish: Finish::OK,
            });
            r.send(Report::Finished {
                task,
                epoch,
                finish: Finish::failed(FailureKind::Evaluation),
            });
        }
        // Every third task fails its first attempt.
        let fail = order.attempt == 1 && order.payload.is_multiple_of(3);
        let finish = if fail {
            Finish::failed(FailureKind::Evaluation)
        } else {
            Finish::OK
        };
        r.send(Report::Finished {
            task: order.task,
            epoch: order.epoch,
            finish,
        });
        sent.push((order.task, order.epoch, order.key));
    }
    fn kill(&mut self, _worker: sturdy_core::WorkerId) {}
    fn shutdown(&mut self) {}
}

#[tokio::test(start_paused = true)]
async fn a_recycled_slot_never_takes_a_late_report_of_its_earlier_tasks() {
    use sturdy_farm::supervisor::FedTask;
    let sent = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let pool = Replayer {
        reporter: None,
        sent: sent.clone(),
    };
    // One slot: every task after the first takes the slot of the one before.
    let mut sup: Box<Supervisor<_, 2, 1>> = Supervisor::new(config(3), pool, 1).unwrap();
    sup.set_feed((1..=12u64).map(|k| FedTask::new(k, k)), 1);
    let mut tally = Tally::default();
    let s = sup.run(&mut tally).await;
    let sent = sent.borrow();
    // 12 tasks, 4 of them (3, 6, 9, 12) twice: the slot's epochs run 1..=16.
    assert_eq!(sent.len(), 16);
    assert_eq!(
        sent.iter().map(|&(t, e, _)| (t.0, e)).collect::<Vec<_>>(),
        (1..=16).map(|e| (0, e)).collect::<Vec<_>>()
    );
    assert_eq!(tally.done, (1..=12).map(|k| (k, 1)).collect());
    // Every record is of the task that ran that attempt, its attempts numbered from 1.
    for r in &tally.records {
        let &(_, _, key) = sent.iter().find(|&&(_, e, _)| e == r.epoch).unwrap();
        assert_eq!(r.key, key, "{r:?}");
    }
    let firsts: Vec<(u64, u32, Verdict)> = tally
        .records
        .iter()
        .filter(|r| r.verdict != Verdict::Stale)
        .map(|r| (r.key, r.attempt, r.verdict))
        .filter(|&(k, ..)| k <= 4)
        .collect();
    assert_eq!(
        firsts,
        vec![
            (1, 1, Verdict::Done),
            (2, 1, Verdict::Done),
            (3, 1, Verdict::Retry),
            (3, 2, Verdict::Done),
            (4, 1, Verdict::Done)
        ]
    );
    assert_eq!(
        (s.tasks, s.succeeded, s.failed.len(), s.unfinished),
        (12, 12, 0, 0)
    );
    assert!(s.stale_results > 0);
}

#[tokio::test(start_paused = true)]
async fn a_window_runs_a_long_feed_exactly_once_each() {
    use sturdy_farm::supervisor::FedTask;
    // Odd tasks fail their first attempt; task 7's every attempt fails.
    let pool = LocalPool::new(
        Duration::from_millis(100),
        |n: u64, attempt: u32| async move {
            if n == 7 || (n % 2 == 1 && attempt == 1) {
                Err(FailureKind::Evaluation)
            } else {
                Ok(())
            }
        },
    );
    let mut sup: Box<Supervisor<_, 4, 64>> = Supervisor::new(config(3), pool, 3).unwrap();
    // 5000 tasks through 8 slots; task 10 was started twice by an earlier run.
    sup.set_feed(
        (1..=5000u64).map(|k| {
            if k == 10 {
                FedTask::resumed(k, 2, 1, 1, k)
            } else {
                FedTask::new(k, k)
            }
        }),
        8,
    );
    let mut tally = Tally::default();
    let s = sup.run(&mut tally).await;
    assert_eq!(sup.ledger().task_count(), 8);
    assert_eq!(tally.done.len(), 4999);
    assert!(tally.done.values().all(|&n| n == 1));
    assert!(!tally.done.contains_key(&7));
    assert_eq!((s.tasks, s.succeeded, s.unfinished), (5000, 4999, 0));
    assert_eq!(s.failed, vec![(7, FailureKind::Evaluation)]);
    let of = |key: u64| -> Vec<u32> {
        tally
            .records
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.attempt)
            .collect()
    };
    assert_eq!(of(7), vec![1, 2, 3]);
    assert_eq!(of(9), vec![1, 2]);
    assert_eq!(of(10), vec![3]);
    assert!(!s.interrupted);
}
