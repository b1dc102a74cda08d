//! JSON output (serde): samples, system information and reports as JSON objects.
//!
//! A [`MachineSample`](sturdy_core::health::MachineSample) serializes with the core's
//! field names (`cpu_percent`, `memory_used_bytes`, ...); a missing reading is `null`;
//! the GPU part is `{"Devices": {...}}` or `{"Unavailable": {"kind": ..., "detail": ...}}`.

use std::io;

use serde::Serialize;

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
