//! Backoff schedules with jitter: constant, linear and exponential.
//!
//! A [`BackoffConfig`] says how the delay grows with each retry and which jitter it
//! gets; a [`BackoffState`] (8 + 4 + 8 + 8 bytes) walks the schedule one retry at a time
//! from a `seed: u64`, so the same seed gives the same delays on every platform. A
//! [`Backoff`] bundles the two for the common case.
//!
//! Everything is integer nanoseconds (`u64`), saturating: no float, no overflow, no
//! panic for any config and any attempt number up to `u32::MAX`.
//!
//! Jitter follows Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog
//! (2015), with `d` the schedule's delay for the attempt, already capped:
//!
//! | jitter | delay drawn from | note |
//! |---|---|---|
//! | [`Jitter::None`] | `d` | monotone non-decreasing |
//! | [`Jitter::Full`] | `[0, d]` | may be zero, by design |
//! | [`Jitter::Equal`] | `[d - d/2, d]` | |
//! | [`Jitter::Decorrelated`] | `[base, min(cap, max(base, 3 * previous))]` | draws from the previous delay |
//!
//! Jitter is applied before the cap, so `cap` is a hard cap: no delay ever exceeds it.
//!
//! The original design computed `retry_delay * 2^(n-1)` (5 s base, no cap, no jitter),
//! logged it and never handed it to anyone; here the delay is the return value.
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::backoff::{Backoff, BackoffConfig, Jitter};
//!
//! let cfg = BackoffConfig::exponential(Duration::from_millis(100), 2_000, Duration::from_secs(1))?
//!     .with_jitter(Jitter::None)?;
//! let delays: Vec<_> = Backoff::new(cfg, 7).take(6).map(|d| d.as_millis()).collect();
//! assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```

use core::time::Duration;

use crate::error::ConfigError;
use crate::rng::SplitMix64;
use crate::time::duration_to_nanos;

/// How the un-jittered delay grows from one retry to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Growth {
    /// The same delay every time (`base`, which is also the cap).
    Constant,
    /// `base + step * (n - 1)` for retry `n`, capped.
    Linear {
        /// Added per retry, in nanoseconds.
        step_ns: u64,
    },
    /// `base * multiplier^(n - 1)` for retry `n`, capped; each step rounds up, so a
    /// multiplier above 1 always grows the delay until the cap.
    Exponential {
        /// The multiplier in thousandths: 2000 doubles, 1500 grows by half.
        /// Valid range: 1000 to 1 000 000 (1x to 1000x).
        multiplier_permille: u32,
    },
}

/// Which jitter spreads the delays of many callers apart. See the [module docs](self)
/// for the ranges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Jitter {
    /// No jitter: the schedule's delay itself.
    None,
    /// Uniform in `[0, d]` (AWS "full jitter"; the recommended default).
    #[default]
    Full,
    /// Uniform in `[d - d/2, d]` (AWS "equal jitter").
    Equal,
    /// Uniform in `[base, min(cap, 3 * previous)]` (AWS "decorrelated jitter").
    Decorrelated,
}

/// A validated backoff schedule. Build it with [`constant`](Self::constant),
/// [`linear`](Self::linear) or [`exponential`](Self::exponential), then
/// [`with_jitter`](Self::with_jitter). Shape: 32 bytes, `Copy`.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "BackoffConfigUnchecked"))]
pub struct BackoffConfig {
    growth: Growth,
    base_ns: u64,
    cap_ns: u64,
    jitter: Jitter,
}

const MIN_MULTIPLIER_PERMILLE: u32 = 1_000;
const MAX_MULTIPLIER_PERMILLE: u32 = 1_000_000;

impl BackoffConfig {
    /// The same `delay` before every retry (zero allowed: retry at once), full jitter.
    pub const fn constant(delay: Duration) -> Self {
        let d = duration_to_nanos(delay);
        Self {
            growth: Growth::Constant,
            base_ns: d,
            cap_ns: d,
            jitter: Jitter::Full,
        }
    }

    /// `base + step * (n - 1)` before retry `n`, never above `cap`, full jitter.
    ///
    /// # Errors
    /// `cap` below `base`.
    pub const fn linear(
        base: Duration,
        step: Duration,
        cap: Duration,
    ) -> Result<Self, ConfigError> {
        let (base_ns, cap_ns) = (duration_to_nanos(base), duration_to_nanos(cap));
        if cap_ns < base_ns {
            return Err(ConfigError::new("cap", "must be >= base"));
        }
        Ok(Self {
            growth: Growth::Linear {
                step_ns: duration_to_nanos(step),
            },
            base_ns,
            cap_ns,
            jitter: Jitter::Full,
        })
    }

