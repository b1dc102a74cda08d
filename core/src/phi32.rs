//! The φ accrual failure detector in single precision, for microcontrollers whose FPU
//! has no double precision (Cortex-M4F, M33F): [`PhiAccrualF32`] and [`phi_f32`].
//!
//! The same detector as [`phi`](crate::phi) (Akka's rules, the logistic approximation
//! of the normal CDF, the bootstrap window, outages not sampled, time never running
//! backwards), with three changes that keep double-precision arithmetic out of the
//! image:
//! - φ is computed in `f32` (`libm::expf`, `libm::log1pf`), so on a single-precision
//!   FPU it runs in hardware instead of in soft-float routines;
//! - the window stores intervals as `u32` **milliseconds** (Akka's own unit), capped at
//!   2²⁴ ms (about 4.7 hours; a longer interval is recorded as that), so it takes half
//!   the RAM of the `f64` detector's `u64` nanoseconds;
//! - the mean and the variance come from exact integer sums (`u64`, and one `u128`
//!   product per heartbeat), converted to `f32` once per heartbeat.
//!
//! **Agreement with the `f64` detector**, checked by the tests: on Akka's reference
//! values (mean 1000 ms, σ 100 ms, silences of 1200, 1400, 1600 and 1700 ms: φ = 1.6,
//! 4.7, 10.8, 15.3) the two agree within **1e-4** and both within 0.1 of the published
//! values; over random millisecond heartbeat histories (σ ≥ 10 ms, silences up to
//! 10⁶ ms) within `1e-3 · max(1, φ)`.
//!
//! Code and RAM on thumbv7em-none-eabihf (Cortex-M4F/M7F: single-precision FPU),
//! measured on `core/link-check` (a `no_main` binary exercising the whole core; Rust
//! 1.95, release profile, `panic = "abort"`) built three times: with the `f64`
//! detector, with this one (feature `phi-f32`), and with neither (`no-phi`). `.text`
//! is `llvm-size -A` of the linked ELF; RAM is `size_of`, asserted at compile time in
//! the link check:
//!
//! | detector                 | link check `.text` | φ's share of it | RAM, `N` = 1000 |
//! |--------------------------|--------------------|-----------------|-----------------|
//! | none                     | 38 412 bytes       | -               | -               |
//! | `PhiAccrual<N>` (`f64`)  | 45 236 bytes       | 6 824 bytes     | 8 160 bytes     |
//! | `PhiAccrualF32<N>`       | 40 908 bytes       | 2 496 bytes     | 4 064 bytes     |
//!
//! The `f64` detector's share is mostly soft-float: `__adddf3`, `__muldf3`,
//! `__divdf3`, the `f64` compares and `libm`'s `exp`, `log1p` and `sqrt` in software.
//! The `f32` build links no double-precision routine that the rest of the core does
//! not already use (the no-φ build has the same `__divdf3`/`__muldf3`); its share is
//! `expf`, `log1pf`, `sqrtf`, φ and the window. RAM is `4 N + 64` bytes for this
//! detector and `8 N + 160` for the `f64` one.
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::Instant;
//! use sturdy_core::phi::PhiConfig;
//! use sturdy_core::phi32::PhiAccrualF32;
//!
//! let mut d = PhiAccrualF32::<100>::new(PhiConfig::default(), Instant::ZERO);
//! for s in 1..=10 {
//!     d.heartbeat(Instant::from_secs(s));
//! }
//! assert!(!d.suspected(Instant::from_millis(14_000))); // 4 s of silence
//! assert!(d.suspected(Instant::from_millis(15_000))); // 5 s: suspected
//! ```

use core::time::Duration;

use crate::phi::PhiConfig;
use crate::time::{Instant, Monotonic, duration_to_nanos};

/// The largest φ [`phi_f32`] reports (as [`MAX_PHI`](crate::phi::MAX_PHI)).
pub const MAX_PHI_F32: f32 = 1.0e6;

/// Longest interval the window records, ms (2²⁴ ms, about 4.7 hours).
const MAX_INTERVAL_MS: u32 = 1 << 24;

/// An upper bound of φ at or before μ: log10(2) ≈ 0.30103 plus margin for `f32`
/// rounding.
const PHI_AT_MEAN_BOUND: f32 = 0.302;

