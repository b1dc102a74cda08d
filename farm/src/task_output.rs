//! An attempt's output across hosts: the files a host keeps ([`OutputFile`]), shipped
//! through the engine when the attempt's end is final for its task ([`ship`], called by
//! the agent before it writes the `ended` record), and fetched back by the coordinator
//! ([`fetch`]).
//!
//! The engine's side (chunks, headers, limits) is [`crate::engine::output`]; the
//! coordinator's printing is the CLI's.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::engine::output::{CHUNK_BYTES, Channel, OutputChunk, OutputMark, TASK_OUTPUT_CAP};
use crate::engine::{Ended, Engine, TaskId};

/// One stream of an attempt's output kept on its host: `DIR/TASK.ATTEMPT.out` or
/// `.err`. Only a stream that printed something has a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    /// Stdout or stderr.
    pub channel: Channel,
    /// The file.
    pub path: PathBuf,
    /// Its length in bytes when the attempt ended.
    pub bytes: u64,
}

/// Ships `files` (an attempt's non-empty output) through `engine` as chunks of task
/// `task`'s attempt (`attempt`, `epoch`), stdout first, at most [`TASK_OUTPUT_CAP`]
/// bytes in all, and returns the mark for its `ended` record. A failed or refused
/// publish stops the shipping: the mark then has no [`OutputMark::from`] and says why in
/// [`OutputMark::error`] (the files stay on the host either way).
pub async fn ship<E: Engine>(
    engine: &E,
    task: TaskId,
    attempt: u32,
    epoch: u64,
    files: &[OutputFile],
) -> OutputMark {
    let mut mark = OutputMark::default();
    let mut files: Vec<&OutputFile> = files.iter().filter(|f| f.bytes > 0).collect();
    files.sort_by_key(|f| f.channel);
    for f in &files {
        match f.channel {
            Channel::Stdout => mark.stdout = f.bytes,
            Channel::Stderr => mark.stderr = f.bytes,
        }
    }
    if let Some(f) = files.first() {
        mark.path = f.path.with_extension("").display().to_string();
    }
    mark.truncated = mark.stdout.saturating_add(mark.stderr) > TASK_OUTPUT_CAP;
    for f in files {
        let budget = mark.shipped(f.channel);
        if budget == 0 {
            continue;
        }
        let head = OutputChunk {
            task,
            attempt,
            epoch,
            channel: f.channel,
            index: 0,
            last: false,
            data: Bytes::new(),
        };
        match send_file(engine, head, &f.path, budget).await {
            Ok(Some(first)) => {
                mark.from.get_or_insert(first);
            }
            Ok(None) => {
                mark.from = None;
                mark.error = "the engine keeps no output".into();
                return mark;
            }
            Err(e) => {
                mark.from = None;
                mark.error = e;
                return mark;
            }
        }
    }
    mark
}

/// Sends the first `budget` bytes of `path` as `head`'s channel, in chunks of
/// [`CHUNK_BYTES`]: the position of the first chunk, `None` when the engine keeps no
/// output, or why it failed.
async fn send_file<E: Engine>(
    engine: &E,
    mut chunk: OutputChunk,
    path: &Path,
    budget: u64,
) -> Result<Option<u64>, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chunk_bytes = CHUNK_BYTES as u64;
    let chunks = budget.div_ceil(chunk_bytes);
    let mut first = None;
    let mut left = budget;
    for index in 0..chunks {
        let want = usize::try_from(left.min(chunk_bytes)).unwrap_or(CHUNK_BYTES);
        let mut data = vec![0u8; want];
        let got = read_full(&mut file, &mut data)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        data.truncate(got);
        left -= want as u64;
        chunk.index = u32::try_from(index).unwrap_or(u32::MAX);
        // The file cannot be shorter than it was when the attempt ended, unless someone
        // cut it: then what is there ends the channel.
        chunk.last = index + 1 == chunks || got < want;
        chunk.data = Bytes::from(data);
        match engine.put_output(&chunk).await {
            Ok(Some(position)) => {
                first.get_or_insert(position.0);
            }
            Ok(None) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
        if chunk.last {
            break;
        }
    }
    Ok(first)
}