    /// `base * (multiplier_permille / 1000)^(n - 1)` before retry `n`, never above
    /// `cap`, full jitter. `2_000` doubles the delay each retry.
    ///
    /// # Errors
    /// `base` zero (the schedule would never grow), `multiplier_permille` outside
    /// 1000..=1 000 000, `cap` below `base`.
    pub const fn exponential(
        base: Duration,
        multiplier_permille: u32,
        cap: Duration,
    ) -> Result<Self, ConfigError> {
        let (base_ns, cap_ns) = (duration_to_nanos(base), duration_to_nanos(cap));
        if base_ns == 0 {
            return Err(ConfigError::new(
                "base",
                "must be > 0 for an exponential schedule",
            ));
        }
        if multiplier_permille < MIN_MULTIPLIER_PERMILLE {
            return Err(ConfigError::new(
                "multiplier_permille",
                "must be >= 1000 (a multiplier of at least 1)",
            ));
        }
        if multiplier_permille > MAX_MULTIPLIER_PERMILLE {
            return Err(ConfigError::new(
                "multiplier_permille",
                "must be <= 1000000 (a multiplier of at most 1000)",
            ));
        }
        if cap_ns < base_ns {
            return Err(ConfigError::new("cap", "must be >= base"));
        }
        Ok(Self {
            growth: Growth::Exponential {
                multiplier_permille,
            },
            base_ns,
            cap_ns,
            jitter: Jitter::Full,
        })
    }

    /// The same schedule with another jitter.
    ///
    /// # Errors
    /// [`Jitter::Decorrelated`] with a zero `base` (it would draw zero forever).
    pub const fn with_jitter(mut self, jitter: Jitter) -> Result<Self, ConfigError> {
        if matches!(jitter, Jitter::Decorrelated) && self.base_ns == 0 {
            return Err(ConfigError::new(
                "base",
                "must be > 0 with decorrelated jitter",
            ));
        }
        self.jitter = jitter;
        Ok(self)
    }

    /// How the delay grows.
    pub const fn growth(&self) -> Growth {
        self.growth
    }

    /// The first delay (before jitter).
    pub const fn base(&self) -> Duration {
        Duration::from_nanos(self.base_ns)
    }

    /// The hard cap on every delay, jitter included.
    pub const fn cap(&self) -> Duration {
        Duration::from_nanos(self.cap_ns)
    }

    /// The jitter kind.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The un-jittered, capped delay before retry `attempt` (1 = the first retry; 0 reads
    /// as 1), in nanoseconds. Exponential schedules cost one multiplication per retry
    /// until the cap is reached, never more: tens of steps for a doubling, at most about
    /// 45 000 for the smallest multiplier (1.001) from 1 ns to the largest cap; never
    /// `attempt` steps once the cap is reached.
    pub fn raw_delay_ns(&self, attempt: u32) -> u64 {
        let n = attempt.max(1) as u64;
        match self.growth {
            Growth::Constant => self.base_ns,
            Growth::Linear { step_ns } => {
                let add = (step_ns as u128) * ((n - 1) as u128);
                let v = (self.base_ns as u128).saturating_add(add);
                v.min(self.cap_ns as u128) as u64
            }
            Growth::Exponential {
                multiplier_permille,
            } => {
                if multiplier_permille == MIN_MULTIPLIER_PERMILLE {
                    return self.base_ns;
                }
                let mut d = self.base_ns.min(self.cap_ns);
                let mut k = 1;
                while k < n && d < self.cap_ns {
                    d = grow_exponential(d, multiplier_permille, self.cap_ns);
                    k += 1;
                }
                d
            }
        }
    }

    /// [`raw_delay_ns`](Self::raw_delay_ns) as a [`Duration`].
    pub fn raw_delay(&self, attempt: u32) -> Duration {
        Duration::from_nanos(self.raw_delay_ns(attempt))
    }

    #[inline]
    fn next_raw(&self, attempt: u32, prev_raw: u64) -> u64 {
        if attempt <= 1 {
            return self.base_ns.min(self.cap_ns);
        }
        match self.growth {
            Growth::Constant => self.base_ns,
            Growth::Linear { step_ns } => prev_raw.saturating_add(step_ns).min(self.cap_ns),
            Growth::Exponential {
                multiplier_permille,
            } => {
                if prev_raw >= self.cap_ns {
                    self.cap_ns
                } else {
                    grow_exponential(prev_raw, multiplier_permille, self.cap_ns)
                }
            }
        }
    }

