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
