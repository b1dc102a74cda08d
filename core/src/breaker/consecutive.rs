//! The small circuit breaker: opens after a run of consecutive failures.
//!
//! Built for many instances side by side (one per worker in a fixed-capacity array): it
//! is `Copy`, holds its config, and takes 152 bytes with its default event queue of 4
//! on 64-bit targets and on thumbv7em (checked by the link check); see
//! [`ConsecutiveBreaker`]. The closed path (`try_acquire` then `record` of a
//! success) is a handful of integer compares and stores: no division, no float, no loop.

use super::config::{CONSECUTIVE_MAX_PROBES, ConsecutiveConfig};
use super::drive::Drive;
use super::event::{BreakerEvent, EventRing};
use super::metrics::Metrics;
use super::permit::{Outcome, Permit, Rejected};
use super::snapshot::BreakerSnapshot;
use super::state::{Machine, NO_PROBE, State};
use crate::time::Instant;

/// A circuit breaker that opens after `failure_threshold` counted failures in a row,
/// stays open for a fixed duration, then lets at most `half_open_permits` probes through
/// at a time and closes after `success_threshold` successful probes; a failed or expired
/// probe reopens it.
///
/// **A success while closed resets the run of failures to zero.** The original design
/// decremented its failure count by one instead, so with threshold 3 the sequence
/// fail, fail, success, fail opened it: an error rate of 75 % tripped it, and a
/// dependency failing two calls in three never recovered its count. "Consecutive"
/// should mean consecutive; a caller that wants "k failures among recent calls" uses the
/// windowed [`CircuitBreaker`](super::CircuitBreaker).
///
/// Other differences from the original design's breaker:
/// - half-open admits at most `half_open_permits` probes (the original let every call
///   through while half-open);
/// - open becomes half-open at `until` exactly (`now >= until`; the original used a
///   strict `>`), on an input or `handle_timeout`, never inside a getter;
/// - an outcome from before the latest transition (an older generation) is ignored, so a
///   late failure cannot restart the open period;
/// - failure kinds outside the counted set (by default cancelled and permanent) count
///   neither way.
///
/// **Events.** Transitions queue up in a FIFO of capacity `E` (default
/// [`CONSECUTIVE_EVENTS`] = 4); when full, the oldest is dropped and counted in
/// [`Metrics::events_dropped`]. One input causes at most one event here (at most one
/// transition; an expired probe is reported by the `Opened` event of the reopening,
/// not by a `ProbeExpired` event), so a caller that drains after every input never
/// loses one; the default 4 also keeps a whole cycle (opened, half-opened, closed) and
/// a manual change between drains. `ConsecutiveBreaker::<E>::with_event_capacity` picks
/// another capacity (1 keeps only the newest event, as this breaker did before).
///
/// Shape: `112 + 8 * ceil((9 * E + 4) / 8)` bytes (152 for the default `E = 4`, 128 for
/// `E = 1`), `Copy`.
///
/// ```
/// use core::time::Duration;
/// use sturdy_core::Instant;
/// use sturdy_core::FailureKind;
/// use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, Outcome, State};
///
/// let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original()); // 3 failures, 300 s, 2 successes
/// let t = Instant::from_secs(10);
/// for _ in 0..3 {
///     let p = b.try_acquire(t).expect("closed");
///     b.record(p, Outcome::Failure(FailureKind::Network), t);
/// }
/// assert_eq!(b.state(), State::Open { until: Instant::from_secs(310) });
/// assert_eq!(b.try_acquire(t).unwrap_err().retry_at, Instant::from_secs(310));
/// assert_eq!(b.poll_timeout(), Some(Instant::from_secs(310)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsecutiveBreaker<const E: usize = CONSECUTIVE_EVENTS> {
    machine: Machine<CONSECUTIVE_MAX_PROBES>,
    config: ConsecutiveConfig,
    events: EventRing<E>,
    run: u32,
    calls: u32,
    failures: u32,
    rejected: u32,
}

/// The default capacity of a [`ConsecutiveBreaker`]'s event queue: more than the one
/// event an input can cause; a whole open, half-open, closed cycle and one more.
pub const CONSECUTIVE_EVENTS: usize = 4;

