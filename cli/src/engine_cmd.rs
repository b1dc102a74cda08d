//! The multi-host farm on NATS JetStream: `sturdy run TASKS --engine URL --run NAME`
//! (the coordinator) and `sturdy agent --engine URL --run NAME` (a host agent).
//!
//! The decisions are `sturdy_farm::agent` and `sturdy_farm::coordinator`'s; this module
//! holds the processes, files, signals and output. Each attempt's command runs in its
//! own process group (`/bin/sh -c`), a child of the agent that gets SIGKILL when the
//! agent dies (`PR_SET_PDEATHSIG`); killing an attempt (stale, timed out, aborted)
//! SIGKILLs its whole group and reaps the shell before the slot goes on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::breaker::ConsecutiveConfig;
use sturdy_core::retry::RetryPolicy;
use sturdy_farm::agent::{self, AgentConfig, Control, Event, Exit, Runner, Running, Start};
use sturdy_farm::coordinator::{self, Followed, JOURNAL_HEADER, Projection};
use sturdy_farm::engine::jetstream::{Config, JetStream, Opened, Run};
use sturdy_farm::engine::{Error as EngineError, RunMeta, TaskId};
use tokio::sync::watch;

use crate::classify::classify;
use crate::error::CliError;
use crate::options::{AgentArgs, Detector, Halt, HaltOn, JitterArg, Settings, parse_slot};
use crate::process_fence::{self, Fence, OWNER_VAR};
use crate::protocol::Outcome;
use crate::tasks::TaskList;

