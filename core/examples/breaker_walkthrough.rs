//! Drives a windowed circuit breaker against a simulated dependency that goes down for
//! a while and comes back, in virtual time, and prints every transition: when it opened,
//! how long the open periods grew while the dependency stayed down, when probes passed,
//! and how many calls were never made because the breaker rejected them.
//!
//! Run: `cargo run -p sturdy-core --example breaker_walkthrough`

use core::time::Duration;

use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::breaker::{BreakerConfig, BreakerEvent, CircuitBreaker, CountWindow, Outcome};
use sturdy_core::{FailureKind, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Open at a 50 % failure rate over the last 20 calls (at least 10 judged); open
    // for 1 s, 2 s, 4 s ... up to 8 s while probes keep failing; 2 good probes close.
    let open = BackoffConfig::exponential(Duration::from_secs(1), 2_000, Duration::from_secs(8))?
        .with_jitter(Jitter::None)?;
    let config = BreakerConfig::new()
        .with_failure_rate_threshold(0.5)?
        .with_minimum_calls(10)?
        .with_open_backoff(open)?
        .with_half_open_permits(1)?
        .with_success_threshold(2)?;
    let mut breaker: CircuitBreaker<CountWindow<20>> =
        CircuitBreaker::new(config, CountWindow::new(), 2026)?;

    // The dependency is down from 2 s to 14 s. A caller tries every 100 ms for 20 s.
    let down = Instant::from_secs(2)..Instant::from_secs(14);
    let (mut made, mut rejected) = (0u32, 0u32);
    let mut now = Instant::ZERO;
    while now < Instant::from_secs(20) {
        breaker.handle_timeout(now);
        match breaker.try_acquire(now) {
            Ok(permit) => {
                made += 1;
                let latency = Duration::from_millis(20);
                let outcome = if down.contains(&now) {
                    Outcome::Failure(FailureKind::Network)
                } else {
                    Outcome::Success
                };
                breaker.record(permit, outcome, now + latency);
            }
            Err(_) => rejected += 1,
        }
        while let Some(event) = breaker.poll_event() {
            println!("{:>14}  {}", event.at().to_string(), describe(&event));
        }
        now = now + Duration::from_millis(100);
    }
    let m = breaker.metrics();
    println!(
        "calls made: {made}, rejected without calling: {rejected}; final state {}, window {} calls, failure rate {:.0} %",
        breaker.state(),
        m.calls,
        m.failure_rate() * 100.0
    );
    Ok(())
}

fn describe(event: &BreakerEvent) -> String {
    match event {
        BreakerEvent::Opened { at, until } => {
            format!("opened for {:?}", *until - *at)
        }
        BreakerEvent::HalfOpened { .. } => "half-open: one probe may pass".to_string(),
        BreakerEvent::Closed { .. } => "closed: calls pass again".to_string(),
        BreakerEvent::ProbeExpired { .. } => "a probe never reported back".to_string(),
        other => format!("{other:?}"),
    }
}
