//! The simulated JetStream server, sans IO: a work-queue stream with one pull consumer,
//! and the state stream with per-subject compare-and-set. Time is virtual milliseconds,
//! passed in by the caller; nothing here sleeps or waits.
//!
//! What it models, after SCALE-OUT.md section 3:
//! - each delivery starts a lease of `ack_wait`; a lapsed lease makes the message ready
//!   again with `num_delivered` (the [`Delivery::epoch`](crate::engine::Delivery::epoch))
//!   one higher; redeliveries go before messages never delivered (the server's
//!   redelivery queue comes first);
//! - `+WPI` resets the lease of whatever delivery of the message is live, **unfenced**: a
//!   stale renewal pins the message (point 9);
//! - ack and term delete the message, **unfenced**: a stale ack deletes the live
//!   redelivery (point 1); nak makes it ready after the delay (no BackOff, point 10);
//! - after `max_deliver` deliveries a lapsed message is never delivered again and stays in
//!   the stream (point 4);
//! - no delivery while `max_ack_pending` leases are live; pulls waiting beyond
//!   `max_waiting` are refused (point 12);
//! - a restart (outage) keeps every lease's timer: leases that lapse during the outage are
//!   redelivered, all at once, when it ends.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use crate::engine::{Entry, Outcome, Position, Record, Revision, TaskId};

/// The consumer's settings (JetStream names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// AckWait in milliseconds: a delivery not renewed or settled for this long lapses.
    pub ack_wait_ms: u64,
    /// MaxDeliver: deliveries of one message at most; 0 for unlimited.
    pub max_deliver: u64,
    /// MaxAckPending: live leases at most; no delivery while this many are live.
    pub max_ack_pending: usize,
    /// MaxWaiting: pull requests waiting at most; more are refused.
    pub max_waiting: usize,
    /// Keep every record write and note as a journal (for `follow`). Off for large runs.
    pub journal: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            ack_wait_ms: 10_000,
            max_deliver: 0,
            max_ack_pending: 1000,
            max_waiting: 512,
            journal: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Deliverable from this time on.
    Ready(u64),
    /// Leased until this deadline.
    Pending(u64),
    /// Delivered `max_deliver` times and lapsed: stays, never delivered again.
    Exhausted,
}

#[derive(Debug)]
struct Msg {
    task: TaskId,
    generation: u64,
    payload: Bytes,
    delivered: u64,
    state: State,
}

/// One delivery handed out by [`Server::pull`]: (stream sequence, num_delivered, task,
/// generation, payload).
#[derive(Clone, Debug)]
pub(crate) struct Handed {
    pub(crate) seq: u64,
    pub(crate) epoch: u64,
    pub(crate) task: TaskId,
    pub(crate) generation: u64,
    pub(crate) payload: Bytes,
}

/// Invariant checks the server keeps as writes arrive (the record rules' properties,
/// checked where the writes are ordered).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// Tasks with more than one `ended done` record.
    pub done_records_twice: u64,
    /// Accepted writes naming an attempt older than the task's newest claim.
    pub writes_after_newer_claim: u64,
    /// The most claims any task got.
    pub max_claims: u32,
}

/// Counters of what the server did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Deliveries handed out (first ones and redeliveries).
    pub deliveries: u64,
    /// Redeliveries (num_delivered > 1).
    pub redeliveries: u64,
    /// Leases that lapsed.
    pub lapses: u64,
    /// Messages that reached MaxDeliver and stay undelivered.
    pub exhausted: u64,
    /// Accepted record writes.
    pub writes: u64,
    /// Refused record writes (compare-and-set conflicts).
    pub conflicts: u64,
    /// Acks or renewals that found no message (already gone).
    pub settles_on_missing: u64,
    /// Pulls refused for `max_waiting`.
    pub pulls_refused: u64,
    /// Messages that lapsed during an outage and were ready when it ended (the largest
    /// such burst).
    pub redelivery_burst: u64,
}