/// How often the coordinator prints a progress line, at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// How long connecting to the engine may take before the command gives up (exit 2).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The engine's errors as the CLI's: bad input (exit 2) for a URL, an unreachable or
/// JetStream-less server, a bad run name, a foreign task list or a missing run; exit 1
/// for a failure during the run.
fn cli_error(e: EngineError) -> CliError {
    match e {
        EngineError::Url { .. }
        | EngineError::Connect { .. }
        | EngineError::NoJetStream { .. }
        | EngineError::Config { .. }
        | EngineError::RunName { .. }
        | EngineError::Fingerprint { .. }
        | EngineError::NoSuchRun { .. } => CliError::input(e.to_string()),
        _ => CliError::runtime(e.to_string()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    // One thread: the agent's children get PR_SET_PDEATHSIG from the thread that forks
    // them, which must live as long as the process.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))
}

async fn connect(url: &str, ack_wait: Option<Duration>) -> Result<JetStream, CliError> {
    if !url.starts_with("nats://") && !url.starts_with("tls://") {
        return Err(CliError::input(format!(
            "engine URL {url:?} is malformed: expected nats://HOST:PORT"
        )));
    }
    let mut config = Config::default();
    config.connect_timeout = CONNECT_TIMEOUT;
    if let Some(ack_wait) = ack_wait {
        config.ack_wait = ack_wait;
    }
    config.pull_wait = Duration::from_millis(500);
    JetStream::connect(url, config).await.map_err(cli_error)
}

/// The run's settings, as the coordinator writes them into the run's definition and
/// every agent reads them back.
fn meta_settings(s: &Settings, seed: u64) -> BTreeMap<String, String> {
    let ms = |d: Duration| d.as_millis().to_string();
    let mut m = BTreeMap::new();
    m.insert("max_attempts".into(), s.max_attempts.to_string());
    m.insert(
        "max_worker_crashes".into(),
        s.max_worker_crashes.to_string(),
    );
    m.insert("backoff_base_ms".into(), ms(s.backoff_base));
    m.insert("backoff_cap_ms".into(), ms(s.backoff_cap));
    m.insert(
        "jitter".into(),
        match s.jitter {
            JitterArg::None => "none",
            JitterArg::Full => "full",
            JitterArg::Equal => "equal",
            JitterArg::Decorrelated => "decorrelated",
        }
        .into(),
    );
    if let Some(t) = s.task_timeout {
        m.insert("task_timeout_ms".into(), ms(t));
    }
    m.insert("heartbeat_ms".into(), ms(s.heartbeat_interval));
    m.insert("breaker_failures".into(), s.breaker_failures.to_string());
    m.insert("breaker_open_ms".into(), ms(s.breaker_open));
    m.insert("seed".into(), seed.to_string());
    m
}

/// The agent's config from the run's settings.
fn agent_config(meta: &RunMeta, host: String, slots: Vec<String>) -> Result<AgentConfig, CliError> {
    let get = |key: &str| -> Result<Option<u64>, CliError> {
        meta.settings
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    CliError::runtime(format!("the run's setting {key} = {v:?} is not a number"))
                })
            })
            .transpose()
    };
    let ms = |v: u64| Duration::from_millis(v);
    let bad = |e: sturdy_core::ConfigError| {
        CliError::runtime(format!("the run's settings are invalid: {e}"))
    };
    let mut config = AgentConfig::new(host, slots);
    let max_attempts = u32::try_from(get("max_attempts")?.unwrap_or(3)).unwrap_or(u32::MAX);
    let base = ms(get("backoff_base_ms")?.unwrap_or(0));
    let cap = ms(get("backoff_cap_ms")?.unwrap_or(0)).max(base);
    let jitter = match meta.settings.get("jitter").map(String::as_str) {
        Some("none") => Jitter::None,
        Some("equal") => Jitter::Equal,
        Some("decorrelated") => Jitter::Decorrelated,
        _ => Jitter::Full,
    };
    let backoff = if base.is_zero() {
        BackoffConfig::constant(Duration::ZERO)
    } else {
        BackoffConfig::exponential(base, 2000, cap)
            .and_then(|b| b.with_jitter(jitter))
            .map_err(bad)?
    };
    config.retry = RetryPolicy::new(max_attempts, backoff).map_err(bad)?;
    config.crash_limit = u32::try_from(get("max_worker_crashes")?.unwrap_or(2)).unwrap_or(2);
    config.timeout = get("task_timeout_ms")?.map(ms);
    if let Some(hb) = get("heartbeat_ms")? {
        config.heartbeat = ms(hb.max(1));
    }
    config.pull_wait = config
        .heartbeat
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    config.seed = get("seed")?.unwrap_or(0);
    let failures = u32::try_from(get("breaker_failures")?.unwrap_or(3)).unwrap_or(3);
    let open = ms(get("breaker_open_ms")?.unwrap_or(30_000).max(1));
    config.breaker = ConsecutiveConfig::new(failures.max(1), open, 1).map_err(bad)?;
    Ok(config)
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

// ---------------------------------------------------------------------------------
// The coordinator.

