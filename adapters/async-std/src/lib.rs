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
//! - [`retry`] / [`retrying`]: the core's async retry loop, with `tracing` events.
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
mod retry;

pub use clock::AsyncIoClock;
pub use retry::{TracingObserver, retry, retrying};
pub use sturdy_core::retry_driver::{Classified, RetryError};
