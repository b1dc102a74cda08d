//! # sturdy-shared
//!
//! The runtime-neutral half of sturdy's adapters: `std` only, no async runtime. The
//! tokio and async-io adapters re-export these with their clocks.
//!
//! - [`breaker`]: [`Breaker`], a cheap, cloneable, `Send + Sync` handle around one of
//!   the core's circuit breakers, with a lock-free closed path and guards that release
//!   their permit when dropped unfinished;
//! - [`budget`]: [`RetryBudget`], one retry budget shared by every task and thread,
//!   lock-free, that the adapters' retry drivers and layers draw from;
//! - [`breaker_events`]: what a shared breaker tells its subscribers, and its running
//!   totals;
//! - [`retry_metrics`]: [`RetryMetrics`], running totals of retry decisions;
//! - `prometheus` (feature `prometheus`) and `opentelemetry` (feature `opentelemetry`):
//!   those totals, and the budgets' tokens, exported to a `prometheus-client` registry or
//!   as OpenTelemetry metrics on a `Meter`;
//! - [`health`]: what a health monitor publishes ([`HealthReading`](health::HealthReading))
//!   and one panic-proof sampling step ([`Sampler`](health::Sampler));
//! - [`striped`]: the per-thread striped counter behind the breaker's fast-path call
//!   count;
//! - [`SharedManualClock`]: a manual clock that threads can share, for tests and
//!   simulations.

pub mod breaker;
pub mod breaker_events;
pub mod budget;
pub mod health;
mod manual_clock;
#[cfg(feature = "opentelemetry")]
pub mod opentelemetry;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod retry_metrics;
pub mod striped;

pub use breaker::{Breaker, BreakerCore, BreakerError, CallGuard, OwnedCallGuard};
pub use breaker_events::{BreakerNotice, BreakerTotals, Cause};
pub use budget::RetryBudget;
pub use manual_clock::SharedManualClock;
pub use retry_metrics::{RetryMetrics, RetryTotals};
