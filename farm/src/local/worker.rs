//! The hidden `sturdy worker` subcommand: one child process of the master that runs one
//! shell command at a time.
//!
//! It reads [`ToWorker`] frames on stdin and writes [`FromWorker`] frames on stdout
//! (see [`crate::local::protocol`]). Each command runs as `sh -c COMMAND` in a process group
//! of its own, with stdin from `/dev/null`, stdout and stderr to the files the order
//! names (through pipes the worker copies, so that a full or vanished state directory is
//! the worker's to see, never the command's), and `STURDY_TASK` and `STURDY_ATTEMPT` in
//! its environment (`STURDY_WORKER`, `STURDY_OWNER` and, for a GPU slot,
//! `CUDA_VISIBLE_DEVICES` come from the worker's own environment, set by the master). A
//! heartbeat goes out every interval, busy or idle.
//!
//! One thread runs an attempt: it `poll`s the command's two output pipes, its shell's
//! pidfd (Linux 5.3 and later; elsewhere it looks every 5 ms) and a doorbell that the
//! threads reading the master's orders ring, so that no thread is started per attempt.
//! The shell is `/bin/sh`, by absolute path.
//!
//! With `--nice N` the command runs as `nice -n N sh -c COMMAND` (`nice` execs `sh`,
//! so the process group is the same). With `--delay` the order says how long to wait
//! before the start.
//!
//! Each attempt's command runs with `STURDY_OWNER=<worker mark>.<task>.<attempt>` (see
//! [`crate::local::process_fence`]), and the worker is a child subreaper (`PR_SET_CHILD_SUBREAPER`),
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
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::local::oom;
use crate::local::process_fence::{self, OWNER_VAR};
use crate::local::protocol::{self, FromWorker, Outcome, RunOrder, ToWorker};

enum Event {
    Order(ToWorker),
    MasterGone,
}

/// The sending side of the worker's event queue: while an attempt runs, each event also
/// rings a doorbell (a byte on a socket) that the attempt loop polls beside the
/// command's pipes and pidfd, so that one thread runs a whole attempt and none is
/// started per attempt.
#[derive(Clone)]
struct EventTx {
    tx: Sender<Event>,
    bell: Arc<Bell>,
}

/// The doorbell of [`EventTx`].
struct Bell {
    /// The socket's write end (non-blocking: a full buffer already wakes the poller).
    socket: UnixStream,
    /// Set while an attempt's loop polls (an idle worker blocks on the queue itself).
    armed: AtomicBool,
}

impl EventTx {
    /// Queues `ev` and, while armed, rings the doorbell; false when the receiver is gone.
    fn send(&self, ev: Event) -> bool {
        let ok = self.tx.send(ev).is_ok();
        // Sequentially consistent with the attempt loop's arming and its `try_recv`
        // after it: an event queued before the loop armed is found by that
        // `try_recv`, one queued after rings.
        if self.bell.armed.load(Ordering::SeqCst) {
            let _ = (&self.bell.socket).write(&[1]);
        }
        ok
    }
}

fn send(msg: &FromWorker) -> io::Result<()> {
    protocol::write_frame(&mut io::stdout().lock(), msg)
}

