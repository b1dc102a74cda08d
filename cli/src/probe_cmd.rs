//! `sturdy probe`: the host health report from `sturdy-probe`, judged by the core's
//! rules (default thresholds), as a table, JSON or the Prometheus text format, once or
//! every `--watch` interval, or served over HTTP with `--listen`.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sturdy_core::health::{HealthStatus, Thresholds};
use sturdy_probe::{Document, MIN_CPU_INTERVAL, Probe, SystemHealth};

use crate::error::CliError;
use crate::options::ProbeArgs;

/// The sampling interval of `--listen` without `--watch`.
const DEFAULT_LISTEN_INTERVAL: Duration = Duration::from_secs(5);

/// Runs `sturdy probe`; the exit code is 0 unless the host is critical (then 1).
///
/// # Errors
/// Writing to stdout failed; with `--listen`, the address cannot be bound (exit 2).
pub(crate) fn run(args: &ProbeArgs) -> Result<i32, CliError> {
    if let Some(addr) = args.listen {
        return serve(addr, args.watch.unwrap_or(DEFAULT_LISTEN_INTERVAL));
    }
    let thresholds = Thresholds::default();
    let mut probe = Probe::new();
    // CPU use is a difference of two readings: take the first one now.
    let _ = probe.sample();
    std::thread::sleep(MIN_CPU_INTERVAL);
    loop {
        let health = probe.health(&thresholds);
        let text = if args.json {
            let doc = Document::new(&health, SystemTime::now());
            if args.watch.is_some() {
                // NDJSON: one object per line.
                doc.to_line() + "\n"
            } else {
                sturdy_probe::json(&doc) + "\n"
            }
        } else if args.prometheus {
            sturdy_probe::prometheus_health(&health)
        } else {
            health.to_string()
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::runtime(format!("cannot write the report: {e}")))?;
        match args.watch {
            Some(interval) => std::thread::sleep(interval),
            None => return Ok(i32::from(health.status() == HealthStatus::Critical)),
        }
    }
}

/// What the sampling thread last produced, shared with the HTTP handlers.
struct Latest {
    health: Option<SystemHealth>,
    /// When the sampling loop last finished a sample.
    beat: Instant,
}

#[derive(Clone)]
struct Shared {
    latest: Arc<Mutex<Latest>>,
    interval: Duration,
}

impl Shared {
    fn read<R>(&self, f: impl FnOnce(&Latest) -> R) -> R {
        f(&self.latest.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Serves `/metrics`, `/livez` and `/readyz` on `addr`, sampling every `interval` on a
/// thread of its own (a probe read that blocks, such as a hung GPU driver, stalls the
/// sampling, which `/livez` reports, and never the server).
fn serve(addr: std::net::SocketAddr, interval: Duration) -> Result<i32, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the HTTP server: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            CliError::input(format!(
                "invalid value {addr} for '--listen': cannot listen there: {e}"
            ))
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::runtime(format!("cannot read the listening address: {e}")))?;
    let shared = Shared {
        latest: Arc::new(Mutex::new(Latest {
            health: None,
            beat: Instant::now(),
        })),
        interval,
    };
    let sampler = shared.latest.clone();
    std::thread::Builder::new()
        .name("sturdy-probe-sampler".into())
        .spawn(move || sample_forever(&sampler, interval))
        .map_err(|e| CliError::runtime(format!("cannot start the sampling thread: {e}")))?;
    eprintln!("sturdy probe: serving http://{bound}/metrics, /livez and /readyz");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(shared);
    runtime
        .block_on(async { axum::serve(listener, app).await })
        .map_err(|e| CliError::runtime(format!("the HTTP server on {bound} failed: {e}")))?;
    Ok(0)
}

fn sample_forever(latest: &Mutex<Latest>, interval: Duration) {
    let thresholds = Thresholds::default();
    let mut probe = Probe::new();
    let _ = probe.sample();
    std::thread::sleep(MIN_CPU_INTERVAL);
    loop {
        let health = probe.health(&thresholds);
        {
            let mut l = latest.lock().unwrap_or_else(PoisonError::into_inner);
            l.health = Some(health);
            l.beat = Instant::now();
        }
        std::thread::sleep(interval);
    }
}

/// The Prometheus text of the latest sample: one exposition per scrape.
async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    match s.read(|l| l.health.as_ref().map(sturdy_probe::prometheus_health)) {
        Some(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, sturdy_probe::PROMETHEUS_CONTENT_TYPE)],
            text,
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no sample yet\n".to_owned(),
        ),
    }
}

/// 200 while the sampling loop finished a sample within three intervals (plus the
/// first CPU gap), 503 with the silence otherwise.
async fn livez(State(s): State<Shared>) -> (StatusCode, String) {
    let silence = s.read(|l| l.beat.elapsed());
    let limit = s.interval * 3 + MIN_CPU_INTERVAL + Duration::from_secs(1);
    if silence <= limit {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the sampling loop is stalled: no sample for {:.1}s (limit {:.1}s)\n",
                silence.as_secs_f64(),
                limit.as_secs_f64()
            ),
        )
    }
}

/// 503 while the host is critical (with the verdict) or not sampled yet, else 200.
async fn readyz(State(s): State<Shared>) -> (StatusCode, String) {
    s.read(|l| match &l.health {
        None => (StatusCode::SERVICE_UNAVAILABLE, "no sample yet\n".into()),
        Some(h) if h.status() == HealthStatus::Critical => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", h.report))
        }
        Some(h) => (StatusCode::OK, format!("{}\n", h.report)),
    })
}
