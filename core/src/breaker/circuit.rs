//! The windowed circuit breaker: failure rate and slow-call rate over a sliding window,
//! a minimum number of calls, an optional consecutive-failure rule, and a growing open
//! duration.

use super::config::{BreakerConfig, CIRCUIT_MAX_PROBES};
use super::drive::Drive;
use super::event::{BreakerEvent, EventQueue};
use super::metrics::Metrics;
use super::permit::{Outcome, Permit, Rejected};
use super::snapshot::BreakerSnapshot;
use super::state::{Machine, NO_PROBE, State};
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
/// an expired one reopens it. Closing empties the window. (Since any failed probe
/// reopens, a rate rule over the probes would reduce to "every probe succeeded", which
/// is what `success_threshold` counts.)
///
/// Shape: `392 + 24 * E + size_of::<W>()` bytes on 64-bit targets (704 for
/// `CountWindow<100>` with `E = 8`); 192 of them are the 16 inline probe slots (an
/// expiry and a ticket each).
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
        b.machine.restore(snapshot);
        b.run = snapshot.consecutive_failures;
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
            reopens: self.machine.reopens as u32,
            events_dropped: self.events.dropped(),
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the end of the open
    /// period, or the expiry of the oldest half-open probe. `None` while closed,
    /// disabled, metrics-only or forced open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.deadline()
    }

    /// Whether [`try_acquire(now)`](Self::try_acquire) would hand out a permit now. A
    /// getter: it changes nothing (no transition, no probe taken), so a scheduler can
    /// ask it of many breakers before choosing one.
    pub fn would_admit(&self, now: Instant) -> bool {
        self.machine.would_admit(now, self.config.half_open_permits)
    }

    /// The persistent state, for [`restore`](Self::restore).
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.machine
            .snapshot(self.run, self.rejected, Some(self.backoff))
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
        // The slow path hands back only the probe ticket, and the permit is built here
        // on both paths: a permit returned through the slow path's `Result` would go
        // through memory on the closed path too (a store-forwarding stall).
        let probe = if self.machine.state.admits_all() {
            NO_PROBE
        } else {
            self.acquire_slow(now)?
        };
        Ok(Permit {
            issued_at: now,
            generation: self.machine.generation,
            probe,
        })
    }

    /// Hands back a permit with the call's outcome, at `now`. The call's latency is
    /// `now - permit.issued_at()`; above the slow-call bound it is a slow call.
    ///
    /// A permit from an older generation, or a half-open probe already handed back,
    /// changes nothing. Takes the permit by value: a permit is handed back once (recording
    /// one twice does not compile; see [`Permit`]).
    #[inline]
    pub fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant) {
        let now = self.machine.clock.observe(now);
        if !self.machine.state.admits_all() {
            self.advance(now);
        }
        if permit.generation != self.machine.generation {
            return;
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure(kind) if self.config.counted.contains(kind) => true,
            _ => {
                self.machine.free_probe(permit.probe);
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
                    // As if it had opened and closed at once: the window starts over.
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
        if !self.machine.free_probe(permit.probe) {
            return; // handed back twice
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
        self.release_permit(permit, now);
    }

    /// Makes the time-driven transitions due at `now` (open to half-open; an expired
    /// probe counts as failed and reopens). Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_at(now);
    }

    /// The oldest event not yet pulled, from a queue of `E`; when full, the oldest is
    /// dropped and counted in [`Metrics::events_dropped`].
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop()
    }

    // ----- manual control -----

    /// Opens the breaker until [`reset`](Self::reset).
    pub fn force_open(&mut self, now: Instant) {
        self.enter_by_hand(State::ForcedOpen, now);
    }

    /// Admits every call until [`reset`](Self::reset); outcomes are still measured, no
    /// rule is judged.
    pub fn disable(&mut self, now: Instant) {
        self.enter_by_hand(State::Disabled, now);
    }

    /// Admits every call until [`reset`](Self::reset); rules are judged and a rule that
    /// holds emits [`BreakerEvent::ThresholdExceeded`] (then the window starts over)
    /// instead of opening.
    pub fn metrics_only(&mut self, now: Instant) {
        self.enter_by_hand(State::MetricsOnly, now);
    }

    /// Back to closed with an empty window and a fresh open-duration schedule (the
    /// rejected count stays), from any state.
    pub fn reset(&mut self, now: Instant) {
        self.enter_by_hand(State::Closed, now);
    }
}

