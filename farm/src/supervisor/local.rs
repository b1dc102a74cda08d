//! [`LocalPool`]: workers as in-process tokio tasks, for library users.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sturdy_core::{FailureKind, TaskId, WorkerId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::pool::{Finish, Order, Report, Reporter, WorkerPool};

struct Job<T> {
    task: TaskId,
    epoch: u32,
    attempt: u32,
    payload: T,
    timeout: Option<Duration>,
}

/// Aborts a spawned task when dropped (so killing a worker kills its attempt too).
struct AbortOnDrop<R>(JoinHandle<R>);

impl<R> Drop for AbortOnDrop<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct LocalWorker<T> {
    orders: mpsc::UnboundedSender<Job<T>>,
    /// Held for its `Drop`: dropping the worker aborts its loop.
    _loop: AbortOnDrop<()>,
}

/// Workers as tokio tasks running `job(payload, attempt)`.
///
/// An attempt returns `Ok(())` or `Err(kind)`; an attempt that panics is a worker crash
/// (its worker is restarted, its task reassigned); an attempt over the order's timeout
/// is dropped (cancelled) and reported as [`FailureKind::TaskTimeout`]. Each worker
/// heartbeats every `heartbeat` while alive, so a worker whose executor thread is
/// blocked is suspected by the ledger's detector like a silent process.
pub struct LocalPool<T, F> {
    job: Arc<F>,
    heartbeat: Duration,
    workers: Vec<Option<LocalWorker<T>>>,
}

impl<T, F, Fut> LocalPool<T, F>
where
    T: Clone + Send + 'static,
    F: Fn(T, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), FailureKind>> + Send + 'static,
{
    /// A pool running `job`, heartbeating every `heartbeat`.
    pub fn new(heartbeat: Duration, job: F) -> Self {
        Self {
            job: Arc::new(job),
            heartbeat,
            workers: Vec::new(),
        }
    }
}

async fn worker_loop<T, F, Fut>(
    job: Arc<F>,
    heartbeat: Duration,
    mut orders: mpsc::UnboundedReceiver<Job<T>>,
    reporter: Reporter,
) where
    T: Send + 'static,
    F: Fn(T, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), FailureKind>> + Send + 'static,
{
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            biased;
            j = orders.recv() => j,
            _ = tick.tick() => {
                if !reporter.send(Report::Heartbeat) { return; }
                continue;
            }
        };
        let Some(j) = next else { return };
        let fut = job(j.payload, j.attempt);
        let timeout = j.timeout;
        let mut attempt = AbortOnDrop(tokio::spawn(async move {
            match timeout {
                Some(t) => tokio::time::timeout(t, fut)
                    .await
                    .unwrap_or(Err(FailureKind::TaskTimeout)),
                None => fut.await,
            }
        }));
        let result = loop {
            tokio::select! {
                biased;
                r = &mut attempt.0 => break r,
                _ = tick.tick() => {
                    if !reporter.send(Report::Heartbeat) { return; }
                }
            }
        };
        let report = match result {
            Ok(Ok(())) => Report::Finished {
                task: j.task,
                epoch: j.epoch,
                finish: Finish::OK,
            },
            Ok(Err(kind)) => Report::Finished {
                task: j.task,
                epoch: j.epoch,
                finish: Finish::failed(kind),
            },
            Err(_) => {
                // The attempt panicked (or was cancelled): the worker is gone.
                reporter.send(Report::Exited);
                return;
            }
        };
        if !reporter.send(report) {
            return;
        }
    }
}

impl<T, F, Fut> WorkerPool for LocalPool<T, F>
where
    T: Clone + Send + 'static,
    F: Fn(T, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), FailureKind>> + Send + 'static,
{
    type Task = T;

    fn start(&mut self, worker: WorkerId, reporter: Reporter) {
        let w = worker.0 as usize;
        if self.workers.len() <= w {
            self.workers.resize_with(w + 1, || None);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(worker_loop(self.job.clone(), self.heartbeat, rx, reporter));
        self.workers[w] = Some(LocalWorker {
            orders: tx,
            _loop: AbortOnDrop(handle),
        });
    }

    fn dispatch(&mut self, worker: WorkerId, order: Order<'_, T>) {
        if let Some(Some(w)) = self.workers.get(worker.0 as usize) {
            // A closed channel means the worker died; its Exited report is on the way.
            let _ = w.orders.send(Job {
                task: order.task,
                epoch: order.epoch,
                attempt: order.attempt,
                payload: order.payload.clone(),
                timeout: order.timeout,
            });
        }
    }

    fn kill(&mut self, worker: WorkerId) {
        if let Some(slot) = self.workers.get_mut(worker.0 as usize) {
            // Dropping aborts the loop, which drops (and aborts) its attempt.
            *slot = None;
        }
    }

    fn shutdown(&mut self) {
        // Idle workers hold no attempt; dropping them ends their loops.
        self.workers.clear();
    }
}
