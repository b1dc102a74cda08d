//! Walks a retry policy against a simulated flaky operation in virtual time and prints
//! each decision: the delay handed back, or why it gave up.
//!
//! Run: `cargo run -p sturdy-core --example retry_walkthrough`

use core::time::Duration;

use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::retry::{Decision, RetryPolicy, RetryState};
use sturdy_core::rng::SplitMix64;
use sturdy_core::{FailureKind, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backoff =
        BackoffConfig::exponential(Duration::from_millis(100), 2_000, Duration::from_secs(2))?
            .with_jitter(Jitter::Full)?;
    let policy = RetryPolicy::new(6, backoff)?.with_max_elapsed(Duration::from_secs(5))?;
    let mut flaky = SplitMix64::new(2026);
    for job in 0..5u64 {
        let mut now = Instant::ZERO;
        let mut state = RetryState::new(now, job);
        loop {
            // The "operation": fails 60 % of the time, with a network error.
            let ok = flaky.below_inclusive(99) >= 60;
            if ok {
                state.on_success(now);
                println!("job {job}: attempt {} succeeded at {now}", state.attempts());
                break;
            }
            match state.on_failure(&policy, FailureKind::Network, now) {
                Decision::RetryAfter(d) => {
                    println!(
                        "job {job}: attempt {} failed at {now}; retry after {} ms",
                        state.attempts() - 1,
                        d.as_millis()
                    );
                    now = now + d;
                }
                Decision::GiveUp(why) => {
                    println!("job {job}: gave up at {now}: {why}");
                    break;
                }
            }
        }
    }
    Ok(())
}
