//! A worker heartbeats every second with some jitter, then goes silent: prints the φ
//! accrual detector's suspicion as the silence grows and when it would be suspected.
//! Then judges a made-up machine sample (a hot disk, a GPU with XID 79) with the
//! default thresholds and prints the report.
//!
//! Run: `cargo run -p sturdy-core --example detect_and_assess`

use core::time::Duration;

use sturdy_core::Instant;
use sturdy_core::health::{DiskSample, GpuSample, MachineSample, Thresholds, assess};
use sturdy_core::phi::{DEFAULT_MAX_SAMPLES, PhiAccrual, PhiConfig};
use sturdy_core::rng::SplitMix64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = PhiConfig::default();
    println!("{cfg}");
    let mut detector = PhiAccrual::<DEFAULT_MAX_SAMPLES>::new(cfg, Instant::ZERO);
    let mut jitter = SplitMix64::new(7);
    let mut now = Instant::ZERO;
    for _ in 0..60 {
        // 900 ms to 1100 ms between heartbeats.
        now = now + Duration::from_millis(900 + jitter.below_inclusive(200));
        detector.heartbeat(now);
    }
    println!(
        "after {} heartbeats: mean interval {:?}, std deviation {:?}",
        detector.heartbeats(),
        detector.mean_interval(),
        detector.std_deviation()
    );
    for ms in [500, 1_000, 2_000, 3_000, 4_000, 4_500, 5_000, 6_000] {
        let t = now + Duration::from_millis(ms);
        println!(
            "  silent for {ms:>5} ms: phi = {:>8.3}  suspected: {}",
            detector.phi(t),
            detector.suspected(t)
        );
    }
    if let Some(at) = detector.poll_timeout() {
        println!("suspected after {:?} of silence", at - now);
    }

    let mut sample = MachineSample::default();
    sample.host.cpu_percent = Some(42.0);
    sample.host.memory_total_bytes = Some(64 << 30);
    sample.host.memory_available_bytes = Some(20 << 30);
    let _ = sample
        .host
        .push_disk(DiskSample::new("/", Some(500 << 30), Some(200 << 30)));
    let _ = sample
        .host
        .push_disk(DiskSample::new("/scratch", Some(1000), Some(20)));
    let mut gpu = GpuSample::new(0);
    gpu.memory_used_bytes = Some(10 << 30);
    gpu.memory_total_bytes = Some(80 << 30);
    gpu.temperature_c = Some(61.0);
    let _ = gpu.push_xid(79);
    let _ = sample.gpus.push(gpu);
    println!("\n{}", assess(&sample, &Thresholds::default()));
    Ok(())
}
