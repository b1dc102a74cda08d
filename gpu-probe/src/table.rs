//! A readable, fixed-width table of a [`MachineSample`]. A missing reading prints as
//! `unknown`, never as zero.

use std::fmt::Write as _;
use std::io;

use sturdy_core::health::{GpuReadout, MachineSample};

/// A byte count in binary units (`512 B`, `1.5 KiB`, `24.0 GiB`), or `unknown`.
pub(crate) fn bytes(v: Option<u64>) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let Some(v) = v else { return "unknown".into() };
    if v < 1024 {
        return format!("{v} B");
    }
    let mut x = v as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.1} {}", UNITS[unit])
}

fn pct(v: Option<f32>) -> String {
    v.map_or_else(|| "unknown".into(), |p| format!("{p:.1} %"))
}

fn ratio(part: Option<u64>, whole: Option<u64>) -> String {
    match (part, whole) {
        (Some(p), Some(w)) if w > 0 => format!("{:.1} %", p as f64 * 100.0 / w as f64),
        _ => "unknown".into(),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map_or_else(|| "unknown".into(), |v| format!("{v}{unit}"))
}

/// The table as a `String`.
///
/// ```
/// use sturdy_core::health::MachineSample;
/// let text = sturdy_probe::table(&MachineSample::default());
/// assert!(text.contains("cpu        unknown"));
/// ```
pub fn table(sample: &MachineSample) -> String {
    let h = &sample.host;
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(t, "HOST");
    let _ = writeln!(t, "  cpu        {}", pct(h.cpu_percent));
    let _ = write!(
        t,
        "  memory     {} used of {} ({}), {} available",
        bytes(h.memory_used_bytes),
        bytes(h.effective_memory_total_bytes()),
        ratio(h.memory_used_bytes, h.effective_memory_total_bytes()),
        bytes(h.memory_available_bytes)
    );
    if h.memory_effective_total_bytes.is_some() {
        let _ = write!(
            t,
            "; container limit, {} physical",
            bytes(h.memory_total_bytes)
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "  swap       {} used of {}",
        bytes(h.swap_used_bytes),
        bytes(h.swap_total_bytes)
    );
    let _ = writeln!(
        t,
        "  load       {}",
        h.load_average.map_or_else(
            || "unknown".into(),
            |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen)
        )
    );
    let _ = writeln!(t, "DISKS");
    let _ = writeln!(
        t,
        "  {:<28} {:>10} {:>10} {:>8}",
        "mount", "size", "avail", "used"
    );
    for d in &h.disks {
        let used = match (d.total_bytes, d.available_bytes) {
            // More available than the total is no figure (the health rules say unknown).
            (Some(total), Some(avail)) => total.checked_sub(avail),
            _ => None,
        };
        let _ = writeln!(
            t,
            "  {:<28} {:>10} {:>10} {:>8}",
            d.mount_point.as_str(),
            bytes(d.total_bytes),
            bytes(d.available_bytes),
            ratio(used, d.total_bytes)
        );
    }
    if h.disks_omitted > 0 {
        let _ = writeln!(t, "  ({} more not shown)", h.disks_omitted);
    }
    let _ = writeln!(t, "GPUS");
    match &sample.gpus {
        GpuReadout::Unavailable(why) => {
            let _ = writeln!(t, "  {why}");
        }
        readout => {
            if readout.devices().is_empty() {
                let _ = writeln!(t, "  none found");
            }
            for g in readout.devices() {
                let _ = writeln!(
                    t,
                    "  [{}] {} {}",
                    g.index,
                    g.name.as_ref().map_or("unknown", |s| s.as_str()),
                    g.uuid.as_ref().map_or("", |s| s.as_str())
                );
                let _ = writeln!(
                    t,
                    "      util {}  memory {} of {}  temp {} (slowdown {}, shutdown {})",
                    pct(g.utilization_percent),
                    bytes(g.memory_used_bytes),
                    bytes(g.memory_total_bytes),
                    opt(g.temperature_c, " °C"),
                    opt(g.slowdown_temperature_c, " °C"),
                    opt(g.shutdown_temperature_c, " °C"),
                );
                let _ = writeln!(
                    t,
                    "      power {} of {}  ecc uncorrected {}  retired pending {}  row remap failure {}",
                    opt(g.power_mw.map(|mw| f64::from(mw) / 1000.0), " W"),
                    opt(g.power_limit_mw.map(|mw| f64::from(mw) / 1000.0), " W"),
                    opt(g.ecc_volatile_uncorrected, ""),
                    opt(g.retired_pages_pending, ""),
                    opt(g.row_remap_failure, ""),
                );
                let xids = if !g.xids_watched {
                    "not watched".to_owned()
                } else if g.recent_xids.is_empty() {
                    "none".to_owned()
                } else {
                    let list: Vec<String> = g.recent_xids.iter().map(u32::to_string).collect();
                    format!(
                        "{}{}",
                        list.join(","),
                        if g.xids_omitted > 0 { " (+more)" } else { "" }
                    )
                };
                let _ = writeln!(
                    t,
                    "      throttle {}  xids {}",
                    opt(g.throttle_reasons, ""),
                    xids
                );
            }
        }
    }
    t
}

/// Writes [`table`] to `w`.
///
/// # Errors
/// Whatever `w` returns.
pub fn write_table(w: &mut impl io::Write, sample: &MachineSample) -> io::Result<()> {
    w.write_all(table(sample).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sturdy_core::health::DiskSample;

    #[test]
    fn a_disk_with_more_available_than_total_is_unknown_not_empty() {
        let mut s = MachineSample::default();
        s.host
            .push_disk(DiskSample::new("/odd", Some(10), Some(20)))
            .unwrap();
        s.host
            .push_disk(DiskSample::new("/half", Some(10), Some(5)))
            .unwrap();
        let text = table(&s);
        let row = |m: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(m))
                .unwrap()
                .split_whitespace()
                .last()
                .unwrap()
                .to_string()
        };
        assert_eq!(row("/odd"), "unknown");
        assert!(
            text.lines()
                .any(|l| l.contains("/half") && l.ends_with("50.0 %"))
        );
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(bytes(None), "unknown");
        assert_eq!(bytes(Some(512)), "512 B");
        assert_eq!(bytes(Some(1536)), "1.5 KiB");
        assert_eq!(bytes(Some(24 << 30)), "24.0 GiB");
    }
}
