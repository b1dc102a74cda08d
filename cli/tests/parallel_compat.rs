//! End to end: `sturdy run` as GNU parallel, against real processes, compared with what
//! GNU parallel (Debian's, `apt-get install -y parallel`) prints for the same input.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// GNU parallel, or a failure that says how to install it (never a silent skip).
fn parallel() -> Command {
    let found = Command::new("parallel")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "GNU parallel is needed for this test: apt-get update && apt-get install -y parallel"
    );
    let mut c = Command::new("parallel");
    // No citation notice, no ~/.parallel writes that could fail in a sandbox.
    c.env(
        "PARALLEL_HOME",
        std::env::temp_dir().join("sturdy-test-parallel-home"),
    );
    c
}

/// `sturdy run` with a fresh state directory under `dir`, quick retries.
fn sturdy_run(dir: &Path, state: &str, args: &[&str]) -> Output {
    sturdy()
        .current_dir(dir)
        .args(["run", "--state-dir", state, "--backoff-base", "0"])
        .args(args)
        .output()
        .unwrap()
}

fn run_parallel(dir: &Path, args: &[&str]) -> Output {
    let mut c = parallel();
    c.current_dir(dir).args(args);
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the same arguments under both (sturdy with `-k` semantics where asked) and
/// asserts that stdout is the same, returning it.
fn same_stdout(dir: &Path, state: &str, args: &[&str]) -> String {
    let s = sturdy_run(dir, state, args);
    let p = run_parallel(dir, args);
    assert_eq!(
        text(&s.stdout),
        text(&p.stdout),
        "sturdy run {args:?} vs parallel; sturdy stderr: {}",
        text(&s.stderr)
    );
    assert!(s.status.success(), "{}", text(&s.stderr));
    text(&s.stdout)
}

const NASTY: [&str; 7] = [
    "a/b.tar.gz",
    ".bashrc",
    "b/",
    "/x",
    "with space.txt",
    "it's $HOME \"q\"",
    "file.",
];

#[test]
fn replacement_strings_and_quoting_match_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["-k", "echo {#} {} {.} {/} {//} {/.}", ":::"];
    args.extend(NASTY);
    let out = same_stdout(dir.path(), "s1", &args);
    // An argument with spaces, quotes and `$` reached the command as one word.
    assert!(out.contains("6 it's $HOME \"q\" it's $HOME \"q\""), "{out}");
    // Without a replacement string the arguments are appended, each one word.
    let mut args = vec!["-k", "printf '<%s>\\n'", ":::"];
    args.extend(NASTY);
    let out = same_stdout(dir.path(), "s2", &args);
    assert!(out.contains("<it's $HOME \"q\">\n"), "{out}");
    // --dry-run prints the commands, quoted as parallel quotes them.
    let mut args = vec!["--dry-run", "-k", "echo {} {1/.}", ":::"];
    args.extend(NASTY);
    same_stdout(dir.path(), "s3", &args);
    assert!(
        !dir.path().join("s3").exists(),
        "a dry run touches no state"
    );
}

#[test]
fn sources_combine_like_parallel_and_task_numbers_follow_the_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("files.txt"), "one\ntwo words\n\nfour\n").unwrap();
    std::fs::write(dir.path().join("cols.tsv"), "x\ty\nz w\tq\n").unwrap();
    same_stdout(
        dir.path(),
        "s1",
        &[
            "-k",
            "echo {#}: {2} {1}",
            ":::",
            "a",
            "b",
            ":::",
            "1",
            "2",
            "3",
        ],
    );
    same_stdout(dir.path(), "s2", &["-k", "echo [{}]", "::::", "files.txt"]);
    same_stdout(
        dir.path(),
        "s3",
        &["-k", "echo", "::::", "files.txt", ":::", "p", "q"],
    );
    same_stdout(
        dir.path(),
        "s4",
        &["-k", "--colsep", "\t", "echo {2}-{1}", "::::", "cols.tsv"],
    );
    same_stdout(dir.path(), "s5", &["-k", "-a", "files.txt", "echo [{}]"]);
    // Task n is line n of the argument file: the journal says so.
    let j = journal(&dir.path().join("s2"));
    let mut by_task: Vec<(u32, String)> = j.iter().map(|l| (l.task, l.command.clone())).collect();
    by_task.sort();
    assert_eq!(
        by_task,
        vec![
            (1, "echo [one]".to_owned()),
            (2, "echo ['two words']".to_owned()),
            (3, "echo ['']".to_owned()),
            (4, "echo [four]".to_owned()),
        ]
    );
}

