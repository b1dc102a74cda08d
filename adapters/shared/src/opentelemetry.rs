//! OpenTelemetry metrics (feature `opentelemetry`): the running totals of shared
//! breakers, retry loops and retry budgets, as observable (asynchronous) instruments
//! registered on a [`Meter`] the application owns.
//!
//! Only the `opentelemetry` API crate is used; the application picks the SDK, the
//! reader and the exporter (OTLP, Prometheus, stdout, ...). Nothing is copied or
//! counted twice: each collection runs the instruments' callbacks, which read the
//! handles' atomics, the same totals the `prometheus` module reads. Counters are
//! cumulative and monotonic (an SDK configured for delta temporality derives deltas).
//!
//! Names follow the OpenTelemetry conventions: dotted, no `_total` suffix, the unit
//! in the unit field (UCUM; annotations in braces for counts). Attribute keys and
//! values are those of the Prometheus labels; a breaker or retry name that is empty
//! is reported as `unnamed`, a budget name that is empty as `budget`. Names are read
//! when the instruments are registered.
//!
//! | instrument | kind | unit | attributes | Prometheus name |
//! |---|---|---|---|---|
//! | `sturdy.breaker.calls` | counter | `{call}` | `breaker`, `outcome` (`success`, `failure`, `ignored`) | `sturdy_breaker_calls_total` |
//! | `sturdy.breaker.rejections` | counter | `{call}` | `breaker` | `sturdy_breaker_rejections_total` |
//! | `sturdy.breaker.transitions` | counter | `{transition}` | `breaker`, `state` (the state entered: `open`, `half_open`, `closed`, `forced_open`, `disabled`, `metrics_only`) | `sturdy_breaker_transitions_total` |
//! | `sturdy.breaker.probes.expired` | counter | `{probe}` | `breaker` | `sturdy_breaker_probes_expired_total` |
//! | `sturdy.breaker.state` | gauge | `1` | `breaker`, `state` | `sturdy_breaker_state` (1 for the current state, 0 for the others) |
//! | `sturdy.retry.successes` | counter | `{call}` | `retry` | `sturdy_retry_successes_total` |
//! | `sturdy.retry.retries` | counter | `{retry}` | `retry` | `sturdy_retry_retries_total` |
//! | `sturdy.retry.delay` | counter (`f64`) | `s` | `retry` | `sturdy_retry_delay_seconds_total` |
//! | `sturdy.retry.give_ups` | counter | `{call}` | `retry`, `reason` (see [`crate::retry_metrics::GIVE_UP_REASONS`]) | `sturdy_retry_give_ups_total` |
//! | `sturdy.retry_budget.tokens` | gauge | `{token}` | `budget` | `sturdy_retry_budget_tokens` |
//! | `sturdy.retry_budget.decisions` | counter | `{retry}` | `budget`, `decision` (`allowed`, `refused`) | `sturdy_retry_budget_decisions_total` |
//!
//! A breaker's calls, successes and failures are one instrument: the sum over
//! `outcome` is the calls recorded, `outcome="success"` the successes,
//! `outcome="failure"` the failures. Counters are `u64` unless marked.
//!
//! ```
//! use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
//! use sturdy_shared::opentelemetry::SturdyInstruments;
//! use sturdy_shared::{Breaker, RetryMetrics, SharedManualClock};
//!
//! // The application's meter: from the global provider, as here, once the application
//! // has set one (`opentelemetry_sdk`'s `SdkMeterProvider` with its reader and exporter),
//! // or from its own provider.
//! let meter = opentelemetry::global::meter("my-service");
//! let breaker: Breaker<_, SharedManualClock> =
//!     Breaker::new(ConsecutiveBreaker::new(ConsecutiveConfig::original())).named("db");
//! let retries = RetryMetrics::new("db");
//! SturdyInstruments::new().breaker(&breaker).retry(&retries).register(&meter);
//! ```

use std::fmt;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;
use sturdy_core::Clock;
use sturdy_core::breaker::State;

use crate::breaker::{Breaker, BreakerCore};
use crate::breaker_events::{BreakerTotals, STATE_NAMES, state_name};
use crate::budget::RetryBudget;
use crate::retry_metrics::{GIVE_UP_REASONS, RetryMetrics};

/// What the instruments read from a breaker: its state and totals.
trait BreakerReading: Send + Sync {
    fn read(&self) -> (State, BreakerTotals);
}

