//! What a health monitor publishes, and one sampling step, shared by the tokio and
//! async-io monitors (each adapter only adds its timer, its blocking thread and its
//! channel).
//!
//! A step samples the probe, judges the sample with the core's [`assess`], calls the
//! callback, and catches a panic in the probe or the callback (`catch_unwind`): a
//! panicking probe becomes a [`SampleError::Panicked`] reading, a panicking callback an
//! `ERROR` event. [`StatusLog`] turns readings into `tracing` events (target
//! `sturdy_shared::health`): status transitions (`WARN` when worse, `INFO` when better)
//! and failed samples (`WARN`).

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use sturdy_core::health::{
    HealthProbe, HealthReport, HealthStatus, MachineSample, Thresholds, assess,
};
use sturdy_core::{ConfigError, Instant};

/// One reading of the monitor: when it was taken and what came of it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HealthReading {
    /// The sample's number, from 1.
    pub seq: u64,
    /// When the sample started, in the monitor's clock (nanoseconds since the monitor
    /// started).
    pub taken_at: Instant,
    /// The sample and its assessment, or why there is none.
    pub result: Result<Assessed, SampleError>,
}

impl HealthReading {
    /// The health status: the report's, or `Unknown` when the sample failed.
    pub fn status(&self) -> HealthStatus {
        match &self.result {
            Ok(a) => a.report.status,
            Err(_) => HealthStatus::Unknown,
        }
    }
}

/// A sample and the core's judgement of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessed {
    /// What the probe read.
    pub sample: MachineSample,
    /// [`assess`] of the sample against the monitor's thresholds.
    pub report: HealthReport,
}

/// Why a reading holds no sample.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampleError {
    /// The probe returned an error (its `Display` text).
    Probe(String),
    /// The probe panicked (the panic message, if it was a string).
    Panicked(String),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Probe(e) => write!(f, "health probe failed: {e}"),
            Self::Panicked(m) => write!(f, "health probe panicked: {m}"),
        }
    }
}

impl std::error::Error for SampleError {}

/// A reading callback, boxed.
pub type Callback = Box<dyn FnMut(&HealthReading) + Send>;

/// How a health monitor (`sturdy_tokio::HealthMonitor`,
/// `sturdy_async_std::HealthMonitor`) runs: the sampling period, the thresholds, an
/// optional callback.
pub struct MonitorConfig {
    period: Duration,
    thresholds: Thresholds,
    on_reading: Option<Callback>,
}

impl fmt::Debug for MonitorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("period", &self.period)
            .field("thresholds", &self.thresholds)
            .field("on_reading", &self.on_reading.is_some())
            .finish()
    }
}

impl MonitorConfig {
    /// Samples every `period`, judged by the default [`Thresholds`], no callback. The
    /// original sampled every 60 s (`monitor_continuously(interval=60)`).
    ///
    /// # Errors
    /// A zero `period`.
    pub fn new(period: Duration) -> Result<Self, ConfigError> {
        if period.is_zero() {
            return Err(ConfigError::new("period", "must be > 0"));
        }
        Ok(Self {
            period,
            thresholds: Thresholds::default(),
            on_reading: None,
        })
    }

    /// Judges samples with `thresholds`.
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Calls `callback` with every reading, on the blocking thread after the sample. A
    /// panic in it is caught and logged; the monitor goes on.
    pub fn on_reading(mut self, callback: impl FnMut(&HealthReading) + Send + 'static) -> Self {
        self.on_reading = Some(Box::new(callback));
        self
    }

    /// The sampling period.
    pub const fn period(&self) -> Duration {
        self.period
    }
}

/// A probe with its thresholds and callback: what a monitor moves to its blocking
/// thread for each sample and gets back after it.
pub struct Sampler<P> {
    probe: P,
    thresholds: Thresholds,
    on_reading: Option<Callback>,
}

impl<P> fmt::Debug for Sampler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("thresholds", &self.thresholds)
            .field("on_reading", &self.on_reading.is_some())
            .finish_non_exhaustive()
    }
}

impl<P: HealthProbe> Sampler<P> {
    /// A sampler of `probe` under `config` (its period is the monitor's business).
    pub fn new(probe: P, config: MonitorConfig) -> Self {
        Self {
            probe,
            thresholds: config.thresholds,
            on_reading: config.on_reading,
        }
    }

