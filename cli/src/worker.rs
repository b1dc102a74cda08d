//! The hidden `sturdy worker` subcommand: one child process of the master that runs one
//! shell command at a time.
//!
//! It reads [`ToWorker`] frames on stdin and writes [`FromWorker`] frames on stdout
//! (see [`crate::protocol`]). Each command runs as `sh -c COMMAND` in a process group
//! of its own, with stdin from `/dev/null`, stdout and stderr to the files the order
//! names, and `STURDY_TASK` and `STURDY_ATTEMPT` in its environment (`STURDY_WORKER`
//! and, for a GPU slot, `CUDA_VISIBLE_DEVICES` come from the worker's own environment,
//! set by the master). A heartbeat goes out every interval, busy or idle.
//!
//! A command over its timeout has its whole process group killed with `SIGKILL` and is
//! reported as timed out. When the master goes away (stdin closes or stdout breaks), the
//! worker kills the command's process group and exits, so that a resumed run never
//! races a command left over from the old one.

use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::oom;
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
                if !run_attempt(&order, &tx, &rx) {
                    return 0;
                }
            }
            Ok(Event::Order(ToWorker::Shutdown) | Event::MasterGone) | Err(_) => return 0,
            Ok(Event::ChildExit(_)) => {}
        }
    }
}

fn kill_group(pgid: i32) {
    // ESRCH (the group is already gone) is the expected case after a normal exit.
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

/// Runs one attempt; returns false when the worker must exit (the master is gone or
/// asked to shut down).
fn run_attempt(order: &RunOrder, tx: &Sender<Event>, rx: &mpsc::Receiver<Event>) -> bool {
    let started = Instant::now();
    let outputs = File::create(&order.stdout_path)
        .and_then(|o| File::create(&order.stderr_path).map(|e| (o, e)));
    let (out, err) = match outputs {
        Ok(files) => files,
        Err(e) => {
            return report(
                order,
                Outcome::SpawnFailed(format!("output file: {e}")),
                started,
            );
        }
    };
    let oom_before = oom::oom_kill_count();
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(&order.command)
        .env("STURDY_TASK", order.task.to_string())
        .env("STURDY_ATTEMPT", order.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return report(order, Outcome::SpawnFailed(format!("sh: {e}")), started),
    };
    let pgid = child.id() as i32;
    if send(&FromWorker::Started {
        id: order.id,
        epoch: order.epoch,
        pgid,
    })
    .is_err()
    {
        kill_group(pgid);
        let _ = child.wait();
        return false;
    }
    let waiter_tx = tx.clone();
    std::thread::spawn(move || {
        let _ = waiter_tx.send(Event::ChildExit(child.wait()));
    });
    let deadline =
        (order.timeout_ms > 0).then(|| started + Duration::from_millis(order.timeout_ms));
    let mut shutdown_after = false;
    let mut timed_out = false;
    let status = loop {
        let ev = match deadline {
            Some(d) if !timed_out => {
                match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(ev) => ev,
                    Err(RecvTimeoutError::Timeout) => {
                        timed_out = true;
                        kill_group(pgid);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => Event::MasterGone,
                }
            }
            _ => rx.recv().unwrap_or(Event::MasterGone),
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
    let outcome = if timed_out {
        Outcome::TimedOut
    } else {
        match status {
            Ok(st) => classify_status(st, oom_before),
            Err(e) => Outcome::SpawnFailed(format!("wait: {e}")),
        }
    };
    report(order, outcome, started) && !shutdown_after
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
