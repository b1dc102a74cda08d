//! [`SimEngine`]: the simulated server behind the [`Engine`] trait, reached over a
//! simulated network, in tokio's (paused, virtual) time.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use sturdy_core::rng::SplitMix64;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::dist::Dist;
use super::server::{Handed, Server, ServerConfig};
use crate::engine::{
    Conflict, Delivery, Engine, Enqueued, Entry, Error, Fenced, Generation, Position, Record,
    Revision, Settle, TaskId,
};

/// The simulated network between hosts and the server.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way latency of each message, in milliseconds.
    pub latency_ms: Dist,
    /// Probability that one message is lost (0..1). A lost request or reply fails its call
    /// after `request_timeout_ms`; a lost `+WPI` or ack is lost silently.
    pub loss: f64,
    /// How long a caller waits for a reply before the call fails, in milliseconds.
    pub request_timeout_ms: u64,
    /// Per host: windows [start, end) in ms during which it cannot reach the server.
    pub partitions: BTreeMap<u32, Vec<(u64, u64)>>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_ms: Dist::Const(0.0),
            loss: 0.0,
            request_timeout_ms: 2_000,
            partitions: BTreeMap::new(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) server: Server,
    waiters: VecDeque<oneshot::Sender<Handed>>,
    net: NetConfig,
    rng: SplitMix64,
    start: Instant,
    /// Messages on the wire (requests, replies, deliveries, acks, renewals).
    pub(crate) messages: u64,
    armed: Option<u64>,
    /// A running hash of every server operation and its result, in order.
    pub(crate) trace: u64,
}

impl Inner {
    pub(crate) fn now(&self) -> u64 {
        Instant::now().duration_since(self.start).as_millis() as u64
    }

    fn mix(&mut self, words: [u64; 4]) {
        for w in words {
            self.trace = (self.trace ^ w).wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// Brings the server to `now`; drops waiting pulls when an outage starts.
    pub(crate) fn sync(&mut self, now: u64) {
        if self.server.advance(now) {
            self.waiters.clear();
        }
    }

    /// Hands ready messages to waiting pulls.
    fn dispatch(&mut self, now: u64) {
        while let Some(w) = self.waiters.front() {
            if w.is_closed() {
                self.waiters.pop_front();
                continue;
            }
            let Some(h) = self.server.pull(now) else {
                break;
            };
            self.messages += 1;
            self.mix([now, 1, u64::from(h.task.0), h.epoch]);
            let w = self.waiters.pop_front().expect("front exists");
            // A pull dropped meanwhile: the lease lapses (uncharged: no claim).
            let _ = w.send(h);
        }
    }

    fn partitioned(&self, host: u32, now: u64) -> bool {
        self.net
            .partitions
            .get(&host)
            .is_some_and(|w| w.iter().any(|(s, e)| *s <= now && now < *e))
    }

    /// One message from or to `host` leaves now: its latency, or `None` when it is lost.
    fn hop(&mut self, host: u32, now: u64) -> Option<u64> {
        self.messages += 1;
        if self.partitioned(host, now) {
            return None;
        }
        if self.net.loss > 0.0 && unit(&mut self.rng) < self.net.loss {
            return None;
        }
        Some(self.net.latency_ms.sample_ms(&mut self.rng))
    }

    fn arm(&mut self, at: u64) -> bool {
        if self.armed.is_none_or(|a| at < a) {
            self.armed = Some(at);
            return true;
        }
        false
    }
}

/// A uniform draw from [0, 1).
pub(crate) fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    driver: Notify,
    journal: Notify,
    /// Woken when a task's record becomes final.
    pub(crate) progress: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The engine's handle on a simulated delivery: the work message's stream sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimHandle {
    seq: u64,
}

/// The journal stream of [`SimEngine::follow`].
pub type SimFollow = Pin<Box<dyn Stream<Item = Result<Entry, Error>> + Send>>;

/// One host's connection to the simulated server. Cheap to clone; every clone for the
/// same host shares its network conditions.
#[derive(Clone)]
pub struct SimEngine {
    shared: Arc<Shared>,
    host: u32,
}

/// The simulated server, from which each host gets its [`SimEngine`]. Create it inside a
/// tokio runtime (it spawns the server's clock task).
#[derive(Clone)]
pub struct SimServer {
    shared: Arc<Shared>,
}

impl SimServer {
    /// A server with `cfg`, restarting during each of `outages` ([start, end) in
    /// milliseconds of virtual time from now), behind network `net`, every random draw
    /// from `seed`. Spawns its clock task on the current runtime.
    pub fn start(cfg: ServerConfig, outages: Vec<(u64, u64)>, net: NetConfig, seed: u64) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                server: Server::new(cfg, outages),
                waiters: VecDeque::new(),
                net,
                rng: SplitMix64::new(seed),
                start: Instant::now(),
                messages: 0,
                armed: None,
                trace: 0xcbf2_9ce4_8422_2325,
            }),
            driver: Notify::new(),
            journal: Notify::new(),
            progress: Notify::new(),
        });
        tokio::spawn(drive(shared.clone()));
        Self { shared }
    }

    /// Host `host`'s connection.
    pub fn engine(&self, host: u32) -> SimEngine {
        SimEngine {
            shared: self.shared.clone(),
            host,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Enqueues directly (no network): the coordinator's bulk enqueue at the start.
    pub fn enqueue_local(&self, task: TaskId, generation: Generation) {
        let mut g = self.shared.lock();
        let now = g.now();
        g.messages += 2;
        g.server.enqueue(task, generation.0, Bytes::new(), now);
        g.mix([now, 0, u64::from(task.0), generation.0]);
        g.dispatch(now);
    }
}

/// The server's clock: hands messages that become ready (a lapsed lease, a nak's delay
/// over) to waiting pulls when they do. With no pull waiting it sleeps until a pull
/// comes: every operation brings the server to its time first ([`Inner::sync`]), so
/// leases lapse at their own deadlines whenever they are looked at, and nobody needs to
/// be told of them at the time (at 10 000 busy slots, a lease deadline passes almost
/// every millisecond; waking for each was a timer and a task poll per millisecond).
async fn drive(s: Arc<Shared>) {
    loop {
        let next = {
            let mut g = s.lock();
            let now = g.now();
            g.sync(now);
            g.dispatch(now);
            let next = if g.waiters.is_empty() {
                None
            } else {
                g.server.next_wake(now)
            };
            g.armed = next;
            next.map(|n| g.start + Duration::from_millis(n))
        };
        let notified = s.driver.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    biased;
                    () = notified => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => notified.await,
        }
    }
}

