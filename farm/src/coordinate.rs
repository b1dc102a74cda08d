//! The coordinator of a multi-host run on a real machine (`sturdy run TASKS --engine URL
//! --run NAME`): create the run (or re-attach to it), enqueue every task, follow the
//! records into the journal's projection (`STATE/journal.tsv`), and stop the run on
//! SIGINT (the first drains it, the second aborts it).
//!
//! The caller (the CLI) parses the options, connects, hears [`Note`]s and prints the
//! [`Outcome`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::agent::Control;
use crate::amend::{self, Retexted};
use crate::coordinator::{self, Followed, JOURNAL_HEADER, Projection, Summary, TaskSource};
use crate::engine::jetstream::{JetStream, Opened, Run};
use crate::engine::{Error as EngineError, RunMeta, TaskId};
use crate::halt::{Halt, HaltOn};
use crate::task_output::{Fetcher, OutputSink};

/// How often [`Note::Progress`] comes, at most.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A coordinator's settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct CoordinateConfig {
    /// The run's name.
    pub name: String,
    /// The tasks: number and command, in order, read as the coordinator goes (it holds
    /// no task's text longer than it needs it: memory does not grow with the list's
    /// text, only by a byte a task for the projection).
    pub tasks: Arc<dyn TaskSource>,
    /// The run's settings, written into its definition for every agent (name → value
    /// text: `max_attempts`, `backoff_base_ms`, `seed`, ...).
    pub settings: BTreeMap<String, String>,
    /// Where the journal's projection goes (created or truncated; its directory must
    /// exist).
    pub journal: PathBuf,
    /// Re-attach to an existing run (`--resume`); without it an existing run is refused.
    pub resume: bool,
    /// `--halt`: stop the run early (`now` aborts it, the agents kill their commands;
    /// `soon` drains it and waits until no attempt runs). `None`: never.
    pub halt: Option<Halt>,
    /// `--joblog FILE`: GNU parallel's joblog, one line per finished task (created or
    /// truncated).
    pub joblog: Option<PathBuf>,
    /// `--retry-failed` (with [`CoordinateConfig::resume`]): the tasks that were given up
    /// get a fresh attempt budget and run again ([`coordinator::reopen_failed`]); the
    /// succeeded ones never run again.
    pub retry_failed: bool,
    /// `--resume-failed` (with [`CoordinateConfig::resume`] and
    /// [`CoordinateConfig::retry_failed`]): the list may differ from the run's in its
    /// texts (not in its number of tasks); the run's definition is amended to it and
    /// every task not yet succeeded runs under its new text ([`crate::amend`]).
    pub resume_failed: bool,
    /// The run's ack wait (its lease): how long a drain waits for claims in flight, and
    /// how often the R5 reconcile looks (a claim whose work message is gone and that
    /// stayed the same for two ack waits is enqueued again). Default 30 s.
    pub ack_wait: Duration,
}

impl std::fmt::Debug for CoordinateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinateConfig")
            .field("name", &self.name)
            .field("tasks", &self.tasks.len())
            .field("settings", &self.settings)
            .field("journal", &self.journal)
            .field("resume", &self.resume)
            .field("halt", &self.halt)
            .field("joblog", &self.joblog)
            .field("retry_failed", &self.retry_failed)
            .field("resume_failed", &self.resume_failed)
            .field("ack_wait", &self.ack_wait)
            .finish()
    }
}

