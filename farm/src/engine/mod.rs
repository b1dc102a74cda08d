//! The engine: the small trait through which the farm reaches whatever carries its tasks
//! and holds their records across hosts.
//!
//! # Vocabulary
//!
//! - A **task** ([`TaskId`]) is a number in the run's task list. Its **work message**
//!   (enqueued with [`Engine::enqueue`]) carries an opaque payload and a [`Generation`];
//!   enqueueing the same (task, generation) twice stores it once.
//! - A free slot pulls one work message: a [`Delivery`], leased until the engine's ack
//!   wait lapses unless [`Engine::renew`]ed, then [`Engine::settle`]d (ack, nak with a
//!   delay, or terminate). A lapsed lease hands the message to another puller with a higher
//!   [`Delivery::epoch`].
//! - Each task has a **record**, the newest of its [`Record`]s, at a [`Revision`]. Every
//!   write names the revision it read ([`Engine::write`]); the engine refuses it with a
//!   [`Conflict`] when the record moved on. That compare-and-set is the fence: the
//!   engine's own acks and renewals are not fenced (see [`Engine::renew`]).
//! - All records and notes form the run's journal, in the engine's order, read from any
//!   [`Position`] with [`Engine::follow`].
//!
//! # Shape
//!
//! The methods are `async fn`s in the trait, returning `Send` futures so that a host agent
//! can spawn them on a multi-threaded runtime. The trait is used through generics
//! (`fn agent<E: Engine>(engine: &E)`), not as `dyn Engine`: an implementation brings its
//! own delivery handle ([`Engine::Handle`]) and its own journal stream
//! ([`Engine::Follow`]). The implementations: [`jetstream`] (NATS JetStream); the embedded
//! single-machine one and the simulated one come next.

mod error;
pub mod jetstream;
pub mod output;
mod record;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

pub use error::{Conflict, Error};
use output::{OutputChunk, OutputMark, OutputSink};
pub use record::{Claim, Ended, Outcome, Record, RunMeta, Stale};
pub use sturdy_core::TaskId;

/// Which enqueueing of a task a work message is: 0 for the first, one more for each
/// reopening (`--retry-failed`). Enqueueing (task, generation) again is a no-op (inside the
/// engine's duplicate window), so a coordinator that crashed mid-enqueue simply enqueues
/// again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(pub u64);

/// A task record's version: the engine's sequence number of the task's newest record, or
/// [`Revision::NONE`] when the task has none yet. Passed back to [`Engine::write`] as the
/// expected revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision of a task with no record yet.
    pub const NONE: Self = Self(0);
}

/// A place in the run's journal: the engine's sequence number of one entry, from 1.
/// Entries are totally ordered; [`Position::next`] resumes after one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position(pub u64);

impl Position {
    /// The journal's beginning.
    pub const START: Self = Self(1);

    /// The position just after this one (where to resume a [`Engine::follow`]).
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

/// What [`Engine::enqueue`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The work message was stored.
    Queued,
    /// The same (task, generation) had been enqueued already; nothing changed.
    Duplicate,
}

/// How to finish with a [`Delivery`] ([`Engine::settle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Done with it: the work message is removed.
    Ack,
    /// Deliver it again, no sooner than after this delay (the core's retry delay). The
    /// engine adds no backoff of its own.
    Nak(Duration),
    /// Never deliver it again (given up, or already finished).
    Term,
}

/// One work message pulled for a free slot: leased to the puller until the engine's ack
/// wait lapses, unless renewed ([`Engine::renew`]) or settled ([`Engine::settle`]).
///
/// `H` is the engine's own handle on the message (for JetStream, the message itself).
#[derive(Debug)]
pub struct Delivery<H> {
    task: TaskId,
    generation: Generation,
    payload: Bytes,
    epoch: u64,
    sequence: u64,
    handle: H,
}

impl<H> Delivery<H> {
    /// Assembles a delivery (for engine implementations).
    pub fn new(
        task: TaskId,
        generation: Generation,
        payload: Bytes,
        epoch: u64,
        sequence: u64,
        handle: H,
    ) -> Self {
        Self {
            task,
            generation,
            payload,
            epoch,
            sequence,
            handle,
        }
    }

    /// The task.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// The generation it was enqueued under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The payload given to [`Engine::enqueue`].
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The engine's delivery count of this work message, from 1: it grows each time the
    /// message is handed out again (lapsed lease or nak), so it orders the leases of one
    /// message. JetStream's `num_delivered`.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The engine's sequence number of the work message (the same for every delivery of
    /// it).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The engine's own handle on the message.
    pub fn handle(&self) -> &H {
        &self.handle
    }
}