/// φ for a silence of `elapsed_ms` when intervals have mean `mean_ms` and standard
/// deviation `std_dev_ms` (ms), in single precision: [`phi`](crate::phi::phi) in `f32`.
///
/// In `[0, MAX_PHI_F32]`, never NaN (a NaN or non-positive `std_dev_ms` gives
/// [`MAX_PHI_F32`] when `elapsed_ms > mean_ms`, else 0).
///
/// ```
/// use sturdy_core::phi32::phi_f32;
/// // Akka's published values: mean 1000 ms, σ 100 ms.
/// assert!((phi_f32(1600.0, 1000.0, 100.0) - 10.8).abs() < 0.1);
/// ```
pub fn phi_f32(elapsed_ms: f32, mean_ms: f32, std_dev_ms: f32) -> f32 {
    let y = (elapsed_ms - mean_ms) / std_dev_ms;
    if y.is_nan() || std_dev_ms <= 0.0 {
        return if elapsed_ms > mean_ms {
            MAX_PHI_F32
        } else {
            0.0
        };
    }
    let a = y * (1.5976 + 0.070566 * y * y);
    let ln_phi = if a > 0.0 {
        a + libm::log1pf(libm::expf(-a))
    } else {
        libm::log1pf(libm::expf(a))
    };
    let p = ln_phi / core::f32::consts::LN_10;
    if p.is_nan() {
        return MAX_PHI_F32;
    }
    p.clamp(0.0, MAX_PHI_F32)
}

/// A φ accrual failure detector in single precision, with a window of the last `N`
/// heartbeat intervals in ms. The same methods and rules as
/// [`PhiAccrual`](crate::phi::PhiAccrual), with φ and thresholds in `f32`; see the
/// [module docs](self) for the differences and the agreement with the `f64` detector.
///
/// `N` must be in `1..=65536` (checked at compile time: the sums stay exact).
///
/// Shape: `4 N + 64` bytes on thumbv7em (4 064 for `N` = 1000).
#[derive(Clone, Debug)]
pub struct PhiAccrualF32<const N: usize> {
    /// Intervals, ms, a ring: `len` of them from `head`.
    intervals: [u32; N],
    head: u32,
    len: u32,
    /// Sum of the intervals, ms.
    sum: u64,
    /// Sum of their squares, ms² (each below 2⁴⁸, at most 2¹⁶ of them).
    sum_sq: u64,
    last: Instant,
    heartbeats: u32,
    clock: Monotonic,
    threshold: f32,
    pause_ms: f32,
    min_sd_ms: f32,
    mu_ms: f32,
    sigma_ms: f32,
}

impl<const N: usize> PhiAccrualF32<N> {
    const VALID_N: () = assert!(
        N > 0 && N <= 1 << 16,
        "PhiAccrualF32 needs a window of 1..=65536 intervals"
    );

    /// A detector that starts watching at `now`, as
    /// [`PhiAccrual::new`](crate::phi::PhiAccrual::new). The config's threshold is
    /// rounded to `f32`; its spans to whole ms for the window and to `f32` ms for μ and σ.
    pub fn new(config: PhiConfig, now: Instant) -> Self {
        let () = Self::VALID_N;
        let ms = |d: Duration| duration_to_nanos(d) as f32 / 1.0e6;
        let mut d = Self {
            intervals: [0; N],
            head: 0,
            len: 0,
            sum: 0,
            sum_sq: 0,
            last: now,
            heartbeats: 0,
            clock: Monotonic::new(now),
            threshold: config.threshold() as f32,
            pause_ms: ms(config.acceptable_heartbeat_pause()),
            min_sd_ms: ms(config.min_std_deviation()),
            mu_ms: 0.0,
            sigma_ms: 0.0,
        };
        let e = duration_to_nanos(config.first_heartbeat_estimate());
        d.record(e - e / 4);
        d.record(e.saturating_add(e / 4));
        d
    }

    fn record(&mut self, interval_ns: u64) {
        // Whole ms, rounded to nearest, capped.
        let x =
            (interval_ns.saturating_add(500_000) / 1_000_000).min(MAX_INTERVAL_MS as u64) as u32;
        let (x64, n) = (u64::from(x), N as u32);
        if self.len == n {
            let old = u64::from(self.intervals[self.head as usize]);
            self.sum -= old;
            self.sum_sq -= old * old;
            self.intervals[self.head as usize] = x;
            self.head = (self.head + 1) % n;
        } else {
            self.intervals[((self.head + self.len) % n) as usize] = x;
            self.len += 1;
        }
        self.sum += x64;
        self.sum_sq += x64 * x64;
        let len = u64::from(self.len);
        // n Σx² - (Σx)² is exact and never negative.
        let var_n2 = (u128::from(len) * u128::from(self.sum_sq))
            .saturating_sub(u128::from(self.sum) * u128::from(self.sum));
        let mean = self.sum as f32 / len as f32;
        let var = var_n2 as f32 / (len * len) as f32;
        self.mu_ms = mean + self.pause_ms;
        self.sigma_ms = libm::sqrtf(var).max(self.min_sd_ms);
    }

