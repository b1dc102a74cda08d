//! Plain health samples: what a probe read from a host and its GPUs.
//!
//! Every reading is an [`Option`]: `None` means "not read" (the platform, the board or
//! the driver did not say), never zero. The health rules ([`assess`](super::assess))
//! judge a missing required reading as *unknown*, never as healthy: the original
//! reported a machine healthy when it could not read it.
//!
//! The samples hold no `std` type and never allocate: names and paths are
//! [`heapless::String`]s and lists are [`heapless::Vec`]s with the documented
//! capacities below. A list that did not fit is not silently cut: the sample counts
//! what was left out (`disks_omitted`, `gpus_omitted`, `xids_omitted`).
//!
//! Units: percentages in `[0, 100]` (`%`), memory and disk sizes in bytes, temperatures
//! in degrees Celsius (°C), power in milliwatts (mW), as NVML reports it.

use core::fmt;

/// The most disks (mount points) a [`HostSample`] holds: 16.
pub const MAX_DISKS: usize = 16;
/// The longest mount path a [`DiskSample`] holds, in bytes (UTF-8): 128.
pub const MOUNT_PATH_LEN: usize = 128;
/// The most GPUs a [`GpuReadout`] holds: 16 (an HGX-2 / DGX-2 board has 16).
pub const MAX_GPUS: usize = 16;
/// The longest GPU name a [`GpuSample`] holds, in bytes: 96 (NVML's
/// `NVML_DEVICE_NAME_V2_BUFFER_SIZE`).
pub const GPU_NAME_LEN: usize = 96;
/// The longest GPU UUID a [`GpuSample`] holds, in bytes: 96 (NVML's
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`; a UUID such as `GPU-1c2e...` is 40 bytes).
pub const GPU_UUID_LEN: usize = 96;
/// The most recent XID codes a [`GpuSample`] holds: 8.
pub const MAX_XIDS: usize = 8;
/// The longest detail text of a [`GpuUnavailable`], in bytes: 128.
pub const REASON_LEN: usize = 128;

/// A mount path, at most [`MOUNT_PATH_LEN`] bytes.
pub type MountPath = heapless::String<MOUNT_PATH_LEN>;
/// A GPU name, at most [`GPU_NAME_LEN`] bytes.
pub type GpuName = heapless::String<GPU_NAME_LEN>;
/// A GPU UUID, at most [`GPU_UUID_LEN`] bytes.
pub type GpuUuid = heapless::String<GPU_UUID_LEN>;
/// The detail text of a [`GpuUnavailable`], at most [`REASON_LEN`] bytes.
pub type ReasonText = heapless::String<REASON_LEN>;

/// Copies `s` into a bounded string, cut at the last UTF-8 character boundary that
/// fits. Returns the string and whether it was cut.
///
/// ```
/// use sturdy_core::health::{bounded_str, MountPath};
/// let (p, cut): (MountPath, bool) = bounded_str("/data");
/// assert_eq!((p.as_str(), cut), ("/data", false));
/// let (p, cut): (heapless::String<4>, bool) = bounded_str("/dätä");
/// assert_eq!((p.as_str(), cut), ("/dä", true));
/// ```
pub fn bounded_str<const N: usize>(s: &str) -> (heapless::String<N>, bool) {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = heapless::String::new();
    // Cannot fail: `end <= N` bytes, cut at a character boundary.
    let _ = out.push_str(&s[..end]);
    (out, end < s.len())
}

/// One mounted filesystem: its mount point and sizes in bytes.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DiskSample {
    /// Where it is mounted, for example `/` or `/data` (at most [`MOUNT_PATH_LEN`] bytes).
    pub mount_point: MountPath,
    /// Whether `mount_point` was cut to fit [`MOUNT_PATH_LEN`].
    pub mount_point_truncated: bool,
    /// Size of the filesystem, bytes.
    pub total_bytes: Option<u64>,
    /// Bytes available to an unprivileged user (`f_bavail`, what node_exporter calls
    /// `node_filesystem_avail_bytes`).
    pub available_bytes: Option<u64>,
}