/// The simulated server (see the module docs).
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) cfg: ServerConfig,
    /// The work stream: message `seq` at index `seq - 1`, `None` once deleted (sequences
    /// are dense: a lookup is one index, not a walk of a tree of a million messages).
    msgs: Vec<Option<Msg>>,
    /// Messages still in the work stream.
    live_msgs: usize,
    work_seq: u64,
    dedupe: BTreeSet<(u32, u64)>,
    /// Never delivered: in stream order.
    fresh: BTreeSet<u64>,
    /// To be delivered again (lapsed or nak'd), by the time they may be: served before
    /// fresh messages, as the server's redelivery queue is.
    ready: BTreeSet<(u64, u64)>,
    /// Lease deadlines `(deadline, seq)` in deadline order. Every lease is `ack_wait`
    /// from when it started or was renewed, so a new deadline goes at the back; a
    /// renewal or settlement leaves the old entry behind, and an entry counts only while
    /// its message is still `Pending` with that deadline (checked when it comes to the
    /// front). A renewal is a push, not a removal and insertion in a tree.
    pending: VecDeque<(u64, u64)>,
    /// Live leases (messages in `State::Pending`).
    leases: usize,
    records: Vec<Option<(Record, Revision)>>,
    /// Each task's revision alone, as in `records` (`Revision::NONE` for no record): a
    /// renewal's fence reads 8 bytes here, not a line of a record of about 200 bytes.
    revisions: Vec<Revision>,
    state_seq: u64,
    journal: Vec<Entry>,
    /// Per task: `ended done` writes, newest claim attempt.
    done: Vec<u8>,
    newest_claim: Vec<u32>,
    /// Tasks whose record is final (done or gave up).
    pub(crate) finals: u64,
    pub(crate) checks: Checks,
    pub(crate) stats: ServerStats,
    /// Outages as [start, end) in ms, sorted; the first one not over yet is first.
    outages: VecDeque<(u64, u64)>,
    in_outage: bool,
}

impl Server {
    pub(crate) fn new(cfg: ServerConfig, mut outages: Vec<(u64, u64)>) -> Self {
        outages.sort_unstable();
        Self {
            cfg,
            msgs: Vec::new(),
            live_msgs: 0,
            work_seq: 0,
            dedupe: BTreeSet::new(),
            fresh: BTreeSet::new(),
            ready: BTreeSet::new(),
            pending: VecDeque::new(),
            leases: 0,
            records: Vec::new(),
            revisions: Vec::new(),
            state_seq: 0,
            journal: Vec::new(),
            done: Vec::new(),
            newest_claim: Vec::new(),
            finals: 0,
            checks: Checks::default(),
            stats: ServerStats::default(),
            outages: outages.into(),
            in_outage: false,
        }
    }

    /// Whether the server is down at `now` (restarting).
    pub(crate) fn is_down(&self, now: u64) -> bool {
        self.outages
            .iter()
            .take_while(|(s, _)| *s <= now)
            .any(|(s, e)| *s <= now && now < *e)
    }

    /// Moves time to `now`: lapses leases, enters and leaves outages. Returns whether an
    /// outage started (waiting pulls are then dropped by the caller).
    pub(crate) fn advance(&mut self, now: u64) -> bool {
        let mut started = false;
        while let Some(&(s, e)) = self.outages.front() {
            if !self.in_outage {
                if now < s {
                    break;
                }
                self.in_outage = true;
                started = true;
            }
            if now < e {
                break;
            }
            self.outages.pop_front();
            self.in_outage = false;
            self.lapse(e);
            let burst = self.ready.iter().take_while(|(at, _)| *at <= e).count() as u64;
            self.stats.redelivery_burst = self.stats.redelivery_burst.max(burst);
        }
        self.lapse(now);
        started
    }

    fn lapse(&mut self, now: u64) {
        while let Some(&(deadline, seq)) = self.pending.front() {
            if deadline > now {
                break;
            }
            self.pending.pop_front();
            let Some(m) = Self::slot(&mut self.msgs, seq) else {
                continue; // settled since
            };
            if m.state != State::Pending(deadline) {
                continue; // renewed, settled or delivered again since
            }
            self.stats.lapses += 1;
            self.leases -= 1;
            if self.cfg.max_deliver > 0 && m.delivered >= self.cfg.max_deliver {
                m.state = State::Exhausted;
                self.stats.exhausted += 1;
            } else {
                m.state = State::Ready(deadline);
                self.ready.insert((deadline, seq));
            }
        }
    }