impl SimEngine {
    fn err(&self, op: &'static str, reason: &str) -> Error {
        Error::Engine {
            run: "sim".into(),
            op,
            subject: format!("host {}", self.host),
            reason: reason.into(),
        }
    }

    async fn fail<T>(&self, op: &'static str, at: Instant, why: &str) -> Result<T, Error> {
        tokio::time::sleep_until(at).await;
        Err(self.err(op, why))
    }

    async fn sleep_ms(ms: u64) {
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// A request with a reply: `apply` runs at the server when the request leaves, and
    /// the caller waits the request's and the reply's latency (charged together, after
    /// the server acted: one timer per call). A lost message or a server down fails the
    /// call after the request timeout (when the reply was lost, the request was applied).
    ///
    /// A call whose request and reply take no time (the default network) completes
    /// without waiting, and its future holds no timer: only a call that waits boxes the
    /// waiting part (a renewal's read is polled inside the agent's attempt, whose state
    /// stays small).
    async fn call<T>(
        &self,
        op: &'static str,
        apply: impl FnOnce(&mut Inner, u64) -> T,
    ) -> Result<T, Error> {
        let (out, wait, timeout) = {
            let mut g = self.shared.lock();
            let now = g.now();
            let timeout = g.net.request_timeout_ms;
            match g.hop(self.host, now) {
                None => (None, None, timeout),
                Some(there) => {
                    g.sync(now);
                    if g.server.is_down(now) {
                        (None, None, timeout)
                    } else {
                        let out = apply(&mut g, now);
                        g.dispatch(now);
                        let back = g.hop(self.host, now).map(|b| b + there);
                        (Some(out), back, timeout)
                    }
                }
            }
        };
        match (out, wait) {
            (Some(out), Some(0)) => Ok(out),
            (out, wait) => Box::pin(self.call_wait(op, out, wait, timeout)).await,
        }
    }

    /// The waiting part of [`Self::call`]: the reply's latency, or the request timeout
    /// of a call that gets no reply (counted from now, when the request was sent).
    async fn call_wait<T>(
        &self,
        op: &'static str,
        out: Option<T>,
        wait: Option<u64>,
        timeout: u64,
    ) -> Result<T, Error> {
        let fail_at = Instant::now() + Duration::from_millis(timeout);
        match (out, wait) {
            (Some(out), Some(wait)) => {
                Self::sleep_ms(wait).await;
                Ok(out)
            }
            (Some(_), None) => {
                self.fail(op, fail_at, "reply timed out (lost or partitioned)")
                    .await
            }
            (None, _) => {
                self.fail(
                    op,
                    fail_at,
                    "no reply (lost, partitioned, or server restarting)",
                )
                .await
            }
        }
    }

    /// A message without a reply (`+WPI`, ack): applied at the server unless lost;
    /// the caller learns nothing either way and does not wait.
    fn send(&self, apply: impl FnOnce(&mut Inner, u64)) {
        let mut g = self.shared.lock();
        let now = g.now();
        if g.hop(self.host, now).is_none() {
            return;
        }
        g.sync(now);
        if g.server.is_down(now) {
            return;
        }
        apply(&mut g, now);
        g.dispatch(now);
    }

    /// A pull request; with `ack`, it also acknowledges that work message (`+NXT`: one
    /// message for both, applied when it reaches the server, lost with it).
    async fn pull(
        &self,
        wait: Option<Duration>,
        ack: Option<u64>,
    ) -> Result<Option<Delivery<SimHandle>>, Error> {
        let deadline = wait.map(|w| Instant::now() + w);
        let there = {
            let mut g = self.shared.lock();
            let now = g.now();
            g.hop(self.host, now)
        };
        let Some(there) = there else {
            // A lost pull request: the caller waits for nothing.
            let timeout = self.shared.lock().net.request_timeout_ms;
            let at = Instant::now() + Duration::from_millis(timeout);
            let at = deadline.map_or(at, |d| d.min(at));
            tokio::time::sleep_until(at).await;
            return match wait {
                Some(_) => Ok(None),
                None => Err(self.err("pull", "request timed out (lost or partitioned)")),
            };
        };
        Self::sleep_ms(there).await;
        let rx = {
            let mut g = self.shared.lock();
            let now = g.now();
            g.sync(now);
            if g.server.is_down(now) {
                drop(g);
                return Err(self.err("pull", "server restarting"));
            }
            if let Some(seq) = ack {
                g.server.remove(seq);
                g.mix([now, 6, seq, 0]);
            }
            g.dispatch(now);
            let direct = if g.waiters.is_empty() {
                g.server.pull(now)
            } else {
                None
            };
            match direct {
                Some(h) => {
                    g.messages += 1;
                    g.mix([now, 1, u64::from(h.task.0), h.epoch]);
                    Err(h)
                }
                None => {
                    if g.waiters.len() >= g.server.cfg.max_waiting {
                        // The server forgets the pulls of clients that went away.
                        g.waiters.retain(|w| !w.is_closed());
                    }
                    if g.waiters.len() >= g.server.cfg.max_waiting {
                        g.server.stats.pulls_refused += 1;
                        drop(g);
                        return Err(self.err("pull", "exceeded MaxWaiting"));
                    }
                    let (tx, rx) = oneshot::channel();
                    g.waiters.push_back(tx);
                    if let Some(next) = g.server.next_wake(now)
                        && g.arm(next)
                    {
                        self.shared.driver.notify_one();
                    }
                    Ok(rx)
                }
            }
        };
        let handed = match rx {
            Err(h) => h,
            Ok(mut rx) => match deadline {
                None => match (&mut rx).await {
                    Ok(h) => h,
                    Err(_) => return Err(self.err("pull", "pull request dropped by a restart")),
                },
                Some(d) => {
                    tokio::select! {
                        biased;
                        r = &mut rx => match r {
                            Ok(h) => h,
                            Err(_) => return Err(self.err("pull", "pull request dropped by a restart")),
                        },
                        () = tokio::time::sleep_until(d) => {
                            rx.close();
                            match rx.try_recv() {
                                Ok(h) => h,
                                Err(_) => return Ok(None),
                            }
                        }
                    }
                }
            },
        };
        let back = {
            let mut g = self.shared.lock();
            let now = g.now();
            g.hop(self.host, now)
        };
        // A delivery lost on the way: its lease lapses at the server.
        let Some(back) = back else {
            return Err(self.err("pull", "delivery lost (partitioned)"));
        };
        Self::sleep_ms(back).await;
        Ok(Some(Delivery::new(
            handed.task,
            Generation(handed.generation),
            handed.payload,
            handed.epoch,
            handed.seq,
            SimHandle { seq: handed.seq },
        )))
    }
}

impl Engine for SimEngine {
    type Handle = SimHandle;
    type Follow = SimFollow;

