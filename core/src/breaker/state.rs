//! The breaker's states and the state machine both breakers share: the state with its
//! deadline, the generation, the monotonic watermark and the half-open probe slots.

use super::snapshot::BreakerSnapshot;
use crate::backoff::BackoffState;
use crate::time::{Instant, Monotonic};

/// Where a breaker is. Deadlines live inside the variants (after smoltcp), so a state
/// without a deadline cannot have one.
///
/// Shape: 16 bytes (a tag and one [`Instant`]); `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are counted against the trip rule.
    Closed,
    /// Calls are rejected until `until`, then the breaker becomes half-open (at the first
    /// `try_acquire` or `handle_timeout` at or after `until`).
    Open {
        /// When the breaker becomes half-open.
        until: Instant,
    },
    /// A limited number of probe calls pass at a time; the rest are rejected at once.
    /// Successful probes close the breaker, a failed or expired probe reopens it.
    HalfOpen,
    /// Opened by hand ([`force_open`](super::ConsecutiveBreaker::force_open)): every call
    /// is rejected until a `reset`. Nothing changes it by itself.
    ForcedOpen,
    /// Switched off by hand: every call passes, outcomes are still measured, the trip
    /// rule is not judged and no transition happens until a `reset`.
    Disabled,
    /// Every call passes, outcomes are measured and the trip rule is judged, but instead
    /// of opening the breaker emits [`BreakerEvent::ThresholdExceeded`](super::BreakerEvent)
    /// (resilience4j's `METRICS_ONLY`). Left by a `reset`.
    MetricsOnly,
}

impl State {
    /// Whether calls currently pass without a probe limit (closed, disabled,
    /// metrics-only).
    #[inline]
    pub const fn admits_all(&self) -> bool {
        matches!(self, Self::Closed | Self::Disabled | Self::MetricsOnly)
    }

    /// A short, stable, lower-case name (`"closed"`, `"open"`, `"half_open"`,
    /// `"forced_open"`, `"disabled"`, `"metrics_only"`).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Open { until } => write!(f, "open until {until}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The probe ticket of a permit that is not a half-open probe.
pub(crate) const NO_PROBE: u32 = 0;

/// The part of a breaker that does not depend on its trip rule. `P` is the number of
/// probe slots (the most half-open permits a config may ask for).
///
/// Each probe gets a ticket, unique among the last 2^32 - 1 probes, which its permit
/// carries; a slot is freed only by the permit holding its ticket, so a permit handed
/// back twice cannot free a slot that a later probe reuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Machine<const P: usize> {
    pub(crate) state: State,
    pub(crate) clock: Monotonic,
    /// The expiry of each busy probe slot (meaningless for a free slot).
    expiries: [Instant; P],
    /// The ticket of each slot's probe; `NO_PROBE` marks a free slot.
    tickets: [u32; P],
    next_ticket: u32,
    pub(crate) generation: u32,
    /// Successful probes in the current half-open phase.
    pub(crate) probe_successes: u16,
    /// Consecutive reopens since the breaker last closed (saturating).
    pub(crate) reopens: u16,
    in_flight: u8,
}

impl<const P: usize> Machine<P> {
    pub(crate) const fn new() -> Self {
        Self {
            state: State::Closed,
            clock: Monotonic::new(Instant::ZERO),
            expiries: [Instant::ZERO; P],
            tickets: [NO_PROBE; P],
            next_ticket: 0,
            generation: 0,
            probe_successes: 0,
            reopens: 0,
            in_flight: 0,
        }
    }

    /// Moves to `to`, starting a new generation: every permit issued before is stale,
    /// every probe slot is free.
    pub(crate) fn enter(&mut self, to: State) {
        self.state = to;
        self.generation = self.generation.wrapping_add(1);
        self.tickets = [NO_PROBE; P];
        self.in_flight = 0;
        self.probe_successes = 0;
    }

    /// Restores the state, generation, watermark and reopens from a snapshot; no probe
    /// is in flight.
    pub(crate) fn restore(&mut self, snapshot: &BreakerSnapshot) {
        self.state = snapshot.state;
        self.generation = snapshot.generation;
        self.clock = Monotonic::new(snapshot.latest);
        self.reopens = snapshot.reopens.min(u16::MAX as u32) as u16;
        self.tickets = [NO_PROBE; P];
        self.in_flight = 0;
        self.probe_successes = 0;
    }

    /// The persistent state, with the breaker's own counts.
    pub(crate) fn snapshot(
        &self,
        consecutive_failures: u32,
        rejected: u64,
        open_backoff: Option<BackoffState>,
    ) -> BreakerSnapshot {
        BreakerSnapshot {
            state: self.state,
            generation: self.generation,
            latest: self.clock.latest(),
            consecutive_failures,
            reopens: self.reopens as u32,
            rejected,
            open_backoff,
        }
    }

