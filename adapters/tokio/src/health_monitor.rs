//! `HealthMonitor`: a background task that samples a [`HealthProbe`] at a fixed rate
//! and publishes the latest reading.
//!
//! The original design's monitor loop ran forever, blocked its caller and died on the
//! first callback error. This one:
//! - runs as a tokio task; each sample runs on a blocking thread (`spawn_blocking`),
//!   since a probe does synchronous I/O (procfs, NVML) that must not stall the runtime;
//! - samples at a fixed rate without drift: a `tokio::time::interval` whose ticks stay
//!   on the grid `start + k * period` however long each sample takes; a sample that
//!   overruns the period makes the monitor **skip** the ticks it missed
//!   (`MissedTickBehavior::Skip`) rather than burst to catch up (stale samples taken
//!   back to back say nothing new) or shift the grid (`Delay` drifts);
//! - publishes every reading through a `tokio::sync::watch` channel (readers see the
//!   latest, never a backlog);
//! - survives a failing sample (published as [`SampleError::Probe`]), a panicking probe
//!   and a panicking callback (caught with `catch_unwind`, published or logged);
//! - stops when asked ([`HealthMonitor::stop`]) and when its handle is dropped; a sample
//!   in progress on its blocking thread finishes there and is discarded;
//! - emits `tracing` events (target `sturdy_tokio::health`): status transitions
//!   (`WARN` when worse, `INFO` when better), failed samples (`WARN`), panics (`ERROR`).

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use sturdy_core::health::{
    HealthProbe, HealthReport, HealthStatus, MachineSample, Thresholds, assess,
};
use sturdy_core::{Clock, ConfigError, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::TokioClock;

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

type Callback = Box<dyn FnMut(&HealthReading) + Send>;

/// How a [`HealthMonitor`] runs: the sampling period, the thresholds, an optional
/// callback.
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

/// The handle of a running health monitor. Dropping it stops the monitor.
#[derive(Debug)]
pub struct HealthMonitor {
    readings: watch::Receiver<Option<HealthReading>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HealthMonitor {
    /// Starts sampling `probe` on the current tokio runtime: the first sample at once,
    /// then one every `config.period()`.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn`).
    pub fn spawn<P>(probe: P, config: MonitorConfig) -> Self
    where
        P: HealthProbe + Send + 'static,
    {
        let (tx, readings) = watch::channel(None);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(probe, config, tx, stopped));
        Self {
            readings,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The latest reading, if any (a clone).
    pub fn latest(&self) -> Option<HealthReading> {
        self.readings.borrow().clone()
    }

    /// A receiver of the readings: `changed().await` wakes at each new one.
    pub fn subscribe(&self) -> watch::Receiver<Option<HealthReading>> {
        self.readings.clone()
    }

    /// Whether the monitor task is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the monitor and waits for its task to end (a sample in progress on its
    /// blocking thread is left to finish there and discarded).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        // Dropping the sender stops the loop at its next wait.
        self.stop.take();
    }
}

async fn run<P>(
    probe: P,
    config: MonitorConfig,
    tx: watch::Sender<Option<HealthReading>>,
    mut stopped: oneshot::Receiver<()>,
) where
    P: HealthProbe + Send + 'static,
{
    let MonitorConfig {
        period,
        thresholds,
        on_reading,
    } = config;
    let clock = TokioClock::with_origin(tokio::time::Instant::now());
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut worker = Some((probe, on_reading));
    let mut last_status: Option<HealthStatus> = None;
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = ticks.tick() => {}
        }
        let Some((mut probe, mut on_reading)) = worker.take() else {
            break;
        };
        seq += 1;
        let taken_at = clock.now();
        let sample = tokio::task::spawn_blocking(move || {
            let result = match catch_unwind(AssertUnwindSafe(|| probe.sample())) {
                Ok(Ok(sample)) => {
                    let report = assess(&sample, &thresholds);
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
            if let Some(cb) = on_reading.as_mut()
                && let Err(panic) = catch_unwind(AssertUnwindSafe(|| cb(&reading)))
            {
                tracing::error!(
                    target: "sturdy_tokio::health",
                    seq,
                    panic = %panic_message(&*panic),
                    "health callback panicked; the monitor goes on"
                );
            }
            (probe, on_reading, reading)
        });
        let joined = tokio::select! {
            biased;
            _ = &mut stopped => break,
            joined = sample => joined,
        };
        // The closure catches every panic, so a join error means the runtime is
        // shutting down.
        let Ok((probe, on_reading, reading)) = joined else {
            break;
        };
        worker = Some((probe, on_reading));
        log_reading(&reading, &mut last_status);
        tx.send_replace(Some(reading));
    }
}

fn log_reading(reading: &HealthReading, last: &mut Option<HealthStatus>) {
    const T: &str = "sturdy_tokio::health";
    if let Err(e) = &reading.result {
        tracing::warn!(target: T, seq = reading.seq, error = %e, "health sample failed");
    }
    let status = reading.status();
    if let Some(prev) = *last
        && prev != status
    {
        if rank(status) > rank(prev) {
            tracing::warn!(target: T, from = prev.as_str(), to = status.as_str(), "health got worse");
        } else {
            tracing::info!(target: T, from = prev.as_str(), to = status.as_str(), "health got better");
        }
    }
    *last = Some(status);
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
