//! The simulated farm: determinism and the record rules' properties over seeds and faults.

use sturdy_farm::sim::{AgentKind, Dist, Report, WorldConfig, simulate};

fn small(seed: u64) -> WorldConfig {
    WorldConfig {
        seed,
        workers: 8,
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

mod properties {
    use std::time::Duration;

    use proptest::prelude::*;
    use sturdy_farm::sim::{AgentKind, Dist, WorldConfig, simulate};

    /// A small world under bounded faults: a few hosts, crashes, zombies (pauses longer
    /// than the lease), lost messages, latency, a server restart longer than the lease,
    /// a partition, failing, poison and hanging tasks.
    fn world() -> impl Strategy<Value = WorldConfig> {
        (
            any::<u64>(),
            (0.0..30.0f64, 0.0..20.0f64, 5_000.0..40_000.0f64),
            (0.0..0.3f64, 0.0..0.1f64, 0.0..0.1f64, 0.0..0.1f64),
            (0.0..0.05f64, 0u64..40),
            proptest::option::of((0u64..300_000, 1_000u64..60_000)),
            proptest::option::of((0u64..300_000, 1_000u64..60_000, 0.0..1.0f64)),
            prop_oneof![Just(AgentKind::Real), Just(AgentKind::Reference)],
        )
            .prop_map(
                |(
                    seed,
                    (crash, pause, pause_ms),
                    (transient, permanent, poison, hang),
                    (loss, lat),
                    outage,
                    partition,
                    agent,
                )| {
                    let mut c = WorldConfig {
                        seed,
                        workers: 6,
                        slots_per_host: 2,
                        tasks: 24,
                        duration: Dist::LogNormal(20_000.0, 0.5),
                        transient,
                        permanent,
                        poison,
                        hang,
                        command_timeout_ms: 120_000,
                        host_crash_per_hour: crash,
                        host_restart_ms: 20_000,
                        pause_per_hour: pause,
                        pause_ms: Dist::Const(pause_ms),
                        outages: outage.map(|(s, l)| (s, s + l)).into_iter().collect(),
                        partitions: partition.into_iter().collect(),
                        time_limit_ms: 48 * 3_600_000,
                        agent,
                        ..WorldConfig::default()
                    };
                    c.retry = sturdy_core::retry::RetryPolicy::new(
                        3,
                        sturdy_core::backoff::BackoffConfig::constant(Duration::from_secs(2)),
                    )
                    .unwrap();
                    c.net.loss = loss;
                    c.net.latency_ms = Dist::Uniform(0.0, lat as f64);
                    // Unlimited deliveries: a message that reached MaxDeliver waits for
                    // the coordinator's reconciliation (R5). The world runs the real
                    // coordinator (enqueue, follow), which does not reconcile yet.
                    c.server.max_deliver = 0;
                    c.server.max_ack_pending = 12;
                    c.server.max_waiting = 6;
                    c
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_record_rules_hold_under_faults(c in world()) {
            // Claims: the task's own failures within max_attempts, plus the lost ones
            // within the crash limit, plus the one lost claim that gives it up.
            let max = c.retry.max_attempts() + c.crash_limit + 1;
            let seed = c.seed;
            let r = simulate(c).unwrap();
            let replay = format!("seed {seed} (replay: the same WorldConfig gives trace {})", r.trace_hash);
            prop_assert_eq!(r.done_records_twice, 0, "{}: {:?}", replay, r);
            prop_assert_eq!(r.writes_after_newer_claim, 0, "{}: {:?}", replay, r);
            prop_assert!(r.max_claims <= max, "{}: claims {} > {}", replay, r.max_claims, max);
            prop_assert_eq!(r.unfinished, 0, "{}: {:?}", replay, r);
            prop_assert_eq!(r.succeeded + r.failed, r.tasks, "{}: {:?}", replay, r);
            prop_assert_eq!(r.orphan_commands, 0, "{}: {:?}", replay, r);
        }
    }
}

/// The model punishes an agent that trusts the engine's acks and renewals (which the
/// server does not fence): a zombie's renewals pin its task and its late ack deletes the
/// live redelivery, so tasks are lost; the fenced agent finishes every one of the same
/// worlds.
#[test]
fn an_agent_that_trusts_the_unfenced_ack_loses_tasks() {
    let mut lost = 0;
    for seed in 0..12 {
        let mut c = small(seed);
        c.agent = AgentKind::Reference;
        c.tasks = 30;
        c.pause_per_hour = 30.0;
        c.pause_ms = Dist::Const(25_000.0);
        c.host_crash_per_hour = 10.0;
        c.host_restart_ms = 10_000;
        c.transient = 0.3;
        c.server.max_deliver = 0;
        c.time_limit_ms = 24 * 3_600_000;
        let fenced = simulate(c.clone()).unwrap();
        assert_eq!(fenced.unfinished, 0, "seed {seed}: {fenced:?}");
        assert_eq!(fenced.done_records_twice, 0, "seed {seed}");
        c.unfenced_agent = true;
        let naive = simulate(c).unwrap();
        lost += naive.unfinished;
    }
    assert!(lost > 0, "the unfenced agent lost no task in 12 worlds");
}
