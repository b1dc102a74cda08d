//! Retry decisions: whether to try again, and after how long.
//!
//! The original design computed a backoff delay, logged it and never handed it to
//! anyone; its `max_retries: 3` meant three calls in total (its `handle_task_failure`
//! returned true, true, false). Here:
//!
//! - [`RetryPolicy::max_attempts`] counts **calls in total**, the first included: `1`
//!   means never retry, and the original's `max_retries = 3` is `max_attempts = 3`;
//! - [`RetryState::on_failure`] returns the decision, [`Decision::RetryAfter`] with the
//!   delay to sleep, or [`Decision::GiveUp`] with the reason;
//! - `max_elapsed` never schedules an attempt whose start would fall after the budget:
//!   the last failure is returned at once, with no final useless sleep;
//! - a non-retryable kind gives up on the first failure;
//! - a server's retry-after hint is honoured but never above the cap, and never raised
//!   to it;
//! - a [`RetryBudget`] (a token bucket after Finagle's `RetryBudget` and gRPC's retry
//!   throttling) lets retries be at most a ratio of recent calls plus a small floor, so a
//!   fleet of callers cannot turn an outage into a retry storm. A budget is shared state,
//!   not part of a policy: it is handed to the decision that draws from it
//!   ([`RetryState::on_failure_with`], [`RetryState::on_failure_gated`]) or to the retry
//!   driver ([`Retry::budget`](crate::retry_driver::Retry::budget)), and the adapters
//!   share one between tasks and threads (`sturdy_shared::RetryBudget`, lock-free).
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::{FailureKind, Instant};
//! use sturdy_core::backoff::{BackoffConfig, Jitter};
//! use sturdy_core::retry::{Decision, GiveUpReason, RetryPolicy, RetryState};
//!
//! let backoff = BackoffConfig::exponential(Duration::from_secs(5), 2_000, Duration::from_secs(60))?
//!     .with_jitter(Jitter::None)?;
//! let policy = RetryPolicy::new(3, backoff)?;
//! let mut state = RetryState::new(Instant::ZERO, 42);
//! let now = Instant::from_secs(1);
//! assert_eq!(state.on_failure(&policy, FailureKind::Network, now), Decision::RetryAfter(Duration::from_secs(5)));
//! assert_eq!(state.on_failure(&policy, FailureKind::Network, now), Decision::RetryAfter(Duration::from_secs(10)));
//! assert_eq!(
//!     state.on_failure(&policy, FailureKind::Network, now),
//!     Decision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 3 })
//! );
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```

use core::fmt;
use core::time::Duration;

use crate::backoff::{BackoffConfig, BackoffState, Jitter};
use crate::error::ConfigError;
use crate::failure::{FailureKind, KindSet};
use crate::time::{Instant, Monotonic, duration_to_nanos};

/// How a task or call is retried. Shape: under 80 bytes, `Copy`.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RetryPolicyUnchecked"))]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: BackoffConfig,
    max_elapsed: Option<Duration>,
    retryable: KindSet,
}

impl RetryPolicy {
    /// At most `max_attempts` calls in total (1 = never retry), waiting `backoff`
    /// between them; every kind but cancelled and permanent is retried; no elapsed-time
    /// limit. (A retry budget is not part of a policy: see the [module docs](self).)
    ///
    /// # Errors
    /// `max_attempts` of zero.
    pub const fn new(max_attempts: u32, backoff: BackoffConfig) -> Result<Self, ConfigError> {
        if max_attempts == 0 {
            return Err(ConfigError::new(
                "max_attempts",
                "must be >= 1 (it counts calls in total; 1 means never retry)",
            ));
        }
        Ok(Self {
            max_attempts,
            backoff,
            max_elapsed: None,
            retryable: KindSet::retryable_defaults(),
        })
    }

    /// Gives up once the next attempt would start more than `max_elapsed` after the
    /// first one started.
    ///
    /// # Errors
    /// A zero `max_elapsed`.
    pub const fn with_max_elapsed(mut self, max_elapsed: Duration) -> Result<Self, ConfigError> {
        if max_elapsed.is_zero() {
            return Err(ConfigError::new("max_elapsed", "must be > 0"));
        }
        self.max_elapsed = Some(max_elapsed);
        Ok(self)
    }

    /// Retries exactly the kinds in `retryable`.
    pub const fn with_retryable(mut self, retryable: KindSet) -> Self {
        self.retryable = retryable;
        self
    }

    /// Calls in total, the first included.
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff schedule between attempts.
    pub const fn backoff(&self) -> &BackoffConfig {
        &self.backoff
    }

    /// The elapsed-time limit, if any.
    pub const fn max_elapsed(&self) -> Option<Duration> {
        self.max_elapsed
    }

    /// The kinds that are retried.
    pub const fn retryable(&self) -> KindSet {
        self.retryable
    }
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::ORIGINAL`].
    fn default() -> Self {
        Self::ORIGINAL
    }
}