impl<W: SlidingWindow, const E: usize> Drive<CIRCUIT_MAX_PROBES> for CircuitBreaker<W, E> {
    #[inline]
    fn machine(&mut self) -> &mut Machine<CIRCUIT_MAX_PROBES> {
        &mut self.machine
    }

    fn probe_limits(&self) -> (u8, u64) {
        (
            self.config.half_open_permits,
            self.config.permit_timeout_ns(),
        )
    }

    fn emit(&mut self, ev: BreakerEvent) {
        self.events.push(ev);
    }

    fn count_rejected(&mut self) {
        self.rejected = self.rejected.saturating_add(1);
    }

    fn open_ns(&mut self) -> u64 {
        self.backoff.next_delay_ns(&self.config.open).max(1)
    }

    fn probe_expired(&mut self, now: Instant) {
        self.events.push(BreakerEvent::ProbeExpired { at: now });
    }

    fn restart_rule(&mut self) {
        self.window.clear();
        self.run = 0;
    }

    fn clear_on_close(&mut self) {
        self.window.clear();
        self.run = 0;
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;
    use std::vec::Vec;

    use super::*;
    use crate::backoff::{BackoffConfig, Jitter};
    use crate::breaker::window::{NoWindow, TimeWindow};
    use crate::failure::FailureKind;

    const NET: Outcome = Outcome::Failure(FailureKind::Network);

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    fn drain<W: SlidingWindow, const E: usize>(b: &mut CircuitBreaker<W, E>) -> Vec<BreakerEvent> {
        core::iter::from_fn(|| b.poll_event()).collect()
    }

    fn call<W: SlidingWindow, const E: usize>(
        b: &mut CircuitBreaker<W, E>,
        o: Outcome,
        now: Instant,
    ) -> Result<(), Rejected> {
        let p = b.try_acquire(now)?;
        b.record(p, o, now);
        Ok(())
    }

    fn rate_breaker(n_min: u32) -> CircuitBreaker<CountWindow<5>> {
        let cfg = BreakerConfig::new()
            .with_failure_rate_threshold(0.5)
            .unwrap()
            .with_minimum_calls(n_min)
            .unwrap()
            .with_open_duration(Duration::from_secs(10))
            .unwrap();
        CircuitBreaker::new(cfg, CountWindow::new(), 1).unwrap()
    }

    #[test]
    fn minimum_calls_rule() {
        let mut b = rate_breaker(4);
        // Three failures in a row: 100 % but below the minimum of 4 calls.
        for _ in 0..3 {
            call(&mut b, NET, s(1)).unwrap();
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.metrics().failure_rate(), 1.0);
        // The 4th call, a success, reaches the minimum: 3 / 4 = 75 % >= 50 %.
        call(&mut b, Outcome::Success, s(2)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(12) });
        assert_eq!(
            drain(&mut b),
            [BreakerEvent::Opened {
                at: s(2),
                until: s(12)
            }]
        );
    }

    #[test]
    fn rate_just_below_threshold_stays_closed() {
        let mut b = rate_breaker(5);
        for o in [
            NET,
            Outcome::Success,
            NET,
            Outcome::Success,
            Outcome::Success,
        ] {
            call(&mut b, o, s(1)).unwrap();
        }
        // 2 / 5 = 40 % < 50 %.
        assert_eq!(b.state(), State::Closed);
        let m = b.metrics();
        assert_eq!((m.calls, m.failures), (5, 2));
        assert_eq!(m.failure_rate(), 0.4);
    }

