//! # sturdy-async-std
//!
//! sturdy's decisions for async-std and smol programs, on `async-io` timers: the same
//! surface as `sturdy-tokio`, as a thin layer over the core.
//!
//! **async-std is discontinued upstream** ([RUSTSEC-2025-0052]); its authors point to
//! smol. This crate depends only on `async-io` (the reactor under both), so it keeps
//! working with smol and any executor; async-std appears only among the tests'
//! dev-dependencies, which run every test under both async-std and smol.
//!
//! - [`AsyncIoClock`]: `std::time::Instant` as the core's `Instant`, and the
//!   [`Timer`](sturdy_core::retry_driver::Timer) of the core's retry driver;
//! - [`retry`] / [`retrying`]: the core's async retry loop, with `tracing` events;
//! - [`RetryBudget`]: one retry budget shared by every caller, task and thread
//!   (lock-free), drawn from by `retrying(..).budget(&b)`;
//! - [`Breaker`]: the shared circuit breaker handle of `sturdy-shared`, on this clock;
//! - [`HealthMonitor`]: a fixed-rate health probe sampler, as a future to spawn on any
//!   executor.
//!
//! ```
//! use std::time::Duration;
//! use sturdy_core::{FailureKind, retry::fixed_policy};
//!
//! let policy = fixed_policy(4, Duration::from_millis(1))?;
//! let mut calls = 0;
//! let value = smol::block_on(sturdy_async_std::retry(&policy, |_e: &&str| FailureKind::Network, || {
//!     calls += 1;
//!     let n = calls;
//!     async move { if n < 3 { Err("connection refused") } else { Ok(n) } }
//! }));
//! assert_eq!(value, Ok(3));
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```
//!
//! [RUSTSEC-2025-0052]: https://rustsec.org/advisories/RUSTSEC-2025-0052.html

mod clock;
mod health_monitor;
mod retry;

pub use clock::AsyncIoClock;
pub use health_monitor::HealthMonitor;
pub use sturdy_shared::breaker::{BreakerCore, BreakerError};
pub use sturdy_shared::breaker_events::{BreakerNotice, BreakerTotals, Cause};
pub use sturdy_shared::health::{Assessed, HealthReading, MonitorConfig, SampleError};

/// The shared circuit breaker handle (from `sturdy-shared`) on the `std` monotonic
/// clock: clone it freely, call it from any task or thread. See
/// [`sturdy_shared::breaker`] for the closed fast path and the guard rules.
pub type Breaker<B = sturdy_core::ConsecutiveBreaker> = sturdy_shared::Breaker<B, AsyncIoClock>;
/// A [`Breaker`]'s borrowed call guard.
pub type CallGuard<'a, B = sturdy_core::ConsecutiveBreaker> =
    sturdy_shared::breaker::CallGuard<'a, B, AsyncIoClock>;
/// A [`Breaker`]'s owned call guard (`'static`).
pub type OwnedCallGuard<B = sturdy_core::ConsecutiveBreaker> =
    sturdy_shared::breaker::OwnedCallGuard<B, AsyncIoClock>;
/// The shared retry budget (from `sturdy-shared`) on the `std` monotonic clock: clone
/// it into every caller; all clones draw from one bucket. Pass it with
/// `retrying(&policy).budget(&budget)`.
pub type RetryBudget = sturdy_shared::RetryBudget<AsyncIoClock>;
pub use retry::{TracingObserver, retry, retry_with_context, retrying};
pub use sturdy_core::retry_driver::{Classified, OnEvent, RetryError, RetryEvent, RetryGate};
pub use sturdy_shared::{RetryMetrics, RetryTotals};
