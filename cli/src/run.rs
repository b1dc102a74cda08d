//! `sturdy run`: the master. Validates the input, opens the state directory, works out
//! what a resumed run still has to do, and drives a [`Supervisor`] of child-process
//! workers, journaling every attempt and checkpointing.
//!
//! Signals: the first SIGINT or SIGTERM stops dispatch and lets running attempts finish;
//! a second kills them (they are journaled `interrupted` and run again on resume). In
//! both cases the journal is synced, a checkpoint written, and `--resume` continues.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sturdy_core::FailureKind;
use sturdy_core::WorkerId;
use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::deadline::DeadlineConfig;
use sturdy_core::manager::{BreakerState, Event, LedgerConfig, TaskState};
use sturdy_core::phi::PhiConfig;
use sturdy_core::retry::RetryPolicy;
use sturdy_tokio::checkpoint_store::{CheckpointStore, StoreConfig};
use sturdy_tokio::supervisor::{
    AttemptRecord, Observer, Stop, Summary, Supervisor, SupervisorConfig, Verdict, read_checkpoint,
};

use crate::error::CliError;
use crate::journal::{self, Journal, Next, Record};
use crate::options::{Detector, JitterArg, RunArgs, Settings};
use crate::process_pool::ProcessPool;
use crate::report::{FinalSummary, Progress};
use crate::state_dir::{self, StateDir};
use crate::tasks::TaskList;

/// Workers a run can have (the ledger's `WORKERS`).
pub(crate) const MAX_WORKERS: usize = 256;
/// Tasks a run can have (the largest ledger's `TASKS`).
pub(crate) const MAX_TASKS: usize = 262_144;
const EXPERIMENT: &str = "run";

/// The CLI's payload in each checkpoint: which task list, and the task number of each
/// ledger task id of the run that wrote it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RunCheckpoint {
    fingerprint: u64,
    keys: Vec<u32>,
}

/// Reads the newest valid checkpoint: `(done, gave_up)` task numbers it records.
fn checkpoint_outcomes(store: &CheckpointStore, fingerprint: u64) -> (Vec<u32>, Vec<u32>) {
    let mut found = None;
    for generation in store.list(EXPERIMENT).unwrap_or_default().into_iter().rev() {
        let read = store
            .load(EXPERIMENT, generation)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                read_checkpoint::<1024>(&bytes)
                    .or_else(|_| read_checkpoint::<16_384>(&bytes))
                    .or_else(|_| read_checkpoint::<MAX_TASKS>(&bytes))
                    .map_err(|e| e.to_string())
            });
        match read {
            Ok(saved) => {
                found = Some(saved);
                break;
            }
            Err(e) => eprintln!("sturdy: warning: skipping checkpoint {generation}: {e}"),
        }
    }
    let Some(saved) = found else {
        return (Vec::new(), Vec::new());
    };
    let Ok(payload) = postcard::from_bytes::<RunCheckpoint>(&saved.payload) else {
        return (Vec::new(), Vec::new());
    };
    if payload.fingerprint != fingerprint {
        return (Vec::new(), Vec::new());
    }
    let (mut done, mut gave_up) = (Vec::new(), Vec::new());
    for (state, key) in saved.states.iter().zip(&payload.keys) {
        match state {
            TaskState::Succeeded => done.push(*key),
            TaskState::Failed => gave_up.push(*key),
            _ => {}
        }
    }
    (done, gave_up)
}

fn kind_of(name: &str) -> FailureKind {
    FailureKind::from_name(name).unwrap_or(FailureKind::Unknown)
}

fn ledger_config(s: &Settings) -> Result<LedgerConfig, CliError> {
    let bad = |e: sturdy_core::ConfigError| CliError::input(format!("invalid setting: {e}"));
    let jitter = match s.jitter {
        JitterArg::None => Jitter::None,
        JitterArg::Full => Jitter::Full,
        JitterArg::Equal => Jitter::Equal,
        JitterArg::Decorrelated => Jitter::Decorrelated,
    };
    let backoff = if s.backoff_base.is_zero() {
        BackoffConfig::constant(Duration::ZERO)
    } else {
        BackoffConfig::exponential(s.backoff_base, 2000, s.backoff_cap)
            .and_then(|b| b.with_jitter(jitter))
            .map_err(bad)?
    };
    let retry = RetryPolicy::new(s.max_attempts, backoff).map_err(bad)?;
    // With the phi detector the supervisor suspects workers; the ledger's deadline then
    // only backs it up at a generous silence.
    let timeout = match s.detector {
        Detector::Deadline(t) => t,
        Detector::Phi(_) => (s.heartbeat_interval * 30).max(Duration::from_secs(30)),
    };
    // A fresh worker process needs a moment before its first heartbeat.
    let grace = timeout.max(Duration::from_secs(5));
    let deadline = DeadlineConfig::new(timeout, grace).map_err(bad)?;
    LedgerConfig::new(retry)
        .with_deadline(deadline)
        .with_lease(timeout.saturating_mul(2))
        .and_then(|c| c.with_breaker(s.breaker_failures, s.breaker_open, 1))
        .map(|c| c.with_seed(std::process::id().into()))
        .map_err(bad)
}

