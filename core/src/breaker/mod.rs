//! Circuit breakers: stop calling a dependency that keeps failing, probe it after a
//! while, resume when it answers again.
//!
//! The state model is resilience4j's and Polly v8's: **closed** (calls pass, outcomes
//! are counted), **open** (calls are rejected until a deadline), **half-open** (a limited
//! number of probe calls pass; successes close, a failure reopens), plus manual
//! **forced open**, **disabled** and **metrics-only** modes and a manual reset. Every
//! transition is a [`BreakerEvent`].
//!
//! Two breakers share that machine:
//! - [`ConsecutiveBreaker`]: opens after a run of consecutive failures, fixed open
//!   duration; 152 bytes, `Copy`, for one breaker per worker in a fixed array;
//! - [`CircuitBreaker`]: failure rate and slow-call rate over a sliding window (a
//!   count-based ring, [`CountWindow`], or time-based buckets, [`TimeWindow`]), a minimum
//!   number of calls, an optional consecutive-failure rule, and an open duration drawn
//!   from a backoff schedule that grows with each consecutive reopen.
//!
//! Sans-IO, like the rest of the core: inputs take `now`, outputs are pulled.
//! - [`try_acquire(now)`](ConsecutiveBreaker::try_acquire) returns a [`Permit`] or
//!   [`Rejected`] `{ retry_at, state }`; a rejected caller never invokes its operation;
//! - [`record(permit, outcome, now)`](ConsecutiveBreaker::record) hands the permit back
//!   with the [`Outcome`]; [`release(permit, now)`](ConsecutiveBreaker::release) hands
//!   back one whose call was dropped or cancelled (it counts neither way);
//! - [`poll_timeout()`](ConsecutiveBreaker::poll_timeout) says when to call
//!   [`handle_timeout(now)`](ConsecutiveBreaker::handle_timeout), so open becomes
//!   half-open at its deadline even when no caller comes, and a lost probe expires;
//! - [`poll_event()`](ConsecutiveBreaker::poll_event) pulls events from a bounded queue;
//! - `state()`, `metrics()`, `snapshot()` are getters and change nothing (the original
//!   moved from open to half-open inside a query; here only inputs move the breaker).
//!
//! Rules that keep a breaker honest:
//! - **Timers run on every input.** Each input (`try_acquire`, `record`, `release`,
//!   `handle_timeout`) first makes the time-driven transitions due at its `now`; a
//!   getter never does. Calling `handle_timeout` at `poll_timeout()` is only needed
//!   when no other input comes.
//! - **Generations.** Each transition starts a new generation and each permit carries
//!   the one it was issued in. A permit from an older generation is ignored: failures
//!   that arrive late, while open, never restart or extend the open period.
//! - **Half-open is limited.** At most `half_open_permits` probes are in flight; the
//!   others are rejected at once. (The original let every call through while half-open.)
//! - **Liveness.** A probe that never reports back expires after the permit timeout and
//!   counts as failed, so a lost probe cannot wedge the breaker half-open.
//! - **Time never runs backwards.** An earlier `now` than one already seen reads as the
//!   latest seen ([`Monotonic`](crate::Monotonic)); nothing fires early, nothing panics.
//!
//! The loop every adapter runs:
//! ```
//! use core::time::Duration;
//! use sturdy_core::{FailureKind, Instant};
//! use sturdy_core::breaker::{BreakerEvent, ConsecutiveBreaker, ConsecutiveConfig, Outcome};
//!
//! let cfg = ConsecutiveConfig::new(2, Duration::from_secs(5), 1)?;
//! let mut breaker = ConsecutiveBreaker::new(cfg);
//! let mut now = Instant::ZERO;
//! let mut log = Vec::new();
//! // Pull events after each input (the queue holds 4 by default).
//! let mut drain = |b: &mut ConsecutiveBreaker| {
//!     while let Some(ev) = b.poll_event() {
//!         log.push(ev);
//!     }
//! };
//! for call in 0..6 {
//!     now = now + Duration::from_secs(1);
//!     breaker.handle_timeout(now);
//!     drain(&mut breaker);
//!     match breaker.try_acquire(now) {
//!         Ok(permit) => {
//!             let ok = call >= 3; // the dependency recovers at the 4th call
//!             let outcome = if ok { Outcome::Success } else { Outcome::Failure(FailureKind::Network) };
//!             breaker.record(permit, outcome, now);
//!         }
//!         Err(rejected) => now = rejected.retry_at, // the adapter sleeps until then
//!     }
//!     drain(&mut breaker);
//! }
//! assert_eq!(
//!     log,
//!     [
//!         BreakerEvent::Opened { at: Instant::from_secs(2), until: Instant::from_secs(7) },
//!         BreakerEvent::HalfOpened { at: Instant::from_secs(8) },
//!         BreakerEvent::Closed { at: Instant::from_secs(8) },
//!     ]
//! );
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```

mod circuit;
mod config;
mod consecutive;
mod drive;
mod event;
mod metrics;
#[cfg(test)]
mod model;
mod permit;
mod snapshot;
mod state;
mod window;

pub use circuit::CircuitBreaker;
pub use config::{BreakerConfig, CIRCUIT_MAX_PROBES, CONSECUTIVE_MAX_PROBES, ConsecutiveConfig};
pub use consecutive::{CONSECUTIVE_EVENTS, ConsecutiveBreaker};
pub use event::{BreakerEvent, EventQueue};
pub use metrics::Metrics;
pub(crate) use permit::ParkedPermit;
pub use permit::{Outcome, Permit, Rejected};
pub use snapshot::BreakerSnapshot;
pub use state::State;
pub use window::{CountWindow, NoWindow, SlidingWindow, TimeWindow, WindowTotals};