impl ConsecutiveBreaker {
    /// A closed breaker with `config` and the default event queue
    /// ([`CONSECUTIVE_EVENTS`]), its clock watermark at [`Instant::ZERO`].
    pub const fn new(config: ConsecutiveConfig) -> Self {
        Self::with_event_capacity(config)
    }

    /// A breaker with the default event queue restored from `snapshot` (taken with
    /// [`snapshot`](Self::snapshot)), using `config`. Probe slots start free.
    pub fn restore(config: ConsecutiveConfig, snapshot: &BreakerSnapshot) -> Self {
        Self::restore_with_event_capacity(config, snapshot)
    }
}

impl<const E: usize> ConsecutiveBreaker<E> {
    /// A closed breaker with `config` and an event queue of `E` (1..=255; another `E`
    /// fails to compile), its clock watermark at [`Instant::ZERO`]:
    /// `ConsecutiveBreaker::<8>::with_event_capacity(config)`.
    pub const fn with_event_capacity(config: ConsecutiveConfig) -> Self {
        Self {
            machine: Machine::new(),
            config,
            events: EventRing::new(),
            run: 0,
            calls: 0,
            failures: 0,
            rejected: 0,
        }
    }

    /// As [`restore`](ConsecutiveBreaker::restore), with an event queue of `E`.
    pub fn restore_with_event_capacity(
        config: ConsecutiveConfig,
        snapshot: &BreakerSnapshot,
    ) -> Self {
        let mut b = Self::with_event_capacity(config);
        b.machine.restore(snapshot);
        b.run = snapshot.consecutive_failures;
        b.rejected = snapshot.rejected.min(u32::MAX as u64) as u32;
        b
    }

    // ----- getters (change nothing) -----

    /// The current state. A pure getter: an open breaker past its deadline still reads
    /// `Open` until an input (`try_acquire`, `handle_timeout`, ...) at or after it.
    #[inline]
    pub const fn state(&self) -> State {
        self.machine.state
    }

    /// The config.
    pub const fn config(&self) -> &ConsecutiveConfig {
        &self.config
    }

    /// The current generation (incremented by every transition).
    pub const fn generation(&self) -> u32 {
        self.machine.generation
    }

    /// The measurements (outcomes since the breaker last closed or was reset).
    pub fn metrics(&self) -> Metrics {
        Metrics {
            calls: self.calls,
            failures: self.failures,
            slow_calls: 0,
            consecutive_failures: self.run,
            rejected: self.rejected as u64,
            probes_in_flight: self.machine.in_flight(),
            reopens: self.machine.reopens as u32,
            events_dropped: self.events.dropped() as u32,
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
        self.machine.snapshot(self.run, self.rejected as u64, None)
    }

    // ----- inputs -----

    /// Asks leave to make one call at `now`.
    ///
    /// Closed, disabled, metrics-only: always a permit. Open: rejected until the
    /// deadline; at or after it the breaker becomes half-open and this caller gets a
    /// probe. Half-open: a probe while fewer than `half_open_permits` are in flight,
    /// otherwise rejected at once. Forced open: rejected, `retry_at` is
    /// [`Instant::MAX`].
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

    /// Hands back a permit with the call's outcome, at `now`.
    ///
    /// A permit from an older generation, or a half-open probe already handed back,
    /// changes nothing. Takes the permit by value: a permit is handed back once (recording
    /// one twice does not compile; see [`Permit`]).
    /// Closed: a counted failure extends the run and opens the breaker at
    /// `failure_threshold`; a success resets the run to zero. Half-open: a success
    /// counts toward `success_threshold`, a counted failure reopens. Ignored outcomes and
    /// uncounted kinds count neither way (a probe's slot is freed).
    #[inline]
    pub fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant) {
        let now = self.machine.clock.observe(now);
        if self.machine.state == State::Closed
            && permit.generation == self.machine.generation
            && permit.probe == NO_PROBE
        {
            match outcome {
                Outcome::Success => {
                    self.run = 0;
                    self.calls = self.calls.saturating_add(1);
                }
                Outcome::Failure(kind) if self.config.counted.contains(kind) => {
                    self.closed_failure(now);
                }
                _ => {}
            }
            return;
        }
        self.record_slow(permit, outcome, now);
    }