/// Reads until `buf` is full or the file ends: the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What became of a finished task's output at the coordinator ([`fetch`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fetched {
    /// The attempt printed nothing: there is nothing to fetch (no engine message was
    /// spent).
    Quiet,
    /// The output, written to the coordinator's files (`out`, `err`: a stream that
    /// printed nothing has no file). `truncated`: the output passed
    /// [`TASK_OUTPUT_CAP`]; the whole of it stays on `host` at `kept` (`.out`, `.err`).
    Files {
        /// The stdout file.
        out: PathBuf,
        /// The stderr file.
        err: PathBuf,
        /// Whether the output was cut at the cap.
        truncated: bool,
        /// The host that ran the attempt.
        host: String,
        /// Its files there, without the suffix.
        kept: String,
    },
    /// The output could not be had through the engine (never shipped, or the fetch
    /// failed): it stays on `host` at `kept` (`.out`, `.err`), for `why`.
    OnHost {
        /// The host that ran the attempt.
        host: String,
        /// Its files there, without the suffix.
        kept: String,
        /// Why.
        why: String,
    },
}

/// Fetches the output of task `task`'s final attempt `ended` from `engine` into
/// `dir/TASK.ATTEMPT.out` and `.err` (only a stream with bytes gets a file; `dir` must
/// exist). Never fails: what could not be fetched is [`Fetched::OnHost`], with where it
/// stays.
pub async fn fetch<E: Engine>(engine: &E, dir: &Path, task: TaskId, ended: &Ended) -> Fetched {
    let Some(mark) = ended.output.as_deref() else {
        return Fetched::Quiet;
    };
    let on_host = |why: String| Fetched::OnHost {
        host: ended.host.clone(),
        kept: mark.path.clone(),
        why,
    };
    if mark.from.is_none() {
        return on_host(if mark.error.is_empty() {
            "it was not shipped".into()
        } else {
            format!("it was not shipped: {}", mark.error)
        });
    }
    let base = format!("{}.{}", task.0, ended.attempt);
    let out = dir.join(format!("{base}.out"));
    let err = dir.join(format!("{base}.err"));
    // Each file is created at its first byte (a channel with none has no file): an
    // earlier coordinator's copy goes first.
    for path in [&out, &err] {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return on_host(format!("cannot replace {}: {e}", path.display()));
            }
            _ => {}
        }
    }
    let mut files: [Option<File>; 2] = [None, None];
    let mut failed: Option<io::Error> = None;
    let mut sink = |channel: Channel, bytes: &[u8]| {
        if failed.is_some() || bytes.is_empty() {
            return;
        }
        let (slot, path) = match channel {
            Channel::Stdout => (&mut files[0], &out),
            Channel::Stderr => (&mut files[1], &err),
        };
        let written = match slot {
            Some(f) => f.write_all(bytes),
            None => File::create(path).and_then(|mut f| {
                let w = f.write_all(bytes);
                *slot = Some(f);
                w
            }),
        };
        failed = written.err();
    };
    let got = engine
        .get_output(task, ended.attempt, ended.epoch, mark, &mut sink)
        .await;
    drop(files);
    let why = match (got, failed) {
        (Err(e), _) => Some(format!("fetching it failed: {e}")),
        (Ok(()), Some(e)) => Some(format!("cannot write it into {}: {e}", dir.display())),
        (Ok(()), None) => None,
    };
    if let Some(why) = why {
        // What came of it is incomplete: not printed, not kept.
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&err);
        return on_host(why);
    }
    Fetched::Files {
        out,
        err,
        truncated: mark.truncated,
        host: ended.host.clone(),
        kept: mark.path.clone(),
    }
}