impl RetryPolicy {
    /// The original's defaults made sound: 3 calls in total, 5 s doubling, capped at
    /// 300 s (the original had no cap), full jitter. The [`Default`].
    pub const ORIGINAL: Self = crate::error::unwrap_config(Self::new(
        3,
        crate::error::unwrap_config(BackoffConfig::exponential(
            Duration::from_secs(5),
            2_000,
            Duration::from_secs(300),
        )),
    ));
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Decision {
    /// Sleep this long, then call again.
    RetryAfter(Duration),
    /// Stop: return the last failure to the caller now.
    GiveUp(GiveUpReason),
}

/// Why a retry state gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The failure's kind is not retried by the policy.
    NotRetryable(FailureKind),
    /// `max_attempts` calls were made.
    AttemptsExhausted {
        /// Calls made in total.
        attempts: u32,
    },
    /// The next attempt would start after `max_elapsed`.
    ElapsedExceeded {
        /// Time since the first attempt started, when the decision was made.
        elapsed: Duration,
    },
    /// The shared retry budget had no token.
    BudgetExhausted,
    /// A circuit breaker refused the call and admits again only in `wait`, beyond the
    /// policy's backoff cap ([`Duration::MAX`]: only after a manual reset); see
    /// [`Classified::rejected`](crate::retry_driver::Classified::rejected).
    BreakerOpen {
        /// How long until the breaker admits again, from the refusal.
        wait: Duration,
    },
    /// The task's workers crashed under it more often than the ledger's crash limit
    /// allows ([`LedgerConfig::with_crash_limit`](crate::manager::LedgerConfig::with_crash_limit)):
    /// not a decision of a [`RetryState`], which counts only the task's own failures, but
    /// of the [`Ledger`](crate::manager::Ledger) (after Dask's `allowed-failures`).
    CrashLimit {
        /// Crashes counted, the one that gave up included (the limit plus one).
        crashes: u32,
    },
    /// The state had already succeeded or given up.
    Finished,
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRetryable(k) => write!(f, "failure kind {k} is not retryable"),
            Self::AttemptsExhausted { attempts } => write!(f, "gave up after {attempts} attempts"),
            Self::ElapsedExceeded { elapsed } => {
                write!(
                    f,
                    "next attempt would exceed max_elapsed ({} ms elapsed)",
                    elapsed.as_millis()
                )
            }
            Self::BudgetExhausted => f.write_str("retry budget exhausted"),
            Self::BreakerOpen { wait } if *wait == Duration::MAX => {
                f.write_str("circuit breaker open until reset")
            }
            Self::BreakerOpen { wait } => write!(
                f,
                "circuit breaker open for {} ms more, beyond the backoff cap",
                wait.as_millis()
            ),
            Self::CrashLimit { crashes } => {
                write!(f, "gave up after its worker crashed {crashes} times")
            }
            Self::Finished => f.write_str("retry state already finished"),
        }
    }
}

