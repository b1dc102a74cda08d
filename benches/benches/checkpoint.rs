//! A checkpoint of a 10 000-task ledger: encode (postcard records, framed, CRC-32) into
//! a caller's buffer, then decode (frame, CRC and every record checked); and, as a
//! separate line, restoring the decoded snapshot into a fresh ledger.
//!
//! The ledger (8 workers, 10 000 tasks) is in a mixed state: a quarter succeeded, a
//! quarter failed once and waiting to retry, a few running, the rest pending; the
//! payload is 4 KiB of optimizer state.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sturdy_core::checkpoint::{self, max_encoded_len};
use sturdy_core::manager::{Ledger, LedgerConfig};
use sturdy_core::{FailureKind, Instant};

const TASKS: usize = 10_000;
type Big = Ledger<8, TASKS>;

fn mixed() -> Box<Big> {
    let t = Instant::from_secs(1);
    let mut l: Box<Big> = Box::new(Ledger::new(LedgerConfig::default()));
    for _ in 0..8 {
        l.add_worker(1_000, Instant::ZERO).expect("room");
    }
    for _ in 0..TASKS {
        l.add_task(Instant::ZERO).expect("room");
    }
    for i in 0..5_200 {
        let a = l.assign(t).expect("capacity");
        if i % 2 == 0 {
            l.task_succeeded(a.task, a.epoch, t).expect("current");
        } else if i < 5_000 {
            l.task_failed(a.task, a.epoch, FailureKind::Evaluation, t)
                .expect("current");
        }
        while l.poll_event().is_some() {}
    }
    l
}

fn checkpoint(c: &mut Criterion) {
    let mut g = c.benchmark_group("checkpoint_10000_tasks");
    let ledger = mixed();
    let payload = vec![0x5a_u8; 4096];
    let mut buf = vec![0u8; max_encoded_len(TASKS, payload.len())];
    let n = checkpoint::encode(&ledger, 42, &payload, &mut buf).expect("fits");

    g.bench_function("encode_decode", |b| {
        b.iter(|| {
            let n = checkpoint::encode(&ledger, 42, black_box(&payload), &mut buf).expect("fits");
            let saved = checkpoint::decode(black_box(&buf[..n])).expect("valid");
            black_box(saved.task_count())
        });
    });

    let saved_bytes = buf[..n].to_vec();
    let mut fresh: Box<Big> = Box::new(Ledger::new(LedgerConfig::default()));
    for _ in 0..8 {
        fresh.add_worker(1_000, Instant::ZERO).expect("room");
    }
    g.bench_function("restore_into", |b| {
        b.iter(|| {
            let saved = checkpoint::decode(&saved_bytes).expect("valid");
            let r = saved.restore_into(&mut fresh, Instant::from_secs(2));
            black_box(r).expect("fits")
        });
    });
    g.finish();
    eprintln!("checkpoint of {TASKS} tasks: {n} bytes");
}

criterion_group! {
    name = benches;
    config = sturdy_benches::criterion_config();
    targets = checkpoint
}
criterion_main!(benches);
