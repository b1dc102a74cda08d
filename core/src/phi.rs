//! The φ accrual failure detector (Hayashibara, Défago, Yared and Katayama, "The φ
//! Accrual Failure Detector", 2004), computed the way Akka's
//! `PhiAccrualFailureDetector` does.
//!
//! Instead of a yes/no verdict after a fixed timeout, the detector keeps a window of the
//! last `N` heartbeat intervals and says how *surprising* the silence since the last
//! heartbeat is: `φ = -log10(P(a heartbeat comes later than now))`, with the intervals
//! taken as normally distributed. φ = 1 means a 10 % chance that the node is still
//! fine and merely late, φ = 2 a 1 % chance, φ = 8 (Akka's default threshold) one in a
//! hundred million.
//!
//! As in Akka:
//! - the normal CDF is replaced by its logistic approximation
//!   `1 / (1 + exp(-y (1.5976 + 0.070566 y²)))`, `y = (t - μ) / σ` (Bowling et al.,
//!   2009), with `t` the time since the last heartbeat, `μ` the mean interval plus the
//!   acceptable heartbeat pause and `σ` the standard deviation, at least the minimum
//!   standard deviation;
//! - the window starts with two made-up intervals, `e - e/4` and `e + e/4`, from the
//!   first-heartbeat estimate `e`, so that φ means something from the first heartbeat;
//! - the heartbeat that ends a silence already judged unavailable (φ at or above the
//!   threshold) is not added to the window: an outage is not a sample of the interval.
//!
//! Differences, all documented on the items: the detector starts watching when it is
//! created (a node that never heartbeats becomes suspect; Akka reports φ = 0 forever);
//! time is in nanoseconds and never runs backwards (an earlier `now` counts as the latest
//! seen: the heartbeat refreshes nothing and adds no interval); φ is computed in log
//! space (`log10(1 + e^a)`), so it never underflows to infinity, never is NaN, and is
//! capped at [`MAX_PHI`].
//!
//! Cost: O(1) per heartbeat and per φ (running integer sums of the intervals and their
//! squares, exact, so the variance never drifts and is never negative); memory `8 N`
//! bytes plus a few words (`8 N + 160` on thumbv7em).
//!
//! On a microcontroller whose FPU has single precision only, this detector's `f64`
//! arithmetic runs in soft-float routines: about 6.8 KB of `.text` on thumbv7em, and
//! 8 KB of RAM for `N` = 1000. [`phi32::PhiAccrualF32`](crate::phi32::PhiAccrualF32)
//! is the same detector in `f32` (2.5 KB, 4 KB), within 1e-4 of this one on Akka's
//! reference values; the measurements and how they were taken are in
//! [`phi32`](crate::phi32).
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::Instant;
//! use sturdy_core::phi::{PhiAccrual, PhiConfig};
//!
//! let cfg = PhiConfig::default(); // threshold 8, min σ 100 ms, pause 3 s, first estimate 1 s
//! let mut d = PhiAccrual::<100>::new(cfg, Instant::ZERO);
//! for s in 1..=10 {
//!     d.heartbeat(Instant::from_secs(s));
//! }
//! // Intervals of 1 s (and the bootstrap 0.75 s and 1.25 s): μ = 1 s, σ ≈ 107 ms; the
//! // 3 s acceptable pause makes 4 s of silence φ = log10(2).
//! assert!(d.is_available(Instant::from_secs(11), 8.0));
//! assert!(!d.suspected(Instant::from_millis(14_000))); // 4 s of silence
//! assert!(d.suspected(Instant::from_millis(15_000))); // 5 s: suspected
//! // When φ will reach the threshold if no heartbeat comes: the time to look again.
//! let at = d.poll_timeout().unwrap();
//! assert!(at > Instant::from_secs(14) && at < Instant::from_secs(15));
//! ```

use core::fmt;
use core::time::Duration;

use crate::ConfigError;
use crate::time::{Instant, Monotonic, duration_to_nanos};

/// The largest φ the detector reports. φ beyond a few hundred has no meaning in `f64`
/// anyway (the probability underflows); the cap keeps every exported value finite.
pub const MAX_PHI: f64 = 1.0e6;

