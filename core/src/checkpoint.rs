//! Checkpoints: a snapshot of a [`Ledger`](crate::manager::Ledger) plus the caller's
//! own bytes, framed so that any damage is detected, and when to take one.
//!
//! The original design (MorphML's `CheckpointManager`) pickled the optimizer's state
//! every 10 generations (`should_checkpoint(g) = g % interval == 0`, generation 0
//! included, interval 0 crashed) and swallowed restore errors. Here the interval is
//! validated ([`CheckpointInterval`]), and with the `postcard` feature a checkpoint is:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"STCK"` |
//! | 4 | 2 | format version, little-endian ([`FORMAT_VERSION`]) |
//! | 6 | 2 | flags, zero |
//! | 8 | 4 | body length in bytes, little-endian (at most [`MAX_BODY_LEN`]) |
//! | 12 | 4 | CRC-32 (ISO-HDLC, the zlib/PNG one) of bytes 0..12 and of the body, little-endian |
//! | 16 | n | body: postcard (generation, counters, task count, payload length), the payload bytes, then one postcard record per task |
//!
//! `encode` writes into the caller's buffer (no allocation) and returns the length;
//! `decode` checks the frame, the CRC and every record before anything is restored,
//! and returns a typed [`DecodeError`] for truncated, bit-flipped, wrong-magic,
//! wrong-version, oversized or malformed input; it never panics.
//! `Checkpoint::restore_into` then replaces a ledger's tasks and counters: finished
//! tasks stay finished (a restored ledger never runs a succeeded task again), running
//! tasks go back to pending charged one attempt of the retry policy (their workers died
//! with the process), and the generation to run next is the saved one plus one. A
//! checkpoint does not keep the tasks' crash counters
//! ([`TaskView::crashes`](crate::manager::TaskView::crashes)): a restored task's crash
//! count starts at 0.
//!
//! ```
//! # #[cfg(feature = "postcard")] {
//! use sturdy_core::Instant;
//! use sturdy_core::checkpoint::{self, CheckpointInterval};
//! use sturdy_core::manager::{Ledger, LedgerConfig, TaskState};
//!
//! let every = CheckpointInterval::new(10)?;
//! assert!(every.should_checkpoint(0) && every.should_checkpoint(20) && !every.should_checkpoint(5));
//!
//! let mut ledger: Ledger<2, 8> = Ledger::default();
//! let w = ledger.add_worker(1, Instant::ZERO).unwrap();
//! let t0 = ledger.add_task(Instant::ZERO).unwrap();
//! let t1 = ledger.add_task(Instant::ZERO).unwrap();
//! let a = ledger.assign(Instant::ZERO).unwrap();
//! ledger.task_succeeded(a.task, a.epoch, Instant::ZERO).unwrap();
//!
//! let mut buf = [0u8; 1024];
//! let n = checkpoint::encode(&ledger, 20, b"optimizer state", &mut buf)?;
//!
//! // After a crash: a fresh process, a fresh ledger.
//! let saved = checkpoint::decode(&buf[..n])?;
//! assert_eq!((saved.generation(), saved.next_generation()), (20, 21));
//! assert_eq!(saved.payload(), b"optimizer state");
//! let mut restored: Ledger<2, 8> = Ledger::default();
//! saved.restore_into(&mut restored, Instant::ZERO)?;
//! assert_eq!(restored.task(t0).unwrap().state, TaskState::Succeeded);
//! assert_eq!(restored.task(t1).unwrap().state, TaskState::Pending);
//!
//! // One flipped bit is caught.
//! buf[40] ^= 1;
//! assert!(checkpoint::decode(&buf[..n]).is_err());
//! # let _ = w;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::error::ConfigError;

/// How often to checkpoint: every `every` generations, generation 0 included (the
/// original's `should_checkpoint`, default 10). Shape: one `u64`.
///
/// Deserializing (feature `serde`) checks the rules of the constructors: a value no
/// constructor would build is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "CheckpointIntervalUnchecked"))]
pub struct CheckpointInterval {
    every: u64,
}

impl CheckpointInterval {
    /// Every `every` generations.
    ///
    /// # Errors
    /// `every` of zero (the original divided by it and crashed).
    pub const fn new(every: u64) -> Result<Self, ConfigError> {
        if every == 0 {
            return Err(ConfigError::new("checkpoint_interval", "must be >= 1"));
        }
        Ok(Self { every })
    }

    /// Whether to checkpoint after `generation`: `generation % every == 0`.
    #[inline]
    pub const fn should_checkpoint(&self, generation: u64) -> bool {
        generation.is_multiple_of(self.every)
    }

    /// The interval in generations.
    pub const fn every(&self) -> u64 {
        self.every
    }
}

impl Default for CheckpointInterval {
    /// The original's 10 generations.
    fn default() -> Self {
        Self { every: 10 }
    }
}

/// The serialized shape of [`CheckpointInterval`], checked on the way in.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct CheckpointIntervalUnchecked {
    every: u64,
}

#[cfg(feature = "serde")]
impl TryFrom<CheckpointIntervalUnchecked> for CheckpointInterval {
    type Error = ConfigError;
    fn try_from(u: CheckpointIntervalUnchecked) -> Result<Self, ConfigError> {
        Self::new(u.every)
    }
}

