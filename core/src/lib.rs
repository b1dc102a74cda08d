//! # sturdy-core
//!
//! Every fault-tolerance decision of sturdy, as pure, bounded, deterministic state
//! machines: `#![no_std]`, no allocator, no `unsafe`, no clock, no I/O.
//!
//! Inputs take `now: Instant` (nanoseconds since an origin the adapter picks); outputs
//! are returned or pulled (`poll_timeout`, `poll_event`); randomness comes in as a
//! `seed: u64`. The same inputs give the same decisions on a server, a microcontroller,
//! a fuzzer and a simulation.
//!
//! Modules:
//! - [`time`]: [`Instant`], the [`Clock`] trait, a manual clock, the monotonic watermark;
//! - [`backoff`]: constant, linear and exponential schedules with full, equal and
//!   decorrelated jitter;
//! - [`retry`]: retry policies, per-task retry state, retry budgets;
//! - [`retry_driver`]: the async retry loop over a runtime's [`Timer`](retry_driver::Timer),
//!   shared by every adapter;
//! - [`failure`]: failure kinds, ids and the fixed-size failure event;
//! - [`breaker`]: circuit breakers (consecutive failures; failure and slow-call rates
//!   over count or time windows), with limited half-open probes and generations;
//! - [`deadline`]: the heartbeat deadline failure detector;
//! - [`manager`]: the fault-tolerance manager, a [`Ledger`](manager::Ledger) of workers and tasks;
//! - [`checkpoint`]: checkpoint intervals and (feature `postcard`) CRC-framed ledger snapshots;
//! - [`health`]: host and GPU samples, the probe trait, and the health rules;
//! - [`phi`]: the φ accrual failure detector (Hayashibara et al. 2004, as in Akka);
//! - [`phi32`]: the same detector in single precision, for FPUs without doubles (half
//!   the RAM, no soft-float; sizes for thumbv7em in its docs).
//!
//! A retry loop, the way every adapter drives it:
//! ```
//! use core::time::Duration;
//! use sturdy_core::{FailureKind, Instant};
//! use sturdy_core::retry::{fixed_policy, Decision, RetryState};
//!
//! let policy = fixed_policy(4, Duration::from_millis(10))?;
//! let mut now = Instant::ZERO;
//! let mut state = RetryState::new(now, 1);
//! let mut calls = 0;
//! loop {
//!     calls += 1;
//!     let ok = calls == 3; // the operation
//!     if ok { state.on_success(now); break; }
//!     match state.on_failure(&policy, FailureKind::Network, now) {
//!         Decision::RetryAfter(d) => now = now + d, // the adapter sleeps here
//!         Decision::GiveUp(_) => break,
//!     }
//! }
//! assert_eq!((calls, now), (3, Instant::from_millis(20)));
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod backoff;
pub mod breaker;
pub mod checkpoint;
pub mod deadline;
mod error;
pub mod failure;
pub mod health;
pub mod manager;
pub mod phi;
pub mod phi32;
pub mod retry;
pub mod retry_driver;
pub mod rng;
pub mod time;

pub use breaker::{
    BreakerConfig, BreakerEvent, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig, Outcome,
    Permit, Rejected,
};
pub use error::{ConfigError, unwrap_config};
pub use failure::{FailureEvent, FailureKind, KindSet, TaskId, WorkerId};
/// The `heapless` crate the samples and lists of the core are built on, re-exported so
/// that users name the same version.
pub use heapless;
pub use time::{Clock, Instant, ManualClock, Monotonic};
