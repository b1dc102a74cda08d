//! `Breaker`: a cheap, cloneable, `Send + Sync` handle around one of the core's circuit
//! breakers, shared by every task and thread that calls the same dependency.
//!
//! The core decides; the handle reads the clock, holds a lock for the duration of one
//! core call (never across an `.await`) and turns the core's events into `tracing`
//! events (target `sturdy_shared::breaker`: opened and probe-expired at `WARN`, the rest
//! at `INFO`) and into notices for its subscribers ([`Breaker::subscribe`]: every state
//! change with its cause, every rejection; [`Breaker::subscribe_outcomes`]: every
//! recorded outcome too). [`Breaker::totals`] are running totals that never reset.
//!
//! **Closed fast path.** While the breaker is closed and a success would change nothing
//! but the call counter ([`BreakerCore::success_is_idle`]: a
//! [`ConsecutiveBreaker`] with no failure in its current run), `try_acquire` and a
//! successful `record` touch two atomics and no lock and read no clock. The first failure
//! (or any other outcome) takes the lock, checks that the breaker is still in the
//! generation the call started in (a late failure from before a transition is ignored,
//! as the core ignores stale permits) and records it in the core. A
//! [`CircuitBreaker`] counts every success in its sliding window, so its handle always
//! takes the lock.
//!
//! **No wedged probes.** A [`CallGuard`] dropped before it recorded an outcome (a
//! cancelled future, a panic, an early return) releases its permit: a cancelled
//! half-open probe frees its slot at once instead of waiting for the permit timeout.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use sturdy_core::breaker::{
    BreakerEvent, CircuitBreaker, ConsecutiveBreaker, Metrics, Outcome, Permit, Rejected,
    SlidingWindow, State,
};
use sturdy_core::retry_driver::Classified;
use sturdy_core::{Clock, FailureKind, Instant};

use crate::breaker_events::{BreakerNotice, BreakerTotals, Cause, Subscriber, Subscribers, Totals};
use crate::striped::StripedCounter;

/// The operations the shared handle needs from a core breaker; implemented for
/// [`ConsecutiveBreaker`] and [`CircuitBreaker`]. Each method is the core's method of
/// the same name.
pub trait BreakerCore: Send + 'static {
    /// See [`ConsecutiveBreaker::try_acquire`].
    ///
    /// # Errors
    /// [`Rejected`] with the instant to come back.
    fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected>;
    /// See [`ConsecutiveBreaker::record`].
    fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant);
    /// See [`ConsecutiveBreaker::release`].
    fn release(&mut self, permit: Permit, now: Instant);
    /// See [`ConsecutiveBreaker::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// See [`ConsecutiveBreaker::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// See [`ConsecutiveBreaker::poll_event`].
    fn poll_event(&mut self) -> Option<BreakerEvent>;
    /// See [`ConsecutiveBreaker::state`].
    fn state(&self) -> State;
    /// See [`ConsecutiveBreaker::generation`].
    fn generation(&self) -> u32;
    /// See [`ConsecutiveBreaker::metrics`].
    fn metrics(&self) -> Metrics;
    /// See [`ConsecutiveBreaker::reset`].
    fn reset(&mut self, now: Instant);
    /// See [`ConsecutiveBreaker::force_open`].
    fn force_open(&mut self, now: Instant);
    /// Whether recording a success now would change nothing but the call counter; then
    /// the shared handle lets calls pass and succeed without its lock. `false` by
    /// default (always correct, never fast).
    fn success_is_idle(&self) -> bool {
        false
    }
}

macro_rules! delegate_core {
    () => {
        fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
            Self::try_acquire(self, now)
        }
        fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant) {
            Self::record(self, permit, outcome, now)
        }
        fn release(&mut self, permit: Permit, now: Instant) {
            Self::release(self, permit, now)
        }
        fn handle_timeout(&mut self, now: Instant) {
            Self::handle_timeout(self, now)
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Self::poll_timeout(self)
        }
        fn poll_event(&mut self) -> Option<BreakerEvent> {
            Self::poll_event(self)
        }
        fn state(&self) -> State {
            Self::state(self)
        }
        fn generation(&self) -> u32 {
            Self::generation(self)
        }
        fn metrics(&self) -> Metrics {
            Self::metrics(self)
        }
        fn reset(&mut self, now: Instant) {
            Self::reset(self, now)
        }
        fn force_open(&mut self, now: Instant) {
            Self::force_open(self, now)
        }
    };
}

impl BreakerCore for ConsecutiveBreaker {
    delegate_core!();

