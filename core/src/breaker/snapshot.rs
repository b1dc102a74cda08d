//! A breaker's state as plain data, to persist (serde/postcard behind the features) and
//! restore after a restart.

use super::state::State;
use crate::backoff::BackoffState;
use crate::time::Instant;

/// The persistent part of a breaker: its state (with the open deadline), generation,
/// clock watermark, counters and the position in the open-duration schedule.
///
/// Not included: permits in flight (they died with the process; a restored half-open
/// breaker has every probe slot free) and the contents of a sliding window (a restored
/// closed breaker judges rates on fresh outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The state, deadline included.
    pub state: State,
    /// The generation; permits issued before the snapshot stay stale after a restore.
    pub generation: u32,
    /// The latest `now` the breaker had seen.
    pub latest: Instant,
    /// Counted failures in a row while closed.
    pub consecutive_failures: u32,
    /// Consecutive reopens since the breaker last closed.
    pub reopens: u32,
    /// Calls rejected so far.
    pub rejected: u64,
    /// The position in the open-duration schedule (windowed breakers; `None` for the
    /// consecutive breaker, whose open duration is fixed).
    pub open_backoff: Option<BackoffState>,
}

#[cfg(all(test, feature = "postcard"))]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::backoff::BackoffConfig;
    use crate::breaker::{
        BreakerConfig, BreakerEvent, CircuitBreaker, ConsecutiveBreaker, ConsecutiveConfig,
        NoWindow, Outcome,
    };
    use crate::failure::FailureKind;

    fn round_trip<T>(v: &T) -> T
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut buf = [0u8; 256];
        let bytes = postcard::to_slice(v, &mut buf).expect("fits");
        postcard::from_bytes(bytes).expect("decodes")
    }

    #[test]
    fn configs_snapshots_and_events_round_trip_through_postcard() {
        let small = ConsecutiveConfig::original()
            .with_half_open_permits(2)
            .unwrap();
        assert_eq!(round_trip(&small), small);
        let wide = BreakerConfig::new()
            .with_slow_calls(Duration::from_millis(250), 0.8)
            .unwrap()
            .with_open_backoff(
                BackoffConfig::exponential(Duration::from_secs(1), 2_000, Duration::from_secs(60))
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(round_trip(&wide), wide);

        let mut b = ConsecutiveBreaker::new(small);
        for _ in 0..3 {
            let p = b.try_acquire(Instant::from_secs(4)).unwrap();
            b.record(p, Outcome::Failure(FailureKind::Gpu), Instant::from_secs(4));
        }
        let snap = b.snapshot();
        let back = round_trip(&snap);
        assert_eq!(back, snap);
        let restored = ConsecutiveBreaker::restore(small, &back);
        assert_eq!(restored.state(), b.state());
        assert_eq!(restored.generation(), b.generation());

        let mut c: CircuitBreaker<NoWindow> =
            CircuitBreaker::new(wide.with_consecutive_failures(1).unwrap(), NoWindow, 5).unwrap();
        let p = c.try_acquire(Instant::from_secs(1)).unwrap();
        c.record(
            p,
            Outcome::Failure(FailureKind::Network),
            Instant::from_secs(1),
        );
        let snap = c.snapshot();
        assert!(snap.open_backoff.is_some());
        assert_eq!(round_trip(&snap), snap);

        let ev = BreakerEvent::Opened {
            at: Instant::from_secs(1),
            until: Instant::from_secs(2),
        };
        assert_eq!(round_trip(&ev), ev);
        assert_eq!(round_trip(&c.metrics()), c.metrics());
    }
}
