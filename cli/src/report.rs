//! What a person sees during and after a run: the progress bar (on a terminal) or
//! plain lines (otherwise), and the final summary as text or JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sturdy_core::FailureKind;
use sturdy_farm::supervisor::{AttemptRecord, Summary, Verdict};

/// Progress display: a bar on a terminal, otherwise a line per failed attempt and a
/// line at every tenth of the run. Both show how many attempts are running and how many
/// tasks failed for good, and an estimate of the time left only when one can be made
/// (see [`eta`]).
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    /// Tasks finished (succeeded or failed for good), earlier runs included.
    done: u64,
    /// Tasks finished in this run.
    done_here: u64,
    /// Tasks failed for good in this run.
    failed: u64,
    /// When each worker's running attempt started, by worker index.
    running: HashMap<u32, Instant>,
    next_line: u64,
    started: Instant,
}

/// The time left, from the rate at which this run finished tasks: `None` (show no
/// estimate) before any task finished here, when nothing is left, when it rounds to 0 s,
/// or when an attempt has already been running longer than the estimate (the rate so
/// far says nothing about such a task).
pub(crate) fn eta(
    elapsed: Duration,
    finished_here: u64,
    remaining: u64,
    oldest_running: Option<Duration>,
) -> Option<Duration> {
    if finished_here == 0 || remaining == 0 {
        return None;
    }
    let secs = elapsed.as_secs_f64() * remaining as f64 / finished_here as f64;
    let eta = Duration::try_from_secs_f64(secs).ok()?;
    let eta = Duration::from_secs(eta.as_secs());
    if eta.is_zero() || oldest_running.is_some_and(|age| age > eta) {
        return None;
    }
    Some(eta)
}

/// What the bar shows after its `pos/len tasks`: `3 running, 1 failed for good, eta 2m
/// 5s` (the last part only with an estimate).
pub(crate) fn status(running: usize, failed: u64, eta: Option<Duration>) -> String {
    let mut s = format!("{running} running, {failed} failed for good");
    if let Some(eta) = eta {
        s.push_str(&format!(", eta {}", humantime::format_duration(eta)));
    }
    s
}

/// A plain progress line: `progress: 30/300 tasks finished, 4 running, 0 failed for
/// good (0.2s elapsed, eta 5s)`.
pub(crate) fn progress_line(
    done: u64,
    total: u64,
    running: usize,
    failed: u64,
    elapsed: Duration,
    eta: Option<Duration>,
) -> String {
    format!(
        "progress: {done}/{total} tasks finished, {running} running, {failed} failed for good ({:.1}s elapsed{})",
        elapsed.as_secs_f64(),
        eta.map_or_else(String::new, |e| format!(
            ", eta {}",
            humantime::format_duration(e)
        ))
    )
}

