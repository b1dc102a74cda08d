//! End to end under chaos: worker processes and the master itself are SIGKILLed while
//! a batch runs; every task still succeeds exactly once in the journal.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn tasks(n: u32) -> Vec<String> {
    (1..=n)
        .map(|i| {
            format!(
                "sleep 0.0{}; echo \"task {i} attempt $STURDY_ATTEMPT\"",
                2 + i % 5
            )
        })
        .collect()
}

#[test]
fn killing_random_workers_every_100ms_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_tasks(dir.path(), "tasks.txt", &tasks(200));
    let state = dir.path().join("state");
    let mut child = sturdy()
        .args([
            "run",
            "--workers",
            "4",
            "--max-attempts",
            "100",
            "--backoff-base",
            "5ms",
        ])
        .args([
            "--backoff-cap",
            "50ms",
            "--breaker-open",
            "100ms",
            "--heartbeat-interval",
            "100ms",
        ])
        .args(["--heartbeat-timeout", "2s", "--json", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let master = child.id();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(25);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let workers = children(master, "sturdy");
        if workers.is_empty() {
            continue;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let victim = workers[(seed % workers.len() as u64) as usize];
        if kill(Pid::from_raw(victim), Signal::SIGKILL).is_ok() {
            kills += 1;
        }
    }
    let out = child.wait_with_output().unwrap();
    let s = summary(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(kills >= 5, "the test killed only {kills} workers");
    let lines = journal(&state);
    assert_exactly_once(&lines, 200);
    let crashes = lines.iter().filter(|l| l.kind == "worker_crash").count();
    assert!(
        crashes >= 1,
        "no worker_crash line although {kills} workers were killed"
    );
    assert_eq!(s["succeeded"], 200);
    assert!(s["worker_crashes"].as_u64().unwrap() >= 1);
}

#[test]
fn master_sigkilled_mid_run_then_resume_runs_each_task_once() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_tasks(dir.path(), "tasks.txt", &tasks(200));
    let state = dir.path().join("state");
    let run = |resume: bool| {
        let mut c = sturdy();
        c.args(["run", "-j", "4", "--json", "--state-dir"])
            .arg(&state)
            .arg(&list);
        if resume {
            c.arg("--resume");
        }
        c
    };
    let mut first = run(false)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while successes(&journal(&state)).len() < 50 {
        assert!(Instant::now() < deadline, "the first run made no progress");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let master = first.id();
    let workers = children(master, "sturdy");
    kill(Pid::from_raw(master as i32), Signal::SIGKILL).unwrap();
    first.wait().unwrap();
    // The orphaned workers notice the master is gone and exit with their commands.
    let deadline = Instant::now() + Duration::from_secs(5);
    while workers.iter().any(|&w| alive(w)) {
        assert!(Instant::now() < deadline, "workers outlived their master");
        std::thread::sleep(Duration::from_millis(20));
    }
    let done_before = successes(&journal(&state)).len();
    assert!(
        (50..200).contains(&done_before),
        "{done_before} done before the kill"
    );

    let out = run(true).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["succeeded"], 200);
    assert_eq!(
        s["succeeded_before"].as_u64().unwrap() as usize,
        done_before
    );
    assert_eq!(s["attempts"].as_u64().unwrap() as usize, 200 - done_before);
    assert_exactly_once(&journal(&state), 200);
}

#[test]
fn a_stopped_worker_misses_its_heartbeats_and_its_task_moves() {
    stopped_worker_is_replaced(&["--heartbeat-timeout", "600ms"]);
}

#[test]
fn the_phi_accrual_detector_also_catches_a_stopped_worker() {
    stopped_worker_is_replaced(&["--phi-threshold", "8"]);
}

fn stopped_worker_is_replaced(detector: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=20).map(|i| format!("sleep 0.1; echo {i}")).collect();
    let list = write_tasks(dir.path(), "tasks.txt", &lines);
    let state = dir.path().join("state");
    let child = sturdy()
        .args(["run", "-j", "2", "--heartbeat-interval", "100ms"])
        .args(detector)
        .args(["--max-attempts", "5", "--json", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let w = children(child.id(), "sturdy");
        if w.len() == 2
            && std::fs::read_dir(state.join("out"))
                .map(|d| d.count())
                .unwrap_or(0)
                >= 2
        {
            break w;
        }
        assert!(Instant::now() < deadline, "workers did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Freeze one worker: it stays alive but silent.
    kill(Pid::from_raw(workers[0]), Signal::SIGSTOP).unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = journal(&state);
    assert_exactly_once(&j, 20);
    assert!(
        j.iter().any(|l| l.kind == "worker_crash"),
        "no worker_crash line"
    );
    assert!(summary(&out)["worker_crashes"].as_u64().unwrap() >= 1);
    // The frozen worker was killed, not left behind.
    assert!(!alive(workers[0]));
}
