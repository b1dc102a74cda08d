//! Deterministic simulations of the ledger in virtual time, under injected faults:
//! workers that crash, hang (and deliver their results late when they wake up), fail
//! tasks, change health, and (with the `postcard` feature) a master that crashes and
//! restores its last checkpoint. Each seed is one run; whatever happens, every task ends
//! succeeded exactly once and none is lost.

use core::time::Duration;
use std::collections::BTreeMap;
use std::vec::Vec;

use proptest::prelude::*;
use sturdy_core::deadline::DeadlineConfig;
use sturdy_core::manager::{Event, Ledger, LedgerConfig, TaskState, WorkerHealth};
use sturdy_core::retry::fixed_policy;
use sturdy_core::rng::SplitMix64;
use sturdy_core::{FailureKind, Instant, TaskId, WorkerId};

const WORKERS: u32 = 5;
const TASKS: u32 = 200;
type Farm = Ledger<5, 256, 4096>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proc {
    Up,
    /// No heartbeats and no results until `until`; then it resumes as if nothing
    /// happened (its late results arrive).
    Hung {
        until: Instant,
    },
    /// Crashed; the supervisor noticed. Restarted at `until`.
    Down {
        until: Instant,
    },
}

struct Run {
    task: TaskId,
    epoch: u32,
    worker: u32,
    done_at: Instant,
    ok: bool,
}

/// Innocent tasks in a crash storm: the crash limit is as generous as the attempts, so
/// every task can succeed in the end (the default limit of 3 would fail some for good).
fn config() -> LedgerConfig {
    LedgerConfig::new(fixed_policy(1_000, Duration::from_millis(100)).unwrap())
        .with_crash_limit(1_000)
        .with_deadline(DeadlineConfig::new(Duration::from_secs(3), Duration::from_secs(3)).unwrap())
        .with_lease(Duration::from_secs(6))
        .unwrap()
        .with_breaker(3, Duration::from_secs(5), 1)
        .unwrap()
}

/// What one run saw.
#[derive(Debug, Default)]
struct Seen {
    successes: BTreeMap<u32, u32>,
    crashes: u32,
    hangs: u32,
    restores: u32,
    stale: u64,
    suspicions: u32,
    ticks: u32,
}

