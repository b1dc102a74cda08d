//! Helpers for the end-to-end tests: run the real `sturdy` binary on real files.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sturdy` binary under test.
pub fn sturdy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sturdy"))
}

/// Writes a task list and returns its path.
pub fn write_tasks(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub task: u32,
    pub attempt: u32,
    pub worker: u32,
    pub exit: String,
    pub signal: String,
    pub kind: String,
    pub next: String,
    pub command: String,
}

/// Reads a journal's attempt lines.
pub fn journal(state: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(state.join("journal.tsv")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("task\t") && !l.is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(12, '\t').collect();
            assert_eq!(c.len(), 12, "malformed journal line {l:?}");
            Line {
                task: c[0].parse().unwrap(),
                attempt: c[1].parse().unwrap(),
                worker: c[2].parse().unwrap(),
                exit: c[7].into(),
                signal: c[8].into(),
                kind: c[9].into(),
                next: c[10].into(),
                command: c[11].into(),
            }
        })
        .collect()
}

/// `done` lines per task.
pub fn successes(lines: &[Line]) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for l in lines.iter().filter(|l| l.next == "done") {
        *m.entry(l.task).or_insert(0) += 1;
    }
    m
}

/// Asserts that each of tasks 1..=n has exactly one success in the journal.
pub fn assert_exactly_once(lines: &[Line], n: u32) {
    let m = successes(lines);
    for t in 1..=n {
        assert_eq!(
            m.get(&t).copied().unwrap_or(0),
            1,
            "task {t}: successes in the journal"
        );
    }
    assert_eq!(m.len(), n as usize, "successes for tasks outside 1..={n}");
}

/// The `--json` summary printed on stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the JSON summary ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Pids of the processes whose parent is `parent` and whose command name is `comm`.
pub fn children(parent: u32, comm: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if name == comm
            && rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
            && rest[0] != "Z"
        {
            out.push(pid);
        }
    }
    out
}

/// Whether a process is alive (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|i| !stat[i + 2..].starts_with('Z')),
        Err(_) => false,
    }
}

/// Asserts that `promtool check metrics` accepts `text` (promtool comes with Debian's
/// `prometheus`; a missing promtool fails the test with the install command).
pub fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed ({e}): apt-get update && apt-get install -y prometheus")
        });
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET path` on `addr` over plain HTTP/1.1: (status, body).
pub fn http_get(addr: impl std::fmt::Display, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr = addr.to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// The value of the series `name` (labels included) in a Prometheus text exposition.
pub fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
