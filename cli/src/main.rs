//! `sturdy`: a fault-tolerant task farm (`sturdy run`) and a host health report
//! (`sturdy probe`).
//!
//! `sturdy run TASKS` runs every shell command of TASKS on worker processes that may
//! crash, hang or fail, and loses nothing and repeats nothing: failures are classified
//! and retried with backoff, a crashed worker's task moves to another worker, a worker
//! whose circuit breaker is open gets no work, every attempt is journaled, and
//! `sturdy run --resume` after a crash of the master runs only what had not finished.
//! The decisions are the core's ledger's (`sturdy_core::manager`), driven by the tokio
//! farm's supervisor (`sturdy_farm::supervisor`) and the local farm's bookkeeping
//! (`sturdy_farm::local::run_book`); this crate holds the argument parsing, the output
//! and the wiring of the local farm's parts.
//!
//! `sturdy run COMMAND ::: ARGS` (and `:::: FILE`) is GNU parallel's argument mode
//! (`template`, `tasks`); each task's output reaches sturdy's stdout and stderr
//! (`output`), and the summary goes to stderr.
//!
//! Exit codes: 0 every task succeeded (or `--halt ...,success=N` stopped the run with
//! none failed); 1 some task failed for good, the run was interrupted or halted, or its
//! machinery failed; 2 bad input (nothing was run or overwritten). Not GNU parallel's
//! count of failed jobs: a count would collide with 2 for bad input.

/// `eprintln!` that never panics: a closed or broken stderr (`2>&1 | head -1`, a reader
/// that went away) must not stop a run; the journal, not the terminal, is its record.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` that never panics (see `eprintln!`).
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod engine_cmd;
mod engine_output;
mod error;
mod farm_metrics;
mod line_file;
mod options;
mod output;
mod probe_cmd;
mod report;
mod run;
mod simulate_cmd;
mod spool;
mod tasks;
mod template;

// The local farm's parts that moved into the library, under their old names.
use sturdy_farm::local::{
    health_gate, journal, process_fence, process_pool, resume, state_dir, worker,
};

use std::time::Duration;

use clap::Parser;

use crate::error::{CliError, EXIT_BAD_INPUT};
use crate::options::{Cli, Command};

/// The command line with `--` put before the first `:::` or `::::` (unless a `--` is
/// already there): every word from the first input source on is the command's or an
/// argument, never a sturdy option, as in GNU parallel (`::: a -k b` is three
/// arguments; a glob that matches a file named `--dry-run` does not change the run).
fn sources_after_double_dash(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let has_dash_dash = args.iter().any(|a| a == "--");
    if let Some(i) = args.iter().position(|a| a == ":::" || a == "::::")
        && !has_dash_dash
    {
        args.insert(i, "--".into());
    }
    args
}

/// Makes a write past the file size limit (`ulimit -f`, `RLIMIT_FSIZE`) fail with
/// `EFBIG`, which the farm reports as a storage fault naming the file (the master stops
/// and exits 1, a worker reports the attempt's output as unwritable), instead of
/// `SIGXFSZ` killing the process without a word. A handler, not `SIG_IGN`: `exec`
/// resets it, so the commands run keep the default disposition.
fn survive_the_file_size_limit() {
    let hit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, hit) {
        eprintln!("sturdy: warning: cannot handle SIGXFSZ: {e}");
    }
}

/// The fewest open files `sturdy run` starts with (`ulimit -n`): below it the runtime
/// could not even set up its signal handling.
const MIN_OPEN_FILES: u64 = 64;

fn main() {
    survive_the_file_size_limit();
    let cli = match Cli::try_parse_from(sources_after_double_dash(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result: Result<i32, CliError> = match cli.command {
        Command::Run(args) => match process_pool::raise_open_file_limit() {
            Some(n) if n < MIN_OPEN_FILES => Err(CliError::input(format!(
                "the open-file limit (ulimit -n) is {n}, hard limit included; sturdy run needs at least {MIN_OPEN_FILES} (its runtime, journal and state directory, two pipes per worker): raise it"
            ))),
            _ => run::run(*args),
        },
        Command::Probe(args) => probe_cmd::run(&args),
        Command::Simulate(args) => simulate_cmd::run(&args),
        Command::Agent(args) => engine_cmd::agent(&args),
        Command::Worker(args) => Ok(worker::run(Duration::from_millis(args.heartbeat_ms.max(1)))),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sturdy: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
