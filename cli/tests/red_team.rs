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
