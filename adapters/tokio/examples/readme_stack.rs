//! The README's first stack for a server: breaker + retry + budget + metrics on an
//! axum route (feature `prometheus`). `cargo run -p sturdy-tokio --features prometheus
//! --example readme_stack`, then `curl 127.0.0.1:3000/stock` and `/metrics`.
use axum::{Router, http::StatusCode, routing::get};
use std::{sync::Arc, time::Duration};
use sturdy_core::{FailureKind::Network, breaker::*, retry::*};
use sturdy_tokio::prometheus::{SturdyCollector, encode_text};
use sturdy_tokio::{Breaker, RetryBudget, RetryMetrics, TracingObserver, retrying};

/// The dependency the route calls.
async fn fetch_stock() -> Result<u32, std::io::Error> {
    Ok(42)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = ConsecutiveConfig::new(5, Duration::from_secs(10), 1)?; // 5 failures: open 10 s
    let breaker = Breaker::new(ConsecutiveBreaker::new(config)).named("stock");
    let budget = RetryBudget::new(RetryBudgetConfig::new(200, 10, 100)?); // 20 % + 10/s
    let policy = fixed_policy(3, Duration::from_millis(50))?;
    let retries = RetryMetrics::new("stock");
    let mut registry = prometheus_client::registry::Registry::default();
    let sturdy = SturdyCollector::new().breaker(&breaker).retry(&retries);
    sturdy.budget("stock", &budget).register(&mut registry);
    let stock = get(move || async move {
        let retry = retrying(&policy)
            .budget(&budget)
            .observer((TracingObserver, retries));
        let out = retry.run(breaker.classifier(Network), || breaker.call(fetch_stock()));
        out.await
            .map(|n| n.to_string())
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
    });
    let registry = Arc::new(registry);
    let metrics = get(move || async move { encode_text(&registry) });
    let app = Router::new()
        .route("/stock", stock)
        .route("/metrics", metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    Ok(axum::serve(listener, app).await?)
}
