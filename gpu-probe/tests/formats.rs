//! The output formats: Prometheus text exposition 0.0.4 validated line by line, the
//! table and JSON.

use std::collections::HashMap;

use sturdy_core::health::{
    DiskSample, GpuReadout, GpuSample, GpuUnavailable, HostSample, LoadAverage, MachineSample,
    ThrottleReasons, UnavailableKind, bounded_str,
};

fn sample_with_gpu() -> MachineSample {
    let mut host = HostSample {
        cpu_percent: Some(25.0),
        memory_used_bytes: Some(2 << 30),
        memory_available_bytes: Some(6 << 30),
        memory_total_bytes: Some(64 << 30),
        memory_effective_total_bytes: Some(8 << 30),
        swap_used_bytes: Some(0),
        swap_total_bytes: Some(0),
        load_average: Some(LoadAverage {
            one: 0.52,
            five: 0.25,
            fifteen: 2.0,
        }),
        ..HostSample::default()
    };
    host.push_disk(DiskSample::new("/", Some(100), Some(40)))
        .unwrap();
    host.push_disk(DiskSample::new("/mnt/we\"ird\\path", Some(10), None))
        .unwrap();
    let mut g = GpuSample::new(0);
    g.name = Some(bounded_str("NVIDIA \"H100\" 80GB").0);
    g.uuid = Some(bounded_str("GPU-1c2e").0);
    g.utilization_percent = Some(50.0);
    g.memory_used_bytes = Some(1 << 30);
    g.memory_total_bytes = Some(80 << 30);
    g.temperature_c = Some(61.0);
    g.power_mw = Some(312_500);
    g.ecc_volatile_uncorrected = Some(2);
    g.row_remap_failure = Some(false);
    g.throttle_reasons = Some(ThrottleReasons::HW_SLOWDOWN);
    g.xids_watched = true;
    g.push_xid(79).unwrap();
    g.push_xid(79).unwrap();
    g.push_xid(13).unwrap();
    let mut gpus = GpuReadout::empty();
    gpus.push(g).unwrap();
    gpus.push(GpuSample::new(1)).unwrap(); // a device with nothing read
    MachineSample { host, gpus }
}

/// Checks `text` against the exposition format 0.0.4, line by line: `# HELP name text`,
/// `# TYPE name gauge|counter` once per family and before its samples, samples as
/// `name{label="value",...} value` with valid names, escaped label values and a float
/// value, counters named `_total`, no NaN. Returns the samples as `line -> value`.
fn validate(text: &str) -> HashMap<String, f64> {
    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    }
    /// Parses `k="v",k2="v2"`; returns None on any syntax error.
    fn labels(s: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"")?;
            if !is_name(k) || k.starts_with("__") {
                return None;
            }
            let mut v = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        '\\' => v.push('\\'),
                        '"' => v.push('"'),
                        'n' => v.push('\n'),
                        _ => return None,
                    },
                    '"' => break i,
                    '\n' => return None,
                    c => v.push(c),
                }
            };
            out.push((k.to_owned(), v));
            rest = &after[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.is_empty() {
                return None;
            }
        }
        Some(out)
    }
    assert!(
        text.ends_with('\n'),
        "the last line must end with a line feed"
    );
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a text");
            assert!(is_name(name) && !help.is_empty(), "{line}");
            assert!(!helped.contains(&name.to_owned()), "HELP twice: {line}");
            helped.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(is_name(name), "{line}");
            assert!(kind == "gauge" || kind == "counter", "{line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {line}");
            } else {
                assert!(!name.ends_with("_total"), "gauge named _total: {line}");
            }
        } else {
            assert!(
                !line.starts_with('#') && !line.is_empty(),
                "stray line: {line:?}"
            );
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, label_text) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').expect("labels close with }")),
                None => (series, ""),
            };
            assert!(is_name(name), "{line}");
            assert!(types.contains_key(name), "sample before its TYPE: {line}");
            let parsed = labels(label_text).unwrap_or_else(|| panic!("bad labels: {line}"));
            let mut keys: Vec<&String> = parsed.iter().map(|(k, _)| k).collect();
            keys.dedup();
            assert_eq!(keys.len(), parsed.len(), "repeated label: {line}");
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            assert!(v.is_finite(), "{line}");
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "duplicate series: {line}"
            );
        }
    }
    samples
}

