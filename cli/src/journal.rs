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
//! tasks that failed for good.
//!
//! Durability: each line is one `write` to a file opened for appending, so it is in the
//! kernel's page cache the moment the attempt is recorded and survives a crash or
//! `SIGKILL` of the master. The file is synced to disk (`fdatasync`) at each checkpoint
//! and at the end of the run; a crash of the whole machine (power loss, kernel panic)
//! can lose the lines written since the last sync, and the tasks they recorded then run
//! again on `--resume` (at least once across machine crashes; exactly once across
//! crashes of the process). A torn last line is skipped when the journal is read.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The first line of every journal.
pub(crate) const MAGIC: &str = "# sturdy journal v1";
/// The column header.
pub(crate) const HEADER: &str =
    "task\tattempt\tworker\tepoch\tstart\tend\truntime\texit\tsignal\tkind\tnext\tcommand";

/// What an attempt led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
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
    pub(crate) fn as_str(self) -> &'static str {
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
pub(crate) struct Record<'a> {
    pub(crate) task: u32,
    pub(crate) attempt: u32,
    pub(crate) worker: u32,
    pub(crate) epoch: u64,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
    pub(crate) exit: Option<i32>,
    pub(crate) signal: Option<i32>,
    /// The failure kind's name, `None` on success.
    pub(crate) kind: Option<&'a str>,
    pub(crate) next: Next,
    pub(crate) command: &'a str,
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
    pub(crate) fn to_line(&self) -> String {
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
            self.command,
        )
    }
}

/// What a journal says about one task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TaskHistory {
    /// Attempts recorded (stale ones excluded).
    pub(crate) attempts: u32,
    /// Whether an attempt succeeded.
    pub(crate) done: bool,
    /// Whether the task failed for good (and did not succeed).
    pub(crate) gave_up: bool,
}

/// The appending journal writer.
pub(crate) struct Journal {
    file: File,
}

impl Journal {
    /// Opens (creating it with its header when new) the journal at `path` for
    /// appending. A last line without its newline (a torn write) is closed first.
    ///
    /// # Errors
    /// The file cannot be opened or written.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            file.write_all(format!("{MAGIC}\n{HEADER}\n").as_bytes())?;
        } else {
            let mut text = Vec::new();
            (&file).read_to_end(&mut text)?;
            if text.last() != Some(&b'\n') {
                file.write_all(b"\n")?;
            }
        }
        Ok(Self { file })
    }

    /// Appends one record in a single `write`.
    ///
    /// # Errors
    /// The write failed (disk full, ...).
    ///
    /// A write that fails part-way (a full disk) is cut back off the file where
    /// possible, so that the journal never holds half a line.
    pub(crate) fn append(&mut self, rec: &Record<'_>) -> io::Result<()> {
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
        Ok(())
    }

    /// Removes the last `n` bytes written (a partial line).
    fn cut_back(&mut self, n: usize) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        self.file.set_len(len.saturating_sub(n as u64))
    }

    /// Syncs the journal's data to disk.
    ///
    /// # Errors
    /// `fdatasync` failed.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Reads a journal into per-task histories (keyed by task number). Lines that do not
/// parse (a torn write after a machine crash) are counted in the second value and
/// skipped.
///
/// # Errors
/// The file cannot be read.
pub(crate) fn read(path: &Path) -> io::Result<(HashMap<u32, TaskHistory>, usize)> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((HashMap::new(), 0)),
        Err(e) => return Err(e),
    };
    let text = String::from_utf8_lossy(&text);
    let mut map: HashMap<u32, TaskHistory> = HashMap::new();
    let mut skipped = 0;
    for line in text.lines() {
        if line.starts_with('#') || line == HEADER || line.is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.splitn(12, '\t').collect();
        let parsed = (cols.len() == 12)
            .then(|| {
                Some((
                    cols[0].parse::<u32>().ok()?,
                    cols[1].parse::<u32>().ok()?,
                    Next::parse(cols[10])?,
                ))
            })
            .flatten();
        let Some((task, attempt, next)) = parsed else {
            skipped += 1;
            continue;
        };
        let h = map.entry(task).or_default();
        match next {
            Next::Stale => {}
            Next::Done => {
                h.done = true;
                h.attempts = h.attempts.max(attempt);
            }
            Next::GaveUp => {
                h.gave_up = !h.done;
                h.attempts = h.attempts.max(attempt);
            }
            Next::Retry | Next::Interrupted => h.attempts = h.attempts.max(attempt),
        }
    }
    Ok((map, skipped))
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
    fn reads_back_histories_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.tsv");
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
        let (map, skipped) = read(&path).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            map[&1],
            TaskHistory {
                attempts: 2,
                done: true,
                gave_up: false
            }
        );
        assert_eq!(
            map[&2],
            TaskHistory {
                attempts: 1,
                done: false,
                gave_up: true
            }
        );
        assert_eq!(map[&3], TaskHistory::default());
        assert!(map[&5].done);
        assert!(!map.contains_key(&4));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&format!("{MAGIC}\n{HEADER}\n")));
    }
}
