//! Fencing of processes: every process a worker starts carries a mark, and a dead
//! worker's marked processes are killed before its task runs anywhere else.
//!
//! The master starts each worker with `STURDY_OWNER=<run>.<master pid>.<slot>.<n>` in
//! its environment (`<run>` names the state directory by its device and inode, so it
//! survives a rename; `<n>` counts the slot's worker
//! starts); the worker runs each attempt's command with the attempt's own mark,
//! `<worker mark>.<task>.<attempt>`, which everything the command starts inherits. A
//! worker's sweep matches its mark and every mark that extends it (see [`has_mark`]),
//! so that it finds every attempt's processes. When an attempt ends, the worker kills
//! what the attempt left (its process group, and when something survived, every process
//! with the attempt's mark) before it reports the outcome. When the
//! master decides a worker is dead (its pipe closed, its heartbeats stopped, φ suspects
//! it, its lease lapsed) it kills the worker, the process group of its command (which
//! the worker reported when it started it), and then every process whose environment
//! holds that worker's mark, scanning `/proc` again until none is left alive. That
//! holds under `SIGKILL` of any one process:
//!
//! - a worker killed after it spawned its command but before it reported the command's
//!   process group: the mark finds the command;
//! - a command that left its process group (`setsid`, as under GNU parallel, or a
//!   daemonizing step): the mark finds it, unless it also cleared its environment
//!   (`env -i`), which nothing can see;
//! - the master killed: each worker sees its pipe close and kills its command's group
//!   and its marked processes itself; a worker that cannot (it is stopped with
//!   `SIGSTOP`) is killed, with its command, by the next master of the same state
//!   directory (`--resume`), which sweeps every process marked with the directory's
//!   `<run>` before it starts a worker.
//!
//! Reading `/proc/PID/environ` needs the same user (or root); processes of other users
//! are never touched.
//!
//! The host agent (`sturdy agent`) has no master to sweep after it: it starts a
//! [`Fence`] process first, which outlives it, and marks every attempt's command with
//! `<agent mark>.<slot>.<task>.<attempt>` (see [`agent_mark`]). When the agent dies,
//! however (`SIGKILL` included), the fence sees the agent's end of a pipe close, kills
//! every process with the agent's mark (the commands and everything they started, in
//! their process group or not) and exits, so a command cannot keep running a task that
//! the engine hands to another host.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The environment variable that marks a worker's processes.
pub const OWNER_VAR: &str = "STURDY_OWNER";

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// The mark prefix of every process of runs in state directory `root`:
/// `sturdy-<CRC-64 of the directory's device and inode numbers>`, so that the mark
/// follows the directory when it is renamed or moved within its filesystem (a resumed
/// master in the moved directory still finds what an earlier one left running). A
/// directory that cannot be read falls back to its canonical path.
pub fn run_mark(root: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let id = match std::fs::metadata(root) {
        Ok(m) => format!("dev {} ino {}", m.dev(), m.ino()).into_bytes(),
        Err(_) => std::fs::canonicalize(root)
            .unwrap_or_else(|_| root.to_owned())
            .into_os_string()
            .into_encoded_bytes(),
    };
    format!("sturdy-{:016x}", CRC64.checksum(&id))
}

/// The mark of one worker start: `<run>.<master pid>.<slot>.<n>`.
pub fn worker_mark(run: &str, slot: usize, start: u64) -> String {
    format!("{run}.{}.{}.{start}", std::process::id(), slot + 1)
}

/// The mark of one host agent's processes: `<run>.agent<pid>` (`run` from [`run_mark`]
/// of its state directory). Its attempts' marks extend it
/// (`<agent mark>.<slot>.<task>.<attempt>`).
pub fn agent_mark(run: &str) -> String {
    format!("{run}.agent{}", std::process::id())
}

