//! The rules of one task's record: claim, renew, finish, stale.
//!
//! A task's [`Record`] is what is known of it for sure: how many times it was claimed,
//! how many of those claims were lost with their worker (crashes), and where it stands
//! ([`Phase`]). The rules below decide every transition of a record and every result
//! that may still change it; the [`Ledger`](super::Ledger) applies them to its tasks on
//! one machine, and a multi-host engine applies them to the newest record of a task
//! written with a server-checked compare-and-set (the record's revision), so that the
//! rules exist once. The functions are `const`, pure and allocation-free: they read a
//! record and return the next one, or why the input is stale.
//!
//! | rule | input | outcome |
//! |---|---|---|
//! | claim ([`Record::on_delivery`]) | a delivery of the task to a free slot | [`Delivery::Skip`] a finished task; [`Delivery::GiveUp`] when charging a claim that never ended takes the crashes over the limit; else [`Delivery::Claim`] of attempt `claims + 1` |
//! | lost ([`Record::on_lost`]) | the claim's worker died, was suspected, or its lease lapsed | a crash: requeued while `crashes <= crash_limit`, given up at the crash above it |
//! | renew ([`Record::on_renew`]) | a heartbeat of the attempt | kept only while the attempt's claim is the newest and open |
//! | result ([`Record::accept`]) | an attempt reports success or failure | accepted only for the newest claim; a success also after that claim was lost and before anyone claimed again |
//! | finish ([`Record::finish`]) | an accepted result and the retry policy's decision | `Done`, `Retrying` or `GaveUp` |
//!
//! What follows from them, for any interleaving of deliveries, results, losses and
//! compare-and-set races (property-tested against a model of the engine in this
//! module's tests):
//! - a task succeeds at most once: every rule refuses a finished record;
//! - a result from an attempt whose claim is no longer the newest is refused
//!   ([`StaleReason::OldEpoch`]), as is a second result of one attempt
//!   ([`StaleReason::AlreadyCharged`]);
//! - a task that only waited is never charged: attempts count claims, not deliveries;
//! - a task whose claims keep dying still ends, at its `crash_limit + 1`-th lost claim;
//!   its own failures end it through the retry policy (`max_attempts`).
//!
//! ```
//! use sturdy_core::manager::record::{Delivery, Ending, Record, Report, Renew};
//!
//! let crash_limit = 3;
//! // Agent A claims the task (attempt 1) ...
//! let Delivery::Claim { record: a, attempt: 1, lost: None } = Record::NEW.on_delivery(crash_limit)
//! else { unreachable!() };
//! // ... and stops answering; the lease lapses and B gets the delivery: A's claim is
//! // charged as a crash and B claims attempt 2.
//! let Delivery::Claim { record: b, attempt: 2, lost: Some(1) } = a.on_delivery(crash_limit)
//! else { unreachable!() };
//! assert_eq!(b.crashes, 1);
//! // A wakes up: it may neither renew nor report.
//! assert!(matches!(b.on_renew(1), Renew::Stale(_)));
//! assert!(b.accept(1, Report::Success).is_err());
//! // B's success is accepted once.
//! assert!(b.accept(2, Report::Success).is_ok());
//! let done = b.finish(Ending::Done);
//! assert!(done.accept(2, Report::Success).is_err());
//! ```

use super::StaleReason;

/// Where a task's record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Phase {
    /// Never claimed.
    Open,
    /// The newest claim is running (or its worker is gone unnoticed).
    Claimed,
    /// The newest claim was lost with its worker and charged as a crash; nobody has
    /// claimed the task since. A late success of that claim is still accepted.
    Lost,
    /// The newest claim ended in the task's own failure; a retry is due.
    Retrying,
    /// Succeeded: final.
    Done,
    /// Failed for good: final.
    GaveUp,
}

/// What is known for sure of one task. 16 bytes, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Record {
    /// Where it stands.
    pub phase: Phase,
    /// Claims so far: the attempt number (and epoch) of the newest claim; 0 before the
    /// first.
    pub claims: u32,
    /// Claims lost with their worker (charged as crashes, not as own failures).
    pub crashes: u32,
    /// Claims that ended in the task's own failure.
    pub own_failures: u32,
}

