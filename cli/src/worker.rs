//! The hidden `sturdy worker` subcommand: one child process of the master that runs one
//! shell command at a time.
//!
//! It reads [`ToWorker`] frames on stdin and writes [`FromWorker`] frames on stdout
//! (see [`crate::protocol`]). Each command runs as `sh -c COMMAND` in a process group
//! of its own, with stdin from `/dev/null`, stdout and stderr to the files the order
//! names (through pipes the worker copies, so that a full or vanished state directory is
//! the worker's to see, never the command's), and `STURDY_TASK` and `STURDY_ATTEMPT` in
//! its environment (`STURDY_WORKER`, `STURDY_OWNER` and, for a GPU slot,
//! `CUDA_VISIBLE_DEVICES` come from the worker's own environment, set by the master). A
//! heartbeat goes out every interval, busy or idle.
//!
//! With `--nice N` the command runs as `nice -n N sh -c COMMAND` (`nice` execs `sh`,
//! so the process group is the same). With `--delay` the order says how long to wait
//! before the start.
//!
//! Each attempt's command runs with `STURDY_OWNER=<worker mark>.<task>.<attempt>` (see
//! [`crate::process_fence`]), and the worker is a child subreaper (`PR_SET_CHILD_SUBREAPER`),
//! so that what the command leaves behind is re-parented to the worker. When an attempt
//! ends, however it ends, the worker kills its process group, and, when anything of the
//! attempt is still there (the worker still has a child once the shell is reaped), every
//! process with the attempt's mark and every child of its own, and reaps them, before it
//! reports the outcome: a retry never runs beside a process of an earlier attempt, and
//! a command with nothing left behind pays two system calls, no `/proc` scan.
//!
//! A command over its timeout gets `SIGTERM` on its whole process group, then, once the
//! group is gone or the order's kill grace has passed (whichever comes first; the shell
//! exiting does not end the grace), `SIGKILL`, and is reported as timed out. An output file that
//! cannot be created or written is reported as a storage failure (the master stops the
//! run), whatever the command did. When the master goes away (stdin closes or stdout
//! breaks), the worker kills the command's process group and every process carrying
//! its mark (`process_fence`) and exits, so that a resumed run never races a command
//! left over from the old one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::oom;
use crate::process_fence::{self, OWNER_VAR};
use crate::protocol::{self, FromWorker, Outcome, RunOrder, ToWorker};

enum Event {
    Order(ToWorker),
    MasterGone,
    ChildExit(io::Result<ExitStatus>),
}

fn send(msg: &FromWorker) -> io::Result<()> {
    protocol::write_frame(&mut io::stdout().lock(), msg)
}

/// Runs the worker loop until the master says shut down or goes away. Returns the
/// process exit code.
pub(crate) fn run(heartbeat: Duration) -> i32 {
    // A worker stopped (SIGSTOP) when its master dies is in an orphaned process group
    // with a stopped member, so the kernel sends it SIGHUP then SIGCONT. SIGHUP's
    // default action would kill it before it could kill its command; with a handler it
    // lives on, sees its master's pipe closed, and kills the command first. (A handler,
    // not SIG_IGN: handlers reset on exec, so commands keep SIGHUP's default.)
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    // What a command leaves behind is re-parented here, where the end of its attempt
    // finds it cheaply (see `end_attempt`). Without it every attempt end scans `/proc`.
    #[cfg(target_os = "linux")]
    let subreaper = nix::sys::prctl::set_child_subreaper(true).is_ok();
    #[cfg(not(target_os = "linux"))]
    let subreaper = false;
    let (tx, rx) = mpsc::channel::<Event>();
    let reader_tx = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let ev = match protocol::read_frame(&mut stdin) {
                Ok(Some(payload)) => match protocol::decode_payload::<ToWorker>(&payload) {
                    Ok(order) => Event::Order(order),
                    Err(_) => Event::MasterGone,
                },
                Ok(None) | Err(_) => Event::MasterGone,
            };
            let gone = matches!(ev, Event::MasterGone);
            if reader_tx.send(ev).is_err() || gone {
                return;
            }
        }
    });
    let hb_tx = tx.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(heartbeat);
            if send(&FromWorker::Heartbeat).is_err() {
                let _ = hb_tx.send(Event::MasterGone);
                return;
            }
        }
    });
    if send(&FromWorker::Ready {
        pid: std::process::id(),
    })
    .is_err()
    {
        return 0;
    }
    loop {
        match rx.recv() {
            Ok(Event::Order(ToWorker::Run(order))) => {
                if !run_attempt(&order, subreaper, &tx, &rx) {
                    return 0;
                }
            }
            Ok(Event::Order(ToWorker::Shutdown)) => return 0,
            Ok(Event::MasterGone) | Err(_) => {
                kill_own_marked();
                return 0;
            }
            Ok(Event::ChildExit(_)) => {}
        }
    }
}

fn kill_group(pgid: i32) {
    signal_group(pgid, Signal::SIGKILL);
}

fn signal_group(pgid: i32, signal: Signal) {
    // ESRCH (the group is already gone) is the expected case after a normal exit.
    let _ = killpg(Pid::from_raw(pgid), signal);
}