/// Where one task or call stands in its retries. Shape: 64 bytes, `Copy`; it does not
/// hold the policy, so a ledger keeps one policy for many states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RetryState {
    backoff: BackoffState,
    attempts: u32,
    started: Instant,
    clock: Monotonic,
    finished: bool,
}

impl RetryState {
    /// The first attempt starts at `now`; jitter is drawn from `seed`.
    pub const fn new(now: Instant, seed: u64) -> Self {
        Self {
            backoff: BackoffState::new(seed),
            attempts: 1,
            started: now,
            clock: Monotonic::new(now),
            finished: false,
        }
    }

    /// Decides after a failed attempt (no hint, no budget). See
    /// [`on_failure_with`](Self::on_failure_with).
    pub fn on_failure(
        &mut self,
        policy: &RetryPolicy,
        kind: FailureKind,
        now: Instant,
    ) -> Decision {
        self.on_failure_with(policy, kind, now, None, None)
    }

    /// Decides after a failed attempt of kind `kind` at `now`.
    ///
    /// `retry_after` is a server's hint (HTTP `Retry-After`, gRPC pushback): the delay
    /// is the larger of the hint and the backoff draw, and never above the cap.
    /// `budget`, when given, must hold a token for the retry.
    ///
    /// On [`Decision::RetryAfter`] the attempt count has already grown by one: the
    /// caller sleeps the delay and calls again.
    pub fn on_failure_with(
        &mut self,
        policy: &RetryPolicy,
        kind: FailureKind,
        now: Instant,
        retry_after: Option<Duration>,
        budget: Option<&mut RetryBudget>,
    ) -> Decision {
        match budget {
            Some(b) => {
                self.on_failure_gated(policy, kind, now, retry_after, |now| b.try_withdraw(now))
            }
            None => self.on_failure_gated(policy, kind, now, retry_after, |_| true),
        }
    }

    /// [`on_failure_with`](Self::on_failure_with) with the budget as a gate: once every
    /// other rule allows a retry, `may_retry(now)` is asked exactly once (and only then,
    /// so a token is taken only for a retry that happens); `false` gives up with
    /// [`GiveUpReason::BudgetExhausted`]. This is how a budget shared between tasks or
    /// threads (behind an atomic or a lock) takes part in the decision.
    pub fn on_failure_gated(
        &mut self,
        policy: &RetryPolicy,
        kind: FailureKind,
        now: Instant,
        retry_after: Option<Duration>,
        may_retry: impl FnOnce(Instant) -> bool,
    ) -> Decision {
        let now = self.clock.observe(now);
        if self.finished {
            return Decision::GiveUp(GiveUpReason::Finished);
        }
        let give_up = |s: &mut Self, r| {
            s.finished = true;
            Decision::GiveUp(r)
        };
        if !policy.retryable.contains(kind) {
            return give_up(self, GiveUpReason::NotRetryable(kind));
        }
        if self.attempts >= policy.max_attempts {
            return give_up(
                self,
                GiveUpReason::AttemptsExhausted {
                    attempts: self.attempts,
                },
            );
        }
        let mut delay = self.backoff.next_delay(&policy.backoff);
        if let Some(hint) = retry_after {
            delay = delay.max(hint).min(policy.backoff.cap());
        }
        if let Some(limit) = policy.max_elapsed {
            let elapsed = now.saturating_duration_since(self.started);
            if duration_to_nanos(elapsed).saturating_add(duration_to_nanos(delay))
                > duration_to_nanos(limit)
            {
                return give_up(self, GiveUpReason::ElapsedExceeded { elapsed });
            }
        }
        if !may_retry(now) {
            return give_up(self, GiveUpReason::BudgetExhausted);
        }
        self.attempts += 1;
        Decision::RetryAfter(delay)
    }