impl DiskSample {
    /// A disk mounted at `mount_point` (cut to [`MOUNT_PATH_LEN`] bytes if longer, with
    /// `mount_point_truncated` set).
    pub fn new(mount_point: &str, total_bytes: Option<u64>, available_bytes: Option<u64>) -> Self {
        let (mount_point, mount_point_truncated) = bounded_str(mount_point);
        Self {
            mount_point,
            mount_point_truncated,
            total_bytes,
            available_bytes,
        }
    }
}

/// System load averages over 1, 5 and 15 minutes (runnable plus uninterruptible tasks,
/// as in `/proc/loadavg`; not divided by the number of cores).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LoadAverage {
    /// 1-minute load average.
    pub one: f32,
    /// 5-minute load average.
    pub five: f32,
    /// 15-minute load average.
    pub fifteen: f32,
}

/// What a probe read from the host: CPU, memory, swap, load and disks.
///
/// `Default` is "nothing read": every reading `None`, no disks.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HostSample {
    /// CPU busy time over the last sampling interval, % of all logical cores, in
    /// `[0, 100]`. `None` on the first sample (a CPU percentage is a difference of two
    /// readings), never 0 % or NaN.
    pub cpu_percent: Option<f32>,
    /// Memory in use, bytes; under a container limit, the container's usage (cgroup
    /// `memory.current`).
    pub memory_used_bytes: Option<u64>,
    /// Memory available for new work without swapping (`MemAvailable`, or the room left
    /// under a container limit), bytes.
    pub memory_available_bytes: Option<u64>,
    /// Physical memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// The memory this host (or container) may really use, bytes: the smaller of
    /// physical memory and a container (cgroup) limit; `None` when no limit applies, in
    /// which case `memory_total_bytes` is the effective total.
    pub memory_effective_total_bytes: Option<u64>,
    /// Swap in use, bytes.
    pub swap_used_bytes: Option<u64>,
    /// Swap configured, bytes (0 when the host has none).
    pub swap_total_bytes: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load_average: Option<LoadAverage>,
    /// The disks judged, at most [`MAX_DISKS`].
    pub disks: heapless::Vec<DiskSample, MAX_DISKS>,
    /// Disks read but left out because `disks` was full.
    pub disks_omitted: u16,
}

impl HostSample {
    /// Adds a disk; when the list is full, counts it in `disks_omitted` and hands it
    /// back.
    #[allow(
        clippy::result_large_err,
        reason = "a full list hands the item back (heapless style); there is no allocator to box it"
    )]
    pub fn push_disk(&mut self, disk: DiskSample) -> Result<(), DiskSample> {
        self.disks.push(disk).inspect_err(|_| {
            self.disks_omitted = self.disks_omitted.saturating_add(1);
        })
    }

    /// The memory total that percentages are computed against, bytes: the smaller of
    /// `memory_effective_total_bytes` and `memory_total_bytes` when both are known
    /// (a container limit above physical memory, such as cgroup v1's "unlimited"
    /// sentinel, is no limit), else whichever is known.
    ///
    /// ```
    /// use sturdy_core::health::HostSample;
    /// let mut h = HostSample::default();
    /// h.memory_total_bytes = Some(16 << 30);
    /// h.memory_effective_total_bytes = Some(9_223_372_036_854_771_712);
    /// assert_eq!(h.effective_memory_total_bytes(), Some(16 << 30));
    /// h.memory_effective_total_bytes = Some(4 << 30);
    /// assert_eq!(h.effective_memory_total_bytes(), Some(4 << 30));
    /// ```
    pub fn effective_memory_total_bytes(&self) -> Option<u64> {
        match (self.memory_effective_total_bytes, self.memory_total_bytes) {
            (Some(limit), Some(total)) => Some(limit.min(total)),
            (limit, total) => limit.or(total),
        }
    }
}

/// Why a GPU's clocks are held down: a set of NVML "clocks event reasons"
/// (`nvmlClocksEventReasons`, formerly "throttle reasons"), with NVML's own bit values
/// so that a probe passes the mask through unchanged. Unknown bits are kept.
///
/// Serialized (feature `serde`) as a list of names in human-readable formats (JSON:
/// `["sw_power_cap", "hw_slowdown"]`, an unknown bit as `"unknown_0x100"`), and as the
/// bare mask in binary ones (postcard).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ThrottleReasons(pub u64);

