//! A timed-out command gets `SIGTERM` on its process group first, so its `TERM` trap
//! runs, and `SIGKILL` only after `--kill-grace` (issue 11, point 7; GNU parallel's
//! `--termseq` is the reference). Counted by the commands' own side effects.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_timed_out_command_runs_its_term_trap_and_one_that_ignores_term_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let fx = fx.display();
    let list = write_tasks(
        dir.path(),
        "tasks.txt",
        &[
            // Cleans up on TERM: the trap's line must appear.
            format!(
                "trap 'echo trapped $STURDY_TASK $STURDY_ATTEMPT >> {fx}; exit 143' TERM; \
                 echo started $STURDY_TASK >> {fx}; sleep 30 & wait"
            ),
            // Ignores TERM (the ignored disposition is inherited by sleep): only the
            // KILL after the grace ends it.
            format!("trap '' TERM; echo started $STURDY_TASK >> {fx}; sleep 30"),
        ],
    );
    let state = dir.path().join("state");
    let t0 = Instant::now();
    let out = sturdy()
        .args([
            "run",
            "--workers",
            "2",
            "--max-attempts",
            "1",
            "--task-timeout",
            "500ms",
            "--kill-grace",
            "700ms",
            "--json",
            "--state-dir",
        ])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    let elapsed = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}: {err}");
    let effects = std::fs::read_to_string(dir.path().join("effects")).unwrap();
    let mut lines: Vec<&str> = effects.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["started 1", "started 2", "trapped 1 1"],
        "{effects}"
    );
    let j = journal(&state);
    let by_task = |t: u32| {
        let l: Vec<&Line> = j.iter().filter(|l| l.task == t).collect();
        assert_eq!(l.len(), 1, "{j:?}");
        (
            l[0].kind.clone(),
            l[0].signal.clone(),
            l[0].exit.clone(),
            l[0].next.clone(),
        )
    };
    // Task 1's shell left through its trap (exit 143 after TERM), task 2 was killed.
    let (kind1, _, _, next1) = by_task(1);
    assert_eq!(
        (kind1.as_str(), next1.as_str()),
        ("task_timeout", "gave_up")
    );
    let (kind2, sig2, _, next2) = by_task(2);
    assert_eq!(
        (kind2.as_str(), sig2.as_str(), next2.as_str()),
        ("task_timeout", "9", "gave_up"),
        "{j:?}"
    );
}

#[test]
fn a_kill_grace_of_zero_kills_at_once_and_no_trap_runs() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let list = write_tasks(
        dir.path(),
        "tasks.txt",
        &[format!(
            "trap 'echo trapped >> {fx}' TERM; echo started >> {fx}; sleep 30 & wait",
            fx = fx.display()
        )],
    );
    let out = sturdy()
        .args([
            "run",
            "--workers",
            "1",
            "--max-attempts",
            "1",
            "--task-timeout",
            "300ms",
            "--kill-grace",
            "0s",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&fx).unwrap(), "started\n");
}
