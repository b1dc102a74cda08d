//! The bookkeeping of a local run (`sturdy run`): the [`Observer`] the supervisor drives.
//!
//! A [`RunBook`] journals each attempt's outcome (a journal that cannot take a line
//! trips the run's [`StorageFault`], and an ending it did not take is kept apart as
//! [`RunBook::unjournaled`]: not on record, so a resume runs that task again), keeps the
//! tasks that succeeded and failed for good for every checkpoint's payload, counts the
//! tasks that end for `--halt` and stops the run when it says so, and bounds what the
//! state directory keeps of a task that ended ([`trim::trim_outputs`], unless
//! `--keep-output`, or its output was not printed whole).
//!
//! What the run shows (each task's output, progress lines, metrics) is its caller's: the
//! book hands it to a [`RunOutput`]. The hooks of one attempt come in this order:
//! [`RunOutput::task_ended`] (only for the attempt that ended its task), then
//! [`RunOutput::output_gone`], [`RunOutput::stopping`] when the run stops dispatching
//! because of it, and last [`RunOutput::attempt_ended`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::WorkerId;
use sturdy_core::manager::Event;

use super::journal::{Journal, JournalWatch, Next, Record};
use super::resume::{Plan, RunCheckpoint};
use super::state_dir::StateDir;
use super::storage_fault::StorageFault;
use super::task_set::TaskSet;
use super::trim;
use crate::halt::{Halt, HaltOn};
use crate::supervisor::{AttemptRecord, Observer, Order, StopHandle, Verdict};

/// A task that ended (succeeded, or failed for good) with its last attempt, whose
/// output is ready to print.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct TaskEnded<'a> {
    /// The task number (from 1).
    pub task: u32,
    /// Its last attempt (`verdict` [`Verdict::Done`] or [`Verdict::GaveUp`]).
    pub record: &'a AttemptRecord,
    /// The command it ran.
    pub command: &'a str,
    /// That attempt's stdout file in the state directory (absent when it printed
    /// nothing and the worker made none).
    pub out: &'a Path,
    /// That attempt's stderr file (absent when it printed nothing to stderr).
    pub err: &'a Path,
}

/// Whether a task's output was printed whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Printed {
    /// Printed (or saved) whole, or nothing reads it: its output files may be trimmed.
    Whole,
    /// What was printed of it is incomplete (`--keep-order` could not hold it until its
    /// turn): its output files are kept whole.
    Incomplete,
}

/// Why the run stops dispatching (the book has already told the supervisor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopping {
    /// `--halt` reached: `count` tasks of `on`'s kind ended; `now` kills the running
    /// attempts, otherwise they finish.
    Halt {
        /// What `--halt` counts.
        on: HaltOn,
        /// How many of them ended.
        count: u64,
        /// `--halt now,...`: the running attempts are killed.
        now: bool,
    },
    /// The tasks' output has nowhere to go ([`RunOutput::output_gone`]): the running
    /// attempts finish, and every output file is kept.
    OutputGone,
}

