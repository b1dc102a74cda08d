//! Failure kinds, sets of kinds, identifiers and the fixed-size failure event.
//!
//! The original design (MorphML's `FailureType`) had seven kinds: worker crash, task
//! timeout, network error, out of memory, GPU error, evaluation error, unknown. sturdy
//! keeps them and adds two that the field needs: cancelled (the caller gave up; retrying
//! would be wrong) and permanent (invalid input or a fault that no retry can fix).

use core::fmt;

use crate::time::Instant;

/// Why an attempt failed.
///
/// Each kind has a default retryability ([`FailureKind::retryable_by_default`]), which a
/// [`KindSet`] in a retry policy can override.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum FailureKind {
    /// The worker running the task died or stopped heartbeating. Retryable: the task is
    /// not at fault and goes to another worker.
    WorkerCrash,
    /// The attempt ran past its deadline. Retryable.
    TaskTimeout,
    /// A network error (connection refused, reset, unreachable). Retryable.
    Network,
    /// The attempt ran out of memory (for example killed by the OOM killer). Retryable:
    /// the next attempt may land on a worker with more room.
    OutOfMemory,
    /// The GPU failed under the attempt (a device XID, ECC error). Retryable, on
    /// another device.
    Gpu,
    /// The task itself reported an error (a non-zero exit status). Retryable by
    /// default, as in the original, since batch jobs often fail transiently.
    Evaluation,
    /// A failure that could not be classified. Retryable.
    Unknown,
    /// The caller cancelled the attempt. Not retryable.
    Cancelled,
    /// A permanent failure: invalid input, a missing program, a fault no retry can fix.
    /// Not retryable.
    Permanent,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::WorkerCrash,
        Self::TaskTimeout,
        Self::Network,
        Self::OutOfMemory,
        Self::Gpu,
        Self::Evaluation,
        Self::Unknown,
        Self::Cancelled,
        Self::Permanent,
    ];

    /// Whether a failure of this kind is retried unless a policy says otherwise: every
    /// kind except [`Cancelled`](Self::Cancelled) and [`Permanent`](Self::Permanent).
    pub const fn retryable_by_default(self) -> bool {
        !matches!(self, Self::Cancelled | Self::Permanent)
    }

    /// A short, stable, lower-case name (`"worker_crash"`, `"task_timeout"`, ...), used
    /// in journals and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WorkerCrash => "worker_crash",
            Self::TaskTimeout => "task_timeout",
            Self::Network => "network",
            Self::OutOfMemory => "out_of_memory",
            Self::Gpu => "gpu",
            Self::Evaluation => "evaluation",
            Self::Unknown => "unknown",
            Self::Cancelled => "cancelled",
            Self::Permanent => "permanent",
        }
    }

    /// Parses the name produced by [`as_str`](Self::as_str).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`FailureKind`]s, as a bit set. Shape: one `u16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KindSet(u16);

impl KindSet {
    /// No kind.
    pub const EMPTY: Self = Self(0);

    /// Every kind.
    pub const fn all() -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < FailureKind::ALL.len() {
            bits |= FailureKind::ALL[i].bit();
            i += 1;
        }
        Self(bits)
    }

    /// The kinds that are retryable by default (all but cancelled and permanent).
    pub const fn retryable_defaults() -> Self {
        Self::all()
            .without(FailureKind::Cancelled)
            .without(FailureKind::Permanent)
    }

    /// This set plus `kind`.
    pub const fn with(self, kind: FailureKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// This set minus `kind`.
    pub const fn without(self, kind: FailureKind) -> Self {
        Self(self.0 & !kind.bit())
    }

    /// Whether `kind` is in the set.
    #[inline]
    pub const fn contains(self, kind: FailureKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

impl Default for KindSet {
    fn default() -> Self {
        Self::retryable_defaults()
    }
}

/// Identifies a task in a ledger (an index the supervisor assigns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TaskId(pub u32);

/// Identifies a worker in a ledger (an index the supervisor assigns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WorkerId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task#{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker#{}", self.0)
    }
}

/// One failure, as recorded: fixed size, no heap strings (the original kept a free-text
/// `details` string and a `recovered` flag it never set).
///
/// Shape: about 40 bytes; `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FailureEvent {
    /// When the failure was recorded.
    pub at: Instant,
    /// What kind of failure.
    pub kind: FailureKind,
    /// The task that failed, if a task was involved.
    pub task: Option<TaskId>,
    /// The worker involved, if any.
    pub worker: Option<WorkerId>,
    /// Which attempt failed (1 = the first call).
    pub attempt: u32,
    /// A numeric detail: an exit status, a signal number, an XID code, an HTTP status.
    pub code: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_names() {
        let retryable: usize = FailureKind::ALL
            .iter()
            .filter(|k| k.retryable_by_default())
            .count();
        assert_eq!(retryable, 7);
        assert!(!FailureKind::Cancelled.retryable_by_default());
        assert!(!FailureKind::Permanent.retryable_by_default());
        for k in FailureKind::ALL {
            assert_eq!(FailureKind::from_name(k.as_str()), Some(k));
            assert_eq!(KindSet::default().contains(k), k.retryable_by_default());
            assert!(KindSet::all().contains(k));
            assert!(!KindSet::EMPTY.contains(k));
        }
        assert_eq!(FailureKind::from_name("bogus"), None);
        let s = KindSet::EMPTY.with(FailureKind::Network);
        assert!(s.contains(FailureKind::Network));
        assert!(!s.contains(FailureKind::Gpu));
    }
}
