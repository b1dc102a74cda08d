//! End to end: each kind of bad input gets a clear error naming the problem, exit code
//! 2, and nothing is run or overwritten.

mod common;

use common::*;

fn stderr_of(args: &[&str], cwd: &std::path::Path) -> (Option<i32>, String) {
    let out = sturdy().args(args).current_dir(cwd).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_tasks_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = stderr_of(&["run", "nope.txt"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read tasks file nope.txt"), "{err}");
    assert!(
        !dir.path().join(".sturdy").exists(),
        "a state directory was created"
    );
}

#[test]
fn empty_tasks_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "# nothing here\n\n").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("t.txt holds no command"), "{err}");
}

#[test]
fn malformed_option_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "true\n").unwrap();
    for (args, needle) in [
        (&["run", "t.txt", "--workers", "many"][..], "--workers"),
        (&["run", "t.txt", "--task-timeout", "soon"][..], "soon"),
        (
            &["run", "t.txt", "--max-attempts", "0"][..],
            "--max-attempts",
        ),
        (&["run", "t.txt", "--slots", "gpu:a"][..], "gpu:a"),
        (&["run", "t.txt", "--jitter", "lots"][..], "lots"),
        (
            &[
                "run",
                "t.txt",
                "--backoff-base",
                "2s",
                "--backoff-cap",
                "1s",
            ][..],
            "--backoff-cap",
        ),
    ] {
        let (code, err) = stderr_of(args, dir.path());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!dir.path().join(".sturdy").exists());
}

#[test]
fn zero_workers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "true\n").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "--workers", "0"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("--workers"), "{err}");
    std::fs::write(dir.path().join("c.toml"), "workers = 0\n").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "--config", "c.toml"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("--workers"), "{err}");
}

#[test]
fn more_workers_than_a_run_takes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "true\n").unwrap();
    let rule = "must be in 1..=256 (a run takes at most 256 workers)";
    let (code, err) = stderr_of(&["run", "t.txt", "--workers", "300"], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("invalid value '300' for '--workers <N>': {rule}")),
        "{err}"
    );
    std::fs::write(dir.path().join("c.toml"), "workers = 300\n").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "--config", "c.toml"], dir.path());
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        format!("sturdy: invalid value 300 for '--workers': {rule}\n")
    );
    assert!(!dir.path().join(".sturdy").exists());
}

#[test]
fn bad_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "true\n").unwrap();
    std::fs::write(dir.path().join("c.toml"), "max-atempts = 3\n").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "--config", "c.toml"], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("c.toml") && err.contains("max-atempts"),
        "{err}"
    );
    let (code, err) = stderr_of(&["run", "t.txt", "--config", "missing.toml"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn unwritable_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "true\n").unwrap();
    std::fs::write(dir.path().join("a-file"), "x").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "--state-dir", "a-file/state"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("state directory a-file/state"), "{err}");
}

#[test]
fn resume_against_a_different_task_list_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "true\ntrue\n").unwrap();
    std::fs::write(dir.path().join("b.txt"), "true\nfalse\n").unwrap();
    let out = sturdy()
        .args(["run", "a.txt", "-j", "1", "--state-dir", "st"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let journal_before = std::fs::read(dir.path().join("st/journal.tsv")).unwrap();
    let meta_before = std::fs::read(dir.path().join("st/run.toml")).unwrap();
    let (code, err) = stderr_of(
        &["run", "b.txt", "--state-dir", "st", "--resume"],
        dir.path(),
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("different task list"), "{err}");
    // Without --resume, a directory holding a run is refused too.
    let (code, err) = stderr_of(&["run", "a.txt", "--state-dir", "st"], dir.path());
    assert_eq!(code, Some(2));
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("st/journal.tsv")).unwrap(),
        journal_before
    );
    assert_eq!(
        std::fs::read(dir.path().join("st/run.toml")).unwrap(),
        meta_before
    );
    // Resuming a finished run runs nothing and succeeds.
    let out = sturdy()
        .args(["run", "a.txt", "--state-dir", "st", "--resume", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&out);
    assert_eq!(
        (s["succeeded"].as_u64(), s["attempts"].as_u64()),
        (Some(2), Some(0))
    );
}

#[test]
fn a_command_too_long_for_sh_is_refused_not_left_hanging() {
    // A 2 MB line used to be dispatched in a frame over the protocol's limit, never
    // started, and the run (even after SIGTERM) waited for it forever.
    let dir = tempfile::tempdir().unwrap();
    let long = format!("true #{}\necho ok\n", "x".repeat(2 << 20));
    std::fs::write(dir.path().join("t.txt"), long).unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "--state-dir", "st"], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("t.txt, line 1: the command is 2097158 bytes"),
        "{err}"
    );
    assert!(
        !dir.path().join("st").exists(),
        "a state directory was created"
    );
}

#[test]
fn a_non_empty_state_directory_without_a_run_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.txt"), "true\n").unwrap();
    let (code, err) = stderr_of(&["run", "t.txt", "-j", "1", "--state-dir", "."], dir.path());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("state directory . is not empty and holds no sturdy run"),
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["t.txt"]);
}
