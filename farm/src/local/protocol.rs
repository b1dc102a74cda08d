//! The framed protocol between the master and its `sturdy worker` processes.
//!
//! Each message travels as one frame: a 4-byte little-endian payload length, then the
//! payload, a postcard encoding of [`ToWorker`] (master to worker, on the worker's stdin)
//! or [`FromWorker`] (worker to master, on the worker's stdout). A frame longer than
//! [`MAX_FRAME`] bytes is refused as corrupt. A closed pipe ends the conversation: the
//! master reads it as a worker crash, the worker as the master's death (it then kills the
//! command it runs and exits).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The largest payload accepted, in bytes (a command line plus paths fits easily).
pub const MAX_FRAME: usize = 1 << 20;

/// An order from the master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run one attempt of a task.
    Run(RunOrder),
    /// Finish: exit once idle.
    Shutdown,
}

/// One attempt to run: what, under which identity, with which limits, output where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrder {
    /// The master's id of the task (echoed in reports).
    pub id: u32,
    /// Task number (from 1), exported as `STURDY_TASK`.
    pub task: u32,
    /// Attempt number (from 1), exported as `STURDY_ATTEMPT`.
    pub attempt: u32,
    /// The ledger's epoch of this attempt; echoed in every report about it.
    pub epoch: u64,
    /// The shell command, run with `sh -c`.
    pub command: String,
    /// Kill the command's process group after this many ms (0: no limit).
    pub timeout_ms: u64,
    /// On a timeout, ms between `SIGTERM` and `SIGKILL` to the group (0: `SIGKILL` at
    /// once).
    pub kill_grace_ms: u64,
    /// Wait this many ms before starting the command (`--delay`); its timeout and
    /// runtime count from the start.
    pub delay_ms: u64,
    /// Run the command under `nice -n` this niceness (`--nice`).
    pub nice: Option<i32>,
    /// Also send the command's output to the master as it comes ([`FromWorker::Output`],
    /// for `--line-buffer`).
    pub stream: bool,
    /// File that receives the command's stdout (created or truncated; the worker
    /// copies the command's stdout pipe into it).
    pub stdout_path: String,
    /// File that receives the command's stderr (created or truncated).
    pub stderr_path: String,
    /// An empty file on `stdout_path`'s file system that the worker hard-links as
    /// `stdout_path` while the command has written nothing to stdout (the file is made
    /// its own at the first byte), so that a quiet attempt allocates no inode: on ext4
    /// without a journal, allocating one costs up to a millisecond of CPU while many
    /// inodes were freed in the last minutes. The worker creates it when it is missing
    /// and replaces it when it has the most links the file system allows. `None`:
    /// `stdout_path` is created.
    pub stdout_blank: Option<String>,
}

/// A report from a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker is up; `pid` is its process id.
    Ready {
        /// The worker's process id.
        pid: u32,
    },
    /// The command of an attempt was spawned as process group `pgid`.
    Started {
        /// The master's id of the task.
        id: u32,
        /// Epoch of the attempt.
        epoch: u64,
        /// The process group of the command (its `sh`'s pid).
        pgid: i32,
    },
    /// The worker is alive (sent every heartbeat interval, busy or idle).
    Heartbeat,
    /// A piece of a streamed command's output, as read from its pipe (at most 64 KiB).
    Output {
        /// The master's id of the task.
        id: u32,
        /// Whether it is stderr (else stdout).
        stderr: bool,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// An attempt ended.
    Finished {
        /// The master's id of the task.
        id: u32,
        /// Epoch of the attempt.
        epoch: u64,
        /// How it ended.
        outcome: Outcome,
        /// Wall time of the command, in ms.
        runtime_ms: u64,
    },
}

/// How a command ended, as the worker saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// It exited with this status (0 is success).
    Exited(i32),
    /// It was killed by this signal. `oom_kill` is true when the cgroup's OOM-kill
    /// counter rose while it ran (see `classify`).
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether the cgroup's `memory.events` `oom_kill` counter rose during the run.
        oom_kill: bool,
    },
    /// It ran past its timeout and its whole process group was killed.
    TimedOut,
    /// It could not be started (`sh` missing, no process left).
    SpawnFailed(String),
    /// The farm's own storage failed: an output file of the state directory could not
    /// be created or written. Not the task's failure; the master stops the run.
    StorageFailed {
        /// The file.
        path: String,
        /// The OS error.
        error: String,
    },
}

/// Writes one frame and flushes.
///
/// # Errors
/// The pipe is closed, or the encoding failed.
pub fn write_frame<W: Write, M: Serialize>(w: &mut W, msg: &M) -> io::Result<()> {
    w.write_all(&encode_frame(msg)?)?;
    w.flush()
}

/// Encodes one frame into bytes (length prefix included).
///
/// # Errors
/// The encoding failed or the frame is too long.
pub fn encode_frame<M: Serialize>(msg: &M) -> io::Result<Vec<u8>> {
    let mut buf = postcard::to_extend(msg, vec![0u8; 4])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Decodes a frame's payload.
///
/// # Errors
/// The payload is not a valid message.
pub fn decode_payload<'a, M: Deserialize<'a>>(payload: &'a [u8]) -> io::Result<M> {
    postcard::from_bytes(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads one frame's payload; `Ok(None)` at a clean end of stream.
///
/// # Errors
/// A truncated frame, an oversized length, or a read error.
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let order = ToWorker::Run(RunOrder {
            id: 6,
            task: 7,
            attempt: 2,
            epoch: 99,
            command: "echo hi".into(),
            timeout_ms: 1500,
            kill_grace_ms: 2000,
            delay_ms: 30,
            nice: Some(5),
            stream: true,
            stdout_path: "/tmp/o".into(),
            stderr_path: "/tmp/e".into(),
            stdout_blank: Some("/tmp/b".into()),
        });
        let mut wire = encode_frame(&order).unwrap();
        wire.extend(encode_frame(&ToWorker::Shutdown).unwrap());
        let mut r = &wire[..];
        let a: ToWorker = decode_payload(&read_frame(&mut r).unwrap().unwrap()).unwrap();
        let b: ToWorker = decode_payload(&read_frame(&mut r).unwrap().unwrap()).unwrap();
        assert_eq!((a, b), (order, ToWorker::Shutdown));
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let msg = FromWorker::Finished {
            id: 1,
            epoch: 2,
            outcome: Outcome::Signaled {
                signal: 9,
                oom_kill: true,
            },
            runtime_ms: 5,
        };
        let wire = encode_frame(&msg).unwrap();
        let mut r = &wire[..wire.len() - 1];
        assert!(read_frame(&mut r).is_err());
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(read_frame(&mut &huge[..]).is_err());
        assert!(decode_payload::<FromWorker>(&[0xff, 0xff]).is_err());
    }
}
