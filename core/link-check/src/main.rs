//! A `no_main`, `no_std` binary for `thumbv7em-none-eabihf` that exercises the core and
//! defines no global allocator: if anything in `sturdy-core` allocated, this would fail
//! to link. Built by `.ci/run`; never run.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;
use core::time::Duration;

use sturdy_core::backoff::{Backoff, BackoffConfig, Jitter};
use sturdy_core::breaker::{
    BreakerConfig, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig, CountWindow, Outcome,
};
use sturdy_core::deadline::{DeadlineConfig, DeadlineDetector};
use sturdy_core::health::{DiskSample, GpuSample, MachineSample, Thresholds, assess};
use sturdy_core::manager::{Ledger, LedgerConfig};
use sturdy_core::phi::{PhiAccrual, PhiConfig};
use sturdy_core::phi32::PhiAccrualF32;
use sturdy_core::retry::{Decision, RetryPolicy, RetryState, fixed_policy};
use sturdy_core::retry_driver::{Timer, retry_with_context};
use sturdy_core::{FailureKind, Instant, unwrap_config};

/// A policy built at compile time by the validating constructors.
static POLICY: RetryPolicy = unwrap_config(fixed_policy(3, Duration::from_millis(5)));

/// A clock that jumps to each deadline, for the retry driver.
struct Jump(core::cell::Cell<Instant>);

impl Timer for &Jump {
    type Sleep = core::future::Ready<()>;
    fn now(&self) -> Instant {
        self.0.get()
    }
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        self.0.set(deadline);
        core::future::ready(())
    }
}

/// A peripheral whose reads borrow it mutably.
struct Sensor(u32);

impl Sensor {
    async fn read(&mut self) -> Result<u32, FailureKind> {
        self.0 += 1;
        if black_box(self.0) < 2 { Err(FailureKind::Network) } else { Ok(self.0) }
    }
}

/// The retry driver's context form, polled with a no-op waker (every sleep is ready).
fn retry_paths() {
    use core::future::Future;
    use core::task::{Context, Poll, Waker};
    let clock = Jump(core::cell::Cell::new(Instant::ZERO));
    let mut sensor = Sensor(0);
    let fut = retry_with_context(&clock, &POLICY, &mut sensor, |k: &FailureKind| *k, async |s: &mut &mut Sensor| {
        s.read().await
    });
    let mut fut = core::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..black_box(8) {
        if let Poll::Ready((_, out)) = fut.as_mut().poll(&mut cx) {
            black_box(out.is_ok());
            break;
        }
    }
}

// The documented size of the small breaker holds on this target too.
const _: () = assert!(size_of::<ConsecutiveBreaker>() == 152);
const _: () = assert!(size_of::<ConsecutiveBreaker<1>>() == 128);

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    // Failure detection and health rules: the phi detector and assess().
    phi_paths();
    let mut sample = MachineSample::default();
    sample.host.cpu_percent = Some(black_box(97.0));
    let _ = sample.host.push_disk(DiskSample::new("/", Some(100), Some(black_box(3))));
    let mut gpu = GpuSample::new(0);
    let _ = gpu.push_xid(black_box(79));
    let _ = sample.gpus.push(gpu);
    black_box(assess(&sample, &Thresholds::default()).status);
    loop {}
}

// RAM of the phi detectors on this target, as documented in `sturdy_core::phi32`.
const _: () = assert!(size_of::<PhiAccrual<1000>>() == PHI_F64_RAM);
const _: () = assert!(size_of::<PhiAccrualF32<1000>>() == PHI_F32_RAM);
const PHI_F64_RAM: usize = 8_160;
const PHI_F32_RAM: usize = 4_064;

/// The phi detector: f64 by default, `PhiAccrualF32` with the feature `phi-f32`, none
/// with `no-phi` (the three builds measure each detector's code size).
fn phi_paths() {
    #[cfg(not(any(feature = "phi-f32", feature = "no-phi")))]
    {
        let mut phi = PhiAccrual::<32>::new(PhiConfig::default(), Instant::ZERO);
        for s in 1..black_box(5u64) {
            phi.heartbeat(Instant::from_secs(s));
        }
        black_box(phi.phi(Instant::from_secs(black_box(9))));
        black_box(phi.poll_timeout());
    }
    #[cfg(all(feature = "phi-f32", not(feature = "no-phi")))]
    {
        let mut phi = PhiAccrualF32::<32>::new(PhiConfig::default(), Instant::ZERO);
        for s in 1..black_box(5u64) {
            phi.heartbeat(Instant::from_secs(s));
        }
        black_box(phi.phi(Instant::from_secs(black_box(9))));
        black_box(phi.poll_timeout());
    }
}

