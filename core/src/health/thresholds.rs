//! Warning and critical levels for the health rules (see [`Thresholds`]).

use core::fmt;

use crate::ConfigError;

/// A warning and a critical level for one reading; both trip on a value strictly above
/// them. Invariant: `warning <= critical`, both finite.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Level {
    warning: f32,
    critical: f32,
}

impl Level {
    /// A level without checks; callers keep the invariant.
    pub(super) const fn raw(warning: f32, critical: f32) -> Self {
        Self { warning, critical }
    }

    /// The warning level (a value above it is degraded).
    pub const fn warning(&self) -> f32 {
        self.warning
    }

    /// The critical level (a value above it is critical).
    pub const fn critical(&self) -> f32 {
        self.critical
    }

    const fn check(self, field: &'static str, percent: bool) -> Result<Self, ConfigError> {
        if !self.warning.is_finite() || !self.critical.is_finite() {
            return Err(ConfigError::new(field, "levels must be finite numbers"));
        }
        if percent
            && !(self.warning >= 0.0
                && self.warning <= 100.0
                && self.critical >= 0.0
                && self.critical <= 100.0)
        {
            return Err(ConfigError::new(
                field,
                "levels must be percentages in [0, 100]",
            ));
        }
        if self.warning > self.critical {
            return Err(ConfigError::new(
                field,
                "warning level must not be above the critical level",
            ));
        }
        Ok(self)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "warning > {}, critical > {}",
            self.warning, self.critical
        )
    }
}

/// The levels [`assess`](super::assess) judges a sample against. Built from
/// [`Thresholds::default`] and the validating `with_*` setters, each of which names its
/// field in the error.
///
/// Every level trips on a value **strictly above** it (`>`), as in the original: a CPU
/// at exactly 95.0 % with a critical level of 95 % is not critical. Percentages are
/// "used" percentages in `[0, 100]`; temperatures are °C.
///
/// Defaults (see [`Thresholds::default`]):
///
/// | reading                 | warning  | critical | source                                   |
/// |-------------------------|----------|----------|------------------------------------------|
/// | CPU busy                | 90 %     | 95 %     | critical: the original; warning: node-mixin `NodeCPUHighUsage` (90 %) |
/// | memory used             | 90 %     | 95 %     | critical: the original; warning: node-mixin `NodeMemoryHighUtilization` (90 %) |
/// | disk used               | 90 %     | 95 %     | critical: the original (95 % used = 5 % available); warning 10 % available (see below) |
/// | GPU memory used         | 90 %     | 95 %     | critical: the original                   |
/// | GPU temperature         | 80 °C    | 85 °C    | critical: the original; used only when the device's own thresholds are unknown |
/// | GPU shutdown headroom   |          | 5 °C     | critical this far below the device's shutdown temperature |
///
/// node_exporter's mixin alerts on disks at 5 % available (warning) and 3 % available
/// (critical). The original's critical level, 95 % used, is that mixin's *warning*; sturdy
/// keeps the original's critical level and warns 5 points earlier.
/// [`Thresholds::node_exporter_disks`] gives the mixin's pair (95 % / 97 % used) instead.
///
/// A GPU whose driver reports its slowdown and shutdown temperatures is judged against
/// them: degraded above its slowdown temperature (the hardware starts cutting clocks),
/// critical above its shutdown temperature minus the headroom. Each falls back to the
/// configured level when the device does not report it.
///
/// ```
/// use sturdy_core::health::Thresholds;
/// let t = Thresholds::default().with_cpu_percent(70.0, 80.0)?;
/// assert_eq!((t.cpu_percent().warning(), t.cpu_percent().critical()), (70.0, 80.0));
/// let e = Thresholds::default().with_memory_percent(96.0, 95.0).unwrap_err();
/// assert_eq!(e.field(), "memory_percent");
/// # Ok::<(), sturdy_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "ThresholdsUnchecked"))]
pub struct Thresholds {
    cpu_percent: Level,
    memory_percent: Level,
    disk_percent: Level,
    gpu_memory_percent: Level,
    gpu_temperature_c: Level,
    gpu_shutdown_headroom_c: f32,
    expected_gpus: u32,
}

impl Default for Thresholds {
    /// [`Thresholds::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Thresholds {
    /// The defaults in the table of [`Thresholds`]; the [`Default`].
    pub const DEFAULT: Self = Self {
        cpu_percent: Level::raw(90.0, 95.0),
        memory_percent: Level::raw(90.0, 95.0),
        disk_percent: Level::raw(90.0, 95.0),
        gpu_memory_percent: Level::raw(90.0, 95.0),
        gpu_temperature_c: Level::raw(80.0, 85.0),
        gpu_shutdown_headroom_c: 5.0,
        expected_gpus: 0,
    };
}

