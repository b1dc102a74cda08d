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

/// `GET path` over HTTP/1.0 to `addr`: (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// `--listen` serves /metrics, /livez and /readyz, consistent with each other.
#[test]
fn probe_listen_serves_metrics_livez_and_readyz() {
    use std::io::BufRead;
    let mut child = sturdy()
        .args(["probe", "--listen", "127.0.0.1:0", "--watch", "1s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    // Alive from the start; ready (or not) once the first sample is in.
    assert_eq!(http_get(&addr, "/livez").0, 200);
    let metrics = loop {
        match http_get(&addr, "/metrics") {
            (503, body) => {
                assert_eq!(body, "not sampled yet\n");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            (code, body) => {
                assert_eq!(code, 200, "{body}");
                break body;
            }
        }
    };
    assert!(metrics.contains("sturdy_health_status{"), "{metrics}");
    let critical = metrics
        .lines()
        .any(|l| l == r#"sturdy_health_status{status="critical"} 1"#);
    let (ready, body) = http_get(&addr, "/readyz");
    assert_eq!(ready, if critical { 503 } else { 200 }, "{body}");
    assert_eq!(http_get(&addr, "/livez").0, 200);
    assert_eq!(http_get(&addr, "/nope").0, 404);
    child.kill().unwrap();
    let _ = child.wait();
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
