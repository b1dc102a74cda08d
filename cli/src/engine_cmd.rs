//! The multi-host farm on NATS JetStream: `sturdy run TASKS --engine URL --run NAME`
//! (the coordinator) and `sturdy agent --engine URL --run NAME` (a host agent).
//!
//! The decisions are `sturdy_farm::agent` and `sturdy_farm::coordinator`'s, and the host
//! agent's processes, gate and signals are `sturdy_farm::host`'s; this module maps the
//! options onto them and prints.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sturdy_farm::agent::Event;
use sturdy_farm::coordinate::{self, CoordinateConfig, CoordinateError, Note};
use sturdy_farm::engine::jetstream::{Config, JetStream};
use sturdy_farm::engine::{Error as EngineError, TaskId};
use sturdy_farm::halt::HaltOn;
use sturdy_farm::host::{self, HostConfig, HostError};
use sturdy_farm::local::process_fence::{self, Fence};

use crate::error::CliError;
use crate::farm_metrics::FarmMetrics;
use crate::options::{AgentArgs, Detector, JitterArg, Settings, Slot, parse_slot};
use crate::tasks::TaskList;

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
    // `--delay`: every agent spaces the starts of its own slots' attempts by it.
    if let Some(d) = s.delay {
        m.insert("delay_ms".into(), ms(d));
    }
    // The host health gate, applied by every agent on its own host.
    if s.health_gate {
        m.insert("health_gate".into(), "true".into());
    }
    if let Some(load) = s.load {
        m.insert("load".into(), load.to_string());
    }
    if let Some(memfree) = s.memfree {
        m.insert("memfree".into(), memfree.to_string());
    }
    m
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
    tasks: TaskList,
    url: &str,
    name: &str,
) -> Result<i32, CliError> {
    // What does not cross hosts (yet), each with its reason (the README says the same).
    let unsupported = [(
        settings.line_buffer,
        "--line-buffer",
        "it prints lines while a task runs, and an agent ships a task's output to the coordinator only when the task's end is final (output is printed grouped per task, as without --line-buffer)",
    )];
    if let Some((_, flag, why)) = unsupported.iter().find(|(set, _, _)| *set) {
        return Err(CliError::input(format!(
            "{flag} is not supported with --engine: {why} (see the README's \"Beyond one machine\"); nothing was run"
        )));
    }
    let ack_wait = match settings.detector {
        Detector::Deadline(t) => t,
        Detector::Phi(_) => Duration::from_secs(10),
    };
    // The coordinator reads the list as it goes (texts read back by line number).
    let list = Arc::new(tasks);
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
    let mut config = CoordinateConfig::new(
        name,
        list.clone(),
        meta_settings(settings, seed()),
        root.join("journal.tsv"),
    );
    config.resume = settings.resume;
    config.halt = settings.halt;
    config.joblog = settings.joblog.clone();
    config.retry_failed = settings.retry_failed;
    config.resume_failed = settings.resume_failed;
    config.ack_wait = ack_wait;
    let rt = runtime()?;
    let metrics = settings
        .metrics_listen
        .map(|_| FarmMetrics::new(config.tasks.len() as u64, Duration::from_secs(1)));
    let (printer, sink) = crate::engine_output::printer(settings, &list, root.join("out"))?;
    // With --json nothing reads the output (unless it goes to --results or is kept).
    let sink =
        (!settings.json || settings.results.is_some() || settings.keep_output).then_some(sink);
    if settings.resume && !settings.json {
        eprintln!(
            "sturdy: --resume: the output of tasks that finish from now on is printed; tasks that finished before are not printed again (their output stays on the agents' hosts, DIR/out)"
        );
    }
    let outcome = rt.block_on(async {
        let ticker = match (settings.metrics_listen, &metrics) {
            (Some(addr), Some(m)) => Some(serve_metrics(m, addr).await?),
            _ => None,
        };
        let js = connect(url, Some(ack_wait)).await?;
        let outcome = coordinate::coordinate_with_output(&js, &config, sink, &mut |note| {
            if let Some(m) = &metrics {
                observe(m, &note);
            }
            print_note(name, &note);
        })
        .await;
        if let Some(t) = ticker {
            t.abort();
        }
        outcome.map_err(|e| match e {
            CoordinateError::Engine(_) if list.changed() => CliError::runtime(
                "the task list (or a :::: file) was changed in place while it was read; the run goes on with what was enqueued (--resume with the list as it was)",
            ),
            CoordinateError::Engine(e) => cli_error(e),
            CoordinateError::Journal { .. } => CliError::runtime(e.to_string()),
            e => CliError::input(e.to_string()),
        })
    })?;
    printer.lock().unwrap_or_else(|e| e.into_inner()).flush();
    if crate::output::take_stderr_mid_line() {
        eprintln!();
    }
    let s = &outcome.summary;
    if settings.json {
        let value = serde_json::json!({
            "run": outcome.run,
            "complete": outcome.complete,
            "halted": outcome.halted.map(|on| match on {
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
            "failed_tasks": outcome.failed_tasks,
            "journal": outcome.journal.display().to_string(),
            "exit": outcome.exit,
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
    }
    eprintln!(
        "sturdy: run {}: {} tasks, {} succeeded, {} gave up, {} running, {} waiting; {} attempts ({} failed, {} stale); journal {}",
        outcome.run,
        s.tasks,
        s.succeeded,
        s.gave_up,
        s.running,
        s.waiting,
        s.attempts,
        s.failed_attempts,
        s.stale,
        outcome.journal.display()
    );
    Ok(outcome.exit)
}

/// The coordinator reads the task list as it goes: a task's text is read back from the
/// list (by line number, each block checked against its CRC) when it is enqueued,
/// reopened or written to the joblog.
impl sturdy_farm::coordinator::TaskSource for TaskList {
    fn len(&self) -> usize {
        Self::len(self)
    }

    fn number_at(&self, i: usize) -> Option<TaskId> {
        Self::number_at(self, i).map(TaskId)
    }

    fn text(&self, task: TaskId) -> Option<Vec<u8>> {
        self.with_command(task.0, |c| c.as_bytes().to_vec())
    }
}

/// Prints what the coordinator of run `name` says while it runs.
/// `--metrics-listen` on the coordinator: serves `m` (the local farm's families) on
/// `addr`, and ticks its liveness every second from the coordinator's runtime; gives back
/// the ticker.
async fn serve_metrics(
    m: &FarmMetrics,
    addr: std::net::SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, CliError> {
    let bound = m.serve(addr).await?;
    eprintln!("sturdy: serving the run's metrics on http://{bound}/metrics, /livez and /readyz");
    let m = m.clone();
    Ok(tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            m.tick();
        }
    }))
}

/// Feeds the coordinator's projection into the metrics: every journal line's verdict
/// (`ended` → its outcome, `stale` → stale), the running gauge and the task counters;
/// a drain, halt or SIGINT stops `/readyz`.
fn observe(m: &FarmMetrics, note: &Note<'_>) {
    match note {
        Note::Recorded { line, summary } => {
            let c: Vec<&str> = line.split('\t').collect();
            let verdict = match (c.get(2).copied(), c.get(7).copied()) {
                (Some("ended"), Some("done")) => Some("done"),
                (Some("ended"), Some("retry")) => Some("retry"),
                (Some("ended"), Some("gave_up")) => Some("gave_up"),
                (Some("stale"), _) => Some("stale"),
                _ => None,
            };
            if let Some(v) = verdict {
                m.journaled(v);
            }
            m.set_running(summary.running);
            m.tasks_ended_so_far(summary.succeeded, summary.gave_up);
        }
        Note::Draining | Note::Halting { .. } | Note::Stopping { .. } => {
            m.stopped_dispatching(false);
        }
        _ => {}
    }
}

fn print_note(name: &str, note: &Note<'_>) {
    // A task's stderr printed just before may end mid-line: sturdy's own line starts anew.
    if !matches!(note, Note::Recorded { .. }) && crate::output::take_stderr_mid_line() {
        eprintln!();
    }
    match note {
        Note::Enqueued {
            url,
            tasks,
            queued,
            recorded,
        } => eprintln!(
            "sturdy: run {name} at {url}: {tasks} tasks ({queued} queued, {recorded} already recorded); waiting for agents (`sturdy agent --engine {url} --run {name} --workers N`)"
        ),
        Note::Reopened { tasks } => eprintln!(
            "sturdy: --retry-failed: {tasks} given-up task(s) reopened with a fresh attempt budget"
        ),
        Note::Retexted {
            tasks,
            running,
            amended,
        } => {
            eprintln!(
                "sturdy: --resume-failed: {tasks} task(s) have a new command; those that had not succeeded run under it (earlier commands kept in {})",
                amended.display()
            );
            eprintln!(
                "sturdy: --resume-failed: counted from the waiting and running tasks' work messages: the engine keeps no command of a finished task (given-up ones run again under the new list's, succeeded ones are kept)"
            );
            if *running > 0 {
                eprintln!(
                    "sturdy: --resume-failed: {running} of them run now under their earlier command; if that attempt does not succeed, the next runs the new one"
                );
            }
        }
        Note::Progress(s) => eprintln!(
            "sturdy: {}/{} succeeded, {} gave up, {} running, {} waiting",
            s.succeeded, s.tasks, s.gave_up, s.running, s.waiting
        ),
        Note::FollowError(e) => eprintln!("sturdy: {e}; following again"),
        Note::Stopping { interrupts: n } => eprintln!(
            "sturdy: {} run {name} (SIGINT {n}); `--resume` continues it",
            if *n >= 2 { "aborting" } else { "draining" },
        ),
        Note::Draining => eprintln!(
            "sturdy: draining run {name} (SIGINT): the agents start nothing more and the running attempts finish; a second SIGINT aborts; `--resume` continues it"
        ),
        Note::Halting { on, count, now } => eprintln!(
            "sturdy: --halt: {count} task(s) {}; {}",
            match on {
                HaltOn::Fail => "failed for good",
                HaltOn::Success => "succeeded",
                HaltOn::Done => "finished",
            },
            if *now {
                "aborting the run: the agents kill the running commands"
            } else {
                "draining the run: the agents start nothing more; waiting for the running ones"
            }
        ),
        Note::Requeued(t) => eprintln!(
            "sturdy: task {} was claimed but its work message was gone (a stale acknowledgement?) for two ack waits: enqueued again",
            t.0
        ),
        Note::ReconcileFailed(e) => eprintln!("sturdy: reconcile: {e}"),
        Note::JournalFailed { path, error } => eprintln!(
            "sturdy: writing {} failed: {error} (the engine's journal is intact)",
            path.display()
        ),
        Note::AgentsNotTold(e) => {
            eprintln!("sturdy: could not tell the agents the run is over: {e}");
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// The host agent.

/// `sturdy agent --engine URL --run NAME (--workers N | --slots LIST)
/// [--health-gate] [--load L] [--memfree SIZE]`.
pub(crate) fn agent(args: &AgentArgs) -> Result<i32, CliError> {
    let slots: Vec<Slot> = match (&args.slots, args.workers) {
        (Some(list), _) => list
            .iter()
            .map(|s| parse_slot(s))
            .collect::<Result<_, _>>()?,
        (None, Some(n)) => (0..n)
            .map(|i| Slot {
                label: i.to_string(),
                cuda_visible_devices: None,
            })
            .collect(),
        (None, None) => {
            return Err(CliError::input(
                "sturdy agent needs --workers N or --slots LIST",
            ));
        }
    };
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
    let mut config = HostConfig::new(host.clone(), slots, out_dir);
    config.health_gate = args.health_gate;
    config.load = args.load;
    config.memfree = args.memfree;
    // The fence first, while this process has one thread: if the agent dies (SIGKILL
    // included), it kills every command the agent started and what they started.
    let mark = process_fence::agent_mark(&process_fence::run_mark(&root));
    let _fence = Fence::start(&mark).map_err(|e| CliError::runtime(e.to_string()))?;
    config.owner_mark = Some(mark);
    let rt = runtime()?;
    rt.block_on(async {
        let js = connect(&args.engine, None).await?;
        let opened = if args.wait_for_run {
            match js.open_run(&args.run_name).await {
                Err(EngineError::NoSuchRun { .. }) => {
                    eprintln!(
                        "sturdy agent {host}: waiting for run {} to be created at {}",
                        args.run_name,
                        js.url()
                    );
                    js.wait_for_run(&args.run_name, Duration::from_secs(5)).await
                }
                opened => opened,
            }
        } else {
            js.open_run(&args.run_name).await
        };
        let (run, meta) = opened.map_err(cli_error)?;
        if args.wait_for_run {
            // A run that exists but was stopped (finished, drained or halted by its last
            // coordinator) is waited for too: an agent started before a coordinator that
            // resumes it (`--resume`, `--retry-failed`, `--resume-failed`) would otherwise
            // see the old stop and exit at once.
            let mut said = false;
            loop {
                match run.control().await {
                    Ok(sturdy_farm::agent::Control::Run) => break,
                    Ok(_) if !said => {
                        said = true;
                        eprintln!(
                            "sturdy agent {host}: run {} is stopped (finished, drained or halted); waiting for a coordinator to resume it",
                            run.name()
                        );
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let agent = host::prepare(&run, &meta, &config, sturdy_probe::Probe::new)
            .await
            .map_err(host_error)?;
        eprintln!(
            "sturdy agent {host}: run {} at {}, {} slots",
            run.name(),
            js.url(),
            agent.config().slots.len()
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
            Event::HealthGateClosed { slot } => {
                eprintln!(
                    "sturdy agent: slot {slot}: health gate closed (the host or its GPU is unhealthy, or over --load or under --memfree), it pulls nothing for now"
                );
            }
            Event::GaveUpOnCrashes { task, crashes } => eprintln!(
                "sturdy agent: task {} gave up: its claims were lost {crashes} times",
                task.0
            ),
            _ => {}
        };
        let summary = agent.run(&events).await.map_err(host_error)?;
        eprintln!(
            "sturdy agent {host}: stopped; {} attempts ({} done, {} failed, {} stale), {} finished tasks skipped",
            summary.attempts, summary.done, summary.failed, summary.stale, summary.skipped
        );
        Ok(0)
    })
}

/// The host agent's errors as the CLI's: the engine's as [`cli_error`] says, the run's
/// settings a failure of the run (exit 1), the agent's refusal of its config bad input.
fn host_error(e: HostError) -> CliError {
    match e {
        HostError::Engine(e) => cli_error(e),
        HostError::Settings(m) => CliError::runtime(m),
        e => CliError::input(e.to_string()),
    }
}
