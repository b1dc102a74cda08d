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
//!   [`CallGuard`]s;
//! - [`SharedRetryBudget`]: one retry budget for every task, behind a critical
//!   section, drawn from by `retrying(..).budget(&b)`.
//!
//! Feature `defmt`: `defmt::Format` for every core type firmware logs (instants, breaker
//! states and events, outcomes, refusals, retry errors and reasons, config errors;
//! spans are `core::time::Duration`, which defmt formats itself) and a
//! `DefmtObserver` for the retry loop.
//!
//! This crate enables no `tick-hz-*` feature of embassy-time: the tick rate is the
//! application's choice (its time driver, in its own `Cargo.toml`).
//!
//! A firmware task that reads a sensor through a shared breaker, with a policy checked
//! at compile time and the sensor lent to each attempt:
//!
//! ```
//! use core::time::Duration;
//! use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
//! use sturdy_core::backoff::BackoffConfig;
//! use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
//! use sturdy_core::retry::RetryPolicy;
//! use sturdy_core::{FailureKind, unwrap_config};
//! use sturdy_embassy::{SharedBreaker, retry_with_context};
//!
//! // Built and checked at compile time: a broken rule fails the build, naming the
//! // field and the rule.
//! const BACKOFF: BackoffConfig = unwrap_config(BackoffConfig::exponential(
//!     Duration::from_millis(20),
//!     2_000,
//!     Duration::from_millis(500),
//! ));
//! static POLICY: RetryPolicy = unwrap_config(RetryPolicy::new(5, BACKOFF));
//! // Shared by every task that uses the bus: 3 failed reads open it for 10 s.
//! static BUS: SharedBreaker<CriticalSectionRawMutex, ConsecutiveBreaker> =
//!     SharedBreaker::new(ConsecutiveBreaker::new(unwrap_config(ConsecutiveConfig::new(
//!         3,
//!         Duration::from_secs(10),
//!         1,
//!     ))));
//!
//! #[derive(Debug)]
//! struct Nack;
//! struct Bme280; // an I2C driver: its methods take `&mut self`
//! impl Bme280 {
//!     async fn read_temperature(&mut self) -> Result<i16, Nack> { Ok(215) }
//! }
//!
//! async fn sample(sensor: &mut Bme280) -> Option<i16> {
//!     let guard = BUS.try_acquire().ok()?; // open: skip this round
//!     let (_sensor, out) = retry_with_context(
//!         &POLICY,
//!         sensor,
//!         |_: &Nack| FailureKind::Network,
//!         async |s: &mut &mut Bme280| s.read_temperature().await,
//!     )
//!     .await;
//!     match out {
//!         Ok(t) => {
//!             guard.success();
//!             Some(t)
//!         }
//!         Err(_) => {
//!             guard.failure(FailureKind::Network); // dropped instead: released
//!             None
//!         }
//!     }
//! }
//! ```
#![no_std]

mod breaker;
mod budget;
mod clock;
mod retry;

pub use breaker::{BreakerCore, CallGuard, SharedBreaker};
pub use budget::SharedRetryBudget;
pub use clock::EmbassyClock;
#[cfg(feature = "defmt")]
pub use retry::DefmtObserver;
pub use retry::{retry, retry_with_context, retrying};
pub use sturdy_core::retry_driver::{Classified, RetryError, RetryGate};

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
