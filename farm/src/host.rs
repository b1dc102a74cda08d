//! The host agent's process side (`sturdy agent`): what runs the core's agent
//! ([`agent::run`]) on a real host against a JetStream run.
//!
//! - [`agent_config`]: the agent's settings from the run's (the coordinator writes them
//!   into the run's definition, every agent reads them back);
//! - [`gate_limits`]: the host health gate the agent applies (its own options and the
//!   run's);
//! - [`prepare`] then [`HostAgent::run`]: the gate sampling this host, the run's control
//!   followed (and SIGINT drains, a second SIGINT or SIGTERM aborts), each attempt run
//!   as `/bin/sh -c COMMAND` in its own process group, a child of the agent that gets
//!   SIGKILL when the agent dies (`PR_SET_PDEATHSIG`); killing an attempt (stale, timed
//!   out, aborted) SIGKILLs its whole group and reaps the shell before the slot goes on.
//!   Its stdout and stderr are pipes that the agent reads: each goes to
//!   `OUT/TASK.ATTEMPT.out` (`.err`), a file created at its first byte, so a quiet
//!   attempt creates no file ([`Running::output`] lists the files for shipping).
//!
//! The caller (the CLI) parses the options, connects, opens the run and prints.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sturdy_core::backoff::{BackoffConfig, Jitter};
use sturdy_core::breaker::ConsecutiveConfig;
use sturdy_core::health::HealthProbe;
use sturdy_core::retry::RetryPolicy;
use sturdy_tokio::HealthMonitor;
use tokio::sync::watch;

use crate::agent::{
    self, AgentConfig, AgentError, AgentSummary, Control, Event, Exit, Runner, Running, Start,
};
use crate::engine::jetstream::Run;
use crate::engine::output::Channel;
use crate::engine::{Error as EngineError, RunMeta};
use crate::local::Slot;
use crate::local::classify::classify;
use crate::local::health_gate::{self, Limits};
use crate::local::process_fence;
use crate::local::protocol::Outcome;
use crate::supervisor::HostHealth;
use crate::task_output::OutputFile;

/// Why a host agent could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The run's settings (written by its coordinator) break a rule; the message names
    /// the setting.
    #[error("{0}")]
    Settings(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The agent refused its config.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// One host agent's own settings (`sturdy agent`'s options).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HostConfig {
    /// This host's name, in every record.
    pub host: String,
    /// The slots; a repeated label gets its index in the records (`cpu#1`).
    pub slots: Vec<Slot>,
    /// Where each attempt's output goes (`TASK.ATTEMPT.out` and `.err`, each created at
    /// its stream's first byte: a quiet attempt creates none); it must exist.
    pub out_dir: PathBuf,
    /// `--health-gate`: judge the whole host (CPU, memory, disks, GPUs).
    pub health_gate: bool,
    /// `--load`: the highest 1-minute load average at which a slot may pull.
    pub load: Option<f64>,
    /// `--memfree`: the least available memory, in bytes, at which a slot may pull.
    pub memfree: Option<u64>,
    /// The agent's owner mark (see [`process_fence::agent_mark`]): each command carries
    /// `STURDY_OWNER=<mark>.<slot>.<task>.<attempt>`, so that a [`process_fence::Fence`]
    /// started with the mark kills every command (and what it started) when the agent
    /// dies, and a killed attempt's leftovers that left its process group are found.
    /// `None`: commands carry no mark.
    pub owner_mark: Option<String>,
}

impl HostConfig {
    /// Host `host` with `slots`, writing outputs into `out_dir`, no health gate.
    pub fn new(host: impl Into<String>, slots: Vec<Slot>, out_dir: PathBuf) -> Self {
        Self {
            host: host.into(),
            slots,
            out_dir,
            health_gate: false,
            load: None,
            memfree: None,
            owner_mark: None,
        }
    }

    /// The slots' names in the records: their labels, a repeated label with its index.
    pub fn slot_names(&self) -> Vec<String> {
        let slots = &self.slots;
        let mut names = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            let label = &slot.label;
            if slots.iter().filter(|s| &s.label == label).count() > 1 {
                names.push(format!("{label}#{i}"));
            } else {
                names.push(label.clone());
            }
        }
        names
    }
}

