//! `sturdy run`: the master. Validates the input, opens the state directory, works out
//! what a resumed run still has to do, and drives a [`Supervisor`] of child-process
//! workers, checkpointing. The run's bookkeeping (every attempt journaled, `--halt`, the
//! output files trimmed) is the library's [`RunBook`]; this module maps the options onto
//! it and prints what it hands over ([`RunPrinter`]).
//!
//! Signals: the first SIGINT or SIGTERM stops dispatch and lets running attempts finish;
//! a second kills them (they are journaled `interrupted` and run again on resume). In
//! both cases the journal is synced, a checkpoint written, and `--resume` continues.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use sturdy_core::WorkerId;
use sturdy_core::backoff::Jitter;
use sturdy_core::manager::{BreakerState, Event, LedgerConfig};
use sturdy_core::phi::PhiConfig;
use sturdy_farm::supervisor::{
    AttemptRecord, Observer, Stop, Summary, Supervisor, SupervisorConfig, Verdict,
};
use sturdy_tokio::checkpoint_store::{CheckpointStore, StoreConfig};

use crate::error::CliError;
use crate::farm_metrics::FarmMetrics;
use crate::health_gate::{self, Limits};
use crate::journal::{Journal, Next};
use crate::options::{Detector, JitterArg, RunArgs, Settings};
use crate::options::{HaltOn, InputSpec};
use crate::output::{Ending, Tag, TaskOutput};
use crate::process_pool::ProcessPool;
use crate::process_pool::{LineBuffer, PoolExtras, TagOf};
use crate::report::{FinalSummary, Progress};
use crate::resume::{EXPERIMENT, Plan, plan, write_amended};
use crate::state_dir::{self, StateDir};
use crate::tasks::TaskList;
use crate::template::Template;
use std::sync::Arc;
use sturdy_farm::local::LedgerSettings;
use sturdy_farm::local::resume::WINDOW_TASKS;
use sturdy_farm::local::run_book::{Printed, RunBook, RunOutput, Stopping, TaskEnded};
use sturdy_farm::local::todo_feed::TodoFeed;
use sturdy_farm::local::{signals, watchdog};

/// Workers a run can have (the ledger's `WORKERS`).
pub(crate) const MAX_WORKERS: usize = 256;

fn ledger_config(s: &Settings) -> Result<LedgerConfig, CliError> {
    let jitter = match s.jitter {
        JitterArg::None => Jitter::None,
        JitterArg::Full => Jitter::Full,
        JitterArg::Equal => Jitter::Equal,
        JitterArg::Decorrelated => Jitter::Decorrelated,
    };
    LedgerSettings {
        max_attempts: s.max_attempts,
        backoff_base: s.backoff_base,
        backoff_cap: s.backoff_cap,
        jitter,
        detector: s.detector,
        heartbeat_interval: s.heartbeat_interval,
        breaker_failures: s.breaker_failures,
        breaker_open: s.breaker_open,
        max_worker_crashes: s.max_worker_crashes,
        seed: std::process::id().into(),
    }
    .ledger_config()
    .map_err(|e| CliError::input(format!("invalid setting: {e}")))
}

/// What `sturdy run` shows of a local run ([`RunBook`]'s [`RunOutput`]): each task's
/// output (stdout and stderr, `--tag`, `-k`, `--results`, `--joblog`), the progress bar
/// or lines and notes on stderr, and the `--metrics-listen` counters.
struct RunPrinter {
    /// The tasks' output on sturdy's stdout and stderr, `--results`, `--joblog`.
    output: TaskOutput,
    /// The task list, for the arguments of `--tag` and `--results`.
    tasks: Arc<TaskList>,
    progress: Progress,
    /// `--breaker-open`, for the note that a worker's breaker opened.
    breaker_open: Duration,
    /// `--metrics-listen`: the run's counters.
    metrics: Option<FarmMetrics>,
    /// The state directory's `out/`, for the note that stdout is closed.
    out_dir: PathBuf,
}

