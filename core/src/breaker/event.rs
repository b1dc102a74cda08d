//! What a breaker reports: one [`BreakerEvent`] per transition, pulled with
//! `poll_event` from a bounded queue that counts what it had to drop.

use heapless::Deque;

use crate::time::Instant;

/// One thing that happened to a breaker. Every transition is one event; the instants
/// are the effective `now` (after the monotonic watermark) of the input that caused it.
///
/// Shape: 24 bytes; `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum BreakerEvent {
    /// The breaker opened (from closed, or reopened from half-open) and rejects calls
    /// until `until`.
    Opened {
        /// When it opened.
        at: Instant,
        /// When it becomes half-open.
        until: Instant,
    },
    /// The open period ended: probes may pass.
    HalfOpened {
        /// When it became half-open.
        at: Instant,
    },
    /// Enough probes succeeded, or a manual `reset`: calls pass again.
    Closed {
        /// When it closed.
        at: Instant,
    },
    /// A half-open probe did not report back within the permit timeout; it counts as a
    /// failed probe (an `Opened` event follows).
    ProbeExpired {
        /// When the expiry was handled.
        at: Instant,
    },
    /// Opened by hand.
    ForcedOpen {
        /// When.
        at: Instant,
    },
    /// Switched off by hand.
    Disabled {
        /// When.
        at: Instant,
    },
    /// Switched to metrics-only by hand.
    MetricsOnly {
        /// When.
        at: Instant,
    },
    /// Metrics-only mode: the trip rule would have opened the breaker now.
    ThresholdExceeded {
        /// When.
        at: Instant,
    },
}

impl BreakerEvent {
    /// When the event happened.
    pub const fn at(&self) -> Instant {
        match *self {
            Self::Opened { at, .. }
            | Self::HalfOpened { at }
            | Self::Closed { at }
            | Self::ProbeExpired { at }
            | Self::ForcedOpen { at }
            | Self::Disabled { at }
            | Self::MetricsOnly { at }
            | Self::ThresholdExceeded { at } => at,
        }
    }
}

/// A bounded FIFO of events (capacity `E`, at least 1, checked at compile time by
/// heapless). When full, the **oldest** event is dropped to make room and counted: the
/// newest events describe the current state.
#[derive(Clone, Debug)]
pub struct EventQueue<const E: usize> {
    queue: Deque<BreakerEvent, E>,
    dropped: u32,
}

impl<const E: usize> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const E: usize> EventQueue<E> {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            queue: Deque::new(),
            dropped: 0,
        }
    }

    /// Appends `ev`, dropping (and counting) the oldest event if full.
    pub fn push(&mut self, ev: BreakerEvent) {
        if let Err(ev) = self.queue.push_back(ev) {
            self.dropped = self.dropped.saturating_add(1);
            if self.queue.pop_front().is_some() {
                let _ = self.queue.push_back(ev);
            }
        }
    }

    /// The oldest event not yet pulled.
    pub fn pop(&mut self) -> Option<BreakerEvent> {
        self.queue.pop_front()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events dropped because the queue was full (saturating).
    pub const fn dropped(&self) -> u32 {
        self.dropped
    }

    /// Empties the queue (the dropped count stays).
    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

/// The event queue of the small [`ConsecutiveBreaker`](super::ConsecutiveBreaker): a
/// FIFO of capacity `E` (1..=255, checked at compile time) that, like [`EventQueue`],
/// drops and counts the **oldest** event when full. Events are stored compactly (the
/// kind and the instant, 9 bytes each; an `Opened` event's `until` is rebuilt from the
/// fixed open duration) so that the breaker stays small and `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventRing<const E: usize> {
    at: [Instant; E],
    kind: [u8; E],
    head: u8,
    len: u8,
    dropped: u16,
}

const NONE: u8 = 0;
const OPENED: u8 = 1;
const HALF_OPENED: u8 = 2;
const CLOSED: u8 = 3;
const PROBE_EXPIRED: u8 = 4;
const FORCED_OPEN: u8 = 5;
const DISABLED: u8 = 6;
const METRICS_ONLY: u8 = 7;
const THRESHOLD_EXCEEDED: u8 = 8;

impl<const E: usize> EventRing<E> {
    pub(crate) const fn new() -> Self {
        const {
            assert!(
                E >= 1 && E <= 255,
                "the event queue's capacity E must be in 1..=255"
            )
        };
        Self {
            at: [Instant::ZERO; E],
            kind: [NONE; E],
            head: 0,
            len: 0,
            dropped: 0,
        }
    }