#[cfg(feature = "serde")]
impl serde::Serialize for ThrottleReasons {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        if !s.is_human_readable() {
            return s.serialize_u64(self.0);
        }
        let mut seq = s.serialize_seq(None)?;
        for bit in 0..64 {
            let mask = 1u64 << bit;
            if self.0 & mask == 0 {
                continue;
            }
            match Self::NAMES.iter().find(|(r, _)| r.0 == mask) {
                Some((_, name)) => seq.serialize_element(name)?,
                None => seq.serialize_element(&UnknownBit(mask))?,
            }
        }
        seq.end()
    }
}

/// An unknown reason bit, serialized as `unknown_0x...`.
#[cfg(feature = "serde")]
struct UnknownBit(u64);

#[cfg(feature = "serde")]
impl serde::Serialize for UnknownBit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("unknown_{:#x}", self.0))
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ThrottleReasons {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = ThrottleReasons;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of clocks event reason names, or a bit mask")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ThrottleReasons, E> {
                Ok(ThrottleReasons(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ThrottleReasons, A::Error> {
                let mut mask = 0u64;
                // Owned, bounded: names are at most 23 bytes, so a reader that cannot
                // lend a `&str` (an escaped string, `from_reader`) works too.
                while let Some(name) = seq.next_element::<heapless::String<40>>()? {
                    let name = name.as_str();
                    let bit = match ThrottleReasons::NAMES.iter().find(|(_, n)| *n == name) {
                        Some((r, _)) => r.0,
                        None => name
                            .strip_prefix("unknown_0x")
                            .and_then(|h| u64::from_str_radix(h, 16).ok())
                            .ok_or_else(|| {
                                serde::de::Error::unknown_variant(name, &["gpu_idle", "..."])
                            })?,
                    };
                    mask |= bit;
                }
                Ok(ThrottleReasons(mask))
            }
        }
        if d.is_human_readable() {
            d.deserialize_seq(Names)
        } else {
            d.deserialize_u64(Names)
        }
    }
}

