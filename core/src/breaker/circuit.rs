//! The windowed circuit breaker: failure rate and slow-call rate over a sliding window,
//! a minimum number of calls, an optional consecutive-failure rule, and a growing open
//! duration.

use super::config::{BreakerConfig, CIRCUIT_MAX_PROBES};
use super::event::{BreakerEvent, EventQueue};
use super::metrics::Metrics;
use super::permit::{Outcome, Permit, Rejected};
use super::snapshot::BreakerSnapshot;
use super::state::{Machine, NO_SLOT, State};
use super::window::{CountWindow, SlidingWindow};
use crate::backoff::BackoffState;
use crate::error::ConfigError;
use crate::time::Instant;

const PPM: u64 = 1_000_000;

/// A circuit breaker judging failure and slow-call rates over a sliding window `W`
/// ([`CountWindow`], [`TimeWindow`](super::TimeWindow) or
/// [`NoWindow`](super::NoWindow)), with an event queue of capacity `E`.
///
/// While closed, after each counted outcome the breaker opens when any rule of its
/// [`BreakerConfig`] holds (failure rate, slow-call rate, both once the window holds
/// `minimum_calls`; consecutive failures). The open duration is the next delay of the
/// config's backoff schedule: the first opening takes its first delay, each reopen
/// after a failed half-open phase the next (growing) one; closing starts the schedule
/// over. Half-open: at most `half_open_permits` probes in flight; `success_threshold`
/// successful probes close it; a failed probe, a slow probe (with a slow-call rule), or
/// an expired one reopens it. Closing empties the window.
///
/// Shape: `size_of::<W>()` plus 264 bytes plus 24 per event slot (`E`), on 64-bit
/// targets (a `CountWindow<100>` with `E = 8`: 576 bytes).
///
/// ```
/// use core::time::Duration;
/// use sturdy_core::{FailureKind, Instant};
/// use sturdy_core::breaker::{BreakerConfig, CircuitBreaker, CountWindow, Outcome, State};
///
/// let cfg = BreakerConfig::new().with_failure_rate_threshold(0.5)?.with_minimum_calls(4)?;
/// let mut b: CircuitBreaker<CountWindow<10>> = CircuitBreaker::new(cfg, CountWindow::new(), 7)?;
/// let t = Instant::from_secs(1);
/// for ok in [true, false, true, false] {
///     let p = b.try_acquire(t).expect("closed");
///     let o = if ok { Outcome::Success } else { Outcome::Failure(FailureKind::Network) };
///     b.record(p, o, t);
/// }
/// // 2 failures in 4 calls: 50 % >= 50 %, and the minimum of 4 calls is reached.
/// assert_eq!(b.state(), State::Open { until: Instant::from_secs(61) });
/// # Ok::<(), sturdy_core::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker<W: SlidingWindow = CountWindow<100>, const E: usize = 8> {
    machine: Machine<CIRCUIT_MAX_PROBES>,
    config: BreakerConfig,
    backoff: BackoffState,
    rejected: u64,
    run: u32,
    reopens: u32,
    events: EventQueue<E>,
    window: W,
}

impl<W: SlidingWindow, const E: usize> CircuitBreaker<W, E> {
    /// A closed breaker judging `window` with `config`; `seed` draws the jitter of the
    /// open-duration schedule (if it has any).
    ///
    /// # Errors
    /// `minimum_calls` above what the window can ever hold (a count window's size):
    /// the rate rules could never be judged.
    pub fn new(config: BreakerConfig, window: W, seed: u64) -> Result<Self, ConfigError> {
        if let Some(max) = window.max_calls()
            && config.minimum_calls > max
        {
            return Err(ConfigError::new(
                "minimum_calls",
                "must be <= the count window's size",
            ));
        }
        Ok(Self {
            machine: Machine::new(),
            config,
            backoff: BackoffState::new(seed),
            rejected: 0,
            run: 0,
            reopens: 0,
            events: EventQueue::new(),
            window,
        })
    }

