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
use super::watchdog;
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
    /// turn), or it could not be saved (`--results`): its output files are kept whole.
    Incomplete,
    /// Held until its turn (`--keep-order`) in memory or a temporary file only: its
    /// output files stay until [`RunOutput::take_printed`] names it, then are trimmed
    /// (a master killed meanwhile loses no finished task's output).
    Held,
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
    /// The tasks whose [`Printed::Held`] output was printed since the last call (their
    /// files may now be trimmed). None by default.
    fn take_printed(&mut self) -> Vec<u32> {
        Vec::new()
    }
}

/// The bookkeeping of a local run, driven by the supervisor as its [`Observer`]; what
/// it shows goes to `O`.
pub struct RunBook<O> {
    journal: Journal,
    /// `--keep-order`: the ended tasks whose output waits for its turn ([`Printed::Held`]),
    /// with their journaled attempts and last attempt: trimmed once printed.
    trim_when_printed: BTreeMap<u32, (Vec<u32>, u32)>,
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
            trim_when_printed: BTreeMap::new(),
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

    /// After the run: what happened to the state directory or the journal since the
    /// watchdog's last look ([`watchdog::check`]) trips the storage fault (the first
    /// fault's message wins).
    pub fn check_after_run(&self) {
        match self.watch_journal() {
            Ok(w) => {
                if let Err(e) = watchdog::check(&self.state, &w) {
                    self.fault.trip(e);
                }
            }
            Err(_) if !self.state.still_in_place() => self.fault.trip(format!(
                "state directory {} was deleted or replaced while the run was going",
                self.state.root().display()
            )),
            Err(_) => {}
        }
    }

