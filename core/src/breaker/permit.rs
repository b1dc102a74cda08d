//! What a caller gets from a breaker and hands back: the [`Permit`], the refusal
//! ([`Rejected`]) and the [`Outcome`] of the call.

use core::fmt;

use super::state::{NO_PROBE, State};
use crate::failure::FailureKind;
use crate::time::Instant;

/// Leave to make one call, handed back with its outcome to
/// [`record`](super::ConsecutiveBreaker::record), or to
/// [`release`](super::ConsecutiveBreaker::release) when the call never ran to an outcome
/// (dropped, cancelled).
///
/// A permit carries the **generation** of the breaker's state when it was issued (every
/// transition starts a new one), the instant it was issued (the call's latency for the
/// slow-call rule is `now - issued_at` at `record`), and, for a half-open probe, its
/// probe ticket (which frees exactly its own slot). A permit from an older generation
/// (issued before the latest transition) is **ignored**: late outcomes never restart or
/// extend an open period.
///
/// A permit is neither `Copy` nor `Clone`: `record` and `release` take it by value, so
/// each call is counted at most once and a permit handed back twice does not compile
/// (a copied permit recorded twice counted two failures, and opened a breaker of
/// threshold 2 after one failed call):
///
/// ```compile_fail,E0382
/// use sturdy_core::{ConsecutiveBreaker, ConsecutiveConfig, FailureKind, Instant, Outcome};
///
/// let mut b = ConsecutiveBreaker::new(ConsecutiveConfig::original());
/// let now = Instant::from_secs(1);
/// let permit = b.try_acquire(now).unwrap();
/// b.record(permit, Outcome::Failure(FailureKind::Network), now);
/// b.record(permit, Outcome::Failure(FailureKind::Network), now); // use of moved value
/// ```
///
/// Adapters that keep a permit in a drop guard hold it in an `Option` and `take()` it.
///
/// Shape: 16 bytes.
#[must_use = "a permit must be handed back with `record` or `release`, or a half-open probe slot stays busy until it expires"]
#[derive(Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Permit {
    pub(crate) issued_at: Instant,
    pub(crate) generation: u32,
    pub(crate) probe: u32,
}

impl Permit {
    /// The generation (epoch of the breaker's state) the permit belongs to.
    #[inline]
    pub const fn generation(&self) -> u32 {
        self.generation
    }

    /// When the permit was issued (the effective `now` of `try_acquire`).
    #[inline]
    pub const fn issued_at(&self) -> Instant {
        self.issued_at
    }

    /// Whether the permit is a half-open probe (it holds one of the limited slots).
    #[inline]
    pub const fn is_probe(&self) -> bool {
        self.probe != NO_PROBE
    }
}

/// A [`Permit`] parked in a container that must stay `Clone` (the ledger keeps each
/// running task's permit in its task record). Only the crate builds and unparks one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ParkedPermit {
    issued_at: Instant,
    generation: u32,
    probe: u32,
}

impl Permit {
    /// Parks the permit (see [`ParkedPermit`]).
    pub(crate) const fn park(self) -> ParkedPermit {
        ParkedPermit {
            issued_at: self.issued_at,
            generation: self.generation,
            probe: self.probe,
        }
    }
}

#[cfg(test)]
impl Permit {
    /// A second copy of the permit, for tests of the defences against a permit handed
    /// back twice (still reachable through a cloned ledger's parked permits).
    pub(crate) const fn dup(&self) -> Self {
        Self {
            issued_at: self.issued_at,
            generation: self.generation,
            probe: self.probe,
        }
    }
}

impl ParkedPermit {
    /// The permit again, to hand back.
    pub(crate) const fn unpark(self) -> Permit {
        Permit {
            issued_at: self.issued_at,
            generation: self.generation,
            probe: self.probe,
        }
    }
}

/// A refusal: the call must not be made. Says when to come back.
///
/// Shape: 24 bytes; `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rejected {
    /// The earliest instant at which the breaker may admit again by itself: the end of
    /// the open period, or, when every half-open probe slot is busy, the expiry of the
    /// oldest probe. [`Instant::MAX`] when only a manual `reset` will admit
    /// ([`State::ForcedOpen`]), or when the busy probes never expire (no permit timeout):
    /// then a probe handed back frees a slot.
    pub retry_at: Instant,
    /// The state that refused.
    pub state: State,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.state == State::ForcedOpen {
            write!(
                f,
                "circuit breaker {}: call rejected until reset",
                self.state
            )
        } else if self.retry_at == Instant::MAX {
            write!(
                f,
                "circuit breaker {}: call rejected until a probe reports back",
                self.state
            )
        } else {
            write!(
                f,
                "circuit breaker {}: call rejected, retry at {}",
                self.state, self.retry_at
            )
        }
    }
}

impl core::error::Error for Rejected {}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Outcome {
    /// The call succeeded. With a slow-call rule, a success slower than the configured
    /// bound counts as a slow call (and as a failed probe while half-open).
    Success,
    /// The call failed with this kind. It counts as a failure only when the breaker's
    /// counted kinds contain it; otherwise it counts neither way, like
    /// [`Ignored`](Self::Ignored).
    Failure(FailureKind),
    /// The call's result says nothing about the dependency's health (for example a
    /// client-side validation error): counts neither way; a probe's slot is freed.
    Ignored,
}

#[cfg(test)]
mod tests {
    use std::string::ToString;

    use super::*;

    #[test]
    fn rejection_says_when_to_come_back() {
        let r = Rejected {
            retry_at: Instant::from_secs(3),
            state: State::Open {
                until: Instant::from_secs(3),
            },
        };
        assert_eq!(
            r.to_string(),
            "circuit breaker open until 3.000000000s: call rejected, retry at 3.000000000s"
        );
        let f = Rejected {
            retry_at: Instant::MAX,
            state: State::ForcedOpen,
        };
        assert_eq!(
            f.to_string(),
            "circuit breaker forced_open: call rejected until reset"
        );
        // Half-open with every probe out and no permit timeout: no reset is needed.
        let h = Rejected {
            retry_at: Instant::MAX,
            state: State::HalfOpen,
        };
        assert_eq!(
            h.to_string(),
            "circuit breaker half_open: call rejected until a probe reports back"
        );
    }
}
