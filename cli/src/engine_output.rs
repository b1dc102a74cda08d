//! A multi-host run's task output at the coordinator: each finished task's output,
//! fetched from the engine by `sturdy_farm::coordinate` into `STATE/out`, printed by the
//! local farm's printer ([`TaskOutput`]: grouped per task in finishing order, stdout to
//! stdout and stderr to stderr, `--tag`/`--tagstring`, `--keep-order`, `--results`).
//!
//! `--line-buffer` is not offered: it prints lines while a task runs, and an agent ships
//! a task's output only once its end is final.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sturdy_farm::task_output::{Fetched, OutputSink, TaskEnd};

use crate::error::CliError;
use crate::options::Settings;
use crate::output::{Ending, Order, Tag, TaskOutput};
use crate::tasks::TaskList;

/// The printer, shared by the coordinator's hook and the command (which flushes it).
pub(crate) type Printer = Arc<Mutex<TaskOutput>>;

/// The printer for `settings` over `tasks`, and the sink that feeds it from the
/// coordinator (`dir`: where fetched output is written, the coordinator's `STATE/out`).
/// With `--json` nothing is printed; with `--results DIR` the output goes to DIR only
/// (as GNU parallel). Each task's fetched files are removed once printed (as the local
/// farm trims), unless `--keep-output`.
///
/// # Errors
/// None today; kept for the printer's own (a joblog it cannot open), which the
/// coordinator does not use (it writes its own joblog).
pub(crate) fn printer(
    settings: &Settings,
    tasks: &Arc<TaskList>,
    dir: PathBuf,
) -> Result<(Printer, OutputSink), CliError> {
    let tag = match (&settings.tagstring, settings.tag) {
        (Some(s), _) => Some(Tag::String(s.clone())),
        (None, true) => Some(Tag::Args),
        (None, false) => None,
    };
    // Commands and arguments only where the printer uses them (tags, --results), read
    // back from the list as each task's output comes (nothing held per task).
    let named = (tag.is_some() || settings.results.is_some()).then(|| Arc::clone(tasks));
    let keep_order = settings.keep_order.then(|| {
        let order: Vec<u32> = tasks.numbers().collect();
        Box::new(order.into_iter()) as Order
    });
    let output = TaskOutput::new(
        !settings.json && settings.results.is_none(),
        tag,
        settings.results.clone(),
        None,
        false,
        keep_order,
    )
    .map_err(|e| CliError::runtime(format!("cannot open the task output: {e}")))?;
    let printer: Printer = Arc::new(Mutex::new(output));
    let shared = Arc::clone(&printer);
    let keep_files = settings.keep_output;
    let hook = move |end: TaskEnd| {
        let mut p = shared.lock().unwrap_or_else(|e| e.into_inner());
        print_end(&mut p, named.as_deref(), end, keep_files);
    };
    Ok((
        printer,
        OutputSink {
            dir,
            hook: Box::new(hook),
        },
    ))
}

/// Prints one finished task's output (or moves `--keep-order` past it).
fn print_end(p: &mut TaskOutput, named: Option<&TaskList>, end: TaskEnd, keep_files: bool) {
    let TaskEnd::Finished {
        task,
        ended,
        output,
    } = end
    else {
        if let TaskEnd::Earlier(task) = end {
            p.skip(task.0);
        }
        return;
    };
    let now = SystemTime::now();
    let ending = Ending {
        task: task.0,
        started: now
            .checked_sub(Duration::from_millis(ended.runtime_ms))
            .unwrap_or(now),
        ended: now,
        exit: ended.exit,
        signal: ended.signal,
    };
    let (command, args) = named.map_or((String::new(), Vec::new()), |list| {
        (
            list.command(task.0).unwrap_or_default().into_owned(),
            list.args(task.0),
        )
    });
    let (command, args) = (command.as_str(), args.as_slice());
    // A quiet task has no files: absent paths print nothing (and make empty --results).
    let none = PathBuf::new();
    let (out, err) = match &output {
        Fetched::Files {
            out,
            err,
            truncated,
            host,
            kept,
        } => {
            if *truncated {
                eprintln!(
                    "sturdy: task {}'s output passed the {} MiB a task ships: what follows is cut; the whole of it stays on host {host} at {kept}.out and {kept}.err",
                    task.0,
                    sturdy_farm::engine::output::TASK_OUTPUT_CAP >> 20
                );
            }
            (out.as_path(), err.as_path())
        }
        Fetched::OnHost { host, kept, why } => {
            eprintln!(
                "sturdy: task {}'s output stays on host {host} at {kept}.out and {kept}.err ({why})",
                task.0
            );
            p.skip(task.0);
            return;
        }
        _ => (none.as_path(), none.as_path()),
    };
    if let Some(problem) = p.ended(&ending, command, args, out, err) {
        eprintln!("sturdy: warning: {problem}");
    }
    let unheld = p.unheld().last().is_some_and(|&(t, _)| t == task.0);
    if !keep_files && !unheld && !crate::output::stdout_broken() {
        remove(out);
        remove(err);
    }
}

/// Removes a fetched file once printed (none: nothing).
fn remove(path: &Path) {
    if !path.as_os_str().is_empty() {
        let _ = std::fs::remove_file(path);
    }
}