/// Runs one simulated farm.
fn simulate(seed: u64, master_crashes: bool) -> Seen {
    let mut rng = SplitMix64::new(seed);
    let mut chance = |per_mille: u64| rng.below_inclusive(999) < per_mille;
    let mut farm = Box::new(Farm::new(config()));
    let mut now = Instant::ZERO;
    let mut procs = [Proc::Up; WORKERS as usize];
    for _ in 0..WORKERS {
        farm.add_worker(2, now).unwrap();
    }
    for _ in 0..TASKS {
        farm.add_task(now).unwrap();
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut seen = Seen::default();
    let mut rng2 = SplitMix64::new(seed ^ 0x5555);
    for _tick in 0..20_000 {
        if farm.is_finished() {
            break;
        }
        seen.ticks += 1;
        now = now + Duration::from_millis(250);
        // Faults.
        for (w, proc_) in procs.iter_mut().enumerate() {
            match *proc_ {
                Proc::Up if chance(8) => {
                    // Crash: in-flight work is lost; the supervisor sees the exit.
                    *proc_ = Proc::Down {
                        until: now + Duration::from_secs(2),
                    };
                    runs.retain(|r| r.worker != w as u32);
                    seen.crashes += 1;
                    farm.worker_failed(WorkerId(w as u32), FailureKind::WorkerCrash, now)
                        .unwrap();
                }
                Proc::Up if chance(8) => {
                    seen.hangs += 1;
                    *proc_ = Proc::Hung {
                        until: now + Duration::from_millis(1_000 + rng2.below_inclusive(9_000)),
                    };
                }
                Proc::Up if chance(3) => {
                    let h = [
                        WorkerHealth::Healthy,
                        WorkerHealth::Degraded,
                        WorkerHealth::Critical,
                    ][rng2.below_inclusive(2) as usize];
                    farm.set_worker_health(WorkerId(w as u32), h).unwrap();
                }
                Proc::Hung { until } if now >= until => *proc_ = Proc::Up,
                Proc::Down { until } if now >= until => {
                    *proc_ = Proc::Up;
                    farm.worker_recovered(WorkerId(w as u32), now).unwrap();
                }
                _ => {}
            }
        }
        if master_crashes && chance(12) {
            seen.stale += farm.stats().stale_results_rejected;
            restore(&mut farm, now);
            seen.restores += 1;
            runs.clear(); // the workers die with the master
            procs.fill(Proc::Up);
        }
        // Results and heartbeats from processes that are up.
        runs.retain(|r| {
            let up = procs[r.worker as usize] == Proc::Up;
            if !up || r.done_at > now {
                return true;
            }
            let _ = if r.ok {
                farm.task_succeeded(r.task, r.epoch, now).map(|_| ())
            } else {
                farm.task_failed(r.task, r.epoch, FailureKind::Evaluation, now)
                    .map(|_| ())
            };
            false
        });
        for w in 0..WORKERS {
            if procs[w as usize] == Proc::Up {
                let _ = farm.heartbeat(WorkerId(w), now);
            }
        }
        farm.handle_timeout(now);
        while let Some(a) = farm.assign(now) {
            // A worker the ledger knows failed never gets work.
            if let Proc::Down { .. } = procs[a.worker.0 as usize] {
                panic!("task given to failed {}", a.worker);
            }
            runs.push(Run {
                task: a.task,
                epoch: a.epoch,
                worker: a.worker.0,
                done_at: now + Duration::from_millis(250 * (1 + rng2.below_inclusive(12))),
                ok: !chance(150),
            });
        }
        while let Some(ev) = farm.poll_event() {
            match ev {
                Event::Succeeded { task, .. } => *seen.successes.entry(task.0).or_default() += 1,
                Event::WorkerSuspected { .. } => seen.suspicions += 1,
                _ => {}
            }
        }
        // Every so often a healthy mark comes back, so critical workers do not starve
        // the run forever.
        if chance(20) {
            for w in 0..WORKERS {
                farm.set_worker_health(WorkerId(w), WorkerHealth::Healthy)
                    .unwrap();
            }
        }
    }
    assert!(farm.is_finished(), "seed {seed}: not finished at {now}");
    for t in farm.tasks() {
        assert_eq!(t.state, TaskState::Succeeded, "seed {seed}: {t:?}");
    }
    seen.stale += farm.stats().stale_results_rejected;
    seen
}

#[cfg(feature = "postcard")]
fn restore(farm: &mut Box<Farm>, now: Instant) {
    use sturdy_core::checkpoint;
    let mut buf = vec![0u8; checkpoint::max_encoded_len(farm.task_count(), 0)];
    let n = checkpoint::encode(&**farm, 0, &[], &mut buf).unwrap();
    let saved = checkpoint::decode(&buf[..n]).unwrap();
    let mut fresh = Box::new(Farm::new(config()));
    for _ in 0..WORKERS {
        fresh.add_worker(2, now).unwrap();
    }
    saved.restore_into(&mut fresh, now).unwrap();
    *farm = fresh;
}

#[cfg(not(feature = "postcard"))]
fn restore(farm: &mut Box<Farm>, now: Instant) {
    // Without checkpoints, a "restart" is a supervisor that reports every worker failed
    // and restarts it.
    for w in 0..WORKERS {
        farm.worker_failed(WorkerId(w), FailureKind::WorkerCrash, now)
            .unwrap();
        farm.worker_recovered(WorkerId(w), now).unwrap();
    }
}

#[test]
fn one_seed_sees_every_fault() {
    let seen = simulate(1, true);
    assert!(
        seen.crashes > 0 && seen.hangs > 0 && seen.restores > 0 && seen.suspicions > 0,
        "{seen:?}"
    );
    assert!(seen.stale > 0, "late results were rejected: {seen:?}");
    assert_eq!(seen.successes.len(), TASKS as usize);
    assert!(seen.successes.values().all(|&n| n == 1), "{seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_task_succeeds_exactly_once_under_faults(seed in any::<u64>(), crashes in any::<bool>()) {
        let seen = simulate(seed, crashes);
        prop_assert_eq!(seen.successes.len(), TASKS as usize);
        for (task, n) in seen.successes {
            prop_assert_eq!(n, 1, "task {} succeeded {} times", task, n);
        }
    }
}