impl<B: BreakerCore, C: Clock + Send + Sync + 'static> BreakerReading for Breaker<B, C> {
    fn read(&self) -> (State, BreakerTotals) {
        (self.state(), self.totals())
    }
}

/// What the instruments read from a budget: (tokens, retries allowed, retries refused).
trait BudgetReading: Send + Sync {
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

/// A name attribute value that is never empty.
fn name_value(name: &str, empty: &'static str) -> opentelemetry::Value {
    if name.is_empty() {
        empty.into()
    } else {
        opentelemetry::Value::from(Arc::<str>::from(name))
    }
}

/// One exported breaker: its `breaker` attribute and the handle.
struct BreakerEntry {
    name: KeyValue,
    reading: Box<dyn BreakerReading>,
}

/// One exported budget: its `budget` attribute and the handle.
struct BudgetEntry {
    name: KeyValue,
    reading: Box<dyn BudgetReading>,
}

/// Observable instruments over shared breakers, retry totals and retry budgets. Add
/// the handles (clones are kept; the originals stay the application's), then
/// [`register`](Self::register) the instruments on the application's [`Meter`] once.
#[derive(Default)]
pub struct SturdyInstruments {
    breakers: Vec<BreakerEntry>,
    retries: Vec<(KeyValue, RetryMetrics)>,
    budgets: Vec<BudgetEntry>,
}

impl fmt::Debug for SturdyInstruments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SturdyInstruments")
            .field("breakers", &self.breakers.len())
            .field("retries", &self.retries.len())
            .field("budgets", &self.budgets.len())
            .finish()
    }
}

impl SturdyInstruments {
    /// No handles yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports `breaker` under its [`name`](Breaker::name) (attribute `breaker`).
    pub fn breaker<B: BreakerCore, C: Clock + Send + Sync + 'static>(
        mut self,
        breaker: &Breaker<B, C>,
    ) -> Self {
        self.breakers.push(BreakerEntry {
            name: KeyValue::new("breaker", name_value(&breaker.name(), "unnamed")),
            reading: Box::new(breaker.clone()),
        });
        self
    }

    /// Exports `metrics` under its [`name`](RetryMetrics::name) (attribute `retry`).
    pub fn retry(mut self, metrics: &RetryMetrics) -> Self {
        self.retries.push((
            KeyValue::new("retry", name_value(metrics.name(), "unnamed")),
            metrics.clone(),
        ));
        self
    }

    /// Exports `budget` as `name` (attribute `budget`; an empty name becomes `"budget"`).
    pub fn budget<C: Clock + Send + Sync + 'static>(
        mut self,
        name: &str,
        budget: &RetryBudget<C>,
    ) -> Self {
        self.budgets.push(BudgetEntry {
            name: KeyValue::new("budget", name_value(name, "budget")),
            reading: Box::new(budget.clone()),
        });
        self
    }

    /// Registers the instruments (see the [module docs](self)) on `meter`. Only the
    /// families with a handle are registered: no breaker, no `sturdy.breaker.*`.
    /// The callbacks live as long as the meter's provider; register once per meter,
    /// since a second registration reports every value twice.
    pub fn register(self, meter: &Meter) {
        let Self {
            breakers,
            retries,
            budgets,
        } = self;
        if !breakers.is_empty() {
            register_breakers(meter, Arc::new(breakers));
        }
        if !retries.is_empty() {
            register_retries(meter, Arc::new(retries));
        }
        if !budgets.is_empty() {
            register_budgets(meter, Arc::new(budgets));
        }
    }
}