    /// Counts `n` more calls made without moving the backoff (saturating).
    pub(crate) fn add_attempts(&mut self, n: u32) {
        self.attempts = self.attempts.saturating_add(n);
    }

    /// The attempt succeeded: the state is finished.
    pub fn on_success(&mut self, now: Instant) {
        self.clock.observe(now);
        self.finished = true;
    }

    /// Calls made so far, the one in progress included (1 right after [`new`](Self::new)).
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the first attempt started.
    pub const fn started(&self) -> Instant {
        self.started
    }

    /// Whether the state succeeded or gave up.
    pub const fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A retry budget's rules. After Finagle's `RetryBudget` (a ratio of recent requests plus
/// a minimum number of retries per second) and gRPC's retry throttling (a token bucket
/// filled by calls and drained by retries).
///
/// Each new request deposits `ratio_permille / 1000` of a token; each retry withdraws one
/// token; `min_retries_per_sec` tokens trickle in every second whatever the traffic (the
/// floor); the bucket holds at most `max_tokens`, so only recent traffic counts.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "RetryBudgetConfigUnchecked"))]
pub struct RetryBudgetConfig {
    ratio_permille: u32,
    min_retries_per_sec: u32,
    max_tokens: u32,
}

impl RetryBudgetConfig {
    /// Retries may be `ratio_permille / 1000` of requests (Finagle's default: 200, 20 %),
    /// plus `min_retries_per_sec` (Finagle's default: 10), with at most `max_tokens`
    /// saved up.
    ///
    /// # Errors
    /// `max_tokens` of zero; `ratio_permille` above 1000 (more retries than requests).
    pub const fn new(
        ratio_permille: u32,
        min_retries_per_sec: u32,
        max_tokens: u32,
    ) -> Result<Self, ConfigError> {
        if ratio_permille > 1_000 {
            return Err(ConfigError::new(
                "ratio_permille",
                "must be <= 1000 (at most one retry per request)",
            ));
        }
        if max_tokens == 0 {
            return Err(ConfigError::new("max_tokens", "must be >= 1"));
        }
        Ok(Self {
            ratio_permille,
            min_retries_per_sec,
            max_tokens,
        })
    }

    /// Thousandths of a token each new request deposits.
    pub const fn ratio_permille(&self) -> u32 {
        self.ratio_permille
    }

    /// Tokens that trickle in every second whatever the traffic.
    pub const fn min_retries_per_sec(&self) -> u32 {
        self.min_retries_per_sec
    }

    /// The most tokens the bucket holds (and holds at the start).
    pub const fn max_tokens(&self) -> u32 {
        self.max_tokens
    }
}

impl Default for RetryBudgetConfig {
    /// Finagle's defaults: 20 % of requests, 10 retries per second, bucket of 100.
    fn default() -> Self {
        Self {
            ratio_permille: 200,
            min_retries_per_sec: 10,
            max_tokens: 100,
        }
    }
}

/// The serialized shape of [`RetryPolicy`], checked on the way in by the rules of its
/// constructors (the backoff and the budget check themselves).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct RetryPolicyUnchecked {
    max_attempts: u32,
    backoff: BackoffConfig,
    max_elapsed: Option<Duration>,
    retryable: KindSet,
}

#[cfg(feature = "serde")]
impl TryFrom<RetryPolicyUnchecked> for RetryPolicy {
    type Error = ConfigError;
    fn try_from(u: RetryPolicyUnchecked) -> Result<Self, ConfigError> {
        let mut p = Self::new(u.max_attempts, u.backoff)?.with_retryable(u.retryable);
        if let Some(limit) = u.max_elapsed {
            p = p.with_max_elapsed(limit)?;
        }
        Ok(p)
    }
}

/// The serialized shape of [`RetryBudgetConfig`], checked on the way in.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct RetryBudgetConfigUnchecked {
    ratio_permille: u32,
    min_retries_per_sec: u32,
    max_tokens: u32,
}

