//! Runs longer than the master's window of the task list (the hidden `--window N`
//! makes the window small, so a few thousand cheap tasks recycle its slots hundreds of
//! times): every task runs to one success, task numbers stay line numbers, and a
//! resume (after `--halt` or a SIGKILL of the master) runs exactly the tasks that had
//! not finished. Each command appends `TASK ATTEMPT RUN` to an effects file; the tests
//! count those lines, not only the journal's.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `(task, attempt, run)` of each effect line.
fn effects(path: &Path) -> Vec<(u32, u32, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Vec<u32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

/// A list of `n` tasks after a comment line (so task `t` is line `t`, tasks 2..=n+1);
/// each appends its effect line and then fails with exit 3 when `fail` says so.
fn effect_list(dir: &Path, n: u32, fail: &str) -> (PathBuf, PathBuf) {
    let fx = dir.join("effects");
    let mut lines = vec!["# a comment: task numbers start at 2".to_owned()];
    lines.extend((0..n).map(|_| {
        format!(
            "echo $STURDY_TASK $STURDY_ATTEMPT $RUN >> {}; {fail}",
            fx.display()
        )
    }));
    (write_tasks(dir, "tasks.txt", &lines), fx)
}

fn run(list: &Path, state: &Path, run_no: u32, extra: &[&str]) -> Command {
    let mut c = sturdy();
    c.env("RUN", run_no.to_string())
        .args(["run", "--json", "--backoff-base", "1ms", "--workers", "4"])
        .args(extra)
        .arg("--state-dir")
        .arg(state)
        .arg(list);
    c
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_run_through_a_window_of_8_runs_every_task_once_by_line_number() {
    let dir = tempfile::tempdir().unwrap();
    // Every 97th line fails its first attempt.
    let (list, fx) = effect_list(
        dir.path(),
        2000,
        "[ $((STURDY_TASK % 97)) != 0 ] || [ $STURDY_ATTEMPT != 1 ] || exit 3",
    );
    let state = dir.path().join("state");
    let out = run(&list, &state, 1, &["--window", "8"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(
        (s["tasks"].as_u64(), s["succeeded"].as_u64()),
        (Some(2000), Some(2000))
    );
    let mut per_task: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (t, a, _) in effects(&fx) {
        per_task.entry(t).or_default().push(a);
    }
    assert_eq!(per_task.len(), 2000);
    assert_eq!(per_task.keys().next(), Some(&2));
    assert_eq!(per_task.keys().last(), Some(&2001));
    for (t, attempts) in &per_task {
        let want = if t % 97 == 0 { vec![1, 2] } else { vec![1] };
        assert_eq!(attempts, &want, "task {t}");
    }
    let lines = journal(&state);
    let done = successes(&lines);
    assert_eq!(done.len(), 2000);
    assert!(
        done.iter()
            .all(|(&t, &n)| n == 1 && (2..=2001).contains(&t))
    );
    assert_eq!(lines.len(), 2000 + 2001 / 97);
}

#[test]
fn argument_mode_streams_every_combination_through_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let state = dir.path().join("state");
    let nums: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    let out = sturdy()
        .args([
            "run",
            "--json",
            "--workers",
            "3",
            "--window",
            "5",
            "--state-dir",
        ])
        .arg(&state)
        .arg(format!("echo $STURDY_TASK {{1}} {{2}} >> {}", fx.display()))
        .arg(":::")
        .args(&nums)
        .args([":::", "a", "b", "c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: BTreeSet<String> = std::fs::read_to_string(&fx)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Task n is the n-th combination, the last source varying fastest.
    let want: BTreeSet<String> = (0..300)
        .map(|i| format!("{} {} {}", i + 1, i / 3 + 1, ["a", "b", "c"][i % 3]))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_resume_of_a_partly_done_run_runs_exactly_the_unfinished_tasks() {
    let dir = tempfile::tempdir().unwrap();
    // Line 6 (task 6) always fails: 3 attempts in all, across both runs.
    let (list, fx) = effect_list(dir.path(), 2000, "[ $STURDY_TASK != 6 ] || exit 3");
    let state = dir.path().join("state");
    let first = run(
        &list,
        &state,
        1,
        &[
            "--window",
            "16",
            "--max-attempts",
            "3",
            "--halt",
            "soon,done=1500",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let lines = journal(&state);
    let done_first: BTreeSet<u32> = successes(&lines).into_keys().collect();
    assert!(
        (1400..2000).contains(&done_first.len()),
        "{} done in the first run",
        done_first.len()
    );
    let second = run(
        &list,
        &state,
        2,
        &["--resume", "--window", "16", "--max-attempts", "3"],
    )
    .output()
    .unwrap();
    assert_eq!(
        second.status.code(),
        Some(1),
        "task 6 fails: {}",
        stderr(&second)
    );
    let fx = effects(&fx);
    let second_run: Vec<u32> = fx.iter().filter(|e| e.2 == 2).map(|e| e.0).collect();
    let ran_again: BTreeSet<u32> = second_run.iter().copied().filter(|&t| t != 6).collect();
    // Exactly the tasks without a success ran, each once (task 6 aside).
    let want: BTreeSet<u32> = (2..=2001)
        .filter(|t| !done_first.contains(t) && *t != 6)
        .collect();
    assert_eq!(ran_again, want);
    assert_eq!(second_run.iter().filter(|&&t| t != 6).count(), want.len());
    // Task 6 made 3 attempts in all, numbered 1..=3 across the runs.
    let six: Vec<u32> = fx.iter().filter(|e| e.0 == 6).map(|e| e.1).collect();
    assert_eq!(six, vec![1, 2, 3]);
    let lines = journal(&state);
    let done = successes(&lines);
    assert_eq!(done.len(), 1999);
    assert!(done.values().all(|&n| n == 1));
    let s = summary(&second);
    assert_eq!(s["succeeded"].as_u64(), Some(1999), "{s}");
}

#[test]
fn sigkill_of_the_master_mid_run_then_resume_repeats_no_finished_task() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_list(dir.path(), 3000, "true");
    let state = dir.path().join("state");
    let mut master = run(&list, &state, 1, &["--window", "8"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while effects(&fx).len() < 1000 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(master.id() as i32), Signal::SIGKILL).unwrap();
    let _ = master.wait();
    // What the journal holds as done when the master died.
    let done_first: BTreeSet<u32> = successes(&journal(&state)).into_keys().collect();
    assert!(done_first.len() >= 900, "{}", done_first.len());
    assert!(done_first.len() < 3000);
    let out = run(&list, &state, 2, &["--resume", "--window", "8"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let fx = effects(&fx);
    let repeated: Vec<u32> = fx
        .iter()
        .filter(|e| e.2 == 2 && done_first.contains(&e.0))
        .map(|e| e.0)
        .collect();
    assert_eq!(repeated, Vec::<u32>::new(), "finished tasks ran again");
    let all: BTreeSet<u32> = fx.iter().map(|e| e.0).collect();
    assert_eq!(all, (2..=3001).collect());
    let done = successes(&journal(&state));
    assert_eq!(done.len(), 3000);
    assert!(done.values().all(|&n| n == 1));
}
