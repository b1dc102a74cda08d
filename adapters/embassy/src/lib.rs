//! # sturdy-embassy
//!
//! sturdy's decisions in firmware: `no_std`, no allocator, on embassy-time.
//!
//! - [`EmbassyClock`]: `embassy_time::Instant` as the core's `Instant`, and the
//!   [`Timer`](sturdy_core::retry_driver::Timer) of the core's retry driver;
//! - [`retry`] / [`retrying`]: the core's async retry loop, sleeping with
//!   `embassy_time::Timer`;
//! - [`SharedRetryBudget`]: one retry budget for every task, behind a critical
//!   section, drawn from by `retrying(..).budget(&b)`.
//!
//! This crate enables no `tick-hz-*` feature of embassy-time: the tick rate is the
//! application's choice (its time driver, in its own `Cargo.toml`).
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::{FailureKind, retry::fixed_policy};
//!
//! #[derive(Debug)]
//! struct Nack;
//! async fn read_temperature() -> Result<i16, Nack> { Ok(215) }
//!
//! // In an embassy task:
//! async fn sample() -> Result<i16, sturdy_embassy::RetryError<Nack>> {
//!     let policy = fixed_policy(5, Duration::from_millis(200)).expect("valid policy");
//!     sturdy_embassy::retry(&policy, |_e: &Nack| FailureKind::Network, read_temperature).await
//! }
//! ```
#![no_std]

mod budget;
mod clock;
mod retry;

pub use budget::SharedRetryBudget;
pub use clock::EmbassyClock;
pub use retry::{retry, retrying};
pub use sturdy_core::retry_driver::{Classified, RetryError, RetryGate};