fn register_breakers(meter: &Meter, breakers: Arc<Vec<BreakerEntry>>) {
    let b = Arc::clone(&breakers);
    meter
        .u64_observable_counter("sturdy.breaker.calls")
        .with_unit("{call}")
        .with_description("Calls whose outcome a circuit breaker recorded, by outcome.")
        .with_callback(move |obs| {
            for e in b.iter() {
                let (_, t) = e.reading.read();
                for (outcome, v) in [
                    ("success", t.successes),
                    ("failure", t.failures),
                    ("ignored", t.ignored),
                ] {
                    obs.observe(v, &[e.name.clone(), KeyValue::new("outcome", outcome)]);
                }
            }
        })
        .build();
    let b = Arc::clone(&breakers);
    meter
        .u64_observable_counter("sturdy.breaker.rejections")
        .with_unit("{call}")
        .with_description("Calls a circuit breaker refused.")
        .with_callback(move |obs| {
            for e in b.iter() {
                obs.observe(e.reading.read().1.rejections, std::slice::from_ref(&e.name));
            }
        })
        .build();
    let b = Arc::clone(&breakers);
    meter
        .u64_observable_counter("sturdy.breaker.transitions")
        .with_unit("{transition}")
        .with_description("Circuit breaker state changes, by the state entered.")
        .with_callback(move |obs| {
            for e in b.iter() {
                let counts = e.reading.read().1.transitions_by_state();
                for (state, v) in STATE_NAMES.into_iter().zip(counts) {
                    obs.observe(v, &[e.name.clone(), KeyValue::new("state", state)]);
                }
            }
        })
        .build();
    let b = Arc::clone(&breakers);
    meter
        .u64_observable_counter("sturdy.breaker.probes.expired")
        .with_unit("{probe}")
        .with_description("Half-open probes that did not report back within the permit timeout.")
        .with_callback(move |obs| {
            for e in b.iter() {
                obs.observe(
                    e.reading.read().1.probes_expired,
                    std::slice::from_ref(&e.name),
                );
            }
        })
        .build();
    meter
        .u64_observable_gauge("sturdy.breaker.state")
        .with_unit("1")
        .with_description("1 for the circuit breaker's current state, 0 for the others.")
        .with_callback(move |obs| {
            for e in breakers.iter() {
                let now = state_name(e.reading.read().0);
                for state in STATE_NAMES {
                    obs.observe(
                        u64::from(state == now),
                        &[e.name.clone(), KeyValue::new("state", state)],
                    );
                }
            }
        })
        .build();
}

fn register_retries(meter: &Meter, retries: Arc<Vec<(KeyValue, RetryMetrics)>>) {
    let r = Arc::clone(&retries);
    meter
        .u64_observable_counter("sturdy.retry.successes")
        .with_unit("{call}")
        .with_description("Retried calls that ended in a success.")
        .with_callback(move |obs| {
            for (name, m) in r.iter() {
                obs.observe(m.totals().successes, std::slice::from_ref(name));
            }
        })
        .build();
    let r = Arc::clone(&retries);
    meter
        .u64_observable_counter("sturdy.retry.retries")
        .with_unit("{retry}")
        .with_description("Retries scheduled.")
        .with_callback(move |obs| {
            for (name, m) in r.iter() {
                obs.observe(m.totals().retries, std::slice::from_ref(name));
            }
        })
        .build();
    let r = Arc::clone(&retries);
    meter
        .f64_observable_counter("sturdy.retry.delay")
        .with_unit("s")
        .with_description("Sum of the scheduled retry delays.")
        .with_callback(move |obs| {
            for (name, m) in r.iter() {
                obs.observe(
                    m.totals().retry_delay.as_secs_f64(),
                    std::slice::from_ref(name),
                );
            }
        })
        .build();
    meter
        .u64_observable_counter("sturdy.retry.give_ups")
        .with_unit("{call}")
        .with_description("Calls given up, by reason.")
        .with_callback(move |obs| {
            for (name, m) in retries.iter() {
                let t = m.totals();
                for (reason, v) in GIVE_UP_REASONS.into_iter().zip(t.give_ups) {
                    obs.observe(v, &[name.clone(), KeyValue::new("reason", reason)]);
                }
            }
        })
        .build();
}

fn register_budgets(meter: &Meter, budgets: Arc<Vec<BudgetEntry>>) {
    let b = Arc::clone(&budgets);
    meter
        .u64_observable_gauge("sturdy.retry_budget.tokens")
        .with_unit("{token}")
        .with_description("Whole retry tokens available in a retry budget.")
        .with_callback(move |obs| {
            for e in b.iter() {
                obs.observe(e.reading.read().0, std::slice::from_ref(&e.name));
            }
        })
        .build();
    meter
        .u64_observable_counter("sturdy.retry_budget.decisions")
        .with_unit("{retry}")
        .with_description("Retries a retry budget allowed or refused.")
        .with_callback(move |obs| {
            for e in budgets.iter() {
                let (_, allowed, refused) = e.reading.read();
                for (decision, v) in [("allowed", allowed), ("refused", refused)] {
                    obs.observe(v, &[e.name.clone(), KeyValue::new("decision", decision)]);
                }
            }
        })
        .build();
}
