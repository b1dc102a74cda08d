//! Property tests: both breakers against a plain reference model, driven by the same
//! random operation sequences, plus invariants and a model of the count window.

use core::time::Duration;
use std::collections::VecDeque;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::failure::FailureKind;
use crate::time::Instant;

/// The reference: the breaker's rules written as plainly as possible.
#[derive(Debug)]
struct Model {
    threshold: u32,
    open_ns: u64,
    successes_needed: u32,
    permits: usize,
    timeout_ns: u64,
    state: State,
    generation: u32,
    latest: u64,
    run: u32,
    calls: u32,
    failures: u32,
    rejected: u64,
    reopens: u32,
    /// (probe id, expiry) of each probe in flight.
    probes: Vec<(u64, u64)>,
    probe_successes: u32,
    next_id: u64,
    events: Vec<BreakerEvent>,
}

/// A permit as the model sees it.
#[derive(Clone, Copy, Debug)]
struct MPermit {
    generation: u32,
    probe: Option<u64>,
}

impl Model {
    fn new(threshold: u32, open_ns: u64, successes: u32, permits: usize, timeout_ns: u64) -> Self {
        Self {
            threshold,
            open_ns,
            successes_needed: successes,
            permits,
            timeout_ns,
            state: State::Closed,
            generation: 0,
            latest: 0,
            run: 0,
            calls: 0,
            failures: 0,
            rejected: 0,
            reopens: 0,
            probes: Vec::new(),
            probe_successes: 0,
            next_id: 0,
            events: Vec::new(),
        }
    }

