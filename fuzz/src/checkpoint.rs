//! Checkpoints: decoding arbitrary bytes, and round trips of valid encodings.
//!
//! Three inputs from one fuzz case:
//! 1. the raw bytes given to `decode` as they are: it never panics;
//! 2. the raw bytes as a body behind a correct frame (magic, version, length, CRC), so
//!    the fuzzer reaches the postcard records: `decode` never panics, and what it
//!    accepts restores into a ledger without panicking, or is refused as too many
//!    tasks, leaving the ledger unchanged;
//! 3. a ledger built from an operation list, encoded with an arbitrary generation and
//!    payload: it decodes to the same generation, payload, task count and statistics;
//!    restoring it keeps every finished task finished and every pending task pending,
//!    and puts running tasks back to pending (or failed, on their last attempt);
//!    encoding the decoded-and-restored ledger again and decoding gives the same task
//!    states; and one flipped bit, a truncation or an extra byte is always refused.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use sturdy_core::checkpoint::{
    self, DecodeError, FORMAT_VERSION, HEADER_LEN, MAGIC, max_encoded_len,
};
use sturdy_core::manager::{Ledger, LedgerConfig, TaskState};
use sturdy_core::{FailureKind, Instant, TaskId, WorkerId};

const TASKS: usize = 16;
type Small = Ledger<3, TASKS, 4, 2>;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Task,
    Assign,
    Succeed(u8),
    Fail(u8, u8),
    WorkerFailed(u8),
    Clock(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    ops: Vec<Op>,
    generation: u64,
    payload: Vec<u8>,
    flip_bit: u32,
    cut: u32,
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32(&[&out[0..12], body]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// CRC-32/ISO-HDLC (the zlib one), bit by bit: an independent implementation of the
/// frame's checksum.
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

fn states(l: &Small) -> Vec<TaskState> {
    (0..l.task_count() as u32)
        .map(|i| l.task(TaskId(i)).expect("task").state)
        .collect()
}

fn fresh() -> Small {
    let mut l = Ledger::new(LedgerConfig::default());
    for _ in 0..3 {
        l.add_worker(4, Instant::ZERO).expect("room");
    }
    l
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = Input::arbitrary(&mut u) else {
        return;
    };
    crate::debug(&input);

    // 1 and 2: arbitrary bytes, bare and framed.
    let _ = checkpoint::decode(&input.raw);
    let body = framed(&input.raw);
    if let Ok(saved) = checkpoint::decode(&body) {
        let mut l = fresh();
        let before = states(&l);
        match saved.restore_into(&mut l, Instant::from_secs(1)) {
            Ok(r) => {
                assert_eq!(r.tasks.tasks, saved.task_count());
                assert_eq!(l.task_count(), saved.task_count() as usize);
            }
            Err(DecodeError::TooManyTasks { .. }) => assert_eq!(states(&l), before),
            Err(e) => panic!("restore refused a decoded checkpoint: {e:?}"),
        }
    }

    // 3: a real ledger.
    let mut l = fresh();
    let mut now = Instant::from_secs(1);
    let mut assigned = Vec::new();
    for op in &input.ops {
        match *op {
            Op::Task => {
                let _ = l.add_task(now);
            }
            Op::Assign => assigned.extend(l.assign(now)),
            Op::Succeed(i) if !assigned.is_empty() => {
                let a: sturdy_core::manager::Assignment = assigned[usize::from(i) % assigned.len()];
                let _ = l.task_succeeded(a.task, a.epoch, now);
            }
            Op::Fail(i, k) if !assigned.is_empty() => {
                let a: sturdy_core::manager::Assignment = assigned[usize::from(i) % assigned.len()];
                let kind = FailureKind::ALL[usize::from(k) % FailureKind::ALL.len()];
                let _ = l.task_failed(a.task, a.epoch, kind, now);
            }
            Op::WorkerFailed(w) => {
                let _ = l.worker_failed(WorkerId(u32::from(w % 3)), FailureKind::WorkerCrash, now);
            }
            Op::Clock(ms) => {
                now = now + Duration::from_millis(ms.into());
                l.handle_timeout(now);
            }
            _ => {}
        }
        while l.poll_event().is_some() {}
    }
    let payload = &input.payload[..input.payload.len().min(512)];
    let mut buf = vec![0u8; max_encoded_len(TASKS, payload.len())];
    let n = checkpoint::encode(&l, input.generation, payload, &mut buf)
        .expect("sized by max_encoded_len");
    let bytes = &buf[..n];
    assert_eq!(
        u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        crc32(&[&bytes[0..12], &bytes[HEADER_LEN..]]),
        "the frame's CRC is CRC-32/ISO-HDLC"
    );
    let saved = checkpoint::decode(bytes).expect("a fresh encoding decodes");
    assert_eq!(saved.generation(), input.generation);
    assert_eq!(saved.next_generation(), input.generation.saturating_add(1));
    assert_eq!(saved.payload(), payload);
    assert_eq!(saved.task_count() as usize, l.task_count());

    let mut restored = fresh();
    let r = saved.restore_into(&mut restored, now).expect("fits");
    let (old, new) = (states(&l), states(&restored));
    assert_eq!(old.len(), new.len());
    let mut requeued = 0;
    for (i, (a, b)) in old.iter().zip(&new).enumerate() {
        match a {
            TaskState::Running { .. } => {
                requeued += 1;
                assert!(
                    matches!(b, TaskState::Pending | TaskState::Failed),
                    "task {i}: {a:?} -> {b:?}"
                );
            }
            _ => assert_eq!(a, b, "task {i}"),
        }
    }
    assert_eq!(r.tasks.requeued, requeued);
    assert_eq!(
        r.tasks.succeeded as usize,
        new.iter().filter(|s| **s == TaskState::Succeeded).count()
    );

    // The restored ledger round-trips unchanged.
    let mut again = vec![0u8; max_encoded_len(TASKS, payload.len())];
    let m = checkpoint::encode(&restored, input.generation, payload, &mut again).expect("fits");
    let mut twice = fresh();
    checkpoint::decode(&again[..m])
        .expect("decodes")
        .restore_into(&mut twice, now)
        .expect("fits");
    assert_eq!(states(&twice), new);

    // Damage is always caught.
    let mut damaged = bytes.to_vec();
    let bit = input.flip_bit as usize % (damaged.len() * 8);
    damaged[bit / 8] ^= 1 << (bit % 8);
    assert!(
        checkpoint::decode(&damaged).is_err(),
        "bit {bit} flipped was accepted"
    );
    let cut = input.cut as usize % bytes.len();
    assert!(
        checkpoint::decode(&bytes[..cut]).is_err(),
        "truncated to {cut} accepted"
    );
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(matches!(
        checkpoint::decode(&longer),
        Err(DecodeError::TrailingBytes { extra: 1 })
    ));
}