#[test]
fn quote_option_matches_parallel() {
    let dir = tempfile::tempdir().unwrap();
    same_stdout(
        dir.path(),
        "s1",
        &["-k", "-q", "printf", "%s|\\n", "{}x y", ":::", "a b", "c$d"],
    );
}

#[test]
fn tag_and_tagstring_match_parallel() {
    let dir = tempfile::tempdir().unwrap();
    same_stdout(
        dir.path(),
        "s1",
        &[
            "-k",
            "--tag",
            "printf 'l1\\nl2\\n'; echo",
            ":::",
            "a b",
            "c",
            ":::",
            "1",
        ],
    );
    same_stdout(
        dir.path(),
        "s2",
        &[
            "-k",
            "--tagstring",
            "<{1}/{#}>",
            "echo {2}",
            ":::",
            "a",
            "b",
            ":::",
            "x",
        ],
    );
}

#[test]
fn each_tasks_output_is_printed_whole_and_the_summary_goes_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // Four tasks that interleave their lines in time.
    let out = sturdy_run(
        dir.path(),
        "s",
        &[
            "-j",
            "4",
            "for i in 1 2 3; do echo {}$i; echo e{}$i >&2; sleep 0.05; done",
            ":::",
            "a",
            "b",
            "c",
            "d",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    for chunk in lines.chunks(3) {
        let t = &chunk[0][..1];
        assert_eq!(
            chunk,
            [format!("{t}1"), format!("{t}2"), format!("{t}3")],
            "{stdout}"
        );
    }
    let stderr = text(&out.stderr);
    for t in ["a", "b", "c", "d"] {
        assert!(
            stderr.contains(&format!("e{t}1\ne{t}2\ne{t}3\n")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("sturdy run: all tasks succeeded"),
        "{stderr}"
    );
    assert!(!stdout.contains("sturdy"), "{stdout}");
    // A task's stderr without a final newline does not take a progress line into it.
    let out = sturdy_run(dir.path(), "s2", &["printf x >&2", ":::", "1"]);
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("x\n"), "{stderr:?}");
}

#[test]
fn keep_order_prints_in_task_order() {
    let dir = tempfile::tempdir().unwrap();
    // The first task ends last.
    same_stdout(
        dir.path(),
        "s",
        &[
            "-k",
            "-j",
            "3",
            "sleep {}; echo {}",
            ":::",
            "0.3",
            "0.1",
            "0",
        ],
    );
}

#[test]
fn results_tree_matches_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--results",
        "RES",
        "echo out {1}; echo err {2} >&2",
        ":::",
        "a b",
        "c/d",
        ":::",
        "1",
    ];
    let s = sturdy_run(dir.path(), "s", &args);
    assert!(s.status.success(), "{}", text(&s.stderr));
    std::fs::rename(dir.path().join("RES"), dir.path().join("sturdy-res")).unwrap();
    let p = run_parallel(dir.path(), &args);
    // The output goes to the files only: stdout is empty, as parallel's, and the
    // tasks' stderr is not on sturdy's (its own summary is).
    assert_eq!(p.status.code(), Some(0));
    assert_eq!(s.status.code(), p.status.code());
    assert_eq!(text(&s.stdout), text(&p.stdout));
    assert_eq!(text(&s.stdout), "");
    assert!(!text(&s.stderr).contains("err 1"), "{}", text(&s.stderr));
    assert!(!text(&p.stderr).contains("err 1"), "{}", text(&p.stderr));
    // So with --tag, -k and --line-buffer.
    for extra in [["--tag", "-k"], ["--line-buffer", "--tag"]] {
        let mut a = vec![extra[0], extra[1], "--results", "RES2"];
        a.extend(&args[2..]);
        let s = sturdy_run(dir.path(), &format!("s{}", extra[0]), &a);
        assert!(s.status.success(), "{}", text(&s.stderr));
        assert_eq!(text(&s.stdout), "", "{a:?}");
        assert!(!text(&s.stderr).contains("err 1"), "{}", text(&s.stderr));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("RES2/1/c\\_d/2/1/stdout")).unwrap(),
            "out c/d\n"
        );
    }
    let files = |root: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                    v.push((rel, std::fs::read_to_string(e.path()).unwrap()));
                }
            }
        }
        v.sort();
        v
    };
    let ours = files(&dir.path().join("sturdy-res"));
    assert_eq!(ours, files(&dir.path().join("RES")));
    assert_eq!(ours.len(), 6, "{ours:?}");
}

