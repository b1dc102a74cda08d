//! The multi-host farm end to end: a real `nats-server -js` (each test starts its own on
//! 127.0.0.1, random port, store in a temporary directory), real `sturdy run --engine`
//! coordinators and `sturdy agent` processes, commands that count their side effects.
//! Short timings: lease (ack wait) 1 s, renewals every 200 ms.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{alive, http_get, promtool_check, series, sturdy};

const INSTALL: &str = "install nats-server: apt-get update && apt-get install -y nats-server";

/// A child `nats-server`, killed on drop.
struct Nats {
    child: Child,
    dir: PathBuf,
    port: u16,
    url: String,
}

impl Nats {
    fn start(dir: &Path, jetstream: bool) -> Self {
        Self::spawn(dir, jetstream, None)
    }

    fn spawn(dir: &Path, jetstream: bool, port: Option<u16>) -> Self {
        let ports = dir.join("ports");
        std::fs::create_dir_all(&ports).unwrap();
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.map_or_else(|| "-1".into(), |p| p.to_string()),
            "--ports_file_dir".into(),
            ports.display().to_string(),
        ];
        if jetstream {
            args.extend([
                "-js".into(),
                "-sd".into(),
                dir.join("store").display().to_string(),
            ]);
        }
        let mut child = None;
        for program in ["nats-server", "/usr/sbin/nats-server"] {
            match Command::new(program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone().unwrap())
                .spawn()
            {
                Ok(c) => {
                    child = Some(c);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => panic!("cannot start {program}: {e}; {INSTALL}"),
            }
        }
        let mut child = child.unwrap_or_else(|| panic!("no nats-server found; {INSTALL}"));
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let until = Instant::now() + Duration::from_secs(10);
        let url = loop {
            assert!(Instant::now() < until, "nats-server did not start in 10 s");
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "nats-server exited with {status}: {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = v["nats"][0].as_str()
            {
                break url.to_string();
            }
            sleep(Duration::from_millis(20));
        };
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child,
            dir: dir.to_path_buf(),
            port,
            url,
        }
    }

    /// SIGKILL, then start again on the same port and store.
    fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("ports"));
        let again = Self::spawn(&self.dir, true, Some(self.port));
        let old = std::mem::replace(self, again);
        std::mem::forget(old);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sturdy` process with its stderr in a file; SIGKILLed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], log: PathBuf, stdout: Option<PathBuf>) -> Self {
        let err = File::create(&log).unwrap();
        let out = match stdout {
            Some(p) => Stdio::from(File::create(p).unwrap()),
            None => Stdio::null(),
        };
        let child = sturdy()
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit, at most `limit` (then fails the test with the log).
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "{:?} did not exit within {limit:?}:\n{}",
                    self.log,
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's directory, server URL and run name.
struct Farm {
    dir: tempfile::TempDir,
    url: String,
    run: String,
}

impl Farm {
    fn new(url: &str, dir: tempfile::TempDir, run: &str) -> Self {
        Self {
            dir,
            url: url.into(),
            run: run.into(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn effects(&self) -> PathBuf {
        self.path("effects")
    }

    /// A task list of `n` commands; `body(i)` is task i's command before its effect.
    fn tasks(&self, n: u32, body: impl Fn(u32) -> String) -> PathBuf {
        let effects = self.effects();
        let lines: Vec<String> = (1..=n)
            .map(|i| {
                format!(
                    "{} echo $STURDY_TASK $STURDY_ATTEMPT >> {}",
                    body(i),
                    effects.display()
                )
            })
            .collect();
        let p = self.path("tasks");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    /// Starts the coordinator and waits until it created the run and enqueued.
    fn coordinator(&self, extra: &[&str]) -> Proc {
        self.coordinator_with(extra, true)
    }

    /// Starts the coordinator, printing the tasks' output (no `--json`): its stdout goes
    /// to `stdout` in the farm's directory, its stderr to its log.
    fn coordinator_printing(&self, extra: &[&str]) -> Proc {
        self.coordinator_with(extra, false)
    }

    /// Starts the coordinator (`--json`: its summary goes to `summary.json`; otherwise
    /// its stdout to `stdout`) and waits until it created the run and enqueued.
    fn coordinator_with(&self, extra: &[&str], json: bool) -> Proc {
        let tasks = self.path("tasks");
        let state = self.path("coord");
        let mut args = vec![
            "run",
            tasks.to_str().unwrap(),
            "--engine",
            &self.url,
            "--run",
            &self.run,
            "--state-dir",
            state.to_str().unwrap(),
            "--heartbeat-interval",
            "200ms",
            "--heartbeat-timeout",
            "1s",
        ];
        if json {
            args.push("--json");
        }
        args.extend_from_slice(extra);
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let mut p = Proc::spawn(
            &args,
            self.path(&format!("coord-{n}.log")),
            Some(self.path(if json { "summary.json" } else { "stdout" })),
        );
        let until = Instant::now() + Duration::from_secs(15);
        while !p.log().contains("waiting for agents") {
            if let Some(status) = p.try_wait() {
                panic!("the coordinator exited with {status}:\n{}", p.log());
            }
            assert!(Instant::now() < until, "no run after 15 s:\n{}", p.log());
            sleep(Duration::from_millis(20));
        }
        p
    }

    fn agent(&self, host: &str, workers: u32) -> Proc {
        self.agent_with(host, workers, &[])
    }

    fn agent_with(&self, host: &str, workers: u32, extra: &[&str]) -> Proc {
        self.agent_at(host, workers, &self.url, extra)
    }

    /// An agent that reaches the server at `url` (the server's, or a proxy's).
    fn agent_at(&self, host: &str, workers: u32, url: &str, extra: &[&str]) -> Proc {
        let state = self.path(host);
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        Proc::spawn(
            &[
                "agent",
                "--engine",
                url,
                "--run",
                &self.run,
                "--workers",
                &workers.to_string(),
                "--host",
                host,
                "--state-dir",
                state.to_str().unwrap(),
            ]
            .iter()
            .chain(extra)
            .copied()
            .collect::<Vec<_>>(),
            self.path(&format!("{host}-{n}.log")),
            None,
        )
    }

    /// The coordinator's journal: (task, record, attempt, host, outcome, kind) per line.
    fn journal(&self) -> Vec<(u32, String, u32, String, String, String)> {
        let text = std::fs::read_to_string(self.path("coord/journal.tsv")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("position\t"))
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                (
                    c[1].parse().unwrap(),
                    c[2].to_string(),
                    c[3].parse().unwrap(),
                    c[4].to_string(),
                    c[7].to_string(),
                    c[8].to_string(),
                )
            })
            .collect()
    }

    /// `ended done` records per task.
    fn done_records(&self) -> BTreeMap<u32, usize> {
        let mut m = BTreeMap::new();
        for (task, record, _, _, outcome, _) in self.journal() {
            if record == "ended" && outcome == "done" {
                *m.entry(task).or_default() += 1;
            }
        }
        m
    }

    /// Side effects per task: (task → attempts that made one).
    fn effects_by_task(&self) -> BTreeMap<u32, Vec<u32>> {
        let text = std::fs::read_to_string(self.effects()).unwrap_or_default();
        let mut m: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let task = w.next().unwrap().parse().unwrap();
            let attempt = w.next().unwrap().parse().unwrap();
            m.entry(task).or_default().push(attempt);
        }
        m
    }

    fn summary(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("summary.json")).unwrap();
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    fn assert_each_done_once(&self, n: u32) {
        let done = self.done_records();
        for task in 1..=n {
            assert_eq!(
                done.get(&task),
                Some(&1),
                "task {task}: done records {done:?}"
            );
        }
        assert_eq!(done.len(), n as usize);
    }
}

fn farm(run: &str) -> (Nats, Farm) {
    let dir = tempfile::tempdir().unwrap();
    let server = Nats::start(&dir.path().join("nats"), true);
    let farm = Farm::new(&server.url, dir, run);
    (server, farm)
}

const RUN_LIMIT: Duration = Duration::from_secs(90);

#[test]
fn happy_path_two_agents_two_slots_fifty_tasks_each_done_once() {
    let (_server, farm) = farm("happy");
    farm.tasks(50, |_| String::new());
    let mut coordinator = farm.coordinator(&[]);
    let mut a = farm.agent("a", 2);
    let mut b = farm.agent("b", 2);
    let status = coordinator.wait(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", coordinator.log());
    farm.assert_each_done_once(50);
    let effects = farm.effects_by_task();
    for task in 1..=50 {
        assert_eq!(effects.get(&task), Some(&vec![1]), "task {task}");
    }
    let s = farm.summary();
    assert_eq!(
        (s["succeeded"].as_u64(), s["tasks"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(s["attempts"].as_u64(), Some(50));
    // The coordinator told the agents the run is over: they drain and exit 0.
    assert_eq!(
        a.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        a.log()
    );
    assert_eq!(
        b.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        b.log()
    );
    // Both hosts did work, and the host column says which.
    let hosts: std::collections::BTreeSet<String> =
        farm.journal().into_iter().map(|l| l.3).collect();
    assert!(hosts.contains("a") && hosts.contains("b"), "{hosts:?}");
    // Every slot got its environment.
    assert!(a.log().contains("2 slots"));
}

#[test]
fn agents_started_before_their_coordinator_wait_for_the_run_with_wait_for_run() {
    let (_server, farm) = farm("early");
    farm.tasks(20, |_| String::new());
    // Started first: one waits for the run, the other (without the flag) is refused.
    let mut a = farm.agent_with("a", 2, &["--wait-for-run"]);
    let mut b = farm.agent_with("b", 2, &["--wait-for-run"]);
    let mut plain = farm.agent("c", 1);
    assert_eq!(
        plain.wait(Duration::from_secs(15)).code(),
        Some(2),
        "{}",
        plain.log()
    );
    assert!(plain.log().contains("--wait-for-run"), "{}", plain.log());
    let until = Instant::now() + Duration::from_secs(15);
    while !(a.log().contains("waiting for run early") && b.log().contains("waiting for run early"))
    {
        assert!(a.try_wait().is_none(), "a exited:\n{}", a.log());
        assert!(b.try_wait().is_none(), "b exited:\n{}", b.log());
        assert!(
            Instant::now() < until,
            "agents not waiting:\n{}\n{}",
            a.log(),
            b.log()
        );
        sleep(Duration::from_millis(20));
    }
    // Past the fallback look (5 s) would also work; the subscription sees the run at once.
    let mut coordinator = farm.coordinator(&[]);
    let status = coordinator.wait(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", coordinator.log());
    farm.assert_each_done_once(20);
    let effects = farm.effects_by_task();
    for task in 1..=20 {
        assert_eq!(effects.get(&task), Some(&vec![1]), "task {task}");
    }
    for (name, agent) in [("a", &mut a), ("b", &mut b)] {
        assert_eq!(
            agent.wait(Duration::from_secs(15)).code(),
            Some(0),
            "{name}: {}",
            agent.log()
        );
    }
}

/// An agent waiting for its run outlives a server that is down for a while (a look
/// during the outage used to exit 1 on the request's timeout).
#[test]
fn an_agent_waiting_for_its_run_outlives_a_server_outage() {
    let (mut server, farm) = farm("outage");
    farm.tasks(4, |_| String::new());
    let mut a = farm.agent_with("a", 2, &["--wait-for-run"]);
    let until = Instant::now() + Duration::from_secs(15);
    while !a.log().contains("waiting for run outage") {
        assert!(a.try_wait().is_none(), "a exited:\n{}", a.log());
        assert!(Instant::now() < until, "not waiting:\n{}", a.log());
        sleep(Duration::from_millis(20));
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    // Long enough that one of the agent's looks (every 5 s) times out with no server
    // (a request waits up to 5 s for a reconnection).
    sleep(Duration::from_secs(12));
    assert!(a.try_wait().is_none(), "a exited:\n{}", a.log());
    let _ = std::fs::remove_dir_all(server.dir.join("ports"));
    let again = Nats::spawn(&server.dir, true, Some(server.port));
    std::mem::forget(std::mem::replace(&mut server, again));
    let mut coordinator = farm.coordinator(&[]);
    let status = coordinator.wait(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", coordinator.log());
    farm.assert_each_done_once(4);
    assert_eq!(
        a.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        a.log()
    );
}

#[test]
fn agents_sigkilled_at_random_and_restarted_every_task_done_once() {
    let (_server, farm) = farm("chaos");
    farm.tasks(200, |_| "sleep 0.02;".into());
    let mut coordinator = farm.coordinator(&["--max-worker-crashes", "100"]);
    let mut agents = [farm.agent("a", 2), farm.agent("b", 2)];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let until = Instant::now() + RUN_LIMIT;
    let mut kills = 0;
    while coordinator.try_wait().is_none() {
        assert!(Instant::now() < until, "{}", coordinator.log());
        sleep(Duration::from_millis(150));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if kills < 8 && rng.is_multiple_of(3) {
            let i = usize::try_from(rng % 2).unwrap();
            agents[i].kill();
            kills += 1;
            agents[i] = farm.agent(if i == 0 { "a" } else { "b" }, 2);
        }
    }
    let status = coordinator.wait(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", coordinator.log());
    assert!(kills > 0);
    farm.assert_each_done_once(200);
    let effects = farm.effects_by_task();
    assert_eq!(
        effects.len(),
        200,
        "every task made its effect at least once"
    );
}

#[test]
fn coordinator_sigkilled_and_resumed_hosts_keep_working() {
    let (_server, farm) = farm("resume");
    farm.tasks(60, |_| "sleep 0.05;".into());
    let mut first = farm.coordinator(&[]);
    let _a = farm.agent("a", 2);
    let _b = farm.agent("b", 2);
    let until = Instant::now() + RUN_LIMIT;
    while farm.done_records().len() < 5 {
        assert!(Instant::now() < until);
        sleep(Duration::from_millis(20));
    }
    first.kill();
    // Without --resume an existing run is refused.
    let tasks = farm.path("tasks");
    let out = sturdy()
        .args([
            "run",
            tasks.to_str().unwrap(),
            "--engine",
            &farm.url,
            "--run",
            &farm.run,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists") && err.contains("--resume"), "{err}");
    let mut second = farm.coordinator(&["--resume"]);
    assert_eq!(second.wait(RUN_LIMIT).code(), Some(0), "{}", second.log());
    farm.assert_each_done_once(60);
    assert_eq!(farm.effects_by_task().len(), 60);
    assert_eq!(farm.summary()["succeeded"].as_u64(), Some(60));
}

#[test]
fn nats_server_sigkilled_and_restarted_on_its_store_mid_run() {
    let (mut server, farm) = farm("restart");
    farm.tasks(80, |_| "sleep 0.05;".into());
    let mut coordinator = farm.coordinator(&[]);
    let _a = farm.agent("a", 2);
    let _b = farm.agent("b", 2);
    let until = Instant::now() + RUN_LIMIT;
    while farm.done_records().len() < 10 {
        assert!(Instant::now() < until);
        sleep(Duration::from_millis(20));
    }
    server.kill_and_restart();
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    farm.assert_each_done_once(80);
    assert_eq!(farm.effects_by_task().len(), 80);
}

#[test]
fn a_stopped_agent_past_its_lease_is_refused_and_its_command_killed() {
    let (_server, farm) = farm("zombie");
    let pid_file = farm.path("attempt1.pid");
    // Attempt 1 records its shell's pid and hangs; any later attempt is quick.
    farm.tasks(1, |_| {
        format!(
            "if [ $STURDY_ATTEMPT = 1 ]; then echo $$ > {}; sleep 30; fi;",
            pid_file.display()
        )
    });
    let mut coordinator = farm.coordinator(&["--max-worker-crashes", "3"]);
    let mut zombie = farm.agent("zombie", 1);
    let until = Instant::now() + Duration::from_secs(20);
    let shell: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < until, "{}", zombie.log());
        sleep(Duration::from_millis(20));
    };
    zombie.signal("STOP");
    // Past the 1 s lease another agent gets the task and finishes it.
    let mut other = farm.agent("other", 1);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    assert_eq!(farm.effects_by_task().get(&1), Some(&vec![2]));
    assert!(
        alive(shell),
        "attempt 1's command runs on while its agent is stopped"
    );
    zombie.signal("CONT");
    // The zombie's next renewal finds its claim stale: it kills its command, leaves the
    // delivery alone and, the run being over, exits.
    let until = Instant::now() + Duration::from_secs(10);
    while alive(shell) {
        assert!(
            Instant::now() < until,
            "attempt 1's command still runs:\n{}",
            zombie.log()
        );
        sleep(Duration::from_millis(20));
    }
    assert_eq!(zombie.wait(Duration::from_secs(10)).code(), Some(0));
    let log = zombie.log();
    assert!(
        log.contains("task 1 attempt 1") && log.contains("stale"),
        "{log}"
    );
    assert!(log.contains("0 done") && log.contains("1 stale"), "{log}");
    assert_eq!(other.wait(Duration::from_secs(10)).code(), Some(0));
    // Exactly one success record, the other agent's attempt 2.
    farm.assert_each_done_once(1);
    let ended: Vec<_> = farm
        .journal()
        .into_iter()
        .filter(|l| l.1 == "ended")
        .collect();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!((ended[0].2, ended[0].3.as_str()), (2, "other"));
    assert_eq!(farm.effects_by_task().get(&1), Some(&vec![2]));
}

#[test]
fn a_poison_command_that_kills_its_agent_gives_up_after_the_crash_limit() {
    let (_server, farm) = farm("poison");
    // Task 1 kills the agent running it (its shell's parent), then waits for the
    // SIGKILL its agent's death sends it (PR_SET_PDEATHSIG); tasks 2-4 are fine.
    farm.tasks(4, |i| {
        if i == 1 {
            "echo $STURDY_TASK $STURDY_ATTEMPT >> EFFECTS; kill -9 $PPID; sleep 10;"
                .replace("EFFECTS", farm.effects().to_str().unwrap())
        } else {
            String::new()
        }
    });
    let mut coordinator = farm.coordinator(&["--max-worker-crashes", "1"]);
    let mut agent = farm.agent("a", 1);
    let mut restarts = 0;
    let until = Instant::now() + RUN_LIMIT;
    while coordinator.try_wait().is_none() {
        assert!(Instant::now() < until, "{}", coordinator.log());
        if let Some(status) = agent.try_wait() {
            assert_eq!(status.code(), None, "killed by the poison: {}", agent.log());
            restarts += 1;
            agent = farm.agent("a", 1);
        }
        sleep(Duration::from_millis(20));
    }
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(1),
        "{}",
        coordinator.log()
    );
    // Two claims of task 1 died with their agent (crash limit 1); the third delivery
    // gives it up without running it.
    assert_eq!(restarts, 2);
    assert_eq!(farm.effects_by_task().get(&1), Some(&vec![1, 2]));
    let last = farm
        .journal()
        .into_iter()
        .filter(|l| l.0 == 1 && l.1 == "ended")
        .collect::<Vec<_>>();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(
        (last[0].4.as_str(), last[0].5.as_str()),
        ("gave_up", "worker_crash")
    );
    for task in 2..=4 {
        assert_eq!(farm.done_records().get(&task), Some(&1));
    }
    let s = farm.summary();
    assert_eq!(
        (s["succeeded"].as_u64(), s["gave_up"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(s["failed_tasks"], serde_json::json!([1]));
}

/// Runs `sturdy ARGS` expecting exit 2 within `limit`; returns stderr.
fn bad(args: &[&str], limit: Duration) -> String {
    let started = Instant::now();
    let out = sturdy().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        started.elapsed() < limit,
        "{args:?} took {:?}",
        started.elapsed()
    );
    err
}

#[test]
fn bad_input_is_refused_with_exit_2_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    std::fs::write(&tasks, "true\n").unwrap();
    let t = tasks.to_str().unwrap();
    let quick = Duration::from_secs(8);
    // Malformed and unreachable URLs, for the coordinator and the agent.
    let err = bad(
        &["run", t, "--engine", "http://127.0.0.1:4222", "--run", "r"],
        quick,
    );
    assert!(
        err.contains("http://127.0.0.1:4222") && err.contains("malformed"),
        "{err}"
    );
    let err = bad(
        &[
            "agent",
            "--engine",
            "nats://no host:x",
            "--run",
            "r",
            "-j",
            "1",
        ],
        quick,
    );
    assert!(err.contains("no host"), "{err}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // bound, then closed: nobody listens there
    let url = format!("nats://127.0.0.1:{port}");
    let err = bad(&["run", t, "--engine", &url, "--run", "r"], quick);
    assert!(err.contains(&url) && err.contains("cannot reach"), "{err}");
    let err = bad(&["agent", "--engine", &url, "--run", "r", "-j", "1"], quick);
    assert!(err.contains(&url), "{err}");
    // An option of the local farm that a multi-host run does not support: output
    // while a task runs.
    let err = bad(
        &["run", t, "--engine", &url, "--run", "r", "--line-buffer"],
        quick,
    );
    assert!(
        err.contains("--line-buffer is not supported with --engine")
            && err.contains("prints lines while a task runs"),
        "{err}"
    );
    // The health gate's options are the agents' (each on its own host): accepted, the
    // coordinator goes on to the server.
    let err = bad(
        &[
            "run",
            t,
            "--engine",
            &url,
            "--run",
            "r",
            "--health-gate",
            "--load",
            "4",
            "--memfree",
            "1G",
        ],
        quick,
    );
    assert!(err.contains("cannot reach"), "{err}");
    // --run without --engine and the reverse.
    bad(&["run", t, "--run", "r"], quick);
    bad(&["run", t, "--engine", &url], quick);

    // A server without JetStream.
    let plain = Nats::start(&dir.path().join("plain"), false);
    let err = bad(&["run", t, "--engine", &plain.url, "--run", "r"], quick);
    assert!(err.contains("JetStream"), "{err}");

    let server = Nats::start(&dir.path().join("js"), true);
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    // An agent for a run that does not exist.
    let err = bad(
        &["agent", "--engine", &server.url, "--run", "nope", "-j", "1"],
        quick,
    );
    assert!(err.contains("no run \"nope\""), "{err}");
    // A bad run name.
    let err = bad(
        &[
            "run",
            t,
            "--engine",
            &server.url,
            "--run",
            "a.b",
            "--state-dir",
            s,
        ],
        quick,
    );
    assert!(err.contains("a.b"), "{err}");
    // A run created (its coordinator interrupted), then a different task list under its
    // name, and the same list without --resume.
    let mut first = Proc::spawn(
        &[
            "run",
            t,
            "--engine",
            &server.url,
            "--run",
            "taken",
            "--state-dir",
            s,
        ],
        dir.path().join("first.log"),
        None,
    );
    let until = Instant::now() + quick;
    while !first.log().contains("waiting for agents") {
        assert!(Instant::now() < until, "{}", first.log());
        sleep(Duration::from_millis(20));
    }
    first.kill();
    let other = dir.path().join("other");
    std::fs::write(&other, "false\n").unwrap();
    let err = bad(
        &[
            "run",
            other.to_str().unwrap(),
            "--engine",
            &server.url,
            "--run",
            "taken",
            "--resume",
        ],
        quick,
    );
    assert!(err.contains("fingerprint"), "{err}");
    let err = bad(
        &[
            "run",
            t,
            "--engine",
            &server.url,
            "--run",
            "taken",
            "--state-dir",
            s,
        ],
        quick,
    );
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn failures_are_retried_with_the_core_s_delay_and_given_up_after_max_attempts() {
    let (_server, farm) = farm("retry");
    // Task 1 fails on its first two attempts, task 2 on every one, task 3 never.
    farm.tasks(3, |i| match i {
        1 => "[ $STURDY_ATTEMPT -ge 3 ] || exit 3;".into(),
        2 => "exit 4;".into(),
        _ => String::new(),
    });
    let mut coordinator = farm.coordinator(&[
        "--max-attempts",
        "3",
        "--backoff-base",
        "100ms",
        "--backoff-cap",
        "200ms",
    ]);
    let _a = farm.agent("a", 2);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(1),
        "{}",
        coordinator.log()
    );
    let ended = |task: u32| -> Vec<(u32, String, String)> {
        farm.journal()
            .into_iter()
            .filter(|l| l.0 == task && l.1 == "ended")
            .map(|l| (l.2, l.4, l.5))
            .collect()
    };
    let retry = ("retry".to_string(), "evaluation".to_string());
    assert_eq!(
        ended(1),
        vec![
            (1, retry.0.clone(), retry.1.clone()),
            (2, retry.0.clone(), retry.1.clone()),
            (3, "done".into(), "-".into())
        ]
    );
    assert_eq!(
        ended(2),
        vec![
            (1, retry.0.clone(), retry.1.clone()),
            (2, retry.0.clone(), retry.1.clone()),
            (3, "gave_up".into(), "evaluation".into())
        ]
    );
    assert_eq!(ended(3), vec![(1, "done".into(), "-".into())]);
    // Commands ran once per attempt; the failing ones made no effect.
    let effects = farm.effects_by_task();
    assert_eq!(effects.get(&1), Some(&vec![3]));
    assert_eq!(effects.get(&2), None);
    let s = farm.summary();
    assert_eq!(
        (
            s["succeeded"].as_u64(),
            s["gave_up"].as_u64(),
            s["attempts"].as_u64()
        ),
        (Some(2), Some(1), Some(7))
    );
}

#[test]
fn named_slots_export_their_name_and_gpus() {
    let (_server, farm) = farm("slots");
    let seen = farm.path("seen");
    farm.tasks(12, |_| {
        format!(
            "echo \"$STURDY_SLOT=${{CUDA_VISIBLE_DEVICES-none}}\" >> {};",
            seen.display()
        )
    });
    let mut coordinator = farm.coordinator(&[]);
    let state = farm.path("g");
    let _agent = Proc::spawn(
        &[
            "agent",
            "--engine",
            &farm.url,
            "--run",
            &farm.run,
            "--slots",
            "gpu:0,gpu:1+2,cpu",
            "--host",
            "g",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        farm.path("g.log"),
        None,
    );
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    let text = std::fs::read_to_string(&seen).unwrap();
    let allowed = ["gpu:0=0", "gpu:1+2=1,2", "cpu=none"];
    for line in text.lines() {
        assert!(allowed.contains(&line), "{line:?}");
    }
    assert_eq!(text.lines().count(), 12);
    farm.assert_each_done_once(12);
}

#[test]
fn a_stopped_agent_that_nobody_replaced_finishes_and_is_accepted_once() {
    let (_server, farm) = farm("late");
    let started = farm.path("started");
    farm.tasks(1, |_| format!("touch {}; sleep 1.5;", started.display()));
    let mut coordinator = farm.coordinator(&["--max-worker-crashes", "3"]);
    let mut agent = farm.agent("a", 1);
    let until = Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(Instant::now() < until, "{}", agent.log());
        sleep(Duration::from_millis(20));
    }
    agent.signal("STOP");
    sleep(Duration::from_millis(2500)); // past the 1 s lease; no other agent
    agent.signal("CONT");
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    assert_eq!(agent.wait(Duration::from_secs(10)).code(), Some(0));
    farm.assert_each_done_once(1);
    assert_eq!(farm.effects_by_task().get(&1), Some(&vec![1]));
    let log = agent.log();
    assert!(log.contains("1 done") && log.contains("0 stale"), "{log}");
}

#[test]
fn a_host_whose_commands_always_fail_opens_its_breakers_and_the_work_moves() {
    let (_server, farm) = farm("breaker");
    farm.tasks(30, |_| "[ -z \"$BROKEN_HOST\" ] || exit 1;".into());
    let mut coordinator = farm.coordinator(&[
        "--max-attempts",
        "5",
        "--backoff-base",
        "0",
        "--breaker-failures",
        "2",
        "--breaker-open",
        "60s",
    ]);
    let broken = {
        let state = farm.path("broken");
        let log = File::create(farm.path("broken.log")).unwrap();
        sturdy()
            .args([
                "agent",
                "--engine",
                &farm.url,
                "--run",
                &farm.run,
                "--workers",
                "2",
                "--host",
                "broken",
                "--state-dir",
                state.to_str().unwrap(),
            ])
            .env("BROKEN_HOST", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut broken = Proc {
        child: broken,
        log: farm.path("broken.log"),
    };
    sleep(Duration::from_millis(500)); // the broken host opens both its breakers first
    let _good = farm.agent("good", 2);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    farm.assert_each_done_once(30);
    let journal = farm.journal();
    let on_broken: Vec<_> = journal
        .iter()
        .filter(|l| l.1 == "ended" && l.3 == "broken")
        .collect();
    // Two failures per slot open its breaker (open 60 s): nothing more ran there.
    assert!(
        !on_broken.is_empty() && on_broken.len() <= 4,
        "{on_broken:?}"
    );
    assert!(on_broken.iter().all(|l| l.4 == "retry"), "{on_broken:?}");
    assert!(
        journal
            .iter()
            .filter(|l| l.1 == "ended" && l.4 == "done")
            .all(|l| l.3 == "good")
    );
    assert_eq!(broken.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(broken.log().contains("breaker open"), "{}", broken.log());
}

#[test]
fn halt_now_on_the_first_failure_aborts_the_run_across_hosts() {
    // Task 1 fails at once; the others take 2 s each. `--halt now,fail=1`: the
    // coordinator aborts the run (the agents kill their commands and exit) and exits 1.
    let (_server, farm) = farm("halt-now");
    farm.tasks(8, |i| {
        if i == 1 {
            "exit 3;".into()
        } else {
            "sleep 2;".into()
        }
    });
    let mut coordinator = farm.coordinator(&["--max-attempts", "1", "--halt", "now,fail=1"]);
    let mut a = farm.agent("a", 2);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(1),
        "{}",
        coordinator.log()
    );
    assert!(
        coordinator
            .log()
            .contains("--halt: 1 task(s) failed for good; aborting"),
        "{}",
        coordinator.log()
    );
    let s = farm.summary();
    assert_eq!(
        (
            s["halted"].as_str(),
            s["complete"].as_bool(),
            s["gave_up"].as_u64()
        ),
        (Some("fail"), Some(false), Some(1))
    );
    assert!(s["succeeded"].as_u64().unwrap() < 7, "{s}");
    assert_eq!(
        a.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        a.log()
    );
}

#[test]
fn halt_soon_on_successes_drains_lets_the_running_finish_and_exits_0() {
    // One slot, tasks of 0.3 s: after 2 successes the run drains; the attempt running
    // then finishes and is recorded; the coordinator exits 0 (halted on success, nothing
    // failed), as the local farm does.
    let (_server, farm) = farm("halt-soon");
    farm.tasks(10, |_| "sleep 0.3;".into());
    let mut coordinator = farm.coordinator(&["--halt", "soon,success=2"]);
    let mut a = farm.agent("a", 1);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    let s = farm.summary();
    assert_eq!(
        (
            s["halted"].as_str(),
            s["running"].as_u64(),
            s["gave_up"].as_u64()
        ),
        (Some("success"), Some(0), Some(0))
    );
    let done = s["succeeded"].as_u64().unwrap();
    assert!((2..=3).contains(&done), "{s}");
    assert_eq!(
        a.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        a.log()
    );
    // Every success in the summary made its effect once; nothing else ran.
    assert_eq!(farm.effects_by_task().len() as u64, done);
}

#[test]
fn joblog_has_one_line_per_finished_task_with_its_host() {
    // Task 2 fails on both its attempts: one joblog line per task, for its last attempt.
    let (_server, farm) = farm("joblog");
    farm.tasks(3, |i| {
        if i == 2 {
            "exit 3;".into()
        } else {
            String::new()
        }
    });
    let joblog = farm.path("joblog.tsv");
    let mut coordinator = farm.coordinator(&[
        "--max-attempts",
        "2",
        "--backoff-base",
        "0",
        "--joblog",
        joblog.to_str().unwrap(),
    ]);
    let _a = farm.agent("a", 1);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(1),
        "{}",
        coordinator.log()
    );
    let text = std::fs::read_to_string(&joblog).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    let mut rows: Vec<(u32, String, String, String, String)> = lines
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 9, "{l:?}");
            assert!(c[2].parse::<f64>().unwrap() > 1.0e9, "{l:?}");
            (
                c[0].parse().unwrap(),
                c[1].to_string(),
                c[6].to_string(),
                c[7].to_string(),
                c[8].to_string(),
            )
        })
        .collect();
    rows.sort();
    let tail = format!(
        "echo $STURDY_TASK $STURDY_ATTEMPT >> {}",
        farm.effects().display()
    );
    for r in &rows {
        assert!(r.4.ends_with(&tail), "{r:?}");
    }
    assert!(rows[1].4.starts_with("exit 3;"), "{rows:?}");
    let cols: Vec<_> = rows
        .iter()
        .map(|r| (r.0, r.1.as_str(), r.2.as_str(), r.3.as_str()))
        .collect();
    assert_eq!(
        cols,
        [(1, "a", "0", "0"), (2, "a", "3", "0"), (3, "a", "0", "0")]
    );
}

/// Waits until the coordinator's journal holds at least `n` claims.
fn wait_for_claims(farm: &Farm, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    while farm.journal().iter().filter(|l| l.1 == "claimed").count() < n {
        assert!(Instant::now() < until, "fewer than {n} claims after 20 s");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_coordinator_s_first_sigint_drains_and_waits_its_second_aborts() {
    // First SIGINT: the agents start nothing more, the running attempts (1.5 s) finish
    // and are recorded, then the coordinator exits 1 (interrupted) and the agent 0.
    let (_server, farm) = farm("drain");
    farm.tasks(8, |_| "sleep 1.5;".into());
    let mut coordinator = farm.coordinator(&[]);
    let mut a = farm.agent("a", 2);
    wait_for_claims(&farm, 2);
    coordinator.signal("INT");
    sleep(Duration::from_millis(300));
    assert!(
        coordinator.try_wait().is_none(),
        "the coordinator waits for the running attempts:\n{}",
        coordinator.log()
    );
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(1),
        "{}",
        coordinator.log()
    );
    assert!(coordinator.log().contains("draining run drain (SIGINT)"));
    let s = farm.summary();
    assert_eq!(s["running"].as_u64(), Some(0), "{s}");
    let done = s["succeeded"].as_u64().unwrap();
    assert!((2..8).contains(&done), "{s}");
    assert_eq!(
        a.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        a.log()
    );
    assert_eq!(farm.effects_by_task().len() as u64, done);

    // First SIGINT drains, a second aborts: the agents kill the running commands (30 s)
    // and the coordinator exits at once.
    let (_server2, farm) = self::farm("abort");
    farm.tasks(4, |_| "sleep 30;".into());
    let mut coordinator = farm.coordinator(&[]);
    let mut a = farm.agent("a", 2);
    wait_for_claims(&farm, 2);
    coordinator.signal("INT");
    sleep(Duration::from_millis(300));
    assert!(coordinator.try_wait().is_none(), "{}", coordinator.log());
    coordinator.signal("INT");
    assert_eq!(
        coordinator.wait(Duration::from_secs(10)).code(),
        Some(1),
        "{}",
        coordinator.log()
    );
    assert!(
        coordinator.log().contains("aborting run abort"),
        "{}",
        coordinator.log()
    );
    assert_eq!(
        a.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        a.log()
    );
    assert!(farm.effects_by_task().is_empty());
}

#[test]
fn a_sigkilled_agent_s_commands_and_what_they_started_die_with_it() {
    // Each command backgrounds a sleep (a grandchild of the agent; a second one leaves
    // the process group with setsid) and waits. SIGKILL the agent: the shells died with
    // it before (PDEATHSIG), but the sleeps lived on and kept running tasks that the
    // engine hands to another host; now the agent's fence kills them.
    let (_server, farm) = farm("fence");
    let pids = farm.path("pids");
    std::fs::create_dir(&pids).unwrap();
    farm.tasks(2, |_| {
        format!(
            "sleep 30 & echo $! > {p}/$STURDY_TASK.bg; setsid sleep 31 & echo $! > {p}/$STURDY_TASK.sid; wait;",
            p = pids.display()
        )
    });
    let _coordinator = farm.coordinator(&[]);
    let mut a = farm.agent("a", 2);
    let until = Instant::now() + Duration::from_secs(20);
    let read = |name: &str| -> Option<i32> {
        std::fs::read_to_string(pids.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let names = ["1.bg", "1.sid", "2.bg", "2.sid"];
    let started: Vec<i32> = loop {
        let got: Vec<i32> = names.iter().filter_map(|n| read(n)).collect();
        if got.len() == names.len() && got.iter().all(|&p| alive(p)) {
            break got;
        }
        assert!(Instant::now() < until, "commands not started:\n{}", a.log());
        sleep(Duration::from_millis(20));
    };
    a.kill();
    let until = Instant::now() + Duration::from_secs(5);
    while started.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < until,
            "still alive 5 s after the agent's SIGKILL: {:?}",
            started.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        sleep(Duration::from_millis(20));
    }
}

/// A loopback TCP proxy to one port. While `cut` is set it forwards nothing either way and
/// leaves the sockets open (bytes wait in the kernel's buffers, as TCP would hold them
/// through a partition); cleared, it forwards again.
struct Proxy {
    url: String,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (from, into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || pump(from, into, &flag));
                }
            }
        });
        Self { url, cut }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` into `into` until either end closes, reading nothing while `cut` is set.
