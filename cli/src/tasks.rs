//! The task list: one shell command per line.
//!
//! Blank lines and lines whose first non-blank character is `#` are skipped; every other
//! line, with its trailing `\r` removed, is one command for `sh -c`. A UTF-8 byte-order
//! mark at the start of the text (as some Windows editors write) is not part of the
//! first command and is dropped. A task's number is its line number in the list (so
//! `task 6` is line 6, whatever comments come before it); it is what the journal, the
//! summary and `STURDY_TASK` show.
//!
//! Argument mode (`sturdy run 'gzip -9 {}' ::: a b`, `:::: files.txt`): each task is
//! a combination of the input sources' values put into the command template (see
//! [`crate::template`]); task `n` is the `n`-th combination, so with one `::::` file
//! task `n` is its line `n`.
//!
//! A command is one argument of `sh -c`, so it can hold no NUL byte and at most
//! [`MAX_COMMAND`] bytes (Linux's `MAX_ARG_STRLEN`, 32 pages, less the NUL); a list
//! with such a line is refused before anything runs.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::CliError;
use crate::line_file::{LineError, LineFile, has_bom, open_seekable, spool_stdin};
use crate::template::Template;

/// The task list, streamed: its text stays in its file (standard input is first copied
/// to an unnamed temporary file) and is read back by line number through a sparse index
/// ([`LineFile`]: 16 bytes per 512 lines), so the master's memory does not grow with
/// the list. Beside it: the line numbers of blank and comment lines (4 bytes each); in
/// argument mode the `:::` values (they are on the command line already), each `::::`
/// file indexed the same way, and the template, each task's command expanded from its
/// combination when asked for.
#[derive(Debug)]
pub(crate) struct TaskList {
    inner: Inner,
    /// A CRC-64 fingerprint of the commands; a state directory remembers it so that
    /// `--resume` against a different list is refused.
    pub(crate) fingerprint: u64,
}

#[derive(Debug)]
enum Inner {
    /// Command-list mode.
    List {
        lines: LineFile,
        /// The line numbers (from 1) that hold no command (blank or `#` comment lines),
        /// increasing.
        skipped: Vec<u32>,
        /// How many commands.
        count: usize,
        /// The last command's line number.
        last: u32,
    },
    /// Argument mode: task `n` is the `n`-th combination of the sources' values (the
    /// last source varying fastest).
    Arguments {
        template: Template,
        sources: Vec<Values>,
        colsep: Option<regex::Regex>,
        total: u64,
    },
}

/// The values of one input source.
#[derive(Debug)]
enum Values {
    /// `:::` values: `text` holds them back to back; value `i` is
    /// `text[ends[i - 1]..ends[i]]` (`ends[-1]` being 0).
    Mem { text: String, ends: Vec<u64> },
    /// A `::::` file (or stdin): value `i` is its line `i`.
    File(LineFile),
}

impl Values {
    fn from_vec(values: &[String]) -> Self {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(values.len());
        for v in values {
            text.push_str(v);
            ends.push(text.len() as u64);
        }
        Self::Mem { text, ends }
    }

    fn len(&self) -> usize {
        match self {
            Self::Mem { ends, .. } => ends.len(),
            Self::File(f) => f.len() as usize,
        }
    }

    /// Value `i`; `None` when a `::::` file cannot be read back as it was indexed (it
    /// was changed under the run).
    fn get(&self, i: usize) -> Option<String> {
        match self {
            Self::Mem { text, ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                Some(text[start..ends[i] as usize].to_owned())
            }
            Self::File(f) => f.get(i as u64),
        }
    }

    fn changed(&self) -> bool {
        matches!(self, Self::File(f) if f.changed())
    }
}

/// The longest command, in bytes: Linux refuses a longer single argument to `execve`
/// (`MAX_ARG_STRLEN` = 131 072 bytes, its terminating NUL included) with `E2BIG`.
pub(crate) const MAX_COMMAND: usize = 32 * 4096 - 1;

/// The most tasks a list can have: task numbers are `u32` line numbers.
pub(crate) const MAX_TASKS: u64 = u32::MAX as u64 - 1;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// A [`LineError`] of the file `source` as the CLI's error.
fn line_error(source: &str, e: LineError) -> CliError {
    match e {
        LineError::Io(e) => CliError::input(format!("cannot read tasks file {source}: {e}")),
        LineError::NotUtf8 { line, byte } => CliError::input(format!(
            "tasks file {source}, line {line}: not UTF-8 (byte {byte} of the file)"
        )),
    }
}

