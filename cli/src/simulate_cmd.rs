//! `sturdy simulate`: runs a multi-host farm in the deterministic simulation
//! (`sturdy_farm::sim`) and reports what its settings cost: makespan against the ideal,
//! wasted worker time, duplicate executions, detection latency, engine load, and the
//! exactly-once check.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::retry::RetryPolicy;
use sturdy_farm::sim::{self, AgentKind, Dist, Report, WorldConfig, parse_duration_ms};

use crate::error::CliError;

/// `sturdy simulate` arguments. Durations: `250ms`, `10s`, `5m`, `1h`. Distributions:
/// `const:10s`, `uniform:1s,5s`, `exp:30s`, `lognormal:60s,0.5` (median, sigma). Rates:
/// `0.5/h`, `1%/h`, `2/d` (per host).
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Slots (workers) in the farm, over all hosts.
    #[arg(long, value_name = "N")]
    workers: u32,
    /// Tasks in the run.
    #[arg(long, value_name = "M")]
    tasks: u32,
    /// Slots per host (default 8).
    #[arg(long, value_name = "K", default_value_t = 8)]
    slots_per_host: u32,
    /// A task's run time.
    #[arg(long, value_name = "DIST", default_value = "lognormal:60s,0.5")]
    duration: String,
    /// Host crashes per host (a crash kills its commands; the host is back after
    /// `--host-restart`).
    #[arg(long, value_name = "RATE", default_value = "0/h")]
    host_crash_rate: String,
    /// How long a crashed host stays down.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    host_restart: String,
    /// Host pauses (SIGSTOP, VM freeze) per host; a pause longer than the heartbeat
    /// timeout makes a zombie.
    #[arg(long, value_name = "RATE", default_value = "0/h")]
    pause_rate: String,
    /// How long a pause lasts.
    #[arg(long, value_name = "DIST", default_value = "const:30s")]
    pause: String,
    /// A partition: `START+LENGTH[:FRACTION]` cuts FRACTION of the hosts (default all) off
    /// the engine from START for LENGTH. Repeatable.
    #[arg(long, value_name = "START+LEN[:FRAC]")]
    partition: Vec<String>,
    /// An engine restart: START+LENGTH. Repeatable.
    #[arg(long, value_name = "START+LEN")]
    outage: Vec<String>,
    /// One-way network latency (the engine's clock counts whole milliseconds: a LAN's
    /// sub-millisecond latency is 0).
    #[arg(long, value_name = "DIST", default_value = "const:0ms")]
    latency: String,
    /// Probability that a message is lost.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    loss: f64,
    /// Probability that an attempt fails on its own, transiently.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    transient: f64,
    /// Fraction of tasks that fail permanently.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    permanent: f64,
    /// Fraction of tasks that kill their worker (poison).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    poison: f64,
    /// Probability that an attempt hangs until `--task-timeout`.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    hang: f64,
    /// Fraction of hosts that are slow, and by how much (`--slow-factor`).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    slow_hosts: f64,
    /// How much longer commands run on a slow host.
    #[arg(long, value_name = "F", default_value_t = 2.0)]
    slow_factor: f64,
    /// The lease (JetStream AckWait): an attempt not renewed this long is handed on.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    heartbeat_timeout: String,
    /// How often a running attempt renews its lease (default a third of the timeout).
    #[arg(long, value_name = "DURATION")]
    heartbeat_interval: Option<String>,
    /// Attempts (claims) per task before it fails for good.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_attempts: u32,
    /// First retry delay; doubles each retry.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    backoff_base: String,
    /// Longest retry delay.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    backoff_cap: String,
    /// Kill an attempt after this long.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    task_timeout: String,
    /// The consumer's MaxDeliver (default 2 x max-attempts + 5; 0: unlimited).
    #[arg(long, value_name = "N")]
    max_deliver: Option<u64>,
    /// The consumer's MaxAckPending (default 2 x workers).
    #[arg(long, value_name = "N")]
    max_ack_pending: Option<usize>,
    /// The consumer's MaxWaiting (default: workers).
    #[arg(long, value_name = "N")]
    max_waiting: Option<usize>,
    /// Stop the run (tasks left unfinished) after this much virtual time.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    time_limit: String,
    /// Lost claims a task survives (the agent's crash limit); one more gives it up.
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_worker_crashes: u32,
    /// The host agent: `real` (farm::agent, unchanged) or `reference` (the simulation's
    /// own loop of the same rules; faster).
    #[arg(long, value_name = "KIND", default_value = "real")]
    agent: String,
    /// The seed of every random draw: the same seed gives the same run.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn bad(field: &str, rule: impl std::fmt::Display) -> CliError {
    CliError::input(format!("--{field}: {rule}"))
}