impl ThrottleReasons {
    /// Every named reason with its stable, lower-case name (as NVML's
    /// `nvmlClocksEventReasons` constants name them): used by `Display` and by
    /// exporters that label metrics per reason.
    pub const NAMES: [(Self, &'static str); 9] = [
        (Self::GPU_IDLE, "gpu_idle"),
        (
            Self::APPLICATIONS_CLOCKS_SETTING,
            "applications_clocks_setting",
        ),
        (Self::SW_POWER_CAP, "sw_power_cap"),
        (Self::HW_SLOWDOWN, "hw_slowdown"),
        (Self::SYNC_BOOST, "sync_boost"),
        (Self::SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"),
        (Self::HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"),
        (Self::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown"),
        (Self::DISPLAY_CLOCK_SETTING, "display_clock_setting"),
    ];

    /// No reason: clocks are not held down.
    pub const NONE: Self = Self(0);
    /// The GPU is idle (`GpuIdle`, 0x1). Harmless.
    pub const GPU_IDLE: Self = Self(0x1);
    /// Clocks limited by the application clocks setting (`ApplicationsClocksSetting`, 0x2).
    pub const APPLICATIONS_CLOCKS_SETTING: Self = Self(0x2);
    /// Software power cap: the board holds power under its limit (`SwPowerCap`, 0x4).
    pub const SW_POWER_CAP: Self = Self(0x4);
    /// Hardware slowdown (`HwSlowdown`, 0x8): temperature, power brake or a power
    /// supply problem made the hardware cut clocks by half or more. Degrades.
    pub const HW_SLOWDOWN: Self = Self(0x8);
    /// Sync boost (`SyncBoost`, 0x10): held to the slowest GPU of a group. Harmless.
    pub const SYNC_BOOST: Self = Self(0x10);
    /// Software thermal slowdown (`SwThermalSlowdown`, 0x20): the driver cut clocks to
    /// keep the temperature under its maximum. Degrades.
    pub const SW_THERMAL_SLOWDOWN: Self = Self(0x20);
    /// Hardware thermal slowdown (`HwThermalSlowdown`, 0x40): the board is too hot.
    /// Degrades.
    pub const HW_THERMAL_SLOWDOWN: Self = Self(0x40);
    /// Hardware power brake slowdown (`HwPowerBrakeSlowdown`, 0x80): an external power
    /// brake signal (for example from the power supply). Degrades.
    pub const HW_POWER_BRAKE_SLOWDOWN: Self = Self(0x80);
    /// Display clock setting (`DisplayClockSetting`, 0x100). Harmless.
    pub const DISPLAY_CLOCK_SETTING: Self = Self(0x100);
    /// The reasons that degrade a device after DCGM's clock-throttle watch: hardware
    /// slowdown, both thermal slowdowns and the power brake.
    pub const DEGRADING: Self = Self(
        Self::HW_SLOWDOWN.0
            | Self::SW_THERMAL_SLOWDOWN.0
            | Self::HW_THERMAL_SLOWDOWN.0
            | Self::HW_POWER_BRAKE_SLOWDOWN.0,
    );

    /// The raw NVML bit mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of two sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for ThrottleReasons {
    /// Names the set bits, `|`-separated (`hw_slowdown|hw_thermal_slowdown`); `none`
    /// when empty; unknown bits as hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut rest = self.0;
        let mut first = true;
        for (bit, name) in Self::NAMES {
            if self.contains(bit) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{rest:#x}")?;
        }
        Ok(())
    }
}

/// What a probe read from one GPU. Boards differ in what they support: a reading the
/// board does not give stays `None` without dropping the device.
///
/// `Default` is "nothing read" for device index 0.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GpuSample {
    /// The device index (NVML's enumeration order).
    pub index: u32,
    /// The product name, for example `NVIDIA H100 80GB HBM3`.
    pub name: Option<GpuName>,
    /// The device UUID, for example `GPU-1c2e4f...`.
    pub uuid: Option<GpuUuid>,
    /// GPU (SM) utilization over the driver's last sample period, %.
    pub utilization_percent: Option<f32>,
    /// Device memory in use, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Device memory, bytes.
    pub memory_total_bytes: Option<u64>,
    /// GPU core temperature, °C.
    pub temperature_c: Option<f32>,
    /// The device's own slowdown temperature (NVML `TEMPERATURE_THRESHOLD_SLOWDOWN`), °C.
    pub slowdown_temperature_c: Option<f32>,
    /// The device's own shutdown temperature (NVML `TEMPERATURE_THRESHOLD_SHUTDOWN`), °C.
    pub shutdown_temperature_c: Option<f32>,
    /// Power draw, mW.
    pub power_mw: Option<u32>,
    /// Enforced power limit, mW.
    pub power_limit_mw: Option<u32>,
    /// Volatile (since the last driver load) uncorrected, double-bit ECC errors.
    pub ecc_volatile_uncorrected: Option<u64>,
    /// Whether retired pages are pending a reboot (pre-Ampere page retirement).
    pub retired_pages_pending: Option<bool>,
    /// Whether a row remapping failed (Ampere and later): the memory cannot repair
    /// itself any more.
    pub row_remap_failure: Option<bool>,
    /// Why clocks are held down now.
    pub throttle_reasons: Option<ThrottleReasons>,
    /// XID codes seen since the previous sample, oldest first, at most [`MAX_XIDS`]; an
    /// empty list is "none seen". Whether the probe watches XIDs at all is
    /// `xids_watched`.
    pub recent_xids: heapless::Vec<u32, MAX_XIDS>,
    /// XIDs seen but left out because `recent_xids` was full.
    pub xids_omitted: u16,
    /// Whether the probe watches XID events on this device (an NVML event set); when
    /// `false`, an empty `recent_xids` says nothing.
    pub xids_watched: bool,
}

impl GpuSample {
    /// A sample of device `index` with nothing read yet.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            ..Self::default()
        }
    }

    /// Records an XID; when `recent_xids` is full, counts it in `xids_omitted` and
    /// hands it back.
    pub fn push_xid(&mut self, xid: u32) -> Result<(), u32> {
        self.recent_xids.push(xid).inspect_err(|_| {
            self.xids_omitted = self.xids_omitted.saturating_add(1);
        })
    }
}

/// Why no GPU could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum UnavailableKind {
    /// The GPU management library (NVML, `libnvidia-ml.so`) is not installed: usually a
    /// host without NVIDIA GPUs.
    LibraryNotFound,
    /// The library is there but the kernel driver is not loaded or not responding.
    DriverNotLoaded,
    /// The process may not query the devices.
    NoPermission,
    /// GPU probing was turned off in the probe's configuration.
    Disabled,
    /// Anything else (see the detail text).
    Other,
}

