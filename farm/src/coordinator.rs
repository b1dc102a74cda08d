//! The coordinator's logic: enqueue a run's tasks and project its journal.
//!
//! The coordinator (`sturdy run TASKS --engine URL --run NAME`) is not in the hot path:
//! host agents pull, run and record without it. It enqueues the work messages
//! ([`enqueue`]), then follows the run's journal ([`Engine::follow`]) and folds every
//! record into a [`Projection`]: each task's newest record, the counts, the journal lines
//! (with a host column) and the summary. The journal in the engine is the source of
//! truth: a coordinator that died re-attaches (`--resume`), replays the journal from the
//! start and goes on; hosts kept working meanwhile.
//!
//! Generic over [`Engine`], deterministic (ordered maps only, `biased` selects, time only
//! through `tokio::time`), so a simulation drives it unchanged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::engine::{
    Engine, Enqueued, Entry, Error, Generation, Outcome, Position, Record, Revision, TaskId,
};

/// The task list's fingerprint, as [`RunMeta::fingerprint`](crate::engine::RunMeta):
/// FNV-1a (64 bit) over every (task number, payload), in hex. The same list gives the
/// same fingerprint on every host and every version.
pub fn fingerprint<'a>(tasks: impl IntoIterator<Item = (TaskId, &'a [u8])>) -> String {
    let mut hash = Fnv::default();
    for (task, payload) in tasks {
        hash.task(task, payload);
    }
    hash.hex()
}

/// [`fingerprint`] of a [`TaskSource`], reading its texts back one at a time.
///
/// # Errors
/// The first task whose text cannot be read back (see [`TaskSource::text`]).
pub fn fingerprint_of<T: TaskSource + ?Sized>(tasks: &T) -> Result<String, Error> {
    let mut hash = Fnv::default();
    for i in 0..tasks.len() {
        let (task, text) = read_at(tasks, i)?;
        hash.task(task, &text);
    }
    Ok(hash.hex())
}

/// FNV-1a, 64 bit.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn eat(&mut self, bytes: &[u8]) {
        const PRIME: u64 = 0x0100_0000_01b3;
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    fn task(&mut self, task: TaskId, payload: &[u8]) {
        self.eat(&task.0.to_le_bytes());
        self.eat(
            &u64::try_from(payload.len())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        self.eat(payload);
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// A run's task list as the coordinator reads it: as it goes, by position and by task
/// number, so that it need not hold the texts (the CLI reads them back from the list
/// file by line number; a `Vec` or slice of `(number, text)` serves tests and the
/// simulation).
pub trait TaskSource: Send + Sync {
    /// How many tasks.
    fn len(&self) -> usize;

    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th task's number (from 0, in list order), if there are more than `i`.
    fn number_at(&self, i: usize) -> Option<TaskId>;

    /// Task `task`'s text; `None` when `task` is not in the list, or its text cannot be
    /// read back as it was first read (a list file changed in place under the run).
    fn text(&self, task: TaskId) -> Option<Vec<u8>>;
}

impl TaskSource for [(TaskId, Vec<u8>)] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn number_at(&self, i: usize) -> Option<TaskId> {
        self.get(i).map(|(t, _)| *t)
    }

    fn text(&self, task: TaskId) -> Option<Vec<u8>> {
        // Sorted by number (a task list is), else a scan.
        match self.binary_search_by_key(&task, |(t, _)| *t) {
            Ok(i) => Some(self[i].1.clone()),
            Err(_) => self
                .iter()
                .find(|(t, _)| *t == task)
                .map(|(_, c)| c.clone()),
        }
    }
}

impl TaskSource for Vec<(TaskId, Vec<u8>)> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn number_at(&self, i: usize) -> Option<TaskId> {
        self.as_slice().number_at(i)
    }

    fn text(&self, task: TaskId) -> Option<Vec<u8>> {
        self.as_slice().text(task)
    }
}

/// The `i`-th task of `tasks` with its text.
///
/// # Errors
/// [`Error::Engine`] (op `read the task list`) when its text cannot be read back.
pub fn read_at<T: TaskSource + ?Sized>(tasks: &T, i: usize) -> Result<(TaskId, Vec<u8>), Error> {
    let task = tasks
        .number_at(i)
        .ok_or_else(|| unreadable(format!("task #{i}")))?;
    Ok((task, text_of(tasks, task)?))
}

