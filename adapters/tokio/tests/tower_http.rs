//! The tower layers in a real HTTP stack: an axum server on 127.0.0.1 whose handler
//! fails on command, called through a hyper client wrapped in the layers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, State};
use sturdy_core::retry::{GiveUpReason, fixed_policy};
use sturdy_tokio::{Breaker, BreakerError, CircuitBreakerLayer, HttpStatus, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

/// What the server does: count hits; answer 503 while `down`, or for the next
/// `fail_next` requests; 200 otherwise.
#[derive(Default)]
struct Upstream {
    hits: AtomicU32,
    down: AtomicBool,
    fail_next: AtomicU32,
}

async fn handler(AxumState(up): AxumState<Arc<Upstream>>) -> (StatusCode, &'static str) {
    up.hits.fetch_add(1, Ordering::SeqCst);
    let transient = up
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if up.down.load(Ordering::SeqCst) || transient {
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn serve() -> (SocketAddr, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let app = Router::new()
        .route("/", get(handler))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, up)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get_req(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn breaker_layer_opens_rejects_fast_probes_and_closes() {
    let (addr, up) = serve().await;
    let breaker = Breaker::new(ConsecutiveBreaker::new(
        ConsecutiveConfig::new(3, Duration::from_millis(200), 1).unwrap(),
    ))
    .named("upstream");
    let mut svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify(HttpStatus))
        .service(client());

    // Healthy: passes.
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Down: three 503s open the breaker.
    up.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(get_req(addr))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
    }
    assert!(matches!(breaker.state(), State::Open { .. }));
    assert_eq!(up.hits.load(Ordering::SeqCst), 4);

    // Open: rejected without reaching the server.
    for _ in 0..5 {
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(get_req(addr))
            .await
            .unwrap_err();
        assert!(matches!(err, BreakerError::Rejected(_)), "{err}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 4);

    // After the open period one probe goes through; the server is still down, so the
    // breaker reopens.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(matches!(breaker.state(), State::Open { .. }));
    assert_eq!(up.hits.load(Ordering::SeqCst), 5);

    // The server recovers; the next probe closes the breaker.
    up.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(breaker.state(), State::Closed);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.hits.load(Ordering::SeqCst), 7);
}

#[tokio::test]
async fn retry_layer_recovers_a_transient_failure() {
    let (addr, up) = serve().await;
    let policy = fixed_policy(4, Duration::from_millis(20)).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy).classify(HttpStatus))
        .service(client());

    // Two 503s, then 200: the caller sees the 200 after 3 hits.
    up.fail_next.store(2, Ordering::SeqCst);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.hits.load(Ordering::SeqCst), 3);

    // Down for good: 4 attempts, then the last 503 is returned as the response.
    up.down.store(true, Ordering::SeqCst);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(up.hits.load(Ordering::SeqCst), 7);

    // A transport error (nothing listens there) is retried too and returned as an
    // error with the attempt count.
    let dead: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(dead))
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 4);
    assert_eq!(
        err.reason(),
        GiveUpReason::AttemptsExhausted { attempts: 4 }
    );
}

#[tokio::test]
async fn breaker_over_retry_in_one_stack() {
    let (addr, up) = serve().await;
    let breaker = Breaker::new(ConsecutiveBreaker::new(
        ConsecutiveConfig::new(2, Duration::from_secs(60), 1).unwrap(),
    ));
    // Each logical call retries up to 3 times; the breaker judges what the retries
    // could not fix.
    let mut svc = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify(HttpStatus))
        .layer(
            RetryLayer::new(fixed_policy(3, Duration::from_millis(5)).unwrap())
                .classify(HttpStatus),
        )
        .service(client());
    up.fail_next.store(1, Ordering::SeqCst);
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(breaker.state(), State::Closed);

    up.down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(get_req(addr))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
    }
    // 2 + 2 x 3 hits; then the open breaker keeps the retries off the server.
    assert_eq!(up.hits.load(Ordering::SeqCst), 8);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(get_req(addr))
        .await
        .unwrap_err();
    assert!(matches!(err, BreakerError::Rejected(_)));
    assert_eq!(up.hits.load(Ordering::SeqCst), 8);
}
