//! `--health-gate`: a background sampler that feeds the supervisor the host's health.
//!
//! The tokio adapter's [`HealthMonitor`] samples the machine (the `sturdy-probe` probe,
//! or any [`HealthProbe`]) every [`INTERVAL`] on a blocking thread; each sample is judged
//! with the core's rules and default [`Thresholds`] into a [`HostHealth`]: the overall status (the
//! supervisor dispatches nothing new while it is critical) and, for each `gpu:IDS` slot,
//! the worst status of its GPUs as that worker's health mark (degraded workers get work
//! last, critical ones none). A sample that fails publishes `Unknown`, which does not
//! stop dispatch: the gate closes only on a known critical reading.

use std::time::Duration;

use sturdy_core::WorkerId;
use sturdy_core::health::{HealthProbe, HealthStatus, Thresholds, assess, assess_gpu};
use sturdy_core::manager::WorkerHealth;
use sturdy_tokio::{HealthMonitor, MonitorConfig};
use tokio::sync::watch;

use super::slot::Slot;
use crate::supervisor::HostHealth;

/// How often the gate samples the host.
pub const INTERVAL: Duration = Duration::from_secs(2);

fn mark(status: HealthStatus) -> WorkerHealth {
    match status {
        HealthStatus::Critical => WorkerHealth::Critical,
        HealthStatus::Degraded => WorkerHealth::Degraded,
        _ => WorkerHealth::Healthy,
    }
}

