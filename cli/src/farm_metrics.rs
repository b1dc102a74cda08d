//! `sturdy run --metrics-listen ADDR`: the run's counters over HTTP while it runs.
//!
//! `/metrics` is the Prometheus text format (`prometheus-client`'s registry, encoded as
//! text 0.0.4), `/livez` says whether the master's loop still ticks (its state
//! directory watchdog runs every heartbeat interval), `/readyz` whether it still
//! dispatches. Families (counters end in `_total`):
//! - `sturdy_farm_tasks` (gauge): tasks in this run's list (those finished by earlier
//!   runs included);
//! - `sturdy_farm_tasks_succeeded_total`, `sturdy_farm_tasks_failed_total` (failed for
//!   good): tasks this master ended;
//! - `sturdy_farm_attempts_total{verdict}`: attempts this master journaled, by what
//!   they led to (`done`, `retry`, `gave_up`, `stale`, `interrupted`);
//! - `sturdy_farm_attempts_running` (gauge);
//! - `sturdy_farm_worker_restarts_total`, `sturdy_farm_breaker_opened_total`;
//! - `sturdy_farm_storage_fault` (gauge, 1 once the state directory failed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::CliError;

/// The label of `sturdy_farm_attempts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

/// The run's counters; cheap to clone (every handle is shared).
#[derive(Clone)]
pub(crate) struct FarmMetrics {
    registry: Arc<Registry>,
    tasks: Gauge,
    succeeded: Counter,
    failed: Counter,
    attempts: Family<VerdictLabel, Counter>,
    running: Gauge,
    restarts: Counter,
    breaker_opened: Counter,
    storage_fault: Gauge,
    /// Milliseconds since `origin` at the master loop's last tick.
    last_tick_ms: Arc<AtomicU64>,
    origin: Instant,
    dispatching: Arc<AtomicBool>,
    /// How long `/livez` tolerates no tick.
    live_limit: Duration,
}

impl FarmMetrics {
    /// Counters for a run of `tasks` tasks whose loop ticks every `tick`.
    pub(crate) fn new(tasks: u64, tick: Duration) -> Self {
        let mut registry = Registry::default();
        let m = Self {
            registry: Arc::new(Registry::default()),
            tasks: Gauge::default(),
            succeeded: Counter::default(),
            failed: Counter::default(),
            attempts: Family::default(),
            running: Gauge::default(),
            restarts: Counter::default(),
            breaker_opened: Counter::default(),
            storage_fault: Gauge::default(),
            last_tick_ms: Arc::new(AtomicU64::new(0)),
            origin: Instant::now(),
            dispatching: Arc::new(AtomicBool::new(true)),
            live_limit: tick * 3 + Duration::from_secs(1),
        };
        registry.register(
            "sturdy_farm_tasks",
            "Tasks in this run's list",
            m.tasks.clone(),
        );
        registry.register(
            "sturdy_farm_tasks_succeeded",
            "Tasks this master saw succeed",
            m.succeeded.clone(),
        );
        registry.register(
            "sturdy_farm_tasks_failed",
            "Tasks this master saw fail for good",
            m.failed.clone(),
        );
        registry.register(
            "sturdy_farm_attempts",
            "Attempts journaled, by what they led to",
            m.attempts.clone(),
        );
        registry.register(
            "sturdy_farm_attempts_running",
            "Attempts running now",
            m.running.clone(),
        );
        registry.register(
            "sturdy_farm_worker_restarts",
            "Worker processes restarted after they died",
            m.restarts.clone(),
        );
        registry.register(
            "sturdy_farm_breaker_opened",
            "Times a worker's circuit breaker opened",
            m.breaker_opened.clone(),
        );
        registry.register(
            "sturdy_farm_storage_fault",
            "1 once the state directory failed (full, deleted, unwritable)",
            m.storage_fault.clone(),
        );
        m.tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
        Self {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// An attempt started.
    pub(crate) fn started(&self) {
        self.running.inc();
    }

    /// An attempt ended, journaled as `verdict`.
    pub(crate) fn ended(&self, verdict: &'static str) {
        self.running.dec();
        self.attempts.get_or_create(&VerdictLabel { verdict }).inc();
    }

    /// An attempt was journaled as `verdict` (the coordinator's projection; the running
    /// gauge is set apart, [`FarmMetrics::set_running`]).
    pub(crate) fn journaled(&self, verdict: &'static str) {
        self.attempts.get_or_create(&VerdictLabel { verdict }).inc();
    }

    /// Attempts running now (the coordinator's projection).
    pub(crate) fn set_running(&self, running: u64) {
        self.running.set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// The tasks that succeeded and failed for good so far (the coordinator's
    /// projection): the counters move up to them (a reopened task's earlier failure
    /// stays counted).
    pub(crate) fn tasks_ended_so_far(&self, succeeded: u64, failed: u64) {
        let up = |c: &Counter, to: u64| {
            let now = c.get();
            if to > now {
                c.inc_by(to - now);
            }
        };
        up(&self.succeeded, succeeded);
        up(&self.failed, failed);
    }

    /// A task ended: succeeded, or failed for good.
    pub(crate) fn task_ended(&self, succeeded: bool) {
        if succeeded {
            self.succeeded.inc();
        } else {
            self.failed.inc();
        }
    }

    /// A worker is being restarted.
    pub(crate) fn worker_restarted(&self) {
        self.restarts.inc();
    }

    /// A worker's breaker opened.
    pub(crate) fn breaker_opened(&self) {
        self.breaker_opened.inc();
    }

    /// The master's loop is alive (called every heartbeat interval).
    pub(crate) fn tick(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_tick_ms.store(ms, Ordering::Relaxed);
    }

    /// The run stopped dispatching (drain, halt, storage fault, end).
    pub(crate) fn stopped_dispatching(&self, storage_fault: bool) {
        self.dispatching.store(false, Ordering::Relaxed);
        if storage_fault {
            self.storage_fault.set(1);
        }
    }

    /// Serves `/metrics`, `/livez` and `/readyz` on `addr` from the current tokio
    /// runtime; returns the bound address.
    ///
    /// # Errors
    /// (exit code 2) `addr` cannot be bound.
    pub(crate) async fn serve(&self, addr: SocketAddr) -> Result<SocketAddr, CliError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            CliError::input(format!(
                "invalid value {addr} for '--metrics-listen': cannot listen there: {e}"
            ))
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::runtime(format!("cannot read the listening address: {e}")))?;
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(livez))
            .route("/readyz", get(readyz))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(bound)
    }
}

async fn metrics(State(m): State<FarmMetrics>) -> impl IntoResponse {
    let mut body = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &m.registry);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn livez(State(m): State<FarmMetrics>) -> (StatusCode, String) {
    let now = m.origin.elapsed();
    let last = Duration::from_millis(m.last_tick_ms.load(Ordering::Relaxed));
    let silence = now.saturating_sub(last);
    if silence <= m.live_limit {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the master's loop has not ticked for {:.1}s (limit {:.1}s)\n",
                silence.as_secs_f64(),
                m.live_limit.as_secs_f64()
            ),
        )
    }
}

async fn readyz(State(m): State<FarmMetrics>) -> (StatusCode, &'static str) {
    if m.dispatching.load(Ordering::Relaxed) {
        (StatusCode::OK, "dispatching\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not dispatching: draining, halted or stopped\n",
        )
    }
}
