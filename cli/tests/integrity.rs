//! The farm's promise under the faults of issue 11, counted by side effects: each
//! command appends `$STURDY_TASK $STURDY_ATTEMPT` to a file, and the test counts the
//! lines per task, not only the journal's.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Effect lines per task.
fn effects(path: &Path) -> BTreeMap<u32, Vec<u32>> {
    let mut m: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for l in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let mut it = l.split_whitespace().map(|x| x.parse::<u32>().unwrap());
        let (t, a) = (it.next().unwrap(), it.next().unwrap());
        m.entry(t).or_default().push(a);
    }
    m
}

fn effect_tasks(dir: &Path, n: u32, body: &str) -> (PathBuf, PathBuf) {
    let fx = dir.join("effects");
    let lines: Vec<String> = (1..=n)
        .map(|_| {
            format!(
                "{body}; echo $STURDY_TASK $STURDY_ATTEMPT >> {}",
                fx.display()
            )
        })
        .collect();
    (write_tasks(dir, "tasks.txt", &lines), fx)
}

fn start(list: &Path, state: &Path, extra: &[&str]) -> Child {
    sturdy()
        .args([
            "run",
            "--backoff-base",
            "10ms",
            "--heartbeat-interval",
            "100ms",
        ])
        .args(extra)
        .arg("--state-dir")
        .arg(state)
        .arg(list)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_second_master_on_a_locked_state_dir_exits_2_and_resume_after_sigkill_works() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 12, "sleep 0.3");
    let state = dir.path().join("state");
    let mut first = start(&list, &state, &["--workers", "2"]);
    wait_for("a first effect", || lines_in(&fx) >= 1);
    let t0 = Instant::now();
    let second = sturdy()
        .args(["run", "--resume", "--workers", "2", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains("is in use by another sturdy run")
            && err.contains(&format!("(pid {})", first.id()))
            && err.contains(&state.display().to_string()),
        "{err}"
    );
    // The first master dies; the lock goes with it and --resume finishes the run.
    kill(Pid::from_raw(first.id() as i32), Signal::SIGKILL).unwrap();
    let _ = first.wait();
    let out = sturdy()
        .args([
            "run",
            "--resume",
            "--workers",
            "2",
            "--backoff-base",
            "10ms",
            "--state-dir",
        ])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    let fx = effects(&fx);
    assert_eq!(fx.len(), 12);
    // A command that ended just before its master died, unrecorded, runs again: at most
    // one per worker of the killed master.
    let again = fx.values().filter(|a| a.len() > 1).count();
    assert!(again <= 2, "ran to their effect again: {fx:?}");
    assert_exactly_once(&journal(&state), 12);
}

#[test]
fn a_worker_killed_before_it_reports_its_command_leaves_no_command_running() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let (list, fx) = effect_tasks(
        dir.path(),
        1,
        &format!("echo go >> {}; sleep 1", starts.display()),
    );
    let state = dir.path().join("state");
    let mut master = sturdy()
        .args([
            "run",
            "--workers",
            "1",
            "--backoff-base",
            "10ms",
            "--state-dir",
        ])
        .arg(&state)
        .arg(&list)
        // The worker pauses between spawning the command and reporting its group.
        .env("STURDY_TEST_PAUSE_BEFORE_STARTED_MS", "800")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the command to start", || lines_in(&starts) >= 1);
    let workers = children(master.id(), "sturdy");
    assert_eq!(workers.len(), 1);
    kill(Pid::from_raw(workers[0]), Signal::SIGKILL).unwrap();
    let status = master.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // Long enough for the first command's sleep to have ended, had it survived.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        effects(&fx)[&1],
        vec![2],
        "only the second attempt's effect"
    );
}

#[test]
fn a_stopped_worker_and_its_command_die_when_a_resumed_master_takes_over() {
    stopped_worker_then_resume(false);
}