fn pump(mut from: TcpStream, mut into: TcpStream, cut: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0_u8; 16 * 1024];
    loop {
        if cut.load(Ordering::SeqCst) {
            sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if into.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = into.shutdown(Shutdown::Write);
}

#[test]
fn an_agent_cut_off_past_its_lease_loses_its_tasks_to_another_once_each() {
    const TASKS: u32 = 16;
    let (server, farm) = farm("partition");
    let proxy = Proxy::start(server.port);
    farm.tasks(TASKS, |_| "sleep 0.5;".into());
    let mut coordinator = farm.coordinator(&["--max-worker-crashes", "100"]);
    let mut a = farm.agent_at("a", 2, &proxy.url, &[]);
    // Wait until `a` holds tasks (its claims reached the coordinator's journal).
    let until = Instant::now() + Duration::from_secs(30);
    while !farm
        .journal()
        .iter()
        .any(|l| l.1 == "claimed" && l.3 == "a")
    {
        assert!(Instant::now() < until, "no claim by a:\n{}", a.log());
        sleep(Duration::from_millis(20));
    }
    proxy.cut();
    let cut_at = farm.journal().len();
    let mut b = farm.agent("b", 2);
    sleep(Duration::from_secs(3)); // well past the 1 s lease
    // On a loaded machine `b` may be slow to claim again: stay cut until it has.
    let held: Vec<u32> = farm.journal()[..cut_at]
        .iter()
        .filter(|l| l.1 == "claimed" && l.3 == "a")
        .map(|l| l.0)
        .collect();
    let until = Instant::now() + Duration::from_secs(60);
    while !farm
        .journal()
        .iter()
        .any(|l| l.1 == "claimed" && l.3 == "b" && held.contains(&l.0))
    {
        assert!(Instant::now() < until, "b took nothing over:\n{}", b.log());
        sleep(Duration::from_millis(20));
    }
    proxy.heal();
    let status = coordinator.wait(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", coordinator.log());
    assert_eq!(
        a.wait(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        a.log()
    );
    assert_eq!(
        b.wait(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        b.log()
    );
    let journal = farm.journal();
    // No task lost, none done twice.
    farm.assert_each_done_once(TASKS);
    // Every task made its effect; at most twice (a's attempt cut off, and b's).
    let effects = farm.effects_by_task();
    for task in 1..=TASKS {
        let n = effects.get(&task).map_or(0, Vec::len);
        assert!((1..=2).contains(&n), "task {task}: effects {effects:?}");
    }
    // The attempts `a` claimed before the cut and `b` claimed again.
    let claims = |host: &str| -> Vec<(u32, u32)> {
        journal
            .iter()
            .filter(|l| l.1 == "claimed" && l.3 == host)
            .map(|l| (l.0, l.2))
            .collect()
    };
    let (by_a, by_b) = (claims("a"), claims("b"));
    let taken: Vec<(u32, u32)> = journal[..cut_at]
        .iter()
        .filter(|l| l.1 == "claimed" && l.3 == "a")
        .map(|l| (l.0, l.2))
        .filter(|&(task, attempt)| by_b.iter().any(|&(t, at)| t == task && at > attempt))
        .collect();
    assert!(
        !taken.is_empty(),
        "b took none of a's tasks over; a: {by_a:?}, b: {by_b:?}\n{journal:?}"
    );
    for &(task, attempt) in &taken {
        let lines: Vec<_> = journal
            .iter()
            .filter(|l| l.0 == task && l.2 == attempt && l.3 == "a")
            .collect();
        // `a`'s superseded attempt is refused: no end record of its own, a stale note.
        assert!(
            !lines.iter().any(|l| l.1 == "ended"),
            "task {task} attempt {attempt}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.1 == "stale"),
            "task {task} attempt {attempt} not journaled stale: {lines:?}\n{}",
            a.log()
        );
        // The one done record is the later attempt's.
        let done: Vec<_> = journal
            .iter()
            .filter(|l| l.0 == task && l.1 == "ended" && l.4 == "done")
            .collect();
        assert!(done[0].2 > attempt, "task {task}: {done:?}");
    }
    let log = a.log();
    assert!(
        log.contains(&format!("{} stale", taken.len())),
        "a's summary should count {} stale attempts:\n{log}",
        taken.len()
    );
}

#[test]
fn an_agent_whose_health_gate_is_closed_takes_nothing_while_another_finishes_the_run() {
    let (_server, farm) = farm("gated");
    farm.tasks(20, |_| String::new());
    // The run's limits go to every agent; these ones no host breaks.
    let mut coordinator = farm.coordinator(&["--memfree", "1k", "--load", "100000"]);
    // No host has 1 PiB of memory available: this agent's gate stays closed.
    let mut gated = farm.agent_with("gated", 2, &["--memfree", "1P"]);
    let until = Instant::now() + Duration::from_secs(20);
    while gated.log().matches("health gate closed").count() < 2 {
        if let Some(status) = gated.try_wait() {
            panic!("the gated agent exited with {status}:\n{}", gated.log());
        }
        assert!(
            Instant::now() < until,
            "both slots should report the closed gate:\n{}",
            gated.log()
        );
        sleep(Duration::from_millis(20));
    }
    // Only now may anybody work, and only the agent without a gate does.
    let mut open = farm.agent("open", 2);
    let status = coordinator.wait(RUN_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", coordinator.log());
    farm.assert_each_done_once(20);
    let hosts: std::collections::BTreeSet<String> =
        farm.journal().into_iter().map(|l| l.3).collect();
    assert_eq!(
        hosts,
        std::collections::BTreeSet::from(["open".to_string()]),
        "the gated agent claimed a task:\n{}",
        gated.log()
    );
    let effects = farm.effects_by_task();
    assert_eq!(effects.len(), 20);
    assert!(effects.values().all(|a| a == &vec![1]), "{effects:?}");
    // The run is over: both agents drain and exit 0, the gated one without a claim.
    assert_eq!(open.wait(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(
        gated.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        gated.log()
    );
    assert!(
        gated.log().contains("0 attempts"),
        "the gated agent's summary:\n{}",
        gated.log()
    );
}

#[test]
fn retry_failed_on_resume_reruns_only_the_given_up_tasks_with_a_fresh_budget() {
    let (_server, farm) = farm("retryfailed");
    let fixed = farm.path("fixed");
    // Task 1 succeeds; task 2 fails until `fixed` exists; task 3 always fails.
    farm.tasks(3, |i| match i {
        2 => format!("[ -e {} ] || exit 5;", fixed.display()),
        3 => "exit 6;".into(),
        _ => String::new(),
    });
    let settings = ["--max-attempts", "2", "--backoff-base", "50ms"];
    let mut first = farm.coordinator(&settings);
    let mut a = farm.agent("a", 2);
    assert_eq!(first.wait(RUN_LIMIT).code(), Some(1), "{}", first.log());
    a.kill();
    assert_eq!(
        (
            farm.summary()["succeeded"].as_u64(),
            farm.summary()["gave_up"].as_u64()
        ),
        (Some(1), Some(2))
    );
    std::fs::write(&fixed, "").unwrap();
    // An agent started before the resuming coordinator waits for it (the finished run's
    // control says the run is over), rather than exiting at once.
    let mut b = farm.agent_with("b", 2, &["--wait-for-run"]);
    let until = Instant::now() + Duration::from_secs(15);
    while !b.log().contains("is stopped") {
        assert!(b.try_wait().is_none(), "b exited:\n{}", b.log());
        assert!(Instant::now() < until, "b is not waiting:\n{}", b.log());
        sleep(Duration::from_millis(20));
    }
    let mut second = farm.coordinator(&[&settings[..], &["--resume", "--retry-failed"]].concat());
    assert!(
        second.log().contains("2 given-up task(s) reopened"),
        "{}",
        second.log()
    );
    assert_eq!(second.wait(RUN_LIMIT).code(), Some(1), "{}", second.log());
    assert_eq!(
        b.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        b.log()
    );
    // The journal replays the whole history: task 1 ran once; tasks 2 and 3 were
    // reopened after giving up and claimed again from attempt 1 of a new budget.
    let journal = farm.journal();
    let of = |task: u32| -> Vec<(String, u32, String)> {
        journal
            .iter()
            .filter(|l| l.0 == task && l.1 != "claimed")
            .map(|l| (l.1.clone(), l.2, l.4.clone()))
            .collect()
    };
    let ended = |attempt: u32, outcome: &str| ("ended".to_string(), attempt, outcome.to_string());
    let reopened = ("reopened".to_string(), 0, "-".to_string());
    assert_eq!(of(1), vec![ended(1, "done")]);
    assert_eq!(
        of(2),
        vec![
            ended(1, "retry"),
            ended(2, "gave_up"),
            reopened.clone(),
            ended(1, "done")
        ]
    );
    assert_eq!(
        of(3),
        vec![
            ended(1, "retry"),
            ended(2, "gave_up"),
            reopened,
            ended(1, "retry"),
            ended(2, "gave_up")
        ]
    );
    // Side effects: task 1 once (never again), task 2 once (its first attempt after the
    // reopening), task 3 never.
    let effects = farm.effects_by_task();
    assert_eq!(effects.get(&1), Some(&vec![1]));
    assert_eq!(effects.get(&2), Some(&vec![1]));
    assert_eq!(effects.get(&3), None);
    let s = farm.summary();
    assert_eq!(
        (s["succeeded"].as_u64(), s["gave_up"].as_u64()),
        (Some(2), Some(1))
    );
}

/// A `sturdy run` of the farm's task list with `extra` options, run to its exit.
fn run_once(farm: &Farm, extra: &[&str]) -> std::process::Output {
    let tasks = farm.path("tasks");
    let state = farm.path("coord");
    sturdy()
        .args([
            "run",
            tasks.to_str().unwrap(),
            "--engine",
            &farm.url,
            "--run",
            &farm.run,
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn resume_failed_reruns_the_fixed_tasks_once_under_their_new_commands() {
    let (_server, farm) = farm("resumefailed");
    // Tasks 2 and 5 fail (before their effect) until the list is fixed.
    let broken = |i: u32| {
        if i == 2 || i == 5 {
            "exit 3;".to_string()
        } else {
            String::new()
        }
    };
    farm.tasks(6, broken);
    let settings = ["--max-attempts", "2", "--backoff-base", "50ms"];
    let mut first = farm.coordinator(&settings);
    let mut a = farm.agent("a", 2);
    assert_eq!(first.wait(RUN_LIMIT).code(), Some(1), "{}", first.log());
    a.kill();
    assert_eq!(farm.summary()["gave_up"].as_u64(), Some(2));
    let before = farm.journal().len();

    // A fixed list of another length is refused, and nothing changes.
    let original = std::fs::read_to_string(farm.path("tasks")).unwrap();
    let fixed = farm.tasks(6, |i| {
        if i == 1 {
            "true;".into()
        } else {
            String::new()
        }
    });
    let fixed_text = std::fs::read_to_string(&fixed).unwrap();
    std::fs::write(farm.path("tasks"), format!("{original}true\n")).unwrap();
    let out = run_once(&farm, &[&settings[..], &["--resume-failed"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("holds 6 tasks; this list has 7") && err.contains("nothing was changed"),
        "{err}"
    );
    // Plain --resume still refuses a different list of the same length.
    std::fs::write(farm.path("tasks"), &fixed_text).unwrap();
    let out = run_once(&farm, &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fingerprint"), "{err}");
    // The run is still the original list's: --resume with it re-attaches (and ends at
    // once: every task finished).
    std::fs::write(farm.path("tasks"), &original).unwrap();
    let out = run_once(&farm, &["--resume"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The fixed list (tasks 2 and 5 repaired, task 1's text changed although it
    // succeeded) with --resume-failed: tasks 2 and 5 run once more under their new
    // commands, the others never again.
    std::fs::write(farm.path("tasks"), &fixed_text).unwrap();
    let mut second = farm.coordinator(&[&settings[..], &["--resume-failed"]].concat());
    assert!(
        second.log().contains("2 given-up task(s) reopened")
            && second.log().contains("task(s) have a new command"),
        "{}",
        second.log()
    );
    let _b = farm.agent("b", 2);
    assert_eq!(second.wait(RUN_LIMIT).code(), Some(0), "{}", second.log());
    let effects = farm.effects_by_task();
    for task in 1..=6 {
        assert_eq!(
            effects.get(&task),
            Some(&vec![1]),
            "task {task}: {effects:?}"
        );
    }
    assert!(farm.journal().len() > before);
    let s = farm.summary();
    assert_eq!(
        (s["succeeded"].as_u64(), s["gave_up"].as_u64()),
        (Some(6), Some(0))
    );
    // Later --resumes take the new list (and replay the whole journal before they call
    // the run complete: every task looked finished before the reopenings), and refuse
    // the old one.
    let out = run_once(&farm, &["--resume", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (again["succeeded"].as_u64(), again["gave_up"].as_u64()),
        (Some(6), Some(0)),
        "{err}"
    );
    std::fs::write(farm.path("tasks"), &original).unwrap();
    let out = run_once(&farm, &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("fingerprint"), "{err}");
}

#[test]
fn resume_failed_gives_a_waiting_task_its_new_text_and_a_running_one_after_its_attempt() {
    let (_server, farm) = farm("retext");
    let texts = farm.path("texts");
    let t = texts.display();
    // Task 1 runs long and fails; task 2 waits (one slot).
    let old = format!(
        "echo old1 $STURDY_ATTEMPT >> {t}; sleep 2; exit 3\necho old2 $STURDY_ATTEMPT >> {t}\n"
    );
    std::fs::write(farm.path("tasks"), &old).unwrap();
    // A retry waits 1 s (no jitter): time for the coordinator to replace the message.
    let settings = [
        "--max-attempts",
        "3",
        "--backoff-base",
        "1s",
        "--jitter",
        "none",
    ];
    let mut first = farm.coordinator(&settings);
    let _a = farm.agent("a", 1);
    wait_for_claims(&farm, 1);
    first.kill();
    let new = format!("echo new1 $STURDY_ATTEMPT >> {t}\necho new2 $STURDY_ATTEMPT >> {t}\n");
    std::fs::write(farm.path("tasks"), &new).unwrap();
    let mut second = farm.coordinator(&[&settings[..], &["--resume-failed"]].concat());
    assert!(
        second
            .log()
            .contains("2 task(s) have a new command; those that had not succeeded run under it"),
        "{}",
        second.log()
    );
    assert!(
        second.log().contains("1 of them run now"),
        "{}",
        second.log()
    );
    assert_eq!(second.wait(RUN_LIMIT).code(), Some(0), "{}", second.log());
    // Task 1's running attempt kept its old command; its retry ran the new one (attempt
    // 1 of a fresh budget); task 2 never ran its old text.
    let ran = std::fs::read_to_string(&texts).unwrap();
    let mut ran: Vec<&str> = ran.lines().collect();
    ran.sort_unstable();
    assert_eq!(ran, ["new1 1", "new2 1", "old1 1"]);
    let amended = std::fs::read_to_string(farm.path("coord/amended.tsv")).unwrap();
    assert!(
        amended.contains(&format!(
            "1\techo old1 $STURDY_ATTEMPT >> {t}; sleep 2; exit 3"
        )) && amended.contains(&format!("2\techo old2 $STURDY_ATTEMPT >> {t}")),
        "{amended}"
    );
}

/// The coordinator's peak resident set (VmHWM, KiB) over creating run `run` of `n`
/// 40-byte tasks, enqueueing them all and following the (empty) journal for a moment;
/// no agent runs. Stopped with two SIGINTs.
fn coordinator_peak(server: &Nats, dir: &Path, run: &str, n: usize) -> u64 {
    let tasks = dir.join(format!("{run}.txt"));
    let mut f = std::io::BufWriter::new(File::create(&tasks).unwrap());
    for _ in 0..n {
        writeln!(f, "true # ..............................").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let state = dir.join(run);
    let mut p = Proc::spawn(
        &[
            "run",
            tasks.to_str().unwrap(),
            "--engine",
            &server.url,
            "--run",
            run,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        dir.join(format!("{run}.log")),
        None,
    );
    let status = format!("/proc/{}/status", p.pid());
    let peak = || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let until = Instant::now() + Duration::from_secs(300);
    while !p.log().contains("waiting for agents") {
        assert!(
            p.try_wait().is_none(),
            "the coordinator exited:\n{}",
            p.log()
        );
        assert!(
            Instant::now() < until,
            "not enqueued after 300 s:\n{}",
            p.log()
        );
        sleep(Duration::from_millis(50));
    }
    assert!(
        p.log().contains(&format!("{n} tasks ({n} queued")),
        "{}",
        p.log()
    );
    sleep(Duration::from_millis(500));
    let kib = peak();
    p.signal("INT");
    sleep(Duration::from_millis(200));
    p.signal("INT");
    p.wait(Duration::from_secs(30));
    kib
}

#[test]
fn the_coordinator_s_memory_does_not_grow_with_the_task_list_s_text() {
    // 200 000 tasks of 40 bytes (8 MB of text; the coordinator held it all, and a
    // record-sized view per task, before it read the list as it goes) against 2 000.
    let dir = tempfile::tempdir().unwrap();
    let server = Nats::start(&dir.path().join("nats"), true);
    let base = coordinator_peak(&server, dir.path(), "small", 2_000);
    let big = coordinator_peak(&server, dir.path(), "big", 200_000);
    assert!(base > 0);
    eprintln!("coordinator peak RSS: {base} KiB at 2 000 tasks, {big} KiB at 200 000");
    assert!(
        big <= base + 4 * 1024,
        "coordinator peak RSS {big} KiB at 200 000 tasks, {base} KiB at 2 000"
    );
}

#[test]
fn delay_spaces_the_starts_on_one_agent() {
    let (_server, farm) = farm("delay");
    let starts = farm.path("starts");
    // Each command notes when it started (ns since the epoch) and runs a while, so the
    // three slots would all start at once without the delay.
    farm.tasks(6, |_| {
        format!("date +%s%N >> {}; sleep 0.3;", starts.display())
    });
    let mut coordinator = farm.coordinator(&["--delay", "400ms"]);
    let _a = farm.agent("a", 3);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    farm.assert_each_done_once(6);
    let mut at: Vec<u64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    at.sort_unstable();
    assert_eq!(at.len(), 6);
    // The agent allows one start per 400 ms: consecutive starts are at least that far
    // apart, less the difference between two claims' round trips (bounded here by half).
    let gaps: Vec<u64> = at.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
    assert!(gaps.iter().all(|ms| *ms >= 200), "gaps in ms: {gaps:?}");
}

#[test]
fn the_coordinator_serves_the_local_farm_s_metrics_from_its_projection() {
    let (_server, farm) = farm("metrics");
    // Tasks 1-4 succeed, task 5 fails for good, task 6 runs until the test ends.
    farm.tasks(6, |i| match i {
        5 => "exit 3;".into(),
        6 => "sleep 60;".into(),
        _ => String::new(),
    });
    let coordinator = farm.coordinator(&["--max-attempts", "1", "--metrics-listen", "127.0.0.1:0"]);
    let log = coordinator.log();
    let addr = log
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address printed:\n{log}"))
        .to_string();
    let _a = farm.agent("a", 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (status, text) = http_get(&addr, "/metrics");
        assert_eq!(status, 200);
        let ended = series(&text, "sturdy_farm_tasks_succeeded_total").unwrap_or(0.0)
            + series(&text, "sturdy_farm_tasks_failed_total").unwrap_or(0.0);
        if ended >= 5.0 && series(&text, "sturdy_farm_attempts_running") == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        sleep(Duration::from_millis(50));
    };
    promtool_check(&text);
    assert_eq!(series(&text, "sturdy_farm_tasks"), Some(6.0), "{text}");
    assert_eq!(
        series(&text, "sturdy_farm_tasks_succeeded_total"),
        Some(4.0)
    );
    assert_eq!(series(&text, "sturdy_farm_tasks_failed_total"), Some(1.0));
    assert_eq!(
        series(&text, "sturdy_farm_attempts_total{verdict=\"done\"}"),
        Some(4.0)
    );
    assert_eq!(
        series(&text, "sturdy_farm_attempts_total{verdict=\"gave_up\"}"),
        Some(1.0)
    );
    assert_eq!(http_get(&addr, "/livez"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(&addr, "/readyz").0, 200);
    // The first SIGINT drains the run: /readyz says it no longer dispatches.
    coordinator.signal("INT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(&addr, "/readyz").0 != 503 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 200 while draining"
        );
        sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------
// Task output across hosts: the agents ship each task's final output through the
// engine; the coordinator prints it as the local farm does.

/// Six tasks, each printing `task N out` to stdout and `task N err` to stderr (the
/// later ones sooner: task i sleeps (6 - i) tenths of a second first, so they do not
/// finish in task order); task 5's first attempt prints `task 5 early` on both and
/// fails, its second prints as the others do.
fn printing_tasks(farm: &Farm) {
    farm.tasks(6, |i| {
        let early = if i == 5 {
            "[ $STURDY_ATTEMPT -ge 2 ] || { echo task 5 early; echo task 5 early >&2; exit 3; };"
        } else {
            ""
        };
        format!(
            "sleep 0.{}; {early} echo task {i} out; echo task {i} err >&2;",
            6 - i
        )
    });
}

/// Runs the printing tasks of [`printing_tasks`] on two agents of one slot each through a
/// coordinator given `extra`: its exit status, stdout and stderr.
fn printing_run(server: &Nats, run: &str, extra: &[&str]) -> (Farm, Option<i32>, String, String) {
    let farm = Farm::new(&server.url, tempfile::tempdir().unwrap(), run);
    printing_tasks(&farm);
    let mut args = vec!["--backoff-base", "0"];
    args.extend_from_slice(extra);
    let mut coordinator = farm.coordinator_printing(&args);
    let mut a = farm.agent("a", 1);
    let mut b = farm.agent("b", 1);
    let code = coordinator.wait(RUN_LIMIT).code();
    let stdout = std::fs::read_to_string(farm.path("stdout")).unwrap();
    let stderr = coordinator.log();
    a.wait(Duration::from_secs(15));
    b.wait(Duration::from_secs(15));
    (farm, code, stdout, stderr)
}

/// The lines of `text` that are tasks' output (not sturdy's own), in order.
fn task_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("task ")).collect()
}

#[test]
fn each_task_s_output_comes_back_to_the_coordinator_once_grouped_and_tagged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Nats::start(&dir.path().join("nats"), true);

    let (farm, code, stdout, stderr) = printing_run(&server, "out-plain", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut out = task_lines(&stdout);
    out.sort_unstable();
    let want_out: Vec<String> = (1..=6).map(|i| format!("task {i} out")).collect();
    assert_eq!(out, want_out, "{stdout}");
    let mut err: Vec<&str> = task_lines(&stderr)
        .into_iter()
        .filter(|l| !l.starts_with("sturdy"))
        .collect();
    err.sort_unstable();
    let want_err: Vec<String> = (1..=6).map(|i| format!("task {i} err")).collect();
    assert_eq!(err, want_err, "{stderr}");
    // Only the final attempt's output is printed (as the local farm); the failed
    // attempt's stays on its host.
    assert!(
        !stdout.contains("early") && !stderr.contains("early"),
        "{stdout}{stderr}"
    );
    let kept: Vec<String> = ["a", "b"]
        .iter()
        .filter_map(|h| std::fs::read_to_string(farm.path(h).join("out/5.1.out")).ok())
        .collect();
    assert_eq!(kept, ["task 5 early\n"]);

    // --tag: each line prefixed by its task's command and a tab.
    let (farm, code, stdout, stderr) = printing_run(&server, "out-tag", &["--tag"]);
    assert_eq!(code, Some(0), "{stderr}");
    let commands: Vec<String> = std::fs::read_to_string(farm.path("tasks"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut out = task_lines(&stdout);
    out.sort_unstable_by_key(|l| l.rsplit('\t').next().map(str::to_string));
    let want: Vec<String> = (1..=6)
        .map(|i| format!("{}\ttask {i} out", commands[i - 1]))
        .collect();
    assert_eq!(out, want, "{stdout}");
    for i in 1..=6 {
        let line = format!("{}\ttask {i} err\n", commands[i - 1]);
        assert_eq!(stderr.matches(&line).count(), 1, "{stderr}");
    }

    // -k: in task order, whatever order the tasks finished in.
    let (_farm, code, stdout, stderr) = printing_run(&server, "out-k", &["-k"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(task_lines(&stdout), want_out, "{stdout}");

    // --results DIR: each task's stdout, stderr and seq in DIR (and nothing printed).
    let results = dir.path().join("results");
    let (_farm, code, stdout, stderr) = printing_run(
        &server,
        "out-res",
        &["--results", results.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(task_lines(&stdout), Vec::<&str>::new());
    let mut found = BTreeMap::new();
    for entry in walk(&results) {
        if entry.file_name().is_some_and(|n| n == "seq") {
            let d = entry.parent().unwrap();
            let seq: u32 = std::fs::read_to_string(&entry).unwrap().parse().unwrap();
            let out = std::fs::read_to_string(d.join("stdout")).unwrap();
            let err = std::fs::read_to_string(d.join("stderr")).unwrap();
            found.insert(seq, (out, err));
        }
    }
    let want: BTreeMap<u32, (String, String)> = (1..=6)
        .map(|i| (i, (format!("task {i} out\n"), format!("task {i} err\n"))))
        .collect();
    assert_eq!(found, want);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

#[test]
fn a_quiet_run_creates_no_output_files_and_a_large_output_arrives_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let server = Nats::start(&dir.path().join("nats"), true);

    // Quiet tasks: no output file on any agent, nothing printed.
    let farm = Farm::new(&server.url, tempfile::tempdir().unwrap(), "quiet");
    farm.tasks(6, |_| "true;".into());
    let mut coordinator = farm.coordinator_printing(&[]);
    let mut a = farm.agent("a", 2);
    let mut b = farm.agent("b", 2);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    a.wait(Duration::from_secs(15));
    b.wait(Duration::from_secs(15));
    for host in ["a", "b"] {
        let files = walk(&farm.path(host).join("out"));
        assert!(files.is_empty(), "{host}: {files:?}");
    }
    assert_eq!(std::fs::read(farm.path("stdout")).unwrap(), b"");

    // 1.3 MB of binary stdout (several 256 KiB chunks): the coordinator prints exactly
    // the bytes the agent kept.
    let farm = Farm::new(&server.url, tempfile::tempdir().unwrap(), "large");
    farm.tasks(1, |_| "head -c 1300000 /dev/urandom;".into());
    let mut coordinator = farm.coordinator_printing(&[]);
    let mut a = farm.agent("a", 1);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    a.wait(Duration::from_secs(15));
    let kept = std::fs::read(farm.path("a").join("out/1.1.out")).unwrap();
    assert_eq!(kept.len(), 1_300_000);
    let printed = std::fs::read(farm.path("stdout")).unwrap();
    assert!(printed == kept, "{} bytes printed", printed.len());
}

#[test]
fn a_resumed_coordinator_prints_the_output_of_tasks_that_finish_after_it_attached() {
    let (_server, farm) = farm("out-resume");
    // Tasks 1-3 print at once; 4-6 wait for the gate, then print.
    let gate = farm.path("gate");
    farm.tasks(6, |i| {
        let wait = if i > 3 {
            format!("while [ ! -e {} ]; do sleep 0.05; done;", gate.display())
        } else {
            String::new()
        };
        format!("{wait} echo task {i} out;")
    });
    let mut first = farm.coordinator_printing(&[]);
    let mut a = farm.agent("a", 3);
    let until = Instant::now() + Duration::from_secs(30);
    while task_lines(&std::fs::read_to_string(farm.path("stdout")).unwrap()).len() < 3 {
        assert!(
            Instant::now() < until,
            "tasks 1-3 printed nothing:\n{}",
            first.log()
        );
        sleep(Duration::from_millis(20));
    }
    first.kill();
    let printed = std::fs::read_to_string(farm.path("stdout")).unwrap();
    let mut lines = task_lines(&printed);
    lines.sort_unstable();
    assert_eq!(lines, ["task 1 out", "task 2 out", "task 3 out"]);

    // Re-attached (with -k: the tasks that finished before it are passed over): only the
    // tasks that finish from now on are printed, in task order.
    let mut second = farm.coordinator_printing(&["--resume", "-k"]);
    std::fs::write(&gate, b"").unwrap();
    assert_eq!(second.wait(RUN_LIMIT).code(), Some(0), "{}", second.log());
    let printed = std::fs::read_to_string(farm.path("stdout")).unwrap();
    assert_eq!(
        task_lines(&printed),
        ["task 4 out", "task 5 out", "task 6 out"],
        "{}",
        second.log()
    );
    assert!(
        second
            .log()
            .contains("--resume: the output of tasks that finish from now on")
    );
    a.wait(Duration::from_secs(15));
}

#[test]
fn a_run_halted_soon_prints_the_output_of_every_task_that_finished_while_it_drained() {
    // One slot, tasks of 0.3 s: after 2 successes the run drains; the attempt running
    // then finishes, and its output is printed too: one line per succeeded task.
    let (_server, farm) = farm("out-halt");
    farm.tasks(10, |i| format!("sleep 0.3; echo task {i} out;"));
    let mut coordinator = farm.coordinator_printing(&["--halt", "soon,success=2"]);
    let mut a = farm.agent("a", 1);
    assert_eq!(
        coordinator.wait(RUN_LIMIT).code(),
        Some(0),
        "{}",
        coordinator.log()
    );
    a.wait(Duration::from_secs(15));
    let done: Vec<String> = farm
        .done_records()
        .keys()
        .map(|t| format!("task {t} out"))
        .collect();
    assert!((2..=3).contains(&done.len()), "{done:?}");
    let printed = std::fs::read_to_string(farm.path("stdout")).unwrap();
    let mut lines = task_lines(&printed);
    lines.sort_unstable();
    assert_eq!(lines, done, "{}", coordinator.log());
}