/// Akka's default window size (`max-sample-size = 1000`); the window of a
/// [`PhiAccrual<N>`] is `N`.
pub const DEFAULT_MAX_SAMPLES: usize = 1000;

/// Longest interval the window records, ns (2⁴⁸ ns, about 3.3 days); longer intervals
/// are recorded as this. Keeps the running sums exact in `u128`.
const MAX_INTERVAL_NS: u64 = 1 << 48;

const NS_PER_MS: f64 = 1.0e6;

/// An upper bound of φ at or before μ (y ≤ 0): φ(μ) = log10(2) ≈ 0.30103, plus margin
/// for rounding in `exp` and `log1p`.
const PHI_AT_MEAN_BOUND: f64 = 0.302;

/// Settings of a [`PhiAccrual`] detector, after Akka's cluster failure detector.
///
/// | setting                      | default | Akka key                      |
/// |------------------------------|---------|-------------------------------|
/// | `threshold`                  | 8.0     | `threshold`                   |
/// | `min_std_deviation`          | 100 ms  | `min-std-deviation`           |
/// | `acceptable_heartbeat_pause` | 3 s     | `acceptable-heartbeat-pause`  |
/// | `first_heartbeat_estimate`   | 1 s     | `heartbeat-interval`          |
///
/// The window size (`max-sample-size`, 1000 in Akka) is the detector's `N`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "PhiConfigUnchecked"))]
#[non_exhaustive]
pub struct PhiConfig {
    threshold: f64,
    min_std_deviation: Duration,
    acceptable_heartbeat_pause: Duration,
    first_heartbeat_estimate: Duration,
}

impl Default for PhiConfig {
    /// [`PhiConfig::AKKA`].
    fn default() -> Self {
        Self::AKKA
    }
}

impl PhiConfig {
    /// Akka's cluster defaults: threshold 8, min σ 100 ms, pause 3 s, first estimate 1 s.
    /// The [`Default`].
    pub const AKKA: Self = Self {
        threshold: 8.0,
        min_std_deviation: Duration::from_millis(100),
        acceptable_heartbeat_pause: Duration::from_secs(3),
        first_heartbeat_estimate: Duration::from_secs(1),
    };
}

impl PhiConfig {
    /// A checked config.
    ///
    /// - `threshold`: φ at or above which a node is suspected; must be in `(0, MAX_PHI)`;
    /// - `min_std_deviation`: the least σ used (guards against a too regular history
    ///   making φ jump); must be > 0;
    /// - `acceptable_heartbeat_pause`: added to the mean interval (pauses for garbage
    ///   collection, a busy network); may be 0;
    /// - `first_heartbeat_estimate`: the expected interval before any is measured; must
    ///   be > 0.
    ///
    /// Errors name the field and the rule.
    pub const fn new(
        threshold: f64,
        min_std_deviation: Duration,
        acceptable_heartbeat_pause: Duration,
        first_heartbeat_estimate: Duration,
    ) -> Result<Self, ConfigError> {
        if !(threshold > 0.0 && threshold < MAX_PHI) {
            return Err(ConfigError::new("threshold", "must be in (0, 1e6)"));
        }
        if min_std_deviation.is_zero() {
            return Err(ConfigError::new("min_std_deviation", "must be > 0"));
        }
        if first_heartbeat_estimate.is_zero() {
            return Err(ConfigError::new("first_heartbeat_estimate", "must be > 0"));
        }
        Ok(Self {
            threshold,
            min_std_deviation,
            acceptable_heartbeat_pause,
            first_heartbeat_estimate,
        })
    }

    /// φ at or above which a node is suspected.
    pub const fn threshold(&self) -> f64 {
        self.threshold
    }
    /// The least standard deviation used.
    pub const fn min_std_deviation(&self) -> Duration {
        self.min_std_deviation
    }
    /// Added to the mean interval.
    pub const fn acceptable_heartbeat_pause(&self) -> Duration {
        self.acceptable_heartbeat_pause
    }
    /// The interval assumed before any is measured.
    pub const fn first_heartbeat_estimate(&self) -> Duration {
        self.first_heartbeat_estimate
    }
}