/// What a delivery of the task to a free slot leads to ([`Record::on_delivery`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a claim counts only once written"]
pub enum Delivery {
    /// The task is finished: acknowledge the delivery without running anything.
    Skip,
    /// Run attempt `attempt` after writing `record` (its claim).
    Claim {
        /// The record to write: the claim.
        record: Record,
        /// The attempt number (= the new `claims`), also the epoch.
        attempt: u32,
        /// The previous claim, which never ended and is charged as a crash by this
        /// claim (its attempt number), if any.
        lost: Option<u32>,
    },
    /// Charging the previous claim, which never ended, takes the crashes above the
    /// limit: write `record` (given up) and run nothing.
    GiveUp {
        /// The record to write: given up.
        record: Record,
        /// The crashes counted, now above the limit.
        crashes: u32,
    },
}

/// What losing the newest claim leads to ([`Record::on_lost`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Lost {
    /// Charged as a crash, within the limit: the task runs again at once.
    Requeue(Record),
    /// Charged as a crash above the limit: the task failed for good.
    GiveUp {
        /// The record, given up.
        record: Record,
        /// The crashes counted.
        crashes: u32,
    },
}

/// Whether an attempt may renew its lease ([`Record::on_renew`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Renew {
    /// Its claim is the newest and open: renew.
    Keep,
    /// It is stale: stop its command and never renew, acknowledge or settle its
    /// delivery again.
    Stale(StaleReason),
}

/// An attempt's report ([`Record::accept`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The attempt succeeded.
    Success,
    /// The attempt failed on its own (not a crash of its worker).
    Failure,
}

/// How an accepted attempt ends the claim ([`Record::finish`]): the success, or the
/// retry policy's decision on the failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It succeeded.
    Done,
    /// It failed; the retry policy retries it.
    Retry,
    /// It failed; the retry policy gives up.
    GaveUp,
}

impl Record {
    /// The record of a task never claimed.
    pub const NEW: Self = Self {
        phase: Phase::Open,
        claims: 0,
        crashes: 0,
        own_failures: 0,
    };