/// What a local run shows of itself: the book's printing side (the CLI prints each
/// task's output, progress lines and notes, and keeps its metrics).
pub trait RunOutput {
    /// A task ended: print (or save) its output. Returns whether it was printed whole.
    fn task_ended(&mut self, ended: &TaskEnded<'_>) -> Printed;
    /// Whether the tasks' output has nowhere to go (a closed stdout): the run then
    /// stops dispatching and keeps every output file, so that nothing printed nowhere
    /// is lost. Asked after each task's output was printed, and before its files are
    /// trimmed.
    fn output_gone(&self) -> bool {
        false
    }
    /// The run stops dispatching (once per cause).
    fn stopping(&mut self, why: Stopping) {
        let _ = why;
    }
    /// An attempt was dispatched to `worker`.
    fn attempt_started(&mut self, worker: WorkerId) {
        let _ = worker;
    }
    /// An attempt ended and led to `next` (journaled as that, or the run stops on a
    /// storage fault); called last of the hooks of its attempt.
    fn attempt_ended(&mut self, record: &AttemptRecord, command: &str, next: Next) {
        let _ = (record, command, next);
    }
    /// A ledger event (a breaker opened, ...), in order.
    fn event(&mut self, event: &Event) {
        let _ = event;
    }
    /// A checkpoint could not be written (the run goes on; the next one may be).
    fn checkpoint_failed(&mut self, error: &io::Error) {
        let _ = error;
    }
    /// A worker died and is restarted after `delay`.
    fn worker_restarting(&mut self, worker: WorkerId, delay: Duration) {
        let _ = (worker, delay);
    }
}

/// The bookkeeping of a local run, driven by the supervisor as its [`Observer`]; what
/// it shows goes to `O`.
pub struct RunBook<O> {
    journal: Journal,
    /// Where the journal is, for messages.
    journal_path: PathBuf,
    /// The state directory, for the attempts' output files.
    state: StateDir,
    /// What the run shows.
    output: O,
    /// For checkpoints: the tasks that succeeded (in earlier runs, and in this one with
    /// their outcome journaled), and those that failed for good, with their kind.
    done: TaskSet,
    gave_up: Vec<(u32, String)>,
    /// The task list's fingerprint, for checkpoints.
    fingerprint: u64,
    /// `--halt`, the run's task count, and the stop handle once the run goes.
    halt: Option<Halt>,
    total: u64,
    stop: Option<StopHandle>,
    /// Tasks of this run that succeeded and failed for good.
    succeeded: u64,
    failed: u64,
    /// Set when `--halt` stopped the run: on what.
    halted: Option<HaltOn>,
    /// `--keep-output`: keep every attempt's output files.
    keep_output: bool,
    /// The attempts of each task that this run journaled, until the task ends.
    journaled: BTreeMap<u32, Vec<u32>>,
    /// Tripped when an outcome cannot be journaled: the run stops at once.
    fault: StorageFault,
    /// Tasks whose ending (success, or failure for good) the journal did not take:
    /// not on record, so the summary does not count them finished (a resume runs them).
    unjournaled: Vec<(u64, Verdict)>,
    /// Set once the output was found gone (the run drains).
    output_gone: bool,
}

impl<O: RunOutput> RunBook<O> {
    /// The book of a run that journals into `journal` (at `state.journal()`), of the
    /// task list with `fingerprint`, that has `plan` to do, showing itself on `output`.
    /// No `--halt`, and output files trimmed as tasks end, until set otherwise.
    pub fn new(
        journal: Journal,
        state: StateDir,
        plan: &Plan,
        fingerprint: u64,
        output: O,
    ) -> Self {
        Self {
            journal,
            journal_path: state.journal(),
            state,
            output,
            done: plan.done_before.clone(),
            gave_up: plan
                .gave_up_before
                .iter()
                .map(|&(t, kind)| {
                    (
                        u32::try_from(t).unwrap_or(u32::MAX),
                        kind.as_str().to_owned(),
                    )
                })
                .collect(),
            fingerprint,
            halt: None,
            total: plan.todo_len as u64,
            stop: None,
            succeeded: 0,
            failed: 0,
            halted: None,
            keep_output: false,
            journaled: BTreeMap::new(),
            fault: StorageFault::default(),
            unjournaled: Vec::new(),
            output_gone: false,
        }
    }

    /// `--halt`: stop the run early when it says so (counted over the plan's tasks).
    #[must_use]
    pub fn with_halt(mut self, halt: Option<Halt>) -> Self {
        self.halt = halt;
        self
    }

    /// `--keep-output`: keep every attempt's output files (none is trimmed).
    #[must_use]
    pub fn with_keep_output(mut self, keep: bool) -> Self {
        self.keep_output = keep;
        self
    }

    /// Arms the book with the supervisor's stop handle: the storage fault aborts the
    /// run, and `--halt` and a gone output stop it. Nothing stops a run before.
    pub fn arm(&mut self, stop: StopHandle) {
        self.fault.arm(stop.clone());
        self.stop = Some(stop);
    }

    /// The run's storage-fault latch (shared with the process pool and the watchdog).
    pub fn fault(&self) -> &StorageFault {
        &self.fault
    }

    /// Where the journal is.
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// A [`JournalWatch`] of the journal.
    ///
    /// # Errors
    /// The journal's file cannot be duplicated.
    pub fn watch_journal(&self) -> io::Result<JournalWatch> {
        self.journal.watch(&self.journal_path)
    }

    /// What the run shows.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// What the run shows, to change.
    pub fn output_mut(&mut self) -> &mut O {
        &mut self.output
    }

    /// Tasks of this run that succeeded (their outcome journaled or not).
    pub fn succeeded(&self) -> u64 {
        self.succeeded
    }

    /// Tasks of this run that failed for good (their outcome journaled or not).
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// What `--halt` stopped the run on, if it did.
    pub fn halted(&self) -> Option<HaltOn> {
        self.halted
    }

    /// Whether the run stopped dispatching because its output was gone.
    pub fn stopped_for_output(&self) -> bool {
        self.output_gone
    }

    /// The tasks whose ending the journal did not take: `(task, Done or GaveUp)`, in
    /// the order they ended. Not on record: a resume runs them again.
    pub fn unjournaled(&self) -> &[(u64, Verdict)] {
        &self.unjournaled
    }

    /// A task ended (succeeded, or failed for good) with attempt `rec`: show its
    /// output, and stop the run when its output is gone or `--halt` says so.
    fn task_ended(&mut self, rec: &AttemptRecord, task: u32, command: &str) -> Printed {
        let (out, err) = (
            self.state.output(task, rec.attempt, "out"),
            self.state.output(task, rec.attempt, "err"),
        );
        empty_the_blank_under(&self.state.blank(), &out);
        let printed = self.output.task_ended(&TaskEnded {
            task,
            record: rec,
            command,
            out: &out,
            err: &err,
        });
        if rec.verdict == Verdict::Done {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        if self.output.output_gone() && !self.output_gone {
            // Tasks' output has nowhere to go: start nothing more (a resume runs the
            // rest), keep every output file, and say so.
            self.output_gone = true;
            if let Some(stop) = &self.stop {
                stop.drain();
            }
            self.output.stopping(Stopping::OutputGone);
        }
        let Some(halt) = self.halt else {
            return printed;
        };
        if self.halted.is_some() {
            return printed;
        }
        let count = match halt.on {
            HaltOn::Fail => self.failed,
            HaltOn::Success => self.succeeded,
            HaltOn::Done => self.failed + self.succeeded,
        };
        if halt.reached(count, self.total)
            && let Some(stop) = &self.stop
        {
            self.halted = Some(halt.on);
            if halt.now {
                stop.abort();
            } else {
                stop.drain();
            }
            self.output.stopping(Stopping::Halt {
                on: halt.on,
                count,
                now: halt.now,
            });
        }
        printed
    }
}

impl<O: RunOutput> Observer<String> for RunBook<O> {
    fn attempt_started(&mut self, worker: WorkerId, _order: &Order<'_, String>) {
        self.output.attempt_started(worker);
    }