    #[inline]
    fn apply_jitter(&self, rng: &mut SplitMix64, raw: u64, prev: u64) -> u64 {
        match self.jitter {
            Jitter::None => raw,
            Jitter::Full => rng.below_inclusive(raw),
            Jitter::Equal => {
                let half = raw / 2;
                (raw - half) + rng.below_inclusive(half)
            }
            Jitter::Decorrelated => {
                let hi = prev.saturating_mul(3).min(self.cap_ns).max(self.base_ns);
                rng.between_inclusive(self.base_ns, hi).min(self.cap_ns)
            }
        }
    }
}

/// `ceil(d * m / 1000)`, capped at `cap`; strictly greater than `d` when `m > 1000`.
#[inline]
fn grow_exponential(d: u64, multiplier_permille: u32, cap: u64) -> u64 {
    let v = (d as u128 * multiplier_permille as u128).div_ceil(1_000);
    if v >= cap as u128 { cap } else { v as u64 }
}

/// The serialized shape of [`BackoffConfig`], checked on the way in by the rules of
/// its constructors.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct BackoffConfigUnchecked {
    growth: Growth,
    base_ns: u64,
    cap_ns: u64,
    jitter: Jitter,
}

#[cfg(feature = "serde")]
impl TryFrom<BackoffConfigUnchecked> for BackoffConfig {
    type Error = ConfigError;
    fn try_from(u: BackoffConfigUnchecked) -> Result<Self, ConfigError> {
        let (base, cap) = (
            Duration::from_nanos(u.base_ns),
            Duration::from_nanos(u.cap_ns),
        );
        let c = match u.growth {
            Growth::Constant if u.cap_ns != u.base_ns => {
                return Err(ConfigError::new(
                    "cap",
                    "must equal base for a constant schedule",
                ));
            }
            Growth::Constant => Self::constant(base),
            Growth::Linear { step_ns } => Self::linear(base, Duration::from_nanos(step_ns), cap)?,
            Growth::Exponential {
                multiplier_permille,
            } => Self::exponential(base, multiplier_permille, cap)?,
        };
        c.with_jitter(u.jitter)
    }
}

/// Where a caller is in a schedule: the retry count, the last un-jittered delay, the
/// last delay handed out (for decorrelated jitter) and the generator.
///
/// It does not hold the [`BackoffConfig`], so a ledger of many tasks keeps one config
/// and one small state per task. Shape: 32 bytes, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BackoffState {
    rng: SplitMix64,
    attempt: u32,
    raw_ns: u64,
    prev_ns: u64,
}

impl BackoffState {
    /// A fresh state at retry 0, drawing jitter from `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            attempt: 0,
            raw_ns: 0,
            prev_ns: 0,
        }
    }

    /// The delay before the next retry, following `config`. Call it once per retry.
    /// Never above `config.cap()`; O(1).
    #[inline]
    pub fn next_delay(&mut self, config: &BackoffConfig) -> Duration {
        Duration::from_nanos(self.next_delay_ns(config))
    }

    /// [`next_delay`](Self::next_delay) in nanoseconds.
    #[inline]
    pub fn next_delay_ns(&mut self, config: &BackoffConfig) -> u64 {
        self.attempt = self.attempt.saturating_add(1);
        if self.attempt == 1 {
            self.prev_ns = config.base_ns;
        }
        self.raw_ns = config.next_raw(self.attempt, self.raw_ns);
        let d = config.apply_jitter(&mut self.rng, self.raw_ns, self.prev_ns);
        self.prev_ns = d;
        d
    }

    /// How many delays this state has handed out since the last reset.
    pub const fn retries(&self) -> u32 {
        self.attempt
    }

    /// Back to retry 0 (after a success, or when a breaker closes). The generator is
    /// not re-seeded, so jitter after a reset differs from the first run.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.raw_ns = 0;
        self.prev_ns = 0;
    }
}

/// A [`BackoffConfig`] with its [`BackoffState`]: an endless iterator of delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    config: BackoffConfig,
    state: BackoffState,
}

