//! `retry`: the core's retry driver on async-io timers, with `tracing` events.

use std::future::Future;
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::retry::{GiveUpReason, RetryPolicy};
use sturdy_core::retry_driver::{Classified, Retry, RetryError, RetryObserver};

use crate::clock::AsyncIoClock;

/// Emits each retry as a `DEBUG` `tracing` event and each give-up as a `WARN` one
/// (target `sturdy_async_std::retry`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingObserver;

impl RetryObserver for TracingObserver {
    fn on_retry(&mut self, attempt: u32, kind: FailureKind, delay: Duration) {
        tracing::debug!(
            target: "sturdy_async_std::retry",
            attempt,
            kind = kind.as_str(),
            delay_ms = delay.as_millis() as u64,
            "attempt failed; retrying"
        );
    }

    fn on_give_up(&mut self, attempt: u32, kind: FailureKind, reason: GiveUpReason) {
        tracing::warn!(
            target: "sturdy_async_std::retry",
            attempt,
            kind = kind.as_str(),
            %reason,
            "attempt failed; giving up"
        );
    }
}

/// A retry on async-io timers with `tracing` events, to configure before
/// [`run`](Retry::run): `.attempt_timeout(d)?`, `.seed(s)`, `.observer(o)`,
/// `.budget(&shared_budget)` (a [`RetryBudget`](crate::RetryBudget)).
pub fn retrying(policy: &RetryPolicy) -> Retry<'_, AsyncIoClock, TracingObserver> {
    Retry::new(AsyncIoClock::new(), policy).observer(TracingObserver)
}

/// Calls `op` until it succeeds or `policy` gives up, sleeping on async-io timers
/// between attempts; `classify` names each error's [`FailureKind`]. Dropping the
/// future drops the attempt in flight and the timer; nothing is spawned.
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
/// back with the result (after backon's `RetryableWithContext`): for an operation
/// that needs a borrow it cannot keep between attempts, such as a `&mut` client or
/// buffer. `op` is an async closure: `async |conn: &mut Conn| conn.query().await`.
/// Sleeps on async-io timers; retries and give-ups are `tracing` events.
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