impl RunOutput for RunPrinter {
    fn task_ended(&mut self, ended: &TaskEnded<'_>) -> Printed {
        let rec = ended.record;
        let ending = Ending {
            task: ended.task,
            started: rec.started,
            ended: rec.ended,
            exit: rec.finish.exit,
            signal: rec.finish.signal,
        };
        let args = self.tasks.args(ended.task);
        let args = args.as_slice();
        let problem = self.progress.suspend(|| {
            self.output
                .ended(&ending, ended.command, args, ended.out, ended.err)
        });
        if let Some(p) = problem {
            self.progress.note(&format!("sturdy: warning: {p}"));
        }
        if let Some(m) = &self.metrics {
            m.task_ended(rec.verdict == Verdict::Done);
        }
        // --keep-order could not hold it until its turn: printed incomplete. --results
        // could not save it: no copy of it elsewhere. Either way its files stay whole.
        let last_is = |list: &[(u32, String)]| list.last().is_some_and(|&(t, _)| t == ended.task);
        if last_is(self.output.unheld()) || last_is(self.output.unsaved()) {
            Printed::Incomplete
        } else if self.output.holds(ended.task) {
            // Held in memory or $TMPDIR only until its turn: its files stay until then.
            Printed::Held
        } else {
            Printed::Whole
        }
    }

    fn take_printed(&mut self) -> Vec<u32> {
        self.output.take_printed()
    }

    fn output_gone(&self) -> bool {
        crate::output::stdout_broken()
    }

    fn stopping(&mut self, why: Stopping) {
        if let Some(m) = &self.metrics {
            m.stopped_dispatching(false);
        }
        let note = match why {
            Stopping::OutputGone => format!(
                "sturdy: stdout is closed: starting no more tasks; the output of finished tasks stays in {}",
                self.out_dir.display()
            ),
            Stopping::Halt { on, count, now } => {
                let what = match on {
                    HaltOn::Fail => "failed",
                    HaltOn::Success => "succeeded",
                    HaltOn::Done => "finished",
                };
                if now {
                    format!(
                        "sturdy: --halt: {count} task(s) {what}; killing the running ones and starting no more"
                    )
                } else {
                    format!(
                        "sturdy: --halt: {count} task(s) {what}; starting no more, waiting for the running ones"
                    )
                }
            }
            _ => return,
        };
        self.progress.note(&note);
    }

    fn attempt_started(&mut self, worker: WorkerId) {
        self.progress.started(worker.0);
        if let Some(m) = &self.metrics {
            m.started();
        }
    }