    /// The live message `seq`, if it is still in the stream.
    fn slot(msgs: &mut [Option<Msg>], seq: u64) -> Option<&mut Msg> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        msgs.get_mut(i)?.as_mut()
    }

    /// Starts (or renews) message `seq`'s lease: it lapses at `deadline`.
    fn lease(&mut self, deadline: u64, seq: u64) {
        match self.pending.back() {
            Some(&(last, _)) if last > deadline => {
                // Not reached with a fixed ack wait and a clock that does not go back;
                // kept in order all the same.
                let at = self.pending.partition_point(|&(d, _)| d <= deadline);
                self.pending.insert(at, (deadline, seq));
            }
            _ => self.pending.push_back((deadline, seq)),
        }
    }

    /// The next time something may change by itself: a lease lapses (or an entry of one
    /// renewed since comes due: early, never late), a nak delay ends, an outage starts or
    /// ends.
    pub(crate) fn next_wake(&self, now: u64) -> Option<u64> {
        let lease = self.pending.front().map(|(d, _)| *d);
        let ready = self
            .ready
            .range((now.saturating_add(1), 0)..)
            .next()
            .map(|(at, _)| *at);
        let outage = self
            .outages
            .front()
            .map(|(s, e)| if *s > now { *s } else { *e });
        [lease, ready, outage].into_iter().flatten().min()
    }

    /// Stores a work message; `false` for a duplicate (task, generation).
    pub(crate) fn enqueue(
        &mut self,
        task: TaskId,
        generation: u64,
        payload: Bytes,
        now: u64,
    ) -> bool {
        if !self.dedupe.insert((task.0, generation)) {
            return false;
        }
        self.work_seq += 1;
        let seq = self.work_seq;
        debug_assert_eq!(self.msgs.len() as u64, seq - 1);
        self.msgs.push(Some(Msg {
            task,
            generation,
            payload,
            delivered: 0,
            state: State::Ready(now),
        }));
        self.live_msgs += 1;
        self.fresh.insert(seq);
        true
    }

    /// Hands out the next ready message, if any may be handed out at `now`.
    pub(crate) fn pull(&mut self, now: u64) -> Option<Handed> {
        if self.in_outage || self.leases >= self.cfg.max_ack_pending {
            return None;
        }
        let seq = match self.ready.first() {
            Some(&(at, seq)) if at <= now => {
                self.ready.pop_first();
                seq
            }
            _ => self.fresh.pop_first()?,
        };
        let m = Self::slot(&mut self.msgs, seq)?;
        m.delivered += 1;
        let deadline = now + self.cfg.ack_wait_ms;
        m.state = State::Pending(deadline);
        let handed = Handed {
            seq,
            epoch: m.delivered,
            task: m.task,
            generation: m.generation,
            payload: m.payload.clone(),
        };
        self.leases += 1;
        self.lease(deadline, seq);
        self.stats.deliveries += 1;
        if handed.epoch > 1 {
            self.stats.redeliveries += 1;
        }
        Some(handed)
    }

    /// `+WPI` on message `seq`, from whichever delivery: unfenced.
    pub(crate) fn renew(&mut self, seq: u64, now: u64) {
        match Self::slot(&mut self.msgs, seq) {
            Some(m) => {
                if let State::Pending(_) = m.state {
                    let deadline = now + self.cfg.ack_wait_ms;
                    m.state = State::Pending(deadline);
                    self.lease(deadline, seq);
                }
            }
            None => self.stats.settles_on_missing += 1,
        }
    }

    /// Ack or term of message `seq`, from whichever delivery: unfenced, deletes it.
    pub(crate) fn remove(&mut self, seq: u64) {
        let taken = usize::try_from(seq.wrapping_sub(1))
            .ok()
            .and_then(|i| self.msgs.get_mut(i))
            .and_then(Option::take);
        if taken.is_some() {
            self.live_msgs -= 1;
        }
        match taken {
            Some(m) => match m.state {
                State::Pending(_) => self.leases -= 1,
                State::Ready(at) => {
                    if m.delivered == 0 {
                        self.fresh.remove(&seq);
                    } else {
                        self.ready.remove(&(at, seq));
                    }
                }
                State::Exhausted => {}
            },
            None => self.stats.settles_on_missing += 1,
        }
    }

    /// Nak of message `seq` with `delay_ms`, from whichever delivery: unfenced.
    pub(crate) fn nak(&mut self, seq: u64, delay_ms: u64, now: u64) {
        match Self::slot(&mut self.msgs, seq) {
            Some(m) => {
                if let State::Pending(_) = m.state {
                    self.leases -= 1;
                    let at = now + delay_ms;
                    m.state = State::Ready(at);
                    self.ready.insert((at, seq));
                }
            }
            None => self.stats.settles_on_missing += 1,
        }
    }

    /// The task's record and revision.
    pub(crate) fn read(&self, task: TaskId) -> (Option<Record>, Revision) {
        match self.records.get(task.0 as usize) {
            Some(Some((r, rev))) => (Some(r.clone()), *rev),
            _ => (None, Revision::NONE),
        }
    }

    /// The task's revision only.
    pub(crate) fn revision(&self, task: TaskId) -> Revision {
        self.revisions
            .get(task.0 as usize)
            .copied()
            .unwrap_or(Revision::NONE)
    }

    /// Compare-and-set write of the task's record.
    pub(crate) fn write(
        &mut self,
        task: TaskId,
        expect: Revision,
        record: &Record,
    ) -> Option<Revision> {
        let i = task.0 as usize;
        if self.records.len() <= i {
            self.records.resize(i + 1, None);
            self.revisions.resize(i + 1, Revision::NONE);
            self.done.resize(i + 1, 0);
            self.newest_claim.resize(i + 1, 0);
        }
        let current = self.revisions[i];
        if current != expect {
            self.stats.conflicts += 1;
            return None;
        }
        let attempt = match record {
            Record::Claimed(c) => Some(c.attempt),
            Record::Ended(e) => Some(e.attempt),
            Record::Stale(s) => Some(s.attempt),
            _ => None,
        };
        if let Some(a) = attempt
            && a < self.newest_claim[i]
        {
            self.checks.writes_after_newer_claim += 1;
        }
        let was_final = self.records[i].as_ref().is_some_and(|(r, _)| is_final(r));
        match record {
            Record::Claimed(c) => {
                self.newest_claim[i] = self.newest_claim[i].max(c.attempt);
                self.checks.max_claims = self.checks.max_claims.max(c.attempt);
            }
            Record::Ended(e) if e.outcome == Outcome::Done => {
                self.done[i] = self.done[i].saturating_add(1);
                if self.done[i] == 2 {
                    self.checks.done_records_twice += 1;
                }
            }
            _ => {}
        }
        if is_final(record) && !was_final {
            self.finals += 1;
        } else if was_final && !is_final(record) {
            self.finals -= 1;
        }
        self.state_seq += 1;
        let rev = Revision(self.state_seq);
        self.records[i] = Some((record.clone(), rev));
        self.revisions[i] = rev;
        self.stats.writes += 1;
        if self.cfg.journal {
            self.journal.push(Entry {
                position: Position(self.state_seq),
                task,
                record: record.clone(),
                note: false,
            });
        }
        Some(rev)
    }

    /// A journal note (no compare-and-set).
    pub(crate) fn note(&mut self, task: TaskId, record: &Record) -> Position {
        self.state_seq += 1;
        if self.cfg.journal {
            self.journal.push(Entry {
                position: Position(self.state_seq),
                task,
                record: record.clone(),
                note: true,
            });
        }
        Position(self.state_seq)
    }

    /// Journal entries from `from` on, at most `max`.
    pub(crate) fn journal_from(&self, from: Position, max: usize) -> Vec<Entry> {
        let start = self.journal.partition_point(|e| e.position < from);
        self.journal[start..].iter().take(max).cloned().collect()
    }

    /// Live leases.
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.leases
    }

    /// Messages still in the work stream.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> usize {
        self.live_msgs
    }
}

