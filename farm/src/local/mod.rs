//! The single-machine farm's parts that are not the supervisor: what the local mode
//! (`sturdy run`) needs around its worker processes.
//!
//! - [`protocol`]: the length-prefixed postcard frames between the master and a
//!   `sturdy worker` child (its stdin and stdout);
//! - [`process_fence`]: the marks every process of a worker carries, and the sweeps that
//!   kill a dead worker's processes before its task runs elsewhere;
//! - [`worker`]: the `sturdy worker` child's loop (runs one command at a time, heartbeats,
//!   reports each attempt's outcome);
//! - [`classify`]: an attempt's outcome as the core's failure kind;
//! - [`journal`]: the append-only journal of every attempt, and its reader;
//! - [`state_dir`] and [`state_lock`]: the run's state directory (identity, journal,
//!   outputs) and the lock that keeps one master per directory; their errors are
//!   [`FarmError`]s;
//! - [`oom`]: the cgroup's OOM-kill counter (v2 `memory.events`, v1 `memory.oom_control`);
//! - [`storage_fault`]: the latch a failure of the farm's own storage trips, stopping the
//!   run.
//!
//! The process pool and resume planning are still in the `sturdy` CLI and move here next.

mod error;

pub mod classify;
pub mod journal;
pub mod oom;
pub mod process_fence;
pub mod protocol;
pub mod state_dir;
pub mod state_lock;
pub mod storage_fault;
pub mod worker;

pub use error::{ErrorKind, FarmError};
