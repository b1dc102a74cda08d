//! Prometheus export (feature `prometheus`): the running totals of shared breakers,
//! retry loops and retry budgets, as a [`prometheus_client`] collector registered into
//! a registry the application owns.
//!
//! Nothing is copied or counted twice: each scrape reads the handles' atomics. Names
//! follow the Prometheus conventions (a `sturdy_` prefix, base units, `_total` on
//! counters, which the encoders append); no label value is empty. Serve `/metrics` with
//! `prometheus_client::encoding::prometheus_text::encode` (content type
//! `text/plain; version=0.0.4`), which `promtool check metrics` accepts, or with the
//! OpenMetrics `text::encode`. The `server_metrics` example of `sturdy-tokio` does.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sturdy_breaker_calls_total` | counter | `breaker`, `outcome` (`success`, `failure`, `ignored`) | outcomes recorded |
//! | `sturdy_breaker_rejections_total` | counter | `breaker` | calls refused |
//! | `sturdy_breaker_transitions_total` | counter | `breaker`, `state` (the state entered: `open`, `half_open`, `closed`, `forced_open`, `disabled`, `metrics_only`) | state changes |
//! | `sturdy_breaker_probes_expired_total` | counter | `breaker` | half-open probes that never reported back |
//! | `sturdy_breaker_state` | gauge | `breaker`, `state` | 1 for the current state, 0 for the others |
//! | `sturdy_retry_successes_total` | counter | `retry` | retried calls that succeeded |
//! | `sturdy_retry_retries_total` | counter | `retry` | retries scheduled |
//! | `sturdy_retry_delay_seconds_total` | counter | `retry` | sum of the scheduled retry delays, in seconds |
//! | `sturdy_retry_give_ups_total` | counter | `retry`, `reason` (see [`crate::retry_metrics::GIVE_UP_REASONS`]) | calls given up |
//! | `sturdy_retry_budget_tokens` | gauge | `budget` | whole tokens available |
//! | `sturdy_retry_budget_decisions_total` | counter | `budget`, `decision` (`allowed`, `refused`) | retries the budget allowed or refused |
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
//! use sturdy_shared::prometheus::SturdyCollector;
//! use sturdy_shared::{Breaker, RetryMetrics, SharedManualClock};
//!
//! let breaker: Breaker<_, SharedManualClock> =
//!     Breaker::new(ConsecutiveBreaker::new(ConsecutiveConfig::original())).named("db");
//! let retries = RetryMetrics::new("db");
//! let mut registry = Registry::default();
//! SturdyCollector::new().breaker(&breaker).retry(&retries).register(&mut registry);
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry)?;
//! assert!(text.contains("sturdy_breaker_state{breaker=\"db\",state=\"closed\"} 1"));
//! # Ok::<(), std::fmt::Error>(())
//! ```

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use sturdy_core::Clock;
use sturdy_core::breaker::State;

use crate::breaker::{Breaker, BreakerCore};
use crate::breaker_events::{BreakerTotals, STATE_NAMES};
use crate::budget::RetryBudget;
use crate::retry_metrics::{GIVE_UP_REASONS, RetryMetrics};

/// What the collector reads from a breaker: its name, state and totals.
trait BreakerReading: Send + Sync {
    fn read(&self) -> (String, State, BreakerTotals);
}

impl<B: BreakerCore, C: Clock + Send + Sync + 'static> BreakerReading for Breaker<B, C> {
    fn read(&self) -> (String, State, BreakerTotals) {
        (self.name().to_string(), self.state(), self.totals())
    }
}

/// What the collector reads from a budget.
trait BudgetReading: Send + Sync {
    /// (tokens, retries allowed, retries refused).
    fn read(&self) -> (u64, u64, u64);
}

impl<C: Clock + Send + Sync + 'static> BudgetReading for RetryBudget<C> {
    fn read(&self) -> (u64, u64, u64) {
        (
            self.tokens(),
            self.retries_allowed(),
            self.retries_refused(),
        )
    }
}

/// The label value of a breaker state (see [`state_name`](crate::breaker_events::state_name)).
pub fn state_label(state: State) -> &'static str {
    crate::breaker_events::state_name(state)
}

/// A [`Collector`] over shared breakers, retry totals and retry budgets. Add the
/// handles (clones are kept; the originals stay the application's), then
/// [`register`](Self::register) it into the application's registry once.
#[derive(Default)]
pub struct SturdyCollector {
    breakers: Vec<Box<dyn BreakerReading>>,
    retries: Vec<RetryMetrics>,
    budgets: Vec<(String, Box<dyn BudgetReading>)>,
}

impl fmt::Debug for SturdyCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SturdyCollector")
            .field("breakers", &self.breakers.len())
            .field("retries", &self.retries.len())
            .field("budgets", &self.budgets.len())
            .finish()
    }
}

