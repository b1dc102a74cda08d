//! End to end: SIGINT drains (running tasks finish), a second SIGINT kills them; the
//! run resumes afterwards.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use std::os::unix::process::CommandExt;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Attempts with a stdout file in `STATE/out` (created as each attempt starts, removed
/// when its task ends).
fn running_attempts(state: &std::path::Path) -> usize {
    std::fs::read_dir(state.join("out")).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".out"))
            .count()
    })
}

fn wait_for_running(state: &std::path::Path, master: u32, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if running_attempts(state) >= 2 && !children(master, "sturdy").is_empty() {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "run ended early");
        assert!(Instant::now() < deadline, "nothing started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn first_signal_drains_second_kills_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=12).map(|i| format!("sleep 0.6; echo {i}")).collect();
    let list = write_tasks(dir.path(), "tasks.txt", &lines);
    let state = dir.path().join("state");
    let start = || {
        sturdy()
            .process_group(0)
            .args(["run", "-j", "2", "--json", "--state-dir"])
            .arg(&state)
            .arg(&list)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // One SIGINT to the master's whole process group, as a Ctrl-C on a terminal sends
    // it: the two running tasks finish, nothing new starts.
    let mut run = start();
    let master = run.id();
    wait_for_running(&state, master, &mut run);
    killpg(Pid::from_raw(master as i32), Signal::SIGINT).unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&out);
    assert_eq!(s["interrupted"], true);
    let j = journal(&state);
    assert_eq!(j.len(), 2, "{j:?}");
    assert!(j.iter().all(|l| l.next == "done"));
    assert!(state.join("checkpoints/run").read_dir().unwrap().count() >= 1);

    // Resume, then two SIGINTs: the running tasks are killed and marked interrupted.
    let run = sturdy()
        .args(["run", "-j", "2", "--json", "--resume", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let master = run.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while children(master, "sturdy").len() < 2 || running_attempts(&state) < 2 {
        assert!(Instant::now() < deadline, "resume did not start tasks");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(master as i32), Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    kill(Pid::from_raw(master as i32), Signal::SIGINT).unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let j = journal(&state);
    let interrupted = j.iter().filter(|l| l.next == "interrupted").count();
    assert_eq!(interrupted, 2, "{j:?}");

    // A last resume finishes the rest; each task succeeded exactly once overall.
    let out = sturdy()
        .args(["run", "-j", "4", "--json", "--resume", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&journal(&state), 12);
}

#[test]
fn a_closed_stderr_never_stops_a_run_and_a_closed_stdout_stops_it_keeping_the_output() {
    // `sturdy run ... 2>&1 | head -1`: the reader goes away. stderr carries progress
    // only: the run goes on to the end and exits 0, never 101 (a panic). stdout carries
    // the tasks' output: with nowhere to print it, the run starts no more tasks, keeps
    // every finished task's output in STATE/out, exits 1, and --resume runs the rest.
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=30)
        .map(|i| format!("echo out {i}; echo err {i} >&2; sleep 0.02"))
        .collect();
    let list = write_tasks(dir.path(), "tasks.txt", &lines);
    let state = dir.path().join("state");
    let run = |close_stdout: bool, close_stderr: bool, extra: &[&str]| {
        let mut child = sturdy()
            .args(["run", "--workers", "2", "--state-dir"])
            .arg(&state)
            .arg(&list)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closing a read end makes every write the master makes there fail (EPIPE).
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let keep_out = (!close_stdout)
            .then(|| std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default()));
        let keep_err = (!close_stderr)
            .then(|| std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default()));
        let status = child.wait().unwrap();
        let out = keep_out.map(|t| t.join().unwrap()).unwrap_or_default();
        let err = keep_err.map(|t| t.join().unwrap()).unwrap_or_default();
        (status.code(), out, err)
    };
    // stderr closed: the whole run, exit 0.
    let (code, out, _) = run(false, true, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 30, "{out}");
    assert_exactly_once(&journal(&state), 30);
    // With --json, stdout holds only the summary: closing it loses nothing else.
    std::fs::remove_dir_all(&state).unwrap();
    let (code, _, _) = run(true, true, &["--json"]);
    assert_eq!(code, Some(0));
    assert_exactly_once(&journal(&state), 30);
    // stdout closed: it stops, says why, keeps the output of what finished.
    std::fs::remove_dir_all(&state).unwrap();
    let (code, _, err) = run(true, false, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("stdout was closed"), "{err}");
    let done: Vec<u32> = journal(&state)
        .iter()
        .filter(|l| l.next == "done")
        .map(|l| l.task)
        .collect();
    assert!(done.len() < 30, "it stopped dispatching: {done:?}");
    for t in &done {
        let kept = std::fs::read_to_string(state.join(format!("out/{t}.1.out")));
        assert_eq!(
            kept.ok(),
            Some(format!("out {t}\n")),
            "task {t}'s output kept"
        );
    }
    let (code, out, err) = run(false, false, &["--resume"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 30 - done.len(), "{out}");
    assert_exactly_once(&journal(&state), 30);
}
