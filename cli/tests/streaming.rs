//! The master streams its input: a list of two million lines (as a task file, and as a
//! `::::` argument file on stdin) does not grow its resident set with the list. The
//! master's peak resident set (VmHWM of `/proc/PID/status`) is read while it runs;
//! `--halt now,done=1` stops it after its first task, once it has read and
//! fingerprinted the whole input and filled its window.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

/// Lines in the big task list: two million, of 40 bytes each (80 MB of text; the
/// master held it all, and 16 bytes a task beside it, before it streamed).
const LINES: usize = 2_000_000;

/// How much more the master may hold at two million lines than at a few thousand
/// (in KiB): 8 MiB, a tenth of the input's text.
const GROWTH_KIB: u64 = 8 * 1024;

/// Polls the child's VmHWM until it exits; returns (peak KiB, whether it exited 0 or 1: a halted run exits 1).
fn peak_of(mut child: Child) -> (u64, bool) {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(s) = child.try_wait().unwrap() {
            return (peak, matches!(s.code(), Some(0 | 1)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_lines(path: &Path, line: &str, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..n {
        writeln!(f, "{line}").unwrap();
    }
    f.flush().unwrap();
}

/// The master's peak resident set (KiB) over a run of `args` (stdin from `stdin`),
/// stopped after its first task; checks that a task succeeded and returns its command.
fn peak_of_run(dir: &Path, name: &str, args: &[&str], stdin: Option<&Path>) -> (u64, String) {
    let state = dir.join(name);
    let child = sturdy()
        .args([
            "run",
            "--workers",
            "2",
            "--json",
            "--halt",
            "now,done=1",
            "--state-dir",
        ])
        .arg(&state)
        .args(args)
        .stdin(stdin.map_or(Stdio::null(), |p| std::fs::File::open(p).unwrap().into()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (peak, ok) = peak_of(child);
    assert!(ok && peak > 0, "the run {name} failed");
    let j = journal(&state);
    let first = j
        .iter()
        .find(|l| l.next == "done")
        .unwrap_or_else(|| panic!("no task of {name} ran: {j:?}"));
    (peak, first.command.clone())
}

#[test]
fn two_million_lines_run_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Task lists: `true` padded to 40 bytes with a shell comment; a small one (past
    // the window of 4096 tasks, so the same ledger) and a big one.
    let line = "true # ..............................";
    let (small, big) = (d.join("small.txt"), d.join("big.txt"));
    write_lines(&small, line, 5000);
    write_lines(&big, line, LINES);
    let (base, _) = peak_of_run(d, "small", &[small.to_str().unwrap()], None);
    let (peak, command) = peak_of_run(d, "big", &[big.to_str().unwrap()], None);
    assert_eq!(command, line);
    assert!(
        peak <= base + GROWTH_KIB,
        "task list of {LINES} lines: master peak RSS {peak} KiB, {base} KiB at 5000 lines"
    );

    // Argument mode, the values on stdin (spooled to a file, not held).
    let args = d.join("args.txt");
    write_lines(&args, "a-value-of-forty-bytes..................", LINES / 4);
    let (peak, command) = peak_of_run(d, "args", &["true {} {#}", "::::", "-"], Some(&args));
    assert!(
        command.starts_with("true a-value-of-forty-bytes.................. "),
        "{command}"
    );
    assert!(
        peak <= base + GROWTH_KIB,
        "{} arguments on stdin: master peak RSS {peak} KiB, {base} KiB at 5000 lines",
        LINES / 4
    );
}

/// The master's peak resident set (KiB) over `sturdy run TASKS -k --tag`, its stdout in
/// the file `stdout`.
fn peak_of_kept(dir: &Path, name: &str, stdout: &Path) -> u64 {
    let child = sturdy()
        .arg("run")
        .arg(dir.join(name))
        .args(["-k", "--tag", "--workers", "3", "--state-dir"])
        .arg(dir.join(format!("{name}.state")))
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (peak, ok) = peak_of(child);
    assert!(ok && peak > 0, "the run of {name} failed");
    peak
}

#[test]
fn keep_order_holds_big_output_of_a_later_task_outside_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = d.join("gate");
    // Task 1 ends only after task 3 has ended, so task 2's 24 MB and task 3's lines
    // wait for it (past the 4 MiB held in memory, in a temporary file).
    let cmds = [
        format!(
            "while [ ! -e {} ]; do sleep 0.05; done; echo first",
            gate.display()
        ),
        "head -c 24000000 /dev/zero | tr '\\0' x; echo".to_owned(),
        format!("seq 3; touch {}", gate.display()),
    ];
    write_tasks(d, "big.txt", &cmds);
    write_tasks(d, "small.txt", &["echo a".to_owned(), "echo b".to_owned()]);
    let base = peak_of_kept(d, "small.txt", &d.join("small.out"));
    let peak = peak_of_kept(d, "big.txt", &d.join("big.out"));
    let out = std::fs::read(d.join("big.out")).unwrap();
    let mut want = format!("{}\tfirst\n{}\t", cmds[0], cmds[1]).into_bytes();
    want.extend(std::iter::repeat_n(b'x', 24_000_000));
    want.push(b'\n');
    for i in 1..=3 {
        want.extend(format!("{}\t{i}\n", cmds[2]).into_bytes());
    }
    assert!(
        out == want,
        "output of {} bytes is not the expected {} bytes",
        out.len(),
        want.len()
    );
    assert!(
        peak <= base + 8 * 1024,
        "master peak RSS {peak} KiB holding 24 MB of output, {base} KiB for a small run"
    );
}

/// Tasks in the list of the changed-list test: more than the window
/// (`WINDOW_TASKS`, 4096), so that the master reads the last ones back from the
/// file only after it was changed.
const CHANGED_LINES: u32 = 4200;

/// Runs `args` in `dir` with task 1 (`line 1`) waiting for `dir/go` after making
/// `dir/started`; calls `change` once task 1 started (the whole list indexed and
/// fingerprinted, the first window fed), then lets task 1 end.
fn run_changing(dir: &Path, args: &[&str], change: impl FnOnce()) -> std::process::Output {
    let child = sturdy()
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !dir.join("started").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    change();
    std::fs::write(dir.join("go"), "").unwrap();
    child.wait_with_output().unwrap()
}

/// Asserts that every journaled attempt ran its task's line of `original`.
fn ran_only_original(state: &Path, original: &[String]) -> Vec<Line> {
    let lines = journal(state);
    for l in &lines {
        assert_eq!(
            l.command,
            original[l.task as usize - 1],
            "task {}: ran a command the list did not hold when the run started",
            l.task
        );
    }
    lines
}

#[test]
fn a_task_list_truncated_or_rewritten_under_the_run_runs_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut original = vec!["touch started; while [ ! -e go ]; do sleep 0.02; done".to_owned()];
    original.extend((2..=CHANGED_LINES).map(|n| format!("true orig-{n}")));
    let list = write_tasks(dir.path(), "tasks.txt", &original);
    let args = ["run", "tasks.txt", "-j", "1", "--state-dir", "state"];
    for change in ["truncate", "rewrite"] {
        let _ = std::fs::remove_dir_all(dir.path().join("state"));
        for f in ["started", "go"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let out = run_changing(dir.path(), &args, || {
            let f = std::fs::OpenOptions::new().write(true).open(&list).unwrap();
            if change == "truncate" {
                f.set_len(0).unwrap();
            } else {
                // In place, same length: what an editor that writes over the file does.
                let text = std::fs::read_to_string(&list).unwrap();
                std::fs::write(&list, text.replace("orig", "EDIT")).unwrap();
            }
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{change}: {stderr}");
        assert!(
            stderr.contains("changed in place under the run"),
            "{change}: {stderr}"
        );
        let lines = ran_only_original(&dir.path().join("state"), &original);
        assert!(lines.len() < CHANGED_LINES as usize, "{change}: all ran");

        // Restored, the list resumes: every task succeeds once, under its own command.
        write_tasks(dir.path(), "tasks.txt", &original);
        let mut resume = args.to_vec();
        resume.push("--resume");
        let out = sturdy()
            .args(&resume)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{change}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_exactly_once(
            &ran_only_original(&dir.path().join("state"), &original),
            CHANGED_LINES,
        );
    }
}

/// `--keep-order` that cannot hold a task's output until its turn (`$TMPDIR` missing,
/// as full) says so and exits 1, keeping that task's whole output in `STATE/out`; a
/// task whose turn it is goes straight out, held by nothing.
#[test]
fn keep_order_that_cannot_hold_output_fails_loudly_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cmds = [
        "while [ ! -e go ]; do sleep 0.02; done; head -c 5000000 /dev/zero | tr '\\0' a".to_owned(),
        "head -c 5000000 /dev/zero | tr '\\0' b".to_owned(),
    ];
    write_tasks(d, "tasks.txt", &cmds);
    let child = sturdy()
        .args(["run", "tasks.txt", "-k", "-j", "2", "--state-dir", "state"])
        .env("TMPDIR", d.join("no-such-dir"))
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Task 2 ends (and must be held) before task 1, whose turn comes first.
    while !journal(&d.join("state")).iter().any(|l| l.task == 2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(d.join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--keep-order could not hold the output of task(s) 2 until their turn"),
        "{stderr}"
    );
    // Task 1, in its turn, went out whole, first.
    assert!(out.stdout.len() >= 5_000_000, "{} bytes", out.stdout.len());
    assert!(out.stdout[..5_000_000].iter().all(|&b| b == b'a'));
    let kept = std::fs::read(d.join("state/out/2.1.out")).unwrap();
    assert_eq!(kept.len(), 5_000_000);
    assert!(kept.iter().all(|&b| b == b'b'));
    assert_exactly_once(&journal(&d.join("state")), 2);
}