fn duration_ms(field: &str, text: &str) -> Result<u64, CliError> {
    let text = text.strip_suffix('d').map_or_else(
        || text.to_string(),
        |n| {
            n.trim()
                .parse::<f64>()
                .map_or(text.to_string(), |v| format!("{}h", v * 24.0))
        },
    );
    parse_duration_ms(&text)
        .map(|v| v.round() as u64)
        .map_err(|e| bad(field, e))
}

fn dist(field: &str, text: &str) -> Result<Dist, CliError> {
    Dist::parse(text).map_err(|e| bad(field, e))
}

/// `0.5/h`, `1%/h`, `2/d`, `0.5` (per hour) -> events per hour.
fn rate_per_hour(field: &str, text: &str) -> Result<f64, CliError> {
    let (num, per) = text.split_once('/').unwrap_or((text, "h"));
    let per_hour = match per.trim() {
        "h" => 1.0,
        "d" => 1.0 / 24.0,
        "m" | "min" => 60.0,
        "s" => 3600.0,
        _ => {
            return Err(bad(
                field,
                format!("{text:?}: the unit must be /s, /m, /h or /d"),
            ));
        }
    };
    let num = num.trim();
    let (num, scale) = num.strip_suffix('%').map_or((num, 1.0), |n| (n, 0.01));
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * scale * per_hour),
        _ => Err(bad(
            field,
            format!("{text:?} is not a rate >= 0 (like 0.5/h or 1%/h)"),
        )),
    }
}

/// `START+LEN[:FRAC]`.
fn window(field: &str, text: &str, with_fraction: bool) -> Result<(u64, u64, f64), CliError> {
    let (span, frac) = match text.split_once(':') {
        Some((s, f)) if with_fraction => (s, Some(f)),
        Some(_) => return Err(bad(field, format!("{text:?}: expected START+LENGTH"))),
        None => (text, None),
    };
    let Some((start, len)) = span.split_once('+') else {
        return Err(bad(
            field,
            format!("{text:?}: expected START+LENGTH, like 10m+2m"),
        ));
    };
    let start = duration_ms(field, start)?;
    let len = duration_ms(field, len)?;
    if len == 0 {
        return Err(bad(field, format!("{text:?}: the length must be > 0")));
    }
    let frac = match frac {
        None => 1.0,
        Some(f) => match f.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                return Err(bad(
                    field,
                    format!("{text:?}: the fraction must be in 0..=1"),
                ));
            }
        },
    };
    Ok((start, len, frac))
}