struct RunObserver {
    journal: Journal,
    journal_error: Option<std::io::Error>,
    progress: Progress,
    /// `--breaker-open`, for the note that a worker's breaker opened.
    breaker_open: Duration,
}

impl Observer<String> for RunObserver {
    fn attempt_started(
        &mut self,
        worker: WorkerId,
        _order: &sturdy_tokio::supervisor::Order<'_, String>,
    ) {
        self.progress.started(worker.0);
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
            if self.journal_error.is_none() {
                self.progress
                    .note(&format!("sturdy: journal write failed: {e}"));
            }
            self.journal_error.get_or_insert(e);
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
            self.journal_error.get_or_insert(e);
        }
        if let Err(e) = result {
            self.progress
                .note(&format!("sturdy: checkpoint not written: {e}"));
        }
    }

    fn worker_restarting(&mut self, worker: WorkerId, delay: Duration) {
        self.progress.note(&format!(
            "worker {} died; restarting it in {} ms",
            worker.0 + 1,
            delay.as_millis()
        ));
    }
}

/// What is left to do, from the journal and the newest valid checkpoint.
struct Plan {
    /// `(task number, attempts made before)` of the tasks to run.
    todo: Vec<(u32, u32)>,
    done_before: BTreeSet<u32>,
    gave_up_before: Vec<(u64, FailureKind)>,
}

fn plan(
    tasks: &TaskList,
    state: &StateDir,
    store: &CheckpointStore,
    retry_failed: bool,
) -> Result<Plan, CliError> {
    let (hist, torn) = journal::read(&state.journal())
        .map_err(|e| CliError::runtime(format!("cannot read the journal: {e}")))?;
    if torn > 0 {
        eprintln!("sturdy: skipped {torn} unreadable journal line(s) (torn write)");
    }
    let mut done: BTreeSet<u32> = BTreeSet::new();
    let mut gave_up: BTreeSet<u32> = BTreeSet::new();
    // The journal is the record of every attempt; the checkpoint (synced with the
    // journal) backs it up should journal lines be lost.
    let (ck_done, ck_gave_up) = checkpoint_outcomes(store, tasks.fingerprint);
    done.extend(ck_done);
    gave_up.extend(ck_gave_up);
    let mut last_kind: HashMap<u32, FailureKind> = HashMap::new();
    for (t, h) in &hist {
        if h.done {
            done.insert(*t);
        } else if h.gave_up {
            gave_up.insert(*t);
            last_kind.insert(*t, FailureKind::Unknown);
        }
    }
    // The kind of a give-up, for the summary: the last failing line of the task.
    if !gave_up.is_empty()
        && let Ok(text) = std::fs::read_to_string(state.journal())
    {
        for line in text.lines().filter(|l| l.contains("\tgave_up\t")) {
            let cols: Vec<&str> = line.splitn(12, '\t').collect();
            if let (Some(t), Some(k)) = (cols.first().and_then(|t| t.parse().ok()), cols.get(9)) {
                last_kind.insert(t, kind_of(k));
            }
        }
    }
    gave_up.retain(|t| !done.contains(t));
    let mut todo = Vec::new();
    let mut gave_up_before = Vec::new();
    for n in 1..=tasks.len() as u32 {
        if done.contains(&n) {
            continue;
        }
        if gave_up.contains(&n) && !retry_failed {
            gave_up_before.push((
                u64::from(n),
                last_kind.get(&n).copied().unwrap_or(FailureKind::Unknown),
            ));
            continue;
        }
        // Attempt numbers continue across runs (a retried failed task gets a fresh
        // --max-attempts budget, numbered after its earlier attempts).
        let prior = hist.get(&n).map_or(0, |h| h.attempts);
        todo.push((n, prior));
    }
    if retry_failed {
        gave_up.clear();
    }
    Ok(Plan {
        todo,
        done_before: done,
        gave_up_before,
    })
}