/// `sturdy run TASKS --engine URL --run NAME [--resume] [--state-dir DIR] [--json]`.
pub(crate) fn coordinate(
    settings: &Settings,
    tasks: &TaskList,
    url: &str,
    name: &str,
) -> Result<i32, CliError> {
    // What does not cross hosts (yet), each with its reason (the README says the same).
    const OUTPUT: &str =
        "a multi-host run's output stays on the hosts that ran it (each agent's DIR/out)";
    let unsupported = [
        (settings.results.is_some(), "--results", OUTPUT),
        (
            settings.metrics_listen.is_some(),
            "--metrics-listen",
            "the coordinator serves no metrics yet",
        ),
        (
            settings.retry_failed,
            "--retry-failed",
            "reopening a given-up task in the engine is not built yet",
        ),
        (
            settings.resume_failed,
            "--resume-failed",
            "reopening a given-up task in the engine is not built yet",
        ),
        (
            settings.health_gate,
            "--health-gate",
            "the health gate runs on each host, in the agent",
        ),
        (settings.keep_order, "--keep-order", OUTPUT),
        (settings.line_buffer, "--line-buffer", OUTPUT),
        (
            settings.delay.is_some(),
            "--delay",
            "not built for the engine yet",
        ),
    ];
    if let Some((_, flag, why)) = unsupported.iter().find(|(set, _, _)| *set) {
        return Err(CliError::input(format!(
            "{flag} is not supported with --engine: {why} (see the README's \"Beyond one machine\"); nothing was run"
        )));
    }
    let ack_wait = match settings.detector {
        Detector::Deadline(t) => t,
        Detector::Phi(_) => Duration::from_secs(10),
    };
    let list: Vec<(TaskId, Vec<u8>)> = tasks
        .numbers()
        .map(|n| {
            let command = tasks.command(n).unwrap_or_default();
            (TaskId(n), command.as_bytes().to_vec())
        })
        .collect();
    let fingerprint = coordinator::fingerprint(list.iter().map(|(t, c)| (*t, c.as_slice())));
    let meta = RunMeta {
        fingerprint,
        tasks: u32::try_from(list.len()).unwrap_or(u32::MAX),
        settings: meta_settings(settings, seed()),
    };
    let root = settings
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".sturdy").join(format!("engine-{name}")));
    std::fs::create_dir_all(&root).map_err(|e| {
        CliError::input(format!(
            "cannot create state directory {}: {e}",
            root.display()
        ))
    })?;
    let rt = runtime()?;
    rt.block_on(async {
        let js = connect(url, Some(ack_wait)).await?;
        let (run, opened) = js.create_run(name, &meta).await.map_err(cli_error)?;
        if opened == Opened::Existing && !settings.resume {
            return Err(CliError::input(format!(
                "run {name:?} exists at {}: add --resume to re-attach to it, or pick another --run name; nothing was changed",
                js.url()
            )));
        }
        if opened == Opened::Existing && run.control().await.map_err(cli_error)? != Control::Run
        {
            run.set_control(Control::Run).await.map_err(cli_error)?;
        }
        let enqueued = coordinator::enqueue(&run, &list, opened == Opened::Created)
            .await
            .map_err(cli_error)?;
        eprintln!(
            "sturdy: run {name} at {}: {} tasks ({} queued, {} already recorded); waiting for agents (`sturdy agent --engine {} --run {name} --workers N`)",
            js.url(),
            list.len(),
            enqueued.queued + enqueued.duplicate,
            enqueued.recorded,
            js.url()
        );
        follow(
            &run,
            &list,
            &root,
            settings.json,
            settings.halt,
            ack_wait,
            settings.joblog.as_deref(),
        )
        .await
    })
}

/// Where the coordinator's projection goes: `STATE/journal.tsv` (every journal line)
/// and, with `--joblog FILE`, GNU parallel's joblog (one line per finished task).
struct Lines<'a> {
    journal: File,
    joblog: Option<(File, PathBuf)>,
    commands: BTreeMap<u32, &'a [u8]>,
    /// The first write error, as a message.
    error: Option<String>,
}

