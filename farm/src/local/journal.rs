//! The journal: one line per attempt, appended as it ends, after GNU parallel's
//! `--joblog`.
//!
//! The file `journal.tsv` in the state directory starts with a `#` comment naming the
//! format and a header line; each further line is one attempt, tab-separated:
//!
//! ```text
//! task  attempt  worker  epoch  start           end             runtime  exit  signal  kind        next     command
//! 17    1        2       41     1764405600.123  1764405600.456  0.333    0     -       -           done     ./step.sh 17
//! 18    1        3       42     1764405600.130  1764405601.002  0.872    1     -       evaluation  retry    ./step.sh 18
//! ```
//!
//! `task` and `attempt` count from 1; `start` and `end` are Unix times in seconds with
//! milliseconds; `exit` and `signal` are `-` when they do not apply; `kind` is the
//! failure kind (`-` on success); `next` says what the attempt led to: `done` (the task
//! succeeded), `retry` (it will run again), `gave_up` (failed for good), `stale` (a late
//! result of an attempt the ledger had already reassigned, ignored) or `interrupted`
//! (killed by a second SIGINT/SIGTERM). `grep -P '\tgave_up\t' journal.tsv` lists the
//! tasks that failed for good. A command's line feeds (a `:::` value or a template may
//! hold them) are written as the two characters `\n`, so that every attempt stays one
//! line; a line's command is compared with its task's as written ([`journals_as`]).
//!
//! Durability: each line is one `write` to a file opened for appending, so it is in the
//! kernel's page cache the moment the attempt is recorded and survives a crash or
//! `SIGKILL` of the master. The file is synced to disk (`fdatasync`) at each checkpoint
//! and at the end of the run; a crash of the whole machine (power loss, kernel panic)
//! can lose the lines written since the last sync, and the tasks they recorded then run
//! again on `--resume` (at least once across machine crashes; exactly once across
//! crashes of the process). A torn last line is skipped when the journal is read; what
//! the lines say is checked against the task list by `resume`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sturdy_core::FailureKind;

/// The first line of every journal.
pub const MAGIC: &str = "# sturdy journal v1";
/// The column header.
pub const HEADER: &str =
    "task\tattempt\tworker\tepoch\tstart\tend\truntime\texit\tsignal\tkind\tnext\tcommand";

/// What an attempt led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The task succeeded.
    Done,
    /// It will run again.
    Retry,
    /// It failed for good.
    GaveUp,
    /// A stale result, ignored.
    Stale,
    /// Killed by a second interrupt; runs again on resume.
    Interrupted,
}

impl Next {
    /// Its name in the journal's `next` column (`done`, `retry`, `gave_up`, `stale`,
    /// `interrupted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retry => "retry",
            Self::GaveUp => "gave_up",
            Self::Stale => "stale",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Done,
            Self::Retry,
            Self::GaveUp,
            Self::Stale,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|n| n.as_str() == s)
    }
}

/// One journal line.
#[derive(Clone, Debug, PartialEq)]
pub struct Record<'a> {
    /// The task's number (its line in the task list, from 1).
    pub task: u32,
    /// The attempt's number for this task, from 1.
    pub attempt: u32,
    /// The worker (slot) that ran it.
    pub worker: u32,
    /// The attempt's epoch (the ledger's fence against late results).
    pub epoch: u64,
    /// When the attempt started (wall clock).
    pub start: SystemTime,
    /// When the attempt ended (wall clock).
    pub end: SystemTime,
    /// The command's exit code, `None` if it was killed by a signal or never exited.
    pub exit: Option<i32>,
    /// The signal that killed the command, if one did.
    pub signal: Option<i32>,
    /// The failure kind's name, `None` on success.
    pub kind: Option<&'a str>,
    /// What the attempt led to.
    pub next: Next,
    /// The task's command line.
    pub command: &'a str,
}