/// Task `task`'s text.
///
/// # Errors
/// [`Error::Engine`] (op `read the task list`) when it cannot be read back.
pub fn text_of<T: TaskSource + ?Sized>(tasks: &T, task: TaskId) -> Result<Vec<u8>, Error> {
    tasks
        .text(task)
        .ok_or_else(|| unreadable(format!("task {}", task.0)))
}

fn unreadable(subject: String) -> Error {
    Error::Engine {
        run: String::new(),
        op: "read the task list",
        subject,
        reason: "the task list was changed in place while it was read (or the task is not in it)"
            .into(),
    }
}

/// What [`enqueue`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnqueueSummary {
    /// Work messages stored.
    pub queued: u64,
    /// Already stored: the same task and generation inside the engine's duplicate
    /// window, or (re-attaching) a task with no record whose work message the engine
    /// still holds ([`Engine::queued`]).
    pub duplicate: u64,
    /// Not enqueued: the task already has a record (it was delivered, so its work
    /// message exists or it finished).
    pub recorded: u64,
    /// The newest of the records read (re-attaching; [`Revision::NONE`] when none): a
    /// projection that replays the journal from the start has seen every task's record
    /// as it was read only once past it ([`Projection::replay_to`]).
    pub newest: Revision,
}

/// Enqueues every task of `tasks` (number and payload) under generation 0.
///
/// `fresh`: the run was just created, so no task has a record and none is read. Otherwise
/// (re-attaching) each task's record is read first and a task that has one is left
/// alone: its work message was delivered, so it is either still in the engine (waiting,
/// leased or naked) or the task finished. Re-enqueueing it after the duplicate window
/// would put a second message of it in the stream. A task with no record is enqueued
/// only when the engine holds no work message of it ([`Engine::queued`]): its first
/// message may still wait, never delivered, past the duplicate window.
///
/// Up to 64 tasks are in flight at once, so the work messages may be stored in an order
/// slightly different from the list's.
///
/// # Errors
/// The first engine error (enqueueing again is idempotent: call it again); tasks after it
/// may or may not have been enqueued.
pub async fn enqueue<E: Engine, T: TaskSource + ?Sized>(
    engine: &E,
    tasks: &T,
    fresh: bool,
) -> Result<EnqueueSummary, Error> {
    /// What one task's enqueueing did.
    enum One {
        Recorded(Revision),
        Enqueued(Enqueued),
    }
    let mut summary = EnqueueSummary::default();
    // Up to ENQUEUE_WINDOW tasks in flight at once (one round trip each would otherwise
    // be paid in turn), polled in task order by one future: no spawned tasks, the same
    // order every time.
    // Each task's text is read when its turn comes: at most the window's texts are held.
    let mut each = futures_util::stream::iter(0..tasks.len())
        .map(|i| async move {
            let task = tasks.number_at(i).unwrap_or(TaskId(0));
            if !fresh {
                let (_, revision) = engine.read(task).await?;
                if revision != Revision::NONE {
                    return Ok::<_, Error>(One::Recorded(revision));
                }
                if engine.queued(task).await? == Some(true) {
                    return Ok(One::Enqueued(Enqueued::Duplicate));
                }
            }
            let (task, payload) = read_at(tasks, i)?;
            Ok(One::Enqueued(
                engine.enqueue(task, &payload, Generation(0)).await?,
            ))
        })
        .buffered(ENQUEUE_WINDOW);
    while let Some(one) = each.next().await {
        match one? {
            One::Recorded(revision) => {
                summary.recorded += 1;
                summary.newest = summary.newest.max(revision);
            }
            One::Enqueued(Enqueued::Queued) => summary.queued += 1,
            One::Enqueued(Enqueued::Duplicate) => summary.duplicate += 1,
        }
    }
    Ok(summary)
}