/// What [`Engine::renew_fenced`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fenced {
    /// The record was still this attempt's; the lease was renewed.
    Renewed,
    /// The record had moved on; nothing was sent.
    Stale {
        /// The task's record now.
        record: Option<Record>,
        /// Its revision now.
        revision: Revision,
    },
}

/// One entry of the run's journal, from [`Engine::follow`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Where it is in the journal.
    pub position: Position,
    /// The task it is about.
    pub task: TaskId,
    /// The record.
    pub record: Record,
    /// `false`: a write to the task's record ([`Engine::write`]; its revision is
    /// `position`). `true`: a journal note ([`Engine::note`]) that did not change the
    /// record.
    pub note: bool,
}

impl Entry {
    /// The task's revision after this entry, for a record write; `None` for a note.
    pub fn revision(&self) -> Option<Revision> {
        (!self.note).then_some(Revision(self.position.0))
    }
}

/// The operations the farm needs from an engine, for one run.
///
/// Errors: every method returns [`Error`] when the engine cannot be reached or answers
/// with a failure; the compare-and-set refusal of [`Engine::write`] is not an error but a
/// [`Conflict`] (an expected outcome of a race).
pub trait Engine: Send + Sync {
    /// The engine's handle on a delivered message, kept inside [`Delivery`].
    type Handle: Send + Sync;

    /// The journal stream returned by [`Engine::follow`].
    type Follow: Stream<Item = Result<Entry, Error>> + Send + Unpin;

    /// Enqueues task `task`'s work message with `payload` under `generation`.
    /// Idempotent per (task, generation) within the engine's duplicate window (JetStream:
    /// message id `R/task/generation`, window [`jetstream::Config::duplicate_window`]).
    fn enqueue(
        &self,
        task: TaskId,
        payload: &[u8],
        generation: Generation,
    ) -> impl Future<Output = Result<Enqueued, Error>> + Send;

    /// Whether task `task` has a work message in the engine now (waiting, leased or
    /// waiting for its retry delay): `Ok(Some(true))` or `Ok(Some(false))`; `Ok(None)`
    /// when the engine cannot tell (the default). A re-attaching coordinator asks it
    /// before enqueueing a task with no record, since the duplicate window that makes
    /// [`Engine::enqueue`] idempotent may have passed.
    fn queued(&self, task: TaskId) -> impl Future<Output = Result<Option<bool>, Error>> + Send {
        let _ = task;
        async { Ok(None) }
    }

    /// Pulls one work message for a free slot, waiting as long as it takes.
    ///
    /// Call it only when a slot is free: the delivery's lease starts now. If the returned
    /// future is dropped while waiting, a message the engine handed out meanwhile comes
    /// back after the ack wait, uncharged (no claim was written).
    ///
    /// # Errors
    /// [`Error::Engine`] when the pull fails; [`Error::Malformed`] for a work message that
    /// names no task or generation (published by hand): it is terminated, and the next
    /// call pulls on.
    fn next(&self) -> impl Future<Output = Result<Delivery<Self::Handle>, Error>> + Send;

