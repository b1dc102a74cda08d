//! Classification: how a command's end becomes a failure kind.
//!
//! | what the worker saw | kind |
//! |---|---|
//! | exit status 0 | success |
//! | exit status 126 or 127 (`sh`: not executable, not found) | `permanent` (no retry) |
//! | any other non-zero exit status | `evaluation` |
//! | killed by `SIGKILL` while the cgroup's OOM-kill counter rose (see `oom`) | `out_of_memory` |
//! | killed by `SIGKILL` otherwise (someone else killed it) | `unknown` |
//! | killed by another signal (`SIGSEGV`, `SIGABRT`, ...) | `evaluation` |
//! | ran past `--task-timeout` (its process group was killed) | `task_timeout` |
//! | could not be started (`sh` missing) | `unknown` |
//!
//! An output file that cannot be written (full disk, state directory deleted) is no
//! task's failure: it stops the run (see `storage_fault`).
//!
//! A worker process that vanishes (closed pipe) or goes silent past the heartbeat
//! timeout is a `worker_crash`, decided by the supervisor, not here.

use crate::supervisor::Finish;
use sturdy_core::FailureKind;

use crate::local::protocol::Outcome;

const SIGKILL: i32 = 9;

/// The failure kind (or success) of an outcome, with its exit status or signal.
pub fn classify(outcome: &Outcome) -> Finish {
    match *outcome {
        Outcome::Exited(0) => Finish::process(None, Some(0), None),
        Outcome::Exited(code @ (126 | 127)) => {
            Finish::process(Some(FailureKind::Permanent), Some(code), None)
        }
        Outcome::Exited(code) => Finish::process(Some(FailureKind::Evaluation), Some(code), None),
        Outcome::Signaled {
            signal: SIGKILL,
            oom_kill: true,
        } => Finish::process(Some(FailureKind::OutOfMemory), None, Some(SIGKILL)),
        Outcome::Signaled {
            signal: SIGKILL,
            oom_kill: false,
        } => Finish::process(Some(FailureKind::Unknown), None, Some(SIGKILL)),
        Outcome::Signaled { signal, .. } => {
            Finish::process(Some(FailureKind::Evaluation), None, Some(signal))
        }
        Outcome::TimedOut => Finish::process(Some(FailureKind::TaskTimeout), None, Some(SIGKILL)),
        // (The pool stops the run on a storage failure before it would be classified.)
        Outcome::SpawnFailed(_) | Outcome::StorageFailed { .. } => {
            Finish::process(Some(FailureKind::Unknown), None, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let k = |o: Outcome| classify(&o).failure;
        assert_eq!(k(Outcome::Exited(0)), None);
        assert_eq!(k(Outcome::Exited(1)), Some(FailureKind::Evaluation));
        assert_eq!(k(Outcome::Exited(127)), Some(FailureKind::Permanent));
        assert_eq!(
            k(Outcome::Signaled {
                signal: 9,
                oom_kill: true
            }),
            Some(FailureKind::OutOfMemory)
        );
        assert_eq!(
            k(Outcome::Signaled {
                signal: 9,
                oom_kill: false
            }),
            Some(FailureKind::Unknown)
        );
        assert_eq!(
            k(Outcome::Signaled {
                signal: 11,
                oom_kill: false
            }),
            Some(FailureKind::Evaluation)
        );
        assert_eq!(k(Outcome::TimedOut), Some(FailureKind::TaskTimeout));
        assert_eq!(
            k(Outcome::SpawnFailed("x".into())),
            Some(FailureKind::Unknown)
        );
        let f = classify(&Outcome::Exited(3));
        assert_eq!((f.exit, f.signal), (Some(3), None));
    }
}
