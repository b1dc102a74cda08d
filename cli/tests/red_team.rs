//! End to end: an operator's attacks on the local farm (`sturdy run`) that once lost,
//! repeated or damaged something, each kept as the run that showed it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// Waits until `path` exists.
fn wait_for(path: &Path) {
    while !path.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `done` lines of a journal being written (whole lines only: a line read while
/// it is appended is not counted).
fn done_lines(state: &Path) -> usize {
    let text = std::fs::read_to_string(state.join("journal.tsv")).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.contains("\tdone\t"))
        .count()
}

/// `STATE/blank.out` replaced by hand with a symbolic link to a file of the user's: the
/// quiet tasks that start after it print nothing, and the file it leads to is neither
/// printed nor emptied (the master once emptied it, following the link).
#[test]
fn a_blank_replaced_by_a_symlink_never_empties_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "precious data\n").unwrap();
    let lines = vec![
        "touch started; while [ ! -e go ]; do sleep 0.02; done".to_owned(),
        "true".to_owned(),
        "true # again".to_owned(),
    ];
    write_tasks(dir.path(), "tasks.txt", &lines);
    let child = sturdy()
        .args(["run", "tasks.txt", "-j", "1", "--state-dir", "state"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&dir.path().join("started"));
    let blank = dir.path().join("state/blank.out");
    let link = dir.path().join("state/blank.link");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    std::fs::rename(&link, &blank).unwrap();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "precious data\n"
    );
    assert!(std::fs::symlink_metadata(&blank).unwrap().is_file());
    assert_exactly_once(&journal(&dir.path().join("state")), 3);
}

/// Makes a FIFO at `path` and writes `text` into it from a thread, once a reader opens it.
fn feed_fifo(path: &Path, text: String) -> std::thread::JoinHandle<()> {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
    let path = path.to_owned();
    std::thread::spawn(move || std::fs::write(&path, text).unwrap())
}

