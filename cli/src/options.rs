//! Command-line options, the `--config FILE` TOML file, and the resolved settings.
//!
//! Every `run` option can also be given in the config file under its long name
//! (`max-attempts = 5`, `task-timeout = "30s"`, `slots = ["gpu:0", "gpu:1"]`); a
//! flag on the command line wins over the file, the file over the default. Unknown keys
//! in the file are errors.
//!
//! Durations take a unit (`250ms`, `30s`, `2m`, `1h 30m`); a bare number means seconds,
//! as in GNU parallel's `--timeout`. A duration is at most [`MAX_DURATION`] (a year);
//! the timing options whose tiny values would leave the run doing nothing useful have a
//! floor ([`MIN_TASK_TIMEOUT`], [`MIN_HEARTBEAT_INTERVAL`], [`MIN_CHECKPOINT_INTERVAL`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::error::CliError;
use crate::run::MAX_WORKERS;
use crate::tasks::Source;

/// sturdy: keep a batch of jobs running through crashes, hangs and failures.
#[derive(Debug, Parser)]
#[command(name = "sturdy", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every command of TASKS (one per line) on fault-tolerant workers.
    Run(Box<RunArgs>),
    /// Print the host's health report (CPU, memory, disks, GPUs) judged by the core's
    /// rules.
    Probe(ProbeArgs),
    /// A host agent of a multi-host run: pulls the run's tasks from the NATS JetStream
    /// server for its free slots and runs them.
    Agent(AgentArgs),
    /// Simulate a multi-host farm in virtual time and report what its settings cost.
    Simulate(Box<crate::simulate_cmd::SimulateArgs>),
    /// A worker process (started by `sturdy run`; not for direct use).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// `sturdy worker` arguments.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Heartbeat interval, in ms.
    #[arg(long, default_value_t = 1000)]
    pub(crate) heartbeat_ms: u64,
}

/// Output format of `sturdy probe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProbeFormat {
    /// A table for people.
    Table,
    /// One JSON object.
    Json,
    /// The Prometheus text exposition format.
    Prometheus,
}

/// `sturdy probe` arguments.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Print JSON.
    #[arg(long, conflicts_with = "prometheus")]
    pub(crate) json: bool,
    /// Print the Prometheus text format.
    #[arg(long)]
    pub(crate) prometheus: bool,
    /// Sample again every INTERVAL (for example `5s`; at least 1s) until interrupted.
    /// With `--json`, one JSON object per line (NDJSON). Not with `--prometheus`: a
    /// scraper wants one exposition per scrape, which `--listen` serves.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_watch, conflicts_with = "prometheus")]
    pub(crate) watch: Option<Duration>,
    /// Serve the report over HTTP on ADDR (`127.0.0.1:9464`; port 0 picks a free one,
    /// printed on stderr) instead of printing it: `/metrics` (the Prometheus text of the
    /// latest sample), `/livez` (200 while the sampling loop is alive), `/readyz` (503
    /// while the host is critical or not sampled yet). Samples every `--watch` interval
    /// (default 5s).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["json", "prometheus"])]
    pub(crate) listen: Option<std::net::SocketAddr>,
}

/// Jitter applied to the retry backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum JitterArg {
    /// The exact exponential delay.
    None,
    /// Uniform in [0, delay] (AWS's "full jitter"; the default).
    Full,
    /// delay/2 + uniform in [0, delay/2].
    Equal,
    /// Decorrelated jitter.
    Decorrelated,
}

