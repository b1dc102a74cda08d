//! Retries, give-ups and breaker transitions are `tracing` events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_core::FailureKind;
use sturdy_core::breaker::{ConsecutiveBreaker, ConsecutiveConfig};
use sturdy_core::retry::fixed_policy;
use sturdy_tokio::Breaker;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records `(level, target, message)` of every event.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Level, String, String)>>>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((*meta.level(), meta.target().to_owned(), m.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn retries_give_ups_and_transitions_are_events() {
    let rec = Recorder::default();
    let _guard = tracing::subscriber::set_default(rec.clone());

    let policy = fixed_policy(3, Duration::from_millis(10)).unwrap();
    let _ = sturdy_tokio::retry(
        &policy,
        |_: &()| FailureKind::Network,
        || async { Err::<(), _>(()) },
    )
    .await;

    let b = Breaker::new(ConsecutiveBreaker::new(
        ConsecutiveConfig::new(1, Duration::from_secs(1), 1).unwrap(),
    ))
    .named("db");
    b.try_acquire().unwrap().failure(FailureKind::Network);
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.try_acquire().unwrap().success();

    let events = rec.0.lock().unwrap().clone();
    let summary: Vec<(Level, &str, &str)> = events
        .iter()
        .map(|(l, t, m)| (*l, t.as_str(), m.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                Level::DEBUG,
                "sturdy_tokio::retry",
                "attempt failed; retrying"
            ),
            (
                Level::DEBUG,
                "sturdy_tokio::retry",
                "attempt failed; retrying"
            ),
            (
                Level::WARN,
                "sturdy_tokio::retry",
                "attempt failed; giving up"
            ),
            (
                Level::WARN,
                "sturdy_shared::breaker",
                "circuit breaker opened"
            ),
            (
                Level::INFO,
                "sturdy_shared::breaker",
                "circuit breaker half-open"
            ),
            (
                Level::INFO,
                "sturdy_shared::breaker",
                "circuit breaker closed"
            ),
        ]
    );
}
