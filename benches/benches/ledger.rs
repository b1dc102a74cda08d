//! The fault-tolerance manager's ledger at scale: `assign` among 1024 workers, and the
//! handling of a task failure (retry decision, breaker, requeue).
//!
//! Both run on a `Ledger<1024, 4096>` (1.6 MB, inline) whose 1024 workers have room
//! for 4 tasks each and whose 4096 tasks start pending. `assign` is timed for every one
//! of the 4096 assignments that fill the workers (least-loaded first, round robin across
//! calls), so the median is over loads from empty to full; then the ledger is restored
//! from a template, untimed, and the next round starts. `task_failed` is timed on each of
//! the 4096 running tasks of a full ledger (each failure asks the retry policy, charges
//! the worker's breaker, which opens after its 3rd failure, and queues the retry).

use std::hint::black_box;
use std::time::{Duration, Instant as WallClock};

use criterion::{Criterion, criterion_group, criterion_main};
use sturdy_core::manager::{Assignment, Ledger, LedgerConfig};
use sturdy_core::{FailureKind, Instant};

const WORKERS: usize = 1024;
const TASKS: usize = 4096;
const CAPACITY: u32 = (TASKS / WORKERS) as u32;

type Big = Ledger<WORKERS, TASKS>;

fn now() -> Instant {
    Instant::from_secs(1)
}

/// 1024 workers with room for 4 each, 4096 pending tasks.
fn fresh() -> Box<Big> {
    let mut l: Box<Big> = Box::new(Ledger::new(LedgerConfig::default()));
    for _ in 0..WORKERS {
        l.add_worker(CAPACITY, Instant::ZERO)
            .expect("room for workers");
    }
    for _ in 0..TASKS {
        l.add_task(Instant::ZERO).expect("room for tasks");
    }
    for w in 0..WORKERS as u32 {
        l.heartbeat(sturdy_core::WorkerId(w), now()).expect("alive");
    }
    l
}

fn drain(l: &mut Big) {
    while l.poll_event().is_some() {}
}

/// Runs `step` `iters` times, `TASKS` per round, restoring `ledger` from `template`
/// between rounds (untimed); `step` gets the round's index `0..TASKS`.
fn rounds(
    iters: u64,
    template: &Big,
    ledger: &mut Big,
    mut step: impl FnMut(&mut Big, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        ledger.clone_from(template);
        let n = left.min(TASKS as u64) as usize;
        let start = WallClock::now();
        for i in 0..n {
            step(ledger, i);
        }
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

fn ledger(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");

    let pending = fresh();
    let mut scratch = fresh();
    g.bench_function("assign_1024_workers", |b| {
        b.iter_custom(|iters| {
            rounds(iters, &pending, &mut scratch, |l, _| {
                black_box(l.assign(now()));
            })
        });
    });

    // A full ledger: every task running; the assignments in the order they were made.
    let mut running = fresh();
    let mut assigned: Vec<Assignment> = Vec::with_capacity(TASKS);
    while let Some(a) = running.assign(now()) {
        assigned.push(a);
    }
    assert_eq!(assigned.len(), TASKS);
    drain(&mut running);
    g.bench_function("task_failed", |b| {
        b.iter_custom(|iters| {
            rounds(iters, &running, &mut scratch, |l, i| {
                let a = assigned[i];
                let d = l.task_failed(a.task, a.epoch, FailureKind::Network, now());
                black_box(d).expect("current epoch");
                // The event queue is bounded; a supervisor drains it as it goes.
                while l.poll_event().is_some() {}
            })
        });
    });

    g.finish();
}

criterion_group! {
    name = benches;
    config = sturdy_benches::criterion_config();
    targets = ledger
}
criterion_main!(benches);
