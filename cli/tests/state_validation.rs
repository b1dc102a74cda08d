//! End to end: what `--resume` reads back from the state directory is checked against
//! the task list. Journal lines of no task of the list or of another command are
//! ignored with a warning naming the line, attempt numbers are never reused, and a run
//! whose record is gone is refused rather than run again.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// `n` tasks, each appending its attempt number to `ran-T` in the working directory.
fn tasks(dir: &Path, n: u32) -> std::path::PathBuf {
    let lines: Vec<String> = (1..=n)
        .map(|t| format!("echo $STURDY_ATTEMPT >> ran-{t}"))
        .collect();
    write_tasks(dir, "tasks.txt", &lines)
}

fn run(dir: &Path, resume: bool) -> Output {
    let mut cmd = sturdy();
    cmd.args([
        "run",
        "tasks.txt",
        "-j",
        "2",
        "--json",
        "--state-dir",
        "state",
    ]);
    if resume {
        cmd.arg("--resume");
    }
    cmd.current_dir(dir).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ran(dir: &Path, task: u32) -> String {
    std::fs::read_to_string(dir.join(format!("ran-{task}"))).unwrap_or_default()
}

/// Rewrites the journal's attempt lines with `edit` (the two header lines stay).
fn edit_journal(state: &Path, edit: impl FnOnce(Vec<String>) -> Vec<String>) {
    let path = state.join("journal.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let body = lines.split_off(2);
    lines.extend(edit(body));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Deletes every checkpoint, so that the journal alone says what finished.
fn drop_checkpoints(state: &Path) {
    for e in std::fs::read_dir(state.join("checkpoints/run")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
}

/// A journal line of `task`'s attempt `attempt` that led to `next`.
fn line(task: u32, attempt: u32, next: &str, command: &str) -> String {
    format!("{task}\t{attempt}\t1\t1\t1.000\t1.001\t0.001\t0\t-\t-\t{next}\t{command}")
}

#[test]
fn journal_lines_of_no_task_or_another_command_are_ignored_by_line() {
    let dir = tempfile::tempdir().unwrap();
    tasks(dir.path(), 3);
    let out = run(dir.path(), false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = dir.path().join("state");
    drop_checkpoints(&state);
    edit_journal(&state, |body| {
        let mut keep: Vec<String> = body.into_iter().filter(|l| l.starts_with("1\t")).collect();
        // Line 4: task 2's number with task 3's command; line 5 and 6: no such task.
        keep.push(line(2, 1, "done", "echo $STURDY_ATTEMPT >> ran-3"));
        keep.push(line(4, 1, "done", "echo $STURDY_ATTEMPT >> ran-4"));
        keep.push(line(301, 1, "done", "echo $STURDY_ATTEMPT >> ran-301"));
        keep
    });
    let out = run(dir.path(), true);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "sturdy: warning: journal.tsv line 4: the command \"echo $STURDY_ATTEMPT >> ran-3\" is not task 2's (\"echo $STURDY_ATTEMPT >> ran-2\"); ignored"
        ),
        "{err}"
    );
    assert!(
        err.contains("sturdy: warning: journal.tsv line 5: task 4 is outside 1..=3; ignored"),
        "{err}"
    );
    assert!(
        err.contains("sturdy: warning: journal.tsv line 6: task 301 is outside 1..=3; ignored"),
        "{err}"
    );
    let s = summary(&out);
    assert_eq!(s["tasks"], 3);
    assert_eq!(s["succeeded"], 3, "never more than the list: {s}");
    assert_eq!(s["succeeded_before"], 1);
    assert_eq!(s["attempts"], 2);
    // Tasks 2 and 3 ran again, numbered after their first attempts' output files.
    assert_eq!(ran(dir.path(), 1), "1\n");
    assert_eq!(ran(dir.path(), 2), "1\n2\n");
    assert_eq!(ran(dir.path(), 3), "1\n2\n");
    assert!(!dir.path().join("ran-4").exists());
}

#[test]
fn attempt_numbers_continue_after_stale_lines_and_unjournaled_outputs() {
    let dir = tempfile::tempdir().unwrap();
    tasks(dir.path(), 3);
    let out = run(dir.path(), false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = dir.path().join("state");
    drop_checkpoints(&state);
    // Task 2: only a stale line of attempt 5 is left. Task 3: its attempt 2 was in
    // flight when the master was SIGKILLed: output files, no journal line.
    edit_journal(&state, |body| {
        let mut keep: Vec<String> = body.into_iter().filter(|l| l.starts_with("1\t")).collect();
        keep.push(line(2, 5, "stale", "echo $STURDY_ATTEMPT >> ran-2"));
        keep
    });
    std::fs::write(state.join("out/3.2.out"), "from the killed attempt\n").unwrap();
    std::fs::write(state.join("out/3.2.err"), "").unwrap();
    let out = run(dir.path(), true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&out)["succeeded"], 3);
    assert_eq!(ran(dir.path(), 2), "1\n6\n");
    assert_eq!(ran(dir.path(), 3), "1\n3\n");
    assert_eq!(
        std::fs::read_to_string(state.join("out/3.2.out")).unwrap(),
        "from the killed attempt\n",
        "the killed attempt's output is kept"
    );
    let lines = journal(&state);
    let mut attempts: Vec<(u32, u32, &str)> = lines
        .iter()
        .map(|l| (l.task, l.attempt, l.next.as_str()))
        .collect();
    // The two new attempts ran side by side: their order is the workers'.
    attempts[2..].sort();
    assert_eq!(
        attempts,
        vec![
            (1, 1, "done"),
            (2, 5, "stale"),
            (2, 6, "done"),
            (3, 3, "done")
        ]
    );
    assert_exactly_once(&lines, 3);
}

#[test]
fn a_run_whose_record_is_gone_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    tasks(dir.path(), 3);
    let out = run(dir.path(), false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = dir.path().join("state");
    drop_checkpoints(&state);
    std::fs::rename(state.join("journal.tsv"), dir.path().join("journal.bak")).unwrap();
    let out = run(dir.path(), true);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(
            "sturdy: --resume: the record of the run in state is gone: state/journal.tsv is missing, and no valid checkpoint is in state/checkpoints, while state/out holds the output of attempts of 3 task(s); resuming would run finished tasks again. Restore journal.tsv, or start over in a new --state-dir"
        ),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(!state.join("journal.tsv").exists(), "nothing was written");
    for t in 1..=3 {
        assert_eq!(ran(dir.path(), t), "1\n", "task {t} did not run again");
    }
    // With the journal restored, the run is whole again.
    std::fs::rename(dir.path().join("journal.bak"), state.join("journal.tsv")).unwrap();
    let out = run(dir.path(), true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(
        (s["succeeded"].as_u64(), s["attempts"].as_u64()),
        (Some(3), Some(0))
    );
}

#[test]
fn a_lost_journal_with_a_checkpoint_left_warns_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    tasks(dir.path(), 3);
    let out = run(dir.path(), false);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = dir.path().join("state");
    std::fs::remove_file(state.join("journal.tsv")).unwrap();
    let out = run(dir.path(), true);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "sturdy: warning: THE JOURNAL IS GONE: state/journal.tsv is missing; continuing from checkpoint "
        ),
        "{err}"
    );
    assert!(err.contains("(3 done, 0 failed for good)"), "{err}");
    let s = summary(&out);
    assert_eq!(
        (s["succeeded"].as_u64(), s["attempts"].as_u64()),
        (Some(3), Some(0))
    );
    for t in 1..=3 {
        assert_eq!(ran(dir.path(), t), "1\n");
    }
}