impl Progress {
    pub(crate) fn new(total: u64, already_done: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            // No `{eta}`: indicatif's shows `0s` while long tasks still run.
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} tasks, {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(already_done);
            bar.set_message(status(0, 0, None));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            total,
            done: already_done,
            done_here: 0,
            failed: 0,
            running: HashMap::new(),
            next_line: already_done + total.div_ceil(10).max(1),
            started: Instant::now(),
        }
    }

    /// Runs `f` (which prints the tasks' output) with the bar cleared from the
    /// terminal, so that output and bar never share a line.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    /// Writes one line on stderr, on a line of its own (after a task's unfinished
    /// stderr line, on the next).
    fn eprint_line(&mut self, text: &str) {
        let mut e = std::io::stderr().lock();
        let nl = if crate::output::take_stderr_mid_line() {
            "\n"
        } else {
            ""
        };
        let _ = writeln!(e, "{nl}{text}");
    }

    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => self.eprint_line(text),
        }
    }

    fn eta(&self) -> Option<Duration> {
        let now = Instant::now();
        let oldest = self.running.values().map(|t| now - *t).max();
        eta(
            self.started.elapsed(),
            self.done_here,
            self.total.saturating_sub(self.done),
            oldest,
        )
    }

    /// An attempt started on worker index `worker`.
    pub(crate) fn started(&mut self, worker: u32) {
        self.running.insert(worker, Instant::now());
        if let Some(b) = &self.bar {
            b.set_message(status(self.running.len(), self.failed, self.eta()));
        }
    }

    /// An attempt ended.
    pub(crate) fn attempt(&mut self, rec: &AttemptRecord, command: &str) {
        self.running.remove(&rec.worker.0);
        if matches!(rec.verdict, Verdict::Done | Verdict::GaveUp) {
            self.done += 1;
            self.done_here += 1;
        }
        if rec.verdict == Verdict::GaveUp {
            self.failed += 1;
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
            Some(b) => {
                b.set_position(self.done);
                b.set_message(status(self.running.len(), self.failed, self.eta()));
            }
            None if self.done >= self.next_line || self.done == self.total => {
                let line = progress_line(
                    self.done,
                    self.total,
                    self.running.len(),
                    self.failed,
                    self.started.elapsed(),
                    self.eta(),
                );
                self.eprint_line(&line);
                self.next_line = self.done + self.total.div_ceil(10).max(1);
            }
            None => {}
        }
    }

    /// A note for the user (signals, worker restarts).
    pub(crate) fn note(&mut self, text: &str) {
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
        let succeeded = s.succeeded + done_before;
        let unfinished = total.saturating_sub(succeeded + failed_tasks.len());
        Self {
            tasks: total,
            succeeded,
            succeeded_before: done_before,
            failed: failed_tasks.len(),
            failed_by_kind,
            failed_tasks,
            // Every task of the list that neither succeeded nor failed for good: the
            // supervisor's count covers only the tasks it was fed (its window and those
            // that left it), not the rest of a list that a stop left unread.
            unfinished,
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

    /// Counts the tasks whose ending the journal did not take (`(task, Done or GaveUp)`)
    /// as unfinished rather than succeeded or failed: not on record, a resume runs them
    /// again, and the summary agrees with the journal.
    pub(crate) fn not_on_record(&mut self, tasks: &[(u64, Verdict)]) {
        for &(task, verdict) in tasks {
            if verdict == Verdict::Done {
                self.succeeded = self.succeeded.saturating_sub(1);
            } else if let Some(i) = self.failed_tasks.iter().position(|(t, _)| *t == task) {
                let (_, kind) = self.failed_tasks.remove(i);
                if let Some(n) = self.failed_by_kind.get_mut(&kind) {
                    *n -= 1;
                    if *n == 0 {
                        self.failed_by_kind.remove(&kind);
                    }
                }
                self.failed -= 1;
            } else {
                continue;
            }
            self.unfinished += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn endings_the_journal_did_not_take_count_as_unfinished() {
        let mut s = Summary::default();
        s.tasks = 4;
        s.succeeded = 2;
        s.failed = vec![(3, FailureKind::Evaluation), (4, FailureKind::Evaluation)];
        let mut fin = FinalSummary::new(&s, 5, 1, &[], "state".into());
        assert_eq!((fin.succeeded, fin.failed, fin.unfinished), (3, 2, 0));
        fin.not_on_record(&[(2, Verdict::Done), (4, Verdict::GaveUp)]);
        assert_eq!((fin.succeeded, fin.failed, fin.unfinished), (2, 1, 2));
        assert_eq!(fin.failed_tasks, vec![(3, "evaluation".to_owned())]);
        assert_eq!(fin.failed_by_kind.get("evaluation"), Some(&1));
        fin.not_on_record(&[(3, Verdict::GaveUp)]);
        assert!(fin.failed_by_kind.is_empty());
        assert_eq!((fin.failed, fin.unfinished), (0, 3));
    }

    #[test]
    fn tasks_a_stop_left_unread_count_as_unfinished() {
        // A 10 000-task list stopped with 4 096 tasks fed: 100 succeeded and 1 failed
        // among them, 3 995 still in the window, 5 904 never read.
        let mut s = Summary::default();
        s.tasks = 4096;
        s.succeeded = 100;
        s.failed = vec![(7, FailureKind::Evaluation)];
        s.unfinished = 3995;
        let fin = FinalSummary::new(&s, 10_000, 20, &[(9, FailureKind::TaskTimeout)], "s".into());
        assert_eq!((fin.succeeded, fin.failed, fin.unfinished), (120, 2, 9878));
    }

    #[test]
    fn eta_only_from_a_rate_and_never_zero() {
        // 10 finished in 20 s, 30 left: 60 s.
        assert_eq!(eta(S(20), 10, 30, None), Some(S(60)));
        assert_eq!(eta(S(20), 10, 30, Some(S(59))), Some(S(60)));
        // An attempt running longer than the estimate: no estimate.
        assert_eq!(eta(S(20), 10, 30, Some(S(61))), None);
        // Nothing finished in this run yet (a resume), or nothing left.
        assert_eq!(eta(S(20), 0, 30, None), None);
        assert_eq!(eta(S(20), 10, 0, Some(S(100))), None);
        // Under a second: no "eta 0s".
        assert_eq!(eta(Duration::from_millis(100), 10, 5, None), None);
        // Whole seconds.
        assert_eq!(eta(Duration::from_millis(2500), 1, 1, None), Some(S(2)));
    }

    #[test]
    fn the_bar_and_the_lines_show_running_and_failed_counts() {
        assert_eq!(status(4, 1, None), "4 running, 1 failed for good");
        assert_eq!(
            status(0, 0, Some(S(125))),
            "0 running, 0 failed for good, eta 2m 5s"
        );
        assert_eq!(
            progress_line(30, 300, 4, 2, Duration::from_millis(1234), None),
            "progress: 30/300 tasks finished, 4 running, 2 failed for good (1.2s elapsed)"
        );
        assert_eq!(
            progress_line(30, 300, 4, 0, S(3), Some(S(27))),
            "progress: 30/300 tasks finished, 4 running, 0 failed for good (3.0s elapsed, eta 27s)"
        );
    }
}
