//! `--halt`: when a run stops early, with GNU parallel's meaning (`now|soon`,
//! `fail=N|fail=N%|success=N|success=N%|done=N|done=N%`), shared by the local farm and
//! the coordinator of a multi-host run.

/// What `--halt` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaltOn {
    /// Tasks failed for good.
    Fail,
    /// Tasks succeeded.
    Success,
    /// Tasks finished either way.
    Done,
}

/// How many of them stop the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HaltAt {
    /// This many tasks.
    Count(u64),
    /// This percentage (0, 100] of the run's tasks.
    Percent(f64),
}

/// `--halt`: when to stop early.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Halt {
    /// `now` (kill the running tasks) or `soon` (let them finish).
    pub now: bool,
    /// What it counts.
    pub on: HaltOn,
    /// How many of them stop the run.
    pub at: HaltAt,
}

impl Halt {
    /// Whether `count` tasks of `on`'s kind among `total` reach the threshold.
    pub fn reached(&self, count: u64, total: u64) -> bool {
        match self.at {
            HaltAt::Count(n) => count >= n,
            HaltAt::Percent(p) => count as f64 * 100.0 >= p * total as f64,
        }
    }
}
