//! CPU usage as the difference of two counter readings, without sleeping.
//!
//! The original slept 100 ms inside every sample to get two readings. The probe keeps
//! the previous reading instead: the first sample has no CPU figure (`None`, never 0 %
//! and never NaN), each later sample compares with the previous reading once at least
//! the minimum interval has passed, and a sample that comes sooner repeats the last
//! figure without reading the counters.

use std::time::Duration;

use crate::source::CpuTimes;

/// The shortest span between two counter readings that gives a meaningful CPU
/// percentage: sysinfo's `MINIMUM_CPU_UPDATE_INTERVAL` (200 ms on Linux, where the
/// kernel counts CPU time in ticks of 10 ms).
pub const MIN_CPU_INTERVAL: Duration = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;

/// The state kept between samples to turn counters into a percentage.
#[derive(Clone, Debug)]
pub(crate) struct CpuMeter {
    min_interval: Duration,
    baseline: Option<(Duration, CpuTimes)>,
    last: Option<f32>,
}

impl CpuMeter {
    pub(crate) const fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            baseline: None,
            last: None,
        }
    }

    /// The CPU busy percentage in `[0, 100]` at monotonic time `now`, reading the
    /// counters through `read` only when a difference can be taken:
    /// - no earlier reading: reads, keeps it, `None`;
    /// - less than the minimum interval since the kept reading: the last figure, no read;
    /// - counters unreadable: `None` (the kept reading stays);
    /// - counters that went backwards (a reset): `None`, the new reading is kept;
    /// - counters that did not move (`total` unchanged): `None`, the older reading stays
    ///   so that the next difference spans a longer time;
    /// - otherwise `100 * Δbusy / Δtotal`, clamped to 100.
    pub(crate) fn observe(
        &mut self,
        now: Duration,
        read: impl FnOnce() -> Option<CpuTimes>,
    ) -> Option<f32> {
        let Some((at, base)) = self.baseline else {
            self.baseline = read().map(|t| (now, t));
            self.last = None;
            return None;
        };
        if now.saturating_sub(at) < self.min_interval {
            return self.last;
        }
        let Some(t) = read() else {
            self.last = None;
            return None;
        };
        if t.total < base.total || t.busy < base.busy {
            self.baseline = Some((now, t));
            self.last = None;
            return None;
        }
        let d_total = t.total - base.total;
        if d_total == 0 {
            self.last = None;
            return None;
        }
        let d_busy = (t.busy - base.busy).min(d_total);
        let pct = (d_busy as f64 * 100.0 / d_total as f64) as f32;
        self.baseline = Some((now, t));
        self.last = Some(pct);
        self.last
    }
}