/// Whether `journaled`, a journal line's command column, is `command` as the journal
/// writes it: each line feed as the two characters `\n` (a line feed would end the
/// journal line), every other character as it is. Lossy on purpose (a command holding
/// `\n` itself is written the same), since the journal's command only checks that a
/// line belongs to its task; compares without a copy.
pub fn journals_as(command: &str, journaled: &str) -> bool {
    let mut rest = journaled.as_bytes();
    for part in command.as_bytes().split(|&b| b == b'\n').enumerate() {
        let (i, part) = part;
        if i > 0 {
            let Some(r) = rest.strip_prefix(b"\\n") else {
                return false;
            };
            rest = r;
        }
        let Some(r) = rest.strip_prefix(part) else {
            return false;
        };
        rest = r;
    }
    rest.is_empty()
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl Record<'_> {
    /// The line, newline included.
    pub fn to_line(&self) -> String {
        let (s, e) = (unix_secs(self.start), unix_secs(self.end));
        format!(
            "{}\t{}\t{}\t{}\t{s:.3}\t{e:.3}\t{:.3}\t{}\t{}\t{}\t{}\t{}\n",
            self.task,
            self.attempt,
            self.worker,
            self.epoch,
            (e - s).max(0.0),
            opt(self.exit),
            opt(self.signal),
            self.kind.unwrap_or("-"),
            self.next.as_str(),
            self.command.replace('\n', "\\n"),
        )
    }
}

/// What a journal says about one task: built by [`TaskHistory::record`] from the
/// lines the caller accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskHistory {
    /// The largest attempt number on any of its lines, `stale` and `interrupted` ones
    /// included: the next attempt is numbered after it.
    pub max_attempt: u32,
    /// Whether an attempt succeeded.
    pub done: bool,
    /// Whether the task failed for good (and did not succeed).
    pub gave_up: bool,
    /// The failure kind of its last `gave_up` line.
    pub gave_up_kind: Option<FailureKind>,
    /// Failed attempts of its own (a `retry` or `gave_up` line of any kind but
    /// `worker_crash`).
    pub own_failures: u32,
    /// Attempts lost to a worker crash (a `retry` or `gave_up` line of kind
    /// `worker_crash`).
    pub crashes: u32,
}

impl TaskHistory {
    /// Adds one line of the task.
    pub fn record(&mut self, e: &Entry<'_>) {
        self.max_attempt = self.max_attempt.max(e.attempt);
        let kind = e
            .kind
            .map(|k| FailureKind::from_name(k).unwrap_or(FailureKind::Unknown));
        match e.next {
            Next::Done => {
                self.done = true;
                self.gave_up = false;
            }
            Next::GaveUp => {
                self.gave_up = !self.done;
                self.gave_up_kind = Some(kind.unwrap_or(FailureKind::Unknown));
            }
            Next::Retry | Next::Stale | Next::Interrupted => {}
        }
        if matches!(e.next, Next::Retry | Next::GaveUp) {
            match kind {
                Some(FailureKind::WorkerCrash) => self.crashes += 1,
                Some(_) => self.own_failures += 1,
                None => {}
            }
        }
    }
}

/// One attempt line read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its line number in the file, from 1.
    pub line: usize,
    /// The task's number (its line in the task list, from 1).
    pub task: u32,
    /// The attempt's number for this task, from 1.
    pub attempt: u32,
    /// The failure kind's name, `None` for `-`.
    pub kind: Option<&'a str>,
    /// What the attempt led to.
    pub next: Next,
    /// The task's command line.
    pub command: &'a str,
}

/// A journal read back whole.
#[derive(Clone, Debug)]
pub struct JournalText {
    text: String,
}

impl JournalText {
    /// Wraps a journal's text (bytes that are not UTF-8 become U+FFFD).
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            text: String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    /// [`JournalText::new`] without a copy when the bytes are UTF-8 (a journal of a
    /// million lines is tens of MiB).
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Self { text },
            Err(e) => Self::new(e.as_bytes()),
        }
    }

    /// Whether it starts with the format line or the column header (a journal this
    /// program began; one truncated to nothing, or some other file, does not).
    pub fn has_header(&self) -> bool {
        self.text
            .split('\n')
            .take(2)
            .any(|l| l == HEADER || l == MAGIC)
    }

    /// Its attempt lines in order: `Ok` for each line that parses, `Err(line number)`
    /// for each that does not (a torn write). The format line, the header, other `#`
    /// lines and blank lines are skipped.
    pub fn entries(&self) -> impl Iterator<Item = Result<Entry<'_>, usize>> {
        // Split on `\n` only: a command may end in `\r`, which `lines()` would drop.
        self.text.split('\n').enumerate().filter_map(|(i, line)| {
            if line.starts_with('#') || line == HEADER || line.is_empty() {
                return None;
            }
            Some(parse_line(i + 1, line).ok_or(i + 1))
        })
    }
}

