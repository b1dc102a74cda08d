//! The JetStream engine against a real `nats-server` (each test starts its own).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{Server, config, meta, run};
use futures_util::StreamExt;
use sturdy_farm::engine::jetstream::{JetStream, Opened};
use sturdy_farm::engine::{
    Claim, Conflict, Ended, Engine, Enqueued, Error, Fenced, Generation, Outcome, Position, Record,
    Revision, Settle, Stale, TaskId,
};

const ACK_WAIT: Duration = Duration::from_millis(500);

fn claim(attempt: u32, host: &str) -> Record {
    Record::Claimed(Claim {
        attempt,
        epoch: u64::from(attempt),
        host: host.into(),
        slot: "0".into(),
        crashes: 0,
        own_failures: 0,
    })
}

fn done(attempt: u32, host: &str) -> Record {
    Record::Ended(Ended {
        attempt,
        epoch: u64::from(attempt),
        host: host.into(),
        slot: "0".into(),
        outcome: Outcome::Done,
        kind: String::new(),
        exit: Some(0),
        signal: None,
        runtime_ms: 12,
        next_ms: None,
        detail: String::new(),
        crashes: 0,
        own_failures: 0,
        output: None,
    })
}

/// Fails the test if `f` takes longer than 20 s (a hang), instead of hanging CI.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the operation hung for 20 s")
}

#[tokio::test]
async fn create_run_refuses_a_different_fingerprint_and_reopens_the_same() {
    let server = Server::start();
    let js = JetStream::connect(&server.url, config()).await.unwrap();

    let (_, opened) = js.create_run("r1", &meta("fp-A")).await.unwrap();
    assert_eq!(opened, Opened::Created);
    let (_, opened) = js.create_run("r1", &meta("fp-A")).await.unwrap();
    assert_eq!(opened, Opened::Existing);

    match js.create_run("r1", &meta("fp-B")).await {
        Err(Error::Fingerprint {
            run,
            existing,
            given,
        }) => {
            assert_eq!(
                (run.as_str(), existing.as_str(), given.as_str()),
                ("r1", "fp-A", "fp-B")
            );
        }
        other => panic!("expected a fingerprint error, got {other:?}"),
    }

    let (run, found) = js.open_run("r1").await.unwrap();
    assert_eq!(found, meta("fp-A"));
    assert_eq!(run.meta().await.unwrap().fingerprint, "fp-A");

    match js.open_run("nope").await {
        Err(e @ Error::NoSuchRun { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("\"nope\"") && text.contains(&server.url),
                "{text}"
            );
        }
        other => panic!("expected no such run, got {other:?}"),
    }
    for bad in ["", "a.b", "a b", "a*", &"x".repeat(65)] {
        assert!(
            matches!(
                js.create_run(bad, &meta("fp")).await,
                Err(Error::RunName { .. })
            ),
            "run name {bad:?} was accepted"
        );
    }
}