/// The frame's magic number, the first four bytes of every checkpoint.
pub const MAGIC: [u8; 4] = *b"STCK";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The frame header's length in bytes.
pub const HEADER_LEN: usize = 16;
/// The largest body accepted (256 MiB): a length field above it is rejected as
/// oversized before anything is read.
pub const MAX_BODY_LEN: u32 = 256 * 1024 * 1024;
/// The most bytes one task's record takes (a bound; typical records take 3 to 30).
pub const MAX_TASK_RECORD_LEN: usize = 96;
/// The most bytes the body's fixed part takes (generation, counters, lengths).
pub const MAX_BODY_HEADER_LEN: usize = 192;

/// A buffer size that always fits a checkpoint of `tasks` tasks and a payload of
/// `payload` bytes.
pub const fn max_encoded_len(tasks: usize, payload: usize) -> usize {
    HEADER_LEN + MAX_BODY_HEADER_LEN + payload + tasks * MAX_TASK_RECORD_LEN
}

/// Why a checkpoint could not be written. Nothing useful is in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The buffer is too small; `needed` bytes always suffice
    /// ([`max_encoded_len`]).
    BufferTooSmall {
        /// A size that suffices.
        needed: usize,
        /// The buffer's size.
        got: usize,
    },
    /// The body would exceed [`MAX_BODY_LEN`].
    TooLarge {
        /// The body's length in bytes (at least).
        len: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed, got } => write!(
                f,
                "checkpoint buffer too small: {got} bytes, {needed} always suffice"
            ),
            Self::TooLarge { len } => write!(
                f,
                "checkpoint body of {len} bytes exceeds the {MAX_BODY_LEN}-byte limit"
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why bytes are not a usable checkpoint. Nothing was restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header or the length field says.
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The first four bytes are not [`MAGIC`]: not a checkpoint.
    BadMagic,
    /// Written by another format version.
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// Unknown flags are set.
    UnsupportedFlags(u16),
    /// The length field exceeds [`MAX_BODY_LEN`].
    Oversized {
        /// The length field.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// More bytes than the frame holds.
    TrailingBytes {
        /// Bytes after the frame.
        extra: usize,
    },
    /// The CRC does not match: the bytes were damaged.
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The CRC matches but the body does not parse (a bug or a forgery).
    Malformed,
    /// The checkpoint holds more tasks than the ledger it is restored into.
    TooManyTasks {
        /// Tasks in the checkpoint.
        tasks: u32,
        /// The ledger's capacity.
        capacity: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, got } => {
                write!(f, "checkpoint truncated: {got} bytes of {needed}")
            }
            Self::BadMagic => f.write_str("not a checkpoint (bad magic number)"),
            Self::UnsupportedVersion { found, supported } => write!(
                f,
                "checkpoint format version {found} is not supported (this build reads {supported})"
            ),
            Self::UnsupportedFlags(flags) => write!(f, "checkpoint has unknown flags {flags:#06x}"),
            Self::Oversized { len, max } => {
                write!(
                    f,
                    "checkpoint body of {len} bytes exceeds the {max}-byte limit"
                )
            }
            Self::TrailingBytes { extra } => {
                write!(f, "checkpoint followed by {extra} unexpected bytes")
            }
            Self::CrcMismatch { stored, computed } => write!(
                f,
                "checkpoint damaged: CRC-32 {computed:#010x} does not match the stored {stored:#010x}"
            ),
            Self::Malformed => f.write_str("checkpoint body is malformed"),
            Self::TooManyTasks { tasks, capacity } => write!(
                f,
                "checkpoint holds {tasks} tasks, the ledger only {capacity}"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

#[cfg(feature = "postcard")]
pub use codec::{Checkpoint, Resume, decode, encode};

#[cfg(feature = "postcard")]
mod codec {
    use super::*;
    use crate::manager::snapshot::TaskRecord;
    use crate::manager::{Ledger, Restored, Stats};
    use crate::time::Instant;

    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

    /// The body's fixed part. Any change here, in `Stats`, in the task record or in the
    /// types it holds (`RetryState`, `FailureKind`) changes the format: bump
    /// [`FORMAT_VERSION`] (a test pins version 1's bytes).
    #[derive(serde::Serialize, serde::Deserialize)]
    struct BodyHeader {
        generation: u64,
        stats: Stats,
        task_count: u32,
        payload_len: u32,
    }

    /// Writes a checkpoint of `ledger` after `generation`, with the caller's `payload`
    /// (for example the optimizer's state), into `buf`; returns the bytes written.
    /// O(tasks); no allocation.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] (size the buffer with [`max_encoded_len`]),
    /// [`EncodeError::TooLarge`].
    pub fn encode<
        const WORKERS: usize,
        const TASKS: usize,
        const EVENTS: usize,
        const HISTORY: usize,
    >(
        ledger: &Ledger<WORKERS, TASKS, EVENTS, HISTORY>,
        generation: u64,
        payload: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let tasks = ledger.task_count();
        let too_small = EncodeError::BufferTooSmall {
            needed: max_encoded_len(tasks, payload.len()),
            got: buf.len(),
        };
        let Ok(payload_len) = u32::try_from(payload.len()) else {
            return Err(EncodeError::TooLarge { len: payload.len() });
        };
        if buf.len() < HEADER_LEN {
            return Err(too_small);
        }
        let header = BodyHeader {
            generation,
            stats: ledger.saved_stats(),
            task_count: tasks as u32,
            payload_len,
        };
        let mut pos = HEADER_LEN;
        pos += postcard::to_slice(&header, &mut buf[pos..])
            .map_err(|_| too_small)?
            .len();
        let end = pos + payload.len();
        if end > buf.len() {
            return Err(too_small);
        }
        buf[pos..end].copy_from_slice(payload);
        pos = end;
        for i in 0..tasks {
            let rec = ledger.task_record(i);
            pos += postcard::to_slice(&rec, &mut buf[pos..])
                .map_err(|_| too_small)?
                .len();
        }
        let body_len = pos - HEADER_LEN;
        if body_len > MAX_BODY_LEN as usize {
            return Err(EncodeError::TooLarge { len: body_len });
        }
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf[6..8].copy_from_slice(&0u16.to_le_bytes());
        buf[8..12].copy_from_slice(&(body_len as u32).to_le_bytes());
        let mut digest = CRC.digest();
        digest.update(&buf[0..12]);
        digest.update(&buf[HEADER_LEN..pos]);
        buf[12..16].copy_from_slice(&digest.finalize().to_le_bytes());
        Ok(pos)
    }

    /// Checks `bytes` (exactly one checkpoint: frame, CRC, every record) and returns a
    /// view of it. Restores nothing.
    ///
    /// # Errors
    /// Every [`DecodeError`] but `TooManyTasks`; checked in this order: truncated
    /// header, magic, version, flags, oversized length, truncated body, trailing bytes,
    /// CRC, body structure.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint<'_>, DecodeError> {
        if bytes.len() < HEADER_LEN {
            // Say "bad magic" early for short inputs that are clearly not ours.
            let n = bytes.len().min(4);
            if bytes[..n] != MAGIC[..n] {
                return Err(DecodeError::BadMagic);
            }
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        if bytes[0..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags != 0 {
            return Err(DecodeError::UnsupportedFlags(flags));
        }
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if len > MAX_BODY_LEN {
            return Err(DecodeError::Oversized {
                len,
                max: MAX_BODY_LEN,
            });
        }
        let total = HEADER_LEN + len as usize;
        if bytes.len() < total {
            return Err(DecodeError::Truncated {
                needed: total,
                got: bytes.len(),
            });
        }
        if bytes.len() > total {
            return Err(DecodeError::TrailingBytes {
                extra: bytes.len() - total,
            });
        }
        let stored = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let mut digest = CRC.digest();
        digest.update(&bytes[0..12]);
        digest.update(&bytes[HEADER_LEN..total]);
        let computed = digest.finalize();
        if stored != computed {
            return Err(DecodeError::CrcMismatch { stored, computed });
        }
        let body = &bytes[HEADER_LEN..total];
        let (header, rest): (BodyHeader, _) =
            postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed)?;
        let payload_len = header.payload_len as usize;
        if rest.len() < payload_len {
            return Err(DecodeError::Malformed);
        }
        let (payload, records) = rest.split_at(payload_len);
        // Every record must parse and be consistent, and nothing may follow them.
        let mut left = records;
        for _ in 0..header.task_count {
            let (rec, tail): (TaskRecord, _) =
                postcard::take_from_bytes(left).map_err(|_| DecodeError::Malformed)?;
            if !rec.is_valid() {
                return Err(DecodeError::Malformed);
            }
            left = tail;
        }
        if !left.is_empty() {
            return Err(DecodeError::Malformed);
        }
        Ok(Checkpoint {
            generation: header.generation,
            stats: header.stats,
            task_count: header.task_count,
            payload,
            records,
        })
    }

    /// A checked checkpoint (from [`decode`]): its generation, payload and ledger
    /// snapshot, borrowed from the input bytes.
    #[derive(Clone, Copy, Debug)]
    pub struct Checkpoint<'a> {
        generation: u64,
        stats: Stats,
        task_count: u32,
        payload: &'a [u8],
        records: &'a [u8],
    }

    /// What [`Checkpoint::restore_into`] did, and where to resume.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct Resume {
        /// The generation to run next: the saved one plus one.
        pub next_generation: u64,
        /// The tasks restored.
        pub tasks: Restored,
    }

    impl<'a> Checkpoint<'a> {
        /// The generation the checkpoint was taken after.
        pub const fn generation(&self) -> u64 {
            self.generation
        }

        /// The generation to run next (saturating).
        pub const fn next_generation(&self) -> u64 {
            self.generation.saturating_add(1)
        }

        /// The caller's bytes, as given to [`encode`].
        pub const fn payload(&self) -> &'a [u8] {
            self.payload
        }

        /// Tasks in the snapshot.
        pub const fn task_count(&self) -> u32 {
            self.task_count
        }

        /// The counters as saved.
        pub const fn stats(&self) -> &Stats {
            &self.stats
        }

        /// Replaces `ledger`'s tasks and counters with the snapshot's, at `now`
        /// (task ids are kept). Succeeded and failed tasks stay finished; pending tasks
        /// are runnable at once (retry timers do not survive a restart of the clock);
        /// running tasks go back to pending, each charged one attempt of kind
        /// `WorkerCrash` (events `AttemptFailed` and `Requeued`, reason `Restored`, or
        /// `GaveUp`). Registered workers stay, with nothing running; counts one
        /// recovery attempt. Events queued before are dropped.
        ///
        /// # Errors
        /// [`DecodeError::TooManyTasks`] when the ledger is smaller than the snapshot;
        /// the ledger is then unchanged.
        pub fn restore_into<
            const WORKERS: usize,
            const TASKS: usize,
            const EVENTS: usize,
            const HISTORY: usize,
        >(
            &self,
            ledger: &mut Ledger<WORKERS, TASKS, EVENTS, HISTORY>,
            now: Instant,
        ) -> Result<Resume, DecodeError> {
            if self.task_count as usize > TASKS {
                return Err(DecodeError::TooManyTasks {
                    tasks: self.task_count,
                    capacity: TASKS,
                });
            }
            let records = Records {
                left: self.records,
                remaining: self.task_count,
            };
            let tasks = ledger.restore_records(&self.stats, records, now);
            Ok(Resume {
                next_generation: self.next_generation(),
                tasks,
            })
        }
    }

    /// The records of a checked body (parsing cannot fail: `decode` checked them).
    #[derive(Clone)]
    struct Records<'a> {
        left: &'a [u8],
        remaining: u32,
    }

    impl Iterator for Records<'_> {
        type Item = TaskRecord;
        fn next(&mut self) -> Option<TaskRecord> {
            if self.remaining == 0 {
                return None;
            }
            let (rec, tail) = postcard::take_from_bytes::<TaskRecord>(self.left).ok()?;
            self.left = tail;
            self.remaining -= 1;
            Some(rec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_should_checkpoint_every_10_including_0() {
        let every = CheckpointInterval::default();
        assert_eq!(every.every(), 10);
        for g in [0, 10, 20] {
            assert!(every.should_checkpoint(g), "generation {g}");
        }
        for g in [5, 15, 1, 19] {
            assert!(!every.should_checkpoint(g), "generation {g}");
        }
        let e = CheckpointInterval::new(0).unwrap_err();
        assert_eq!(
            (e.field(), e.rule()),
            ("checkpoint_interval", "must be >= 1")
        );
        let three = CheckpointInterval::new(3).unwrap();
        assert!(three.should_checkpoint(3_000_000_021));
        assert!(!three.should_checkpoint(4));
    }

    #[test]
    fn errors_render_clearly() {
        use std::string::ToString;
        assert_eq!(
            DecodeError::Truncated { needed: 16, got: 3 }.to_string(),
            "checkpoint truncated: 3 bytes of 16"
        );
        assert_eq!(
            DecodeError::UnsupportedVersion {
                found: 9,
                supported: 1
            }
            .to_string(),
            "checkpoint format version 9 is not supported (this build reads 1)"
        );
        assert_eq!(
            DecodeError::CrcMismatch {
                stored: 1,
                computed: 0xdead_beef
            }
            .to_string(),
            "checkpoint damaged: CRC-32 0xdeadbeef does not match the stored 0x00000001"
        );
    }

    #[cfg(feature = "postcard")]
    mod codec {
        use super::super::*;
        use crate::manager::snapshot::{SavedState, TaskRecord};
        use crate::manager::{Event, Ledger, LedgerConfig, RequeueReason, Stats, TaskState};
        use crate::retry::{RetryState, fixed_policy};
        use crate::{FailureKind, Instant, TaskId, WorkerId};
        use core::time::Duration;
        use std::vec;
        use std::vec::Vec;

        type L = Ledger<4, 16>;

        fn secs(s: u64) -> Instant {
            Instant::from_secs(s)
        }

        /// Task 0 succeeded, 1 failed for good, 2 pending after a retry, 3 running,
        /// 4 never assigned.
        fn sample() -> L {
            let cfg =
                LedgerConfig::new(fixed_policy(2, Duration::from_secs(1)).unwrap()).with_seed(7);
            let mut l = L::new(cfg);
            let w0 = l.add_worker(3, secs(0)).unwrap();
            let _w1 = l.add_worker(1, secs(0)).unwrap();
            for _ in 0..5 {
                l.add_task(secs(0)).unwrap();
            }
            let a: Vec<_> = (0..4).map(|_| l.assign(secs(0)).unwrap()).collect();
            assert_eq!(a.iter().map(|a| a.task.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
            l.task_succeeded(TaskId(0), 1, secs(1)).unwrap();
            l.task_failed(TaskId(1), 1, FailureKind::Permanent, secs(1))
                .unwrap();
            l.task_failed(TaskId(2), 1, FailureKind::Network, secs(1))
                .unwrap();
            assert_eq!(a[3].worker, w0);
            l
        }

        fn encode_vec(l: &L, generation: u64, payload: &[u8]) -> Vec<u8> {
            let mut buf = vec![0u8; max_encoded_len(l.task_count(), payload.len())];
            let n = encode(l, generation, payload, &mut buf).unwrap();
            buf.truncate(n);
            buf
        }

        #[test]
        fn crash_counts_are_not_saved_and_restart_at_zero() {
            // A task that crashed twice, then is running at the checkpoint: restored, it
            // keeps its epoch and its own attempts, its crash count starts at 0, and the
            // lost run is charged to the retry policy (not counted as a crash).
            let cfg = LedgerConfig::new(fixed_policy(2, Duration::from_secs(1)).unwrap())
                .with_crashes_open_breaker(false);
            let mut l = L::new(cfg);
            let w = l.add_worker(1, secs(0)).unwrap();
            let t = l.add_task(secs(0)).unwrap();
            for n in 1..=2 {
                l.worker_recovered(w, secs(n)).unwrap();
                assert_eq!(l.assign(secs(n)).unwrap().epoch, n as u32);
                l.worker_failed(w, FailureKind::WorkerCrash, secs(n))
                    .unwrap();
            }
            l.worker_recovered(w, secs(3)).unwrap();
            assert_eq!(l.assign(secs(3)).unwrap().epoch, 3);
            assert_eq!(l.task(t).unwrap().crashes, 2);
            let bytes = encode_vec(&l, 0, &[]);
            let mut r = L::new(cfg);
            let w = r.add_worker(1, secs(10)).unwrap();
            let resume = decode(&bytes)
                .unwrap()
                .restore_into(&mut r, secs(10))
                .unwrap();
            assert_eq!(resume.tasks.requeued, 1);
            let v = r.task(t).unwrap();
            assert_eq!((v.state, v.epoch, v.crashes), (TaskState::Pending, 3, 0));
            // The restore used the second and last own attempt: an own failure ends it.
            let a = r.assign(secs(10)).unwrap();
            assert_eq!((a.worker, a.epoch), (w, 4));
            assert_eq!(
                r.task_failed(t, 4, FailureKind::Evaluation, secs(11)),
                Ok(crate::retry::Decision::GiveUp(
                    crate::retry::GiveUpReason::AttemptsExhausted { attempts: 2 }
                ))
            );
        }

        #[test]
        fn round_trip_restores_every_task_and_never_reruns_a_success() {
            let l = sample();
            let bytes = encode_vec(&l, 41, b"optimizer");
            assert_eq!(&bytes[0..4], b"STCK");
            assert_eq!(&bytes[4..6], &[1, 0]);
            let cp = decode(&bytes).unwrap();
            assert_eq!(
                (
                    cp.generation(),
                    cp.next_generation(),
                    cp.payload(),
                    cp.task_count()
                ),
                (41, 42, &b"optimizer"[..], 5)
            );
            assert_eq!(cp.stats(), &l.stats());

            let mut r = L::new(*l.config());
            let w = r.add_worker(2, secs(100)).unwrap();
            let resume = cp.restore_into(&mut r, secs(100)).unwrap();
            assert_eq!(resume.next_generation, 42);
            let t = resume.tasks;
            assert_eq!(
                (t.tasks, t.succeeded, t.failed, t.pending, t.requeued),
                (5, 1, 1, 3, 1)
            );
            let states: Vec<_> = (0..5).map(|i| r.task(TaskId(i)).unwrap().state).collect();
            assert_eq!(
                states,
                [
                    TaskState::Succeeded,
                    TaskState::Failed,
                    TaskState::Pending,
                    TaskState::Pending,
                    TaskState::Pending
                ]
            );
            // The running task was charged: its lost attempt 1 counts.
            let evs: Vec<_> = core::iter::from_fn(|| r.poll_event()).collect();
            assert_eq!(
                evs,
                [
                    Event::AttemptFailed {
                        task: TaskId(3),
                        worker: Some(WorkerId(0)),
                        epoch: 1,
                        attempt: 1,
                        kind: FailureKind::WorkerCrash,
                        at: secs(100)
                    },
                    Event::Requeued {
                        task: TaskId(3),
                        worker: WorkerId(0),
                        epoch: 1,
                        reason: RequeueReason::Restored,
                        at: secs(100)
                    }
                ]
            );
            let s = r.stats();
            let before = l.stats();
            assert_eq!(s.assignments, before.assignments);
            assert_eq!(s.retries, before.retries);
            assert_eq!(s.total_task_failures, before.total_task_failures + 1);
            assert_eq!(s.reassignments, before.reassignments + 1);
            assert_eq!(s.recovery_attempts, before.recovery_attempts + 1);
            assert_eq!(
                (s.succeeded_tasks, s.failed_tasks, s.pending_tasks),
                (1, 1, 3)
            );
            assert_eq!(s.tasks_with_retries, 2);

            // Run the rest to the end: the succeeded task is never assigned again, and
            // each remaining task's epoch continues where it was.
            let mut now = secs(100);
            let mut ran = Vec::new();
            while !r.is_finished() {
                r.heartbeat(w, now).unwrap();
                r.handle_timeout(now);
                while let Some(a) = r.assign(now) {
                    ran.push((a.task.0, a.epoch));
                    r.task_succeeded(a.task, a.epoch, now).unwrap();
                }
                now = now + Duration::from_secs(1);
            }
            ran.sort();
            assert_eq!(ran, [(2, 2), (3, 2), (4, 1)]);
        }

        #[test]
        fn restoring_over_running_work_frees_breaker_probes() {
            let cfg = LedgerConfig::new(fixed_policy(5, Duration::ZERO).unwrap())
                .with_breaker(1, Duration::from_secs(10), 1)
                .unwrap();
            let mut l: Ledger<1, 4> = Ledger::new(cfg);
            let w = l.add_worker(1, secs(0)).unwrap();
            let t = l.add_task(secs(0)).unwrap();
            let a = l.assign(secs(0)).unwrap();
            l.task_failed(t, a.epoch, FailureKind::Gpu, secs(0))
                .unwrap();
            l.heartbeat(w, secs(10)).unwrap();
            let probe = l.assign(secs(10)).unwrap();
            assert_eq!(probe.epoch, 2);
            assert_eq!(l.worker(w).unwrap().breaker_metrics.probes_in_flight, 1);
            let bytes = {
                let mut buf = vec![0u8; 512];
                let n = encode(&l, 1, &[], &mut buf).unwrap();
                buf.truncate(n);
                buf
            };
            decode(&bytes)
                .unwrap()
                .restore_into(&mut l, secs(11))
                .unwrap();
            assert_eq!(l.worker(w).unwrap().breaker_metrics.probes_in_flight, 0);
            assert_eq!(l.worker(w).unwrap().load, 0);
            let again = l.assign(secs(11)).unwrap();
            assert_eq!((again.task, again.epoch), (t, 3));
        }

        /// Format version 1 as written by the first release: a build must keep reading
        /// it, and must write these very bytes for the same ledger, or bump
        /// [`FORMAT_VERSION`] (adding a counter to `Stats` or a field to `RetryState`
        /// changes the format).
        const GOLDEN_V1: &str = "5354434b0100000067000000be6445ee0302000100010001000004010201000000050278790201000001000003010001080101000001010102010001849580b6f3f8eeaec701018094ebdc038094ebdc0302008094ebdc030001010000010001dd9bdefaecc599cba60100000001000000000000000000";

        #[test]
        fn format_version_1_is_pinned() {
            let golden: Vec<u8> = (0..GOLDEN_V1.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&GOLDEN_V1[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(encode_vec(&sample(), 3, b"xy"), golden);
            let cp = decode(&golden).unwrap();
            assert_eq!(
                (cp.generation(), cp.payload(), cp.task_count()),
                (3, &b"xy"[..], 5)
            );
            let mut r = L::default();
            let resume = cp.restore_into(&mut r, secs(9)).unwrap();
            let t = resume.tasks;
            assert_eq!((t.succeeded, t.failed, t.pending, t.requeued), (1, 1, 3, 1));
        }

        #[test]
        fn records_survive_unchanged() {
            let l = sample();
            let bytes = encode_vec(&l, 0, &[]);
            let mut r = L::default();
            decode(&bytes)
                .unwrap()
                .restore_into(&mut r, secs(5))
                .unwrap();
            for i in [0usize, 1, 2, 4] {
                assert_eq!(r.task_record(i), l.task_record(i), "task {i}");
            }
            // The running task is pending, attempt charged in its retry state.
            let rec = r.task_record(3);
            assert_eq!((rec.state, rec.epoch), (SavedState::Pending, 1));
            assert_eq!(rec.retry.unwrap().attempts(), 2);
            // Encoding a restored ledger with nothing running gives the same records.
            let again = encode_vec(&r, 0, &[]);
            let mut r2 = L::default();
            decode(&again)
                .unwrap()
                .restore_into(&mut r2, secs(6))
                .unwrap();
            for i in 0..5 {
                assert_eq!(r2.task_record(i), r.task_record(i), "task {i}");
            }
        }

        #[test]
        fn every_truncation_and_every_bit_flip_is_detected() {
            let l = sample();
            let bytes = encode_vec(&l, 3, b"xy");
            assert!(bytes.len() > HEADER_LEN);
            for n in 0..bytes.len() {
                let e = decode(&bytes[..n]).unwrap_err();
                assert!(
                    matches!(e, DecodeError::Truncated { got, .. } if got == n),
                    "length {n}: {e:?}"
                );
            }
            let mut damaged = bytes.clone();
            for i in 0..bytes.len() * 8 {
                damaged[i / 8] ^= 1 << (i % 8);
                assert!(decode(&damaged).is_err(), "bit {i} flipped went unnoticed");
                damaged[i / 8] ^= 1 << (i % 8);
            }
            assert!(decode(&damaged).is_ok());
        }

        #[test]
        fn wrong_magic_version_flags_length_and_trailing_bytes() {
            let l = sample();
            let bytes = encode_vec(&l, 3, b"xy");
            let mut b = bytes.clone();
            b[0] = b'X';
            assert_eq!(decode(&b).unwrap_err(), DecodeError::BadMagic);
            assert_eq!(decode(b"PK\x03\x04").unwrap_err(), DecodeError::BadMagic);
            assert_eq!(
                decode(b"ST").unwrap_err(),
                DecodeError::Truncated { needed: 16, got: 2 }
            );
            let mut b = bytes.clone();
            b[4] = 2;
            assert_eq!(
                decode(&b).unwrap_err(),
                DecodeError::UnsupportedVersion {
                    found: 2,
                    supported: 1
                }
            );
            let mut b = bytes.clone();
            b[6] = 1;
            assert_eq!(decode(&b).unwrap_err(), DecodeError::UnsupportedFlags(1));
            let mut b = bytes.clone();
            b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(
                decode(&b).unwrap_err(),
                DecodeError::Oversized {
                    len: u32::MAX,
                    max: MAX_BODY_LEN
                }
            );
            let mut b = bytes.clone();
            b.extend_from_slice(&[0, 0, 0]);
            assert_eq!(
                decode(&b).unwrap_err(),
                DecodeError::TrailingBytes { extra: 3 }
            );
            let mut b = bytes.clone();
            let last = b.len() - 1;
            b[last] ^= 0x80;
            assert!(matches!(
                decode(&b).unwrap_err(),
                DecodeError::CrcMismatch { .. }
            ));
        }

        /// Frames `body` with a valid CRC, as a forger (or a bug) would.
        fn frame(body: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC);
            out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
            let mut d = crc.digest();
            d.update(&out[0..12]);
            d.update(body);
            out.extend_from_slice(&d.finalize().to_le_bytes());
            out.extend_from_slice(body);
            out
        }

        #[test]
        fn valid_crc_but_malformed_body_is_rejected() {
            assert_eq!(decode(&frame(&[])).unwrap_err(), DecodeError::Malformed);
            assert_eq!(
                decode(&frame(&[0xff; 40])).unwrap_err(),
                DecodeError::Malformed
            );
            // A good body with one record too few, or one byte extra.
            let l = sample();
            let bytes = encode_vec(&l, 3, b"");
            let body = &bytes[HEADER_LEN..];
            assert_eq!(
                decode(&frame(&body[..body.len() - 1])).unwrap_err(),
                DecodeError::Malformed
            );
            let mut extra = body.to_vec();
            extra.push(0);
            assert_eq!(decode(&frame(&extra)).unwrap_err(), DecodeError::Malformed);
            assert!(decode(&frame(body)).is_ok());
        }

        /// A body with a valid CRC whose counters and epoch sit at their limits (a
        /// forgery, or a ledger that ran very long): restoring and running on must not
        /// overflow.
        #[test]
        fn forged_counters_and_epochs_at_their_limits_never_overflow() {
            let stats = Stats {
                total_task_failures: u64::MAX,
                recovery_attempts: u64::MAX,
                retries: u64::MAX,
                assignments: u64::MAX,
                ..Stats::default()
            };
            let rec = TaskRecord {
                state: SavedState::Pending,
                epoch: u32::MAX,
                retried: false,
                last_kind: None,
                last_worker: Some(0),
                retry: Some(RetryState::new(Instant::ZERO, 1)),
            };
            let mut body = vec![0u8; 512];
            let mut n = postcard::to_slice(&(u64::MAX, stats, 1u32, 0u32), &mut body)
                .unwrap()
                .len();
            n += postcard::to_slice(&rec, &mut body[n..]).unwrap().len();
            let bytes = frame(&body[..n]);
            let saved = decode(&bytes).unwrap();
            let cfg = LedgerConfig::new(fixed_policy(3, Duration::from_secs(1)).unwrap());
            let mut l = L::new(cfg);
            let w = l.add_worker(1, secs(0)).unwrap();
            saved.restore_into(&mut l, secs(0)).unwrap();
            assert_eq!(l.stats().recovery_attempts, u64::MAX);
            let a = l.assign(secs(0)).unwrap();
            assert_eq!((a.task, a.worker, a.epoch), (TaskId(0), w, u32::MAX));
            l.task_failed(a.task, a.epoch, FailureKind::Network, secs(1))
                .unwrap();
            let s = l.stats();
            assert_eq!(
                (s.total_task_failures, s.retries, s.assignments),
                (u64::MAX, u64::MAX, u64::MAX)
            );
            let scheduled = core::iter::from_fn(|| l.poll_event()).find_map(|e| match e {
                Event::RetryScheduled { attempt, .. } => Some(attempt),
                _ => None,
            });
            assert_eq!(scheduled, Some(u32::MAX));
        }

        #[test]
        fn too_many_tasks_leaves_the_ledger_unchanged() {
            let l = sample();
            let bytes = encode_vec(&l, 3, b"");
            let mut small: Ledger<1, 4> = Ledger::default();
            small.add_task(secs(0)).unwrap();
            assert_eq!(
                decode(&bytes).unwrap().restore_into(&mut small, secs(1)),
                Err(DecodeError::TooManyTasks {
                    tasks: 5,
                    capacity: 4
                })
            );
            assert_eq!(small.task_count(), 1);
        }

        #[test]
        fn small_buffers_are_typed_errors() {
            let l = sample();
            let full = encode_vec(&l, 3, b"abc");
            for n in 0..full.len() {
                let mut buf = vec![0u8; n];
                assert_eq!(
                    encode(&l, 3, b"abc", &mut buf),
                    Err(EncodeError::BufferTooSmall {
                        needed: max_encoded_len(5, 3),
                        got: n
                    })
                );
            }
        }

        #[test]
        fn bounds_hold_for_worst_case_values() {
            let mut retry = RetryState::new(Instant::MAX, u64::MAX);
            let p = fixed_policy(u32::MAX, Duration::MAX).unwrap();
            for _ in 0..3 {
                let _ = retry.on_failure(&p, FailureKind::Unknown, Instant::MAX);
            }
            let rec = TaskRecord {
                state: SavedState::Running,
                epoch: u32::MAX,
                retried: true,
                last_kind: Some(FailureKind::Permanent),
                last_worker: Some(u32::MAX),
                retry: Some(retry),
            };
            let mut buf = [0u8; 256];
            let n = postcard::to_slice(&rec, &mut buf).unwrap().len();
            assert!(n <= MAX_TASK_RECORD_LEN, "{n}");
            let stats = Stats {
                total_task_failures: u64::MAX,
                total_worker_failures: u64::MAX,
                failed_tasks: u32::MAX,
                failed_workers: u32::MAX,
                tasks_with_retries: u32::MAX,
                recovery_attempts: u64::MAX,
                retries: u64::MAX,
                reassignments: u64::MAX,
                stale_results_rejected: u64::MAX,
                assignments: u64::MAX,
                succeeded_tasks: u32::MAX,
                pending_tasks: u32::MAX,
                running_tasks: u32::MAX,
                breakers_open: u32::MAX,
                breakers_half_open: u32::MAX,
                events_dropped: u64::MAX,
            };
            let n = postcard::to_slice(&(u64::MAX, stats, u32::MAX, u32::MAX), &mut buf)
                .unwrap()
                .len();
            assert!(n <= MAX_BODY_HEADER_LEN, "{n}");
        }

        #[test]
        fn ten_thousand_tasks_round_trip() {
            // A 10 000-task ledger is a few MiB: build it on a thread with room.
            let h = std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn(|| {
                    type Big = Ledger<8, 10_000>;
                    let mut l: std::boxed::Box<Big> = std::boxed::Box::default();
                    for _ in 0..8 {
                        l.add_worker(4, secs(0)).unwrap();
                    }
                    for _ in 0..10_000 {
                        l.add_task(secs(0)).unwrap();
                    }
                    let mut done = 0;
                    while let Some(a) = l.assign(secs(1)) {
                        if a.task.0 % 3 == 0 {
                            l.task_succeeded(a.task, a.epoch, secs(1)).unwrap();
                            done += 1;
                        } else if done > 5000 {
                            break;
                        }
                    }
                    let payload = [7u8; 4096];
                    let mut buf = vec![0u8; max_encoded_len(10_000, payload.len())];
                    let n = encode(&*l, 9, &payload, &mut buf).unwrap();
                    let cp = decode(&buf[..n]).unwrap();
                    let mut r: std::boxed::Box<Big> = std::boxed::Box::default();
                    let resume = cp.restore_into(&mut *r, secs(2)).unwrap();
                    (
                        n,
                        resume.tasks,
                        l.stats().succeeded_tasks,
                        l.stats().running_tasks,
                    )
                })
                .unwrap();
            let (n, restored, succeeded, running) = h.join().unwrap();
            assert!(n < 10_000 * 40, "{n} bytes");
            assert_eq!(restored.tasks, 10_000);
            assert_eq!(restored.succeeded, succeeded);
            assert_eq!(restored.requeued, running);
            assert_eq!(restored.pending, 10_000 - succeeded);
        }

        mod properties {
            use super::*;
            use proptest::prelude::*;

            proptest! {
                #[test]
                fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                    let _ = decode(&bytes);
                    let mut framed = frame(&bytes);
                    let _ = decode(&framed);
                    framed.truncate(framed.len() / 2);
                    let _ = decode(&framed);
                }

                #[test]
                fn random_ledgers_round_trip(
                    ops in proptest::collection::vec((0..5u8, 0..16u32, any::<bool>()), 0..120),
                    generation in any::<u64>(),
                    payload in proptest::collection::vec(any::<u8>(), 0..64),
                ) {
                    let cfg = LedgerConfig::new(fixed_policy(3, Duration::from_secs(1)).unwrap());
                    let mut l = L::new(cfg);
                    for _ in 0..4 { l.add_worker(2, secs(0)).unwrap(); }
                    let mut now = secs(0);
                    for (op, x, flag) in ops {
                        match op {
                            0 => { let _ = l.add_task(now); }
                            1 => { let _ = l.assign(now); }
                            2 => {
                                if let Some(v) = l.task(TaskId(x)) {
                                    if flag {
                                        let _ = l.task_succeeded(TaskId(x), v.epoch, now);
                                    } else {
                                        let _ = l.task_failed(TaskId(x), v.epoch, FailureKind::Evaluation, now);
                                    }
                                }
                            }
                            3 => { let _ = l.worker_failed(WorkerId(x % 4), FailureKind::WorkerCrash, now); let _ = l.worker_recovered(WorkerId(x % 4), now); }
                            _ => { now = now + Duration::from_millis(x as u64 * 100); l.handle_timeout(now); }
                        }
                    }
                    let bytes = encode_vec(&l, generation, &payload);
                    let cp = decode(&bytes).unwrap();
                    prop_assert_eq!(cp.generation(), generation);
                    prop_assert_eq!(cp.payload(), &payload[..]);
                    let mut r = L::new(cfg);
                    let resume = cp.restore_into(&mut r, now).unwrap();
                    prop_assert_eq!(resume.tasks.tasks as usize, l.task_count());
                    prop_assert_eq!(r.task_count(), l.task_count());
                    for i in 0..l.task_count() {
                        let (a, b) = (l.task_record(i), r.task_record(i));
                        prop_assert_eq!(a.epoch, b.epoch);
                        match a.state {
                            SavedState::Running => {
                                prop_assert!(matches!(b.state, SavedState::Pending | SavedState::Failed));
                            }
                            _ => prop_assert_eq!(a, b),
                        }
                    }
                    let s = r.stats();
                    prop_assert_eq!(s.succeeded_tasks, l.stats().succeeded_tasks);
                    prop_assert_eq!(
                        (s.succeeded_tasks + s.failed_tasks + s.pending_tasks) as usize,
                        l.task_count()
                    );
                    prop_assert_eq!(s.running_tasks, 0);
                }
            }
        }
    }
}
