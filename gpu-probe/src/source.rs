//! The source traits: where a [`Probe`](crate::Probe) gets its raw readings.
//!
//! The probe's logic (the CPU difference, the cgroup limit, the disk filter and
//! de-duplication, the warn-once bookkeeping for GPU fields) works on the plain readings
//! below, never on sysinfo or NVML types. The real machine is read by
//! [`SystemSource`](crate::SystemSource) and [`NvmlSource`](crate::NvmlSource); tests
//! feed exact counters and file contents through their own implementations.

use std::fmt;
use std::time::Duration;

use sturdy_core::health::GpuUnavailable;

/// Cumulative CPU time counters over all logical cores, in any unit (Linux: clock ticks
/// of `/proc/stat`). Only differences between two readings mean something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time spent doing work (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// All time: `busy` plus idle and I/O wait.
    pub total: u64,
}

/// Host memory as the kernel reports it (Linux: `/proc/meminfo`), bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReading {
    /// Physical memory (`MemTotal`), bytes.
    pub total: u64,
    /// Memory available for new work without swapping (`MemAvailable`), bytes.
    pub available: u64,
    /// Memory in use (`total - available`), bytes.
    pub used: u64,
    /// Swap configured (`SwapTotal`), bytes.
    pub swap_total: u64,
    /// Swap in use (`SwapTotal - SwapFree`), bytes.
    pub swap_used: u64,
}

/// One mounted filesystem as listed by the system (Linux: `/proc/mounts` plus
/// `statvfs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountReading {
    /// The mounted device or source, for example `/dev/nvme0n1p2`, `overlay`, `tmpfs`.
    pub device: String,
    /// The filesystem type, for example `ext4`, `xfs`, `overlay`, `proc`.
    pub fs_type: String,
    /// Where it is mounted, for example `/` or `/etc/hosts`.
    pub mount_point: String,
    /// Size of the filesystem, bytes.
    pub total_bytes: Option<u64>,
    /// Bytes available to an unprivileged user (`f_bavail * f_frsize`).
    pub available_bytes: Option<u64>,
    /// The filesystem id (`statvfs` `f_fsid`) when the system gives one; two mounts
    /// with the same non-zero id are one filesystem.
    pub fs_id: Option<u64>,
}

/// Static facts about the host for [`SystemInfo`](crate::SystemInfo). Every field is
/// optional: a platform that does not say leaves it `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The host name.
    pub hostname: Option<String>,
    /// The operating system name, for example `Ubuntu` or `Linux`.
    pub os_name: Option<String>,
    /// The operating system version, for example `24.04`.
    pub os_version: Option<String>,
    /// The kernel release, for example `6.8.0-45-generic`.
    pub kernel_version: Option<String>,
    /// The CPU architecture, for example `x86_64` or `aarch64`.
    pub arch: Option<String>,
    /// The CPU model (brand string) of the first core.
    pub cpu_model: Option<String>,
    /// Logical cores (hardware threads).
    pub logical_cores: Option<u32>,
    /// Physical cores.
    pub physical_cores: Option<u32>,
}

/// Where the host readings come from. Every method is a plain read: it may do I/O
/// but never sleeps.
pub trait HostSource {
    /// Monotonic time since an origin the source picks (the CPU difference needs two
    /// readings at least [`ProbeConfig::cpu_min_interval`](crate::ProbeConfig) apart).
    fn elapsed(&mut self) -> Duration;
    /// Cumulative CPU counters, or `None` when they cannot be read.
    fn cpu_times(&mut self) -> Option<CpuTimes>;
    /// Host memory and swap, or `None` when they cannot be read.
    fn memory(&mut self) -> Option<MemoryReading>;
    /// Load averages over 1, 5 and 15 minutes, or `None` where the platform has none.
    fn load_average(&mut self) -> Option<[f64; 3]>;
    /// Every mounted filesystem, pseudo filesystems included (the probe filters).
    fn mounts(&mut self) -> Vec<MountReading>;
    /// The text of a small kernel file (`/proc/self/cgroup`, `/sys/fs/cgroup/...`), or
    /// `None` when it does not exist or cannot be read.
    fn read_file(&mut self, path: &str) -> Option<String>;
    /// Static facts for the system information report.
    fn facts(&mut self) -> HostFacts;
}