#[cfg(feature = "serde")]
impl TryFrom<RetryBudgetConfigUnchecked> for RetryBudgetConfig {
    type Error = ConfigError;
    fn try_from(u: RetryBudgetConfigUnchecked) -> Result<Self, ConfigError> {
        Self::new(u.ratio_permille, u.min_retries_per_sec, u.max_tokens)
    }
}

/// A retry budget's state: a token bucket in thousandths of a token, with one owner
/// (`&mut`). Shape: 40 bytes.
///
/// To share one budget between tasks or threads, as a budget must be to stop a retry
/// storm, use the adapters' handles (`sturdy_shared::RetryBudget`: lock-free, `Clone +
/// Send + Sync`; `sturdy_embassy::SharedRetryBudget`: a critical section), which follow
/// these rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    milli_tokens: u64,
    last_refill: Instant,
    clock: Monotonic,
}

impl RetryBudget {
    /// A budget that starts full at `now` (so the first failures of a fresh process
    /// may retry).
    pub const fn new(config: RetryBudgetConfig, now: Instant) -> Self {
        Self {
            config,
            milli_tokens: config.max_tokens as u64 * 1_000,
            last_refill: now,
            clock: Monotonic::new(now),
        }
    }

    fn cap(&self) -> u64 {
        self.config.max_tokens as u64 * 1_000
    }

    fn refill(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        let elapsed_ns = now.as_nanos().saturating_sub(self.last_refill.as_nanos());
        // min_retries_per_sec tokens per second = that many milli-tokens per ms.
        let add = (elapsed_ns as u128 * self.config.min_retries_per_sec as u128) / 1_000_000;
        if add > 0 {
            self.milli_tokens = (self.milli_tokens as u128 + add).min(self.cap() as u128) as u64;
            self.last_refill = now;
        }
    }

    /// A new request (a first attempt) started: deposits `ratio_permille` milli-tokens.
    pub fn record_request(&mut self, now: Instant) {
        self.refill(now);
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(self.config.ratio_permille as u64)
            .min(self.cap());
    }

    /// Takes one token for a retry; `false` when the budget is empty.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.milli_tokens >= 1_000 {
            self.milli_tokens -= 1_000;
            true
        } else {
            false
        }
    }

    /// Whole tokens available (getter; no refill).
    pub const fn tokens(&self) -> u64 {
        self.milli_tokens / 1_000
    }
}