/// Runs the worker loop until the master says shut down or goes away. Returns the
/// process exit code.
pub fn run(heartbeat: Duration) -> i32 {
    // Started through `/proc/self/exe` (the master's binary was deleted or replaced under
    // the run, see `process_pool`), the kernel names this process `exe`: it takes the
    // name `sturdy` back, by which `ps` and scripts know a worker.
    #[cfg(target_os = "linux")]
    if std::fs::read("/proc/self/comm").is_ok_and(|c| c == b"exe\n") {
        let _ = nix::sys::prctl::set_name(c"sturdy");
    }
    super::process_pool::restore_open_file_limit();
    // A worker stopped (SIGSTOP) when its master dies is in an orphaned process group
    // with a stopped member, so the kernel sends it SIGHUP then SIGCONT. SIGHUP's
    // default action would kill it before it could kill its command; with a handler it
    // lives on, sees its master's pipe closed, and kills the command first. (A handler,
    // not SIG_IGN: handlers reset on exec, so commands keep SIGHUP's default.)
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGHUP,
        Arc::new(AtomicBool::new(false)),
    );
    // What a command leaves behind is re-parented here, where the end of its attempt
    // finds it cheaply (see `end_attempt`). Without it every attempt end scans `/proc`.
    #[cfg(target_os = "linux")]
    let subreaper = nix::sys::prctl::set_child_subreaper(true).is_ok();
    #[cfg(not(target_os = "linux"))]
    let subreaper = false;
    let Ok((bell_rx, bell_tx)) = UnixStream::pair() else {
        eprintln!("sturdy worker: cannot create its event socket");
        return 1;
    };
    if bell_rx.set_nonblocking(true).is_err() || bell_tx.set_nonblocking(true).is_err() {
        eprintln!("sturdy worker: cannot make its event socket non-blocking");
        return 1;
    }
    let (tx, rx) = mpsc::channel::<Event>();
    let bell = Arc::new(Bell {
        socket: bell_tx,
        armed: AtomicBool::new(false),
    });
    let tx = EventTx {
        tx,
        bell: Arc::clone(&bell),
    };
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
            if !reader_tx.send(ev) || gone {
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
    drop(tx);
    if send(&FromWorker::Ready {
        pid: std::process::id(),
    })
    .is_err()
    {
        return 0;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.recv() {
            Ok(Event::Order(ToWorker::Run(order))) => {
                let attempt = Attempt {
                    rx: &rx,
                    bell_rx: &bell_rx,
                    armed: &bell.armed,
                };
                if !run_attempt(&order, subreaper, &attempt, &mut buf) {
                    return 0;
                }
            }
            Ok(Event::Order(ToWorker::Shutdown)) => return 0,
            Ok(Event::MasterGone) | Err(_) => {
                kill_own_marked();
                return 0;
            }
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

/// One of a command's output pipes and the file it is copied into.
struct Capture {
    /// The pipe's read end, until it closes.
    pipe: Option<File>,
    /// The output file. Stdout's path exists before the command starts (it marks the
    /// attempt as started in `STATE/out`, for the numbering of attempts after a crash),
    /// as a file of its own or as a hard link to the order's blank (see [`link_blank`]),
    /// which is replaced by a file of its own at the first byte; stderr's is created at
    /// its first byte, so that a command that writes none leaves none.
    file: Option<File>,
    path: String,
    /// Whether `path` is a hard link to the blank (never to be written through).
    linked: bool,
    stderr: bool,
}

/// A command's two outputs, copied by whoever polls them (see [`pump`]). A write error
/// is remembered (the first one) and the rest is drained unwritten, so that the command
/// never blocks or sees the farm's storage fail.
struct Captures<'a> {
    outs: [Capture; 2],
    /// The order's id when its output is streamed to the master.
    stream: Option<u32>,
    /// The first error met writing a command's output, as `(path, error)`.
    error: Option<(String, String)>,
    buf: &'a mut [u8],
}

impl Captures<'_> {
    /// Whether a pipe is still open.
    fn open(&self) -> bool {
        self.outs.iter().any(|c| c.pipe.is_some())
    }

    /// Copies one read's worth of output `i` (a read that returns end of file or an
    /// error closes the pipe).
    fn copy_once(&mut self, i: usize) {
        let out = &mut self.outs[i];
        let Some(pipe) = out.pipe.as_mut() else {
            return;
        };
        let n = match pipe.read(self.buf) {
            Ok(0) => {
                out.pipe = None;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return,
            Err(_) => {
                out.pipe = None;
                return;
            }
        };
        if let Some(id) = self.stream {
            // A master that is gone is noticed by the heartbeat and the reader.
            let _ = send(&FromWorker::Output {
                id,
                stderr: out.stderr,
                bytes: self.buf[..n].to_vec(),
            });
        }
        if self.error.is_some() {
            return;
        }
        if out.file.is_none() {
            let made = if out.linked {
                own_file(&out.path)
            } else {
                File::create(&out.path)
            };
            match made {
                Ok(f) => {
                    out.file = Some(f);
                    out.linked = false;
                }
                Err(e) => {
                    self.error = Some((out.path.clone(), e.to_string()));
                    return;
                }
            }
        }
        if let Some(Err(e)) = out.file.as_mut().map(|f| f.write_all(&self.buf[..n])) {
            self.error = Some((out.path.clone(), e.to_string()));
        }
    }
}

/// What ended a [`pump`].
#[derive(Default)]
struct Woke {
    /// The child's pidfd is readable (it has ended).
    child: bool,
    /// The doorbell rang: events may be queued.
    events: bool,
}

/// Waits (one `poll`) until output is ready on an open pipe of `cap`, `pidfd` (the
/// command's shell) has ended, `bell` rang, or `deadline` passed, and copies what is
/// ready. `None` for `deadline` waits without limit.
fn pump(
    cap: &mut Captures<'_>,
    pidfd: Option<&OwnedFd>,
    bell: Option<&UnixStream>,
    deadline: Option<Instant>,
) -> Woke {
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        })
    });
    let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
    let mut which = [0usize; 4];
    for (i, out) in cap.outs.iter().enumerate() {
        if let Some(pipe) = &out.pipe {
            which[fds.len()] = i;
            fds.push(PollFd::new(pipe, PollFlags::IN));
        }
    }
    let n_pipes = fds.len();
    if let Some(fd) = pidfd {
        fds.push(PollFd::new(fd, PollFlags::IN));
    }
    if let Some(bell) = bell {
        fds.push(PollFd::from_borrowed_fd(bell.as_fd(), PollFlags::IN));
    }
    let mut woke = Woke::default();
    match poll(&mut fds, timeout.as_ref()) {
        Ok(0) | Err(_) => return woke,
        Ok(_) => {}
    }
    let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
    drop(fds);
    for (k, &r) in ready.iter().enumerate().take(n_pipes) {
        if r {
            cap.copy_once(which[k]);
        }
    }
    let mut k = n_pipes;
    if pidfd.is_some() {
        woke.child = ready[k];
        k += 1;
    }
    if let Some(mut bell) = bell
        && ready[k]
    {
        // One read takes all that is there, unless the buffer fills.
        let mut sink = [0u8; 256];
        while matches!(bell.read(&mut sink), Ok(n) if n == sink.len()) {}
        woke.events = true;
    }
    woke
}

