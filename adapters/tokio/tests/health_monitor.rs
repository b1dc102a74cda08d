//! The health monitor in virtual time: fixed rate without drift, survival of failing
//! and panicking samples and callbacks, and stopping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_core::health::{HealthProbe, HealthStatus, MachineSample};
use sturdy_tokio::{HealthMonitor, MonitorConfig, SampleError};
use tokio::time::Instant;

/// A probe that plays a script: per call, the CPU % to report, `None` for an error,
/// or a panic; it records the virtual time of each call in ms.
struct Scripted {
    start: Instant,
    script: Vec<Step>,
    calls: Arc<Mutex<Vec<u64>>>,
}

#[derive(Clone, Copy)]
enum Step {
    Cpu(f32),
    Fail,
    Panic,
}

impl HealthProbe for Scripted {
    type Error = &'static str;
    fn sample(&mut self) -> Result<MachineSample, &'static str> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(self.start.elapsed().as_millis() as u64);
        let step = self.script[(calls.len() - 1) % self.script.len()];
        drop(calls);
        match step {
            Step::Cpu(cpu) => {
                let mut s = MachineSample::default();
                s.host.cpu_percent = Some(cpu);
                Ok(s)
            }
            Step::Fail => Err("procfs unreadable"),
            Step::Panic => panic!("probe bug"),
        }
    }
}

fn scripted(script: Vec<Step>) -> (Scripted, Arc<Mutex<Vec<u64>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let probe = Scripted {
        start: Instant::now(),
        script,
        calls: calls.clone(),
    };
    (probe, calls)
}

#[tokio::test(start_paused = true)]
async fn samples_at_a_fixed_rate_and_publishes_the_latest() {
    let (probe, calls) = scripted(vec![Step::Cpu(10.0)]);
    let monitor = HealthMonitor::spawn(
        probe,
        MonitorConfig::new(Duration::from_millis(100)).unwrap(),
    );
    let mut rx = monitor.subscribe();
    for expect in 1..=5u64 {
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().as_ref().unwrap().seq, expect);
    }
    assert_eq!(*calls.lock().unwrap(), [0, 100, 200, 300, 400]);
    let latest = monitor.latest().unwrap();
    assert_eq!(latest.taken_at.as_millis(), 400);
    let assessed = latest.result.as_ref().unwrap();
    assert_eq!(assessed.sample.host.cpu_percent, Some(10.0));
    assert_eq!(latest.status(), assessed.report.status);
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_or_panicking_sample_and_a_panicking_callback_do_not_kill_it() {
    let (probe, calls) = scripted(vec![
        Step::Cpu(10.0),
        Step::Fail,
        Step::Panic,
        Step::Cpu(99.0),
    ]);
    let seen = Arc::new(AtomicU32::new(0));
    let cb_seen = seen.clone();
    let config = MonitorConfig::new(Duration::from_secs(1))
        .unwrap()
        .on_reading(move |r| {
            cb_seen.fetch_add(1, Ordering::SeqCst);
            if r.seq == 1 {
                panic!("callback bug");
            }
        });
    let monitor = HealthMonitor::spawn(probe, config);
    let mut rx = monitor.subscribe();
    let mut readings = Vec::new();
    for _ in 0..5 {
        rx.changed().await.unwrap();
        readings.push(rx.borrow().clone().unwrap());
    }
    assert_eq!(*calls.lock().unwrap(), [0, 1000, 2000, 3000, 4000]);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "the callback ran every time"
    );
    assert!(readings[0].result.is_ok());
    assert_eq!(
        readings[1].result,
        Err(SampleError::Probe("procfs unreadable".into()))
    );
    assert_eq!(readings[1].status(), HealthStatus::Unknown);
    assert_eq!(
        readings[2].result,
        Err(SampleError::Panicked("probe bug".into()))
    );
    // CPU 99 % is above the default 95 % critical level.
    assert_eq!(readings[3].status(), HealthStatus::Critical);
    assert!(readings[4].result.is_ok());
    assert!(monitor.is_running());
    monitor.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stops_when_asked_and_when_dropped() {
    let (probe, calls) = scripted(vec![Step::Cpu(10.0)]);
    let monitor = HealthMonitor::spawn(
        probe,
        MonitorConfig::new(Duration::from_millis(100)).unwrap(),
    );
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap();
    rx.changed().await.unwrap();
    monitor.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.lock().unwrap().len(), 2);
    // The task is gone: the channel's sender was dropped with it.
    assert!(rx.changed().await.is_err());

    let (probe, calls) = scripted(vec![Step::Cpu(10.0)]);
    let monitor = HealthMonitor::spawn(
        probe,
        MonitorConfig::new(Duration::from_millis(100)).unwrap(),
    );
    let mut rx = monitor.subscribe();
    rx.changed().await.unwrap();
    drop(monitor);
    assert!(
        rx.changed().await.is_err(),
        "dropping the handle ends the task"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(
        MonitorConfig::new(Duration::ZERO).unwrap_err().field(),
        "period"
    );
}