    /// Pulls one work message, waiting at most `wait`; `None` when none came. The engine
    /// hands out nothing for this call after `wait` lapsed. Errors as for
    /// [`Engine::next`].
    fn next_within(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Delivery<Self::Handle>>, Error>> + Send;

    /// Reads task `task`'s record and its revision; `(None, Revision::NONE)` when the task
    /// has no record yet.
    fn read(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<(Option<Record>, Revision), Error>> + Send;

    /// Writes `record` as task `task`'s new record if its record is still at `expect`
    /// (compare-and-set, checked by the engine). `Ok(Ok(revision))`: written, at
    /// `revision`. `Ok(Err(Conflict))`: the record had moved on; nothing was written.
    fn write(
        &self,
        task: TaskId,
        expect: Revision,
        record: &Record,
    ) -> impl Future<Output = Result<Result<Revision, Conflict>, Error>> + Send;

    /// Appends `record` to the journal as a note about `task` without touching the task's
    /// record (no compare-and-set; the revision does not move). For an attempt that found
    /// itself stale and must not disturb the new owner.
    fn note(
        &self,
        task: TaskId,
        record: &Record,
    ) -> impl Future<Output = Result<Position, Error>> + Send;

    /// Renews the delivery's lease for another ack wait (JetStream: `+WPI`).
    ///
    /// **Not fenced by the engine** (nats-server #4786, #6937): a renewal from an attempt
    /// whose lease already lapsed is accepted and pins the message, even when a newer
    /// delivery of it is live, so a dead owner's task may stay leased for ever. Renew only
    /// after reading the task's record ([`Engine::read`]) and finding it is still this
    /// attempt's claim, at the revision this attempt wrote; otherwise the attempt is
    /// stale: kill its command and never renew or settle this delivery again.
    /// [`Engine::renew_fenced`] does the read and the check.
    fn renew(
        &self,
        delivery: &Delivery<Self::Handle>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Renews the delivery's lease only if task's record is still at `mine` (the revision
    /// this attempt's own claim got): reads the record, then renews ([`Engine::renew`]) or
    /// not. The rule R2 of the engine notes, done once here for every engine.
    ///
    /// `Ok(Fenced::Renewed)`: renewed. `Ok(Fenced::Stale { record, revision })`: the
    /// record moved on (shown); nothing was sent, and this attempt must stop and never
    /// renew or settle this delivery again. Between the read and the renewal lies one
    /// round trip: a record moved in that window costs at most one extra ack wait of lease
    /// for the new owner's delivery of the same message, and the next call finds it stale.
    fn renew_fenced(
        &self,
        delivery: &Delivery<Self::Handle>,
        mine: Revision,
    ) -> impl Future<Output = Result<Fenced, Error>> + Send {
        async move {
            let (record, revision) = self.read(delivery.task()).await?;
            if revision != mine {
                return Ok(Fenced::Stale { record, revision });
            }
            self.renew(delivery).await?;
            Ok(Fenced::Renewed)
        }
    }

    /// Finishes with the delivery: [`Settle::Ack`], [`Settle::Nak`] with the core's delay,
    /// or [`Settle::Term`].
    ///
    /// **Not fenced by the engine** (nats-server #4786, #6937): a late ack from an attempt
    /// whose lease lapsed is accepted and deletes the live redelivery. Settle only after
    /// this attempt's own compare-and-set write succeeded (its `ended` record), or after
    /// reading the record and finding it final (a finished task delivered again);
    /// otherwise leave the delivery alone.
    ///
    /// `Ok(())` need not mean the engine received it: JetStream sends [`Settle::Ack`]
    /// without waiting for a reply (the `ended` record's compare-and-set is the fence, not
    /// the ack). A lost ack redelivers a finished task after the ack wait; the agent's R1
    /// then reads `ended` and acks it without running it. Nak and term wait for the
    /// engine's reply.
    fn settle(
        &self,
        delivery: Delivery<Self::Handle>,
        how: Settle,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Acknowledges `delivery` as [`Settle::Ack`] does and pulls the next work message
    /// for the same slot, waiting at most `wait` ([`Engine::next_within`]): on JetStream
    /// one message (`+NXT`) instead of an ack and a pull request.
    ///
    /// The same rule as for [`Engine::settle`]: call it only after this attempt's own
    /// `ended` record was written with compare-and-set, or after reading the record and
    /// finding it final; and only when the slot is free for the next task (the lease of
    /// what comes back starts now). The acknowledgement is not confirmed: if it is lost,
    /// or this future is dropped before it was sent, the finished task is redelivered
    /// after the ack wait and acknowledged then without running. An error may come after
    /// the acknowledgement was sent.
    ///
    /// The default sends [`Engine::settle`] then [`Engine::next_within`].
    fn ack_next(
        &self,
        delivery: Delivery<Self::Handle>,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Delivery<Self::Handle>>, Error>> + Send {
        async move {
            self.settle(delivery, Settle::Ack).await?;
            self.next_within(wait).await
        }
    }

    /// Stores one chunk of a task's output ([`output`]): the host agent ships an
    /// attempt's output this way, before its final `ended` record.
    /// `Ok(Some(position))`: stored, at `position`. `Ok(None)`: this engine keeps no
    /// output (the default); the output stays on the host.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine refused or failed (the output stays on the
    /// host; the run goes on).
    fn put_output(
        &self,
        chunk: &OutputChunk,
    ) -> impl Future<Output = Result<Option<Position>, Error>> + Send {
        let _ = chunk;
        async { Ok(None) }
    }

    /// Fetches task `task`'s output as attempt (`attempt`, `epoch`) shipped it, per its
    /// `ended` record's `mark` ([`Ended::output`]), into `sink`: the bytes of each
    /// channel shipped, in order, a chunk at a time. Nothing for a mark with nothing
    /// shipped. The default (an engine that keeps no output) gives nothing.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine failed or a chunk is missing (dropped from a
    /// full output stream); [`Error::Malformed`] for chunks out of order.
    fn get_output(
        &self,
        task: TaskId,
        attempt: u32,
        epoch: u64,
        mark: &OutputMark,
        sink: &mut OutputSink<'_>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = (task, attempt, epoch, mark, sink);
        async { Ok(()) }
    }

    /// Follows the run's journal from `from` (inclusive; [`Position::START`] for all of
    /// it): every record write and note in the engine's order, then new ones as they come.
    /// The stream ends only with an error or when dropped; resume with
    /// `follow(last.position.next())`.
    fn follow(&self, from: Position) -> impl Future<Output = Result<Self::Follow, Error>> + Send;
}
