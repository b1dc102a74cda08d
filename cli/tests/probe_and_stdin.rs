//! End to end: `sturdy probe` on the real host, and a task list read from stdin.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn probe_prints_a_judged_report_in_each_format() {
    let out = sturdy().args(["probe", "--json"]).output().unwrap();
    // 0 unless the host is critical (a busy CI machine can be).
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = v["report"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(v["schema_version"], 2, "{v}");
    let ts = v["timestamp"].as_str().unwrap_or_default();
    assert!(ts.len() == 24 && ts.ends_with('Z'), "RFC 3339 UTC ms: {ts}");
    assert!(
        ["healthy", "degraded", "critical", "unknown"].contains(&status.as_str()),
        "{v}"
    );
    assert_eq!(out.status.code() == Some(1), status == "critical");
    let out = sturdy().args(["probe", "--prometheus"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sturdy_health_status"), "{text}");
    let out = sturdy().arg("probe").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("STATUS "), "{text}");
    let out = sturdy()
        .args(["probe", "--json", "--prometheus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--watch --json` writes one JSON object per line (NDJSON), each stamped.
#[test]
fn probe_watch_json_is_ndjson() {
    use std::io::BufRead;
    let mut child = sturdy()
        .args(["probe", "--watch", "1s", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stamps = Vec::new();
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("one object per line");
        assert_eq!(v["schema_version"], 2, "{v}");
        stamps.push(v["timestamp"].as_str().unwrap().to_owned());
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(stamps[0] < stamps[1], "{stamps:?}");
}

#[test]
fn tasks_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sturdy()
        .args(["run", "-", "-j", "2", "--json", "--state-dir", "st"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"# from a pipe\necho \"$STURDY_TASK of worker $STURDY_WORKER\"\n\necho two\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)["succeeded"], 2);
    let first = std::fs::read_to_string(dir.path().join("st/out/1.1.out")).unwrap();
    assert!(first.starts_with("1 of worker "), "{first}");
    let second = std::fs::read_to_string(dir.path().join("st/out/2.1.out")).unwrap();
    assert_eq!(second, "two\n");
}

/// A task list saved with a UTF-8 byte-order mark (as Notepad does) runs its first
/// command, from a file and from stdin; the mark used to stay in the command (exit 127).
#[test]
fn a_byte_order_mark_does_not_break_the_first_command() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("bom.txt");
    std::fs::write(&list, "\u{feff}echo first > effect-file\r\necho second\r\n").unwrap();
    let out = sturdy()
        .args(["run", "-j", "1", "--json", "--state-dir", "st"])
        .arg(&list)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(summary(&out)["succeeded"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("effect-file")).unwrap(),
        "first\n"
    );
    let lines = journal(&dir.path().join("st"));
    assert_eq!(lines[0].command, "echo first > effect-file");

    let mut child = sturdy()
        .args(["run", "-", "-j", "1", "--json", "--state-dir", "st2"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all("\u{feff}echo piped > effect-stdin\n".as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("effect-stdin")).unwrap(),
        "piped\n"
    );
}
