//! The φ accrual failure detector with arbitrary configs and heartbeat intervals (zero,
//! huge, backwards), and the φ function itself on arbitrary floats (NaN, infinities).
//!
//! Invariants: φ is never NaN and stays in `[0, MAX_PHI]`; φ never decreases as `now`
//! grows; the window never holds more than `N` intervals; mean and standard deviation
//! are finite; `poll_timeout`, when it names an instant, is one at which φ has reached
//! the threshold, and one nanosecond earlier it had not.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use sturdy_core::Instant;
use sturdy_core::phi::{MAX_PHI, PhiAccrual, PhiConfig, phi};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// A heartbeat this many ms after the previous input (negative: a clock that jumped
    /// backwards).
    Heartbeat(i32),
    /// A heartbeat this many ns later (sub-millisecond and zero intervals).
    HeartbeatNs(u16),
    /// Read φ this many ms ahead, and again a bit later.
    Read(u32, u32),
    /// The φ function on raw floats.
    Raw(f64, f64, f64),
}

#[derive(Arbitrary, Debug)]
struct Input {
    threshold: f64,
    min_std_ms: u32,
    pause_ms: u32,
    first_ms: u32,
    start_ms: u64,
    ops: Vec<Op>,
}

fn valid(p: f64) -> bool {
    !p.is_nan() && (0.0..=MAX_PHI).contains(&p)
}

fn drive<const N: usize>(cfg: PhiConfig, input: &Input) {
    let mut now = Instant::from_millis(input.start_ms % (1 << 40));
    let mut d: PhiAccrual<N> = PhiAccrual::new(cfg, now);
    for op in &input.ops {
        match *op {
            Op::Heartbeat(ms) => {
                let span = Duration::from_millis(u64::from(ms.unsigned_abs()));
                now = if ms >= 0 { now + span } else { now - span };
                d.heartbeat(now);
            }
            Op::HeartbeatNs(ns) => {
                now = now + Duration::from_nanos(ns.into());
                d.heartbeat(now);
            }
            Op::Read(a, b) => {
                let t1 = now + Duration::from_millis(a.into());
                let t2 = t1 + Duration::from_millis(b.into());
                let (p1, p2) = (d.phi(t1), d.phi(t2));
                assert!(valid(p1) && valid(p2), "phi {p1} / {p2}");
                assert!(p1 <= p2, "phi decreased: {p1} at {t1}, {p2} at {t2}");
                assert_eq!(d.suspected(t1), p1 >= cfg.threshold());
            }
            Op::Raw(e, m, s) => {
                let p = phi(e, m, s);
                assert!(valid(p), "phi({e}, {m}, {s}) = {p}");
            }
        }
        assert!(d.samples() <= N.max(2));
        let (mean, sd) = (d.mean_interval(), d.std_deviation());
        assert!(mean <= Duration::from_secs(1 << 40) && sd <= Duration::from_secs(1 << 40));
        assert!(valid(d.phi(now)) && valid(d.phi(Instant::MAX)));
        if let Some(at) = d.poll_timeout() {
            assert!(
                d.phi(at) >= cfg.threshold(),
                "poll_timeout {at} before the threshold"
            );
            if at > d.last_heartbeat() {
                let before = Instant::from_nanos(at.as_nanos() - 1);
                assert!(
                    d.phi(before) < cfg.threshold(),
                    "poll_timeout {at} later than needed"
                );
            }
        } else {
            assert!(d.phi(Instant::MAX) < cfg.threshold());
        }
    }
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    crate::debug(&input);
    let ms = |v: u32| Duration::from_millis(v.into());
    let cfg = match PhiConfig::new(
        input.threshold,
        ms(input.min_std_ms),
        ms(input.pause_ms),
        ms(input.first_ms),
    ) {
        Ok(c) => c,
        Err(e) => {
            let bad_threshold = !(input.threshold > 0.0 && input.threshold < MAX_PHI);
            assert!(
                bad_threshold || input.min_std_ms == 0 || input.first_ms == 0,
                "{e}"
            );
            return;
        }
    };
    drive::<1>(cfg, &input);
    drive::<8>(cfg, &input);
    drive::<1000>(cfg, &input);
}