/// `--retry-failed`: reopens every task of `tasks` (number and payload) that was given
/// up, with a fresh attempt budget, and returns them in order with their reopening
/// record's revision (for [`Projection::reopened_at`]).
///
/// For each task whose record is `ended gave_up` at revision `r`, a
/// `reopened{generation: r}` record is written with compare-and-set on `r` (a task whose
/// record moved on meanwhile is left alone), then its work message is enqueued under
/// generation `r` (revisions are unique, so this generation was never used). The agents
/// read a `reopened` record as a task never claimed: its next claim is attempt 1 of a
/// new budget, and only the reopening's own work message may make it (an older message
/// delivered after the reopening is acknowledged without running). Every write of an
/// attempt of the old budget expects a revision from before the reopening, so none can
/// be accepted after it. A task already `reopened` (a coordinator that stopped between
/// the two steps) whose message the engine does not hold is enqueued again under the
/// same generation (idempotent). Succeeded tasks are never touched.
///
/// Cost: one record read per task (up to 64 at once), plus a write and an enqueue per
/// reopened task.
///
/// # Errors
/// The first engine error; calling it again is safe (the reopened tasks are enqueued
/// again idempotently).
pub async fn reopen_failed<E: Engine, T: TaskSource + ?Sized>(
    engine: &E,
    tasks: &T,
) -> Result<Vec<(TaskId, Revision)>, Error> {
    // Up to ENQUEUE_WINDOW tasks at once, in task order (as `enqueue`).
    let mut each = futures_util::stream::iter(0..tasks.len())
        .map(|i| async move {
            let Some(task) = tasks.number_at(i) else {
                return Ok::<_, Error>(None);
            };
            let (record, revision) = engine.read(task).await?;
            let (generation, at) = match record {
                Some(Record::Ended(e)) if e.outcome == Outcome::GaveUp => {
                    let reopening = Record::Reopened {
                        generation: revision.0,
                    };
                    match engine.write(task, revision, &reopening).await? {
                        Ok(at) => (revision.0, at),
                        // Moved on since the read (another coordinator): leave it.
                        Err(_) => return Ok(None),
                    }
                }
                Some(Record::Reopened { generation }) => {
                    if engine.queued(task).await? != Some(true) {
                        let payload = text_of(tasks, task)?;
                        engine
                            .enqueue(task, &payload, Generation(generation))
                            .await?;
                    }
                    return Ok(Some((task, revision)));
                }
                _ => return Ok(None),
            };
            let payload = text_of(tasks, task)?;
            engine
                .enqueue(task, &payload, Generation(generation))
                .await?;
            Ok(Some((task, at)))
        })
        .buffered(ENQUEUE_WINDOW);
    let mut reopened = Vec::new();
    while let Some(one) = each.next().await {
        if let Some(r) = one? {
            reopened.push(r);
        }
    }
    Ok(reopened)
}

/// How many tasks [`enqueue`] has in flight at once.
const ENQUEUE_WINDOW: usize = 64;

/// Where one task stands in the [`Projection`]: the kind of its newest record (one
/// byte a task).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum TaskState {
    /// No record: never claimed.
    #[default]
    New,
    /// `claimed`: an attempt holds it.
    Claimed,
    /// `ended retry`: waiting for its retry.
    Retrying,
    /// `stale` (written onto the record): its claim was lost.
    Lost,
    /// `reopened`: a fresh attempt budget (`--retry-failed`, `--resume-failed`).
    Reopened,
    /// `ended done`: succeeded.
    Done,
    /// `ended gave_up`: failed for good.
    GaveUp,
}

impl TaskState {
    /// The state after `record`.
    pub fn of(record: &Record) -> Self {
        match record {
            Record::Claimed(_) => Self::Claimed,
            Record::Ended(e) => match e.outcome {
                Outcome::Done => Self::Done,
                Outcome::Retry => Self::Retrying,
                Outcome::GaveUp => Self::GaveUp,
            },
            Record::Stale(_) => Self::Lost,
            Record::Reopened { .. } => Self::Reopened,
        }
    }
}

/// One task's view in the [`Projection`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskView {
    /// The kind of its newest record.
    pub state: TaskState,
}

impl TaskView {
    /// Whether the task succeeded or failed for good.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, TaskState::Done | TaskState::GaveUp)
    }

    /// Whether the task succeeded.
    pub fn succeeded(&self) -> bool {
        self.state == TaskState::Done
    }

    /// Whether an attempt holds the task now.
    pub fn is_claimed(&self) -> bool {
        self.state == TaskState::Claimed
    }
}

/// The run's counts, from a [`Projection`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks in the run.
    pub tasks: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks given up.
    pub gave_up: u64,
    /// Tasks running now (newest record a claim).
    pub running: u64,
    /// Tasks neither finished nor running (waiting, or waiting for a retry).
    pub waiting: u64,
    /// Attempts claimed, over all tasks.
    pub attempts: u64,
    /// Attempts that ended in a failure (retried or given up).
    pub failed_attempts: u64,
    /// Stale notes (attempts refused after their record moved on).
    pub stale: u64,
}

/// The journal's header line (TSV, `sturdy journal v2`: the worker is a host and a slot).
pub const JOURNAL_HEADER: &str = "# sturdy journal v2\nposition\ttask\trecord\tattempt\thost\tslot\tepoch\toutcome\tkind\texit\tsignal\truntime_ms\tnext_ms\tdetail";

