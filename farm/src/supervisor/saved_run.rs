//! Reading back a run's checkpoint, and building large ledgers.

use sturdy_core::checkpoint::{self, DecodeError};
use sturdy_core::manager::{Ledger, LedgerConfig, TaskState};
use sturdy_core::{Instant, TaskId};

#[cfg(doc)]
use super::Supervisor;

/// What a checkpoint of a run holds, read back by [`read_checkpoint`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedRun {
    /// The checkpoint's generation.
    pub generation: u64,
    /// The caller's payload given to [`Supervisor::enable_checkpoints`].
    pub payload: Vec<u8>,
    /// Each task's state by ledger task id, as restored (running tasks come back
    /// pending, charged one attempt).
    pub states: Vec<TaskState>,
}

/// Decodes and verifies a checkpoint written by a [`Supervisor`] with up to `T` tasks,
/// restores it into a scratch ledger, and returns what it holds.
///
/// # Errors
/// Any [`DecodeError`]: truncated, bit-flipped, wrong version, too many tasks for `T`.
pub fn read_checkpoint<const T: usize>(bytes: &[u8]) -> Result<SavedRun, DecodeError> {
    let saved = checkpoint::decode(bytes)?;
    let mut ledger = boxed_ledger::<1, T>(LedgerConfig::default());
    saved.restore_into(&mut *ledger, Instant::ZERO)?;
    let states = (0..saved.task_count())
        .filter_map(|i| ledger.task(TaskId(i)).map(|v| v.state))
        .collect();
    Ok(SavedRun {
        generation: saved.generation(),
        payload: saved.payload().to_vec(),
        states,
    })
}

/// Builds a boxed ledger on a thread with a stack large enough for the value (a ledger
/// of many tasks is megabytes and is built by value before it is boxed).
pub(super) fn boxed_ledger<const W: usize, const T: usize>(
    config: LedgerConfig,
) -> Box<Ledger<W, T>> {
    let size = size_of::<Ledger<W, T>>();
    if size < 256 * 1024 {
        return Box::new(Ledger::new(config));
    }
    std::thread::Builder::new()
        .name("sturdy-ledger-alloc".into())
        .stack_size(size.saturating_mul(4).saturating_add(4 << 20))
        .spawn(move || Box::new(Ledger::new(config)))
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or_else(|| panic!("cannot allocate a ledger of {size} bytes"))
}