    /// A heartbeat arrived at `now`; the rules of
    /// [`PhiAccrual::heartbeat`](crate::phi::PhiAccrual::heartbeat).
    pub fn heartbeat(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        if now <= self.last && self.heartbeats > 0 {
            return;
        }
        if self.heartbeats > 0 && self.available_at(now, self.threshold) {
            self.record(duration_to_nanos(now - self.last));
        }
        self.last = now;
        self.heartbeats = self.heartbeats.saturating_add(1);
    }

    fn elapsed_ms(&self, now: Instant) -> f32 {
        duration_to_nanos(now - self.last) as f32 / 1.0e6
    }

    fn available_at(&self, now: Instant, threshold: f32) -> bool {
        let elapsed_ms = self.elapsed_ms(now);
        if elapsed_ms <= self.mu_ms && threshold > PHI_AT_MEAN_BOUND {
            return true;
        }
        phi_f32(elapsed_ms, self.mu_ms, self.sigma_ms) < threshold
    }

    /// φ at `now`, in `[0, MAX_PHI_F32]`, never NaN, non-decreasing in `now`.
    pub fn phi(&self, now: Instant) -> f32 {
        phi_f32(self.elapsed_ms(now), self.mu_ms, self.sigma_ms)
    }

    /// Whether φ at `now` is below `threshold`.
    pub fn is_available(&self, now: Instant, threshold: f32) -> bool {
        self.available_at(now, threshold)
    }

    /// Whether φ at `now` has reached the configured threshold.
    pub fn suspected(&self, now: Instant) -> bool {
        !self.available_at(now, self.threshold)
    }

    /// The instant at which φ reaches the configured threshold if no heartbeat comes
    /// (by bisection); `None` when even [`Instant::MAX`] stays below it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.threshold;
        if self.phi(Instant::MAX) < t {
            return None;
        }
        if self.phi(self.last) >= t {
            return Some(self.last);
        }
        let (mut lo, mut hi) = (self.last.as_nanos(), u64::MAX);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.phi(Instant::from_nanos(mid)) >= t {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(Instant::from_nanos(hi))
    }

    /// The mean interval in the window, ms (without the acceptable pause).
    pub fn mean_interval_ms(&self) -> f32 {
        self.mu_ms - self.pause_ms
    }

    /// How many intervals the window holds.
    pub const fn samples(&self) -> usize {
        self.len as usize
    }

    /// Heartbeats received so far (saturating).
    pub const fn heartbeats(&self) -> u32 {
        self.heartbeats
    }

