//! The Prometheus text exposition format, version 0.0.4.
//!
//! Base units as the Prometheus naming conventions ask: bytes, seconds, degrees Celsius,
//! watts, and ratios from 0 to 1 (a percentage is divided by 100). Counters end in
//! `_total`. Host metrics follow node_exporter's names under the `sturdy_` prefix; every
//! GPU series carries DCGM exporter's labels `gpu` (index), `UUID` and `modelName` (the
//! last two only when known: no label ever has an empty value). A reading that is
//! missing is left out (no series), never exported as 0. The crate's README maps each
//! family to its node_exporter or DCGM exporter counterpart.
//!
//! Families:
//! - `sturdy_cpu_busy_ratio`; `sturdy_memory_{total,effective_total,used,available}_bytes`;
//!   `sturdy_swap_{total,used}_bytes`; `sturdy_load{1,5,15}`;
//! - `sturdy_filesystem_{size,avail}_bytes{mountpoint}`, `sturdy_filesystems_omitted`;
//! - `sturdy_gpu_info{gpu,UUID,modelName}` (always 1), `sturdy_gpus_available` (1 when
//!   the GPU part was read, else 0 with a `reason` label);
//! - per GPU: `utilization_ratio`, `memory_{used,total}_bytes`,
//!   `temperature_celsius`, `slowdown_temperature_celsius`, `shutdown_temperature_celsius`,
//!   `power_watts`, `power_limit_watts`, `ecc_volatile_uncorrected_errors_total`,
//!   `retired_pages_pending`, `row_remap_failure`, `throttle_reason{reason}` (0/1 per
//!   NVML clocks event reason), `xid_watched`, `recent_xid_errors{xid}` (XIDs seen since
//!   the previous sample, by code).

use std::fmt::Write as _;
use std::io;

use sturdy_core::health::{
    GpuReadout, GpuSample, HealthStatus, MachineSample, Severity, ThrottleReasons,
};

use crate::system_health::SystemHealth;

/// The content type of this format, for an HTTP `Content-Type` header.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    series: Vec<(String, String)>,
}

struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) -> &mut Family {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            return &mut self.families[i];
        }
        self.families.push(Family {
            name,
            help,
            kind,
            series: Vec::new(),
        });
        let last = self.families.len() - 1;
        &mut self.families[last]
    }

    fn add(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &'static str,
        labels: &str,
        v: Option<f64>,
    ) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.family(name, kind, help)
                .series
                .push((labels.to_owned(), fmt_value(v)));
        }
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &str, v: Option<f64>) {
        self.add(name, Kind::Gauge, help, labels, v);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for f in self.families.iter().filter(|f| !f.series.is_empty()) {
            let kind = match f.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (labels, value) in &f.series {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", f.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {value}", f.name);
                }
            }
        }
        out
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Escapes a label value: backslash, double quote and line feed (exposition format 0.0.4).
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// An `f32` reading as the `f64` with the same shortest decimal form (`0.52f32` exports
/// as `0.52`, not `0.5199999809265137`).
fn f(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

fn u(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64)
}

fn flag(v: Option<bool>) -> Option<f64> {
    v.map(|b| if b { 1.0 } else { 0.0 })
}

