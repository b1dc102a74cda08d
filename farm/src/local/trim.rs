//! What the state directory keeps of a task that ended: [`trim_outputs`].

use super::state_dir::StateDir;

/// The most of an ended task's stderr the state directory keeps, in bytes (its tail).
pub const STDERR_TAIL: u64 = 4096;

/// Bounds what the state directory keeps of a task that ended with attempt `last`
/// (its output printed and saved, its attempts journaled): the output files of the
/// `attempts` journaled by this run are removed but one, the mark that the task ended:
/// the last attempt's stderr cut to its last [`STDERR_TAIL`] bytes, or, when that
/// attempt wrote nothing to stderr (the worker then made no `.err` file), its emptied
/// stdout file renamed to `.err` (no file is created for it). The mark is what `resume`
/// reads: an `.err` without its `.out` is an ended task (an attempt in flight has its
/// `.out`), and a directory whose journal is gone is refused while `out/` holds any.
/// Files of attempts this run did not journal (one in flight when an earlier master
/// died) are kept. Best effort: a file that cannot be removed or cut stays whole.
pub fn trim_outputs(state: &StateDir, task: u32, attempts: &[u32], last: u32) {
    for &a in attempts {
        if a != last {
            let _ = std::fs::remove_file(state.output(task, a, "out"));
            let _ = std::fs::remove_file(state.output(task, a, "err"));
        }
    }
    let (out, err) = (
        state.output(task, last, "out"),
        state.output(task, last, "err"),
    );
    match std::fs::metadata(&err) {
        Ok(meta) => {
            let _ = std::fs::remove_file(&out);
            if meta.len() > STDERR_TAIL
                && let Ok(bytes) = std::fs::read(&err)
            {
                let tail = &bytes[bytes.len() - STDERR_TAIL as usize..];
                let tmp = err.with_extension("err.tmp");
                if std::fs::write(&tmp, tail).is_ok() {
                    let _ = std::fs::rename(&tmp, &err);
                }
            }
        }
        Err(_) => {
            // A quiet attempt's `.out` is a hard link to the state directory's blank
            // (see `StateDir::blank`), empty already: it is renamed as it is.
            let emptied = match std::fs::metadata(&out) {
                Ok(meta) if meta.len() == 0 => true,
                Ok(_) => std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&out)
                    .is_ok(),
                Err(_) => false,
            };
            if emptied {
                let _ = std::fs::rename(&out, &err);
            }
        }
    }
}
