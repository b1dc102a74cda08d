//! A task farm in virtual time, driven the way a supervisor drives the core's ledger.
//!
//! 200 tasks of 1 to 5 s on 4 workers with heartbeats every 10 s (dead after 30 s):
//! - worker 1 hangs at t = 60 s (no more heartbeats, its task never answers) and is
//!   restarted at t = 150 s;
//! - worker 3 is broken: 80 % of its tasks fail, so its circuit breaker opens and its
//!   work moves to the others until the breaker half-opens;
//! - 10 % of all attempts fail transiently and are retried after a backoff;
//! - at t = 100 s the master "crashes": the ledger is checkpointed, dropped, decoded and
//!   restored into a fresh one, with the tasks in flight put back to pending.
//!
//! At the end every task has succeeded exactly once. Deterministic: the same seed gives
//! the same run.
//!
//! ```sh
//! cargo run -p sturdy-core --features postcard --example task_farm_simulation
//! ```

use core::time::Duration;
use std::collections::BTreeMap;

use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::checkpoint;
use sturdy_core::deadline::DeadlineConfig;
use sturdy_core::manager::{Event, Ledger, LedgerConfig};
use sturdy_core::retry::RetryPolicy;
use sturdy_core::rng::SplitMix64;
use sturdy_core::{FailureKind, Instant, TaskId, WorkerId};

type Farm = Ledger<4, 256, 1024>;

const TASKS: u32 = 200;
const HEARTBEAT: Duration = Duration::from_secs(10);

/// An attempt in flight on a simulated worker.
struct Run {
    task: TaskId,
    epoch: u32,
    done_at: Instant,
    ok: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backoff =
        BackoffConfig::exponential(Duration::from_secs(2), 2_000, Duration::from_secs(30))?
            .with_jitter(Jitter::Full)?;
    let config = LedgerConfig::new(RetryPolicy::new(5, backoff)?)
        .with_deadline(DeadlineConfig::default())
        .with_breaker(3, Duration::from_secs(60), 1)?
        .with_seed(42);
    let mut farm = Box::new(Farm::new(config));
    let mut rng = SplitMix64::new(7);
    let mut now = Instant::ZERO;
    for _ in 0..4 {
        farm.add_worker(1, now)?;
    }
    for _ in 0..TASKS {
        farm.add_task(now)?;
    }

    let mut running: Vec<Run> = Vec::new();
    let mut next_beat = now;
    let mut crashed = false;
    let mut successes: BTreeMap<u32, u32> = BTreeMap::new();
    let mut log: BTreeMap<&'static str, u32> = BTreeMap::new();

    while !farm.is_finished() {
        // The master crashes at 100 s, with work in flight: the last checkpoint is
        // restored into a fresh ledger (here taken just before the crash).
        if !crashed && now >= Instant::from_secs(100) {
            crashed = true;
            let mut buf = vec![0u8; checkpoint::max_encoded_len(farm.task_count(), 8)];
            let n = checkpoint::encode(&*farm, 3, b"gen-3", &mut buf)?;
            drop(farm);
            running.clear(); // the workers died with the master
            let saved = checkpoint::decode(&buf[..n])?;
            farm = Box::new(Farm::new(config));
            for _ in 0..4 {
                farm.add_worker(1, now)?;
            }
            let resume = saved.restore_into(&mut farm, now)?;
            println!(
                "t={now}: master restarted from a {n}-byte checkpoint: {} succeeded, {} requeued, next generation {}",
                resume.tasks.succeeded, resume.tasks.requeued, resume.next_generation
            );
        }

        // 1. Inputs that arrived by `now`: finished attempts and heartbeats.
        running.retain(|r| {
            if r.done_at > now {
                return true;
            }
            let result = if r.ok {
                farm.task_succeeded(r.task, r.epoch, now).map(|_| ())
            } else {
                farm.task_failed(r.task, r.epoch, FailureKind::Evaluation, now)
                    .map(|_| ())
            };
            if result.is_err() {
                *log.entry("late results rejected").or_default() += 1;
            }
            false
        });
        if now >= next_beat {
            for w in 0..4 {
                let hung = w == 1 && now >= Instant::from_secs(60) && now < Instant::from_secs(150);
                if !hung {
                    // A failed worker's heartbeat is refused until it is recovered.
                    let _ = farm.heartbeat(WorkerId(w), now);
                }
            }
            if now >= Instant::from_secs(150)
                && !farm.worker(WorkerId(1)).unwrap().status.is_alive()
            {
                farm.worker_recovered(WorkerId(1), now)?;
                farm.heartbeat(WorkerId(1), now)?;
            }
            next_beat = now + HEARTBEAT;
        }

        // 2. Timers, 3. assignments.
        farm.handle_timeout(now);
        while let Some(a) = farm.assign(now) {
            let secs = 1 + rng.below_inclusive(4);
            let hung = a.worker == WorkerId(1)
                && now >= Instant::from_secs(60)
                && now < Instant::from_secs(150);
            let broken = a.worker == WorkerId(3) && rng.below_inclusive(9) < 8;
            let flaky = rng.below_inclusive(9) == 0;
            running.push(Run {
                task: a.task,
                epoch: a.epoch,
                done_at: if hung {
                    Instant::MAX
                } else {
                    now + Duration::from_secs(secs)
                },
                ok: !broken && !flaky,
            });
        }

        // 4. Events: the journal.
        while let Some(ev) = farm.poll_event() {
            let name = match ev {
                Event::Succeeded { task, .. } => {
                    *successes.entry(task.0).or_default() += 1;
                    "succeeded"
                }
                Event::Breaker { worker, to, at, .. } => {
                    println!("t={at}: {worker} breaker -> {to}");
                    "breaker transitions"
                }
                Event::WorkerSuspected {
                    worker,
                    silence,
                    at,
                } => {
                    println!(
                        "t={at}: {worker} suspected after {} s of silence",
                        silence.as_secs()
                    );
                    "worker suspicions"
                }
                Event::Assigned { .. } => "assignments",
                Event::RetryScheduled { .. } => "retries",
                Event::Requeued { .. } => "requeues",
                Event::GaveUp { .. } => "gave up",
                _ => continue,
            };
            *log.entry(name).or_default() += 1;
        }

        // 5. Sleep until the next thing happens.
        let next_done = running
            .iter()
            .map(|r| r.done_at)
            .min()
            .unwrap_or(Instant::MAX);
        let wake = [
            next_done,
            next_beat,
            farm.poll_timeout().unwrap_or(Instant::MAX),
        ]
        .into_iter()
        .min()
        .unwrap_or(Instant::MAX);
        now = wake.max(now + Duration::from_millis(1));
    }

    let s = farm.stats();
    println!("\nfinished at t={now}");
    println!("events: {log:?}");
    println!(
        "stats: {} succeeded, {} failed, {} assignments, {} retries, {} reassignments, \
         {} task failures, {} worker failures, {} stale results, {} recoveries",
        s.succeeded_tasks,
        s.failed_tasks,
        s.assignments,
        s.retries,
        s.reassignments,
        s.total_task_failures,
        s.total_worker_failures,
        s.stale_results_rejected,
        s.recovery_attempts
    );
    for w in farm.workers() {
        println!("{}: breaker {}, {:?}", w.id, w.breaker, w.breaker_metrics);
    }
    // Every task succeeded, none twice (the restored ledger counts the ones before the
    // crash; the events after it must not repeat any).
    assert_eq!(s.succeeded_tasks, TASKS);
    assert!(successes.values().all(|&n| n == 1));
    Ok(())
}
