//! The outcome of the health rules: a status and a bounded list of typed issues.

use core::fmt;

use super::sample::{MountPath, ThrottleReasons};
use super::xid::{classify_xid, xid_description};

/// The most issues a [`HealthReport`] lists: 32. Further issues are counted in
/// [`HealthReport::issues_omitted`] and still count towards the status.
pub const MAX_ISSUES: usize = 32;

/// How bad one issue is. Ordered: `Unknown < Degraded < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Severity {
    /// A reading that the rules need was missing or invalid: nothing is known to be
    /// wrong, but the machine cannot be called healthy.
    Unknown,
    /// Above a warning level, or a condition that needs attention soon.
    Degraded,
    /// Above a critical level, or a device fault.
    Critical,
}

impl Severity {
    /// `"unknown"`, `"degraded"` or `"critical"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Degraded => "degraded",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The overall verdict: the worst severity among the issues, or `Healthy` when there
/// are none. Ordered: `Healthy < Unknown < Degraded < Critical`, so a known fault
/// outranks a missing reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HealthStatus {
    /// Every required reading was present and within its levels.
    Healthy,
    /// No known fault, but a required reading was missing.
    Unknown,
    /// Above a warning level or a condition needing attention.
    Degraded,
    /// Above a critical level or a device fault.
    Critical,
}

impl HealthStatus {
    /// `"healthy"`, `"unknown"`, `"degraded"` or `"critical"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unknown => "unknown",
            Self::Degraded => "degraded",
            Self::Critical => "critical",
        }
    }
}

impl From<Severity> for HealthStatus {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Unknown => Self::Unknown,
            Severity::Degraded => Self::Degraded,
            Severity::Critical => Self::Critical,
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an [`Issue`] is about; fixes the unit of its `value` and `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Metric {
    /// CPU busy, %.
    CpuPercent,
    /// Memory used, % of the effective total.
    MemoryPercent,
    /// Disk used, % of the filesystem.
    DiskPercent,
    /// Disks read but not judged because the sample's list was full (value: how many).
    DisksOmitted,
    /// GPU memory used, %.
    GpuMemoryPercent,
    /// GPU temperature, °C.
    GpuTemperature,
    /// Volatile uncorrected (double-bit) ECC errors (value: the count).
    GpuEccUncorrected,
    /// A failed row remapping (value 1).
    GpuRowRemapFailure,
    /// Retired pages pending a reboot (value 1).
    GpuRetiredPagesPending,
    /// Clocks held down by hardware, thermal or power-brake slowdown (value: the NVML
    /// reason bits).
    GpuThrottle,
    /// An XID error on the device (value: the XID code).
    GpuXid,
    /// XIDs seen but not kept because the sample's list was full (value: how many).
    GpuXidsOmitted,
    /// Fewer GPUs than expected (value: found, limit: expected).
    GpuCount,
    /// GPUs read but not judged because the sample's list was full (value: how many).
    GpusOmitted,
    /// The GPUs could not be read at all.
    GpuReadout,
}

impl Metric {
    /// A short, stable, lower-case name (`"cpu_percent"`, `"gpu_xid"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CpuPercent => "cpu_percent",
            Self::MemoryPercent => "memory_percent",
            Self::DiskPercent => "disk_percent",
            Self::DisksOmitted => "disks_omitted",
            Self::GpuMemoryPercent => "gpu_memory_percent",
            Self::GpuTemperature => "gpu_temperature",
            Self::GpuEccUncorrected => "gpu_ecc_uncorrected",
            Self::GpuRowRemapFailure => "gpu_row_remap_failure",
            Self::GpuRetiredPagesPending => "gpu_retired_pages_pending",
            Self::GpuThrottle => "gpu_throttle",
            Self::GpuXid => "gpu_xid",
            Self::GpuXidsOmitted => "gpu_xids_omitted",
            Self::GpuCount => "gpu_count",
            Self::GpusOmitted => "gpus_omitted",
            Self::GpuReadout => "gpu_readout",
        }
    }
}

/// Which part of the machine an [`Issue`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Device {
    /// The host as a whole (CPU, memory, the disk and GPU lists).
    Host,
    /// The filesystem mounted here.
    Disk(MountPath),
    /// The GPU with this index.
    Gpu(u32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host => f.write_str("host"),
            Self::Disk(m) => write!(f, "disk {m}"),
            Self::Gpu(i) => write!(f, "GPU {i}"),
        }
    }
}

/// One finding of the health rules: what, where, the value read, the level it broke
/// and how bad it is. `value` is `None` when the reading was missing or invalid; the
/// unit follows the [`Metric`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Issue {
    /// What was judged.
    pub metric: Metric,
    /// Where.
    pub device: Device,
    /// The value read, in the metric's unit; `None` when missing or invalid.
    pub value: Option<f64>,
    /// The level it was judged against, in the metric's unit; `None` for a condition
    /// (an XID, a flag) that has no level.
    pub limit: Option<f64>,
    /// How bad it is.
    pub severity: Severity,
}