/// `sturdy run` arguments; every one but TASKS may also come from `--config`.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RunArgs {
    /// TASKS: a file with one shell command per line (`#` comments and blank lines
    /// skipped; `-` reads standard input). Or argument mode, as GNU parallel: COMMAND
    /// `:::` ARGS... (`:::` ARGS... again for more input sources) or COMMAND `::::`
    /// FILE... (one argument per line), every combination run once; COMMAND holds
    /// replacement strings (`{}` `{.}` `{/}` `{//}` `{/.}` `{#}` `{%}` `{1}`...), or
    /// gets the arguments appended.
    #[arg(value_name = "TASKS | COMMAND ::: ARGS", required = true, num_args = 1..)]
    #[serde(skip)]
    pub(crate) input: Vec<String>,
    /// Argument mode: read the arguments from FILE, one per line (`:::: FILE`); may be
    /// repeated.
    #[arg(long = "arg-file", short = 'a', value_name = "FILE")]
    #[serde(skip)]
    pub(crate) arg_file: Vec<PathBuf>,
    /// Argument mode: split each argument into columns at this regular expression
    /// (`{1}`, `{2}`... are the columns).
    #[arg(long, value_name = "REGEX")]
    pub(crate) colsep: Option<String>,
    /// Argument mode: quote the words of COMMAND for `sh` (parallel's `-q`): they are a
    /// command and its arguments, not shell code.
    #[arg(long, short = 'q')]
    #[serde(default)]
    pub(crate) quote: bool,
    /// Print each command that would run, in dispatch order, and exit; nothing is run
    /// and no state directory is touched.
    #[arg(long)]
    #[serde(default)]
    pub(crate) dry_run: bool,
    /// Print the tasks' output in task order (by default, in the order tasks finish).
    #[arg(long, short = 'k')]
    #[serde(default)]
    pub(crate) keep_order: bool,
    /// Keep every attempt's stdout and stderr in the state directory (`out/T.A.out`,
    /// `.err`). By default, once a task has ended and its output was printed, only the
    /// last 4 KiB of its last attempt's stderr stay.
    #[arg(long)]
    #[serde(default)]
    pub(crate) keep_output: bool,
    /// Print each line of the tasks' output as soon as it is complete (a task's last
    /// partial line when it ends), instead of each task's output whole when it ends;
    /// an attempt that is retried has printed its lines too.
    #[arg(long, conflicts_with_all = ["keep_order", "json"])]
    #[serde(default)]
    pub(crate) line_buffer: bool,
    /// Prefix each line of a task's output with its arguments (its command in
    /// command-list mode) and a tab.
    #[arg(long)]
    #[serde(default)]
    pub(crate) tag: bool,
    /// Prefix each line of a task's output with STR (replacement strings filled in)
    /// and a tab.
    #[arg(long, value_name = "STR")]
    pub(crate) tagstring: Option<String>,
    /// Also save each task's final stdout and stderr in GNU parallel's layout:
    /// `DIR/1/ARG1/2/ARG2/stdout`, `.../stderr`, `.../seq` (a `/` in an argument
    /// written `\_`).
    #[arg(long, value_name = "DIR")]
    pub(crate) results: Option<PathBuf>,
    /// Append one line per finished task to FILE in GNU parallel's `--joblog` format
    /// (the state directory keeps its own journal).
    #[arg(long, value_name = "FILE")]
    pub(crate) joblog: Option<PathBuf>,
    /// Stop early: `now|soon,fail=N|fail=N%|success=N|success=N%|done=N|done=N%`, or
    /// `0`, `1`, `2`, `-1`, `-2` (GNU parallel's meanings); `now` kills the running
    /// tasks, `soon` lets them finish.
    #[arg(long, value_name = "WHEN,WHY", value_parser = parse_halt)]
    #[serde(default, deserialize_with = "de_halt")]
    pub(crate) halt: Option<Halt>,
    /// Wait this long between the starts of two tasks.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) delay: Option<Duration>,
    /// GNU parallel's `--timeout`: a duration (as `--task-timeout`), or `N%`: kill an
    /// attempt that runs longer than N % of the median runtime of the tasks that
    /// succeeded (once 3 have).
    #[arg(long, value_name = "DURATION|N%", value_parser = parse_timeout,
          conflicts_with = "task_timeout")]
    #[serde(default, deserialize_with = "de_timeout")]
    pub(crate) timeout: Option<Timeout>,
    /// Dispatch the tasks in a random order (task numbers stay those of the input).
    /// The shuffled order is held in memory: 4 bytes a task.
    #[arg(long)]
    #[serde(default)]
    pub(crate) shuf: bool,
    /// Run the commands at this niceness (`nice -n N`, -20..=19).
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    pub(crate) nice: Option<i32>,
    /// Start no task while the 1-minute load average is above LOAD (a number, or N% of
    /// the CPUs); sampled every 2 s. With `--health-gate`, one more reason to close it.
    #[arg(long, value_name = "LOAD", value_parser = parse_load)]
    #[serde(default, deserialize_with = "de_load")]
    pub(crate) load: Option<f64>,
    /// Start no task while less than SIZE of memory is available (`2G`, `512M`; K M G
    /// T P are powers of 1024, k m g t p of 1000); sampled every 2 s. With
    /// `--health-gate`, one more reason to close it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    #[serde(default, deserialize_with = "de_size")]
    pub(crate) memfree: Option<u64>,
    /// Settings file (TOML) with the same keys as the long options.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Number of workers, 1 to 256 (default: the number of CPUs, at most 256); as in
    /// GNU parallel, `N%` is N % of the CPUs, `+N` and `-N` the CPUs plus or minus N
    /// (at least 1).
    #[arg(long, short = 'j', value_name = "N", conflicts_with = "slots",
          allow_negative_numbers = true, value_parser = parse_workers)]
    pub(crate) workers: Option<u32>,
    /// One worker per slot, comma-separated: `cpu`, or `gpu:IDS` which sets
    /// CUDA_VISIBLE_DEVICES=IDS for that worker (IDS like `0` or `0+1` for two devices);
    /// at most 256 slots.
    #[arg(long, value_name = "SLOTS", value_delimiter = ',')]
    pub(crate) slots: Option<Vec<String>>,
    /// Attempts per task before it fails for good (default 3, the original's);
    /// `--retries N` (GNU parallel's: at most N runs of a job) is the same.
    #[arg(long, alias = "retries", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) max_attempts: Option<u32>,
    /// Crashes of the worker under a task (its process killed, silent, its lease
    /// lapsed) that the task survives without using an attempt (default 10, after Dask's
    /// `allowed-failures`); one more fails it for good as `worker_crash`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub(crate) max_worker_crashes: Option<u32>,
    /// First retry delay (default 1s); the delay doubles each retry.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) backoff_base: Option<Duration>,
    /// Longest retry delay (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) backoff_cap: Option<Duration>,
    /// Jitter on the retry delay (default full).
    #[arg(long, value_name = "KIND")]
    pub(crate) jitter: Option<JitterArg>,
    /// Kill an attempt's whole process group after this long (default: no limit; at
    /// least 10ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) task_timeout: Option<Duration>,
    /// How long a timed-out command's process group has between SIGTERM and SIGKILL
    /// (default 2s; 0 sends SIGKILL at once; at most 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) kill_grace: Option<Duration>,
    /// How often a worker heartbeats (default 1s; at least 10ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) heartbeat_interval: Option<Duration>,
    /// A worker silent this long is declared crashed (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration,
          conflicts_with = "phi_threshold")]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) heartbeat_timeout: Option<Duration>,
    /// Use the phi accrual detector instead, suspecting a worker above this phi (8 to 12
    /// is usual).
    #[arg(long, value_name = "PHI")]
    pub(crate) phi_threshold: Option<f64>,
    /// Consecutive failures on one worker that open its circuit breaker (default 3, the
    /// original's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) breaker_failures: Option<u32>,
    /// How long an open breaker keeps work away from its worker before a trial task
    /// (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) breaker_open: Option<Duration>,
    /// State directory: journal, checkpoints, command outputs (default
    /// `.sturdy/<fingerprint of the task list>`).
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Continue the run recorded in the state directory: run only what has not
    /// finished.
    #[arg(long)]
    #[serde(default)]
    pub(crate) resume: bool,
    /// Fix and re-run (GNU parallel's `--resume-failed`): continue the run in the state
    /// directory with this task list, which may differ from the recorded one in its
    /// commands (not in its number of tasks): tasks that succeeded are not run again;
    /// those that failed for good or never finished run under their new command. The
    /// earlier commands are kept in `STATE/amended.tsv`, so that later `--resume`s of
    /// the new list read the whole journal. Implies `--resume --retry-failed`.
    #[arg(long)]
    #[serde(default)]
    pub(crate) resume_failed: bool,
    /// With --resume, run again the tasks that had failed for good.
    #[arg(long, requires = "resume")]
    #[serde(default)]
    pub(crate) retry_failed: bool,
    /// Dispatch nothing new while the host's health assessment is critical (sampled every
    /// 2 s: CPU, memory or disk above 95 %, a GPU fault); a worker whose GPU is degraded
    /// gets work last, a critical one none. A farm that saturates every CPU throttles
    /// itself under this gate.
    #[arg(long)]
    #[serde(default)]
    pub(crate) health_gate: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    #[serde(default)]
    pub(crate) json: bool,
    /// Serve the run's counters over HTTP on ADDR while it runs (`127.0.0.1:9465`; port
    /// 0 picks a free one, printed on stderr): `/metrics` (Prometheus text:
    /// `sturdy_farm_*`), `/livez` (200 while the master's loop ticks), `/readyz` (200
    /// while it dispatches; 503 once it drains, halts or stops on a storage fault).
    #[arg(long, value_name = "ADDR")]
    #[serde(default)]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// Write a checkpoint this often (default 10s; at least 10ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) checkpoint_interval: Option<Duration>,
    /// Checkpoints kept (default 5, the original's).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) keep_checkpoints: Option<u32>,
    /// Hidden, for tests: the most tasks the master holds at once (its window of the
    /// task list; default and largest 4096).
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u32).range(1..=4096))]
    #[serde(default)]
    pub(crate) window: Option<u32>,
    /// Run over many hosts: coordinate run `--run NAME` on the NATS JetStream server at
    /// URL (`nats://HOST:PORT`); host agents (`sturdy agent`) run the tasks. Without it
    /// the run is local.
    #[arg(long, value_name = "URL", requires = "run_name")]
    #[serde(skip)]
    pub(crate) engine: Option<String>,
    /// The multi-host run's name (`A-Z a-z 0-9 _ -`, at most 64 bytes); with `--engine`.
    #[arg(long = "run", value_name = "NAME", requires = "engine")]
    #[serde(skip)]
    pub(crate) run_name: Option<String>,
}