    /// Closed with no failure in the current run: a success only counts a call.
    fn success_is_idle(&self) -> bool {
        self.state() == State::Closed && self.metrics().consecutive_failures == 0
    }
}

impl<W: SlidingWindow + Send + 'static, const E: usize> BreakerCore for CircuitBreaker<W, E> {
    delegate_core!();
}

/// An atomic on its own cache line (128 bytes covers adjacent-line prefetching), so the
/// success counter's writes do not evict the fast-path word that every call reads.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded(AtomicU64);

/// The fast-path word: `generation << 1 | 1` while closed calls may skip the lock,
/// `generation << 1` otherwise.
const FAST: u64 = 1;

struct Shared<B, C> {
    fast: Padded,
    /// Successes on the fast path, ever.
    fast_calls: StripedCounter,
    /// `fast_calls` when the current generation began (written under the lock).
    fast_base: AtomicU64,
    core: Mutex<B>,
    clock: C,
    /// Shared by every clone: naming one handle names them all.
    name: RwLock<Arc<str>>,
    totals: Totals,
    subscribers: Subscribers,
}

/// A shared circuit breaker: clone it freely (one `Arc`), call it from any task or
/// thread. See the [module docs](self) for the closed fast path.
///
/// ```
/// use std::time::Duration;
/// use sturdy_core::FailureKind;
/// use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, State};
/// use sturdy_shared::{Breaker, SharedManualClock};
///
/// let clock = SharedManualClock::default();
/// let breaker = Breaker::with_clock(
///     ConsecutiveBreaker::new(ConsecutiveConfig::new(
///         2,                      // open after 2 failures in a row
///         Duration::from_secs(5), // for 5 s
///         1,                      // close after 1 successful probe
///     )?),
///     clock.clone(),
/// );
/// for _ in 0..2 {
///     breaker.try_acquire().expect("closed").failure(FailureKind::Network);
/// }
/// // Open: rejected, with the instant to come back.
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.retry_at.as_millis(), 5_000);
/// clock.advance(Duration::from_secs(5));
/// // Half-open: one probe passes and closes it.
/// let probe = breaker.try_acquire().expect("a probe");
/// assert!(probe.is_probe());
/// probe.success();
/// assert_eq!(breaker.state(), State::Closed);
/// # Ok::<(), sturdy_core::ConfigError>(())
/// ```
pub struct Breaker<B, C> {
    shared: Arc<Shared<B, C>>,
}

impl<B, C> Clone for Breaker<B, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<B: BreakerCore, C: Clock> fmt::Debug for Breaker<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

impl<B: BreakerCore, C: Clock + Default> Breaker<B, C> {
    /// A shared handle around `core`, reading a default `C` clock (the adapters'
    /// clocks fix their origin at their first reading), named `"breaker"` in `tracing`
    /// events.
    pub fn new(core: B) -> Self {
        Self::with_clock(core, C::default())
    }
}

impl<B: BreakerCore, C: Clock> Breaker<B, C> {
    /// A shared handle around `core`, reading `clock`.
    pub fn with_clock(core: B, clock: C) -> Self {
        let word = fast_word(&core);
        Self {
            shared: Arc::new(Shared {
                fast: Padded(AtomicU64::new(word)),
                fast_calls: StripedCounter::default(),
                fast_base: AtomicU64::new(0),
                core: Mutex::new(core),
                clock,
                name: RwLock::new("breaker".into()),
                totals: Totals::default(),
                subscribers: Subscribers::default(),
            }),
        }
    }

    /// Names the breaker in its `tracing` events (the field `breaker`), for this handle
    /// and every clone of it, made before or after.
    pub fn named(self, name: &str) -> Self {
        *self
            .shared
            .name
            .write()
            .unwrap_or_else(PoisonError::into_inner) = name.into();
        self
    }

    /// Calls `subscriber` with every state change (and its [`Cause`]) and every
    /// rejection, from now on, for this handle and every clone. See [`Subscriber`]
    /// for the rules (short, no calls back into this breaker). To get them on a
    /// channel: `breaker.subscribe(move |name, n| { let _ = tx.send((name.to_owned(), *n)); })`.
    pub fn subscribe(&self, subscriber: impl Fn(&str, &BreakerNotice) + Send + Sync + 'static) {
        self.shared.subscribers.add(Arc::new(subscriber), false);
    }

    /// As [`subscribe`](Self::subscribe), and also every recorded outcome
    /// ([`BreakerNotice::Recorded`]). While such a subscriber exists, successes on the
    /// closed fast path also notify (a read lock per call).
    pub fn subscribe_outcomes(
        &self,
        subscriber: impl Fn(&str, &BreakerNotice) + Send + Sync + 'static,
    ) {
        let s: Subscriber = Arc::new(subscriber);
        self.shared.subscribers.add(s, true);
    }

