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
//!   run;
//! - [`process_pool`]: the supervisor's pool of `sturdy worker` children, one per
//!   [`Slot`];
//! - [`resume`]: what a resumed run still has to do, from the journal, the newest
//!   checkpoint and the output files, checked against the task list
//!   ([`TaskCommands`]); [`task_set`] is its bitmap of task numbers;
//! - [`health_gate`]: `--health-gate`, `--load` and `--memfree`: the host's health
//!   sampled and judged for the supervisor;
//! - [`run_book`]: the bookkeeping of a local run, the supervisor's observer: each
//!   attempt journaled, the outcomes for checkpoints, `--halt`, the output files trimmed
//!   as tasks end; what the run prints is the caller's ([`run_book::RunOutput`]);
//! - [`trim`]: what the state directory keeps of a task that ended;
//! - [`watchdog`]: the state directory and the journal checked under a running run;
//! - [`signals`]: SIGINT and SIGTERM escalate the run's stop;
//! - [`todo_feed`]: the tasks a resumed run still has to do, for the supervisor;
//! - [`ledger_settings`]: the run's retry, detection and breaker settings as the core
//!   ledger's config.

/// `eprintln!` that never panics: a closed or broken stderr (`2>&1 | head -1`, a reader
/// that went away) must not stop a run; the journal, not the terminal, is its record.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod error;
mod slot;
mod task_list;

pub mod classify;
pub mod health_gate;
pub mod journal;
pub mod ledger_settings;
pub mod oom;
pub mod process_fence;
pub mod process_pool;
pub mod protocol;
pub mod resume;
pub mod run_book;
pub mod signals;
pub mod state_dir;
pub mod state_lock;
pub mod storage_fault;
pub mod task_set;
pub mod todo_feed;
pub mod trim;
pub mod watchdog;
pub mod worker;

pub use error::{ErrorKind, FarmError};
pub use ledger_settings::{Detector, LedgerSettings};
pub use slot::Slot;
pub use task_list::TaskCommands;
