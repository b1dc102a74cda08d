//! End to end: the checkpoints a run leaves behind are enough to resume it, and a
//! corrupt newest checkpoint is skipped with a warning for the previous one.

mod common;

use common::*;

#[test]
fn resume_from_checkpoints_alone_and_skip_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=30).map(|i| format!("sleep 0.02; echo {i}")).collect();
    let list = write_tasks(dir.path(), "tasks.txt", &lines);
    let state = dir.path().join("state");
    let out = sturdy()
        .args([
            "run",
            "-j",
            "2",
            "--json",
            "--checkpoint-interval",
            "50ms",
            "--keep-checkpoints",
            "50",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let ckdir = state.join("checkpoints/run");
    let mut ckpts: Vec<_> = std::fs::read_dir(&ckdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ckpts.sort();
    assert!(ckpts.len() >= 3, "only {} checkpoints", ckpts.len());

    // Lose the journal: the newest checkpoint alone says everything is done.
    std::fs::rename(state.join("journal.tsv"), dir.path().join("journal.bak")).unwrap();
    let out = sturdy()
        .args(["run", "--json", "--resume", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let s = summary(&out);
    assert_eq!(
        (s["succeeded"].as_u64(), s["attempts"].as_u64()),
        (Some(30), Some(0))
    );

    // Damage the newest: it is skipped with a warning, the one before it is used, and
    // only what that one had not seen finish runs again.
    let mut ckpts: Vec<_> = std::fs::read_dir(&ckdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ckpts.sort();
    let newest = ckpts.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(newest, &bytes).unwrap();
    // Also drop the two checkpoints before it, so the one used predates the end.
    for p in &ckpts[ckpts.len() - 3..ckpts.len() - 1] {
        std::fs::remove_file(p).unwrap();
    }
    std::fs::remove_file(state.join("journal.tsv")).unwrap();
    let out = sturdy()
        .args(["run", "--json", "--resume", "--state-dir"])
        .arg(&state)
        .arg(&list)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: skipping checkpoint"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    let s = summary(&out);
    assert_eq!(s["succeeded"], 30);
    let rerun = s["attempts"].as_u64().unwrap();
    let before = s["succeeded_before"].as_u64().unwrap();
    assert_eq!(rerun + before, 30);
    assert!(rerun < 30, "the older checkpoint recorded nothing");
}