    fn observe(&mut self, now: u64) -> u64 {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn enter(&mut self, to: State) {
        self.state = to;
        self.generation += 1;
        self.probes.clear();
        self.probe_successes = 0;
    }

    fn open(&mut self, now: u64) {
        let until = Instant::from_nanos(now + self.open_ns);
        self.enter(State::Open { until });
        self.events.push(BreakerEvent::Opened {
            at: Instant::from_nanos(now),
            until,
        });
    }

    fn close(&mut self, now: u64) {
        self.enter(State::Closed);
        self.run = 0;
        self.calls = 0;
        self.failures = 0;
        self.reopens = 0;
        self.events.push(BreakerEvent::Closed {
            at: Instant::from_nanos(now),
        });
    }

    fn advance(&mut self, now: u64) {
        if let State::Open { until } = self.state {
            if now >= until.as_nanos() {
                self.enter(State::HalfOpen);
                self.events.push(BreakerEvent::HalfOpened {
                    at: Instant::from_nanos(now),
                });
            }
        } else if self.state == State::HalfOpen && self.probes.iter().any(|&(_, e)| e <= now) {
            self.calls += 1;
            self.failures += 1;
            self.events.push(BreakerEvent::ProbeExpired {
                at: Instant::from_nanos(now),
            });
            self.reopens += 1;
            self.open(now);
        }
    }

    fn acquire(&mut self, now: u64) -> Result<MPermit, Instant> {
        let now = self.observe(now);
        if matches!(
            self.state,
            State::Closed | State::Disabled | State::MetricsOnly
        ) {
            return Ok(MPermit {
                generation: self.generation,
                probe: None,
            });
        }
        self.advance(now);
        let refusal = match self.state {
            State::HalfOpen if self.probes.len() < self.permits => {
                let id = self.next_id;
                self.next_id += 1;
                self.probes.push((id, now + self.timeout_ns));
                return Ok(MPermit {
                    generation: self.generation,
                    probe: Some(id),
                });
            }
            State::HalfOpen => {
                Instant::from_nanos(self.probes.iter().map(|&(_, e)| e).min().unwrap())
            }
            State::Open { until } => until,
            _ => Instant::MAX,
        };
        self.rejected += 1;
        Err(refusal)
    }

    /// `counted`: `Some(failed)`, or `None` for an outcome that counts neither way.
    fn record(&mut self, p: MPermit, counted: Option<bool>, now: u64) {
        let now = self.observe(now);
        self.advance(now);
        if p.generation != self.generation {
            return;
        }
        match self.state {
            State::HalfOpen => {
                let Some(id) = p.probe else { return };
                let Some(i) = self.probes.iter().position(|&(pid, _)| pid == id) else {
                    return;
                };
                self.probes.remove(i);
                let Some(failed) = counted else { return };
                self.calls += 1;
                if failed {
                    self.failures += 1;
                    self.reopens += 1;
                    self.open(now);
                } else {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.successes_needed {
                        self.close(now);
                    }
                }
            }
            State::Closed | State::Disabled | State::MetricsOnly => {
                let Some(failed) = counted else { return };
                self.calls += 1;
                if failed {
                    self.failures += 1;
                    self.run += 1;
                } else {
                    self.run = 0;
                }
                if self.run >= self.threshold {
                    if self.state == State::Closed {
                        self.open(now);
                    } else if self.state == State::MetricsOnly {
                        self.events.push(BreakerEvent::ThresholdExceeded {
                            at: Instant::from_nanos(now),
                        });
                        self.run = 0;
                    }
                }
            }
            _ => {}
        }
    }

    fn release(&mut self, p: MPermit, now: u64) {
        let now = self.observe(now);
        self.advance(now);
        if p.generation == self.generation
            && let Some(id) = p.probe
        {
            self.probes.retain(|&(pid, _)| pid != id);
        }
    }

    fn handle_timeout(&mut self, now: u64) {
        let now = self.observe(now);
        self.advance(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            State::HalfOpen => self
                .probes
                .iter()
                .map(|&(_, e)| Instant::from_nanos(e))
                .min(),
            _ => None,
        }
    }

    fn manual(&mut self, op: u8, now: u64) {
        let now = self.observe(now);
        let at = Instant::from_nanos(now);
        match op {
            0 => {
                self.enter(State::ForcedOpen);
                self.events.push(BreakerEvent::ForcedOpen { at });
            }
            1 => {
                self.enter(State::Disabled);
                self.events.push(BreakerEvent::Disabled { at });
            }
            2 => {
                self.enter(State::MetricsOnly);
                self.run = 0;
                self.events.push(BreakerEvent::MetricsOnly { at });
            }
            _ => self.close(now),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Acquire(i64),
    /// Index into the held permits, outcome selector, keep the permit (to hand it back
    /// twice), time step.
    Record(usize, u8, bool, i64),
    Release(usize, bool, i64),
    Timeout(i64),
    Manual(u8, i64),
}

fn step() -> impl Strategy<Value = i64> {
    // Milliseconds: mostly forward, sometimes a jump backwards.
    prop_oneof![
        6 => 0..3_000i64,
        2 => 3_000..40_000i64,
        1 => -20_000..0i64,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => step().prop_map(Op::Acquire),
        8 => (any::<usize>(), 0..4u8, any::<bool>(), step()).prop_map(|(i, o, k, d)| Op::Record(i, o, k, d)),
        2 => (any::<usize>(), any::<bool>(), step()).prop_map(|(i, k, d)| Op::Release(i, k, d)),
        3 => step().prop_map(Op::Timeout),
        1 => (0..4u8, step()).prop_map(|(m, d)| Op::Manual(m, d)),
    ]
}

fn outcome(sel: u8) -> (Outcome, Option<bool>) {
    match sel {
        0 => (Outcome::Success, Some(false)),
        1 => (Outcome::Failure(FailureKind::Network), Some(true)),
        2 => (Outcome::Failure(FailureKind::Permanent), None),
        _ => (Outcome::Ignored, None),
    }
}

fn drain<W: SlidingWindow, const E: usize>(b: &mut CircuitBreaker<W, E>) -> Vec<BreakerEvent> {
    core::iter::from_fn(|| b.poll_event()).collect()
}

fn check_invariants(state: State, poll: Option<Instant>, m: &Metrics, permits: u8) {
    assert!(m.probes_in_flight <= permits, "more probes than permits");
    if state != State::HalfOpen {
        assert_eq!(m.probes_in_flight, 0);
    }
    if matches!(
        state,
        State::Closed | State::Disabled | State::MetricsOnly | State::ForcedOpen
    ) {
        assert_eq!(poll, None, "a deadline while {state:?}");
    }
    let (f, s) = (m.failure_rate(), m.slow_call_rate());
    assert!((0.0..=1.0).contains(&f) && (0.0..=1.0).contains(&s));
    assert!(m.failures <= m.calls && m.slow_calls <= m.calls);
}

proptest! {
    #[test]
    fn breakers_match_the_model(
        threshold in 1..4u32,
        open_s in 1..10u64,
        successes in 1..3u16,
        permits in 1..=2u8,
        timeout_s in 1..10u64,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let open = Duration::from_secs(open_s);
        let timeout = Duration::from_secs(timeout_s);
        let small_cfg = ConsecutiveConfig::new(threshold, open, successes)
            .unwrap()
            .with_half_open_permits(permits)
            .unwrap()
            .with_permit_timeout(timeout)
            .unwrap();
        let wide_cfg = BreakerConfig::new()
            .with_consecutive_failures(threshold)
            .unwrap()
            .with_open_duration(open)
            .unwrap()
            .with_success_threshold(successes)
            .unwrap()
            .with_half_open_permits(permits)
            .unwrap()
            .with_permit_timeout(timeout)
            .unwrap();
        let mut small = ConsecutiveBreaker::new(small_cfg);
        let mut wide: CircuitBreaker<NoWindow, 64> = CircuitBreaker::new(wide_cfg, NoWindow, 9).unwrap();
        let mut model = Model::new(
            threshold,
            open_s * 1_000_000_000,
            successes as u32,
            permits as usize,
            timeout_s * 1_000_000_000,
        );
        let mut held: Vec<(Permit, Permit, MPermit)> = Vec::new();
        let mut t: i64 = 0;
        for op in ops {
            let d = match op {
                Op::Acquire(d) | Op::Record(.., d) | Op::Release(_, _, d) | Op::Timeout(d) | Op::Manual(_, d) => d,
            };
            t = (t + d * 1_000_000).max(0);
            let now = Instant::from_nanos(t as u64);
            model.events.clear();
            match op {
                Op::Acquire(_) => {
                    let (wa, wb) = (small.would_admit(now), wide.would_admit(now));
                    let (a, b, m) = (small.try_acquire(now), wide.try_acquire(now), model.acquire(t as u64));
                    prop_assert_eq!(wa, a.is_ok());
                    prop_assert_eq!(wb, b.is_ok());
                    match (a, b, m) {
                        (Ok(a), Ok(b), Ok(m)) => {
                            prop_assert_eq!(a.is_probe(), m.probe.is_some());
                            prop_assert_eq!(b.is_probe(), m.probe.is_some());
                            held.push((a, b, m));
                        }
                        (Err(a), Err(b), Err(m)) => {
                            prop_assert_eq!(a.retry_at, m);
                            prop_assert_eq!(b.retry_at, m);
                            prop_assert_eq!(a.state, model.state);
                            prop_assert_eq!(b.state, model.state);
                        }
                        (a, b, m) => prop_assert!(false, "admission differs: {:?} {:?} {:?}", a, b, m),
                    }
                }
                Op::Record(i, _, keep, _) | Op::Release(i, keep, _) if !held.is_empty() => {
                    let i = i % held.len();
                    // A kept permit comes back again later (as a cloned ledger's could).
                    let (a, b, m) = if keep {
                        (held[i].0.dup(), held[i].1.dup(), held[i].2)
                    } else {
                        held.swap_remove(i)
                    };
                    if let Op::Record(_, sel, _, _) = op {
                        let (o, counted) = outcome(sel);
                        small.record(a, o, now);
                        wide.record(b, o, now);
                        model.record(m, counted, t as u64);
                    } else {
                        small.release(a, now);
                        wide.release(b, now);
                        model.release(m, t as u64);
                    }
                }
                Op::Record(..) | Op::Release(..) | Op::Timeout(_) => {
                    small.handle_timeout(now);
                    wide.handle_timeout(now);
                    model.handle_timeout(t as u64);
                }
                Op::Manual(k, _) => {
                    let f: [fn(&mut ConsecutiveBreaker, Instant); 4] = [
                        ConsecutiveBreaker::force_open,
                        ConsecutiveBreaker::disable,
                        ConsecutiveBreaker::metrics_only,
                        ConsecutiveBreaker::reset,
                    ];
                    f[k as usize](&mut small, now);
                    match k {
                        0 => wide.force_open(now),
                        1 => wide.disable(now),
                        2 => wide.metrics_only(now),
                        _ => wide.reset(now),
                    }
                    model.manual(k, t as u64);
                }
            }
            // Same state, same deadline, same measurements, same events.
            prop_assert_eq!(small.state(), model.state);
            prop_assert_eq!(wide.state(), model.state);
            prop_assert_eq!(small.poll_timeout(), model.poll_timeout());
            prop_assert_eq!(wide.poll_timeout(), model.poll_timeout());
            prop_assert_eq!(small.generation(), model.generation);
            prop_assert_eq!(wide.generation(), model.generation);
            let (ms, mw) = (small.metrics(), wide.metrics());
            prop_assert_eq!(ms.consecutive_failures, model.run);
            prop_assert_eq!(mw.consecutive_failures, model.run);
            prop_assert_eq!((ms.calls, ms.failures), (model.calls, model.failures));
            prop_assert_eq!(ms.rejected, model.rejected);
            prop_assert_eq!(mw.rejected, model.rejected);
            prop_assert_eq!(ms.reopens, model.reopens);
            prop_assert_eq!(mw.reopens, model.reopens);
            prop_assert_eq!(ms.probes_in_flight as usize, model.probes.len());
            prop_assert_eq!(mw.probes_in_flight as usize, model.probes.len());
            prop_assert_eq!(drain(&mut wide), model.events.clone());
            // The small breaker queues the same events, less ProbeExpired (its Opened
            // event says it).
            let expected: Vec<BreakerEvent> = model
                .events
                .iter()
                .filter(|e| !matches!(e, BreakerEvent::ProbeExpired { .. }))
                .copied()
                .collect();
            prop_assert_eq!(core::iter::from_fn(|| small.poll_event()).collect::<Vec<_>>(), expected);
            if let Some(at) = small.poll_timeout() {
                prop_assert!(at.as_nanos() > model.latest, "deadline already due");
            }
            check_invariants(small.state(), small.poll_timeout(), &ms, permits);
            check_invariants(wide.state(), wide.poll_timeout(), &mw, permits);
        }
    }

    #[test]
    fn count_window_matches_a_plain_queue(
        ops in proptest::collection::vec((0..4u8, 0..300u64, step()), 1..200),
        min_calls in 1..=8u32,
        rate in 0.05f32..=1.0,
        permits in 1..=16u8,
    ) {
        let cfg = BreakerConfig::new()
            .with_failure_rate_threshold(rate)
            .unwrap()
            .with_slow_calls(Duration::from_millis(100), 0.9)
            .unwrap()
            .with_minimum_calls(min_calls)
            .unwrap()
            .with_half_open_permits(permits)
            .unwrap()
            .with_open_duration(Duration::from_secs(5))
            .unwrap()
            .with_permit_timeout(Duration::from_secs(2))
            .unwrap();
        let mut b: CircuitBreaker<CountWindow<8>> = CircuitBreaker::new(cfg, CountWindow::new(), 1).unwrap();
        // The last 8 counted outcomes while closed: (failed, slow).
        let mut queue: VecDeque<(bool, bool)> = VecDeque::new();
        let mut t: i64 = 0;
        let mut latest = Instant::ZERO;
        for (sel, latency_ms, d) in ops {
            t = (t + d * 1_000_000).max(0);
            let now = Instant::from_nanos(t as u64);
            let before = b.state();
            if let Ok(p) = b.try_acquire(now) {
                let done = now + Duration::from_millis(latency_ms);
                // The breaker measures from the watermarked issue instant.
                let slow = done.max(p.issued_at()) - p.issued_at() > Duration::from_millis(100);
                let (o, counted) = outcome(sel);
                let state = b.state();
                b.record(p, o, done);
                if state == State::Closed {
                    if let Some(failed) = counted {
                        if queue.len() == 8 {
                            queue.pop_front();
                        }
                        queue.push_back((failed, slow));
                    }
                    let calls = queue.len() as u64;
                    let fails = queue.iter().filter(|q| q.0).count() as u64;
                    let slows = queue.iter().filter(|q| q.1).count() as u64;
                    let ppm = (rate as f64 * 1e6 + 0.5) as u64;
                    let should_open = counted.is_some()
                        && calls >= min_calls as u64
                        && (fails * 1_000_000 >= ppm.max(1) * calls || slows * 1_000_000 >= 900_000 * calls);
                    if should_open {
                        prop_assert!(matches!(b.state(), State::Open { .. }), "should have opened");
                        queue.clear();
                    } else {
                        prop_assert_eq!(b.state(), State::Closed);
                        let m = b.metrics();
                        prop_assert_eq!((m.calls as u64, m.failures as u64, m.slow_calls as u64), (calls, fails, slows));
                    }
                }
            } else {
                prop_assert!(!before.admits_all());
            }
            if b.state() != State::Closed {
                queue.clear();
            }
            let m = b.metrics();
            check_invariants(b.state(), b.poll_timeout(), &m, permits);
            // After an input nothing is overdue: every input runs the timers first.
            latest = latest.max(b.snapshot().latest);
            if let Some(at) = b.poll_timeout() {
                prop_assert!(at > latest, "deadline {:?} already due at {:?}", at, latest);
            }
        }
    }
}