/// The run's journal folded into per-task state: each task's newest record's kind (one
/// byte a task, beside the task numbers when they are not one range), the counts and the
/// journal lines. Fed by [`Projection::apply`] in journal order.
#[derive(Clone, Debug, Default)]
pub struct Projection {
    numbers: Numbers,
    states: Vec<TaskState>,
    /// Tasks in each state, indexed by `TaskState as usize`.
    counts: [u64; 7],
    attempts: u64,
    failed_attempts: u64,
    stale: u64,
    next: Position,
    /// Tasks reopened by this coordinator ([`reopen_failed`]) whose reopening record (at
    /// this position) the projection has not folded in yet: not finished, whatever their
    /// older records say.
    reopening: BTreeMap<u32, Position>,
    /// Tasks held unfinished whatever their records say ([`Projection::hold`]).
    held: std::collections::BTreeSet<u32>,
    /// The run is not complete before the journal is folded in up to here
    /// ([`Projection::replay_to`]).
    replay_end: Position,
    /// The newest `ended` record folded in, with its task ([`Projection::last_ended`]).
    last_ended: Option<(TaskId, crate::engine::Ended)>,
}

/// A projection's task numbers: one range (no memory per task), or a sorted list.
#[derive(Clone, Debug)]
enum Numbers {
    /// `first..first + len`.
    Range { first: u32, len: usize },
    /// Increasing, without repeats.
    List(Vec<u32>),
}

impl Default for Numbers {
    fn default() -> Self {
        Self::Range { first: 0, len: 0 }
    }
}

impl Numbers {
    fn collect(tasks: impl IntoIterator<Item = TaskId>) -> Self {
        let mut numbers = Self::default();
        let mut sorted = true;
        for TaskId(n) in tasks {
            match &mut numbers {
                Self::Range { first, len } if *len == 0 => {
                    (*first, *len) = (n, 1);
                }
                Self::Range { first, len } if u64::from(*first) + *len as u64 == u64::from(n) => {
                    *len += 1;
                }
                Self::Range { first, len } => {
                    let mut list: Vec<u32> = (0..*len as u32).map(|i| *first + i).collect();
                    sorted &= list.last().is_none_or(|l| *l < n);
                    list.push(n);
                    numbers = Self::List(list);
                }
                Self::List(list) => {
                    sorted &= list.last().is_none_or(|l| *l < n);
                    list.push(n);
                }
            }
        }
        if let Self::List(list) = &mut numbers
            && !sorted
        {
            list.sort_unstable();
            list.dedup();
        }
        numbers
    }

    fn len(&self) -> usize {
        match self {
            Self::Range { len, .. } => *len,
            Self::List(list) => list.len(),
        }
    }

    fn index_of(&self, task: u32) -> Option<usize> {
        match self {
            Self::Range { first, len } => {
                let i = task.checked_sub(*first)? as usize;
                (i < *len).then_some(i)
            }
            Self::List(list) => list.binary_search(&task).ok(),
        }
    }

    fn at(&self, i: usize) -> u32 {
        match self {
            Self::Range { first, .. } => *first + i as u32,
            Self::List(list) => list[i],
        }
    }
}

impl Projection {
    /// A projection of a run of `tasks` (the task numbers), none recorded yet.
    pub fn new(tasks: impl IntoIterator<Item = TaskId>) -> Self {
        let numbers = Numbers::collect(tasks);
        let n = numbers.len();
        let mut counts = [0; 7];
        counts[TaskState::New as usize] = n as u64;
        Self {
            numbers,
            states: vec![TaskState::New; n],
            counts,
            attempts: 0,
            failed_attempts: 0,
            stale: 0,
            next: Position::START,
            reopening: BTreeMap::new(),
            held: std::collections::BTreeSet::new(),
            replay_end: Position(0),
            last_ended: None,
        }
    }

    /// The newest `ended` record folded in (not a note), with its task: what the
    /// projection keeps of records besides each task's state (a task's output mark is
    /// read from it as its line is journaled).
    pub fn last_ended(&self) -> Option<(TaskId, &crate::engine::Ended)> {
        self.last_ended.as_ref().map(|(t, e)| (*t, e))
    }

    /// The run is not complete before the journal is folded in up to `position`: a
    /// coordinator that re-attaches replays the journal from the start, where every task
    /// may look finished for a while (given up) before its later records (reopened, then
    /// done) come. `position`: the newest task record read when re-attaching
    /// ([`EnqueueSummary::newest`]).
    pub fn replay_to(&mut self, position: Position) {
        self.replay_end = self.replay_end.max(position);
    }

