//! The probe over fake sources: exact counters, files, mounts and GPU readings.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use sturdy_core::health::{GpuReadout, GpuUnavailable, HealthProbe, UnavailableKind};
use sturdy_probe::{
    CpuTimes, GpuReading, GpuSource, HostFacts, HostSource, MemoryReading, MountReading,
    MountSelection, NoGpus, Probe, ProbeConfig, ReadError,
};

const GIB: u64 = 1 << 30;

#[derive(Default)]
struct FakeHost {
    now: Duration,
    cpu: Vec<Option<CpuTimes>>, // one per read, in order
    cpu_reads: usize,
    memory: Option<MemoryReading>,
    mounts: Vec<MountReading>,
    files: HashMap<String, String>,
}

impl HostSource for FakeHost {
    fn elapsed(&mut self) -> Duration {
        self.now
    }
    fn cpu_times(&mut self) -> Option<CpuTimes> {
        let r = self.cpu.get(self.cpu_reads).copied().flatten();
        self.cpu_reads += 1;
        r
    }
    fn memory(&mut self) -> Option<MemoryReading> {
        self.memory
    }
    fn load_average(&mut self) -> Option<[f64; 3]> {
        Some([0.5, 0.25, 0.125])
    }
    fn mounts(&mut self) -> Vec<MountReading> {
        self.mounts.clone()
    }
    fn read_file(&mut self, path: &str) -> Option<String> {
        self.files.get(path).cloned()
    }
    fn facts(&mut self) -> HostFacts {
        HostFacts {
            os_name: Some("FakeOS".into()),
            logical_cores: Some(8),
            ..HostFacts::default()
        }
    }
}

fn memory(total: u64, available: u64) -> Option<MemoryReading> {
    Some(MemoryReading {
        total,
        available,
        used: total - available,
        swap_total: 2 * GIB,
        swap_used: GIB / 2,
    })
}

fn mount(dev: &str, fs: &str, at: &str, total: u64, avail: u64, id: Option<u64>) -> MountReading {
    MountReading {
        device: dev.into(),
        fs_type: fs.into(),
        mount_point: at.into(),
        total_bytes: Some(total),
        available_bytes: Some(avail),
        fs_id: id,
    }
}

fn cpu(busy: u64, total: u64) -> Option<CpuTimes> {
    Some(CpuTimes { busy, total })
}

fn no_gpus() -> NoGpus {
    NoGpus(GpuUnavailable::with_detail(
        UnavailableKind::LibraryNotFound,
        "libnvidia-ml.so.1: cannot open shared object file",
    ))
}

fn probe(host: FakeHost) -> Probe<FakeHost, NoGpus> {
    Probe::from_sources(host, no_gpus(), ProbeConfig::default())
}

#[test]
fn first_cpu_sample_is_unknown_then_exactly_25_percent() {
    let mut p = probe(FakeHost {
        cpu: vec![cpu(1_000, 10_000), cpu(1_250, 11_000)],
        memory: memory(16 * GIB, 8 * GIB),
        ..FakeHost::default()
    });
    let first = p.sample();
    assert_eq!(first.host.cpu_percent, None);
    // a second sample sooner than the minimum interval: still unknown, counters not read
    p.host_source().now = Duration::from_millis(50);
    assert_eq!(p.sample().host.cpu_percent, None);
    assert_eq!(p.host_source().cpu_reads, 1);
    p.host_source().now = Duration::from_millis(1_000);
    assert_eq!(p.sample().host.cpu_percent, Some(25.0));
}

#[test]
fn identical_counters_give_unknown_cpu_not_zero() {
    let mut p = probe(FakeHost {
        cpu: vec![cpu(500, 1_000), cpu(500, 1_000)],
        ..FakeHost::default()
    });
    p.sample();
    p.host_source().now = Duration::from_secs(1);
    let s = p.sample();
    assert_eq!(s.host.cpu_percent, None);
    // nothing else was readable either: every reading unknown, no panic
    assert_eq!(s.host.memory_total_bytes, None);
    assert!(s.host.disks.is_empty());
}