    /// Whether the task succeeded or failed for good.
    pub const fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::GaveUp)
    }

    /// Claim: the task was delivered to a free slot. A claim that never ended (the
    /// record is still [`Phase::Claimed`]: its worker died unnoticed, its lease lapsed
    /// and the engine redelivered) is charged as a crash first, exactly once.
    pub const fn on_delivery(&self, crash_limit: u32) -> Delivery {
        let mut next = *self;
        let mut lost = None;
        match self.phase {
            Phase::Done | Phase::GaveUp => return Delivery::Skip,
            Phase::Claimed => {
                next.crashes = next.crashes.saturating_add(1);
                lost = Some(self.claims);
                if next.crashes > crash_limit {
                    next.phase = Phase::GaveUp;
                    return Delivery::GiveUp {
                        record: next,
                        crashes: next.crashes,
                    };
                }
            }
            Phase::Open | Phase::Lost | Phase::Retrying => {}
        }
        next.claims = next.claims.saturating_add(1);
        next.phase = Phase::Claimed;
        Delivery::Claim {
            record: next,
            attempt: next.claims,
            lost,
        }
    }

    /// Lost: the claim of attempt `epoch` was lost with its worker (it died, was
    /// suspected, or its lease lapsed). Charged as a crash.
    ///
    /// # Errors
    /// Why the report is stale: the task is finished, `epoch` is not the newest claim,
    /// or that claim already ended.
    pub const fn on_lost(&self, epoch: u32, crash_limit: u32) -> Result<Lost, StaleReason> {
        if let Err(e) = self.check_open_claim(epoch) {
            return Err(e);
        }
        let mut next = *self;
        next.crashes = next.crashes.saturating_add(1);
        if next.crashes > crash_limit {
            next.phase = Phase::GaveUp;
            Ok(Lost::GiveUp {
                record: next,
                crashes: next.crashes,
            })
        } else {
            next.phase = Phase::Lost;
            Ok(Lost::Requeue(next))
        }
    }

    /// Renew: may attempt `epoch` extend its lease?
    pub const fn on_renew(&self, epoch: u32) -> Renew {
        match self.check_open_claim(epoch) {
            Ok(()) => Renew::Keep,
            Err(e) => Renew::Stale(e),
        }
    }

    /// Result: may attempt `epoch`'s report change the record? Only the newest claim's
    /// may, once; a success is also accepted after that claim was lost and before
    /// anyone claimed again (the work is done: the task need not run again).
    ///
    /// # Errors
    /// [`StaleReason::Finished`] for a finished task; [`StaleReason::AlreadyCharged`]
    /// for the newest claim's second report (or a failure after it was lost);
    /// [`StaleReason::OldEpoch`] for any other attempt.
    pub const fn accept(&self, epoch: u32, report: Report) -> Result<(), StaleReason> {
        match (self.phase, report) {
            (Phase::Lost, Report::Success) if epoch != 0 && epoch == self.claims => Ok(()),
            _ => self.check_open_claim(epoch),
        }
    }

    /// Finish: the record after an [accepted](Self::accept) result.
    pub const fn finish(&self, ending: Ending) -> Self {
        let mut next = *self;
        match ending {
            Ending::Done => next.phase = Phase::Done,
            Ending::Retry => {
                next.phase = Phase::Retrying;
                next.own_failures = next.own_failures.saturating_add(1);
            }
            Ending::GaveUp => {
                next.phase = Phase::GaveUp;
                next.own_failures = next.own_failures.saturating_add(1);
            }
        }
        next
    }

    /// `Ok` when attempt `epoch` holds the newest claim and it is open.
    const fn check_open_claim(&self, epoch: u32) -> Result<(), StaleReason> {
        match self.phase {
            Phase::Done | Phase::GaveUp => Err(StaleReason::Finished),
            _ if epoch == 0 || epoch != self.claims => Err(StaleReason::OldEpoch {
                current: self.claims,
            }),
            Phase::Claimed => Ok(()),
            Phase::Open | Phase::Lost | Phase::Retrying => Err(StaleReason::AlreadyCharged),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rules against a model of a multi-host engine: every actor reads the newest
    //! record with its revision and writes with compare-and-set on it, deliveries are
    //! redelivered when a lease lapses (or never settle), actors pause, crash and come
    //! back late, in any order.

    extern crate std;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    const CRASH_LIMIT: u32 = 3;
    const MAX_OWN: u32 = 3;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Step {
        Idle,
        /// Holds a claim of `attempt`.
        Running {
            attempt: u32,
        },
        /// Crashed (holding the claim of this attempt, if it held one).
        Dead(Option<u32>),
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Actor `a` (idle) gets a delivery: reads, decides, writes with CAS.
        Deliver(usize),
        /// Two idle actors get the same delivery and race their CAS.
        Race(usize, usize),
        /// Actor `a` finishes its attempt: success, or its own failure.
        Finish(usize, bool),
        /// Actor `a` renews.
        Renew(usize),
        /// Actor `a` crashes; the engine's lease on its delivery lapses later.
        Crash(usize),
        /// A detector (one machine) reports actor `a`'s claim lost.
        Lost(usize),
        /// Actor `a` comes back as a new process.
        Restart(usize),
    }

    fn op(actors: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..actors).prop_map(Op::Deliver),
            1 => (0..actors, 0..actors).prop_map(|(a, b)| Op::Race(a, b)),
            4 => (0..actors, any::<bool>()).prop_map(|(a, s)| Op::Finish(a, s)),
            2 => (0..actors).prop_map(Op::Renew),
            1 => (0..actors).prop_map(Op::Crash),
            1 => (0..actors).prop_map(Op::Lost),
            1 => (0..actors).prop_map(Op::Restart),
        ]
    }

    /// The engine's per-task subject: every accepted write in order (the journal).
    struct Server {
        log: Vec<Record>,
    }

    impl Server {
        fn read(&self) -> (Record, usize) {
            (*self.log.last().unwrap(), self.log.len())
        }
        /// Compare-and-set on the revision read.
        fn write(&mut self, expect: usize, r: Record) -> bool {
            if self.log.len() != expect {
                return false;
            }
            self.log.push(r);
            true
        }
    }

    fn deliver(server: &mut Server, steps: &mut [Step], a: usize, rev: (Record, usize)) {
        if steps[a] != Step::Idle {
            return;
        }
        match rev.0.on_delivery(CRASH_LIMIT) {
            Delivery::Skip => {}
            Delivery::GiveUp { record, .. } => {
                let _ = server.write(rev.1, record);
            }
            Delivery::Claim {
                record, attempt, ..
            } => {
                if server.write(rev.1, record) {
                    steps[a] = Step::Running { attempt };
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_interleaving_keeps_the_record_rules(
            ops in proptest::collection::vec(op(3), 1..120),
        ) {
            let mut server = Server { log: std::vec![Record::NEW] };
            let mut steps = [Step::Idle; 3];
            for o in ops {
                match o {
                    Op::Deliver(a) => {
                        let rev = server.read();
                        deliver(&mut server, &mut steps, a, rev);
                    }
                    Op::Race(a, b) => {
                        // Both read the same revision; at most one claim is written.
                        let rev = server.read();
                        let before = server.log.len();
                        deliver(&mut server, &mut steps, a, rev);
                        if a != b {
                            deliver(&mut server, &mut steps, b, rev);
                        }
                        prop_assert!(server.log.len() <= before + 1);
                    }
                    Op::Finish(a, success) => {
                        if let Step::Running { attempt } = steps[a] {
                            let (r, rev) = server.read();
                            let report = if success { Report::Success } else { Report::Failure };
                            match r.accept(attempt, report) {
                                Ok(()) => {
                                    // Only the newest claim's result counts: open, or
                                    // lost and reporting a success.
                                    prop_assert_eq!(attempt, r.claims);
                                    prop_assert!(
                                        r.phase == Phase::Claimed
                                            || (r.phase == Phase::Lost && success)
                                    );
                                    let ending = if success {
                                        Ending::Done
                                    } else if r.own_failures + 1 >= MAX_OWN {
                                        Ending::GaveUp
                                    } else {
                                        Ending::Retry
                                    };
                                    prop_assert!(server.write(rev, r.finish(ending)));
                                }
                                Err(_) => {
                                    // A stale attempt: its claim was superseded.
                                    prop_assert!(r.claims != attempt || r.phase != Phase::Claimed);
                                }
                            }
                            steps[a] = Step::Idle;
                        }
                    }
                    Op::Renew(a) => {
                        if let Step::Running { attempt } = steps[a] {
                            let (r, _) = server.read();
                            let keep = matches!(r.on_renew(attempt), Renew::Keep);
                            prop_assert_eq!(keep, r.phase == Phase::Claimed && r.claims == attempt);
                            if !keep {
                                steps[a] = Step::Idle; // killed its command
                            }
                        }
                    }
                    Op::Crash(a) => {
                        steps[a] = Step::Dead(match steps[a] {
                            Step::Running { attempt } => Some(attempt),
                            _ => None,
                        });
                    }
                    Op::Lost(a) => {
                        if let Step::Running { attempt } | Step::Dead(Some(attempt)) = steps[a] {
                            let (r, rev) = server.read();
                            if let Ok(l) = r.on_lost(attempt, CRASH_LIMIT) {
                                let next = match l {
                                    Lost::Requeue(n) | Lost::GiveUp { record: n, .. } => n,
                                };
                                prop_assert!(server.write(rev, next));
                            }
                            if let Step::Dead(_) = steps[a] {
                                steps[a] = Step::Dead(None);
                            }
                        }
                    }
                    Op::Restart(a) => {
                        if let Step::Dead(_) = steps[a] {
                            steps[a] = Step::Idle;
                        }
                    }
                }
            }
            // The journal: at most one success, nothing after a final record, claims
            // counted once each, crashes and own failures within their limits.
            let log = &server.log;
            let done = log.windows(2).filter(|w| w[1].phase == Phase::Done && w[0].phase != Phase::Done).count();
            prop_assert!(done <= 1);
            if let Some(end) = log.iter().position(Record::is_finished) {
                prop_assert_eq!(end, log.len() - 1, "nothing is written after a final record");
            }
            for w in log.windows(2) {
                prop_assert!(w[1].claims == w[0].claims || w[1].claims == w[0].claims + 1);
                prop_assert!(w[1].crashes >= w[0].crashes && w[1].own_failures >= w[0].own_failures);
            }
            let last = log.last().unwrap();
            prop_assert!(last.crashes <= CRASH_LIMIT + 1);
            prop_assert!(last.own_failures <= MAX_OWN);
            prop_assert!(last.claims <= last.crashes + last.own_failures + 1);
        }

        #[test]
        fn a_task_ends_however_often_its_claims_die(seed_ops in proptest::collection::vec(any::<bool>(), 0..40)) {
            // Each claim either dies (redelivered after its lease) or fails on its own:
            // the task ends within crash_limit + max_own + 1 deliveries.
            let mut r = Record::NEW;
            let mut deliveries = 0;
            let mut dies = seed_ops.into_iter().chain(core::iter::repeat(true));
            while !r.is_finished() {
                deliveries += 1;
                prop_assert!(deliveries <= CRASH_LIMIT + MAX_OWN + 2);
                match r.on_delivery(CRASH_LIMIT) {
                    Delivery::Skip => unreachable!(),
                    Delivery::GiveUp { record, crashes } => {
                        prop_assert_eq!(crashes, CRASH_LIMIT + 1);
                        r = record;
                    }
                    Delivery::Claim { record, attempt, .. } => {
                        r = record;
                        if !dies.next().unwrap() {
                            r.accept(attempt, Report::Failure).unwrap();
                            r = r.finish(if r.own_failures + 1 >= MAX_OWN { Ending::GaveUp } else { Ending::Retry });
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn exact_transitions() {
        let Delivery::Claim {
            record: c1,
            attempt: 1,
            lost: None,
        } = Record::NEW.on_delivery(1)
        else {
            panic!()
        };
        assert_eq!(
            (c1.phase, c1.claims, c1.crashes, c1.own_failures),
            (Phase::Claimed, 1, 0, 0)
        );
        // A second report of the same attempt, and a report of an attempt never issued.
        let retrying = c1.finish(Ending::Retry);
        assert_eq!(
            retrying.accept(1, Report::Failure),
            Err(StaleReason::AlreadyCharged)
        );
        assert_eq!(
            retrying.accept(1, Report::Success),
            Err(StaleReason::AlreadyCharged)
        );
        assert_eq!(
            c1.accept(0, Report::Success),
            Err(StaleReason::OldEpoch { current: 1 })
        );
        // Lost, then a late success is accepted; a late failure is not.
        let Delivery::Claim { record: c2, .. } = retrying.on_delivery(1) else {
            panic!()
        };
        let Ok(Lost::Requeue(lost)) = c2.on_lost(2, 1) else {
            panic!()
        };
        assert_eq!((lost.phase, lost.crashes), (Phase::Lost, 1));
        assert_eq!(lost.accept(2, Report::Success), Ok(()));
        assert_eq!(
            lost.accept(2, Report::Failure),
            Err(StaleReason::AlreadyCharged)
        );
        assert_eq!(lost.on_renew(2), Renew::Stale(StaleReason::AlreadyCharged));
        // The next claim that dies unnoticed is charged at the redelivery: above the
        // limit of 1, the task gives up without running.
        let Delivery::Claim {
            record: c3,
            attempt: 3,
            lost: None,
        } = lost.on_delivery(1)
        else {
            panic!()
        };
        assert_eq!(
            c3.on_delivery(1),
            Delivery::GiveUp {
                record: Record {
                    phase: Phase::GaveUp,
                    claims: 3,
                    crashes: 2,
                    own_failures: 1
                },
                crashes: 2
            }
        );
        let done = c3.finish(Ending::Done);
        assert_eq!(done.on_delivery(1), Delivery::Skip);
        assert_eq!(done.on_lost(3, 1), Err(StaleReason::Finished));
    }
}