/// The first error met writing a command's output, as `(path, error)`.
type WriteError = Arc<Mutex<Option<(String, String)>>>;

/// Copies a command's output pipe into its file until the pipe closes. A write error
/// is remembered (the first one) and the rest is drained unwritten, so that the command
/// never blocks or sees the farm's storage fail.
fn copy_output(
    mut from: impl Read,
    mut to: File,
    path: String,
    error: WriteError,
    stream: Option<(u32, bool)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut failed = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if let Some((id, stderr)) = stream {
            // A master that is gone is noticed by the heartbeat and the reader.
            let _ = send(&FromWorker::Output {
                id,
                stderr,
                bytes: buf[..n].to_vec(),
            });
        }
        if !failed && let Err(e) = to.write_all(&buf[..n]) {
            failed = true;
            let mut g = error.lock().unwrap_or_else(PoisonError::into_inner);
            g.get_or_insert((path.clone(), e.to_string()));
        }
    }
}

/// Test hook: pause this many ms between spawning a command and reporting its process
/// group, so that an end-to-end test can kill the worker in that window.
const PAUSE_BEFORE_STARTED: &str = "STURDY_TEST_PAUSE_BEFORE_STARTED_MS";

/// Runs one attempt; returns false when the worker must exit (the master is gone or
/// asked to shut down).
fn run_attempt(
    order: &RunOrder,
    subreaper: bool,
    tx: &Sender<Event>,
    rx: &mpsc::Receiver<Event>,
) -> bool {
    // `--delay`: wait (heartbeating) before the start; the master's death ends the wait.
    let mut shutdown_after = false;
    let until = Instant::now() + Duration::from_millis(order.delay_ms);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Err(RecvTimeoutError::Timeout) => break,
            Ok(Event::Order(ToWorker::Shutdown)) => shutdown_after = true,
            Ok(Event::Order(ToWorker::Run(other))) => eprintln!(
                "sturdy worker: busy with task {}, ignoring an order for task {}",
                order.task, other.task
            ),
            Ok(Event::ChildExit(_)) => {}
            Ok(Event::MasterGone) | Err(RecvTimeoutError::Disconnected) => {
                kill_own_marked();
                return false;
            }
        }
    }
    let started = Instant::now();
    let open = |path: &str| {
        File::create(path).map_err(|e| Outcome::StorageFailed {
            path: path.to_owned(),
            error: e.to_string(),
        })
    };
    let (out, err) = match open(&order.stdout_path).and_then(|o| Ok((o, open(&order.stderr_path)?)))
    {
        Ok(files) => files,
        Err(outcome) => return report(order, outcome, started),
    };
    let oom_before = oom::oom_kill_count();
    let mut command = match order.nice {
        Some(n) => {
            let mut c = Command::new("nice");
            c.arg("-n").arg(n.to_string()).arg("sh");
            c
        }
        None => Command::new("sh"),
    };
    // The attempt's own mark, which extends the worker's (so that the master's sweep of
    // a dead worker matches it too).
    let mark = std::env::var(OWNER_VAR)
        .ok()
        .map(|m| format!("{m}.{}.{}", order.task, order.attempt));
    if let Some(mark) = &mark {
        command.env(OWNER_VAR, mark);
    }
    let spawned = command
        .arg("-c")
        .arg(&order.command)
        .env("STURDY_TASK", order.task.to_string())
        .env("STURDY_ATTEMPT", order.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return report(order, Outcome::SpawnFailed(format!("sh: {e}")), started),
    };
    let pgid = child.id() as i32;
    let write_error = WriteError::default();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    for (pipe, file, path, is_err) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            out,
            &order.stdout_path,
            false,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            err,
            &order.stderr_path,
            true,
        ),
    ] {
        if let Some(pipe) = pipe {
            let (error, path, done) = (write_error.clone(), path.clone(), done_tx.clone());
            let stream = order.stream.then_some((order.id, is_err));
            std::thread::spawn(move || {
                copy_output(pipe, file, path, error, stream);
                let _ = done.send(());
            });
        }
    }
    drop(done_tx);
    if let Some(ms) = std::env::var(PAUSE_BEFORE_STARTED)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if send(&FromWorker::Started {
        id: order.id,
        epoch: order.epoch,
        pgid,
    })
    .is_err()
    {
        kill_group(pgid);
        kill_own_marked();
        let _ = child.wait();
        return false;
    }
    let waiter_tx = tx.clone();
    std::thread::spawn(move || {
        let _ = waiter_tx.send(Event::ChildExit(child.wait()));
    });
    let grace = Duration::from_millis(order.kill_grace_ms);
    // The next signal the timeout sends the group, and when.
    let mut next_kill = (order.timeout_ms > 0).then(|| {
        let at = started + Duration::from_millis(order.timeout_ms);
        (
            at,
            if grace.is_zero() {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            },
        )
    });
    let mut timed_out = false;
    let status = loop {
        let ev = match next_kill {
            Some((at, signal)) => {
                match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(ev) => ev,
                    Err(RecvTimeoutError::Timeout) => {
                        timed_out = true;
                        signal_group(pgid, signal);
                        next_kill = (signal == Signal::SIGTERM)
                            .then(|| (Instant::now() + grace, Signal::SIGKILL));
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => Event::MasterGone,
                }
            }
            None => rx.recv().unwrap_or(Event::MasterGone),
        };
        match ev {
            Event::ChildExit(status) => break status,
            Event::Order(ToWorker::Shutdown) => shutdown_after = true,
            Event::Order(ToWorker::Run(other)) => {
                eprintln!(
                    "sturdy worker: busy with task {}, ignoring an order for task {}",
                    order.task, other.task
                );
            }
            Event::MasterGone => {
                kill_group(pgid);
                kill_own_marked();
                // Wait for the reap so that nothing of ours outlives the worker.
                while let Ok(ev) = rx.recv() {
                    if matches!(ev, Event::ChildExit(_)) {
                        break;
                    }
                }
                return false;
            }
        }
    };
    if let (true, Some((deadline, Signal::SIGKILL))) = (timed_out, next_kill) {
        // The group had its SIGTERM: its grace lasts until it is gone (its shell may be
        // gone long before the program it ran finishes its cleanup) or the grace ends.
        wait_group_gone(pgid, deadline, subreaper);
    }
    // What ignored the SIGTERM, or outlived its shell or left its group, goes now.
    end_attempt(pgid, mark.as_deref(), subreaper);
    // The output is complete once both pipes closed; a process that escaped the group
    // and holds them open is not waited for past a second.
    let until = Instant::now() + Duration::from_secs(1);
    for _ in 0..2 {
        if done_rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    let write_failed = write_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let outcome = if let Some((path, error)) = write_failed {
        Outcome::StorageFailed { path, error }
    } else if timed_out {
        Outcome::TimedOut
    } else {
        match status {
            Ok(st) => classify_status(st, oom_before),
            Err(e) => Outcome::SpawnFailed(format!("wait: {e}")),
        }
    };
    report(order, outcome, started) && !shutdown_after
}

