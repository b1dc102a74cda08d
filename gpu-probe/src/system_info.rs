//! Static facts and totals of a machine (the original's `get_system_info`).

use std::fmt;

use serde::Serialize;
use sturdy_core::health::GpuUnavailable;

use crate::source::HostFacts;
use crate::table::bytes;

/// One judged filesystem's totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskInfo {
    /// Where it is mounted.
    pub mount_point: String,
    /// Size, bytes.
    pub total_bytes: Option<u64>,
    /// Available to an unprivileged user, bytes.
    pub available_bytes: Option<u64>,
}

/// One GPU's identity and memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpuInfo {
    /// The device index (NVML enumeration order).
    pub index: u32,
    /// The product name.
    pub name: Option<String>,
    /// The device UUID (`GPU-...`).
    pub uuid: Option<String>,
    /// Device memory, bytes.
    pub memory_total_bytes: Option<u64>,
}

/// What a machine is: OS, kernel, architecture, CPU, memory, disks and GPUs. Every
/// field the platform does not give is `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SystemInfo {
    /// The host name.
    pub hostname: Option<String>,
    /// The operating system name, for example `Ubuntu`.
    pub os_name: Option<String>,
    /// The operating system version, for example `24.04`.
    pub os_version: Option<String>,
    /// The kernel release.
    pub kernel_version: Option<String>,
    /// The CPU architecture, for example `x86_64`.
    pub arch: Option<String>,
    /// The CPU model.
    pub cpu_model: Option<String>,
    /// Logical cores (hardware threads).
    pub logical_cores: Option<u32>,
    /// Physical cores.
    pub physical_cores: Option<u32>,
    /// Physical memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// A container (cgroup) memory limit below physical memory, bytes; `None` when none
    /// applies.
    pub memory_limit_bytes: Option<u64>,
    /// The sum of the judged filesystems' sizes (each filesystem once), bytes.
    pub disk_total_bytes: Option<u64>,
    /// The sum of the judged filesystems' available bytes.
    pub disk_available_bytes: Option<u64>,
    /// The judged filesystems.
    pub disks: Vec<DiskInfo>,
    /// The GPUs (empty when unavailable).
    pub gpus: Vec<GpuInfo>,
    /// Why no GPU could be read, if so.
    pub gpus_unavailable: Option<GpuUnavailable>,
}

fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.fold(None, |acc, v| match v {
        Some(v) => Some(acc.unwrap_or(0).saturating_add(v)),
        None => acc,
    })
}

impl SystemInfo {
    pub(crate) fn new(
        facts: HostFacts,
        memory_total_bytes: Option<u64>,
        memory_limit_bytes: Option<u64>,
        disks: Vec<DiskInfo>,
        gpus: Vec<GpuInfo>,
        gpus_unavailable: Option<GpuUnavailable>,
    ) -> Self {
        Self {
            hostname: facts.hostname,
            os_name: facts.os_name,
            os_version: facts.os_version,
            kernel_version: facts.kernel_version,
            arch: facts.arch,
            cpu_model: facts.cpu_model,
            logical_cores: facts.logical_cores,
            physical_cores: facts.physical_cores,
            memory_total_bytes,
            memory_limit_bytes,
            disk_total_bytes: sum(disks.iter().map(|d| d.total_bytes)),
            disk_available_bytes: sum(disks.iter().map(|d| d.available_bytes)),
            disks,
            gpus,
            gpus_unavailable,
        }
    }
}

impl fmt::Display for SystemInfo {
    /// A readable block, one fact a line; `unknown` where the platform did not say.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn s(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("unknown")
        }
        fn n(v: Option<u32>) -> String {
            v.map_or_else(|| "unknown".into(), |v| v.to_string())
        }
        writeln!(f, "host      {}", s(&self.hostname))?;
        writeln!(f, "os        {} {}", s(&self.os_name), s(&self.os_version))?;
        writeln!(f, "kernel    {}", s(&self.kernel_version))?;
        writeln!(f, "arch      {}", s(&self.arch))?;
        writeln!(f, "cpu       {}", s(&self.cpu_model))?;
        writeln!(
            f,
            "cores     {} logical, {} physical",
            n(self.logical_cores),
            n(self.physical_cores)
        )?;
        write!(f, "memory    {}", bytes(self.memory_total_bytes))?;
        if let Some(l) = self.memory_limit_bytes {
            write!(f, " (container limit {})", bytes(Some(l)))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "disks     {} total, {} available",
            bytes(self.disk_total_bytes),
            bytes(self.disk_available_bytes)
        )?;
        for d in &self.disks {
            writeln!(
                f,
                "  {:<24} {} total, {} available",
                d.mount_point,
                bytes(d.total_bytes),
                bytes(d.available_bytes)
            )?;
        }
        match &self.gpus_unavailable {
            Some(why) => writeln!(f, "gpus      {why}")?,
            None => {
                writeln!(f, "gpus      {}", self.gpus.len())?;
                for g in &self.gpus {
                    writeln!(
                        f,
                        "  [{}] {} {} {}",
                        g.index,
                        s(&g.name),
                        s(&g.uuid),
                        bytes(g.memory_total_bytes)
                    )?;
                }
            }
        }
        Ok(())
    }
}
