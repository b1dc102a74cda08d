//! `CircuitBreakerLayer`: a shared [`Breaker`] in front of a tower service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sturdy_core::Clock;
use sturdy_core::breaker::{ConsecutiveBreaker, Rejected};
use tower_layer::Layer;
use tower_service::Service;

use crate::classify::{ClassifyResult, ErrorsAreFailures};
use crate::clock::TokioClock;
use sturdy_shared::breaker::{Breaker, BreakerCore, BreakerError, OwnedCallGuard};

/// Wraps a service with a circuit breaker: while the breaker is open a request is
/// rejected at once with [`BreakerError::Rejected`] (the inner service is not called);
/// otherwise the response is classified ([`ClassifyResult`]; [`ErrorsAreFailures`] by
/// default, [`HttpStatus`](crate::HttpStatus) for HTTP) and recorded. A response future
/// dropped before it finished releases its permit.
///
/// Every service the layer builds shares the one breaker: clone the layer to protect
/// several routes or connections with it, build one layer per dependency to keep them
/// apart.
///
/// Values for a server (a dependency answering in milliseconds): open after 5 failures
/// in a row, stay open 10 s, close after one good probe; a probe that never reports
/// back expires after the open duration. (`ConsecutiveConfig::original()`, 3 failures
/// and 300 s open, is the original batch design's preset, kept for compatibility; it
/// is far too long for a request path.)
///
/// ```
/// use std::time::Duration;
/// use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
/// use sturdy_tokio::{Breaker, CircuitBreakerLayer, HttpStatus};
///
/// let config = ConsecutiveConfig::new(5, Duration::from_secs(10), 1)?;
/// let breaker = Breaker::new(ConsecutiveBreaker::new(config)).named("inventory");
/// let layer = CircuitBreakerLayer::new(breaker).classify(HttpStatus);
/// // tower::ServiceBuilder::new().layer(layer).service(client)
/// # let _ = layer;
/// # Ok::<(), sturdy_core::ConfigError>(())
/// ```
///
/// # Layer order
///
/// `ServiceBuilder` layers run outside-in, top to bottom. Where a `tower::timeout`
/// goes decides whether the breaker counts timeouts:
///
/// ```text
/// // The timeout outside: a call that runs past it is dropped, and the breaker's
/// // guard releases its permit unrecorded. Timeouts never open the breaker (use this
/// // for a caller's own deadline).
/// ServiceBuilder::new()
///     .timeout(Duration::from_secs(2))
///     .layer(CircuitBreakerLayer::new(breaker))
///     .service(client)
///
/// // The timeout inside: the breaker sees each timeout as a failed call (an `Err`),
/// // so a dependency that hangs opens it (use this to shed a hanging dependency).
/// ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(breaker))
///     .timeout(Duration::from_secs(2))
///     .service(client)
/// ```
///
/// A [`RetryLayer`](crate::RetryLayer) goes outside the breaker: each attempt then
/// asks the breaker, and a refusal waits until the breaker admits again or gives up
/// (see the retry layer's docs). Both stacks are tested in `tests/composition.rs`.
#[derive(Debug)]
pub struct CircuitBreakerLayer<
    B: BreakerCore = ConsecutiveBreaker,
    K = ErrorsAreFailures,
    C = TokioClock,
> where
    C: Clock,
{
    breaker: Breaker<B, C>,
    classify: K,
}

impl<B: BreakerCore, K: Clone, C: Clock> Clone for CircuitBreakerLayer<B, K, C> {
    fn clone(&self) -> Self {
        Self {
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<B: BreakerCore, C: Clock> CircuitBreakerLayer<B, ErrorsAreFailures, C> {
    /// A layer around `breaker`, counting `Err` as a failure.
    pub const fn new(breaker: Breaker<B, C>) -> Self {
        Self {
            breaker,
            classify: ErrorsAreFailures,
        }
    }
}

impl<B: BreakerCore, K, C: Clock> CircuitBreakerLayer<B, K, C> {
    /// Judges results with `classify` instead.
    pub fn classify<K2>(self, classify: K2) -> CircuitBreakerLayer<B, K2, C> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify,
        }
    }

    /// The shared breaker (to read its state or reset it).
    pub const fn breaker(&self) -> &Breaker<B, C> {
        &self.breaker
    }
}

impl<S, B: BreakerCore, K: Clone, C: Clock> Layer<S> for CircuitBreakerLayer<B, K, C> {
    type Service = CircuitBreakerService<S, B, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service [`CircuitBreakerLayer`] builds.
#[derive(Debug)]
pub struct CircuitBreakerService<
    S,
    B: BreakerCore = ConsecutiveBreaker,
    K = ErrorsAreFailures,
    C = TokioClock,
> where
    C: Clock,
{
    inner: S,
    breaker: Breaker<B, C>,
    classify: K,
}

impl<S: Clone, B: BreakerCore, K: Clone, C: Clock> Clone for CircuitBreakerService<S, B, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S, Req, B, K, C> Service<Req> for CircuitBreakerService<S, B, K, C>
where
    S: Service<Req>,
    B: BreakerCore,
    K: ClassifyResult<S::Response, S::Error> + Clone,
    C: Clock,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, B, K, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Failed)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(guard) => ResponseFuture {
                state: State::Called {
                    fut: self.inner.call(req),
                    guard: Some(guard),
                    classify: self.classify.clone(),
                },
            },
            Err(rejected) => {
                // Tell an enclosing `RetryLayer` (same task) when to come back.
                crate::tower_retry::note_rejection(self.breaker.wait_for(&rejected));
                ResponseFuture {
                    state: State::Rejected {
                        rejected: Some(rejected),
                    },
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`CircuitBreakerService`].
    pub struct ResponseFuture<F, B: BreakerCore, K, C: Clock> {
        #[pin]
        state: State<F, B, K, C>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, B: BreakerCore, K, C: Clock> {
        Called {
            #[pin]
            fut: F,
            guard: Option<OwnedCallGuard<B, C>>,
            classify: K,
        },
        Rejected {
            rejected: Option<Rejected>,
        },
    }
}

impl<F, Res, Err, B, K, C> Future for ResponseFuture<F, B, K, C>
where
    F: Future<Output = Result<Res, Err>>,
    B: BreakerCore,
    K: ClassifyResult<Res, Err>,
    C: Clock,
{
    type Output = Result<Res, BreakerError<Err>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                guard,
                classify,
            } => {
                let out = std::task::ready!(fut.poll(cx));
                if let Some(g) = guard.take() {
                    g.record(classify.classify(&out));
                }
                Poll::Ready(out.map_err(BreakerError::Failed))
            }
            StateProj::Rejected { rejected } => match rejected.take() {
                Some(r) => Poll::Ready(Err(BreakerError::Rejected(r))),
                None => Poll::Pending,
            },
        }
    }
}