    /// Holds task `task` unfinished, whatever its records say, until
    /// [`Projection::release`]: a task amended by `--resume-failed` while an attempt ran
    /// its old text, which the coordinator re-enqueues under its new text if that attempt
    /// does not succeed ([`crate::amend`]).
    pub fn hold(&mut self, task: TaskId) {
        self.held.insert(task.0);
    }

    /// Ends a [`Projection::hold`].
    pub fn release(&mut self, task: TaskId) {
        self.held.remove(&task.0);
    }

    /// Whether task `task` is held ([`Projection::hold`]).
    pub fn is_held(&self, task: TaskId) -> bool {
        self.held.contains(&task.0)
    }

    /// Task `task` was reopened at `revision` ([`reopen_failed`]): until the projection
    /// folds in that record, the task counts as waiting (a replay of the journal from the
    /// start sees its old `gave_up` first).
    pub fn reopened_at(&mut self, task: TaskId, revision: Revision) {
        if revision.0 >= self.next.0 {
            self.reopening.insert(task.0, Position(revision.0));
        }
    }

    /// Where to follow the journal from next.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// One task's view (`None`: not a task of the run).
    pub fn task(&self, task: TaskId) -> Option<TaskView> {
        let i = self.numbers.index_of(task.0)?;
        Some(TaskView {
            state: self.states[i],
        })
    }

    /// Every task's view, by task number.
    pub fn tasks(&self) -> impl Iterator<Item = (TaskId, TaskView)> + '_ {
        self.states
            .iter()
            .enumerate()
            .map(|(i, state)| (TaskId(self.numbers.at(i)), TaskView { state: *state }))
    }

    /// Folds one journal entry in (entries before [`Projection::next_position`] are
    /// ignored, so a replay after a reconnect is harmless) and returns its journal line
    /// (TSV, no newline), or `None` for an ignored entry. An entry about a task that is
    /// not in the run is counted nowhere but still journaled.
    pub fn apply(&mut self, entry: &Entry) -> Option<String> {
        if entry.position < self.next {
            return None;
        }
        self.next = entry.position.next();
        if self
            .reopening
            .get(&entry.task.0)
            .is_some_and(|at| entry.position >= *at)
        {
            self.reopening.remove(&entry.task.0);
        }
        if entry.note {
            if let Record::Stale(_) = entry.record {
                self.stale += 1;
            }
        } else {
            match &entry.record {
                Record::Claimed(_) => self.attempts += 1,
                Record::Ended(e) if e.outcome != Outcome::Done && e.kind != "worker_crash" => {
                    self.failed_attempts += 1;
                }
                _ => {}
            }
            if let Record::Ended(e) = &entry.record {
                self.last_ended = Some((entry.task, e.clone()));
            }
            if let Some(i) = self.numbers.index_of(entry.task.0) {
                let state = TaskState::of(&entry.record);
                self.counts[self.states[i] as usize] -= 1;
                self.counts[state as usize] += 1;
                self.states[i] = state;
            }
        }
        Some(journal_line(entry))
    }

    /// Whether every task is finished (succeeded or given up).
    pub fn is_complete(&self) -> bool {
        self.reopening.is_empty()
            && self.held.is_empty()
            && self.next > self.replay_end
            && self.count(TaskState::Done) + self.count(TaskState::GaveUp)
                == self.states.len() as u64
    }

    fn count(&self, state: TaskState) -> u64 {
        self.counts[state as usize]
    }

    /// The counts (the task counts are kept as records come: no pass over the tasks).
    pub fn summary(&self) -> Summary {
        let tasks = self.states.len() as u64;
        let succeeded = self.count(TaskState::Done);
        let running = self.count(TaskState::Claimed);
        // A given-up task reopened or held (not yet folded in) counts as waiting.
        let pending = self
            .reopening
            .keys()
            .filter(|t| !self.held.contains(t))
            .chain(self.held.iter())
            .filter(|t| {
                self.task(TaskId(**t))
                    .is_some_and(|v| v.state == TaskState::GaveUp)
            })
            .count() as u64;
        let gave_up = self.count(TaskState::GaveUp) - pending;
        Summary {
            tasks,
            succeeded,
            gave_up,
            running,
            waiting: tasks - succeeded - gave_up - running,
            attempts: self.attempts,
            failed_attempts: self.failed_attempts,
            stale: self.stale,
        }
    }

    /// The coordinator's exit status: 0 only when every task succeeded, else 1.
    pub fn exit_status(&self) -> i32 {
        i32::from(self.count(TaskState::Done) != self.states.len() as u64)
    }
}