#[test]
fn joblog_columns_match_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["-k", "-j", "1", "echo {}; exit {}", ":::", "0", "3"];
    let s = sturdy()
        .current_dir(dir.path())
        .args(["run", "--state-dir", "s", "--max-attempts", "1"])
        .args(["--joblog", "ours.log"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(s.status.code(), Some(1), "{}", text(&s.stderr));
    let mut p = vec!["--joblog", "theirs.log"];
    p.extend(args);
    run_parallel(dir.path(), &p);
    // Compare all columns but the start time and runtime.
    let cols = |f: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(dir.path().join(f))
            .unwrap()
            .lines()
            .map(|l| {
                l.split('\t')
                    .enumerate()
                    .filter(|(i, _)| *i != 2 && *i != 3)
                    .map(|(_, c)| c.to_owned())
                    .collect()
            })
            .collect()
    };
    assert_eq!(cols("ours.log"), cols("theirs.log"));
    assert_eq!(cols("ours.log").len(), 3);
}

#[test]
fn halt_stops_like_parallel() {
    let dir = tempfile::tempdir().unwrap();
    // One worker: task 3 fails, and nothing after it starts.
    let args = [
        "-j",
        "1",
        "--halt",
        "soon,fail=1",
        "echo {}; exit {}",
        ":::",
        "0",
        "0",
        "1",
        "0",
        "0",
    ];
    let s = sturdy()
        .current_dir(dir.path())
        .args(["run", "--state-dir", "s", "--max-attempts", "1"])
        .args(args)
        .output()
        .unwrap();
    let p = run_parallel(dir.path(), &args);
    assert_eq!(text(&s.stdout), text(&p.stdout));
    assert_eq!(text(&s.stdout), "0\n0\n1\n");
    assert_eq!(s.status.code(), Some(1));
    assert!(
        text(&s.stderr).contains("--halt: 1 task(s) failed"),
        "{}",
        text(&s.stderr)
    );
    // success=1: stops after the first success with exit 0.
    let args = [
        "-j",
        "1",
        "--halt",
        "now,success=1",
        "echo {}",
        ":::",
        "a",
        "b",
        "c",
    ];
    let s = sturdy_run(dir.path(), "s2", &args);
    let p = run_parallel(dir.path(), &args);
    assert_eq!(text(&s.stdout), text(&p.stdout));
    assert_eq!(text(&s.stdout), "a\n");
    assert_eq!(s.status.code(), Some(0), "{}", text(&s.stderr));
    // The tasks not run are left for --resume.
    let r = sturdy()
        .current_dir(dir.path())
        .args([
            "run",
            "--state-dir",
            "s2",
            "--resume",
            "-j",
            "1",
            "echo {}",
            ":::",
            "a",
            "b",
            "c",
        ])
        .output()
        .unwrap();
    assert_eq!(text(&r.stdout), "b\nc\n", "{}", text(&r.stderr));
}

#[test]
fn shuf_runs_each_task_once_under_its_input_number() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    let mut a = vec!["--shuf", "-j", "1", "echo {}"];
    a.push(":::");
    a.extend(args.iter().map(String::as_str));
    let s = sturdy_run(dir.path(), "s", &a);
    assert!(s.status.success());
    let printed: Vec<String> = text(&s.stdout).lines().map(str::to_owned).collect();
    assert_ne!(printed, args, "30 tasks came out in input order");
    let mut sorted = printed.clone();
    sorted.sort_by_key(|x| x.parse::<u32>().unwrap());
    assert_eq!(sorted, args);
    let j = journal(&dir.path().join("s"));
    assert_exactly_once(&j, 30);
    assert!(j.iter().all(|l| l.command == format!("echo {}", l.task)));
}

