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

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::CliError;
use crate::template::Template;

/// The parsed task list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskList {
    /// The commands, in file order; `commands[i]` is task `numbers[i]`.
    pub(crate) commands: Vec<String>,
    /// The task number of each command: its line number in a task list (blank and
    /// comment lines have none), its combination's number in argument mode
    /// (`1..=len`). Increasing.
    pub(crate) numbers: Vec<u32>,
    /// In argument mode, each task's arguments (one per input source, or the columns
    /// with `--colsep`), for `--tag`, `--tagstring` and `--results`; empty in
    /// command-list mode.
    pub(crate) args: Vec<Vec<String>>,
    /// A CRC-64 fingerprint of the commands; a state directory remembers it so that
    /// `--resume` against a different list is refused.
    pub(crate) fingerprint: u64,
}

/// The longest command, in bytes: Linux refuses a longer single argument to `execve`
/// (`MAX_ARG_STRLEN` = 131 072 bytes, its terminating NUL included) with `E2BIG`.
pub(crate) const MAX_COMMAND: usize = 32 * 4096 - 1;

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

impl TaskList {
    /// Parses the text of a task list. `source` names it in errors.
    ///
    /// # Errors
    /// The list holds no command, or a line with a NUL byte or over [`MAX_COMMAND`]
    /// bytes.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Self, CliError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut commands: Vec<String> = Vec::new();
        let mut numbers: Vec<u32> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.strip_suffix('\r').unwrap_or(line);
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if l.contains('\0') {
                return Err(CliError::input(format!(
                    "tasks file {source}, line {}: a command cannot hold a NUL byte",
                    i + 1
                )));
            }
            if l.len() > MAX_COMMAND {
                return Err(CliError::input(format!(
                    "tasks file {source}, line {}: the command is {} bytes; a command can be at most {MAX_COMMAND} bytes (Linux's MAX_ARG_STRLEN)",
                    i + 1,
                    l.len()
                )));
            }
            commands.push(l.to_owned());
            numbers.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
        }
        if commands.is_empty() {
            return Err(CliError::input(format!(
                "tasks file {source} holds no command (blank lines and # comments are skipped)"
            )));
        }
        Ok(Self {
            fingerprint: fingerprint(&commands, &numbers),
            commands,
            numbers,
            args: Vec::new(),
        })
    }

    /// Builds the task list of argument mode: one task per combination of the
    /// sources' values (every combination, the last source varying fastest, as GNU
    /// parallel does), numbered from 1 in that order, each command the template
    /// expanded with that combination. `colsep` splits each value into columns. The
    /// fingerprint covers the expanded commands, so it covers the template and the
    /// arguments.
    ///
    /// # Errors
    /// A source is unreadable or not UTF-8; no combination; more than `max`
    /// combinations; an expanded command with a NUL byte or over [`MAX_COMMAND`] bytes.
    pub(crate) fn from_arguments(
        template: &Template,
        sources: &[Source],
        colsep: Option<&regex::Regex>,
        max: usize,
    ) -> Result<Self, CliError> {
        let mut values: Vec<Vec<String>> = Vec::with_capacity(sources.len());
        for source in sources {
            values.push(match source {
                Source::Args(a) => a.clone(),
                Source::File(path) => read_arguments(path)?,
            });
        }
        let total = values
            .iter()
            .try_fold(1usize, |n, v| n.checked_mul(v.len()))
            .filter(|&n| n <= max);
        let Some(total) = total else {
            return Err(CliError::input(format!(
                "the input sources make more than {max} combinations; a run takes at most {max} tasks (split the input)"
            )));
        };
        if total == 0 {
            return Err(CliError::input(
                "the input sources hold no argument (an empty ::: or :::: source makes no task)",
            ));
        }
        let mut commands = Vec::with_capacity(total);
        let mut all_args = Vec::with_capacity(total);
        let mut index = vec![0usize; values.len()];
        for seq in 1..=total {
            let mut args: Vec<String> = Vec::with_capacity(values.len());
            for (v, &i) in values.iter().zip(&index) {
                match colsep {
                    Some(re) => args.extend(re.split(&v[i]).map(str::to_owned)),
                    None => args.push(v[i].clone()),
                }
            }
            let command = template.expand(&args, seq as u64);
            if command.contains('\0') {
                return Err(CliError::input(format!(
                    "task {seq}: the command cannot hold a NUL byte"
                )));
            }
            if command.len() > MAX_COMMAND {
                return Err(CliError::input(format!(
                    "task {seq}: the command is {} bytes; a command can be at most {MAX_COMMAND} bytes (Linux's MAX_ARG_STRLEN)",
                    command.len()
                )));
            }
            commands.push(command);
            all_args.push(args);
            // The next combination: the last source varies fastest.
            for (k, i) in index.iter_mut().enumerate().rev() {
                *i += 1;
                if *i < values[k].len() {
                    break;
                }
                *i = 0;
            }
        }
        let numbers: Vec<u32> = (1..=commands.len() as u32).collect();
        Ok(Self {
            fingerprint: fingerprint(&commands, &numbers),
            commands,
            numbers,
            args: all_args,
        })
    }

    /// Reads and parses a task list from a file, or from standard input when `path` is
    /// `-`.
    ///
    /// # Errors
    /// The file is missing or unreadable, is not UTF-8, or holds no command.
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let bytes = if path.as_os_str() == "-" {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| CliError::input(format!("cannot read the tasks from stdin: {e}")))?;
            b
        } else {
            std::fs::read(path).map_err(|e| {
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
        let name = if path.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        Self::parse(&decode(bytes, &name)?, &name)
    }

    /// How many commands the list holds.
    pub(crate) fn len(&self) -> usize {
        self.commands.len()
    }

    /// The largest task number (the last command's line in a task list).
    pub(crate) fn max_number(&self) -> u32 {
        self.numbers.last().copied().unwrap_or(0)
    }

    /// The index in [`TaskList::commands`] of task `n`, if `n` is a task.
    pub(crate) fn index_of(&self, n: u32) -> Option<usize> {
        self.numbers.binary_search(&n).ok()
    }

    /// The command of task `n`, if `n` is a task.
    pub(crate) fn command(&self, n: u32) -> Option<&str> {
        self.index_of(n).map(|i| self.commands[i].as_str())
    }
}

/// The CRC-64 fingerprint of a list of commands (their count, then each one's length
/// and bytes), and of their task numbers when these are not `1..=len` (a list without
/// blank or comment lines keeps the fingerprint it had before task numbers were line
/// numbers, as its numbers did not change).
fn fingerprint(commands: &[String], numbers: &[u32]) -> u64 {
    let mut digest = CRC64.digest();
    digest.update(&(commands.len() as u64).to_le_bytes());
    for c in commands {
        digest.update(&(c.len() as u64).to_le_bytes());
        digest.update(c.as_bytes());
    }
    let dense = numbers.iter().zip(1u32..).all(|(&n, i)| n == i);
    if !dense {
        digest.update(b"numbers");
        for n in numbers {
            digest.update(&n.to_le_bytes());
        }
    }
    digest.finalize()
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
/// parallel reads them (a blank line is an empty value; no comments).
fn read_arguments(path: &Path) -> Result<Vec<String>, CliError> {
    let (bytes, name) = if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| CliError::input(format!("cannot read arguments from stdin: {e}")))?;
        (b, "<stdin>".to_owned())
    } else {
        let b = std::fs::read(path).map_err(|e| {
            CliError::input(format!("cannot read argument file {}: {e}", path.display()))
        })?;
        (b, path.display().to_string())
    };
    let text = decode(bytes, &name)?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split('\n').map(str::to_owned).collect())
}

