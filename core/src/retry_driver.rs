//! The async retry loop, written once for every runtime.
//!
//! A runtime supplies a [`Timer`] (its clock and its sleep); [`Retry`] (or the
//! [`retry`] shorthand) calls an async operation until it succeeds, following
//! [`RetryState`]'s decisions exactly:
//!
//! - after a failure it sleeps the delay [`RetryState::on_failure_with`] returned, then
//!   calls again;
//! - it stops on [`Decision::GiveUp`]: attempts exhausted, `max_elapsed` reached (no
//!   final useless sleep), or a kind the policy does not retry (at once, one call);
//! - an optional per-attempt timeout races each call against a sleep; an attempt that
//!   runs past it is dropped and counts as a [`FailureKind::TaskTimeout`] failure;
//! - with a [`RetryGate`] set ([`Retry::budget`]), each run deposits into the shared
//!   retry budget once, at its start, and each retry takes a token from it; an empty
//!   budget gives up with [`GiveUpReason::BudgetExhausted`] (no budget: no limit but the
//!   policy's);
//! - it is cancellation-safe: it spawns nothing and owns every timer it arms, so
//!   dropping the future drops the operation in flight and the sleep, and nothing is
//!   left behind.
//!
//! The success path is lean: with no `max_elapsed` and no per-attempt timeout, a call
//! that succeeds the first time reads no clock and allocates nothing; the retry state
//! is created at the first failure (its start is then that failure's time, which no
//! decision reads unless `max_elapsed` is set, and then the clock is read up front).
//!
//! `no_std`, no allocation, no `unsafe`: the race between an attempt and its timeout is
//! `core::pin::pin!` plus `core::future::poll_fn`.
//!
//! ```
//! use core::time::Duration;
//! use sturdy_core::retry::fixed_policy;
//! use sturdy_core::retry_driver::{Retry, RetryError};
//! use sturdy_core::FailureKind;
//! # use core::future::{ready, Ready, Future};
//! # use core::cell::Cell;
//! # use sturdy_core::Instant;
//! # use sturdy_core::retry_driver::Timer;
//! # // A timer whose sleeps finish at once and move a shared virtual clock.
//! # struct Virtual<'a>(&'a Cell<Instant>);
//! # impl Timer for Virtual<'_> {
//! #     type Sleep = Ready<()>;
//! #     fn now(&self) -> Instant { self.0.get() }
//! #     fn sleep_until(&self, t: Instant) -> Ready<()> { self.0.set(t); ready(()) }
//! # }
//! # let clock = Cell::new(Instant::ZERO);
//! # let timer = Virtual(&clock);
//! # fn block_on<F: Future>(f: F) -> F::Output {
//! #     let mut f = core::pin::pin!(f);
//! #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
//! #     loop { if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
//! # }
//!
//! let policy = fixed_policy(4, Duration::from_millis(100))?;
//! let calls = Cell::new(0);
//! let out: Result<u32, RetryError<&str>> = block_on(
//!     Retry::new(timer, &policy).run(
//!         |_e: &&str| FailureKind::Network,
//!         || {
//!             calls.set(calls.get() + 1);
//!             ready(if calls.get() < 3 { Err("refused") } else { Ok(7) })
//!         },
//!     ),
//! );
//! assert_eq!(out, Ok(7));
//! assert_eq!(calls.get(), 3);
//! assert_eq!(clock.get(), Instant::from_millis(200));
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```

use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::{Context, Poll};
use core::time::Duration;

use crate::error::ConfigError;
use crate::failure::FailureKind;
use crate::retry::{Decision, GiveUpReason, RetryPolicy, RetryState};
use crate::rng::SplitMix64;
use crate::time::Instant;

/// A runtime's clock and sleep, as the retry driver needs them.
///
/// Implementations: `sturdy-tokio` (tokio time, so tests run under
/// `tokio::time::pause()`), `sturdy-async-std` (async-io timers), `sturdy-embassy`
/// (embassy-time). The driver owns the timer by value; a timer is usually a small
/// handle.
pub trait Timer {
    /// The future [`sleep_until`](Self::sleep_until) returns; its output is ignored.
    type Sleep: Future;

    /// The current time, monotonic, in the timer's own origin.
    fn now(&self) -> Instant;

    /// A future that completes at or after `deadline` (an instant of
    /// [`now`](Self::now)'s origin). Dropping it must disarm the timer.
    ///
    /// The driver reads [`now`](Self::now) before every poll of a sleep and does not
    /// poll it once `now >= deadline`, so a timer with a coarse tick never delays a
    /// retry past its deadline by more than one poll.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// A seed for the backoff's jitter, drawn when a retry state is created (at the
    /// first failure, or at the start when `max_elapsed` is set) at `now`.
    ///
    /// The default mixes `now`'s nanoseconds through SplitMix64; adapters may mix in
    /// more (a thread id, a counter) so that callers failing together spread apart.
    fn jitter_seed(&self, now: Instant) -> u64 {
        SplitMix64::new(now.as_nanos()).next_u64()
    }
}

/// How a failed attempt is classified: its [`FailureKind`], an optional server hint
/// (HTTP `Retry-After`, gRPC pushback) for the delay before the next attempt, and
/// whether a circuit breaker refused the call.
///
/// A classifier may return a bare [`FailureKind`]; it converts into this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Classified {
    /// The failure's kind; a kind the policy does not retry stops the loop at once.
    pub kind: FailureKind,
    /// A hint for the delay: the delay is the larger of the hint and the backoff draw,
    /// never above the backoff cap (see [`RetryState::on_failure_with`]).
    pub retry_after: Option<Duration>,
    /// `Some(wait)`: a circuit breaker refused the call (it was never made) and admits
    /// again in `wait` ([`Duration::MAX`]: only after a manual reset). See
    /// [`Classified::rejected`] for what the driver does with it.
    pub rejected: Option<Duration>,
}

impl Classified {
    /// A failure of `kind` with a server's `retry_after` hint.
    pub const fn with_retry_after(kind: FailureKind, retry_after: Duration) -> Self {
        Self {
            kind,
            retry_after: Some(retry_after),
            rejected: None,
        }
    }

    /// A circuit breaker refused the call; it admits again in `wait` (the rejection's
    /// `retry_at` minus now; [`Duration::MAX`] when only a manual reset will admit).
    ///
    /// The documented default for a rejection: it is **not retried blindly**. When the
    /// breaker admits again within the policy's backoff cap (`wait <= cap`), the next
    /// attempt waits at least until then (the larger of `wait` and the backoff draw;
    /// it counts as an attempt and draws from the budget like any retry); otherwise the
    /// loop gives up at once with [`GiveUpReason::BreakerOpen`]. A `max_elapsed` limit
    /// also applies to the wait. Its kind is [`FailureKind::Network`] (the dependency
    /// is known to be failing).
    pub const fn rejected(wait: Duration) -> Self {
        Self {
            kind: FailureKind::Network,
            retry_after: None,
            rejected: Some(wait),
        }
    }
}

impl From<FailureKind> for Classified {
    fn from(kind: FailureKind) -> Self {
        Self {
            kind,
            retry_after: None,
            rejected: None,
        }
    }
}

/// Why a retried operation failed in the end: the last attempt's failure, the number of
/// calls made and the reason the loop gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RetryError<E> {
    /// The last attempt returned `error`.
    Failed {
        /// The last attempt's error.
        error: E,
        /// Calls made in total, the last included.
        attempts: u32,
        /// Why no further attempt was made.
        reason: GiveUpReason,
    },
    /// The last attempt ran past the per-attempt timeout and was dropped.
    TimedOut {
        /// The per-attempt timeout.
        timeout: Duration,
        /// Calls made in total, the last included.
        attempts: u32,
        /// Why no further attempt was made.
        reason: GiveUpReason,
    },
}

impl<E> RetryError<E> {
    /// Calls made in total, the last included.
    pub const fn attempts(&self) -> u32 {
        match self {
            Self::Failed { attempts, .. } | Self::TimedOut { attempts, .. } => *attempts,
        }
    }

    /// Why the loop gave up.
    pub const fn reason(&self) -> GiveUpReason {
        match self {
            Self::Failed { reason, .. } | Self::TimedOut { reason, .. } => *reason,
        }
    }

    /// The last attempt's error; `None` when it timed out.
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            Self::TimedOut { .. } => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed {
                error,
                attempts,
                reason,
            } => write!(f, "{reason} (attempt {attempts} failed: {error})"),
            Self::TimedOut {
                timeout,
                attempts,
                reason,
            } => write!(
                f,
                "{reason} (attempt {attempts} timed out after {} ms)",
                timeout.as_millis()
            ),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Failed { error, .. } => Some(error),
            Self::TimedOut { .. } => None,
        }
    }
}

/// Hears what the retry loop decides; adapters turn these into log or `tracing`
/// events. Every method has an empty default; `()` hears nothing.
pub trait RetryObserver {
    /// Attempt `attempt` (1 = the first call) failed with `kind`; the next call comes
    /// after `delay`.
    fn on_retry(&mut self, attempt: u32, kind: FailureKind, delay: Duration) {
        let _ = (attempt, kind, delay);
    }

    /// Attempt `attempt` failed with `kind` and the loop stopped for `reason`.
    fn on_give_up(&mut self, attempt: u32, kind: FailureKind, reason: GiveUpReason) {
        let _ = (attempt, kind, reason);
    }

    /// Attempt `attempt` succeeded (1 = the first call, no retry).
    fn on_success(&mut self, attempt: u32) {
        let _ = attempt;
    }
}

impl RetryObserver for () {}

/// Both observers hear every event, the first one first.
impl<A: RetryObserver, B: RetryObserver> RetryObserver for (A, B) {
    fn on_retry(&mut self, attempt: u32, kind: FailureKind, delay: Duration) {
        self.0.on_retry(attempt, kind, delay);
        self.1.on_retry(attempt, kind, delay);
    }
    fn on_give_up(&mut self, attempt: u32, kind: FailureKind, reason: GiveUpReason) {
        self.0.on_give_up(attempt, kind, reason);
        self.1.on_give_up(attempt, kind, reason);
    }
    fn on_success(&mut self, attempt: u32) {
        self.0.on_success(attempt);
        self.1.on_success(attempt);
    }
}

/// One thing the retry loop decided, as a value (for callbacks and channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum RetryEvent {
    /// Attempt `attempt` failed with `kind`; the next call comes after `delay`.
    Retry {
        /// The attempt that failed (1 = the first call).
        attempt: u32,
        /// Its failure kind.
        kind: FailureKind,
        /// The sleep before the next attempt.
        delay: Duration,
    },
    /// Attempt `attempt` failed with `kind` and the loop stopped for `reason`.
    GiveUp {
        /// The last attempt (calls made in total).
        attempt: u32,
        /// Its failure kind.
        kind: FailureKind,
        /// Why no further attempt.
        reason: GiveUpReason,
    },
    /// Attempt `attempt` succeeded.
    Succeeded {
        /// The attempt that succeeded (1 = no retry).
        attempt: u32,
    },
}

/// An observer that hands every [`RetryEvent`] to a closure:
/// `retrying(&policy).observer(OnEvent(|e| tx.send(e)))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OnEvent<F>(pub F);

