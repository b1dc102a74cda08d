//! # sturdy-tokio
//!
//! sturdy's decisions on tokio: the adapter owns the clock, the sleep and the lock, and
//! decides nothing the core could decide.
//!
//! - [`TokioClock`]: `tokio::time::Instant` as the core's `Instant` (virtual time under
//!   `tokio::time::pause()`), and the [`Timer`](sturdy_core::retry_driver::Timer) of
//!   the core's retry driver;
//! - [`retry`] / [`retrying`]: the core's async retry loop on tokio time, with
//!   `tracing` events for retries and give-ups.
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

mod clock;
mod retry;

pub use clock::TokioClock;
pub use retry::{TracingObserver, retry, retrying};
pub use sturdy_core::retry_driver::{Classified, RetryError};
