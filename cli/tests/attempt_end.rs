//! An attempt's processes end with the attempt (red-team defect 1), and a timed-out
//! command's `SIGTERM` grace lasts until its whole process group is gone (defect 5).
//! Counted by the commands' own side effects: each attempt records the pids it leaves
//! behind, and each attempt's first act is to record any earlier one still alive.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The live pids recorded by `bg TASK PID` lines; kills them, so that a failing run of
/// this test leaves nothing behind.
fn reap_leftovers(effects: &str) -> Vec<String> {
    let mut left = Vec::new();
    for l in effects.lines().filter(|l| l.starts_with("bg ")) {
        let pid: i32 = l.rsplit(' ').next().unwrap().parse().unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if alive(pid) && comm.trim() == "sleep" {
            left.push(l.to_owned());
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
    left
}

fn run(dir: &Path, lines: &[String], extra: &[&str]) -> std::process::Output {
    let list = write_tasks(dir, "tasks.txt", lines);
    sturdy()
        .args([
            "run",
            "--workers",
            "1",
            "--backoff-base",
            "10ms",
            "--state-dir",
        ])
        .arg(dir.join("state"))
        .args(extra)
        .arg(&list)
        .output()
        .unwrap()
}

#[test]
fn nothing_an_attempt_started_outlives_it_whether_it_fails_times_out_or_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let fx = fx.display();
    // Every attempt: note any earlier attempt's leftover that is still alive (not a
    // zombie), then leave three sleeps behind, one in the group, one `setsid`'d out of
    // it, and one out of it without the mark either (`env -i`), and record their pids.
    let prologue = format!(
        "echo start $STURDY_TASK $STURDY_ATTEMPT >> {fx}; \
         for p in $(sed -n 's/^bg [0-9]* //p' {fx}); do \
           [ -e /proc/$p ] && ! grep -q '^State:[[:space:]]*Z' /proc/$p/status 2>/dev/null && \
           echo alive-at-start $STURDY_TASK $STURDY_ATTEMPT $p >> {fx}; \
         done; \
         sleep 30 </dev/null >/dev/null 2>&1 & echo bg $STURDY_TASK $! >> {fx}; \
         setsid sleep 30 </dev/null >/dev/null 2>&1 & echo bg $STURDY_TASK $! >> {fx}; \
         env -i setsid sleep 30 </dev/null >/dev/null 2>&1 & echo bg $STURDY_TASK $! >> {fx};"
    );
    let out = run(
        dir.path(),
        &[
            // Fails, then succeeds.
            format!("{prologue} [ $STURDY_ATTEMPT = 1 ] && exit 1; exit 0"),
            // Times out (its shell runs the TERM trap and exits), then succeeds.
            format!("{prologue} [ $STURDY_ATTEMPT = 1 ] && sleep 30; exit 0"),
            // Succeeds at once.
            format!("{prologue} exit 0"),
        ],
        &[
            "--max-attempts",
            "2",
            "--task-timeout",
            "1s",
            "--kill-grace",
            "300ms",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let effects = std::fs::read_to_string(dir.path().join("effects")).unwrap();
    // Checked before anything else can fail, so that the leftovers are always killed.
    let left = reap_leftovers(&effects);
    let mut starts: Vec<&str> = effects
        .lines()
        .filter(|l| l.starts_with("start "))
        .collect();
    starts.sort_unstable();
    assert_eq!(
        starts,
        [
            "start 1 1",
            "start 1 2",
            "start 2 1",
            "start 2 2",
            "start 3 1"
        ],
        "{effects}"
    );
    assert_eq!(
        effects.lines().filter(|l| l.starts_with("bg ")).count(),
        15,
        "{effects}"
    );
    let alive_at_start: Vec<&str> = effects
        .lines()
        .filter(|l| l.starts_with("alive-at-start"))
        .collect();
    assert_eq!(
        alive_at_start,
        Vec::<&str>::new(),
        "a later attempt ran beside an earlier one's processes:\n{effects}"
    );
    assert_eq!(
        left,
        Vec::<String>::new(),
        "processes alive after the run ended:\n{effects}"
    );
    let j = journal(&dir.path().join("state"));
    let kinds: Vec<(u32, u32, &str)> = j
        .iter()
        .map(|l| (l.task, l.attempt, l.kind.as_str()))
        .collect();
    assert!(
        kinds.contains(&(2, 1, "task_timeout")),
        "task 2's first attempt timed out: {j:?}"
    );
    assert_exactly_once(&j, 3);
}

#[test]
fn the_kill_grace_lasts_until_the_group_is_gone_not_until_sh_exits() {
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    let fx = fx.display();
    // The outer `sh` does not exec the inner one (a command follows), so it dies on
    // SIGTERM at once; the inner shell's trap needs 300 ms to clean up.
    let out = run(
        dir.path(),
        &[format!(
            "sh -c 'trap \"sleep 0.3; echo cleaned >> {fx}; exit 0\" TERM; \
             echo started >> {fx}; sleep 30 & wait'; echo after >> {fx}"
        )],
        &[
            "--max-attempts",
            "1",
            "--task-timeout",
            "500ms",
            "--kill-grace",
            "5s",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let effects = std::fs::read_to_string(dir.path().join("effects")).unwrap();
    assert_eq!(effects, "started\ncleaned\n", "{err}");
    let j = journal(&dir.path().join("state"));
    assert_eq!(j.len(), 1, "{j:?}");
    assert_eq!(
        (j[0].kind.as_str(), j[0].next.as_str()),
        ("task_timeout", "gave_up"),
        "{j:?}"
    );
}

#[test]
fn a_python_term_handler_not_execed_by_sh_finishes_within_the_grace() {
    if !Command::new("python3")
        .arg("-c")
        .arg("0")
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("effects");
    // The red-team's command: `cd` first, so that `sh` cannot exec python.
    let out = run(
        dir.path(),
        &[format!(
            "cd /tmp && python3 -c \"import signal,time,sys; \
             signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.5), \
             open('{}','a').write('cleaned\\n'), sys.exit(0))); \
             open('{}','a').write('started\\n'); time.sleep(100)\"",
            fx.display(),
            fx.display()
        )],
        &[
            "--max-attempts",
            "1",
            // Long enough for python to start and install its handler on a loaded
            // machine (at 1 s, CI at load 9 sent the TERM before the handler existed).
            "--task-timeout",
            "5s",
            "--kill-grace",
            "5s",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        std::fs::read_to_string(&fx).unwrap_or_default(),
        "started\ncleaned\n",
        "{err}"
    );
}