impl SturdyCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports `breaker` under its [`name`](Breaker::name) (label `breaker`).
    pub fn breaker<B: BreakerCore, C: Clock + Send + Sync + 'static>(
        mut self,
        breaker: &Breaker<B, C>,
    ) -> Self {
        self.breakers.push(Box::new(breaker.clone()));
        self
    }

    /// Exports `metrics` under its [`name`](RetryMetrics::name) (label `retry`).
    pub fn retry(mut self, metrics: &RetryMetrics) -> Self {
        self.retries.push(metrics.clone());
        self
    }

    /// Exports `budget` as `name` (label `budget`; an empty name becomes `"budget"`).
    pub fn budget<C: Clock + Send + Sync + 'static>(
        mut self,
        name: &str,
        budget: &RetryBudget<C>,
    ) -> Self {
        let name = if name.is_empty() { "budget" } else { name };
        self.budgets
            .push((name.to_owned(), Box::new(budget.clone())));
        self
    }

    /// Registers this collector into `registry`.
    pub fn register(self, registry: &mut Registry) {
        registry.register_collector(Box::new(self));
    }
}

/// `registry` in the Prometheus text format (`text/plain; version=0.0.4`), what a
/// `/metrics` handler returns.
pub fn encode_text(registry: &Registry) -> String {
    let mut body = String::new();
    // Writing into a `String` cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, registry);
    body
}

/// A label value that is never empty.
fn non_empty(s: &str) -> &str {
    if s.is_empty() { "unnamed" } else { s }
}

fn counter_family<'a, V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, V)>,
) -> fmt::Result {
    let mut family =
        encoder.encode_descriptor(name, help, unit, ConstCounter::new(0u64).metric_type())?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, i64)>,
) -> fmt::Result {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SturdyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let breakers: Vec<(String, State, BreakerTotals)> =
            self.breakers.iter().map(|b| b.read()).collect();
        if !breakers.is_empty() {
            counter_family(
                &mut encoder,
                "sturdy_breaker_calls",
                "Calls whose outcome a circuit breaker recorded.",
                None,
                breakers.iter().flat_map(|(n, _, t)| {
                    let n = non_empty(n);
                    [
                        ("success", t.successes),
                        ("failure", t.failures),
                        ("ignored", t.ignored),
                    ]
                    .map(|(o, v)| (vec![("breaker", n), ("outcome", o)], v))
                }),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_breaker_rejections",
                "Calls a circuit breaker refused.",
                None,
                breakers
                    .iter()
                    .map(|(n, _, t)| (vec![("breaker", non_empty(n))], t.rejections)),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_breaker_transitions",
                "Circuit breaker state changes, by the state entered.",
                None,
                breakers.iter().flat_map(|(n, _, t)| {
                    let n = non_empty(n);
                    t.transitions_by_state()
                        .into_iter()
                        .zip(STATE_NAMES)
                        .map(move |(v, s)| (vec![("breaker", n), ("state", s)], v))
                }),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_breaker_probes_expired",
                "Half-open probes that did not report back within the permit timeout.",
                None,
                breakers
                    .iter()
                    .map(|(n, _, t)| (vec![("breaker", non_empty(n))], t.probes_expired)),
            )?;
            gauge_family(
                &mut encoder,
                "sturdy_breaker_state",
                "1 for the circuit breaker's current state, 0 for the others.",
                breakers.iter().flat_map(|(n, state, _)| {
                    let n = non_empty(n);
                    let now = state_label(*state);
                    STATE_NAMES.map(|s| (vec![("breaker", n), ("state", s)], i64::from(s == now)))
                }),
            )?;
        }
        if !self.retries.is_empty() {
            let totals: Vec<_> = self
                .retries
                .iter()
                .map(|m| (m.name(), m.totals()))
                .collect();
            counter_family(
                &mut encoder,
                "sturdy_retry_successes",
                "Retried calls that ended in a success.",
                None,
                totals
                    .iter()
                    .map(|(n, t)| (vec![("retry", non_empty(n))], t.successes)),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_retry_retries",
                "Retries scheduled.",
                None,
                totals
                    .iter()
                    .map(|(n, t)| (vec![("retry", non_empty(n))], t.retries)),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_retry_delay",
                "Sum of the scheduled retry delays.",
                Some(&Unit::Seconds),
                totals
                    .iter()
                    .map(|(n, t)| (vec![("retry", non_empty(n))], t.retry_delay.as_secs_f64())),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_retry_give_ups",
                "Calls given up, by reason.",
                None,
                totals.iter().flat_map(|(n, t)| {
                    let n = non_empty(n);
                    GIVE_UP_REASONS
                        .into_iter()
                        .zip(t.give_ups)
                        .map(move |(r, v)| (vec![("retry", n), ("reason", r)], v))
                }),
            )?;
        }
        if !self.budgets.is_empty() {
            gauge_family(
                &mut encoder,
                "sturdy_retry_budget_tokens",
                "Whole retry tokens available in a retry budget.",
                self.budgets.iter().map(|(n, b)| {
                    (
                        vec![("budget", n.as_str())],
                        i64::try_from(b.read().0).unwrap_or(i64::MAX),
                    )
                }),
            )?;
            counter_family(
                &mut encoder,
                "sturdy_retry_budget_decisions",
                "Retries a retry budget allowed or refused.",
                None,
                self.budgets.iter().flat_map(|(n, b)| {
                    let (_, allowed, refused) = b.read();
                    [("allowed", allowed), ("refused", refused)]
                        .map(|(d, v)| (vec![("budget", n.as_str()), ("decision", d)], v))
                }),
            )?;
        }
        Ok(())
    }
}