/// Why indexing a task list stopped: the file, or a line it refused.
enum IndexError {
    Line(LineError),
    Cli(CliError),
}

impl From<LineError> for IndexError {
    fn from(e: LineError) -> Self {
        Self::Line(e)
    }
}

/// The command of a task list's line (its trailing `\r` removed), `None` for a blank or
/// comment line.
fn command_of(line: &str) -> Option<&str> {
    let l = line.strip_suffix('\r').unwrap_or(line);
    let t = l.trim_start();
    (!t.is_empty() && !t.starts_with('#')).then_some(l)
}

impl TaskList {
    /// Parses the text of a task list. `source` names it in errors.
    ///
    /// # Errors
    /// The list holds no command, or a line with a NUL byte or over [`MAX_COMMAND`]
    /// bytes, or more than [`MAX_TASKS`] lines.
    #[cfg(test)]
    pub(crate) fn parse(text: &str, source: &str) -> Result<Self, CliError> {
        use std::io::Write;
        let mut f = tempfile::tempfile().map_err(|e| CliError::runtime(e.to_string()))?;
        f.write_all(text.as_bytes())
            .map_err(|e| CliError::runtime(e.to_string()))?;
        Self::parse_file(f, source, false)
    }

    /// Indexes a task list in `file` (read from its start) and fingerprints it (a second
    /// pass). `allow_empty`: a list with no command is a list of no task (stdin, where a
    /// pipeline that found nothing is a normal case), not an error (a named file).
    fn parse_file(mut file: File, source: &str, allow_empty: bool) -> Result<Self, CliError> {
        let start = if has_bom(&mut file).map_err(|e| line_error(source, LineError::Io(e)))? {
            '\u{feff}'.len_utf8() as u64
        } else {
            0
        };
        let mut skipped: Vec<u32> = Vec::new();
        let (mut count, mut last) = (0usize, 0u32);
        let lines = LineFile::index(file, start, |i, line| {
            let Some(l) = command_of(line) else {
                if i < MAX_TASKS {
                    skipped.push(i as u32 + 1);
                }
                return Ok(());
            };
            if i >= MAX_TASKS {
                return Err(IndexError::Cli(CliError::input(format!(
                    "tasks file {source} has more than {MAX_TASKS} lines; task numbers are line numbers and stop there (split the list)"
                ))));
            }
            if l.contains('\0') {
                return Err(IndexError::Cli(CliError::input(format!(
                    "tasks file {source}, line {}: a command cannot hold a NUL byte",
                    i + 1
                ))));
            }
            if l.len() > MAX_COMMAND {
                return Err(IndexError::Cli(CliError::input(format!(
                    "tasks file {source}, line {}: the command is {} bytes; a command can be at most {MAX_COMMAND} bytes (Linux's MAX_ARG_STRLEN)",
                    i + 1,
                    l.len()
                ))));
            }
            count += 1;
            last = i as u32 + 1;
            Ok(())
        })
        .map_err(|e| match e {
            IndexError::Line(e) => line_error(source, e),
            IndexError::Cli(e) => e,
        })?;
        if count == 0 && !allow_empty {
            return Err(CliError::input(format!(
                "tasks file {source} holds no command (blank lines and # comments are skipped)"
            )));
        }
        // Blank lines after the last command are no concern of the numbering.
        skipped.retain(|&n| n < last);
        skipped.shrink_to_fit();
        let mut list = Self {
            inner: Inner::List {
                lines,
                skipped,
                count,
                last,
            },
            fingerprint: 0,
        };
        list.fingerprint = list.compute_fingerprint()?;
        Ok(list)
    }

