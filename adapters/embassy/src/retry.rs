//! `retry`: the core's retry driver on embassy-time.

use core::future::Future;

use sturdy_core::retry::RetryPolicy;
use sturdy_core::retry_driver::{Classified, Retry, RetryError};

use crate::clock::EmbassyClock;

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
