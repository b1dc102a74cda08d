//! A server's first stack: an axum route that calls a flaky dependency through a
//! circuit breaker, a retry with a shared budget, and `/metrics` for Prometheus.
//!
//! ```sh
//! cargo run -p sturdy-tokio --example server_metrics -- 127.0.0.1:3000
//! curl 127.0.0.1:3000/inventory; curl 127.0.0.1:3000/metrics
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use prometheus_client::registry::Registry;
use sturdy_core::FailureKind;
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
use sturdy_core::retry::{RetryBudgetConfig, RetryPolicy};
use sturdy_shared::prometheus::SturdyCollector;
use sturdy_tokio::{
    Breaker, BreakerError, Classified, RetryBudget, RetryMetrics, TracingObserver, retrying,
};

/// What the route handlers share.
struct App {
    breaker: Breaker,
    policy: RetryPolicy,
    budget: RetryBudget,
    retries: RetryMetrics,
    registry: Registry,
    calls: AtomicU64,
}

/// The dependency: every third call fails.
async fn fetch_stock(calls: &AtomicU64) -> Result<u32, std::io::Error> {
    match calls.fetch_add(1, Ordering::Relaxed) % 3 {
        2 => Err(std::io::Error::other("upstream reset")),
        n => Ok(40 + n as u32),
    }
}

async fn inventory(State(app): State<Arc<App>>) -> Result<String, StatusCode> {
    let b = &app.breaker;
    retrying(&app.policy)
        .budget(&app.budget)
        .observer((TracingObserver, app.retries.clone()))
        .run(
            |e: &BreakerError<std::io::Error>| match e {
                BreakerError::Rejected(r) => Classified::rejected(b.wait_for(r)),
                BreakerError::Failed(_) => FailureKind::Network.into(),
            },
            || b.call(fetch_stock(&app.calls)),
        )
        .await
        .map(|n| format!("{n} in stock\n"))
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

async fn metrics(State(app): State<Arc<App>>) -> ([(header::HeaderName, &'static str); 1], String) {
    let mut body = String::new();
    // Writing into a String cannot fail.
    // The Prometheus text format (what `promtool check metrics` and every scraper read).
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &app.registry);
    let ct = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, ct)], body)
}

/// The app: server-sized breaker and retry settings, one budget, one registry.
pub(crate) fn app() -> Result<Router, sturdy_core::ConfigError> {
    let breaker = Breaker::new(ConsecutiveBreaker::new(ConsecutiveConfig::new(
        5,
        Duration::from_secs(10),
        1,
    )?))
    .named("inventory");
    let policy = sturdy_core::retry::fixed_policy(3, Duration::from_millis(50))?
        .with_max_elapsed(Duration::from_secs(2))?;
    let budget = RetryBudget::new(RetryBudgetConfig::new(200, 10, 100)?);
    let retries = RetryMetrics::new("inventory");
    let mut registry = Registry::default();
    SturdyCollector::new()
        .breaker(&breaker)
        .retry(&retries)
        .budget("inventory", &budget)
        .register(&mut registry);
    let app = Arc::new(App {
        breaker,
        policy,
        budget,
        retries,
        registry,
        calls: AtomicU64::new(0),
    });
    Ok(Router::new()
        .route("/inventory", get(inventory))
        .route("/metrics", get(metrics))
        .with_state(app))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app()?).await?;
    Ok(())
}