fn gpu(e: &mut Exposition, g: &GpuSample) {
    // DCGM exporter's label names, so that its series and these join; a label whose
    // value is unknown is left out (never an empty value).
    let mut l = format!("gpu=\"{}\"", g.index);
    if let Some(uuid) = g.uuid.as_ref().filter(|s| !s.is_empty()) {
        let _ = write!(l, ",UUID=\"{}\"", escape(uuid));
    }
    if let Some(name) = g.name.as_ref().filter(|s| !s.is_empty()) {
        let _ = write!(l, ",modelName=\"{}\"", escape(name));
    }
    e.gauge(
        "sturdy_gpu_info",
        "A GPU the probe read (always 1); its labels identify it.",
        &l,
        Some(1.0),
    );
    e.gauge(
        "sturdy_gpu_utilization_ratio",
        "GPU utilization over the driver's last sample period, 0..1.",
        &l,
        g.utilization_percent.map(|p| f(p) / 100.0),
    );
    e.gauge(
        "sturdy_gpu_memory_used_bytes",
        "GPU memory in use, bytes.",
        &l,
        u(g.memory_used_bytes),
    );
    e.gauge(
        "sturdy_gpu_memory_total_bytes",
        "GPU memory, bytes.",
        &l,
        u(g.memory_total_bytes),
    );
    e.gauge(
        "sturdy_gpu_temperature_celsius",
        "GPU core temperature, degrees Celsius.",
        &l,
        g.temperature_c.map(f),
    );
    e.gauge(
        "sturdy_gpu_slowdown_temperature_celsius",
        "The GPU's own slowdown temperature threshold, degrees Celsius.",
        &l,
        g.slowdown_temperature_c.map(f),
    );
    e.gauge(
        "sturdy_gpu_shutdown_temperature_celsius",
        "The GPU's own shutdown temperature threshold, degrees Celsius.",
        &l,
        g.shutdown_temperature_c.map(f),
    );
    e.gauge(
        "sturdy_gpu_power_watts",
        "GPU power draw, watts.",
        &l,
        g.power_mw.map(|mw| f64::from(mw) / 1000.0),
    );
    e.gauge(
        "sturdy_gpu_power_limit_watts",
        "GPU enforced power limit, watts.",
        &l,
        g.power_limit_mw.map(|mw| f64::from(mw) / 1000.0),
    );
    e.add(
        "sturdy_gpu_ecc_volatile_uncorrected_errors_total",
        Kind::Counter,
        "Uncorrected (double-bit) ECC errors since the driver loaded.",
        &l,
        u(g.ecc_volatile_uncorrected),
    );
    e.gauge(
        "sturdy_gpu_retired_pages_pending",
        "1 when retired memory pages wait for a reboot.",
        &l,
        flag(g.retired_pages_pending),
    );
    e.gauge(
        "sturdy_gpu_row_remap_failure",
        "1 when a memory row remapping failed.",
        &l,
        flag(g.row_remap_failure),
    );
    if let Some(t) = g.throttle_reasons {
        for (bit, name) in ThrottleReasons::NAMES {
            e.gauge(
                "sturdy_gpu_throttle_reason",
                "1 when this NVML clocks event (throttle) reason holds the clocks down.",
                &format!("{l},reason=\"{name}\""),
                flag(Some(t.contains(bit))),
            );
        }
    }
    e.gauge(
        "sturdy_gpu_xid_watched",
        "1 when XID events are watched on this GPU.",
        &l,
        flag(Some(g.xids_watched)),
    );
    let mut codes: Vec<(u32, u32)> = Vec::new();
    for &x in &g.recent_xids {
        match codes.iter_mut().find(|(c, _)| *c == x) {
            Some((_, n)) => *n += 1,
            None => codes.push((x, 1)),
        }
    }
    for (code, n) in codes {
        e.gauge(
            "sturdy_gpu_recent_xid_errors",
            "XID errors seen since the previous sample, by XID code.",
            &format!("{l},xid=\"{code}\""),
            Some(f64::from(n)),
        );
    }
}

/// The sample in the Prometheus text exposition format 0.0.4.
///
/// ```
/// use sturdy_core::health::{HostSample, MachineSample};
/// let s = MachineSample {
///     host: HostSample { cpu_percent: Some(25.0), ..HostSample::default() },
///     ..MachineSample::default()
/// };
/// let text = sturdy_probe::prometheus(&s);
/// assert!(text.contains("\nsturdy_cpu_busy_ratio 0.25\n"));
/// ```
pub fn prometheus(sample: &MachineSample) -> String {
    exposition(sample).render()
}