async fn drive<const T: usize>(
    settings: &Settings,
    tasks: &TaskList,
    plan: &Plan,
    state: &StateDir,
    store: CheckpointStore,
    observer: &mut RunObserver,
) -> Result<Summary, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::runtime(format!("cannot find the sturdy executable: {e}")))?;
    let pool = ProcessPool::new(
        exe,
        settings.slots.clone(),
        settings.heartbeat_interval,
        state.clone(),
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
    let payload = RunCheckpoint {
        fingerprint: tasks.fingerprint,
        keys: plan.todo.iter().map(|&(n, _)| n).collect(),
    };
    sup.enable_checkpoints(
        store,
        EXPERIMENT,
        settings.checkpoint_interval,
        postcard::to_allocvec(&payload).unwrap_or_default(),
    )
    .map_err(|e| {
        CliError::input(format!(
            "state directory {} is not writable: {e}",
            state.root().display()
        ))
    })?;
    for &(n, prior) in &plan.todo {
        sup.add_task(u64::from(n), prior, tasks.commands[n as usize - 1].clone())
            .map_err(|e| CliError::input(e.to_string()))?;
    }
    let _monitor = settings.health_gate.then(|| {
        let (monitor, health) =
            crate::health_gate::spawn(sturdy_probe::Probe::new(), settings.slots.clone());
        sup.set_health(health);
        monitor
    });
    let stop = sup.stop_handle();
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            match stop.escalate() {
                Stop::Drain => eprintln!(
                    "sturdy: stopping: no new tasks; waiting for running ones (signal again to kill them)"
                ),
                _ => eprintln!("sturdy: killing running tasks"),
            }
        }
    });
    let summary = sup.run(observer).await;
    signals.abort();
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
    let tasks = TaskList::load(&settings.tasks)?;
    if tasks.len() > MAX_TASKS {
        return Err(CliError::input(format!(
            "tasks file {} holds {} commands; a run takes at most {MAX_TASKS} (split the list)",
            settings.tasks.display(),
            tasks.len()
        )));
    }
    let root: PathBuf = settings
        .state_dir
        .clone()
        .unwrap_or_else(|| state_dir::default_path(tasks.fingerprint));
    let source = settings.tasks.display().to_string();
    let state = StateDir::open(
        &root,
        tasks.fingerprint,
        tasks.len(),
        &source,
        settings.resume,
    )?;
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
    let plan = plan(&tasks, &state, &store, settings.retry_failed)?;
    let journal = Journal::open(&state.journal()).map_err(|e| {
        CliError::input(format!(
            "cannot open the journal in {}: {e}",
            root.display()
        ))
    })?;
    let already = (plan.done_before.len() + plan.gave_up_before.len()) as u64;
    let mut observer = RunObserver {
        journal,
        journal_error: None,
        progress: Progress::new(tasks.len() as u64, already, settings.json),
        breaker_open: settings.breaker_open,
    };
    if state.resumed && !settings.json {
        eprintln!(
            "sturdy: resuming {}: {} done, {} failed for good, {} to run",
            root.display(),
            plan.done_before.len(),
            plan.gave_up_before.len(),
            plan.todo.len()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the runtime: {e}")))?;
    let n = plan.todo.len();
    let summary = runtime.block_on(async {
        if n <= 1024 {
            drive::<1024>(
                &settings,
                &tasks,
                &plan,
                &state,
                store.clone(),
                &mut observer,
            )
            .await
        } else if n <= 16_384 {
            drive::<16_384>(
                &settings,
                &tasks,
                &plan,
                &state,
                store.clone(),
                &mut observer,
            )
            .await
        } else {
            drive::<MAX_TASKS>(
                &settings,
                &tasks,
                &plan,
                &state,
                store.clone(),
                &mut observer,
            )
            .await
        }
    })?;
    observer.progress.finish();
    let fin = FinalSummary::new(
        &summary,
        tasks.len(),
        plan.done_before.len(),
        &plan.gave_up_before,
        root.display().to_string(),
    );
    if settings.json {
        println!("{}", serde_json::to_string_pretty(&fin).unwrap_or_default());
    } else {
        print!("{}", fin.to_text());
    }
    if let Some(e) = observer.journal_error {
        return Err(CliError::runtime(format!(
            "the journal could not be written: {e}"
        )));
    }
    Ok(if fin.all_succeeded() {
        0
    } else {
        crate::error::EXIT_TASKS_FAILED
    })
}