    fn attempt_ended(&mut self, rec: &AttemptRecord, command: &str, next: Next) {
        if let Some(m) = &self.metrics {
            m.ended(next.as_str());
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

    fn checkpoint_failed(&mut self, error: &std::io::Error) {
        self.progress
            .note(&format!("sturdy: checkpoint not written: {error}"));
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

/// `--load` / `--memfree`: before the first dispatch, waits until the host is within
/// these limits ([`health_gate::wait_for_limits`]), saying so once.
fn wait_for_limits(settings: &Settings) {
    let limits = Limits {
        max_load: settings.load,
        min_available: settings.memfree,
    };
    health_gate::wait_for_limits(sturdy_probe::Probe::new(), limits, || {
        eprintln!(
            "sturdy: waiting: the host is over --load {} or under --memfree {} bytes; nothing starts until it is within them",
            settings.load.map_or("-".into(), |l| l.to_string()),
            settings.memfree.map_or("-".into(), |m| m.to_string()),
        );
    });
}

async fn drive<const T: usize>(
    settings: &Settings,
    tasks: &Arc<TaskList>,
    plan: &Arc<Plan>,
    order: Option<Vec<u32>>,
    state: &StateDir,
    store: CheckpointStore,
    observer: &mut RunBook<RunPrinter>,
) -> Result<Summary, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::runtime(format!("cannot find the sturdy executable: {e}")))?;
    let pool = ProcessPool::new(
        exe,
        settings.slots.clone(),
        settings.heartbeat_interval,
        state.clone(),
        settings.kill_grace,
        observer.fault().clone(),
    )
    .with_extras(PoolExtras {
        delay: settings.delay,
        nice: settings.nice,
        timeout_percent: settings.timeout_percent,
    })
    // --results takes the tasks' output off stdout and stderr (as GNU parallel), also
    // from --line-buffer.
    .with_line_buffer(
        (settings.line_buffer && settings.results.is_none()).then(|| LineBuffer {
            tags: tag_of(settings, tasks),
            print: crate::output::print_lines,
        }),
    );
    let mut config =
        SupervisorConfig::new(ledger_config(settings)?).with_task_timeout(settings.task_timeout);
    if let Detector::Phi(threshold) = settings.detector {
        let phi = PhiConfig::new(
            threshold,
            Duration::from_millis(100),
            settings.heartbeat_interval,
            settings.heartbeat_interval,
        )
        .map_err(|e| CliError::input(format!("invalid value for '--phi-threshold': {e}")))?;
        config = config.with_phi(phi);
    }
    let mut sup =
        Supervisor::<ProcessPool, MAX_WORKERS, T>::new(config, pool, settings.slots.len())
            .map_err(|e| CliError::input(format!("cannot set up the workers: {e}")))?;
    // Every checkpoint covers the whole list: the observer gives each one the ledger's
    // slots and the outcomes of this run and earlier ones.
    sup.enable_checkpoints(
        store,
        EXPERIMENT,
        settings.checkpoint_interval,
        observer.checkpoint_payload(&[]).unwrap_or_default(),
    )
    .map_err(|e| {
        CliError::input(format!(
            "state directory {} is not writable: {e}",
            state.root().display()
        ))
    })?;
    // The tasks stream through the ledger's window. A resumed task keeps its own
    // failures and crashes: --max-attempts and --max-worker-crashes hold across resumes.
    let window = settings.window.map_or(T, |w| (w as usize).min(T));
    sup.set_feed(
        TodoFeed::new(Arc::clone(tasks), Arc::clone(plan), order),
        window,
    );
    let gated = settings.health_gate || settings.load.is_some() || settings.memfree.is_some();
    let _monitor = gated.then(|| {
        let (monitor, health) = health_gate::spawn(
            sturdy_probe::Probe::new(),
            settings.slots.clone(),
            Limits {
                max_load: settings.load,
                min_available: settings.memfree,
            },
            settings.health_gate,
        );
        sup.set_health(health);
        monitor
    });
    observer.arm(sup.stop_handle());
    // The state directory deleted or replaced under the run, or the journal truncated
    // or replaced: noticed within a heartbeat interval, it stops the run (the outputs
    // and the journal have nowhere to go, or the record lost lines).
    let journal_watch = observer.watch_journal().map_err(|e| {
        CliError::runtime(format!(
            "cannot watch the journal {}: {e}",
            observer.journal_path().display()
        ))
    })?;
    if let (Some(addr), Some(m)) = (settings.metrics_listen, &observer.output().metrics) {
        let bound = m.serve(addr).await?;
        eprintln!(
            "sturdy: serving the run's metrics on http://{bound}/metrics, /livez and /readyz"
        );
    }
    let metrics = observer.output().metrics.clone();
    let watchdog = watchdog::spawn(
        state.clone(),
        journal_watch,
        observer.fault().clone(),
        settings.heartbeat_interval,
        move |fault| {
            if let Some(m) = &metrics {
                m.tick();
                if fault.message().is_some() {
                    m.stopped_dispatching(true);
                }
            }
        },
    );
    let signal_metrics = observer.output().metrics.clone();
    let signals = signals::spawn(sup.stop_handle(), move |level| {
        if let Some(m) = &signal_metrics {
            m.stopped_dispatching(false);
        }
        match level {
            Stop::Drain => eprintln!(
                "sturdy: stopping: no new tasks; waiting for running ones (signal again to kill them)"
            ),
            _ => eprintln!("sturdy: killing running tasks"),
        }
    });
    let summary = sup.run(observer).await;
    signals.abort();
    watchdog.abort();
    if let Some(m) = &observer.output().metrics {
        m.stopped_dispatching(observer.fault().message().is_some());
    }
    // What happened since the watchdog's last look.
    observer.check_after_run();
    Ok(summary)
}

/// Runs `sturdy run`; returns the exit code.
///
/// # Errors
/// Bad input (exit code 2) or a failure of the run's own machinery (exit code 1).
pub(crate) fn run(args: RunArgs) -> Result<i32, CliError> {
    let settings = Settings::resolve(args)?;
    if settings.slots.len() > MAX_WORKERS {
        return Err(CliError::input(format!(
            "invalid value {} for '--workers': at most {MAX_WORKERS}",
            settings.slots.len()
        )));
    }
    let (tasks, source) = match &settings.input {
        InputSpec::List(path) => {
            if settings.colsep.is_some() || settings.quote {
                return Err(CliError::input(
                    "'--colsep' and '--quote' are for argument mode (COMMAND ::: ARGS); a TASKS file holds whole commands",
                ));
            }
            (TaskList::load(path)?, path.display().to_string())
        }
        InputSpec::Arguments { words, sources } => {
            let template = Template::parse(words, settings.quote);
            let tasks = TaskList::from_arguments(
                &template,
                sources,
                settings.colsep.as_ref(),
                crate::tasks::MAX_TASKS,
            )?;
            (tasks, format!("{} ::: ...", words.join(" ")))
        }
    };
    if tasks.len() == 0 {
        return Ok(run_nothing(&settings));
    }
    if let Some((url, name)) = settings.engine.clone()
        && !settings.dry_run
    {
        return crate::engine_cmd::coordinate(&settings, tasks, &url, &name);
    }
    if settings.dry_run {
        let mut out = std::io::stdout().lock();
        if settings.shuf {
            let mut order: Vec<u32> = tasks.numbers().collect();
            shuffle(&mut order, seed());
            for n in order {
                let _ = writeln!(out, "{}", tasks.command(n).unwrap_or_default());
            }
        } else {
            for n in tasks.numbers() {
                let _ = writeln!(out, "{}", tasks.command(n).unwrap_or_default());
            }
        }
        return Ok(0);
    }
    let tasks = Arc::new(tasks);
    let root: PathBuf = settings
        .state_dir
        .clone()
        .unwrap_or_else(|| state_dir::default_path(tasks.fingerprint));
    // --resume-failed opens the directory as the list it was made for (same number of
    // tasks), and records the new list once the plan is made.
    let retext = if settings.resume_failed {
        match StateDir::recorded(&root) {
            Some((old, n)) if n == tasks.len() && old != tasks.fingerprint => Some(old),
            Some((_, n)) if n != tasks.len() => {
                return Err(CliError::input(format!(
                    "--resume-failed: state directory {} holds a run of {n} tasks; this list has {}: a fixed list keeps the number of tasks; nothing was changed",
                    root.display(),
                    tasks.len()
                )));
            }
            _ => None,
        }
    } else {
        None
    };
    let state = StateDir::open(
        &root,
        retext.unwrap_or(tasks.fingerprint),
        tasks.len(),
        &source,
        settings.resume,
    )?;
    // What an earlier master of this directory left running (a stopped worker and its
    // command, when that master was killed) dies before anything runs again.
    let swept = crate::process_fence::kill_run_marked(&crate::process_fence::run_mark(&root));
    if swept.killed > 0 {
        eprintln!(
            "sturdy: killed {} process(es) left running by an earlier run of {}",
            swept.killed,
            root.display()
        );
    }
    if settings.resume && !state.resumed {
        eprintln!(
            "sturdy: --resume: {} holds no earlier run; starting fresh",
            root.display()
        );
    }
    let store = CheckpointStore::open(
        state.checkpoints(),
        StoreConfig::new(settings.keep_checkpoints as usize, 1)
            .map_err(|e| CliError::input(format!("invalid setting: {e}")))?,
    )
    .map_err(|e| {
        CliError::input(format!(
            "state directory {} is not writable: {e}",
            root.display()
        ))
    })?;
    let plan = plan(&tasks, &state, &store, settings.retry_failed, retext)?;
    if retext.is_some() {
        let record = write_amended(&state.amended(), &plan.retexted)
            .and_then(|()| state.set_fingerprint(tasks.fingerprint));
        record.map_err(|e| {
            CliError::runtime(format!(
                "--resume-failed: cannot record the new task list in {}: {e}",
                root.display()
            ))
        })?;
        if !settings.json {
            eprintln!(
                "sturdy: --resume-failed: {} task(s) have a new command; those that had not succeeded run under it (earlier commands kept in {})",
                plan.retexted
                    .iter()
                    .map(|(t, _)| t)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                state.amended().display()
            );
        }
    }
    // Task numbers kept per task to run only for --keep-order and --shuf.
    let order = settings.shuf.then(|| {
        let mut order: Vec<u32> = plan.todo(&tasks).map(|(n, ..)| n).collect();
        shuffle(&mut order, seed());
        order
    });
    // -k prints in the order tasks start: the shuffled one with --shuf (as GNU
    // parallel's `-k --shuf`), task order otherwise.
    let keep_order = settings.keep_order.then(|| match &order {
        Some(order) => Box::new(order.clone().into_iter()) as crate::output::Order,
        None => crate::tasks::todo_numbers(Arc::clone(&tasks), plan.skip.clone()),
    });
    let tag = match (&settings.tagstring, settings.tag) {
        (Some(s), _) => Some(Tag::String(s.clone())),
        (None, true) => Some(Tag::Args),
        (None, false) => None,
    };
    if settings.line_buffer && settings.keep_order {
        return Err(CliError::input(
            "'--line-buffer' prints lines as they come; it cannot keep task order ('--keep-order')",
        ));
    }
    let output = TaskOutput::new(
        // With --results the output goes to DIR only, as GNU parallel.
        !settings.json && !settings.line_buffer && settings.results.is_none(),
        tag,
        settings.results.clone(),
        settings.joblog.as_deref(),
        settings.resume,
        keep_order,
    )
    .map_err(|e| {
        CliError::input(format!(
            "cannot open the joblog {}: {e}",
            settings
                .joblog
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        ))
    })?;
    let journal = Journal::open(&state.journal()).map_err(|e| {
        CliError::input(format!(
            "cannot open the journal in {}: {e}",
            root.display()
        ))
    })?;
    let already = (plan.done_before.len() + plan.gave_up_before.len()) as u64;
    let printer = RunPrinter {
        output,
        tasks: Arc::clone(&tasks),
        // No bar while other threads print lines (--line-buffer): plain progress lines.
        progress: Progress::new(
            tasks.len() as u64,
            already,
            settings.json || settings.line_buffer,
        ),
        breaker_open: settings.breaker_open,
        metrics: settings
            .metrics_listen
            .map(|_| FarmMetrics::new(tasks.len() as u64, settings.heartbeat_interval)),
        out_dir: root.join("out"),
    };
    let mut observer = RunBook::new(journal, state.clone(), &plan, tasks.fingerprint, printer)
        .with_halt(settings.halt)
        .with_keep_output(settings.keep_output);
    if state.resumed && !settings.json {
        eprintln!(
            "sturdy: resuming {}: {} done, {} failed for good, {} to run",
            root.display(),
            plan.done_before.len(),
            plan.gave_up_before.len(),
            plan.todo_len
        );
    }
    if settings.load.is_some() || settings.memfree.is_some() {
        wait_for_limits(&settings);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the runtime: {e}")))?;
    let plan = Arc::new(plan);
    // A ledger of 1024 slots for a small run, the window for a larger one.
    let summary = runtime.block_on(async {
        if plan.todo_len <= 1024 {
            drive::<1024>(
                &settings,
                &tasks,
                &plan,
                order,
                &state,
                store.clone(),
                &mut observer,
            )
            .await
        } else {
            drive::<WINDOW_TASKS>(
                &settings,
                &tasks,
                &plan,
                order,
                &state,
                store.clone(),
                &mut observer,
            )
            .await
        }
    })?;
    observer.output_mut().output.flush();
    observer.trim_printed();
    observer.output_mut().progress.finish();
    let mut fin = FinalSummary::new(
        &summary,
        tasks.len(),
        plan.done_before.len(),
        &plan.gave_up_before,
        root.display().to_string(),
    );
    fin.storage_fault = observer.fault().message();
    fin.not_on_record(observer.unjournaled());
    if settings.json {
        // A closed stdout (`| head`) loses the summary, never the run's exit code.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&fin).unwrap_or_default()
        );
    } else {
        // stdout carries the tasks' output only, as with GNU parallel.
        eprint!("{}", fin.to_text());
    }
    if let Some(e) = &fin.storage_fault {
        return Err(CliError::runtime(format!(
            "stopped: the state directory {} is full or failing: {e}; nothing more was dispatched and running commands were killed. Free space (or restore the directory) and run the same command with --resume: only the attempts that were in flight run again",
            root.display()
        )));
    }
    if let Some((_, why)) = observer.output().output.unheld().first() {
        let tasks: Vec<String> = observer
            .output()
            .output
            .unheld()
            .iter()
            .map(|(t, _)| t.to_string())
            .collect();
        return Err(CliError::runtime(format!(
            "--keep-order could not hold the output of task(s) {} until their turn ($TMPDIR: {why}): what was printed of it is incomplete; their whole output is kept in {} (TASK.ATTEMPT.out and .err). Give $TMPDIR room (or run without --keep-order)",
            tasks.join(", "),
            root.join("out").display()
        )));
    }
    if let Some((_, why)) = observer.output().output.unsaved().first() {
        let unsaved = observer.output().output.unsaved();
        let mut named: Vec<String> = unsaved
            .iter()
            .take(10)
            .map(|(t, _)| t.to_string())
            .collect();
        if unsaved.len() > named.len() {
            named.push(format!("and {} more", unsaved.len() - named.len()));
        }
        return Err(CliError::runtime(format!(
            "--results could not save the output of task(s) {} ({why}); their whole output is kept in {} (TASK.ATTEMPT.out and .err)",
            named.join(", "),
            root.join("out").display()
        )));
    }
    if tasks.changed() {
        return Err(CliError::runtime(
            "stopped: the task list (or a :::: file) was changed in place under the run, so a task's command could no longer be read back as it was when the run started; no task was run under a changed command, and nothing more was dispatched. Restore the list and run the same command with --resume to run the rest (or start a new state directory for the new list)",
        ));
    }
    if observer.stopped_for_output() {
        return Err(CliError::runtime(format!(
            "stopped: stdout was closed, so tasks' output had nowhere to go; the output of finished tasks is kept in {}, and the same command with --resume runs the rest",
            root.join("out").display()
        )));
    }
    Ok(
        if fin.all_succeeded() || (observer.halted() == Some(HaltOn::Success) && fin.failed == 0) {
            0
        } else {
            crate::error::EXIT_TASKS_FAILED
        },
    )
}

/// A run of no task (an empty argument source or an empty task list on stdin: a
/// pipeline that found nothing), as GNU parallel: nothing runs, nothing is printed on
/// stdout (but the `--json` summary, all zeros, with no state directory), no state
/// directory is made, and the exit code is 0. A line on stderr says so.
fn run_nothing(settings: &Settings) -> i32 {
    if settings.dry_run {
        return 0;
    }
    if settings.json {
        let fin = FinalSummary {
            tasks: 0,
            succeeded: 0,
            succeeded_before: 0,
            failed: 0,
            failed_by_kind: std::collections::BTreeMap::new(),
            failed_tasks: Vec::new(),
            unfinished: 0,
            attempts: 0,
            retries: 0,
            reassignments: 0,
            worker_crashes: 0,
            breaker_trips: 0,
            stale_results: 0,
            interrupted: false,
            wall_seconds: 0.0,
            master_cpu_seconds: 0.0,
            state_dir: String::new(),
            storage_fault: None,
        };
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&fin).unwrap_or_default()
        );
    } else {
        eprintln!(
            "sturdy run: no tasks (the input sources or task list on stdin held none); nothing ran"
        );
    }
    0
}