#[test]
fn delay_spaces_the_starts() {
    let dir = tempfile::tempdir().unwrap();
    let began = std::time::Instant::now();
    let s = sturdy_run(
        dir.path(),
        "s",
        &[
            "-j",
            "3",
            "--delay",
            "0.5",
            "date +%s.%N; : {}",
            ":::",
            "1",
            "2",
            "3",
        ],
    );
    // Lower bounds only (never flaky on a slow machine): the third start is two delays
    // after the first dispatch, and the starts are spread (by at least half a delay
    // each, leaving room for the time `sh` and `date` take to start under load).
    assert!(began.elapsed().as_secs_f64() >= 1.0);
    assert!(s.status.success(), "{}", text(&s.stderr));
    let mut t: Vec<f64> = text(&s.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    t.sort_by(f64::total_cmp);
    assert_eq!(t.len(), 3);
    assert!(t[1] - t[0] >= 0.25 && t[2] - t[1] >= 0.25, "{t:?}");
}

#[test]
fn relative_timeout_kills_a_task_far_over_the_median() {
    let dir = tempfile::tempdir().unwrap();
    let s = sturdy()
        .current_dir(dir.path())
        .args(["run", "--state-dir", "s", "--max-attempts", "1", "-j", "1"])
        .args(["--timeout", "200%", "--kill-grace", "0", "sleep {}"])
        .args([":::", "0.1", "0.1", "0.1", "30"])
        .output()
        .unwrap();
    assert_eq!(s.status.code(), Some(1), "{}", text(&s.stderr));
    let j = journal(&dir.path().join("s"));
    let four: Vec<&Line> = j.iter().filter(|l| l.task == 4).collect();
    assert_eq!(four.len(), 1);
    assert_eq!(four[0].kind, "task_timeout", "{four:?}");
    assert_eq!(successes(&j).len(), 3);
}

#[test]
fn nice_runs_the_commands_at_that_niceness() {
    let dir = tempfile::tempdir().unwrap();
    let base: i32 = text(&Command::new("nice").output().unwrap().stdout)
        .trim()
        .parse()
        .unwrap();
    let s = sturdy_run(dir.path(), "s", &["--nice", "7", "nice; : {}", ":::", "x"]);
    assert!(s.status.success(), "{}", text(&s.stderr));
    assert_eq!(text(&s.stdout).trim(), (base + 7).min(19).to_string());
}

#[test]
fn memfree_and_load_within_limits_let_the_run_go() {
    let dir = tempfile::tempdir().unwrap();
    let s = sturdy_run(
        dir.path(),
        "s",
        &["--memfree", "1k", "--load", "100000", "echo {}", ":::", "a"],
    );
    assert!(s.status.success(), "{}", text(&s.stderr));
    assert_eq!(text(&s.stdout), "a\n");
    let s = sturdy_run(dir.path(), "s2", &["--memfree", "12Q", "echo", ":::", "a"]);
    assert_eq!(s.status.code(), Some(2));
    assert!(text(&s.stderr).contains("--memfree"), "{}", text(&s.stderr));
}

#[test]
fn resume_refuses_other_arguments_or_template() {
    let dir = tempfile::tempdir().unwrap();
    let s = sturdy_run(dir.path(), "s", &["echo {}", ":::", "a", "b"]);
    assert!(s.status.success());
    for other in [
        vec!["echo {}", ":::", "a", "c"],
        vec!["echo x{}", ":::", "a", "b"],
    ] {
        let mut a = vec!["--resume"];
        a.extend(other);
        let r = sturdy_run(dir.path(), "s", &a);
        assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
        assert!(r.stdout.is_empty());
    }
    let r = sturdy_run(dir.path(), "s", &["--resume", "echo {}", ":::", "a", "b"]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(r.stdout.is_empty(), "nothing ran again");
}

#[test]
fn relative_jobs_count_from_the_cpus() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let dir = tempfile::tempdir().unwrap();
    for (j, want) in [
        ("+2", cpus + 2),
        ("-1", cpus.saturating_sub(1).max(1)),
        ("50%", (cpus / 2).max(1)),
        ("3", 3),
    ] {
        let s = sturdy_run(
            dir.path(),
            &format!("s{j}"),
            &["-j", j, "echo $STURDY_WORKER", ":::", "x"],
        );
        assert!(s.status.success(), "{}", text(&s.stderr));
        let workers = std::fs::read_dir(dir.path().join(format!("s{j}")))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("worker-"))
            .count();
        assert_eq!(workers, want, "-j {j}");
    }
}