#[test]
fn memory_without_limit_and_with_the_v1_unlimited_sentinel() {
    let mut files = HashMap::new();
    files.insert("/proc/self/cgroup".into(), "4:memory:/job\n0::/\n".into());
    files.insert(
        "/sys/fs/cgroup/memory/job/memory.limit_in_bytes".into(),
        "9223372036854771712\n".into(),
    );
    let mut p = probe(FakeHost {
        memory: memory(24 * GIB, 20 * GIB),
        files,
        ..FakeHost::default()
    });
    let h = p.sample().host;
    assert_eq!(h.memory_total_bytes, Some(24 * GIB));
    assert_eq!(h.memory_effective_total_bytes, None);
    assert_eq!(h.effective_memory_total_bytes(), Some(24 * GIB));
    assert_eq!(h.memory_used_bytes, Some(4 * GIB));
    assert_eq!(h.memory_available_bytes, Some(20 * GIB));
    assert_eq!(
        (h.swap_total_bytes, h.swap_used_bytes),
        (Some(2 * GIB), Some(GIB / 2))
    );
    let l = h.load_average.expect("load");
    assert_eq!((l.one, l.five, l.fifteen), (0.5, 0.25, 0.125));
}

#[test]
fn memory_under_a_cgroup_v2_limit() {
    let mut files = HashMap::new();
    files.insert("/proc/self/cgroup".into(), "0::/kubepods/pod1\n".into());
    files.insert(
        "/sys/fs/cgroup/kubepods/pod1/memory.max".into(),
        "4294967296\n".into(),
    );
    files.insert(
        "/sys/fs/cgroup/kubepods/pod1/memory.current".into(),
        "3221225472\n".into(),
    );
    files.insert(
        "/sys/fs/cgroup/kubepods/pod1/memory.stat".into(),
        "anon 100\ninactive_file 1073741824\n".into(),
    );
    let mut p = probe(FakeHost {
        memory: memory(64 * GIB, 60 * GIB),
        files,
        ..FakeHost::default()
    });
    let h = p.sample().host;
    assert_eq!(h.memory_total_bytes, Some(64 * GIB));
    assert_eq!(h.memory_effective_total_bytes, Some(4 * GIB));
    assert_eq!(h.memory_used_bytes, Some(2 * GIB)); // 3 GiB usage - 1 GiB inactive cache
    assert_eq!(h.memory_available_bytes, Some(2 * GIB));
    let info = p.system_info();
    assert_eq!(
        (info.memory_total_bytes, info.memory_limit_bytes),
        (Some(64 * GIB), Some(4 * GIB))
    );
}

fn container_mounts() -> Vec<MountReading> {
    vec![
        mount("overlay", "overlay", "/", 100 * GIB, 40 * GIB, Some(0xdc83)),
        mount("proc", "proc", "/proc", 0, 0, None),
        mount("tmpfs", "tmpfs", "/dev", GIB, GIB, Some(7)),
        mount(
            "/dev/sda1",
            "ext4",
            "/etc/hosts",
            100 * GIB,
            40 * GIB,
            Some(0xdc83),
        ),
        mount(
            "/dev/sda1",
            "ext4",
            "/etc/hostname",
            100 * GIB,
            40 * GIB,
            Some(0xdc83),
        ),
        mount("sysfs", "sysfs", "/sys", 0, 0, None),
    ]
}

#[test]
fn overlay_plus_bind_mount_of_one_filesystem_counts_once() {
    let mut p = probe(FakeHost {
        mounts: container_mounts(),
        ..FakeHost::default()
    });
    let h = p.sample().host;
    assert_eq!(h.disks.len(), 1);
    assert_eq!(h.disks[0].mount_point.as_str(), "/");
    assert_eq!(h.disks[0].total_bytes, Some(100 * GIB));
    assert_eq!(h.disks[0].available_bytes, Some(40 * GIB));
    let info = p.system_info();
    assert_eq!(info.disk_total_bytes, Some(100 * GIB));
    assert_eq!(info.disk_available_bytes, Some(40 * GIB));
}