/// A seed for `--shuf`: the clock and the process id.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// Shuffles `items` (Fisher-Yates over splitmix64 from `seed`).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    let mut next = || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Each task's tag for `--line-buffer`, made from the task list when the task's output
/// comes (`None` without `--tag`/`--tagstring`; `None` for a number that is no task).
fn tag_of(settings: &Settings, tasks: &Arc<TaskList>) -> Option<TagOf> {
    if settings.tagstring.is_none() && !settings.tag {
        return None;
    }
    let tagstring = settings.tagstring.clone();
    let tasks = Arc::clone(tasks);
    Some(Arc::new(move |n: u32| {
        tasks.index_of(n)?;
        let args = tasks.args(n);
        Some(match &tagstring {
            Some(s) => Template::fill(s, &args, u64::from(n)),
            None if !tasks.is_arguments() => tasks.command(n).unwrap_or_default().into_owned(),
            None => args.join(" "),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_permutes_and_depends_on_the_seed() {
        let mut a: Vec<u32> = (1..=50).collect();
        shuffle(&mut a, 1);
        let mut b: Vec<u32> = (1..=50).collect();
        shuffle(&mut b, 2);
        assert_ne!(a, b);
        assert_ne!(a, (1..=50).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (1..=50).collect::<Vec<_>>());
    }
}
