//! Workers as child processes: each is `sturdy worker`, spoken to over its stdin and
//! stdout with the framed protocol.
//!
//! A reader thread per worker turns frames into supervisor reports. When a worker's
//! stdout closes (it died: a crash, an OOM kill, a `kill -9`), the thread kills the
//! process group of the command the worker was running and every process carrying the
//! worker's mark (see `process_fence`), reaps the worker, and only then reports it
//! exited, so that no orphan races the attempt that replaces it. A worker the
//! supervisor kills (silent, suspected, its lease lapsed) is fenced the same way before
//! `kill` returns. A worker's report that an output file could not be written trips the
//! run's `StorageFault` instead of reaching the supervisor as a task failure.

use std::fs::OpenOptions;
use std::io::BufReader;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use sturdy_core::{TaskId, WorkerId};
use sturdy_tokio::supervisor::{Order, Report, Reporter, WorkerPool};

use crate::classify::classify;
use crate::options::Slot;
use crate::process_fence;
use crate::protocol::{self, FromWorker, Outcome, RunOrder, ToWorker};
use crate::state_dir::StateDir;
use crate::storage_fault::StorageFault;

struct ProcWorker {
    pid: i32,
    stdin: ChildStdin,
    /// Process group of the running command, 0 when idle.
    pgid: Arc<AtomicI32>,
    /// This worker start's mark (`STURDY_OWNER`).
    mark: String,
}

/// The child-process pool of `sturdy run`.
pub(crate) struct ProcessPool {
    exe: PathBuf,
    slots: Vec<Slot>,
    heartbeat: Duration,
    state: StateDir,
    workers: Vec<Option<ProcWorker>>,
    /// Worker starts per slot (the last part of a mark).
    starts: Vec<u64>,
    /// The state directory's run mark.
    run_mark: String,
    kill_grace: Duration,
    fault: StorageFault,
}

impl ProcessPool {
    pub(crate) fn new(
        exe: PathBuf,
        slots: Vec<Slot>,
        heartbeat: Duration,
        state: StateDir,
        kill_grace: Duration,
        fault: StorageFault,
    ) -> Self {
        let n = slots.len();
        Self {
            exe,
            slots,
            heartbeat,
            run_mark: process_fence::run_mark(state.root()),
            state,
            workers: (0..n).map(|_| None).collect(),
            starts: vec![0; n],
            kill_grace,
            fault,
        }
    }
}

/// Kills what a dead worker may have left: its command's process group, then every
/// process with its mark; says so when something would not die.
fn fence(pgid: i32, mark: &str) {
    kill_group(pgid);
    let swept = process_fence::kill_worker_marked(mark);
    if swept.left > 0 {
        eprintln!(
            "sturdy: warning: {} process(es) of a dead worker ({}={mark}) did not die after SIGKILL",
            swept.left,
            process_fence::OWNER_VAR
        );
    }
}

fn kill_group(pgid: i32) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

impl WorkerPool for ProcessPool {
    type Task = String;

    fn start(&mut self, worker: WorkerId, reporter: Reporter) {
        let w = worker.0 as usize;
        let slot = &self.slots[w];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.root().join(format!("worker-{}.log", w + 1)));
        let mut cmd = Command::new(&self.exe);
        // A process group of its own: a Ctrl-C on the terminal reaches the master (which
        // drains) but not the workers, so that running commands can finish.
        cmd.process_group(0);
        self.starts[w] += 1;
        let mark = process_fence::worker_mark(&self.run_mark, w, self.starts[w]);
        cmd.arg("worker")
            .arg("--heartbeat-ms")
            .arg(self.heartbeat.as_millis().max(1).to_string())
            .env(process_fence::OWNER_VAR, &mark)
            .env("STURDY_WORKER", (w + 1).to_string())
            .env("STURDY_SLOT", &slot.label)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log.map_or_else(|_| Stdio::null(), Stdio::from));
        if let Some(cvd) = &slot.cuda_visible_devices {
            cmd.env("CUDA_VISIBLE_DEVICES", cvd);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sturdy: cannot start worker {}: {e}", w + 1);
                reporter.send(Report::Exited);
                return;
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            reporter.send(Report::Exited);
            return;
        };
        let pgid = Arc::new(AtomicI32::new(0));
        let pid = child.id() as i32;
        let thread_pgid = pgid.clone();
        let (thread_mark, fault) = (mark.clone(), self.fault.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("sturdy-worker-{}", w + 1))
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                while let Ok(Some(payload)) = protocol::read_frame(&mut r) {
                    let Ok(msg) = protocol::decode_payload::<FromWorker>(&payload) else {
                        break;
                    };
                    let report = match msg {
                        FromWorker::Ready { .. } | FromWorker::Heartbeat => Report::Heartbeat,
                        FromWorker::Started { pgid, .. } => {
                            thread_pgid.store(pgid, Ordering::SeqCst);
                            continue;
                        }
                        FromWorker::Finished {
                            outcome: Outcome::StorageFailed { path, error },
                            ..
                        } => {
                            thread_pgid.store(0, Ordering::SeqCst);
                            // Stops the run before the supervisor reads another report;
                            // the attempt is journaled interrupted, charged to no one.
                            fault.trip(format!("cannot write {path}: {error}"));
                            Report::Heartbeat
                        }
                        FromWorker::Finished {
                            id, epoch, outcome, ..
                        } => {
                            thread_pgid.store(0, Ordering::SeqCst);
                            Report::Finished {
                                task: TaskId(id),
                                epoch: epoch as u32,
                                finish: classify(&outcome),
                            }
                        }
                    };
                    if !reporter.send(report) {
                        break;
                    }
                }
                // The worker is gone (or talks nonsense): no orphan command may survive it.
                let _ = child.kill();
                let _ = child.wait();
                fence(thread_pgid.swap(0, Ordering::SeqCst), &thread_mark);
                reporter.send(Report::Exited);
            });
        if spawned.is_err() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            return;
        }
        self.workers[w] = Some(ProcWorker {
            pid,
            stdin,
            pgid,
            mark,
        });
    }

    fn dispatch(&mut self, worker: WorkerId, order: Order<'_, String>) {
        let w = worker.0 as usize;
        let Some(Some(pw)) = self.workers.get_mut(w) else {
            return;
        };
        let task = u32::try_from(order.key).unwrap_or(u32::MAX);
        let run = ToWorker::Run(RunOrder {
            id: order.task.0,
            task,
            attempt: order.attempt,
            epoch: u64::from(order.epoch),
            command: order.payload.clone(),
            timeout_ms: order.timeout.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
            kill_grace_ms: u64::try_from(self.kill_grace.as_millis()).unwrap_or(u64::MAX),
            stdout_path: self
                .state
                .output(task, order.attempt, "out")
                .display()
                .to_string(),
            stderr_path: self
                .state
                .output(task, order.attempt, "err")
                .display()
                .to_string(),
        });
        // A broken pipe means the worker died; its reader thread reports it.
        let _ = protocol::write_frame(&mut pw.stdin, &run);
    }

    fn kill(&mut self, worker: WorkerId) {
        if let Some(Some(pw)) = self.workers.get_mut(worker.0 as usize).map(Option::take) {
            let _ = kill(Pid::from_raw(pw.pid), Signal::SIGKILL);
            fence(pw.pgid.swap(0, Ordering::SeqCst), &pw.mark);
        }
    }

    fn shutdown(&mut self) {
        for pw in self.workers.iter_mut().filter_map(Option::take) {
            let mut stdin = pw.stdin;
            let _ = protocol::write_frame(&mut stdin, &ToWorker::Shutdown);
        }
    }
}