/// One journal line: the columns of [`JOURNAL_HEADER`], tab-separated; tabs and newlines
/// in the detail are written as spaces.
pub fn journal_line(entry: &Entry) -> String {
    let mut line = String::new();
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let (kind, attempt, host, slot, epoch, rest) = match &entry.record {
        Record::Claimed(c) => (
            "claimed",
            c.attempt,
            c.host.as_str(),
            c.slot.as_str(),
            c.epoch,
            "-\t-\t-\t-\t-\t-\t-".to_string(),
        ),
        Record::Ended(e) => (
            "ended",
            e.attempt,
            e.host.as_str(),
            e.slot.as_str(),
            e.epoch,
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                match e.outcome {
                    Outcome::Done => "done",
                    Outcome::Retry => "retry",
                    Outcome::GaveUp => "gave_up",
                },
                if e.kind.is_empty() { "-" } else { &e.kind },
                opt(e.exit.map(i64::from)),
                opt(e.signal.map(i64::from)),
                e.runtime_ms,
                opt(e.next_ms.and_then(|n| i64::try_from(n).ok())),
                clean(&e.detail),
            ),
        ),
        Record::Stale(s) => (
            "stale",
            s.attempt,
            s.host.as_str(),
            s.slot.as_str(),
            s.epoch,
            format!("-\t-\t-\t-\t-\t-\t{}", clean(&s.reason)),
        ),
        Record::Reopened { generation } => (
            "reopened",
            0,
            "-",
            "-",
            *generation,
            "-\t-\t-\t-\t-\t-\t-".to_string(),
        ),
    };
    let _ = write!(
        line,
        "{}\t{}\t{kind}\t{attempt}\t{host}\t{slot}\t{epoch}\t{rest}",
        entry.position.0, entry.task.0
    );
    line
}

fn clean(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| {
            if c == '\t' || c == '\n' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .collect();
    if text.is_empty() { "-".into() } else { text }
}

/// How [`follow`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// Every task finished.
    Complete,
    /// `stop` said so first.
    Stopped,
}

