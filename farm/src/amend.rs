//! `--resume-failed` across hosts: a run continues under a corrected task list of the
//! same length. The run's definition records the new list's fingerprint
//! ([`Run::amend`], compare-and-set); then every task whose work message still carries
//! another text gets the new one ([`retext`]).
//!
//! # Which tasks changed
//!
//! A task's text is known to the engine only through its work message, so the
//! coordinator compares each task's waiting message with the new list: nothing is
//! stored at the run's creation (no per-task hashes, whose table for a million tasks
//! would not fit one message), a coordinator that died half-way finds the same answer
//! again, and a second amendment works the same way. The price: a task with no work
//! message left (it succeeded, or was given up) has no old text to compare. A succeeded
//! task is kept as it is; a given-up one is reopened under the new list's text
//! (`--resume-failed` implies `--retry-failed`).
//!
//! # How a task takes its new text
//!
//! A task with an old waiting message and no claim running is fenced first: a
//! `reopened{generation: g}` record, written with compare-and-set on the record read
//! (so an agent that claimed the old message meanwhile wins, and the task counts as
//! running), where `g` is the amendment's own stream sequence (unique: never a task
//! record's revision, so the message id `R/n/g` was never used, whatever the duplicate
//! window). Then the old message is deleted by its sequence and the new text enqueued
//! under `g`. An agent that still receives the old message reads the fence and
//! acknowledges it without running it (only generation `g` may claim); the new
//! message's first claim is attempt 1 of a fresh budget, as a reopened given-up task's.
//!
//! A task claimed right now keeps running its old command. When its record moves on
//! (the attempt ended, or was found stale), the coordinator looks again: `done` keeps
//! it; a retry (whose nak would redeliver the old message), a give-up or a lost claim
//! are fenced and re-enqueued as above, so its next attempt runs the new text. If the
//! coordinator is down when that happens, the old text may run once more; the next
//! `--resume` (or `--resume-failed`) finishes the job.

use bytes::Bytes;

use crate::engine::jetstream::Run;
use crate::engine::{Engine, Error, Generation, Outcome, Record, Revision, TaskId};

/// What [`retext`] found for one task.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retexted {
    /// Nothing to do: it succeeded, or its waiting message carries the new text (or the
    /// amendment's generation), or it has none and needs none.
    Unchanged,
    /// Its waiting message carried `old`; the task was fenced at `revision` and its new
    /// text enqueued.
    Replaced {
        /// The earlier text.
        old: Bytes,
        /// The fence's revision (for [`Projection::reopened_at`](crate::coordinator::Projection::reopened_at)).
        revision: Revision,
    },
    /// Given up (its message is gone): reopened under the new text at `revision`.
    Reopened {
        /// The reopening's revision.
        revision: Revision,
    },
    /// An attempt holds it now, under the text `old`: it keeps running; look again when
    /// its record moves on.
    Claimed {
        /// The text it runs.
        old: Bytes,
    },
}

/// Gives task `task` the text `payload` under amendment `generation` (its stream
/// sequence, [`Run::amend`]) if its work message carries another (see the module's
/// docs). A given-up task is reopened under the new text only with `reopen_given_up`
/// (a task known to have run an old text, or `--retry-failed`); otherwise it is left
/// alone. Idempotent: a second call finds the task fenced or its message new.
///
/// Cost: a message get and a record read; a write, a delete and a publish for a task
/// that takes its new text.
///
/// # Errors
/// The engine's; calling again is safe.
pub async fn retext(
    run: &Run,
    task: TaskId,
    payload: &[u8],
    generation: u64,
    reopen_given_up: bool,
) -> Result<Retexted, Error> {
    // A conflict means an agent moved the record meanwhile: read again (a few times).
    for _ in 0..4 {
        // The record first: a succeeded task (most of them, late in a run) costs one read.
        let (record, revision) = run.read(task).await?;
        match &record {
            Some(Record::Ended(e)) if e.outcome == Outcome::Done => {
                return Ok(Retexted::Unchanged);
            }
            Some(Record::Ended(e)) if e.outcome == Outcome::GaveUp => {
                if !reopen_given_up {
                    return Ok(Retexted::Unchanged);
                }
                let fence = Record::Reopened { generation };
                match run.write(task, revision, &fence).await? {
                    Ok(at) => {
                        run.enqueue(task, payload, Generation(generation)).await?;
                        return Ok(Retexted::Reopened { revision: at });
                    }
                    Err(_) => continue,
                }
            }
            _ => {}
        }
        let old = match run.work_message(task).await? {
            None => return Ok(Retexted::Unchanged),
            Some(m) if m.generation.0 == generation || m.payload == payload => {
                return Ok(Retexted::Unchanged);
            }
            Some(m) => m,
        };
        if let Some(Record::Claimed(_)) = &record {
            return Ok(Retexted::Claimed { old: old.payload });
        }
        let fenced = match record {
            Some(Record::Reopened { generation: g }) if g == generation => Ok(revision),
            _ => {
                let fence = Record::Reopened { generation };
                run.write(task, revision, &fence).await?
            }
        };
        let Ok(at) = fenced else { continue };
        run.withdraw(task, old.sequence).await?;
        run.enqueue(task, payload, Generation(generation)).await?;
        return Ok(Retexted::Replaced {
            old: old.payload,
            revision: at,
        });
    }
    // Still moving after four reads: an attempt holds it, or is about to.
    match run.work_message(task).await? {
        Some(m) => Ok(Retexted::Claimed { old: m.payload }),
        None => Ok(Retexted::Unchanged),
    }
}
