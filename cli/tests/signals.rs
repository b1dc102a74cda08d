//! End to end: SIGINT drains (running tasks finish), a second SIGINT kills them; the
//! run resumes afterwards.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use std::os::unix::process::CommandExt;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

fn wait_for_running(state: &std::path::Path, master: u32, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = std::fs::read_dir(state.join("out"))
            .map(|d| d.count())
            .unwrap_or(0);
        if started >= 4 && !children(master, "sturdy").is_empty() {
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
    while children(master, "sturdy").len() < 2
        || std::fs::read_dir(state.join("out")).unwrap().count() < 8
    {
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
fn closed_stdout_and_stderr_do_not_stop_the_run() {
    // `sturdy run ... 2>&1 | head -1`: the reader goes away after one line. The run goes
    // on to the end (the journal is its record) and exits 0, never 101 (a panic).
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=30)
        .map(|i| format!("echo out {i}; echo err {i} >&2; sleep 0.02"))
        .collect();
    let list = write_tasks(dir.path(), "tasks.txt", &lines);
    let state = dir.path().join("state");
    for json in [false, true] {
        let _ = std::fs::remove_dir_all(&state);
        let mut cmd = sturdy();
        cmd.args(["run", "--workers", "2", "--state-dir"])
            .arg(&state)
            .arg(&list)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd.spawn().unwrap();
        // Close both read ends at once: every write the master makes fails with EPIPE.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "json {json}");
        assert_exactly_once(&journal(&state), 30);
    }
}
