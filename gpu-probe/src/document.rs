//! The JSON document of one judged sample: what `sturdy probe --json` prints, one per
//! line under `--watch` (NDJSON).

use std::time::SystemTime;

use serde::Serialize;
use sturdy_core::health::{HealthReport, MachineSample};

use crate::system_health::SystemHealth;

/// The version of [`Document`]'s layout. It grows by one when a field is removed or
/// changes meaning; new fields may appear without a change.
pub const SCHEMA_VERSION: u32 = 1;

/// One judged sample with its time and schema version, as a JSON object:
///
/// ```text
/// {"schema_version":1,"timestamp":"2026-12-06T10:40:00.123Z","sample":{...},"report":{...}}
/// ```
///
/// Enum values are snake_case, as in the text and Prometheus outputs (`"critical"`,
/// `"cpu_percent"`, `{"gpu": 0}`); GPU throttle reasons are a list of names. The
/// sample's `host.memory_effective_total_bytes` is always the total that percentages
/// are computed against ([`HostSample::effective_memory_total_bytes`], the value of the
/// Prometheus gauge `sturdy_memory_effective_total_bytes`): the smaller of physical
/// memory and a container limit; `memory_limited_by_container` says whether a limit
/// applied.
///
/// [`HostSample::effective_memory_total_bytes`]: sturdy_core::health::HostSample::effective_memory_total_bytes
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the sample was judged: RFC 3339, UTC, milliseconds (`2026-12-06T10:40:00.123Z`).
    pub timestamp: String,
    /// Whether a container (cgroup) limit below physical memory set the effective total.
    pub memory_limited_by_container: bool,
    /// What was read (see above for the effective memory total).
    pub sample: MachineSample,
    /// The verdict.
    pub report: HealthReport,
}

impl Document {
    /// The document of `health`, stamped with `at`.
    pub fn new(health: &SystemHealth, at: SystemTime) -> Self {
        let mut sample = health.sample.clone();
        let h = &mut sample.host;
        let limited = matches!(
            (h.memory_effective_total_bytes, h.memory_total_bytes),
            (Some(limit), Some(total)) if limit < total
        ) || (h.memory_effective_total_bytes.is_some()
            && h.memory_total_bytes.is_none());
        h.memory_effective_total_bytes = h.effective_memory_total_bytes();
        Self {
            schema_version: SCHEMA_VERSION,
            timestamp: humantime::format_rfc3339_millis(at).to_string(),
            memory_limited_by_container: limited,
            sample,
            report: health.report.clone(),
        }
    }

    /// The document as one line of JSON (no line feed inside), for NDJSON streams.
    pub fn to_line(&self) -> String {
        // String keys only: serialization cannot fail; should it, say so as JSON.
        serde_json::to_string(self)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
    }
}
