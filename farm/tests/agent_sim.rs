//! `farm::agent` against an in-memory engine and a fake runner on a paused-clock
//! current-thread runtime: the shape a simulation drives it in. The engine keeps
//! JetStream's semantics that matter here: leases lapse after the ack wait, renewals and
//! settles are not fenced, records are written with compare-and-set.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sturdy_core::failure::FailureKind;
use sturdy_core::retry::{RetryPolicy, fixed_policy};
use sturdy_farm::agent::{self, AgentConfig, Control, Event, Exit, Runner, Running, Start};
use sturdy_farm::engine::{
    Claim, Conflict, Delivery, Engine, Enqueued, Entry, Error, Generation, Outcome, Position,
    Record, Revision, Settle, TaskId,
};
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

const ACK_WAIT: Duration = Duration::from_millis(1000);

struct Msg {
    task: TaskId,
    payload: Bytes,
    delivered: u64,
    leased_until: Option<Instant>,
    available_at: Instant,
}

#[derive(Default)]
struct Inner {
    queue: BTreeMap<u64, Msg>,
    ids: BTreeMap<(u32, u64), ()>,
    /// Task → (revision, record) of its newest record.
    records: BTreeMap<u32, (Revision, Record)>,
    journal: Vec<Entry>,
    seq: u64,
    settles: Vec<(u32, &'static str)>,
}

#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Inner>>);

impl Mem {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

impl Engine for Mem {
    type Handle = u64;
    type Follow = futures_util::stream::Iter<std::vec::IntoIter<Result<Entry, Error>>>;

    async fn enqueue(
        &self,
        task: TaskId,
        payload: &[u8],
        generation: Generation,
    ) -> Result<Enqueued, Error> {
        let now = Instant::now();
        Ok(self.with(|s| {
            if s.ids.insert((task.0, generation.0), ()).is_some() {
                return Enqueued::Duplicate;
            }
            s.seq += 1;
            let seq = s.seq;
            s.queue.insert(
                seq,
                Msg {
                    task,
                    payload: Bytes::copy_from_slice(payload),
                    delivered: 0,
                    leased_until: None,
                    available_at: now,
                },
            );
            Enqueued::Queued
        }))
    }

    async fn next(&self) -> Result<Delivery<u64>, Error> {
        loop {
            if let Some(d) = self.next_within(Duration::from_secs(1)).await? {
                return Ok(d);
            }
        }
    }

    async fn next_within(&self, wait: Duration) -> Result<Option<Delivery<u64>>, Error> {
        let until = Instant::now() + wait;
        loop {
            let now = Instant::now();
            let got = self.with(|s| {
                let (seq, m) = s.queue.iter_mut().find(|(_, m)| {
                    m.available_at <= now && m.leased_until.is_none_or(|t| t <= now)
                })?;
                m.delivered += 1;
                m.leased_until = Some(now + ACK_WAIT);
                Some(Delivery::new(
                    m.task,
                    Generation(0),
                    m.payload.clone(),
                    m.delivered,
                    *seq,
                    *seq,
                ))
            });
            if got.is_some() || now >= until {
                return Ok(got);
            }
            sleep(Duration::from_millis(10)).await;
        }
    }

    async fn read(&self, task: TaskId) -> Result<(Option<Record>, Revision), Error> {
        Ok(self.with(|s| match s.records.get(&task.0) {
            Some((rev, r)) => (Some(r.clone()), *rev),
            None => (None, Revision::NONE),
        }))
    }

    async fn write(
        &self,
        task: TaskId,
        expect: Revision,
        record: &Record,
    ) -> Result<Result<Revision, Conflict>, Error> {
        Ok(self.with(|s| {
            let now = s.records.get(&task.0).map_or(Revision::NONE, |(r, _)| *r);
            if now != expect {
                return Err(Conflict {
                    task,
                    expected: expect,
                });
            }
            s.seq += 1;
            let rev = Revision(s.seq);
            s.records.insert(task.0, (rev, record.clone()));
            s.journal.push(Entry {
                position: Position(s.seq),
                task,
                record: record.clone(),
                note: false,
            });
            Ok(rev)
        }))
    }