    async fn enqueue(
        &self,
        task: TaskId,
        payload: &[u8],
        generation: Generation,
    ) -> Result<Enqueued, Error> {
        let payload = Bytes::copy_from_slice(payload);
        self.call("publish", move |g, now| {
            let queued = g.server.enqueue(task, generation.0, payload, now);
            g.mix([now, 0, u64::from(task.0), generation.0]);
            if queued {
                Enqueued::Queued
            } else {
                Enqueued::Duplicate
            }
        })
        .await
    }

    async fn next(&self) -> Result<Delivery<SimHandle>, Error> {
        loop {
            if let Some(d) = self.pull(None, None).await? {
                return Ok(d);
            }
        }
    }

    async fn next_within(&self, wait: Duration) -> Result<Option<Delivery<SimHandle>>, Error> {
        self.pull(Some(wait), None).await
    }

    async fn ack_next(
        &self,
        delivery: Delivery<SimHandle>,
        wait: Duration,
    ) -> Result<Option<Delivery<SimHandle>>, Error> {
        self.pull(Some(wait), Some(delivery.handle().seq)).await
    }

    async fn read(&self, task: TaskId) -> Result<(Option<Record>, Revision), Error> {
        self.call("direct get", move |g, now| {
            let out = g.server.read(task);
            g.mix([now, 2, u64::from(task.0), out.1.0]);
            out
        })
        .await
    }

