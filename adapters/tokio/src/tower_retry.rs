//! `RetryLayer`: the core's retry loop around a tower service.

use std::cell::Cell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use sturdy_core::breaker::Outcome;
use sturdy_core::retry::{GiveUpReason, RetryPolicy};
use sturdy_core::retry_driver::{Classified, OnEvent, RetryError, RetryEvent};
use sturdy_core::{ConfigError, FailureKind};
use sturdy_shared::RetryMetrics;
use tower_layer::Layer;
use tower_service::Service;

use crate::RetryBudget;
use crate::classify::{ClassifyResult, ErrorsAreFailures};
use crate::retry::{TracingObserver, retrying};

/// Makes the copy of a request that each attempt sends. `None` means the request
/// cannot be copied: it is sent once, as is, and not retried.
///
/// Implemented for [`ByClone`] (any `Req: Clone`, `http::Request<Full<Bytes>>`
/// included) and for closures `Fn(&Req) -> Option<Req>` (to copy a request whose
/// body type is not `Clone`).
pub trait CloneRequest<Req> {
    /// A copy of `req` for one more attempt.
    fn clone_request(&self, req: &Req) -> Option<Req>;
}

/// Copies requests with `Clone`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ByClone;

impl<Req: Clone> CloneRequest<Req> for ByClone {
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

impl<Req, F: Fn(&Req) -> Option<Req>> CloneRequest<Req> for F {
    fn clone_request(&self, req: &Req) -> Option<Req> {
        self(req)
    }
}

/// Retries a tower service's calls under a [`RetryPolicy`], on tokio time, with the
/// core's retry driver (so: exact backoff, `max_elapsed`, no retry of a kind the policy
/// does not retry, an optional per-attempt timeout, `tracing` events).
///
/// Each result is judged by a [`ClassifyResult`] ([`ErrorsAreFailures`] by default,
/// [`HttpStatus`](crate::HttpStatus) for HTTP), which may also read a server's
/// retry-after hint (HTTP `Retry-After`): the next delay is then the larger of the hint
/// and the backoff draw, never above the backoff cap. A failed *response* (an HTTP 503) that
/// exhausts the policy is returned as the response, so the caller sees the last
/// status; a failed *error* is returned as [`RetryError::Failed`] with the attempt
/// count and the reason. Each attempt waits for the inner service to be ready on its
/// own clone of it; this service is always ready.
///
/// With a shared [`RetryBudget`] ([`budget`](Self::budget)), each request deposits into
/// it and each retry takes a token; an empty budget returns the last failure at once
/// ([`GiveUpReason::BudgetExhausted`]). Give every layer, route and client that calls
/// the same dependency a clone of the one budget.
///
/// **Over a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer)** (retry outside,
/// breaker inside, the usual order), a call the breaker refuses is not retried
/// blindly, whatever the classifier says: the retry waits until the breaker admits
/// again when that is within the policy's backoff cap, and otherwise gives up at once
/// with the rejection ([`GiveUpReason::BreakerOpen`]); see
/// [`Classified::rejected`]. (The breaker tells the retry layer through a tokio
/// task-local, so this holds when both run in the same task, as in a plain
/// `ServiceBuilder` stack; a `tower::buffer` between them hands the call to another
/// task, and then the classifier alone decides.)
///
/// ```
/// use std::time::Duration;
/// use sturdy_core::retry::fixed_policy;
/// use sturdy_tokio::{HttpStatus, RetryLayer};
///
/// let layer = RetryLayer::new(fixed_policy(3, Duration::from_millis(50))?)
///     .classify(HttpStatus)
///     .attempt_timeout(Duration::from_secs(2))?
///     .budget(sturdy_tokio::RetryBudget::new(Default::default()));
/// // tower::ServiceBuilder::new().layer(layer).service(client)
/// # let _ = layer;
/// # Ok::<(), sturdy_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryLayer<K = ErrorsAreFailures, R = ByClone> {
    policy: RetryPolicy,
    classify: K,
    clone_request: R,
    attempt_timeout: Option<Duration>,
    budget: Option<RetryBudget>,
    on_event: Option<EventHook>,
}

