//! What a run still has to do: the [`Plan`] worked out from what the state directory
//! holds (the journal, the newest valid checkpoint, the attempts' output files), each
//! checked against the task list before it is believed.
//!
//! - A journal line whose task number is outside `1..=N`, or whose command is not that
//!   task's command in the list, is ignored with a warning naming its line (a wrong but
//!   valid task number must not mark another task done). So is a checkpoint entry
//!   outside `1..=N`. The counts of a run can therefore never exceed its task list.
//! - Attempt numbers are never reused: a task's next attempt is numbered after the
//!   largest attempt of any of its journal lines (stale and interrupted ones included)
//!   and of any `out/T.A.out` or `.err` file (an attempt in flight when the master was
//!   `SIGKILL`ed has output files and no journal line).
//! - A resumed directory whose record is gone (no journal, or one without its header
//!   and lines, no valid checkpoint) while `out/` holds attempts' output is refused:
//!   continuing would run finished tasks again. With the journal gone but a valid
//!   checkpoint, the run continues from the checkpoint after a loud warning.
//! - Every checkpoint covers the whole list ([`RunCheckpoint`] carries the outcomes of
//!   earlier runs). A journal that does not record the end of a task the newest
//!   checkpoint records as finished lost lines: a loud warning names both files, and
//!   the larger record wins. A task whose ending only `out/` shows (an `.err` kept
//!   without its `.out`) and no record holds runs again after a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sturdy_core::FailureKind;
use sturdy_core::manager::TaskState;
use sturdy_tokio::checkpoint_store::CheckpointStore;

use super::FarmError;
use super::journal::{self, TaskHistory};
use super::state_dir::StateDir;
use super::task_list::TaskCommands;
use super::task_set::TaskSet;
use crate::supervisor::read_checkpoint;

/// The master's window of the task list: the most tasks its ledger holds at once
/// (the ledger's `TASKS`; slots of ended tasks take the next ones). A run of more tasks
/// streams them through it.
pub const WINDOW_TASKS: usize = 4096;
/// The largest ledger before the window (`TASKS` of checkpoints written by earlier
/// versions, read back by a resume).
pub const LEGACY_TASKS: usize = 262_144;

/// The checkpoint store's experiment name for a run.
pub const EXPERIMENT: &str = "run";

/// Line-level warnings of one kind shown before the rest are only counted.
const SHOWN: usize = 20;

/// The local farm's payload in each checkpoint: which task list, the task number of each
/// ledger task id of the run that wrote it, and the outcomes of the tasks that finished
/// in earlier runs (not in that run's ledger), carried forward so that every checkpoint
/// covers the whole list: a lost or emptied journal then never reruns a task that
/// finished before the newest checkpoint.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCheckpoint {
    /// The task list's fingerprint.
    pub fingerprint: u64,
    /// The task number of each ledger task id of the run that wrote it.
    pub keys: Vec<u32>,
    /// Tasks that succeeded in earlier runs.
    pub done_before: Vec<u32>,
    /// Tasks that failed for good in earlier runs, with their failure kind's name.
    pub gave_up_before: Vec<(u32, String)>,
}

/// The payload written before outcomes were carried forward (read back only).
#[derive(Deserialize)]
struct RunCheckpointV0 {
    fingerprint: u64,
    keys: Vec<u32>,
}

impl RunCheckpoint {
    /// Decodes a payload of either layout (one without carried outcomes carries none).
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<Self>(bytes).or_else(|_| {
            postcard::from_bytes::<RunCheckpointV0>(bytes).map(|v0| Self {
                fingerprint: v0.fingerprint,
                keys: v0.keys,
                ..Self::default()
            })
        })
    }
}

/// What is left to do, from the journal, the newest valid checkpoint and the output
/// files. It holds no entry per task of the list: the finished tasks are bitmaps, and
/// only the unfinished tasks that earlier runs started have their counts; the tasks to
/// run come from [`Plan::todo`] in task order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `task number -> (attempts made, own failures, worker crashes)` of the tasks to
    /// run that earlier runs started (every other task to run has all three 0).
    /// Attempts made is the largest attempt number seen for the task (journal or
    /// output files), so the next is numbered after it. Own failures and crashes count
    /// its journal's `retry`/`gave_up` lines by kind (`worker_crash` is a crash); both
    /// are 0 for a task that had failed for good and runs again by `--retry-failed`,
    /// which gets a fresh budget.
    pub started: BTreeMap<u32, (u32, u32, u32)>,
    /// Tasks not to run: those that succeeded, and those that failed for good (unless
    /// `--retry-failed`).
    pub skip: TaskSet,
    /// How many tasks [`Plan::todo`] gives.
    pub todo_len: usize,
    /// Tasks that succeeded in earlier runs.
    pub done_before: TaskSet,
    /// Tasks that failed for good in earlier runs (and are not run again), with the
    /// kind of their last failure.
    pub gave_up_before: Vec<(u64, FailureKind)>,
    /// `--resume-failed`: the earlier commands of tasks whose text the new list
    /// changes, as the journal recorded them (to be kept in `amended.tsv`).
    pub retexted: BTreeSet<(u32, String)>,
}

