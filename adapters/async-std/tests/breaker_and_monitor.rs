//! The shared breaker and the health monitor under async-std and smol (real time, short
//! periods; assertions on counts and order, never on speed).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_async_std::{Breaker, BreakerError, HealthMonitor, MonitorConfig, SampleError};
use sturdy_core::FailureKind;
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig, State};
use sturdy_core::health::{HealthProbe, HealthStatus, MachineSample};

type Spawn = fn(Pin<Box<dyn Future<Output = ()> + Send>>);

/// Runs `make(spawn)` under async-std, then under smol, with that executor's spawn.
fn both<F: Future<Output = ()>>(make: impl Fn(Spawn) -> F) {
    async_std::task::block_on(make(|f| {
        async_std::task::spawn(f);
    }));
    smol::block_on(make(|f| smol::spawn(f).detach()));
}

#[test]
fn breaker_opens_rejects_probes_and_closes() {
    both(|_| async {
        let b: Breaker = Breaker::new(ConsecutiveBreaker::new(
            ConsecutiveConfig::new(2, Duration::from_millis(30), 1).unwrap(),
        ));
        let calls = AtomicU32::new(0);
        for _ in 0..2 {
            let r = b
                .call(async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>("refused")
                })
                .await;
            assert_eq!(r, Err(BreakerError::Failed("refused")));
        }
        assert!(matches!(b.state(), State::Open { .. }));
        let r = b
            .call(async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, &str>(())
            })
            .await;
        assert!(matches!(r, Err(BreakerError::Rejected(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 2, "rejected without calling");
        async_io::Timer::after(Duration::from_millis(40)).await;
        let probe = b.try_acquire().expect("half-open probe");
        assert!(probe.is_probe());
        probe.success();
        assert_eq!(b.state(), State::Closed);
        b.try_acquire().unwrap().failure(FailureKind::Network);
        assert_eq!(b.metrics().consecutive_failures, 1);
    });
}

struct Flaky {
    calls: Arc<AtomicU32>,
}

impl HealthProbe for Flaky {
    type Error = &'static str;
    fn sample(&mut self) -> Result<MachineSample, &'static str> {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            1 => Err("nvml gone"),
            2 => panic!("probe bug"),
            n => {
                let mut s = MachineSample::default();
                s.host.cpu_percent = Some(if n == 3 { 99.0 } else { 5.0 });
                Ok(s)
            }
        }
    }
}

#[test]
fn monitor_survives_failures_and_panics_and_stops() {
    both(|spawn| async move {
        let calls = Arc::new(AtomicU32::new(0));
        // The callback sees every reading, in order; it panics on the first one.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cb = seen.clone();
        let config = MonitorConfig::new(Duration::from_millis(10))
            .unwrap()
            .on_reading(move |r| {
                cb.lock().unwrap().push(r.clone());
                assert!(r.seq != 1, "callback bug on the first reading");
            });
        let (monitor, task) = HealthMonitor::new(
            Flaky {
                calls: calls.clone(),
            },
            config,
        );
        spawn(Box::pin(task));
        let mut seq = 0;
        while seq < 5 {
            let r = monitor.next_after(seq).await.expect("running");
            assert!(r.seq > seq, "readings never go back");
            seq = r.seq;
        }
        let readings: Vec<_> = seen.lock().unwrap().iter().take(5).cloned().collect();
        let seqs: Vec<u64> = readings.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        // Only the CPU is reported: the other required readings are unknown.
        assert!(readings[0].result.is_ok());
        assert_eq!(readings[0].status(), HealthStatus::Unknown);
        assert_eq!(
            readings[1].result,
            Err(SampleError::Probe("nvml gone".into()))
        );
        assert_eq!(
            readings[2].result,
            Err(SampleError::Panicked("probe bug".into()))
        );
        assert_eq!(readings[3].status(), HealthStatus::Critical);
        assert_eq!(readings[4].status(), HealthStatus::Unknown);
        monitor.stop();
        assert_eq!(monitor.next_after(u64::MAX).await, None);
        assert!(!monitor.is_running());
        let after = calls.load(Ordering::SeqCst);
        async_io::Timer::after(Duration::from_millis(50)).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after,
            "no sample after the stop"
        );
    });
}
