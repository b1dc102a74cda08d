//! `retry`: the core's retry driver on embassy-time.

use core::future::Future;

use sturdy_core::retry::RetryPolicy;
use sturdy_core::retry_driver::{Classified, Retry, RetryError};

use crate::clock::EmbassyClock;

/// A retry observer that logs with `defmt` (feature `defmt`): each retry at `debug`,
/// each give-up at `warn`, with the attempt, the failure kind and the delay or reason.
///
/// `sturdy_embassy::retrying(&policy).observer(DefmtObserver).run(..)`.
#[cfg(feature = "defmt")]
#[derive(Clone, Copy, Debug, Default, defmt::Format)]
pub struct DefmtObserver;

#[cfg(feature = "defmt")]
impl sturdy_core::retry_driver::RetryObserver for DefmtObserver {
    fn on_retry(
        &mut self,
        attempt: u32,
        kind: sturdy_core::FailureKind,
        delay: core::time::Duration,
    ) {
        defmt::debug!(
            "attempt {=u32} failed ({}); retrying in {=u64} ms",
            attempt,
            kind,
            delay.as_millis() as u64
        );
    }

    fn on_give_up(
        &mut self,
        attempt: u32,
        kind: sturdy_core::FailureKind,
        reason: sturdy_core::retry::GiveUpReason,
    ) {
        defmt::warn!(
            "attempt {=u32} failed ({}); giving up: {}",
            attempt,
            kind,
            reason
        );
    }
}

/// A retry on embassy-time, to configure before [`run`](Retry::run):
/// `.attempt_timeout(d)?`, `.seed(s)`, `.observer(o)` (an observer can log with
/// `defmt` or `log`), `.budget(&shared)` (a [`SharedRetryBudget`](crate::SharedRetryBudget)).
pub const fn retrying(policy: &RetryPolicy) -> Retry<'_, EmbassyClock> {
    Retry::new(EmbassyClock, policy)
}

/// Calls `op` until it succeeds or `policy` gives up, sleeping with
/// [`embassy_time::Timer`] between attempts; `classify` names each error's
/// [`FailureKind`](sturdy_core::FailureKind). Dropping the future drops the attempt in
/// flight and the timer; nothing is spawned and nothing is allocated.
///
/// The jitter seed is the boot-relative time of the first failure, mixed; a fleet of
/// boards that boot and fail in lockstep should pass its own seed (a unique id, a
/// hardware RNG draw) with [`retrying`]`(..).seed(s)`.
///
/// # Errors
/// [`RetryError`] with the last error, the number of calls and the reason.
pub fn retry<T, E, F, Fut, C, K>(
    policy: &RetryPolicy,
    classify: C,
    op: F,
) -> impl Future<Output = Result<T, RetryError<E>>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: FnMut(&E) -> K,
    K: Into<Classified>,
{
    // Not an `async fn`: returning the driver's future itself spares a layer of state
    // machine on the success path.
    retrying(policy).run(classify, op)
}

/// As [`retry`], lending `context` to `op` by `&mut` on each attempt and handing it
/// back with the result: the form for a peripheral driver whose methods take
/// `&mut self` (a closure that captured the `&mut` could not hand it to each attempt's
/// future). `op` is an async closure; `context` may be the driver itself or a `&mut`
/// to it.
///
/// ```
/// use core::time::Duration;
/// use sturdy_core::{FailureKind, retry::fixed_policy};
///
/// # #[derive(Debug)] struct Nack;
/// struct Sensor;
/// impl Sensor {
///     async fn read(&mut self) -> Result<i16, Nack> { Ok(215) }
/// }
///
/// // In an embassy task that owns the sensor:
/// async fn sample(sensor: &mut Sensor) -> Result<i16, sturdy_embassy::RetryError<Nack>> {
///     let policy = fixed_policy(5, Duration::from_millis(200)).expect("valid policy");
///     let (_sensor, out) = sturdy_embassy::retry_with_context(
///         &policy,
///         sensor,
///         |_e: &Nack| FailureKind::Network,
///         async |s: &mut &mut Sensor| s.read().await,
///     )
///     .await;
///     out
/// }
/// ```
///
/// # Errors
/// [`RetryError`] in the second element; the context comes back either way.
pub fn retry_with_context<Ctx, T, E, F, C, K>(
    policy: &RetryPolicy,
    context: Ctx,
    classify: C,
    op: F,
) -> impl Future<Output = (Ctx, Result<T, RetryError<E>>)>
where
    F: AsyncFnMut(&mut Ctx) -> Result<T, E>,
    C: FnMut(&E) -> K,
    K: Into<Classified>,
{
    retrying(policy).run_with_context(context, classify, op)
}
