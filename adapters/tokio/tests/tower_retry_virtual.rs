//! `RetryLayer` around an in-process service in virtual time: exact call times, the
//! server's `Retry-After` hint, and a request that cannot be copied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::retry::{GiveUpReason, RetryPolicy};
use sturdy_tokio::{HttpStatus, RetryLayer};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn policy(max_attempts: u32) -> RetryPolicy {
    let b = BackoffConfig::exponential(Duration::from_millis(100), 2_000, Duration::from_secs(5))
        .unwrap()
        .with_jitter(Jitter::None)
        .unwrap();
    RetryPolicy::new(max_attempts, b).unwrap()
}

/// A service answering from `script` (status, optional `Retry-After`), recording the
/// virtual ms of each call.
/// The virtual ms of each call.
type CallLog = Arc<Mutex<Vec<u64>>>;

/// What the tests wrap: an HTTP-shaped service that can be cloned and sent.
trait Upstream:
    Service<
        http::Request<String>,
        Response = http::Response<()>,
        Error = &'static str,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Upstream for S where
    S: Service<
            http::Request<String>,
            Response = http::Response<()>,
            Error = &'static str,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

fn scripted(script: Vec<(u16, Option<&'static str>)>) -> (impl Upstream, CallLog) {
    let start = Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let svc = service_fn(move |_req: http::Request<String>| {
        let mut log = log.lock().unwrap();
        log.push(start.elapsed().as_millis() as u64);
        let (status, hint) = script[(log.len() - 1).min(script.len() - 1)];
        let mut resp = http::Response::builder().status(status);
        if let Some(h) = hint {
            resp = resp.header(http::header::RETRY_AFTER, h);
        }
        let resp = resp.body(()).unwrap();
        async move { Ok::<_, &'static str>(resp) }
    });
    (svc, calls)
}

fn req() -> http::Request<String> {
    http::Request::get("http://upstream/")
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn backoff_times_and_the_retry_after_hint() {
    // 503, 503 with Retry-After: 2 (above the 200 ms draw), then 200.
    let (inner, calls) = scripted(vec![(503, None), (503, Some("2")), (200, None)]);
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(5)).classify(HttpStatus))
        .service(inner);
    let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(*calls.lock().unwrap(), [0, 100, 2100]);
}

#[tokio::test(start_paused = true)]
async fn exhausted_returns_the_last_response_and_client_errors_are_not_retried() {
    let (inner, calls) = scripted(vec![(502, None)]);
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(3)).classify(HttpStatus))
        .service(inner);
    let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(*calls.lock().unwrap(), [0, 100, 300]);

    let (inner, calls) = scripted(vec![(404, None)]);
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(3)).classify(HttpStatus))
        .service(inner);
    let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(*calls.lock().unwrap(), [0]);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_copied_is_sent_once() {
    let (inner, calls) = scripted(vec![(503, None)]);
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(policy(3))
                .classify(HttpStatus)
                .clone_request(|_: &http::Request<String>| None),
        )
        .service(inner);
    let resp = svc.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(*calls.lock().unwrap(), [0]);
}

#[tokio::test(start_paused = true)]
async fn service_errors_give_up_with_the_count_and_reason() {
    let start = Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let inner = service_fn(move |_: http::Request<String>| {
        log.lock().unwrap().push(start.elapsed().as_millis() as u64);
        async { Err::<http::Response<()>, _>("connection refused") }
    });
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy(3)).classify(HttpStatus))
        .service(inner);
    let err = svc.ready().await.unwrap().call(req()).await.unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(
        err.reason(),
        GiveUpReason::AttemptsExhausted { attempts: 3 }
    );
    assert_eq!(err.into_error(), Some("connection refused"));
    assert_eq!(*calls.lock().unwrap(), [0, 100, 300]);
}

/// Two services (two routes, two layers) built from clones of one budget: together they
/// make exactly the budget's retries; the 503 that found the budget empty is returned
/// at once.
#[tokio::test(start_paused = true)]
async fn layers_sharing_a_budget_make_exactly_its_retries() {
    use sturdy_core::retry::RetryBudgetConfig;
    use sturdy_tokio::RetryBudget;
    let budget = RetryBudget::new(RetryBudgetConfig::new(0, 0, 3).unwrap());
    let layer = RetryLayer::new(policy(6))
        .classify(HttpStatus)
        .budget(budget.clone());
    let (a, calls_a) = scripted(vec![(503, None)]);
    let (b, calls_b) = scripted(vec![(503, None)]);
    let mut a = ServiceBuilder::new().layer(layer.clone()).service(a);
    let mut b = ServiceBuilder::new().layer(layer).service(b);
    let ra = a.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(ra.status(), 503);
    // Route A took the 3 tokens (calls at 0, 100, 300, 700 ms), route B none.
    assert_eq!(*calls_a.lock().unwrap(), [0, 100, 300, 700]);
    let rb = b.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(rb.status(), 503);
    assert_eq!(calls_b.lock().unwrap().len(), 1);
    assert_eq!((budget.retries_allowed(), budget.retries_refused()), (3, 2));
    assert_eq!(budget.calls(), 2);
}

/// Every decision of a layer reaches its callback and its running totals.
#[tokio::test(start_paused = true)]
async fn a_layer_reports_every_decision_to_its_metrics_and_callback() {
    use sturdy_tokio::{RetryEvent, RetryMetrics};
    let metrics = RetryMetrics::new("upstream");
    let events = Arc::new(Mutex::new(Vec::new()));
    let (inner, _) = scripted(vec![(503, None), (503, None), (200, None)]);
    let mut ok = ServiceBuilder::new()
        .layer(
            RetryLayer::new(policy(3))
                .classify(HttpStatus)
                .metrics(metrics.clone()),
        )
        .service(inner);
    assert_eq!(
        ok.ready()
            .await
            .unwrap()
            .call(req())
            .await
            .unwrap()
            .status(),
        200
    );
    let (inner, _) = scripted(vec![(503, None)]);
    let e = events.clone();
    let mut failing = ServiceBuilder::new()
        .layer(
            RetryLayer::new(policy(2))
                .classify(HttpStatus)
                .on_event(move |ev| e.lock().unwrap().push(*ev)),
        )
        .service(inner);
    assert_eq!(
        failing
            .ready()
            .await
            .unwrap()
            .call(req())
            .await
            .unwrap()
            .status(),
        503
    );
    let t = metrics.totals();
    assert_eq!((t.successes, t.retries, t.give_ups_total()), (1, 2, 0));
    assert_eq!(t.retry_delay, Duration::from_millis(300));
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(
        events[1],
        RetryEvent::GiveUp {
            attempt: 2,
            reason: GiveUpReason::AttemptsExhausted { attempts: 2 },
            ..
        }
    ));
}
