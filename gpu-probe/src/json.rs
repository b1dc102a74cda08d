//! JSON output (serde): samples, system information and reports as JSON objects.
//!
//! A [`MachineSample`](sturdy_core::health::MachineSample) serializes with the core's
//! field names (`cpu_percent`, `memory_used_bytes`, ...); a missing reading is `null`;
//! the GPU part is `{"devices": {...}}` or `{"unavailable": {"kind": ..., "detail": ...}}`;
//! enum values are snake case (`"critical"`, `"no_driver"`), as in the text and
//! Prometheus outputs; clocks event (throttle) reasons are a list of names.

use std::io;
use std::time::SystemTime;

use serde::Serialize;

/// The version of the JSON report's shape ([`Stamped`]): 2 since enum values are snake
/// case, clocks event reasons names, and each report carries this version and a
/// timestamp. It grows when a field changes meaning or is removed, not when one is
/// added.
pub const SCHEMA_VERSION: u32 = 2;

/// A report stamped with [`SCHEMA_VERSION`] and the wall-clock time it was taken
/// (`timestamp`, RFC 3339 in UTC with milliseconds), its own fields alongside (`value`
/// must serialize as a map: a struct).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use sturdy_core::health::MachineSample;
/// let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
/// let line = sturdy_probe::json_line(&sturdy_probe::Stamped::new(&MachineSample::default(), at));
/// assert!(line.starts_with(r#"{"schema_version":2,"timestamp":"2023-11-14T22:13:20.123Z","host":"#));
/// assert!(line.ends_with("}\n") && line.lines().count() == 1);
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct Stamped<'a, T: ?Sized> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the report was taken: RFC 3339, UTC, milliseconds.
    pub timestamp: String,
    /// The report.
    #[serde(flatten)]
    pub value: &'a T,
}

impl<'a, T: ?Sized> Stamped<'a, T> {
    /// `value` taken at `at`.
    pub fn new(value: &'a T, at: SystemTime) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            timestamp: humantime::format_rfc3339_millis(at).to_string(),
            value,
        }
    }
}

/// `value` as one line of compact JSON followed by a line feed: one record of NDJSON
/// (what `sturdy probe --watch --json` writes).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> String {
    let mut line = serde_json::to_string(value)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
    line.push('\n');
    line
}

/// `value` as pretty-printed JSON.
///
/// ```
/// use sturdy_core::health::MachineSample;
/// let text = sturdy_probe::json(&MachineSample::default());
/// assert!(text.contains("\"cpu_percent\": null"));
/// ```
pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    // The crate's types have string keys only, so serialization cannot fail; should a
    // caller's type fail, the error is reported as a JSON object instead of a panic.
    serde_json::to_string_pretty(value)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

/// Writes `value` as pretty-printed JSON to `w`, followed by a line feed.
///
/// # Errors
/// Whatever `w` returns, or a serialization error as [`io::ErrorKind::InvalidData`].
pub fn write_json<T: Serialize + ?Sized>(w: &mut impl io::Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, value).map_err(io::Error::other)?;
    w.write_all(b"\n")
}
