//! The health rules: judge a [`MachineSample`] against [`Thresholds`] (see [`assess`]).

use super::report::{Device, HealthReport, Issue, Metric, Severity};
use super::sample::{
    DiskSample, GpuReadout, GpuSample, HostSample, MachineSample, ThrottleReasons,
};
use super::thresholds::{Level, Thresholds};
use super::xid::{XidClass, classify_xid};

/// Judges a whole machine: the host, then the GPUs.
///
/// Rules, in the order they run (and the order of the issues in the report):
///
/// Host (sources: the original's HealthMonitor; node_exporter's mixin alerts):
/// - CPU busy % against [`Thresholds::cpu_percent`]; missing or NaN: unknown.
/// - Memory used %, against [`Thresholds::memory_percent`]. Under a container limit
///   (`memory_effective_total_bytes`): `used / limit` (the cgroup's usage against its
///   limit), else `(limit - available) / limit`. Without one: `(total - available) /
///   total` (`MemAvailable`, as node_exporter's mixin), else `used / total`. Missing, or
///   a total of 0, or more available than the total: unknown.
/// - Each disk's used % (`total - available`) against [`Thresholds::disk_percent`];
///   missing, a total of 0, or more available than the total: unknown. No disk at all: unknown. Disks left out of a
///   full sample list: unknown.
///
/// GPUs (source: NVIDIA DCGM's health watches):
/// - memory used % against [`Thresholds::gpu_memory_percent`]; missing: unknown;
/// - temperature above the device's slowdown temperature: degraded; above its shutdown
///   temperature minus [`Thresholds::gpu_shutdown_headroom_c`]: critical; either level
///   falls back to [`Thresholds::gpu_temperature_c`] when the device does not report
///   it; missing: unknown;
/// - volatile uncorrected (double-bit) ECC errors above 0: critical;
/// - a row remapping failure: critical; retired pages pending: degraded;
/// - hardware slowdown, thermal slowdown (hardware or software) or power-brake
///   throttling: degraded ([`ThrottleReasons::DEGRADING`]);
/// - each distinct recent XID by [`classify_xid`]: device-critical is critical,
///   device-degraded is degraded, an application fault is no device issue, an unknown
///   code is unknown; XIDs left out of a full list: unknown;
/// - with [`Thresholds::expected_gpus`] > 0: fewer devices is critical and an
///   unavailable readout is unknown; with 0 (the default) an unavailable readout is no
///   issue (a host without GPUs).
///
/// Readings the rules do not need (utilization, power, swap, load) are never an issue
/// when missing. Levels trip on a value strictly above them. Percentages are clamped to
/// `[0, 100]`; a non-finite reading is treated as missing. No rule divides by zero.
///
///
/// ```
/// use sturdy_core::health::{assess, DiskSample, HealthStatus, MachineSample, Thresholds};
/// let mut s = MachineSample::default();
/// s.host.cpu_percent = Some(97.0);
/// s.host.memory_total_bytes = Some(16 << 30);
/// s.host.memory_available_bytes = Some(8 << 30);
/// s.host.push_disk(DiskSample::new("/", Some(100 << 30), Some(50 << 30))).unwrap();
/// let r = assess(&s, &Thresholds::default());
/// assert_eq!(r.status, HealthStatus::Critical);
/// assert_eq!(r.to_string(), "critical\n  critical: host: CPU usage 97.0 % > 95.0 %");
/// ```
pub fn assess(sample: &MachineSample, thresholds: &Thresholds) -> HealthReport {
    let mut report = HealthReport::default();
    assess_host_into(&sample.host, thresholds, &mut report);
    assess_gpus_into(&sample.gpus, thresholds, &mut report);
    report
}

/// Judges the host alone by the host rules of [`assess`] (CPU, memory, disks); GPUs are
/// not looked at.
pub fn assess_host(host: &HostSample, thresholds: &Thresholds) -> HealthReport {
    let mut report = HealthReport::default();
    assess_host_into(host, thresholds, &mut report);
    report
}

/// A finite reading as a percentage clamped to `[0, 100]`; `None` when not finite.
fn percent(x: f32) -> Option<f64> {
    x.is_finite().then(|| f64::from(x).clamp(0.0, 100.0))
}