    /// Takes a free probe slot if fewer than `limit` are busy and returns its ticket;
    /// `Err` carries the earliest expiry of the busy ones (when a slot frees at the
    /// latest).
    pub(crate) fn take_probe(
        &mut self,
        now: Instant,
        limit: u8,
        timeout_ns: u64,
    ) -> Result<u32, Instant> {
        if self.in_flight < limit
            && let Some(i) = self.tickets.iter().position(|&t| t == NO_PROBE)
        {
            self.next_ticket = match self.next_ticket.wrapping_add(1) {
                NO_PROBE => 1,
                t => t,
            };
            self.tickets[i] = self.next_ticket;
            self.expiries[i] = Instant::from_nanos(now.as_nanos().saturating_add(timeout_ns));
            self.in_flight += 1;
            return Ok(self.next_ticket);
        }
        Err(self.earliest_probe_expiry().unwrap_or(Instant::MAX))
    }

    /// Frees the slot holding `ticket`; returns whether one did.
    pub(crate) fn free_probe(&mut self, ticket: u32) -> bool {
        if ticket == NO_PROBE {
            return false;
        }
        match self.tickets.iter().position(|&t| t == ticket) {
            Some(i) => {
                self.tickets[i] = NO_PROBE;
                self.in_flight -= 1;
                true
            }
            None => false,
        }
    }

    /// The earliest expiry of a probe in flight.
    pub(crate) fn earliest_probe_expiry(&self) -> Option<Instant> {
        self.tickets
            .iter()
            .zip(&self.expiries)
            .filter(|&(&t, _)| t != NO_PROBE)
            .map(|(_, &e)| e)
            .min()
    }

    /// Probes in flight now.
    pub(crate) const fn in_flight(&self) -> u8 {
        self.in_flight
    }

    /// Whether `try_acquire(now)` would hand out a permit, without changing anything.
    pub(crate) fn would_admit(&self, now: Instant, limit: u8) -> bool {
        let now = now.max(self.clock.latest());
        match self.state {
            State::Closed | State::Disabled | State::MetricsOnly => true,
            // At the deadline the breaker turns half-open with every slot free.
            State::Open { until } => now >= until && limit > 0,
            State::HalfOpen => {
                // An overdue probe reopens the breaker first.
                self.earliest_probe_expiry().is_none_or(|e| now < e) && self.in_flight < limit
            }
            State::ForcedOpen => false,
        }
    }

    /// The next instant at which the state changes by itself, if any: the end of an
    /// open period, or the expiry of the oldest probe. Never a deadline while closed.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            State::HalfOpen => self.earliest_probe_expiry(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_slots_fill_expire_and_free() {
        let mut m = Machine::<3>::new();
        m.enter(State::HalfOpen);
        assert_eq!(m.generation, 1);
        let t = Instant::from_secs(1);
        assert_eq!(m.take_probe(t, 2, 500), Ok(1));
        assert_eq!(
            m.take_probe(t + core::time::Duration::from_nanos(10), 2, 500),
            Ok(2)
        );
        assert_eq!(
            m.take_probe(t, 2, 500),
            Err(Instant::from_nanos(1_000_000_500))
        );
        assert_eq!(m.deadline(), Some(Instant::from_nanos(1_000_000_500)));
        assert!(m.free_probe(1));
        assert!(!m.free_probe(1));
        assert!(!m.free_probe(NO_PROBE));
        assert_eq!(m.in_flight(), 1);
        assert_eq!(m.deadline(), Some(Instant::from_nanos(1_000_000_510)));
        // Slot 0 is reused by ticket 3; the old ticket 1 cannot free it.
        assert_eq!(m.take_probe(Instant::MAX, 2, 1), Ok(3));
        assert!(!m.free_probe(1));
        assert_eq!(m.in_flight(), 2);
        assert_eq!(m.deadline(), Some(Instant::from_nanos(1_000_000_510)));
        m.enter(State::Closed);
        assert_eq!((m.in_flight(), m.deadline()), (0, None));
    }

    #[test]
    fn tickets_skip_zero_when_they_wrap() {
        let mut m = Machine::<1>::new();
        m.enter(State::HalfOpen);
        m.next_ticket = u32::MAX;
        assert_eq!(m.take_probe(Instant::ZERO, 1, 1), Ok(1));
    }

    #[test]
    fn names() {
        assert_eq!(State::HalfOpen.as_str(), "half_open");
        assert!(State::Disabled.admits_all());
        assert!(!State::ForcedOpen.admits_all());
        use std::string::ToString;
        assert_eq!(
            State::Open {
                until: Instant::from_secs(2)
            }
            .to_string(),
            "open until 2.000000000s"
        );
    }
}