    #[cold]
    fn closed_failure(&mut self, now: Instant) {
        self.run = self.run.saturating_add(1);
        self.calls = self.calls.saturating_add(1);
        self.failures = self.failures.saturating_add(1);
        if self.run >= self.config.failure_threshold {
            self.open(now);
        }
    }

    #[cold]
    fn record_slow(&mut self, permit: Permit, outcome: Outcome, now: Instant) {
        self.advance(now);
        if permit.generation != self.machine.generation {
            return; // stale, or the probe expired just now
        }
        let failed = match outcome {
            Outcome::Success => false,
            Outcome::Failure(kind) if self.config.counted.contains(kind) => true,
            _ => {
                self.machine.free_probe(permit.probe);
                return;
            }
        };
        match self.machine.state {
            State::HalfOpen => {
                if !self.machine.free_probe(permit.probe) {
                    return; // handed back twice
                }
                self.calls = self.calls.saturating_add(1);
                if failed {
                    self.failures = self.failures.saturating_add(1);
                    self.reopen(now);
                } else {
                    self.machine.probe_successes = self.machine.probe_successes.saturating_add(1);
                    if self.machine.probe_successes >= self.config.success_threshold {
                        self.close(now);
                    }
                }
            }
            State::Disabled | State::MetricsOnly => {
                self.calls = self.calls.saturating_add(1);
                if failed {
                    self.failures = self.failures.saturating_add(1);
                    self.run = self.run.saturating_add(1);
                } else {
                    self.run = 0;
                }
                if self.machine.state == State::MetricsOnly
                    && self.run >= self.config.failure_threshold
                {
                    // As if it had opened and closed at once: the run starts over.
                    self.events
                        .push(BreakerEvent::ThresholdExceeded { at: now });
                    self.run = 0;
                }
            }
            // No permit of the current generation exists while open or forced open.
            _ => {}
        }
    }

    /// Hands back a permit whose call never produced an outcome (dropped, cancelled):
    /// counts neither way; a half-open probe frees its slot. Stale permits change
    /// nothing. Adapters call it from their drop guards.
    pub fn release(&mut self, permit: Permit, now: Instant) {
        self.release_permit(permit, now);
    }

    /// Makes the time-driven transitions due at `now`: open to half-open at the end of
    /// the open period; a half-open probe past its permit timeout counts as failed and
    /// reopens the breaker. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_at(now);
    }

    /// The oldest event not yet pulled, from a queue of `E`: when full, the oldest is
    /// dropped and counted in [`Metrics::events_dropped`]; the current
    /// [`state`](Self::state) is always exact.
    pub fn poll_event(&mut self) -> Option<BreakerEvent> {
        self.events.pop(self.config.open_ns)
    }

    // ----- manual control -----

    /// Opens the breaker until [`reset`](Self::reset) (isolates the dependency).
    pub fn force_open(&mut self, now: Instant) {
        self.enter_by_hand(State::ForcedOpen, now);
    }

    /// Admits every call until [`reset`](Self::reset); outcomes are still counted in the
    /// metrics (the run of failures included), no rule is judged, no transition happens.
    pub fn disable(&mut self, now: Instant) {
        self.enter_by_hand(State::Disabled, now);
    }

    /// Admits every call until [`reset`](Self::reset); the rule is judged and a run
    /// reaching the threshold emits [`BreakerEvent::ThresholdExceeded`] instead of
    /// opening (then the run starts over).
    pub fn metrics_only(&mut self, now: Instant) {
        self.enter_by_hand(State::MetricsOnly, now);
    }

    /// Back to closed with empty counts (the rejected count stays), from any state.
    pub fn reset(&mut self, now: Instant) {
        self.enter_by_hand(State::Closed, now);
    }
}

impl<const E: usize> Drive<CONSECUTIVE_MAX_PROBES> for ConsecutiveBreaker<E> {
    #[inline]
    fn machine(&mut self) -> &mut Machine<CONSECUTIVE_MAX_PROBES> {
        &mut self.machine
    }

    fn probe_limits(&self) -> (u8, u64) {
        (self.config.half_open_permits, self.config.permit_timeout_ns)
    }

    fn emit(&mut self, ev: BreakerEvent) {
        self.events.push(ev);
    }

