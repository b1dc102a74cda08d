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

#[test]
fn a_deleted_state_directory_stops_the_run_within_a_heartbeat_without_blaming_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (list, fx) = effect_tasks(dir.path(), 200, "sleep 0.05");
    let state = dir.path().join("state");
    let child = start(&list, &state, &["--workers", "2", "--json"]);
    wait_for("some effects", || lines_in(&fx) >= 5);
    std::fs::remove_dir_all(&state).unwrap();
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
    std::fs::remove_dir_all(state.join("out")).unwrap();
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
