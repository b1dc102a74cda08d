//! The local run's signals: each SIGINT or SIGTERM escalates the run's stop (the first
//! drains it: nothing new starts, running attempts finish; the second aborts it:
//! running attempts are killed and journaled interrupted).

use tokio::task::JoinHandle;

use crate::supervisor::{Stop, StopHandle};

/// Listens (a tokio task) for SIGINT and SIGTERM; each escalates `stop` and calls
/// `escalated` with the new level ([`Stop::Drain`], then [`Stop::Abort`]). Ends at once
/// if the handlers cannot be installed; abort the handle when the run is over.
pub fn spawn(stop: StopHandle, escalated: impl Fn(Stop) + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                biased;
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            escalated(stop.escalate());
        }
    })
}
