//! The coordinator of a multi-host run on a real machine (`sturdy run TASKS --engine URL
//! --run NAME`): create the run (or re-attach to it), enqueue every task, follow the
//! records into the journal's projection (`STATE/journal.tsv`), and stop the run on
//! SIGINT (the first drains it, the second aborts it).
//!
//! The caller (the CLI) parses the options, connects, hears [`Note`]s and prints the
//! [`Outcome`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::agent::Control;
use crate::coordinator::{self, Followed, JOURNAL_HEADER, Projection, Summary};
use crate::engine::jetstream::{JetStream, Opened};
use crate::engine::{Error as EngineError, RunMeta, TaskId};

/// How often [`Note::Progress`] comes, at most.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A coordinator's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CoordinateConfig {
    /// The run's name.
    pub name: String,
    /// The tasks: number and command, in order.
    pub tasks: Vec<(TaskId, Vec<u8>)>,
    /// The run's settings, written into its definition for every agent (name → value
    /// text: `max_attempts`, `backoff_base_ms`, `seed`, ...).
    pub settings: BTreeMap<String, String>,
    /// Where the journal's projection goes (created or truncated; its directory must
    /// exist).
    pub journal: PathBuf,
    /// Re-attach to an existing run (`--resume`); without it an existing run is refused.
    pub resume: bool,
}

impl CoordinateConfig {
    /// Run `name` of `tasks` with `settings`, its journal at `journal`, no resume.
    pub fn new(
        name: impl Into<String>,
        tasks: Vec<(TaskId, Vec<u8>)>,
        settings: BTreeMap<String, String>,
        journal: PathBuf,
    ) -> Self {
        Self {
            name: name.into(),
            tasks,
            settings,
            journal,
            resume: false,
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
    /// The journal could not be created.
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
    /// A journal line could not be written (the first such error; the engine's journal
    /// is intact).
    JournalFailed {
        /// The journal's path.
        path: &'a std::path::Path,
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
    /// Every task finished (otherwise a SIGINT stopped the run).
    pub complete: bool,
    /// The counts.
    pub summary: Summary,
    /// The tasks that finished without success, in order.
    pub failed_tasks: Vec<u32>,
    /// The journal's path.
    pub journal: PathBuf,
    /// The exit status: 0 only when complete and every task succeeded.
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
    let list = &config.tasks;
    let name = &config.name;
    let fingerprint = coordinator::fingerprint(list.iter().map(|(t, c)| (*t, c.as_slice())));
    let meta = RunMeta {
        fingerprint,
        tasks: u32::try_from(list.len()).unwrap_or(u32::MAX),
        settings: config.settings.clone(),
    };
    let (run, opened) = js.create_run(name, &meta).await?;
    if opened == Opened::Existing && !config.resume {
        return Err(CoordinateError::Exists {
            name: name.clone(),
            url: js.url().to_string(),
        });
    }
    if opened == Opened::Existing && run.control().await? != Control::Run {
        run.set_control(Control::Run).await?;
    }
    let enqueued = coordinator::enqueue(&run, list, opened == Opened::Created).await?;
    notes(Note::Enqueued {
        url: js.url(),
        tasks: list.len(),
        queued: enqueued.queued + enqueued.duplicate,
        recorded: enqueued.recorded,
    });
    let journal_path = &config.journal;
    let mut journal = File::create(journal_path).map_err(|error| CoordinateError::Journal {
        path: journal_path.clone(),
        error,
    })?;
    let _ = writeln!(journal, "{JOURNAL_HEADER}");
    let mut projection = Projection::new(list.iter().map(|(t, _)| *t));
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
    let mut journal_error = None;
    let mut last_progress = tokio::time::Instant::now();
    let followed = loop {
        let result = {
            let line_sink = |line: &str, p: &Projection| {
                if journal_error.is_none()
                    && let Err(e) = writeln!(journal, "{line}")
                {
                    journal_error = Some(e);
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
            }
        };
        match result {
            Some(Ok(f)) => break f,
            Some(Err(e)) => {
                notes(Note::FollowError(&e));
                tokio::time::sleep(Duration::from_millis(500)).await;
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
    if let Some(e) = journal_error {
        notes(Note::JournalFailed {
            path: journal_path,
            error: &e,
        });
    }
    if followed == Followed::Complete {
        // Every task finished: the agents may go home.
        if let Err(e) = run.set_control(Control::Drain).await {
            notes(Note::AgentsNotTold(&e));
        }
    }
    let exit = if followed == Followed::Complete {
        projection.exit_status()
    } else {
        1
    };
    Ok(Outcome {
        run: run.name().to_string(),
        complete: followed == Followed::Complete,
        summary: projection.summary(),
        failed_tasks: projection
            .tasks()
            .filter(|(_, v)| v.is_finished() && !v.succeeded())
            .map(|(t, _)| t.0)
            .collect(),
        journal: journal_path.clone(),
        exit,
    })
}