    fn count_rejected(&mut self) {
        self.rejected = self.rejected.saturating_add(1);
    }

    fn open_ns(&mut self) -> u64 {
        self.config.open_ns
    }

    fn probe_expired(&mut self, _now: Instant) {
        // The `Opened` event that follows says it (one event per input, and with an
        // event queue of 1 a `ProbeExpired` event would only be replaced at once).
        self.calls = self.calls.saturating_add(1);
        self.failures = self.failures.saturating_add(1);
    }

    fn restart_rule(&mut self) {
        self.run = 0;
    }

    fn clear_on_close(&mut self) {
        self.run = 0;
        self.calls = 0;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;
    use std::vec::Vec;

    use super::*;
    use crate::failure::{FailureKind, KindSet};

    const NET: Outcome = Outcome::Failure(FailureKind::Network);

    fn s(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn events(b: &mut ConsecutiveBreaker) -> Vec<BreakerEvent> {
        core::iter::from_fn(|| b.poll_event()).collect()
    }

    fn call(b: &mut ConsecutiveBreaker, o: Outcome, now: Instant) -> Result<(), Rejected> {
        let p = b.try_acquire(now)?;
        b.record(p, o, now);
        Ok(())
    }

    #[test]
    fn original_starts_closed() {
        let b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.metrics(), Metrics::default());
    }

    #[test]
    fn original_opens_on_the_third_failure() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        call(&mut b, NET, s(1)).unwrap();
        call(&mut b, NET, s(2)).unwrap();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.metrics().consecutive_failures, 2);
        call(&mut b, NET, s(3)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(303) });
        assert_eq!(
            events(&mut b),
            [BreakerEvent::Opened {
                at: s(3),
                until: s(303)
            }]
        );
        // The getter answers without moving the breaker.
        assert!(!b.would_admit(s(302)));
        assert!(b.would_admit(s(303)));
        assert_eq!(b.state(), State::Open { until: s(303) });
        let r = b.try_acquire(s(4)).unwrap_err();
        assert_eq!(r.retry_at, s(303));
        assert_eq!(r.state, State::Open { until: s(303) });
        assert_eq!(b.metrics().rejected, 1);
    }

    #[test]
    fn success_while_closed_resets_the_run() {
        // The original decremented (2 failures then a success left a count of 1, and
        // one more failure... reached 2, then a 3rd failure opened). Here the run is 0.
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        call(&mut b, NET, s(1)).unwrap();
        call(&mut b, NET, s(2)).unwrap();
        call(&mut b, Outcome::Success, s(3)).unwrap();
        assert_eq!(b.metrics().consecutive_failures, 0);
        call(&mut b, NET, s(4)).unwrap();
        call(&mut b, NET, s(5)).unwrap();
        assert_eq!(b.state(), State::Closed);
        call(&mut b, NET, s(6)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(306) });
        let m = b.metrics();
        assert_eq!((m.calls, m.failures), (6, 5));
    }

    #[test]
    fn original_half_open_after_timeout_then_two_successes_close() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        for t in 1..=3 {
            call(&mut b, NET, s(t)).unwrap();
        }
        let _ = events(&mut b);
        // One nanosecond before the deadline: still open, nothing due.
        let before = Instant::from_nanos(s(303).as_nanos() - 1);
        b.handle_timeout(before);
        assert_eq!(b.state(), State::Open { until: s(303) });
        assert_eq!(events(&mut b), []);
        // At the deadline, with no caller: half-open.
        assert_eq!(b.poll_timeout(), Some(s(303)));
        b.handle_timeout(s(303));
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(events(&mut b), [BreakerEvent::HalfOpened { at: s(303) }]);
        assert_eq!(b.poll_timeout(), None);
        let p = b.try_acquire(s(304)).unwrap();
        assert!(p.is_probe());
        // The probe's expiry is the only deadline.
        assert_eq!(b.poll_timeout(), Some(s(604)));
        b.record(p, Outcome::Success, s(305));
        assert_eq!(b.state(), State::HalfOpen);
        call(&mut b, Outcome::Success, s(306)).unwrap();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(events(&mut b), [BreakerEvent::Closed { at: s(306) }]);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.metrics(), Metrics::default());
    }

    #[test]
    fn original_half_open_failure_reopens_with_a_new_timer() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        for t in 1..=3 {
            call(&mut b, NET, s(t)).unwrap();
        }
        let p = b.try_acquire(s(400)).unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        b.record(p, NET, s(410));
        assert_eq!(b.state(), State::Open { until: s(710) });
        assert_eq!(b.metrics().reopens, 1);
        // Three state changes between drains: the default queue keeps all three (the
        // breaker once had one slot and kept only the last, with 2 dropped).
        assert_eq!(
            events(&mut b),
            [
                BreakerEvent::Opened {
                    at: s(3),
                    until: s(303)
                },
                BreakerEvent::HalfOpened { at: s(400) },
                BreakerEvent::Opened {
                    at: s(410),
                    until: s(710)
                },
            ]
        );
        assert_eq!(b.metrics().events_dropped, 0);
    }

    #[test]
    fn event_capacity_is_a_parameter() {
        fn three_changes<const E: usize>(b: &mut ConsecutiveBreaker<E>) -> Vec<BreakerEvent> {
            for t in 1..=3 {
                let p = b.try_acquire(s(t)).unwrap();
                b.record(p, NET, s(t));
            }
            let p = b.try_acquire(s(400)).unwrap();
            b.record(p, NET, s(410));
            core::iter::from_fn(|| b.poll_event()).collect()
        }
        let cfg = ConsecutiveConfig::original();
        let mut one = ConsecutiveBreaker::<1>::with_event_capacity(cfg);
        let opened = BreakerEvent::Opened {
            at: s(410),
            until: s(710),
        };
        assert_eq!(three_changes(&mut one), [opened]);
        assert_eq!(one.metrics().events_dropped, 2);
        let mut two = ConsecutiveBreaker::<2>::with_event_capacity(cfg);
        assert_eq!(
            three_changes(&mut two),
            [BreakerEvent::HalfOpened { at: s(400) }, opened]
        );
        assert_eq!(two.metrics().events_dropped, 1);
        let mut three = ConsecutiveBreaker::<3>::with_event_capacity(cfg);
        assert_eq!(three_changes(&mut three).len(), 3);
        assert_eq!(three.metrics().events_dropped, 0);
        // Restored with a capacity of its own.
        let r = ConsecutiveBreaker::<2>::restore_with_event_capacity(cfg, &three.snapshot());
        assert_eq!(r.state(), State::Open { until: s(710) });
    }

    fn half_open_with_permits(permits: u8) -> ConsecutiveBreaker {
        let cfg = ConsecutiveConfig::new(1, Duration::from_secs(10), 3)
            .unwrap()
            .with_half_open_permits(permits)
            .unwrap()
            .with_permit_timeout(Duration::from_secs(5))
            .unwrap();
        let mut b = ConsecutiveBreaker::new(cfg);
        call(&mut b, NET, s(0)).unwrap();
        b.handle_timeout(s(10));
        assert_eq!(b.state(), State::HalfOpen);
        b
    }

    #[test]
    fn half_open_admits_exactly_its_permits_among_five_callers() {
        for permits in [1u8, 2] {
            let mut b = half_open_with_permits(permits);
            assert!(b.would_admit(s(11)));
            let results: Vec<_> = (0..5).map(|_| b.try_acquire(s(11))).collect();
            let admitted = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(admitted, permits as usize);
            for r in results.iter().filter_map(|r| r.as_ref().err()) {
                // Rejected at once, told to come back when the oldest probe expires.
                assert_eq!(r.retry_at, s(16));
                assert_eq!(r.state, State::HalfOpen);
            }
            assert_eq!(b.metrics().rejected, 5 - permits as u64);
            assert_eq!(b.metrics().probes_in_flight, permits);
            assert!(!b.would_admit(s(11)));
            // A finished probe frees its slot for exactly one more caller.
            let first = results.into_iter().find_map(Result::ok).unwrap();
            b.record(first, Outcome::Success, s(12));
            assert!(b.try_acquire(s(12)).is_ok());
            assert!(b.try_acquire(s(12)).is_err());
        }
    }

    #[test]
    fn released_probe_frees_its_slot_without_counting() {
        let mut b = half_open_with_permits(1);
        let p = b.try_acquire(s(11)).unwrap();
        // Only a copy the crate makes (a cloned ledger's parked permit) can come back
        // twice; the probe's ticket still frees its slot once.
        let (again, late) = (p.dup(), p.dup());
        b.release(p, s(12));
        assert_eq!(b.metrics().probes_in_flight, 0);
        assert_eq!(b.state(), State::HalfOpen);
        // Releasing twice or recording after release changes nothing.
        b.release(again, s(12));
        b.record(late, Outcome::Success, s(12));
        let p2 = b.try_acquire(s(13)).unwrap();
        b.record(p2, Outcome::Success, s(13));
        // success_threshold is 3: one success so far (the released one did not count).
        assert_eq!(b.state(), State::HalfOpen);
        let m = b.metrics();
        assert_eq!((m.calls, m.failures), (2, 1)); // the tripping failure, one probe
        // An ignored outcome frees the slot and counts neither way too.
        let p3 = b.try_acquire(s(14)).unwrap();
        b.record(p3, Outcome::Ignored, s(14));
        assert_eq!(b.metrics().probes_in_flight, 0);
        assert_eq!(b.metrics().calls, 2);
    }

    #[test]
    fn lost_probe_expires_and_reopens() {
        let mut b = half_open_with_permits(2);
        let p1 = b.try_acquire(s(11)).unwrap();
        let _p2 = b.try_acquire(s(12)).unwrap();
        b.record(p1, Outcome::Success, s(13));
        // p2 never reports back: it expires at 12 + 5 = 17 s.
        assert_eq!(b.poll_timeout(), Some(s(17)));
        b.handle_timeout(Instant::from_nanos(s(17).as_nanos() - 1));
        assert_eq!(b.state(), State::HalfOpen);
        b.handle_timeout(s(17));
        assert_eq!(b.state(), State::Open { until: s(27) });
        assert_eq!(b.metrics().reopens, 1);
        // The expired probe reporting late changes nothing.
        b.record(_p2, Outcome::Success, s(18));
        assert_eq!(b.state(), State::Open { until: s(27) });
    }

    #[test]
    fn expiry_is_judged_before_a_late_outcome() {
        let mut b = half_open_with_permits(1);
        let p = b.try_acquire(s(11)).unwrap();
        // No handle_timeout was called; the success arrives after the expiry (16 s).
        b.record(p, Outcome::Success, s(20));
        assert_eq!(b.state(), State::Open { until: s(30) });
    }

    #[test]
    fn failures_arriving_while_open_change_nothing() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        let mut slow: Vec<Permit> = (0..5).map(|_| b.try_acquire(s(1)).unwrap()).collect();
        let last = slow.pop().unwrap();
        let mut slow = slow.into_iter();
        for p in slow.by_ref().take(3) {
            b.record(p, NET, s(2));
        }
        assert_eq!(b.state(), State::Open { until: s(302) });
        let g = b.generation();
        // Two more in-flight calls fail late, while open: no restart, no extension.
        let late = last.dup();
        for p in slow.chain([last]) {
            b.record(p, NET, s(100));
        }
        assert_eq!(b.state(), State::Open { until: s(302) });
        assert_eq!(b.generation(), g);
        assert_eq!(b.metrics().failures, 3);
        // ...nor after the breaker moved on to half-open.
        b.handle_timeout(s(302));
        b.record(late, NET, s(303));
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn clock_jumping_backwards() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        for _ in 0..3 {
            call(&mut b, NET, s(100)).unwrap();
        }
        assert_eq!(b.state(), State::Open { until: s(400) });
        // The clock jumps back to 0: reads as 100 s, nothing fires early.
        b.handle_timeout(s(0));
        let r = b.try_acquire(s(0)).unwrap_err();
        assert_eq!(r.retry_at, s(400));
        b.handle_timeout(s(400));
        assert_eq!(b.state(), State::HalfOpen);
        // A probe issued "before" the half-open started reads as issued at 400 s.
        let p = b.try_acquire(s(5)).unwrap();
        assert_eq!(p.issued_at(), s(400));
        assert_eq!(b.poll_timeout(), Some(s(700)));
        assert_eq!(b.snapshot().latest, s(400));
    }

    #[test]
    fn uncounted_kinds_count_neither_way() {
        let cfg = ConsecutiveConfig::new(2, Duration::from_secs(1), 1)
            .unwrap()
            .with_counted_kinds(KindSet::EMPTY.with(FailureKind::Gpu));
        let mut b = ConsecutiveBreaker::new(cfg);
        call(&mut b, Outcome::Failure(FailureKind::Gpu), s(1)).unwrap();
        call(&mut b, Outcome::Failure(FailureKind::Network), s(1)).unwrap();
        call(&mut b, Outcome::Ignored, s(1)).unwrap();
        assert_eq!(b.metrics().consecutive_failures, 1);
        call(&mut b, Outcome::Failure(FailureKind::Gpu), s(1)).unwrap();
        assert_eq!(b.state(), State::Open { until: s(2) });
        // Default counted kinds: cancelled and permanent do not count.
        let mut d = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        for _ in 0..5 {
            call(&mut d, Outcome::Failure(FailureKind::Cancelled), s(1)).unwrap();
            call(&mut d, Outcome::Failure(FailureKind::Permanent), s(1)).unwrap();
        }
        assert_eq!(d.state(), State::Closed);
    }

    #[test]
    fn manual_modes() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        let early = b.try_acquire(s(1)).unwrap();
        b.force_open(s(2));
        assert_eq!(b.state(), State::ForcedOpen);
        let r = b.try_acquire(s(3)).unwrap_err();
        assert_eq!((r.retry_at, r.state), (Instant::MAX, State::ForcedOpen));
        assert_eq!(b.poll_timeout(), None);
        b.record(early, NET, s(3)); // stale
        assert_eq!(events(&mut b), [BreakerEvent::ForcedOpen { at: s(2) }]);

        b.disable(s(10));
        for _ in 0..10 {
            call(&mut b, NET, s(11)).unwrap();
        }
        assert_eq!(b.state(), State::Disabled);
        assert_eq!(b.metrics().failures, 10);
        assert_eq!(b.poll_timeout(), None);

        b.metrics_only(s(20));
        assert_eq!(
            events(&mut b),
            [
                BreakerEvent::Disabled { at: s(10) },
                BreakerEvent::MetricsOnly { at: s(20) }
            ]
        );
        for t in 21..=23 {
            call(&mut b, NET, s(t)).unwrap();
        }
        assert_eq!(b.state(), State::MetricsOnly);
        assert_eq!(
            events(&mut b),
            [BreakerEvent::ThresholdExceeded { at: s(23) }]
        );
        call(&mut b, NET, s(24)).unwrap(); // the run started over: no second event
        assert_eq!(events(&mut b), []);

        b.reset(s(30));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(events(&mut b), [BreakerEvent::Closed { at: s(30) }]);
        assert_eq!(b.metrics().failures, 0);
        assert_eq!(b.metrics().rejected, 1);
    }

    #[test]
    fn snapshot_restores_state_and_generation() {
        let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
        let old = b.try_acquire(s(1)).unwrap();
        for _ in 0..3 {
            call(&mut b, NET, s(5)).unwrap();
        }
        let snap = b.snapshot();
        let mut r = ConsecutiveBreaker::restore(ConsecutiveConfig::original(), &snap);
        assert_eq!(r.state(), State::Open { until: s(305) });
        assert_eq!(r.generation(), b.generation());
        assert_eq!(r.snapshot(), snap);
        r.record(old, Outcome::Success, s(6));
        assert_eq!(r.try_acquire(s(6)).unwrap_err().retry_at, s(305));
    }

    #[test]
    fn documented_size() {
        // 112 + 8 * ceil((9 * E + 4) / 8), as documented.
        assert_eq!(size_of::<ConsecutiveBreaker>(), 152);
        assert_eq!(size_of::<ConsecutiveBreaker<1>>(), 128);
        assert_eq!(size_of::<ConsecutiveBreaker<2>>(), 136);
        assert_eq!(size_of::<ConsecutiveBreaker<8>>(), 192);
        assert_eq!(size_of::<ConsecutiveConfig>(), 32);
        assert_eq!(size_of::<Permit>(), 16);
        assert_eq!(size_of::<State>(), 16);
        assert_eq!(size_of::<Rejected>(), 24);
        assert_eq!(size_of::<BreakerEvent>(), 24);
    }
}
