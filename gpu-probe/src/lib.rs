//! # sturdy-probe
//!
//! Reads the real machine (CPU, memory, swap, load, disks through sysinfo and procfs;
//! NVIDIA GPUs through NVML, loaded at run time) and returns the core's plain
//! [`MachineSample`](sturdy_core::health::MachineSample): every reading an `Option`,
//! the GPU part either a device list or
//! [`Unavailable`](sturdy_core::health::GpuReadout::Unavailable) with the reason. No
//! sysinfo or NVML type appears in this crate's API.
//!
//! ```
//! use sturdy_probe::{Probe, ProbeConfig, MountSelection};
//!
//! let config = ProbeConfig::default().with_mounts(MountSelection::Only(vec!["/".into()]))?;
//! let mut probe = Probe::with_config(config);
//! let first = probe.sample();          // never sleeps
//! assert_eq!(first.host.cpu_percent, None); // CPU % needs a second reading
//! println!("{}", sturdy_probe::table(&first));
//! print!("{}", sturdy_probe::prometheus(&first));
//! # Ok::<(), sturdy_core::ConfigError>(())
//! ```
//!
//! What it guarantees:
//! - **CPU** is the difference of two counter readings at least [`MIN_CPU_INTERVAL`]
//!   apart. The first sample says `None` (never 0 %, never NaN); no sample sleeps (the
//!   original slept 100 ms in each).
//! - **Memory**: the effective total honours a container (cgroup v2 `memory.max`, v1
//!   `memory.limit_in_bytes`) limit; `max` and sentinels at least as large as physical
//!   memory are no limit.
//! - **Disks**: pseudo filesystems skipped; one filesystem mounted twice (an overlay
//!   and a bind mount) counted once; the mounts to judge are a [`MountSelection`].
//! - **GPUs**: NVML is loaded once; a machine without it gets a full host sample and the
//!   GPU part unavailable with the reason, remembered rather than retried. A reading
//!   the board does not support stays `None`, the device stays, and it is warned about
//!   once (through `tracing`). XID errors are read from an NVML event set on a dedicated
//!   thread (Linux) and reach the sample as `recent_xids`.
//!
//! One call for the common case, as the original had: [`get_system_health`] and
//! [`is_system_healthy`] sample this machine and judge it with the core's
//! [`assess`](sturdy_core::health::assess) and default or given
//! [`Thresholds`](sturdy_core::health::Thresholds); [`Probe::health`] does the same on a
//! probe the caller keeps.
//!
//! Formats: [`json`] (serde), [`table`], [`prometheus`] and [`prometheus_health`] (text
//! exposition 0.0.4), each also as a `write_*` function over [`std::io::Write`]. System
//! information (the original's `get_system_info`): [`Probe::system_info`].
//!
//! Tests drive the probe through the [`HostSource`] and [`GpuSource`] traits with exact
//! counters and file contents.

mod cgroup;
mod cpu;
mod disks;
mod json;
mod nvml_source;
mod probe;
mod prometheus;
mod source;
mod system_health;
mod system_info;
mod system_source;
mod table;

pub use cpu::{MIN_CPU_INTERVAL, parse_proc_stat};
pub use disks::{MountSelection, PSEUDO_FILESYSTEMS, is_pseudo, select_mounts};
pub use json::{SCHEMA_VERSION, Stamped, json, json_line, write_json};
pub use nvml_source::NvmlSource;
pub use probe::{Probe, ProbeConfig};
pub use prometheus::{
    CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE, prometheus, prometheus_health, write_prometheus,
    write_prometheus_health,
};
pub use source::{
    CpuTimes, GpuReading, GpuSource, HostFacts, HostSource, MemoryReading, MountReading, NoGpus,
    ReadError, Reading,
};
pub use system_health::{
    SystemHealth, get_system_health, get_system_health_with, is_system_healthy,
    is_system_healthy_with,
};
pub use system_info::{DiskInfo, GpuInfo, SystemInfo};
pub use system_source::SystemSource;
pub use table::{table, write_table};