/// `sturdy agent` arguments.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The NATS JetStream server (`nats://HOST:PORT`).
    #[arg(long, value_name = "URL")]
    pub(crate) engine: String,
    /// The run to work for (created by `sturdy run TASKS --engine URL --run NAME`).
    #[arg(long = "run", value_name = "NAME")]
    pub(crate) run_name: String,
    /// Run N attempts at a time (slots `0`..`N-1`).
    #[arg(long, short = 'j', value_name = "N", conflicts_with = "slots",
          required_unless_present = "slots", value_parser = parse_workers)]
    pub(crate) workers: Option<u32>,
    /// Named slots, comma-separated: `cpu` or `gpu:IDS` (sets CUDA_VISIBLE_DEVICES).
    #[arg(long, value_name = "SLOTS", value_delimiter = ',')]
    pub(crate) slots: Option<Vec<String>>,
    /// Where the commands' output goes (default `.sturdy-agent/NAME`).
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// This host's name in the records (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub(crate) host: Option<String>,
    /// Pull nothing new while the host's health assessment is critical (sampled every
    /// 2 s: CPU, memory or disk above 95 %, a GPU fault); a `gpu:IDS` slot also pulls
    /// nothing while its GPU is critical. The run's `--health-gate` (given to the
    /// coordinator) does the same on every host.
    #[arg(long)]
    pub(crate) health_gate: bool,
    /// Pull nothing new while the 1-minute load average is above LOAD (a number, or N%
    /// of the CPUs); sampled every 2 s. The run's `--load` applies too (the lower wins).
    #[arg(long, value_name = "LOAD", value_parser = parse_load)]
    pub(crate) load: Option<f64>,
    /// Pull nothing new while less than SIZE of memory is available (`2G`, `512M`; K M
    /// G T P are powers of 1024, k m g t p of 1000); sampled every 2 s. The run's
    /// `--memfree` applies too (the higher wins).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) memfree: Option<u64>,
    /// Wait for run NAME to be created (by `sturdy run TASKS --engine URL --run NAME`)
    /// instead of exiting 2 when it does not exist: agents may start before their
    /// coordinator. The agent starts pulling as soon as the run exists (and, for a run
    /// that was stopped, finished, drained or halted, once a coordinator resumes it).
    #[arg(long)]
    pub(crate) wait_for_run: bool,
}

/// The longest duration any option takes: 365 days. Longer ones are refused rather
/// than left to overflow the clocks' arithmetic.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn at_most_a_year(s: &str, d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!("`{s}` is too long: a duration is at most 365 days"));
    }
    Ok(d)
}