    /// Builds the task list of argument mode: one task per combination of the
    /// sources' values (every combination, the last source varying fastest, an empty
    /// source as one empty value unless all are empty, as GNU parallel does), numbered
    /// from 1 in that order, each command the template expanded with that combination.
    /// `colsep` splits each value into columns. The fingerprint covers the expanded
    /// commands, so it covers the template and the arguments. Every command is expanded
    /// once here (to check it and fingerprint it) and kept nowhere; a `::::` file is
    /// indexed, not held (see [`LineFile`]).
    ///
    /// # Errors
    /// A source is unreadable or not UTF-8; more than `max`
    /// combinations; an expanded command with a NUL byte or over [`MAX_COMMAND`] bytes.
    pub(crate) fn from_arguments(
        template: &Template,
        sources: &[Source],
        colsep: Option<&regex::Regex>,
        max: u64,
    ) -> Result<Self, CliError> {
        let mut values: Vec<Values> = Vec::with_capacity(sources.len());
        for source in sources {
            values.push(match source {
                Source::Args(a) => Values::from_vec(a),
                Source::File(path) => read_arguments(path)?,
            });
        }
        // As GNU parallel: an empty source among sources that are not all empty
        // combines as one empty value (`::: a b :::: /dev/null` runs `a ''`, `b ''`);
        // when every source is empty there is no task.
        if values.iter().any(|v| v.len() > 0) {
            for v in values.iter_mut().filter(|v| v.len() == 0) {
                *v = Values::from_vec(&[String::new()]);
            }
        }
        let total = values
            .iter()
            .try_fold(1u64, |n, v| n.checked_mul(v.len() as u64))
            .filter(|&n| n <= max);
        let Some(total) = total else {
            return Err(CliError::input(format!(
                "the input sources make more than {max} combinations; a run takes at most {max} tasks (split the input)"
            )));
        };
        let mut list = Self {
            inner: Inner::Arguments {
                template: template.clone(),
                sources: values,
                colsep: colsep.cloned(),
                total,
            },
            fingerprint: 0,
        };
        list.fingerprint = list.compute_fingerprint()?;
        Ok(list)
    }