impl<F: FnMut(RetryEvent)> RetryObserver for OnEvent<F> {
    fn on_retry(&mut self, attempt: u32, kind: FailureKind, delay: Duration) {
        (self.0)(RetryEvent::Retry {
            attempt,
            kind,
            delay,
        });
    }
    fn on_give_up(&mut self, attempt: u32, kind: FailureKind, reason: GiveUpReason) {
        (self.0)(RetryEvent::GiveUp {
            attempt,
            kind,
            reason,
        });
    }
    fn on_success(&mut self, attempt: u32) {
        (self.0)(RetryEvent::Succeeded { attempt });
    }
}

/// A retry budget shared between callers, as the retry driver draws from it (after
/// Finagle's `RetryBudget` and gRPC's retry throttling): every run deposits once, every
/// retry asks for a token. `&self` methods: a gate is shared, so it synchronises inside
/// (atomics in `sturdy_shared::RetryBudget`, a critical section in
/// `sturdy_embassy::SharedRetryBudget`); it reads its own clock, so callers on clocks of
/// different origins share it safely.
pub trait RetryGate {
    /// A run (a first attempt) started: deposit its share.
    fn on_call(&self);

    /// One more retry is about to be scheduled: `true` takes a token for it, `false`
    /// (the budget is empty) makes the run give up with
    /// [`GiveUpReason::BudgetExhausted`]. Asked only when every other rule of the
    /// policy allows the retry.
    fn try_retry(&self) -> bool;
}