    /// Appends `ev`, dropping (and counting) the oldest event if full.
    #[inline]
    pub(crate) fn push(&mut self, ev: BreakerEvent) {
        let kind = match ev {
            BreakerEvent::Opened { .. } => OPENED,
            BreakerEvent::HalfOpened { .. } => HALF_OPENED,
            BreakerEvent::Closed { .. } => CLOSED,
            BreakerEvent::ProbeExpired { .. } => PROBE_EXPIRED,
            BreakerEvent::ForcedOpen { .. } => FORCED_OPEN,
            BreakerEvent::Disabled { .. } => DISABLED,
            BreakerEvent::MetricsOnly { .. } => METRICS_ONLY,
            BreakerEvent::ThresholdExceeded { .. } => THRESHOLD_EXCEEDED,
        };
        let (head, len) = (usize::from(self.head), usize::from(self.len));
        let slot = if len == E {
            self.dropped = self.dropped.saturating_add(1);
            self.head = ((head + 1) % E) as u8;
            head
        } else {
            self.len += 1;
            (head + len) % E
        };
        self.at[slot] = ev.at();
        self.kind[slot] = kind;
    }

    /// Takes the oldest event; an `Opened` event gets `until = at + open_ns`.
    pub(crate) fn pop(&mut self, open_ns: u64) -> Option<BreakerEvent> {
        if self.len == 0 {
            return None;
        }
        let head = usize::from(self.head);
        self.head = ((head + 1) % E) as u8;
        self.len -= 1;
        let at = self.at[head];
        Some(match self.kind[head] {
            OPENED => BreakerEvent::Opened {
                at,
                until: Instant::from_nanos(at.as_nanos().saturating_add(open_ns)),
            },
            HALF_OPENED => BreakerEvent::HalfOpened { at },
            CLOSED => BreakerEvent::Closed { at },
            PROBE_EXPIRED => BreakerEvent::ProbeExpired { at },
            FORCED_OPEN => BreakerEvent::ForcedOpen { at },
            DISABLED => BreakerEvent::Disabled { at },
            METRICS_ONLY => BreakerEvent::MetricsOnly { at },
            _ => BreakerEvent::ThresholdExceeded { at },
        })
    }

    pub(crate) const fn dropped(&self) -> u16 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(s: u64) -> BreakerEvent {
        BreakerEvent::Closed {
            at: Instant::from_secs(s),
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts() {
        let mut q = EventQueue::<2>::new();
        q.push(closed(1));
        q.push(closed(2));
        q.push(closed(3));
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(closed(2)));
        assert_eq!(q.pop(), Some(closed(3)));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn ring_of_one_keeps_the_newest() {
        let mut s = EventRing::<1>::new();
        s.push(closed(1));
        s.push(closed(2));
        assert_eq!(s.dropped(), 1);
        assert_eq!(s.pop(9), Some(closed(2)));
        assert_eq!(s.pop(9), None);
        let t = Instant::from_secs(1);
        let all = [
            BreakerEvent::Opened {
                at: t,
                until: Instant::from_nanos(1_000_000_009),
            },
            BreakerEvent::HalfOpened { at: t },
            BreakerEvent::Closed { at: t },
            BreakerEvent::ProbeExpired { at: t },
            BreakerEvent::ForcedOpen { at: t },
            BreakerEvent::Disabled { at: t },
            BreakerEvent::MetricsOnly { at: t },
            BreakerEvent::ThresholdExceeded { at: t },
        ];
        for ev in all {
            s.push(ev);
            assert_eq!(s.pop(9), Some(ev));
        }
        assert_eq!(s.dropped(), 1);
        assert_eq!(closed(7).at(), Instant::from_secs(7));
    }

    #[test]
    fn ring_keeps_order_drops_the_oldest_and_wraps() {
        let mut r = EventRing::<3>::new();
        for s in 1..=3 {
            r.push(closed(s));
        }
        assert_eq!(r.dropped(), 0);
        r.push(closed(4)); // full: 1 goes
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.pop(0), Some(closed(2)));
        r.push(closed(5)); // wraps around the array's end
        assert_eq!(
            core::iter::from_fn(|| r.pop(0)).collect::<std::vec::Vec<_>>(),
            [closed(3), closed(4), closed(5)]
        );
        assert_eq!(r.pop(0), None);
        assert_eq!(r.dropped(), 1);
    }
}