/// Follows the run's journal from the projection's [`Projection::next_position`],
/// folding every entry in and handing each journal line (and the projection after it)
/// to `on_line`, until every task is finished or `stop` turns `true`. A projection that
/// is already complete returns at once.
///
/// # Errors
/// The engine's error when the follow fails (call again: the projection knows where to
/// resume).
pub async fn follow<E: Engine>(
    engine: &E,
    projection: &mut Projection,
    mut stop: watch::Receiver<bool>,
    mut on_line: impl FnMut(&str, &Projection),
) -> Result<Followed, Error> {
    if projection.is_complete() {
        return Ok(Followed::Complete);
    }
    let mut stream = engine.follow(projection.next_position()).await?;
    loop {
        if *stop.borrow_and_update() {
            return Ok(Followed::Stopped);
        }
        let next = tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() {
                    // The sender is gone: nobody can stop us any more.
                    stream.next().await
                } else {
                    continue;
                }
            }
            next = stream.next() => next,
        };
        let Some(entry) = next else {
            return Err(Error::Engine {
                run: String::new(),
                op: "follow",
                subject: "journal".into(),
                reason: "the journal stream ended".into(),
            });
        };
        let entry = entry?;
        if let Some(line) = projection.apply(&entry) {
            on_line(&line, projection);
        }
        if projection.is_complete() {
            return Ok(Followed::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Claim, Ended};

    fn ended(attempt: u32, outcome: Outcome) -> Record {
        Record::Ended(Ended {
            attempt,
            epoch: 1,
            host: "h".into(),
            slot: "0".into(),
            outcome,
            kind: if outcome == Outcome::Done {
                String::new()
            } else {
                "evaluation".into()
            },
            exit: Some(if outcome == Outcome::Done { 0 } else { 1 }),
            signal: None,
            runtime_ms: 5,
            next_ms: None,
            detail: "a\tb".into(),
            crashes: 0,
            own_failures: 0,
            output: None,
        })
    }

    fn entry(position: u64, task: u32, record: Record) -> Entry {
        Entry {
            position: Position(position),
            task: TaskId(task),
            record,
            note: false,
        }
    }

    #[test]
    fn the_projection_counts_and_completes_only_when_every_task_finished() {
        let mut p = Projection::new([TaskId(1), TaskId(2)]);
        let claim = Record::Claimed(Claim {
            attempt: 1,
            epoch: 1,
            host: "h0".into(),
            slot: "gpu:0".into(),
            crashes: 0,
            own_failures: 0,
        });
        assert_eq!(
            p.apply(&entry(1, 1, claim.clone())).unwrap(),
            "1\t1\tclaimed\t1\th0\tgpu:0\t1\t-\t-\t-\t-\t-\t-\t-"
        );
        assert_eq!(p.summary().running, 1);
        assert!(
            p.apply(&entry(1, 1, claim)).is_none(),
            "replays are ignored"
        );
        assert_eq!(
            p.apply(&entry(2, 1, ended(1, Outcome::Done))).unwrap(),
            "2\t1\tended\t1\th\t0\t1\tdone\t-\t0\t-\t5\t-\ta b"
        );
        assert!(!p.is_complete());
        p.apply(&entry(3, 2, ended(1, Outcome::GaveUp)));
        assert!(p.is_complete());
        let s = p.summary();
        assert_eq!(
            (
                s.tasks,
                s.succeeded,
                s.gave_up,
                s.attempts,
                s.failed_attempts
            ),
            (2, 1, 1, 1, 1)
        );
        assert_eq!(p.exit_status(), 1);
        assert_eq!(p.next_position(), Position(4));
    }

    #[test]
    fn a_reopened_task_waits_until_its_reopening_is_folded_in() {
        // A resumed coordinator replays from the start: it sees the old `gave_up` first.
        let mut p = Projection::new([TaskId(1)]);
        p.reopened_at(TaskId(1), Revision(2));
        p.apply(&entry(1, 1, ended(1, Outcome::GaveUp)));
        assert!(!p.is_complete());
        assert_eq!((p.summary().gave_up, p.summary().waiting), (0, 1));
        p.apply(&entry(2, 1, Record::Reopened { generation: 1 }));
        assert!(!p.is_complete(), "reopened: a fresh budget, not finished");
        assert_eq!(p.summary().waiting, 1);
        p.apply(&entry(3, 1, ended(1, Outcome::Done)));
        assert!(p.is_complete());
        assert_eq!(p.exit_status(), 0);
    }

    #[test]
    fn a_replay_is_not_complete_before_the_newest_record_read() {
        // Gave up, reopened, done: replayed from the start, the task looks finished
        // after its first record.
        let mut p = Projection::new([TaskId(4)]);
        p.replay_to(Position(3));
        p.apply(&entry(1, 4, ended(1, Outcome::GaveUp)));
        assert!(!p.is_complete());
        p.apply(&entry(2, 4, Record::Reopened { generation: 1 }));
        assert_eq!(p.summary().waiting, 1);
        p.apply(&entry(3, 4, ended(1, Outcome::Done)));
        assert!(p.is_complete());
        assert_eq!((p.summary().succeeded, p.exit_status()), (1, 0));
    }

    #[test]
    fn task_numbers_with_gaps_and_held_tasks_are_counted() {
        let mut p = Projection::new([TaskId(1), TaskId(2), TaskId(5), TaskId(9)]);
        assert_eq!(p.task(TaskId(5)), Some(TaskView::default()));
        assert_eq!(p.task(TaskId(3)), None);
        p.apply(&entry(1, 9, ended(1, Outcome::GaveUp)));
        p.apply(&entry(2, 3, ended(1, Outcome::Done)));
        p.hold(TaskId(9));
        let s = p.summary();
        assert_eq!((s.tasks, s.gave_up, s.succeeded, s.waiting), (4, 0, 0, 4));
        p.release(TaskId(9));
        assert_eq!(p.summary().gave_up, 1);
        let finished: Vec<u32> = p
            .tasks()
            .filter(|(_, v)| v.is_finished())
            .map(|(t, _)| t.0)
            .collect();
        assert_eq!(finished, [9]);
        assert_eq!(
            Projection::new([TaskId(3), TaskId(1), TaskId(3)])
                .tasks()
                .map(|(t, _)| t.0)
                .collect::<Vec<_>>(),
            [1, 3]
        );
    }

    #[test]
    fn a_source_read_as_it_goes_has_the_list_s_fingerprint_and_texts() {
        let list: Vec<(TaskId, Vec<u8>)> = vec![
            (TaskId(1), b"echo a".to_vec()),
            (TaskId(3), b"echo c".to_vec()),
        ];
        assert_eq!(
            fingerprint_of(&list).unwrap(),
            fingerprint(list.iter().map(|(t, c)| (*t, c.as_slice())))
        );
        assert_eq!(list.text(TaskId(3)), Some(b"echo c".to_vec()));
        assert_eq!(list.text(TaskId(2)), None);
        assert_eq!(read_at(&list, 1).unwrap(), (TaskId(3), b"echo c".to_vec()));
        match read_at(&list, 2) {
            Err(Error::Engine { op, subject, .. }) => {
                assert_eq!((op, subject.as_str()), ("read the task list", "task #2"));
            }
            other => panic!("expected an unreadable task, got {other:?}"),
        }
    }

    #[test]
    fn the_fingerprint_depends_on_numbers_and_payloads() {
        let a = fingerprint([(TaskId(1), &b"echo a"[..]), (TaskId(2), &b"echo b"[..])]);
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            fingerprint([(TaskId(1), &b"echo a"[..]), (TaskId(2), &b"echo b"[..])])
        );
        assert_ne!(
            a,
            fingerprint([(TaskId(1), &b"echo a"[..]), (TaskId(3), &b"echo b"[..])])
        );
        assert_ne!(
            a,
            fingerprint([(TaskId(1), &b"echo ab"[..]), (TaskId(2), &b"echo "[..])])
        );
    }
}