    /// A breaker restored from `snapshot`, with `config` and an empty `window`. Probe
    /// slots start free.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn restore(
        config: BreakerConfig,
        window: W,
        snapshot: &BreakerSnapshot,
    ) -> Result<Self, ConfigError> {
        let mut b = Self::new(config, window, 0)?;
        b.machine
            .restore(snapshot.state, snapshot.generation, snapshot.latest);
        b.run = snapshot.consecutive_failures;
        b.reopens = snapshot.reopens;
        b.rejected = snapshot.rejected;
        if let Some(backoff) = snapshot.open_backoff {
            b.backoff = backoff;
        }
        Ok(b)
    }

    // ----- getters (change nothing) -----

    /// The current state. An open breaker past its deadline reads `Open` until an
    /// input at or after it.
    #[inline]
    pub const fn state(&self) -> State {
        self.machine.state
    }

    /// The config.
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The window.
    pub const fn window(&self) -> &W {
        &self.window
    }

    /// The current generation (incremented by every transition).
    pub const fn generation(&self) -> u32 {
        self.machine.generation
    }

    /// The measurements: the window's totals at the latest instant seen, the run of
    /// failures, rejections, probes in flight, reopens, dropped events.
    pub fn metrics(&self) -> Metrics {
        let t = self.window.totals(self.machine.clock.latest());
        Metrics {
            calls: t.calls,
            failures: t.failures,
            slow_calls: t.slow_calls,
            consecutive_failures: self.run,
            rejected: self.rejected,
            probes_in_flight: self.machine.in_flight(),
            reopens: self.reopens,
            events_dropped: self.events.dropped(),
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the end of the open
    /// period, or the expiry of the oldest half-open probe. `None` while closed,
    /// disabled, metrics-only or forced open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.deadline()
    }

    /// The persistent state, for [`restore`](Self::restore).
    pub fn snapshot(&self) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.machine.state,
            generation: self.machine.generation,
            latest: self.machine.clock.latest(),
            consecutive_failures: self.run,
            reopens: self.reopens,
            rejected: self.rejected,
            open_backoff: Some(self.backoff),
        }
    }

    // ----- inputs -----

    /// Asks leave to make one call at `now`; the same rules as
    /// [`ConsecutiveBreaker::try_acquire`](super::ConsecutiveBreaker::try_acquire).
    ///
    /// # Errors
    /// [`Rejected`] with the instant to come back and the refusing state.
    #[inline]
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
        let now = self.machine.clock.observe(now);
        if self.machine.state.admits_all() {
            return Ok(Permit {
                issued_at: now,
                generation: self.machine.generation,
                slot: NO_SLOT,
            });
        }
        self.acquire_slow(now)
    }

    #[cold]
    fn acquire_slow(&mut self, now: Instant) -> Result<Permit, Rejected> {
        self.advance(now);
        let retry_at = match self.machine.state {
            State::HalfOpen => match self.machine.take_probe(
                now,
                self.config.half_open_permits,
                self.config.permit_timeout_ns,
            ) {
                Ok(slot) => {
                    return Ok(Permit {
                        issued_at: now,
                        generation: self.machine.generation,
                        slot,
                    });
                }
                Err(at) => at,
            },
            State::Open { until } => until,
            _ => Instant::MAX,
        };
        self.rejected = self.rejected.saturating_add(1);
        Err(Rejected {
            retry_at,
            state: self.machine.state,
        })
    }

    /// Hands back a permit with the call's outcome, at `now`. The call's latency is
    /// `now - permit.issued_at()`; above the slow-call bound it is a slow call.
    ///
    /// A permit from an older generation, or one already handed back, changes nothing.
    #[inline]
    pub fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant) {
        let now = self.machine.clock.observe(now);
        if permit.generation != self.machine.generation {
            return;
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure(kind) if self.config.counted.contains(kind) => true,
            _ => {
                if permit.slot != NO_SLOT {
                    self.release(permit, now);
                }
                return;
            }
        };
        let slow =
            now.as_nanos().saturating_sub(permit.issued_at.as_nanos()) > self.config.slow_call_ns;
        match self.machine.state {
            State::Closed => {
                self.measure(now, failed, slow);
                if self.tripped(now) {
                    self.backoff.reset();
                    self.open(now);
                }
            }
            State::MetricsOnly => {
                self.measure(now, failed, slow);
                if self.tripped(now) {
                    self.events
                        .push(BreakerEvent::ThresholdExceeded { at: now });
                    self.window.clear();
                    self.run = 0;
                }
            }
            State::Disabled => self.measure(now, failed, slow),
            State::HalfOpen => self.record_probe(permit, failed, slow, now),
            // No permit of the current generation exists while open or forced open.
            _ => {}
        }
    }

    #[inline]
    fn measure(&mut self, now: Instant, failed: bool, slow: bool) {
        self.window.record(now, failed, slow);
        self.run = if failed {
            self.run.saturating_add(1)
        } else {
            0
        };
    }

    /// Whether a rule holds, judged with integer arithmetic only.
    #[inline]
    fn tripped(&self, now: Instant) -> bool {
        let c = &self.config;
        if c.consecutive_failures != 0 && self.run >= c.consecutive_failures {
            return true;
        }
        let t = self.window.totals(now);
        if t.calls == 0 || t.calls < c.minimum_calls {
            return false;
        }
        let calls = t.calls as u64;
        t.failures as u64 * PPM >= c.failure_rate_ppm as u64 * calls
            || (c.slow_rate_ppm != 0 && t.slow_calls as u64 * PPM >= c.slow_rate_ppm as u64 * calls)
    }

    #[cold]
    fn record_probe(&mut self, permit: Permit, failed: bool, slow: bool, now: Instant) {
        self.advance(now);
        if permit.generation != self.machine.generation || !self.machine.free_probe(permit.slot) {
            return; // expired just now, or handed back twice
        }
        if failed || (slow && self.config.slow_rate_ppm != 0) {
            self.reopen(now);
        } else {
            self.machine.probe_successes = self.machine.probe_successes.saturating_add(1);
            if self.machine.probe_successes >= self.config.success_threshold {
                self.close(now);
            }
        }
    }

    /// Hands back a permit whose call never produced an outcome (dropped, cancelled):
    /// counts neither way; a half-open probe frees its slot. Stale permits change nothing.
    pub fn release(&mut self, permit: Permit, now: Instant) {
        let now = self.machine.clock.observe(now);
        if permit.generation != self.machine.generation || permit.slot == NO_SLOT {
            return;
        }
        self.advance(now);
        if permit.generation == self.machine.generation {
            self.machine.free_probe(permit.slot);
        }
    }

    /// Makes the time-driven transitions due at `now` (open to half-open; an expired
    /// probe counts as failed and reopens). Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.machine.clock.observe(now);
        self.advance(now);
    }

    /// The oldest event not yet pulled, from a queue of `E`; when full, the oldest is
    /// dropped and counted in [`Metrics::events_dropped`].
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop()
    }

    // ----- manual control -----

    /// Opens the breaker until [`reset`](Self::reset).
    pub fn force_open(&mut self, now: Instant) {
        let now = self.machine.clock.observe(now);
        self.machine.enter(State::ForcedOpen);
        self.events.push(BreakerEvent::ForcedOpen { at: now });
    }

    /// Admits every call until [`reset`](Self::reset); outcomes are still measured, no
    /// rule is judged.
    pub fn disable(&mut self, now: Instant) {
        let now = self.machine.clock.observe(now);
        self.machine.enter(State::Disabled);
        self.events.push(BreakerEvent::Disabled { at: now });
    }

    /// Admits every call until [`reset`](Self::reset); rules are judged and a rule that
    /// holds emits [`BreakerEvent::ThresholdExceeded`] (then the window starts over)
    /// instead of opening.
    pub fn metrics_only(&mut self, now: Instant) {
        let now = self.machine.clock.observe(now);
        self.machine.enter(State::MetricsOnly);
        self.window.clear();
        self.run = 0;
        self.events.push(BreakerEvent::MetricsOnly { at: now });
    }

    /// Back to closed with an empty window and a fresh open-duration schedule (the
    /// rejected count stays), from any state.
    pub fn reset(&mut self, now: Instant) {
        let now = self.machine.clock.observe(now);
        self.close(now);
    }

    // ----- transitions -----

    fn advance(&mut self, now: Instant) {
        match self.machine.state {
            State::Open { until } if now >= until => {
                self.machine.enter(State::HalfOpen);
                self.events.push(BreakerEvent::HalfOpened { at: now });
            }
            State::HalfOpen => {
                if let Some(expiry) = self.machine.earliest_probe_expiry()
                    && now >= expiry
                {
                    self.events.push(BreakerEvent::ProbeExpired { at: now });
                    self.reopen(now);
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, now: Instant) {
        let d = self.backoff.next_delay_ns(&self.config.open);
        let until = Instant::from_nanos(now.as_nanos().saturating_add(d.max(1)));
        self.machine.enter(State::Open { until });
        self.events.push(BreakerEvent::Opened { at: now, until });
    }

    fn reopen(&mut self, now: Instant) {
        self.reopens = self.reopens.saturating_add(1);
        self.open(now);
    }

    fn close(&mut self, now: Instant) {
        self.machine.enter(State::Closed);
        self.window.clear();
        self.run = 0;
        self.reopens = 0;
        self.backoff.reset();
        self.events.push(BreakerEvent::Closed { at: now });
    }
}