    /// Reads and indexes a task list from a file, or from standard input when `path` is
    /// `-` (copied to an unnamed temporary file first).
    ///
    /// # Errors
    /// The file is missing or unreadable, is not UTF-8, or (a named file, not stdin)
    /// holds no command.
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let stdin = path.as_os_str() == "-";
        let file = if stdin {
            spool_stdin()
                .map_err(|e| CliError::input(format!("cannot read the tasks from stdin: {e}")))?
        } else {
            open_seekable(path).map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        " (to run a command on arguments from stdin, as `parallel {0}`, write: sturdy run '{0}' :::: -)",
                        path.display()
                    )
                } else {
                    String::new()
                };
                CliError::input(format!(
                    "cannot read tasks file {}: {e}{hint}",
                    path.display()
                ))
            })?
        };
        let name = if stdin {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        Self::parse_file(file, &name, stdin)
    }

    /// How many commands the list holds.
    pub(crate) fn len(&self) -> usize {
        match &self.inner {
            Inner::List { count, .. } => *count,
            Inner::Arguments { total, .. } => *total as usize,
        }
    }

    /// The largest task number (the last command's line in a task list).
    pub(crate) fn max_number(&self) -> u32 {
        match &self.inner {
            Inner::List { last, .. } => *last,
            Inner::Arguments { total, .. } => *total as u32,
        }
    }

    /// The task numbers, increasing.
    pub(crate) fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        let (skipped, last): (&[u32], u32) = match &self.inner {
            Inner::List { skipped, last, .. } => (skipped, *last),
            Inner::Arguments { total, .. } => (&[], *total as u32),
        };
        let mut k = 0usize;
        (1..=last).filter(move |&n| {
            if skipped.get(k) == Some(&n) {
                k += 1;
                false
            } else {
                true
            }
        })
    }

    /// The `i`-th task number (from 0), if there are more than `i` tasks.
    pub(crate) fn number_at(&self, i: usize) -> Option<u32> {
        if i >= self.len() {
            return None;
        }
        let Inner::List { skipped, .. } = &self.inner else {
            return Some(i as u32 + 1);
        };
        // The number n with n - (skipped lines before it) = i + 1.
        let mut k = 0usize;
        loop {
            let n = (i + 1 + k) as u32;
            let k2 = skipped.partition_point(|&s| s <= n);
            if k2 == k {
                return Some(n);
            }
            k = k2;
        }
    }

    /// The index of task `n` in [`TaskList::numbers`], if `n` is a task.
    pub(crate) fn index_of(&self, n: u32) -> Option<usize> {
        if n == 0 || n > self.max_number() {
            return None;
        }
        match &self.inner {
            Inner::List { skipped, .. } => match skipped.binary_search(&n) {
                Ok(_) => None,
                Err(before) => Some(n as usize - 1 - before),
            },
            Inner::Arguments { .. } => Some(n as usize - 1),
        }
    }

    /// The command of task `n`, if `n` is a task (read back from the list, expanded
    /// in argument mode).
    pub(crate) fn command(&self, n: u32) -> Option<Cow<'_, str>> {
        self.with_command(n, |c| c.to_owned()).map(Cow::Owned)
    }

    /// Calls `f` with the command of task `n`, if `n` is a task (without copying it
    /// out of a task list).
    pub(crate) fn with_command<T>(&self, n: u32, f: impl FnOnce(&str) -> T) -> Option<T> {
        self.index_of(n)?;
        match &self.inner {
            Inner::List { lines, .. } => {
                lines.with(u64::from(n) - 1, |line| f(command_of(line).unwrap_or("")))
            }
            Inner::Arguments { template, .. } => {
                Some(f(&template.expand(&self.try_args(n)?, u64::from(n))))
            }
        }
    }

    /// Whether the task list (or a `::::` file) was changed in place under the run, so
    /// that a task's command could not be read back as it was fingerprinted: that task
    /// and those after it were not dispatched.
    pub(crate) fn changed(&self) -> bool {
        match &self.inner {
            Inner::List { lines, .. } => lines.changed(),
            Inner::Arguments { sources, .. } => sources.iter().any(Values::changed),
        }
    }

    /// The arguments of task `n` in argument mode (one per input source, or the
    /// columns with `--colsep`), for `--tag`, `--tagstring` and `--results`; empty in
    /// command-list mode and for a number that is no task.
    pub(crate) fn args(&self, n: u32) -> Vec<String> {
        self.try_args(n).unwrap_or_default()
    }

    /// [`TaskList::args`], or `None` when a `::::` file cannot be read back as it was
    /// indexed.
    fn try_args(&self, n: u32) -> Option<Vec<String>> {
        let Inner::Arguments {
            sources,
            colsep,
            total,
            ..
        } = &self.inner
        else {
            return Some(Vec::new());
        };
        if n == 0 || u64::from(n) > *total {
            return Some(Vec::new());
        }
        // The combination's index in each source: the last one varies fastest.
        let mut rest = u64::from(n) - 1;
        let mut index = vec![0usize; sources.len()];
        for (k, v) in sources.iter().enumerate().rev() {
            let len = v.len() as u64;
            index[k] = (rest % len) as usize;
            rest /= len;
        }
        let mut args = Vec::with_capacity(sources.len());
        for (v, &i) in sources.iter().zip(&index) {
            let value = v.get(i)?;
            match colsep {
                Some(re) => args.extend(re.split(&value).map(str::to_owned)),
                None => args.push(value),
            }
        }
        Some(args)
    }

    /// Whether the list is of argument mode.
    pub(crate) fn is_arguments(&self) -> bool {
        matches!(self.inner, Inner::Arguments { .. })
    }

    /// Checks every command (NUL bytes, [`MAX_COMMAND`]) and computes the fingerprint,
    /// one command at a time. The rule: the CRC-64 (XZ) of the number of commands, then
    /// each command's length and bytes, then, when the task numbers are not `1..=len`
    /// (blank or comment lines in a task list), `numbers` and each number (a list
    /// without blank or comment lines keeps the fingerprint it had before task numbers
    /// were line numbers, as its numbers did not change). The whole list is read and
    /// fingerprinted before a run starts: a resume of an edited list is refused before
    /// anything runs.
    fn compute_fingerprint(&self) -> Result<u64, CliError> {
        let mut digest = CRC64.digest();
        digest.update(&(self.len() as u64).to_le_bytes());
        let mut dense = true;
        let args = self.is_arguments();
        for (n, i) in self.numbers().zip(1u32..) {
            dense &= n == i;
            let checked = self.with_command(n, |c| {
                if args {
                    if c.contains('\0') {
                        return Err(CliError::input(format!(
                            "task {n}: the command cannot hold a NUL byte"
                        )));
                    }
                    if c.len() > MAX_COMMAND {
                        return Err(CliError::input(format!(
                            "task {n}: the command is {} bytes; a command can be at most {MAX_COMMAND} bytes (Linux's MAX_ARG_STRLEN)",
                            c.len()
                        )));
                    }
                }
                digest.update(&(c.len() as u64).to_le_bytes());
                digest.update(c.as_bytes());
                Ok(())
            });
            match checked {
                Some(r) => r?,
                None => {
                    return Err(CliError::runtime(format!(
                        "task {n}: cannot read the task list back (was it changed while being read?)"
                    )));
                }
            }
        }
        if !dense {
            digest.update(b"numbers");
            for n in self.numbers() {
                digest.update(&n.to_le_bytes());
            }
        }
        Ok(digest.finalize())
    }
}