/// The serialized shape of [`PhiConfig`], checked on the way in.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct PhiConfigUnchecked {
    threshold: f64,
    min_std_deviation: Duration,
    acceptable_heartbeat_pause: Duration,
    first_heartbeat_estimate: Duration,
}

#[cfg(feature = "serde")]
impl TryFrom<PhiConfigUnchecked> for PhiConfig {
    type Error = ConfigError;
    fn try_from(u: PhiConfigUnchecked) -> Result<Self, ConfigError> {
        Self::new(
            u.threshold,
            u.min_std_deviation,
            u.acceptable_heartbeat_pause,
            u.first_heartbeat_estimate,
        )
    }
}

/// φ for a silence of `elapsed_ms` when intervals have mean `mean_ms` and standard
/// deviation `std_dev_ms` (all in milliseconds): Akka's `phi(timeDiff, mean, stdDev)`,
/// computed in log space.
///
/// Returns a value in `[0, MAX_PHI]`; never NaN (a NaN or non-positive `std_dev_ms`
/// gives [`MAX_PHI`] when `elapsed_ms > mean_ms`, else 0).
///
/// ```
/// use sturdy_core::phi::phi;
/// // Akka's published values: mean 1000 ms, σ 100 ms.
/// assert!((phi(1600.0, 1000.0, 100.0) - 10.8).abs() < 0.1);
/// ```
pub fn phi(elapsed_ms: f64, mean_ms: f64, std_dev_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_dev_ms;
    if y.is_nan() || std_dev_ms <= 0.0 {
        return if elapsed_ms > mean_ms { MAX_PHI } else { 0.0 };
    }
    // P(later) = 1 / (1 + e^a), a = y (1.5976 + 0.070566 y²); φ = log10(1 + e^a).
    let a = y * (1.5976 + 0.070566 * y * y);
    let ln_phi = if a > 0.0 {
        a + libm::log1p(libm::exp(-a))
    } else {
        libm::log1p(libm::exp(a))
    };
    let p = ln_phi / core::f64::consts::LN_10;
    if p.is_nan() {
        return MAX_PHI;
    }
    p.clamp(0.0, MAX_PHI)
}

/// A φ accrual failure detector for one monitored node, with a window of the last `N`
/// heartbeat intervals (Akka: 1000, [`DEFAULT_MAX_SAMPLES`]). See the
/// [module docs](self).
///
/// Methods: [`heartbeat`](Self::heartbeat) is the input; [`phi`](Self::phi),
/// [`is_available`](Self::is_available), [`suspected`](Self::suspected) and
/// [`poll_timeout`](Self::poll_timeout) are getters that change nothing.
///
/// `N` must be at least 1 (checked at compile time).
#[derive(Clone, Debug)]
pub struct PhiAccrual<const N: usize> {
    config: PhiConfig,
    /// Intervals, ns, oldest first.
    intervals: heapless::Deque<u64, N>,
    /// Sum of `intervals`, ns.
    sum: u128,
    /// Sum of the squares of `intervals`, ns².
    sum_sq: u128,
    /// The last heartbeat, or the start of watching before the first one.
    last: Instant,
    heartbeats: u64,
    clock: Monotonic,
    /// The acceptable heartbeat pause, ms (from the config, converted once).
    pause_ms: f64,
    /// The minimum standard deviation, ms (from the config, converted once).
    min_sd_ms: f64,
    /// The μ of φ: mean interval plus the acceptable pause, ms; kept up to date by
    /// `record` so that φ does not recompute it from the sums.
    mu_ms: f64,
    /// The σ of φ: the window's standard deviation, at least the minimum, ms; kept up
    /// to date by `record`.
    sigma_ms: f64,
}

impl<const N: usize> PhiAccrual<N> {
    const NONZERO: () = assert!(N > 0, "PhiAccrual needs a window of at least one interval");

