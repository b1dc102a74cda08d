//! `sturdy probe --listen ADDR`: the host health report served over HTTP, the way
//! Prometheus scrapes and Kubernetes probes expect.
//!
//! - `GET /metrics`: the latest sample and verdict in the Prometheus text format (one
//!   exposition per scrape; nothing is sampled by the scrape itself);
//! - `GET /livez`: 200 while the sampling loop is alive (its latest sample is at most
//!   three intervals old), 503 otherwise;
//! - `GET /readyz`: 200 unless the host is critical (503), or not sampled yet (503).
//!
//! One thread samples; each connection gets a short-lived thread that answers one
//! request and closes (HTTP/1.0 semantics, `Connection: close`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sturdy_core::health::{HealthStatus, Thresholds};
use sturdy_probe::{MIN_CPU_INTERVAL, Probe, SystemHealth};

use crate::error::CliError;

/// The sampling interval when `--watch` is not given.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The latest sample and when it was taken.
type Latest = Arc<Mutex<Option<(SystemHealth, Instant)>>>;

/// Serves until the process is stopped.
///
/// # Errors
/// The address cannot be bound.
pub(crate) fn serve(addr: SocketAddr, interval: Duration) -> Result<i32, CliError> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| CliError::runtime(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::runtime(format!("cannot read the bound address: {e}")))?;
    eprintln!("sturdy probe: listening on http://{local} (/metrics, /livez, /readyz)");
    let latest: Latest = Arc::default();
    let writer = latest.clone();
    std::thread::spawn(move || {
        let thresholds = Thresholds::default();
        let mut probe = Probe::new();
        // CPU use is a difference of two readings: take the first one now.
        let _ = probe.sample();
        std::thread::sleep(MIN_CPU_INTERVAL);
        loop {
            let health = probe.health(&thresholds);
            *writer.lock().unwrap_or_else(PoisonError::into_inner) = Some((health, Instant::now()));
            std::thread::sleep(interval);
        }
    });
    for stream in listener.incoming().flatten() {
        let latest = latest.clone();
        std::thread::spawn(move || answer(stream, &latest, interval));
    }
    Ok(0)
}

/// Answers one request on `stream`; a client that hangs up early is ignored.
fn answer(mut stream: TcpStream, latest: &Latest, interval: Duration) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let snapshot = latest
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let (status, content_type, body) = respond(method, path, snapshot.as_ref(), interval);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
}

/// The status line, content type and body for `method path`.
fn respond(
    method: &str,
    path: &str,
    latest: Option<&(SystemHealth, Instant)>,
    interval: Duration,
) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match (path, latest) {
        ("/metrics", Some((health, _))) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            sturdy_probe::prometheus_health(health),
        ),
        ("/metrics" | "/readyz", None) => {
            ("503 Service Unavailable", TEXT, "not sampled yet\n".into())
        }
        ("/livez", None) => ("200 OK", TEXT, "starting\n".into()),
        ("/livez", Some((_, at))) if at.elapsed() <= interval * 3 + MIN_CPU_INTERVAL => {
            ("200 OK", TEXT, "ok\n".into())
        }
        ("/livez", Some((_, at))) => (
            "503 Service Unavailable",
            TEXT,
            format!("last sample {} ms ago\n", at.elapsed().as_millis()),
        ),
        ("/readyz", Some((health, _))) if health.status() == HealthStatus::Critical => (
            "503 Service Unavailable",
            TEXT,
            format!("critical\n{}", health.report),
        ),
        ("/readyz", Some(_)) => ("200 OK", TEXT, "ok\n".into()),
        _ => (
            "404 Not Found",
            TEXT,
            "try /metrics, /livez or /readyz\n".into(),
        ),
    }
}