/// A run caught halfway through its creation (the coordinator has made its streams but
/// not yet its consumer) is not there yet: `open_run` says `NoSuchRun`, so an agent with
/// `--wait-for-run` keeps waiting instead of failing with "consumer not found".
#[tokio::test]
async fn a_run_whose_consumer_is_not_made_yet_does_not_exist_yet() {
    use async_nats::jetstream::stream::{Config, RetentionPolicy};

    let server = Server::start();
    let js = JetStream::connect(&server.url, config()).await.unwrap();
    let raw = async_nats::jetstream::new(async_nats::connect(&server.url).await.unwrap());
    raw.create_stream(Config {
        name: "STURDY_half_WORK".into(),
        subjects: vec!["sturdy.half.task.*".into()],
        retention: RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    raw.create_stream(Config {
        name: "STURDY_half_STATE".into(),
        subjects: vec![
            "sturdy.half.meta".into(),
            "sturdy.half.state.*".into(),
            "sturdy.half.stale".into(),
        ],
        max_messages_per_subject: -1,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();

    match js.open_run("half").await {
        Err(Error::NoSuchRun { run, .. }) => assert_eq!(run, "half"),
        other => panic!("expected no such run, got {other:?}"),
    }
    let waiting = js.wait_for_run("half", Duration::from_millis(200));
    let create = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        js.create_run("half", &meta("fp-H")).await.unwrap()
    };
    let (opened, (_, created)) = bounded(async { tokio::join!(waiting, create) }).await;
    assert_eq!(created, Opened::Created);
    assert_eq!(opened.unwrap().1.fingerprint, "fp-H");
}

#[tokio::test]
async fn enqueue_is_idempotent_per_generation() {
    let server = Server::start();
    let run = run(&server, "idem").await;

    assert_eq!(
        run.enqueue(TaskId(7), b"a", Generation(0)).await.unwrap(),
        Enqueued::Queued
    );
    assert_eq!(
        run.enqueue(TaskId(7), b"a", Generation(0)).await.unwrap(),
        Enqueued::Duplicate
    );
    assert_eq!(
        run.enqueue(TaskId(7), b"b", Generation(1)).await.unwrap(),
        Enqueued::Queued
    );

    let first = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.task(), first.generation()),
        (TaskId(7), Generation(0))
    );
    assert_eq!((first.payload(), first.epoch()), (&b"a"[..], 1));
    run.settle(first, Settle::Ack).await.unwrap();

    let second = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.task(), second.generation()),
        (TaskId(7), Generation(1))
    );
    assert_eq!(second.payload(), b"b");
    run.settle(second, Settle::Ack).await.unwrap();

    // Acked messages leave the work queue; the duplicate stays a duplicate.
    assert_eq!(
        run.enqueue(TaskId(7), b"a", Generation(0)).await.unwrap(),
        Enqueued::Duplicate
    );
    assert!(
        run.next_within(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn re_attaching_after_the_duplicate_window_enqueues_no_task_twice() {
    // A 1 s duplicate window: past it, publishing generation 0 again would store a second
    // message. Re-attaching (not fresh) finds each task's waiting message and skips it.
    let server = Server::start();
    let mut cfg = config();
    cfg.duplicate_window = Duration::from_secs(1);
    let js = JetStream::connect(&server.url, cfg).await.expect("connect");
    let (run, _) = js.create_run("late", &meta("fp-1")).await.expect("run");
    let tasks: Vec<(TaskId, Vec<u8>)> = (1..=5).map(|n| (TaskId(n), b"x".to_vec())).collect();
    let first = sturdy_farm::coordinator::enqueue(&run, &tasks, true)
        .await
        .unwrap();
    assert_eq!(first.queued, 5);
    assert_eq!(run.queued(TaskId(3)).await.unwrap(), Some(true));
    assert_eq!(run.queued(TaskId(9)).await.unwrap(), Some(false));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let again = sturdy_farm::coordinator::enqueue(&run, &tasks, false)
        .await
        .unwrap();
    assert_eq!((again.queued, again.duplicate), (0, 5));
    // Exactly one message per task.
    let mut seen = Vec::new();
    while let Some(d) = run.next_within(Duration::from_millis(300)).await.unwrap() {
        seen.push(d.task().0);
        run.settle(d, Settle::Ack).await.unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    // A task whose message was taken (acked) and that has no record is enqueued again.
    let third = sturdy_farm::coordinator::enqueue(&run, &tasks[..1], false)
        .await
        .unwrap();
    assert_eq!(third.queued, 1);
}

#[tokio::test]
async fn reconcile_re_enqueues_a_claimed_task_whose_message_a_stale_ack_deleted() {
    // nats-server #4786 by hand: a delivery is claimed, then its message is acked while
    // the record still says claimed (as a stale ack of an older delivery would do). The
    // owner "dies": nothing ends the claim. The reconcile sees a claim with no work
    // message, unchanged past its grace, and enqueues the task again, once.
    let server = Server::start();
    let run = run(&server, "r5").await;
    let tasks: Vec<(TaskId, Vec<u8>)> =
        vec![(TaskId(1), b"cmd".to_vec()), (TaskId(2), b"two".to_vec())];
    sturdy_farm::coordinator::enqueue(&run, &tasks, true)
        .await
        .unwrap();
    let mut projection = sturdy_farm::coordinator::Projection::new([TaskId(1), TaskId(2)]);
    let (d1, d2) = (
        run.next_within(Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap(),
        run.next_within(Duration::from_secs(2))
            .await
            .unwrap()
            .unwrap(),
    );
    let (d1, d2) = if d1.task() == TaskId(1) {
        (d1, d2)
    } else {
        (d2, d1)
    };
    let rev = run
        .write(TaskId(1), Revision::NONE, &claim(1, "a"))
        .await
        .unwrap()
        .unwrap();
    // Task 2 is claimed and keeps its message (a live, renewing owner).
    run.write(TaskId(2), Revision::NONE, &claim(1, "b"))
        .await
        .unwrap()
        .unwrap();
    run.settle(d1, Settle::Ack).await.unwrap();
    run.renew(&d2).await.unwrap();
    let mut follow = run.follow(projection.next_position()).await.unwrap();
    for _ in 0..2 {
        let entry = bounded(follow.next()).await.unwrap().unwrap();
        projection.apply(&entry);
    }
    let payload = |t: TaskId| tasks.iter().find(|(n, _)| *n == t).map(|(_, c)| c.clone());
    let grace = Duration::from_millis(200);
    let mut reconcile = sturdy_farm::coordinator::Reconcile::new();
    let t0 = tokio::time::Instant::now();
    // Too young to look at; then found without a message; then re-enqueued.
    assert!(
        reconcile
            .pass(&run, &projection, payload, t0, grace)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        reconcile
            .pass(&run, &projection, payload, t0 + grace, grace)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        reconcile
            .pass(&run, &projection, payload, t0 + grace * 2, grace)
            .await
            .unwrap(),
        [TaskId(1)]
    );
    // The new delivery: generation = the lost claim's revision; task 2 was left alone.
    let again = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.task(), again.generation(), again.payload()),
        (TaskId(1), Generation(rev.0), &b"cmd"[..])
    );
    assert_eq!(run.queued(TaskId(2)).await.unwrap(), Some(true));
    // While its message is out (leased), the task is not enqueued again.
    assert!(
        reconcile
            .pass(&run, &projection, payload, t0 + grace * 4, grace)
            .await
            .unwrap()
            .is_empty()
    );
    drop(d2);
}

#[tokio::test]
async fn write_is_a_compare_and_set_exactly_one_racer_wins() {
    let server = Server::start();
    let a = run(&server, "cas").await;
    let b = run(&server, "cas").await; // a second connection
    let task = TaskId(3);
    assert_eq!(a.read(task).await.unwrap(), (None, Revision::NONE));

    let mut revision = Revision::NONE;
    for round in 1..=5 {
        let (mine, theirs) = (claim(round, "a"), claim(round, "b"));
        let (ra, rb) = tokio::join!(
            a.write(task, revision, &mine),
            b.write(task, revision, &theirs),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let conflict = Conflict {
            task,
            expected: revision,
        };
        let (winner, new) = match (ra, rb) {
            (Ok(new), Err(c)) => {
                assert_eq!(c, conflict);
                ("a", new)
            }
            (Err(c), Ok(new)) => {
                assert_eq!(c, conflict);
                ("b", new)
            }
            other => panic!("round {round}: exactly one writer must win, got {other:?}"),
        };
        assert!(
            new > revision,
            "round {round}: revision {new:?} after {revision:?}"
        );
        assert_eq!(
            b.read(task).await.unwrap(),
            (Some(claim(round, winner)), new)
        );
        revision = new;
    }
    // A write at an old revision is refused; at the current one it is accepted.
    assert_eq!(
        a.write(task, Revision::NONE, &done(5, "a")).await.unwrap(),
        Err(Conflict {
            task,
            expected: Revision::NONE
        })
    );
    let finished = a
        .write(task, revision, &done(5, "a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.read(task).await.unwrap(), (Some(done(5, "a")), finished));
    assert_eq!(
        b.write(task, revision, &done(5, "b")).await.unwrap(),
        Err(Conflict {
            task,
            expected: revision
        })
    );
    // Other tasks are independent.
    assert!(
        a.write(TaskId(4), Revision::NONE, &claim(1, "a"))
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn renew_keeps_a_delivery_past_ack_wait() {
    let server = Server::start();
    let a = run(&server, "renew").await;
    let b = run(&server, "renew").await;
    a.enqueue(TaskId(1), b"t", Generation(0)).await.unwrap();
    let held = a
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();

    let start = Instant::now();
    while start.elapsed() < 3 * ACK_WAIT {
        a.renew(&held).await.unwrap();
        let stolen = b.next_within(Duration::from_millis(150)).await.unwrap();
        assert!(
            stolen.is_none(),
            "delivered again after {:?} despite renewals",
            start.elapsed()
        );
    }
    a.settle(held, Settle::Ack).await.unwrap();
    assert!(b.next_within(2 * ACK_WAIT).await.unwrap().is_none());
}

#[tokio::test]
async fn renew_fenced_renews_only_while_the_record_is_ours() {
    let server = Server::start();
    let a = run(&server, "fenced").await;
    let b = run(&server, "fenced").await;
    let task = TaskId(4);
    a.enqueue(task, b"t", Generation(0)).await.unwrap();
    let held = a
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    let mine = a
        .write(task, Revision::NONE, &claim(1, "a"))
        .await
        .unwrap()
        .unwrap();

    let start = Instant::now();
    while start.elapsed() < 3 * ACK_WAIT {
        assert_eq!(a.renew_fenced(&held, mine).await.unwrap(), Fenced::Renewed);
        assert!(
            b.next_within(Duration::from_millis(150))
                .await
                .unwrap()
                .is_none()
        );
    }
    // Another attempt's record moves on (as if it had claimed): A finds itself stale, sends
    // nothing, and the message comes back after the ack wait.
    let theirs = b.write(task, mine, &claim(2, "b")).await.unwrap().unwrap();
    assert_eq!(
        a.renew_fenced(&held, mine).await.unwrap(),
        Fenced::Stale {
            record: Some(claim(2, "b")),
            revision: theirs
        }
    );
    let again = b
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered");
    assert_eq!((again.task(), again.epoch()), (task, 2));
}

#[tokio::test]
async fn an_unrenewed_delivery_comes_back_after_ack_wait_with_epoch_2() {
    let server = Server::start();
    let a = run(&server, "lapse").await;
    let b = run(&server, "lapse").await;
    a.enqueue(TaskId(2), b"t", Generation(0)).await.unwrap();
    let before = Instant::now();
    let first = a
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.epoch(), 1);

    let again = b
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered");
    assert!(
        before.elapsed() >= ACK_WAIT,
        "redelivered after only {:?}",
        before.elapsed()
    );
    assert_eq!((again.task(), again.epoch()), (TaskId(2), 2));
    assert_eq!(again.sequence(), first.sequence());
    b.settle(again, Settle::Ack).await.unwrap();
}

/// The hazard the engine's docs warn about (nats-server #4786, #6937): the server does not
/// fence acks, so a stale attempt's late ack deletes the live redelivery. This is why a
/// caller settles only after its own compare-and-set succeeded. Should a server release
/// fence acks, this test fails under `STURDY_NATS_SERVER`: then the docs can say so.
#[tokio::test]
async fn the_server_does_not_fence_a_stale_ack() {
    let server = Server::start();
    let a = run(&server, "fence").await;
    let b = run(&server, "fence").await;
    a.enqueue(TaskId(8), b"t", Generation(0)).await.unwrap();
    let stale = a
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    let live = b
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered");
    assert_eq!((stale.epoch(), live.epoch()), (1, 2));

    a.settle(stale, Settle::Ack).await.unwrap(); // accepted, though its lease lapsed
    drop(live); // B never settles: without the stale ack this would come back
    assert!(
        b.next_within(4 * ACK_WAIT).await.unwrap().is_none(),
        "the stale ack was fenced"
    );
}

#[tokio::test]
async fn nak_with_a_delay_redelivers_no_sooner() {
    let server = Server::start();
    let run = run(&server, "nak").await;
    run.enqueue(TaskId(5), b"t", Generation(0)).await.unwrap();
    let first = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();

    let delay = Duration::from_millis(1200); // longer than the ack wait
    let naked = Instant::now();
    run.settle(first, Settle::Nak(delay)).await.unwrap();
    let again = run
        .next_within(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("redelivered");
    assert!(
        naked.elapsed() >= delay,
        "redelivered after only {:?}",
        naked.elapsed()
    );
    assert_eq!((again.task(), again.epoch()), (TaskId(5), 2));
    run.settle(again, Settle::Ack).await.unwrap();
}

#[tokio::test]
async fn a_malformed_work_message_is_reported_and_terminated() {
    let server = Server::start();
    let run = run(&server, "junk").await;
    let client = async_nats::connect(&server.url).await.unwrap();
    let context = async_nats::jetstream::new(client);
    context
        .publish("sturdy.junk.task.x", "?".into())
        .await
        .unwrap()
        .await
        .unwrap();

    match run.next_within(Duration::from_secs(2)).await {
        Err(Error::Malformed {
            run,
            subject,
            sequence,
            reason,
        }) => {
            assert_eq!(
                (run.as_str(), subject.as_str(), sequence),
                ("junk", "sturdy.junk.task.x", 1)
            );
            assert!(reason.contains("not a task number"), "{reason}");
        }
        other => panic!("expected a malformed work message, got {other:?}"),
    }
    assert!(
        run.next_within(3 * ACK_WAIT).await.unwrap().is_none(),
        "it came back"
    );
    run.enqueue(TaskId(1), b"ok", Generation(0)).await.unwrap();
    let next = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.task(), next.epoch()), (TaskId(1), 1));
}

#[tokio::test]
async fn term_never_redelivers() {
    let server = Server::start();
    let run = run(&server, "term").await;
    run.enqueue(TaskId(6), b"t", Generation(0)).await.unwrap();
    let first = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    run.settle(first, Settle::Term).await.unwrap();
    assert!(run.next_within(4 * ACK_WAIT).await.unwrap().is_none());
}

#[tokio::test]
async fn ack_next_acknowledges_and_pulls_in_one_message() {
    let server = Server::start();
    let run = run(&server, "acknext").await;
    run.enqueue(TaskId(1), b"a", Generation(0)).await.unwrap();
    run.enqueue(TaskId(2), b"b", Generation(0)).await.unwrap();
    let first = run
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.task(), TaskId(1));
    let second = run
        .ack_next(first, Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the next task is delivered to the +NXT");
    assert_eq!((second.task(), second.epoch()), (TaskId(2), 1));
    // Nothing left: the +NXT's pull expires empty, and acknowledges the second task.
    let none = run.ack_next(second, 2 * ACK_WAIT).await.unwrap();
    assert!(none.is_none());
    // Both were acknowledged: neither comes back after the ack wait.
    assert!(run.next_within(4 * ACK_WAIT).await.unwrap().is_none());
}

#[tokio::test]
async fn follow_returns_every_record_in_server_order_and_resumes() {
    let server = Server::start();
    let run = run(&server, "follow").await;
    let stale = Record::Stale(Stale {
        attempt: 1,
        epoch: 1,
        host: "z".into(),
        slot: "0".into(),
        reason: "record moved on".into(),
        crashes: 0,
        own_failures: 0,
    });
    let mut written = Vec::new(); // (position, task, record, note)
    let mut revs = [Revision::NONE; 3];
    for (task, record) in [
        (0, claim(1, "a")),
        (1, claim(1, "b")),
        (0, done(1, "a")),
        (2, claim(1, "c")),
    ] {
        let rev = run
            .write(TaskId(task), revs[task as usize], &record)
            .await
            .unwrap()
            .unwrap();
        revs[task as usize] = rev;
        written.push((Position(rev.0), TaskId(task), record, false));
        if task == 1 {
            let at = run.note(TaskId(1), &stale).await.unwrap();
            written.push((at, TaskId(1), stale.clone(), true));
        }
    }
    // The notes do not move the task's record.
    assert_eq!(
        run.read(TaskId(1)).await.unwrap(),
        (Some(claim(1, "b")), revs[1])
    );

    let all: Vec<_> = bounded(
        run.follow(Position::START)
            .await
            .unwrap()
            .take(written.len())
            .collect(),
    )
    .await;
    let all: Vec<_> = all.into_iter().map(|e| e.unwrap()).collect();
    let got: Vec<_> = all
        .iter()
        .map(|e| (e.position, e.task, e.record.clone(), e.note))
        .collect();
    assert_eq!(got, written);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all[0].revision(), Some(Revision(written[0].0.0)));
    assert_eq!(all[2].revision(), None); // the note

    // Resume after the third entry, then see a new write arrive live.
    let mut rest = run.follow(all[2].position.next()).await.unwrap();
    for expected in &written[3..] {
        let e = bounded(rest.next()).await.unwrap().unwrap();
        assert_eq!(
            (e.position, e.task, &e.record, e.note),
            (expected.0, expected.1, &expected.2, expected.3)
        );
    }
    let late = run
        .write(TaskId(2), revs[2], &done(1, "c"))
        .await
        .unwrap()
        .unwrap();
    let e = bounded(rest.next()).await.unwrap().unwrap();
    assert_eq!(
        (e.position, e.task, e.record, e.note),
        (Position(late.0), TaskId(2), done(1, "c"), false)
    );
}

#[tokio::test]
async fn a_killed_server_restarts_with_its_records_and_tasks() {
    let mut server = Server::start();
    let before = run(&server, "crash").await;
    let rev = before
        .write(TaskId(1), Revision::NONE, &claim(1, "a"))
        .await
        .unwrap()
        .unwrap();
    let rev = before
        .write(TaskId(1), rev, &done(1, "a"))
        .await
        .unwrap()
        .unwrap();
    before
        .enqueue(TaskId(2), b"two", Generation(0))
        .await
        .unwrap();
    before
        .enqueue(TaskId(3), b"three", Generation(0))
        .await
        .unwrap();
    let leased = before
        .next_within(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(leased.task(), TaskId(2));

    server.kill_and_restart();

    let js = JetStream::connect(&server.url, config()).await.unwrap();
    let (after, found) = js.open_run("crash").await.unwrap();
    assert_eq!(found, meta("fp-1"));
    assert_eq!(
        after.read(TaskId(1)).await.unwrap(),
        (Some(done(1, "a")), rev)
    );
    // The CAS still holds across the restart.
    assert_eq!(
        after
            .write(TaskId(1), Revision::NONE, &claim(2, "b"))
            .await
            .unwrap(),
        Err(Conflict {
            task: TaskId(1),
            expected: Revision::NONE
        })
    );
    // Both work messages are still there: the unleased one, and the leased one again
    // after its lease lapsed.
    let mut got = Vec::new();
    while got.len() < 2 {
        let d = after
            .next_within(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("a task after restart");
        got.push((d.task(), d.payload().to_vec()));
        after.settle(d, Settle::Ack).await.unwrap();
    }
    got.sort();
    assert_eq!(
        got,
        vec![(TaskId(2), b"two".to_vec()), (TaskId(3), b"three".to_vec())]
    );
    // The first connection reconnects by itself and reads the same record.
    let reconnected = bounded(async {
        loop {
            match before.read(TaskId(1)).await {
                Ok(found) => break found,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert_eq!(reconnected, (Some(done(1, "a")), rev));
    // The journal survived too: meta, claim, done.
    let entries: Vec<_> = bounded(
        after
            .follow(Position::START)
            .await
            .unwrap()
            .take(2)
            .collect(),
    )
    .await;
    let records: Vec<_> = entries.into_iter().map(|e| e.unwrap().record).collect();
    assert_eq!(records, vec![claim(1, "a"), done(1, "a")]);
}

/// A minimal agent, generic over the engine: claim with compare-and-set, finish with
/// compare-and-set, and settle only after its own write succeeded.
async fn agent<E: Engine + 'static>(engine: E, host: &'static str) -> Vec<TaskId> {
    let mut finished = Vec::new();
    while let Some(delivery) = engine
        .next_within(Duration::from_millis(400))
        .await
        .unwrap()
    {
        let task = delivery.task();
        let (record, revision) = engine.read(task).await.unwrap();
        if matches!(record, Some(Record::Ended(_))) {
            engine.settle(delivery, Settle::Ack).await.unwrap(); // finished already
            continue;
        }
        let Ok(claimed) = engine.write(task, revision, &claim(1, host)).await.unwrap() else {
            continue; // stale: touch nothing
        };
        if engine
            .write(task, claimed, &done(1, host))
            .await
            .unwrap()
            .is_ok()
        {
            engine.settle(delivery, Settle::Ack).await.unwrap();
            finished.push(task);
        }
    }
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_spawned_tasks_finish_every_task_once() {
    let server = Server::start();
    let coordinator = run(&server, "farm").await;
    for n in 0..30 {
        coordinator
            .enqueue(TaskId(n), b"true", Generation(0))
            .await
            .unwrap();
    }
    let mut agents = Vec::new();
    for host in ["h1", "h2", "h3"] {
        agents.push(tokio::spawn(agent(run(&server, "farm").await, host)));
    }
    let mut finished = Vec::new();
    for agent in agents {
        finished.extend(bounded(agent).await.unwrap());
    }
    finished.sort();
    assert_eq!(finished, (0..30).map(TaskId).collect::<Vec<_>>());

    // The journal holds, per task, one or more claims (more when a lease lapsed under
    // load) and then exactly one ended record: no claim after it, no second one.
    let mut journal = coordinator.follow(Position::START).await.unwrap();
    let mut per_task = std::collections::BTreeMap::<u32, Vec<&'static str>>::new();
    let mut ended = 0;
    while ended < 30 {
        let entry = bounded(journal.next()).await.unwrap().unwrap();
        let kind = match entry.record {
            Record::Claimed(_) => "claimed",
            Record::Ended(_) => "ended",
            _ => "other",
        };
        ended += usize::from(kind == "ended");
        per_task.entry(entry.task.0).or_default().push(kind);
    }
    assert_eq!(per_task.len(), 30);
    for (task, kinds) in &per_task {
        let (last, claims) = kinds.split_last().unwrap();
        assert!(
            last == &"ended" && !claims.is_empty(),
            "task {task}: {kinds:?}"
        );
        assert!(
            claims.iter().all(|k| k == &"claimed"),
            "task {task}: {kinds:?}"
        );
    }
    for task in 0..30 {
        assert!(matches!(
            coordinator.read(TaskId(task)).await.unwrap().0,
            Some(Record::Ended(_))
        ));
    }
}

#[tokio::test]
async fn bad_urls_fail_fast_naming_the_url() {
    // Refused: nothing listens on the port.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("nats://{}", closed.local_addr().unwrap());
    drop(closed);
    // Black hole: the port accepts TCP but never speaks NATS.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("nats://{}", hole.local_addr().unwrap());

    let mut quick = config();
    quick.connect_timeout = Duration::from_millis(700);
    for url in [refused.as_str(), silent.as_str()] {
        let began = Instant::now();
        match bounded(JetStream::connect(url, quick.clone())).await {
            Err(e @ Error::Connect { .. }) => assert!(e.to_string().contains(url), "{e}"),
            other => panic!("{url}: expected a connect error, got {other:?}"),
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{url}: took {:?}",
            began.elapsed()
        );
    }
    for url in ["nats://127.0.0.1:notaport", "nats://[::1"] {
        match bounded(JetStream::connect(url, quick.clone())).await {
            Err(e @ Error::Url { .. }) => assert!(e.to_string().contains(url), "{e}"),
            other => panic!("{url}: expected a URL error, got {other:?}"),
        }
    }
    let mut bad = config();
    bad.ack_wait = Duration::ZERO;
    match JetStream::connect(&refused, bad).await {
        Err(Error::Config { field, rule }) => {
            assert_eq!((field, rule), ("ack_wait", "must be at least 1 ms"))
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    drop(hole);
}

#[tokio::test]
async fn a_server_without_jetstream_is_named() {
    let server = Server::start_without_jetstream();
    match bounded(JetStream::connect(&server.url, config())).await {
        Err(e @ Error::NoJetStream { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&server.url) && text.contains("nats-server -js"),
                "{text}"
            );
        }
        other => panic!("expected the JetStream error, got {other:?}"),
    }
}

/// An attempt's output shipped in chunks comes back byte-exact, another attempt's chunks
/// on the same task's subject are skipped, and a quiet attempt ships nothing.
#[tokio::test]
async fn output_ships_in_chunks_and_comes_back_byte_exact() {
    use sturdy_farm::engine::output::{CHUNK_BYTES, Channel};
    use sturdy_farm::task_output::{self, Fetched, OutputFile};

    let server = Server::start();
    let run = run(&server, "out").await;
    let dir = tempfile::tempdir().unwrap();
    // Over four chunks of stdout (not a multiple of the chunk), a little stderr.
    let stdout: Vec<u8> = (0..CHUNK_BYTES * 4 + 123)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    let out_path = dir.path().join("3.2.out");
    let err_path = dir.path().join("3.2.err");
    std::fs::write(&out_path, &stdout).unwrap();
    std::fs::write(&err_path, b"task 3 err\n").unwrap();
    let files = [
        OutputFile {
            channel: Channel::Stderr,
            path: err_path.clone(),
            bytes: 11,
        },
        OutputFile {
            channel: Channel::Stdout,
            path: out_path.clone(),
            bytes: stdout.len() as u64,
        },
    ];
    // A stale attempt (1) of the same task shipped first: its chunks share the subject.
    let stale = [OutputFile {
        channel: Channel::Stdout,
        path: err_path.clone(),
        bytes: 11,
    }];
    let stale_mark = bounded(task_output::ship(&run, TaskId(3), 1, 1, &stale)).await;
    assert!(stale_mark.from.is_some(), "{stale_mark:?}");
    let mark = bounded(task_output::ship(&run, TaskId(3), 2, 2, &files)).await;
    assert_eq!((mark.stdout, mark.stderr), (stdout.len() as u64, 11));
    assert!(!mark.truncated && mark.error.is_empty(), "{mark:?}");
    assert_eq!(mark.path, dir.path().join("3.2").display().to_string());
    let Record::Ended(mut ended) = done(2, "h") else {
        unreachable!()
    };
    ended.output = Some(Box::new(mark));
    let into = tempfile::tempdir().unwrap();
    let fetched = bounded(task_output::fetch(&run, into.path(), TaskId(3), &ended)).await;
    let Fetched::Files {
        out,
        err,
        truncated,
        host,
        ..
    } = fetched
    else {
        panic!("not fetched: {fetched:?}");
    };
    assert!(!truncated);
    assert_eq!(host, "h");
    assert_eq!(out, into.path().join("3.2.out"));
    assert!(std::fs::read(&out).unwrap() == stdout, "stdout differs");
    assert_eq!(std::fs::read(&err).unwrap(), b"task 3 err\n");

    // A quiet attempt: no mark, nothing fetched, no file.
    let quiet = bounded(task_output::ship(&run, TaskId(4), 1, 1, &[])).await;
    assert_eq!((quiet.from, quiet.stdout, quiet.stderr), (None, 0, 0));
    let Record::Ended(ended) = done(1, "h") else {
        unreachable!()
    };
    assert_eq!(
        bounded(task_output::fetch(&run, into.path(), TaskId(4), &ended)).await,
        Fetched::Quiet
    );
    assert!(!into.path().join("4.1.out").exists());

    // Output that was not shipped (a publish failed): where it stays, and why.
    let Record::Ended(mut ended) = done(1, "h") else {
        unreachable!()
    };
    ended.output = Some(Box::new(sturdy_farm::engine::output::OutputMark {
        stdout: 5,
        path: "/agent/out/5.1".into(),
        error: "publish failed".into(),
        ..Default::default()
    }));
    assert_eq!(
        bounded(task_output::fetch(&run, into.path(), TaskId(5), &ended)).await,
        Fetched::OnHost {
            host: "h".into(),
            kept: "/agent/out/5.1".into(),
            why: "it was not shipped: publish failed".into(),
        }
    );
    assert!(!into.path().join("5.1.out").exists());
}

/// A publish that fails (here: the run's output stream is gone) leaves the output on the
/// host: the mark says why and where, and the coordinator's fetch names the host and
/// the files.
#[tokio::test]
async fn output_that_cannot_be_shipped_stays_on_the_host_and_says_where() {
    use sturdy_farm::engine::output::Channel;
    use sturdy_farm::task_output::{self, Fetched, OutputFile};

    let server = Server::start();
    let run = run(&server, "outfail").await;
    let client = async_nats::connect(&server.url).await.unwrap();
    async_nats::jetstream::new(client)
        .delete_stream("STURDY_outfail_OUT")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("2.1.out");
    std::fs::write(&out_path, b"task 2 out\n").unwrap();
    let files = [OutputFile {
        channel: Channel::Stdout,
        path: out_path,
        bytes: 11,
    }];
    let mark = bounded(task_output::ship(&run, TaskId(2), 1, 1, &files)).await;
    assert_eq!((mark.from, mark.stdout), (None, 11));
    assert!(!mark.error.is_empty(), "{mark:?}");
    let kept = dir.path().join("2.1").display().to_string();
    assert_eq!(mark.path, kept);
    let Record::Ended(mut ended) = done(1, "far") else {
        unreachable!()
    };
    ended.output = Some(Box::new(mark.clone()));
    let into = tempfile::tempdir().unwrap();
    match bounded(task_output::fetch(&run, into.path(), TaskId(2), &ended)).await {
        Fetched::OnHost {
            host,
            kept: at,
            why,
        } => {
            assert_eq!((host.as_str(), at.as_str()), ("far", kept.as_str()));
            assert_eq!(why, format!("it was not shipped: {}", mark.error));
        }
        other => panic!("expected the output on its host, got {other:?}"),
    }
}

#[tokio::test]
async fn an_amendment_is_compare_and_set_and_a_waiting_message_can_be_withdrawn() {
    let server = Server::start();
    let js = JetStream::connect(&server.url, config()).await.unwrap();
    let (run, _) = js.create_run("amend", &meta("fp-A")).await.unwrap();
    assert_eq!(run.amendment().await.unwrap(), None);
    run.write(TaskId(1), Revision::NONE, &claim(1, "h"))
        .await
        .unwrap()
        .unwrap();

    // Two coordinators amend from fp-A at once: the first wins, the second (another
    // list) is refused naming the list now recorded, a third with the winner's list
    // finds its amendment.
    let at = run.amend("fp-A", &meta("fp-B")).await.unwrap();
    match run.amend("fp-A", &meta("fp-C")).await {
        Err(Error::Fingerprint {
            existing, given, ..
        }) => assert_eq!((existing.as_str(), given.as_str()), ("fp-B", "fp-C")),
        other => panic!("expected a fingerprint error, got {other:?}"),
    }
    assert_eq!(run.amend("fp-A", &meta("fp-B")).await.unwrap(), at);
    assert_eq!(run.amendment().await.unwrap(), Some((at, meta("fp-B"))));
    assert_eq!(run.meta().await.unwrap().fingerprint, "fp-B");
    let (_, opened) = js.create_run("amend", &meta("fp-B")).await.unwrap();
    assert_eq!(opened, Opened::Existing);
    assert!(matches!(
        js.create_run("amend", &meta("fp-A")).await,
        Err(Error::Fingerprint { .. })
    ));
    // A later amendment goes on from the newest one, under a higher sequence.
    let next = run.amend("fp-B", &meta("fp-D")).await.unwrap();
    assert!(next > at);
    // The journal holds the task's record, not the amendments.
    let mut follow = run.follow(Position::START).await.unwrap();
    let first = bounded(follow.next()).await.unwrap().unwrap();
    assert_eq!((first.task, first.record), (TaskId(1), claim(1, "h")));
    run.note(TaskId(2), &claim(9, "x")).await.unwrap();
    let second = bounded(follow.next()).await.unwrap().unwrap();
    assert_eq!((second.task, second.note), (TaskId(2), true));

    // A waiting work message: read back with its generation and text, then withdrawn.
    run.enqueue(TaskId(7), b"old", Generation(0)).await.unwrap();
    let m = run.work_message(TaskId(7)).await.unwrap().unwrap();
    assert_eq!((m.generation, &m.payload[..]), (Generation(0), &b"old"[..]));
    assert_eq!(run.work_message(TaskId(8)).await.unwrap(), None);
    assert!(run.withdraw(TaskId(7), m.sequence).await.unwrap());
    assert_eq!(run.work_message(TaskId(7)).await.unwrap(), None);
    assert!(!run.withdraw(TaskId(7), m.sequence).await.unwrap());
    assert!(
        run.next_within(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
}