/// Parses the aggregate `cpu` line of Linux `/proc/stat` (proc(5)): `user nice system
/// idle iowait irq softirq steal guest guest_nice`, in clock ticks. Busy time is user +
/// nice + system + irq + softirq + steal; idle time is idle + iowait; guest time is
/// already counted in user and nice and is not added again. Missing trailing columns
/// (old kernels) count as 0. `None` when the line is missing or a number is malformed.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| {
        l.strip_prefix("cpu")
            .is_some_and(|rest| rest.starts_with(char::is_whitespace))
    })?;
    let mut cols = [0u64; 8];
    let mut fields = line.split_whitespace().skip(1);
    for (i, slot) in cols.iter_mut().enumerate() {
        match fields.next() {
            Some(f) => *slot = f.parse().ok()?,
            None if i >= 4 => break,
            None => return None,
        }
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = cols;
    let busy = user
        .saturating_add(nice)
        .saturating_add(system)
        .saturating_add(irq)
        .saturating_add(softirq)
        .saturating_add(steal);
    Some(CpuTimes {
        busy,
        total: busy.saturating_add(idle).saturating_add(iowait),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn t(busy: u64, total: u64) -> Option<CpuTimes> {
        Some(CpuTimes { busy, total })
    }

    #[test]
    fn first_sample_is_unknown_and_keeps_the_reading() {
        let mut m = CpuMeter::new(200 * MS);
        assert_eq!(m.observe(Duration::ZERO, || t(100, 1000)), None);
        assert_eq!(
            m.baseline,
            Some((
                Duration::ZERO,
                CpuTimes {
                    busy: 100,
                    total: 1000
                }
            ))
        );
    }

    #[test]
    fn exactly_25_percent() {
        let mut m = CpuMeter::new(200 * MS);
        m.observe(Duration::ZERO, || t(100, 1000));
        assert_eq!(m.observe(250 * MS, || t(350, 2000)), Some(25.0));
    }

    #[test]
    fn identical_counters_are_unknown_not_zero_or_nan() {
        let mut m = CpuMeter::new(200 * MS);
        m.observe(Duration::ZERO, || t(100, 1000));
        assert_eq!(m.observe(300 * MS, || t(100, 1000)), None);
        // the older reading stays: the next difference spans both intervals
        assert_eq!(m.observe(600 * MS, || t(600, 2000)), Some(50.0));
    }

    #[test]
    fn too_soon_repeats_the_last_figure_without_reading() {
        let mut m = CpuMeter::new(200 * MS);
        m.observe(Duration::ZERO, || t(0, 0));
        assert_eq!(m.observe(100 * MS, || panic!("read too soon")), None);
        assert_eq!(m.observe(200 * MS, || t(10, 100)), Some(10.0));
        assert_eq!(m.observe(300 * MS, || panic!("read too soon")), Some(10.0));
    }

    #[test]
    fn counter_reset_and_unreadable_counters_are_unknown() {
        let mut m = CpuMeter::new(200 * MS);
        m.observe(Duration::ZERO, || t(500, 1000));
        assert_eq!(m.observe(300 * MS, || t(5, 10)), None);
        assert_eq!(m.observe(600 * MS, || t(15, 110)), Some(10.0));
        assert_eq!(m.observe(900 * MS, || None), None);
        assert_eq!(m.observe(1200 * MS, || t(65, 210)), Some(50.0));
        // busy running ahead of total (a buggy source) is clamped
        assert_eq!(m.observe(1500 * MS, || t(400, 260)), Some(100.0));
    }

    #[test]
    fn first_reading_unreadable_then_readable() {
        let mut m = CpuMeter::new(200 * MS);
        assert_eq!(m.observe(Duration::ZERO, || None), None);
        assert_eq!(m.observe(MS, || t(1, 2)), None);
        assert_eq!(m.observe(300 * MS, || t(3, 6)), Some(50.0));
    }

    #[test]
    fn proc_stat_parses_busy_and_total() {
        let text = "cpu  100 20 30 800 40 5 5 0 7 0\ncpu0 50 10 15 400 20 2 3 0 3 0\nintr 1 2\n";
        // busy = 100+20+30+5+5+0 = 160; total = 160 + 800 + 40 = 1000
        assert_eq!(
            parse_proc_stat(text),
            Some(CpuTimes {
                busy: 160,
                total: 1000
            })
        );
        // an old kernel with only four columns
        assert_eq!(
            parse_proc_stat("cpu 1 2 3 4\n"),
            Some(CpuTimes { busy: 6, total: 10 })
        );
        assert_eq!(parse_proc_stat("cpu 1 2 3\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 x 3 4\n"), None);
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn two_proc_stat_texts_give_exactly_25_percent() {
        let mut m = CpuMeter::new(200 * MS);
        let a = "cpu  100 0 0 300 0 0 0 0 0 0\n";
        let b = "cpu  150 0 50 600 0 0 0 0 0 0\n"; // +100 busy of +400
        assert_eq!(m.observe(Duration::ZERO, || parse_proc_stat(a)), None);
        assert_eq!(
            m.observe(MIN_CPU_INTERVAL, || parse_proc_stat(b)),
            Some(25.0)
        );
    }
}
