//! Command-line options, the `--config FILE` TOML file, and the resolved settings.
//!
//! Every `run` option can also be given in the config file under its long name
//! (`max-attempts = 5`, `task-timeout = "30s"`, `slots = ["gpu:0", "gpu:1"]`); a
//! flag on the command line wins over the file, the file over the default. Unknown keys
//! in the file are errors.
//!
//! Durations take a unit (`250ms`, `30s`, `2m`, `1h 30m`); a bare number means seconds,
//! as in GNU parallel's `--timeout`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::error::CliError;

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
    /// Sample again every INTERVAL (for example `5s`) until interrupted.
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration)]
    pub(crate) watch: Option<Duration>,
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
    /// File with one shell command per line (`#` comments and blank lines skipped);
    /// `-` reads standard input.
    #[serde(skip)]
    pub(crate) tasks: PathBuf,
    /// Settings file (TOML) with the same keys as the long options.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// Number of workers (default: the number of CPUs).
    #[arg(long, short = 'j', value_name = "N", conflicts_with = "slots",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) workers: Option<u32>,
    /// One worker per slot, comma-separated: `cpu`, or `gpu:IDS` which sets
    /// CUDA_VISIBLE_DEVICES=IDS for that worker (IDS like `0` or `0+1` for two devices).
    #[arg(long, value_name = "SLOTS", value_delimiter = ',')]
    pub(crate) slots: Option<Vec<String>>,
    /// Attempts per task before it fails for good (default 3, the original's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) max_attempts: Option<u32>,
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
    /// Kill an attempt's whole process group after this long (default: no limit).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) task_timeout: Option<Duration>,
    /// How often a worker heartbeats (default 1s).
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
    /// Write a checkpoint this often (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "de_duration")]
    pub(crate) checkpoint_interval: Option<Duration>,
    /// Checkpoints kept (default 5, the original's).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) keep_checkpoints: Option<u32>,
}

/// Parses a duration: a humantime string (`250ms`, `2m 30s`) or a bare number of
/// seconds (`1.5`).
///
/// # Errors
/// Anything else, or a negative or non-finite number.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{s}` is not a duration: seconds must be finite and >= 0"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 250ms, 30s, 2m"))
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| serde::de::Error::custom("seconds must be finite and >= 0")),
        Raw::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A worker slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The label shown in the journal and summary (`cpu`, `gpu:0`).
    pub(crate) label: String,
    /// `CUDA_VISIBLE_DEVICES` for the worker, if any.
    pub(crate) cuda_visible_devices: Option<String>,
}

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
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Detector {
    /// Silent longer than this.
    Deadline(Duration),
    /// Phi accrual above this threshold.
    Phi(f64),
}

/// The resolved settings of a run.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) tasks: PathBuf,
    pub(crate) slots: Vec<Slot>,
    pub(crate) max_attempts: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) jitter: JitterArg,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) detector: Detector,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_open: Duration,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) resume: bool,
    pub(crate) retry_failed: bool,
    pub(crate) health_gate: bool,
    pub(crate) json: bool,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) keep_checkpoints: u32,
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
    /// An unreadable or malformed config file, an out-of-range value, zero workers, a
    /// bad slot, a backoff cap below its base, a zero heartbeat interval, a heartbeat
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
        let slots = match (
            cli.workers,
            cli.slots.clone(),
            file.workers,
            file.slots.clone(),
        ) {
            (Some(n), _, _, _) | (None, None, Some(n), None) => {
                let n = check_range("--workers", n, 1, 1024)?;
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
                s.iter().map(|x| parse_slot(x)).collect::<Result<_, _>>()?
            }
            (None, None, None, None) => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
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
        let backoff_base = pick!(backoff_base).unwrap_or(Duration::from_secs(1));
        let backoff_cap = pick!(backoff_cap).unwrap_or(Duration::from_secs(60).max(backoff_base));
        if backoff_cap < backoff_base {
            return Err(CliError::input(format!(
                "'--backoff-cap' ({backoff_cap:?}) must be >= '--backoff-base' ({backoff_base:?})"
            )));
        }
        let heartbeat_interval = pick!(heartbeat_interval).unwrap_or(Duration::from_secs(1));
        if heartbeat_interval < Duration::from_millis(10) {
            return Err(CliError::input(
                "'--heartbeat-interval' must be at least 10ms",
            ));
        }
        let detector = match (pick!(heartbeat_timeout), pick!(phi_threshold)) {
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
        let task_timeout = pick!(task_timeout);
        if task_timeout == Some(Duration::ZERO) {
            return Err(CliError::input("'--task-timeout' must be > 0"));
        }
        let checkpoint_interval = pick!(checkpoint_interval).unwrap_or(Duration::from_secs(10));
        if checkpoint_interval.is_zero() {
            return Err(CliError::input("'--checkpoint-interval' must be > 0"));
        }
        let breaker_open = pick!(breaker_open).unwrap_or(Duration::from_secs(30));
        if breaker_open.is_zero() {
            return Err(CliError::input("'--breaker-open' must be > 0"));
        }
        Ok(Self {
            tasks: cli.tasks.clone(),
            slots,
            max_attempts,
            backoff_base,
            backoff_cap,
            jitter: pick!(jitter).unwrap_or(JitterArg::Full),
            task_timeout,
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
            resume: cli.resume || file.resume,
            retry_failed: cli.retry_failed || file.retry_failed,
            health_gate: cli.health_gate || file.health_gate,
            json: cli.json || file.json,
            checkpoint_interval,
            keep_checkpoints: check_range(
                "--keep-checkpoints",
                pick!(keep_checkpoints).unwrap_or(5),
                1,
                1000,
            )?,
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
}