impl Plan {
    /// The tasks to run, in task order: `(task number, attempts made, own failures,
    /// worker crashes)` (see [`Plan::started`]).
    pub fn todo<'a, T: TaskCommands + ?Sized>(
        &'a self,
        tasks: &'a T,
    ) -> impl Iterator<Item = (u32, u32, u32, u32)> + 'a {
        tasks.numbers().filter_map(|t| self.todo_entry(t))
    }

    /// Task `t`'s entry of [`Plan::todo`], `None` when it does not run.
    pub fn todo_entry(&self, t: u32) -> Option<(u32, u32, u32, u32)> {
        if self.skip.contains(t) {
            return None;
        }
        let (made, own, crashes) = self.started.get(&t).copied().unwrap_or_default();
        Some((t, made, own, crashes))
    }
}

/// Reads `amended.tsv`: the earlier commands of each task that `--resume-failed` gave
/// a new text (`TASK<TAB>COMMAND` lines; a torn last line is skipped).
pub fn read_amended(path: &Path) -> BTreeMap<u32, BTreeSet<String>> {
    let mut m: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return m;
    };
    for line in text.split('\n') {
        if let Some((t, c)) = line.split_once('\t')
            && let Ok(t) = t.parse::<u32>()
        {
            m.entry(t).or_default().insert(c.to_owned());
        }
    }
    m
}