#[test]
fn prometheus_output_is_valid_with_base_units_and_gpu_labels() {
    let text = sturdy_probe::prometheus(&sample_with_gpu());
    let s = validate(&text);
    let gpu0 = r#"gpu="0",uuid="GPU-1c2e",name="NVIDIA \"H100\" 80GB""#;
    assert_eq!(s["sturdy_cpu_busy_ratio"], 0.25);
    assert_eq!(s["sturdy_memory_total_bytes"], (64u64 << 30) as f64);
    assert_eq!(
        s["sturdy_memory_effective_total_bytes"],
        (8u64 << 30) as f64
    );
    assert_eq!(s["sturdy_load15"], 2.0);
    assert!(text.contains("\nsturdy_load1 0.52\n"), "{text}");
    assert_eq!(s[r#"sturdy_filesystem_size_bytes{mountpoint="/"}"#], 100.0);
    assert_eq!(
        s[r#"sturdy_filesystem_size_bytes{mountpoint="/mnt/we\"ird\\path"}"#],
        10.0
    );
    assert!(!s.contains_key(r#"sturdy_filesystem_avail_bytes{mountpoint="/mnt/we\"ird\\path"}"#));
    assert_eq!(s[r#"sturdy_gpus_available{reason=""}"#], 1.0);
    assert_eq!(s[&format!("sturdy_gpu_utilization_ratio{{{gpu0}}}")], 0.5);
    assert_eq!(
        s[&format!("sturdy_gpu_temperature_celsius{{{gpu0}}}")],
        61.0
    );
    assert_eq!(s[&format!("sturdy_gpu_power_watts{{{gpu0}}}")], 312.5);
    assert_eq!(
        s[&format!("sturdy_gpu_ecc_volatile_uncorrected_errors_total{{{gpu0}}}")],
        2.0
    );
    assert_eq!(s[&format!("sturdy_gpu_row_remap_failure{{{gpu0}}}")], 0.0);
    assert_eq!(
        s[&format!("sturdy_gpu_throttle_reason{{{gpu0},reason=\"hw_slowdown\"}}")],
        1.0
    );
    assert_eq!(
        s[&format!("sturdy_gpu_throttle_reason{{{gpu0},reason=\"gpu_idle\"}}")],
        0.0
    );
    assert_eq!(
        s[&format!("sturdy_gpu_recent_xid_errors{{{gpu0},xid=\"79\"}}")],
        2.0
    );
    assert_eq!(
        s[&format!("sturdy_gpu_recent_xid_errors{{{gpu0},xid=\"13\"}}")],
        1.0
    );
    // the device with nothing read: identified, but no invented readings
    let gpu1 = r#"gpu="1",uuid="",name="""#;
    assert_eq!(s[&format!("sturdy_gpu_info{{{gpu1}}}")], 1.0);
    assert!(!s.contains_key(&format!("sturdy_gpu_temperature_celsius{{{gpu1}}}")));
    assert_eq!(s[&format!("sturdy_gpu_xid_watched{{{gpu1}}}")], 0.0);
    assert!(text.contains("# TYPE sturdy_gpu_ecc_volatile_uncorrected_errors_total counter\n"));
}

#[test]
fn prometheus_unknown_readings_are_absent_not_zero() {
    let s = MachineSample {
        gpus: GpuReadout::Unavailable(GpuUnavailable::new(UnavailableKind::LibraryNotFound)),
        ..MachineSample::default()
    };
    let text = sturdy_probe::prometheus(&s);
    let samples = validate(&text);
    assert_eq!(samples.len(), 2, "{text}");
    assert_eq!(
        samples[r#"sturdy_gpus_available{reason="library_not_found"}"#],
        0.0
    );
    assert_eq!(samples["sturdy_filesystems_omitted"], 0.0);
    assert!(!text.contains("sturdy_cpu_busy_ratio"));
}

#[test]
fn table_shows_values_and_unknowns() {
    let text = sturdy_probe::table(&sample_with_gpu());
    assert!(text.contains("cpu        25.0 %"), "{text}");
    assert!(text.contains("2.0 GiB used of 8.0 GiB (25.0 %)"), "{text}");
    assert!(
        text.contains("container limit, 64.0 GiB physical"),
        "{text}"
    );
    assert!(text.contains("load       0.52 0.25 2.00"), "{text}");
    assert!(text.contains("[0] NVIDIA \"H100\" 80GB GPU-1c2e"), "{text}");
    assert!(text.contains("power 312.5 W of unknown"), "{text}");
    assert!(
        text.contains("throttle hw_slowdown  xids 79,79,13"),
        "{text}"
    );
    assert!(text.contains("[1] unknown"), "{text}");
    let none = sturdy_probe::table(&MachineSample::default());
    assert!(none.contains("GPUs unavailable: disabled"), "{none}");
    let mut buf = Vec::new();
    sturdy_probe::write_table(&mut buf, &MachineSample::default()).unwrap();
    assert_eq!(String::from_utf8(buf).unwrap(), none);
}

#[test]
fn json_round_trips_through_serde() {
    let s = sample_with_gpu();
    let text = sturdy_probe::json(&s);
    let back: MachineSample = serde_json::from_str(&text).expect("valid JSON of a sample");
    assert_eq!(back, s);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["host"]["cpu_percent"], 25.0);
    assert_eq!(
        v["gpus"]["devices"]["devices"][0]["recent_xids"],
        serde_json::json!([79, 79, 13])
    );
    // Enum values in snake_case, as in the text and Prometheus outputs; clocks event
    // reasons as names, not a bit mask.
    let mut s2 = s.clone();
    if let GpuReadout::Devices { devices, .. } = &mut s2.gpus {
        devices[0].throttle_reasons = Some(ThrottleReasons(0x4 | 0x40 | 0x1000));
    }
    let v2: serde_json::Value = serde_json::from_str(&sturdy_probe::json(&s2)).unwrap();
    assert_eq!(
        v2["gpus"]["devices"]["devices"][0]["throttle_reasons"],
        serde_json::json!(["sw_power_cap", "hw_thermal_slowdown", "unknown_0x1000"])
    );
    let back2: MachineSample = serde_json::from_str(&sturdy_probe::json(&s2)).unwrap();
    assert_eq!(back2, s2);
    let mut buf = Vec::new();
    sturdy_probe::write_json(&mut buf, &s).unwrap();
    assert_eq!(String::from_utf8(buf).unwrap(), format!("{text}\n"));
}

#[test]
fn prometheus_health_adds_the_verdict_as_a_state_set() {
    use sturdy_core::health::Thresholds;
    let mut sample = sample_with_gpu();
    sample.host.cpu_percent = Some(97.0);
    let h = sturdy_probe::SystemHealth::judge(sample, &Thresholds::default());
    let text = sturdy_probe::prometheus_health(&h);
    let s = validate(&text);
    assert_eq!(s[r#"sturdy_health_status{status="critical"}"#], 1.0);
    assert_eq!(s[r#"sturdy_health_status{status="healthy"}"#], 0.0);
    let critical = h
        .report
        .issues
        .iter()
        .filter(|i| i.severity == sturdy_core::health::Severity::Critical)
        .count();
    assert!(
        critical >= 2,
        "CPU 97 % and XID 79 are critical: {}",
        h.report
    );
    assert_eq!(
        s[r#"sturdy_health_issues{severity="critical"}"#],
        critical as f64
    );
    let v: serde_json::Value = serde_json::from_str(&sturdy_probe::json(&h)).unwrap();
    assert_eq!(v["report"]["status"], "critical");
}