/// Parses a duration: a humantime string (`250ms`, `2m 30s`) or a bare number of
/// seconds (`1.5`), at most [`MAX_DURATION`].
///
/// # Errors
/// Anything else, a negative or non-finite number, or more than [`MAX_DURATION`].
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs > MAX_DURATION.as_secs_f64() {
            return at_most_a_year(s, Duration::MAX);
        }
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{s}` is not a duration: seconds must be finite and >= 0"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 250ms, 30s, 2m"))
        .and_then(|d| at_most_a_year(s, d))
}

/// A duration in the config file: a string as on the command line, or a number of
/// seconds.
fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    struct DurationVisitor;
    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration like \"30s\" or \"250ms\", or a number of seconds")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            parse_duration(&v.to_string()).map_err(E::custom)
        }
    }
    d.deserialize_any(DurationVisitor).map(Some)
}

/// The shortest `--task-timeout`: a shorter one kills every command before `sh` has
/// started it.
pub(crate) const MIN_TASK_TIMEOUT: Duration = Duration::from_millis(10);
/// The shortest `--heartbeat-interval`: a shorter one keeps the master busy reading
/// heartbeats.
pub(crate) const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest `--checkpoint-interval`: a shorter one writes checkpoints back to back
/// instead of running tasks.
pub(crate) const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);
/// The default `--max-worker-crashes`: a task of 300 ms in a storm that kills a random
/// one of 6 workers every 100 ms is under a crash 4 times in 10; eleven in a row is
/// rare enough that `cli/bench/crash_storm.sh` fails no task.
pub(crate) const DEFAULT_MAX_WORKER_CRASHES: u32 = 10;

/// The default `--kill-grace`.
pub(crate) const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// The longest `--kill-grace`.
pub(crate) const MAX_KILL_GRACE: Duration = Duration::from_secs(3600);

/// The rule every way of giving the number of workers is checked by.
fn workers_rule() -> String {
    format!("must be in 1..={MAX_WORKERS} (a run takes at most {MAX_WORKERS} workers)")
}

/// The number of CPUs that `-j N%`, `-j +N` and `-j -N` count from.
fn cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Parses `--workers`: a number in `1..=MAX_WORKERS`, or GNU parallel's `N%` (of the
/// CPUs, rounded down, at least 1), `+N` or `-N` (the CPUs plus or minus N, at least
/// 1).
///
/// # Errors
/// Not one of these forms, or a result out of range.
pub(crate) fn parse_workers(s: &str) -> Result<u32, String> {
    workers_from(s, cpus())
}

fn workers_from(s: &str, cpus: u64) -> Result<u32, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "not a number of workers (N, N%, +N or -N); {}",
            workers_rule()
        )
    };
    let n: u64 = if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.parse().map_err(|_| bad())?;
        if !(p.is_finite() && p > 0.0) {
            return Err(bad());
        }
        ((cpus as f64 * p / 100.0).floor() as u64).max(1)
    } else if let Some(plus) = t.strip_prefix('+') {
        cpus.saturating_add(plus.parse::<u64>().map_err(|_| bad())?)
    } else if let Some(minus) = t.strip_prefix('-') {
        cpus.saturating_sub(minus.parse::<u64>().map_err(|_| bad())?)
            .max(1)
    } else {
        t.parse::<u64>().map_err(|_| bad())?
    };
    match u32::try_from(n) {
        Ok(n) if (1..=MAX_WORKERS as u32).contains(&n) => Ok(n),
        _ => Err(workers_rule()),
    }
}

pub(crate) use sturdy_farm::halt::{Halt, HaltAt, HaltOn};

/// Parses `--halt` (GNU parallel's forms); `Ok(None)` is `never` / `0`.
///
/// # Errors
/// Any other form.
pub(crate) fn parse_halt(s: &str) -> Result<Halt, String> {
    let bad = || {
        format!(
            "`{s}` is not a halt condition: use now|soon,fail=N|fail=N%|success=N|success=N%|done=N|done=N%, or 1, 2, -1, -2"
        )
    };
    let legacy = |now, on| Halt {
        now,
        on,
        at: HaltAt::Count(1),
    };
    match s.trim() {
        "1" => return Ok(legacy(false, HaltOn::Fail)),
        "2" => return Ok(legacy(true, HaltOn::Fail)),
        "-1" => return Ok(legacy(false, HaltOn::Success)),
        "-2" => return Ok(legacy(true, HaltOn::Success)),
        _ => {}
    }
    let (when, why) = s.trim().split_once(',').ok_or_else(bad)?;
    let now = match when {
        "now" => true,
        "soon" => false,
        _ => return Err(bad()),
    };
    let (what, n) = why.split_once('=').ok_or_else(bad)?;
    let on = match what {
        "fail" => HaltOn::Fail,
        "success" => HaltOn::Success,
        "done" => HaltOn::Done,
        _ => return Err(bad()),
    };
    let at = if let Some(p) = n.strip_suffix('%') {
        match p.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => HaltAt::Percent(p),
            _ => return Err(format!("`{s}`: a percentage must be in (0, 100]")),
        }
    } else {
        match n.parse::<u64>() {
            Ok(n) if n >= 1 => HaltAt::Count(n),
            _ => return Err(format!("`{s}`: a count must be a whole number >= 1")),
        }
    };
    Ok(Halt { now, on, at })
}

fn de_halt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Halt>, D::Error> {
    let s = String::deserialize(d)?;
    parse_halt(&s).map(Some).map_err(serde::de::Error::custom)
}

/// `--timeout`: fixed, or relative to the median runtime of successful tasks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Timeout {
    /// A fixed limit (as `--task-timeout`).
    Fixed(Duration),
    /// This percentage of the median runtime of the tasks that succeeded.
    Percent(f64),
}

/// Parses `--timeout`: a duration or `N%` (N > 0).
///
/// # Errors
/// Neither form.
pub(crate) fn parse_timeout(s: &str) -> Result<Timeout, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        return match p.parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 => Ok(Timeout::Percent(p)),
            _ => Err(format!("`{s}`: the percentage must be a number > 0")),
        };
    }
    parse_duration(s).map(Timeout::Fixed)
}

fn de_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Timeout>, D::Error> {
    let s = String::deserialize(d)?;
    parse_timeout(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Parses `--load`: a load average, or `N%` of the CPUs.
///
/// # Errors
/// Not a positive finite number.
pub(crate) fn parse_load(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, pct) = match t.strip_suffix('%') {
        Some(p) => (p, true),
        None => (t, false),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(if pct { v * cpus() as f64 / 100.0 } else { v }),
        _ => Err(format!(
            "`{s}` is not a load: a number > 0, or N% of the CPUs"
        )),
    }
}

fn de_load<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let s = String::deserialize(d)?;
    parse_load(&s).map(Some).map_err(serde::de::Error::custom)
}

/// Parses `--memfree`: bytes, with GNU parallel's suffixes (K M G T P: powers of 1024;
/// k m g t p: of 1000).
///
/// # Errors
/// Not a number with an optional suffix, or more than `u64::MAX` bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || format!("`{s}` is not a size: a number with an optional K, M, G, T or P");
    let (num, mult): (&str, f64) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c {
                'K' => 1024f64,
                'M' => 1024f64.powi(2),
                'G' => 1024f64.powi(3),
                'T' => 1024f64.powi(4),
                'P' => 1024f64.powi(5),
                'k' => 1e3,
                'm' => 1e6,
                'g' => 1e9,
                't' => 1e12,
                'p' => 1e15,
                _ => return Err(bad()),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * mult;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    parse_size(&s).map(Some).map_err(serde::de::Error::custom)
}

/// Refuses a duration option below its floor, naming the option and the floor.
fn at_least(name: &str, d: Duration, floor: Duration) -> Result<Duration, CliError> {
    if d < floor {
        return Err(CliError::input(format!(
            "invalid value {} for '{name}': must be at least {}",
            humantime::format_duration(d),
            humantime::format_duration(floor)
        )));
    }
    Ok(d)
}

/// The shortest `sturdy probe --watch` interval: a CPU reading needs a gap between two
/// samples, and a report per second is as often as a person reads one.
pub(crate) const MIN_WATCH: Duration = Duration::from_secs(1);

/// Parses `--watch`: a duration of at least [`MIN_WATCH`].
///
/// # Errors
/// Not a duration, or shorter than [`MIN_WATCH`].
pub(crate) fn parse_watch(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_WATCH {
        return Err(format!(
            "`{s}` is too short: watch at most once a second (1s)"
        ));
    }
    Ok(d)
}

/// A worker slot.
pub(crate) use sturdy_farm::local::Slot;

/// Parses one `--slots` entry.
///
/// # Errors
/// Anything but `cpu` or `gpu:IDS` with IDS digits joined by `+`.
pub(crate) fn parse_slot(s: &str) -> Result<Slot, CliError> {
    let s = s.trim();
    if s == "cpu" {
        return Ok(Slot {
            label: "cpu".into(),
            cuda_visible_devices: None,
        });
    }
    if let Some(ids) = s.strip_prefix("gpu:") {
        let parts: Vec<&str> = ids.split('+').collect();
        if !parts.is_empty()
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Ok(Slot {
                label: s.to_owned(),
                cuda_visible_devices: Some(parts.join(",")),
            });
        }
    }
    Err(CliError::input(format!(
        "invalid value '{s}' for '--slots': each slot is `cpu` or `gpu:IDS` (e.g. gpu:0, gpu:0+1)"
    )))
}

/// How a dead worker is detected from its heartbeats.
pub(crate) use sturdy_farm::local::Detector;

/// Where the tasks come from.
#[derive(Clone, Debug)]
pub(crate) enum InputSpec {
    /// A task list file (`-`: stdin).
    List(PathBuf),
    /// Argument mode: the template's words and the input sources.
    Arguments {
        words: Vec<String>,
        sources: Vec<Source>,
    },
}

/// Splits the positional words into a task list file or argument mode. `arg_files`
/// (`-a`) are sources before those of the command line.
///
/// # Errors
/// Several words without `:::`/`::::`/`-a`, or a `::::` followed by no file.
pub(crate) fn input_spec(words: &[String], arg_files: &[PathBuf]) -> Result<InputSpec, CliError> {
    let first = words.iter().position(|w| w == ":::" || w == "::::");
    let Some(first) = first else {
        if arg_files.is_empty() {
            return match words {
                [one] => Ok(InputSpec::List(PathBuf::from(one))),
                _ => Err(CliError::input(format!(
                    "give one TASKS file, or a command and its arguments after ::: (e.g. sturdy run 'gzip {{}}' ::: a b); got {} words and no :::",
                    words.len()
                ))),
            };
        }
        return Ok(InputSpec::Arguments {
            words: words.to_vec(),
            sources: arg_files.iter().cloned().map(Source::File).collect(),
        });
    };
    let mut sources: Vec<Source> = arg_files.iter().cloned().map(Source::File).collect();
    let mut mode = "";
    for w in &words[first..] {
        match w.as_str() {
            ":::" => {
                mode = ":::";
                sources.push(Source::Args(Vec::new()));
            }
            "::::" => {
                mode = "::::";
            }
            _ if mode == ":::" => {
                if let Some(Source::Args(a)) = sources.last_mut() {
                    a.push(w.clone());
                }
            }
            _ => sources.push(Source::File(PathBuf::from(w))),
        }
    }
    if mode == "::::" && !matches!(sources.last(), Some(Source::File(_))) {
        return Err(CliError::input(
            "'::::' must be followed by one or more files",
        ));
    }
    Ok(InputSpec::Arguments {
        words: words[..first].to_vec(),
        sources,
    })
}

/// The resolved settings of a run.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) input: InputSpec,
    /// `--colsep`, compiled.
    pub(crate) colsep: Option<regex::Regex>,
    pub(crate) quote: bool,
    pub(crate) dry_run: bool,
    pub(crate) keep_order: bool,
    pub(crate) keep_output: bool,
    pub(crate) line_buffer: bool,
    pub(crate) tag: bool,
    pub(crate) tagstring: Option<String>,
    pub(crate) results: Option<PathBuf>,
    pub(crate) joblog: Option<PathBuf>,
    pub(crate) halt: Option<Halt>,
    pub(crate) delay: Option<Duration>,
    /// `--timeout N%`.
    pub(crate) timeout_percent: Option<f64>,
    pub(crate) shuf: bool,
    pub(crate) nice: Option<i32>,
    pub(crate) load: Option<f64>,
    pub(crate) memfree: Option<u64>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) max_attempts: u32,
    /// `--max-worker-crashes`.
    pub(crate) max_worker_crashes: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) jitter: JitterArg,
    pub(crate) task_timeout: Option<Duration>,
    /// `--kill-grace`: SIGTERM, then SIGKILL this much later, for a timed-out command.
    pub(crate) kill_grace: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) detector: Detector,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_open: Duration,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) resume: bool,
    pub(crate) retry_failed: bool,
    /// `--resume-failed`.
    pub(crate) resume_failed: bool,
    pub(crate) health_gate: bool,
    pub(crate) json: bool,
    /// `--metrics-listen`.
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) keep_checkpoints: u32,
    /// `--window` (hidden): the most tasks held at once, if set.
    pub(crate) window: Option<u32>,
    /// `--engine URL --run NAME`: coordinate a multi-host run.
    pub(crate) engine: Option<(String, String)>,
}

fn load_config(path: &Path) -> Result<RunArgs, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::input(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| CliError::input(format!("config file {}: {e}", path.display())))
}

fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, CliError> {
    if v < lo || v > hi {
        return Err(CliError::input(format!(
            "invalid value {v} for '{name}': must be in {lo}..={hi}"
        )));
    }
    Ok(v)
}

impl Settings {
    /// Merges the command line over the config file over the defaults, and checks the
    /// result.
    ///
    /// # Errors
    /// An unreadable or malformed config file, an out-of-range value, workers (or slots)
    /// outside `1..=MAX_WORKERS`, a bad slot, a backoff cap below its base, a duration
    /// below its floor (`--task-timeout`, `--heartbeat-interval`,
    /// `--checkpoint-interval`: 10ms) or a `--kill-grace` over an hour, a heartbeat
    /// timeout not above the interval.
    pub(crate) fn resolve(cli: RunArgs) -> Result<Self, CliError> {
        let file = match &cli.config {
            Some(p) => load_config(p)?,
            None => RunArgs::default(),
        };
        macro_rules! pick {
            ($f:ident) => {
                cli.$f.or(file.$f)
            };
        }
        if file.workers.is_some() && file.slots.is_some() {
            return Err(CliError::input(format!(
                "config file {}: give either `workers` or `slots`, not both",
                cli.config.as_deref().unwrap_or(Path::new("")).display()
            )));
        }
        let slots = match (
            cli.workers,
            cli.slots.clone(),
            file.workers,
            file.slots.clone(),
        ) {
            (Some(n), _, _, _) | (None, None, Some(n), None) => {
                if parse_workers(&n.to_string()).is_err() {
                    return Err(CliError::input(format!(
                        "invalid value {n} for '--workers': {}",
                        workers_rule()
                    )));
                }
                vec![
                    Slot {
                        label: "cpu".into(),
                        cuda_visible_devices: None
                    };
                    n as usize
                ]
            }
            (None, Some(s), _, _) | (None, None, _, Some(s)) => {
                if s.is_empty() {
                    return Err(CliError::input("'--slots' names no slot"));
                }
                if s.len() > MAX_WORKERS {
                    return Err(CliError::input(format!(
                        "invalid value for '--slots': {} slots are {} workers; '--workers' {}",
                        s.len(),
                        s.len(),
                        workers_rule()
                    )));
                }
                s.iter().map(|x| parse_slot(x)).collect::<Result<_, _>>()?
            }
            (None, None, None, None) => {
                // A host with more CPUs than a run takes workers gets the most it takes.
                let n = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(MAX_WORKERS);
                vec![
                    Slot {
                        label: "cpu".into(),
                        cuda_visible_devices: None
                    };
                    n
                ]
            }
        };
        let max_attempts =
            check_range("--max-attempts", pick!(max_attempts).unwrap_or(3), 1, 1000)?;
        let max_worker_crashes = check_range(
            "--max-worker-crashes",
            pick!(max_worker_crashes).unwrap_or(DEFAULT_MAX_WORKER_CRASHES),
            0,
            1000,
        )?;
        let backoff_base = pick!(backoff_base).unwrap_or(Duration::from_secs(1));
        let backoff_cap = pick!(backoff_cap).unwrap_or(Duration::from_secs(60).max(backoff_base));
        if backoff_cap < backoff_base {
            return Err(CliError::input(format!(
                "'--backoff-cap' ({backoff_cap:?}) must be >= '--backoff-base' ({backoff_base:?})"
            )));
        }
        let heartbeat_interval = at_least(
            "--heartbeat-interval",
            pick!(heartbeat_interval).unwrap_or(Duration::from_secs(1)),
            MIN_HEARTBEAT_INTERVAL,
        )?;
        // A detector named on the command line replaces the file's, whichever it is.
        let (heartbeat_timeout, phi_threshold) =
            if cli.heartbeat_timeout.is_some() || cli.phi_threshold.is_some() {
                (cli.heartbeat_timeout, cli.phi_threshold)
            } else {
                (file.heartbeat_timeout, file.phi_threshold)
            };
        let detector = match (heartbeat_timeout, phi_threshold) {
            (Some(_), Some(_)) => {
                return Err(CliError::input(
                    "give either '--heartbeat-timeout' or '--phi-threshold', not both",
                ));
            }
            (_, Some(phi)) => {
                if !(phi.is_finite() && phi > 0.0) {
                    return Err(CliError::input(format!(
                        "invalid value {phi} for '--phi-threshold': must be finite and > 0"
                    )));
                }
                Detector::Phi(phi)
            }
            (t, None) => {
                let t = t.unwrap_or(Duration::from_secs(10).max(heartbeat_interval * 3));
                if t <= heartbeat_interval {
                    return Err(CliError::input(format!(
                        "'--heartbeat-timeout' ({t:?}) must exceed '--heartbeat-interval' ({heartbeat_interval:?})"
                    )));
                }
                Detector::Deadline(t)
            }
        };
        let resume_failed = cli.resume_failed || file.resume_failed;
        let resume = cli.resume || file.resume || resume_failed;
        let retry_failed = cli.retry_failed || file.retry_failed || resume_failed;
        if retry_failed && !resume {
            return Err(CliError::input(
                "'--retry-failed' (retry-failed) needs '--resume' (resume)",
            ));
        }
        let timeout = pick!(timeout);
        let fixed_timeout = match timeout {
            Some(Timeout::Fixed(t)) => Some(t),
            _ => None,
        };
        let task_timeout = cli
            .task_timeout
            .or(fixed_timeout)
            .or(file.task_timeout)
            .map(|t| at_least("--task-timeout", t, MIN_TASK_TIMEOUT))
            .transpose()?;
        let colsep = pick!(colsep)
            .map(|c| {
                regex::Regex::new(&c).map_err(|e| {
                    CliError::input(format!("invalid value '{c}' for '--colsep': {e}"))
                })
            })
            .transpose()?;

        let kill_grace = pick!(kill_grace).unwrap_or(DEFAULT_KILL_GRACE);
        if kill_grace > MAX_KILL_GRACE {
            return Err(CliError::input(format!(
                "invalid value {} for '--kill-grace': must be at most {} (0 kills at once)",
                humantime::format_duration(kill_grace),
                humantime::format_duration(MAX_KILL_GRACE)
            )));
        }
        let checkpoint_interval = at_least(
            "--checkpoint-interval",
            pick!(checkpoint_interval).unwrap_or(Duration::from_secs(10)),
            MIN_CHECKPOINT_INTERVAL,
        )?;
        let breaker_open = pick!(breaker_open).unwrap_or(Duration::from_secs(30));
        if breaker_open.is_zero() {
            return Err(CliError::input("'--breaker-open' must be > 0"));
        }
        Ok(Self {
            input: input_spec(&cli.input, &cli.arg_file)?,
            colsep,
            quote: cli.quote || file.quote,
            dry_run: cli.dry_run || file.dry_run,
            keep_order: cli.keep_order || file.keep_order,
            line_buffer: cli.line_buffer || file.line_buffer,
            keep_output: cli.keep_output || file.keep_output,
            tag: cli.tag || file.tag,
            tagstring: pick!(tagstring),
            results: pick!(results),
            joblog: pick!(joblog),
            halt: pick!(halt),
            delay: pick!(delay),
            timeout_percent: match timeout {
                Some(Timeout::Percent(p)) => Some(p),
                _ => None,
            },
            shuf: cli.shuf || file.shuf,
            nice: pick!(nice),
            load: pick!(load),
            memfree: pick!(memfree),
            slots,
            max_attempts,
            max_worker_crashes,
            backoff_base,
            backoff_cap,
            jitter: pick!(jitter).unwrap_or(JitterArg::Full),
            task_timeout,
            kill_grace,
            heartbeat_interval,
            detector,
            breaker_failures: check_range(
                "--breaker-failures",
                pick!(breaker_failures).unwrap_or(3),
                1,
                1000,
            )?,
            breaker_open,
            state_dir: pick!(state_dir),
            resume,
            retry_failed,
            resume_failed,
            health_gate: cli.health_gate || file.health_gate,
            json: cli.json || file.json,
            metrics_listen: pick!(metrics_listen),
            checkpoint_interval,
            keep_checkpoints: check_range(
                "--keep-checkpoints",
                pick!(keep_checkpoints).unwrap_or(5),
                1,
                1000,
            )?,
            window: pick!(window),
            engine: cli.engine.zip(cli.run_name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Run(r) => Settings::resolve(*r).map_err(|e| e.to_string()),
            _ => Err("not run".into()),
        }
    }

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m 30s"), Ok(Duration::from_secs(150)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn defaults() {
        let s = parse(&["sturdy", "run", "t.txt", "-j", "4"]).unwrap();
        assert_eq!(s.slots.len(), 4);
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.breaker_failures, 3);
        assert_eq!(s.detector, Detector::Deadline(Duration::from_secs(10)));
        assert_eq!(s.task_timeout, None);
        assert_eq!(s.keep_checkpoints, 5);
    }

    #[test]
    fn slots_set_cuda_visible_devices() {
        let s = parse(&["sturdy", "run", "t", "--slots", "gpu:0,gpu:1+2,cpu"]).unwrap();
        let cvd: Vec<_> = s
            .slots
            .iter()
            .map(|s| s.cuda_visible_devices.clone())
            .collect();
        assert_eq!(cvd, vec![Some("0".into()), Some("1,2".into()), None]);
        let e = parse(&["sturdy", "run", "t", "--slots", "gpu:x"]).unwrap_err();
        assert!(e.contains("gpu:x"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            parse(&["sturdy", "run", "t", "--workers", "0"])
                .unwrap_err()
                .contains("--workers")
        );
        assert!(
            parse(&["sturdy", "run", "t", "--task-timeout", "later"])
                .unwrap_err()
                .contains("later")
        );
        let e = parse(&[
            "sturdy",
            "run",
            "t",
            "--backoff-base",
            "10s",
            "--backoff-cap",
            "1s",
        ])
        .unwrap_err();
        assert!(e.contains("--backoff-cap"), "{e}");
    }

    #[test]
    fn config_file_fills_what_the_command_line_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("sturdy.toml");
        std::fs::write(
            &cfg,
            "max-attempts = 7\ntask-timeout = \"2s\"\nbreaker-open = 5\nslots = [\"gpu:3\"]\n",
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let s = parse(&["sturdy", "run", "t", "--config", c, "--max-attempts", "2"]).unwrap();
        assert_eq!(s.max_attempts, 2);
        assert_eq!(s.task_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.breaker_open, Duration::from_secs(5));
        assert_eq!(s.slots[0].cuda_visible_devices.as_deref(), Some("3"));
        std::fs::write(&cfg, "max-atempts = 7\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", c]).unwrap_err();
        assert!(e.contains("max-atempts"), "{e}");
    }

    #[test]
    fn workers_have_one_limit_and_one_message_however_given() {
        let rule = "must be in 1..=256 (a run takes at most 256 workers)";
        assert_eq!(
            parse(&["sturdy", "run", "t", "-j", "256"])
                .unwrap()
                .slots
                .len(),
            256
        );
        for n in ["0", "257", "1024"] {
            let e = parse(&["sturdy", "run", "t", "--workers", n]).unwrap_err();
            assert!(
                e.contains(&format!("invalid value '{n}' for '--workers <N>': {rule}")),
                "{e}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("sturdy.toml");
        let c = cfg.to_str().unwrap();
        std::fs::write(&cfg, "workers = 300\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", c]).unwrap_err();
        assert_eq!(e, format!("invalid value 300 for '--workers': {rule}"));
        let many = vec!["cpu"; 257].join(",");
        let e = parse(&["sturdy", "run", "t", "--slots", &many]).unwrap_err();
        assert_eq!(
            e,
            format!("invalid value for '--slots': 257 slots are 257 workers; '--workers' {rule}")
        );
        let s = parse(&["sturdy", "run", "t", "--slots", &vec!["cpu"; 256].join(",")]).unwrap();
        assert_eq!(s.slots.len(), 256);
        // The default never exceeds the limit, however many CPUs the host has.
        let s = parse(&["sturdy", "run", "t"]).unwrap();
        assert!(
            (1..=MAX_WORKERS).contains(&s.slots.len()),
            "{}",
            s.slots.len()
        );
    }

    #[test]
    fn timing_options_below_their_floor_are_refused_naming_both() {
        for (opt, floor) in [
            ("--task-timeout", "10ms"),
            ("--heartbeat-interval", "10ms"),
            ("--checkpoint-interval", "10ms"),
        ] {
            for v in ["0", "9ms", "1ns"] {
                let e = parse(&["sturdy", "run", "t", opt, v]).unwrap_err();
                assert_eq!(
                    e,
                    format!(
                        "invalid value {} for '{opt}': must be at least {floor}",
                        if v == "0" { "0s" } else { v }
                    )
                );
            }
        }
        let s = parse(&[
            "sturdy",
            "run",
            "t",
            "--task-timeout",
            "10ms",
            "--heartbeat-interval",
            "10ms",
            "--checkpoint-interval",
            "10ms",
        ])
        .unwrap();
        assert_eq!(s.task_timeout, Some(Duration::from_millis(10)));
        assert_eq!(s.heartbeat_interval, Duration::from_millis(10));
        assert_eq!(s.checkpoint_interval, Duration::from_millis(10));
        // The floor holds in the config file too.
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("sturdy.toml");
        std::fs::write(&cfg, "task-timeout = \"5ms\"\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", cfg.to_str().unwrap()]).unwrap_err();
        assert_eq!(
            e,
            "invalid value 5ms for '--task-timeout': must be at least 10ms"
        );
    }

    #[test]
    fn kill_grace_defaults_to_two_seconds_allows_zero_and_at_most_an_hour() {
        assert_eq!(
            parse(&["sturdy", "run", "t"]).unwrap().kill_grace,
            Duration::from_secs(2)
        );
        let s = parse(&["sturdy", "run", "t", "--kill-grace", "0"]).unwrap();
        assert_eq!(s.kill_grace, Duration::ZERO);
        let s = parse(&["sturdy", "run", "t", "--kill-grace", "1h"]).unwrap();
        assert_eq!(s.kill_grace, Duration::from_secs(3600));
        let e = parse(&["sturdy", "run", "t", "--kill-grace", "61m"]).unwrap_err();
        assert_eq!(
            e,
            "invalid value 1h 1m for '--kill-grace': must be at most 1h (0 kills at once)"
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("sturdy.toml");
        let c = cfg.to_str().unwrap();
        std::fs::write(&cfg, "kill-grace = \"500ms\"\n").unwrap();
        let s = parse(&["sturdy", "run", "t", "--config", c]).unwrap();
        assert_eq!(s.kill_grace, Duration::from_millis(500));
        let s = parse(&["sturdy", "run", "t", "--config", c, "--kill-grace", "3s"]).unwrap();
        assert_eq!(s.kill_grace, Duration::from_secs(3));
        std::fs::write(&cfg, "kill-grace = \"2h\"\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", c]).unwrap_err();
        assert!(e.contains("'--kill-grace': must be at most 1h"), "{e}");
    }

    #[test]
    fn durations_over_a_year_are_refused_not_overflowed() {
        // These panicked in the arithmetic of the clocks (heartbeat timeout = 3 x the
        // interval; the checkpoint timer) instead of being refused.
        for opt in [
            "--heartbeat-interval",
            "--checkpoint-interval",
            "--task-timeout",
        ] {
            let e = parse(&["sturdy", "run", "t", opt, "1e19"]).unwrap_err();
            assert!(e.contains("at most 365 days"), "{opt}: {e}");
            let e = parse(&["sturdy", "run", "t", opt, "400days"]).unwrap_err();
            assert!(e.contains("at most 365 days"), "{opt}: {e}");
        }
        let s = parse(&["sturdy", "run", "t", "--heartbeat-interval", "365days"]).unwrap();
        assert_eq!(s.heartbeat_interval, MAX_DURATION);
        assert_eq!(
            s.detector,
            Detector::Deadline(MAX_DURATION * 3),
            "the default timeout is 3 intervals"
        );
        assert_eq!(
            parse_watch("0").unwrap_err(),
            "`0` is too short: watch at most once a second (1s)"
        );
        assert_eq!(parse_watch("2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn config_file_conflicts_and_wrong_types_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("sturdy.toml");
        let c = cfg.to_str().unwrap();
        std::fs::write(&cfg, "workers = 4\nslots = [\"cpu\"]\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", c]).unwrap_err();
        assert!(e.contains("either `workers` or `slots`"), "{e}");
        std::fs::write(&cfg, "task-timeout = true\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", c]).unwrap_err();
        assert!(e.contains("a duration like \"30s\""), "{e}");
        std::fs::write(&cfg, "task-timeout = 90\nbackoff-base = 0.25\n").unwrap();
        let s = parse(&["sturdy", "run", "t", "--config", c]).unwrap();
        assert_eq!(s.task_timeout, Some(Duration::from_secs(90)));
        assert_eq!(s.backoff_base, Duration::from_millis(250));
        std::fs::write(&cfg, "retry-failed = true\n").unwrap();
        let e = parse(&["sturdy", "run", "t", "--config", c]).unwrap_err();
        assert!(e.contains("needs '--resume'"), "{e}");
        assert!(
            parse(&["sturdy", "run", "t", "--config", c, "--resume"])
                .unwrap()
                .retry_failed
        );
        // The command line's detector wins over the file's other one.
        std::fs::write(&cfg, "phi-threshold = 8\n").unwrap();
        let s = parse(&[
            "sturdy",
            "run",
            "t",
            "--config",
            c,
            "--heartbeat-timeout",
            "5s",
        ])
        .unwrap();
        assert_eq!(s.detector, Detector::Deadline(Duration::from_secs(5)));
        std::fs::write(&cfg, "heartbeat-timeout = \"5s\"\n").unwrap();
        let s = parse(&["sturdy", "run", "t", "--config", c, "--phi-threshold", "9"]).unwrap();
        assert_eq!(s.detector, Detector::Phi(9.0));
    }

    #[test]
    fn relative_workers_count_from_the_cpus() {
        assert_eq!(workers_from("+3", 4), Ok(7));
        assert_eq!(workers_from("-3", 4), Ok(1));
        assert_eq!(workers_from("-1", 4), Ok(3));
        assert_eq!(workers_from("50%", 4), Ok(2));
        assert_eq!(workers_from("10%", 4), Ok(1));
        assert_eq!(workers_from("250%", 4), Ok(10));
        assert_eq!(workers_from("5", 4), Ok(5));
        assert!(workers_from("+300", 4).unwrap_err().contains("1..=256"));
        assert!(
            workers_from("x%", 4)
                .unwrap_err()
                .contains("N, N%, +N or -N")
        );
        let s = parse(&["sturdy", "run", "t", "-j", "+2"]).unwrap();
        assert_eq!(s.slots.len(), cpus() as usize + 2);
    }

    #[test]
    fn retries_is_max_attempts() {
        let s = parse(&["sturdy", "run", "t", "--retries", "1"]).unwrap();
        assert_eq!(s.max_attempts, 1);
    }

    #[test]
    fn halt_takes_parallels_forms() {
        let h = parse_halt("now,fail=1").unwrap();
        assert_eq!(
            h,
            Halt {
                now: true,
                on: HaltOn::Fail,
                at: HaltAt::Count(1)
            }
        );
        let h = parse_halt("soon,done=30%").unwrap();
        assert!(!h.now && h.on == HaltOn::Done);
        assert!(!h.reached(2, 10) && h.reached(3, 10));
        assert_eq!(parse_halt("2").unwrap().on, HaltOn::Fail);
        assert_eq!(parse_halt("-1").unwrap().on, HaltOn::Success);
        assert!(parse_halt("later,fail=1").unwrap_err().contains("now|soon"));
        assert!(parse_halt("now,fail=0").unwrap_err().contains(">= 1"));
        assert!(
            parse_halt("now,fail=101%")
                .unwrap_err()
                .contains("(0, 100]")
        );
    }

    #[test]
    fn sizes_timeouts_and_loads() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2_000_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("1Q").is_err());
        assert_eq!(parse_timeout("150%"), Ok(Timeout::Percent(150.0)));
        assert_eq!(
            parse_timeout("2s"),
            Ok(Timeout::Fixed(Duration::from_secs(2)))
        );
        assert!(parse_timeout("0%").is_err());
        assert_eq!(parse_load("2.5"), Ok(2.5));
        assert!(parse_load("-1").is_err());
        let s = parse(&["sturdy", "run", "t", "--timeout", "3s"]).unwrap();
        assert_eq!(s.task_timeout, Some(Duration::from_secs(3)));
        let s = parse(&["sturdy", "run", "t", "--memfree", "1G"]).unwrap();
        assert_eq!(s.memfree, Some(1 << 30));
        assert!(
            !s.health_gate,
            "--memfree alone does not judge CPU, disks, GPUs"
        );
    }

    #[test]
    fn input_is_a_list_or_arguments() {
        let w = |v: &[&str]| v.iter().map(|&x| x.to_owned()).collect::<Vec<_>>();
        assert!(matches!(
            input_spec(&w(&["t.txt"]), &[]),
            Ok(InputSpec::List(_))
        ));
        let e = input_spec(&w(&["gzip", "a"]), &[]).unwrap_err();
        assert!(e.to_string().contains("no :::"), "{e}");
        match input_spec(
            &w(&["echo", ":::", "a", "b", "::::", "f", "g", ":::", "c"]),
            &[],
        ) {
            Ok(InputSpec::Arguments { words, sources }) => {
                assert_eq!(words, w(&["echo"]));
                assert_eq!(
                    sources,
                    vec![
                        Source::Args(w(&["a", "b"])),
                        Source::File("f".into()),
                        Source::File("g".into()),
                        Source::Args(w(&["c"])),
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(input_spec(&w(&["echo", "::::"]), &[]).is_err());
    }
}