/// Appends `retexted` to `amended.tsv` and syncs it.
///
/// # Errors
/// The file cannot be written or synced.
pub fn write_amended(path: &Path, retexted: &BTreeSet<(u32, String)>) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = String::new();
    for (t, c) in retexted {
        text.push_str(&format!("{t}\t{c}\n"));
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What the newest valid checkpoint records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckpointOutcomes {
    /// Its generation; `None` when no checkpoint is valid for this task list.
    pub generation: Option<u64>,
    /// The tasks it records as succeeded.
    pub done: Vec<u32>,
    /// With the failure kind where the checkpoint carries it (`Unknown` otherwise).
    pub gave_up: Vec<(u32, FailureKind)>,
}

/// Collects warnings; line-level ones of a kind past [`SHOWN`] are only counted.
#[derive(Debug, Default)]
struct Warnings {
    shown: Vec<String>,
    more: BTreeMap<&'static str, usize>,
    per_kind: BTreeMap<&'static str, usize>,
}

impl Warnings {
    fn push(&mut self, text: String) {
        self.shown.push(text);
    }

    fn line(&mut self, kind: &'static str, text: impl FnOnce() -> String) {
        let n = self.per_kind.entry(kind).or_insert(0);
        *n += 1;
        if *n <= SHOWN {
            self.shown.push(text());
        } else {
            *self.more.entry(kind).or_insert(0) += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        for (kind, n) in std::mem::take(&mut self.more) {
            self.shown
                .push(format!("{n} more {kind} like these; ignored as well"));
        }
        self.shown
    }
}

/// `text`, cut to 60 characters for a message.
fn short(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// The task numbers a checkpoint records as done and as failed for good (its ledger's
/// tasks and those it carries from earlier runs), entries outside `1..=tasks` left out
/// with a warning. `Err` when the checkpoint is of another task list.
#[allow(clippy::type_complexity)]
fn outcomes_of(
    generation: u64,
    payload: &[u8],
    states: &[TaskState],
    tasks: usize,
    fingerprint: u64,
    warnings: &mut Warnings,
) -> Result<(Vec<u32>, Vec<(u32, FailureKind)>), String> {
    let payload = RunCheckpoint::decode(payload)
        .map_err(|e| format!("checkpoint {generation}: unreadable payload ({e})"))?;
    if payload.fingerprint != fingerprint {
        return Err(format!(
            "checkpoint {generation} is of a different task list (fingerprint {:016x})",
            payload.fingerprint
        ));
    }
    let (mut done, mut gave_up) = (Vec::new(), Vec::new());
    for (state, &key) in states.iter().zip(&payload.keys) {
        if key == 0 || key as usize > tasks {
            warnings.line("checkpoint entries", || {
                format!("checkpoint {generation}: task {key} is outside 1..={tasks}; ignored")
            });
            continue;
        }
        match state {
            TaskState::Succeeded => done.push(key),
            TaskState::Failed => gave_up.push((key, FailureKind::Unknown)),
            _ => {}
        }
    }
    let inside = |key: u32, warnings: &mut Warnings| {
        let ok = key != 0 && key as usize <= tasks;
        if !ok {
            warnings.line("checkpoint entries", || {
                format!("checkpoint {generation}: task {key} is outside 1..={tasks}; ignored")
            });
        }
        ok
    };
    for &key in &payload.done_before {
        if inside(key, warnings) {
            done.push(key);
        }
    }
    for (key, kind) in &payload.gave_up_before {
        if inside(*key, warnings) {
            let kind = FailureKind::from_name(kind).unwrap_or(FailureKind::Unknown);
            gave_up.push((*key, kind));
        }
    }
    done.sort_unstable();
    done.dedup();
    Ok((done, gave_up))
}

/// Reads the newest valid checkpoint of this task list (skipping, with a warning, any
/// newer one that does not decode or is of another list).
fn checkpoint_outcomes<T: TaskCommands + ?Sized>(
    store: &CheckpointStore,
    tasks: &T,
    old_fingerprint: Option<u64>,
    warnings: &mut Warnings,
) -> CheckpointOutcomes {
    for generation in store.list(EXPERIMENT).unwrap_or_default().into_iter().rev() {
        let read = store
            .load(EXPERIMENT, generation)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                read_checkpoint::<1024>(&bytes)
                    .or_else(|_| read_checkpoint::<WINDOW_TASKS>(&bytes))
                    .or_else(|_| read_checkpoint::<16_384>(&bytes))
                    .or_else(|_| read_checkpoint::<LEGACY_TASKS>(&bytes))
                    .map_err(|e| e.to_string())
            });
        let saved = match read {
            Ok(saved) => saved,
            Err(e) => {
                warnings.push(format!("skipping checkpoint {generation}: {e}"));
                continue;
            }
        };
        let fingerprint = match (old_fingerprint, RunCheckpoint::decode(&saved.payload)) {
            (Some(old), Ok(p)) if p.fingerprint == old => old,
            _ => tasks.fingerprint(),
        };
        match outcomes_of(
            saved.generation,
            &saved.payload,
            &saved.states,
            tasks.max_number() as usize,
            fingerprint,
            warnings,
        ) {
            Ok((done, gave_up)) => {
                return CheckpointOutcomes {
                    generation: Some(saved.generation),
                    done,
                    gave_up,
                };
            }
            Err(e) => warnings.push(format!("skipping {e}")),
        }
    }
    CheckpointOutcomes::default()
}

/// The output files in `out/` of the tasks in `1..=tasks`, as listed: most are the
/// marks `T.1.err` of tasks that ended at their first attempt (one bit each), the rest
/// `(task, attempt, is .err)`.
#[derive(Debug, Default)]
pub struct OutListing {
    first_err: TaskSet,
    other: Vec<(u32, u32, bool)>,
}

/// Lists `out` in one pass over the directory (see [`OutListing`]); names that are no
/// attempt's output file, or of a task outside `1..=tasks`, are left out.
pub fn list_outputs(out: &Path, tasks: usize) -> OutListing {
    let mut listing = OutListing::default();
    let Ok(entries) = std::fs::read_dir(out) else {
        return listing;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let (stem, is_err) = match (name.strip_suffix(".out"), name.strip_suffix(".err")) {
            (Some(stem), _) => (stem, false),
            (_, Some(stem)) => (stem, true),
            _ => continue,
        };
        let Some((t, a)) = stem.split_once('.') else {
            continue;
        };
        let (Ok(t), Ok(a)) = (t.parse::<u32>(), a.parse::<u32>()) else {
            continue;
        };
        if t == 0 || t as usize > tasks {
            continue;
        }
        if a == 1 && is_err {
            listing.first_err.insert(t);
        } else {
            listing.other.push((t, a, is_err));
        }
    }
    listing
}

/// What `out` holds (a [`list_outputs`] listing) of the tasks not in `skip`: the largest attempt number of each task among its output files
/// `T.A.out` and `T.A.err`, and the largest attempt number among the marks
/// `sturdy run` leaves of a task that ended (an `T.A.err` whose `T.A.out` is gone:
/// trimmed once the task's outcome was journaled; an attempt in flight has its `.out`).
fn outputs_of(listing: OutListing, skip: &TaskSet) -> (BTreeMap<u32, u32>, BTreeMap<u32, u32>) {
    let mut max = BTreeMap::new();
    let mut errs = BTreeSet::new();
    let mut outs = BTreeSet::new();
    let first = listing.first_err.iter().map(|t| (t, 1, true));
    for (t, a, is_err) in first.chain(listing.other) {
        if skip.contains(t) {
            continue;
        }
        let m = max.entry(t).or_insert(0);
        *m = (*m).max(a);
        if is_err {
            errs.insert((t, a));
        } else {
            outs.insert((t, a));
        }
    }
    let mut marks = BTreeMap::new();
    for (t, a) in errs.difference(&outs) {
        let m = marks.entry(*t).or_insert(0);
        *m = (*m).max(*a);
    }
    (max, marks)
}

/// `tasks`, listed for a message (the first 10, then a count).
fn listed(tasks: &[u32]) -> String {
    let mut s: Vec<String> = tasks.iter().take(10).map(ToString::to_string).collect();
    if tasks.len() > 10 {
        s.push(format!("and {} more", tasks.len() - 10));
    }
    s.join(", ")
}

/// The journal read back a chunk of whole lines at a time (about 1 MiB), so that
/// reading it costs no memory in proportion to its length.
struct JournalChunks {
    file: std::fs::File,
    /// Bytes read past the last whole line.
    rest: Vec<u8>,
    /// Lines in the chunks given so far.
    lines: usize,
    eof: bool,
}

impl JournalChunks {
    /// `None` when there is no journal.
    fn open(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::File::open(path) {
            Ok(file) => Ok(Some(Self {
                file,
                rest: Vec::new(),
                lines: 0,
                eof: false,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next chunk of whole lines (the last chunk: what remains) and the number of
    /// lines before it; `None` at the end.
    fn next_chunk(&mut self) -> std::io::Result<Option<(journal::JournalText, usize)>> {
        use std::io::Read;
        const CHUNK: usize = 1 << 20;
        let mut buf = std::mem::take(&mut self.rest);
        // Until the chunk holds a line feed past its first MiB, or the file ends.
        while !self.eof {
            let at = buf.len();
            buf.resize(at + CHUNK, 0);
            let n = loop {
                match self.file.read(&mut buf[at..]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r?,
                }
            };
            buf.truncate(at + n);
            self.eof = n == 0;
            if buf[at..].contains(&b'\n') && buf.len() >= CHUNK {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        if !self.eof
            && let Some(cut) = buf.iter().rposition(|&b| b == b'\n')
        {
            self.rest = buf.split_off(cut + 1);
        }
        let before = self.lines;
        self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        Ok(Some((journal::JournalText::new(&buf), before)))
    }
}

/// Works out what is left to do, printing the warnings on stderr.
///
/// # Errors
/// (exit code 2) a resumed directory whose record is gone while attempts' outputs
/// remain; (exit code 1) the journal exists but cannot be read.
///
/// `retext` is `--resume-failed`'s: the fingerprint of the list the directory was made
/// for. A journal line whose command is not its task's in `tasks` then still counts
/// (by task number: the user says this is that list with some commands fixed), and its
/// command goes into [`Plan::retexted`]; a checkpoint of either list is read. Without
/// it, a line carrying an earlier command of its task recorded in `amended.tsv` counts
/// too.
pub fn plan<T: TaskCommands + ?Sized>(
    tasks: &T,
    state: &StateDir,
    store: &CheckpointStore,
    retry_failed: bool,
    retext: Option<u64>,
) -> Result<Plan, FarmError> {
    let (plan, warnings) = plan_quietly(tasks, state, store, retry_failed, retext)?;
    for w in warnings {
        eprintln!("sturdy: warning: {w}");
    }
    Ok(plan)
}

/// [`plan`], returning the warnings instead of printing them.
fn plan_quietly<T: TaskCommands + ?Sized>(
    tasks: &T,
    state: &StateDir,
    store: &CheckpointStore,
    retry_failed: bool,
    retext: Option<u64>,
) -> Result<(Plan, Vec<String>), FarmError> {
    let n = tasks.max_number() as usize;
    // `out/` is listed (a directory of up to one file per task) while the journal is
    // read and checked.
    let listing = {
        let out = state.root().join("out");
        std::thread::spawn(move || list_outputs(&out, n))
    };
    let earlier = read_amended(&state.amended());
    let mut retexted = BTreeSet::new();
    let mut warnings = Warnings::default();
    let journal_path = state.journal();
    let read_error = |e: std::io::Error| {
        FarmError::runtime(format!(
            "cannot read the journal {}: {e}",
            journal_path.display()
        ))
    };
    let mut chunks = JournalChunks::open(&journal_path).map_err(read_error)?;
    let exists = chunks.is_some();
    let mut header = false;
    // Tasks with a `done` line; the history of the others (only unfinished and
    // failed tasks take an entry).
    let mut journal_done = TaskSet::default();
    let mut hist: BTreeMap<u32, TaskHistory> = BTreeMap::new();
    let mut torn = Vec::new();
    let mut accepted = 0usize;
    while let Some(chunks) = &mut chunks
        && let Some((text, before)) = chunks.next_chunk().map_err(read_error)?
    {
        if before == 0 {
            header = text.has_header();
        }
        for entry in text.entries() {
            let e = match entry {
                Ok(mut e) => {
                    e.line += before;
                    e
                }
                Err(line) => {
                    torn.push(line + before);
                    continue;
                }
            };
            if e.task == 0 || e.task as usize > n {
                warnings.line("journal lines outside the task list", || {
                    format!(
                        "journal.tsv line {}: task {} is outside 1..={n}; ignored",
                        e.line, e.task
                    )
                });
                continue;
            }
            let Some(same) = tasks.command_is(e.task, e.command) else {
                warnings.line("journal lines outside the task list", || {
                    format!(
                        "journal.tsv line {}: task {} is not a task of the list (its line is blank or a comment); ignored",
                        e.line, e.task
                    )
                });
                continue;
            };
            let amended = !same && earlier.get(&e.task).is_some_and(|c| c.contains(e.command));
            if !same && !amended && retext.is_some() {
                retexted.insert((e.task, e.command.to_owned()));
            } else if !same && !amended {
                warnings.line("journal lines with another command", || {
                    let want = tasks.command(e.task).unwrap_or_default();
                    format!(
                        "journal.tsv line {}: the command {:?} is not task {}'s ({:?}); ignored",
                        e.line,
                        short(e.command),
                        e.task,
                        short(&want)
                    )
                });
                continue;
            }
            accepted += 1;
            if journal_done.contains(e.task) {
                continue;
            }
            if e.next == journal::Next::Done {
                journal_done.insert(e.task);
                hist.remove(&e.task);
            } else {
                hist.entry(e.task).or_default().record(&e);
            }
        }
    }
    if !torn.is_empty() {
        let lines: Vec<String> = torn.iter().take(SHOWN).map(ToString::to_string).collect();
        warnings.push(format!(
            "skipped {} unreadable journal line(s) (torn write): line {}{}",
            torn.len(),
            lines.join(", "),
            if torn.len() > SHOWN { ", ..." } else { "" }
        ));
    }
    // The journal is the record of every attempt; the checkpoint (synced with the
    // journal) backs it up should journal lines be lost.
    let ck = checkpoint_outcomes(store, tasks, retext, &mut warnings);
    let journal_usable = header || accepted > 0;
    let is_task = |t: u32| tasks.index_of(t).is_some();
    let journal_gave_up = |t: &u32| hist.get(t).is_some_and(|h| h.gave_up);

    // The journal lost lines the newest checkpoint holds (emptied, truncated, replaced):
    // the larger record wins, loudly.
    if journal_usable && let Some(g) = ck.generation {
        let lost: Vec<u32> = ck
            .done
            .iter()
            .chain(ck.gave_up.iter().map(|(t, _)| t))
            .copied()
            .filter(|t| !journal_done.contains(*t) && !journal_gave_up(t))
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        if !lost.is_empty() {
            warnings.push(format!(
                "THE JOURNAL LOST LINES: {} does not record the end of {} task(s) that checkpoint {g} ({}) records as finished (tasks {}): it was truncated or replaced. Going by the checkpoint: they are not run again",
                journal_path.display(),
                lost.len(),
                state
                    .checkpoints()
                    .join(EXPERIMENT)
                    .join(format!("{g:020}.ckpt"))
                    .display(),
                listed(&lost)
            ));
        }
    }
    let ck_kinds: BTreeMap<u32, FailureKind> = ck.gave_up.iter().copied().collect();
    let mut done = journal_done;
    for &t in &ck.done {
        done.insert(t);
    }
    let mut gave_up: BTreeSet<u32> = ck.gave_up.iter().map(|&(t, _)| t).collect();
    gave_up.extend(hist.iter().filter(|(_, h)| h.gave_up).map(|(&t, _)| t));
    gave_up.retain(|&t| !done.contains(t) && is_task(t));
    // Numbers of no task (a checkpoint's entry for a comment line) do not count.
    let stray: Vec<u32> = done.iter().filter(|&t| !is_task(t)).collect();
    for t in stray {
        done.remove(t);
    }
    let mut skip = done.clone();
    let mut gave_up_before = Vec::new();
    if !retry_failed {
        for &t in &gave_up {
            skip.insert(t);
            let kind = hist
                .get(&t)
                .and_then(|h| h.gave_up_kind)
                .or_else(|| ck_kinds.get(&t).copied())
                .unwrap_or(FailureKind::Unknown);
            gave_up_before.push((u64::from(t), kind));
        }
    }
    let out = state.root().join("out");
    let listing = listing.join().unwrap_or_default();
    let (outputs, marks) = outputs_of(listing, &skip);

    if state.resumed && !journal_usable {
        let what = if !exists {
            format!("{} is missing", journal_path.display())
        } else {
            format!(
                "{} holds no header and no line of this task list",
                journal_path.display()
            )
        };
        match ck.generation {
            Some(g) => warnings.push(format!(
                "THE JOURNAL IS GONE: {what}; continuing from checkpoint {g} ({} done, {} failed for good): tasks that finished after it was written will run again",
                ck.done.len(),
                ck.gave_up.len()
            )),
            None if !outputs.is_empty() => {
                return Err(FarmError::input(format!(
                    "--resume: the record of the run in {} is gone: {what}, and no valid checkpoint is in {}, while {} holds the output of attempts of {} task(s); resuming would run finished tasks again. Restore journal.tsv, or start over in a new --state-dir",
                    state.root().display(),
                    state.checkpoints().display(),
                    out.display(),
                    outputs.len()
                )));
            }
            None => {}
        }
    }

    // Attempt numbers continue across runs (a retried failed task gets a fresh
    // --max-attempts budget, numbered after its earlier attempts).
    let mut started: BTreeMap<u32, (u32, u32, u32)> = BTreeMap::new();
    for (&t, h) in &hist {
        if skip.contains(t) {
            continue;
        }
        let (own, crashes) = if gave_up.contains(&t) {
            (0, 0)
        } else {
            (h.own_failures, h.crashes)
        };
        started.insert(t, (h.max_attempt, own, crashes));
    }
    for (&t, &a) in &outputs {
        if is_task(t) {
            let e = started.entry(t).or_insert((0, 0, 0));
            e.0 = e.0.max(a);
        }
    }
    started.retain(|_, e| *e != (0, 0, 0));
    let unrecorded: Vec<u32> = marks
        .iter()
        .filter(|&(&t, &a)| is_task(t) && a > hist.get(&t).map_or(0, |h| h.max_attempt))
        .map(|(&t, _)| t)
        .collect();
    if !unrecorded.is_empty() {
        warnings.push(format!(
            "{} holds the trace of {} task(s) that ended (the kept stderr of their last attempt) while neither {} nor a checkpoint records how (tasks {}): the journal lost lines. They run again; if they had succeeded, their effects happen twice",
            out.display(),
            unrecorded.len(),
            journal_path.display(),
            listed(&unrecorded)
        ));
    }
    let todo_len = tasks.len() - skip.len();
    Ok((
        Plan {
            started,
            skip,
            todo_len,
            done_before: done,
            gave_up_before,
            retexted,
        },
        warnings.finish(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use sturdy_tokio::checkpoint_store::StoreConfig;

    /// Commands `1..=N`, one per line (no blank or comment lines).
    struct TaskList {
        commands: Vec<String>,
    }

    impl TaskList {
        fn parse(text: &str, _source: &str) -> Option<Self> {
            Some(Self {
                commands: text.lines().map(str::to_owned).collect(),
            })
        }
    }

    impl TaskCommands for TaskList {
        fn fingerprint(&self) -> u64 {
            0x5eed_0000 + self.commands.len() as u64
        }
        fn len(&self) -> usize {
            self.commands.len()
        }
        fn max_number(&self) -> u32 {
            self.commands.len() as u32
        }
        fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
            1..=self.max_number()
        }
        fn number_at(&self, i: usize) -> Option<u32> {
            (i < self.commands.len()).then(|| i as u32 + 1)
        }
        fn index_of(&self, n: u32) -> Option<usize> {
            (n >= 1 && n <= self.max_number()).then(|| n as usize - 1)
        }
        fn command(&self, n: u32) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(&self.commands[self.index_of(n)?]))
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        tasks: TaskList,
        state: StateDir,
        store: CheckpointStore,
    }

    /// A resumed state directory of `n` tasks `echo T`, holding `journal` lines (after
    /// the header, when `header`) and output files `outs`.
    fn fixture(n: u32, header: bool, journal: &[&str], outs: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<String> = (1..=n).map(|t| format!("echo {t}")).collect();
        let tasks = TaskList::parse(&text.join("\n"), "t").unwrap();
        let root = dir.path().join("state");
        StateDir::open(&root, tasks.fingerprint(), tasks.len(), "t", false).unwrap();
        let state = StateDir::open(&root, tasks.fingerprint(), tasks.len(), "t", true).unwrap();
        let mut j = String::new();
        if header {
            j.push_str(&format!("{}\n{}\n", journal::MAGIC, journal::HEADER));
        }
        for l in journal {
            j.push_str(l);
            j.push('\n');
        }
        if header || !journal.is_empty() {
            std::fs::write(state.journal(), j).unwrap();
        }
        for o in outs {
            std::fs::write(root.join("out").join(o), "").unwrap();
        }
        let store =
            CheckpointStore::open(state.checkpoints(), StoreConfig::new(5, 1).unwrap()).unwrap();
        Fixture {
            _dir: dir,
            tasks,
            state,
            store,
        }
    }

    fn line(task: u32, attempt: u32, kind: &str, next: &str, command: &str) -> String {
        format!("{task}\t{attempt}\t1\t1\t0.000\t0.000\t0.000\t-\t-\t{kind}\t{next}\t{command}")
    }

    fn run(f: &Fixture, retry_failed: bool) -> Result<(Plan, Vec<String>), FarmError> {
        plan_quietly(&f.tasks, &f.state, &f.store, retry_failed, None)
    }

    #[test]
    fn lines_outside_the_list_or_of_another_command_are_ignored_by_line() {
        let lines = [
            line(1, 1, "-", "done", "echo 1"),
            line(4, 1, "-", "done", "echo 4"),
            // Task 2's number, task 3's command: must not mark task 2 done.
            line(2, 1, "-", "done", "echo 3"),
            line(0, 1, "-", "done", "echo 0"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = fixture(3, true, &refs, &[]);
        let (plan, warnings) = run(&f, false).unwrap();
        assert_eq!(
            warnings,
            vec![
                "journal.tsv line 4: task 4 is outside 1..=3; ignored".to_owned(),
                "journal.tsv line 5: the command \"echo 3\" is not task 2's (\"echo 2\"); ignored"
                    .to_owned(),
                "journal.tsv line 6: task 0 is outside 1..=3; ignored".to_owned(),
            ]
        );
        assert_eq!(plan.done_before.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            plan.todo(&f.tasks).collect::<Vec<_>>(),
            vec![(2, 0, 0, 0), (3, 0, 0, 0)]
        );
    }

    #[test]
    fn the_done_count_never_exceeds_the_list() {
        let lines: Vec<String> = (1..=40)
            .map(|t| line(t, 1, "-", "done", &format!("echo {t}")))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = fixture(30, true, &refs, &[]);
        let (plan, warnings) = run(&f, false).unwrap();
        assert_eq!(plan.done_before.len(), 30);
        assert_eq!(plan.done_before.iter().last(), Some(30));
        assert_eq!(plan.todo(&f.tasks).count(), 0);
        assert_eq!(plan.todo_len, 0);
        assert_eq!(warnings.len(), 10);
        assert_eq!(
            warnings[9],
            "journal.tsv line 42: task 40 is outside 1..=30; ignored"
        );
    }

    #[test]
    fn many_bad_lines_are_summarised_after_twenty() {
        let lines: Vec<String> = (1..=25)
            .map(|t| line(1000 + t, 1, "-", "done", "x"))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = fixture(3, true, &refs, &[]);
        let (_, warnings) = run(&f, false).unwrap();
        assert_eq!(warnings.len(), 21);
        assert_eq!(
            warnings[20],
            "5 more journal lines outside the task list like these; ignored as well"
        );
    }

    #[test]
    fn attempts_are_numbered_after_every_line_and_output_file() {
        let lines = [
            line(1, 1, "worker_crash", "retry", "echo 1"),
            line(1, 2, "evaluation", "retry", "echo 1"),
            line(1, 7, "worker_crash", "stale", "echo 1"),
            line(2, 1, "task_timeout", "retry", "echo 2"),
            line(2, 2, "unknown", "interrupted", "echo 2"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        // Task 2's attempt 3 and task 3's attempt 1 were in flight at a SIGKILL;
        // 9.1.out is of no task of the list, notes.txt of no attempt. (A worker
        // creates `.out`, then `.err`: an `.err` alone is what an ended task leaves.)
        let outs = [
            "2.3.out",
            "2.3.err",
            "3.1.out",
            "3.1.err",
            "9.1.out",
            "notes.txt",
        ];
        let f = fixture(3, true, &refs, &outs);
        let (plan, warnings) = run(&f, false).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(
            plan.todo(&f.tasks).collect::<Vec<_>>(),
            vec![(1, 7, 1, 1), (2, 3, 1, 0), (3, 1, 0, 0)]
        );
    }

    #[test]
    fn failed_tasks_keep_their_kind_and_a_retried_one_gets_a_fresh_budget() {
        let lines = [
            line(1, 1, "evaluation", "retry", "echo 1"),
            line(1, 2, "out_of_memory", "gave_up", "echo 1"),
            line(2, 1, "worker_crash", "retry", "echo 2"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = fixture(2, true, &refs, &[]);
        let (plan, _) = run(&f, false).unwrap();
        assert_eq!(plan.gave_up_before, vec![(1, FailureKind::OutOfMemory)]);
        assert_eq!(plan.todo(&f.tasks).collect::<Vec<_>>(), vec![(2, 1, 0, 1)]);
        let (plan, _) = run(&f, true).unwrap();
        assert!(plan.gave_up_before.is_empty());
        assert_eq!(
            plan.todo(&f.tasks).collect::<Vec<_>>(),
            vec![(1, 2, 0, 0), (2, 1, 0, 1)]
        );
    }

    #[test]
    fn a_run_whose_record_is_gone_is_refused_when_outputs_remain() {
        for header in [false, true] {
            // No journal at all (header false, no lines), or only the header.
            let f = fixture(3, header, &[], &["1.1.out", "2.1.err"]);
            let got = run(&f, false);
            if header {
                // The header alone is a record: nothing finished yet.
                assert_eq!(
                    got.unwrap().0.todo(&f.tasks).collect::<Vec<_>>(),
                    vec![(1, 1, 0, 0), (2, 1, 0, 0), (3, 0, 0, 0)]
                );
                continue;
            }
            let e = got.unwrap_err();
            assert_eq!(e.kind(), super::super::ErrorKind::Input);
            let msg = e.to_string();
            let root = f.state.root().display().to_string();
            assert!(
                msg.starts_with(&format!(
                    "--resume: the record of the run in {root} is gone: {root}/journal.tsv is missing"
                )),
                "{msg}"
            );
            assert!(msg.contains("attempts of 2 task(s)"), "{msg}");
            assert!(msg.contains("would run finished tasks again"), "{msg}");
            assert!(msg.contains("Restore journal.tsv, or start over in a new --state-dir"));
            assert!(!f.state.journal().exists(), "nothing was written");
        }
        // A journal truncated to nothing is no record either.
        let f = fixture(3, false, &[], &["1.1.out"]);
        std::fs::write(f.state.journal(), "").unwrap();
        let msg = run(&f, false).unwrap_err().to_string();
        assert!(
            msg.contains("journal.tsv holds no header and no line"),
            "{msg}"
        );
        // Without outputs nothing had started: nothing to lose.
        let f = fixture(3, false, &[], &[]);
        assert_eq!(run(&f, false).unwrap().0.todo_len, 3);
        // A journal that lost its header but holds lines of this list is a record.
        let l = line(1, 1, "-", "done", "echo 1");
        let f = fixture(3, false, &[l.as_str()], &["1.1.out"]);
        assert_eq!(
            run(&f, false)
                .unwrap()
                .0
                .done_before
                .iter()
                .collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn checkpoint_entries_outside_the_list_are_ignored() {
        let payload = postcard::to_allocvec(&RunCheckpoint {
            fingerprint: 0xf00d,
            keys: vec![1, 301, 2, 0, 3],
            ..RunCheckpoint::default()
        })
        .unwrap();
        let states = [
            TaskState::Succeeded,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Succeeded,
            TaskState::Pending,
        ];
        let mut w = Warnings::default();
        let got = outcomes_of(12, &payload, &states, 300, 0xf00d, &mut w);
        assert_eq!(got, Ok((vec![1], vec![(2, FailureKind::Unknown)])));
        assert_eq!(
            w.finish(),
            vec![
                "checkpoint 12: task 301 is outside 1..=300; ignored".to_owned(),
                "checkpoint 12: task 0 is outside 1..=300; ignored".to_owned(),
            ]
        );
        let mut w = Warnings::default();
        assert_eq!(
            outcomes_of(12, &payload, &states, 300, 0xbeef, &mut w),
            Err("checkpoint 12 is of a different task list (fingerprint 000000000000f00d)".into())
        );
    }

    #[test]
    fn payloads_of_both_layouts_decode_and_carried_outcomes_count() {
        #[derive(Serialize)]
        struct V0 {
            fingerprint: u64,
            keys: Vec<u32>,
        }
        let old = postcard::to_allocvec(&V0 {
            fingerprint: 7,
            keys: vec![3, 4],
        })
        .unwrap();
        assert_eq!(
            RunCheckpoint::decode(&old).unwrap(),
            RunCheckpoint {
                fingerprint: 7,
                keys: vec![3, 4],
                ..RunCheckpoint::default()
            }
        );
        let new = RunCheckpoint {
            fingerprint: 7,
            keys: vec![3],
            done_before: vec![1, 9],
            gave_up_before: vec![(2, "out_of_memory".into())],
        };
        let bytes = postcard::to_allocvec(&new).unwrap();
        assert_eq!(RunCheckpoint::decode(&bytes).unwrap(), new);
        let mut w = Warnings::default();
        let got = outcomes_of(5, &bytes, &[TaskState::Succeeded], 4, 7, &mut w);
        assert_eq!(got, Ok((vec![1, 3], vec![(2, FailureKind::OutOfMemory)])));
        assert_eq!(
            w.finish(),
            vec!["checkpoint 5: task 9 is outside 1..=4; ignored".to_owned()]
        );
    }

    #[test]
    fn a_journal_past_one_chunk_is_read_whole_with_its_line_numbers() {
        // 30 000 lines of ~60 bytes: two chunks of 1 MiB; a torn line past the first.
        let n = 30_000;
        let mut lines: Vec<String> = (1..=n)
            .map(|t| line(t, 1, "-", "done", &format!("echo {t}")))
            .collect();
        lines[25_000] = "torn".to_owned();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let f = fixture(n, true, &refs, &[]);
        assert!(std::fs::metadata(f.state.journal()).unwrap().len() > 1 << 20);
        let (plan, warnings) = run(&f, false).unwrap();
        // The header is two lines: attempt line i is file line i + 2.
        assert_eq!(
            warnings,
            vec!["skipped 1 unreadable journal line(s) (torn write): line 25003".to_owned()]
        );
        assert_eq!(plan.done_before.len(), n as usize - 1);
        assert_eq!(
            plan.todo(&f.tasks).collect::<Vec<_>>(),
            vec![(25_001, 0, 0, 0)]
        );
    }

    #[test]
    fn long_commands_are_cut_in_messages() {
        assert_eq!(short("abc"), "abc");
        let long = "é".repeat(70);
        assert_eq!(short(&long), format!("{}...", "é".repeat(60)));
    }
}