impl CoordinateConfig {
    /// Run `name` of `tasks` with `settings`, its journal at `journal`, no resume.
    pub fn new(
        name: impl Into<String>,
        tasks: Arc<dyn TaskSource>,
        settings: BTreeMap<String, String>,
        journal: PathBuf,
    ) -> Self {
        Self {
            name: name.into(),
            tasks,
            settings,
            journal,
            resume: false,
            halt: None,
            joblog: None,
            retry_failed: false,
            resume_failed: false,
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// Why the coordinator could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinateError {
    /// The engine failed (or refused: another task list under the name, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The run exists and [`CoordinateConfig::resume`] is not set.
    #[error(
        "run {name:?} exists at {url}: add --resume to re-attach to it, or pick another --run name; nothing was changed"
    )]
    Exists {
        /// The run.
        name: String,
        /// The engine's URL.
        url: String,
    },
    /// `--resume-failed` with a list of another number of tasks than the run's.
    #[error(
        "--resume-failed: run {name:?} at {url} holds {run_tasks} tasks; this list has {given}: a fixed list keeps the number of tasks; nothing was changed"
    )]
    Count {
        /// The run.
        name: String,
        /// The engine's URL.
        url: String,
        /// The run's number of tasks.
        run_tasks: u32,
        /// The list's.
        given: u32,
    },
    /// The journal or the joblog could not be created.
    #[error("cannot write {}: {error}", path.display())]
    Journal {
        /// Its path.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
}