/// No retry budget: every retry the policy allows is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unlimited;

impl RetryGate for Unlimited {
    #[inline]
    fn on_call(&self) {}
    #[inline]
    fn try_retry(&self) -> bool {
        true
    }
}

impl<G: RetryGate + ?Sized> RetryGate for &G {
    #[inline]
    fn on_call(&self) {
        (**self).on_call();
    }
    #[inline]
    fn try_retry(&self) -> bool {
        (**self).try_retry()
    }
}

/// `None` is [`Unlimited`].
impl<G: RetryGate> RetryGate for Option<G> {
    #[inline]
    fn on_call(&self) {
        if let Some(g) = self {
            g.on_call();
        }
    }
    #[inline]
    fn try_retry(&self) -> bool {
        self.as_ref().is_none_or(RetryGate::try_retry)
    }
}

/// One retried call: a timer, a policy and options, run with [`Retry::run`].
///
/// Shape: the timer, a reference to the policy, about 40 bytes of options, the
/// observer and the budget gate.
#[derive(Debug)]
#[must_use = "a Retry does nothing until `run(..).await`"]
pub struct Retry<'p, Tm, O = (), G = Unlimited> {
    timer: Tm,
    policy: &'p RetryPolicy,
    attempt_timeout: Option<Duration>,
    seed: Option<u64>,
    observer: O,
    gate: G,
}

impl<'p, Tm: Timer> Retry<'p, Tm> {
    /// Retries under `policy`, sleeping on `timer`; no per-attempt timeout; the jitter
    /// seed comes from [`Timer::jitter_seed`]; nobody observes.
    pub const fn new(timer: Tm, policy: &'p RetryPolicy) -> Self {
        Self {
            timer,
            policy,
            attempt_timeout: None,
            seed: None,
            observer: (),
            gate: Unlimited,
        }
    }
}