    /// The last heartbeat, or the start of watching when none came yet.
    pub const fn last_heartbeat(&self) -> Instant {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phi::{PhiAccrual, phi};
    use proptest::prelude::*;

    /// Akka's published values, in f32, against the f64 function and the references.
    #[test]
    fn akka_reference_values_match_f64_within_1e_4() {
        for (t, expected) in [(1200.0, 1.6), (1400.0, 4.7), (1600.0, 10.8), (1700.0, 15.3)] {
            let p32 = phi_f32(t as f32, 1000.0, 100.0);
            let p64 = phi(t, 1000.0, 100.0);
            assert!((f64::from(p32) - p64).abs() < 1e-4, "{t}: {p32} vs {p64}");
            assert!((f64::from(p32) - expected).abs() < 0.1, "{t}: {p32}");
        }
        assert!((phi_f32(1000.0, 1000.0, 100.0) - core::f32::consts::LOG10_2).abs() < 1e-6);
        assert_eq!(phi_f32(1.0, 0.0, 0.0), MAX_PHI_F32);
        assert_eq!(phi_f32(0.0, 1.0, f32::NAN), 0.0);
        assert_eq!(phi_f32(f32::MAX, 0.0, 1e-30), MAX_PHI_F32);
    }

    /// Both detectors fed 900/1100 ms intervals (mean 1000, σ 100 once the bootstrap
    /// intervals left a window of 4) give Akka's values and agree within 1e-4.
    #[test]
    fn detectors_agree_on_akkas_history() {
        let cfg = PhiConfig::new(
            8.0,
            Duration::from_millis(10),
            Duration::ZERO,
            Duration::from_secs(1),
        )
        .unwrap();
        let mut d32 = PhiAccrualF32::<4>::new(cfg, Instant::ZERO);
        let mut d64 = PhiAccrual::<4>::new(cfg, Instant::ZERO);
        let mut t = 0u64;
        for i in 0..9 {
            if i > 0 {
                t += if i % 2 == 1 { 900 } else { 1100 };
            }
            d32.heartbeat(Instant::from_millis(t));
            d64.heartbeat(Instant::from_millis(t));
        }
        assert_eq!(d32.samples(), 4);
        assert_eq!(d32.mean_interval_ms(), 1000.0);
        for (dt, expected) in [(1200, 1.6), (1400, 4.7), (1600, 10.8), (1700, 15.3)] {
            let now = Instant::from_millis(t + dt);
            let (p32, p64) = (f64::from(d32.phi(now)), d64.phi(now));
            assert!((p32 - p64).abs() < 1e-4, "+{dt}: {p32} vs {p64}");
            assert!((p32 - expected).abs() < 0.1);
        }
        assert!(d32.is_available(Instant::from_millis(t + 1600), 11.0));
        assert!(!d32.is_available(Instant::from_millis(t + 1600), 10.0));
    }

    #[test]
    fn defaults_suspect_a_silent_node_when_the_f64_one_does() {
        let start = Instant::from_secs(100);
        let d32 = PhiAccrualF32::<16>::new(PhiConfig::default(), start);
        let d64 = PhiAccrual::<16>::new(PhiConfig::default(), start);
        let (a32, a64) = (d32.poll_timeout().unwrap(), d64.poll_timeout().unwrap());
        // Within 1 ms of each other (≈ 5.35 s after the start).
        assert!(
            a32.as_nanos().abs_diff(a64.as_nanos()) < 1_000_000,
            "{a32} vs {a64}"
        );
        assert!(d32.suspected(a32) && !d32.suspected(Instant::from_nanos(a32.as_nanos() - 1)));
        // The window is a ring of N: the oldest interval leaves.
        let mut d = PhiAccrualF32::<3>::new(PhiConfig::default(), Instant::ZERO);
        for s in 1..=6 {
            d.heartbeat(Instant::from_millis(s * 500));
        }
        assert_eq!((d.samples(), d.mean_interval_ms()), (3, 500.0));
        // Backwards and duplicate heartbeats change nothing.
        d.heartbeat(Instant::from_millis(100));
        d.heartbeat(Instant::from_millis(3000));
        assert_eq!(
            (d.heartbeats(), d.last_heartbeat()),
            (6, Instant::from_millis(3000))
        );
    }

    #[test]
    fn documented_ram() {
        // 4 N + 64 on thumbv7em (checked there by the link check); here u64/u128
        // alignment may differ, so only the window's part is asserted.
        assert_eq!(
            size_of::<PhiAccrualF32<1000>>() - size_of::<PhiAccrualF32<0>>(),
            4000
        );
    }

    proptest! {
        /// Over random millisecond histories, φ of both detectors agrees within
        /// 1e-3 · max(1, φ).
        #[test]
        fn f32_detector_tracks_the_f64_one(
            gaps_ms in proptest::collection::vec(1u64..5_000, 0..40),
            probes_ms in proptest::collection::vec(0u64..1_000_000, 1..20),
            pause_ms in 0u64..5_000,
            min_sd_ms in 10u64..500,
        ) {
            let cfg = PhiConfig::new(
                8.0,
                Duration::from_millis(min_sd_ms),
                Duration::from_millis(pause_ms),
                Duration::from_millis(1000),
            ).unwrap();
            let mut d32 = PhiAccrualF32::<8>::new(cfg, Instant::ZERO);
            let mut d64 = PhiAccrual::<8>::new(cfg, Instant::ZERO);
            let mut t = 0u64;
            for g in gaps_ms {
                t += g;
                d32.heartbeat(Instant::from_millis(t));
                d64.heartbeat(Instant::from_millis(t));
            }
            for p in probes_ms {
                let now = Instant::from_millis(t + p);
                let (a, b) = (f64::from(d32.phi(now)), d64.phi(now));
                prop_assert!((a - b).abs() <= 1e-3 * b.max(1.0), "{} vs {} at +{} ms", a, b, p);
            }
        }
    }
}