    /// The running totals: calls, successes, failures, rejections, transitions per
    /// state; they never reset.
    pub fn totals(&self) -> BreakerTotals {
        self.shared.totals.snapshot(self.shared.fast_calls.total())
    }

    /// The name used in `tracing` events (default `"breaker"`).
    pub fn name(&self) -> Arc<str> {
        self.shared
            .name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks leave for one call. The guard records the outcome
    /// ([`CallGuard::record`], [`success`](CallGuard::success),
    /// [`failure`](CallGuard::failure)); dropped unrecorded, it releases the permit.
    ///
    /// # Errors
    /// [`Rejected`] with the instant to come back (open, half-open with every probe
    /// slot busy, forced open).
    #[inline]
    pub fn try_acquire(&self) -> Result<CallGuard<'_, B, C>, Rejected> {
        let word = self.shared.fast.0.load(Ordering::Acquire);
        let ticket = if word & FAST == FAST {
            Ticket::Fast(word)
        } else {
            Ticket::Core(self.shared.acquire_slow()?)
        };
        Ok(CallGuard {
            shared: &self.shared,
            ticket: Some(ticket),
        })
    }

    /// As [`try_acquire`](Self::try_acquire), with a guard that owns a clone of the
    /// handle (`'static`, for futures that outlive the borrow, such as a tower
    /// service's response future).
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    pub fn try_acquire_owned(&self) -> Result<OwnedCallGuard<B, C>, Rejected> {
        let ticket = self.try_acquire()?.take();
        Ok(OwnedCallGuard {
            breaker: self.clone(),
            ticket,
        })
    }

    /// Runs `fut` if the breaker admits a call: `Ok` counts as a success, `Err` as a
    /// failure of kind [`FailureKind::Unknown`]. Dropping the returned future releases
    /// the permit.
    ///
    /// # Errors
    /// [`BreakerError::Rejected`] without running `fut`; [`BreakerError::Failed`] with
    /// its error.
    pub async fn call<T, E, F>(&self, fut: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let guard = self.try_acquire().map_err(BreakerError::Rejected)?;
        let out = fut.await;
        match out {
            Ok(v) => {
                guard.success();
                Ok(v)
            }
            Err(e) => {
                guard.failure(FailureKind::Unknown);
                Err(BreakerError::Failed(e))
            }
        }
    }

    /// Runs `fut` if the breaker admits a call and records `classify(&output)`.
    ///
    /// # Errors
    /// [`Rejected`] without running `fut`.
    pub async fn call_with<T, F, K>(&self, classify: K, fut: F) -> Result<T, Rejected>
    where
        F: Future<Output = T>,
        K: FnOnce(&T) -> Outcome,
    {
        let guard = self.try_acquire()?;
        let out = fut.await;
        guard.record(classify(&out));
        Ok(out)
    }

    /// How long until the breaker may admit again after `rejected` (its `retry_at`
    /// minus this breaker's clock now, zero when passed; [`Duration::MAX`] when only a
    /// manual reset will admit). What a retry loop hands to
    /// [`Classified::rejected`](sturdy_core::retry_driver::Classified::rejected).
    pub fn wait_for(&self, rejected: &Rejected) -> Duration {
        if rejected.retry_at == Instant::MAX {
            return Duration::MAX;
        }
        rejected
            .retry_at
            .saturating_duration_since(self.shared.clock.now())
    }

