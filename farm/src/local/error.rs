//! The local farm's error: a message for the user and what kind of failure it is.

use std::fmt;

/// What kind of failure a [`FarmError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input (a state directory that is not a run's, a different task list, a run
    /// already in progress): nothing was run or changed.
    Input,
    /// A failure of the run itself (I/O on the state directory).
    Runtime,
}

/// An error of the local farm: its message names the path or field and the rule.
#[derive(Debug)]
pub struct FarmError {
    message: String,
    kind: ErrorKind,
}

impl FarmError {
    /// Bad input ([`ErrorKind::Input`]).
    pub fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: ErrorKind::Input,
        }
    }

    /// A failure of the run itself ([`ErrorKind::Runtime`]).
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: ErrorKind::Runtime,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for FarmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FarmError {}