/// A task list or `::::` file on a FIFO (a shell's `<(...)`, `/dev/stdin` on a pipe) is
/// read as stdin is (it was refused: "Illegal seek"), and `--resume` through a FIFO with
/// the same lines runs nothing again.
#[test]
fn a_task_list_on_a_fifo_runs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("list");
    let effects = dir.path().join("effects");
    let list: String = (1..=5)
        .map(|i| format!("echo $STURDY_TASK >> {} # {i}\n", effects.display()))
        .collect();
    for resume in [false, true] {
        let writer = feed_fifo(&fifo, list.clone());
        let out = sturdy()
            .args(["run", "list", "-j", "2", "--state-dir", "state"])
            .args(resume.then_some("--resume"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        writer.join().unwrap();
        std::fs::remove_file(&fifo).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut ran: Vec<u32> = std::fs::read_to_string(&effects)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, [1, 2, 3, 4, 5]);
    assert_exactly_once(&journal(&dir.path().join("state")), 5);

    let writer = feed_fifo(&fifo, "a\nb\n".to_owned());
    let out = sturdy()
        .args([
            "run",
            "-k",
            "--state-dir",
            "args",
            "echo {}",
            "::::",
            "list",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
}

/// A run stopped early on a list longer than the master's window (4 096 tasks) counts
/// every task it did not finish as unfinished, not only those in its window: the
/// summary's counts add up to the list (it said 4 095 of 5 000).
#[test]
fn a_stopped_run_counts_the_tasks_it_never_read_as_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec!["exit 1".to_owned()];
    lines.extend((2..=5000).map(|i| format!("true # {i}")));
    write_tasks(dir.path(), "tasks.txt", &lines);
    let out = sturdy()
        .args(["run", "tasks.txt", "-j", "1", "--max-attempts", "1"])
        .args(["--halt", "now,fail=1", "--state-dir", "state", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&out);
    assert_eq!(s["tasks"], 5000);
    assert_eq!(s["succeeded"], 0);
    assert_eq!(s["failed"], 1);
    assert_eq!(s["unfinished"], 4999);
}

/// A journal that reaches the file size limit (`ulimit -f`) is a storage fault like a
/// full disk: the master stops, exits 1 naming the journal and the error, and the
/// summary agrees with the journal (SIGXFSZ killed it without a word, exit 153); a
/// `--resume` without the limit then runs each task's effect once more at most for the
/// attempts that were in flight, and never for a task on record.
#[test]
fn a_journal_at_the_file_size_limit_is_a_storage_fault_not_a_silent_death() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let lines: Vec<String> = (1..=600)
        .map(|i| format!("echo $STURDY_TASK >> {} # {i}", effects.display()))
        .collect();
    write_tasks(dir.path(), "tasks.txt", &lines);
    let bin = env!("CARGO_BIN_EXE_sturdy");
    // 40 KiB (dash counts 512-byte blocks, bash 1 KiB ones: 20 to 40 KiB either way).
    let script = format!("ulimit -f 80 && exec {bin} run tasks.txt -j 2 --state-dir state --json");
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    let fault = s["storage_fault"].as_str().unwrap();
    assert!(
        fault.contains("journal.tsv") && fault.contains("os error 27"),
        "{fault}"
    );
    let state = dir.path().join("state");
    let on_record = successes(&journal(&state));
    assert!(
        !on_record.is_empty() && on_record.len() < 600,
        "{on_record:?}"
    );
    assert_eq!(s["succeeded"], on_record.len());

    let out = sturdy()
        .args([
            "run",
            "tasks.txt",
            "-j",
            "2",
            "--state-dir",
            "state",
            "--resume",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&journal(&state), 600);
    let mut runs = std::collections::BTreeMap::<u32, u32>::new();
    for l in std::fs::read_to_string(&effects).unwrap().lines() {
        *runs.entry(l.parse().unwrap()).or_default() += 1;
    }
    assert_eq!(runs.len(), 600);
    let twice: Vec<u32> = runs.iter().filter(|r| *r.1 > 1).map(|r| *r.0).collect();
    // The two attempts in flight (one of them the task whose line did not fit).
    assert!(
        twice.len() <= 2 && twice.iter().all(|t| !on_record.contains_key(t)),
        "{twice:?}"
    );
}

/// `--results DIR` that cannot be written (here a file, not a directory): the tasks'
/// output, printed nowhere else, stays whole in `STATE/out` and the run exits 1 naming
/// the tasks (it exited 0, "all tasks succeeded", with their stdout deleted).
#[test]
fn output_that_results_could_not_save_is_kept_and_the_run_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("res"), "a file\n").unwrap();
    let lines = vec!["echo hello; echo oops >&2".to_owned(), "true".to_owned()];
    write_tasks(dir.path(), "tasks.txt", &lines);
    let out = sturdy()
        .args(["run", "tasks.txt", "-j", "1", "--state-dir", "state"])
        .args(["--results", "res"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--results could not save the output of task(s) 1, 2 ("),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let kept = |name: &str| std::fs::read_to_string(dir.path().join("state/out").join(name));
    assert_eq!(kept("1.1.out").unwrap(), "hello\n");
    assert_eq!(kept("1.1.err").unwrap(), "oops\n");
    assert_exactly_once(&journal(&dir.path().join("state")), 2);
}

/// A command holding a line feed (a `:::` value, or the template) is one journal line:
/// after a `kill -9` of the master before any checkpoint, `--resume` reads its `done`
/// line back and does not run it again (the raw line feed split the line in two: the
/// task ran again, with warnings of a torn write).
#[test]
fn a_command_with_a_line_feed_is_not_run_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let template = format!(
        "echo $STURDY_TASK >> {}; [ {{}} = slow ] && touch started && sleep 60; true",
        effects.display()
    );
    let args = |resume: bool| {
        let mut c = sturdy();
        c.args(["run", "-j", "1", "--state-dir", "state"])
            .args(resume.then_some("--resume"))
            .arg(&template)
            .args([":::", "a\nb", "slow"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let mut first = args(false).spawn().unwrap();
    wait_for(&dir.path().join("started"));
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_file(dir.path().join("started")).unwrap();
    let lines = journal(&dir.path().join("state"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].command.contains("a\\nb"), "{:?}", lines[0].command);

    // The second run: task 2 is run again (it was in flight), task 1 is not.
    let mut second = args(true).spawn().unwrap();
    wait_for(&dir.path().join("started"));
    second.kill().unwrap();
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&effects).unwrap(),
        "1\n2\n2\n",
        "{stderr}"
    );
}

/// With `--keep-order`, a task that ended ahead of its turn keeps its output files
/// until its output is printed: after a `kill -9` of the master while an earlier task
/// still runs, their output is in `STATE/out` (it was trimmed at once, so it was lost:
/// never printed, and a resume does not run a finished task again).
#[test]
fn keep_order_output_waiting_for_its_turn_survives_a_kill_of_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec!["touch started; sleep 60; echo one".to_owned()];
    lines.extend((2..=4).map(|i| format!("echo out-{i}")));
    write_tasks(dir.path(), "tasks.txt", &lines);
    let mut child = sturdy()
        .args(["run", "tasks.txt", "-k", "-j", "2", "--state-dir", "state"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = dir.path().join("state");
    wait_for(&dir.path().join("started"));
    while done_lines(&state) < 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for t in 2..=4 {
        let out = std::fs::read_to_string(state.join(format!("out/{t}.1.out")));
        assert_eq!(out.unwrap(), format!("out-{t}\n"), "task {t}");
    }
}

/// A `::::` file with a NUL byte or a line that is not UTF-8 is refused naming the
/// file and the line (it said "task 1: the command cannot hold a NUL byte", or called
/// it a tasks file); nothing runs.
#[test]
fn a_bad_argument_file_is_refused_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nul.txt"), b"ok\na\0b\n").unwrap();
    std::fs::write(dir.path().join("latin1.txt"), b"ok\n\xe9t\xe9\n").unwrap();
    for (file, want) in [
        (
            "nul.txt",
            "sturdy: argument file nul.txt, line 2: a value cannot hold a NUL byte\n",
        ),
        (
            "latin1.txt",
            "sturdy: argument file latin1.txt, line 2: not UTF-8 (byte 3 of the file)\n",
        ),
    ] {
        let out = sturdy()
            .args(["run", "--state-dir", "state", "touch ran-{}", "::::", file])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(String::from_utf8_lossy(&out.stderr), want);
        assert!(!dir.path().join("state").exists());
        assert!(!dir.path().join("ran-ok").exists());
    }
}

/// The `sturdy` binary deleted under a run (an upgrade, a `cargo clean`): a worker that
/// dies is restarted from the binary the master runs, not refused with "No such file or
/// directory" while tasks dispatched to it were charged worker crashes; the restarted
/// worker is still named `sturdy`.
#[test]
fn workers_restart_after_the_binary_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("sturdy");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_sturdy"), &bin).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_sturdy"), &bin).unwrap();
    }
    let effects = dir.path().join("effects");
    let lines = vec![
        format!(
            "rm -f {}; [ $STURDY_ATTEMPT = 1 ] && kill -9 $PPID && sleep 5; true",
            bin.display()
        ),
        format!("cat /proc/$PPID/comm >> {}", effects.display()),
        format!("cat /proc/$PPID/comm >> {}", effects.display()),
    ];
    write_tasks(dir.path(), "tasks.txt", &lines);
    let out = std::process::Command::new(&bin)
        .args([
            "run",
            "tasks.txt",
            "-j",
            "1",
            "--state-dir",
            "state",
            "--json",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bin.exists());
    let s = summary(&out);
    assert_eq!(
        (s["succeeded"].as_u64(), s["worker_crashes"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        std::fs::read_to_string(&effects).unwrap(),
        "sturdy\nsturdy\n"
    );
}

/// `--keep-order` holds output that waits for its turn past the memory budget in a
/// temporary file per task; under a low soft open-file limit (`ulimit -Sn`, 1 024 by
/// default on many systems) the master raises its own to the hard limit, so a slow
/// first task with many later ones finished does not run out of descriptors (their
/// output was refused, "Too many open files", and the run exited 1); commands still get
/// the limit the run started with.
#[test]
fn keep_order_holds_more_tasks_than_the_soft_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec!["while [ ! -e go ]; do sleep 0.02; done; ulimit -Sn".to_owned()];
    // 64 KiB each: the 4 MiB budget holds 64 of them, the rest go to temporary files.
    lines.extend((2..=160).map(|i| format!("head -c 65536 /dev/zero | tr '\\0' x; echo ' {i}'")));
    write_tasks(dir.path(), "tasks.txt", &lines);
    let bin = env!("CARGO_BIN_EXE_sturdy");
    let script = format!("ulimit -Sn 64 && exec {bin} run tasks.txt -k -j 2 --state-dir state");
    let child = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = dir.path().join("state");
    while done_lines(&state) < 159 {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<&str> = stdout.lines().collect();
    assert_eq!(printed.len(), 160);
    assert_eq!(printed[0], "64", "the command's soft limit");
    for (i, line) in printed.iter().enumerate().skip(1) {
        assert_eq!(line.len(), 65536 + 1 + (i + 1).to_string().len());
        assert!(line.ends_with(&format!(" {}", i + 1)), "line {i}");
    }
}

/// An open-file limit too low to start (hard limit included) is refused with a clear
/// error and exit code 2, before anything runs (the runtime panicked, exit 101).
#[test]
fn an_open_file_limit_too_low_to_start_is_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    write_tasks(dir.path(), "tasks.txt", &["touch ran".to_owned()]);
    let bin = env!("CARGO_BIN_EXE_sturdy");
    let script = format!("ulimit -n 12 && exec {bin} run tasks.txt --state-dir state");
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("sturdy: the open-file limit (ulimit -n) is 12, hard limit included;"),
        "{stderr}"
    );
    assert!(!dir.path().join("ran").exists());
}

/// A worker that cannot be started (here: out of file descriptors, 40 workers under a
/// hard limit of 64 open files) gets no task until a restart succeeds: no task is
/// charged a worker crash or moved for it (each task sent to it was, and with a
/// lasting cause every task failed for good as `worker_crash`).
#[test]
fn a_worker_that_cannot_start_is_given_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let lines: Vec<String> = (1..=200)
        .map(|i| format!("echo $STURDY_TASK >> {} # {i}", effects.display()))
        .collect();
    write_tasks(dir.path(), "tasks.txt", &lines);
    let bin = env!("CARGO_BIN_EXE_sturdy");
    let script = format!("ulimit -n 64 && exec {bin} run tasks.txt -j 40 --state-dir state --json");
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("sturdy: cannot start worker"), "{stderr}");
    let s = summary(&out);
    assert_eq!(s["succeeded"], 200);
    assert_eq!(s["reassignments"], 0, "{stderr}");
    let lines = journal(&dir.path().join("state"));
    assert_eq!(lines.len(), 200, "no attempt but the 200 that succeeded");
    assert_exactly_once(&lines, 200);
}