    /// A classifier for a retry loop around [`call`](Self::call): a rejection waits
    /// for this breaker or gives up ([`Classified::rejected`] with
    /// [`wait_for`](Self::wait_for)), a failed call is a failure of `kind`.
    ///
    /// ```text
    /// retrying(&policy).run(breaker.classifier(FailureKind::Network), || breaker.call(op()))
    /// ```
    pub fn classifier<E>(&self, kind: FailureKind) -> impl Fn(&BreakerError<E>) -> Classified + '_ {
        move |e| match e {
            BreakerError::Rejected(r) => Classified::rejected(self.wait_for(r)),
            BreakerError::Failed(_) => kind.into(),
        }
    }

    /// The current state (after handling any timeout that is due).
    pub fn state(&self) -> State {
        self.shared.with_core(|core, _| core.state())
    }

    /// The core's measurements; `calls` includes the successes counted on the fast
    /// path.
    pub fn metrics(&self) -> Metrics {
        let shared = &*self.shared;
        shared.with_core(|core, _| {
            let mut m = core.metrics();
            if core.state() == State::Closed {
                let fast = shared
                    .fast_calls
                    .total()
                    .wrapping_sub(shared.fast_base.load(Ordering::Relaxed));
                m.calls = m
                    .calls
                    .saturating_add(u32::try_from(fast).unwrap_or(u32::MAX));
            }
            m
        })
    }

    /// When the core next needs [`handle_timeout`](ConsecutiveBreaker::handle_timeout):
    /// the end of the open period or a probe's expiry. Every call through the handle
    /// handles due timeouts first, so this is for callers that want to be woken (to
    /// log the half-open transition on time, for instance).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.shared.with_core(|core, _| core.poll_timeout())
    }

    /// Closes the breaker by hand and clears its measurements.
    pub fn reset(&self) {
        self.shared
            .with_core_because(Cause::Manual, |core, now| core.reset(now));
    }

    /// Opens the breaker by hand until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.shared
            .with_core_because(Cause::Manual, |core, now| core.force_open(now));
    }

    /// Runs `f` on the core breaker under the lock at the clock's `now` (for getters
    /// the handle does not mirror: `snapshot()`, `config()`); then emits its events.
    /// The handle drains the core's events itself, so `poll_event` here finds none:
    /// use [`subscribe`](Self::subscribe).
    pub fn inspect<R>(&self, f: impl FnOnce(&mut B, Instant) -> R) -> R {
        self.shared.with_core_because(Cause::Manual, f)
    }
}

fn fast_word<B: BreakerCore>(core: &B) -> u64 {
    (u64::from(core.generation()) << 1) | u64::from(core.success_is_idle())
}

impl<B: BreakerCore, C: Clock> Shared<B, C> {
    fn lock(&self) -> MutexGuard<'_, B> {
        // The core never panics on input; a poisoned lock only means a caller's
        // `inspect` closure panicked, and the breaker's state is still whole.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One core call under the lock, then the events and the fast-path word.
    fn with_core<R>(&self, f: impl FnOnce(&mut B, Instant) -> R) -> R {
        self.with_core_because(Cause::Timer, f)
    }

    /// [`with_core`](Self::with_core), the events of `f` attributed to `cause` (those
    /// of the due timeouts handled first, to [`Cause::Timer`]).
    fn with_core_because<R>(&self, cause: Cause, f: impl FnOnce(&mut B, Instant) -> R) -> R {
        let now = self.clock.now();
        let mut core = self.lock();
        core.handle_timeout(now);
        self.drain(&mut core, Cause::Timer);
        let r = f(&mut core, now);
        self.publish(&mut core, cause);
        r
    }

    fn drain(&self, core: &mut B, cause: Cause) {
        while let Some(event) = core.poll_event() {
            let name = self.name.read().unwrap_or_else(PoisonError::into_inner);
            emit(&name, event);
            self.totals.event(&event);
            self.subscribers
                .notify(&name, &BreakerNotice::Event { event, cause });
        }
    }

    fn notify(&self, notice: BreakerNotice) {
        let name = self.name.read().unwrap_or_else(PoisonError::into_inner);
        self.subscribers.notify(&name, &notice);
    }

    fn publish(&self, core: &mut B, cause: Cause) {
        self.drain(core, cause);
        let word = fast_word(core);
        let old = self.fast.0.load(Ordering::Relaxed);
        if old >> 1 != word >> 1 {
            // A new generation: the fast-path count so far belonged to the old one.
            self.fast_base
                .store(self.fast_calls.total(), Ordering::Relaxed);
        }
        if old != word {
            self.fast.0.store(word, Ordering::Release);
        }
    }

    #[cold]
    fn acquire_slow(&self) -> Result<Permit, Rejected> {
        let r = self.with_core(|core, now| core.try_acquire(now));
        if let Err(rejected) = r {
            self.totals.rejected();
            self.notify(BreakerNotice::Rejected(rejected));
        }
        r
    }

    #[inline]
    fn finish(&self, ticket: Ticket, outcome: Outcome) {
        match ticket {
            Ticket::Fast(word) => {
                if outcome == Outcome::Success && self.fast.0.load(Ordering::Acquire) == word {
                    // Counted in the totals through `fast_calls`.
                    self.fast_calls.add_one();
                } else {
                    self.totals.outcome(outcome);
                    if outcome != Outcome::Ignored {
                        self.finish_fast_slow(word, outcome);
                    }
                }
            }
            Ticket::Core(permit) => {
                self.totals.outcome(outcome);
                self.with_core_because(Cause::Outcome(outcome), |core, now| {
                    core.record(permit, outcome, now)
                })
            }
        }
        if self.subscribers.wants_outcomes() {
            self.notify(BreakerNotice::Recorded(outcome));
        }
    }

