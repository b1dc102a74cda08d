//! The ledger's statistics: the original's counters plus retries, reassignments and
//! stale results.

/// Counters, with the original design's meanings (its `get_statistics()` keys) and a few
/// more. Every counter is consistent with the events the ledger emitted (see the
/// field docs). Counters saturate at their maximum, never wrap (a restored checkpoint
/// may start them anywhere). Shape: 96 bytes, `Copy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Stats {
    /// Failed attempts: every accepted `task_failed`, plus every running attempt
    /// charged because its worker failed, went silent or let its lease lapse (one
    /// `AttemptFailed` event each). The original's `total_task_failures`.
    pub total_task_failures: u64,
    /// Worker failures: `worker_failed` calls plus detector suspicions (`WorkerFailed`
    /// and `WorkerSuspected` events). The original's `total_worker_failures`.
    pub total_worker_failures: u64,
    /// Tasks failed for good, each counted once (`GaveUp` events). The original's
    /// `failed_tasks` (which it appended to once per extra failure).
    pub failed_tasks: u32,
    /// Workers failed or suspect right now. The original's `failed_workers`.
    pub failed_workers: u32,
    /// Tasks that got at least one more attempt scheduled (by a retry or a requeue).
    /// The original's `tasks_with_retries`.
    pub tasks_with_retries: u32,
    /// Recoveries: workers back from failed or suspect (`WorkerRecovered` events) plus
    /// restores from a checkpoint. The original's `recovery_attempts`.
    pub recovery_attempts: u64,
    /// Retries scheduled after a failed attempt (`RetryScheduled` events).
    pub retries: u64,
    /// Running tasks returned to pending without a result because their worker failed,
    /// went silent, let the lease lapse or was lost in a restore (`Requeued` events).
    pub reassignments: u64,
    /// Results rejected for an old epoch, a finished task or an attempt already
    /// charged (`StaleResult` events).
    pub stale_results_rejected: u64,
    /// Assignments made (`Assigned` events).
    pub assignments: u64,
    /// Tasks succeeded (`Succeeded` events).
    pub succeeded_tasks: u32,
    /// Tasks pending now (waiting for a worker or a retry timer).
    pub pending_tasks: u32,
    /// Tasks running now.
    pub running_tasks: u32,
    /// Workers whose breaker is open now (the original's `circuit_breakers` map, in
    /// counts; per worker see `Ledger::breaker_states`).
    pub breakers_open: u32,
    /// Workers whose breaker is half-open now.
    pub breakers_half_open: u32,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
}