    /// A detector that starts watching at `now`. The window holds the two bootstrap
    /// intervals (the first-heartbeat estimate ± a quarter; with `N` = 1 only the
    /// second, the estimate plus a quarter). Before the first heartbeat,
    /// φ grows from `now` as if a heartbeat had come then, so a node that never sends
    /// one is suspected (after about 4.5 s with the defaults).
    pub fn new(config: PhiConfig, now: Instant) -> Self {
        let () = Self::NONZERO;
        let mut d = Self {
            config,
            intervals: heapless::Deque::new(),
            sum: 0,
            sum_sq: 0,
            last: now,
            heartbeats: 0,
            clock: Monotonic::new(now),
            pause_ms: duration_to_nanos(config.acceptable_heartbeat_pause) as f64 / NS_PER_MS,
            min_sd_ms: duration_to_nanos(config.min_std_deviation) as f64 / NS_PER_MS,
            mu_ms: 0.0,
            sigma_ms: 0.0,
        };
        let e = duration_to_nanos(config.first_heartbeat_estimate);
        d.record(e - e / 4);
        d.record(e.saturating_add(e / 4));
        d
    }

    fn record(&mut self, interval_ns: u64) {
        let x = interval_ns.min(MAX_INTERVAL_NS);
        if self.intervals.is_full()
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= u128::from(old);
            self.sum_sq -= u128::from(old) * u128::from(old);
        }
        if self.intervals.push_back(x).is_ok() {
            self.sum += u128::from(x);
            self.sum_sq += u128::from(x) * u128::from(x);
        }
        self.mu_ms = self.mean_ns() / NS_PER_MS + self.pause_ms;
        self.sigma_ms = (self.std_deviation_ns() / NS_PER_MS).max(self.min_sd_ms);
    }

    /// A heartbeat arrived at `now`.
    ///
    /// The interval since the previous heartbeat joins the window (the oldest leaves
    /// when it is full) unless: this is the first heartbeat (it only ends the wait that
    /// began at [`new`](Self::new)); the node was already judged unavailable at `now`
    /// (φ at or above the configured threshold: as Akka, the gap of an outage is not a
    /// sample); or `now` is not later than the previous heartbeat (a clock that jumped
    /// backwards or a duplicate: `now` counts as the latest time seen, nothing is added).
    pub fn heartbeat(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        if now <= self.last && self.heartbeats > 0 {
            return;
        }
        if self.heartbeats > 0 && self.available_at(now, self.config.threshold) {
            self.record(duration_to_nanos(now - self.last));
        }
        self.last = now;
        self.heartbeats = self.heartbeats.saturating_add(1);
    }

    /// φ at `now`: how unlikely it is that the node is alive but its next heartbeat is
    /// merely late, as `-log10` of that probability. In `[0, MAX_PHI]`, never NaN,
    /// non-decreasing in `now`. A `now` earlier than the last heartbeat reads as zero
    /// silence.
    #[inline]
    pub fn phi(&self, now: Instant) -> f64 {
        phi(self.elapsed_ms(now), self.mu_ms, self.sigma_ms)
    }

    /// The silence since the last heartbeat at `now`, ms.
    #[inline]
    fn elapsed_ms(&self, now: Instant) -> f64 {
        duration_to_nanos(now - self.last) as f64 / NS_PER_MS
    }

    /// Whether φ at `now` is below `threshold`. Exactly
    /// `self.phi(now) < threshold`, without evaluating φ in the common case: a silence
    /// no longer than μ gives y ≤ 0, so φ ≤ log10(2) ≈ 0.30103, below any threshold
    /// above [`PHI_AT_MEAN_BOUND`].
    #[inline]
    fn available_at(&self, now: Instant, threshold: f64) -> bool {
        let elapsed_ms = self.elapsed_ms(now);
        if elapsed_ms <= self.mu_ms && threshold > PHI_AT_MEAN_BOUND {
            return true;
        }
        phi(elapsed_ms, self.mu_ms, self.sigma_ms) < threshold
    }

    /// Whether φ at `now` is below `threshold` (Akka's `isAvailable`). A NaN
    /// threshold makes nothing available.
    pub fn is_available(&self, now: Instant, threshold: f64) -> bool {
        self.available_at(now, threshold)
    }

    /// Whether φ at `now` has reached the configured threshold.
    pub fn suspected(&self, now: Instant) -> bool {
        !self.is_available(now, self.config.threshold)
    }

    /// The instant at which φ reaches the configured threshold if no heartbeat comes
    /// (to the nanosecond, by bisection over φ, which is monotone); the time to check
    /// again. `None` only when even [`Instant::MAX`] stays below it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.config.threshold;
        if self.phi(Instant::MAX) < t {
            return None;
        }
        let (mut lo, mut hi) = (self.last.as_nanos(), u64::MAX);
        if self.phi(self.last) >= t {
            return Some(self.last);
        }
        // Invariant: phi(lo) < t <= phi(hi).
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

    /// Mean of the intervals in the window, ns (without the acceptable pause).
    fn mean_ns(&self) -> f64 {
        let n = self.intervals.len() as f64;
        self.sum as f64 / n
    }

    /// Population standard deviation of the window, ns (before the minimum applies).
    /// Computed from exact integer sums: `n Σx² - (Σx)²` is never negative.
    fn std_deviation_ns(&self) -> f64 {
        let n = self.intervals.len() as u128;
        let var = match n
            .checked_mul(self.sum_sq)
            .zip(self.sum.checked_mul(self.sum))
        {
            Some((a, b)) => a.saturating_sub(b) as f64 / (n * n) as f64,
            None => {
                let mean = self.mean_ns();
                (self.sum_sq as f64 / n as f64 - mean * mean).max(0.0)
            }
        };
        libm::sqrt(var)
    }

    /// The mean interval in the window (without the acceptable pause).
    pub fn mean_interval(&self) -> Duration {
        Duration::from_nanos(self.mean_ns() as u64)
    }

    /// The standard deviation of the intervals in the window (before the configured
    /// minimum applies).
    pub fn std_deviation(&self) -> Duration {
        Duration::from_nanos(self.std_deviation_ns() as u64)
    }

    /// How many intervals the window holds (2 to `N`, or 1 when `N` is 1; the bootstrap
    /// ones count).
    pub fn samples(&self) -> usize {
        self.intervals.len()
    }

    /// Heartbeats received so far.
    pub const fn heartbeats(&self) -> u64 {
        self.heartbeats
    }

    /// The last heartbeat, or the start of watching when none came yet.
    pub const fn last_heartbeat(&self) -> Instant {
        self.last
    }

    /// The settings.
    pub const fn config(&self) -> &PhiConfig {
        &self.config
    }
}

