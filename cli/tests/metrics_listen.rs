//! End to end: `sturdy run --metrics-listen` serves the run's counters while it runs,
//! in a format promtool accepts, with `/livez` and `/readyz` as Kubernetes expects.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn the_run_serves_its_counters_live_and_reports_draining_on_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (1..=6).map(|_| "sleep 0.1".to_owned()).collect();
    lines.push("exit 3".into());
    lines.extend((1..=4).map(|_| "sleep 3".to_owned()));
    let list = write_tasks(dir.path(), "tasks.txt", &lines);
    let mut child = sturdy()
        .args([
            "run",
            "--workers",
            "2",
            "--max-attempts",
            "1",
            "--metrics-listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg(&list)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no address printed");
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    // Drain stderr in the background so that the master never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    // The seven short tasks end (six successes, one failure for good) while the long
    // ones run.
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200);
        let ended = series(&text, "sturdy_farm_tasks_succeeded_total").unwrap_or(0.0)
            + series(&text, "sturdy_farm_tasks_failed_total").unwrap_or(0.0);
        if ended >= 7.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    promtool_check(&text);
    assert_eq!(series(&text, "sturdy_farm_tasks"), Some(11.0), "{text}");
    assert_eq!(
        series(&text, "sturdy_farm_tasks_succeeded_total"),
        Some(6.0)
    );
    assert_eq!(series(&text, "sturdy_farm_tasks_failed_total"), Some(1.0));
    assert_eq!(
        series(&text, "sturdy_farm_attempts_total{verdict=\"gave_up\"}"),
        Some(1.0)
    );
    assert_eq!(series(&text, "sturdy_farm_storage_fault"), Some(0.0));
    assert_eq!(http_get(addr, "/livez"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(addr, "/readyz").0, 200);
    // The first SIGINT drains: no new task; /readyz says so while the running ones end.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(addr, "/readyz").0 != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 200 while draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "interrupted");
}

#[test]
fn a_taken_metrics_address_exits_2_naming_it_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let list = write_tasks(
        dir.path(),
        "tasks.txt",
        &[format!("echo ran >> {}", fx.display())],
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = sturdy()
        .args(["run", "--metrics-listen", &addr, "--state-dir"])
        .arg(dir.path().join("state"))
        .arg(&list)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&addr) && err.contains("--metrics-listen"),
        "{err}"
    );
    assert!(!fx.exists(), "nothing ran");
}
