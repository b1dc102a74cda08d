//! Health rules: plain samples of a host and its GPUs, and the rules that judge them.
//!
//! A probe (the `sturdy-probe` crate, or a test) implements [`HealthProbe`] and returns
//! a [`MachineSample`]: a [`HostSample`] (CPU, memory, swap, load, disks) and a
//! [`GpuReadout`] (one [`GpuSample`] per NVIDIA GPU, or why none could be read). Every
//! reading is an `Option`; a missing reading is unknown, never healthy by default.
//!
//! The types hold no `std` type and never allocate; lists have the capacities
//! [`MAX_DISKS`], [`MAX_GPUS`], [`MAX_XIDS`] and count what did not fit.

mod sample;

pub use sample::{
    DiskSample, GPU_NAME_LEN, GPU_UUID_LEN, GpuName, GpuReadout, GpuSample, GpuUnavailable,
    GpuUuid, HealthProbe, HostSample, LoadAverage, MAX_DISKS, MAX_GPUS, MAX_XIDS, MOUNT_PATH_LEN,
    MachineSample, MountPath, REASON_LEN, ReasonText, ThrottleReasons, UnavailableKind,
    bounded_str,
};
