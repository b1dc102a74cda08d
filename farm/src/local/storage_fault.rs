//! A failure of the farm's own storage (the state directory): not a task's failure,
//! not a worker's. The first one stops the run at once.
//!
//! Whoever meets it (the journal writer, a worker that cannot write a command's output
//! file, the watchdog that sees the state directory deleted) trips the shared
//! [`StorageFault`]: it remembers the first message (naming the path and the OS error)
//! and aborts the supervisor, so that nothing more is dispatched, running commands are
//! killed, and the attempts in flight are journaled `interrupted` where the journal
//! still takes a line. No task is charged and no breaker counts it; `--resume`, once the
//! cause is fixed, re-runs at most the attempts that were in flight.

use std::sync::{Arc, Mutex, PoisonError};

use crate::supervisor::StopHandle;

/// The run's storage-fault latch; cheap to clone, shared by every part of the master.
#[derive(Clone, Debug, Default)]
pub struct StorageFault {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    message: Option<String>,
    stop: Option<StopHandle>,
}

impl StorageFault {
    /// Arms the latch with the supervisor's stop handle (a trip before this only
    /// records the message).
    pub fn arm(&self, stop: StopHandle) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.message.is_some() {
            stop.abort();
        }
        g.stop = Some(stop);
    }

    /// Records `message` (the first one wins) and aborts the run.
    pub fn trip(&self, message: impl Into<String>) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.message.is_none() {
            g.message = Some(message.into());
        }
        if let Some(stop) = &g.stop {
            stop.abort();
        }
    }

    /// The first fault's message, if one tripped the latch.
    pub fn message(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .message
            .clone()
    }
}