impl<'a> Lines<'a> {
    /// # Errors
    /// The joblog cannot be created.
    fn open(
        journal: File,
        joblog: Option<&Path>,
        list: &'a [(TaskId, Vec<u8>)],
    ) -> Result<Self, CliError> {
        let joblog = match joblog {
            None => None,
            Some(p) => {
                let mut f = File::create(p).map_err(|e| {
                    CliError::input(format!("cannot open the joblog {}: {e}", p.display()))
                })?;
                let _ = f.write_all(
                    b"Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
                );
                Some((f, p.to_path_buf()))
            }
        };
        Ok(Self {
            journal,
            joblog,
            commands: list.iter().map(|(t, c)| (t.0, c.as_slice())).collect(),
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
        if let Err(e) = writeln!(self.journal, "{line}") {
            self.error = Some(format!("writing the journal failed: {e}"));
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
            .get(&task)
            .map(|c| String::from_utf8_lossy(c).replace(['\t', '\n'], " "))
            .unwrap_or_default();
        let out = format!(
            "{task}\t{}\t{:.3}\t{runtime:>10.3}\t0\t0\t{}\t{}\t{command}\n",
            c[4],
            (now - runtime).max(0.0),
            num(c[9], -1),
            num(c[10], 0),
        );
        if let Err(e) = f.write_all(out.as_bytes()) {
            self.error = Some(format!("cannot write the joblog {}: {e}", path.display()));
        }
    }
}

/// What `--halt` counts in the run's summary so far.
fn halt_count(halt: &Halt, s: &coordinator::Summary) -> u64 {
    match halt.on {
        HaltOn::Fail => s.gave_up,
        HaltOn::Success => s.succeeded,
        HaltOn::Done => s.gave_up + s.succeeded,
    }
}

/// Follows the run until it completes, a SIGINT stops it, or `--halt` (`halt`) does:
/// `now` aborts the run (the agents kill their commands), `soon` drains it and waits
/// (half an ack wait, `ack_wait`, then at most three more) until no attempt runs.
async fn follow(
    run: &Run,
    list: &[(TaskId, Vec<u8>)],
    root: &Path,
    json: bool,
    halt: Option<Halt>,
    ack_wait: Duration,
    joblog: Option<&Path>,
) -> Result<i32, CliError> {
    let journal_path = root.join("journal.tsv");
    let mut journal = File::create(&journal_path)
        .map_err(|e| CliError::runtime(format!("cannot write {}: {e}", journal_path.display())))?;
    let _ = writeln!(journal, "{JOURNAL_HEADER}");
    let mut record = Lines::open(journal, joblog, list)?;
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
                if let Some(h) = &halt
                    && halted.is_none()
                {
                    let s = p.summary();
                    if h.reached(halt_count(h, &s), s.tasks) {
                        halted = Some(h.on);
                        let _ = stop_tx.send(true);
                    }
                }
                // Progress: one line every 2 s at most, while records come in.
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = tokio::time::Instant::now();
                    let s = p.summary();
                    eprintln!(
                        "sturdy: {}/{} succeeded, {} gave up, {} running, {} waiting",
                        s.succeeded, s.tasks, s.gave_up, s.running, s.waiting
                    );
                }
            };
            let stop = stop_rx.clone();
            tokio::select! {
                biased;
                _ = int_rx.changed() => None,
                r = coordinator::follow(run, &mut projection, stop, line_sink) => Some(r),
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
                let payload =
                    |t: TaskId| list.iter().find(|(n, _)| *n == t).map(|(_, c)| c.clone());
                match reconcile
                    .pass(
                        run,
                        &projection,
                        payload,
                        tokio::time::Instant::now(),
                        ack_wait * 2,
                    )
                    .await
                {
                    Ok(requeued) => {
                        for t in requeued {
                            eprintln!(
                                "sturdy: task {} was claimed but its work message was gone (a stale acknowledgement?) for two ack waits: enqueued again",
                                t.0
                            );
                        }
                    }
                    Err(e) => eprintln!("sturdy: reconcile: {e}"),
                }
            }
            Some(Ok(Followed::Stopped))
                if draining.is_some_and(|since| since.elapsed() < grace)
                    || (draining.is_some() && projection.summary().running > 0) => {}
            Some(Ok(f)) => break f,
            Some(Err(e)) => {
                eprintln!("sturdy: {e}; following again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            None if *int_rx.borrow() == 1 && halted.is_none() => {
                let _ = int_rx.borrow_and_update();
                eprintln!(
                    "sturdy: draining run {} (SIGINT): the agents start nothing more and the running attempts finish; a second SIGINT aborts; `--resume` continues it",
                    run.name()
                );
                run.set_control(Control::Drain).await.map_err(cli_error)?;
                draining = Some(tokio::time::Instant::now());
            }
            None => {
                let n = *int_rx.borrow_and_update();
                let control = if n >= 2 {
                    Control::Abort
                } else {
                    Control::Drain
                };
                eprintln!(
                    "sturdy: {} run {} (SIGINT {n}); `--resume` continues it",
                    if n >= 2 { "aborting" } else { "draining" },
                    run.name()
                );
                run.set_control(control).await.map_err(cli_error)?;
                let _ = stop_tx.send(true);
                break Followed::Stopped;
            }
        }
    };
    if let (Some(on), Some(h), Followed::Stopped) = (halted, halt, followed) {
        let s = projection.summary();
        let what = match on {
            HaltOn::Fail => "failed for good",
            HaltOn::Success => "succeeded",
            HaltOn::Done => "finished",
        };
        eprintln!(
            "sturdy: --halt: {} task(s) {what}; {}",
            halt_count(&h, &s),
            if h.now {
                "aborting the run: the agents kill the running commands"
            } else {
                "draining the run: the agents start nothing more; waiting for the running ones"
            }
        );
        let control = if h.now {
            Control::Abort
        } else {
            Control::Drain
        };
        run.set_control(control).await.map_err(cli_error)?;
        if !h.now {
            // The agents see the drain at their next control poll (at most a heartbeat
            // interval, a third of the ack wait): follow for half an ack wait, for the
            // claims made meanwhile, then on until no attempt runs (a host that died
            // holds its claim: give up waiting after three ack waits).
            let mut sink = |line: &str, p: &Projection, stop_when_idle: bool| {
                record.write(line);
                if stop_when_idle && p.summary().running == 0 {
                    let _ = stop_tx.send(true);
                }
            };
            let _ = stop_tx.send(false);
            let _ = tokio::time::timeout(
                ack_wait / 2,
                coordinator::follow(run, &mut projection, stop_rx.clone(), |l, p| {
                    sink(l, p, false);
                }),
            )
            .await;
            if projection.summary().running > 0 {
                let _ = tokio::time::timeout(
                    ack_wait * 3,
                    coordinator::follow(run, &mut projection, stop_rx.clone(), |l, p| {
                        sink(l, p, true);
                    }),
                )
                .await;
            }
        }
    }
    if let Some(e) = record.error {
        eprintln!("sturdy: {e} (the engine's journal is intact)");
    }
    if followed == Followed::Complete {
        // Every task finished: the agents may go home.
        if let Err(e) = run.set_control(Control::Drain).await {
            eprintln!("sturdy: could not tell the agents the run is over: {e}");
        }
    }
    let s = projection.summary();
    let code = if followed == Followed::Complete {
        projection.exit_status()
    } else if halted == Some(HaltOn::Success) && s.gave_up == 0 {
        // As the local farm: a run halted on success with nothing failed is a success.
        0
    } else {
        1
    };
    if json {
        let failed: Vec<u32> = projection
            .tasks()
            .filter(|(_, v)| v.is_finished() && !v.succeeded())
            .map(|(t, _)| t.0)
            .collect();
        let value = serde_json::json!({
            "run": run.name(),
            "complete": followed == Followed::Complete,
            "halted": halted.map(|on| match on {
                HaltOn::Fail => "fail",
                HaltOn::Success => "success",
                HaltOn::Done => "done",
            }),
            "tasks": s.tasks,
            "succeeded": s.succeeded,
            "gave_up": s.gave_up,
            "running": s.running,
            "waiting": s.waiting,
            "attempts": s.attempts,
            "failed_attempts": s.failed_attempts,
            "stale": s.stale,
            "failed_tasks": failed,
            "journal": journal_path.display().to_string(),
            "exit": code,
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }
    eprintln!(
        "sturdy: run {}: {} tasks, {} succeeded, {} gave up, {} running, {} waiting; {} attempts ({} failed, {} stale); journal {}",
        run.name(),
        s.tasks,
        s.succeeded,
        s.gave_up,
        s.running,
        s.waiting,
        s.attempts,
        s.failed_attempts,
        s.stale,
        journal_path.display()
    );
    Ok(code)
}

// ---------------------------------------------------------------------------------
// The host agent.

/// `sturdy agent --engine URL --run NAME (--workers N | --slots LIST)`.
pub(crate) fn agent(args: &AgentArgs) -> Result<i32, CliError> {
    let slots: Vec<(String, Option<String>)> = match (&args.slots, args.workers) {
        (Some(list), _) => list
            .iter()
            .map(|s| parse_slot(s).map(|s| (s.label, s.cuda_visible_devices)))
            .collect::<Result<_, _>>()?,
        (None, Some(n)) => (0..n).map(|i| (i.to_string(), None)).collect(),
        (None, None) => {
            return Err(CliError::input(
                "sturdy agent needs --workers N or --slots LIST",
            ));
        }
    };
    // Slot names are the records' labels; repeated labels get their index.
    let mut names = Vec::with_capacity(slots.len());
    for (i, (label, _)) in slots.iter().enumerate() {
        if slots.iter().filter(|(l, _)| l == label).count() > 1 {
            names.push(format!("{label}#{i}"));
        } else {
            names.push(label.clone());
        }
    }
    let host = match &args.host {
        Some(h) if !h.is_empty() => h.clone(),
        Some(_) => return Err(CliError::input("invalid value '' for '--host': empty")),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into()),
    };
    let root = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".sturdy-agent").join(&args.run_name));
    let out_dir = root.join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        CliError::input(format!(
            "cannot create state directory {}: {e}",
            root.display()
        ))
    })?;
    // The fence first, while this process has one thread: if the agent dies (SIGKILL
    // included), it kills every command the agent started and what they started.
    let mark = process_fence::agent_mark(&process_fence::run_mark(&root));
    let _fence = Fence::start(&mark).map_err(|e| CliError::runtime(e.to_string()))?;
    let rt = runtime()?;
    rt.block_on(async {
        let js = connect(&args.engine, None).await?;
        let (run, meta) = js.open_run(&args.run_name).await.map_err(cli_error)?;
        let config = agent_config(&meta, host.clone(), names)?;
        let runner = ProcessRunner {
            mark,
            out_dir,
            cuda: slots.into_iter().map(|(_, c)| c).collect(),
        };
        let (control_tx, control_rx) = watch::channel(run.control().await.map_err(cli_error)?);
        let poll = config.heartbeat.max(Duration::from_millis(100));
        let watcher = run.clone();
        // The run's control, polled; SIGINT drains (first) or aborts (second); SIGTERM
        // aborts.
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let mut interrupts = 0;
            let mut local = Control::Run;
            loop {
                let from_signal = tokio::select! {
                    biased;
                    r = tokio::signal::ctrl_c() => {
                        interrupts += 1;
                        r.ok().map(|()| if interrupts >= 2 { Control::Abort } else { Control::Drain })
                    }
                    Some(()) = async {
                        match term.as_mut() {
                            Some(t) => t.recv().await,
                            None => std::future::pending().await,
                        }
                    } => Some(Control::Abort),
                    () = tokio::time::sleep(poll) => None,
                };
                if let Some(c) = from_signal {
                    local = local.max(c);
                }
                let remote = watcher.control().await.unwrap_or(Control::Run);
                let now = local.max(remote);
                // Only a change wakes the slots (a wake-up cancels their pulls).
                control_tx.send_if_modified(|c| {
                    let changed = *c != now;
                    *c = now;
                    changed
                });
            }
        });
        eprintln!(
            "sturdy agent {host}: run {} at {}, {} slots",
            run.name(),
            js.url(),
            config.slots.len()
        );
        let last_engine_error = std::sync::Mutex::new(None);
        let events = |event: &Event| match event {
            Event::Stale {
                task,
                attempt,
                slot,
                reason,
            } => eprintln!(
                "sturdy agent: task {} attempt {attempt} on slot {slot} is stale ({reason}); its command was killed",
                task.0
            ),
            Event::EngineError { slot, error } => {
                // At most one a second: a server restart fails every slot's every try.
                let mut last = last_engine_error.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(std::time::Instant::now());
                    eprintln!("sturdy agent: slot {slot}: {error}");
                }
            }
            Event::BreakerOpen { slot } => {
                eprintln!("sturdy agent: slot {slot}: breaker open, it pulls nothing for now");
            }
            Event::GaveUpOnCrashes { task, crashes } => eprintln!(
                "sturdy agent: task {} gave up: its claims were lost {crashes} times",
                task.0
            ),
            _ => {}
        };
        let summary = agent::run(&run, &runner, &config, control_rx, &events)
            .await
            .map_err(|e| CliError::input(e.to_string()))?;
        eprintln!(
            "sturdy agent {host}: stopped; {} attempts ({} done, {} failed, {} stale), {} finished tasks skipped",
            summary.attempts, summary.done, summary.failed, summary.stale, summary.skipped
        );
        Ok(0)
    })
}