#[test]
fn resume_failed_reruns_only_failed_tasks_under_their_fixed_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = |lines: &[&str]| {
        std::fs::write(d.join("tasks.txt"), lines.join("\n") + "\n").unwrap();
    };
    let run = |extra: &[&str], input: &[&str]| {
        sturdy()
            .current_dir(d)
            .args(["run", "--state-dir", "s", "--max-attempts", "1", "-k"])
            .args(extra)
            .args(input)
            .output()
            .unwrap()
    };
    list(&["echo one", "echo broken; exit 3", "echo three"]);
    let first = run(&[], &["tasks.txt"]);
    assert_eq!(first.status.code(), Some(1));
    assert_eq!(text(&first.stdout), "one\nbroken\nthree\n");
    // The fixed list: plain --resume refuses it, --resume-failed runs task 2 only.
    list(&["echo one", "echo fixed", "echo three"]);
    let refused = run(&["--resume"], &["tasks.txt"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let fixed = run(&["--resume-failed"], &["tasks.txt"]);
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed.stderr));
    assert_eq!(text(&fixed.stdout), "fixed\n");
    let j = journal(&d.join("s"));
    assert_exactly_once(&j, 3);
    let two: Vec<(String, String)> = j
        .iter()
        .filter(|l| l.task == 2)
        .map(|l| (l.next.clone(), l.command.clone()))
        .collect();
    assert_eq!(
        two,
        vec![
            ("gave_up".to_owned(), "echo broken; exit 3".to_owned()),
            ("done".to_owned(), "echo fixed".to_owned()),
        ]
    );
    // Later resumes of the new list read the whole journal: nothing runs, no warning.
    let again = run(&["--resume"], &["tasks.txt"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(again.stdout.is_empty());
    assert!(
        !text(&again.stderr).contains("warning"),
        "{}",
        text(&again.stderr)
    );
    // A list with another number of tasks is refused, nothing changed.
    list(&["echo one", "echo fixed"]);
    let other = run(&["--resume-failed"], &["tasks.txt"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(
        text(&other.stderr).contains("keeps the number of tasks"),
        "{}",
        text(&other.stderr)
    );
}

#[test]
fn resume_failed_takes_a_fixed_template_in_argument_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |extra: &[&str], template: &str| {
        sturdy()
            .current_dir(d)
            .args(["run", "--state-dir", "s", "--max-attempts", "1", "-k"])
            .args(extra)
            .args([template, ":::", "a", "b", "c"])
            .output()
            .unwrap()
    };
    let first = run(&[], "test {} != b && echo {}");
    assert_eq!(first.status.code(), Some(1));
    assert_eq!(text(&first.stdout), "a\nc\n");
    let fixed = run(&["--resume-failed"], "echo fixed {}");
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed.stderr));
    assert_eq!(text(&fixed.stdout), "fixed b\n");
    assert_exactly_once(&journal(&d.join("s")), 3);
}