/// Whether a record ends its task (done or given up).
pub(crate) fn is_final(r: &Record) -> bool {
    matches!(r, Record::Ended(e) if matches!(e.outcome, Outcome::Done | Outcome::GaveUp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Claim, Ended};

    fn cfg() -> ServerConfig {
        ServerConfig {
            ack_wait_ms: 1500,
            max_deliver: 4,
            ..ServerConfig::default()
        }
    }

    #[test]
    fn stale_ack_deletes_the_live_redelivery() {
        // SCALE-OUT section 3 point 1.
        let mut s = Server::new(cfg(), vec![]);
        assert!(s.enqueue(TaskId(1), 0, Bytes::new(), 0));
        let a = s.pull(0).unwrap();
        assert_eq!(a.epoch, 1);
        s.advance(1500);
        let b = s.pull(1500).unwrap();
        assert_eq!((b.seq, b.epoch), (a.seq, 2));
        s.remove(a.seq); // A's stale ack
        assert_eq!((s.messages(), s.pending_len()), (0, 0));
        s.advance(10_000);
        assert!(s.pull(10_000).is_none());
    }

    #[test]
    fn stale_renewal_pins_the_message() {
        // Point 9.
        let mut s = Server::new(cfg(), vec![]);
        s.enqueue(TaskId(1), 0, Bytes::new(), 0);
        let a = s.pull(0).unwrap();
        s.advance(1500);
        let _b = s.pull(1500).unwrap();
        for t in (2000..8000).step_by(500) {
            s.advance(t);
            s.renew(a.seq, t);
            assert!(s.pull(t).is_none(), "redelivered at {t}");
        }
    }

    #[test]
    fn max_deliver_keeps_the_message_and_nak_delays() {
        let mut s = Server::new(cfg(), vec![]);
        s.enqueue(TaskId(1), 0, Bytes::new(), 0);
        let d = s.pull(0).unwrap();
        s.nak(d.seq, 1000, 100);
        assert!(s.pull(1099).is_none());
        assert_eq!(s.pull(1100).unwrap().epoch, 2);
        s.advance(2600);
        assert_eq!(s.pull(2600).unwrap().epoch, 3);
        s.advance(4100);
        assert_eq!(s.pull(4100).unwrap().epoch, 4);
        s.advance(5600);
        assert!(s.pull(5600).is_none());
        assert_eq!((s.messages(), s.stats.exhausted), (1, 1));
    }

    #[test]
    fn redeliveries_go_before_the_backlog() {
        let mut s = Server::new(cfg(), vec![]);
        for t in 0..3 {
            s.enqueue(TaskId(t), 0, Bytes::new(), 0);
        }
        let a = s.pull(0).unwrap();
        s.advance(1500);
        let again = s.pull(1500).unwrap();
        assert_eq!((again.task, again.epoch), (a.task, 2));
        assert_eq!(s.pull(1500).unwrap().task, TaskId(1));
    }

    #[test]
    fn duplicate_enqueue_and_ack_pending_limit() {
        let mut s = Server::new(
            ServerConfig {
                max_ack_pending: 1,
                ..cfg()
            },
            vec![],
        );
        assert!(s.enqueue(TaskId(1), 0, Bytes::new(), 0));
        assert!(!s.enqueue(TaskId(1), 0, Bytes::new(), 0));
        assert!(s.enqueue(TaskId(2), 0, Bytes::new(), 0));
        let a = s.pull(0).unwrap();
        assert!(s.pull(0).is_none());
        s.remove(a.seq);
        assert_eq!(s.pull(0).unwrap().task, TaskId(2));
    }

    #[test]
    fn outage_keeps_lease_timers_and_bursts_at_restart() {
        let mut s = Server::new(cfg(), vec![(1000, 5000)]);
        for t in 0..3 {
            s.enqueue(TaskId(t), 0, Bytes::new(), 0);
        }
        for _ in 0..3 {
            s.pull(0).unwrap();
        }
        assert!(s.advance(1000));
        assert!(s.is_down(2000));
        s.advance(2000);
        assert!(s.pull(2000).is_none());
        s.advance(5000);
        assert!(!s.is_down(5000));
        assert_eq!(s.stats.redelivery_burst, 3);
        assert_eq!(s.pull(5000).unwrap().epoch, 2);
    }

    #[test]
    fn cas_and_checks() {
        let mut s = Server::new(cfg(), vec![]);
        let claim = |attempt| {
            Record::Claimed(Claim {
                attempt,
                epoch: u64::from(attempt),
                host: "h".into(),
                slot: "0".into(),
                crashes: 0,
                own_failures: 0,
            })
        };
        let done = |attempt| {
            Record::Ended(Ended {
                attempt,
                epoch: u64::from(attempt),
                host: "h".into(),
                slot: "0".into(),
                outcome: Outcome::Done,
                kind: String::new(),
                exit: Some(0),
                signal: None,
                runtime_ms: 1,
                next_ms: None,
                detail: String::new(),
                crashes: 0,
                own_failures: 0,
                output: None,
            })
        };
        let r1 = s.write(TaskId(0), Revision::NONE, &claim(1)).unwrap();
        assert!(s.write(TaskId(0), Revision::NONE, &claim(1)).is_none());
        let r2 = s.write(TaskId(0), r1, &claim(2)).unwrap();
        assert!(s.write(TaskId(0), r1, &done(1)).is_none());
        // A writer that bypasses the fence (writes at the newest revision with an old
        // attempt) is caught.
        let r3 = s.write(TaskId(0), r2, &done(1)).unwrap();
        assert_eq!(s.checks.writes_after_newer_claim, 1);
        s.write(TaskId(0), r3, &done(2)).unwrap();
        assert_eq!(s.checks.done_records_twice, 1);
        assert_eq!(s.finals, 1);
        assert_eq!(s.read(TaskId(0)).1, Revision(4));
        assert_eq!(s.journal_from(Position(3), 10).len(), 2);
    }
}