#[test]
fn a_stopped_worker_dies_when_a_resumed_master_takes_over_a_moved_state_directory() {
    stopped_worker_then_resume(true);
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_master_in() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 40, "sleep 0.1");
    let state = dir.path().join("state");
    let first = start(&list, &state, &["--workers", "2", "--json"]);
    wait_for("a first effect", || lines_in(&fx) >= 1);
    std::fs::remove_file(state.join("lock")).unwrap();
    let second = sturdy()
        .args(["run", "--resume", "--workers", "2", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains("is in use by another sturdy run"), "{err}");
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the first master goes on: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fx = effects(&fx);
    assert_eq!(fx.len(), 40);
    assert!(fx.values().all(|a| a.len() == 1), "{fx:?}");
    assert_exactly_once(&journal(&state), 40);
}

fn stopped_worker_then_resume(moved: bool) {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let (list, fx) = effect_tasks(
        dir.path(),
        1,
        &format!("echo go >> {}; sleep 1.5", starts.display()),
    );
    let state = dir.path().join("state");
    let mut master = start(&list, &state, &["--workers", "1"]);
    wait_for("the command to start", || lines_in(&starts) >= 1);
    let workers = children(master.id(), "sturdy");
    assert_eq!(workers.len(), 1);
    kill(Pid::from_raw(workers[0]), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(master.id() as i32), Signal::SIGKILL).unwrap();
    let _ = master.wait();
    let state = if moved {
        let to = dir.path().join("moved-state");
        std::fs::rename(&state, &to).unwrap();
        to
    } else {
        state
    };
    let out = sturdy()
        .args(["run", "--resume", "--workers", "1", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // (Whether the old command is still there to be swept depends on the kernel: the
    // stopped worker's group is orphaned by the master's death and gets SIGHUP and
    // SIGCONT; what must hold is the effect count below.)
    std::thread::sleep(Duration::from_millis(2000));
    assert!(!alive(workers[0]), "the stopped worker was killed");
    let fx = effects(&fx);
    assert_eq!(
        fx[&1].len(),
        1,
        "one effect, not the old command's too: {fx:?}"
    );
}

/// A tmpfs of `size` mounted at `at`, unmounted on drop; `None` (with the reason
/// printed) where this test cannot mount one.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(at.to_owned())),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_journal_filesystem_stops_the_run_and_resume_reruns_only_what_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("small"), "48k") else {
        return;
    };
    let (list, fx) = effect_tasks(dir.path(), 1500, "true");
    let state = dir.path().join("small/state");
    let out = start(&list, &state, &["--workers", "3", "--json"])
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is full or failing") && err.contains("--resume"),
        "{err}"
    );
    let s = summary(&out);
    assert!(
        s["storage_fault"]
            .as_str()
            .is_some_and(|m| m.contains("No space left")),
        "{s}"
    );
    let ran = effects(&fx).len();
    assert!(ran < 1500, "it stopped dispatching ({ran} ran)");
    fs.resize("8m");
    let out = sturdy()
        .args(["run", "--resume", "--workers", "3", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fx = effects(&fx);
    assert_eq!(fx.len(), 1500);
    let twice: Vec<_> = fx.iter().filter(|(_, a)| a.len() > 1).collect();
    // At most the attempts in flight when it stopped: one per worker, plus the one
    // whose journal line did not fit.
    assert!(twice.len() <= 4, "ran again: {twice:?}");
    assert_exactly_once(&journal(&state), 1500);
    drop(fs);
}

/// Removes a directory that the run's workers are still writing files into: a file
/// made between `remove_dir_all`'s listing and its `rmdir` makes it fail with
/// `DirectoryNotEmpty`, so it tries again (the run stops writing once it notices).
fn remove_while_written(dir: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => continue,
            Err(e) => panic!("cannot remove {}: {e}", dir.display()),
        }
    }
    panic!("{} kept being written into", dir.display());
}

