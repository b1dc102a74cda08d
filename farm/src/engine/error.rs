//! The engine's errors.

use std::fmt;

use super::{Revision, TaskId};

/// Why an engine operation failed. Each variant names what it was about (the URL, the
/// run, the subject) and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine URL could not be parsed (`nats://HOST:PORT` is the expected shape).
    #[error("engine URL {url:?} is malformed (expected nats://HOST:PORT): {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// No server answered at the URL within the connect timeout, or it refused.
    #[error("cannot reach the engine at {url}: {reason}")]
    Connect {
        /// The URL as given.
        url: String,
        /// The cause (refused, timed out, ...).
        reason: String,
    },
    /// The server answered but has no JetStream.
    #[error(
        "the NATS server at {url} has no JetStream (start it with `nats-server -js`): {reason}"
    )]
    NoJetStream {
        /// The URL as given.
        url: String,
        /// What the server said (or that nobody answered `$JS.API.INFO`).
        reason: String,
    },
    /// A configuration value broke its rule.
    #[error("engine config: {field} {rule}")]
    Config {
        /// The field (`ack_wait`, `max_deliver`, ...).
        field: &'static str,
        /// The rule it broke.
        rule: &'static str,
    },
    /// The run name cannot name the engine's objects.
    #[error("run name {name:?}: {rule}")]
    RunName {
        /// The name as given.
        name: String,
        /// The rule it broke.
        rule: &'static str,
    },
    /// The run exists with another task list.
    #[error(
        "run {run:?} exists with task-list fingerprint {existing}, not {given}: \
         use the same task list to re-attach, or another run name"
    )]
    Fingerprint {
        /// The run.
        run: String,
        /// The fingerprint the run was created with.
        existing: String,
        /// The fingerprint given now.
        given: String,
    },
    /// The run does not exist (its streams or its definition are missing).
    #[error(
        "no run {run:?} at {url}: a coordinator creates it (`sturdy run TASKS --engine {url} --run {run}`); an agent given --wait-for-run waits for it"
    )]
    NoSuchRun {
        /// The run.
        run: String,
        /// The engine URL.
        url: String,
    },
    /// A request to the server failed (timed out, refused, connection lost).
    #[error("run {run:?}: {op} on {subject} failed: {reason}")]
    Engine {
        /// The run.
        run: String,
        /// The operation (`publish`, `pull`, `direct get`, `ack`, ...).
        op: &'static str,
        /// The subject, stream or consumer it was about.
        subject: String,
        /// The client's or server's complaint.
        reason: String,
    },
    /// A message in the run's streams could not be decoded.
    #[error("run {run:?}: message {sequence} on {subject} is malformed: {reason}")]
    Malformed {
        /// The run.
        run: String,
        /// The message's subject.
        subject: String,
        /// Its stream sequence (0 when unknown).
        sequence: u64,
        /// What was wrong.
        reason: String,
    },
}

/// A compare-and-set write was refused: the task's record is no longer at the expected
/// revision (another writer moved it first). The writer's attempt is stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The task whose record moved on.
    pub task: TaskId,
    /// The revision the writer expected.
    pub expected: Revision,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {}: its record moved on from revision {}",
            self.task.0, self.expected.0
        )
    }
}

impl std::error::Error for Conflict {}