    /// Trims the output files of the tasks whose held (`--keep-order`) output was
    /// printed since the last call, as those of the others are trimmed when they end.
    /// The book calls it as tasks end; call it once more after the output's last flush.
    pub fn trim_printed(&mut self) {
        for task in self.output.take_printed() {
            if let Some((attempts, last)) = self.trim_when_printed.remove(&task)
                && self.fault.message().is_none()
                && !self.output.output_gone()
            {
                trim::trim_outputs(&self.state, task, &attempts, last);
            }
        }
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
                && printed != Printed::Incomplete
                && self.fault.message().is_none()
                && !self.output.output_gone()
            {
                if printed == Printed::Held {
                    self.trim_when_printed.insert(task, (attempts, rec.attempt));
                } else {
                    trim::trim_outputs(&self.state, task, &attempts, rec.attempt);
                }
            }
            self.trim_printed();
        }
        self.output.attempt_ended(rec, command, next);
    }

    fn checkpoint_allowed(&mut self) -> bool {
        // An ending the journal did not take must not be finished in a checkpoint either
        // (a resume would believe the checkpoint); the lines written still go to disk.
        if self.unjournaled.is_empty() {
            return true;
        }
        let _ = self.journal.sync();
        false
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
/// Symbolic links are not followed: a blank replaced by a link to another file by hand
/// never gets that file emptied.
fn empty_the_blank_under(blank: &Path, out: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata;
    if let (Ok(o), Ok(b)) = (meta(out), meta(blank))
        && (o.dev(), o.ino()) == (b.dev(), b.ino())
        && b.is_file()
        && b.len() > 0
        && let Ok(f) = std::fs::OpenOptions::new().write(true).open(blank)
    {
        let _ = f.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};

    use sturdy_core::{FailureKind, TaskId, WorkerId};
    use tokio::sync::watch;

    use super::*;
    use crate::halt::HaltAt;
    use crate::supervisor::{Finish, Stop};

    /// What the book showed.
    #[derive(Default)]
    struct Shown {
        /// `(task, attempt, whether it succeeded)` of each task that ended.
        ended: Vec<(u32, u32, bool)>,
        /// `(key, attempt, next)` of each attempt, in order.
        attempts: Vec<(u64, u32, Next)>,
        stopping: Vec<Stopping>,
        /// Tasks whose output is reported printed incomplete.
        incomplete: BTreeSet<u32>,
        /// Whether the output is gone.
        gone: bool,
    }

    impl RunOutput for Shown {
        fn task_ended(&mut self, ended: &TaskEnded<'_>) -> Printed {
            assert_eq!(ended.command, format!("cmd {}", ended.task));
            self.ended.push((
                ended.task,
                ended.record.attempt,
                ended.record.verdict == Verdict::Done,
            ));
            if self.incomplete.contains(&ended.task) {
                Printed::Incomplete
            } else {
                Printed::Whole
            }
        }
        fn output_gone(&self) -> bool {
            self.gone
        }
        fn stopping(&mut self, why: Stopping) {
            self.stopping.push(why);
        }
        fn attempt_ended(&mut self, record: &AttemptRecord, command: &str, next: Next) {
            assert_eq!(command, format!("cmd {}", record.key));
            self.attempts.push((record.key, record.attempt, next));
        }
    }

    fn record(key: u64, attempt: u32, verdict: Verdict) -> AttemptRecord {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        AttemptRecord {
            task: TaskId(0),
            key,
            attempt,
            worker: WorkerId(0),
            epoch: 1,
            started: at,
            ended: at + Duration::from_millis(250),
            finish: match verdict {
                Verdict::Done => Finish::OK,
                _ => Finish::process(Some(FailureKind::Evaluation), Some(1), None),
            },
            verdict,
        }
    }

    /// A run of `todo` tasks in a fresh state directory under `dir`, armed.
    fn new_book(
        dir: &Path,
        todo: usize,
        journal: Option<Journal>,
    ) -> (RunBook<Shown>, watch::Receiver<Stop>) {
        let state = StateDir::open(&dir.join("state"), 7, todo, "test", false).unwrap();
        let journal = journal.unwrap_or_else(|| Journal::open(&state.journal()).unwrap());
        let plan = Plan {
            todo_len: todo,
            ..Plan::default()
        };
        let mut book = RunBook::new(journal, state, &plan, 7, Shown::default());
        let (stop, rx) = StopHandle::detached();
        book.arm(stop);
        (book, rx)
    }

    fn end(book: &mut RunBook<Shown>, key: u64, attempt: u32, verdict: Verdict) {
        book.attempt_ended(&record(key, attempt, verdict), &format!("cmd {key}"));
    }

    /// Writes the output files of task `task`'s attempt `attempt` (`err` only when
    /// given).
    fn outputs(book: &RunBook<Shown>, task: u32, attempt: u32, out: &str, err: Option<&str>) {
        std::fs::write(book.state.output(task, attempt, "out"), out).unwrap();
        if let Some(err) = err {
            std::fs::write(book.state.output(task, attempt, "err"), err).unwrap();
        }
    }

    fn exists(book: &RunBook<Shown>, task: u32, attempt: u32, stream: &str) -> bool {
        book.state.output(task, attempt, stream).exists()
    }

    #[test]
    fn halt_soon_drains_once_at_the_count_of_failures() {
        let dir = tempfile::tempdir().unwrap();
        let (book, rx) = new_book(dir.path(), 5, None);
        let mut book = book.with_halt(Some(Halt {
            now: false,
            on: HaltOn::Fail,
            at: HaltAt::Count(2),
        }));
        end(&mut book, 1, 1, Verdict::GaveUp);
        end(&mut book, 2, 1, Verdict::Retry);
        end(&mut book, 3, 1, Verdict::Done);
        assert_eq!(*rx.borrow(), Stop::Run);
        assert!(book.output().stopping.is_empty());
        end(&mut book, 2, 2, Verdict::GaveUp);
        assert_eq!(*rx.borrow(), Stop::Drain);
        assert_eq!(
            book.output().stopping,
            [Stopping::Halt {
                on: HaltOn::Fail,
                count: 2,
                now: false
            }]
        );
        end(&mut book, 4, 1, Verdict::GaveUp);
        assert_eq!(book.output().stopping.len(), 1, "halts once");
        assert_eq!(book.halted(), Some(HaltOn::Fail));
        assert_eq!((book.succeeded(), book.failed()), (1, 3));
        assert_eq!(
            book.output().ended,
            [(1, 1, false), (3, 1, true), (2, 2, false), (4, 1, false)]
        );
        assert_eq!(
            book.output().attempts,
            [
                (1, 1, Next::GaveUp),
                (2, 1, Next::Retry),
                (3, 1, Next::Done),
                (2, 2, Next::GaveUp),
                (4, 1, Next::GaveUp)
            ]
        );
    }

    #[test]
    fn halt_now_aborts_at_a_percentage_of_the_plans_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let (book, rx) = new_book(dir.path(), 4, None);
        let mut book = book.with_halt(Some(Halt {
            now: true,
            on: HaltOn::Done,
            at: HaltAt::Percent(50.0),
        }));
        end(&mut book, 1, 1, Verdict::Done);
        // Neither a retry nor a stale or interrupted attempt ends a task.
        end(&mut book, 2, 1, Verdict::Retry);
        end(&mut book, 3, 1, Verdict::Stale);
        end(&mut book, 4, 1, Verdict::Interrupted);
        assert_eq!(*rx.borrow(), Stop::Run);
        end(&mut book, 2, 2, Verdict::GaveUp);
        assert_eq!(*rx.borrow(), Stop::Abort);
        assert_eq!(
            book.output().stopping,
            [Stopping::Halt {
                on: HaltOn::Done,
                count: 2,
                now: true
            }]
        );
        // A success halt counts successes only.
        let dir = tempfile::tempdir().unwrap();
        let (book, rx) = new_book(dir.path(), 4, None);
        let mut book = book.with_halt(Some(Halt {
            now: false,
            on: HaltOn::Success,
            at: HaltAt::Count(1),
        }));
        end(&mut book, 1, 1, Verdict::GaveUp);
        assert_eq!(*rx.borrow(), Stop::Run);
        end(&mut book, 2, 1, Verdict::Done);
        assert_eq!(*rx.borrow(), Stop::Drain);
        assert_eq!(book.halted(), Some(HaltOn::Success));
    }

    #[test]
    fn endings_the_journal_does_not_take_are_kept_apart_and_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        let (mut book, rx) = new_book(dir.path(), 3, Some(Journal::on_file(full)));
        outputs(&book, 1, 1, "one\n", None);
        end(&mut book, 1, 1, Verdict::Done);
        let fault = book.fault().message().unwrap();
        assert!(
            fault.starts_with("cannot write the journal ") && fault.contains("journal.tsv"),
            "{fault}"
        );
        assert_eq!(*rx.borrow(), Stop::Abort);
        end(&mut book, 2, 1, Verdict::Retry);
        end(&mut book, 3, 1, Verdict::GaveUp);
        assert_eq!(
            book.unjournaled(),
            [(1, Verdict::Done), (3, Verdict::GaveUp)]
        );
        // The tasks still count as ended in this run (and were shown), but no
        // checkpoint holds them, and their files stay.
        assert_eq!((book.succeeded(), book.failed()), (1, 1));
        let payload = RunCheckpoint::decode(&book.checkpoint_payload(&[1, 2]).unwrap()).unwrap();
        assert_eq!(payload.keys, [1, 2]);
        assert!(payload.done_before.is_empty());
        assert!(payload.gave_up_before.is_empty());
        assert!(exists(&book, 1, 1, "out"));
    }

    #[test]
    fn checkpoints_carry_earlier_and_journaled_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state"), 9, 6, "test", false).unwrap();
        let journal = Journal::open(&state.journal()).unwrap();
        let mut plan = Plan {
            todo_len: 4,
            ..Plan::default()
        };
        plan.done_before.insert(5);
        plan.gave_up_before.push((6, FailureKind::TaskTimeout));
        let mut book = RunBook::new(journal, state, &plan, 9, Shown::default());
        end(&mut book, 1, 1, Verdict::Done);
        end(&mut book, 2, 1, Verdict::GaveUp);
        end(&mut book, 3, 1, Verdict::Retry);
        let payload = RunCheckpoint::decode(&book.checkpoint_payload(&[3, 4]).unwrap()).unwrap();
        assert_eq!(
            payload,
            RunCheckpoint {
                fingerprint: 9,
                keys: vec![3, 4],
                done_before: vec![1, 5],
                gave_up_before: vec![(6, "task_timeout".into()), (2, "evaluation".into())],
            }
        );
        // Every attempt is one journal line, with what it led to.
        let text = std::fs::read_to_string(book.journal_path()).unwrap();
        let nexts: Vec<&str> = text
            .lines()
            .skip(2)
            .map(|l| l.split('\t').nth(10).unwrap())
            .collect();
        assert_eq!(nexts, ["done", "gave_up", "retry"]);
    }

    #[test]
    fn an_ended_tasks_journaled_attempts_are_trimmed_to_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (mut book, _rx) = new_book(dir.path(), 3, None);
        // Task 1: a failed attempt, then a quiet success.
        outputs(&book, 1, 1, "try\n", Some("bad\n"));
        end(&mut book, 1, 1, Verdict::Retry);
        assert!(exists(&book, 1, 1, "out") && exists(&book, 1, 1, "err"));
        outputs(&book, 1, 2, "ok\n", None);
        end(&mut book, 1, 2, Verdict::Done);
        assert!(!exists(&book, 1, 1, "out") && !exists(&book, 1, 1, "err"));
        assert!(!exists(&book, 1, 2, "out"));
        // The mark of an ended task: its last attempt's `.err`, here the emptied `.out`.
        assert_eq!(std::fs::read(book.state.output(1, 2, "err")).unwrap(), b"");
        // Task 2's output printed incomplete: every file stays.
        book.output_mut().incomplete.insert(2);
        outputs(&book, 2, 1, "partly\n", Some("e\n"));
        end(&mut book, 2, 1, Verdict::GaveUp);
        assert!(exists(&book, 2, 1, "out") && exists(&book, 2, 1, "err"));
        assert!(book.output().stopping.is_empty());
    }

    #[test]
    fn keep_output_keeps_every_attempts_files() {
        let dir = tempfile::tempdir().unwrap();
        let (book, _rx) = new_book(dir.path(), 1, None);
        let mut book = book.with_keep_output(true);
        outputs(&book, 1, 1, "try\n", Some("bad\n"));
        end(&mut book, 1, 1, Verdict::Retry);
        outputs(&book, 1, 2, "ok\n", None);
        end(&mut book, 1, 2, Verdict::Done);
        assert!(exists(&book, 1, 1, "out") && exists(&book, 1, 1, "err"));
        assert_eq!(
            std::fs::read(book.state.output(1, 2, "out")).unwrap(),
            b"ok\n"
        );
    }

    #[test]
    fn gone_output_drains_the_run_once_and_keeps_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut book, rx) = new_book(dir.path(), 3, None);
        book.output_mut().gone = true;
        outputs(&book, 1, 1, "lost\n", None);
        end(&mut book, 1, 1, Verdict::Done);
        outputs(&book, 2, 1, "lost too\n", None);
        end(&mut book, 2, 1, Verdict::Done);
        assert_eq!(*rx.borrow(), Stop::Drain);
        assert_eq!(book.output().stopping, [Stopping::OutputGone]);
        assert!(book.stopped_for_output());
        assert!(exists(&book, 1, 1, "out") && exists(&book, 2, 1, "out"));
    }

    #[test]
    fn after_the_run_a_truncated_journal_or_a_moved_directory_trips_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let (mut book, _rx) = new_book(dir.path(), 2, None);
        end(&mut book, 1, 1, Verdict::Done);
        book.check_after_run();
        assert_eq!(book.fault().message(), None);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(book.journal_path())
            .unwrap();
        f.set_len(10).unwrap();
        book.check_after_run();
        let fault = book.fault().message().unwrap();
        assert!(
            fault.contains("was truncated while the run was going"),
            "{fault}"
        );

        let dir = tempfile::tempdir().unwrap();
        let (book, _rx) = new_book(dir.path(), 2, None);
        std::fs::rename(dir.path().join("state"), dir.path().join("moved")).unwrap();
        book.check_after_run();
        let fault = book.fault().message().unwrap();
        assert!(
            fault.contains("was deleted or replaced while the run was going"),
            "{fault}"
        );
    }

    #[test]
    fn a_nonempty_blank_is_emptied_before_a_quiet_task_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let (mut book, _rx) = new_book(dir.path(), 1, None);
        let blank = book.state.blank();
        std::fs::write(&blank, b"").unwrap();
        std::fs::hard_link(&blank, book.state.output(1, 1, "out")).unwrap();
        std::fs::write(&blank, b"written through the link\n").unwrap();
        book.output_mut().gone = true; // keep the files, to look at them
        end(&mut book, 1, 1, Verdict::Done);
        assert_eq!(std::fs::read(&blank).unwrap(), b"");
        assert_eq!(std::fs::read(book.state.output(1, 1, "out")).unwrap(), b"");
    }
}
