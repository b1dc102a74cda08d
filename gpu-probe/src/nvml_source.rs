//! NVIDIA GPUs read through NVML (nvml-wrapper), loaded once at run time.
//!
//! `Nvml::init` opens `libnvidia-ml.so.1` (`nvml.dll` on Windows) when the source is
//! first used. A machine without the library or the driver gets
//! [`GpuUnavailable`] with the reason, and the failure is remembered: NVML is not
//! loaded again on every sample. XID errors arrive as NVML events
//! (`nvmlEventTypeXidCriticalError`), waited for on a dedicated thread (Linux only,
//! where NVML supports event sets) and handed to the next sample.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nvml_wrapper::enum_wrappers::device::{
    EccCounter, MemoryError, TemperatureSensor, TemperatureThreshold,
};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};
use sturdy_core::health::{GpuUnavailable, UnavailableKind};

use crate::source::{GpuReading, GpuSource, ReadError, Reading};

/// NVML field `NVML_FI_DEV_REMAPPED_FAILURE` (145): whether a row remapping failed.
const FI_DEV_REMAPPED_FAILURE: u32 = 145;
/// XIDs kept per device between two samples; more are counted as dropped.
const XID_BUFFER: usize = 64;
/// How long the XID thread waits for an event before it checks whether to stop, ms.
const XID_WAIT_MS: u32 = 500;

/// NVIDIA GPUs as a [`GpuSource`]. Construction does nothing; the library is loaded on
/// the first read, once.
#[derive(Default)]
pub struct NvmlSource {
    state: Option<Result<Loaded, GpuUnavailable>>,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            None => "not loaded",
            Some(Ok(_)) => "loaded",
            Some(Err(_)) => "unavailable",
        };
        f.debug_struct("NvmlSource").field("state", &state).finish()
    }
}

struct Loaded {
    nvml: Arc<Nvml>,
    xids: Option<XidWatcher>,
}

impl NvmlSource {
    /// A source that loads NVML on its first read.
    pub fn new() -> Self {
        Self::default()
    }

    #[allow(
        clippy::result_large_err,
        reason = "taken once per process, on a machine without NVML"
    )]
    fn load() -> Result<Loaded, GpuUnavailable> {
        let nvml = Arc::new(Nvml::init().map_err(|e| unavailable(&e))?);
        let xids = XidWatcher::start(&nvml);
        Ok(Loaded { nvml, xids })
    }
}

impl GpuSource for NvmlSource {
    fn read_gpus(&mut self) -> Result<Vec<GpuReading>, GpuUnavailable> {
        let loaded = match self.state.get_or_insert_with(Self::load) {
            Ok(l) => l,
            Err(e) => return Err(e.clone()),
        };
        let count = loaded.nvml.device_count().map_err(|e| unavailable(&e))?;
        let mut pending = loaded
            .xids
            .as_ref()
            .map(XidWatcher::take)
            .unwrap_or_default();
        let out = (0..count)
            .map(|i| {
                let mut r = match loaded.nvml.device_by_index(i) {
                    Ok(d) => read_device(i, &d),
                    Err(e) => GpuReading::failed(i, &read_error(e)),
                };
                if let Some(w) = &loaded.xids
                    && w.is_watched(i)
                {
                    let (codes, dropped) = pending.remove(&i).unwrap_or_default();
                    r.xids = Some(codes);
                    r.xids_dropped = dropped;
                }
                r
            })
            .collect();
        Ok(out)
    }
}

fn read_error(e: NvmlError) -> ReadError {
    match e {
        NvmlError::NotSupported | NvmlError::FunctionNotFound => ReadError::NotSupported,
        NvmlError::FailedToLoadSymbol(_) => ReadError::NotSupported,
        other => ReadError::Failed(other.to_string()),
    }
}

fn unavailable(e: &NvmlError) -> GpuUnavailable {
    let kind = match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            UnavailableKind::LibraryNotFound
        }
        NvmlError::FailedToLoadSymbol(_) => UnavailableKind::LibraryNotFound,
        NvmlError::DriverNotLoaded => UnavailableKind::DriverNotLoaded,
        NvmlError::NoPermission => UnavailableKind::NoPermission,
        _ => UnavailableKind::Other,
    };
    GpuUnavailable::with_detail(kind, &e.to_string())
}

fn r<T>(res: Result<T, NvmlError>) -> Reading<T> {
    res.map_err(read_error)
}

fn read_device(index: u32, d: &Device<'_>) -> GpuReading {
    let row_remap_failure: Reading<bool> = d
        .field_values_for(&[FieldId(FI_DEV_REMAPPED_FAILURE)])
        .map_err(read_error)
        .and_then(|mut v| v.pop().ok_or(ReadError::NotSupported)?.map_err(read_error))
        .and_then(|s| s.value.map_err(read_error))
        .map(|v| {
            use nvml_wrapper::enums::device::SampleValue;
            match v {
                SampleValue::U32(x) => x != 0,
                SampleValue::U64(x) => x != 0,
                SampleValue::I64(x) => x != 0,
                SampleValue::F64(x) => x != 0.0,
            }
        });
    GpuReading {
        index,
        name: r(d.name()),
        uuid: r(d.uuid()),
        utilization_percent: r(d.utilization_rates().map(|u| u.gpu)),
        memory: r(d.memory_info().map(|m| (m.used, m.total))),
        temperature_c: r(d.temperature(TemperatureSensor::Gpu)),
        slowdown_temperature_c: r(d.temperature_threshold(TemperatureThreshold::Slowdown)),
        shutdown_temperature_c: r(d.temperature_threshold(TemperatureThreshold::Shutdown)),
        power_mw: r(d.power_usage()),
        power_limit_mw: r(d.enforced_power_limit()),
        ecc_volatile_uncorrected: r(
            d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
        ),
        retired_pages_pending: r(d.are_pages_pending_retired()),
        row_remap_failure,
        throttle_reasons: r(d.current_throttle_reasons().map(|t| t.bits())),
        xids: None,
        xids_dropped: 0,
    }
}

