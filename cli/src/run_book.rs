//! The journaling observer of a local run (`sturdy run`): the bookkeeping of each
//! attempt's outcome and the printing of each task's output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::WorkerId;
use sturdy_core::manager::{BreakerState, Event};
use sturdy_farm::local::trim;
use sturdy_farm::supervisor::{AttemptRecord, Observer, StopHandle, Verdict};

use crate::farm_metrics::FarmMetrics;
use crate::journal::{Journal, Next, Record};
use crate::options::{Halt, HaltOn};
use crate::output::{Ending, TaskOutput};
use crate::report::Progress;
use crate::resume::RunCheckpoint;
use crate::state_dir::StateDir;
use crate::storage_fault::StorageFault;
use crate::task_set::TaskSet;
use crate::tasks::TaskList;

pub(crate) struct RunObserver {
    pub(crate) journal: Journal,
    /// The state directory, for the attempts' output files.
    pub(crate) state: StateDir,
    /// The tasks' output on sturdy's stdout and stderr, `--results`, `--joblog`.
    pub(crate) output: TaskOutput,
    /// The task list, for the arguments of `--tag` and `--results`.
    pub(crate) tasks: Arc<TaskList>,
    /// For checkpoints: the tasks that succeeded (in earlier runs, and in this one with
    /// their outcome journaled), and those that failed for good, with their kind.
    pub(crate) done: TaskSet,
    pub(crate) gave_up: Vec<(u32, String)>,
    /// `--halt`, the run's task count, and the stop handle once the run goes.
    pub(crate) halt: Option<Halt>,
    pub(crate) total: u64,
    pub(crate) stop: Option<StopHandle>,
    /// Tasks of this run that succeeded and failed for good.
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    /// Set when `--halt` stopped the run: on what.
    pub(crate) halted: Option<HaltOn>,
    /// `--keep-output`: keep every attempt's output files.
    pub(crate) keep_output: bool,
    /// The attempts of each task that this run journaled, until the task ends.
    pub(crate) journaled: std::collections::HashMap<u32, Vec<u32>>,
    /// Where the journal is, for messages.
    pub(crate) journal_path: PathBuf,
    /// Tripped when an outcome cannot be journaled: the run stops at once.
    pub(crate) fault: StorageFault,
    /// Tasks whose ending (success, or failure for good) the journal did not take:
    /// not on record, so the summary does not count them finished (a resume runs them).
    pub(crate) unjournaled: Vec<(u64, Verdict)>,
    pub(crate) progress: Progress,
    /// `--breaker-open`, for the note that a worker's breaker opened.
    pub(crate) breaker_open: Duration,
    /// `--metrics-listen`: the run's counters.
    pub(crate) metrics: Option<FarmMetrics>,
    /// Set once stdout was found closed (the run drains).
    pub(crate) stdout_gone: bool,
    /// The task list's fingerprint, for checkpoints.
    pub(crate) fingerprint: u64,
}

impl Observer<String> for RunObserver {
    fn attempt_started(
        &mut self,
        worker: WorkerId,
        _order: &sturdy_farm::supervisor::Order<'_, String>,
    ) {
        self.progress.started(worker.0);
        if let Some(m) = &self.metrics {
            m.started();
        }
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
        if let Some(m) = &self.metrics {
            m.ended(next.as_str());
        }
        if matches!(rec.verdict, Verdict::Done | Verdict::GaveUp) {
            self.task_ended(rec, task, command);
            let attempts = self.journaled.remove(&task).unwrap_or_default();
            // Only what the journal holds may go (not after a journal write failed),
            // and nothing once stdout is gone (the output printed nowhere stays).
            // Nor the output that --keep-order could not hold (printed incomplete).
            let unheld = self.output.unheld().last().is_some_and(|&(t, _)| t == task);
            if !self.keep_output
                && !unheld
                && self.fault.message().is_none()
                && !crate::output::stdout_broken()
            {
                trim::trim_outputs(&self.state, task, &attempts, rec.attempt);
            }
        }
        self.progress.attempt(rec, command);
    }