#[test]
fn mounts_to_judge_are_configurable() {
    let config = ProbeConfig::default()
        .with_mounts(MountSelection::Only(vec![
            "/etc/hosts".into(),
            "/dev".into(),
            "/data".into(),
        ]))
        .expect("valid");
    let host = FakeHost {
        mounts: container_mounts(),
        ..FakeHost::default()
    };
    let mut p = Probe::from_sources(host, no_gpus(), config);
    let points: Vec<String> = p
        .sample()
        .host
        .disks
        .iter()
        .map(|d| d.mount_point.as_str().to_owned())
        .collect();
    assert_eq!(points, ["/etc/hosts", "/dev", "/data"]);
    // /data is not mounted: kept, with unknown sizes, so the health rules report it
    let disks = p.sample().host.disks;
    assert_eq!(
        (disks[2].total_bytes, disks[2].available_bytes),
        (None, None)
    );
    let report = sturdy_core::health::assess_host(
        &p.sample().host,
        &sturdy_core::health::Thresholds::default(),
    );
    assert_eq!(
        report.status,
        sturdy_core::health::HealthStatus::Unknown,
        "{report}"
    );

    let err = ProbeConfig::default()
        .with_mounts(MountSelection::Only(vec![]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: `mounts` must name at least one mount point"
    );
    let err = ProbeConfig::default()
        .with_mounts(MountSelection::Only(vec!["data".into()]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: `mounts` must be absolute paths"
    );
    let err = ProbeConfig::default()
        .with_cpu_min_interval(Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: `cpu_min_interval` must be > 0"
    );
}

#[test]
fn nvml_absent_gives_a_full_host_sample_and_the_reason() {
    let mut p = probe(FakeHost {
        cpu: vec![cpu(0, 100)],
        memory: memory(8 * GIB, 4 * GIB),
        mounts: container_mounts(),
        ..FakeHost::default()
    });
    let s = HealthProbe::sample(&mut p).expect("infallible");
    assert_eq!(s.host.memory_total_bytes, Some(8 * GIB));
    assert_eq!(s.host.disks.len(), 1);
    match &s.gpus {
        GpuReadout::Unavailable(why) => {
            assert_eq!(why.kind, UnavailableKind::LibraryNotFound);
            assert_eq!(
                why.to_string(),
                "GPUs unavailable: library_not_found (libnvidia-ml.so.1: cannot open shared object file)"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    let info = p.system_info();
    assert!(info.gpus.is_empty());
    assert_eq!(
        info.gpus_unavailable.map(|u| u.kind),
        Some(UnavailableKind::LibraryNotFound)
    );
    assert_eq!(
        (info.os_name.as_deref(), info.logical_cores),
        (Some("FakeOS"), Some(8))
    );
}

#[test]
fn gpus_disabled_never_touch_the_gpu_source() {
    struct Untouchable;
    impl GpuSource for Untouchable {
        fn read_gpus(&mut self) -> Result<Vec<GpuReading>, GpuUnavailable> {
            panic!("GPU source read while GPUs are disabled")
        }
    }
    let mut p = Probe::from_sources(
        FakeHost::default(),
        Untouchable,
        ProbeConfig::default().with_gpus(false),
    );
    assert_eq!(
        p.sample().gpus,
        GpuReadout::Unavailable(GpuUnavailable::new(UnavailableKind::Disabled))
    );
}

/// A board that supports memory but neither utilization nor power, with XIDs watched.
struct PartialGpu {
    reads: Rc<Cell<u32>>,
}

impl GpuSource for PartialGpu {
    fn read_gpus(&mut self) -> Result<Vec<GpuReading>, GpuUnavailable> {
        self.reads.set(self.reads.get() + 1);
        let mut g = GpuReading::failed(0, &ReadError::NotSupported);
        g.name = Ok("NVIDIA T4".into());
        g.uuid = Ok("GPU-0123".into());
        g.memory = Ok((3 * GIB, 16 * GIB));
        g.temperature_c = Ok(61);
        g.slowdown_temperature_c = Err(ReadError::Failed("Unknown".into()));
        g.throttle_reasons = Ok(0x8 | 0x1);
        g.xids = Some(if self.reads.get() == 1 {
            vec![79, 13]
        } else {
            vec![]
        });
        let lost = GpuReading::failed(1, &ReadError::Failed("GPU is lost".into()));
        Ok(vec![g, lost])
    }
}

#[test]
fn unsupported_gpu_readings_stay_empty_and_the_device_stays() {
    let reads = Rc::new(Cell::new(0));
    let mut p = Probe::from_sources(
        FakeHost::default(),
        PartialGpu {
            reads: Rc::clone(&reads),
        },
        ProbeConfig::default(),
    );
    let s = p.sample();
    let devices = s.gpus.devices();
    assert_eq!(devices.len(), 2);
    let g = &devices[0];
    assert_eq!(g.name.as_ref().map(|n| n.as_str()), Some("NVIDIA T4"));
    assert_eq!(g.uuid.as_ref().map(|n| n.as_str()), Some("GPU-0123"));
    assert_eq!(
        (g.memory_used_bytes, g.memory_total_bytes),
        (Some(3 * GIB), Some(16 * GIB))
    );
    assert_eq!(g.utilization_percent, None);
    assert_eq!((g.power_mw, g.power_limit_mw), (None, None));
    assert_eq!(g.temperature_c, Some(61.0));
    assert_eq!(g.slowdown_temperature_c, None);
    assert_eq!(g.throttle_reasons.map(|t| t.bits()), Some(0x9));
    assert!(g.xids_watched);
    assert_eq!(g.recent_xids.as_slice(), [79, 13]);
    // the lost device stays, with its index and nothing read
    assert_eq!(devices[1].index, 1);
    assert_eq!(devices[1].memory_total_bytes, None);
    assert!(!devices[1].xids_watched);

    // the next sample: XIDs already handed over are not repeated
    let s = p.sample();
    assert!(s.gpus.devices()[0].recent_xids.is_empty());
    assert_eq!(reads.get(), 2);
}

#[test]
fn an_unsupported_reading_is_warned_once() {
    let logs = tracing_capture::Capture::default();
    let _guard = tracing::subscriber::set_default(logs.clone());
    let mut p = Probe::from_sources(
        FakeHost::default(),
        PartialGpu {
            reads: Rc::new(Cell::new(0)),
        },
        ProbeConfig::default(),
    );
    for _ in 0..3 {
        p.sample();
    }
    let lines = logs.lines();
    let util: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("field=\"utilization_percent\"") && l.contains("gpu=0"))
        .collect();
    assert_eq!(util.len(), 1, "{lines:#?}");
    assert!(util[0].contains("not supported"), "{}", util[0]);
    // one warning per unreadable (device, field): device 0 has 8 of them, device 1 all 13
    assert_eq!(
        lines.iter().filter(|l| l.contains("warned once")).count(),
        8 + 13,
        "{lines:#?}"
    );
}

/// A minimal `tracing` subscriber that records each event's fields as a line.
mod tracing_capture {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<Vec<String>>>);

    impl Capture {
        pub(crate) fn lines(&self) -> Vec<String> {
            self.0.lock().expect("lock").clone()
        }
    }

    struct Line(String);
    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line(String::new());
            event.record(&mut line);
            self.0.lock().expect("lock").push(line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[test]
fn health_judges_the_sample_with_given_thresholds() {
    use sturdy_core::health::{HealthStatus, Thresholds};
    // the original's test: CPU 90 % with cpu_critical 80 is unhealthy, the issue names CPU
    let host = FakeHost {
        cpu: vec![cpu(0, 1_000), cpu(900, 2_000)],
        memory: memory(16 * GIB, 12 * GIB),
        mounts: container_mounts(),
        ..FakeHost::default()
    };
    let mut p = Probe::from_sources(host, no_gpus(), ProbeConfig::default());
    let first = p.health(&Thresholds::default());
    assert_eq!(first.status(), HealthStatus::Unknown, "{first}");
    assert!(first.report.to_string().contains("CPU"), "{}", first.report);
    p.host_source().now = Duration::from_secs(1);
    let strict = Thresholds::default()
        .with_cpu_percent(70.0, 80.0)
        .expect("valid");
    let h = p.health(&strict);
    assert_eq!(h.sample.host.cpu_percent, Some(90.0));
    assert_eq!(h.status(), HealthStatus::Critical);
    assert!(!h.is_healthy());
    assert_eq!(h.report.issues.len(), 1, "{}", h.report);
    assert!(
        h.report.issues[0].to_string().contains("CPU"),
        "{}",
        h.report
    );
    // the same sample by the default thresholds (95 %): healthy; no GPU is no issue
    let ok = sturdy_probe::SystemHealth::judge(h.sample.clone(), &Thresholds::default());
    assert!(ok.is_healthy(), "{ok}");
}

#[test]
fn the_real_probe_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let p = Probe::from_sources(
        sturdy_probe::SystemSource::new(),
        sturdy_probe::NvmlSource::new(),
        ProbeConfig::default().with_gpus(false),
    );
    assert_send(&p);
    let s = std::thread::spawn(move || {
        let mut p = p;
        p.sample()
    })
    .join()
    .expect("sampled on another thread");
    assert!(s.host.memory_total_bytes.is_some());
}
