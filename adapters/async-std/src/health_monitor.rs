//! `HealthMonitor` for async-std and smol programs: a future that samples a
//! [`HealthProbe`] at a fixed rate, for the caller to spawn on its executor.
//!
//! Same rules as `sturdy-tokio`'s monitor: each sample runs on a blocking thread (the
//! `blocking` crate's pool, which async-std and smol both use); the ticks stay on the
//! grid `start + k * period` (no drift), and a sample that overruns the period skips
//! the missed grid points instead of bursting; a failing or panicking sample and a
//! panicking callback are caught ([`Sampler`]); the monitor stops when asked or when
//! its handle is dropped; transitions are `tracing` events ([`StatusLog`]).
//!
//! The crate depends on no executor, so [`HealthMonitor::new`] returns the handle and
//! the future that runs the monitor; spawn it with `smol::spawn(task).detach()` or
//! `async_std::task::spawn(task)`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_listener::Event;
use futures_lite::future;
use sturdy_core::Clock;
use sturdy_core::health::HealthProbe;
use sturdy_shared::health::{HealthReading, MonitorConfig, Sampler, StatusLog};

use crate::clock::AsyncIoClock;

#[derive(Default)]
struct Board {
    latest: Mutex<Option<HealthReading>>,
    published: Event,
    stop: AtomicBool,
    stopping: Event,
    ended: AtomicBool,
}

impl Board {
    fn latest(&self) -> Option<HealthReading> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, reading: HealthReading) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(reading);
        self.published.notify(usize::MAX);
    }

    fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.published.notify(usize::MAX);
    }

    async fn stopped(&self) {
        loop {
            let listener = self.stopping.listen();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

/// The handle of a health monitor. Dropping it (or [`stop`](Self::stop)) ends the
/// monitor's future at its next wait.
#[derive(Debug)]
pub struct HealthMonitor {
    board: Arc<Board>,
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("stop", &self.stop)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl HealthMonitor {
    /// A monitor of `probe`: the handle, and the future that runs it (the first sample
    /// at once, then one every `config.period()`), to spawn on any executor.
    pub fn new<P>(
        probe: P,
        config: MonitorConfig,
    ) -> (Self, impl Future<Output = ()> + Send + 'static)
    where
        P: HealthProbe + Send + 'static,
    {
        let board = Arc::new(Board::default());
        let task = run(probe, config, board.clone());
        (Self { board }, task)
    }

    /// The latest reading, if any (a clone).
    pub fn latest(&self) -> Option<HealthReading> {
        self.board.latest()
    }

    /// Waits for a reading numbered above `seq` (0 for the first) and returns it;
    /// `None` once the monitor has ended.
    pub async fn next_after(&self, seq: u64) -> Option<HealthReading> {
        loop {
            let listener = self.board.published.listen();
            if let Some(r) = self.board.latest().filter(|r| r.seq > seq) {
                return Some(r);
            }
            if self.board.ended.load(Ordering::SeqCst) {
                return None;
            }
            listener.await;
        }
    }

    /// Whether the monitor's future is still running (or not yet started).
    pub fn is_running(&self) -> bool {
        !self.board.ended.load(Ordering::SeqCst)
    }

    /// Asks the monitor to stop; its future returns at its next wait (a sample in
    /// progress on its blocking thread finishes there and is discarded).
    pub fn stop(&self) {
        self.board.stop.store(true, Ordering::SeqCst);
        self.board.stopping.notify(usize::MAX);
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run<P>(probe: P, config: MonitorConfig, board: Arc<Board>)
where
    P: HealthProbe + Send + 'static,
{
    let period = config.period();
    let clock = AsyncIoClock::new();
    let start = std::time::Instant::now();
    let mut sampler = Some(Sampler::new(probe, config));
    let mut log = StatusLog::default();
    let mut seq = 0u64;
    let mut due = start;
    loop {
        let tick = async {
            async_io::Timer::at(due).await;
            true
        };
        if !future::or(tick, async {
            board.stopped().await;
            false
        })
        .await
        {
            break;
        }
        let Some(mut s) = sampler.take() else {
            break;
        };
        seq += 1;
        let taken_at = clock.now();
        let sample = blocking::unblock(move || {
            let reading = s.sample(seq, taken_at);
            (s, reading)
        });
        let joined = future::or(async { Some(sample.await) }, async {
            board.stopped().await;
            None
        })
        .await;
        let Some((s, reading)) = joined else {
            break;
        };
        sampler = Some(s);
        log.observe(&reading);
        board.publish(reading);
        due = next_due(start, period, due, std::time::Instant::now());
    }
    board.end();
}

/// The next grid point `start + k * period` after `due`, skipping those already past
/// at `now` (a sample that overran the period does not cause a burst).
fn next_due(
    start: std::time::Instant,
    period: Duration,
    due: std::time::Instant,
    now: std::time::Instant,
) -> std::time::Instant {
    let next = due.checked_add(period).unwrap_or(due);
    if next > now {
        return next;
    }
    let behind = now.saturating_duration_since(start).as_nanos();
    let k = behind / period.as_nanos().max(1) + 1;
    let offset = Duration::from_nanos(
        u64::try_from(k.saturating_mul(period.as_nanos())).unwrap_or(u64::MAX),
    );
    start.checked_add(offset).unwrap_or(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_skips_missed_points_and_never_drifts() {
        let start = std::time::Instant::now();
        let p = Duration::from_millis(100);
        let ms = |m| start + Duration::from_millis(m);
        // On time: the next grid point.
        assert_eq!(next_due(start, p, ms(0), ms(30)), ms(100));
        assert_eq!(next_due(start, p, ms(100), ms(199)), ms(200));
        // A sample that overran to 350 ms: 200 and 300 are skipped, 400 is next.
        assert_eq!(next_due(start, p, ms(100), ms(350)), ms(400));
        // Exactly on a grid point that is already past: the one after.
        assert_eq!(next_due(start, p, ms(100), ms(300)), ms(400));
    }
}
