//! Workers as child processes: each is `sturdy worker`, spoken to over its stdin and
//! stdout with the framed protocol ([`ProcessPool`], the local farm's
//! [`WorkerPool`]).
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
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use sturdy_core::{TaskId, WorkerId};

use super::classify::classify;
use super::process_fence;
use super::protocol::{self, FromWorker, Outcome, RunOrder, ToWorker};
use super::slot::Slot;
use super::state_dir::StateDir;
use super::storage_fault::StorageFault;
use crate::supervisor::{Order, Report, Reporter, WorkerPool};

struct ProcWorker {
    pid: i32,
    stdin: ChildStdin,
    /// Process group of the running command, 0 when idle.
    pgid: Arc<AtomicI32>,
    /// This worker start's mark (`STURDY_OWNER`).
    mark: String,
}

/// The child-process pool of `sturdy run`.
pub struct ProcessPool {
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
    /// `--delay`, `--nice`, `--timeout N%`.
    extras: PoolExtras,
    /// When the latest dispatched attempt starts (after its delay).
    last_start: Option<std::time::Instant>,
    /// Runtimes in ms of the attempts that succeeded, for `--timeout N%`.
    runtimes: Arc<Mutex<Vec<u64>>>,
    /// `--line-buffer`.
    line_buffer: Option<LineBuffer>,
    /// The task number of each ledger task id dispatched (for the reader threads'
    /// tags), shared with them.
    keys: Arc<Mutex<std::collections::HashMap<u32, u32>>>,
}

/// The pool's share of GNU parallel's options.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolExtras {
    /// `--delay`: at least this long between two starts.
    pub delay: Option<Duration>,
    /// `--nice`.
    pub nice: Option<i32>,
    /// `--timeout N%`: an attempt's limit is N % of the median runtime of the attempts
    /// that succeeded, once [`MEDIAN_AFTER`] have.
    pub timeout_percent: Option<f64>,
}

/// `--line-buffer`: each task's output printed line by line as it comes, each line
/// prefixed by the task's tag (`tag_of(task)` and a tab) when there are tags.
#[derive(Clone)]
pub struct LineBuffer {
    /// The tag of task `n`, made when its output comes (so that no tag is held per task
    /// of the list); `None`, or `None` for a task, prints it untagged.
    pub tags: Option<TagOf>,
    /// Prints complete lines of one task's output: its tag (if any), the bytes, and
    /// whether they came from its stderr. The caller owns the terminal.
    pub print: PrintLines,
}

impl std::fmt::Debug for LineBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineBuffer")
            .field("tags", &self.tags.is_some())
            .finish_non_exhaustive()
    }
}

/// The tag of a task by its number (`--tag`, `--tagstring`), or `None` for no tag.
pub type TagOf = Arc<dyn Fn(u32) -> Option<String> + Send + Sync>;

/// How a [`LineBuffer`] prints: `(tag, complete lines, from stderr)`.
pub type PrintLines = fn(Option<&str>, &[u8], bool);

/// Prints the complete lines of `pending` (plus `more`), keeping a trailing partial
/// line; with `all`, the partial line too.
fn print_lines(
    print: PrintLines,
    pending: &mut Vec<u8>,
    more: &[u8],
    tag: Option<&str>,
    stderr: bool,
    all: bool,
) {
    // `pending` holds no line feed (its complete lines went out before): only the new
    // bytes are searched, so a long line that arrives in many pieces costs linear time.
    let before = pending.len();
    pending.extend_from_slice(more);
    let end = printable_end(pending, before, all);
    if end == 0 {
        return;
    }
    let chunk: Vec<u8> = pending.drain(..end).collect();
    print(tag, &chunk, stderr);
}

/// How much of `pending` (whose first `before` bytes hold no line feed) can be printed:
/// up to its last line feed, or all of it with `all`.
fn printable_end(pending: &[u8], before: usize, all: bool) -> usize {
    if all {
        return pending.len();
    }
    pending[before..]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| before + i + 1)
}

/// Successes needed before `--timeout N%` applies (a median of fewer says little).
pub const MEDIAN_AFTER: usize = 3;