/// `used / total` as a percentage clamped to `[0, 100]`; `None` when `total` is 0.
fn ratio_percent(used: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| used.min(total) as f64 / total as f64 * 100.0)
}

/// Judges one value against a level: missing is unknown (limit: the critical level).
fn judge(
    report: &mut HealthReport,
    metric: Metric,
    device: Device,
    value: Option<f64>,
    level: Level,
) {
    let (w, c) = (f64::from(level.warning()), f64::from(level.critical()));
    let (severity, limit) = match value {
        None => (Severity::Unknown, c),
        Some(v) if v > c => (Severity::Critical, c),
        Some(v) if v > w => (Severity::Degraded, w),
        Some(_) => return,
    };
    report.push(Issue {
        metric,
        device,
        value,
        limit: Some(limit),
        severity,
    });
}

fn flag(report: &mut HealthReport, metric: Metric, device: Device, severity: Severity, value: f64) {
    report.push(Issue {
        metric,
        device,
        value: Some(value),
        limit: None,
        severity,
    });
}

fn assess_host_into(host: &HostSample, t: &Thresholds, report: &mut HealthReport) {
    judge(
        report,
        Metric::CpuPercent,
        Device::Host,
        host.cpu_percent.and_then(percent),
        t.cpu_percent(),
    );

    let memory = host.effective_memory_total_bytes().and_then(|total| {
        // More available than the total is an inconsistent reading: unknown, never 0 %.
        let from_available = host.memory_available_bytes.map(|a| total.checked_sub(a));
        let used = if host.memory_effective_total_bytes.is_some() {
            host.memory_used_bytes.or(from_available.flatten())
        } else {
            from_available.unwrap_or(host.memory_used_bytes)
        };
        ratio_percent(used?, total)
    });
    judge(
        report,
        Metric::MemoryPercent,
        Device::Host,
        memory,
        t.memory_percent(),
    );

    if host.disks.is_empty() && host.disks_omitted == 0 {
        judge(
            report,
            Metric::DiskPercent,
            Device::Host,
            None,
            t.disk_percent(),
        );
    }
    for disk in &host.disks {
        judge(
            report,
            Metric::DiskPercent,
            Device::Disk(disk.mount_point.clone()),
            disk_used_percent(disk),
            t.disk_percent(),
        );
    }
    if host.disks_omitted > 0 {
        flag(
            report,
            Metric::DisksOmitted,
            Device::Host,
            Severity::Unknown,
            f64::from(host.disks_omitted),
        );
    }
}

fn disk_used_percent(disk: &DiskSample) -> Option<f64> {
    let total = disk.total_bytes?;
    ratio_percent(total.checked_sub(disk.available_bytes?)?, total)
}

fn assess_gpus_into(gpus: &GpuReadout, t: &Thresholds, report: &mut HealthReport) {
    let expected = t.expected_gpus();
    match gpus {
        GpuReadout::Unavailable(_) => {
            if expected > 0 {
                report.push(Issue {
                    metric: Metric::GpuReadout,
                    device: Device::Host,
                    value: None,
                    limit: Some(f64::from(expected)),
                    severity: Severity::Unknown,
                });
            }
        }
        GpuReadout::Devices { devices, omitted } => {
            for gpu in devices {
                assess_gpu_into(gpu, t, report);
            }
            if *omitted > 0 {
                flag(
                    report,
                    Metric::GpusOmitted,
                    Device::Host,
                    Severity::Unknown,
                    f64::from(*omitted),
                );
            }
            let found = devices.len() as u64 + u64::from(*omitted);
            if found < u64::from(expected) {
                report.push(Issue {
                    metric: Metric::GpuCount,
                    device: Device::Host,
                    value: Some(found as f64),
                    limit: Some(f64::from(expected)),
                    severity: Severity::Critical,
                });
            }
        }
    }
}

/// Judges one GPU by the GPU rules of [`assess`]; the issues name it by index.
pub fn assess_gpu(gpu: &GpuSample, thresholds: &Thresholds) -> HealthReport {
    let mut report = HealthReport::default();
    assess_gpu_into(gpu, thresholds, &mut report);
    report
}

