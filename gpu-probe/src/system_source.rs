//! The real host, read through sysinfo (memory, swap, load, mounts, facts), procfs
//! (`/proc/stat` counters, cgroup files) and `statvfs` (filesystem ids).

use std::time::{Duration, Instant};

use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, System};

use crate::cpu::parse_proc_stat;
use crate::source::{CpuTimes, HostFacts, HostSource, MemoryReading, MountReading};

/// The real host as a [`HostSource`].
///
/// CPU counters come from `/proc/stat` where it exists; elsewhere from sysinfo's global
/// CPU usage, turned into cumulative counters (busy and total milliseconds) so that the
/// probe's difference gives back sysinfo's figure for the same span.
pub struct SystemSource {
    origin: Instant,
    system: System,
    disks: Disks,
    synthetic_cpu: Option<(Instant, CpuTimes)>,
}

impl std::fmt::Debug for SystemSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemSource")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Default for SystemSource {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemSource {
    /// A source with nothing read yet (reading starts at the first sample).
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            system: System::new(),
            disks: Disks::new(),
            synthetic_cpu: None,
        }
    }

    fn sysinfo_cpu_times(&mut self) -> Option<CpuTimes> {
        let now = Instant::now();
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        if self.system.cpus().is_empty() {
            return None;
        }
        let usage = f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0);
        let next = match self.synthetic_cpu {
            None => CpuTimes::default(),
            Some((at, prev)) => {
                let ms = now.duration_since(at).as_millis() as u64;
                CpuTimes {
                    busy: prev.busy + (ms as f64 * usage / 100.0).round() as u64,
                    total: prev.total + ms,
                }
            }
        };
        self.synthetic_cpu = Some((now, next));
        Some(next)
    }
}

impl HostSource for SystemSource {
    fn elapsed(&mut self) -> Duration {
        self.origin.elapsed()
    }

    fn cpu_times(&mut self) -> Option<CpuTimes> {
        if let Some(t) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_proc_stat(&s))
        {
            return Some(t);
        }
        self.sysinfo_cpu_times()
    }

    fn memory(&mut self) -> Option<MemoryReading> {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        let total = self.system.total_memory();
        if total == 0 {
            return None;
        }
        let available = self.system.available_memory().min(total);
        let swap_total = self.system.total_swap();
        Some(MemoryReading {
            total,
            available,
            used: total - available,
            swap_total,
            swap_used: self.system.used_swap().min(swap_total),
        })
    }

    fn load_average(&mut self) -> Option<[f64; 3]> {
        if cfg!(windows) {
            return None; // sysinfo reports zeros there
        }
        let l = System::load_average();
        Some([l.one, l.five, l.fifteen])
    }

    fn mounts(&mut self) -> Vec<MountReading> {
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        self.disks
            .list()
            .iter()
            .map(|d| {
                let mount_point = d.mount_point().to_string_lossy().into_owned();
                MountReading {
                    device: d.name().to_string_lossy().into_owned(),
                    fs_type: d.file_system().to_string_lossy().into_owned(),
                    fs_id: fs_id(&mount_point),
                    total_bytes: Some(d.total_space()),
                    available_bytes: Some(d.available_space()),
                    mount_point,
                }
            })
            .collect()
    }

    fn read_file(&mut self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn facts(&mut self) -> HostFacts {
        self.system.refresh_cpu_list(CpuRefreshKind::nothing());
        let cpus = self.system.cpus();
        let nonempty = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        HostFacts {
            hostname: System::host_name(),
            os_name: System::name(),
            os_version: System::os_version(),
            kernel_version: System::kernel_version(),
            arch: nonempty(System::cpu_arch()),
            cpu_model: cpus.first().and_then(|c| nonempty(c.brand().to_owned())),
            logical_cores: (!cpus.is_empty()).then_some(cpus.len() as u32),
            physical_cores: System::physical_core_count().map(|n| n as u32),
        }
    }
}

#[cfg(unix)]
fn fs_id(mount_point: &str) -> Option<u64> {
    rustix::fs::statvfs(mount_point)
        .ok()
        .map(|s| s.f_fsid)
        .filter(|&id| id != 0)
}

#[cfg(not(unix))]
fn fs_id(_mount_point: &str) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysinfo_fallback_turns_usage_into_advancing_counters() {
        let mut s = SystemSource::new();
        assert_eq!(s.sysinfo_cpu_times(), Some(CpuTimes::default()));
        std::thread::sleep(crate::cpu::MIN_CPU_INTERVAL);
        let t = s.sysinfo_cpu_times().expect("sysinfo reads CPUs here");
        // total counts the elapsed milliseconds; busy is a share of them
        assert!(t.total >= 200, "{t:?}");
        assert!(t.busy <= t.total, "{t:?}");
    }

    #[test]
    fn mounts_carry_filesystem_ids_on_unix() {
        let mut s = SystemSource::new();
        let root = s.mounts().into_iter().find(|m| m.mount_point == "/");
        let root = root.expect("/ is mounted");
        assert!(root.total_bytes.is_some_and(|t| t > 0));
        assert_eq!(root.fs_id.is_some(), cfg!(unix) && fs_id("/").is_some());
        assert_eq!(fs_id("/"), root.fs_id);
    }
}
