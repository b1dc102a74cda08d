//! What the tasks print, as a GNU parallel user expects it: each task's stdout and
//! stderr copied whole to sturdy's stdout and stderr when the task ends (parallel's
//! default `--group`), in task order with `--keep-order`, each line prefixed with
//! `--tag` or `--tagstring`; and the optional `--results DIR` tree and `--joblog FILE`.
//!
//! A task ends with its last attempt: the one that succeeded, or the one after which it
//! failed for good. Only that attempt's output is printed (as parallel with `--retries`
//! does); every attempt's output stays in the state directory (`out/T.A.out|err`).
//! With `--json` nothing is printed (stdout carries the summary only).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::spool::{KEEP_ORDER_BUDGET, Spool, render};
use crate::template::Template;

/// Whether sturdy's stderr ends in the middle of a task's line (set by whoever prints
/// a task's stderr, the master's thread or a `--line-buffer` reader thread; read by the
/// progress lines, which then start on a new line).
static STDERR_MID_LINE: AtomicBool = AtomicBool::new(false);

/// Set once a task's output could not be written to stdout (a closed pipe: `| head`).
static STDOUT_BROKEN: AtomicBool = AtomicBool::new(false);

/// Notes the result of writing task output to stdout.
pub(crate) fn note_stdout<T>(r: io::Result<T>) {
    if r.is_err() {
        STDOUT_BROKEN.store(true, Ordering::SeqCst);
    }
}

/// Whether task output could not be written to stdout: the run stops dispatching and
/// keeps every output file, so that nothing printed nowhere is lost.
pub(crate) fn stdout_broken() -> bool {
    STDOUT_BROKEN.load(Ordering::SeqCst)
}

/// Records whether the task output just written to stderr ended mid-line.
pub(crate) fn set_stderr_mid_line(mid: bool) {
    STDERR_MID_LINE.store(mid, Ordering::SeqCst);
}

/// Whether stderr is mid-line; clears the mark (the caller starts a new line).
pub(crate) fn take_stderr_mid_line() -> bool {
    STDERR_MID_LINE.swap(false, Ordering::SeqCst)
}

/// How a task ended, for the joblog.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ending {
    pub(crate) task: u32,
    pub(crate) started: SystemTime,
    pub(crate) ended: SystemTime,
    pub(crate) exit: Option<i32>,
    pub(crate) signal: Option<i32>,
}

/// The tag of each line.
#[derive(Clone, Debug)]
pub(crate) enum Tag {
    /// `--tag`: the arguments joined by spaces (the command in command-list mode).
    Args,
    /// `--tagstring STR`.
    String(String),
}

/// A task's stdout and stderr, held until its turn.
type Held = (Spool, Spool);

/// The order `--keep-order` prints in: the task numbers this run will end, in order,
/// produced as they are needed.
pub(crate) type Order = Box<dyn Iterator<Item = u32> + Send>;

/// `--keep-order`'s queue: the order, the task whose turn it is, and the output of
/// those that finished ahead of their turn (in memory within `budget`, spilled to
/// temporary files past it: see [`crate::spool`]).
struct KeepOrder {
    order: Order,
    next: Option<u32>,
    pending: BTreeMap<u32, Held>,
    /// Bytes of the in-memory budget left.
    budget: usize,
}

/// The printer of the tasks' output.
pub(crate) struct TaskOutput {
    /// Whether output is printed at all (not with `--json`).
    echo: bool,
    tag: Option<Tag>,
    results: Option<PathBuf>,
    joblog: Option<(File, PathBuf)>,
    /// `--keep-order`: the task numbers still to print, in order, and what finished
    /// ahead of its turn.
    order: Option<KeepOrder>,
    /// `--keep-order`: the tasks whose output could not be held until their turn (a
    /// full `$TMPDIR`), with the error: what is printed of them is incomplete.
    unheld: Vec<(u32, String)>,
    /// `--results`: the tasks whose output could not be saved there (a full disk, a
    /// path that is no directory), with the error: nothing else holds their output.
    unsaved: Vec<(u32, String)>,
    /// `--keep-order`: the tasks held until their turn that were printed since the last
    /// [`TaskOutput::take_printed`].
    printed: Vec<u32>,
}