/// Kills every other process that carries this worker's mark or one of its attempts'
/// marks (its commands' children that left the command's process group).
fn kill_own_marked() {
    if let Ok(mark) = std::env::var(OWNER_VAR) {
        process_fence::kill_worker_marked(&mark);
    }
}

/// How often a grace or an attempt's end looks again.
const POLL: Duration = Duration::from_millis(5);

/// Waits until process group `pgid` is gone (`killpg(pgid, 0)` fails with `ESRCH`) or
/// `deadline` passes, reaping the group's members re-parented here (a zombie still
/// counts as a member).
fn wait_group_gone(pgid: i32, deadline: Instant, subreaper: bool) {
    loop {
        if subreaper {
            reap_children();
        }
        if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// Reaps the children of this process that have ended; true when none is left
/// (`ECHILD`), false when some still live (or waiting failed otherwise). Call it only
/// once the command's shell is reaped, so as not to take its status from its waiter.
fn reap_children() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => return true,
            Err(_) => return false,
        }
    }
}

/// Ends an attempt whose shell is reaped: kills its process group, and, when anything
/// of it is left (a child of this process, re-parented here; or always, when this
/// process is no subreaper), every process with the attempt's `mark` and every child,
/// until none is left or about a second has passed (a process stuck in the kernel).
fn end_attempt(pgid: i32, mark: Option<&str>, subreaper: bool) {
    kill_group(pgid);
    if subreaper && reap_children() {
        return;
    }
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        kill_group(pgid);
        let swept = process_fence::kill_attempt_left(mark);
        if !subreaper {
            return;
        }
        if reap_children() {
            return;
        }
        if Instant::now() >= until {
            eprintln!(
                "sturdy worker: {} process(es) of an ended attempt did not die after SIGKILL",
                swept.left.max(1)
            );
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Turns an exit status into an [`Outcome`]. `sh` reports a child killed by signal `s`
/// as exit status `128 + s` when it did not `exec` the command; a `137` (SIGKILL) with a
/// risen OOM-kill counter is therefore read as an OOM kill too.
fn classify_status(st: ExitStatus, oom_before: Option<u64>) -> Outcome {
    let oom_rose = || match (oom_before, oom::oom_kill_count()) {
        (Some(a), Some(b)) => b > a,
        _ => false,
    };
    if let Some(signal) = st.signal() {
        let oom_kill = signal == Signal::SIGKILL as i32 && oom_rose();
        return Outcome::Signaled { signal, oom_kill };
    }
    let code = st.code().unwrap_or(-1);
    if code == 128 + Signal::SIGKILL as i32 && oom_rose() {
        return Outcome::Signaled {
            signal: Signal::SIGKILL as i32,
            oom_kill: true,
        };
    }
    Outcome::Exited(code)
}

fn report(order: &RunOrder, outcome: Outcome, started: Instant) -> bool {
    send(&FromWorker::Finished {
        id: order.id,
        epoch: order.epoch,
        outcome,
        runtime_ms: started.elapsed().as_millis() as u64,
    })
    .is_ok()
}
