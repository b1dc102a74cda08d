//! What the engine stores: a task's record and the run's definition.
//!
//! Both are JSON in the message body (readable with `nats stream get`), tagged by
//! `"record"`, field names in snake_case, durations in milliseconds. Optional fields may be
//! left out when read, so later versions can add fields without breaking older readers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::output::OutputMark;

/// One entry of a task's history; the newest one is the task's record.
///
/// The engine stores and orders records; what a transition means (may this delivery
/// claim, is this claim still ours, did the task end) is decided by the core.
///
/// JSON: `{"record":"claimed","attempt":1,"epoch":1,"host":"h0","slot":"gpu:0"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Record {
    /// An attempt took the task: the slot `host`/`slot` runs it now.
    Claimed(Claim),
    /// An attempt ended: the task is done, waits for a retry, or was given up.
    Ended(Ended),
    /// An attempt was found stale: its lease lapsed or its record moved on. Written with
    /// compare-and-set onto the task's record by whoever reconciles, or as a journal note
    /// ([`Engine::note`](super::Engine::note)) by the attempt that found itself stale.
    Stale(Stale),
    /// The task was reopened (`--retry-failed`) and re-enqueued under `generation`.
    Reopened {
        /// The generation of the new work message (see [`Generation`](super::Generation)).
        generation: u64,
    },
}

/// The body of [`Record::Claimed`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Which attempt this is, from 1: claims so far, including this one. Attempts count
    /// claims, not deliveries; a delivery that never claimed is never charged.
    pub attempt: u32,
    /// The engine's delivery count of the work message that was claimed
    /// ([`Delivery::epoch`](super::Delivery::epoch)), from 1.
    pub epoch: u64,
    /// The host agent's name.
    pub host: String,
    /// The slot on that host (`gpu:0`, `cpu`, `3`).
    pub slot: String,
    /// The core's count of claims lost with their worker (charged as crashes) up to and
    /// including this record; 0 when left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crashes: u32,
    /// The core's count of claims that ended in the task's own failure up to and
    /// including this record; 0 when left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub own_failures: u32,
}

/// How an attempt ended, in [`Ended::outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The task succeeded; this is its single success record.
    Done,
    /// The attempt failed and the core chose to retry after [`Ended::next_ms`].
    Retry,
    /// The attempt failed and the core gave the task up.
    GaveUp,
}

/// The body of [`Record::Ended`]: the journal's columns for one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// The attempt that ended (as in its [`Claim::attempt`]).
    pub attempt: u32,
    /// The epoch of its claim ([`Claim::epoch`]).
    pub epoch: u64,
    /// The host agent's name.
    pub host: String,
    /// The slot on that host.
    pub slot: String,
    /// Done, retry or gave up.
    pub outcome: Outcome,
    /// The failure kind as the journal names it (`exit`, `signal`, `timeout`,
    /// `worker_crash`, ...); empty for a success.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The command's exit status, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// The signal that ended the command, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// How long the attempt ran, in milliseconds (the host's monotonic clock).
    #[serde(default)]
    pub runtime_ms: u64,
    /// For [`Outcome::Retry`]: the delay before the next attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ms: Option<u64>,
    /// Free text for the journal: the output path and the tail of stderr. Keep it small
    /// (a few KiB); the server's `max_payload` (1 MiB by default) bounds the whole record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The core's count of claims lost with their worker (charged as crashes) up to and
    /// including this record; 0 when left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crashes: u32,
    /// The core's count of claims that ended in the task's own failure up to and
    /// including this record; 0 when left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub own_failures: u32,
    /// The attempt's output, when its end is final for the task (done or given up) and
    /// it printed something: how much, and where the engine holds it (see
    /// [`super::output`]). `None`: nothing to fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Box<OutputMark>>,
}

/// The body of [`Record::Stale`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stale {
    /// The attempt found stale.
    pub attempt: u32,
    /// The epoch of its claim.
    pub epoch: u64,
    /// Its host agent's name.
    pub host: String,
    /// Its slot.
    pub slot: String,
    /// Why (`lease lapsed`, `record moved on`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The core's count of claims lost with their worker (charged as crashes) up to and
    /// including this record; 0 when left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crashes: u32,
    /// The core's count of claims that ended in the task's own failure up to and
    /// including this record; 0 when left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub own_failures: u32,
}

/// A run's definition, written once when the run is created.
///
/// JSON: `{"fingerprint":"…","tasks":200,"settings":{"max_attempts":"3"}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    /// The task list's fingerprint: a run name holds one task list for good; creating it
    /// again with another fingerprint is refused.
    pub fingerprint: String,
    /// How many tasks the list holds.
    pub tasks: u32,
    /// The run's settings (max attempts, backoff, timeouts, seed), as name → value text.
    /// Not compared when the run is opened again; the fingerprint is.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_tagged_json_in_snake_case() {
        let claimed = Record::Claimed(Claim {
            attempt: 2,
            epoch: 3,
            host: "h0".into(),
            slot: "gpu:0".into(),
            crashes: 0,
            own_failures: 0,
        });
        assert_eq!(
            serde_json::to_string(&claimed).unwrap(),
            r#"{"record":"claimed","attempt":2,"epoch":3,"host":"h0","slot":"gpu:0"}"#
        );
        let ended = Record::Ended(Ended {
            attempt: 2,
            epoch: 3,
            host: "h0".into(),
            slot: "gpu:0".into(),
            outcome: Outcome::GaveUp,
            kind: "worker_crash".into(),
            exit: None,
            signal: Some(9),
            runtime_ms: 1500,
            next_ms: None,
            detail: String::new(),
            crashes: 0,
            own_failures: 0,
            output: None,
        });
        let text = serde_json::to_string(&ended).unwrap();
        assert_eq!(
            text,
            r#"{"record":"ended","attempt":2,"epoch":3,"host":"h0","slot":"gpu:0","outcome":"gave_up","kind":"worker_crash","signal":9,"runtime_ms":1500}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), ended);
        assert_eq!(
            serde_json::to_string(&Record::Reopened { generation: 4 }).unwrap(),
            r#"{"record":"reopened","generation":4}"#
        );
    }

    #[test]
    fn optional_fields_may_be_left_out() {
        let text =
            r#"{"record":"ended","attempt":1,"epoch":1,"host":"h","slot":"0","outcome":"done"}"#;
        let Record::Ended(ended) = serde_json::from_str(text).unwrap() else {
            panic!("not an ended record");
        };
        assert_eq!(ended.outcome, Outcome::Done);
        assert_eq!(ended.kind, "");
        assert_eq!(
            (ended.exit, ended.signal, ended.next_ms),
            (None, None, None)
        );
        assert_eq!(ended.runtime_ms, 0);
    }
}