/// A value as a path component of `--results`, as GNU parallel writes it (`\` as `\\`,
/// `/` as `\_`).
fn results_component(v: &str) -> String {
    v.replace('\\', "\\\\").replace('/', "\\_")
}

/// The directory of a task in the `--results` tree: `DIR/1/ARG1/2/ARG2/...`.
pub(crate) fn results_dir(dir: &Path, args: &[String]) -> PathBuf {
    let mut p = dir.to_path_buf();
    for (i, a) in args.iter().enumerate() {
        p.push((i + 1).to_string());
        p.push(results_component(a));
    }
    p
}

/// `text` with each line (the last one even without its newline) prefixed by `tag` and
/// a tab.
pub(crate) fn tagged(tag: &str, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(tag.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(line);
    }
    out
}

/// One joblog line (GNU parallel's columns: Seq, Host, Starttime, JobRuntime, Send,
/// Receive, Exitval, Signal, Command).
pub(crate) fn joblog_line(e: &Ending, received: usize, command: &str) -> String {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let runtime = e
        .ended
        .duration_since(e.started)
        .map_or(0.0, |d| d.as_secs_f64());
    format!(
        "{}\t:\t{:.3}\t{:>10.3}\t0\t{received}\t{}\t{}\t{command}\n",
        e.task,
        secs(e.started),
        runtime,
        e.exit.unwrap_or(-1),
        e.signal.unwrap_or(0),
    )
}

/// The joblog's header line.
pub(crate) const JOBLOG_HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

impl TaskOutput {
    /// A printer; `keep_order` gives the task numbers this run will end, in order.
    ///
    /// # Errors
    /// The joblog cannot be opened (it is created, or appended to when `append`).
    pub(crate) fn new(
        echo: bool,
        tag: Option<Tag>,
        results: Option<PathBuf>,
        joblog: Option<&Path>,
        append: bool,
        keep_order: Option<Order>,
    ) -> io::Result<Self> {
        let joblog = match joblog {
            Some(p) => {
                let fresh = !append || std::fs::metadata(p).map_or(true, |m| m.len() == 0);
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(p)?;
                if fresh {
                    f.write_all(JOBLOG_HEADER.as_bytes())?;
                }
                Some((f, p.to_path_buf()))
            }
            None => None,
        };
        Ok(Self {
            echo,
            tag,
            results,
            joblog,
            order: keep_order.map(|mut order| KeepOrder {
                next: order.next(),
                order,
                pending: BTreeMap::new(),
                budget: KEEP_ORDER_BUDGET,
            }),
            unheld: Vec::new(),
            unsaved: Vec::new(),
            printed: Vec::new(),
        })
    }

    /// The tasks whose output `--keep-order` could not hold until their turn (their
    /// output files must be kept: what was printed of them is incomplete), with why.
    pub(crate) fn unheld(&self) -> &[(u32, String)] {
        &self.unheld
    }

    /// The tasks whose output `--results` could not save (their output files must be
    /// kept: no other copy of their output exists), with why.
    pub(crate) fn unsaved(&self) -> &[(u32, String)] {
        &self.unsaved
    }

    /// Whether `--keep-order` holds task `task`'s output until its turn (printed later:
    /// its output files are its only lasting copy until then).
    pub(crate) fn holds(&self, task: u32) -> bool {
        self.order
            .as_ref()
            .is_some_and(|ko| ko.pending.contains_key(&task))
    }

