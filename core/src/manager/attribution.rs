//! Breaker attribution: which failed attempts count against the worker (or the host
//! agent's slot) that ran them.
//!
//! A worker's [`ConsecutiveBreaker`](crate::breaker::ConsecutiveBreaker) exists to move
//! work away from a worker that is broken, not from tasks that are. If every failed
//! attempt counted, a few tasks that fail on every attempt would land on every worker in
//! turn (each retry goes to whichever worker is free) and open every breaker, stalling
//! the whole farm while good tasks wait (seen: 20 of 20 slots open with 476 of 500 tasks
//! finished). So a failure counts against the worker only when it points at the worker:
//!
//! - **The worker's own kinds always count**: [`Gpu`](FailureKind::Gpu),
//!   [`OutOfMemory`](FailureKind::OutOfMemory) (the next attempt may land on a worker
//!   with more room) and [`WorkerCrash`](FailureKind::WorkerCrash) (its process died or
//!   could not be started under the attempt).
//! - **A task's own kinds** ([`Evaluation`](FailureKind::Evaluation),
//!   [`Network`](FailureKind::Network), [`TaskTimeout`](FailureKind::TaskTimeout),
//!   [`Unknown`](FailureKind::Unknown), and [`Permanent`](FailureKind::Permanent) and
//!   [`Cancelled`](FailureKind::Cancelled), which the default breaker does not count
//!   anyway) count **unless the task's previous failed attempt failed the same way**.
//!   Such a task is already known to fail this way: failing again says nothing new
//!   about the worker. A first attempt, and a failure of a kind the task has not shown
//!   just before, count. So a worker whose commands always fail still opens its breaker
//!   (each task's first attempt there counts, and the work moves), while known-bad tasks
//!   retrying around the farm do not.
//!
//! Why also a repeat on the *same* worker is not counted again: that worker already
//! heard this task's failure once; counting each retry would let one bad task open the
//! only breaker of a one-worker farm (`-j 1`, 3 attempts, 3 failures in a row) and,
//! with few workers, let a bad task whose retries return to the worker it failed on
//! open it as surely as before. The cost: a broken worker that keeps getting the same
//! retried task opens later, after more *different* tasks failed there.
//!
//! What is left: a farm whose tasks mostly fail on their first attempt still opens
//! breakers, since a first failure cannot tell a bad task from a bad worker; a success
//! on the worker resets its run of failures, so good tasks between bad ones keep it
//! closed.
//!
//! The rule is pure and the same in the [`Ledger`](super::Ledger) (the local farm's
//! per-worker breakers: the task's last failure kind) and in the host agent (per-slot
//! breakers: the task's engine record before the claim is its previous attempt's
//! `ended` record, with its kind).

use crate::breaker::Outcome;
use crate::failure::FailureKind;

/// Whether `kind` is one of the worker's own kinds, which always count against its
/// breaker: [`Gpu`](FailureKind::Gpu), [`OutOfMemory`](FailureKind::OutOfMemory),
/// [`WorkerCrash`](FailureKind::WorkerCrash).
pub const fn is_worker_kind(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::Gpu | FailureKind::OutOfMemory | FailureKind::WorkerCrash
    )
}

/// Whether an attempt that failed with `kind`, after the task's previous failed attempt
/// failed with `prior` (`None`: none, or not known), counts against the breaker of the
/// worker that ran it. See the [module docs](self) for the rule.
pub const fn blames_worker(kind: FailureKind, prior: Option<FailureKind>) -> bool {
    if is_worker_kind(kind) {
        return true;
    }
    match prior {
        Some(p) => p as u8 != kind as u8,
        None => true,
    }
}

/// The outcome to record on the worker's breaker for an attempt that failed with
/// `kind` after `prior`: [`Outcome::Failure`] when [`blames_worker`], otherwise
/// [`Outcome::Ignored`] (counts neither way: the worker's run of failures neither grows
/// nor resets, and a half-open probe's slot is freed).
pub const fn breaker_outcome(kind: FailureKind, prior: Option<FailureKind>) -> Outcome {
    if blames_worker(kind, prior) {
        Outcome::Failure(kind)
    } else {
        Outcome::Ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_kinds_always_count() {
        for kind in [
            FailureKind::Gpu,
            FailureKind::OutOfMemory,
            FailureKind::WorkerCrash,
        ] {
            assert!(is_worker_kind(kind));
            assert!(blames_worker(kind, None));
            assert!(blames_worker(kind, Some(kind)));
            assert_eq!(breaker_outcome(kind, Some(kind)), Outcome::Failure(kind));
        }
    }

    #[test]
    fn a_task_kind_counts_unless_the_task_failed_the_same_way_before() {
        use FailureKind::*;
        for kind in [
            Evaluation,
            Network,
            TaskTimeout,
            Unknown,
            Permanent,
            Cancelled,
        ] {
            assert!(!is_worker_kind(kind));
            // First attempt: counts.
            assert!(blames_worker(kind, None), "{kind}: first failure");
            assert_eq!(breaker_outcome(kind, None), Outcome::Failure(kind));
            // The same kind before: the task's fault.
            assert!(!blames_worker(kind, Some(kind)), "{kind}: repeat");
            assert_eq!(breaker_outcome(kind, Some(kind)), Outcome::Ignored);
        }
        // Another kind before: counts.
        assert!(blames_worker(Evaluation, Some(Network)));
        assert!(blames_worker(Network, Some(WorkerCrash)));
        assert_eq!(
            breaker_outcome(Network, Some(Evaluation)),
            Outcome::Failure(Network)
        );
    }
}
