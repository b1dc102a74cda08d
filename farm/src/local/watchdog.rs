//! The local run's watchdog: the state directory deleted or replaced under the run, or
//! the journal truncated or replaced, trips the run's [`StorageFault`] (the outputs and
//! the journal have nowhere to go, or the record lost lines).

use std::time::Duration;

use tokio::task::JoinHandle;

use super::journal::JournalWatch;
use super::state_dir::StateDir;
use super::storage_fault::StorageFault;

/// What the state directory and the journal say now: `Err` with the fault's message
/// when either is no longer the run's.
pub fn check(state: &StateDir, journal: &JournalWatch) -> Result<(), String> {
    if !state.still_in_place() {
        return Err(format!(
            "state directory {} was deleted or replaced while the run was going",
            state.root().display()
        ));
    }
    journal.check()
}

/// Checks every `every` (a tokio task) and trips `fault` on the first failed
/// [`check`], then ends; `on_tick` runs before each check (the run's metrics).
pub fn spawn(
    state: StateDir,
    journal: JournalWatch,
    fault: StorageFault,
    every: Duration,
    on_tick: impl Fn(&StorageFault) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            on_tick(&fault);
            if let Err(e) = check(&state, &journal) {
                fault.trip(e);
                return;
            }
        }
    })
}