fn parse_line(line_no: usize, line: &str) -> Option<Entry<'_>> {
    // Twelve columns, the last (the command) taking the rest; no allocation per line.
    let mut cols = line.splitn(12, '\t');
    let task = cols.next()?.parse().ok()?;
    let attempt = cols.next()?.parse().ok()?;
    let kind = cols.nth(7)?;
    let next = Next::parse(cols.next()?)?;
    let command = cols.next()?;
    Some(Entry {
        line: line_no,
        task,
        attempt,
        kind: (kind != "-").then_some(kind),
        next,
        command,
    })
}

/// The appending journal writer.
pub struct Journal {
    file: File,
    /// The length the file has at least: what it held when opened plus every line
    /// written since (see [`JournalWatch`]).
    expected: Arc<AtomicU64>,
}

/// Notices the journal truncated or replaced under the running master (logrotate's
/// `copytruncate`, a `cp` over it, a `mv` of another file onto it): the file at its path
/// must still be the one the master appends to, and hold at least every byte the
/// master wrote. Either failing means lines the record relied on are gone.
pub struct JournalWatch {
    path: PathBuf,
    file: File,
    expected: Arc<AtomicU64>,
}

impl JournalWatch {
    /// `Err(what happened)` when the journal was truncated, replaced or deleted.
    pub fn check(&self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        // Read the expectation first: a line counted in it is already written.
        let expected = self.expected.load(Ordering::Acquire);
        let held = self
            .file
            .metadata()
            .map_err(|e| format!("cannot stat the journal {}: {e}", self.path.display()))?;
        match std::fs::metadata(&self.path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {}
            Ok(_) => {
                return Err(format!(
                    "the journal {} was replaced by another file while the run was going",
                    self.path.display()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "the journal {} was deleted while the run was going ({e})",
                    self.path.display()
                ));
            }
        }
        if held.len() < expected {
            return Err(format!(
                "the journal {} was truncated while the run was going ({} bytes, {expected} written)",
                self.path.display(),
                held.len()
            ));
        }
        Ok(())
    }
}