/// The limit `--timeout N%` sets, in ms, from the successes' runtimes (ms): `None`
/// before [`MEDIAN_AFTER`] successes. The median of an even count is the mean of the
/// middle two.
pub fn relative_timeout_ms(runtimes: &[u64], percent: f64) -> Option<u64> {
    if runtimes.len() < MEDIAN_AFTER {
        return None;
    }
    let mut v = runtimes.to_vec();
    v.sort_unstable();
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) as f64 / 2.0
    } else {
        v[mid] as f64
    };
    Some(((median * percent / 100.0).ceil() as u64).max(1))
}

impl ProcessPool {
    /// A pool of one `sturdy worker` child per slot (`exe` is the `sturdy` binary),
    /// heartbeating every `heartbeat`, writing outputs and logs under `state`; a
    /// command's process group gets `kill_grace` between SIGTERM and SIGKILL; a worker's
    /// failure to write an output file trips `fault`.
    pub fn new(
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
            extras: PoolExtras::default(),
            last_start: None,
            runtimes: Arc::default(),
            line_buffer: None,
            keys: Arc::default(),
        }
    }

    /// Sets `--line-buffer`.
    pub fn with_line_buffer(mut self, lb: Option<LineBuffer>) -> Self {
        self.line_buffer = lb;
        self
    }

    /// Sets `--delay`, `--nice` and `--timeout N%`.
    pub fn with_extras(mut self, extras: PoolExtras) -> Self {
        self.extras = extras;
        self
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

/// The program a worker runs: `exe` while it still is this process's own binary, else
/// (deleted, or replaced by another build or version under the run: an upgrade) the
/// binary this master runs, through `/proc/self/exe`, which reaches it deleted or not.
fn worker_program(exe: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let own = Path::new("/proc/self/exe");
    match (std::fs::metadata(exe), std::fs::metadata(own)) {
        (Ok(e), Ok(o)) if (e.dev(), e.ino()) == (o.dev(), o.ino()) => exe.to_owned(),
        (_, Ok(_)) => own.to_owned(),
        (_, Err(_)) => exe.to_owned(),
    }
}

/// The environment variable that hands a worker the soft open-file limit the master
/// started with (see [`raise_open_file_limit`]); the worker takes it back before it
/// runs a command, and no command sees the variable.
pub const NOFILE_VAR: &str = "STURDY_NOFILE_SOFT";

/// The soft open-file limit the master started with, when it raised it.
static STARTED_NOFILE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Raises this process's soft open-file limit (`ulimit -n`, `RLIMIT_NOFILE`) to its
/// hard limit (at most 2^20), as the Go runtime does: a master holds two pipes per
/// worker and, with `--keep-order`, a temporary file per task whose output waits past
/// the memory budget, so the common soft default of 1 024 ran out with `-k` on a list
/// of a few thousand tasks. Workers, and so the commands, get the limit it started with
/// back (programs that use `select(2)` need it at most 1 024). Call it once, early.
/// Returns the soft limit now in effect (`None` when it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let want = hard.min(1 << 20);
    if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        let _ = STARTED_NOFILE.set(soft);
        return Some(want);
    }
    Some(soft)
}

/// Gives this process back the soft open-file limit its master started with, when the
/// master raised its own ([`NOFILE_VAR`]); a worker calls it before it runs a command.
pub fn restore_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Some(soft) = std::env::var(NOFILE_VAR)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard);
    }
}

fn kill_group(pgid: i32) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

impl WorkerPool for ProcessPool {
    type Task = String;

    fn started(&self, worker: WorkerId) -> bool {
        self.workers
            .get(worker.0 as usize)
            .is_some_and(Option::is_some)
    }