#[test]
fn a_deleted_state_directory_stops_the_run_within_a_heartbeat_without_blaming_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 200, "sleep 0.05");
    let state = dir.path().join("state");
    let child = start(&list, &state, &["--workers", "2", "--json"]);
    wait_for("some effects", || lines_in(&fx) >= 5);
    remove_while_written(&state);
    let t0 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "stopped promptly");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("full or failing"), "{err}");
    let s = summary(&out);
    assert_eq!(s["failed"], 0, "no task was blamed: {s}");
    assert_eq!(s["breaker_trips"], 0, "{s}");
    assert!(lines_in(&fx) < 200);
}

#[test]
fn a_removed_output_directory_stops_the_run_naming_the_path_without_blaming_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 200, "sleep 0.05");
    let state = dir.path().join("state");
    let child = start(&list, &state, &["--workers", "2", "--json"]);
    wait_for("some effects", || lines_in(&fx) >= 5);
    remove_while_written(&state.join("out"));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("full or failing") && err.contains(&state.join("out").display().to_string()),
        "{err}"
    );
    let s = summary(&out);
    assert_eq!(s["failed"], 0, "no task was blamed: {s}");
    assert_eq!(s["breaker_trips"], 0, "{s}");
    let j = journal(&state);
    assert!(
        j.iter().all(|l| l.next != "gave_up" && l.next != "retry"),
        "no attempt was charged: {j:?}"
    );
    assert!(lines_in(&fx) < 200, "it stopped dispatching");
    // The journal is intact: --resume (with out/ back) finishes the rest, and each
    // task's success is recorded once.
    let out = sturdy()
        .args(["run", "--resume", "--workers", "2", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&journal(&state), 200);
    let fx = effects(&fx);
    assert_eq!(fx.len(), 200);
    assert!(fx.values().filter(|a| a.len() > 1).count() <= 2, "{fx:?}");
}