#[test]
fn line_buffer_prints_each_line_as_it_comes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The task prints a line, then waits (up to 20 s) for the test to have read it.
    let mut child = sturdy()
        .current_dir(d)
        .args(["run", "--state-dir", "s", "--line-buffer", "--tag", "--keep-output"])
        .args([
            "echo start; i=0; while [ ! -e go ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; [ -e go ] && echo end || echo gave up; printf partial; : {}",
            ":::",
            "a",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "a\tstart\n");
    std::fs::write(d.join("go"), "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut lines, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest, "a\tend\na\tpartial");
    // The state directory still has the attempt's whole output.
    let out = std::fs::read_to_string(d.join("s/out/1.1.out")).unwrap();
    assert_eq!(out, "start\nend\npartial");
    // A partial last stderr line is not continued by a progress line.
    let s = sturdy_run(
        d,
        "s2",
        &["--line-buffer", "printf x >&2; : {}", ":::", "1"],
    );
    assert!(text(&s.stderr).starts_with("x\n"), "{:?}", text(&s.stderr));
}

#[test]
fn task_numbers_are_line_numbers_in_a_task_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("t.txt"),
        "# header\necho a $STURDY_TASK\n\necho b $STURDY_TASK\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        sturdy()
            .current_dir(d)
            .args(["run", "--state-dir", "s", "-k", "--tag"])
            .args(extra)
            .arg("t.txt")
            .output()
            .unwrap()
    };
    let s = run(&[]);
    assert!(s.status.success(), "{}", text(&s.stderr));
    assert_eq!(
        text(&s.stdout),
        "echo a $STURDY_TASK\ta 2\necho b $STURDY_TASK\tb 4\n"
    );
    let tasks: Vec<u32> = journal(&d.join("s")).iter().map(|l| l.task).collect();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.contains(&2) && tasks.contains(&4), "{tasks:?}");
    // The same commands on other lines are another list.
    std::fs::write(
        d.join("t.txt"),
        "echo a $STURDY_TASK\necho b $STURDY_TASK\n",
    )
    .unwrap();
    let r = run(&["--resume"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
}

#[test]
fn the_state_directory_keeps_a_bounded_stderr_tail_per_ended_task() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Task 1 fails twice (5000 bytes of stderr each time), then succeeds.
    let s = sturdy()
        .current_dir(d)
        .args([
            "run",
            "--state-dir",
            "s",
            "--backoff-base",
            "0",
            "--max-attempts",
            "3",
        ])
        .args([
            ": {}; head -c 5000 /dev/zero | tr '\\0' x >&2; echo out; [ $STURDY_ATTEMPT -eq 3 ]",
            ":::",
            "a",
        ])
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", text(&s.stderr));
    // Only the attempt that ended the task is printed (as parallel with --retries).
    assert_eq!(text(&s.stdout), "out\n");
    let mut files: Vec<String> = std::fs::read_dir(d.join("s/out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["1.3.err"]);
    let tail = std::fs::read(d.join("s/out/1.3.err")).unwrap();
    assert_eq!(tail, vec![b'x'; 4096]);
    // Every attempt is still in the journal, and a resume runs nothing again.
    assert_eq!(journal(&d.join("s")).len(), 3);
    let r = sturdy()
        .current_dir(d)
        .args(["run", "--state-dir", "s", "--resume", "echo {}", ":::", "a"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2), "another template is refused");
    let r = sturdy()
        .current_dir(d)
        .args(["run", "--state-dir", "s", "--resume"])
        .args([
            ": {}; head -c 5000 /dev/zero | tr '\\0' x >&2; echo out; [ $STURDY_ATTEMPT -eq 3 ]",
            ":::",
            "a",
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(r.stdout.is_empty());
}

#[test]
fn memfree_above_the_hosts_memory_holds_every_start() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = sturdy()
        .current_dir(dir.path())
        .args([
            "run",
            "--state-dir",
            "s",
            "--memfree",
            "1000P",
            "touch ran-{}",
            ":::",
            "a",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("sturdy: waiting: the host is over --load"),
        "{line}"
    );
    assert!(!dir.path().join("ran-a").exists());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.path().join("ran-a").exists(), "nothing ran");
}

#[test]
fn a_command_without_sources_is_a_missing_task_list_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let s = sturdy_run(dir.path(), "s", &["gzip"]);
    assert_eq!(s.status.code(), Some(2));
    assert!(
        text(&s.stderr).contains("write: sturdy run 'gzip' :::: -)"),
        "{}",
        text(&s.stderr)
    );
    let s = sturdy_run(dir.path(), "s", &["gzip", "-9"]);
    assert_eq!(s.status.code(), Some(2));
    let s = sturdy_run(dir.path(), "s", &["gzip", "a"]);
    assert_eq!(s.status.code(), Some(2));
    assert!(
        text(&s.stderr).contains("got 2 words and no :::"),
        "{}",
        text(&s.stderr)
    );
}

#[test]
fn values_after_the_first_source_are_never_sturdy_options() {
    // A value that looks like a sturdy option (`-k`, `--dry-run`, `-j1`, a negative
    // number), as a glob over odd file names gives: an argument, as in parallel.
    let dir = tempfile::tempdir().unwrap();
    let out = same_stdout(
        dir.path(),
        "s1",
        &[
            "-k",
            "echo",
            ":::",
            "a",
            "-k",
            "--dry-run",
            "-j1",
            "-1",
            "b",
        ],
    );
    assert_eq!(out, "a\n-k\n--dry-run\n-j1\n-1\nb\n");
    // A run was made (no dry run): its journal holds the six tasks.
    assert_exactly_once(&journal(&dir.path().join("s1")), 6);
}

/// Runs `sturdy run` and parallel with the same arguments and the same stdin; returns
/// (sturdy, parallel).
fn both_with_stdin(dir: &Path, state: &str, args: &[&str], stdin: &[u8]) -> (Output, Output) {
    use std::io::Write;
    use std::process::Stdio;
    let feed = |mut c: Command| {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let mut s = sturdy();
    s.current_dir(dir)
        .args(["run", "--state-dir", state, "--backoff-base", "0"])
        .args(args);
    let mut p = parallel();
    p.current_dir(dir).args(args);
    (feed(s), feed(p))
}

#[test]
fn an_empty_argument_source_runs_nothing_and_succeeds_like_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.txt"), "").unwrap();
    for (i, (args, stdin)) in [
        (vec!["echo", "::::", "/dev/null"], &b""[..]),
        (vec!["echo", "::::", "empty.txt"], b""),
        (vec!["echo", "::::", "-"], b""),
        (vec!["echo {}", ":::"], b""),
        (vec!["echo", "::::", "-", "::::", "empty.txt"], b""),
    ]
    .into_iter()
    .enumerate()
    {
        let state = format!("s{i}");
        let (s, p) = both_with_stdin(d, &state, &args, stdin);
        assert_eq!(p.status.code(), Some(0), "parallel {args:?}");
        assert_eq!(
            s.status.code(),
            p.status.code(),
            "{args:?}: {}",
            text(&s.stderr)
        );
        assert_eq!(text(&s.stdout), text(&p.stdout), "{args:?}");
        assert_eq!(text(&s.stdout), "");
        assert!(
            text(&s.stderr).contains("no tasks"),
            "{args:?}: {}",
            text(&s.stderr)
        );
        assert!(!d.join(&state).exists(), "no state directory for no task");
    }
    // An empty source among others combines as one empty value, as in parallel.
    let (s, p) = both_with_stdin(
        d,
        "s-mixed",
        &[
            "-k",
            "echo {1}-{2}-{3}",
            ":::",
            "a",
            "b",
            "::::",
            "-",
            ":::",
            "x",
        ],
        b"",
    );
    assert_eq!(text(&s.stdout), text(&p.stdout));
    assert_eq!(text(&s.stdout), "a--x\nb--x\n");
    assert_eq!(s.status.code(), Some(0), "{}", text(&s.stderr));
    // A task list on stdin that a pipeline left empty: the same (parallel reads
    // commands from stdin then).
    let mut s = sturdy();
    s.current_dir(d)
        .args(["run", "--state-dir", "s-list", "-"])
        .stdin(std::process::Stdio::null());
    let s = s.output().unwrap();
    let mut p = parallel();
    p.current_dir(d).stdin(std::process::Stdio::null());
    let p = p.output().unwrap();
    assert_eq!(s.status.code(), Some(0), "{}", text(&s.stderr));
    assert_eq!(s.status.code(), p.status.code());
    assert_eq!(text(&s.stdout), text(&p.stdout));
    // --json prints the summary of no task on stdout.
    let s = sturdy_run(d, "s-json", &["--json", "echo", "::::", "/dev/null"]);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s.stderr));
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["tasks"], 0);
    assert_eq!(v["attempts"], 0);
    // A named task file with no command stays a mistake (exit 2), unlike a pipeline.
    let s = sturdy_run(d, "s-file", &["empty.txt"]);
    assert_eq!(s.status.code(), Some(2));
    assert!(
        text(&s.stderr).contains("empty.txt holds no command"),
        "{}",
        text(&s.stderr)
    );
}