impl UnavailableKind {
    /// A short, stable, lower-case name (`"library_not_found"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LibraryNotFound => "library_not_found",
            Self::DriverNotLoaded => "driver_not_loaded",
            Self::NoPermission => "no_permission",
            Self::Disabled => "disabled",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for UnavailableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the GPU part of a sample is missing: a kind and an optional detail (for example
/// the library's error message, cut to [`REASON_LEN`] bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GpuUnavailable {
    /// The kind of reason.
    pub kind: UnavailableKind,
    /// Free text from the library or the driver.
    pub detail: Option<ReasonText>,
}

impl GpuUnavailable {
    /// A reason with no detail.
    pub const fn new(kind: UnavailableKind) -> Self {
        Self { kind, detail: None }
    }

    /// A reason with a detail, cut at a character boundary to [`REASON_LEN`] bytes.
    pub fn with_detail(kind: UnavailableKind, detail: &str) -> Self {
        Self {
            kind,
            detail: Some(bounded_str(detail).0),
        }
    }
}

impl fmt::Display for GpuUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "GPUs unavailable: {} ({})", self.kind, d),
            None => write!(f, "GPUs unavailable: {}", self.kind),
        }
    }
}

/// The GPU part of a [`MachineSample`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "a sample is a plain value; the core has no allocator to box the device list"
)]
pub enum GpuReadout {
    /// The devices were enumerated (possibly none).
    Devices {
        /// The devices read, at most [`MAX_GPUS`], in index order.
        devices: heapless::Vec<GpuSample, MAX_GPUS>,
        /// Devices enumerated but left out because `devices` was full.
        omitted: u16,
    },
    /// No device could be read, and why.
    Unavailable(GpuUnavailable),
}

impl GpuReadout {
    /// An empty device list (the library answered and enumerated no device yet).
    pub const fn empty() -> Self {
        Self::Devices {
            devices: heapless::Vec::new(),
            omitted: 0,
        }
    }

    /// The devices read; empty when unavailable.
    pub fn devices(&self) -> &[GpuSample] {
        match self {
            Self::Devices { devices, .. } => devices,
            Self::Unavailable(_) => &[],
        }
    }

    /// Adds a device (turning an `Unavailable` readout into a device list); when the list
    /// is full, counts it in `omitted` and hands it back.
    #[allow(
        clippy::result_large_err,
        reason = "a full list hands the item back (heapless style); there is no allocator to box it"
    )]
    pub fn push(&mut self, gpu: GpuSample) -> Result<(), GpuSample> {
        if let Self::Unavailable(_) = self {
            *self = Self::empty();
        }
        match self {
            Self::Devices { devices, omitted } => devices.push(gpu).inspect_err(|_| {
                *omitted = omitted.saturating_add(1);
            }),
            Self::Unavailable(_) => Err(gpu),
        }
    }
}

impl Default for GpuReadout {
    /// No GPU part read: unavailable, [`UnavailableKind::Disabled`].
    fn default() -> Self {
        Self::Unavailable(GpuUnavailable::new(UnavailableKind::Disabled))
    }
}

/// One sample of a machine: the host and its GPUs.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MachineSample {
    /// CPU, memory, swap, load and disks.
    pub host: HostSample,
    /// The GPUs, or why they could not be read.
    pub gpus: GpuReadout,
}

/// A source of [`MachineSample`]s, in the core's terms. Adapters drive it: the probe
/// crate (`sturdy-probe`) implements it on the real machine, tests on fixed values.
///
/// `sample` is synchronous and may take a few milliseconds of I/O (procfs, NVML); an
/// async adapter calls it on a blocking thread. It should never sleep: a quantity that
/// needs two readings (CPU %) is `None` until the second call.
pub trait HealthProbe {
    /// Why a sample failed as a whole (a partial failure is a `None` reading or an
    /// [`GpuReadout::Unavailable`], not an error).
    type Error: fmt::Display;

    /// Reads the machine once.
    fn sample(&mut self) -> Result<MachineSample, Self::Error>;
}

