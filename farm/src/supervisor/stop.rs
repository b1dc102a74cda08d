//! Stopping a run from outside: drain, then abort.

#[cfg(doc)]
use super::Supervisor;

use tokio::sync::watch;

/// How far a stop request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Stop {
    /// Keep running.
    Run,
    /// Dispatch nothing new; let running attempts finish; then return.
    Drain,
    /// Kill running attempts with their workers and return at once.
    Abort,
}

/// A cloneable handle that asks a running [`Supervisor`] to stop (for example from a
/// signal handler: the first SIGINT drains, the second aborts).
#[derive(Clone, Debug)]
pub struct StopHandle(pub(super) watch::Sender<Stop>);

impl StopHandle {
    /// Drain: no new dispatch, running attempts finish.
    pub fn drain(&self) {
        self.0.send_if_modified(|s| {
            let change = *s < Stop::Drain;
            if change {
                *s = Stop::Drain;
            }
            change
        });
    }

    /// Abort: running attempts are killed.
    pub fn abort(&self) {
        self.0.send_replace(Stop::Abort);
    }

    /// Escalates: the first call drains, the next aborts. Returns the new level.
    pub fn escalate(&self) -> Stop {
        let mut level = Stop::Run;
        self.0.send_modify(|s| {
            *s = if *s == Stop::Run {
                Stop::Drain
            } else {
                Stop::Abort
            };
            level = *s;
        });
        level
    }
}

#[cfg(test)]
impl StopHandle {
    /// A handle to no supervisor, and the receiver that sees what it asks (for tests
    /// of its users).
    pub(crate) fn detached() -> (Self, watch::Receiver<Stop>) {
        let (tx, rx) = watch::channel(Stop::Run);
        (Self(tx), rx)
    }
}