    /// A fast-path call whose outcome needs the core: record it as a call of the
    /// generation it started in, or drop it if the breaker has moved on since.
    #[cold]
    fn finish_fast_slow(&self, word: u64, outcome: Outcome) {
        self.with_core_because(Cause::Outcome(outcome), |core, now| {
            if u64::from(core.generation()) == word >> 1
                && let Ok(permit) = core.try_acquire(now)
            {
                core.record(permit, outcome, now);
            }
        });
    }

    fn abandon(&self, ticket: Ticket) {
        self.totals.released();
        if let Ticket::Core(permit) = ticket {
            self.with_core_because(Cause::Released, |core, now| core.release(permit, now));
        }
    }
}

fn emit(name: &str, ev: BreakerEvent) {
    const T: &str = "sturdy_shared::breaker";
    let at_ms = ev.at().as_millis();
    match ev {
        BreakerEvent::Opened { until, .. } => tracing::warn!(
            target: T,
            breaker = name,
            at_ms,
            until_ms = until.as_millis(),
            "circuit breaker opened"
        ),
        BreakerEvent::HalfOpened { .. } => {
            tracing::info!(target: T, breaker = name, at_ms, "circuit breaker half-open")
        }
        BreakerEvent::Closed { .. } => {
            tracing::info!(target: T, breaker = name, at_ms, "circuit breaker closed")
        }
        BreakerEvent::ProbeExpired { .. } => tracing::warn!(
            target: T,
            breaker = name,
            at_ms,
            "circuit breaker probe expired"
        ),
        other => {
            tracing::info!(target: T, breaker = name, at_ms, event = ?other, "circuit breaker event")
        }
    }
}

#[derive(Debug)]
enum Ticket {
    /// Admitted on the fast path, in the generation of this word.
    Fast(u64),
    /// A permit from the core.
    Core(Permit),
}

/// Leave for one call from a [`Breaker`]. Record the outcome when the call ends;
/// dropped unrecorded, it releases the permit (a cancelled probe frees its slot).
#[must_use = "record the call's outcome; a dropped guard counts the call neither way"]
pub struct CallGuard<'a, B: BreakerCore, C: Clock> {
    shared: &'a Shared<B, C>,
    ticket: Option<Ticket>,
}

impl<B: BreakerCore, C: Clock> CallGuard<'_, B, C> {
    /// Records the call's outcome.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        if let Some(t) = self.ticket.take() {
            self.shared.finish(t, outcome);
        }
    }

    /// Records a success.
    #[inline]
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Records a failure of `kind`.
    pub fn failure(self, kind: FailureKind) {
        self.record(Outcome::Failure(kind));
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(&self.ticket, Some(Ticket::Core(p)) if p.is_probe())
    }

    fn take(mut self) -> Option<Ticket> {
        self.ticket.take()
    }
}

/// A [`CallGuard`] that owns a clone of its [`Breaker`]: `'static`, `Send` and `Sync`.
/// Same rules: record the outcome, or drop it to release the permit.
#[must_use = "record the call's outcome; a dropped guard counts the call neither way"]
pub struct OwnedCallGuard<B: BreakerCore, C: Clock> {
    breaker: Breaker<B, C>,
    ticket: Option<Ticket>,
}

impl<B: BreakerCore, C: Clock> OwnedCallGuard<B, C> {
    /// Records the call's outcome.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(t) = self.ticket.take() {
            self.breaker.shared.finish(t, outcome);
        }
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(&self.ticket, Some(Ticket::Core(p)) if p.is_probe())
    }
}

impl<B: BreakerCore, C: Clock> Drop for OwnedCallGuard<B, C> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.breaker.shared.abandon(t);
        }
    }
}

impl<B: BreakerCore, C: Clock> fmt::Debug for OwnedCallGuard<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedCallGuard")
            .field("ticket", &self.ticket)
            .finish()
    }
}

impl<B: BreakerCore, C: Clock> Drop for CallGuard<'_, B, C> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.shared.abandon(t);
        }
    }
}

impl<B: BreakerCore, C: Clock> fmt::Debug for CallGuard<'_, B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallGuard")
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// Why [`Breaker::call`] returned no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakerError<E> {
    /// The breaker rejected the call; the operation did not run.
    Rejected(Rejected),
    /// The operation ran and failed.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for BreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(r) => r.fmt(f),
            Self::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for BreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rejected(r) => Some(r),
            Self::Failed(e) => Some(e),
        }
    }
}
