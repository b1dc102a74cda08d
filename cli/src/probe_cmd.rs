//! `sturdy probe`: the host health report from `sturdy-probe`, judged by the core's
//! rules (default thresholds), as a table, JSON or the Prometheus text format, once or
//! every `--watch` interval. JSON carries `schema_version` and `timestamp`; under
//! `--watch` it is one object per line (NDJSON).

use std::io::Write;

use sturdy_core::health::{HealthStatus, Thresholds};
use sturdy_probe::{MIN_CPU_INTERVAL, Probe};

use crate::error::CliError;
use crate::options::ProbeArgs;

/// Runs `sturdy probe`; the exit code is 0 unless the host is critical (then 1).
///
/// # Errors
/// Writing to stdout failed.
pub(crate) fn run(args: &ProbeArgs) -> Result<i32, CliError> {
    if let Some(addr) = args.listen {
        let interval = args.watch.unwrap_or(crate::probe_listen::DEFAULT_INTERVAL);
        return crate::probe_listen::serve(addr, interval);
    }
    let thresholds = Thresholds::default();
    let mut probe = Probe::new();
    // CPU use is a difference of two readings: take the first one now.
    let _ = probe.sample();
    std::thread::sleep(MIN_CPU_INTERVAL);
    loop {
        let health = probe.health(&thresholds);
        let text = if args.json {
            let stamped = sturdy_probe::Stamped::new(&health, std::time::SystemTime::now());
            if args.watch.is_some() {
                // One object per line (NDJSON), so a reader can parse each as it comes.
                sturdy_probe::json_line(&stamped)
            } else {
                let mut j = sturdy_probe::json(&stamped);
                j.push('\n');
                j
            }
        } else if args.prometheus {
            sturdy_probe::prometheus_health(&health)
        } else {
            health.to_string()
        };
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| CliError::runtime(format!("cannot write the report: {e}")))?;
        match args.watch {
            Some(interval) => std::thread::sleep(interval),
            None => return Ok(i32::from(health.status() == HealthStatus::Critical)),
        }
    }
}