    async fn note(&self, task: TaskId, record: &Record) -> Result<Position, Error> {
        Ok(self.with(|s| {
            s.seq += 1;
            s.journal.push(Entry {
                position: Position(s.seq),
                task,
                record: record.clone(),
                note: true,
            });
            Position(s.seq)
        }))
    }

    async fn renew(&self, delivery: &Delivery<u64>) -> Result<(), Error> {
        let now = Instant::now();
        self.with(|s| {
            if let Some(m) = s.queue.get_mut(delivery.handle()) {
                m.leased_until = Some(now + ACK_WAIT); // not fenced, as JetStream
            }
        });
        Ok(())
    }

    async fn settle(&self, delivery: Delivery<u64>, how: Settle) -> Result<(), Error> {
        let now = Instant::now();
        self.with(|s| {
            let seq = *delivery.handle();
            let name = match how {
                Settle::Ack => "ack",
                Settle::Nak(_) => "nak",
                Settle::Term => "term",
            };
            s.settles.push((delivery.task().0, name));
            match how {
                Settle::Ack | Settle::Term => {
                    s.queue.remove(&seq);
                }
                Settle::Nak(delay) => {
                    if let Some(m) = s.queue.get_mut(&seq) {
                        m.leased_until = None;
                        m.available_at = now + delay;
                    }
                }
            }
        });
        Ok(())
    }

    async fn follow(&self, from: Position) -> Result<Self::Follow, Error> {
        // A snapshot is enough for these tests (the agent never follows).
        let entries: Vec<_> = self.with(|s| {
            s.journal
                .iter()
                .filter(|e| e.position >= from)
                .cloned()
                .map(Ok)
                .collect()
        });
        Ok(futures_util::stream::iter(entries))
    }
}

/// Payload `ok:MS`, `fail:MS` or `hang`.
#[derive(Clone, Default)]
struct Fake {
    kills: Arc<Mutex<Vec<(u32, u32)>>>,
    starts: Arc<Mutex<Vec<(u32, u32, String)>>>,
}

struct FakeRunning {
    task: u32,
    attempt: u32,
    until: Option<Instant>,
    fail: bool,
    killed: bool,
    kills: Arc<Mutex<Vec<(u32, u32)>>>,
}

impl Runner for Fake {
    type Running = FakeRunning;

    async fn start(&self, start: Start<'_>) -> Result<FakeRunning, String> {
        let text = std::str::from_utf8(start.payload).unwrap();
        self.starts
            .lock()
            .unwrap()
            .push((start.task.0, start.attempt, start.slot.to_string()));
        let (kind, ms) = text.split_once(':').unwrap_or((text, "0"));
        let ms: u64 = ms.parse().unwrap();
        Ok(FakeRunning {
            task: start.task.0,
            attempt: start.attempt,
            until: (kind != "hang").then(|| Instant::now() + Duration::from_millis(ms)),
            fail: kind == "fail",
            killed: false,
            kills: self.kills.clone(),
        })
    }
}

impl Running for FakeRunning {
    async fn wait(&mut self) -> Exit {
        if !self.killed {
            match self.until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        }
        if self.killed {
            return Exit {
                failure: Some(FailureKind::Unknown),
                signal: Some(9),
                ..Exit::default()
            };
        }
        Exit {
            failure: self.fail.then_some(FailureKind::Evaluation),
            exit: Some(i32::from(self.fail)),
            ..Exit::default()
        }
    }