impl Journal {
    /// Opens (creating it with its header when new) the journal at `path` for
    /// appending. A last line without its newline (a torn write) is closed first.
    ///
    /// # Errors
    /// The file cannot be opened or written.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            file.write_all(format!("{MAGIC}\n{HEADER}\n").as_bytes())?;
        } else {
            // Only its last byte matters (a journal can be tens of MiB).
            let mut last = [0u8; 1];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut last, len - 1)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        let expected = Arc::new(AtomicU64::new(file.metadata()?.len()));
        Ok(Self { file, expected })
    }

    /// A [`JournalWatch`] of this journal, which is at `path`.
    ///
    /// # Errors
    /// The file cannot be duplicated.
    pub fn watch(&self, path: &Path) -> io::Result<JournalWatch> {
        Ok(JournalWatch {
            path: path.to_owned(),
            file: self.file.try_clone()?,
            expected: Arc::clone(&self.expected),
        })
    }

    /// Appends one record in a single `write`.
    ///
    /// # Errors
    /// The write failed (disk full, ...).
    ///
    /// A write that fails part-way (a full disk) is cut back off the file where
    /// possible, so that the journal never holds half a line.
    pub fn append(&mut self, rec: &Record<'_>) -> io::Result<()> {
        let line = rec.to_line();
        let mut written = 0;
        while written < line.len() {
            match self.file.write(&line.as_bytes()[written..]) {
                Ok(0) => {
                    let _ = self.cut_back(written);
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = self.cut_back(written);
                    return Err(e);
                }
            }
        }
        self.expected
            .fetch_add(line.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Removes the last `n` bytes written (a partial line).
    fn cut_back(&mut self, n: usize) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        self.file.set_len(len.saturating_sub(n as u64))
    }

    /// A journal that appends to `file` as it is (no header written, nothing checked):
    /// for tests of its users (a journal on `/dev/full` that takes no line).
    #[cfg(test)]
    pub(crate) fn on_file(file: File) -> Self {
        Self {
            file,
            expected: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Syncs the journal's data to disk.
    ///
    /// # Errors
    /// `fdatasync` failed.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Reads the journal at `path`: `None` when there is no such file.
///
/// # Errors
/// The file exists but cannot be read.
pub fn read(path: &Path) -> io::Result<Option<JournalText>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(JournalText::from_vec(bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(task: u32, attempt: u32, next: Next) -> Record<'static> {
        Record {
            task,
            attempt,
            worker: 1,
            epoch: 9,
            start: UNIX_EPOCH + Duration::from_millis(1_000_250),
            end: UNIX_EPOCH + Duration::from_millis(1_001_500),
            exit: Some(if next == Next::Done { 0 } else { 3 }),
            signal: None,
            kind: (next != Next::Done).then_some("evaluation"),
            next,
            command: "echo a\tb",
        }
    }

    #[test]
    fn line_format_is_tab_separated_like_joblog() {
        assert_eq!(
            rec(4, 2, Next::Retry).to_line(),
            "4\t2\t1\t9\t1000.250\t1001.500\t1.250\t3\t-\tevaluation\tretry\techo a\tb\n"
        );
    }

    #[test]
    fn the_watch_notices_truncation_replacement_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.tsv");
        let mut j = Journal::open(&path).unwrap();
        let watch = j.watch(&path).unwrap();
        j.append(&rec(1, 1, Next::Done)).unwrap();
        assert_eq!(watch.check(), Ok(()));
        // Another writer appending is no loss.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"x\n")
            .unwrap();
        assert_eq!(watch.check(), Ok(()));
        // copytruncate: the same file, shorter than what was written.
        let written = std::fs::metadata(&path).unwrap().len() - 2;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(
            watch.check(),
            Err(format!(
                "the journal {} was truncated while the run was going (0 bytes, {written} written)",
                path.display()
            ))
        );
        // Another file moved onto the path.
        let other = dir.path().join("other");
        std::fs::write(&other, "x".repeat(4096)).unwrap();
        std::fs::rename(&other, &path).unwrap();
        let e = watch.check().unwrap_err();
        assert!(
            e.ends_with("was replaced by another file while the run was going"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = watch.check().unwrap_err();
        assert!(e.contains("was deleted while the run was going"), "{e}");
    }

    fn histories(j: &JournalText) -> std::collections::BTreeMap<u32, TaskHistory> {
        let mut m = std::collections::BTreeMap::new();
        for e in j.entries().flatten() {
            m.entry(e.task)
                .or_insert_with(TaskHistory::default)
                .record(&e);
        }
        m
    }

    #[test]
    fn reads_back_entries_with_line_numbers_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.tsv");
        assert!(read(&path).unwrap().is_none());
        let mut j = Journal::open(&path).unwrap();
        j.append(&rec(1, 1, Next::Retry)).unwrap();
        j.append(&rec(1, 2, Next::Done)).unwrap();
        j.append(&rec(2, 1, Next::GaveUp)).unwrap();
        j.append(&rec(3, 5, Next::Stale)).unwrap();
        drop(j);
        // A torn write: half a line with no newline.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"4\t1\t0\t1\t100").unwrap();
        drop(f);
        // Reopening closes the torn line, so the next record starts on its own line.
        let mut j = Journal::open(&path).unwrap();
        j.append(&rec(5, 1, Next::Done)).unwrap();
        let text = read(&path).unwrap().unwrap();
        assert!(text.has_header());
        let all: Vec<_> = text.entries().collect();
        assert_eq!(all.len(), 6);
        assert_eq!(all[4], Err(7), "the torn line, after the 2 header lines");
        assert_eq!(
            all[0],
            Ok(Entry {
                line: 3,
                task: 1,
                attempt: 1,
                kind: Some("evaluation"),
                next: Next::Retry,
                command: "echo a\tb",
            })
        );
        assert_eq!(all[5].unwrap().line, 8);
        assert_eq!(all[5].unwrap().kind, None);
        let map = histories(&text);
        assert_eq!(
            map[&1],
            TaskHistory {
                max_attempt: 2,
                done: true,
                own_failures: 1,
                ..TaskHistory::default()
            }
        );
        assert_eq!(
            map[&2],
            TaskHistory {
                max_attempt: 1,
                gave_up: true,
                gave_up_kind: Some(FailureKind::Evaluation),
                own_failures: 1,
                ..TaskHistory::default()
            }
        );
        // A stale line counts for numbering only.
        assert_eq!(
            map[&3],
            TaskHistory {
                max_attempt: 5,
                ..TaskHistory::default()
            }
        );
        assert!(map[&5].done);
        assert!(!map.contains_key(&4));
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.starts_with(&format!("{MAGIC}\n{HEADER}\n")));
    }

    #[test]
    fn a_command_with_line_feeds_stays_one_line_and_matches_its_task() {
        let cmd = "echo 'a\nb'\nprintf 'c\\n'";
        let line = Record {
            command: cmd,
            ..rec(2, 1, Next::Done)
        }
        .to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        assert!(
            line.ends_with("\tdone\techo 'a\\nb'\\nprintf 'c\\n'\n"),
            "{line:?}"
        );
        let text = JournalText::new(format!("{MAGIC}\n{HEADER}\n{line}").as_bytes());
        let e: Vec<_> = text.entries().map(Result::unwrap).collect();
        assert_eq!(e.len(), 1);
        assert!(journals_as(cmd, e[0].command));
        // Without line feeds the command is written as it is.
        assert!(journals_as("echo a\tb\r", "echo a\tb\r"));
        assert!(journals_as("", ""));
        assert!(!journals_as("echo a\nb", "echo a"));
        assert!(!journals_as("echo a", "echo a\\n"));
        assert!(!journals_as("a\n", "a\\"));
        assert!(!journals_as("echo a", "echo ab"));
    }

    #[test]
    fn crashes_and_own_failures_are_counted_apart() {
        let text = JournalText::new(
            format!(
                "{MAGIC}\n{HEADER}\n\
                 7\t1\t1\t1\t0\t0\t0\t-\t-\tworker_crash\tretry\tx\n\
                 7\t2\t2\t2\t0\t0\t0\t1\t-\tevaluation\tretry\tx\n\
                 7\t3\t2\t3\t0\t0\t0\t-\t9\ttask_timeout\tretry\tx\n\
                 7\t6\t2\t3\t0\t0\t0\t-\t9\tworker_crash\tstale\tx\n\
                 7\t4\t2\t4\t0\t0\t0\t-\t15\tunknown\tinterrupted\tx\n\
                 7\t5\t2\t5\t0\t0\t0\t-\t-\tworker_crash\tgave_up\tx\r\n"
            )
            .as_bytes(),
        );
        let e: Vec<_> = text.entries().map(Result::unwrap).collect();
        assert_eq!(e[5].command, "x\r", "a command keeps its own trailing CR");
        assert_eq!(
            histories(&text)[&7],
            TaskHistory {
                max_attempt: 6,
                done: false,
                gave_up: true,
                gave_up_kind: Some(FailureKind::WorkerCrash),
                own_failures: 2,
                crashes: 2,
            }
        );
    }

    #[test]
    fn a_journal_without_its_header_is_told_apart() {
        assert!(!JournalText::new(b"").has_header());
        assert!(!JournalText::new(b"1\t1\t1\t1\t0\t0\t0\t0\t-\t-\tdone\tx\n").has_header());
        assert!(JournalText::new(format!("{MAGIC}\n").as_bytes()).has_header());
        assert!(JournalText::new(format!("{HEADER}\n").as_bytes()).has_header());
    }
}