/// The agent's config from the run's settings.
///
/// # Errors
/// [`HostError::Settings`] naming a setting that is not a number or a config the core
/// refuses.
pub fn agent_config(
    meta: &RunMeta,
    host: String,
    slots: Vec<String>,
) -> Result<AgentConfig, HostError> {
    let get = |key: &str| -> Result<Option<u64>, HostError> {
        meta.settings
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    HostError::Settings(format!("the run's setting {key} = {v:?} is not a number"))
                })
            })
            .transpose()
    };
    let ms = |v: u64| Duration::from_millis(v);
    let bad = |e: sturdy_core::ConfigError| {
        HostError::Settings(format!("the run's settings are invalid: {e}"))
    };
    let mut config = AgentConfig::new(host, slots);
    let max_attempts = u32::try_from(get("max_attempts")?.unwrap_or(3)).unwrap_or(u32::MAX);
    let base = ms(get("backoff_base_ms")?.unwrap_or(0));
    let cap = ms(get("backoff_cap_ms")?.unwrap_or(0)).max(base);
    let jitter = match meta.settings.get("jitter").map(String::as_str) {
        Some("none") => Jitter::None,
        Some("equal") => Jitter::Equal,
        Some("decorrelated") => Jitter::Decorrelated,
        _ => Jitter::Full,
    };
    let backoff = if base.is_zero() {
        BackoffConfig::constant(Duration::ZERO)
    } else {
        BackoffConfig::exponential(base, 2000, cap)
            .and_then(|b| b.with_jitter(jitter))
            .map_err(bad)?
    };
    config.retry = RetryPolicy::new(max_attempts, backoff).map_err(bad)?;
    config.crash_limit = u32::try_from(get("max_worker_crashes")?.unwrap_or(2)).unwrap_or(2);
    config.timeout = get("task_timeout_ms")?.map(ms);
    if let Some(hb) = get("heartbeat_ms")? {
        config.heartbeat = ms(hb.max(1));
    }
    config.pull_wait = config
        .heartbeat
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    config.seed = get("seed")?.unwrap_or(0);
    let failures = u32::try_from(get("breaker_failures")?.unwrap_or(3)).unwrap_or(3);
    let open = ms(get("breaker_open_ms")?.unwrap_or(30_000).max(1));
    config.breaker = ConsecutiveConfig::new(failures.max(1), open, 1).map_err(bad)?;
    config.delay = ms(get("delay_ms")?.unwrap_or(0));
    Ok(config)
}

/// The health gate an agent applies: its own (`config`) and the run's settings
/// (`health_gate`, `load`, `memfree`), the stricter of each: `(limits, full)` where
/// `full` judges the whole host (`--health-gate`), or `None` for no gate.
///
/// # Errors
/// [`HostError::Settings`] when the run's `load` or `memfree` is not a number.
pub fn gate_limits(
    config: &HostConfig,
    meta: &RunMeta,
) -> Result<Option<(Limits, bool)>, HostError> {
    let setting = |key: &str| meta.settings.get(key).map(String::as_str);
    let bad = |key: &str, v: &str| {
        HostError::Settings(format!("the run's setting {key} = {v:?} is not a number"))
    };
    let run_load = match setting("load") {
        Some(v) => Some(v.parse::<f64>().map_err(|_| bad("load", v))?),
        None => None,
    };
    let run_memfree = match setting("memfree") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| bad("memfree", v))?),
        None => None,
    };
    let stricter = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let limits = Limits {
        max_load: stricter(config.load, run_load),
        min_available: config.memfree.max(run_memfree),
    };
    let full = config.health_gate || setting("health_gate") == Some("true");
    let gated = full || limits.max_load.is_some() || limits.min_available.is_some();
    Ok(gated.then_some((limits, full)))
}

/// A host agent ready to run: from [`prepare`].
pub struct HostAgent<'a> {
    run: &'a Run,
    config: AgentConfig,
    runner: ProcessRunner,
    control: watch::Receiver<Control>,
    /// Samples the host while the agent runs (dropped with it).
    _monitor: Option<HealthMonitor>,
}

