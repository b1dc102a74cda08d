//! The probe: raw readings in, the core's [`MachineSample`] out.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use sturdy_core::ConfigError;
use sturdy_core::health::{
    DiskSample, GpuReadout, GpuSample, GpuUnavailable, HealthProbe, HostSample, LoadAverage,
    MachineSample, ThrottleReasons, UnavailableKind, bounded_str,
};

use crate::cgroup;
use crate::cpu::{CpuMeter, MIN_CPU_INTERVAL};
use crate::disks::{MountSelection, select_mounts};
use crate::nvml_source::NvmlSource;
use crate::source::{GpuReading, GpuSource, HostSource, Reading};
use crate::system_info::{DiskInfo, GpuInfo, SystemInfo};
use crate::system_source::SystemSource;

/// What a [`Probe`] reads. Built from [`ProbeConfig::default`] and the validating
/// setters below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    mounts: MountSelection,
    gpus: bool,
    cpu_min_interval: Duration,
}

impl Default for ProbeConfig {
    /// Every real filesystem, GPUs on, CPU interval [`MIN_CPU_INTERVAL`].
    fn default() -> Self {
        Self {
            mounts: MountSelection::All,
            gpus: true,
            cpu_min_interval: MIN_CPU_INTERVAL,
        }
    }
}

impl ProbeConfig {
    /// The mounts to judge.
    ///
    /// # Errors
    /// `mounts` "must name at least one mount point" for an empty
    /// [`MountSelection::Only`], "must be absolute paths" for a path not starting with
    /// `/`.
    pub fn with_mounts(mut self, mounts: MountSelection) -> Result<Self, ConfigError> {
        if let MountSelection::Only(paths) = &mounts {
            if paths.is_empty() {
                return Err(ConfigError::new(
                    "mounts",
                    "must name at least one mount point",
                ));
            }
            if paths.iter().any(|p| !p.starts_with('/')) {
                return Err(ConfigError::new("mounts", "must be absolute paths"));
            }
        }
        self.mounts = mounts;
        Ok(self)
    }

    /// Whether to read GPUs at all; when `false` the GPU part is
    /// [`UnavailableKind::Disabled`] and NVML is never loaded.
    pub fn with_gpus(mut self, on: bool) -> Self {
        self.gpus = on;
        self
    }

    /// The shortest span between two CPU counter readings; a sample sooner than that
    /// repeats the last CPU figure.
    ///
    /// # Errors
    /// `cpu_min_interval` "must be > 0".
    pub fn with_cpu_min_interval(mut self, interval: Duration) -> Result<Self, ConfigError> {
        if interval.is_zero() {
            return Err(ConfigError::new("cpu_min_interval", "must be > 0"));
        }
        self.cpu_min_interval = interval;
        Ok(self)
    }

    /// The mounts judged.
    pub fn mounts(&self) -> &MountSelection {
        &self.mounts
    }

    /// Whether GPUs are read.
    pub fn gpus(&self) -> bool {
        self.gpus
    }

    /// The shortest span between two CPU counter readings.
    pub fn cpu_min_interval(&self) -> Duration {
        self.cpu_min_interval
    }
}

/// Reads a machine: the host from `H`, the GPUs from `G`. Keeps what must outlive a
/// sample: the previous CPU counters, the loaded NVML library (or why it could not be
/// loaded), and which unsupported GPU readings were already warned about.
///
/// [`Probe::new`] reads the real machine; [`Probe::from_sources`] takes any sources
/// (tests feed exact counters and files).
///
/// ```
/// let mut probe = sturdy_probe::Probe::new();
/// let first = probe.sample();
/// assert_eq!(first.host.cpu_percent, None); // a difference needs two readings
/// assert!(first.host.memory_total_bytes.is_some());
/// ```
#[derive(Debug)]
pub struct Probe<H = SystemSource, G = NvmlSource> {
    host: H,
    gpu: G,
    config: ProbeConfig,
    cpu: CpuMeter,
    warned: HashSet<(u32, &'static str)>,
}

impl Probe {
    /// The real machine with the default configuration.
    pub fn new() -> Self {
        Self::with_config(ProbeConfig::default())
    }

