//! [`TaskCommands`]: what resume planning needs to know of a task list.

use std::borrow::Cow;

/// A run's task list as resume planning reads it: numbered commands (task numbers
/// from 1, increasing, possibly with gaps where a task file has blank or comment
/// lines) and the fingerprint that identifies the list in the state directory.
pub trait TaskCommands {
    /// The fingerprint of the list (what the state directory's identity records).
    fn fingerprint(&self) -> u64;

    /// How many commands the list holds.
    fn len(&self) -> usize;

    /// Whether the list holds no command.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest task number (0 for an empty list).
    fn max_number(&self) -> u32;

    /// The task numbers, increasing.
    fn numbers(&self) -> impl Iterator<Item = u32> + '_;

    /// The `i`-th task number (from 0), if there are more than `i` tasks.
    fn number_at(&self, i: usize) -> Option<u32>;

    /// The index of task `n` in [`TaskCommands::numbers`], if `n` is a task.
    fn index_of(&self, n: u32) -> Option<usize>;

    /// The command of task `n`, if `n` is a task.
    fn command(&self, n: u32) -> Option<Cow<'_, str>>;

    /// Whether `text`, a journal line's command, is task `n`'s command as the journal
    /// writes it ([`journals_as`](super::journal::journals_as); `None` if `n` is not a
    /// task). The default compares [`TaskCommands::command`]; a list that reads its text
    /// back from a file can compare without a copy.
    fn command_is(&self, n: u32, text: &str) -> Option<bool> {
        self.command(n)
            .map(|c| super::journal::journals_as(&c, text))
    }
}

/// A shared list reads as the list.
impl<T: TaskCommands + ?Sized> TaskCommands for std::sync::Arc<T> {
    fn fingerprint(&self) -> u64 {
        (**self).fingerprint()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn max_number(&self) -> u32 {
        (**self).max_number()
    }
    fn numbers(&self) -> impl Iterator<Item = u32> + '_ {
        (**self).numbers()
    }
    fn number_at(&self, i: usize) -> Option<u32> {
        (**self).number_at(i)
    }
    fn index_of(&self, n: u32) -> Option<usize> {
        (**self).index_of(n)
    }
    fn command(&self, n: u32) -> Option<Cow<'_, str>> {
        (**self).command(n)
    }
    fn command_is(&self, n: u32, text: &str) -> Option<bool> {
        (**self).command_is(n, text)
    }
}