impl fmt::Display for PhiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "phi threshold {}, min std deviation {:?}, acceptable pause {:?}, first estimate {:?}",
            self.threshold,
            self.min_std_deviation,
            self.acceptable_heartbeat_pause,
            self.first_heartbeat_estimate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Akka's published values (PhiAccrualFailureDetectorSpec): mean 1000 ms, σ 100 ms.
    #[test]
    fn akka_published_values() {
        for (t, expected) in [(1200.0, 1.6), (1400.0, 4.7), (1600.0, 10.8), (1700.0, 15.3)] {
            let p = phi(t, 1000.0, 100.0);
            assert!(
                close(p, expected, 0.1),
                "phi({t}) = {p}, expected {expected}"
            );
        }
        // At the mean, the logistic CDF is 1/2: φ = log10(2).
        assert!(close(
            phi(1000.0, 1000.0, 100.0),
            core::f64::consts::LOG10_2,
            1e-12
        ));
        // Well before the mean, φ is about 0.
        assert!(phi(0.0, 1000.0, 100.0) < 1e-10);
    }

    /// The same values from a detector fed intervals of 900 and 1100 ms (mean 1000,
    /// σ 100 exactly, once the bootstrap intervals have left a window of 4).
    #[test]
    fn akka_values_from_heartbeats() {
        let cfg = PhiConfig::new(
            8.0,
            Duration::from_millis(10),
            Duration::ZERO,
            Duration::from_secs(1),
        )
        .unwrap();
        let mut d = PhiAccrual::<4>::new(cfg, Instant::ZERO);
        let mut t = 0u64;
        d.heartbeat(Instant::from_millis(t));
        for i in 0..8 {
            t += if i % 2 == 0 { 900 } else { 1100 };
            d.heartbeat(Instant::from_millis(t));
        }
        assert_eq!(d.samples(), 4);
        assert_eq!(d.mean_interval(), Duration::from_millis(1000));
        assert_eq!(d.std_deviation(), Duration::from_millis(100));
        for (dt, expected) in [(1200, 1.6), (1400, 4.7), (1600, 10.8), (1700, 15.3)] {
            let p = d.phi(Instant::from_millis(t + dt));
            assert!(
                close(p, expected, 0.1),
                "phi(+{dt} ms) = {p}, expected {expected}"
            );
        }
        assert!(d.is_available(Instant::from_millis(t + 1600), 11.0));
        assert!(!d.is_available(Instant::from_millis(t + 1600), 10.0));
    }

    #[test]
    fn defaults_are_akkas() {
        let c = PhiConfig::default();
        assert_eq!(c.threshold(), 8.0);
        assert_eq!(c.min_std_deviation(), Duration::from_millis(100));
        assert_eq!(c.acceptable_heartbeat_pause(), Duration::from_secs(3));
        assert_eq!(c.first_heartbeat_estimate(), Duration::from_secs(1));
        assert_eq!(
            PhiConfig::new(
                8.0,
                Duration::from_millis(100),
                Duration::from_secs(3),
                Duration::from_secs(1)
            ),
            Ok(c)
        );
    }

    #[test]
    fn bad_configs_name_the_field() {
        let ms = Duration::from_millis;
        let e = PhiConfig::new(0.0, ms(100), ms(0), ms(1000)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: `threshold` must be in (0, 1e6)"
        );
        assert_eq!(
            PhiConfig::new(f64::NAN, ms(100), ms(0), ms(1000))
                .unwrap_err()
                .field(),
            "threshold"
        );
        assert_eq!(
            PhiConfig::new(MAX_PHI, ms(100), ms(0), ms(1000))
                .unwrap_err()
                .field(),
            "threshold"
        );
        assert_eq!(
            PhiConfig::new(8.0, ms(0), ms(0), ms(1000))
                .unwrap_err()
                .field(),
            "min_std_deviation"
        );
        assert_eq!(
            PhiConfig::new(8.0, ms(100), ms(0), ms(0))
                .unwrap_err()
                .field(),
            "first_heartbeat_estimate"
        );
    }

    /// A lone heartbeat: φ follows the bootstrap window (750 ms and 1250 ms: mean
    /// 1000 ms, σ 250 ms) plus the 3 s pause.
    #[test]
    fn lone_heartbeat_uses_the_bootstrap_window() {
        let mut d = PhiAccrual::<16>::new(PhiConfig::default(), Instant::ZERO);
        d.heartbeat(Instant::from_secs(5));
        assert_eq!((d.heartbeats(), d.samples()), (1, 2));
        assert_eq!(d.mean_interval(), Duration::from_millis(1000));
        assert_eq!(d.std_deviation(), Duration::from_millis(250));
        let at = |ms: u64| d.phi(Instant::from_secs(5) + Duration::from_millis(ms));
        assert!(close(at(0), 0.0, 1e-9));
        assert!(close(at(4000), core::f64::consts::LOG10_2, 1e-12)); // at mean + pause
        assert!(close(at(4000 + 500), phi(1.0, 0.0, 0.5), 1e-12));
        assert!(!d.suspected(Instant::from_millis(9_000)));
        assert!(d.suspected(Instant::from_millis(11_000)));
    }

    /// A node that never heartbeats is suspected, counting from the start of watching.
    #[test]
    fn no_heartbeat_ever_is_suspected() {
        let start = Instant::from_secs(100);
        let d = PhiAccrual::<16>::new(PhiConfig::default(), start);
        assert_eq!(d.heartbeats(), 0);
        assert!(d.phi(start) < 1e-9);
        assert!(!d.suspected(start + Duration::from_secs(4)));
        assert!(d.suspected(start + Duration::from_secs(6)));
        let at = d.poll_timeout().unwrap();
        assert!(d.phi(at) >= 8.0);
        assert!(d.phi(Instant::from_nanos(at.as_nanos() - 1)) < 8.0);
        // 1000 ms + 3000 ms pause; φ = 8 at y ≈ 5.4 σ (σ = 250 ms): ≈ 5.35 s.
        let secs = (at - start).as_secs_f64();
        assert!(secs > 5.2 && secs < 5.5, "{secs}");
        // The first heartbeat ends the wait and adds no interval.
        let mut d = d;
        d.heartbeat(start + Duration::from_secs(30));
        assert_eq!((d.heartbeats(), d.samples()), (1, 2));
        assert!(!d.suspected(start + Duration::from_secs(31)));
    }

    #[test]
    fn clock_jumping_backwards_changes_nothing() {
        let mut d = PhiAccrual::<8>::new(PhiConfig::default(), Instant::ZERO);
        for s in [10, 11, 12] {
            d.heartbeat(Instant::from_secs(s));
        }
        let before = (d.samples(), d.mean_interval(), d.last_heartbeat());
        d.heartbeat(Instant::from_secs(3)); // backwards
        d.heartbeat(Instant::from_secs(12)); // duplicate
        assert_eq!((d.samples(), d.mean_interval(), d.last_heartbeat()), before);
        // An earlier `now` reads as no silence at all.
        assert!(d.phi(Instant::from_secs(1)) < 1e-9);
        assert!(d.phi(Instant::ZERO).is_finite());
        // The clock comes back: the next interval counts from 12 s.
        d.heartbeat(Instant::from_secs(13));
        assert_eq!(d.last_heartbeat(), Instant::from_secs(13));
        assert_eq!(d.samples(), 5);
    }

    #[test]
    fn the_heartbeat_ending_an_outage_is_not_a_sample() {
        let mut d = PhiAccrual::<8>::new(PhiConfig::default(), Instant::ZERO);
        for s in 1..=4 {
            d.heartbeat(Instant::from_secs(s));
        }
        assert_eq!(d.samples(), 5);
        d.heartbeat(Instant::from_secs(60)); // suspected long before
        assert_eq!(d.samples(), 5);
        assert_eq!(d.mean_interval(), Duration::from_millis(1000));
        assert!(!d.suspected(Instant::from_secs(61)));
    }

    #[test]
    fn window_keeps_the_last_n_intervals() {
        let cfg = PhiConfig::new(
            8.0,
            Duration::from_millis(1),
            Duration::ZERO,
            Duration::from_secs(1),
        )
        .unwrap();
        let mut d = PhiAccrual::<3>::new(cfg, Instant::ZERO);
        let mut t = 0;
        for ms in [500, 500, 500, 200, 200, 200] {
            t += ms;
            d.heartbeat(Instant::from_millis(t));
        }
        // first heartbeat at 500 ms; intervals 500, 500, 200, 200, 200; the window: 200 ×3.
        assert_eq!(d.samples(), 3);
        assert_eq!(d.mean_interval(), Duration::from_millis(200));
        assert_eq!(d.std_deviation(), Duration::ZERO);
        // σ is raised to the 1 ms minimum: 5 ms late is y = 5.
        assert!(close(
            d.phi(Instant::from_millis(t + 205)),
            phi(5.0, 0.0, 1.0),
            1e-9
        ));
    }

    #[test]
    fn extremes_stay_finite() {
        assert_eq!(phi(f64::MAX, 0.0, 1e-300), MAX_PHI);
        assert_eq!(phi(1.0, 0.0, 0.0), MAX_PHI);
        assert_eq!(phi(0.0, 1.0, 0.0), 0.0);
        assert_eq!(phi(f64::NAN, 0.0, 1.0), 0.0);
        let d = PhiAccrual::<1>::new(PhiConfig::default(), Instant::ZERO);
        assert_eq!(d.phi(Instant::MAX), MAX_PHI);
        let cfg = PhiConfig::new(
            1.0,
            Duration::from_nanos(1),
            Duration::MAX,
            Duration::from_nanos(1),
        )
        .unwrap();
        let mut d = PhiAccrual::<2>::new(cfg, Instant::MAX);
        d.heartbeat(Instant::MAX);
        assert!(d.phi(Instant::MAX).is_finite());
        assert_eq!(d.poll_timeout(), None);
    }

    proptest! {
        /// Over random heartbeat histories: φ is never NaN, stays in [0, MAX_PHI], and
        /// never decreases as the silence grows.
        #[test]
        fn phi_is_finite_and_monotone(
            gaps in proptest::collection::vec(0u64..5_000_000_000, 0..40),
            probes in proptest::collection::vec(any::<u64>(), 1..20),
            pause_ms in 0u64..5_000,
            min_sd_us in 1u64..500_000,
        ) {
            let cfg = PhiConfig::new(
                8.0,
                Duration::from_micros(min_sd_us),
                Duration::from_millis(pause_ms),
                Duration::from_millis(1000),
            ).unwrap();
            let mut d = PhiAccrual::<16>::new(cfg, Instant::ZERO);
            let mut t = 0u64;
            for g in gaps {
                t += g;
                d.heartbeat(Instant::from_nanos(t));
            }
            let mut probes = probes;
            probes.sort_unstable();
            let mut prev = 0.0f64;
            for p in probes {
                let v = d.phi(Instant::from_nanos(p));
                prop_assert!(!v.is_nan());
                prop_assert!((0.0..=MAX_PHI).contains(&v));
                prop_assert!(v >= prev, "phi fell from {} to {} at {}", prev, v, p);
                prev = v;
            }
            if let Some(at) = d.poll_timeout() {
                prop_assert!(d.phi(at) >= 8.0);
                prop_assert!(at == d.last_heartbeat() || d.phi(Instant::from_nanos(at.as_nanos() - 1)) < 8.0);
            }
        }

        /// The cached μ and σ equal those recomputed from the window's sums, and
        /// `is_available` (which skips φ at or before μ) agrees with `phi < threshold`,
        /// thresholds around φ(μ) = log10(2) included.
        #[test]
        fn cached_statistics_and_the_shortcut_agree_with_phi(
            gaps in proptest::collection::vec(1u64..5_000_000_000, 0..40),
            probes in proptest::collection::vec(0u64..20_000_000_000, 1..20),
            threshold in prop_oneof![
                Just(0.1f64), Just(0.3), Just(core::f64::consts::LOG10_2), Just(0.302),
                Just(0.31), Just(1.0), Just(8.0), 1.0e-3f64..20.0,
            ],
            pause_ms in 0u64..5_000,
            min_sd_us in 1u64..500_000,
        ) {
            let cfg = PhiConfig::new(
                8.0,
                Duration::from_micros(min_sd_us),
                Duration::from_millis(pause_ms),
                Duration::from_millis(1000),
            ).unwrap();
            let mut d = PhiAccrual::<8>::new(cfg, Instant::ZERO);
            let mut t = 0u64;
            for g in gaps {
                t += g;
                d.heartbeat(Instant::from_nanos(t));
                let mu = d.mean_ns() / NS_PER_MS + pause_ms as f64;
                let sigma = (d.std_deviation_ns() / NS_PER_MS).max(min_sd_us as f64 / 1_000.0);
                prop_assert_eq!(d.mu_ms, mu);
                prop_assert_eq!(d.sigma_ms, sigma);
            }
            for p in probes {
                let now = Instant::from_nanos(t + p);
                let v = d.phi(now);
                let elapsed_ms = p as f64 / NS_PER_MS;
                prop_assert_eq!(v, phi(elapsed_ms, d.mu_ms, d.sigma_ms));
                prop_assert_eq!(d.is_available(now, threshold), v < threshold);
                prop_assert_eq!(d.suspected(now), v >= 8.0);
            }
        }

        /// A σ that is not positive gives what the docs say: all or nothing.
        #[test]
        fn phi_fn_without_a_positive_sigma_is_all_or_nothing(
            sd in prop_oneof![Just(0.0f64), Just(-0.0), Just(f64::NAN), Just(f64::NEG_INFINITY), -1.0e6f64..0.0],
            mean in -1.0e4f64..1.0e6,
            gap in 1.0e-3f64..1.0e6,
        ) {
            prop_assert_eq!(phi(mean + gap, mean, sd), MAX_PHI);
            prop_assert_eq!(phi(mean - gap, mean, sd), 0.0);
        }

        /// The pure function is monotone in elapsed time for any mean and σ.
        #[test]
        fn phi_fn_is_monotone(
            mut xs in proptest::collection::vec(-1.0e7f64..1.0e7, 2..30),
            mean in -1.0e4f64..1.0e6,
            sd in 1.0e-3f64..1.0e5,
        ) {
            xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let mut prev = 0.0f64;
            for x in xs {
                let v = phi(x, mean, sd);
                prop_assert!(!v.is_nan() && v >= prev);
                prev = v;
            }
        }
    }
}