    fn start(&mut self, worker: WorkerId, reporter: Reporter) {
        let w = worker.0 as usize;
        let slot = &self.slots[w];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.root().join(format!("worker-{}.log", w + 1)));
        let mut cmd = Command::new(worker_program(&self.exe));
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
        if let Some(soft) = STARTED_NOFILE.get() {
            cmd.env(NOFILE_VAR, soft.to_string());
        }
        // Until it is running, the slot holds no worker (see `started`).
        self.workers[w] = None;
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
        let (line_buffer, keys) = (self.line_buffer.clone(), self.keys.clone());
        let runtimes = self
            .extras
            .timeout_percent
            .is_some()
            .then(|| self.runtimes.clone());
        let unread = reporter.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("sturdy-worker-{}", w + 1))
            .spawn(move || {
                let mut r = BufReader::new(stdout);
                // `--line-buffer`: the partial last line of stdout and of stderr.
                let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
                // The last task's tag, kept while its output comes.
                let mut last_tag: Option<(u32, Option<String>)> = None;
                let mut tag_of = |id: u32| -> Option<String> {
                    let tags = line_buffer.as_ref()?.tags.as_ref()?;
                    let task = *keys
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&id)?;
                    match &last_tag {
                        Some((t, tag)) if *t == task => tag.clone(),
                        _ => {
                            let tag = tags(task);
                            last_tag = Some((task, tag.clone()));
                            tag
                        }
                    }
                };
                let print = line_buffer.as_ref().map(|lb| lb.print);
                while let Ok(Some(payload)) = protocol::read_frame(&mut r) {
                    let Ok(msg) = protocol::decode_payload::<FromWorker>(&payload) else {
                        break;
                    };
                    if let FromWorker::Finished { id, .. } = &msg
                        && let Some(print) = print
                    {
                        let tag = tag_of(*id);
                        for (i, p) in partial.iter_mut().enumerate() {
                            print_lines(print, p, &[], tag.as_deref(), i == 1, true);
                        }
                    }
                    let report = match msg {
                        FromWorker::Ready { .. } | FromWorker::Heartbeat => Report::Heartbeat,
                        FromWorker::Output { id, stderr, bytes } => {
                            if let Some(print) = print {
                                let tag = tag_of(id);
                                let p = &mut partial[usize::from(stderr)];
                                print_lines(print, p, &bytes, tag.as_deref(), stderr, false);
                            }
                            // Not a heartbeat: the detectors read heartbeats' rhythm.
                            continue;
                        }
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
                            id,
                            epoch,
                            outcome,
                            runtime_ms,
                        } => {
                            thread_pgid.store(0, Ordering::SeqCst);
                            if let (Some(r), Outcome::Exited(0)) = (&runtimes, &outcome) {
                                r.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(runtime_ms);
                            }
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
            // Not started (see `started`): its report brings the next restart.
            unread.send(Report::Exited);
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
        if self.line_buffer.is_some() {
            self.keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(order.task.0, task);
        }
        let now = std::time::Instant::now();
        let delay_ms = match self.extras.delay {
            Some(d) => {
                let start = self.last_start.map_or(now, |l| (l + d).max(now));
                self.last_start = Some(start);
                u64::try_from((start - now).as_millis()).unwrap_or(u64::MAX)
            }
            None => 0,
        };
        let relative = self.extras.timeout_percent.and_then(|p| {
            relative_timeout_ms(
                &self.runtimes.lock().unwrap_or_else(PoisonError::into_inner),
                p,
            )
        });
        let fixed = order
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        let timeout_ms = match (fixed, relative) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        };
        let run = ToWorker::Run(RunOrder {
            id: order.task.0,
            task,
            attempt: order.attempt,
            epoch: u64::from(order.epoch),
            command: order.payload.clone(),
            timeout_ms,
            kill_grace_ms: u64::try_from(self.kill_grace.as_millis()).unwrap_or(u64::MAX),
            delay_ms,
            nice: self.extras.nice,
            stream: self.line_buffer.is_some(),
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
            stdout_blank: Some(self.state.blank().display().to_string()),
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

#[cfg(test)]
mod tests {

    #[test]
    fn printable_end_stops_at_the_last_line_feed_of_the_new_bytes() {
        assert_eq!(printable_end(b"abc", 0, false), 0);
        // "abc" waited without a line feed; "d\nef" arrives.
        assert_eq!(printable_end(b"abcd\nef", 3, false), 5);
        assert_eq!(printable_end(b"ab\ncd\n", 0, false), 6);
        assert_eq!(printable_end(b"abcdef", 3, true), 6);
    }

    use super::*;

    #[test]
    fn relative_timeout_is_a_percentage_of_the_median_after_three_successes() {
        assert_eq!(relative_timeout_ms(&[100, 200], 300.0), None);
        assert_eq!(relative_timeout_ms(&[300, 100, 200], 300.0), Some(600));
        assert_eq!(
            relative_timeout_ms(&[100, 200, 300, 1000], 200.0),
            Some(500)
        );
        assert_eq!(relative_timeout_ms(&[0, 0, 0], 150.0), Some(1));
    }
}