/// A fence process (see the [module docs](self)): while this value lives, the process
/// waits; once it is dropped or this process dies, it kills every process marked
/// with the fence's mark (or an extension of it), then exits.
#[derive(Debug)]
pub struct Fence {
    /// This process's end of the pipe; the fence reads the other until it closes.
    _alive: std::os::fd::OwnedFd,
    pid: i32,
}

impl Fence {
    /// The fence process's id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Starts the fence for `mark` in a process of its own (a fork of this one that
    /// never execs, in a process group of its own so that a terminal's `^C` or a
    /// signal to this process's group does not reach it; it ignores `SIGINT` and
    /// `SIGHUP`).
    ///
    /// Call it while this process has one thread (before a runtime starts): the forked
    /// child allocates and reads `/proc`, which is safe only then.
    ///
    /// # Errors
    /// The process has more than one thread (`"it already has N threads"`), or the
    /// pipe or the fork failed.
    pub fn start(mark: &str) -> std::io::Result<Self> {
        use nix::fcntl::OFlag;
        use nix::unistd::{ForkResult, fork, pipe2, read, setpgid};
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
            })
            .unwrap_or(1);
        if threads > 1 {
            return Err(std::io::Error::other(format!(
                "cannot fork the process fence: it already has {threads} threads"
            )));
        }
        let mark = mark.to_owned();
        // Close-on-exec: the commands never hold the agent's end open.
        let (rx, tx) = pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: this process has one thread (checked above), so the child may do
        // anything the parent could: no lock is held by a thread that is not there.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(tx);
                let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
                for signal in [Signal::SIGINT, Signal::SIGHUP] {
                    // SAFETY: SIG_IGN installs no handler code.
                    let _ = unsafe {
                        nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigIgn)
                    };
                }
                let mut buf = [0u8; 64];
                loop {
                    match read(&rx, &mut buf) {
                        Ok(0) => break,
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => break,
                    }
                }
                kill_worker_marked(&mark);
                // Nothing of the parent's state needs cleaning: it forked with one
                // thread, before any output was buffered (the agent writes to stderr,
                // unbuffered) and before any runtime existed.
                std::process::exit(0);
            }
            ForkResult::Parent { child } => {
                drop(rx);
                Ok(Self {
                    _alive: tx,
                    pid: child.as_raw(),
                })
            }
        }
    }
}

/// The value of [`OWNER_VAR`] in a process's environment, if it is readable and set.
fn owner_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{OWNER_VAR}=");
    env.split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(key.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// Whether `pid` is a live process (not a zombie, not gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|s| s != "Z" && s != "X")
    })
}

/// What a sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Processes sent `SIGKILL`.
    pub killed: usize,
    /// Marked processes still alive when the sweep gave up (stuck in the kernel).
    pub left: usize,
}

/// The parent pid of a process, if it is readable.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the process mark `m` is `mark` or extends it (`<mark>.<more>`, as an
/// attempt's mark extends its worker's).
pub fn has_mark(m: &str, mark: &str) -> bool {
    m.strip_prefix(mark)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Kills (`SIGKILL`) every live process but this one whose mark satisfies `marked`,
/// and scans again until none is left alive (a process that forks while it is being
/// killed is caught by the next scan), for at most about a second.
pub fn kill_marked(marked: impl Fn(&str) -> bool) -> Swept {
    kill_where(|pid| owner_of(pid).is_some_and(|m| marked(&m)))
}

/// Kills what an attempt of this worker left behind: every live process with the
/// attempt's mark `mark` (see [`has_mark`]) and every child of this process (what the
/// command left is re-parented here, the worker being a child subreaper, even when it
/// cleared its environment), scanning again until none is left (see [`kill_marked`]).
/// Call it only once the command's shell is reaped: it kills every child.
pub fn kill_attempt_left(mark: Option<&str>) -> Swept {
    let me = std::process::id() as i32;
    kill_where(|pid| {
        parent_of(pid) == Some(me)
            || mark.is_some_and(|k| owner_of(pid).is_some_and(|m| has_mark(&m, k)))
    })
}

/// Kills every live process but this one for which `doomed` holds (see
/// [`kill_marked`]).
fn kill_where(doomed: impl Fn(i32) -> bool) -> Swept {
    let me = std::process::id() as i32;
    let mut killed = std::collections::BTreeSet::new();
    let mut left = 0;
    for _ in 0..200 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            break;
        };
        left = 0;
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me || !doomed(pid) || !alive(pid) {
                continue;
            }
            left += 1;
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed.insert(pid);
            }
        }
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Swept {
        killed: killed.len(),
        left,
    }
}