/// A callback for every retry decision of a layer.
type EventHook = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

impl<K: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryLayer<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .field("classify", &self.classify)
            .field("clone_request", &self.clone_request)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("budget", &self.budget)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

impl RetryLayer {
    /// Retries under `policy`, counting `Err` as a failure, copying requests with
    /// `Clone`.
    pub const fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            classify: ErrorsAreFailures,
            clone_request: ByClone,
            attempt_timeout: None,
            budget: None,
            on_event: None,
        }
    }
}

impl<K, R> RetryLayer<K, R> {
    /// Judges results with `classify` instead.
    pub fn classify<K2>(self, classify: K2) -> RetryLayer<K2, R> {
        RetryLayer {
            policy: self.policy,
            classify,
            clone_request: self.clone_request,
            attempt_timeout: self.attempt_timeout,
            budget: self.budget,
            on_event: self.on_event,
        }
    }

    /// Copies requests with `clone_request` instead.
    pub fn clone_request<R2>(self, clone_request: R2) -> RetryLayer<K, R2> {
        RetryLayer {
            policy: self.policy,
            classify: self.classify,
            clone_request,
            attempt_timeout: self.attempt_timeout,
            budget: self.budget,
            on_event: self.on_event,
        }
    }

    /// Drops an attempt still running `timeout` after it started (a
    /// [`FailureKind::TaskTimeout`] failure).
    ///
    /// # Errors
    /// A zero `timeout`.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("attempt_timeout", "must be > 0"));
        }
        self.attempt_timeout = Some(timeout);
        Ok(self)
    }

    /// Draws retries from the shared `budget` (a clone of it: every clone is the same
    /// bucket).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Calls `f` with every retry decision (retries with their delay, give-ups with
    /// their reason, successes), besides the `tracing` events. Replaces an earlier
    /// callback or [`metrics`](Self::metrics).
    pub fn on_event(mut self, f: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Adds every retry decision to `metrics` (running totals; a clone of it: every
    /// clone is the same totals). Replaces an earlier [`on_event`](Self::on_event).
    pub fn metrics(self, metrics: RetryMetrics) -> Self {
        self.on_event(move |e| metrics.record(e))
    }
}

impl<S, K: Clone, R: Clone> Layer<S> for RetryLayer<K, R> {
    type Service = RetryService<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RetryLayer`] builds.
#[derive(Clone, Debug)]
pub struct RetryService<S, K = ErrorsAreFailures, R = ByClone> {
    inner: S,
    layer: RetryLayer<K, R>,
}

/// One failed attempt, as the retry driver sees it.
enum Attempt<Res, Err> {
    /// A response the classifier called a failure.
    Response(Res, Classified),
    /// An error from the service.
    Error(Err, Classified),
}

impl<Res, Err> Attempt<Res, Err> {
    fn classified(&self) -> Classified {
        match self {
            Self::Response(_, c) | Self::Error(_, c) => *c,
        }
    }
}

tokio::task_local! {
    /// Set by a [`CircuitBreakerService`](crate::CircuitBreakerService) that refuses a
    /// call inside a [`RetryService`]'s attempt: how long until it admits again.
    static REJECTED: Cell<Option<Duration>>;
}

/// A breaker layer refused a call: tells the enclosing retry layer of this task, if any.
pub(crate) fn note_rejection(wait: Duration) {
    let _ = REJECTED.try_with(|c| c.set(Some(wait)));
}

/// The response future of [`RetryService`]: boxed, `Send`.
pub type RetryFuture<Res, Err> =
    Pin<Box<dyn Future<Output = Result<Res, RetryError<Err>>> + Send + 'static>>;

impl<S, Req, K, R> Service<Req> for RetryService<S, K, R>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    Req: Send + 'static,
    K: ClassifyResult<S::Response, S::Error> + Clone + Send + Sync + 'static,
    R: CloneRequest<Req> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = RetryError<S::Error>;
    type Future = RetryFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each attempt drives its own clone of the inner service to readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let inner = self.inner.clone();
        let layer = self.layer.clone();
        Box::pin(async move {
            let RetryLayer {
                policy,
                classify,
                clone_request,
                attempt_timeout,
                budget,
                on_event,
            } = layer;
            let observer = (
                TracingObserver,
                OnEvent(move |e: RetryEvent| {
                    if let Some(f) = &on_event {
                        f(&e);
                    }
                }),
            );
            // The template stays here; each attempt sends a copy. A request that
            // cannot be copied is sent itself, once, and not retried.
            let mut template = Some(req);
            let no_more_flag = AtomicBool::new(false);
            let attempts_made = AtomicU32::new(0);
            let (no_more, attempts, classify) = (&no_more_flag, &attempts_made, &classify);
            let base = match attempt_timeout {
                // `RetryLayer::attempt_timeout` already refused zero: `Err` never comes.
                Some(t) => retrying(&policy)
                    .attempt_timeout(t)
                    .unwrap_or_else(|_| retrying(&policy)),
                None => retrying(&policy),
            };
            let retry = base.observer(observer).budget(budget.as_ref());
            let result = REJECTED
                .scope(
                    Cell::new(None),
                    retry.run(
                        |a: &Attempt<S::Response, Option<S::Error>>| {
                            if no_more.load(Ordering::Relaxed) {
                                Classified::from(FailureKind::Permanent)
                            } else {
                                a.classified()
                            }
                        },
                        move || {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            let req = match template
                                .as_ref()
                                .and_then(|t| clone_request.clone_request(t))
                            {
                                Some(copy) => Some(copy),
                                None => {
                                    no_more.store(true, Ordering::Relaxed);
                                    template.take()
                                }
                            };
                            let mut svc = inner.clone();
                            async move {
                                let Some(req) = req else {
                                    // Unreachable in practice: the template is only
                                    // taken once and that attempt is never retried.
                                    return Err(Attempt::Error(
                                        None,
                                        FailureKind::Permanent.into(),
                                    ));
                                };
                                let _ = REJECTED.try_with(|c| c.set(None));
                                let out = match poll_fn(|cx| svc.poll_ready(cx)).await {
                                    Ok(()) => svc.call(req).await,
                                    Err(e) => Err(e),
                                };
                                let rejected = REJECTED.try_with(Cell::take).ok().flatten();
                                let outcome = match (rejected, &out) {
                                    (Some(wait), Err(_)) => Err(Classified::rejected(wait)),
                                    _ => match classify.classify(&out) {
                                        Outcome::Failure(kind) => Err(Classified {
                                            kind,
                                            retry_after: classify.retry_after(&out),
                                            rejected: None,
                                        }),
                                        _ => Ok(()),
                                    },
                                };
                                match outcome {
                                    Err(c) => Err(match out {
                                        Ok(res) => Attempt::Response(res, c),
                                        Err(e) => Attempt::Error(Some(e), c),
                                    }),
                                    Ok(()) => match out {
                                        Ok(res) => Ok(Ok(res)),
                                        Err(e) => Ok(Err(e)),
                                    },
                                }
                            }
                        },
                    ),
                )
                .await;
            match result {
                Ok(Ok(res)) => Ok(res),
                // An error the classifier did not call a failure: returned, not retried.
                Ok(Err(e)) => Err(RetryError::Failed {
                    error: e,
                    attempts: attempts_made.load(Ordering::Relaxed),
                    reason: GiveUpReason::Finished,
                }),
                Err(e) => {
                    let (attempts, reason) = (e.attempts(), e.reason());
                    match e.into_error() {
                        Some(Attempt::Response(res, _)) => Ok(res),
                        Some(Attempt::Error(Some(error), _)) => Err(RetryError::Failed {
                            error,
                            attempts,
                            reason,
                        }),
                        _ => Err(RetryError::TimedOut {
                            timeout: attempt_timeout.unwrap_or_default(),
                            attempts,
                            reason,
                        }),
                    }
                }
            }
        })
    }
}
