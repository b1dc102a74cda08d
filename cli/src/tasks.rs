//! The task list: one shell command per line.
//!
//! Blank lines and lines whose first non-blank character is `#` are skipped; every other
//! line, with its trailing `\r` removed, is one command for `sh -c`. Task numbers count
//! the commands from 1 in file order (GNU parallel's `{#}`); they are what the journal,
//! the summary and `STURDY_TASK` show.

use std::io::Read;
use std::path::Path;

use crate::error::CliError;

/// The parsed task list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskList {
    /// The commands, in file order; task number `n` is `commands[n - 1]`.
    pub(crate) commands: Vec<String>,
    /// A CRC-64 fingerprint of the commands; a state directory remembers it so that
    /// `--resume` against a different list is refused.
    pub(crate) fingerprint: u64,
}

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

impl TaskList {
    /// Parses the text of a task list. `source` names it in errors.
    ///
    /// # Errors
    /// The list holds no command.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Self, CliError> {
        let commands: Vec<String> = text
            .lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| {
                let t = l.trim_start();
                !t.is_empty() && !t.starts_with('#')
            })
            .map(str::to_owned)
            .collect();
        if commands.is_empty() {
            return Err(CliError::input(format!(
                "tasks file {source} holds no command (blank lines and # comments are skipped)"
            )));
        }
        let mut digest = CRC64.digest();
        digest.update(&(commands.len() as u64).to_le_bytes());
        for c in &commands {
            digest.update(&(c.len() as u64).to_le_bytes());
            digest.update(c.as_bytes());
        }
        Ok(Self {
            commands,
            fingerprint: digest.finalize(),
        })
    }

    /// Reads and parses a task list from a file, or from standard input when `path` is
    /// `-`.
    ///
    /// # Errors
    /// The file is missing or unreadable, is not UTF-8, or holds no command.
    pub(crate) fn load(path: &Path) -> Result<Self, CliError> {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::input(format!("cannot read the tasks from stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|e| {
                CliError::input(format!("cannot read tasks file {}: {e}", path.display()))
            })?
        };
        let name = if path.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        Self::parse(&text, &name)
    }

    /// How many commands the list holds.
    pub(crate) fn len(&self) -> usize {
        self.commands.len()
    }
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
    fn empty_list_is_an_error_naming_the_source() {
        let e = TaskList::parse("# only a comment\n\n", "jobs.txt").unwrap_err();
        assert!(e.to_string().contains("jobs.txt holds no command"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn fingerprint_tells_lists_apart() {
        let a = TaskList::parse("echo a\necho b\n", "t").unwrap();
        let same = TaskList::parse("# c\necho a\n\necho b", "t").unwrap();
        let swapped = TaskList::parse("echo b\necho a\n", "t").unwrap();
        let joined = TaskList::parse("echo aecho b\n", "t").unwrap();
        assert_eq!(a.fingerprint, same.fingerprint);
        assert_ne!(a.fingerprint, swapped.fingerprint);
        assert_ne!(a.fingerprint, joined.fingerprint);
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