fn worst(a: HealthStatus, b: HealthStatus) -> HealthStatus {
    let rank = |s: HealthStatus| match s {
        HealthStatus::Critical => 3,
        HealthStatus::Degraded => 2,
        HealthStatus::Unknown => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// GNU parallel's `--load` and `--memfree`: further reasons to start nothing new.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// `--load`: the highest 1-minute load average at which a task may start.
    pub max_load: Option<f64>,
    /// `--memfree`: the least available memory, in bytes, at which a task may start.
    pub min_available: Option<u64>,
}

/// Judges one sample into what the supervisor needs: the core's rules, then
/// `limits` (a load above `--load` or less memory available than `--memfree` is
/// critical: the gate closes).
pub fn judge(
    sample: &sturdy_core::health::MachineSample,
    thresholds: &Thresholds,
    slots: &[Slot],
    limits: Limits,
) -> HostHealth {
    let mut report = assess(sample, thresholds);
    if over_limits(sample, limits) {
        report.status = HealthStatus::Critical;
    }
    let mut workers = Vec::new();
    for (w, slot) in slots.iter().enumerate() {
        let Some(ids) = &slot.cuda_visible_devices else {
            continue;
        };
        let mut status = HealthStatus::Healthy;
        for id in ids.split(',').filter_map(|i| i.parse::<u32>().ok()) {
            if let Some(gpu) = sample.gpus.devices().iter().find(|g| g.index == id) {
                status = worst(status, assess_gpu(gpu, thresholds).status);
            }
        }
        workers.push((WorkerId(w as u32), mark(status)));
    }
    HostHealth {
        status: report.status,
        workers,
    }
}

/// Whether `sample` breaks `limits`: a 1-minute load above `--load`, or less memory
/// available than `--memfree`. A reading the sample lacks breaks nothing.
pub fn over_limits(sample: &sturdy_core::health::MachineSample, limits: Limits) -> bool {
    let over_load = matches!(
        (limits.max_load, sample.host.load_average),
        (Some(max), Some(l)) if f64::from(l.one) > max
    );
    let low_memory = matches!(
        (limits.min_available, sample.host.memory_available_bytes),
        (Some(min), Some(a)) if a < min
    );
    over_load || low_memory
}

/// `--load` / `--memfree` before the first dispatch: samples with `probe` every
/// [`INTERVAL`] (blocking the thread) until the host is within `limits` (only these;
/// the rest of the health gate applies once the run goes), so that the first tasks do
/// not start ahead of the health gate's first reading (GNU parallel checks before each
/// start); `waiting` is called once, the first time the host is over them. A reading
/// the probe could not take does not hold the run back.
pub fn wait_for_limits<P: HealthProbe>(mut probe: P, limits: Limits, waiting: impl FnOnce()) {
    let mut waiting = Some(waiting);
    loop {
        let Ok(sample) = probe.sample() else { return };
        if !over_limits(&sample, limits) {
            return;
        }
        if let Some(tell) = waiting.take() {
            tell();
        }
        std::thread::sleep(INTERVAL);
    }
}

/// Starts sampling with `probe` on the tokio adapter's [`HealthMonitor`] (every
/// [`INTERVAL`], on a blocking thread) and returns the monitor (sampling stops when it is
/// dropped) and the channel the supervisor watches.
///
/// Without `full` (`--load`/`--memfree` without `--health-gate`) only `limits` are
/// judged: the host is healthy unless it breaks them.
pub fn spawn<P>(
    probe: P,
    slots: Vec<Slot>,
    limits: Limits,
    full: bool,
) -> (HealthMonitor, watch::Receiver<HostHealth>)
where
    P: HealthProbe + Send + 'static,
{
    let thresholds = Thresholds::default();
    let config = MonitorConfig::new(INTERVAL)
        .unwrap_or_else(|e| unreachable!("a 2 s period is valid: {e}"))
        .thresholds(thresholds);
    let monitor = HealthMonitor::spawn(probe, config);
    let mut readings = monitor.subscribe();
    let (tx, rx) = watch::channel(unknown());
    tokio::spawn(async move {
        while readings.changed().await.is_ok() {
            let health = match readings.borrow_and_update().as_ref().map(|r| &r.result) {
                Some(Ok(assessed)) if full => judge(&assessed.sample, &thresholds, &slots, limits),
                Some(Ok(assessed)) => HostHealth {
                    status: if over_limits(&assessed.sample, limits) {
                        HealthStatus::Critical
                    } else {
                        HealthStatus::Healthy
                    },
                    workers: Vec::new(),
                },
                Some(Err(_)) | None => unknown(),
            };
            if tx.send(health).is_err() {
                return;
            }
        }
    });
    (monitor, rx)
}

/// Whether slot `slot` (a worker index) may start new work under `health`: not while
/// the host is critical, nor while the slot's GPUs are. A host whose health is unknown
/// (no reading yet, or a sample that failed) admits, as in the local farm.
pub fn admits(health: &HostHealth, slot: usize) -> bool {
    health.status != HealthStatus::Critical
        && !health
            .workers
            .iter()
            .any(|(w, m)| w.0 as usize == slot && *m == WorkerHealth::Critical)
}

fn unknown() -> HostHealth {
    HostHealth {
        status: HealthStatus::Unknown,
        workers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sturdy_core::health::{GpuReadout, GpuSample, MachineSample};

    fn gpu(index: u32, temp_c: f32) -> GpuSample {
        let mut g = GpuSample::new(index);
        g.temperature_c = Some(temp_c);
        g
    }

    #[test]
    fn a_hot_gpu_marks_its_slot_and_the_host() {
        let mut sample = MachineSample::default();
        let mut gpus = GpuReadout::default();
        gpus.push(gpu(0, 40.0)).unwrap();
        gpus.push(gpu(1, 99.0)).unwrap();
        sample.gpus = gpus;
        let slot = |label: &str, cvd: Option<&str>| Slot {
            label: label.into(),
            cuda_visible_devices: cvd.map(Into::into),
        };
        let slots = [
            slot("gpu:0", Some("0")),
            slot("gpu:1", Some("1")),
            slot("cpu", None),
        ];
        let h = judge(&sample, &Thresholds::default(), &slots, Limits::default());
        assert_eq!(h.status, HealthStatus::Critical);
        assert!(!admits(&h, 2), "a critical host admits no slot");
        let mut calm = h.clone();
        calm.status = HealthStatus::Degraded;
        assert!(admits(&calm, 0) && admits(&calm, 2));
        assert!(!admits(&calm, 1), "gpu:1 is critical");
        assert!(admits(&unknown(), 1));
        assert_eq!(
            h.workers,
            vec![
                (WorkerId(0), WorkerHealth::Healthy),
                (WorkerId(1), WorkerHealth::Critical)
            ]
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use sturdy_core::health::{LoadAverage, MachineSample};

    #[test]
    fn load_and_memfree_close_the_gate() {
        let mut sample = MachineSample::default();
        sample.host.load_average = Some(LoadAverage {
            one: 3.5,
            five: 1.0,
            fifteen: 1.0,
        });
        sample.host.memory_available_bytes = Some(1 << 30);
        let t = Thresholds::default();
        let limits = |max_load, min_available| Limits {
            max_load,
            min_available,
        };
        let open = judge(&sample, &t, &[], limits(Some(4.0), Some(512 << 20))).status;
        assert_ne!(open, HealthStatus::Critical);
        let s = judge(&sample, &t, &[], limits(Some(3.0), None)).status;
        assert_eq!(s, HealthStatus::Critical);
        let s = judge(&sample, &t, &[], limits(None, Some(2 << 30))).status;
        assert_eq!(s, HealthStatus::Critical);
    }
}