impl Thresholds {
    /// The defaults with node_exporter's mixin disk levels: warning above 95 % used (5 %
    /// available), critical above 97 % used (3 % available).
    pub const fn node_exporter_disks() -> Self {
        Self {
            disk_percent: Level::raw(95.0, 97.0),
            ..Self::DEFAULT
        }
    }

    /// CPU busy levels, %. Errors (field `cpu_percent`) unless both are in `[0, 100]`
    /// and `warning <= critical`.
    pub const fn with_cpu_percent(
        mut self,
        warning: f32,
        critical: f32,
    ) -> Result<Self, ConfigError> {
        self.cpu_percent = match Level::raw(warning, critical).check("cpu_percent", true) {
            Ok(level) => level,
            Err(e) => return Err(e),
        };
        Ok(self)
    }

    /// Memory used levels, % of the effective total (a container limit when there is
    /// one). Errors (field `memory_percent`) as for CPU.
    pub const fn with_memory_percent(
        mut self,
        warning: f32,
        critical: f32,
    ) -> Result<Self, ConfigError> {
        self.memory_percent = match Level::raw(warning, critical).check("memory_percent", true) {
            Ok(level) => level,
            Err(e) => return Err(e),
        };
        Ok(self)
    }

    /// Disk used levels, % of each filesystem (used = total - available to users).
    /// Errors (field `disk_percent`) as for CPU.
    pub const fn with_disk_percent(
        mut self,
        warning: f32,
        critical: f32,
    ) -> Result<Self, ConfigError> {
        self.disk_percent = match Level::raw(warning, critical).check("disk_percent", true) {
            Ok(level) => level,
            Err(e) => return Err(e),
        };
        Ok(self)
    }

    /// GPU memory used levels, %. Errors (field `gpu_memory_percent`) as for CPU.
    pub const fn with_gpu_memory_percent(
        mut self,
        warning: f32,
        critical: f32,
    ) -> Result<Self, ConfigError> {
        self.gpu_memory_percent =
            match Level::raw(warning, critical).check("gpu_memory_percent", true) {
                Ok(level) => level,
                Err(e) => return Err(e),
            };
        Ok(self)
    }

    /// GPU temperature levels, °C, used when a device does not report its own slowdown
    /// or shutdown temperature. Errors (field `gpu_temperature_c`) unless finite and
    /// `warning <= critical`.
    pub const fn with_gpu_temperature_c(
        mut self,
        warning: f32,
        critical: f32,
    ) -> Result<Self, ConfigError> {
        self.gpu_temperature_c =
            match Level::raw(warning, critical).check("gpu_temperature_c", false) {
                Ok(level) => level,
                Err(e) => return Err(e),
            };
        Ok(self)
    }

    /// How far below a device's own shutdown temperature it is judged critical, °C.
    /// Errors (field `gpu_shutdown_headroom_c`) unless finite and `>= 0`.
    pub const fn with_gpu_shutdown_headroom_c(
        mut self,
        headroom: f32,
    ) -> Result<Self, ConfigError> {
        if !(headroom.is_finite() && headroom >= 0.0) {
            return Err(ConfigError::new(
                "gpu_shutdown_headroom_c",
                "must be a finite number >= 0",
            ));
        }
        self.gpu_shutdown_headroom_c = headroom;
        Ok(self)
    }

    /// How many GPUs the machine should have (default 0: a host without GPUs is fine).
    /// With `n > 0`, fewer devices than `n` is critical (a GPU fell off the bus or the
    /// driver lost it) and an unavailable GPU readout is unknown.
    pub const fn with_expected_gpus(mut self, n: u32) -> Self {
        self.expected_gpus = n;
        self
    }

    /// CPU busy levels, %.
    pub const fn cpu_percent(&self) -> Level {
        self.cpu_percent
    }
    /// Memory used levels, %.
    pub const fn memory_percent(&self) -> Level {
        self.memory_percent
    }
    /// Disk used levels, %.
    pub const fn disk_percent(&self) -> Level {
        self.disk_percent
    }
    /// GPU memory used levels, %.
    pub const fn gpu_memory_percent(&self) -> Level {
        self.gpu_memory_percent
    }
    /// GPU temperature levels when the device's own are unknown, °C.
    pub const fn gpu_temperature_c(&self) -> Level {
        self.gpu_temperature_c
    }
    /// Headroom below a device's shutdown temperature, °C.
    pub const fn gpu_shutdown_headroom_c(&self) -> f32 {
        self.gpu_shutdown_headroom_c
    }
    /// How many GPUs the machine should have.
    pub const fn expected_gpus(&self) -> u32 {
        self.expected_gpus
    }

