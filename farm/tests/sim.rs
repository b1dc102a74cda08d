//! The simulated farm: determinism and the record rules' properties over seeds and faults.

use sturdy_farm::sim::{Dist, Report, WorldConfig, simulate};

fn small(seed: u64) -> WorldConfig {
    WorldConfig {
        seed,
        hosts: 4,
        slots_per_host: 2,
        tasks: 60,
        duration: Dist::LogNormal(20_000.0, 0.5),
        ..WorldConfig::default()
    }
}

#[test]
fn a_quiet_world_runs_every_task_once() {
    let r = simulate(small(1)).unwrap();
    eprintln!("{r:#?}");
    assert_eq!(
        (r.tasks, r.succeeded, r.failed, r.unfinished),
        (60, 60, 0, 0)
    );
    assert_eq!(r.executions, 60);
    assert_eq!(r.duplicate_executions, 0);
    assert_eq!(r.done_records_twice, 0);
    assert!(r.makespan_s >= r.ideal_makespan_s, "{r:?}");
}

#[test]
fn a_seed_replays_the_same_run() {
    let mut c = small(7);
    c.host_crash_per_hour = 20.0;
    c.host_restart_ms = 5_000;
    c.transient = 0.2;
    let a: Report = simulate(c.clone()).unwrap();
    let b = simulate(c.clone()).unwrap();
    assert_eq!(a, b);
    c.seed = 8;
    let other = simulate(c).unwrap();
    assert_ne!(a.trace_hash, other.trace_hash);
}