/// XIDs waiting for the next sample, per device index: codes and a dropped count.
type Pending = HashMap<u32, (Vec<u32>, u16)>;

#[derive(Default)]
struct XidShared {
    watched: Vec<u32>,
    pending: Pending,
    stopped: bool,
}

/// The thread that waits on an NVML event set for XID errors.
struct XidWatcher {
    shared: Arc<Mutex<XidShared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl XidWatcher {
    #[cfg(target_os = "linux")]
    fn start(nvml: &Arc<Nvml>) -> Option<Self> {
        use nvml_wrapper::bitmasks::event::EventTypes;

        // Register on this thread so that the first sample already knows what is watched.
        let mut set = nvml.create_event_set().ok()?;
        let mut watched = Vec::new();
        for i in 0..nvml.device_count().ok()? {
            let Ok(d) = nvml.device_by_index(i) else {
                continue;
            };
            let supported = d
                .supported_event_types()
                .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR));
            if !supported {
                continue;
            }
            match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(s) => {
                    set = s;
                    watched.push(i);
                }
                Err(e) => {
                    tracing::warn!(gpu = i, error = %e.error, "cannot watch XID events");
                    // NVML frees the set on an unknown error; start over without this device
                    set = nvml.create_event_set().ok()?;
                }
            }
        }
        if watched.is_empty() {
            return None;
        }
        drop(set); // the thread registers its own set: an EventSet borrows the Nvml handle
        let shared = Arc::new(Mutex::new(XidShared {
            watched: watched.clone(),
            ..XidShared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (nvml2, shared2, stop2) = (Arc::clone(nvml), Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("sturdy-xid".into())
            .spawn(move || xid_loop(&nvml2, &watched, &shared2, &stop2))
            .ok()?;
        Some(Self {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn start(_nvml: &Arc<Nvml>) -> Option<Self> {
        None
    }

    fn is_watched(&self, index: u32) -> bool {
        let s = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !s.stopped && s.watched.contains(&index)
    }

    fn take(&self) -> Pending {
        let mut s = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut s.pending)
    }
}

impl Drop for XidWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(target_os = "linux")]
fn xid_loop(nvml: &Nvml, watched: &[u32], shared: &Mutex<XidShared>, stop: &AtomicBool) {
    use nvml_wrapper::bitmasks::event::EventTypes;
    use nvml_wrapper::enums::event::XidError;

    let stopped = |why: &str| {
        tracing::warn!(reason = why, "XID watch stopped");
        shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stopped = true;
    };
    let Ok(mut set) = nvml.create_event_set() else {
        return stopped("cannot create an NVML event set");
    };
    for &i in watched {
        let Ok(d) = nvml.device_by_index(i) else {
            continue;
        };
        set = match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => s,
            Err(_) => return stopped("cannot register XID events"),
        };
    }
    while !stop.load(Ordering::Relaxed) {
        match set.wait(XID_WAIT_MS) {
            Ok(ev) => {
                if !ev.event_type.contains(EventTypes::CRITICAL_XID_ERROR) {
                    continue;
                }
                let code = match ev.event_data {
                    Some(XidError::Value(v)) => u32::try_from(v).unwrap_or(u32::MAX),
                    _ => 0,
                };
                let Ok(index) = ev.device.index() else {
                    continue;
                };
                tracing::warn!(gpu = index, xid = code, "XID error");
                let mut s = shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let (codes, dropped) = s.pending.entry(index).or_default();
                if codes.len() < XID_BUFFER {
                    codes.push(code);
                } else {
                    *dropped = dropped.saturating_add(1);
                }
            }
            Err(NvmlError::Timeout) => {}
            Err(e) => return stopped(&e.to_string()),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn xid_loop(_: &Nvml, _: &[u32], _: &Mutex<XidShared>, _: &AtomicBool) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_load_is_remembered_not_retried() {
        let mut s = NvmlSource::new();
        match s.read_gpus() {
            // The usual case here (no NVIDIA driver): a reason, kept for later reads.
            Err(first) => {
                assert_ne!(first.kind, UnavailableKind::Disabled);
                assert!(first.detail.is_some(), "{first}");
                assert!(matches!(s.state, Some(Err(_))));
                assert_eq!(s.read_gpus().expect_err("a kept failure"), first);
            }
            // A machine with a GPU: the library stays loaded between reads.
            Ok(gpus) => {
                assert!(matches!(s.state, Some(Ok(_))));
                assert_eq!(s.read_gpus().map(|g| g.len()), Ok(gpus.len()));
            }
        }
    }

    #[test]
    fn nvml_errors_map_to_reasons_and_read_errors() {
        assert_eq!(
            unavailable(&NvmlError::DriverNotLoaded).kind,
            UnavailableKind::DriverNotLoaded
        );
        assert_eq!(
            unavailable(&NvmlError::NoPermission).kind,
            UnavailableKind::NoPermission
        );
        assert_eq!(
            unavailable(&NvmlError::GpuLost).kind,
            UnavailableKind::Other
        );
        assert_eq!(read_error(NvmlError::NotSupported), ReadError::NotSupported);
        assert!(matches!(
            read_error(NvmlError::GpuLost),
            ReadError::Failed(_)
        ));
    }
}