impl<'p, Tm: Timer, O: RetryObserver, G: RetryGate> Retry<'p, Tm, O, G> {
    /// Drops any attempt still running `timeout` after it started and counts it as a
    /// [`FailureKind::TaskTimeout`] failure.
    ///
    /// # Errors
    /// A zero `timeout` (every attempt would time out before it ran).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("attempt_timeout", "must be > 0"));
        }
        self.attempt_timeout = Some(timeout);
        Ok(self)
    }

    /// Draws the jitter from `seed`: the same seed gives the same delays.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Reports retries and give-ups to `observer`.
    pub fn observer<O2: RetryObserver>(self, observer: O2) -> Retry<'p, Tm, O2, G> {
        Retry {
            timer: self.timer,
            policy: self.policy,
            attempt_timeout: self.attempt_timeout,
            seed: self.seed,
            observer,
            gate: self.gate,
        }
    }

    /// Draws retries from the shared budget `gate`: the run deposits once at its start,
    /// each retry takes a token, and an empty budget gives up with
    /// [`GiveUpReason::BudgetExhausted`] (the last failure is returned at once).
    pub fn budget<G2: RetryGate>(self, gate: G2) -> Retry<'p, Tm, O, G2> {
        Retry {
            timer: self.timer,
            policy: self.policy,
            attempt_timeout: self.attempt_timeout,
            seed: self.seed,
            observer: self.observer,
            gate,
        }
    }

    /// Calls `op` until it succeeds or the policy gives up; `classify` names the kind
    /// of each error (and may carry a retry-after hint).
    ///
    /// # Errors
    /// [`RetryError::Failed`] with the last error, or [`RetryError::TimedOut`] when the
    /// last attempt ran past the per-attempt timeout; both carry the number of calls
    /// and the [`GiveUpReason`].
    pub fn run<T, E, F, Fut, C, K>(
        self,
        mut classify: C,
        mut op: F,
    ) -> impl Future<Output = Result<T, RetryError<E>>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: FnMut(&E) -> K,
        K: Into<Classified>,
    {
        let Self {
            timer,
            policy,
            attempt_timeout,
            seed,
            mut observer,
            gate,
        } = self;
        // An `async` block rather than an `async fn`: its captures are used where they
        // lie, while an `async fn` first moves each argument into its body's locals, a
        // copy that stalls on the success path (store forwarding).
        async move {
            let new_state = |now: Instant| {
                let seed = match seed {
                    Some(s) => s,
                    None => timer.jitter_seed(now),
                };
                RetryState::new(now, seed)
            };
            // Only `max_elapsed` reads the start time: read the clock up front for it alone.
            let mut state = policy.max_elapsed().map(|_| new_state(timer.now()));
            gate.on_call();
            loop {
                let attempt = op();
                let attempt_no = || state.as_ref().map_or(1, RetryState::attempts);
                let failure = match attempt_timeout {
                    None => match attempt.await {
                        Ok(v) => {
                            observer.on_success(attempt_no());
                            return Ok(v);
                        }
                        Err(e) => Err(e),
                    },
                    Some(timeout) => {
                        let deadline = timer.now().saturating_add(timeout);
                        match race(&timer, deadline, attempt).await {
                            Some(Ok(v)) => {
                                observer.on_success(attempt_no());
                                return Ok(v);
                            }
                            Some(Err(e)) => Err(e),
                            None => Ok(timeout),
                        }
                    }
                };
                let now = timer.now();
                let st = state.get_or_insert_with(|| new_state(now));
                match judge(
                    policy,
                    st,
                    &mut observer,
                    &mut classify,
                    failure,
                    now,
                    &gate,
                ) {
                    Ok(at) => sleep_until(&timer, at).await,
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// As [`run`](Self::run), lending `context` to `op` by `&mut` on each attempt and
    /// handing it back with the result at the end (after backon's
    /// `RetryableWithContext`). For an operation that needs a borrow it cannot keep
    /// between attempts: a `&mut` peripheral, a connection, a buffer. `Ctx` may be the
    /// peripheral itself (owned, handed back) or a `&mut` to it.
    ///
    /// `op` is an async closure: `async |sensor: &mut Sensor| sensor.read().await`.
    /// The attempt's future holds the borrow only while it runs (a timed-out attempt is
    /// dropped before the sleep), so every attempt gets the context afresh.
    ///
    /// ```
    /// use core::time::Duration;
    /// use sturdy_core::retry::fixed_policy;
    /// use sturdy_core::retry_driver::Retry;
    /// use sturdy_core::FailureKind;
    /// # use core::future::{ready, Ready, Future};
    /// # use core::cell::Cell;
    /// # use sturdy_core::Instant;
    /// # use sturdy_core::retry_driver::Timer;
    /// # struct Virtual<'a>(&'a Cell<Instant>);
    /// # impl Timer for Virtual<'_> {
    /// #     type Sleep = Ready<()>;
    /// #     fn now(&self) -> Instant { self.0.get() }
    /// #     fn sleep_until(&self, t: Instant) -> Ready<()> { self.0.set(t); ready(()) }
    /// # }
    /// # let clock = Cell::new(Instant::ZERO);
    /// # let timer = Virtual(&clock);
    /// # fn block_on<F: Future>(f: F) -> F::Output {
    /// #     let mut f = core::pin::pin!(f);
    /// #     let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
    /// #     loop { if let core::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    ///
    /// struct Sensor { reads: u32 }
    /// impl Sensor {
    ///     async fn read(&mut self) -> Result<i16, &'static str> {
    ///         self.reads += 1;
    ///         if self.reads < 3 { Err("nack") } else { Ok(215) }
    ///     }
    /// }
    ///
    /// let policy = fixed_policy(4, Duration::from_millis(100))?;
    /// let mut sensor = Sensor { reads: 0 };
    /// let (sensor, out) = block_on(Retry::new(timer, &policy).run_with_context(
    ///     &mut sensor,
    ///     |_e: &&str| FailureKind::Network,
    ///     async |s: &mut &mut Sensor| s.read().await,
    /// ));
    /// assert_eq!(out, Ok(215));
    /// assert_eq!(sensor.reads, 3);
    /// # Ok::<(), sturdy_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`run`](Self::run), in the second element; the context comes back either way.
    pub fn run_with_context<Ctx, T, E, F, C, K>(
        self,
        mut context: Ctx,
        mut classify: C,
        mut op: F,
    ) -> impl Future<Output = (Ctx, Result<T, RetryError<E>>)>
    where
        F: AsyncFnMut(&mut Ctx) -> Result<T, E>,
        C: FnMut(&E) -> K,
        K: Into<Classified>,
    {
        let Self {
            timer,
            policy,
            attempt_timeout,
            seed,
            mut observer,
            gate,
        } = self;
        async move {
            let new_state = |now: Instant| {
                let seed = match seed {
                    Some(s) => s,
                    None => timer.jitter_seed(now),
                };
                RetryState::new(now, seed)
            };
            let mut state = policy.max_elapsed().map(|_| new_state(timer.now()));
            gate.on_call();
            loop {
                let attempt = op(&mut context);
                let attempt_no =
                    |s: &Option<RetryState>| s.as_ref().map_or(1, RetryState::attempts);
                let failure = match attempt_timeout {
                    None => match attempt.await {
                        Ok(v) => {
                            observer.on_success(attempt_no(&state));
                            return (context, Ok(v));
                        }
                        Err(e) => Err(e),
                    },
                    Some(timeout) => {
                        let deadline = timer.now().saturating_add(timeout);
                        match race(&timer, deadline, attempt).await {
                            Some(Ok(v)) => {
                                observer.on_success(attempt_no(&state));
                                return (context, Ok(v));
                            }
                            Some(Err(e)) => Err(e),
                            None => Ok(timeout),
                        }
                    }
                };
                let now = timer.now();
                let st = state.get_or_insert_with(|| new_state(now));
                match judge(
                    policy,
                    st,
                    &mut observer,
                    &mut classify,
                    failure,
                    now,
                    &gate,
                ) {
                    Ok(at) => sleep_until(&timer, at).await,
                    Err(e) => return (context, Err(e)),
                }
            }
        }
    }
}

/// After a failed attempt (`Err(error)`, or `Ok(timeout)` when it timed out): the
/// instant to call again, or the final error. Tells `observer`.
fn judge<E, O: RetryObserver, K: Into<Classified>, G: RetryGate>(
    policy: &RetryPolicy,
    state: &mut RetryState,
    observer: &mut O,
    classify: impl FnOnce(&E) -> K,
    failure: Result<Duration, E>,
    now: Instant,
    gate: &G,
) -> Result<Instant, RetryError<E>> {
    let (kind, mut retry_after, rejected) = match &failure {
        Err(e) => {
            let c: Classified = classify(e).into();
            (c.kind, c.retry_after, c.rejected)
        }
        Ok(_timeout) => (FailureKind::TaskTimeout, None, None),
    };
    let attempt_no = state.attempts();
    let decision = match rejected {
        // A breaker refusal: wait until it admits again when that is within the
        // backoff's cap, else give up at once.
        Some(wait) if wait > policy.backoff().cap() => {
            Decision::GiveUp(GiveUpReason::BreakerOpen { wait })
        }
        Some(wait) => {
            retry_after = Some(retry_after.map_or(wait, |h| h.max(wait)));
            state.on_failure_gated(policy, kind, now, retry_after, |_| gate.try_retry())
        }
        None => state.on_failure_gated(policy, kind, now, retry_after, |_| gate.try_retry()),
    };
    match decision {
        Decision::RetryAfter(delay) => {
            observer.on_retry(attempt_no, kind, delay);
            // The error is dropped here, before the sleep.
            drop(failure);
            Ok(now.saturating_add(delay))
        }
        Decision::GiveUp(reason) => {
            observer.on_give_up(attempt_no, kind, reason);
            Err(match failure {
                Err(error) => RetryError::Failed {
                    error,
                    attempts: attempt_no,
                    reason,
                },
                Ok(timeout) => RetryError::TimedOut {
                    timeout,
                    attempts: attempt_no,
                    reason,
                },
            })
        }
    }
}

/// Calls `op` under `policy` on `timer` until it succeeds or the policy gives up;
/// shorthand for `Retry::new(timer, policy).run(classify, op)`.
///
/// # Errors
/// See [`Retry::run`].
pub fn retry<Tm, T, E, F, Fut, C, K>(
    timer: Tm,
    policy: &RetryPolicy,
    classify: C,
    op: F,
) -> impl Future<Output = Result<T, RetryError<E>>>
where
    Tm: Timer,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: FnMut(&E) -> K,
    K: Into<Classified>,
{
    Retry::new(timer, policy).run(classify, op)
}

/// Calls `op` with `context` lent by `&mut` on each attempt, under `policy` on `timer`,
/// until it succeeds or the policy gives up; hands `context` back with the result.
/// Shorthand for `Retry::new(timer, policy).run_with_context(context, classify, op)`.
///
/// # Errors
/// See [`Retry::run_with_context`].
pub fn retry_with_context<Tm, Ctx, T, E, F, C, K>(
    timer: Tm,
    policy: &RetryPolicy,
    context: Ctx,
    classify: C,
    op: F,
) -> impl Future<Output = (Ctx, Result<T, RetryError<E>>)>
where
    Tm: Timer,
    F: AsyncFnMut(&mut Ctx) -> Result<T, E>,
    C: FnMut(&E) -> K,
    K: Into<Classified>,
{
    Retry::new(timer, policy).run_with_context(context, classify, op)
}

/// Polls a lazily armed sleep towards `deadline`: ready as soon as `now >= deadline`
/// (checked before every poll of the sleep), the sleep armed only when needed.
fn poll_deadline<Tm: Timer>(
    timer: &Tm,
    deadline: Instant,
    mut sleep: Pin<&mut Option<Tm::Sleep>>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if timer.now() >= deadline {
        return Poll::Ready(());
    }
    if sleep.is_none() {
        sleep.set(Some(timer.sleep_until(deadline)));
    }
    match sleep.as_pin_mut() {
        Some(s) => s.poll(cx).map(|_| ()),
        None => Poll::Ready(()),
    }
}

/// Sleeps until `deadline`; returns at once when it has passed.
pub async fn sleep_until<Tm: Timer>(timer: &Tm, deadline: Instant) {
    let mut sleep = pin!(None::<Tm::Sleep>);
    poll_fn(|cx| poll_deadline(timer, deadline, sleep.as_mut(), cx)).await;
}

/// Runs `fut` until `deadline`: `Some(output)` if it finished first (it is polled
/// before the deadline is checked, so a finished attempt always wins), `None` if the
/// deadline passed first, in which case `fut` is dropped.
pub async fn race<Tm: Timer, F: Future>(
    timer: &Tm,
    deadline: Instant,
    fut: F,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut sleep = pin!(None::<Tm::Sleep>);
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        poll_deadline(timer, deadline, sleep.as_mut(), cx).map(|()| None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{BackoffConfig, Jitter};
    use crate::retry::fixed_policy;
    use core::cell::{Cell, RefCell};
    use core::future::ready;
    use core::task::Waker;
    use std::string::ToString;
    use std::vec::Vec;

    /// A virtual clock with a tiny executor: when the future under test is pending, time
    /// jumps to the earliest armed sleep.
    #[derive(Debug, Default)]
    struct Virtual {
        now: Cell<Instant>,
        reads: Cell<u32>,
        armed: RefCell<Vec<Instant>>,
        live_sleeps: Cell<u32>,
    }

    struct VSleep<'a> {
        v: &'a Virtual,
        at: Instant,
    }

    impl Future for VSleep<'_> {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            if self.v.now.get() >= self.at {
                Poll::Ready(())
            } else {
                self.v.armed.borrow_mut().push(self.at);
                Poll::Pending
            }
        }
    }

    impl Drop for VSleep<'_> {
        fn drop(&mut self) {
            self.v.live_sleeps.set(self.v.live_sleeps.get() - 1);
        }
    }

    impl<'a> Timer for &'a Virtual {
        type Sleep = VSleep<'a>;
        fn now(&self) -> Instant {
            self.reads.set(self.reads.get() + 1);
            self.now.get()
        }
        fn sleep_until(&self, at: Instant) -> VSleep<'a> {
            self.live_sleeps.set(self.live_sleeps.get() + 1);
            VSleep { v: self, at }
        }
    }

    impl Virtual {
        fn sleep(&self, d: Duration) -> VSleep<'_> {
            let at = self.now.get() + d;
            self.live_sleeps.set(self.live_sleeps.get() + 1);
            VSleep { v: self, at }
        }

        /// Polls `f` to completion, jumping time to the earliest armed sleep whenever it
        /// is pending; gives up (returns `None`) at `limit`.
        fn run_until<F: Future>(&self, f: F, limit: Instant) -> Option<F::Output> {
            let mut f = pin!(f);
            let mut cx = Context::from_waker(Waker::noop());
            loop {
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    return Some(v);
                }
                let next = self.armed.borrow_mut().drain(..).min()?;
                if next > limit {
                    return None;
                }
                self.now.set(next);
            }
        }

        fn run<F: Future>(&self, f: F) -> F::Output {
            self.run_until(f, Instant::MAX).expect("the future stalled")
        }
    }

    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum E {
        Transient,
        Fatal,
    }

    fn classify(e: &E) -> FailureKind {
        match e {
            E::Transient => FailureKind::Network,
            E::Fatal => FailureKind::Permanent,
        }
    }

    #[test]
    fn always_failing_makes_exactly_max_attempts_calls_at_the_scheduled_times() {
        let v = Virtual::default();
        let b =
            BackoffConfig::exponential(Duration::from_millis(10), 2_000, Duration::from_secs(1))
                .unwrap()
                .with_jitter(Jitter::None)
                .unwrap();
        let policy = RetryPolicy::new(4, b).unwrap();
        let calls = RefCell::new(Vec::new());
        let out: Result<(), _> = v.run(retry(&v, &policy, classify, || {
            calls.borrow_mut().push(v.now.get());
            ready(Err(E::Transient))
        }));
        assert_eq!(
            *calls.borrow(),
            [0, 10, 30, 70].map(Instant::from_millis).to_vec()
        );
        assert_eq!(
            out,
            Err(RetryError::Failed {
                error: E::Transient,
                attempts: 4,
                reason: GiveUpReason::AttemptsExhausted { attempts: 4 }
            })
        );
        // No useless sleep after the last failure.
        assert_eq!(v.now.get(), Instant::from_millis(70));
        assert_eq!(v.live_sleeps.get(), 0);
    }

    /// A single-threaded budget: `tokens` left, deposits counted.
    #[derive(Default)]
    struct CountingGate {
        tokens: Cell<u32>,
        calls: Cell<u32>,
    }

    impl RetryGate for CountingGate {
        fn on_call(&self) {
            self.calls.set(self.calls.get() + 1);
        }
        fn try_retry(&self) -> bool {
            match self.tokens.get() {
                0 => false,
                n => {
                    self.tokens.set(n - 1);
                    true
                }
            }
        }
    }

    #[test]
    fn a_budget_is_drawn_per_retry_and_an_empty_one_gives_up() {
        let v = Virtual::default();
        let policy = fixed_policy(6, Duration::from_millis(10)).unwrap();
        let gate = CountingGate {
            tokens: Cell::new(1),
            ..CountingGate::default()
        };
        let calls = Cell::new(0);
        let out: Result<(), _> = v.run(Retry::new(&v, &policy).budget(&gate).run(classify, || {
            calls.set(calls.get() + 1);
            ready(Err(E::Transient))
        }));
        // One token: the first call and one retry, not the policy's six calls.
        assert_eq!(calls.get(), 2);
        assert_eq!(gate.calls.get(), 1);
        assert_eq!(gate.tokens.get(), 0);
        assert_eq!(
            out,
            Err(RetryError::Failed {
                error: E::Transient,
                attempts: 2,
                reason: GiveUpReason::BudgetExhausted
            })
        );
        // A second run through the empty budget deposits and makes one call only.
        let calls = Cell::new(0);
        let out: Result<(), _> = v.run(Retry::new(&v, &policy).budget(&gate).run(classify, || {
            calls.set(calls.get() + 1);
            ready(Err(E::Transient))
        }));
        assert_eq!((calls.get(), gate.calls.get()), (1, 2));
        assert_eq!(out.unwrap_err().reason(), GiveUpReason::BudgetExhausted);
        // A kind the policy does not retry takes no token.
        gate.tokens.set(3);
        let _: Result<(), _> = v.run(
            Retry::new(&v, &policy)
                .budget(Some(&gate))
                .run(classify, || ready(Err(E::Fatal))),
        );
        assert_eq!(gate.tokens.get(), 3);
    }

    #[test]
    fn an_event_callback_hears_retries_give_ups_and_successes() {
        let v = Virtual::default();
        let policy = fixed_policy(3, Duration::from_millis(10)).unwrap();
        let events = RefCell::new(Vec::new());
        let calls = Cell::new(0);
        let _: Result<u32, _> = v.run(
            Retry::new(&v, &policy)
                .observer(OnEvent(|e| events.borrow_mut().push(e)))
                .run(classify, || {
                    calls.set(calls.get() + 1);
                    ready(if calls.get() < 2 {
                        Err(E::Transient)
                    } else {
                        Ok(1)
                    })
                }),
        );
        let _: Result<u32, _> = v.run(
            Retry::new(&v, &policy)
                .observer(((), OnEvent(|e| events.borrow_mut().push(e))))
                .run(classify, || ready(Err(E::Fatal))),
        );
        assert_eq!(
            *events.borrow(),
            [
                RetryEvent::Retry {
                    attempt: 1,
                    kind: FailureKind::Network,
                    delay: Duration::from_millis(10)
                },
                RetryEvent::Succeeded { attempt: 2 },
                RetryEvent::GiveUp {
                    attempt: 1,
                    kind: FailureKind::Permanent,
                    reason: GiveUpReason::NotRetryable(FailureKind::Permanent)
                },
            ]
        );
    }

    #[test]
    fn max_elapsed_stops_scheduling() {
        let v = Virtual::default();
        let policy = fixed_policy(100, Duration::from_millis(100))
            .unwrap()
            .with_max_elapsed(Duration::from_millis(250))
            .unwrap();
        let calls = RefCell::new(Vec::new());
        let out: Result<(), _> = v.run(retry(&v, &policy, classify, || {
            calls.borrow_mut().push(v.now.get());
            ready(Err(E::Transient))
        }));
        // Starts at 0, 100, 200; the next would start at 300 > 250.
        assert_eq!(
            *calls.borrow(),
            [0, 100, 200].map(Instant::from_millis).to_vec()
        );
        assert_eq!(
            out.unwrap_err().reason(),
            GiveUpReason::ElapsedExceeded {
                elapsed: Duration::from_millis(200)
            }
        );
        assert_eq!(v.now.get(), Instant::from_millis(200));
    }

    #[test]
    fn first_try_success_makes_one_call_and_reads_no_clock() {
        let v = Virtual::default();
        let policy = fixed_policy(4, Duration::from_millis(100)).unwrap();
        let calls = Cell::new(0);
        let out: Result<u32, RetryError<E>> = v.run(retry(&v, &policy, classify, || {
            calls.set(calls.get() + 1);
            ready(Ok(5))
        }));
        assert_eq!(out, Ok(5));
        assert_eq!(calls.get(), 1);
        assert_eq!(v.reads.get(), 0);
        assert_eq!(v.live_sleeps.get(), 0);
    }

    #[test]
    fn permanent_error_makes_one_call() {
        let v = Virtual::default();
        let policy = fixed_policy(4, Duration::from_millis(100)).unwrap();
        let calls = Cell::new(0);
        let out: Result<(), _> = v.run(retry(&v, &policy, classify, || {
            calls.set(calls.get() + 1);
            ready(Err(E::Fatal))
        }));
        assert_eq!(calls.get(), 1);
        assert_eq!(
            out,
            Err(RetryError::Failed {
                error: E::Fatal,
                attempts: 1,
                reason: GiveUpReason::NotRetryable(FailureKind::Permanent)
            })
        );
        assert_eq!(v.now.get(), Instant::ZERO);
    }

    #[test]
    fn transient_then_success_sleeps_exactly_the_delays() {
        let v = Virtual::default();
        let policy = fixed_policy(5, Duration::from_millis(40)).unwrap();
        let calls = Cell::new(0);
        let out: Result<u32, RetryError<E>> = v.run(retry(&v, &policy, classify, || {
            calls.set(calls.get() + 1);
            ready(if calls.get() < 3 {
                Err(E::Transient)
            } else {
                Ok(calls.get())
            })
        }));
        assert_eq!(out, Ok(3));
        assert_eq!(v.now.get(), Instant::from_millis(80));
    }

    #[test]
    fn attempt_timeout_counts_as_task_timeout_and_drops_the_attempt() {
        let v = Virtual::default();
        let policy = fixed_policy(3, Duration::from_millis(100)).unwrap();
        let calls = RefCell::new(Vec::new());
        #[derive(Default)]
        struct Kinds(Vec<(u32, FailureKind, Duration)>);
        impl RetryObserver for &RefCell<Kinds> {
            fn on_retry(&mut self, attempt: u32, kind: FailureKind, delay: Duration) {
                self.borrow_mut().0.push((attempt, kind, delay));
            }
        }
        let seen = RefCell::new(Kinds::default());
        // The first attempt takes 50 ms (past the 20 ms timeout), the second 10 ms.
        let out: Result<u32, RetryError<E>> = v.run(
            Retry::new(&v, &policy)
                .attempt_timeout(Duration::from_millis(20))
                .unwrap()
                .observer(&seen)
                .run(classify, || {
                    calls.borrow_mut().push(v.now.get());
                    let n = calls.borrow().len() as u32;
                    let work = v.sleep(Duration::from_millis(if n == 1 { 50 } else { 10 }));
                    async move {
                        work.await;
                        Ok(n)
                    }
                }),
        );
        assert_eq!(out, Ok(2));
        // Timed out at 20 ms, slept 100 ms, called again at 120 ms, done at 130 ms.
        assert_eq!(*calls.borrow(), [0, 120].map(Instant::from_millis).to_vec());
        assert_eq!(v.now.get(), Instant::from_millis(130));
        assert_eq!(
            seen.borrow().0,
            [(1, FailureKind::TaskTimeout, Duration::from_millis(100))].to_vec()
        );
        assert_eq!(v.live_sleeps.get(), 0);
    }

    #[test]
    fn every_attempt_timing_out_gives_up_with_timed_out() {
        let v = Virtual::default();
        let policy = fixed_policy(2, Duration::from_millis(5)).unwrap();
        let out: Result<(), RetryError<E>> = v.run(
            Retry::new(&v, &policy)
                .attempt_timeout(Duration::from_millis(20))
                .unwrap()
                .run(classify, || {
                    let work = v.sleep(Duration::from_secs(10));
                    async move {
                        work.await;
                        Ok(())
                    }
                }),
        );
        assert_eq!(
            out,
            Err(RetryError::TimedOut {
                timeout: Duration::from_millis(20),
                attempts: 2,
                reason: GiveUpReason::AttemptsExhausted { attempts: 2 }
            })
        );
        assert_eq!(v.now.get(), Instant::from_millis(45));
        assert_eq!(v.live_sleeps.get(), 0);
        assert_eq!(
            Retry::new(&v, &policy)
                .attempt_timeout(Duration::ZERO)
                .unwrap_err()
                .field(),
            "attempt_timeout"
        );
    }

    #[test]
    fn a_caller_deadline_cancels_after_one_attempt_and_leaves_nothing_armed() {
        let v = Virtual::default();
        let policy = fixed_policy(10, Duration::from_secs(1)).unwrap();
        let calls = Cell::new(0);
        let timer = &v;
        let caller = race(
            &timer,
            Instant::from_millis(500),
            retry(&v, &policy, classify, || {
                calls.set(calls.get() + 1);
                ready(Err::<(), _>(E::Transient))
            }),
        );
        assert_eq!(v.run(caller), None);
        assert_eq!(calls.get(), 1);
        assert_eq!(v.now.get(), Instant::from_millis(500));
        // The retry's backoff sleep was dropped with it.
        assert_eq!(v.live_sleeps.get(), 0);
    }

    #[test]
    fn a_dropped_retry_future_drops_its_attempt_and_sleep() {
        let v = Virtual::default();
        let policy = fixed_policy(10, Duration::from_secs(1)).unwrap();
        let fut = Retry::new(&v, &policy)
            .attempt_timeout(Duration::from_secs(5))
            .unwrap()
            .run(classify, || {
                let work = v.sleep(Duration::from_secs(60));
                async move {
                    work.await;
                    Ok::<(), E>(())
                }
            });
        // Stop the world at 2 s: the attempt and its timeout are armed.
        let mut fut = std::boxed::Box::pin(fut);
        assert!(
            v.run_until(fut.as_mut(), Instant::from_secs(2)).is_none(),
            "the attempt cannot finish before 60 s"
        );
        assert_eq!(v.live_sleeps.get(), 2);
        drop(fut);
        assert_eq!(v.live_sleeps.get(), 0);
    }

    #[test]
    fn a_rejection_waits_for_the_breaker_or_gives_up_beyond_the_cap() {
        // First delay 100 ms, cap 1 s: a breaker admitting again in 700 ms is waited
        // for (not retried after 100 ms); one admitting in 5 s gives up at once.
        let v = Virtual::default();
        let backoff =
            BackoffConfig::exponential(Duration::from_millis(100), 2_000, Duration::from_secs(1))
                .unwrap()
                .with_jitter(Jitter::None)
                .unwrap();
        let policy = RetryPolicy::new(5, backoff).unwrap();
        let calls = RefCell::new(Vec::new());
        let out: Result<u32, RetryError<Option<Duration>>> = v.run(retry(
            &v,
            &policy,
            |e: &Option<Duration>| match e {
                Some(wait) => Classified::rejected(*wait),
                None => FailureKind::Network.into(),
            },
            || {
                calls.borrow_mut().push(v.now.get());
                let n = calls.borrow().len();
                ready(match n {
                    1 => Err(Some(Duration::from_millis(700))),
                    _ => Ok(n as u32),
                })
            },
        ));
        assert_eq!(out, Ok(2));
        assert_eq!(*calls.borrow(), [0, 700].map(Instant::from_millis).to_vec());

        let calls = Cell::new(0);
        let out: Result<u32, RetryError<Option<Duration>>> = v.run(retry(
            &v,
            &policy,
            |e: &Option<Duration>| Classified::rejected(e.unwrap_or(Duration::MAX)),
            || {
                calls.set(calls.get() + 1);
                ready(Err(Some(Duration::from_secs(5))))
            },
        ));
        assert_eq!(calls.get(), 1);
        assert_eq!(
            out.unwrap_err().reason(),
            GiveUpReason::BreakerOpen {
                wait: Duration::from_secs(5)
            }
        );
        assert_eq!(
            GiveUpReason::BreakerOpen {
                wait: Duration::MAX
            }
            .to_string(),
            "circuit breaker open until reset"
        );
    }

    #[test]
    fn retry_after_hint_and_seeded_jitter() {
        let v = Virtual::default();
        let policy = fixed_policy(2, Duration::from_millis(10)).unwrap();
        let out: Result<(), _> = v.run(retry(
            &v,
            &policy,
            |_: &E| Classified::with_retry_after(FailureKind::Network, Duration::from_millis(7)),
            || ready(Err(E::Transient)),
        ));
        // Hint below the 10 ms draw: the draw wins (the cap is 10 ms too).
        assert_eq!(out.unwrap_err().attempts(), 2);
        assert_eq!(v.now.get(), Instant::from_millis(10));

        // Full jitter: the same seed gives the same schedule.
        let b =
            BackoffConfig::exponential(Duration::from_millis(100), 2_000, Duration::from_secs(5))
                .unwrap();
        let policy = RetryPolicy::new(6, b).unwrap();
        let schedule = |seed| {
            let v = Virtual::default();
            let calls = RefCell::new(Vec::new());
            let _: Result<(), _> = v.run(Retry::new(&v, &policy).seed(seed).run(classify, || {
                calls.borrow_mut().push(v.now.get());
                ready(Err(E::Transient))
            }));
            calls.into_inner()
        };
        assert_eq!(schedule(9), schedule(9));
        assert_eq!(schedule(9).len(), 6);
        assert_ne!(schedule(9), schedule(10));
    }

    #[test]
    fn errors_render() {
        use std::string::ToString;
        let e: RetryError<&str> = RetryError::Failed {
            error: "refused",
            attempts: 3,
            reason: GiveUpReason::AttemptsExhausted { attempts: 3 },
        };
        assert_eq!(
            e.to_string(),
            "gave up after 3 attempts (attempt 3 failed: refused)"
        );
        assert_eq!(e.clone().into_error(), Some("refused"));
        let t: RetryError<&str> = RetryError::TimedOut {
            timeout: Duration::from_millis(20),
            attempts: 1,
            reason: GiveUpReason::NotRetryable(FailureKind::TaskTimeout),
        };
        assert_eq!(
            t.to_string(),
            "failure kind task_timeout is not retryable (attempt 1 timed out after 20 ms)"
        );
        assert_eq!(t.into_error(), None);
    }

    /// A firmware-style peripheral: every read borrows it mutably; a read may hang.
    struct Sensor {
        reads: u32,
        /// Reads that fail with a NACK before one succeeds.
        nacks: u32,
        /// Which read (1-based) hangs until it is dropped.
        hangs_on: u32,
        samples: Vec<(u32, Instant)>,
    }

    impl Sensor {
        async fn read(&mut self, v: &Virtual) -> Result<i16, E> {
            self.reads += 1;
            self.samples.push((self.reads, v.now.get()));
            if self.reads == self.hangs_on {
                v.sleep(Duration::from_secs(3600)).await;
            }
            if self.reads <= self.nacks {
                Err(E::Transient)
            } else {
                Ok(215)
            }
        }
    }

    #[test]
    fn context_is_lent_by_mut_on_each_attempt_and_handed_back() {
        let v = Virtual::default();
        let policy = fixed_policy(5, Duration::from_millis(10)).unwrap();
        let mut sensor = Sensor {
            reads: 0,
            nacks: 2,
            hangs_on: 0,
            samples: Vec::new(),
        };
        // The context is a `&mut Sensor` that the caller keeps using afterwards.
        let (back, out) = v.run(retry_with_context(
            &v,
            &policy,
            &mut sensor,
            classify,
            async |s: &mut &mut Sensor| s.read(&v).await,
        ));
        assert_eq!(out, Ok(215));
        back.reads += 100;
        assert_eq!(sensor.reads, 103);
        assert_eq!(
            sensor.samples,
            [
                (1, Instant::ZERO),
                (2, Instant::from_millis(10)),
                (3, Instant::from_millis(20))
            ]
        );

        // An owned context comes back too, with the final error.
        let owned = Sensor {
            reads: 0,
            nacks: 9,
            hangs_on: 0,
            samples: Vec::new(),
        };
        let (owned, out) = v.run(Retry::new(&v, &policy).run_with_context(
            owned,
            classify,
            async |s: &mut Sensor| s.read(&v).await,
        ));
        assert_eq!(owned.reads, 5);
        assert_eq!(
            out,
            Err(RetryError::Failed {
                error: E::Transient,
                attempts: 5,
                reason: GiveUpReason::AttemptsExhausted { attempts: 5 }
            })
        );
    }

    #[test]
    fn a_timed_out_attempt_gives_the_context_back_for_the_next() {
        let v = Virtual::default();
        let policy = fixed_policy(3, Duration::from_millis(10)).unwrap();
        let mut sensor = Sensor {
            reads: 0,
            nacks: 0,
            hangs_on: 1,
            samples: Vec::new(),
        };
        let (_, out) = v.run(
            Retry::new(&v, &policy)
                .attempt_timeout(Duration::from_millis(20))
                .unwrap()
                .run_with_context(&mut sensor, classify, async |s: &mut &mut Sensor| {
                    s.read(&v).await
                }),
        );
        assert_eq!(out, Ok(215));
        // The first read hung and was dropped at 20 ms; the retry read at 30 ms.
        assert_eq!(
            sensor.samples,
            [(1, Instant::ZERO), (2, Instant::from_millis(30))]
        );
        assert_eq!(v.live_sleeps.get(), 0);
    }
}