    async fn kill(&mut self) {
        self.killed = true;
        self.kills.lock().unwrap().push((self.task, self.attempt));
    }
}

fn config(host: &str, slots: usize) -> AgentConfig {
    let mut c = AgentConfig::new(host, (0..slots).map(|i| i.to_string()).collect());
    c.heartbeat = Duration::from_millis(200);
    c.pull_wait = Duration::from_millis(300);
    c.retry = fixed_policy(3, Duration::from_millis(500)).unwrap();
    c
}

fn ended(mem: &Mem) -> Vec<(u32, u32, Outcome, String)> {
    mem.with(|s| {
        s.journal
            .iter()
            .filter_map(|e| match &e.record {
                Record::Ended(x) if !e.note => {
                    Some((e.task.0, x.attempt, x.outcome, x.host.clone()))
                }
                _ => None,
            })
            .collect()
    })
}

/// Runs `agents` over `tasks` until every task is finished; returns the journal as text.
async fn scenario(tasks: &[&str], retry: RetryPolicy) -> (Mem, Fake, String) {
    let mem = Mem::default();
    for (i, payload) in tasks.iter().enumerate() {
        let task = TaskId(u32::try_from(i).unwrap() + 1);
        mem.enqueue(task, payload.as_bytes(), Generation(0))
            .await
            .unwrap();
    }
    let fake = Fake::default();
    let (tx, rx) = watch::channel(Control::Run);
    let mut a = config("a", 2);
    a.retry = retry;
    let mut b = config("b", 1);
    b.retry = retry;
    let n = tasks.len();
    let watcher = {
        let mem = mem.clone();
        async move {
            loop {
                sleep(Duration::from_millis(50)).await;
                let finished = mem.with(|s| {
                    s.records
                        .values()
                        .filter(|(_, r)| {
                            agent::core_record(Some(r)).is_some_and(|c| c.is_finished())
                        })
                        .count()
                });
                if finished == n {
                    tx.send(Control::Drain).unwrap();
                    return;
                }
            }
        }
    };
    let quiet = |_: &Event| {};
    let (ra, rb, ()) = tokio::join!(
        agent::run(&mem, &fake, &a, rx.clone(), &quiet),
        agent::run(&mem, &fake, &b, rx, &quiet),
        watcher
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.attempts + rb.attempts,
        mem.with(|s| s
            .journal
            .iter()
            .filter(|e| matches!(e.record, Record::Claimed(_)))
            .count() as u64)
    );
    let text = mem.with(|s| format!("{:?}", s.journal));
    (mem, fake, text)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn every_task_ends_once_and_failures_retry_then_give_up() {
    let tasks = ["ok:100", "ok:300", "fail:50", "ok:10", "ok:700"];
    let (mem, fake, _) =
        scenario(&tasks, fixed_policy(3, Duration::from_millis(500)).unwrap()).await;
    let ended = ended(&mem);
    for task in [1, 2, 4, 5] {
        let done: Vec<_> = ended.iter().filter(|e| e.0 == task).collect();
        assert_eq!(done.len(), 1, "task {task}: {done:?}");
        assert_eq!(done[0].2, Outcome::Done);
    }
    let three: Vec<_> = ended
        .iter()
        .filter(|e| e.0 == 3)
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(
        three,
        vec![
            (1, Outcome::Retry),
            (2, Outcome::Retry),
            (3, Outcome::GaveUp)
        ]
    );
    // Settled only after the record: acks for the done, naks then a term for task 3.
    let settles: Vec<_> =
        mem.with(|s| s.settles.iter().filter(|x| x.0 == 3).map(|x| x.1).collect());
    assert_eq!(settles, ["nak", "nak", "term"]);
    assert!(fake.kills.lock().unwrap().is_empty());
    assert!(mem.with(|s| s.queue.is_empty()));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_same_run_replays_exactly() {
    let tasks = [
        "ok:120", "fail:30", "ok:10", "ok:400", "ok:50", "fail:10", "ok:90",
    ];
    let retry = fixed_policy(2, Duration::from_millis(250)).unwrap();
    let (_, fake1, one) = scenario(&tasks, retry).await;
    let (_, fake2, two) = scenario(&tasks, retry).await;
    assert_eq!(one, two);
    assert_eq!(*fake1.starts.lock().unwrap(), *fake2.starts.lock().unwrap());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stale_attempt_is_killed_noted_and_never_settles() {
    let mem = Mem::default();
    mem.enqueue(TaskId(1), b"hang", Generation(0))
        .await
        .unwrap();
    let fake = Fake::default();
    let (tx, rx) = watch::channel(Control::Run);
    let a = config("a", 1);
    let events = Mutex::new(Vec::new());
    let log = |e: &Event| events.lock().unwrap().push(e.clone());
    let intruder = async {
        // Once A's claim is written, another host claims over it (as after a lapsed
        // lease): A's next renewal must find itself stale.
        loop {
            sleep(Duration::from_millis(20)).await;
            let (record, rev) = mem.read(TaskId(1)).await.unwrap();
            if let Some(Record::Claimed(c)) = record {
                let mut theirs: Claim = c.clone();
                theirs.attempt = 2;
                theirs.epoch = 2;
                theirs.host = "b".into();
                theirs.crashes = 1;
                mem.write(TaskId(1), rev, &Record::Claimed(theirs))
                    .await
                    .unwrap()
                    .unwrap();
                break;
            }
        }
        sleep(Duration::from_millis(500)).await;
        tx.send(Control::Drain).unwrap();
    };
    let (summary, ()) = tokio::join!(agent::run(&mem, &fake, &a, rx, &log), intruder);
    let summary = summary.unwrap();
    assert_eq!((summary.attempts, summary.stale, summary.done), (1, 1, 0));
    assert_eq!(*fake.kills.lock().unwrap(), vec![(1, 1)]);
    // A left the delivery alone: no settle, the message is still there.
    assert!(mem.with(|s| s.settles.is_empty()));
    assert_eq!(mem.with(|s| s.queue.len()), 1);
    // Its note is in the journal; the record is still B's claim.
    let notes = mem.with(|s| s.journal.iter().filter(|e| e.note).count());
    assert_eq!(notes, 1);
    let (record, _) = mem.read(TaskId(1)).await.unwrap();
    assert!(matches!(record, Some(Record::Claimed(c)) if c.host == "b"));
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Stale { attempt: 1, .. }))
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_task_whose_claims_keep_dying_gives_up_on_crashes() {
    let mem = Mem::default();
    mem.enqueue(TaskId(7), b"ok:10", Generation(0))
        .await
        .unwrap();
    // Two earlier claims died with their hosts (crash limit 1): the record says so.
    let dead = Record::Claimed(Claim {
        attempt: 2,
        epoch: 2,
        host: "gone".into(),
        slot: "0".into(),
        crashes: 1,
        own_failures: 0,
    });
    mem.write(TaskId(7), Revision::NONE, &dead)
        .await
        .unwrap()
        .unwrap();
    let fake = Fake::default();
    let (tx, rx) = watch::channel(Control::Run);
    let mut a = config("a", 1);
    a.crash_limit = 1;
    let quiet = |_: &Event| {};
    let stop = async {
        sleep(Duration::from_millis(500)).await;
        tx.send(Control::Drain).unwrap();
    };
    let (summary, ()) = tokio::join!(agent::run(&mem, &fake, &a, rx, &quiet), stop);
    assert_eq!(summary.unwrap().attempts, 0);
    assert!(fake.starts.lock().unwrap().is_empty(), "nothing ran");
    let (record, _) = mem.read(TaskId(7)).await.unwrap();
    let Some(Record::Ended(e)) = record else {
        panic!("{record:?}")
    };
    assert_eq!(
        (e.outcome, e.kind.as_str(), e.crashes),
        (Outcome::GaveUp, "worker_crash", 2)
    );
    assert_eq!(mem.with(|s| s.settles.clone()), vec![(7, "term")]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_first_delivery_of_a_finished_task_is_acked_without_running() {
    // The claim of a first delivery is written against "no record" without reading; here
    // the task finished already (its work message enqueued again, as by a resume), so
    // that write is refused, and the agent reads, finds `ended done` and only acks.
    let mem = Mem::default();
    let done = Record::Ended(sturdy_farm::engine::Ended {
        attempt: 1,
        epoch: 1,
        host: "gone".into(),
        slot: "0".into(),
        outcome: Outcome::Done,
        kind: String::new(),
        exit: Some(0),
        signal: None,
        runtime_ms: 5,
        next_ms: None,
        detail: String::new(),
        crashes: 0,
        own_failures: 0,
        output: None,
    });
    mem.write(TaskId(3), Revision::NONE, &done)
        .await
        .unwrap()
        .unwrap();
    mem.enqueue(TaskId(3), b"ok:10", Generation(0))
        .await
        .unwrap();
    let fake = Fake::default();
    let (tx, rx) = watch::channel(Control::Run);
    let a = config("a", 1);
    let drain = async {
        while mem.with(|s| s.settles.is_empty()) {
            sleep(Duration::from_millis(20)).await;
        }
        tx.send(Control::Drain).unwrap();
    };
    let quiet = |_: &Event| {};
    let (summary, ()) = tokio::join!(agent::run(&mem, &fake, &a, rx, &quiet), drain);
    let summary = summary.unwrap();
    assert_eq!((summary.attempts, summary.skipped), (0, 1));
    assert!(fake.starts.lock().unwrap().is_empty());
    assert_eq!(mem.with(|s| s.settles.clone()), vec![(3, "ack")]);
    assert_eq!(mem.with(|s| s.journal.len()), 1, "no claim was written");
}

/// [`Fake`] behind a health gate that is closed for the slots in `closed`.
struct Gated {
    fake: Fake,
    closed: Vec<usize>,
}

impl Runner for Gated {
    type Running = FakeRunning;

    async fn start(&self, start: Start<'_>) -> Result<FakeRunning, String> {
        self.fake.start(start).await
    }

    fn admits(&self, slot_index: usize) -> bool {
        !self.closed.contains(&slot_index)
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_slot_whose_health_gate_is_closed_pulls_nothing_and_says_so_once() {
    let mem = Mem::default();
    for t in 1..=6 {
        mem.enqueue(TaskId(t), b"ok:100", Generation(0))
            .await
            .unwrap();
    }
    let gated = Gated {
        fake: Fake::default(),
        closed: vec![0],
    };
    let (tx, rx) = watch::channel(Control::Run);
    let events = Mutex::new(Vec::new());
    let record = |e: &Event| events.lock().unwrap().push(e.clone());
    let watcher = {
        let mem = mem.clone();
        async move {
            loop {
                sleep(Duration::from_millis(50)).await;
                if ended(&mem).len() == 6 {
                    tx.send(Control::Drain).unwrap();
                    return;
                }
            }
        }
    };
    let a = config("a", 2);
    let (summary, ()) = tokio::join!(agent::run(&mem, &gated, &a, rx, &record), watcher);
    assert_eq!(summary.unwrap().attempts, 6);
    let starts = gated.fake.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 6);
    assert!(starts.iter().all(|(_, _, slot)| slot == "1"), "{starts:?}");
    let closed: Vec<Event> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::HealthGateClosed { .. }))
        .cloned()
        .collect();
    assert_eq!(
        closed,
        vec![Event::HealthGateClosed {
            slot: "0".to_string()
        }]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_host_whose_gate_stays_closed_takes_nothing_and_still_drains() {
    let mem = Mem::default();
    mem.enqueue(TaskId(1), b"ok:100", Generation(0))
        .await
        .unwrap();
    let gated = Gated {
        fake: Fake::default(),
        closed: vec![0, 1],
    };
    let (tx, rx) = watch::channel(Control::Run);
    let drain = async move {
        sleep(Duration::from_secs(30)).await;
        tx.send(Control::Drain).unwrap();
    };
    let quiet = |_: &Event| {};
    let a = config("a", 2);
    let (summary, ()) = tokio::join!(agent::run(&mem, &gated, &a, rx, &quiet), drain);
    assert_eq!(summary.unwrap().attempts, 0);
    assert!(gated.fake.starts.lock().unwrap().is_empty());
    assert!(ended(&mem).is_empty());
    // The task is still waiting in the queue, never delivered.
    assert_eq!(
        mem.with(|s| s.queue.values().map(|m| m.delivered).sum::<u64>()),
        0
    );
}
