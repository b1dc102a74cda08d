//! `SharedBreaker`: one of the core's circuit breakers shared by the tasks of a
//! firmware, over `embassy-sync`'s blocking mutex.
//!
//! The raw mutex is the application's choice, as in every embassy crate:
//! `CriticalSectionRawMutex` to share with interrupts or across cores,
//! `ThreadModeRawMutex` for thread-mode tasks only, `NoopRawMutex` inside one
//! executor. The lock is held for one core call, never across an `.await`.
//!
//! The guard semantics are the std adapters' (`sturdy-shared`'s handle): a
//! [`CallGuard`] records the call's outcome, and one dropped unrecorded (a cancelled
//! future, an early return) **releases** its permit, so a cancelled half-open probe
//! frees its slot at once instead of waiting for the permit timeout.
//!
//! Time comes from embassy-time ([`EmbassyClock`]); the core's due timeouts are
//! handled before every call through the handle. The breaker's events stay in its
//! queue until [`SharedBreaker::poll_event`] (a logging task can drain them).

use core::cell::RefCell;
use core::future::Future;

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use sturdy_core::breaker::{
    BreakerEvent, CircuitBreaker, ConsecutiveBreaker, Metrics, Outcome, Permit, Rejected,
    SlidingWindow, State,
};
use sturdy_core::{Clock, FailureKind, Instant};

use crate::clock::EmbassyClock;

/// The operations [`SharedBreaker`] needs from a core breaker; implemented for every
/// [`ConsecutiveBreaker`] and [`CircuitBreaker`]. Each method is the core's method of
/// the same name.
pub trait BreakerCore {
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
    /// See [`ConsecutiveBreaker::metrics`].
    fn metrics(&self) -> Metrics;
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
        fn metrics(&self) -> Metrics {
            Self::metrics(self)
        }
    };
}

impl<const E: usize> BreakerCore for ConsecutiveBreaker<E> {
    delegate_core!();
}

impl<W: SlidingWindow, const E: usize> BreakerCore for CircuitBreaker<W, E> {
    delegate_core!();
}

/// A core breaker `B` shared by embassy tasks behind a blocking mutex of the
/// application's raw-mutex type `M`. `new` is a `const fn`, so the handle can be a
/// `static`:
///
/// ```
/// use core::time::Duration;
/// use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
/// use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
/// use sturdy_core::unwrap_config;
/// use sturdy_embassy::SharedBreaker;
///
/// // 3 failures in a row open it for 5 s; 1 probe; 1 success closes it.
/// const CONFIG: ConsecutiveConfig =
///     unwrap_config(ConsecutiveConfig::new(3, Duration::from_secs(5), 1));
/// static MODEM: SharedBreaker<CriticalSectionRawMutex, ConsecutiveBreaker> =
///     SharedBreaker::new(ConsecutiveBreaker::new(CONFIG));
///
/// async fn send(frame: &[u8]) -> Result<(), ()> { let _ = frame; Ok(()) }
///
/// // In any task:
/// async fn uplink(frame: &[u8]) {
///     let Ok(guard) = MODEM.try_acquire() else { return }; // open: skip, come back later
///     match send(frame).await {
///         Ok(()) => guard.success(),
///         Err(()) => guard.failure(sturdy_core::FailureKind::Network),
///     }
///     // (a guard dropped unrecorded, e.g. by a cancelled task, releases its permit)
/// }
/// ```
///
/// Shape: the breaker, a `RefCell` flag and the raw mutex; `Sync` when `M` is and `B`
/// is `Send`.
pub struct SharedBreaker<M: RawMutex, B> {
    core: Mutex<M, RefCell<B>>,
}

impl<M: RawMutex, B: BreakerCore> SharedBreaker<M, B> {
    /// Shares `breaker`.
    pub const fn new(breaker: B) -> Self {
        Self {
            core: Mutex::new(RefCell::new(breaker)),
        }
    }

    /// One core call under the lock at embassy-time's `now`, after the timeouts due.
    fn with_core<R>(&self, f: impl FnOnce(&mut B, Instant) -> R) -> R {
        let now = EmbassyClock.now();
        self.core.lock(|cell| {
            // Never re-entered: the closures below call only the core.
            let mut core = cell.borrow_mut();
            core.handle_timeout(now);
            f(&mut core, now)
        })
    }

    /// Asks leave for one call. The guard records the outcome
    /// ([`CallGuard::record`], [`success`](CallGuard::success),
    /// [`failure`](CallGuard::failure)); dropped unrecorded, it releases the permit.
    ///
    /// # Errors
    /// [`Rejected`] with the instant to come back (open, half-open with every probe
    /// slot busy, forced open).
    pub fn try_acquire(&self) -> Result<CallGuard<'_, M, B>, Rejected> {
        let permit = self.with_core(|core, now| core.try_acquire(now))?;
        Ok(CallGuard {
            breaker: self,
            permit: Some(permit),
        })
    }

    /// Runs `fut` if the breaker admits a call and records `classify(&output)`;
    /// dropping the returned future releases the permit.
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

    /// The current state (after handling any timeout that is due).
    pub fn state(&self) -> State {
        self.with_core(|core, _| core.state())
    }

    /// The core's measurements.
    pub fn metrics(&self) -> Metrics {
        self.with_core(|core, _| core.metrics())
    }

    /// When the core next needs its timeouts handled (the end of the open period, a
    /// probe's expiry): a task that logs transitions on time sleeps until then and
    /// calls [`poll_event`](Self::poll_event).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.with_core(|core, _| core.poll_timeout())
    }

    /// The oldest event not yet pulled (after handling any timeout that is due).
    pub fn poll_event(&self) -> Option<BreakerEvent> {
        self.with_core(|core, _| core.poll_event())
    }

    /// Runs `f` on the core breaker under the lock at embassy-time's `now` (for what
    /// the handle does not mirror: `snapshot()`, `reset(now)`, `force_open(now)`).
    pub fn inspect<R>(&self, f: impl FnOnce(&mut B, Instant) -> R) -> R {
        self.with_core(f)
    }
}

/// Leave for one call from a [`SharedBreaker`]. Record the outcome when the call ends;
/// dropped unrecorded, it releases the permit (a cancelled probe frees its slot).
#[must_use = "record the call's outcome; a dropped guard counts the call neither way"]
pub struct CallGuard<'a, M: RawMutex, B: BreakerCore> {
    breaker: &'a SharedBreaker<M, B>,
    permit: Option<Permit>,
}

impl<M: RawMutex, B: BreakerCore> CallGuard<'_, M, B> {
    /// Records the call's outcome.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            self.breaker
                .with_core(|core, now| core.record(permit, outcome, now));
        }
    }

    /// Records a success.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Records a failure of `kind`.
    pub fn failure(self, kind: FailureKind) {
        self.record(Outcome::Failure(kind));
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.permit.as_ref().is_some_and(Permit::is_probe)
    }
}

impl<M: RawMutex, B: BreakerCore> Drop for CallGuard<'_, M, B> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker
                .with_core(|core, now| core.release(permit, now));
        }
    }
}

impl<M: RawMutex, B: BreakerCore> core::fmt::Debug for CallGuard<'_, M, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CallGuard")
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<M: RawMutex, B: BreakerCore> core::fmt::Debug for SharedBreaker<M, B> {
    /// The state (after handling any timeout that is due).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedBreaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
