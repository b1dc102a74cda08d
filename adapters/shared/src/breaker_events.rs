//! What a shared [`Breaker`](crate::Breaker) tells its subscribers, and its running
//! totals.
//!
//! The handle drains the core's event queue itself (into `tracing`, and now into
//! subscribers), so a `poll_event` through [`Breaker::inspect`](crate::Breaker::inspect)
//! finds nothing: subscribe with [`Breaker::subscribe`](crate::Breaker::subscribe)
//! instead. Totals ([`Breaker::totals`](crate::Breaker::totals)) only grow: a state
//! change, a `reset` or a new window never lowers them, so they are what a metrics
//! exporter reports as `_total` counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use sturdy_core::breaker::{BreakerEvent, Outcome, Rejected, State};

/// What made the breaker change state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// Time: the open period ended (half-open), or a half-open probe did not report
    /// back within the permit timeout (reopened).
    Timer,
    /// A call's recorded outcome (a failure that tripped the rule, the probe that
    /// closed or reopened it).
    Outcome(Outcome),
    /// A call's guard was dropped unrecorded and released its permit.
    Released,
    /// A call of `reset`, `force_open` or `inspect` on the handle.
    Manual,
}

/// One thing a shared breaker tells its subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerNotice {
    /// The core's event (a state change, a probe expiry, metrics-only's would-open) and
    /// what caused it.
    Event {
        /// The core's event, with its instant in the breaker clock's origin.
        event: BreakerEvent,
        /// What caused it.
        cause: Cause,
    },
    /// A call was refused.
    Rejected(Rejected),
    /// A call's outcome was recorded (successes on the closed fast path included).
    /// Only for subscribers that asked for outcomes
    /// ([`Breaker::subscribe_outcomes`](crate::Breaker::subscribe_outcomes)); the
    /// others see state changes and rejections only.
    Recorded(Outcome),
}

/// A subscriber: called with the breaker's name and the notice.
///
/// Called on the thread that caused the notice; state changes are delivered under the
/// breaker's lock, in order. Keep it short (count, or send on a channel) and do not
/// call the same breaker from it (that would deadlock).
pub type Subscriber = Arc<dyn Fn(&str, &BreakerNotice) + Send + Sync>;

/// A breaker's running totals: they only grow (saturating), whatever the state, the
/// window or a `reset`. Shape: 13 `u64`s, `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerTotals {
    /// Calls whose outcome was recorded: `successes + failures + ignored`.
    pub calls: u64,
    /// Recorded successes (the closed fast path's included).
    pub successes: u64,
    /// Recorded failures, of every kind (counted by the trip rule or not).
    pub failures: u64,
    /// Recorded outcomes that count neither way ([`Outcome::Ignored`]).
    pub ignored: u64,
    /// Calls refused.
    pub rejections: u64,
    /// Guards dropped unrecorded (their permits released; neither success nor failure).
    pub released: u64,
    /// Transitions into open (reopens from half-open included).
    pub opened: u64,
    /// Transitions into half-open.
    pub half_opened: u64,
    /// Transitions into closed (by probes or `reset`).
    pub closed: u64,
    /// Transitions into forced-open.
    pub forced_open: u64,
    /// Transitions into disabled.
    pub disabled: u64,
    /// Transitions into metrics-only.
    pub metrics_only: u64,
    /// Half-open probes that expired unreported.
    pub probes_expired: u64,
}

/// Every breaker state's name, as exporters label it, in the order of
/// [`BreakerTotals::transitions_by_state`].
pub const STATE_NAMES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];

/// The name of `state`: one of [`STATE_NAMES`].
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open { .. } => "open",
        State::HalfOpen => "half_open",
        State::ForcedOpen => "forced_open",
        State::Disabled => "disabled",
        _ => "metrics_only",
    }
}

impl BreakerTotals {
    /// Transitions into each state, in the order of [`STATE_NAMES`].
    pub const fn transitions_by_state(&self) -> [u64; 6] {
        [
            self.closed,
            self.opened,
            self.half_opened,
            self.forced_open,
            self.disabled,
            self.metrics_only,
        ]
    }
}

#[derive(Default)]
pub(crate) struct Totals {
    /// Successes recorded under the lock (the fast path counts apart).
    slow_successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    rejections: AtomicU64,
    released: AtomicU64,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
    forced_open: AtomicU64,
    disabled: AtomicU64,
    metrics_only: AtomicU64,
    probes_expired: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl Totals {
    pub(crate) fn outcome(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => bump(&self.slow_successes),
            Outcome::Failure(_) => bump(&self.failures),
            _ => bump(&self.ignored),
        }
    }

    pub(crate) fn rejected(&self) {
        bump(&self.rejections);
    }

    pub(crate) fn released(&self) {
        bump(&self.released);
    }

    pub(crate) fn event(&self, ev: &BreakerEvent) {
        let counter = match ev {
            BreakerEvent::Opened { .. } => &self.opened,
            BreakerEvent::HalfOpened { .. } => &self.half_opened,
            BreakerEvent::Closed { .. } => &self.closed,
            BreakerEvent::ProbeExpired { .. } => &self.probes_expired,
            BreakerEvent::ForcedOpen { .. } => &self.forced_open,
            BreakerEvent::Disabled { .. } => &self.disabled,
            BreakerEvent::MetricsOnly { .. } => &self.metrics_only,
            _ => return,
        };
        bump(counter);
    }

    pub(crate) fn snapshot(&self, fast_successes: u64) -> BreakerTotals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let successes = get(&self.slow_successes).saturating_add(fast_successes);
        let failures = get(&self.failures);
        let ignored = get(&self.ignored);
        BreakerTotals {
            calls: successes.saturating_add(failures).saturating_add(ignored),
            successes,
            failures,
            ignored,
            rejections: get(&self.rejections),
            released: get(&self.released),
            opened: get(&self.opened),
            half_opened: get(&self.half_opened),
            closed: get(&self.closed),
            forced_open: get(&self.forced_open),
            disabled: get(&self.disabled),
            metrics_only: get(&self.metrics_only),
            probes_expired: get(&self.probes_expired),
        }
    }
}

/// Subscribers, with a flag for whether any wants outcomes (so the fast path pays a
/// load, not a lock, when none does).
#[derive(Default)]
pub(crate) struct Subscribers {
    all: RwLock<Vec<(Subscriber, bool)>>,
    want_outcomes: std::sync::atomic::AtomicBool,
    any: std::sync::atomic::AtomicBool,
}

impl Subscribers {
    pub(crate) fn add(&self, s: Subscriber, outcomes: bool) {
        self.all
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((s, outcomes));
        self.any.store(true, Ordering::Release);
        if outcomes {
            self.want_outcomes.store(true, Ordering::Release);
        }
    }

    #[inline]
    pub(crate) fn wants_outcomes(&self) -> bool {
        self.want_outcomes.load(Ordering::Acquire)
    }

    pub(crate) fn notify(&self, name: &str, notice: &BreakerNotice) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let outcome = matches!(notice, BreakerNotice::Recorded(_));
        for (s, outcomes) in self
            .all
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if *outcomes || !outcome {
                s(name, notice);
            }
        }
    }
}
