//! Health rules: plain samples of a host and its GPUs, and the rules that judge them.
//!
//! A probe (the `sturdy-probe` crate, or a test) implements [`HealthProbe`] and returns
//! a [`MachineSample`]: a [`HostSample`] (CPU, memory, swap, load, disks) and a
//! [`GpuReadout`] (one [`GpuSample`] per NVIDIA GPU, or why none could be read). Every
//! reading is an `Option`; a missing reading is unknown, never healthy by default.
//!
//! [`assess`] judges a sample against [`Thresholds`] (warning and critical levels,
//! strict `>`) and NVIDIA DCGM's GPU health rules, and returns a [`HealthReport`]: a
//! [`HealthStatus`] (`Healthy`, `Unknown`, `Degraded`, `Critical`) and typed
//! [`Issue`]s that render as clear text. [`classify_xid`] tells a device fault from an
//! application fault, so that a supervisor can charge the task, not the GPU.
//!
//! The types hold no `std` type and never allocate; lists have the capacities
//! [`MAX_DISKS`], [`MAX_GPUS`], [`MAX_XIDS`], [`MAX_ISSUES`] and count what did not fit.

mod assess;
mod report;
mod sample;
mod thresholds;
mod xid;

pub use assess::{assess, assess_gpu, assess_host};
pub use report::{Device, HealthReport, HealthStatus, Issue, MAX_ISSUES, Metric, Severity};
pub use sample::{
    DiskSample, GPU_NAME_LEN, GPU_UUID_LEN, GpuName, GpuReadout, GpuSample, GpuUnavailable,
    GpuUuid, HealthProbe, HostSample, LoadAverage, MAX_DISKS, MAX_GPUS, MAX_XIDS, MOUNT_PATH_LEN,
    MachineSample, MountPath, REASON_LEN, ReasonText, ThrottleReasons, UnavailableKind,
    bounded_str,
};
pub use thresholds::{Level, Thresholds};
pub use xid::{XidClass, classify_xid, xid_description};