    fn event(&mut self, event: &Event) {
        // Without this note a run whose every breaker is open sits silent for
        // --breaker-open.
        if let Event::Breaker {
            worker,
            to: BreakerState::Open { .. },
            ..
        } = event
        {
            if let Some(m) = &self.metrics {
                m.breaker_opened();
            }
            self.progress.note(&format!(
                "worker {}: circuit breaker open; no new task for it for {:?}",
                worker.0 + 1,
                self.breaker_open
            ));
        }
    }

    fn checkpointed(&mut self, result: Result<u64, &std::io::Error>) {
        // The journal goes to disk with each checkpoint.
        if let Err(e) = self.journal.sync() {
            self.fault.trip(format!(
                "cannot sync the journal {}: {e}",
                self.journal_path.display()
            ));
        }
        if let Err(e) = result {
            self.progress
                .note(&format!("sturdy: checkpoint not written: {e}"));
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
        if let Some(m) = &self.metrics {
            m.worker_restarted();
        }
        self.progress.note(&format!(
            "worker {} died; restarting it in {} ms",
            worker.0 + 1,
            delay.as_millis()
        ));
    }
}

/// A quiet attempt's `out` is a hard link to the state directory's `blank`, which is
/// empty by definition: bytes written through a link (not by a command: its output goes
/// through the worker, which gives `out` a file of its own first; `echo x >
/// STATE/blank.out` by hand) would show as the output of every quiet task that ends
/// after them. When `out` is the blank and it is not empty, the blank is emptied first.
fn empty_the_blank_under(blank: &std::path::Path, out: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(o), Ok(b)) = (std::fs::metadata(out), std::fs::metadata(blank))
        && (o.dev(), o.ino()) == (b.dev(), b.ino())
        && b.len() > 0
        && let Ok(f) = std::fs::OpenOptions::new().write(true).open(blank)
    {
        let _ = f.set_len(0);
    }
}

impl RunObserver {
    /// A task ended (succeeded, or failed for good) with attempt `rec`: print its
    /// output, and stop the run when `--halt` says so.
    fn task_ended(&mut self, rec: &AttemptRecord, task: u32, command: &str) {
        let ending = Ending {
            task,
            started: rec.started,
            ended: rec.ended,
            exit: rec.finish.exit,
            signal: rec.finish.signal,
        };
        let args = self.tasks.args(task);
        let args = args.as_slice();
        let (out, err) = (
            self.state.output(task, rec.attempt, "out"),
            self.state.output(task, rec.attempt, "err"),
        );
        empty_the_blank_under(&self.state.blank(), &out);
        let problem = self
            .progress
            .suspend(|| self.output.ended(&ending, command, args, &out, &err));
        if let Some(p) = problem {
            self.progress.note(&format!("sturdy: warning: {p}"));
        }
        if rec.verdict == Verdict::Done {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        if let Some(m) = &self.metrics {
            m.task_ended(rec.verdict == Verdict::Done);
        }
        if crate::output::stdout_broken() && !self.stdout_gone {
            // Tasks' output has nowhere to go: start nothing more (a resume runs the
            // rest), keep every output file, and say so.
            self.stdout_gone = true;
            if let Some(stop) = &self.stop {
                stop.drain();
            }
            if let Some(m) = &self.metrics {
                m.stopped_dispatching(false);
            }
            self.progress.note(&format!(
                "sturdy: stdout is closed: starting no more tasks; the output of finished tasks stays in {}",
                self.state.root().join("out").display()
            ));
        }
        let Some(halt) = self.halt else { return };
        if self.halted.is_some() {
            return;
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
            if let Some(m) = &self.metrics {
                m.stopped_dispatching(false);
            }
            let what = match halt.on {
                HaltOn::Fail => "failed",
                HaltOn::Success => "succeeded",
                HaltOn::Done => "finished",
            };
            if halt.now {
                stop.abort();
                self.progress.note(&format!(
                    "sturdy: --halt: {count} task(s) {what}; killing the running ones and starting no more"
                ));
            } else {
                stop.drain();
                self.progress.note(&format!(
                    "sturdy: --halt: {count} task(s) {what}; starting no more, waiting for the running ones"
                ));
            }
        }
    }
}