impl<P: HealthProbe + ?Sized> HealthProbe for &mut P {
    type Error = P::Error;
    fn sample(&mut self) -> Result<MachineSample, Self::Error> {
        (**self).sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn full_lists_count_what_they_leave_out() {
        let mut host = HostSample::default();
        for i in 0..MAX_DISKS + 2 {
            let r = host.push_disk(DiskSample::new("/d", Some(i as u64), None));
            assert_eq!(r.is_err(), i >= MAX_DISKS);
        }
        assert_eq!((host.disks.len(), host.disks_omitted), (MAX_DISKS, 2));

        let mut gpu = GpuSample::new(3);
        for x in 0..MAX_XIDS as u32 + 1 {
            let _ = gpu.push_xid(x);
        }
        assert_eq!(gpu.push_xid(79), Err(79));
        assert_eq!((gpu.recent_xids.len(), gpu.xids_omitted), (MAX_XIDS, 2));

        let mut gpus = GpuReadout::default();
        assert!(gpus.devices().is_empty());
        for i in 0..MAX_GPUS as u32 + 1 {
            let _ = gpus.push(GpuSample::new(i));
        }
        match gpus {
            GpuReadout::Devices { devices, omitted } => {
                assert_eq!((devices.len(), omitted), (MAX_GPUS, 1));
                assert_eq!(devices[15].index, 15);
            }
            GpuReadout::Unavailable(_) => panic!("expected devices"),
        }
    }

    #[test]
    fn long_names_are_cut_and_flagged() {
        let long = "/x".repeat(100);
        let d = DiskSample::new(&long, None, None);
        assert_eq!(d.mount_point.len(), MOUNT_PATH_LEN);
        assert!(d.mount_point_truncated);
        let (s, cut) = bounded_str::<3>("aé");
        assert_eq!((s.as_str(), cut), ("aé", false));
        let (s, cut) = bounded_str::<2>("aé");
        assert_eq!((s.as_str(), cut), ("a", true));
    }

    #[test]
    fn throttle_reasons_render_by_name() {
        let r = ThrottleReasons::HW_SLOWDOWN.union(ThrottleReasons(0x1000));
        assert_eq!(r.to_string(), "hw_slowdown|0x1000");
        assert_eq!(ThrottleReasons::NONE.to_string(), "none");
        assert!(ThrottleReasons::DEGRADING.contains(ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN));
        assert!(!ThrottleReasons::DEGRADING.intersects(ThrottleReasons::GPU_IDLE));
        assert_eq!(ThrottleReasons::DEGRADING.bits(), 0xe8);
    }

    #[test]
    fn unavailable_renders_reason() {
        let u = GpuUnavailable::with_detail(
            UnavailableKind::LibraryNotFound,
            "libnvidia-ml.so.1: not found",
        );
        assert_eq!(
            u.to_string(),
            "GPUs unavailable: library_not_found (libnvidia-ml.so.1: not found)"
        );
        assert_eq!(
            GpuUnavailable::new(UnavailableKind::NoPermission).to_string(),
            "GPUs unavailable: no_permission"
        );
    }

    #[test]
    fn effective_total_prefers_the_container_limit() {
        let mut h = HostSample {
            memory_total_bytes: Some(64 << 30),
            ..HostSample::default()
        };
        assert_eq!(h.effective_memory_total_bytes(), Some(64 << 30));
        h.memory_effective_total_bytes = Some(8 << 30);
        assert_eq!(h.effective_memory_total_bytes(), Some(8 << 30));
    }

    struct Fixed(u32);
    impl HealthProbe for Fixed {
        type Error = &'static str;
        fn sample(&mut self) -> Result<MachineSample, &'static str> {
            self.0 += 1;
            if self.0 == 1 {
                return Err("first read failed");
            }
            Ok(MachineSample::default())
        }
    }

    fn drive<P: HealthProbe>(
        mut p: P,
    ) -> (
        Result<MachineSample, P::Error>,
        Result<MachineSample, P::Error>,
    ) {
        (p.sample(), p.sample())
    }

    #[test]
    fn probe_trait_is_driven_through_a_reference() {
        let mut p = Fixed(0);
        let (a, b) = drive(&mut p);
        assert_eq!(a.unwrap_err().to_string(), "first read failed");
        assert_eq!(b.unwrap().host.cpu_percent, None);
        assert_eq!(p.0, 2);
    }
}
