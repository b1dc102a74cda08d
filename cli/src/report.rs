//! What a person sees during and after a run: the progress bar (on a terminal) or
//! plain lines (otherwise), and the final summary as text or JSON.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sturdy_core::FailureKind;
use sturdy_tokio::supervisor::{AttemptRecord, Summary, Verdict};

/// Progress display: a bar on a terminal, otherwise a line per failed attempt and a
/// line at every tenth of the run.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    next_line: u64,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(total: u64, already_done: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks (eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(already_done);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            total,
            done: already_done,
            next_line: already_done + total.div_ceil(10).max(1),
            started: Instant::now(),
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// An attempt ended.
    pub(crate) fn attempt(&mut self, rec: &AttemptRecord, command: &str) {
        if matches!(rec.verdict, Verdict::Done | Verdict::GaveUp) {
            self.done += 1;
        }
        if let Some(kind) = rec.finish.failure {
            let how = match (rec.finish.exit, rec.finish.signal) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "no status".to_owned(),
            };
            let next = match rec.verdict {
                Verdict::Retry => "will retry",
                Verdict::GaveUp => "FAILED for good",
                Verdict::Interrupted => "interrupted",
                _ => "ignored (stale)",
            };
            self.line(&format!(
                "task {} attempt {} on worker {}: {kind} ({how}), {next}: {command}",
                rec.key,
                rec.attempt,
                rec.worker.0 + 1,
            ));
        }
        match &self.bar {
            Some(b) => b.set_position(self.done),
            None if self.done >= self.next_line || self.done == self.total => {
                eprintln!(
                    "progress: {}/{} tasks finished ({:.1}s)",
                    self.done,
                    self.total,
                    self.started.elapsed().as_secs_f64()
                );
                self.next_line = self.done + self.total.div_ceil(10).max(1);
            }
            None => {}
        }
    }

    /// A note for the user (signals, worker restarts).
    pub(crate) fn note(&self, text: &str) {
        self.line(text);
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The final summary, as printed (`--json` prints this struct).
#[derive(Debug, Serialize)]
pub(crate) struct FinalSummary {
    pub(crate) tasks: usize,
    pub(crate) succeeded: usize,
    /// Succeeded in earlier runs of this state directory (resumed).
    pub(crate) succeeded_before: usize,
    pub(crate) failed: usize,
    /// Failed-for-good tasks per kind.
    pub(crate) failed_by_kind: BTreeMap<String, usize>,
    /// Task numbers that failed for good, with their kind.
    pub(crate) failed_tasks: Vec<(u64, String)>,
    pub(crate) unfinished: usize,
    pub(crate) attempts: u64,
    pub(crate) retries: u64,
    pub(crate) reassignments: u64,
    pub(crate) worker_crashes: u64,
    pub(crate) breaker_trips: u64,
    pub(crate) stale_results: u64,
    pub(crate) interrupted: bool,
    pub(crate) wall_seconds: f64,
    /// CPU time (user + system) of the master process itself, all its threads, not its
    /// workers or their commands.
    pub(crate) master_cpu_seconds: f64,
    pub(crate) state_dir: String,
    /// Why the run stopped on a failure of its own storage (the state directory full,
    /// failing or deleted), naming the path and the OS error; `None` when it did not.
    pub(crate) storage_fault: Option<String>,
}

/// CPU time (user + system) this process used so far, in seconds.
pub(crate) fn own_cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

impl FinalSummary {
    pub(crate) fn new(
        s: &Summary,
        total: usize,
        done_before: usize,
        failed_before: &[(u64, FailureKind)],
        state_dir: String,
    ) -> Self {
        let mut failed_tasks: Vec<(u64, String)> = s
            .failed
            .iter()
            .chain(failed_before)
            .map(|(k, kind)| (*k, kind.as_str().to_owned()))
            .collect();
        failed_tasks.sort();
        let mut failed_by_kind = BTreeMap::new();
        for (_, kind) in &failed_tasks {
            *failed_by_kind.entry(kind.clone()).or_insert(0) += 1;
        }
        Self {
            tasks: total,
            succeeded: s.succeeded + done_before,
            succeeded_before: done_before,
            failed: failed_tasks.len(),
            failed_by_kind,
            failed_tasks,
            unfinished: s.unfinished,
            attempts: s.attempts,
            retries: s.retries,
            reassignments: s.reassignments,
            worker_crashes: s.worker_crashes,
            breaker_trips: s.breaker_trips,
            stale_results: s.stale_results,
            interrupted: s.interrupted,
            wall_seconds: s.wall.as_secs_f64(),
            master_cpu_seconds: own_cpu_seconds(),
            state_dir,
            storage_fault: None,
        }
    }

    /// Every task succeeded, and that is on record (no storage fault).
    pub(crate) fn all_succeeded(&self) -> bool {
        self.succeeded == self.tasks && self.storage_fault.is_none()
    }

    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let status = if self.storage_fault.is_some() {
            "stopped: the state directory is full or failing (fix it, then --resume)"
        } else if self.all_succeeded() {
            "all tasks succeeded"
        } else if self.interrupted {
            "interrupted (resume with --resume)"
        } else {
            "some tasks failed"
        };
        out.push_str(&format!("sturdy run: {status}\n"));
        out.push_str(&format!(
            "  succeeded       {} of {}{}\n",
            self.succeeded,
            self.tasks,
            if self.succeeded_before > 0 {
                format!(" ({} in earlier runs)", self.succeeded_before)
            } else {
                String::new()
            }
        ));
        let kinds: Vec<String> = self
            .failed_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        out.push_str(&format!(
            "  failed for good {}{}\n",
            self.failed,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        ));
        if !self.failed_tasks.is_empty() {
            let list: Vec<String> = self
                .failed_tasks
                .iter()
                .take(20)
                .map(|(t, _)| format!("#{t}"))
                .collect();
            let more = self.failed_tasks.len().saturating_sub(20);
            out.push_str(&format!(
                "  failed tasks    {}{}\n",
                list.join(" "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            ));
        }
        if self.unfinished > 0 {
            out.push_str(&format!("  not finished    {}\n", self.unfinished));
        }
        out.push_str(&format!("  attempts        {}\n", self.attempts));
        out.push_str(&format!("  retries         {}\n", self.retries));
        out.push_str(&format!("  reassignments   {}\n", self.reassignments));
        out.push_str(&format!("  worker crashes  {}\n", self.worker_crashes));
        out.push_str(&format!("  breaker trips   {}\n", self.breaker_trips));
        out.push_str(&format!(
            "  wall time       {:.2}s (master CPU {:.2}s)\n",
            self.wall_seconds, self.master_cpu_seconds
        ));
        out.push_str(&format!(
            "  journal         {}/journal.tsv\n",
            self.state_dir
        ));
        out
    }
}