    /// Samples once (blocking: call it on a blocking thread), judges the sample, calls
    /// the callback; never panics on a panicking probe or callback.
    pub fn sample(&mut self, seq: u64, taken_at: Instant) -> HealthReading {
        let probe = &mut self.probe;
        let result = match catch_unwind(AssertUnwindSafe(|| probe.sample())) {
            Ok(Ok(sample)) => {
                let report = assess(&sample, &self.thresholds);
                Ok(Assessed { sample, report })
            }
            Ok(Err(e)) => Err(SampleError::Probe(e.to_string())),
            Err(panic) => Err(SampleError::Panicked(panic_message(&*panic))),
        };
        let reading = HealthReading {
            seq,
            taken_at,
            result,
        };
        if let Some(cb) = self.on_reading.as_mut()
            && let Err(panic) = catch_unwind(AssertUnwindSafe(|| cb(&reading)))
        {
            tracing::error!(
                target: "sturdy_shared::health",
                seq,
                panic = %panic_message(&*panic),
                "health callback panicked; the monitor goes on"
            );
        }
        reading
    }
}

/// Remembers the last status and logs transitions and failed samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatusLog {
    last: Option<HealthStatus>,
}

impl StatusLog {
    /// Logs `reading`: a failed sample, and a change of status since the last one.
    /// Returns whether the status changed.
    pub fn observe(&mut self, reading: &HealthReading) -> bool {
        log_reading(reading, &mut self.last)
    }
}

fn log_reading(reading: &HealthReading, last: &mut Option<HealthStatus>) -> bool {
    const T: &str = "sturdy_shared::health";
    if let Err(e) = &reading.result {
        tracing::warn!(target: T, seq = reading.seq, error = %e, "health sample failed");
    }
    let status = reading.status();
    let mut changed = false;
    if let Some(prev) = *last
        && prev != status
    {
        changed = true;
        if rank(status) > rank(prev) {
            tracing::warn!(target: T, from = prev.as_str(), to = status.as_str(), "health got worse");
        } else {
            tracing::info!(target: T, from = prev.as_str(), to = status.as_str(), "health got better");
        }
    }
    *last = Some(status);
    changed
}

const fn rank(s: HealthStatus) -> u8 {
    match s {
        HealthStatus::Healthy => 0,
        HealthStatus::Unknown => 1,
        HealthStatus::Degraded => 2,
        HealthStatus::Critical => 3,
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Script(Vec<Option<f32>>, usize);

    impl HealthProbe for Script {
        type Error = &'static str;
        fn sample(&mut self) -> Result<MachineSample, &'static str> {
            let step = self.0[self.1];
            self.1 += 1;
            match step {
                Some(cpu) if cpu < 0.0 => panic!("negative cpu"),
                Some(cpu) => {
                    let mut s = MachineSample::default();
                    s.host.cpu_percent = Some(cpu);
                    Ok(s)
                }
                None => Err("unreadable"),
            }
        }
    }

    #[test]
    fn a_step_catches_probe_and_callback_panics_and_the_log_sees_transitions() {
        let config = MonitorConfig::new(Duration::from_secs(1))
            .unwrap()
            .on_reading(|r| assert!(r.seq != 2, "callback bug"));
        let mut s = Sampler::new(
            Script(vec![Some(99.0), None, Some(-1.0), Some(99.0)], 0),
            config,
        );
        let mut log = StatusLog::default();
        let r1 = s.sample(1, Instant::from_secs(0));
        assert_eq!(r1.status(), HealthStatus::Critical);
        assert!(!log.observe(&r1), "the first reading is no transition");
        let r2 = s.sample(2, Instant::from_secs(1));
        assert_eq!(r2.result, Err(SampleError::Probe("unreadable".into())));
        assert!(log.observe(&r2), "critical -> unknown");
        let r3 = s.sample(3, Instant::from_secs(2));
        assert_eq!(r3.result, Err(SampleError::Panicked("negative cpu".into())));
        assert!(!log.observe(&r3), "unknown -> unknown");
        let r4 = s.sample(4, Instant::from_secs(3));
        assert_eq!((r4.seq, r4.taken_at), (4, Instant::from_secs(3)));
        assert!(log.observe(&r4));
        assert_eq!(
            r3.result.unwrap_err().to_string(),
            "health probe panicked: negative cpu"
        );
    }
}
