//! A task's output on its way from the host that ran it to the coordinator.
//!
//! When an attempt's end is final for its task (done, or given up) and the command
//! printed something, the host agent publishes what it printed as [`OutputChunk`]s
//! ([`Engine::put_output`](super::Engine::put_output)) **before** it writes the
//! attempt's `ended` record, and marks the record with an [`OutputMark`]
//! ([`Ended::output`](super::Ended::output)). The coordinator fetches the chunks of a
//! task whose final record carries a mark
//! ([`Engine::get_output`](super::Engine::get_output)); a quiet task (nothing printed)
//! costs no engine message at all.
//!
//! Limits: a chunk carries at most [`CHUNK_BYTES`] (256 KiB) of one stream; one task
//! ships at most [`TASK_OUTPUT_CAP`] (64 MiB, stdout and stderr together, stdout first);
//! what is past the cap is not shipped and stays whole in the host's files, and the mark
//! says so ([`OutputMark::truncated`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::TaskId;

/// The most bytes of one stream one [`OutputChunk`] carries: 256 KiB (well under the
/// NATS server's default `max_payload` of 1 MiB).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The most bytes of output one task ships to the coordinator, stdout and stderr
/// together (stdout first): 64 MiB. More is cut; the host keeps the whole files.
pub const TASK_OUTPUT_CAP: u64 = 64 << 20;

/// Which of an attempt's streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
}

impl Channel {
    /// `stdout` or `stderr` (the header value and the file suffix's stem).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    /// The channel `stdout` or `stderr` names; `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// One piece of an attempt's output in the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    /// The task.
    pub task: TaskId,
    /// The attempt that printed it (its claim's attempt number, from 1).
    pub attempt: u32,
    /// The epoch of that attempt's claim (with the attempt, it names the attempt even
    /// after a reopening restarted attempt numbers).
    pub epoch: u64,
    /// Stdout or stderr.
    pub channel: Channel,
    /// The chunk's index within its channel, from 0.
    pub index: u32,
    /// Whether it is the channel's last chunk.
    pub last: bool,
    /// The bytes, at most [`CHUNK_BYTES`].
    pub data: Bytes,
}

/// What an `ended` record says about its attempt's output
/// ([`Ended::output`](super::Ended::output)): present only when the attempt printed
/// something and its end was final for the task.
///
/// JSON: `{"stdout":12,"stderr":0,"from":345,"path":"/var/agent/out/3.1"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputMark {
    /// Bytes the attempt printed to stdout (all of them, on the host).
    #[serde(default)]
    pub stdout: u64,
    /// Bytes it printed to stderr.
    #[serde(default)]
    pub stderr: u64,
    /// The engine's position of the first chunk shipped (chunks of this task come at or
    /// after it); `None` when nothing was shipped (see [`OutputMark::error`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Whether less than everything was shipped: the output passed
    /// [`TASK_OUTPUT_CAP`]; the host keeps the whole files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The files on the host, without the suffix: `PATH.out` and `PATH.err` (a stream
    /// that printed nothing has no file).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Why nothing was shipped (the engine keeps no output, a publish failed); empty
    /// when shipped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl OutputMark {
    /// How many bytes of `channel` were shipped: everything printed, less what the
    /// [`TASK_OUTPUT_CAP`] cut (stdout comes first).
    pub fn shipped(&self, channel: Channel) -> u64 {
        let out = self.stdout.min(TASK_OUTPUT_CAP);
        match channel {
            Channel::Stdout => out,
            Channel::Stderr => self.stderr.min(TASK_OUTPUT_CAP - out),
        }
    }
}

/// Where [`Engine::get_output`](super::Engine::get_output) puts the chunks it fetches,
/// in order: each channel's bytes, a chunk at a time (so that a task's output is never
/// held whole in memory).
pub type OutputSink<'a> = dyn FnMut(Channel, &[u8]) + Send + 'a;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_cuts_stdout_first_then_stderr() {
        let mark = |stdout, stderr| OutputMark {
            stdout,
            stderr,
            ..OutputMark::default()
        };
        let m = mark(10, 20);
        assert_eq!(
            (m.shipped(Channel::Stdout), m.shipped(Channel::Stderr)),
            (10, 20)
        );
        let m = mark(TASK_OUTPUT_CAP - 5, 20);
        assert_eq!(
            (m.shipped(Channel::Stdout), m.shipped(Channel::Stderr)),
            (TASK_OUTPUT_CAP - 5, 5)
        );
        let m = mark(TASK_OUTPUT_CAP + 1, 20);
        assert_eq!(
            (m.shipped(Channel::Stdout), m.shipped(Channel::Stderr)),
            (TASK_OUTPUT_CAP, 0)
        );
    }

    #[test]
    fn marks_are_small_json_and_channels_round_trip() {
        let m = OutputMark {
            stdout: 12,
            from: Some(345),
            path: "/a/out/3.1".into(),
            ..OutputMark::default()
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"stdout":12,"stderr":0,"from":345,"path":"/a/out/3.1"}"#
        );
        assert_eq!(serde_json::from_str::<OutputMark>(&json).unwrap(), m);
        for c in [Channel::Stdout, Channel::Stderr] {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("x"), None);
    }
}
