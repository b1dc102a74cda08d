//! One-call health checks, as the original's `get_system_health` and
//! `is_system_healthy`: sample the machine and judge it with the core's [`assess`].

use std::fmt;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Serialize;
use sturdy_core::health::{HealthReport, HealthStatus, MachineSample, Thresholds, assess};

use crate::cpu::MIN_CPU_INTERVAL;
use crate::probe::Probe;
use crate::source::{GpuSource, HostSource};

/// A sample of the machine and the verdict on it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemHealth {
    /// What was read.
    pub sample: MachineSample,
    /// The verdict of [`assess`] on `sample`.
    pub report: HealthReport,
}

impl SystemHealth {
    /// Judges `sample` against `thresholds`.
    pub fn judge(sample: MachineSample, thresholds: &Thresholds) -> Self {
        let report = assess(&sample, thresholds);
        Self { sample, report }
    }

    /// Whether the verdict is [`HealthStatus::Healthy`]; a machine that could not be
    /// read fully is `Unknown`, not healthy.
    pub fn is_healthy(&self) -> bool {
        self.report.is_healthy()
    }

    /// The overall verdict.
    pub fn status(&self) -> HealthStatus {
        self.report.status
    }
}

impl fmt::Display for SystemHealth {
    /// The verdict with its issues, then the [`table`](crate::table) of the sample.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "STATUS {}", self.report)?;
        f.write_str(&crate::table(&self.sample))
    }
}

impl<H: HostSource, G: GpuSource> Probe<H, G> {
    /// Samples the machine once and judges it against `thresholds`.
    pub fn health(&mut self, thresholds: &Thresholds) -> SystemHealth {
        SystemHealth::judge(self.sample(), thresholds)
    }
}

/// The process-wide probe behind the one-call helpers, and whether its CPU counters
/// have a first reading.
static SHARED: OnceLock<Mutex<(Probe, bool)>> = OnceLock::new();

fn shared_sample() -> MachineSample {
    let lock = SHARED.get_or_init(|| Mutex::new((Probe::new(), false)));
    let mut guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    let (probe, primed) = &mut *guard;
    let mut sample = probe.sample();
    if !*primed {
        *primed = true;
        if sample.host.cpu_percent.is_none() {
            // The first call of the process: CPU % needs a second reading.
            std::thread::sleep(MIN_CPU_INTERVAL);
            sample = probe.sample();
        }
    }
    sample
}

/// Samples this machine and judges it with the default [`Thresholds`].
///
/// The helpers share one probe per process. The first call blocks for
/// [`MIN_CPU_INTERVAL`] (200 ms on Linux) to take the second CPU reading that a CPU
/// percentage needs; later calls never sleep. A long-running program that samples
/// periodically should hold its own [`Probe`] and call [`Probe::health`] instead.
pub fn get_system_health() -> SystemHealth {
    get_system_health_with(&Thresholds::default())
}

/// Samples this machine and judges it against `thresholds` (see [`get_system_health`]).
pub fn get_system_health_with(thresholds: &Thresholds) -> SystemHealth {
    SystemHealth::judge(shared_sample(), thresholds)
}

/// Whether this machine is healthy by the default [`Thresholds`] (see
/// [`get_system_health`]): a machine that cannot be read fully is not.
pub fn is_system_healthy() -> bool {
    get_system_health().is_healthy()
}

/// Whether this machine is healthy by `thresholds` (see [`get_system_health`]).
pub fn is_system_healthy_with(thresholds: &Thresholds) -> bool {
    get_system_health_with(thresholds).is_healthy()
}