fn exposition(sample: &MachineSample) -> Exposition {
    let mut e = Exposition {
        families: Vec::new(),
    };
    let h = &sample.host;
    e.gauge(
        "sturdy_cpu_busy_ratio",
        "CPU busy time over the last sampling interval, all cores, 0..1.",
        "",
        h.cpu_percent.map(|p| f(p) / 100.0),
    );
    e.gauge(
        "sturdy_memory_total_bytes",
        "Physical memory, bytes.",
        "",
        u(h.memory_total_bytes),
    );
    e.gauge(
        "sturdy_memory_effective_total_bytes",
        "Memory this host or container may use (the smaller of physical memory and a cgroup limit), bytes.",
        "",
        u(h.effective_memory_total_bytes()),
    );
    e.gauge(
        "sturdy_memory_used_bytes",
        "Memory in use, bytes.",
        "",
        u(h.memory_used_bytes),
    );
    e.gauge(
        "sturdy_memory_available_bytes",
        "Memory available for new work without swapping, bytes.",
        "",
        u(h.memory_available_bytes),
    );
    e.gauge(
        "sturdy_swap_total_bytes",
        "Swap configured, bytes.",
        "",
        u(h.swap_total_bytes),
    );
    e.gauge(
        "sturdy_swap_used_bytes",
        "Swap in use, bytes.",
        "",
        u(h.swap_used_bytes),
    );
    if let Some(l) = h.load_average {
        e.gauge("sturdy_load1", "1-minute load average.", "", Some(f(l.one)));
        e.gauge(
            "sturdy_load5",
            "5-minute load average.",
            "",
            Some(f(l.five)),
        );
        e.gauge(
            "sturdy_load15",
            "15-minute load average.",
            "",
            Some(f(l.fifteen)),
        );
    }
    for d in &h.disks {
        let l = format!("mountpoint=\"{}\"", escape(d.mount_point.as_str()));
        e.gauge(
            "sturdy_filesystem_size_bytes",
            "Filesystem size, bytes.",
            &l,
            u(d.total_bytes),
        );
        e.gauge(
            "sturdy_filesystem_avail_bytes",
            "Filesystem space available to unprivileged users, bytes.",
            &l,
            u(d.available_bytes),
        );
    }
    e.gauge(
        "sturdy_filesystems_omitted",
        "Filesystems read but left out of the sample (its list was full).",
        "",
        Some(f64::from(h.disks_omitted)),
    );
    match &sample.gpus {
        GpuReadout::Unavailable(why) => e.gauge(
            "sturdy_gpus_available",
            "1 when the GPUs could be read; 0 with the reason.",
            &format!("reason=\"{}\"", why.kind),
            Some(0.0),
        ),
        readout => {
            e.gauge(
                "sturdy_gpus_available",
                "1 when the GPUs could be read; 0 with the reason.",
                "",
                Some(1.0),
            );
            for g in readout.devices() {
                gpu(&mut e, g);
            }
        }
    }
    e
}

/// The sample and its verdict in the exposition format: [`prometheus`] plus
/// `sturdy_health_status{status}` (a state set: 1 for the current status, 0 for the
/// others) and `sturdy_health_issues{severity}` (issues of each severity, omitted ones
/// not counted).
pub fn prometheus_health(health: &SystemHealth) -> String {
    let mut e = exposition(&health.sample);
    for status in [
        HealthStatus::Healthy,
        HealthStatus::Unknown,
        HealthStatus::Degraded,
        HealthStatus::Critical,
    ] {
        e.gauge(
            "sturdy_health_status",
            "The health verdict: 1 for the current status, 0 for the others.",
            &format!("status=\"{}\"", status.as_str()),
            flag(Some(health.report.status == status)),
        );
    }
    for sev in [Severity::Unknown, Severity::Degraded, Severity::Critical] {
        let n = health
            .report
            .issues
            .iter()
            .filter(|i| i.severity == sev)
            .count();
        e.gauge(
            "sturdy_health_issues",
            "Issues found by the health rules, by severity.",
            &format!("severity=\"{}\"", sev.as_str()),
            Some(n as f64),
        );
    }
    e.render()
}

/// Writes [`prometheus_health`] to `w`.
///
/// # Errors
/// Whatever `w` returns.
pub fn write_prometheus_health(w: &mut impl io::Write, health: &SystemHealth) -> io::Result<()> {
    w.write_all(prometheus_health(health).as_bytes())
}

/// Writes [`prometheus`] to `w`.
///
/// # Errors
/// Whatever `w` returns.
pub fn write_prometheus(w: &mut impl io::Write, sample: &MachineSample) -> io::Result<()> {
    w.write_all(prometheus(sample).as_bytes())
}