    async fn write(
        &self,
        task: TaskId,
        expect: Revision,
        record: &Record,
    ) -> Result<Result<Revision, Conflict>, Error> {
        let shared = &self.shared;
        self.call("publish", move |g, now| {
            let out = g.server.write(task, expect, record);
            g.mix([now, 3, u64::from(task.0), out.map_or(0, |r| r.0)]);
            if out.is_some() {
                if g.server.cfg.journal {
                    shared.journal.notify_waiters();
                }
                if super::server::is_final(record) {
                    shared.progress.notify_waiters();
                }
            }
            out.ok_or(Conflict {
                task,
                expected: expect,
            })
        })
        .await
    }

    async fn note(&self, task: TaskId, record: &Record) -> Result<Position, Error> {
        let shared = &self.shared;
        self.call("publish", move |g, now| {
            let p = g.server.note(task, record);
            g.mix([now, 4, u64::from(task.0), p.0]);
            if g.server.cfg.journal {
                shared.journal.notify_waiters();
            }
            p
        })
        .await
    }

    async fn renew(&self, delivery: &Delivery<SimHandle>) -> Result<(), Error> {
        let seq = delivery.handle().seq;
        self.send(move |g, now| {
            g.server.renew(seq, now);
            g.mix([now, 5, seq, 0]);
        });
        Ok(())
    }

    /// As the trait's default (a read, one round trip, then the renewal), without cloning
    /// the record when it is still ours.
    async fn renew_fenced(
        &self,
        delivery: &Delivery<SimHandle>,
        mine: Revision,
    ) -> Result<Fenced, Error> {
        let task = delivery.task();
        let seen = self
            .call("direct get", move |g, now| {
                let rev = g.server.revision(task);
                g.mix([now, 2, u64::from(task.0), rev.0]);
                if rev == mine {
                    None
                } else {
                    Some(g.server.read(task))
                }
            })
            .await?;
        if let Some((record, revision)) = seen {
            return Ok(Fenced::Stale { record, revision });
        }
        self.renew(delivery).await?;
        Ok(Fenced::Renewed)
    }

    async fn settle(&self, delivery: Delivery<SimHandle>, how: Settle) -> Result<(), Error> {
        let seq = delivery.handle().seq;
        match how {
            // As JetStream: the ack is sent without waiting for a reply (the ended
            // record's compare-and-set is the fence); nak and term wait for the reply.
            Settle::Ack => {
                self.send(move |g, now| {
                    g.server.remove(seq);
                    g.mix([now, 6, seq, 0]);
                });
                Ok(())
            }
            Settle::Term => {
                self.call("term", move |g, now| {
                    g.server.remove(seq);
                    g.mix([now, 7, seq, 0]);
                })
                .await
            }
            Settle::Nak(delay) => {
                let delay_ms = delay.as_millis() as u64;
                let shared = self.shared.clone();
                self.call("nak", move |g, now| {
                    g.server.nak(seq, delay_ms, now);
                    g.mix([now, 8, seq, delay_ms]);
                    if !g.waiters.is_empty() && g.arm(now + delay_ms) {
                        shared.driver.notify_one();
                    }
                })
                .await
            }
        }
    }

    async fn follow(&self, from: Position) -> Result<SimFollow, Error> {
        let shared = self.shared.clone();
        let stream = futures_util::stream::unfold((shared, from), |(shared, pos)| async move {
            loop {
                let next = {
                    let notified = shared.journal.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let next = shared.lock().server.journal_from(pos, 1).pop();
                    if next.is_none() {
                        notified.await;
                    }
                    next
                };
                if let Some(e) = next {
                    let after = e.position.next();
                    return Some((Ok(e), (shared, after)));
                }
            }
        });
        Ok(Box::pin(stream))
    }
}