    /// The tasks whose held output was printed since the last call.
    pub(crate) fn take_printed(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.printed)
    }

    /// A task ended with the attempt whose output files are `out` and `err`. Returns
    /// an error message for the user when `--results` or the joblog cannot be written.
    pub(crate) fn ended(
        &mut self,
        ending: &Ending,
        command: &str,
        args: &[String],
        out: &Path,
        err: &Path,
    ) -> Option<String> {
        if !self.echo && self.results.is_none() && self.joblog.is_none() {
            return None; // nothing reads the output (`--json`)
        }
        // The common case (printing only, untagged, in finishing order) copies the files
        // without holding them in memory.
        if self.echo && self.tag.is_none() && self.order.is_none() && self.results.is_none() {
            let problem = self.log_job(
                ending,
                std::fs::metadata(out).map_or(0, |m| m.len()),
                command,
            );
            self.copy(out, err);
            return problem;
        }
        let mut problem = None;
        if let Some(dir) = &self.results {
            let owned;
            let args = if args.is_empty() {
                owned = [command.to_owned()];
                &owned[..]
            } else {
                args
            };
            let d = results_dir(dir, args);
            let written = std::fs::create_dir_all(&d)
                .and_then(|()| copy_or_empty(out, &d.join("stdout")))
                .and_then(|()| copy_or_empty(err, &d.join("stderr")))
                .and_then(|()| std::fs::write(d.join("seq"), ending.task.to_string()));
            if let Err(e) = written {
                self.unsaved.push((ending.task, e.to_string()));
                problem = Some(format!("cannot write --results in {}: {e}", d.display()));
            }
        }
        let received = std::fs::metadata(out).map_or(0, |m| m.len());
        if let Some(p) = self.log_job(ending, received, command) {
            problem = Some(p);
        }
        if !self.echo {
            return problem;
        }
        let tag = self.tag.as_ref().map(|tag| match tag {
            Tag::Args if args.is_empty() => command.to_owned(),
            Tag::Args => args.join(" "),
            Tag::String(s) => Template::fill(s, args, u64::from(ending.task)),
        });
        let tag = tag.as_deref();
        let Some(ko) = &mut self.order else {
            // In finishing order: straight from the files, a chunk at a time.
            print_now(out, err, tag);
            return problem;
        };
        if ko.next == Some(ending.task) {
            // Its turn already: straight from the files too, held by nothing.
            print_now(out, err, tag);
            ko.next = ko.order.next();
        } else {
            // Held until its turn: in memory within the budget, in temporary files past it.
            let (mut so, mut se) = (Spool::default(), Spool::default());
            let budget = &mut ko.budget;
            let held = render(out, tag, |b| so.write(b, budget))
                .and_then(|_| render(err, tag, |b| se.write(b, budget)));
            if let Err(e) = held {
                self.unheld.push((ending.task, e.to_string()));
                problem = Some(format!(
                    "cannot hold task {}'s output for --keep-order: {e}",
                    ending.task
                ));
            }
            ko.pending.insert(ending.task, (so, se));
        }
        while let Some(t) = ko.next {
            let Some(held) = ko.pending.remove(&t) else {
                break;
            };
            print_held(held, &mut ko.budget);
            self.printed.push(t);
            ko.next = ko.order.next();
        }
        problem
    }

    /// Task `task` ended with nothing to print here (a multi-host coordinator's task
    /// that finished before it attached, or whose output stays on its host):
    /// `--keep-order` moves past it and prints what waited behind it.
    pub(crate) fn skip(&mut self, task: u32) {
        let Some(ko) = &mut self.order else {
            return;
        };
        ko.pending.insert(task, Held::default());
        while let Some(t) = ko.next {
            let Some(held) = ko.pending.remove(&t) else {
                break;
            };
            print_held(held, &mut ko.budget);
            ko.next = ko.order.next();
        }
    }

    /// Prints what `--keep-order` still holds (tasks whose turn never came, because an
    /// earlier one did not end), in the order kept (task order, or `--shuf`'s).
    pub(crate) fn flush(&mut self) {
        if let Some(ko) = &mut self.order {
            while !ko.pending.is_empty()
                && let Some(t) = ko.next
            {
                if let Some(held) = ko.pending.remove(&t) {
                    print_held(held, &mut ko.budget);
                    self.printed.push(t);
                }
                ko.next = ko.order.next();
            }
            for (t, held) in std::mem::take(&mut ko.pending) {
                print_held(held, &mut ko.budget);
                self.printed.push(t);
            }
        }
    }

    /// Appends the task's joblog line, if there is a joblog; an error message if it
    /// cannot be written.
    fn log_job(&mut self, ending: &Ending, received: u64, command: &str) -> Option<String> {
        let (f, p) = self.joblog.as_mut()?;
        let line = joblog_line(
            ending,
            usize::try_from(received).unwrap_or(usize::MAX),
            command,
        );
        f.write_all(line.as_bytes())
            .err()
            .map(|e| format!("cannot write the joblog {}: {e}", p.display()))
    }

    /// Copies the output files to stdout and stderr.
    fn copy(&mut self, out: &Path, err: &Path) {
        if let Ok(mut f) = File::open(out) {
            let mut o = io::stdout().lock();
            note_stdout(io::copy(&mut f, &mut o).and_then(|_| o.flush()));
        }
        let Ok(mut f) = File::open(err) else { return };
        let len = f.metadata().map_or(0, |m| m.len());
        if len == 0 {
            return;
        }
        let mut e = io::stderr().lock();
        let _ = io::copy(&mut f, &mut e).and_then(|_| e.flush());
        // Whether it ended mid-line: its last byte.
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        set_stderr_mid_line(
            f.seek(SeekFrom::Start(len - 1)).is_ok()
                && f.read_exact(&mut last).is_ok()
                && last[0] != b'\n',
        );
    }
}