/// What the coordinator tells its user while it runs.
#[derive(Debug)]
#[non_exhaustive]
pub enum Note<'a> {
    /// The run is created (or re-attached) and every task enqueued.
    Enqueued {
        /// The engine's URL (secrets redacted).
        url: &'a str,
        /// Tasks in the run.
        tasks: usize,
        /// Tasks put in the queue now (or already there).
        queued: u64,
        /// Tasks whose record already existed.
        recorded: u64,
    },
    /// `--retry-failed`: `tasks` given-up tasks were reopened (a fresh attempt budget)
    /// and enqueued again.
    Reopened {
        /// How many.
        tasks: usize,
    },
    /// `--resume-failed` (or a re-attach to an amended run): `tasks` tasks had a work
    /// message with another text than the list's; those not succeeded run under the new
    /// one, except `running` whose attempt runs now (they take it if that attempt does
    /// not succeed). Their earlier texts were appended to `amended`.
    Retexted {
        /// Tasks whose waiting message had another text.
        tasks: usize,
        /// Of those, the ones an attempt holds now.
        running: usize,
        /// Where the earlier texts are kept (`STATE/amended.tsv`).
        amended: &'a Path,
    },
    /// A record (or note) was folded into the projection while following: its journal
    /// line (the columns of [`coordinator::JOURNAL_HEADER`]) and the counts after it. For
    /// live metrics (`--metrics-listen`).
    Recorded {
        /// The journal line.
        line: &'a str,
        /// The counts after it.
        summary: &'a Summary,
    },
    /// Progress, at most every [`PROGRESS_EVERY`] while records come in.
    Progress(&'a Summary),
    /// Following the records failed; it goes on after a pause.
    FollowError(&'a EngineError),
    /// A SIGINT (the `interrupts`-th) stops the run: the first drains it, a second
    /// aborts it.
    Stopping {
        /// SIGINTs so far.
        interrupts: u32,
    },
    /// The first SIGINT drained the run: the agents start nothing more, the coordinator
    /// waits until the running attempts finished (a second SIGINT aborts).
    Draining,
    /// `--halt` stops the run: `count` tasks of its kind (`on`) so far; `now` aborts.
    Halting {
        /// What it counted.
        on: HaltOn,
        /// How many.
        count: u64,
        /// `now`: the run is aborted; otherwise drained.
        now: bool,
    },
    /// R5: a task claimed but without its work message (a stale acknowledgement can
    /// delete a live task's message, nats-server #4786) for two ack waits was enqueued
    /// again.
    Requeued(TaskId),
    /// A reconcile pass failed; the next one tries again.
    ReconcileFailed(&'a EngineError),
    /// A journal or joblog line could not be written (the first such error; the
    /// engine's journal is intact).
    JournalFailed {
        /// The journal's path.
        path: &'a Path,
        /// The error.
        error: &'a std::io::Error,
    },
    /// Every task finished but the agents could not be told the run is over.
    AgentsNotTold(&'a EngineError),
}

/// How a coordinated run ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Outcome {
    /// The run's name.
    pub run: String,
    /// Every task finished (otherwise a SIGINT or `--halt` stopped the run).
    pub complete: bool,
    /// What `--halt` stopped the run on, if it did.
    pub halted: Option<HaltOn>,
    /// The counts.
    pub summary: Summary,
    /// The tasks that finished without success, in order.
    pub failed_tasks: Vec<u32>,
    /// The journal's path.
    pub journal: PathBuf,
    /// The exit status: 0 only when complete and every task succeeded (or halted on
    /// success with no task failed, as the local farm), 1 otherwise.
    pub exit: i32,
}

/// Creates run [`CoordinateConfig::name`] on `js` (or re-attaches to it with
/// [`CoordinateConfig::resume`], setting its control back to run), enqueues every task,
/// then follows the records into the journal until every task finished or a SIGINT
/// stops the run (the first drains it, the second aborts it; `--resume` continues). When
/// every task finished, the agents are told (the run's control turns to drain).
///
/// # Errors
/// [`CoordinateError::Engine`] when the engine refuses or fails before the run is
/// followed; [`CoordinateError::Exists`]; [`CoordinateError::Journal`]. Failures while
/// following are retried ([`Note::FollowError`]).
pub async fn coordinate(
    js: &JetStream,
    config: &CoordinateConfig,
    notes: &mut dyn FnMut(Note<'_>),
) -> Result<Outcome, CoordinateError> {
    coordinate_with_output(js, config, None, notes).await
}

/// [`coordinate`], and each finished task's output fetched and handed to `output`
/// ([`OutputSink`]), in finishing order, before this returns. A re-attached coordinator
/// (`--resume`) fetches the output of tasks that finish after it attached; those that
/// finished before are handed on as [`TaskEnd::Earlier`](crate::task_output::TaskEnd).
///
/// # Errors
/// As [`coordinate`].
pub async fn coordinate_with_output(
    js: &JetStream,
    config: &CoordinateConfig,
    output: Option<OutputSink>,
    notes: &mut dyn FnMut(Note<'_>),
) -> Result<Outcome, CoordinateError> {
    let list: &dyn TaskSource = &*config.tasks;
    let name = &config.name;
    let fingerprint = coordinator::fingerprint_of(list)?;
    let meta = RunMeta {
        fingerprint,
        tasks: u32::try_from(list.len()).unwrap_or(u32::MAX),
        settings: config.settings.clone(),
    };
    let (run, opened) = open_run(js, config, &meta).await?;
    if opened == Opened::Existing && !config.resume {
        return Err(CoordinateError::Exists {
            name: name.clone(),
            url: js.url().to_string(),
        });
    }
    // Output is fetched for the tasks that finish after this coordinator attached.
    let attached = match opened {
        Opened::Created => 0,
        Opened::Existing => run.journal_end().await?.0,
    };
    let fetcher = output.map(|sink| Fetcher::start(&run, sink, attached));
    if opened == Opened::Existing && run.control().await? != Control::Run {
        run.set_control(Control::Run).await?;
    }
    let reopened = if opened == Opened::Existing && config.retry_failed {
        let reopened = coordinator::reopen_failed(&run, list).await?;
        notes(Note::Reopened {
            tasks: reopened.len(),
        });
        reopened
    } else {
        Vec::new()
    };
    let amended_path = config.journal.with_file_name("amended.tsv");
    let mut held = Vec::new();
    let amendment = match opened {
        Opened::Existing => run.amendment().await?.map(|(at, _)| at),
        Opened::Created => None,
    };
    if let Some(generation) = amendment {
        let pass = retext_all(&run, list, generation, &amended_path).await?;
        if config.resume_failed || pass.tasks > 0 {
            notes(Note::Retexted {
                tasks: pass.tasks,
                running: pass.held.len(),
                amended: &amended_path,
            });
        }
        held = pass.held;
    }
    let enqueued = coordinator::enqueue(&run, list, opened == Opened::Created).await?;
    notes(Note::Enqueued {
        url: js.url(),
        tasks: list.len(),
        queued: enqueued.queued + enqueued.duplicate,
        recorded: enqueued.recorded,
    });
    let journal_path = &config.journal;
    let journal = File::create(journal_path).map_err(|error| CoordinateError::Journal {
        path: journal_path.clone(),
        error,
    })?;
    let mut record = Lines::open(journal, journal_path, config.joblog.as_deref(), list)?;
    let mut projection = Projection::new((0..list.len()).filter_map(|i| list.number_at(i)));
    for (task, at) in reopened {
        projection.reopened_at(task, at);
    }
    for task in held {
        projection.hold(task);
    }
    projection.replay_to(crate::engine::Position(enqueued.newest.0));
    // Held tasks whose record moved on while following: look at them again.
    let mut due: BTreeSet<u32> = BTreeSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupts = watch::channel(0u32);
    let (int_tx, mut int_rx) = interrupts;
    // SIGINT: the first drains the run (agents pull nothing more), the second aborts it
    // (agents kill their commands; `--resume` reruns them).
    tokio::spawn(async move {
        let mut n = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            n += 1;
            let _ = int_tx.send(n);
        }
    });
    let ack_wait = config.ack_wait.max(Duration::from_millis(10));
    let halt = config.halt;
    let mut last_progress = tokio::time::Instant::now();
    let mut halted: Option<HaltOn> = None;
    // Since the first SIGINT drained the run: the coordinator follows on until no
    // attempt runs (a second SIGINT aborts), as the local farm waits for its running
    // tasks.
    let mut draining: Option<tokio::time::Instant> = None;
    let grace = ack_wait / 2;
    // R5: every ack wait, a claimed task that lost its work message (a stale ack) and
    // kept the same claim for two ack waits is enqueued again (`coordinator::Reconcile`).
    let mut reconcile = coordinator::Reconcile::new();
    let mut next_reconcile = tokio::time::Instant::now() + ack_wait;
    let mut reconcile_due = false;
    let followed = loop {
        if draining.is_some() {
            let _ = stop_tx.send(false);
        }
        let result = {
            let line_sink = |line: &str, p: &Projection| {
                record.write(line);
                if let Some(f) = &fetcher {
                    f.line(line, |t| final_end(p, t));
                }
                if let Some(t) = held_task_moved(line, p) {
                    due.insert(t);
                    let _ = stop_tx.send(true);
                }
                notes(Note::Recorded {
                    line,
                    summary: &p.summary(),
                });
                if let Some(h) = &halt
                    && halted.is_none()
                {
                    let s = p.summary();
                    if h.reached(halt_count(h, &s), s.tasks) {
                        halted = Some(h.on);
                        let _ = stop_tx.send(true);
                    }
                }
                // Progress: one note every 2 s at most, while records come in.
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = tokio::time::Instant::now();
                    notes(Note::Progress(&p.summary()));
                }
            };
            let stop = stop_rx.clone();
            tokio::select! {
                biased;
                _ = int_rx.changed() => None,
                r = coordinator::follow(&run, &mut projection, stop, line_sink) => Some(r),
                // While draining: look every half ack wait whether anything still runs
                // (the agents see the drain within a heartbeat interval).
                () = tokio::time::sleep(grace), if draining.is_some() => Some(Ok(Followed::Stopped)),
                () = tokio::time::sleep_until(next_reconcile) => {
                    reconcile_due = true;
                    Some(Ok(Followed::Stopped))
                }
            }
        };
        match result {
            Some(Ok(Followed::Stopped)) if reconcile_due => {
                reconcile_due = false;
                next_reconcile = tokio::time::Instant::now() + ack_wait;
                let payload = |t: TaskId| list.text(t);
                match reconcile
                    .pass(
                        &run,
                        &projection,
                        payload,
                        tokio::time::Instant::now(),
                        ack_wait * 2,
                    )
                    .await
                {
                    Ok(requeued) => {
                        for t in requeued {
                            notes(Note::Requeued(t));
                        }
                    }
                    Err(e) => notes(Note::ReconcileFailed(&e)),
                }
            }
            Some(Ok(Followed::Stopped)) if !due.is_empty() && halted.is_none() => {
                let _ = stop_tx.send(false);
                if let Some(generation) = amendment {
                    for t in std::mem::take(&mut due) {
                        let payload = coordinator::text_of(list, TaskId(t))?;
                        match settle_held(&run, TaskId(t), &payload, generation).await {
                            Ok(Some(at)) => {
                                if let Some(at) = at {
                                    projection.reopened_at(TaskId(t), at);
                                }
                                projection.release(TaskId(t));
                            }
                            Ok(None) => {}
                            Err(e) => {
                                // Again after a pause (the follow returns at once).
                                due.insert(t);
                                let _ = stop_tx.send(true);
                                notes(Note::ReconcileFailed(&e));
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                }
            }
            Some(Ok(Followed::Stopped))
                if draining.is_some_and(|since| since.elapsed() < grace)
                    || (draining.is_some() && projection.summary().running > 0) => {}
            Some(Ok(f)) => break f,
            Some(Err(e)) => {
                notes(Note::FollowError(&e));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            None if *int_rx.borrow() == 1 && halted.is_none() => {
                let _ = int_rx.borrow_and_update();
                notes(Note::Draining);
                run.set_control(Control::Drain).await?;
                draining = Some(tokio::time::Instant::now());
            }
            None => {
                let n = *int_rx.borrow_and_update();
                let control = if n >= 2 {
                    Control::Abort
                } else {
                    Control::Drain
                };
                notes(Note::Stopping { interrupts: n });
                run.set_control(control).await?;
                let _ = stop_tx.send(true);
                break Followed::Stopped;
            }
        }
    };
    if let (Some(on), Some(h), Followed::Stopped) = (halted, halt, followed) {
        let s = projection.summary();
        notes(Note::Halting {
            on,
            count: halt_count(&h, &s),
            now: h.now,
        });
        let control = if h.now {
            Control::Abort
        } else {
            Control::Drain
        };
        run.set_control(control).await?;
        if !h.now {
            // The agents see the drain at their next control poll (at most a heartbeat
            // interval, a third of the ack wait): follow for half an ack wait, for the
            // claims made meanwhile, then on until no attempt runs (a host that died
            // holds its claim: give up waiting after three ack waits).
            let mut sink = |line: &str, p: &Projection, stop_when_idle: bool| {
                record.write(line);
                if let Some(f) = &fetcher {
                    f.line(line, |t| final_end(p, t));
                }
                if stop_when_idle && p.summary().running == 0 {
                    let _ = stop_tx.send(true);
                }
            };
            let _ = stop_tx.send(false);
            let _ = tokio::time::timeout(
                grace,
                coordinator::follow(&run, &mut projection, stop_rx.clone(), |l, p| {
                    sink(l, p, false);
                }),
            )
            .await;
            if projection.summary().running > 0 {
                let _ = tokio::time::timeout(
                    ack_wait * 3,
                    coordinator::follow(&run, &mut projection, stop_rx.clone(), |l, p| {
                        sink(l, p, true);
                    }),
                )
                .await;
            }
        }
    }
    if let Some(f) = fetcher {
        f.finish().await;
    }
    if let Some((path, error)) = &record.error {
        notes(Note::JournalFailed { path, error });
    }
    if followed == Followed::Complete {
        // Every task finished: the agents may go home.
        if let Err(e) = run.set_control(Control::Drain).await {
            notes(Note::AgentsNotTold(&e));
        }
    }
    let summary = projection.summary();
    let exit = if followed == Followed::Complete {
        projection.exit_status()
    } else if halted == Some(HaltOn::Success) && summary.gave_up == 0 {
        // As the local farm: a run halted on success with nothing failed is a success.
        0
    } else {
        1
    };
    Ok(Outcome {
        run: run.name().to_string(),
        complete: followed == Followed::Complete,
        halted,
        summary,
        failed_tasks: projection
            .tasks()
            .filter(|(_, v)| v.is_finished() && !v.succeeded())
            .map(|(t, _)| t.0)
            .collect(),
        journal: journal_path.clone(),
        exit,
    })
}

/// Task `task`'s final `ended` record in the projection, if it finished.
fn final_end(p: &Projection, task: TaskId) -> Option<crate::engine::Ended> {
    match (p.task(task), p.last_ended()) {
        (Some(view), Some((t, e))) if view.is_finished() && t == task => Some(e.clone()),
        _ => None,
    }
}

/// What `--halt` counts in the run's summary so far.
fn halt_count(halt: &Halt, s: &Summary) -> u64 {
    match halt.on {
        HaltOn::Fail => s.gave_up,
        HaltOn::Success => s.succeeded,
        HaltOn::Done => s.gave_up + s.succeeded,
    }
}

/// Where the coordinator's projection goes: the journal (every line) and, with
/// `--joblog FILE`, GNU parallel's joblog (one line per finished task).
struct Lines<'a> {
    journal: (File, PathBuf),
    joblog: Option<(File, PathBuf)>,
    commands: &'a dyn TaskSource,
    /// The first write error: the file and the error.
    error: Option<(PathBuf, std::io::Error)>,
}

impl<'a> Lines<'a> {
    /// Writes the journal's header and opens the joblog (with its header).
    ///
    /// # Errors
    /// [`CoordinateError::Journal`] when the joblog cannot be created.
    fn open(
        mut journal: File,
        journal_path: &Path,
        joblog: Option<&Path>,
        list: &'a dyn TaskSource,
    ) -> Result<Self, CoordinateError> {
        let _ = writeln!(journal, "{JOURNAL_HEADER}");
        let joblog = match joblog {
            None => None,
            Some(p) => {
                let fail = |error| CoordinateError::Journal {
                    path: p.to_path_buf(),
                    error,
                };
                let mut f = File::create(p).map_err(fail)?;
                f.write_all(
                    b"Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
                )
                .map_err(fail)?;
                Some((f, p.to_path_buf()))
            }
        };
        Ok(Self {
            journal: (journal, journal_path.to_path_buf()),
            joblog,
            commands: list,
            error: None,
        })
    }

    /// Writes one journal line; a task's final `ended` line (done or gave up) also
    /// makes its joblog line: Seq the task, Host the agent's host, Starttime the time the
    /// coordinator saw the end less the runtime (the records carry no wall clock; a
    /// `--resume` that replays the journal writes its own time), Receive 0 (the output
    /// stays on the host), Exitval -1 without an exit status.
    fn write(&mut self, line: &str) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = writeln!(self.journal.0, "{line}") {
            self.error = Some((self.journal.1.clone(), e));
            return;
        }
        let Some((f, path)) = &mut self.joblog else {
            return;
        };
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < 12 || c[2] != "ended" || !(c[7] == "done" || c[7] == "gave_up") {
            return;
        }
        let Ok(task) = c[1].parse::<u32>() else {
            return;
        };
        let runtime = c[11].parse::<u64>().map_or(0.0, |ms| ms as f64 / 1000.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let num = |v: &str, none: i64| v.parse::<i64>().unwrap_or(none);
        let command = self
            .commands
            .text(TaskId(task))
            .map(|c| String::from_utf8_lossy(&c).replace(['\t', '\n'], " "))
            .unwrap_or_default();
        let out = format!(
            "{task}\t{}\t{:.3}\t{runtime:>10.3}\t0\t0\t{}\t{}\t{command}\n",
            c[4],
            (now - runtime).max(0.0),
            num(c[9], -1),
            num(c[10], 0),
        );
        if let Err(e) = f.write_all(out.as_bytes()) {
            self.error = Some((path.clone(), e));
        }
    }
}

/// Creates or opens the run; with `--resume-failed`, a list of the run's number of tasks
/// but another fingerprint amends the run's definition ([`Run::amend`]).
async fn open_run(
    js: &JetStream,
    config: &CoordinateConfig,
    meta: &RunMeta,
) -> Result<(Run, Opened), CoordinateError> {
    match js.create_run(&config.name, meta).await {
        Err(EngineError::Fingerprint { existing, .. }) if config.resume_failed && config.resume => {
            let (run, current) = js.open_run(&config.name).await?;
            if current.tasks != meta.tasks {
                return Err(CoordinateError::Count {
                    name: config.name.clone(),
                    url: js.url().to_string(),
                    run_tasks: current.tasks,
                    given: meta.tasks,
                });
            }
            // The run's settings stay the ones it was created with (every agent read
            // them); only the list's fingerprint changes.
            let amended = RunMeta {
                settings: current.settings.clone(),
                ..meta.clone()
            };
            run.amend(&existing, &amended).await?;
            Ok((run, Opened::Existing))
        }
        other => Ok(other?),
    }
}

/// What [`retext_all`] did.
struct RetextPass {
    /// Tasks whose waiting message had another text.
    tasks: usize,
    /// Those an attempt holds now.
    held: Vec<TaskId>,
}

/// [`amend::retext`] over every task of `list` (up to 64 at once), appending the
/// earlier texts to `amended`.
async fn retext_all(
    run: &Run,
    list: &dyn TaskSource,
    generation: u64,
    amended: &Path,
) -> Result<RetextPass, CoordinateError> {
    use futures_util::StreamExt as _;
    let mut each = futures_util::stream::iter(0..list.len())
        .map(|i| async move {
            let (task, payload) = coordinator::read_at(list, i)?;
            amend::retext(run, task, &payload, generation, false)
                .await
                .map(|r| (task, r))
        })
        .buffered(64);
    let mut pass = RetextPass {
        tasks: 0,
        held: Vec::new(),
    };
    let mut earlier = BTreeSet::new();
    while let Some(one) = each.next().await {
        let (task, retexted) = one?;
        let old = match retexted {
            Retexted::Replaced { old, .. } => old,
            Retexted::Claimed { old } => {
                pass.held.push(task);
                old
            }
            _ => continue,
        };
        pass.tasks += 1;
        earlier.insert((task.0, text(&old)));
    }
    record_earlier(amended, &earlier)?;
    Ok(pass)
}

/// Looks again at held task `task` whose record moved on: `Ok(Some(reopened))` when it
/// is settled (succeeded, or re-enqueued under its new text with its fence at
/// `reopened`), `Ok(None)` while an attempt still holds it. Its earlier text is in
/// `amended.tsv` already (written when it was found running).
async fn settle_held(
    run: &Run,
    task: TaskId,
    payload: &[u8],
    generation: u64,
) -> Result<Option<Option<crate::engine::Revision>>, EngineError> {
    Ok(
        match amend::retext(run, task, payload, generation, true).await? {
            Retexted::Claimed { .. } => None,
            Retexted::Replaced { revision, .. } | Retexted::Reopened { revision } => {
                Some(Some(revision))
            }
            _ => Some(None),
        },
    )
}

/// A task's text as one `amended.tsv` field.
fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).replace(['\t', '\n'], " ")
}

/// Appends earlier texts to `amended.tsv` (the local farm's format: `TASK<TAB>TEXT`).
fn record_earlier(path: &Path, earlier: &BTreeSet<(u32, String)>) -> Result<(), CoordinateError> {
    if earlier.is_empty() {
        return Ok(());
    }
    crate::local::resume::write_amended(path, earlier).map_err(|error| CoordinateError::Journal {
        path: path.to_path_buf(),
        error,
    })
}

/// The held task a journal line is about, when its record is no longer a claim (its
/// attempt ended or was found stale): the coordinator looks at it again.
fn held_task_moved(line: &str, p: &Projection) -> Option<u32> {
    let task = TaskId(line.split('\t').nth(1)?.parse().ok()?);
    (p.is_held(task) && p.task(task).is_some_and(|v| !v.is_claimed())).then_some(task.0)
}