impl Backoff {
    /// Walks `config` from retry 0 with jitter drawn from `seed`.
    pub const fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            state: BackoffState::new(seed),
        }
    }

    /// The delay before the next retry.
    #[inline]
    pub fn next_delay(&mut self) -> Duration {
        self.state.next_delay(&self.config)
    }

    /// Back to retry 0.
    pub fn reset(&mut self) {
        self.state.reset();
    }

    /// The schedule.
    pub const fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// The position in the schedule.
    pub const fn state(&self) -> &BackoffState {
        &self.state
    }
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {

    use std::vec::Vec;

    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn take_ns(cfg: BackoffConfig, seed: u64, n: usize) -> Vec<u64> {
        let mut s = BackoffState::new(seed);
        (0..n).map(|_| s.next_delay_ns(&cfg)).collect()
    }

    #[test]
    fn constant_table() {
        let cfg = BackoffConfig::constant(ms(100))
            .with_jitter(Jitter::None)
            .unwrap();
        assert_eq!(take_ns(cfg, 1, 3), [100_000_000; 3]);
        assert_eq!(cfg.raw_delay(u32::MAX), ms(100));
        let zero = BackoffConfig::constant(Duration::ZERO);
        assert_eq!(take_ns(zero, 1, 2), [0, 0]);
    }

    #[test]
    fn linear_table() {
        let cfg = BackoffConfig::linear(ms(100), ms(50), ms(250))
            .unwrap()
            .with_jitter(Jitter::None)
            .unwrap();
        let got: Vec<u64> = take_ns(cfg, 0, 5).iter().map(|n| n / 1_000_000).collect();
        assert_eq!(got, [100, 150, 200, 250, 250]);
        assert_eq!(cfg.raw_delay(0), ms(100));
        assert_eq!(cfg.raw_delay(3), ms(200));
        assert_eq!(cfg.raw_delay(u32::MAX), ms(250));
    }

    #[test]
    fn exponential_doubling_table() {
        let cfg = BackoffConfig::exponential(ms(100), 2_000, ms(1_000))
            .unwrap()
            .with_jitter(Jitter::None)
            .unwrap();
        let got: Vec<u64> = take_ns(cfg, 0, 6).iter().map(|n| n / 1_000_000).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn exponential_one_and_a_half_table() {
        // 1 s * 1.5^(n-1): 1, 1.5, 2.25, 3.375, 5.0625, 7.59375, then the 10 s cap.
        let cfg =
            BackoffConfig::exponential(Duration::from_secs(1), 1_500, Duration::from_secs(10))
                .unwrap()
                .with_jitter(Jitter::None)
                .unwrap();
        assert_eq!(
            take_ns(cfg, 0, 7),
            [
                1_000_000_000,
                1_500_000_000,
                2_250_000_000,
                3_375_000_000,
                5_062_500_000,
                7_593_750_000,
                10_000_000_000
            ]
        );
    }

    #[test]
    fn exponential_rounds_up_so_it_always_grows() {
        // 1 ns * 1.001 would stay at 1 ns with truncation; ceil makes it 2, 3, ...
        let cfg = BackoffConfig::exponential(Duration::from_nanos(1), 1_001, ms(1))
            .unwrap()
            .with_jitter(Jitter::None)
            .unwrap();
        assert_eq!(take_ns(cfg, 0, 4), [1, 2, 3, 4]);
        assert_eq!(cfg.raw_delay(u32::MAX), ms(1));
    }

    #[test]
    fn original_schedule_in_our_terms() {
        // The original: retry_delay = 5 s, delay = 5 * 2^(n-1), no cap, no jitter.
        let cfg = BackoffConfig::exponential(Duration::from_secs(5), 2_000, Duration::MAX)
            .unwrap()
            .with_jitter(Jitter::None)
            .unwrap();
        assert_eq!(cfg.raw_delay(1), Duration::from_secs(5));
        assert_eq!(cfg.raw_delay(2), Duration::from_secs(10));
        assert_eq!(cfg.raw_delay(3), Duration::from_secs(20));
        assert_eq!(cfg.raw_delay(u32::MAX), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn full_jitter_hand_computed() {
        // SplitMix64(0) first output 0xE220A8397B1DCDAF; full jitter on 100 ms draws
        // (r * (100_000_000 + 1)) >> 64 = 88_331_081 ns (computed by hand, see rng.rs).
        let cfg = BackoffConfig::constant(ms(100));
        assert_eq!(take_ns(cfg, 0, 1), [88_331_081]);
        // Equal jitter: 50 ms + (r * (50_000_000 + 1)) >> 64 = 50 ms + 44_165_541 ns.
        let eq = cfg.with_jitter(Jitter::Equal).unwrap();
        assert_eq!(take_ns(eq, 0, 1), [94_165_541]);
    }

    #[test]
    fn decorrelated_draws_from_previous() {
        let cfg = BackoffConfig::exponential(ms(10), 2_000, ms(1_000))
            .unwrap()
            .with_jitter(Jitter::Decorrelated)
            .unwrap();
        let got = take_ns(cfg, 3, 200);
        let mut prev = 10_000_000u64;
        for d in got {
            assert!(d >= 10_000_000, "{d} below base");
            assert!(
                d <= (prev * 3).clamp(10_000_000, 1_000_000_000),
                "{d} above 3x {prev}"
            );
            prev = d;
        }
    }

    #[test]
    fn bad_configs_name_field_and_rule() {
        let e = BackoffConfig::exponential(ms(10), 999, ms(100)).unwrap_err();
        assert_eq!(e.field(), "multiplier_permille");
        assert!(e.to_string().contains("multiplier_permille"));
        assert!(e.to_string().contains(">= 1000"));
        let e = BackoffConfig::exponential(ms(10), 1_000_001, ms(100)).unwrap_err();
        assert_eq!(e.field(), "multiplier_permille");
        let e = BackoffConfig::exponential(ms(10), 2_000, ms(5)).unwrap_err();
        assert_eq!((e.field(), e.rule()), ("cap", "must be >= base"));
        let e = BackoffConfig::exponential(Duration::ZERO, 2_000, ms(5)).unwrap_err();
        assert_eq!(e.field(), "base");
        let e = BackoffConfig::linear(ms(10), ms(1), ms(5)).unwrap_err();
        assert_eq!(e.field(), "cap");
        let e = BackoffConfig::linear(Duration::ZERO, ms(1), ms(5))
            .unwrap()
            .with_jitter(Jitter::Decorrelated)
            .unwrap_err();
        assert_eq!(e.field(), "base");
    }

    #[test]
    fn degenerate_range_is_valid() {
        let cfg = BackoffConfig::linear(Duration::ZERO, Duration::ZERO, Duration::ZERO).unwrap();
        assert_eq!(cfg.raw_delay(0), Duration::ZERO);
        assert_eq!(take_ns(cfg, 9, 3), [0, 0, 0]);
    }

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    fn any_config() -> impl Strategy<Value = BackoffConfig> {
        let nanos = prop_oneof![0..10u64, 1..1_000_000_000_000u64, Just(u64::MAX)];
        (
            0..3u8,
            nanos.clone(),
            nanos.clone(),
            nanos,
            1_000..=1_000_000u32,
            any_jitter(),
        )
            .prop_filter_map("valid", |(kind, a, b, step, m, j)| {
                let (base, cap) = (a.min(b), a.max(b));
                let (base, cap) = (Duration::from_nanos(base), Duration::from_nanos(cap));
                let cfg = match kind {
                    0 => Ok(BackoffConfig::constant(base)),
                    1 => BackoffConfig::linear(base, Duration::from_nanos(step), cap),
                    _ => BackoffConfig::exponential(base, m, cap),
                };
                cfg.ok()?.with_jitter(j).ok()
            })
    }

    proptest! {
        #[test]
        fn bounds_hold_for_every_attempt(cfg in any_config(), seed in any::<u64>()) {
            for attempt in [0u32, 1, 2, 64, 1025, u32::MAX] {
                let raw = cfg.raw_delay(attempt);
                prop_assert!(raw <= cfg.cap());
                if cfg.base() <= cfg.cap() {
                    prop_assert!(raw >= cfg.base().min(cfg.cap()));
                }
            }
            let mut s = BackoffState::new(seed);
            let mut last_raw = 0u64;
            for i in 1..=80u32 {
                let d = s.next_delay_ns(&cfg);
                prop_assert!(d <= cfg.cap_ns);
                // Incremental walk and random access agree.
                prop_assert_eq!(s.raw_ns, cfg.raw_delay_ns(i));
                prop_assert!(s.raw_ns >= last_raw, "raw schedule decreased");
                last_raw = s.raw_ns;
                match cfg.jitter() {
                    Jitter::None => prop_assert_eq!(d, s.raw_ns),
                    Jitter::Equal => prop_assert!(d >= s.raw_ns - s.raw_ns / 2),
                    Jitter::Decorrelated => prop_assert!(d >= cfg.base_ns),
                    _ => {}
                }
            }
        }

        #[test]
        fn same_seed_same_schedule(cfg in any_config(), seed in any::<u64>()) {
            prop_assert_eq!(take_ns(cfg, seed, 32), take_ns(cfg, seed, 32));
        }

        #[test]
        fn saturated_attempt_counter_is_harmless(cfg in any_config(), seed in any::<u64>()) {
            let mut s = BackoffState::new(seed);
            s.attempt = u32::MAX - 2;
            s.raw_ns = cfg.raw_delay_ns(u32::MAX);
            for _ in 0..5 {
                prop_assert!(s.next_delay_ns(&cfg) <= cfg.cap_ns);
            }
            prop_assert_eq!(s.retries(), u32::MAX);
        }
    }
}
