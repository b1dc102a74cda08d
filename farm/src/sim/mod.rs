//! A deterministic simulation of the multi-host farm, in virtual time.
//!
//! - [`SimServer`] / [`SimEngine`]: a discrete-event model of the JetStream engine behind
//!   the same [`Engine`](crate::engine::Engine) trait as the real one, with the server's
//!   hazards (unfenced acks and `+WPI`, MaxDeliver keeping the message, MaxAckPending,
//!   MaxWaiting, restarts that keep lease timers), reached over a simulated network
//!   (latency, loss, partitions).
//! - [`WorldConfig`] / [`simulate`]: hosts with slots and per-slot breakers, commands with
//!   run-time distributions and failure modes (transient, permanent, poison, hang), faults
//!   at rates or on a schedule (host crashes, pauses longer than the lease, partitions,
//!   server restarts, slow hosts), and host agents following the record rules (R1-R3 of
//!   the engine notes). With the journal kept ([`ServerConfig::journal`]), the real
//!   coordinator (`crate::coordinator`: `enqueue`, then `follow` into its `Projection`)
//!   enqueues over the simulated network and decides when the run is complete. The
//!   [`Report`] says what the run cost and whether the rules held.
//!
//! Everything runs on one thread, on a current-thread tokio runtime whose clock is paused
//! and advanced to the next timer whenever every task waits: no real sleeps. Every random
//! choice is drawn from the core's SplitMix64 seeded from [`WorldConfig::seed`], and no
//! iteration order depends on hashing, so a seed reproduces a run exactly
//! ([`Report::trace_hash`] hashes every engine operation in order).

mod dist;
mod engine;
mod real;
mod server;
mod world;

use std::fmt;

pub use dist::{Dist, DistError, parse_duration_ms};
pub use engine::{NetConfig, SimEngine, SimFollow, SimHandle, SimServer};
pub use server::{Checks, ServerConfig, ServerStats};
pub use world::{AgentKind, Report, WorldConfig};

/// A [`WorldConfig`] field broke its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// The field.
    pub field: &'static str,
    /// The rule it broke.
    pub rule: &'static str,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

impl std::error::Error for SimError {}

impl WorldConfig {
    /// Checks every field's rule.
    ///
    /// # Errors
    /// The first field that breaks its rule.
    pub fn check(&self) -> Result<(), SimError> {
        let e = |field, rule| Err(SimError { field, rule });
        let prob = |v: f64| (0.0..=1.0).contains(&v);
        if self.workers == 0 {
            return e("workers", "must be >= 1");
        }
        if self.slots_per_host == 0 {
            return e("slots_per_host", "must be >= 1");
        }
        if self.heartbeat_timeout_ms == 0 {
            return e("heartbeat_timeout", "must be > 0");
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_interval_ms >= self.heartbeat_timeout_ms
        {
            return e(
                "heartbeat_interval",
                "must be > 0 and below the heartbeat timeout",
            );
        }
        if self.command_timeout_ms == 0 {
            return e("timeout", "must be > 0");
        }
        for (field, v) in [
            ("transient", self.transient),
            ("permanent", self.permanent),
            ("poison", self.poison),
            ("hang", self.hang),
            ("slow_hosts", self.slow_hosts),
            ("loss", self.net.loss),
        ] {
            if !prob(v) {
                return e(field, "must be a probability in 0..=1");
            }
        }
        if self.permanent + self.poison > 1.0 {
            return e("poison", "plus permanent must be <= 1");
        }
        for (field, v) in [
            ("host_crash_rate", self.host_crash_per_hour),
            ("pause_rate", self.pause_per_hour),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return e(field, "must be a rate >= 0 per hour");
            }
        }
        if !(self.slow_factor.is_finite() && self.slow_factor >= 1.0) {
            return e("slow_factor", "must be >= 1");
        }
        if self.server.max_ack_pending == 0 {
            return e("max_ack_pending", "must be >= 1");
        }
        if self.server.max_waiting == 0 {
            return e("max_waiting", "must be >= 1");
        }
        if self.outages.iter().any(|(s, end)| end <= s) {
            return e("outage", "must end after it starts");
        }
        if self
            .partitions
            .iter()
            .any(|(_, len, f)| *len == 0 || !prob(*f))
        {
            return e("partition", "needs a length > 0 and a fraction in 0..=1");
        }
        Ok(())
    }
}

/// Runs the simulated world `cfg` to its end (every task finished, or the time limit) on
/// a fresh current-thread runtime with a paused clock, and reports.
///
/// # Errors
/// A [`SimError`] when a field of `cfg` breaks its rule.
pub fn simulate(cfg: WorldConfig) -> Result<Report, SimError> {
    simulate_with(cfg, &mut |_, _| {})
}

/// [`simulate`], calling `progress(finished tasks, virtual ms)` each time a task
/// finishes.
///
/// # Errors
/// As [`simulate`].
pub fn simulate_with(
    cfg: WorldConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, SimError> {
    cfg.check()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|_| SimError {
            field: "runtime",
            rule: "could not be built",
        })?;
    let local = tokio::task::LocalSet::new();
    Ok(rt.block_on(local.run_until(world::run_world(cfg, progress))))
}