/// Runs each attempt as `/bin/sh -c COMMAND` in its own process group, marked with
/// `STURDY_OWNER=<agent mark>.<slot>.<task>.<attempt>` (see `process_fence`).
struct ProcessRunner {
    /// The agent's mark, which the fence sweeps when the agent dies.
    mark: String,
    out_dir: PathBuf,
    /// Each slot's CUDA_VISIBLE_DEVICES.
    cuda: Vec<Option<String>>,
}

/// One running attempt.
struct ProcessRunning {
    child: tokio::process::Child,
    pgid: i32,
    /// The attempt's mark.
    mark: String,
    err_path: PathBuf,
    killed: bool,
}

impl Runner for ProcessRunner {
    type Running = ProcessRunning;

    async fn start(&self, start: Start<'_>) -> Result<ProcessRunning, String> {
        let command = std::str::from_utf8(start.payload)
            .map_err(|_| "the work message is not UTF-8 text".to_string())?;
        let base = format!("{}.{}", start.task.0, start.attempt);
        let out_path = self.out_dir.join(format!("{base}.out"));
        let err_path = self.out_dir.join(format!("{base}.err"));
        let stdout = File::create(&out_path)
            .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
        let stderr = File::create(&err_path)
            .map_err(|e| format!("cannot create {}: {e}", err_path.display()))?;
        let mark = format!(
            "{}.{}.{}.{}",
            self.mark,
            start.slot_index + 1,
            start.task.0,
            start.attempt
        );
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .env("STURDY_TASK", start.task.0.to_string())
            .env("STURDY_ATTEMPT", start.attempt.to_string())
            .env("STURDY_SLOT", start.slot)
            .env(OWNER_VAR, &mark)
            .process_group(0)
            .kill_on_drop(true);
        if let Some(Some(devices)) = self.cuda.get(start.slot_index) {
            cmd.env("CUDA_VISIBLE_DEVICES", devices);
        }
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or("the shell exited before it could be tracked")?;
        Ok(ProcessRunning {
            child,
            pgid,
            mark,
            err_path,
            killed: false,
        })
    }
}

