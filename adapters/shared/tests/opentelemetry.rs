//! The OpenTelemetry instruments, read back through the SDK's in-memory exporter.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use sturdy_core::FailureKind;
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
use sturdy_core::retry::GiveUpReason;
use sturdy_core::retry_driver::{RetryGate, RetryObserver};
use sturdy_shared::opentelemetry::SturdyInstruments;
use sturdy_shared::{Breaker, RetryBudget, RetryMetrics, SharedManualClock};

struct Harness {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Harness {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Self { provider, exporter }
    }

    /// One collection, exported.
    fn collect(&self) -> Vec<ResourceMetrics> {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        self.exporter.get_finished_metrics().unwrap()
    }
}

fn find<'a>(rm: &'a [ResourceMetrics], name: &str) -> Option<&'a Metric> {
    rm.iter()
        .flat_map(|r| r.scope_metrics())
        .flat_map(|s| s.metrics())
        .find(|m| m.name() == name)
}

fn metric<'a>(rm: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    find(rm, name).unwrap_or_else(|| panic!("no metric {name}"))
}

fn same_attrs<'a>(got: impl Iterator<Item = &'a KeyValue>, want: &[(&str, &str)]) -> bool {
    let mut got: Vec<(String, String)> = got
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.sort();
    got == want
}