/// Writes a level-based issue: "`what` `value``unit` > `limit``unit`".
fn over(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    unit: &str,
    value: Option<f64>,
    limit: Option<f64>,
) -> fmt::Result {
    match (value, limit) {
        (Some(v), Some(l)) => write!(f, "{what} {v:.1}{unit} > {l:.1}{unit}"),
        (Some(v), None) => write!(f, "{what} {v:.1}{unit}"),
        (None, _) => write!(f, "{what} not read"),
    }
}

impl fmt::Display for Issue {
    /// One line: `"<severity>: <device>: <what>"`, for example
    /// `critical: host: CPU usage 96.0 % > 95.0 %` or
    /// `critical: GPU 0: XID 79 (GPU has fallen off the bus; device_critical)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.severity, self.device)?;
        let (v, l) = (self.value, self.limit);
        let count = v.map(|x| x as u64);
        match self.metric {
            Metric::CpuPercent => over(f, "CPU usage", " %", v, l),
            Metric::MemoryPercent => over(f, "memory used", " %", v, l),
            Metric::DiskPercent => over(f, "disk used", " %", v, l),
            Metric::GpuMemoryPercent => over(f, "GPU memory used", " %", v, l),
            Metric::GpuTemperature => over(f, "temperature", " °C", v, l),
            Metric::DisksOmitted => {
                write!(
                    f,
                    "{} disks not judged (sample list full)",
                    count.unwrap_or(0)
                )
            }
            Metric::GpusOmitted => {
                write!(
                    f,
                    "{} GPUs not judged (sample list full)",
                    count.unwrap_or(0)
                )
            }
            Metric::GpuXidsOmitted => {
                write!(f, "{} XIDs not kept (sample list full)", count.unwrap_or(0))
            }
            Metric::GpuEccUncorrected => write!(
                f,
                "{} volatile uncorrected (double-bit) ECC errors",
                count.unwrap_or(0)
            ),
            Metric::GpuRowRemapFailure => f.write_str("row remapping failed"),
            Metric::GpuRetiredPagesPending => f.write_str("retired pages pending a reboot"),
            Metric::GpuThrottle => write!(
                f,
                "clocks throttled: {}",
                ThrottleReasons(count.unwrap_or(0))
            ),
            Metric::GpuXid => match count {
                Some(x) => {
                    let x = u32::try_from(x).unwrap_or(u32::MAX);
                    write!(f, "XID {x} (")?;
                    if let Some(d) = xid_description(x) {
                        write!(f, "{d}; ")?;
                    }
                    write!(f, "{})", classify_xid(x))
                }
                None => f.write_str("XID"),
            },
            Metric::GpuCount => match (count, l) {
                (Some(n), Some(e)) => write!(f, "{n} GPUs found, {e:.0} expected"),
                _ => f.write_str("GPUs missing"),
            },
            Metric::GpuReadout => f.write_str("GPUs could not be read"),
        }
    }
}

/// The verdict of [`assess`](super::assess): the overall status and the issues behind
/// it, at most [`MAX_ISSUES`] listed; `issues_omitted` counts the rest (which still
/// count towards `status`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HealthReport {
    /// The worst severity among all issues, `Healthy` when there are none.
    pub status: HealthStatus,
    /// The issues, in the order the rules found them (host, disks, GPUs by index).
    pub issues: heapless::Vec<Issue, MAX_ISSUES>,
    /// Issues found but not listed because `issues` was full.
    pub issues_omitted: u16,
}

impl Default for HealthReport {
    /// A report with no issues: healthy.
    fn default() -> Self {
        Self {
            status: HealthStatus::Healthy,
            issues: heapless::Vec::new(),
            issues_omitted: 0,
        }
    }
}

impl HealthReport {
    /// Whether the status is [`HealthStatus::Healthy`] (an unknown status is not).
    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Healthy
    }

    /// Adds an issue and raises the status; when the list is full, counts it in
    /// `issues_omitted` (its severity still counts).
    pub fn push(&mut self, issue: Issue) {
        self.status = self.status.max(issue.severity.into());
        if self.issues.push(issue).is_err() {
            self.issues_omitted = self.issues_omitted.saturating_add(1);
        }
    }

    /// The issues of at least `severity`.
    pub fn issues_at_least(&self, severity: Severity) -> impl Iterator<Item = &Issue> + '_ {
        self.issues.iter().filter(move |i| i.severity >= severity)
    }
}

impl fmt::Display for HealthReport {
    /// `healthy`, or the status followed by one issue per line, indented by two spaces,
    /// and a last line for omitted issues.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.status.as_str())?;
        for i in &self.issues {
            write!(f, "\n  {i}")?;
        }
        if self.issues_omitted > 0 {
            write!(f, "\n  ... and {} more issues", self.issues_omitted)?;
        }
        Ok(())
    }
}