    fn attempt_ended(&mut self, rec: &AttemptRecord, command: &String) {
        let task = u32::try_from(rec.key).unwrap_or(u32::MAX);
        let next = match rec.verdict {
            Verdict::Done => Next::Done,
            Verdict::GaveUp => Next::GaveUp,
            Verdict::Stale => Next::Stale,
            Verdict::Interrupted => Next::Interrupted,
            _ => Next::Retry,
        };
        let line = Record {
            task,
            attempt: rec.attempt,
            worker: rec.worker.0 + 1,
            epoch: u64::from(rec.epoch),
            start: rec.started,
            end: rec.ended,
            exit: rec.finish.exit,
            signal: rec.finish.signal,
            kind: rec.finish.failure.map(FailureKind::as_str),
            next,
            command,
        };
        if let Err(e) = self.journal.append(&line) {
            // The outcome is not durable: nothing more may be dispatched.
            self.fault.trip(format!(
                "cannot write the journal {}: {e}",
                self.journal_path.display()
            ));
            if matches!(rec.verdict, Verdict::Done | Verdict::GaveUp) {
                self.unjournaled.push((rec.key, rec.verdict));
            }
        } else if rec.verdict == Verdict::Done {
            self.done.insert(task);
        } else if rec.verdict == Verdict::GaveUp {
            let kind = rec.finish.failure.unwrap_or(FailureKind::Unknown);
            self.gave_up.push((task, kind.as_str().to_owned()));
        }
        if !matches!(rec.verdict, Verdict::Stale | Verdict::Interrupted) {
            self.journaled.entry(task).or_default().push(rec.attempt);
        }
        if matches!(rec.verdict, Verdict::Done | Verdict::GaveUp) {
            let printed = self.task_ended(rec, task, command);
            let attempts = self.journaled.remove(&task).unwrap_or_default();
            // Only what the journal holds may go (not after a journal write failed),
            // and nothing once the output is gone (the output printed nowhere stays).
            // Nor the output that was printed incomplete.
            if !self.keep_output
                && printed == Printed::Whole
                && self.fault.message().is_none()
                && !self.output.output_gone()
            {
                trim::trim_outputs(&self.state, task, &attempts, rec.attempt);
            }
        }
        self.output.attempt_ended(rec, command, next);
    }

    fn event(&mut self, event: &Event) {
        self.output.event(event);
    }

    fn checkpointed(&mut self, result: Result<u64, &io::Error>) {
        // The journal goes to disk with each checkpoint.
        if let Err(e) = self.journal.sync() {
            self.fault.trip(format!(
                "cannot sync the journal {}: {e}",
                self.journal_path.display()
            ));
        }
        if let Err(e) = result {
            self.output.checkpoint_failed(e);
        }
    }

    fn checkpoint_payload(&mut self, keys: &[u64]) -> Option<Vec<u8>> {
        // Every checkpoint covers the whole list: the ledger's slots (which change as
        // the window moves) and every task that finished, in this run or before.
        let payload = RunCheckpoint {
            fingerprint: self.fingerprint,
            keys: keys
                .iter()
                .map(|&k| u32::try_from(k).unwrap_or(u32::MAX))
                .collect(),
            done_before: self.done.iter().collect(),
            gave_up_before: self.gave_up.clone(),
        };
        postcard::to_allocvec(&payload).ok()
    }

    fn worker_restarting(&mut self, worker: WorkerId, delay: Duration) {
        self.output.worker_restarting(worker, delay);
    }
}

/// A quiet attempt's `out` is a hard link to the state directory's `blank`, which is
/// empty by definition: bytes written through a link (not by a command: its output goes
/// through the worker, which gives `out` a file of its own first; `echo x >
/// STATE/blank.out` by hand) would show as the output of every quiet task that ends
/// after them. When `out` is the blank and it is not empty, the blank is emptied first.
fn empty_the_blank_under(blank: &Path, out: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(o), Ok(b)) = (std::fs::metadata(out), std::fs::metadata(blank))
        && (o.dev(), o.ino()) == (b.dev(), b.ino())
        && b.len() > 0
        && let Ok(f) = std::fs::OpenOptions::new().write(true).open(blank)
    {
        let _ = f.set_len(0);
    }
}