/// The value of `name`'s point with exactly `attrs`, with whether it is a monotonic sum
/// (`Some(true)`), a non-monotonic sum (`Some(false)`) or a gauge (`None`).
fn u64_point(rm: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> (u64, Option<bool>) {
    let AggregatedMetrics::U64(data) = metric(rm, name).data() else {
        panic!("{name} is not u64");
    };
    match data {
        MetricData::Sum(sum) => {
            let p = sum
                .data_points()
                .find(|p| same_attrs(p.attributes(), attrs))
                .unwrap_or_else(|| panic!("{name}: no point {attrs:?}"));
            (p.value(), Some(sum.is_monotonic()))
        }
        MetricData::Gauge(g) => {
            let p = g
                .data_points()
                .find(|p| same_attrs(p.attributes(), attrs))
                .unwrap_or_else(|| panic!("{name}: no point {attrs:?}"));
            (p.value(), None)
        }
        _ => panic!("{name}: neither sum nor gauge"),
    }
}

fn counter(rm: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> u64 {
    let (v, monotonic) = u64_point(rm, name, attrs);
    assert_eq!(monotonic, Some(true), "{name} is a monotonic sum");
    v
}

fn gauge(rm: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> u64 {
    let (v, kind) = u64_point(rm, name, attrs);
    assert_eq!(kind, None, "{name} is a gauge");
    v
}

const STATES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];

fn current_state(rm: &[ResourceMetrics], breaker: &str) -> Vec<&'static str> {
    STATES
        .into_iter()
        .filter(|s| {
            gauge(
                rm,
                "sturdy.breaker.state",
                &[("breaker", breaker), ("state", s)],
            ) == 1
        })
        .collect()
}

#[test]
fn breaker_totals_transitions_and_state() {
    let h = Harness::new();
    let clock = SharedManualClock::default();
    let config = ConsecutiveConfig::new(2, Duration::from_secs(10), 1).unwrap();
    let breaker: Breaker<_, SharedManualClock> =
        Breaker::with_clock(ConsecutiveBreaker::new(config), clock.clone()).named("db");
    SturdyInstruments::new()
        .breaker(&breaker)
        .register(&h.provider.meter("test"));

    // One success, two failures (the breaker opens), one rejection.
    breaker.try_acquire().unwrap().success();
    breaker.try_acquire().unwrap().failure(FailureKind::Network);
    breaker.try_acquire().unwrap().failure(FailureKind::Network);
    assert!(breaker.try_acquire().is_err());

    let rm = h.collect();
    let calls = metric(&rm, "sturdy.breaker.calls");
    assert_eq!(calls.unit(), "{call}");
    let by_outcome = |rm: &[ResourceMetrics], o| {
        counter(
            rm,
            "sturdy.breaker.calls",
            &[("breaker", "db"), ("outcome", o)],
        )
    };
    assert_eq!(
        (
            by_outcome(&rm, "success"),
            by_outcome(&rm, "failure"),
            by_outcome(&rm, "ignored")
        ),
        (1, 2, 0)
    );
    assert_eq!(
        counter(&rm, "sturdy.breaker.rejections", &[("breaker", "db")]),
        1
    );
    let transitions = |rm: &[ResourceMetrics]| {
        STATES.map(|s| {
            counter(
                rm,
                "sturdy.breaker.transitions",
                &[("breaker", "db"), ("state", s)],
            )
        })
    };
    assert_eq!(transitions(&rm), [0, 1, 0, 0, 0, 0]);
    assert_eq!(
        counter(&rm, "sturdy.breaker.probes.expired", &[("breaker", "db")]),
        0
    );
    assert_eq!(current_state(&rm, "db"), ["open"]);

    // After the open time, one successful probe closes it again.
    clock.advance(Duration::from_secs(10));
    breaker.try_acquire().unwrap().success();
    let rm = h.collect();
    assert_eq!(by_outcome(&rm, "success"), 2);
    assert_eq!(transitions(&rm), [1, 1, 1, 0, 0, 0]);
    assert_eq!(current_state(&rm, "db"), ["closed"]);
    // The totals the instruments report are the breaker's own.
    let t = breaker.totals();
    assert_eq!((t.successes, t.failures, t.rejections), (2, 2, 1));
    // Only the families with handles exist.
    assert!(find(&rm, "sturdy.retry.retries").is_none());
    assert!(find(&rm, "sturdy.retry_budget.tokens").is_none());
}

#[test]
fn retry_totals_and_budget_tokens() {
    let h = Harness::new();
    let clock = SharedManualClock::default();
    let budget = RetryBudget::with_clock(
        sturdy_core::retry::RetryBudgetConfig::new(200, 0, 5).unwrap(),
        clock,
    );
    let retries = RetryMetrics::new("fetch");
    let unnamed = RetryMetrics::new("");
    SturdyInstruments::new()
        .retry(&retries)
        .retry(&unnamed)
        .budget("upstream", &budget)
        .register(&h.provider.meter("test"));

    let mut observer = retries.clone();
    observer.on_retry(1, FailureKind::Network, Duration::from_millis(250));
    observer.on_retry(2, FailureKind::Network, Duration::from_millis(500));
    observer.on_success(3);
    observer.on_retry(1, FailureKind::Network, Duration::from_millis(250));
    observer.on_give_up(2, FailureKind::Network, GiveUpReason::BudgetExhausted);
    assert!(budget.try_retry() && budget.try_retry());
    for _ in 0..10 {
        budget.on_call();
    }
    // 5 - 2 + 10 calls at 20 % (capped at 5): 5 tokens; then 5 more retries and 2 refused.
    for _ in 0..5 {
        assert!(budget.try_retry());
    }
    assert!(!budget.try_retry());
    assert!(!budget.try_retry());

    let rm = h.collect();
    assert_eq!(
        counter(&rm, "sturdy.retry.successes", &[("retry", "fetch")]),
        1
    );
    assert_eq!(
        counter(&rm, "sturdy.retry.retries", &[("retry", "fetch")]),
        3
    );
    assert_eq!(
        counter(&rm, "sturdy.retry.retries", &[("retry", "unnamed")]),
        0
    );
    let AggregatedMetrics::F64(MetricData::Sum(delay)) = metric(&rm, "sturdy.retry.delay").data()
    else {
        panic!("sturdy.retry.delay is not an f64 sum");
    };
    assert_eq!(metric(&rm, "sturdy.retry.delay").unit(), "s");
    let p = delay
        .data_points()
        .find(|p| same_attrs(p.attributes(), &[("retry", "fetch")]))
        .unwrap();
    assert_eq!(p.value(), 1.0);
    assert_eq!(
        counter(
            &rm,
            "sturdy.retry.give_ups",
            &[("retry", "fetch"), ("reason", "budget_exhausted")]
        ),
        1
    );
    assert_eq!(
        counter(
            &rm,
            "sturdy.retry.give_ups",
            &[("retry", "fetch"), ("reason", "attempts_exhausted")]
        ),
        0
    );
    assert_eq!(
        gauge(&rm, "sturdy.retry_budget.tokens", &[("budget", "upstream")]),
        0
    );
    assert_eq!(
        counter(
            &rm,
            "sturdy.retry_budget.decisions",
            &[("budget", "upstream"), ("decision", "allowed")]
        ),
        7
    );
    assert_eq!(
        counter(
            &rm,
            "sturdy.retry_budget.decisions",
            &[("budget", "upstream"), ("decision", "refused")]
        ),
        2
    );
    assert!(find(&rm, "sturdy.breaker.calls").is_none());

    // The gauge follows the budget: ten more calls deposit two tokens.
    for _ in 0..10 {
        budget.on_call();
    }
    let rm = h.collect();
    assert_eq!(
        gauge(&rm, "sturdy.retry_budget.tokens", &[("budget", "upstream")]),
        2
    );
}