/// The text of a task list, or an error naming the first line that is not UTF-8.
fn decode(bytes: Vec<u8>, source: &str) -> Result<String, CliError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        CliError::input(format!(
            "tasks file {source}, line {line}: not UTF-8 (byte {at} of the file)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comments_and_blank_lines() {
        let t = TaskList::parse(
            "# header\n\necho a\r\n   # indented comment\n  echo b\n\n",
            "t",
        )
        .unwrap();
        assert_eq!(t.commands, vec!["echo a".to_owned(), "  echo b".to_owned()]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_command() {
        let t = TaskList::parse("\u{feff}echo a\r\necho b\n", "t").unwrap();
        assert_eq!(t.commands, vec!["echo a".to_owned(), "echo b".to_owned()]);
        let plain = TaskList::parse("echo a\necho b\n", "t").unwrap();
        assert_eq!(t.fingerprint, plain.fingerprint);
        // Only a leading one: elsewhere it is the command's own text.
        let t = TaskList::parse("echo a\n\u{feff}echo b\n", "t").unwrap();
        assert_eq!(t.commands[1], "\u{feff}echo b");
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
        assert_eq!(t.numbers, vec![2, 4]);
        assert_eq!(t.command(4), Some("echo b"));
        assert_eq!(t.command(3), None);
        assert_eq!(t.max_number(), 4);
        assert_eq!(t.index_of(2), Some(0));
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
            TaskList::parse(&longest, "t").unwrap().commands[0].len(),
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
        let e = decode(b"echo a\necho \xff\n".to_vec(), "t.txt").unwrap_err();
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