/// Prepares host `host`'s agent for `run` (opened, with its definition `meta`): its
/// settings from the run's, the health gate (sampling with the probe `make_probe`
/// makes, only when gated; it waits for the gate's first reading, so that no slot
/// pulls ahead of it), and the run's control followed: polled every heartbeat, with
/// SIGINT draining (the first) or aborting (the second), and SIGTERM aborting.
///
/// Needs a tokio runtime with time, signals and processes enabled; the agent's children
/// get `PR_SET_PDEATHSIG` from the thread that forks them, so the runtime should be a
/// current-thread one on a thread that lives as long as the process.
///
/// # Errors
/// [`HostError::Settings`] for run settings that break a rule, [`HostError::Engine`]
/// when the run's control cannot be read.
pub async fn prepare<'a, P: HealthProbe + Send + 'static>(
    run: &'a Run,
    meta: &RunMeta,
    host: &HostConfig,
    make_probe: impl FnOnce() -> P,
) -> Result<HostAgent<'a>, HostError> {
    let config = agent_config(meta, host.host.clone(), host.slot_names())?;
    let (monitor, gate) = match gate_limits(host, meta)? {
        Some((limits, full)) => {
            let (monitor, mut health) =
                health_gate::spawn(make_probe(), host.slots.clone(), limits, full);
            let _ = health.changed().await;
            (Some(monitor), Some(health))
        }
        None => (None, None),
    };
    let runner = ProcessRunner {
        mark: host.owner_mark.clone(),
        out_dir: host.out_dir.clone(),
        cuda: host
            .slots
            .iter()
            .map(|s| s.cuda_visible_devices.clone())
            .collect(),
        gate,
    };
    let (control_tx, control_rx) = watch::channel(run.control().await?);
    let poll = config.heartbeat.max(Duration::from_millis(100));
    let watcher = run.clone();
    // The run's control, polled; SIGINT drains (first) or aborts (second); SIGTERM
    // aborts.
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut interrupts = 0;
        let mut local = Control::Run;
        loop {
            let from_signal = tokio::select! {
                biased;
                r = tokio::signal::ctrl_c() => {
                    interrupts += 1;
                    r.ok().map(|()| if interrupts >= 2 { Control::Abort } else { Control::Drain })
                }
                Some(()) = async {
                    match term.as_mut() {
                        Some(t) => t.recv().await,
                        None => std::future::pending().await,
                    }
                } => Some(Control::Abort),
                () = tokio::time::sleep(poll) => None,
            };
            if let Some(c) = from_signal {
                local = local.max(c);
            }
            let remote = watcher.control().await.unwrap_or(Control::Run);
            let now = local.max(remote);
            // Only a change wakes the slots (a wake-up cancels their pulls).
            control_tx.send_if_modified(|c| {
                let changed = *c != now;
                *c = now;
                changed
            });
        }
    });
    Ok(HostAgent {
        run,
        config,
        runner,
        control: control_rx,
        _monitor: monitor,
    })
}

impl HostAgent<'_> {
    /// The agent's settings (from the run's).
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Runs the agent until the run drains (every running attempt settled) or aborts;
    /// `events` hears everything it does ([`agent::run`]).
    ///
    /// # Errors
    /// [`HostError::Agent`] when the agent refuses its config (nothing is pulled).
    pub async fn run(self, events: &(dyn Fn(&Event) + Sync)) -> Result<AgentSummary, HostError> {
        Ok(agent::run(self.run, &self.runner, &self.config, self.control, events).await?)
    }
}

/// Runs each attempt as `/bin/sh -c COMMAND` in its own process group, marked with
/// `STURDY_OWNER=<agent mark>.<slot>.<task>.<attempt>` (see `process_fence`).
struct ProcessRunner {
    /// The agent's mark, which the fence sweeps when the agent dies.
    mark: Option<String>,
    out_dir: PathBuf,
    /// Each slot's CUDA_VISIBLE_DEVICES.
    cuda: Vec<Option<String>>,
    /// The host's health, when gated (`--health-gate`, `--load`, `--memfree`).
    gate: Option<watch::Receiver<HostHealth>>,
}

/// One running attempt.
struct ProcessRunning {
    child: tokio::process::Child,
    pgid: i32,
    /// The attempt's mark.
    mark: Option<String>,
    out_path: PathBuf,
    err_path: PathBuf,
    /// The readers of the command's stdout and stderr.
    readers: [Reader; 2],
    killed: bool,
}

/// How long the end of an attempt waits for its output pipes to close after its
/// process group was killed: only a process that left the group (`setsid`) can hold
/// them open; past this, what it printed so far is kept and the reader is dropped.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// A reader of one of the command's pipes: running, then done.
enum Reader {
    Running(tokio::task::JoinHandle<()>),
    Done,
}

impl Reader {
    /// Waits (cancel-safe) until the pipe closed, at most `grace`.
    async fn finish(&mut self, grace: Duration) {
        if let Self::Running(handle) = self {
            if tokio::time::timeout(grace, &mut *handle).await.is_err() {
                handle.abort();
            }
            *self = Self::Done;
        }
    }
}