/// A retry policy with no jitter and a constant delay: handy in tests.
pub const fn fixed_policy(max_attempts: u32, delay: Duration) -> Result<RetryPolicy, ConfigError> {
    match BackoffConfig::constant(delay).with_jitter(Jitter::None) {
        Ok(backoff) => RetryPolicy::new(max_attempts, backoff),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_policy(max_attempts: u32) -> RetryPolicy {
        let b = BackoffConfig::exponential(Duration::from_secs(5), 2_000, Duration::from_secs(60))
            .unwrap()
            .with_jitter(Jitter::None)
            .unwrap();
        RetryPolicy::new(max_attempts, b).unwrap()
    }

    #[test]
    fn original_sequence_three_calls_in_total() {
        // The original: max_retries=3 returned true, true, false.
        let p = exp_policy(3);
        let mut s = RetryState::new(Instant::ZERO, 0);
        let t = Instant::from_secs(1);
        assert_eq!(
            s.on_failure(&p, FailureKind::Evaluation, t),
            Decision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(s.attempts(), 2);
        assert_eq!(
            s.on_failure(&p, FailureKind::Evaluation, t),
            Decision::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(s.attempts(), 3);
        assert_eq!(
            s.on_failure(&p, FailureKind::Evaluation, t),
            Decision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 3 })
        );
        assert!(s.is_finished());
        assert_eq!(
            s.on_failure(&p, FailureKind::Evaluation, t),
            Decision::GiveUp(GiveUpReason::Finished)
        );
    }

    #[test]
    fn one_attempt_never_retries() {
        let p = exp_policy(1);
        let mut s = RetryState::new(Instant::ZERO, 0);
        assert_eq!(
            s.on_failure(&p, FailureKind::Network, Instant::ZERO),
            Decision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 1 })
        );
    }

    #[test]
    fn non_retryable_gives_up_first_time() {
        let p = exp_policy(10);
        let mut s = RetryState::new(Instant::ZERO, 0);
        assert_eq!(
            s.on_failure(&p, FailureKind::Permanent, Instant::ZERO),
            Decision::GiveUp(GiveUpReason::NotRetryable(FailureKind::Permanent))
        );
        let p = exp_policy(10).with_retryable(KindSet::EMPTY.with(FailureKind::Network));
        let mut s = RetryState::new(Instant::ZERO, 0);
        assert_eq!(
            s.on_failure(&p, FailureKind::Gpu, Instant::ZERO),
            Decision::GiveUp(GiveUpReason::NotRetryable(FailureKind::Gpu))
        );
    }

    #[test]
    fn max_elapsed_stops_without_a_useless_sleep() {
        // Delays 5, 10, 20: attempts start at 0, 5, 15; the next would start at 35 > 30.
        let p = exp_policy(10)
            .with_max_elapsed(Duration::from_secs(30))
            .unwrap();
        let mut s = RetryState::new(Instant::ZERO, 0);
        assert_eq!(
            s.on_failure(&p, FailureKind::Network, Instant::ZERO),
            Decision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            s.on_failure(&p, FailureKind::Network, Instant::from_secs(5)),
            Decision::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(
            s.on_failure(&p, FailureKind::Network, Instant::from_secs(15)),
            Decision::GiveUp(GiveUpReason::ElapsedExceeded {
                elapsed: Duration::from_secs(15)
            })
        );
        assert_eq!(s.attempts(), 3);
    }

    #[test]
    fn success_finishes() {
        let p = exp_policy(3);
        let mut s = RetryState::new(Instant::ZERO, 0);
        s.on_success(Instant::from_secs(1));
        assert!(s.is_finished());
        assert_eq!(
            s.on_failure(&p, FailureKind::Network, Instant::from_secs(2)),
            Decision::GiveUp(GiveUpReason::Finished)
        );
    }

    #[test]
    fn retry_after_hint_is_honoured_and_capped_never_raised() {
        let p = exp_policy(5);
        let mut s = RetryState::new(Instant::ZERO, 0);
        // Hint above the 5 s draw: honoured.
        assert_eq!(
            s.on_failure_with(
                &p,
                FailureKind::Network,
                Instant::ZERO,
                Some(Duration::from_secs(7)),
                None
            ),
            Decision::RetryAfter(Duration::from_secs(7))
        );
        // Hint above the 60 s cap: capped.
        assert_eq!(
            s.on_failure_with(
                &p,
                FailureKind::Network,
                Instant::ZERO,
                Some(Duration::from_secs(600)),
                None
            ),
            Decision::RetryAfter(Duration::from_secs(60))
        );
        // Hint below the 20 s draw: the draw, not the cap.
        assert_eq!(
            s.on_failure_with(
                &p,
                FailureKind::Network,
                Instant::ZERO,
                Some(Duration::from_secs(1)),
                None
            ),
            Decision::RetryAfter(Duration::from_secs(20))
        );
    }

    #[test]
    fn budget_limits_retries_to_ratio_plus_floor() {
        let cfg = RetryBudgetConfig::new(200, 0, 2).unwrap();
        let mut b = RetryBudget::new(cfg, Instant::ZERO);
        assert_eq!(b.tokens(), 2);
        assert!(b.try_withdraw(Instant::ZERO));
        assert!(b.try_withdraw(Instant::ZERO));
        assert!(!b.try_withdraw(Instant::ZERO));
        // Five requests at 20 % earn one retry.
        for _ in 0..5 {
            b.record_request(Instant::ZERO);
        }
        assert!(b.try_withdraw(Instant::ZERO));
        assert!(!b.try_withdraw(Instant::ZERO));

        // The floor: 10 retries per second trickle in.
        let cfg = RetryBudgetConfig::new(0, 10, 100).unwrap();
        let mut b = RetryBudget::new(cfg, Instant::ZERO);
        for _ in 0..100 {
            assert!(b.try_withdraw(Instant::ZERO));
        }
        assert!(!b.try_withdraw(Instant::ZERO));
        assert!(!b.try_withdraw(Instant::from_millis(99)));
        assert!(b.try_withdraw(Instant::from_millis(100)));
        assert!(!b.try_withdraw(Instant::from_millis(100)));
        // A clock that jumps backwards refills nothing and panics nowhere.
        assert!(!b.try_withdraw(Instant::ZERO));

        let p = exp_policy(10);
        let mut s = RetryState::new(Instant::from_secs(1), 0);
        let mut empty = RetryBudget::new(RetryBudgetConfig::new(0, 0, 1).unwrap(), Instant::ZERO);
        assert!(empty.try_withdraw(Instant::ZERO));
        assert_eq!(
            s.on_failure_with(
                &p,
                FailureKind::Network,
                Instant::from_secs(1),
                None,
                Some(&mut empty)
            ),
            Decision::GiveUp(GiveUpReason::BudgetExhausted)
        );
    }

    #[test]
    fn a_gate_is_asked_once_and_only_for_a_retry_that_would_happen() {
        let p = exp_policy(2);
        let asked = core::cell::Cell::new(0);
        let gate = |_| {
            asked.set(asked.get() + 1);
            true
        };
        let mut s = RetryState::new(Instant::ZERO, 0);
        // Not retryable: the gate is not asked (no token taken for nothing).
        assert_eq!(
            s.on_failure_gated(&p, FailureKind::Permanent, Instant::ZERO, None, gate),
            Decision::GiveUp(GiveUpReason::NotRetryable(FailureKind::Permanent))
        );
        assert_eq!(asked.get(), 0);
        let mut s = RetryState::new(Instant::ZERO, 0);
        assert_eq!(
            s.on_failure_gated(&p, FailureKind::Network, Instant::ZERO, None, gate),
            Decision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(asked.get(), 1);
        // Attempts exhausted: not asked again.
        assert_eq!(
            s.on_failure_gated(&p, FailureKind::Network, Instant::ZERO, None, gate),
            Decision::GiveUp(GiveUpReason::AttemptsExhausted { attempts: 2 })
        );
        assert_eq!(asked.get(), 1);
        // A refusing gate gives up, and the attempt count stays.
        let mut s = RetryState::new(Instant::ZERO, 0);
        assert_eq!(
            s.on_failure_gated(&p, FailureKind::Network, Instant::ZERO, None, |_| false),
            Decision::GiveUp(GiveUpReason::BudgetExhausted)
        );
        assert_eq!(s.attempts(), 1);
        assert!(s.is_finished());
    }

    #[test]
    fn bad_configs() {
        let b = BackoffConfig::constant(Duration::from_secs(1));
        assert_eq!(RetryPolicy::new(0, b).unwrap_err().field(), "max_attempts");
        assert_eq!(
            RetryPolicy::new(1, b)
                .unwrap()
                .with_max_elapsed(Duration::ZERO)
                .unwrap_err()
                .field(),
            "max_elapsed"
        );
        assert_eq!(
            RetryBudgetConfig::new(1001, 0, 1).unwrap_err().field(),
            "ratio_permille"
        );
        assert_eq!(
            RetryBudgetConfig::new(10, 0, 0).unwrap_err().field(),
            "max_tokens"
        );
    }

    #[test]
    fn default_policy_is_the_original_made_sound() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 3);
        assert_eq!(p.backoff().base(), Duration::from_secs(5));
        assert_eq!(p.backoff().cap(), Duration::from_secs(300));
    }
}