#[test]
fn keep_order_with_shuf_keeps_the_shuffled_order_like_parallel() {
    // parallel -k --shuf prints in the (shuffled) order the jobs started, not in input
    // order; tasks that end out of order (4 at once, varied sleeps) come out in it too.
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<String> = (1..=30).map(|i| i.to_string()).collect();
    let mut a = vec![
        "-k",
        "--shuf",
        "-j",
        "4",
        "sleep 0.0$(({} % 4)); echo {}",
        ":::",
    ];
    a.extend(input.iter().map(String::as_str));
    let s = sturdy_run(dir.path(), "s", &a);
    let p = run_parallel(dir.path(), &a);
    assert_eq!(s.status.code(), Some(0), "{}", text(&s.stderr));
    assert_eq!(s.status.code(), p.status.code());
    for (who, out) in [("sturdy", &s.stdout), ("parallel", &p.stdout)] {
        let printed: Vec<String> = text(out).lines().map(str::to_owned).collect();
        assert_ne!(printed, input, "{who}: 30 tasks came out in input order");
        let mut sorted = printed.clone();
        sorted.sort_by_key(|x| x.parse::<u32>().unwrap());
        assert_eq!(sorted, input, "{who}");
    }
    // One worker: the printed order is the order the tasks ran in, which the journal
    // (one line per attempt, as each ends) records.
    let mut a = vec!["-k", "--shuf", "-j", "1", "echo {}", ":::"];
    a.extend(input.iter().map(String::as_str));
    let s = sturdy_run(dir.path(), "s1", &a);
    assert!(s.status.success(), "{}", text(&s.stderr));
    let ran: Vec<String> = journal(&dir.path().join("s1"))
        .iter()
        .map(|l| l.task.to_string())
        .collect();
    let printed: Vec<String> = text(&s.stdout).lines().map(str::to_owned).collect();
    assert_eq!(printed, ran);
    assert_ne!(printed, input);
}

