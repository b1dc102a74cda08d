//! # sturdy-embassy
//!
//! sturdy's decisions in firmware: `no_std`, no allocator, on embassy-time.
//!
//! - [`EmbassyClock`]: `embassy_time::Instant` as the core's `Instant`, and the
//!   [`Timer`](sturdy_core::retry_driver::Timer) of the core's retry driver;
//! - [`retry`] / [`retrying`]: the core's async retry loop, sleeping with
//!   `embassy_time::Timer`; [`retry_with_context`] lends a `&mut` peripheral to each
//!   attempt and hands it back;
//! - [`SharedBreaker`]: a core circuit breaker shared by tasks over `embassy-sync`'s
//!   blocking mutex (the raw mutex is the application's), with drop-releasing
//!   [`CallGuard`]s.
//!
//! Feature `defmt`: `defmt::Format` for every core type firmware logs (instants, breaker
//! states and events, outcomes, refusals, retry errors and reasons, config errors;
//! spans are `core::time::Duration`, which defmt formats itself) and a
//! `DefmtObserver` for the retry loop.
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

mod breaker;
mod clock;
mod retry;

pub use breaker::{BreakerCore, CallGuard, SharedBreaker};
pub use clock::EmbassyClock;
#[cfg(feature = "defmt")]
pub use retry::DefmtObserver;
pub use retry::{retry, retry_with_context, retrying};
pub use sturdy_core::retry_driver::{Classified, RetryError};

/// What firmware logs is `defmt::Format` (checked when this crate builds with `defmt`).
#[cfg(feature = "defmt")]
const _: () = {
    const fn formats<T: defmt::Format>() {}
    use sturdy_core::breaker::{BreakerEvent, Metrics, Outcome, Rejected, State};
    formats::<sturdy_core::Instant>();
    formats::<core::time::Duration>();
    formats::<State>();
    formats::<BreakerEvent>();
    formats::<Outcome>();
    formats::<Rejected>();
    formats::<Metrics>();
    formats::<sturdy_core::FailureKind>();
    formats::<sturdy_core::ConfigError>();
    formats::<sturdy_core::retry::Decision>();
    formats::<sturdy_core::retry::GiveUpReason>();
    formats::<RetryError<u8>>();
    formats::<Classified>();
    formats::<sturdy_core::manager::Event>();
    formats::<sturdy_core::health::HealthStatus>();
    formats::<embassy_time::Instant>();
};
