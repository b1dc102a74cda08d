//! # sturdy-tokio
//!
//! sturdy's decisions on tokio: the adapter owns the clock, the sleep and the lock, and
//! decides nothing the core could decide.
//!
//! - [`TokioClock`]: `tokio::time::Instant` as the core's `Instant` (virtual time under
//!   `tokio::time::pause()`), and the [`Timer`](sturdy_core::retry_driver::Timer) of
//!   the core's retry driver;
//! - [`retry`] / [`retrying`]: the core's async retry loop on tokio time, with
//!   `tracing` events for retries and give-ups;
//! - [`RetryBudget`]: one retry budget shared by every caller, task and thread
//!   (lock-free), drawn from by `retrying(..).budget(&b)` and [`RetryLayer::budget`];
//! - [`Breaker`]: a shared circuit breaker handle with a lock-free closed path, whose
//!   guards release their permit when dropped unfinished;
//! - [`HealthMonitor`]: a background task sampling a health probe at a fixed rate on
//!   a blocking thread, publishing the latest reading through `tokio::sync::watch`;
//! - tower (feature `tower`, on by default): [`CircuitBreakerLayer`] and [`RetryLayer`]
//!   for hyper, axum and tonic stacks, judging results with a [`ClassifyResult`]
//!   ([`HttpStatus`] for HTTP; `GrpcStatus` for gRPC, feature `grpc`);
//! - [`checkpoint_store`]: a directory-backed checkpoint store with crash-safe writes,
//!   verified reads and the last K kept.
//!
//! ```
//! use std::time::Duration;
//! use sturdy_core::{FailureKind, retry::fixed_policy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = fixed_policy(4, Duration::from_millis(100))?;
//! let mut calls = 0;
//! let value = sturdy_tokio::retry(&policy, |_e: &&str| FailureKind::Network, || {
//!     calls += 1;
//!     let n = calls;
//!     async move { if n < 3 { Err("connection refused") } else { Ok(n) } }
//! })
//! .await;
//! assert_eq!(value, Ok(3));
//! # Ok(()) }
//! ```

pub mod checkpoint_store;
#[cfg(feature = "tower")]
mod classify;
mod clock;
mod health_monitor;
mod retry;
#[cfg(feature = "tower")]
mod tower_breaker;
#[cfg(feature = "tower")]
mod tower_retry;

pub use sturdy_shared::breaker::{BreakerCore, BreakerError};
pub use sturdy_shared::breaker_events::{BreakerNotice, BreakerTotals, Cause};
pub use sturdy_shared::health::{Assessed, HealthReading, MonitorConfig, SampleError};
/// OpenTelemetry metrics (feature `opentelemetry`): see [`sturdy_shared::opentelemetry`].
#[cfg(feature = "opentelemetry")]
pub use sturdy_shared::opentelemetry;
/// Prometheus export (feature `prometheus`): see [`sturdy_shared::prometheus`].
#[cfg(feature = "prometheus")]
pub use sturdy_shared::prometheus;

/// The shared circuit breaker handle (from `sturdy-shared`) on tokio time: clone it
/// freely, call it from any task or thread. See [`sturdy_shared::breaker`] for the
/// closed fast path and the guard rules.
pub type Breaker<B = sturdy_core::ConsecutiveBreaker> = sturdy_shared::Breaker<B, TokioClock>;
/// The shared retry budget (from `sturdy-shared`) on tokio time: clone it into every
/// caller; all clones draw from one bucket. Its floor trickles in by tokio time (virtual
/// under `tokio::time::pause()`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use sturdy_core::{FailureKind, retry::{RetryBudgetConfig, fixed_policy}};
/// use sturdy_tokio::RetryBudget;
///
/// // Retries: 10 % of calls plus 1 per second, at most 20 saved up.
/// let budget = RetryBudget::new(RetryBudgetConfig::new(100, 1, 20)?);
/// let policy = fixed_policy(3, Duration::from_millis(50))?;
/// let out = sturdy_tokio::retrying(&policy)
///     .budget(&budget)
///     .run(|_e: &&str| FailureKind::Network, || async { Err::<(), _>("refused") })
///     .await;
/// assert_eq!(out.unwrap_err().attempts(), 3);
/// assert_eq!(budget.retries_allowed(), 2);
/// # Ok(()) }
/// ```
pub type RetryBudget = sturdy_shared::RetryBudget<TokioClock>;
/// A [`Breaker`]'s borrowed call guard.
pub type CallGuard<'a, B = sturdy_core::ConsecutiveBreaker> =
    sturdy_shared::breaker::CallGuard<'a, B, TokioClock>;
/// A [`Breaker`]'s owned call guard (`'static`).
pub type OwnedCallGuard<B = sturdy_core::ConsecutiveBreaker> =
    sturdy_shared::breaker::OwnedCallGuard<B, TokioClock>;
#[cfg(feature = "grpc")]
pub use classify::GrpcStatus;
#[cfg(feature = "tower")]
pub use classify::{ClassifyResult, ErrorsAreFailures, HttpStatus};
pub use clock::TokioClock;
pub use health_monitor::HealthMonitor;
pub use retry::{TracingObserver, retry, retry_with_context, retrying};
pub use sturdy_core::retry_driver::{Classified, OnEvent, RetryError, RetryEvent, RetryGate};
pub use sturdy_shared::{RetryMetrics, RetryTotals};
#[cfg(feature = "tower")]
pub use tower_breaker::{CircuitBreakerLayer, CircuitBreakerService, ResponseFuture};
#[cfg(feature = "tower")]
pub use tower_retry::{ByClone, CloneRequest, RetryFuture, RetryLayer, RetryService};