/// Kills every process of this worker mark or of one of its attempts' marks (see
/// [`has_mark`] and [`kill_marked`]).
pub fn kill_worker_marked(mark: &str) -> Swept {
    kill_marked(|m| has_mark(m, mark))
}

/// Kills every process left by any earlier master of the state directory whose run mark
/// is `run` (see [`kill_marked`]).
pub fn kill_run_marked(run: &str) -> Swept {
    let prefix = format!("{run}.");
    kill_marked(|m| m.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn marks_name_the_directory_and_the_worker_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = run_mark(dir.path());
        assert!(a.starts_with("sturdy-") && a.len() == 23, "{a}");
        assert_eq!(a, run_mark(&dir.path().join(".")));
        std::fs::create_dir(dir.path().join("other")).unwrap();
        assert_ne!(a, run_mark(&dir.path().join("other")));
        // The mark follows a renamed directory.
        let before = run_mark(&dir.path().join("other"));
        std::fs::rename(dir.path().join("other"), dir.path().join("moved")).unwrap();
        assert_eq!(before, run_mark(&dir.path().join("moved")));
        assert_eq!(
            worker_mark(&a, 2, 7),
            format!("{a}.{}.3.7", std::process::id())
        );
    }

    #[test]
    fn a_mark_is_matched_by_itself_and_its_extensions_only() {
        assert!(has_mark("r.1.2.3", "r.1.2.3"));
        assert!(has_mark("r.1.2.3.7.1", "r.1.2.3"));
        assert!(!has_mark("r.1.2.30", "r.1.2.3"));
        assert!(!has_mark("r.1.2.30.7.1", "r.1.2.3"));
        assert!(!has_mark("r.1.2", "r.1.2.3"));
    }

    #[test]
    fn a_sweep_kills_marked_processes_even_outside_their_group_and_spares_others() {
        let mark = format!("sturdy-test.{}.1.{}", std::process::id(), line!());
        // A marked shell whose child leaves the process group, and an unmarked one.
        let mut marked = Command::new("sh")
            .arg("-c")
            .arg("setsid sleep 30 & sleep 30")
            .env(OWNER_VAR, &mark)
            .spawn()
            .unwrap();
        // An attempt of that worker: its mark extends the worker's.
        let mut attempt = Command::new("sleep")
            .arg("30")
            .env(OWNER_VAR, format!("{mark}.3.1"))
            .spawn()
            .unwrap();
        let mut other = Command::new("sleep")
            .arg("30")
            .env(OWNER_VAR, format!("{mark}0"))
            .spawn()
            .unwrap();
        // Wait until the setsid'd sleep exists (two marked processes).
        let count = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
                .filter(|&p| owner_of(p).is_some_and(|m| has_mark(&m, &mark)) && alive(p))
                .count()
        };
        for _ in 0..400 {
            if count() >= 4 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            count(),
            4,
            "sh, its sleep, the setsid'd sleep and the attempt's sleep"
        );
        let swept = kill_worker_marked(&mark);
        assert_eq!(swept, Swept { killed: 4, left: 0 });
        let _ = marked.wait();
        let _ = attempt.wait();
        assert_eq!(count(), 0);
        assert!(
            other.try_wait().unwrap().is_none(),
            "the unmarked sleep lives"
        );
        let _ = other.kill();
        let _ = other.wait();
    }
}
