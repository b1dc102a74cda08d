//! The `server_metrics` example served on 127.0.0.1: its route works through the
//! breaker, retry and budget, and its `/metrics` is valid for `promtool check metrics`
//! with the running totals it should hold.

use std::io::Write;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../examples/server_metrics.rs"]
#[allow(dead_code)]
mod server_metrics;

/// `GET path` over HTTP/1.0: (status line, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn the_example_serves_its_route_and_valid_metrics() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = server_metrics::app().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The dependency fails every third call; each failure is retried once and succeeds.
    for _ in 0..4 {
        let (status, body) = get(addr, "/inventory").await;
        assert!(status.ends_with("200 OK"), "{status}");
        assert!(body.ends_with("in stock\n"), "{body}");
    }
    let (status, text) = get(addr, "/metrics").await;
    assert!(status.ends_with("200 OK"), "{status}");
    // Calls 0, 1 succeed; 2 fails and its retry (3) succeeds; 4 succeeds; 5 fails, 6 succeeds.
    for line in [
        "sturdy_breaker_calls_total{breaker=\"inventory\",outcome=\"success\"} 4",
        "sturdy_breaker_calls_total{breaker=\"inventory\",outcome=\"failure\"} 1",
        "sturdy_breaker_state{breaker=\"inventory\",state=\"closed\"} 1",
        "sturdy_breaker_state{breaker=\"inventory\",state=\"open\"} 0",
        "sturdy_breaker_rejections_total{breaker=\"inventory\"} 0",
        "sturdy_retry_retries_total{retry=\"inventory\"} 1",
        "sturdy_retry_successes_total{retry=\"inventory\"} 4",
        "sturdy_retry_delay_seconds_total{retry=\"inventory\"} 0.05",
        "sturdy_retry_give_ups_total{retry=\"inventory\",reason=\"budget_exhausted\"} 0",
        "sturdy_retry_budget_decisions_total{budget=\"inventory\",decision=\"allowed\"} 1",
        "# TYPE sturdy_retry_delay_seconds_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("=\"\""), "an empty label value in\n{text}");
    promtool_check(&text);
}

/// Runs `promtool check metrics` on `text`; fails, saying how to install it, when
/// promtool is missing.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is needed to check the exposition ({e}): install it with \
             `apt-get install -y prometheus` (Debian, Ubuntu) or from \
             https://prometheus.io/download/"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
