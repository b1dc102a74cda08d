//! End to end: a quiet attempt's `out/T.A.out`, and the mark it becomes, is a hard link
//! to `STATE/blank.out` (no inode of its own), while an attempt that prints gets files
//! of its own, its output reaches sturdy's stdout and stderr whole, and the blank stays
//! empty.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;

fn meta(p: &Path) -> std::fs::Metadata {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn quiet_attempts_link_the_blank_and_printing_ones_get_files_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = [
        "true",
        "echo out-2",
        "echo err-3 >&2",
        "printf 'a'; printf 'b'; echo c",
        "true",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    write_tasks(dir.path(), "tasks.txt", &lines);
    let out = sturdy()
        .args(["run", "tasks.txt", "-j", "2", "--state-dir", "state"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut printed: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    printed.sort_unstable();
    assert_eq!(printed, ["abc", "out-2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("err-3\n"));

    let state = dir.path().join("state");
    let blank = meta(&state.join("blank.out"));
    assert_eq!(blank.len(), 0, "nothing is ever written through a link");
    let mark = |t: u32| meta(&state.join(format!("out/{t}.1.err")));
    for quiet in [1, 5] {
        assert_eq!(mark(quiet).ino(), blank.ino(), "task {quiet}'s mark");
    }
    // The blank, and the marks of the two quiet tasks.
    assert_eq!(blank.nlink(), 3);
    for printing in [2, 3, 4] {
        assert_ne!(mark(printing).ino(), blank.ino(), "task {printing}'s mark");
    }
    // The mark keeps the tail of stderr, and stdout's file was emptied.
    assert_eq!(
        std::fs::read(state.join("out/3.1.err")).unwrap(),
        b"err-3\n"
    );
    assert_eq!(mark(2).len(), 0);
    let mut names: Vec<String> = std::fs::read_dir(state.join("out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["1.1.err", "2.1.err", "3.1.err", "4.1.err", "5.1.err"]
    );
    assert_eq!(journal(&state).len(), 5);
}

/// Bytes written into `STATE/blank.out` by hand (through the shared inode) are no quiet
/// task's output: a quiet task that ends after them prints nothing, and the blank is
/// empty again.
#[test]
fn bytes_written_into_the_blank_are_no_quiet_task_s_output() {
    let dir = tempfile::tempdir().unwrap();
    let lines = vec![
        "touch started; while [ ! -e go ]; do sleep 0.02; done".to_owned(),
        "true".to_owned(),
    ];
    write_tasks(dir.path(), "tasks.txt", &lines);
    let child = sturdy()
        .args(["run", "tasks.txt", "-j", "1", "--state-dir", "state"])
        .args(["--results", "res"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while !dir.path().join("started").exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let state = dir.path().join("state");
    // Task 1 is quiet so far: its `.out` is the blank.
    assert_eq!(
        meta(&state.join("out/1.1.out")).ino(),
        meta(&state.join("blank.out")).ino()
    );
    std::fs::write(state.join("blank.out"), "GARBAGE\n").unwrap();
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [&lines[0], &lines[1]] {
        let saved = std::fs::read(dir.path().join("res/1").join(t).join("stdout")).unwrap();
        assert_eq!(saved, b"", "{t}: saved stdout");
    }
    assert_eq!(meta(&state.join("blank.out")).len(), 0);
    assert_eq!(journal(&state).len(), 2);
}