#[test]
fn halt_counts_tasks_failed_for_good_after_the_default_retries() {
    // parallel has no retries: `--halt now,fail=1` stops at task 2's first failure.
    // sturdy retries it first (3 attempts by default) and counts it when it has failed
    // for good; the free worker may run task 3 meanwhile. The exit code is the same.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "-j",
        "1",
        "--halt",
        "now,fail=1",
        "echo {}; exit {}",
        ":::",
        "0",
        "1",
        "0",
    ];
    let s = sturdy_run(dir.path(), "s", &args);
    let p = run_parallel(dir.path(), &args);
    assert_eq!(text(&p.stdout), "0\n1\n");
    assert_eq!(p.status.code(), Some(1));
    assert_eq!(s.status.code(), p.status.code(), "{}", text(&s.stderr));
    // Task 3 ran during task 2's backoff or not at all (the retry may come first):
    // either way task 2's output is printed once, last.
    let out = text(&s.stdout);
    assert!(out == "0\n0\n1\n" || out == "0\n1\n", "{out}");
    let j = journal(&dir.path().join("s"));
    assert_eq!(j.iter().filter(|l| l.task == 2).count(), 3);
    assert!(
        text(&s.stderr).contains("--halt: 1 task(s) failed"),
        "{}",
        text(&s.stderr)
    );
    // --retries 1 (one attempt, parallel's default) halts as parallel does.
    let mut one = vec!["--retries", "1"];
    one.extend(args);
    let s = sturdy_run(dir.path(), "s1", &one);
    assert_eq!(text(&s.stdout), text(&p.stdout));
    assert_eq!(s.status.code(), p.status.code(), "{}", text(&s.stderr));
}
