//! `sturdy simulate`: the JSON report's fields, replay by seed, and bad input.

use std::process::Command;

fn sturdy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sturdy"))
}

fn simulate(args: &[&str]) -> (Option<i32>, String, String) {
    let out = sturdy().arg("simulate").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_report_has_the_documented_fields_and_replays_by_seed() {
    let args = [
        "--workers",
        "8",
        "--tasks",
        "40",
        "--duration",
        "lognormal:30s,0.5",
        "--host-crash-rate",
        "20/h",
        "--transient",
        "0.1",
        "--seed",
        "5",
        "--json",
    ];
    let (code, out, err) = simulate(&args);
    assert_eq!(code, Some(0), "{err}");
    // Not a terminal: no progress on stderr.
    assert_eq!(err, "");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for f in [
        "tasks",
        "succeeded",
        "failed",
        "done_records_twice",
        "makespan_s",
        "ideal_makespan_s",
        "wasted_worker_s",
        "duplicate_executions",
        "engine_messages",
        "seed",
    ] {
        assert!(v.get(f).is_some(), "field {f} missing in {out}");
    }
    assert_eq!(v["tasks"], 40);
    assert_eq!(v["seed"], 5);
    assert_eq!(v["done_records_twice"], 0);
    assert_eq!(
        v["succeeded"].as_u64().unwrap() + v["failed"].as_u64().unwrap(),
        40
    );
    assert!(v["makespan_s"].as_f64().unwrap() >= v["ideal_makespan_s"].as_f64().unwrap());
    let (_, again, _) = simulate(&args);
    assert_eq!(again, out, "the same seed gave another report");
}

#[test]
fn bad_input_names_the_option_and_the_rule() {
    for (args, expect) in [
        (
            &["--workers", "0", "--tasks", "1"][..],
            "--workers: must be >= 1",
        ),
        (
            &[
                "--workers",
                "2",
                "--tasks",
                "1",
                "--duration",
                "lognormal:1s",
            ][..],
            "--duration",
        ),
        (
            &["--workers", "2", "--tasks", "1", "--host-crash-rate", "1/y"][..],
            "--host-crash-rate",
        ),
        (
            &["--workers", "2", "--tasks", "1", "--transient", "1.5"][..],
            "--transient: must be a probability",
        ),
        (
            &[
                "--workers",
                "2",
                "--tasks",
                "1",
                "--heartbeat-interval",
                "20s",
            ][..],
            "--heartbeat-interval: must be > 0 and below the heartbeat timeout",
        ),
        (
            &["--workers", "2", "--tasks", "1", "--partition", "10s"][..],
            "--partition",
        ),
    ] {
        let (code, out, err) = simulate(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(out, "");
    }
}

#[test]
fn the_run_with_huge_pages_is_the_same_run() {
    // Without GLIBC_TUNABLES the command runs itself again with glibc's huge-page tunable
    // added (on glibc); with it already named, or with other tunables to keep, it runs
    // once or again as well: every way gives the same report.
    let args = [
        "simulate",
        "--workers",
        "16",
        "--tasks",
        "200",
        "--loss",
        "0.01",
        "--seed",
        "3",
        "--json",
    ];
    let run = |tunables: Option<&str>| {
        let mut c = sturdy();
        c.args(args);
        match tunables {
            Some(t) => c.env("GLIBC_TUNABLES", t),
            None => c.env_remove("GLIBC_TUNABLES"),
        };
        let out = c.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = run(Some("glibc.malloc.hugetlb=0"));
    let v: serde_json::Value = serde_json::from_str(plain.trim()).unwrap();
    assert_eq!(v["tasks"], 200);
    assert_eq!(v["seed"], 3);
    assert_eq!(run(None), plain);
    assert_eq!(run(Some("glibc.malloc.check=0")), plain);
}
