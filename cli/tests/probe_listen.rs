//! End to end: `sturdy probe --listen` serves `/metrics`, `/livez` and `/readyz` as
//! Prometheus and Kubernetes expect, and `--watch --json` writes NDJSON.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Kills the child when the test ends, however it ends.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over HTTP/1.1: (status, content type, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, ctype, body.to_owned())
}

#[test]
fn listen_serves_metrics_livez_and_readyz_consistently() {
    let mut child = sturdy()
        .args(["probe", "--listen", "127.0.0.1:0", "--watch", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let child = Killed(child);
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap();
    // Not ready before the first sample; then ready unless critical.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (metrics, ctype) = loop {
        let (status, ctype, body) = get(addr, "/metrics");
        if status == 200 {
            break (body, ctype);
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "no sample within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    // One exposition: each family's TYPE once, every series once.
    let mut types = std::collections::HashSet::new();
    let mut series = std::collections::HashSet::new();
    for l in metrics.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            assert!(types.insert(t.to_owned()), "TYPE twice: {l}");
        } else if !l.starts_with('#') && !l.is_empty() {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().unwrap().is_finite(), "{l}");
            assert!(series.insert(name.to_owned()), "series twice: {l}");
            assert!(!name.contains("=\"\""), "empty label value: {l}");
        }
    }
    promtool_check(&metrics);
    let critical = metrics.contains("sturdy_health_status{status=\"critical\"} 1\n");
    assert!(
        critical || metrics.contains("sturdy_health_status{status=\"critical\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sturdy_memory_effective_total_bytes "),
        "{metrics}"
    );
    let (live, _, body) = get(addr, "/livez");
    assert_eq!((live, body.as_str()), (200, "ok\n"));
    let (ready, _, body) = get(addr, "/readyz");
    // The verdict can change between two samples a second apart: ask until /readyz and
    // /metrics read the same sample's verdict, or the host stays critical/not critical.
    let expect = if critical { 503 } else { 200 };
    if ready != expect {
        let (_, _, again) = get(addr, "/metrics");
        let now_critical = again.contains("sturdy_health_status{status=\"critical\"} 1\n");
        let (ready2, _, body2) = get(addr, "/readyz");
        assert_eq!(ready2, if now_critical { 503 } else { 200 }, "{body2}");
    } else {
        assert!(!body.is_empty());
    }
    let (missing, _, _) = get(addr, "/nothing");
    assert_eq!(missing, 404);
    drop(child);
}

#[test]
fn listen_on_a_taken_address_exits_2_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = sturdy()
        .args(["probe", "--listen", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&addr) && err.contains("--listen"), "{err}");
}

#[test]
fn watch_json_writes_one_object_per_line_and_watch_prometheus_is_refused() {
    let mut child = sturdy()
        .args(["probe", "--json", "--watch", "1s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let _child = Killed(child);
    let mut stamps = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["schema_version"], 1, "{line}");
        assert!(v["report"]["status"].is_string(), "{line}");
        stamps.push(v["timestamp"].as_str().unwrap().to_owned());
    }
    assert!(stamps[0] < stamps[1], "{stamps:?}");
    let out = sturdy()
        .args(["probe", "--prometheus", "--watch", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--watch"));
}