/// `sturdy run --resume` of `list` in `state` with `extra`, to its end.
fn resume(list: &Path, state: &Path, extra: &[&str]) -> std::process::Output {
    sturdy()
        .args(["run", "--resume", "--backoff-base", "10ms"])
        .args(extra)
        .arg("--state-dir")
        .arg(state)
        .arg(list)
        .output()
        .unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that each of tasks `1..=n` had exactly one effect.
fn assert_one_effect_each(fx: &Path, n: u32) {
    let fx = effects(fx);
    assert_eq!(fx.len(), n as usize, "{fx:?}");
    let twice: Vec<_> = fx.iter().filter(|(_, a)| a.len() != 1).collect();
    assert!(twice.is_empty(), "ran again: {twice:?}");
}

/// Keeps only the journal's two header lines (a `cp` of an emptied copy over it).
fn keep_journal_header(state: &Path) {
    let path = state.join("journal.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    let head: Vec<&str> = text.lines().take(2).collect();
    std::fs::write(&path, head.join("\n") + "\n").unwrap();
}

#[test]
fn every_checkpoint_covers_tasks_of_earlier_runs_so_a_lost_journal_reruns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 30, "true");
    let state = dir.path().join("state");
    let out = start(&list, &state, &["--workers", "2"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // A resume with nothing to run writes the newest checkpoint.
    let out = resume(&list, &state, &["--workers", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("30 done, 0 failed for good, 0 to run"));
    // The journal emptied to its header: silent before, now loud, and nothing reruns.
    keep_journal_header(&state);
    let out = resume(&list, &state, &["--workers", "2"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let journal_path = state.join("journal.tsv").display().to_string();
    let ckpt_dir = state.join("checkpoints/run").display().to_string();
    assert!(
        err.contains("THE JOURNAL LOST LINES")
            && err.contains(&journal_path)
            && err.contains(&ckpt_dir)
            && err.contains(".ckpt")
            && err.contains("of 30 task(s)"),
        "{err}"
    );
    assert!(
        err.contains("30 done, 0 failed for good, 0 to run"),
        "{err}"
    );
    assert_one_effect_each(&fx, 30);
    // The journal deleted: the newest checkpoint (of a run that ran nothing) still
    // covers all 30.
    std::fs::remove_file(state.join("journal.tsv")).unwrap();
    let out = resume(&list, &state, &["--workers", "2"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("THE JOURNAL IS GONE") && err.contains("(30 done"),
        "{err}"
    );
    assert_one_effect_each(&fx, 30);
}

#[test]
fn a_journal_truncated_under_the_master_stops_it_and_resume_reruns_nothing_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 40, "sleep 0.1");
    let state = dir.path().join("state");
    // No periodic checkpoint: only the journal records what finished.
    let child = start(
        &list,
        &state,
        &["--workers", "2", "--checkpoint-interval", "1h", "--json"],
    );
    wait_for("some effects", || lines_in(&fx) >= 6);
    // logrotate's copytruncate.
    std::fs::OpenOptions::new()
        .write(true)
        .open(state.join("journal.tsv"))
        .unwrap()
        .set_len(0)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let s = summary(&out);
    assert!(
        s["storage_fault"]
            .as_str()
            .is_some_and(|m| m.contains("journal.tsv was truncated")),
        "{s}"
    );
    let ran = effects(&fx).len();
    assert!(ran < 40, "it stopped ({ran} ran)");
    let out = resume(&list, &state, &["--workers", "2"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("THE JOURNAL LOST LINES"), "{err}");
    let fx = effects(&fx);
    assert_eq!(fx.len(), 40);
    // At most the attempts in flight when it stopped (one per worker) run again.
    let twice: Vec<_> = fx.iter().filter(|(_, a)| a.len() > 1).collect();
    assert!(twice.len() <= 2, "ran again: {twice:?}");
}

#[test]
fn the_trace_of_finished_tasks_in_out_is_not_rerun_silently() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 5, "true");
    let state = dir.path().join("state");
    let out = start(&list, &state, &["--workers", "2"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // Both records gone but the journal's header: only out/ remembers.
    for e in std::fs::read_dir(state.join("checkpoints/run")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    keep_journal_header(&state);
    let out = resume(&list, &state, &["--workers", "2"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{} holds the trace of 5 task(s) that ended",
            state.join("out").display()
        )) && err.contains("tasks 1, 2, 3, 4, 5"),
        "{err}"
    );
    assert_eq!(effects(&fx).len(), 5);
}

/// A command that appends `$STURDY_ATTEMPT` to `fx`, SIGKILLs the master (its worker's
/// parent) on attempt 3, and otherwise ends with `tail`.
fn killing_task(dir: &Path, fx: &Path, tail: &str) -> PathBuf {
    let line = format!(
        "echo $STURDY_ATTEMPT >> {}; if [ $STURDY_ATTEMPT = 3 ]; then kill -9 $(awk '{{print $4}}' /proc/$PPID/stat); sleep 10; fi; {tail}",
        fx.display()
    );
    write_tasks(dir, "tasks.txt", &[line])
}

fn attempts_in(fx: &Path) -> Vec<u32> {
    std::fs::read_to_string(fx)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[test]
fn max_attempts_holds_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let list = killing_task(dir.path(), &fx, "exit 1");
    let state = dir.path().join("state");
    let flags = ["--workers", "1", "--max-attempts", "3"];
    let out = start(&list, &state, &flags).wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "the master was killed");
    assert_eq!(attempts_in(&fx), vec![1, 2, 3]);
    // Two own failures on record (attempt 3 died with the master): one more try.
    let out = resume(&list, &state, &flags);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(attempts_in(&fx), vec![1, 2, 3, 4]);
    let j = journal(&state);
    let last = j.last().unwrap();
    assert_eq!((last.attempt, last.next.as_str()), (4, "gave_up"), "{j:?}");
}

#[test]
fn max_worker_crashes_holds_across_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    // Every attempt kills its own worker.
    let list = killing_task(dir.path(), &fx, "kill -9 $PPID; sleep 10");
    let state = dir.path().join("state");
    let flags = ["--workers", "1", "--max-worker-crashes", "2"];
    let out = start(&list, &state, &flags).wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "the master was killed");
    assert_eq!(attempts_in(&fx), vec![1, 2, 3]);
    // Two crashes on record: the next one is the third, over the limit of 2.
    let out = resume(&list, &state, &flags);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(attempts_in(&fx), vec![1, 2, 3, 4]);
    let j = journal(&state);
    let last = j.last().unwrap();
    assert_eq!(
        (last.attempt, last.kind.as_str(), last.next.as_str()),
        (4, "worker_crash", "gave_up"),
        "{j:?}"
    );
}

#[test]
fn a_master_stopped_by_its_deleted_state_directory_leaves_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 100, "sleep 0.05");
    let state = dir.path().join("state");
    let child = start(&list, &state, &["--workers", "2"]);
    wait_for("some effects", || lines_in(&fx) >= 5);
    // (A worker may create an output file while the tree goes: try again.)
    wait_for("the state directory to go", || {
        let _ = std::fs::remove_dir_all(&state);
        !state.exists()
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(!state.exists(), "the stopping master recreated {state:?}");
    // A fresh run starts over, as the README says.
    let out = start(&list, &state, &["--workers", "2"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_exactly_once(&journal(&state), 100);
}

#[test]
fn a_failed_journal_write_is_not_counted_as_a_success() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("small"), "16k") else {
        return;
    };
    let (list, _fx) = effect_tasks(dir.path(), 300, &format!("true {}", "x".repeat(200)));
    let state = dir.path().join("small/state");
    let out = start(&list, &state, &["--workers", "3", "--json"])
        .wait_with_output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let s = summary(&out);
    assert!(s["storage_fault"].is_string(), "{s}");
    let done = successes(&journal(&state)).len();
    assert_eq!(
        s["succeeded"], done,
        "the summary agrees with the journal: {s}"
    );
    assert_eq!(
        s["succeeded"].as_u64().unwrap()
            + s["failed"].as_u64().unwrap()
            + s["unfinished"].as_u64().unwrap(),
        300,
        "{s}"
    );
    fs.resize("8m");
    let out = sturdy()
        .args(["run", "--resume", "--workers", "3", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("resuming {}: {done} done,", state.display())),
        "{err}"
    );
    drop(fs);
}

#[test]
fn a_stopped_worker_whose_master_dies_kills_its_command_when_the_kernel_wakes_it() {
    // The master leads a process group of its own, as a shell job does. When it dies
    // with a worker stopped, that group is orphaned with a stopped member: the kernel
    // sends it SIGHUP, then SIGCONT. The worker must survive the SIGHUP, see its
    // master's pipe closed, and kill its command, with no later master to sweep it.
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let (list, fx) = effect_tasks(
        dir.path(),
        1,
        // Long enough that a loaded machine cannot finish it between its start and
        // the master's death (a `sleep 2` did, at load 10+).
        &format!("echo go >> {}; sleep 5", starts.display()),
    );
    let mut master = sturdy()
        .args(["run", "--workers", "1", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg(&list)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for("the command to start", || lines_in(&starts) >= 1);
    let workers = children(master.id(), "sturdy");
    assert_eq!(workers.len(), 1);
    kill(Pid::from_raw(workers[0]), Signal::SIGSTOP).unwrap();
    // The kernel wakes an orphaned group only if a member is stopped when the group is
    // orphaned: wait until the worker really is (state `T`), as an operator's Ctrl-Z
    // would have it, before the master dies.
    wait_for("the worker to stop", || {
        std::fs::read_to_string(format!("/proc/{}/stat", workers[0]))
            .ok()
            .and_then(|s| {
                s.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next())
            })
            == Some('T')
    });
    kill(Pid::from_raw(master.id() as i32), Signal::SIGKILL).unwrap();
    let _ = master.wait();
    // Past the command's own end: its effect must never appear.
    std::thread::sleep(Duration::from_millis(6000));
    assert_eq!(
        lines_in(&fx),
        0,
        "the command ran on after its worker's master died"
    );
    assert!(!alive(workers[0]), "the worker is gone");
}