fn config(a: &SimulateArgs) -> Result<WorldConfig, CliError> {
    if a.workers == 0 {
        return Err(bad("workers", "must be >= 1"));
    }
    if a.slots_per_host == 0 {
        return Err(bad("slots-per-host", "must be >= 1"));
    }
    if a.max_attempts == 0 {
        return Err(bad("max-attempts", "must be >= 1"));
    }
    let heartbeat_timeout_ms = duration_ms("heartbeat-timeout", &a.heartbeat_timeout)?;
    if heartbeat_timeout_ms < 3 {
        return Err(bad("heartbeat-timeout", "must be >= 3ms"));
    }
    let heartbeat_interval_ms = match &a.heartbeat_interval {
        Some(t) => duration_ms("heartbeat-interval", t)?,
        None => heartbeat_timeout_ms / 3,
    };
    let base = Duration::from_millis(duration_ms("backoff-base", &a.backoff_base)?);
    let cap = Duration::from_millis(duration_ms("backoff-cap", &a.backoff_cap)?);
    if cap < base {
        return Err(bad("backoff-cap", "must be >= --backoff-base"));
    }
    let backoff = BackoffConfig::exponential(base, 2000, cap)
        .and_then(|b| b.with_jitter(Jitter::Full))
        .map_err(|e| bad("backoff-base", e))?;
    let retry = RetryPolicy::new(a.max_attempts, backoff).map_err(|e| bad("max-attempts", e))?;
    let mut cfg = WorldConfig {
        seed: a.seed,
        workers: a.workers,
        slots_per_host: a.slots_per_host,
        tasks: a.tasks,
        duration: dist("duration", &a.duration)?,
        transient: a.transient,
        permanent: a.permanent,
        poison: a.poison,
        hang: a.hang,
        command_timeout_ms: duration_ms("task-timeout", &a.task_timeout)?,
        heartbeat_timeout_ms,
        heartbeat_interval_ms,
        retry,
        host_crash_per_hour: rate_per_hour("host-crash-rate", &a.host_crash_rate)?,
        host_restart_ms: duration_ms("host-restart", &a.host_restart)?,
        pause_per_hour: rate_per_hour("pause-rate", &a.pause_rate)?,
        pause_ms: dist("pause", &a.pause)?,
        slow_hosts: a.slow_hosts,
        slow_factor: a.slow_factor,
        time_limit_ms: duration_ms("time-limit", &a.time_limit)?,
        crash_limit: a.max_worker_crashes,
        agent: match a.agent.as_str() {
            "real" => AgentKind::Real,
            "reference" => AgentKind::Reference,
            _ => return Err(bad("agent", "must be real or reference")),
        },
        ..WorldConfig::default()
    };
    cfg.server.max_deliver = a.max_deliver.unwrap_or(2 * u64::from(a.max_attempts) + 5);
    cfg.server.max_ack_pending = a.max_ack_pending.unwrap_or(2 * a.workers as usize);
    cfg.server.max_waiting = a.max_waiting.unwrap_or(a.workers as usize);
    // The journal is not needed for the report; a million tasks' worth costs memory.
    cfg.server.journal = false;
    cfg.net.latency_ms = dist("latency", &a.latency)?;
    cfg.net.loss = a.loss;
    for p in &a.partition {
        cfg.partitions.push(window("partition", p, true)?);
    }
    for o in &a.outage {
        let (s, l, _) = window("outage", o, false)?;
        cfg.outages.push((s, s + l));
    }
    cfg.check()
        .map_err(|e| bad(&e.field.replace('_', "-"), e.rule))?;
    Ok(cfg)
}

/// A large simulation touches its heap at random (a few KiB of state per slot, thousands
/// of slots, every event on another): with 4 KiB pages most touches also miss the TLB.
/// glibc backs its heap with transparent huge pages under the tunable
/// `glibc.malloc.hugetlb=1`, which it reads only when a process starts: so unless
/// `GLIBC_TUNABLES` already names it, the command runs itself again (exec, same
/// arguments) with it added. The simulated run is the same (a seed gives the same
/// trace); at 10 000 workers it costs about a fifth less CPU. Where the exec fails, or
/// the tunable is set either way, the run goes on in this process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn with_huge_pages() {
    use std::os::unix::process::CommandExt as _;
    /// The glibc tunable that backs malloc's heap with transparent huge pages.
    const HUGE_PAGES: &str = "glibc.malloc.hugetlb";
    let current = match std::env::var("GLIBC_TUNABLES") {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => String::new(),
        Err(std::env::VarError::NotUnicode(_)) => return,
    };
    if current.contains(HUGE_PAGES) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let tunables = if current.is_empty() {
        format!("{HUGE_PAGES}=1")
    } else {
        format!("{current}:{HUGE_PAGES}=1")
    };
    let mut argv = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = argv.next() {
        command.arg0(arg0);
    }
    command.args(argv).env("GLIBC_TUNABLES", tunables);
    // Returns only when it failed: the run goes on here.
    let _ = command.exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn with_huge_pages() {}

