//! `--health-gate`: a background sampler that feeds the supervisor the host's health.
//!
//! A blocking thread samples the machine (the `sturdy-probe` probe, or any
//! [`HealthProbe`]) every [`INTERVAL`], judges the sample with the core's rules and
//! default [`Thresholds`], and publishes a [`HostHealth`]: the overall status (the
//! supervisor dispatches nothing new while it is critical) and, for each `gpu:IDS` slot,
//! the worst status of its GPUs as that worker's health mark (degraded workers get work
//! last, critical ones none). A sample that fails publishes `Unknown`, which does not
//! stop dispatch: the gate closes only on a known critical reading.

use std::time::Duration;

use sturdy_core::WorkerId;
use sturdy_core::health::{HealthProbe, HealthStatus, Thresholds, assess, assess_gpu};
use sturdy_core::manager::WorkerHealth;
use sturdy_tokio::supervisor::HostHealth;
use tokio::sync::watch;

use crate::options::Slot;

/// How often the gate samples the host.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

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

/// Judges one sample into what the supervisor needs.
pub(crate) fn judge(
    sample: &sturdy_core::health::MachineSample,
    thresholds: &Thresholds,
    slots: &[Slot],
) -> HostHealth {
    let report = assess(sample, thresholds);
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

/// Starts sampling with `probe`; returns the channel the supervisor watches.
pub(crate) fn spawn<P>(mut probe: P, slots: Vec<Slot>) -> watch::Receiver<HostHealth>
where
    P: HealthProbe + Send + 'static,
{
    let thresholds = Thresholds::default();
    let first = match probe.sample() {
        Ok(s) => judge(&s, &thresholds, &slots),
        Err(_) => HostHealth {
            status: HealthStatus::Unknown,
            workers: Vec::new(),
        },
    };
    let (tx, rx) = watch::channel(first);
    let _ = std::thread::Builder::new()
        .name("sturdy-health-gate".into())
        .spawn(move || {
            let mut next = std::time::Instant::now() + INTERVAL;
            loop {
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
                next += INTERVAL;
                let health = match probe.sample() {
                    Ok(s) => judge(&s, &thresholds, &slots),
                    Err(_) => HostHealth {
                        status: HealthStatus::Unknown,
                        workers: Vec::new(),
                    },
                };
                if tx.send(health).is_err() {
                    return;
                }
            }
        });
    rx
}