/// The last `n` bytes of a file, as text.
fn tail(path: &Path, n: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

impl Running for ProcessRunning {
    async fn wait(&mut self) -> Exit {
        let status = self.child.wait().await;
        // The shell is gone; anything it left in its group goes too.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let outcome = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Outcome::Exited(code),
                (None, Some(signal)) => Outcome::Signaled {
                    signal,
                    oom_kill: false,
                },
                (None, None) => Outcome::SpawnFailed("no exit status".into()),
            },
            Err(e) => Outcome::SpawnFailed(e.to_string()),
        };
        let finish = classify(&outcome);
        let mut detail = format!("stderr {}", self.err_path.display());
        if finish.failure.is_some() {
            let t = tail(&self.err_path, 512);
            if !t.is_empty() {
                detail.push_str(": ");
                detail.push_str(&t);
            }
        }
        if self.killed {
            detail.push_str(" (killed)");
        }
        Exit {
            failure: finish.failure,
            exit: finish.exit,
            signal: finish.signal,
            detail,
        }
    }

    async fn kill(&mut self) {
        self.killed = true;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        // What left the group (setsid, a daemonizing step) carries the attempt's mark.
        let mark = self.mark.clone();
        let _ = tokio::task::spawn_blocking(move || process_fence::kill_worker_marked(&mark)).await;
    }
}
