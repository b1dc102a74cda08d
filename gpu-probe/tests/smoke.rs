//! The real host. No NVIDIA GPU is at hand where this crate is developed; on such a
//! host the GPU part must say unavailable, with the reason.

use std::time::Duration;

use sturdy_core::health::GpuReadout;
use sturdy_probe::{MIN_CPU_INTERVAL, Probe, ProbeConfig};

#[test]
fn the_real_host_reads_fully_and_the_first_cpu_sample_is_unknown() {
    let mut p = Probe::new();
    let first = p.sample();
    assert_eq!(first.host.cpu_percent, None);
    let total = first.host.memory_total_bytes.expect("memory total");
    assert!(total > 0);
    let used = first.host.memory_used_bytes.expect("memory used");
    let avail = first.host.memory_available_bytes.expect("memory available");
    let effective = first
        .host
        .effective_memory_total_bytes()
        .expect("effective total");
    assert!(effective <= total && used <= effective && avail <= total);
    assert!(first.host.swap_total_bytes.is_some());
    #[cfg(unix)]
    assert!(first.host.load_average.is_some());
    assert!(!first.host.disks.is_empty(), "no filesystem found");
    for d in &first.host.disks {
        assert!(
            !d.mount_point.as_str().starts_with("/proc"),
            "{:?}",
            d.mount_point
        );
        assert!(d.total_bytes.is_some());
    }
    match &first.gpus {
        GpuReadout::Unavailable(why) => {
            eprintln!("{why}");
            assert!(why.detail.is_some(), "a reason with its detail: {why}");
        }
        readout => eprintln!("{} GPU(s) read", readout.devices().len()),
    }

    // the probe never sleeps: a second reading after the minimum interval gives a figure
    std::thread::sleep(MIN_CPU_INTERVAL + Duration::from_millis(20));
    let cpu = p
        .sample()
        .host
        .cpu_percent
        .expect("a CPU figure on the second sample");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");

    println!("{}", sturdy_probe::table(&p.sample()));
    let info = p.system_info();
    println!("{info}");
    assert!(info.logical_cores.is_some_and(|n| n >= 1));
    assert_eq!(info.memory_total_bytes, Some(total));
    assert!(info.disk_total_bytes.is_some());
    assert!(info.kernel_version.is_some() || cfg!(not(target_os = "linux")));
    assert_eq!(
        info.gpus_unavailable.is_some(),
        matches!(first.gpus, GpuReadout::Unavailable(_))
    );
}

#[test]
fn the_real_host_with_gpus_disabled_and_root_only() {
    let config = ProbeConfig::default()
        .with_gpus(false)
        .with_mounts(sturdy_probe::MountSelection::Only(vec!["/".into()]))
        .expect("valid");
    let s = Probe::with_config(config).sample();
    assert_eq!(s.host.disks.len(), 1);
    assert_eq!(s.host.disks[0].mount_point.as_str(), "/");
    let text = sturdy_probe::prometheus(&s);
    assert!(
        text.contains("sturdy_gpus_available{reason=\"disabled\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("sturdy_filesystem_size_bytes{mountpoint=\"/\"} "),
        "{text}"
    );
}

#[test]
fn one_call_helpers_read_and_judge_this_host() {
    use sturdy_core::health::{HealthStatus, Severity, Thresholds};
    let h = sturdy_probe::get_system_health();
    // the first call primed the CPU counters: no CPU reading is missing
    assert!(h.sample.host.cpu_percent.is_some(), "{h}");
    assert!(
        h.report
            .issues_at_least(Severity::Unknown)
            .all(|i| i.severity != Severity::Unknown),
        "nothing the rules need is missing here: {h}"
    );
    assert_eq!(h.is_healthy(), h.status() == HealthStatus::Healthy);
    // levels that nothing can exceed (strictly above 100 %): healthy whatever the load
    let lenient = Thresholds::default()
        .with_cpu_percent(100.0, 100.0)
        .and_then(|t| t.with_memory_percent(100.0, 100.0))
        .and_then(|t| t.with_disk_percent(100.0, 100.0))
        .expect("valid");
    assert!(sturdy_probe::is_system_healthy_with(&lenient));
    let _ = sturdy_probe::is_system_healthy(); // the default verdict depends on the load
}
