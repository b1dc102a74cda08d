//! The CLI's error: a message for the user and an exit code.

use std::fmt;

/// Exit code for bad input (a missing tasks file, a malformed option value, ...).
pub(crate) const EXIT_BAD_INPUT: i32 = 2;
/// Exit code when the run finished but some task failed for good, or was interrupted.
pub(crate) const EXIT_TASKS_FAILED: i32 = 1;

/// An error that ends the command: printed as `sturdy: <message>` with its exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: i32,
}

impl CliError {
    /// Bad input from the user: exit code 2.
    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_BAD_INPUT,
        }
    }

    /// A failure of the run itself (I/O on the state directory, a worker that cannot
    /// start): exit code 1.
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_TASKS_FAILED,
        }
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> i32 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<sturdy_farm::local::FarmError> for CliError {
    /// Bad input stays bad input (exit code 2); a failure of the run is exit code 1.
    fn from(e: sturdy_farm::local::FarmError) -> Self {
        match e.kind() {
            sturdy_farm::local::ErrorKind::Input => Self::input(e.to_string()),
            sturdy_farm::local::ErrorKind::Runtime => Self::runtime(e.to_string()),
        }
    }
}