/// The fault-tolerance manager's hot paths and the checkpoint encoder.
fn ledger_paths(seed: u64) {
    let mut d = DeadlineDetector::new(DeadlineConfig::default(), Instant::ZERO);
    d.heartbeat(Instant::from_secs(black_box(10)));
    black_box(d.is_suspect(Instant::from_secs(black_box(45))));
    let mut ledger: Ledger<4, 8> = Ledger::new(LedgerConfig::default().with_seed(seed));
    let now = Instant::from_secs(black_box(1));
    if let (Ok(w), Ok(_)) = (ledger.add_worker(2, now), ledger.add_task(now)) {
        let _ = ledger.heartbeat(w, now);
        if let Some(a) = ledger.assign(now) {
            let _ = black_box(ledger.task_failed(a.task, a.epoch, FailureKind::Gpu, now));
        }
        let _ = ledger.worker_failed(w, FailureKind::WorkerCrash, now);
        let _ = ledger.worker_recovered(w, now);
    }
    ledger.handle_timeout(Instant::from_secs(black_box(40)));
    black_box((ledger.poll_timeout(), ledger.poll_event(), ledger.stats()));
    #[cfg(feature = "postcard")]
    {
        let mut buf = [0u8; 1024];
        if let Ok(n) = sturdy_core::checkpoint::encode(&ledger, 3, b"state", &mut buf) {
            if let Ok(cp) = sturdy_core::checkpoint::decode(&buf[..n]) {
                let mut restored: Ledger<4, 8> = Ledger::default();
                black_box(cp.restore_into(&mut restored, now).is_ok());
            }
        }
    }
}

/// The entry point the linker keeps; every core path used from here is linked in.
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let seed = black_box(7u64);
    if let Ok(cfg) = BackoffConfig::exponential(Duration::from_millis(10), 2_000, Duration::from_secs(1)) {
        if let Ok(cfg) = cfg.with_jitter(Jitter::Decorrelated) {
            let mut b = Backoff::new(cfg, seed);
            black_box(b.next_delay());
            if let Ok(policy) = RetryPolicy::new(black_box(4), cfg) {
                let mut st = RetryState::new(Instant::ZERO, seed);
                if let Decision::RetryAfter(d) = st.on_failure(&policy, FailureKind::Network, Instant::from_secs(1)) {
                    black_box(d);
                }
            }
        }
    }
    // The breaker's hot path: acquire, record, timers, events.
    let mut breaker = ConsecutiveBreaker::new(ConsecutiveConfig::original());
    let now = Instant::from_nanos(black_box(5));
    if let Ok(permit) = breaker.try_acquire(now) {
        breaker.record(permit, black_box(Outcome::Failure(FailureKind::Gpu)), now);
    }
    breaker.handle_timeout(now);
    black_box((breaker.poll_timeout(), breaker.poll_event(), breaker.metrics()));
    if let Ok(mut windowed) =
        CircuitBreaker::<CountWindow<32>>::new(BreakerConfig::new(), CountWindow::new(), seed)
    {
        if let Ok(permit) = windowed.try_acquire(now) {
            windowed.record(permit, Outcome::Success, now);
        }
        black_box((windowed.poll_event(), windowed.metrics()));
    }
    // Failure detection and health rules: the phi detector and assess().
    phi_paths();
    let mut sample = MachineSample::default();
    sample.host.cpu_percent = Some(black_box(97.0));
    let _ = sample.host.push_disk(DiskSample::new("/", Some(100), Some(black_box(3))));
    let mut gpu = GpuSample::new(0);
    let _ = gpu.push_xid(black_box(79));
    let _ = sample.gpus.push(gpu);
    black_box(assess(&sample, &Thresholds::default()).status);
    ledger_paths(seed);
    retry_paths();
    let mut roomy = ConsecutiveBreaker::<8>::with_event_capacity(ConsecutiveConfig::original());
    roomy.force_open(now);
    black_box(roomy.poll_event());
    loop {}
}
