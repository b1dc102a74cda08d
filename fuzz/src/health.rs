//! Health rules: arbitrary host and GPU samples (NaN, infinities, zero totals, more
//! available than total, full lists) judged against arbitrary thresholds.
//!
//! Invariants: building thresholds never panics and fails with a named field; `assess`
//! never panics; the status is the worst severity among the issues (`Healthy` exactly
//! when there is none); every issue and the report render as text.

use core::fmt::Write as _;

use arbitrary::{Arbitrary, Unstructured};
use sturdy_core::health::{
    DiskSample, GpuReadout, GpuSample, GpuUnavailable, HealthStatus, HostSample, LoadAverage,
    MachineSample, Thresholds, ThrottleReasons, UnavailableKind, assess,
};

#[derive(Arbitrary, Debug)]
struct Host {
    cpu: Option<f32>,
    used: Option<u64>,
    available: Option<u64>,
    total: Option<u64>,
    effective_total: Option<u64>,
    load: Option<(f32, f32, f32)>,
    disks: Vec<(Option<u64>, Option<u64>)>,
}

#[derive(Arbitrary, Debug)]
struct Gpu {
    memory: (Option<u64>, Option<u64>),
    temperature: Option<f32>,
    slowdown: Option<f32>,
    shutdown: Option<f32>,
    ecc: Option<u64>,
    retired_pending: Option<bool>,
    row_remap_failure: Option<bool>,
    throttle: Option<u64>,
    xids: Vec<u32>,
    xids_watched: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    host: Host,
    gpus: Option<Vec<Gpu>>,
    levels: Vec<(u8, f32, f32)>,
    headroom: Option<f32>,
    expected_gpus: u32,
}

fn sample(input: &Input) -> MachineSample {
    let h = &input.host;
    let mut host = HostSample {
        cpu_percent: h.cpu,
        memory_used_bytes: h.used,
        memory_available_bytes: h.available,
        memory_total_bytes: h.total,
        memory_effective_total_bytes: h.effective_total,
        load_average: h
            .load
            .map(|(one, five, fifteen)| LoadAverage { one, five, fifteen }),
        ..HostSample::default()
    };
    for (total, available) in &h.disks {
        let _ = host.push_disk(DiskSample::new("/data", *total, *available));
    }
    let gpus = match &input.gpus {
        None => GpuReadout::Unavailable(GpuUnavailable::new(UnavailableKind::DriverNotLoaded)),
        Some(list) => {
            let mut readout = GpuReadout::empty();
            for (i, g) in list.iter().enumerate() {
                let mut s = GpuSample::new(u32::try_from(i).unwrap_or(u32::MAX));
                (s.memory_used_bytes, s.memory_total_bytes) = g.memory;
                s.temperature_c = g.temperature;
                s.slowdown_temperature_c = g.slowdown;
                s.shutdown_temperature_c = g.shutdown;
                s.ecc_volatile_uncorrected = g.ecc;
                s.retired_pages_pending = g.retired_pending;
                s.row_remap_failure = g.row_remap_failure;
                s.throttle_reasons = g.throttle.map(ThrottleReasons);
                s.xids_watched = g.xids_watched;
                for x in &g.xids {
                    let _ = s.push_xid(*x);
                }
                let _ = readout.push(s);
            }
            readout
        }
    };
    MachineSample { host, gpus }
}

fn thresholds(input: &Input) -> Option<Thresholds> {
    let mut t = Thresholds::default().with_expected_gpus(input.expected_gpus);
    for &(which, warning, critical) in &input.levels {
        let r = match which % 5 {
            0 => t.with_cpu_percent(warning, critical),
            1 => t.with_memory_percent(warning, critical),
            2 => t.with_disk_percent(warning, critical),
            3 => t.with_gpu_memory_percent(warning, critical),
            _ => t.with_gpu_temperature_c(warning, critical),
        };
        match r {
            Ok(next) => t = next,
            Err(e) => {
                assert!(!e.field().is_empty() && !e.rule().is_empty());
                return None;
            }
        }
    }
    if let Some(h) = input.headroom {
        match t.with_gpu_shutdown_headroom_c(h) {
            Ok(next) => t = next,
            Err(e) => {
                assert!(!e.field().is_empty());
                return None;
            }
        }
    }
    assert!(t.validate().is_ok());
    Some(t)
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    crate::debug(&input);
    let Some(t) = thresholds(&input) else {
        return;
    };
    let s = sample(&input);
    let report = assess(&s, &t);
    let worst = report
        .issues
        .iter()
        .map(|i| HealthStatus::from(i.severity))
        .max();
    if report.issues_omitted == 0 {
        assert_eq!(
            report.status,
            worst.unwrap_or(HealthStatus::Healthy),
            "{report:?}"
        );
    } else {
        assert!(Some(report.status) >= worst && report.status != HealthStatus::Healthy);
    }
    assert_eq!(
        report.is_healthy(),
        report.issues.is_empty() && report.issues_omitted == 0
    );
    let mut text = String::new();
    write!(text, "{report}").expect("renders");
    assert!(text.starts_with(report.status.as_str()));
    for issue in &report.issues {
        text.clear();
        write!(text, "{issue}").expect("renders");
        assert!(!text.contains("NaN"), "{text}");
    }
}