/// Why one GPU reading is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The board or driver does not support this reading (NVML `NOT_SUPPORTED`).
    NotSupported,
    /// The reading failed, with the library's message.
    Failed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSupported => f.write_str("not supported"),
            Self::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

/// One GPU reading: the value or why it is missing.
pub type Reading<T> = Result<T, ReadError>;

/// What a [`GpuSource`] read from one device. Units as NVML gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuReading {
    /// The device index (NVML enumeration order).
    pub index: u32,
    /// The product name.
    pub name: Reading<String>,
    /// The device UUID (`GPU-...`).
    pub uuid: Reading<String>,
    /// GPU utilization over the driver's last sample period, %.
    pub utilization_percent: Reading<u32>,
    /// Device memory in use and in all, bytes: `(used, total)`.
    pub memory: Reading<(u64, u64)>,
    /// GPU core temperature, °C.
    pub temperature_c: Reading<u32>,
    /// The device's slowdown temperature threshold, °C.
    pub slowdown_temperature_c: Reading<u32>,
    /// The device's shutdown temperature threshold, °C.
    pub shutdown_temperature_c: Reading<u32>,
    /// Power draw, mW.
    pub power_mw: Reading<u32>,
    /// Enforced power limit, mW.
    pub power_limit_mw: Reading<u32>,
    /// Volatile uncorrected (double-bit) ECC errors.
    pub ecc_volatile_uncorrected: Reading<u64>,
    /// Whether retired pages are pending a reboot.
    pub retired_pages_pending: Reading<bool>,
    /// Whether a row remapping failed.
    pub row_remap_failure: Reading<bool>,
    /// NVML clocks event (throttle) reasons, the raw bit mask.
    pub throttle_reasons: Reading<u64>,
    /// XID codes seen since the previous read, oldest first, or `None` when XID events
    /// are not watched on this device.
    pub xids: Option<Vec<u32>>,
    /// XIDs seen since the previous read but not kept (the source's own buffer was
    /// full).
    pub xids_dropped: u16,
}

impl GpuReading {
    /// A device with every reading failed with `why` (for example a device that fell
    /// off the bus): it stays in the sample, with nothing read.
    pub fn failed(index: u32, why: &ReadError) -> Self {
        fn e<T>(why: &ReadError) -> Reading<T> {
            Err(why.clone())
        }
        Self {
            index,
            name: e(why),
            uuid: e(why),
            utilization_percent: e(why),
            memory: e(why),
            temperature_c: e(why),
            slowdown_temperature_c: e(why),
            shutdown_temperature_c: e(why),
            power_mw: e(why),
            power_limit_mw: e(why),
            ecc_volatile_uncorrected: e(why),
            retired_pages_pending: e(why),
            row_remap_failure: e(why),
            throttle_reasons: e(why),
            xids: None,
            xids_dropped: 0,
        }
    }
}

/// Where the GPU readings come from.
pub trait GpuSource {
    /// Reads every device, or says why no device can be read. A source that cannot
    /// start (no library, no driver) returns the same reason on every call without
    /// trying again.
    #[allow(
        clippy::result_large_err,
        reason = "the core's plain reason type, returned at most once per sample"
    )]
    fn read_gpus(&mut self) -> Result<Vec<GpuReading>, GpuUnavailable>;
}

/// A GPU source that reads nothing: the GPU part is always unavailable with the given
/// reason (for example [`UnavailableKind::Disabled`](sturdy_core::health::UnavailableKind)).
#[derive(Clone, Debug)]
pub struct NoGpus(pub GpuUnavailable);

impl GpuSource for NoGpus {
    fn read_gpus(&mut self) -> Result<Vec<GpuReading>, GpuUnavailable> {
        Err(self.0.clone())
    }
}