fn finite(x: Option<f32>) -> Option<f32> {
    x.filter(|v| v.is_finite())
}

fn assess_gpu_into(gpu: &GpuSample, t: &Thresholds, report: &mut HealthReport) {
    let dev = || Device::Gpu(gpu.index);

    let memory = match (gpu.memory_used_bytes, gpu.memory_total_bytes) {
        (Some(used), Some(total)) => ratio_percent(used, total),
        _ => None,
    };
    judge(
        report,
        Metric::GpuMemoryPercent,
        dev(),
        memory,
        t.gpu_memory_percent(),
    );

    let configured = t.gpu_temperature_c();
    let critical = finite(gpu.shutdown_temperature_c)
        .map(|s| s - t.gpu_shutdown_headroom_c())
        .unwrap_or(configured.critical());
    let warning = finite(gpu.slowdown_temperature_c)
        .unwrap_or(configured.warning())
        .min(critical);
    let temperature = finite(gpu.temperature_c).map(f64::from);
    let level = Level::raw(warning, critical);
    judge(report, Metric::GpuTemperature, dev(), temperature, level);

    if let Some(n) = gpu.ecc_volatile_uncorrected.filter(|&n| n > 0) {
        report.push(Issue {
            metric: Metric::GpuEccUncorrected,
            device: dev(),
            value: Some(n as f64),
            limit: Some(0.0),
            severity: Severity::Critical,
        });
    }
    if gpu.row_remap_failure == Some(true) {
        flag(
            report,
            Metric::GpuRowRemapFailure,
            dev(),
            Severity::Critical,
            1.0,
        );
    }
    if gpu.retired_pages_pending == Some(true) {
        flag(
            report,
            Metric::GpuRetiredPagesPending,
            dev(),
            Severity::Degraded,
            1.0,
        );
    }
    if let Some(r) = gpu.throttle_reasons {
        let bad = r.bits() & ThrottleReasons::DEGRADING.bits();
        if bad != 0 {
            flag(
                report,
                Metric::GpuThrottle,
                dev(),
                Severity::Degraded,
                bad as f64,
            );
        }
    }
    for (i, &xid) in gpu.recent_xids.iter().enumerate() {
        if gpu.recent_xids[..i].contains(&xid) {
            continue; // one issue per distinct code
        }
        let severity = match classify_xid(xid) {
            XidClass::DeviceCritical => Severity::Critical,
            XidClass::DeviceDegraded => Severity::Degraded,
            XidClass::ApplicationFault => continue,
            _ => Severity::Unknown,
        };
        flag(report, Metric::GpuXid, dev(), severity, f64::from(xid));
    }
    if gpu.xids_omitted > 0 {
        flag(
            report,
            Metric::GpuXidsOmitted,
            dev(),
            Severity::Unknown,
            f64::from(gpu.xids_omitted),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::{HealthStatus, MAX_ISSUES};
    use super::super::sample::{GpuUnavailable, UnavailableKind};
    use super::*;
    use proptest::prelude::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    const GIB: u64 = 1 << 30;

    fn healthy_host() -> HostSample {
        let mut h = HostSample {
            cpu_percent: Some(20.0),
            memory_used_bytes: Some(4 * GIB),
            memory_available_bytes: Some(12 * GIB),
            memory_total_bytes: Some(16 * GIB),
            ..HostSample::default()
        };
        h.push_disk(DiskSample::new("/", Some(100 * GIB), Some(60 * GIB)))
            .unwrap();
        h
    }

    fn healthy_gpu(index: u32) -> GpuSample {
        GpuSample {
            memory_used_bytes: Some(10 * GIB),
            memory_total_bytes: Some(80 * GIB),
            temperature_c: Some(50.0),
            ..GpuSample::new(index)
        }
    }

    fn machine(host: HostSample, gpus: &[GpuSample]) -> MachineSample {
        let mut readout = GpuReadout::empty();
        for g in gpus {
            readout.push(g.clone()).unwrap();
        }
        MachineSample {
            host,
            gpus: readout,
        }
    }

    fn texts(r: &HealthReport) -> Vec<String> {
        r.issues.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn healthy_machine_is_healthy() {
        let r = assess(
            &machine(healthy_host(), &[healthy_gpu(0)]),
            &Thresholds::default(),
        );
        assert_eq!(r.status, HealthStatus::Healthy);
        assert!(r.is_healthy());
        assert!(r.issues.is_empty());
        assert_eq!(r.to_string(), "healthy");
    }

    /// The original: `cpu_percent = 90` with `cpu_critical = 80` is unhealthy and the
    /// issue mentions CPU.
    #[test]
    fn original_custom_cpu_threshold() {
        let t = Thresholds::default().with_cpu_percent(70.0, 80.0).unwrap();
        let mut host = healthy_host();
        host.cpu_percent = Some(90.0);
        let r = assess_host(&host, &t);
        assert!(!r.is_healthy());
        assert_eq!(r.status, HealthStatus::Critical);
        assert_eq!(r.issues.len(), 1);
        assert_eq!(r.issues[0].metric, Metric::CpuPercent);
        assert_eq!(
            (r.issues[0].value, r.issues[0].limit),
            (Some(90.0), Some(80.0))
        );
        assert!(r.issues[0].to_string().contains("CPU"));
        assert_eq!(
            r.issues[0].to_string(),
            "critical: host: CPU usage 90.0 % > 80.0 %"
        );
        // The same sample under the defaults is healthy.
        assert!(assess_host(&host, &Thresholds::default()).is_healthy());
    }

    #[test]
    fn a_value_equal_to_a_level_does_not_trip_it() {
        let t = Thresholds::default();
        let mut host = healthy_host();
        host.cpu_percent = Some(90.0);
        assert!(assess_host(&host, &t).is_healthy());
        host.cpu_percent = Some(95.0);
        let r = assess_host(&host, &t);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(r.issues[0].limit, Some(90.0));
        host.cpu_percent = Some(95.01);
        assert_eq!(assess_host(&host, &t).status, HealthStatus::Critical);
    }

    #[test]
    fn nothing_read_is_unknown_never_healthy() {
        let r = assess(&MachineSample::default(), &Thresholds::default());
        assert_eq!(r.status, HealthStatus::Unknown);
        assert_eq!(
            texts(&r),
            [
                "unknown: host: CPU usage not read",
                "unknown: host: memory used not read",
                "unknown: host: disk used not read",
            ]
        );
        // The first sample of a probe has no CPU figure yet: unknown, not 0 %.
        let mut host = healthy_host();
        host.cpu_percent = None;
        assert_eq!(
            assess_host(&host, &Thresholds::default()).status,
            HealthStatus::Unknown
        );
        host.cpu_percent = Some(f32::NAN);
        assert_eq!(
            assess_host(&host, &Thresholds::default()).status,
            HealthStatus::Unknown
        );
    }

    #[test]
    fn zero_totals_are_unknown_not_a_division_by_zero() {
        let mut host = healthy_host();
        host.memory_total_bytes = Some(0);
        host.memory_available_bytes = Some(0);
        host.disks[0].total_bytes = Some(0);
        let r = assess_host(&host, &Thresholds::default());
        assert_eq!(r.status, HealthStatus::Unknown);
        assert_eq!(
            texts(&r),
            [
                "unknown: host: memory used not read",
                "unknown: disk /: disk used not read"
            ]
        );
        let mut gpu = healthy_gpu(2);
        gpu.memory_total_bytes = Some(0);
        let r = assess_gpu(&gpu, &Thresholds::default());
        assert_eq!(texts(&r), ["unknown: GPU 2: GPU memory used not read"]);
    }

    #[test]
    fn more_available_than_total_is_unknown_not_healthy() {
        let t = Thresholds::default();
        let mut host = healthy_host();
        host.memory_effective_total_bytes = None;
        host.memory_used_bytes = None;
        host.memory_total_bytes = Some(16 * GIB);
        host.memory_available_bytes = Some(17 * GIB);
        host.disks[0].available_bytes = host.disks[0].total_bytes.map(|t| t + 1);
        let r = assess_host(&host, &t);
        assert_eq!(r.status, HealthStatus::Unknown);
        assert_eq!(
            texts(&r),
            [
                "unknown: host: memory used not read",
                "unknown: disk /: disk used not read"
            ]
        );
        // Without a limit, an inconsistent available figure is not replaced by used.
        host.memory_used_bytes = Some(GIB);
        assert_eq!(assess_host(&host, &t).issues[0].value, None);
        // Under a limit, the container's usage is judged whatever `available` says.
        host.memory_effective_total_bytes = Some(4 * GIB);
        host.memory_used_bytes = Some(4 * GIB);
        assert_eq!(assess_host(&host, &t).issues[0].value, Some(100.0));
        host.memory_used_bytes = None;
        assert_eq!(assess_host(&host, &t).issues[0].value, None);
    }

    #[test]
    fn a_limit_above_physical_memory_is_no_limit() {
        let mut host = healthy_host();
        // cgroup v1's "unlimited" sentinel passed through: 15.5 of 16 GiB is still
        // 96.9 %, not 0 %.
        host.memory_effective_total_bytes = Some(9_223_372_036_854_771_712);
        host.memory_used_bytes = Some(16 * GIB - GIB / 2);
        let r = assess_host(&host, &Thresholds::default());
        assert_eq!(r.status, HealthStatus::Critical);
        assert_eq!(r.issues[0].metric, Metric::MemoryPercent);
        assert_eq!(r.issues[0].value, Some(96.875));
    }

    #[test]
    fn memory_uses_the_container_limit_and_available_memory() {
        let t = Thresholds::default();
        let mut host = healthy_host();
        // 12 GiB available of 16 GiB physical (25 % used), but the container may use
        // only 4 GiB and uses 3.9 GiB of it: 97.5 %.
        host.memory_effective_total_bytes = Some(4 * GIB);
        host.memory_used_bytes = Some(4 * GIB - GIB / 10);
        let r = assess_host(&host, &t);
        assert_eq!(r.status, HealthStatus::Critical);
        assert_eq!(r.issues[0].metric, Metric::MemoryPercent);
        assert!((r.issues[0].value.unwrap() - 97.5).abs() < 1e-6);
        // Under the limit with no usage figure: limit - available (0.25 GiB left: 93.75 %).
        host.memory_used_bytes = None;
        host.memory_available_bytes = Some(GIB / 4);
        let r = assess_host(&host, &t);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(r.issues[0].value, Some(93.75));
        // No limit: total - available, as MemAvailable.
        host.memory_effective_total_bytes = None;
        host.memory_used_bytes = Some(GIB); // ignored: available is known
        host.memory_available_bytes = Some(GIB); // 15 of 16 GiB: 93.75 %
        let r = assess_host(&host, &t);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(r.issues[0].value, Some(93.75));
        // No available figure: used / total.
        host.memory_available_bytes = None;
        host.memory_used_bytes = Some(16 * GIB);
        assert_eq!(assess_host(&host, &t).issues[0].value, Some(100.0));
        host.memory_used_bytes = Some(17 * GIB); // more than the total: clamped
        assert_eq!(assess_host(&host, &t).issues[0].value, Some(100.0));
    }

    #[test]
    fn disks_are_judged_per_mount() {
        let mut host = healthy_host();
        host.push_disk(DiskSample::new("/data", Some(1000), Some(40)))
            .unwrap(); // 96 %
        host.push_disk(DiskSample::new("/scratch", Some(1000), Some(80)))
            .unwrap(); // 92 %
        host.push_disk(DiskSample::new("/mnt", Some(1000), None))
            .unwrap();
        let r = assess_host(&host, &Thresholds::default());
        assert_eq!(r.status, HealthStatus::Critical);
        assert_eq!(
            texts(&r),
            [
                "critical: disk /data: disk used 96.0 % > 95.0 %",
                "degraded: disk /scratch: disk used 92.0 % > 90.0 %",
                "unknown: disk /mnt: disk used not read",
            ]
        );
        // node_exporter's levels: 96 % is only a warning, 92 % is fine.
        let r = assess_host(&host, &Thresholds::node_exporter_disks());
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(r.issues.len(), 2);
    }

    #[test]
    fn omitted_disks_are_unknown() {
        let mut host = healthy_host();
        host.disks.clear();
        host.disks_omitted = 3;
        let r = assess_host(&host, &Thresholds::default());
        assert_eq!(
            texts(&r),
            ["unknown: host: 3 disks not judged (sample list full)"]
        );
    }

    #[test]
    fn xids_follow_dcgm() {
        let t = Thresholds::default();
        let mut gpu = healthy_gpu(0);
        for x in [13, 31, 13] {
            gpu.push_xid(x).unwrap();
        }
        assert!(
            assess_gpu(&gpu, &t).is_healthy(),
            "application faults are not device faults"
        );
        gpu.push_xid(63).unwrap();
        assert_eq!(assess_gpu(&gpu, &t).status, HealthStatus::Degraded);
        gpu.push_xid(79).unwrap();
        gpu.push_xid(79).unwrap();
        gpu.push_xid(5000).unwrap();
        let r = assess_gpu(&gpu, &t);
        assert_eq!(r.status, HealthStatus::Critical);
        assert_eq!(
            texts(&r),
            [
                "degraded: GPU 0: XID 63 (ECC page retirement or row remapping event; device_degraded)",
                "critical: GPU 0: XID 79 (GPU has fallen off the bus; device_critical)",
                "unknown: GPU 0: XID 5000 (unknown)",
            ]
        );
        let mut gpu = healthy_gpu(1);
        gpu.xids_omitted = 2;
        assert_eq!(
            texts(&assess_gpu(&gpu, &t)),
            ["unknown: GPU 1: 2 XIDs not kept (sample list full)"]
        );
    }

    #[test]
    fn ecc_remap_pages_and_throttling() {
        let t = Thresholds::default();
        let mut gpu = healthy_gpu(3);
        gpu.ecc_volatile_uncorrected = Some(0);
        gpu.row_remap_failure = Some(false);
        gpu.retired_pages_pending = Some(false);
        gpu.throttle_reasons = Some(ThrottleReasons::GPU_IDLE.union(ThrottleReasons::SW_POWER_CAP));
        assert!(assess_gpu(&gpu, &t).is_healthy());

        gpu.throttle_reasons =
            Some(ThrottleReasons::HW_THERMAL_SLOWDOWN.union(ThrottleReasons::GPU_IDLE));
        gpu.retired_pages_pending = Some(true);
        let r = assess_gpu(&gpu, &t);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert_eq!(
            texts(&r),
            [
                "degraded: GPU 3: retired pages pending a reboot",
                "degraded: GPU 3: clocks throttled: hw_thermal_slowdown",
            ]
        );
        gpu.ecc_volatile_uncorrected = Some(2);
        gpu.row_remap_failure = Some(true);
        let r = assess_gpu(&gpu, &t);
        assert_eq!(r.status, HealthStatus::Critical);
        assert_eq!(
            r.issues[0].to_string(),
            "critical: GPU 3: 2 volatile uncorrected (double-bit) ECC errors"
        );
        assert_eq!(
            r.issues[1].to_string(),
            "critical: GPU 3: row remapping failed"
        );
    }

    #[test]
    fn temperature_uses_the_devices_own_thresholds() {
        let t = Thresholds::default();
        let mut gpu = healthy_gpu(0);
        // Configured levels (80 / 85 °C) when the device says nothing.
        gpu.temperature_c = Some(86.0);
        assert_eq!(assess_gpu(&gpu, &t).status, HealthStatus::Critical);
        gpu.temperature_c = Some(85.0);
        assert_eq!(assess_gpu(&gpu, &t).status, HealthStatus::Degraded);
        // This board slows down at 90 °C and shuts down at 100 °C: 86 °C is fine.
        gpu.slowdown_temperature_c = Some(90.0);
        gpu.shutdown_temperature_c = Some(100.0);
        gpu.temperature_c = Some(86.0);
        assert!(assess_gpu(&gpu, &t).is_healthy());
        gpu.temperature_c = Some(91.0);
        let r = assess_gpu(&gpu, &t);
        assert_eq!(
            texts(&r),
            ["degraded: GPU 0: temperature 91.0 °C > 90.0 °C"]
        );
        gpu.temperature_c = Some(95.5);
        let r = assess_gpu(&gpu, &t);
        assert_eq!(
            texts(&r),
            ["critical: GPU 0: temperature 95.5 °C > 95.0 °C"]
        );
        // Shutdown close to slowdown: the warning level never exceeds the critical one.
        gpu.shutdown_temperature_c = Some(92.0);
        gpu.temperature_c = Some(88.0);
        let r = assess_gpu(&gpu, &t);
        assert_eq!(
            texts(&r),
            ["critical: GPU 0: temperature 88.0 °C > 87.0 °C"]
        );
        gpu.temperature_c = None;
        assert_eq!(assess_gpu(&gpu, &t).status, HealthStatus::Unknown);
    }

    #[test]
    fn gpu_memory_levels() {
        let t = Thresholds::default();
        let mut gpu = healthy_gpu(0);
        gpu.memory_used_bytes = Some(77 * GIB); // 96.25 %
        assert_eq!(assess_gpu(&gpu, &t).status, HealthStatus::Critical);
        let t = t.with_gpu_memory_percent(97.0, 99.0).unwrap();
        assert!(assess_gpu(&gpu, &t).is_healthy());
        gpu.memory_used_bytes = None;
        assert_eq!(assess_gpu(&gpu, &t).status, HealthStatus::Unknown);
    }

    #[test]
    fn missing_gpus_and_unavailable_readouts() {
        let host = healthy_host();
        let unavailable = MachineSample {
            host: host.clone(),
            gpus: GpuReadout::Unavailable(GpuUnavailable::new(UnavailableKind::LibraryNotFound)),
        };
        assert!(assess(&unavailable, &Thresholds::default()).is_healthy());
        let t = Thresholds::default().with_expected_gpus(2);
        let r = assess(&unavailable, &t);
        assert_eq!(texts(&r), ["unknown: host: GPUs could not be read"]);
        let r = assess(&machine(host.clone(), &[healthy_gpu(0)]), &t);
        assert_eq!(texts(&r), ["critical: host: 1 GPUs found, 2 expected"]);
        let r = assess(&machine(host, &[healthy_gpu(0), healthy_gpu(1)]), &t);
        assert!(r.is_healthy());
    }

    #[test]
    fn a_full_issue_list_counts_the_rest_and_keeps_the_worst_status() {
        let mut gpus = Vec::new();
        for i in 0..16 {
            gpus.push(GpuSample::new(i)); // no temperature, no memory: 2 unknowns each
        }
        gpus[15].push_xid(79).unwrap();
        let r = assess(&machine(healthy_host(), &gpus), &Thresholds::default());
        assert_eq!(r.issues.len(), MAX_ISSUES);
        assert_eq!(r.issues_omitted, 1);
        assert!(r.issues.iter().all(|i| i.severity == Severity::Unknown));
        assert_eq!(r.status, HealthStatus::Critical);
        assert!(r.to_string().ends_with("\n  ... and 1 more issues"));
        assert_eq!(r.issues_at_least(Severity::Degraded).count(), 0);
    }

    proptest! {
        /// Any CPU reading, any memory figures: no panic, and the status is exactly the
        /// strict-`>` verdict on the clamped value (unknown when it cannot be computed).
        #[test]
        fn host_rules_never_panic_and_match_the_levels(
            cpu in prop_oneof![any::<f32>(), -10.0f32..110.0],
            total in prop_oneof![Just(0u64), any::<u64>()],
            avail in any::<u64>(),
        ) {
            let mut host = healthy_host();
            host.cpu_percent = Some(cpu);
            host.memory_total_bytes = Some(total);
            host.memory_available_bytes = Some(avail);
            let r = assess_host(&host, &Thresholds::default());
            let worst = r.issues.iter().map(|i| HealthStatus::from(i.severity)).max()
                .unwrap_or(HealthStatus::Healthy);
            prop_assert_eq!(r.status, worst);
            let cpu_issue = r.issues.iter().find(|i| i.metric == Metric::CpuPercent);
            let expected = if !cpu.is_finite() {
                Some(Severity::Unknown)
            } else if cpu > 95.0 {
                Some(Severity::Critical)
            } else if cpu > 90.0 {
                Some(Severity::Degraded)
            } else {
                None
            };
            prop_assert_eq!(cpu_issue.map(|i| i.severity), expected);
            let mem_issue = r.issues.iter().find(|i| i.metric == Metric::MemoryPercent);
            if total == 0 {
                prop_assert_eq!(mem_issue.map(|i| i.severity), Some(Severity::Unknown));
            }
            for i in &r.issues {
                if let Some(v) = i.value {
                    prop_assert!(v.is_finite());
                }
            }
        }
    }

    fn arb_gpu() -> impl Strategy<Value = GpuSample> {
        let temp = proptest::option::of(prop_oneof![any::<f32>(), 0.0f32..120.0]);
        (
            (
                0u32..4,
                proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()),
            ),
            (temp.clone(), temp.clone(), temp),
            (
                proptest::option::of(0u64..3),
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<bool>()),
                proptest::option::of(any::<u64>()),
            ),
            proptest::collection::vec(prop_oneof![0u32..150, any::<u32>()], 0..12),
        )
            .prop_map(
                |((index, used, total), (t, slow, shut), (ecc, remap, pages, thr), xids)| {
                    let mut g = GpuSample {
                        memory_used_bytes: used,
                        memory_total_bytes: total,
                        temperature_c: t,
                        slowdown_temperature_c: slow,
                        shutdown_temperature_c: shut,
                        ecc_volatile_uncorrected: ecc,
                        row_remap_failure: remap,
                        retired_pages_pending: pages,
                        throttle_reasons: thr.map(ThrottleReasons),
                        ..GpuSample::new(index)
                    };
                    for x in xids {
                        let _ = g.push_xid(x);
                    }
                    g
                },
            )
    }

    proptest! {
        /// Any GPU readings: no panic; the status is the worst issue; a device-critical
        /// XID, ECC errors or a remap failure always make it critical; every issue
        /// renders as one line naming its GPU.
        #[test]
        fn gpu_rules_never_panic_and_faults_are_critical(
            gpus in proptest::collection::vec(arb_gpu(), 0..20),
            expected in 0u32..20,
        ) {
            let t = Thresholds::default().with_expected_gpus(expected);
            let mut readout = GpuReadout::empty();
            for g in &gpus {
                let _ = readout.push(g.clone());
            }
            let sample = MachineSample { host: healthy_host(), gpus: readout };
            let r = assess(&sample, &t);
            let worst = r.issues.iter().map(|i| HealthStatus::from(i.severity)).max()
                .unwrap_or(HealthStatus::Healthy);
            prop_assert!(r.status >= worst);
            if r.issues_omitted == 0 {
                prop_assert_eq!(r.status, worst);
            }
            for g in gpus.iter().take(crate::health::MAX_GPUS) {
                let faulty = g.ecc_volatile_uncorrected.is_some_and(|n| n > 0)
                    || g.row_remap_failure == Some(true)
                    || g.recent_xids.iter().any(|&x| classify_xid(x) == XidClass::DeviceCritical);
                if faulty {
                    prop_assert_eq!(r.status, HealthStatus::Critical);
                }
                let alone = assess_gpu(g, &t);
                let needs_unknown = g.temperature_c.is_none_or(|t| !t.is_finite())
                    || g.memory_total_bytes.is_none_or(|t| t == 0)
                    || g.memory_used_bytes.is_none();
                prop_assert_eq!(alone.is_healthy(), alone.issues.is_empty());
                if needs_unknown {
                    prop_assert!(!alone.is_healthy());
                }
            }
            for i in &r.issues {
                let line = i.to_string();
                prop_assert!(!line.contains('\n'));
                if let Device::Gpu(n) = i.device {
                    let expected_name = std::format!("GPU {n}");
                    prop_assert!(line.contains(&expected_name));
                }
            }
        }
    }
}