    /// Checks every rule (the `with_*` setters do; this is for values built elsewhere,
    /// and deserialization calls it).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cpu_percent.check("cpu_percent", true)?;
        self.memory_percent.check("memory_percent", true)?;
        self.disk_percent.check("disk_percent", true)?;
        self.gpu_memory_percent.check("gpu_memory_percent", true)?;
        self.gpu_temperature_c.check("gpu_temperature_c", false)?;
        Self::default().with_gpu_shutdown_headroom_c(self.gpu_shutdown_headroom_c)?;
        Ok(())
    }
}

/// The serialized shape of [`Thresholds`], checked on the way in.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct ThresholdsUnchecked {
    cpu_percent: Level,
    memory_percent: Level,
    disk_percent: Level,
    gpu_memory_percent: Level,
    gpu_temperature_c: Level,
    gpu_shutdown_headroom_c: f32,
    expected_gpus: u32,
}

#[cfg(feature = "serde")]
impl TryFrom<ThresholdsUnchecked> for Thresholds {
    type Error = ConfigError;
    fn try_from(u: ThresholdsUnchecked) -> Result<Self, ConfigError> {
        let t = Self {
            cpu_percent: u.cpu_percent,
            memory_percent: u.memory_percent,
            disk_percent: u.disk_percent,
            gpu_memory_percent: u.gpu_memory_percent,
            gpu_temperature_c: u.gpu_temperature_c,
            gpu_shutdown_headroom_c: u.gpu_shutdown_headroom_c,
            expected_gpus: u.expected_gpus,
        };
        t.validate()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn defaults_are_the_originals_critical_levels() {
        let t = Thresholds::default();
        assert_eq!(t.cpu_percent().critical(), 95.0);
        assert_eq!(t.memory_percent().critical(), 95.0);
        assert_eq!(t.disk_percent().critical(), 95.0);
        assert_eq!(t.gpu_memory_percent().critical(), 95.0);
        assert_eq!(t.gpu_temperature_c().critical(), 85.0);
        assert_eq!(t.cpu_percent().warning(), 90.0);
        assert_eq!(t.expected_gpus(), 0);
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(
            Thresholds::node_exporter_disks().disk_percent(),
            Level::raw(95.0, 97.0)
        );
        assert_eq!(Thresholds::node_exporter_disks().validate(), Ok(()));
    }

    #[test]
    fn bad_levels_name_the_field_and_rule() {
        let t = Thresholds::default();
        let e = t.with_cpu_percent(96.0, 95.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: `cpu_percent` warning level must not be above the critical level"
        );
        let e = t.with_disk_percent(90.0, 101.0).unwrap_err();
        assert_eq!(
            (e.field(), e.rule()),
            ("disk_percent", "levels must be percentages in [0, 100]")
        );
        let e = t.with_gpu_memory_percent(-1.0, 50.0).unwrap_err();
        assert_eq!(e.field(), "gpu_memory_percent");
        let e = t.with_gpu_temperature_c(f32::NAN, 85.0).unwrap_err();
        assert_eq!(
            (e.field(), e.rule()),
            ("gpu_temperature_c", "levels must be finite numbers")
        );
        let e = t.with_gpu_shutdown_headroom_c(-0.5).unwrap_err();
        assert_eq!(e.field(), "gpu_shutdown_headroom_c");
        let e = t.with_memory_percent(50.0, f32::INFINITY).unwrap_err();
        assert_eq!(e.field(), "memory_percent");
        // Temperatures are not percentages: 110 °C is a valid level.
        let t = t.with_gpu_temperature_c(100.0, 110.0).unwrap();
        assert_eq!(t.gpu_temperature_c().critical(), 110.0);
        // warning == critical is allowed (no warning band).
        assert!(t.with_cpu_percent(80.0, 80.0).is_ok());
    }

    #[cfg(feature = "postcard")]
    #[test]
    fn deserializing_checks_the_rules() {
        let t = Thresholds::default().with_cpu_percent(70.0, 80.0).unwrap();
        let mut buf = [0u8; 128];
        let bytes = postcard::to_slice(&t, &mut buf).unwrap();
        assert_eq!(postcard::from_bytes::<Thresholds>(bytes), Ok(t));
        let bad = Thresholds {
            disk_percent: Level::raw(99.0, 98.0),
            ..t
        };
        let mut buf = [0u8; 128];
        let bytes = postcard::to_slice(&bad, &mut buf).unwrap();
        assert!(postcard::from_bytes::<Thresholds>(bytes).is_err());
    }
}