    #[test]
    fn count_window_eviction_in_the_breaker() {
        let mut b = rate_breaker(5);
        // F F S S S: 40 %, closed.
        for o in [
            NET,
            NET,
            Outcome::Success,
            Outcome::Success,
            Outcome::Success,
        ] {
            call(&mut b, o, s(1)).unwrap();
        }
        assert_eq!(b.state(), State::Closed);
        // F: the oldest F leaves, the window is F S S S F: still 40 %.
        call(&mut b, NET, s(2)).unwrap();
        assert_eq!(b.metrics().failures, 2);
        assert_eq!(b.state(), State::Closed);
        // S: the second F leaves: S S S F S = 20 %.
        call(&mut b, Outcome::Success, s(3)).unwrap();
        assert_eq!(b.metrics().failures, 1);
        // F: S S F S F = 40 %, then F: S F S F F = 60 %: open.
        call(&mut b, NET, s(4)).unwrap();
        assert_eq!(b.state(), State::Closed);
        call(&mut b, NET, s(5)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(15) });
        // A cumulative counter would read 5 / 9 and the oldest outcomes would still count.
    }

    #[test]
    fn time_window_forgets_old_failures() {
        let cfg = BreakerConfig::new()
            .with_failure_rate_threshold(0.5)
            .unwrap()
            .with_minimum_calls(4)
            .unwrap();
        let w = TimeWindow::<10>::new(Duration::from_secs(1)).unwrap();
        let mut b: CircuitBreaker<TimeWindow<10>> = CircuitBreaker::new(cfg, w, 1).unwrap();
        // Three failures at 0.5 s.
        for _ in 0..3 {
            call(&mut b, NET, ms(500)).unwrap();
        }
        // 20 s later they have left the 10 s window: four successes and one failure
        // are 20 %.
        for _ in 0..4 {
            call(&mut b, Outcome::Success, s(20)).unwrap();
        }
        call(&mut b, NET, s(20)).unwrap();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.metrics().calls, 5);
        // Within the window they count: 3 more failures at 21 s make 4 / 8 = 50 %.
        call(&mut b, NET, s(21)).unwrap();
        call(&mut b, NET, s(21)).unwrap();
        assert_eq!(b.state(), State::Closed);
        call(&mut b, NET, s(21)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(81) });
    }

    #[test]
    fn slow_call_rate() {
        let cfg = BreakerConfig::new()
            .with_slow_calls(Duration::from_millis(100), 0.5)
            .unwrap()
            .with_minimum_calls(2)
            .unwrap();
        let mut b: CircuitBreaker<CountWindow<4>> =
            CircuitBreaker::new(cfg, CountWindow::new(), 1).unwrap();
        // A success of exactly 100 ms is not slow; 101 ms is.
        let p = b.try_acquire(ms(0)).unwrap();
        b.record(p, Outcome::Success, ms(100));
        let p = b.try_acquire(ms(1000)).unwrap();
        b.record(p, Outcome::Success, ms(1101));
        let m = b.metrics();
        assert_eq!((m.calls, m.failures, m.slow_calls), (2, 0, 1));
        // 1 / 2 slow = 50 %: open.
        assert_eq!(
            b.state(),
            State::Open {
                until: Instant::from_millis(61_101)
            }
        );
        // While half-open, a slow probe is a failed probe.
        b.handle_timeout(ms(61_101));
        let p = b.try_acquire(ms(61_101)).unwrap();
        b.record(p, Outcome::Success, ms(61_302));
        assert!(matches!(b.state(), State::Open { .. }));
    }

    #[test]
    fn open_duration_grows_with_each_reopen_and_resets_on_close() {
        let schedule =
            BackoffConfig::exponential(Duration::from_secs(1), 2_000, Duration::from_secs(5))
                .unwrap()
                .with_jitter(Jitter::None)
                .unwrap();
        let cfg = BreakerConfig::new()
            .with_consecutive_failures(1)
            .unwrap()
            .with_open_backoff(schedule)
            .unwrap()
            .with_success_threshold(1)
            .unwrap();
        let mut b: CircuitBreaker<NoWindow> = CircuitBreaker::new(cfg, NoWindow, 3).unwrap();
        call(&mut b, NET, s(100)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(101) });
        let mut now = s(101);
        let mut untils = Vec::new();
        for _ in 0..4 {
            call(&mut b, NET, now).unwrap(); // a failed probe reopens
            let State::Open { until } = b.state() else {
                panic!("not open: {:?}", b.state())
            };
            untils.push((until - now).as_secs());
            now = until;
        }
        assert_eq!(untils, [2, 4, 5, 5]);
        assert_eq!(b.metrics().reopens, 4);
        // A successful probe closes and starts the schedule over.
        call(&mut b, Outcome::Success, now).unwrap();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.metrics().reopens, 0);
        call(&mut b, NET, now).unwrap();
        assert_eq!(
            b.state(),
            State::Open {
                until: now + Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn a_lost_probe_expires_after_the_open_duration_by_default() {
        // Open 5 s, permit timeout not set: a probe that never reports back frees the
        // breaker 5 s after it was issued (before: 60 s whatever the open duration).
        let cfg = BreakerConfig::new()
            .with_consecutive_failures(1)
            .unwrap()
            .with_open_duration(Duration::from_secs(5))
            .unwrap();
        let mut b: CircuitBreaker<CountWindow<10>, 16> =
            CircuitBreaker::new(cfg, CountWindow::new(), 0).unwrap();
        call(&mut b, NET, s(0)).unwrap(); // open until 5
        b.handle_timeout(s(5));
        let _lost = b.try_acquire(s(5)).unwrap();
        assert_eq!(b.try_acquire(s(6)).unwrap_err().retry_at, s(10));
        b.handle_timeout(s(10)); // the probe expires: open again until 15
        assert!(matches!(b.state(), State::Open { .. }), "{:?}", b.state());
        assert_eq!(b.poll_timeout(), Some(s(15)));
    }

    #[test]
    fn every_transition_with_exact_timestamps() {
        let cfg = BreakerConfig::new()
            .with_consecutive_failures(2)
            .unwrap()
            .with_open_duration(Duration::from_secs(30))
            .unwrap()
            .with_half_open_permits(2)
            .unwrap()
            .with_success_threshold(2)
            .unwrap()
            .with_permit_timeout(Duration::from_secs(5))
            .unwrap();
        let mut b: CircuitBreaker<CountWindow<10>, 16> =
            CircuitBreaker::new(cfg, CountWindow::new(), 0).unwrap();
        call(&mut b, NET, s(1)).unwrap();
        call(&mut b, NET, s(2)).unwrap(); // closed -> open
        b.handle_timeout(s(32)); // open -> half-open
        let p = b.try_acquire(s(33)).unwrap();
        let _lost = b.try_acquire(s(34)).unwrap();
        b.record(p, Outcome::Success, s(35));
        b.handle_timeout(s(39)); // the lost probe expires: half-open -> open
        b.handle_timeout(s(69)); // open -> half-open
        call(&mut b, Outcome::Success, s(70)).unwrap();
        call(&mut b, Outcome::Success, s(71)).unwrap(); // half-open -> closed
        b.force_open(s(80));
        b.disable(s(81));
        b.metrics_only(s(82));
        call(&mut b, NET, s(83)).unwrap();
        call(&mut b, NET, s(84)).unwrap(); // would open
        b.reset(s(90));
        assert_eq!(
            drain(&mut b),
            [
                BreakerEvent::Opened {
                    at: s(2),
                    until: s(32)
                },
                BreakerEvent::HalfOpened { at: s(32) },
                BreakerEvent::ProbeExpired { at: s(39) },
                BreakerEvent::Opened {
                    at: s(39),
                    until: s(69)
                },
                BreakerEvent::HalfOpened { at: s(69) },
                BreakerEvent::Closed { at: s(71) },
                BreakerEvent::ForcedOpen { at: s(80) },
                BreakerEvent::Disabled { at: s(81) },
                BreakerEvent::MetricsOnly { at: s(82) },
                BreakerEvent::ThresholdExceeded { at: s(84) },
                BreakerEvent::Closed { at: s(90) },
            ]
        );
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.metrics().events_dropped, 0);
        assert_eq!(b.generation(), 9); // ThresholdExceeded is not a transition
    }

    #[test]
    fn half_open_admits_exactly_its_permits_among_five_callers() {
        for permits in [1u8, 2] {
            let cfg = BreakerConfig::new()
                .with_consecutive_failures(1)
                .unwrap()
                .with_half_open_permits(permits)
                .unwrap();
            let mut b: CircuitBreaker<NoWindow> = CircuitBreaker::new(cfg, NoWindow, 0).unwrap();
            call(&mut b, NET, s(0)).unwrap();
            let got: Vec<_> = (0..5).map(|_| b.try_acquire(s(60))).collect();
            let admitted = got.iter().filter(|r| r.is_ok()).count();
            assert_eq!(admitted, permits as usize);
            for r in got.iter().filter_map(|r| r.as_ref().err()) {
                assert_eq!((r.retry_at, r.state), (s(120), State::HalfOpen));
            }
            assert_eq!(b.metrics().probes_in_flight, permits);
        }
    }

    #[test]
    fn full_event_queue_counts_drops() {
        let cfg = BreakerConfig::new().with_consecutive_failures(1).unwrap();
        let mut b: CircuitBreaker<NoWindow, 2> = CircuitBreaker::new(cfg, NoWindow, 0).unwrap();
        b.force_open(s(1));
        b.disable(s(2));
        b.reset(s(3));
        assert_eq!(b.metrics().events_dropped, 1);
        assert_eq!(
            drain(&mut b),
            [
                BreakerEvent::Disabled { at: s(2) },
                BreakerEvent::Closed { at: s(3) }
            ]
        );
    }

    #[test]
    fn minimum_calls_above_a_count_window_is_refused() {
        let cfg = BreakerConfig::new().with_minimum_calls(11).unwrap();
        let e = CircuitBreaker::<CountWindow<10>>::new(cfg, CountWindow::new(), 0).unwrap_err();
        assert_eq!(
            (e.field(), e.rule()),
            ("minimum_calls", "must be <= the count window's size")
        );
    }

    #[test]
    fn late_outcomes_and_backward_clock() {
        let mut b = rate_breaker(2);
        let late: Vec<Permit> = (0..4).map(|_| b.try_acquire(s(10)).unwrap()).collect();
        let mut late = late.into_iter();
        let mut next = || late.next().unwrap();
        b.record(next(), NET, s(11));
        b.record(next(), NET, s(11));
        assert_eq!(b.state(), State::Open { until: s(21) });
        b.record(next(), NET, s(15));
        b.record(next(), NET, s(5)); // late and with a clock that jumped back
        assert_eq!(b.state(), State::Open { until: s(21) });
        assert_eq!(b.try_acquire(s(0)).unwrap_err().retry_at, s(21));
        assert_eq!(b.poll_timeout(), Some(s(21)));
    }

    #[test]
    fn snapshot_round_trip() {
        let schedule =
            BackoffConfig::exponential(Duration::from_secs(1), 2_000, Duration::from_secs(8))
                .unwrap()
                .with_jitter(Jitter::None)
                .unwrap();
        let cfg = BreakerConfig::new()
            .with_consecutive_failures(1)
            .unwrap()
            .with_open_backoff(schedule)
            .unwrap();
        let mut b: CircuitBreaker<NoWindow> = CircuitBreaker::new(cfg, NoWindow, 0).unwrap();
        call(&mut b, NET, s(0)).unwrap();
        call(&mut b, NET, s(1)).unwrap(); // reopen: 2 s
        let snap = b.snapshot();
        let mut r: CircuitBreaker<NoWindow> =
            CircuitBreaker::restore(cfg, NoWindow, &snap).unwrap();
        assert_eq!(r.state(), State::Open { until: s(3) });
        assert_eq!(r.snapshot(), snap);
        // The restored schedule continues: the next reopen waits 4 s.
        call(&mut r, NET, s(3)).unwrap();
        assert_eq!(r.state(), State::Open { until: s(7) });
    }

    #[test]
    fn documented_size() {
        // 392 + 24 * E + size_of::<W>(), as documented.
        assert_eq!(size_of::<CircuitBreaker<CountWindow<100>>>(), 704);
        assert_eq!(size_of::<CircuitBreaker<NoWindow, 1>>(), 416);
        assert_eq!(size_of::<CircuitBreaker<NoWindow, 2>>(), 440);
        assert_eq!(
            size_of::<CircuitBreaker<TimeWindow<10>, 4>>(),
            392 + 96 + 248
        );
        assert_eq!(size_of::<EventQueue<8>>(), 224);
        assert_eq!(size_of::<BreakerConfig>(), 80);
        assert_eq!(size_of::<CountWindow<100>>(), 120);
        assert_eq!(size_of::<TimeWindow<10>>(), 248);
    }
}
