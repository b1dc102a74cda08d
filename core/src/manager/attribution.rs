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
//!   anyway) count **unless the task's previous attempt failed the same way
//!   elsewhere**. Such a task is already known to fail this way wherever it runs:
//!   failing again says nothing new about this worker. A first attempt, a failure of a
//!   kind the task did not show just before, and a repeat where it failed before all
//!   count. So a worker whose commands always fail still opens its breaker (each
//!   task's first attempt there counts, and so does each retry that comes back to it),
//!   while known-bad tasks retrying around the farm do not.
//!
//! What "elsewhere" means is the caller's, by what a fault can share:
//! - the [`Ledger`](super::Ledger) (the local farm, one host) compares workers;
//! - the host agent compares **hosts**, not slots: a host-wide fault (a missing
//!   program, a full disk, a broken network) fails every slot of the host the same way,
//!   so a task failing again on another slot of the same host still counts there, and
//!   a broken host alone in the run opens its breakers before it burns its tasks'
//!   attempts.
//!
//! What is left: a farm whose tasks mostly fail on their first attempt still opens
//! breakers, since a first failure cannot tell a bad task from a bad worker; and a bad
//! task whose retry lands where it just failed counts again. A success on the worker
//! resets its run of failures, so good tasks between bad ones keep it closed.

use crate::breaker::Outcome;
use crate::failure::FailureKind;

/// A task's previous failed attempt, as its record tells: what the rule of the [module
/// docs](self) compares a new failure with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PriorFailure {
    /// How it failed.
    pub kind: FailureKind,
    /// Whether it ran elsewhere than the attempt judged now (another worker of the
    /// ledger; another host for the host agent).
    pub elsewhere: bool,
}

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
/// was `prior` (`None`: none, or not known), counts against the breaker of the worker
/// that ran it. See the [module docs](self) for the rule.
pub const fn blames_worker(kind: FailureKind, prior: Option<PriorFailure>) -> bool {
    if is_worker_kind(kind) {
        return true;
    }
    match prior {
        Some(p) => !(p.elsewhere && p.kind as u8 == kind as u8),
        None => true,
    }
}

/// The outcome to record on the worker's breaker for an attempt that failed with
/// `kind` after `prior`: [`Outcome::Failure`] when [`blames_worker`], otherwise
/// [`Outcome::Ignored`] (counts neither way: the worker's run of failures neither grows
/// nor resets, and a half-open probe's slot is freed).
pub const fn breaker_outcome(kind: FailureKind, prior: Option<PriorFailure>) -> Outcome {
    if blames_worker(kind, prior) {
        Outcome::Failure(kind)
    } else {
        Outcome::Ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn prior(kind: FailureKind, elsewhere: bool) -> Option<PriorFailure> {
        Some(PriorFailure { kind, elsewhere })
    }

    #[test]
    fn worker_kinds_always_count() {
        for kind in [
            FailureKind::Gpu,
            FailureKind::OutOfMemory,
            FailureKind::WorkerCrash,
        ] {
            assert!(is_worker_kind(kind));
            assert!(blames_worker(kind, None));
            assert!(blames_worker(kind, prior(kind, true)));
            assert_eq!(
                breaker_outcome(kind, prior(kind, true)),
                Outcome::Failure(kind)
            );
        }
    }

    #[test]
    fn a_task_kind_counts_unless_the_same_failure_happened_elsewhere() {
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
            // Same kind where it ran now: counts.
            assert!(
                blames_worker(kind, prior(kind, false)),
                "{kind}: same place"
            );
            // Same kind elsewhere: the task's fault.
            assert!(!blames_worker(kind, prior(kind, true)), "{kind}: elsewhere");
            assert_eq!(breaker_outcome(kind, prior(kind, true)), Outcome::Ignored);
        }
        // Another kind before: counts.
        assert!(blames_worker(Evaluation, prior(Network, true)));
        assert!(blames_worker(Network, prior(WorkerCrash, true)));
        assert_eq!(
            breaker_outcome(Network, prior(Evaluation, true)),
            Outcome::Failure(Network)
        );
    }
}