/// One input source of argument mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The values after a `:::`.
    Args(Vec<String>),
    /// A file named after `::::` or by `-a`: one value per line (`-` is stdin).
    File(PathBuf),
}

/// The lines of an argument file (`-` reads stdin): each line one value, as GNU
/// parallel reads them (a blank line is an empty value; no comments; a file that is a
/// single line feed holds no value).
fn read_arguments(path: &Path) -> Result<Values, CliError> {
    let (file, name) = if path.as_os_str() == "-" {
        let f = spool_stdin()
            .map_err(|e| CliError::input(format!("cannot read arguments from stdin: {e}")))?;
        (f, "<stdin>".to_owned())
    } else {
        let f = open_seekable(path).map_err(|e| {
            CliError::input(format!("cannot read argument file {}: {e}", path.display()))
        })?;
        (f, path.display().to_string())
    };
    let lines = LineFile::index(file, 0, |i, value| {
        if value.contains('\0') {
            return Err(IndexError::Cli(CliError::input(format!(
                "argument file {name}, line {}: a value cannot hold a NUL byte",
                i + 1
            ))));
        }
        Ok(())
    })
    .map_err(|e| match e {
        IndexError::Line(LineError::Io(e)) => {
            CliError::input(format!("cannot read argument file {name}: {e}"))
        }
        IndexError::Line(LineError::NotUtf8 { line, byte }) => CliError::input(format!(
            "argument file {name}, line {line}: not UTF-8 (byte {byte} of the file)"
        )),
        IndexError::Cli(e) => e,
    })?;
    if lines.len() == 1 && lines.with(0, str::is_empty) == Some(true) {
        return Ok(Values::from_vec(&[]));
    }
    Ok(Values::File(lines))
}

/// Resume planning (`sturdy_farm::local::resume`) reads the list through this.
impl sturdy_farm::local::TaskCommands for TaskList {
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn len(&self) -> usize {
        Self::len(self)
    }
    fn max_number(&self) -> u32 {
        Self::max_number(self)
    }
    fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        Self::numbers(self)
    }
    fn number_at(&self, i: usize) -> Option<u32> {
        Self::number_at(self, i)
    }
    fn index_of(&self, n: u32) -> Option<usize> {
        Self::index_of(self, n)
    }
    fn command(&self, n: u32) -> Option<Cow<'_, str>> {
        Self::command(self, n)
    }
    fn command_is(&self, n: u32, text: &str) -> Option<bool> {
        self.with_command(n, |want| {
            sturdy_farm::local::journal::journals_as(want, text)
        })
    }
}