    /// The real machine with `config`.
    pub fn with_config(config: ProbeConfig) -> Self {
        Self::from_sources(SystemSource::new(), NvmlSource::new(), config)
    }
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: HostSource, G: GpuSource> Probe<H, G> {
    /// A probe over the given sources.
    pub fn from_sources(host: H, gpu: G, config: ProbeConfig) -> Self {
        Self {
            cpu: CpuMeter::new(config.cpu_min_interval),
            host,
            gpu,
            config,
            warned: HashSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// The host source.
    pub fn host_source(&mut self) -> &mut H {
        &mut self.host
    }

    /// The GPU source.
    pub fn gpu_source(&mut self) -> &mut G {
        &mut self.gpu
    }

    /// Reads the host and every GPU once. Never sleeps and never fails: what cannot be
    /// read is `None`, or the GPU part is [`GpuReadout::Unavailable`] with the reason.
    pub fn sample(&mut self) -> MachineSample {
        MachineSample {
            host: self.sample_host(),
            gpus: self.sample_gpus(),
        }
    }

    /// Reads the host only (CPU, memory, swap, load, disks).
    pub fn sample_host(&mut self) -> HostSample {
        let now = self.host.elapsed();
        let host = &mut self.host;
        let mut s = HostSample {
            cpu_percent: self.cpu.observe(now, || host.cpu_times()),
            ..HostSample::default()
        };
        if let Some(m) = self.host.memory() {
            s.memory_total_bytes = Some(m.total);
            s.swap_total_bytes = Some(m.swap_total);
            s.swap_used_bytes = Some(m.swap_used);
            let host = &mut self.host;
            match cgroup::memory_limit(&mut |p| host.read_file(p), m.total) {
                Some(c) => {
                    let used = c.working_set.unwrap_or(m.used).min(c.limit);
                    s.memory_effective_total_bytes = Some(c.limit);
                    s.memory_used_bytes = Some(used);
                    s.memory_available_bytes = Some(m.available.min(c.limit - used));
                }
                None => {
                    s.memory_used_bytes = Some(m.used);
                    s.memory_available_bytes = Some(m.available);
                }
            }
        }
        s.load_average = self
            .host
            .load_average()
            .map(|[one, five, fifteen]| LoadAverage {
                one: one as f32,
                five: five as f32,
                fifteen: fifteen as f32,
            });
        for m in select_mounts(&self.host.mounts(), &self.config.mounts) {
            let _ = s.push_disk(DiskSample::new(
                &m.mount_point,
                m.total_bytes,
                m.available_bytes,
            ));
        }
        s
    }

    /// Reads every GPU, or says why none can be read.
    pub fn sample_gpus(&mut self) -> GpuReadout {
        if !self.config.gpus {
            return GpuReadout::Unavailable(GpuUnavailable::new(UnavailableKind::Disabled));
        }
        match self.gpu.read_gpus() {
            Err(why) => GpuReadout::Unavailable(why),
            Ok(readings) => {
                let mut out = GpuReadout::empty();
                for r in readings {
                    let g = self.gpu_sample(r);
                    let _ = out.push(g);
                }
                out
            }
        }
    }

    fn gpu_sample(&mut self, r: GpuReading) -> GpuSample {
        let i = r.index;
        let mut w = |field: &'static str, reading: Reading<()>| {
            if let Err(e) = reading
                && self.warned.insert((i, field))
            {
                tracing::warn!(gpu = i, field, error = %e, "GPU reading unavailable; left empty (warned once)");
            }
        };
        macro_rules! take {
            ($field:ident) => {{
                let v = r.$field;
                w(
                    stringify!($field),
                    v.as_ref().map(|_| ()).map_err(Clone::clone),
                );
                v.ok()
            }};
        }
        let mut g = GpuSample::new(i);
        g.name = take!(name).map(|s| bounded_str(&s).0);
        g.uuid = take!(uuid).map(|s| bounded_str(&s).0);
        g.utilization_percent = take!(utilization_percent).map(|p| p as f32);
        if let Some((used, total)) = take!(memory) {
            g.memory_used_bytes = Some(used);
            g.memory_total_bytes = Some(total);
        }
        g.temperature_c = take!(temperature_c).map(|t| t as f32);
        g.slowdown_temperature_c = take!(slowdown_temperature_c).map(|t| t as f32);
        g.shutdown_temperature_c = take!(shutdown_temperature_c).map(|t| t as f32);
        g.power_mw = take!(power_mw);
        g.power_limit_mw = take!(power_limit_mw);
        g.ecc_volatile_uncorrected = take!(ecc_volatile_uncorrected);
        g.retired_pages_pending = take!(retired_pages_pending);
        g.row_remap_failure = take!(row_remap_failure);
        g.throttle_reasons = take!(throttle_reasons).map(ThrottleReasons);
        if let Some(codes) = r.xids {
            g.xids_watched = true;
            for c in codes {
                let _ = g.push_xid(c);
            }
            g.xids_omitted = g.xids_omitted.saturating_add(r.xids_dropped);
        }
        g
    }

    /// The machine's static facts and totals (the original's `get_system_info`): OS,
    /// kernel, architecture, CPU model and cores, memory total, disk totals, and each
    /// GPU's name, UUID and memory total.
    pub fn system_info(&mut self) -> SystemInfo {
        let facts = self.host.facts();
        let memory = self.host.memory();
        let host = &mut self.host;
        let limit = memory
            .and_then(|m| cgroup::memory_limit(&mut |p| host.read_file(p), m.total))
            .map(|c| c.limit);
        let disks: Vec<DiskInfo> = select_mounts(&self.host.mounts(), &self.config.mounts)
            .into_iter()
            .map(|m| DiskInfo {
                mount_point: m.mount_point,
                total_bytes: m.total_bytes,
                available_bytes: m.available_bytes,
            })
            .collect();
        let (gpus, gpus_unavailable) = match self.sample_gpus() {
            GpuReadout::Unavailable(why) => (Vec::new(), Some(why)),
            readout => {
                let gpus = readout
                    .devices()
                    .iter()
                    .map(|g| GpuInfo {
                        index: g.index,
                        name: g.name.as_ref().map(|s| s.as_str().to_owned()),
                        uuid: g.uuid.as_ref().map(|s| s.as_str().to_owned()),
                        memory_total_bytes: g.memory_total_bytes,
                    })
                    .collect();
                (gpus, None)
            }
        };
        SystemInfo::new(
            facts,
            memory.map(|m| m.total),
            limit,
            disks,
            gpus,
            gpus_unavailable,
        )
    }
}

impl<H: HostSource, G: GpuSource> HealthProbe for Probe<H, G> {
    type Error = Infallible;

    fn sample(&mut self) -> Result<MachineSample, Infallible> {
        Ok(Self::sample(self))
    }
}