/// What the coordinator hands its caller about each finished task, in the order the
/// tasks finished (the journal's order); see [`OutputSink`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskEnd {
    /// The task finished before this coordinator attached (`--resume`): its output is
    /// not fetched (nor printed again, as the local farm's resume does not reprint).
    Earlier(TaskId),
    /// The task finished (done or given up) with `ended`, its final record; `output` is
    /// what became of what that attempt printed.
    Finished {
        /// The task.
        task: TaskId,
        /// Its final record.
        ended: Box<Ended>,
        /// Its output.
        output: Fetched,
    },
}

/// Where a coordinator sends finished tasks' output: fetched into `dir` (the
/// coordinator's `STATE/out`, created if missing), then handed to `hook` (the CLI's
/// printer), one task at a time in finishing order, from a task of the coordinator's
/// runtime.
pub struct OutputSink {
    /// Where fetched output is written (`TASK.ATTEMPT.out`, `.err`).
    pub dir: PathBuf,
    /// Hears each finished task.
    pub hook: Box<dyn FnMut(TaskEnd) + Send>,
}

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputSink")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How many tasks' outputs are fetched at once (handed on in finishing order still).
const FETCH_WINDOW: usize = 8;

/// The coordinator's fetcher: told of each journal line ([`Fetcher::line`]), it fetches
/// the output of every task whose final `ended` record comes after `attached` and hands
/// it on, in order, from a spawned task; [`Fetcher::finish`] waits until all is handed
/// on.
pub(crate) struct Fetcher {
    jobs: tokio::sync::mpsc::UnboundedSender<(TaskId, Option<Box<Ended>>)>,
    worker: tokio::task::JoinHandle<()>,
    attached: u64,
}

impl Fetcher {
    /// Starts fetching from `engine` into `sink`, for records after journal position
    /// `attached` (0: all).
    pub(crate) fn start<E: Engine + Clone + 'static>(
        engine: &E,
        sink: OutputSink,
        attached: u64,
    ) -> Self {
        use futures_util::StreamExt as _;
        let (jobs, rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = engine.clone();
        let OutputSink { dir, mut hook } = sink;
        let worker = tokio::spawn(async move {
            let made = std::fs::create_dir_all(&dir);
            let made = made.as_ref().map_err(ToString::to_string).err();
            let jobs = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|job| (job, rx))
            });
            let ends = jobs
                .map(|(task, ended): (TaskId, Option<Box<Ended>>)| {
                    let (engine, dir, made) = (engine.clone(), dir.clone(), made.clone());
                    async move {
                        let Some(ended) = ended else {
                            return TaskEnd::Earlier(task);
                        };
                        let output = match (&made, ended.output.as_deref()) {
                            (Some(why), Some(mark)) => Fetched::OnHost {
                                host: ended.host.clone(),
                                kept: mark.path.clone(),
                                why: format!("cannot create {}: {why}", dir.display()),
                            },
                            _ => fetch(&engine, &dir, task, &ended).await,
                        };
                        TaskEnd::Finished {
                            task,
                            ended,
                            output,
                        }
                    }
                })
                .buffered(FETCH_WINDOW);
            let mut ends = std::pin::pin!(ends);
            while let Some(end) = ends.next().await {
                hook(end);
            }
        });
        Self {
            jobs,
            worker,
            attached,
        }
    }

    /// One journal line (the projection's, already folded into `view`'s record): a
    /// task's final `ended` line queues its output.
    pub(crate) fn line(&self, line: &str, view: impl FnOnce(TaskId) -> Option<Ended>) {
        let mut cols = line.splitn(4, '\t');
        let (Some(position), Some(task), Some("ended")) = (cols.next(), cols.next(), cols.next())
        else {
            return;
        };
        let (Ok(position), Ok(task)) = (position.parse::<u64>(), task.parse::<u32>()) else {
            return;
        };
        let task = TaskId(task);
        let Some(ended) = view(task) else {
            return;
        };
        let ended = (position > self.attached).then(|| Box::new(ended));
        let _ = self.jobs.send((task, ended));
    }

    /// Waits until every queued task was handed on.
    pub(crate) async fn finish(self) {
        drop(self.jobs);
        let _ = self.worker.await;
    }
}