/// Runs `sturdy simulate`: exit 0 when every rule held (no second success record, no
/// write after a newer claim, no command left running), 1 otherwise.
///
/// # Errors
/// Bad input (exit 2), naming the option and its rule; a closed stdout (exit 1).
pub(crate) fn run(args: &SimulateArgs) -> Result<i32, CliError> {
    let cfg = config(args)?;
    with_huge_pages();
    let tasks = u64::from(cfg.tasks);
    let mut last = 0;
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |finished: u64, virtual_ms: u64| {
        if terminal && (finished * 100 / tasks.max(1) != last || finished == tasks) {
            last = finished * 100 / tasks.max(1);
            eprint!(
                "\rsturdy simulate: {finished}/{tasks} tasks finished, {:.0} s virtual",
                virtual_ms as f64 / 1000.0
            );
            if finished == tasks {
                eprintln!();
            }
        }
    };
    let report = sim::simulate_with(cfg, &mut progress).map_err(|e| bad(e.field, e.rule))?;
    let text = if args.json {
        serde_json::to_string(&report).map_err(|e| CliError::runtime(e.to_string()))?
    } else {
        human(&report)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(|e| CliError::runtime(format!("stdout: {e}")))?;
    let broken =
        report.done_records_twice + report.writes_after_newer_claim + report.orphan_commands;
    Ok(i32::from(broken > 0))
}

fn human(r: &Report) -> String {
    let over = if r.ideal_makespan_s > 0.0 {
        (r.makespan_s / r.ideal_makespan_s - 1.0) * 100.0
    } else {
        0.0
    };
    format!(
        "tasks                      {}  (succeeded {}, failed {}, unfinished {})\n\
         makespan                   {:.1} s  (ideal {:.1} s, +{over:.2} %)\n\
         wasted worker time         {:.1} s  ({} executions, {} did not count)\n\
         detection latency          p50 {:.1} s, p99 {:.1} s\n\
         engine messages            {}  ({:.0}/s)\n\
         deliveries                 {}  ({} redeliveries, {} CAS conflicts, {} pulls refused)\n\
         redelivery burst           {} after an engine outage\n\
         faults                     {} host crashes, {} pauses\n\
         done_records_twice         {}  (must be 0)\n\
         writes_after_newer_claim   {}  (must be 0)\n\
         orphan_commands            {}  (must be 0)\n\
         max claims of one task     {}\n\
         seed                       {}  (trace {})",
        r.tasks,
        r.succeeded,
        r.failed,
        r.unfinished,
        r.makespan_s,
        r.ideal_makespan_s,
        r.wasted_worker_s,
        r.executions,
        r.duplicate_executions,
        r.detection_latency_p50_s,
        r.detection_latency_p99_s,
        r.engine_messages,
        r.engine_messages_per_s,
        r.deliveries,
        r.redeliveries,
        r.cas_conflicts,
        r.pulls_refused,
        r.redelivery_burst,
        r.host_crashes,
        r.host_pauses,
        r.done_records_twice,
        r.writes_after_newer_claim,
        r.orphan_commands,
        r.max_claims,
        r.seed,
        r.trace_hash,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_windows_parse() {
        assert_eq!(rate_per_hour("r", "0.5/h").unwrap(), 0.5);
        assert!((rate_per_hour("r", "1%/h").unwrap() - 0.01).abs() < 1e-12);
        assert!((rate_per_hour("r", "2/d").unwrap() - 2.0 / 24.0).abs() < 1e-12);
        assert!(
            rate_per_hour("r", "x/h")
                .unwrap_err()
                .to_string()
                .contains("--r")
        );
        assert!(
            rate_per_hour("r", "1/y")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        assert_eq!(
            window("partition", "10m+2m:0.5", true).unwrap(),
            (600_000, 120_000, 0.5)
        );
        assert!(window("outage", "10m", false).is_err());
        assert!(window("outage", "10m+0s", false).is_err());
        assert_eq!(duration_ms("t", "30d").unwrap(), 30 * 24 * 3_600_000);
    }
}