/// Copies `pipe` into `path`, creating the file at the first byte; a file that cannot be
/// created or written loses the rest (the pipe is still drained, so the command never
/// blocks on it).
async fn capture(mut pipe: impl tokio::io::AsyncRead + Unpin, path: PathBuf) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 64 * 1024];
    let mut file: Option<Result<File, ()>> = None;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let f = file.get_or_insert_with(|| File::create(&path).map_err(|_| ()));
        if let Ok(f) = f
            && f.write_all(&buf[..n]).is_err()
        {
            file = Some(Err(()));
        }
    }
}

impl Runner for ProcessRunner {
    type Running = ProcessRunning;

    fn admits(&self, slot_index: usize) -> bool {
        self.gate
            .as_ref()
            .is_none_or(|g| health_gate::admits(&g.borrow(), slot_index))
    }

    async fn start(&self, start: Start<'_>) -> Result<ProcessRunning, String> {
        let command = std::str::from_utf8(start.payload)
            .map_err(|_| "the work message is not UTF-8 text".to_string())?;
        let base = format!("{}.{}", start.task.0, start.attempt);
        let out_path = self.out_dir.join(format!("{base}.out"));
        let err_path = self.out_dir.join(format!("{base}.err"));
        let mark = self.mark.as_ref().map(|m| {
            format!(
                "{m}.{}.{}.{}",
                start.slot_index + 1,
                start.task.0,
                start.attempt
            )
        });
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("STURDY_TASK", start.task.0.to_string())
            .env("STURDY_ATTEMPT", start.attempt.to_string())
            .env("STURDY_SLOT", start.slot)
            .process_group(0)
            .kill_on_drop(true);
        if let Some(mark) = &mark {
            cmd.env(process_fence::OWNER_VAR, mark);
        }
        if let Some(Some(devices)) = self.cuda.get(start.slot_index) {
            cmd.env("CUDA_VISIBLE_DEVICES", devices);
        }
        // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
        let readers = [
            child.stdout.take().map_or(Reader::Done, |p| {
                Reader::Running(tokio::spawn(capture(p, out_path.clone())))
            }),
            child.stderr.take().map_or(Reader::Done, |p| {
                Reader::Running(tokio::spawn(capture(p, err_path.clone())))
            }),
        ];
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or("the shell exited before it could be tracked")?;
        Ok(ProcessRunning {
            child,
            pgid,
            mark,
            out_path,
            err_path,
            readers,
            killed: false,
        })
    }
}

/// The last `n` bytes of a file, as text.
fn tail(path: &Path, n: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(n)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim().to_string()
}

impl Running for ProcessRunning {
    async fn wait(&mut self) -> Exit {
        let status = self.child.wait().await;
        // The shell is gone; anything it left in its group goes too.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
        // Everything printed is in the files once the pipes closed.
        for reader in &mut self.readers {
            reader.finish(PIPE_GRACE).await;
        }
        let outcome = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Outcome::Exited(code),
                (None, Some(signal)) => Outcome::Signaled {
                    signal,
                    oom_kill: false,
                },
                (None, None) => Outcome::SpawnFailed("no exit status".into()),
            },
            Err(e) => Outcome::SpawnFailed(e.to_string()),
        };
        let finish = classify(&outcome);
        let mut detail = if self.err_path.exists() {
            format!("stderr {}", self.err_path.display())
        } else {
            "no stderr".to_string()
        };
        if finish.failure.is_some() {
            let t = tail(&self.err_path, 512);
            if !t.is_empty() {
                detail.push_str(": ");
                detail.push_str(&t);
            }
        }
        if self.killed {
            detail.push_str(" (killed)");
        }
        Exit {
            failure: finish.failure,
            exit: finish.exit,
            signal: finish.signal,
            detail,
        }
    }

    async fn kill(&mut self) {
        self.killed = true;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        // What left the group (setsid, a daemonizing step) carries the attempt's mark.
        if let Some(mark) = self.mark.clone() {
            let _ =
                tokio::task::spawn_blocking(move || process_fence::kill_worker_marked(&mark)).await;
        }
    }

    fn output(&self) -> Vec<OutputFile> {
        [
            (Channel::Stdout, &self.out_path),
            (Channel::Stderr, &self.err_path),
        ]
        .into_iter()
        .filter_map(|(channel, path)| {
            let bytes = std::fs::metadata(path).ok()?.len();
            (bytes > 0).then(|| OutputFile {
                channel,
                path: path.clone(),
                bytes,
            })
        })
        .collect()
    }
}