/// The command's pidfd, which turns readable when it ends; `None` where the kernel has
/// none (before Linux 5.3, or not Linux), and the attempt loop then looks every
/// [`POLL`].
fn pidfd_of(child: &Child) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::pidfd_open(
            rustix::process::Pid::from_child(child),
            rustix::process::PidfdFlags::empty(),
        )
        .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = child;
        None
    }
}

/// Test hook: pause this many ms between spawning a command and reporting its process
/// group, so that an end-to-end test can kill the worker in that window.
const PAUSE_BEFORE_STARTED: &str = "STURDY_TEST_PAUSE_BEFORE_STARTED_MS";

/// The shell commands run with, by absolute path (no `PATH` search per spawn).
const SHELL: &str = "/bin/sh";

/// What an attempt hears events through.
struct Attempt<'a> {
    rx: &'a mpsc::Receiver<Event>,
    /// The doorbell's read end.
    bell_rx: &'a UnixStream,
    /// Whether the doorbell rings.
    armed: &'a AtomicBool,
}

/// Disarms the doorbell when dropped.
struct Armed<'a>(&'a AtomicBool);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Runs one attempt; returns false when the worker must exit (the master is gone or
/// asked to shut down).
fn run_attempt(order: &RunOrder, subreaper: bool, ev: &Attempt<'_>, buf: &mut [u8]) -> bool {
    let (rx, bell) = (ev.rx, ev.bell_rx);
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
            Ok(Event::MasterGone) | Err(RecvTimeoutError::Disconnected) => {
                kill_own_marked();
                return false;
            }
        }
    }
    let started = Instant::now();
    let linked = order
        .stdout_blank
        .as_deref()
        .is_some_and(|blank| link_blank(Path::new(blank), Path::new(&order.stdout_path)));
    let out = if linked {
        Ok(None)
    } else {
        File::create(&order.stdout_path).map(Some)
    };
    let out = match out {
        Ok(f) => f,
        Err(e) => {
            let outcome = Outcome::StorageFailed {
                path: order.stdout_path.clone(),
                error: e.to_string(),
            };
            return report(order, outcome, started);
        }
    };
    let oom_before = oom::oom_kill_count();
    let mut command = match order.nice {
        Some(n) => {
            let mut c = Command::new("nice");
            c.arg("-n").arg(n.to_string()).arg(SHELL);
            c
        }
        None => Command::new(SHELL),
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
        .env_remove(super::process_pool::NOFILE_VAR)
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
    let pidfd = pidfd_of(&child);
    let mut cap = Captures {
        outs: [
            Capture {
                pipe: child.stdout.take().map(|p| File::from(OwnedFd::from(p))),
                file: out,
                path: order.stdout_path.clone(),
                linked,
                stderr: false,
            },
            Capture {
                pipe: child.stderr.take().map(|p| File::from(OwnedFd::from(p))),
                file: None,
                path: order.stderr_path.clone(),
                linked: false,
                stderr: true,
            },
        ],
        stream: order.stream.then_some(order.id),
        error: None,
        buf,
    };
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
    ev.armed.store(true, Ordering::SeqCst);
    let _armed = Armed(ev.armed);
    // Events queued before the doorbell was armed are looked at first.
    let mut events = true;
    let status = loop {
        if events {
            loop {
                match rx.try_recv() {
                    Ok(Event::Order(ToWorker::Shutdown)) => shutdown_after = true,
                    Ok(Event::Order(ToWorker::Run(other))) => eprintln!(
                        "sturdy worker: busy with task {}, ignoring an order for task {}",
                        order.task, other.task
                    ),
                    Err(TryRecvError::Empty) => break,
                    Ok(Event::MasterGone) | Err(TryRecvError::Disconnected) => {
                        kill_group(pgid);
                        kill_own_marked();
                        // Wait for the reap so that nothing of ours outlives the worker.
                        let _ = child.wait();
                        return false;
                    }
                }
            }
        }
        if let Some((at, signal)) = next_kill
            && Instant::now() >= at
        {
            timed_out = true;
            signal_group(pgid, signal);
            next_kill =
                (signal == Signal::SIGTERM).then(|| (Instant::now() + grace, Signal::SIGKILL));
            continue;
        }
        // Without a pidfd the shell's end is looked for every `POLL`.
        let deadline = match (next_kill.map(|(at, _)| at), pidfd.is_none()) {
            (Some(at), true) => Some(at.min(Instant::now() + POLL)),
            (Some(at), false) => Some(at),
            (None, true) => Some(Instant::now() + POLL),
            (None, false) => None,
        };
        let woke = pump(&mut cap, pidfd.as_ref(), Some(bell), deadline);
        if woke.child || pidfd.is_none() {
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        }
        events = woke.events;
    };
    if let (true, Some((deadline, Signal::SIGKILL))) = (timed_out, next_kill) {
        // The group had its SIGTERM: its grace lasts until it is gone (its shell may be
        // gone long before the program it ran finishes its cleanup) or the grace ends.
        wait_group_gone(pgid, deadline, subreaper, &mut cap);
    }
    // What ignored the SIGTERM, or outlived its shell or left its group, goes now.
    end_attempt(pgid, mark.as_deref(), subreaper);
    // The output is complete once both pipes closed; a process that escaped the group
    // and holds them open is not waited for past a second.
    let until = Instant::now() + Duration::from_secs(1);
    while cap.open() && Instant::now() < until {
        pump(&mut cap, None, None, Some(until));
    }
    let outcome = if let Some((path, error)) = cap.error.take() {
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

/// Makes `path` a hard link to the empty file `blank`, so that an attempt that writes
/// nothing to stdout allocates no inode for its `.out` (nor for the mark the master
/// renames it to): creates `blank` when it is missing, puts a new one in its place when
/// it has the most links the file system allows (`EMLINK`: 65 000 on ext4), and
/// replaces a `path` left by an earlier start of the same attempt number. False when
/// the link cannot be made (a file system without hard links, a missing directory):
/// the caller then creates `path` as a file, and reports a failure to do so.
///
/// A `blank` that is no regular file (replaced by hand with a symbolic link, which
/// `link(2)` would link as a link, or with a directory) is replaced by a fresh empty
/// file, so that no attempt's `.out` ever leads to another file (whose bytes would be
/// printed as the attempt's output, and which the master would empty); false where it
/// cannot be replaced (a directory).
fn link_blank(blank: &Path, path: &Path) -> bool {
    let is = |e: &io::Error, errno: Errno| e.raw_os_error() == Some(errno as i32);
    let fresh_blank = || {
        let mut tmp = blank.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        File::create(&tmp).is_ok() && std::fs::rename(&tmp, blank).is_ok()
    };
    for _ in 0..3 {
        let e = match std::fs::hard_link(blank, path) {
            Ok(()) if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) => return true,
            Ok(()) => {
                let _ = std::fs::remove_file(path);
                if fresh_blank() {
                    continue;
                }
                return false;
            }
            Err(e) => e,
        };
        let fixed = if is(&e, Errno::EEXIST) {
            std::fs::remove_file(path).is_ok()
        } else if is(&e, Errno::ENOENT) {
            // Never truncated: another worker may have made it (empty) meanwhile.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(blank)
                .is_ok()
        } else if is(&e, Errno::EMLINK) {
            // A fresh blank under the same name; the links made stay on the old one.
            fresh_blank()
        } else {
            false
        };
        if !fixed {
            return false;
        }
    }
    false
}

/// Gives the attempt's stdout file at `path` (until now a hard link to the blank, see
/// [`link_blank`]) an inode of its own, empty, at the first byte the command writes: a
/// new file at `path.tmp` renamed over `path`, so that `path` exists throughout.
fn own_file(path: &str) -> io::Result<File> {
    let tmp = format!("{path}.tmp");
    let f = File::create(&tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(f)
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
/// counts as a member) and copying their output meanwhile.
fn wait_group_gone(pgid: i32, deadline: Instant, subreaper: bool, cap: &mut Captures<'_>) {
    loop {
        if subreaper {
            reap_children();
        }
        if killpg(Pid::from_raw(pgid), None) == Err(Errno::ESRCH) || Instant::now() >= deadline {
            return;
        }
        let until = deadline.min(Instant::now() + POLL);
        while Instant::now() < until {
            pump(cap, None, None, Some(until));
        }
    }
}

/// Reaps the children of this process that have ended; true when none is left
/// (`ECHILD`), false when some still live (or waiting failed otherwise). Call it only
/// once the command's shell is reaped, so as not to take its status from the attempt loop.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn ino(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn a_quiet_attempts_stdout_is_a_link_to_the_blank_made_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (blank, out) = (dir.path().join("blank.out"), dir.path().join("1.1.out"));
        assert!(link_blank(&blank, &out));
        assert_eq!(ino(&blank), ino(&out));
        assert_eq!(std::fs::metadata(&blank).unwrap().nlink(), 2);
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        // A second attempt links to the same blank: no new inode.
        let out2 = dir.path().join("1.2.out");
        assert!(link_blank(&blank, &out2));
        assert_eq!(ino(&out2), ino(&blank));
        assert_eq!(std::fs::metadata(&blank).unwrap().nlink(), 3);
    }

    #[test]
    fn a_file_left_at_the_path_is_replaced_by_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let (blank, out) = (dir.path().join("blank.out"), dir.path().join("3.1.out"));
        std::fs::write(&out, "an earlier start's output").unwrap();
        assert!(link_blank(&blank, &out));
        assert_eq!(ino(&out), ino(&blank));
        assert_eq!(std::fs::read(&out).unwrap(), b"");
    }

    #[test]
    fn a_blank_replaced_by_a_symlink_is_made_a_file_again_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (blank, out) = (dir.path().join("blank.out"), dir.path().join("4.1.out"));
        let precious = dir.path().join("precious.txt");
        std::fs::write(&precious, "precious\n").unwrap();
        std::os::unix::fs::symlink(&precious, &blank).unwrap();
        assert!(link_blank(&blank, &out));
        let (b, o) = (
            std::fs::symlink_metadata(&blank).unwrap(),
            std::fs::symlink_metadata(&out).unwrap(),
        );
        assert!(b.is_file() && o.is_file());
        assert_eq!((o.ino(), o.len()), (b.ino(), 0));
        assert_eq!(std::fs::read(&precious).unwrap(), b"precious\n");
    }

    #[test]
    fn no_link_to_a_blank_replaced_by_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (blank, out) = (dir.path().join("blank.out"), dir.path().join("5.1.out"));
        std::fs::create_dir(&blank).unwrap();
        assert!(!link_blank(&blank, &out));
        assert!(!out.exists());
    }

    #[test]
    fn no_link_where_the_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank.out");
        assert!(!link_blank(&blank, &dir.path().join("gone/1.1.out")));
    }

    #[test]
    fn the_first_byte_gives_the_file_its_own_inode_and_the_blank_stays_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (blank, out) = (dir.path().join("blank.out"), dir.path().join("2.1.out"));
        assert!(link_blank(&blank, &out));
        let mut f = own_file(out.to_str().unwrap()).unwrap();
        f.write_all(b"hello\n").unwrap();
        assert_ne!(ino(&out), ino(&blank));
        assert_eq!(std::fs::read(&out).unwrap(), b"hello\n");
        assert_eq!(std::fs::read(&blank).unwrap(), b"");
        assert_eq!(std::fs::metadata(&blank).unwrap().nlink(), 1);
        // Nothing else is left in the directory (the temporary name was renamed).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
