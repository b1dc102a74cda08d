//! What a breaker has measured, as returned by its `metrics()` getter.

/// A breaker's measurements at one instant. Computed by the getter, never stored.
///
/// `calls`, `failures` and `slow_calls` are the counted outcomes the trip rule currently
/// judges: the sliding window of a [`CircuitBreaker`](super::CircuitBreaker), or, for a
/// [`ConsecutiveBreaker`](super::ConsecutiveBreaker), the outcomes since it last closed
/// (or was reset). Ignored outcomes and kinds outside the counted set are not in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Counted outcomes (successes and counted failures).
    pub calls: u32,
    /// Counted failures among them.
    pub failures: u32,
    /// Slow calls among them (successes and failures slower than the slow-call bound).
    pub slow_calls: u32,
    /// Counted failures in a row, up to the latest outcome while closed.
    pub consecutive_failures: u32,
    /// Calls rejected since the breaker was created (saturating).
    pub rejected: u64,
    /// Half-open probes in flight now.
    pub probes_in_flight: u8,
    /// Consecutive reopens (failed half-open phases) since the breaker last closed; the
    /// open duration grows with it.
    pub reopens: u32,
    /// Events dropped because the event queue was full.
    pub events_dropped: u32,
}

impl Metrics {
    /// `failures / calls`, in `[0, 1]`; 0 when there are no calls.
    pub fn failure_rate(&self) -> f32 {
        ratio(self.failures, self.calls)
    }

    /// `slow_calls / calls`, in `[0, 1]`; 0 when there are no calls.
    pub fn slow_call_rate(&self) -> f32 {
        ratio(self.slow_calls, self.calls)
    }
}

fn ratio(part: u32, whole: u32) -> f32 {
    if whole == 0 {
        0.0
    } else {
        (part.min(whole) as f64 / whole as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_fractions() {
        let m = Metrics {
            calls: 4,
            failures: 1,
            slow_calls: 3,
            ..Metrics::default()
        };
        assert_eq!(m.failure_rate(), 0.25);
        assert_eq!(m.slow_call_rate(), 0.75);
        assert_eq!(Metrics::default().failure_rate(), 0.0);
    }
}