/// Copies `src` to `dst`; an absent `src` makes `dst` empty.
fn copy_or_empty(src: &Path, dst: &Path) -> io::Result<()> {
    match std::fs::copy(src, dst) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !src.exists() => std::fs::write(dst, b""),
        Err(e) => Err(e),
    }
}

/// Prints a task's held output to stdout and stderr.
/// Prints a task's output files `out` and `err` (each line tagged with `tag` and a tab
/// when there is one) to stdout and stderr, a chunk at a time.
fn print_now(out: &Path, err: &Path, tag: Option<&str>) {
    {
        let mut o = io::stdout().lock();
        note_stdout(render(out, tag, |b| o.write_all(b)).and_then(|_| o.flush()));
    }
    let mut e = io::stderr().lock();
    if let Ok((n, last)) = render(err, tag, |b| e.write_all(b)) {
        let _ = e.flush();
        if n > 0 {
            set_stderr_mid_line(last != Some(b'\n'));
        }
    }
}

fn print_held((out, err): Held, budget: &mut usize) {
    if !out.is_empty() {
        let mut o = io::stdout().lock();
        note_stdout(out.drain_to(&mut o, budget));
    } else {
        let _ = out.drain_to(&mut io::sink(), budget);
    }
    if !err.is_empty() {
        let mid = err.ends_mid_line();
        let mut e = io::stderr().lock();
        let _ = err.drain_to(&mut e, budget);
        set_stderr_mid_line(mid);
    }
}

/// `--line-buffer`'s printer (the process pool's
/// [`PrintLines`](sturdy_farm::local::process_pool::PrintLines)): complete lines of a
/// task's output, each prefixed by `tag` and a tab when there is one, to stderr (marking
/// whether it ended mid-line) or stdout (noting a failed write).
pub(crate) fn print_lines(tag: Option<&str>, chunk: &[u8], stderr: bool) {
    let tagged_text;
    let text = match tag {
        Some(t) => {
            tagged_text = tagged(t, chunk);
            &tagged_text[..]
        }
        None => chunk,
    };
    if stderr {
        let mut e = io::stderr().lock();
        set_stderr_mid_line(!text.ends_with(b"\n"));
        let _ = e.write_all(text).and_then(|()| e.flush());
    } else {
        let mut o = io::stdout().lock();
        note_stdout(o.write_all(text).and_then(|()| o.flush()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_paths_are_parallels() {
        // parallel --results res echo ::: 'a b' c/d ::: 1
        let d = results_dir(Path::new("res"), &["c/d".into(), "1".into()]);
        assert_eq!(d, PathBuf::from("res/1/c\\_d/2/1"));
        let d = results_dir(Path::new("res"), &["a b".into()]);
        assert_eq!(d, PathBuf::from("res/1/a b"));
    }

    #[test]
    fn every_line_is_tagged_even_the_last_unfinished_one() {
        assert_eq!(tagged("a", b"x\ny\n"), b"a\tx\na\ty\n");
        assert_eq!(tagged("a", b"x\ny"), b"a\tx\na\ty");
        assert_eq!(tagged("a", b""), b"");
    }

    #[test]
    fn joblog_lines_have_parallels_columns() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        let e = Ending {
            task: 2,
            started: t0,
            ended: t0 + std::time::Duration::from_millis(1500),
            exit: Some(3),
            signal: None,
        };
        assert_eq!(
            joblog_line(&e, 2, "echo 3; exit 3"),
            "2\t:\t1700000000.250\t     1.500\t0\t2\t3\t0\techo 3; exit 3\n"
        );
    }
}