/// The numbers of the tasks to run (those not in `skip`), in task order, produced one
/// at a time (for `--keep-order`, which must not hold a list of them).
pub(crate) fn todo_numbers(
    tasks: std::sync::Arc<TaskList>,
    skip: sturdy_farm::local::task_set::TaskSet,
) -> crate::output::Order {
    Box::new(
        (0..)
            .map_while(move |i| tasks.number_at(i))
            .filter(move |&n| !skip.contains(n)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    impl TaskList {
        fn commands(&self) -> Vec<String> {
            self.numbers()
                .map(|n| self.command(n).unwrap().into_owned())
                .collect()
        }
    }

    #[test]
    fn skips_comments_and_blank_lines() {
        let t = TaskList::parse(
            "# header\n\necho a\r\n   # indented comment\n  echo b\n\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            t.commands(),
            vec!["echo a".to_owned(), "  echo b".to_owned()]
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_command() {
        let t = TaskList::parse("\u{feff}echo a\r\necho b\n", "t").unwrap();
        assert_eq!(t.commands(), vec!["echo a".to_owned(), "echo b".to_owned()]);
        let plain = TaskList::parse("echo a\necho b\n", "t").unwrap();
        assert_eq!(t.fingerprint, plain.fingerprint);
        // Only a leading one: elsewhere it is the command's own text.
        let t = TaskList::parse("echo a\n\u{feff}echo b\n", "t").unwrap();
        assert_eq!(t.commands()[1], "\u{feff}echo b");
        // A list that is only a mark (and a comment) holds no command.
        assert!(TaskList::parse("\u{feff}# c\n", "t").is_err());
    }

    #[test]
    fn empty_list_is_an_error_naming_the_source() {
        let e = TaskList::parse("# only a comment\n\n", "jobs.txt").unwrap_err();
        assert!(e.to_string().contains("jobs.txt holds no command"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn task_numbers_are_line_numbers() {
        let t = TaskList::parse("# c\necho a\n\necho b\n", "t").unwrap();
        assert_eq!(t.numbers().collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(t.command(4).as_deref(), Some("echo b"));
        assert_eq!(t.command(3), None);
        assert_eq!(t.max_number(), 4);
        assert_eq!(t.index_of(2), Some(0));
        assert_eq!(t.index_of(4), Some(1));
        assert_eq!(
            (t.number_at(0), t.number_at(1), t.number_at(2)),
            (Some(2), Some(4), None)
        );
        // Trailing blank and comment lines are no concern of the numbering.
        let t = TaskList::parse("\n\na\n# c\n\nb\nc\n\n# end\n", "t").unwrap();
        assert_eq!(t.numbers().collect::<Vec<_>>(), vec![3, 6, 7]);
        assert_eq!(
            (0..4).map(|i| t.number_at(i)).collect::<Vec<_>>(),
            [Some(3), Some(6), Some(7), None]
        );
        assert_eq!(t.max_number(), 7);
        assert_eq!(t.command(6).as_deref(), Some("b"));
    }

    #[test]
    fn argument_files_are_read_back_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        let lines: Vec<String> = (1..=3000).map(|i| format!("v{i}")).collect();
        std::fs::write(&a, lines.join("\n") + "\n").unwrap();
        let template = Template::parse(&["echo".to_owned(), "{}".to_owned()], false);
        let sources = [
            Source::File(a.clone()),
            Source::Args(vec!["x".into(), "y".into()]),
        ];
        let t = TaskList::from_arguments(&template, &sources, None, MAX_TASKS).unwrap();
        assert_eq!(t.len(), 6000);
        assert_eq!(t.args(5999), vec!["v3000".to_owned(), "x".to_owned()]);
        assert_eq!(t.args(2), vec!["v1".to_owned(), "y".to_owned()]);
        // A file that is one line feed holds no value.
        std::fs::write(&a, "\n").unwrap();
        let t = TaskList::from_arguments(&template, &[Source::File(a)], None, MAX_TASKS).unwrap();
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn fingerprint_tells_lists_apart() {
        let a = TaskList::parse("echo a\necho b\n", "t").unwrap();
        let same = TaskList::parse("echo a\necho b", "t").unwrap();
        // Other task numbers (a comment moved the commands down) are another list.
        let renumbered = TaskList::parse("# c\necho a\n\necho b", "t").unwrap();
        let swapped = TaskList::parse("echo b\necho a\n", "t").unwrap();
        let joined = TaskList::parse("echo aecho b\n", "t").unwrap();
        assert_eq!(a.fingerprint, same.fingerprint);
        assert_ne!(a.fingerprint, renumbered.fingerprint);
        assert_ne!(a.fingerprint, swapped.fingerprint);
        assert_ne!(a.fingerprint, joined.fingerprint);
    }

    #[test]
    fn nul_bytes_and_overlong_commands_are_refused_by_line() {
        let e = TaskList::parse("echo a\n# c\necho a\0b\n", "t.txt").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("t.txt, line 3: "), "{e}");
        assert!(e.to_string().contains("NUL"), "{e}");
        let longest = "x".repeat(MAX_COMMAND);
        assert_eq!(
            TaskList::parse(&longest, "t").unwrap().commands()[0].len(),
            MAX_COMMAND
        );
        let e = TaskList::parse(&format!("true\n{longest}y\n"), "t.txt").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: the command is 131072 bytes"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn non_utf8_names_the_line() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"echo a\necho \xff\n").unwrap();
        let e = TaskList::parse_file(f, "t.txt", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tasks file t.txt, line 2: not UTF-8 (byte 12 of the file)"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn missing_file_is_an_input_error() {
        let e = TaskList::load(Path::new("/nonexistent/sturdy/tasks.txt")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/sturdy/tasks.txt"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
    }
}