/// SCALE-OUT R5, the coordinator's reconcile: the server fences neither acks nor `+WPI`,
/// so a stale ack can delete the work message of a task that a live claim holds
/// (nats-server #4786). While that claim's owner lives, nothing is lost (its `ended`
/// write still succeeds); once it dies, no delivery ever comes back and the task would
/// stay `claimed` for ever. A task whose record is a claim, with no work message in the
/// engine ([`Engine::queued`]) and the same claim (revision) for `grace` (2 × the ack
/// wait: a live owner's renewals are `+WPI`s the coordinator cannot see, so an unchanged
/// claim with no message is the signal), is enqueued again under generation = that
/// claim's revision (idempotent per claim). Its next claim charges the lost one as a
/// worker crash; a live owner of the old claim finds itself stale at its next renewal
/// (its command is killed) or at its `ended` write.
///
/// Cost: one message get per task whose claim is older than `grace`, per call (call it
/// every ack wait or so); the records are read only for tasks with no message.
#[derive(Clone, Debug, Default)]
pub struct Reconcile {
    /// Claimed tasks seen, with the claim's first sighting (by this reconcile) and, once
    /// found without a message, the claim's revision.
    seen: BTreeMap<u32, (tokio::time::Instant, Option<Revision>)>,
}

impl Reconcile {
    /// An empty reconcile.
    pub fn new() -> Self {
        Self::default()
    }

    /// One pass over `projection` at `now`; enqueues (with `payload(task)`) the tasks
    /// that lost their work message under a claim unchanged for `grace`, and returns
    /// them.
    ///
    /// # Errors
    /// The first engine error (the pass can simply be repeated).
    pub async fn pass<E: Engine>(
        &mut self,
        engine: &E,
        projection: &Projection,
        payload: impl Fn(TaskId) -> Option<Vec<u8>>,
        now: tokio::time::Instant,
        grace: std::time::Duration,
    ) -> Result<Vec<TaskId>, Error> {
        let claimed: Vec<TaskId> = projection
            .tasks()
            .filter(|(_, v)| v.is_claimed())
            .map(|(t, _)| t)
            .collect();
        self.seen
            .retain(|n, _| claimed.binary_search(&TaskId(*n)).is_ok());
        let mut requeued = Vec::new();
        for task in claimed {
            let entry = self.seen.entry(task.0).or_insert((now, None));
            if now.duration_since(entry.0) < grace {
                continue;
            }
            if engine.queued(task).await? != Some(false) {
                entry.1 = None;
                continue;
            }
            let (record, revision) = engine.read(task).await?;
            if !matches!(record, Some(Record::Claimed(_))) {
                continue;
            }
            match entry.1 {
                Some(r) if r == revision => {}
                _ => {
                    // First seen without a message (or a newer claim): wait `grace`
                    // from now for its owner to finish or for a new claim.
                    *entry = (now, Some(revision));
                    continue;
                }
            }
            let Some(body) = payload(task) else { continue };
            engine.enqueue(task, &body, Generation(revision.0)).await?;
            self.seen.remove(&task.0);
            requeued.push(task);
        }
        Ok(requeued)
    }
}
