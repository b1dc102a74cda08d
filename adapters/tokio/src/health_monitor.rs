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
//! - emits `tracing` events (target `sturdy_shared::health`): status transitions
//!   (`WARN` when worse, `INFO` when better), failed samples (`WARN`), panics (`ERROR`).

use sturdy_core::Clock;
use sturdy_core::health::HealthProbe;
use sturdy_shared::health::{HealthReading, MonitorConfig, Sampler, StatusLog};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::TokioClock;

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
    let clock = TokioClock::with_origin(tokio::time::Instant::now());
    let mut ticks = tokio::time::interval(config.period());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sampler = Some(Sampler::new(probe, config));
    let mut log = StatusLog::default();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = ticks.tick() => {}
        }
        let Some(mut s) = sampler.take() else {
            break;
        };
        seq += 1;
        let taken_at = clock.now();
        let sample = tokio::task::spawn_blocking(move || {
            let reading = s.sample(seq, taken_at);
            (s, reading)
        });
        let joined = tokio::select! {
            biased;
            _ = &mut stopped => break,
            joined = sample => joined,
        };
        // `Sampler::sample` catches every panic, so a join error means the runtime is
        // shutting down.
        let Ok((s, reading)) = joined else {
            break;
        };
        sampler = Some(s);
        log.observe(&reading);
        tx.send_replace(Some(reading));
    }
}
