//! A network partition between one agent and the NATS server, through a loopback TCP
//! proxy in the test: agent `a` talks to the server through the proxy, agent `b`
//! directly. While `a` holds tasks the proxy stops forwarding both ways (the sockets stay
//! open, as in a real partition) for well past the 1 s lease; `b` takes `a`'s tasks over;
//! then the proxy heals and forwards again (what was held back arrives late, as TCP
//! retransmission delivers it). Helpers copied from `engine.rs`.

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

use common::sturdy;

const INSTALL: &str = "install nats-server: apt-get update && apt-get install -y nats-server";
/// A child `nats-server`, killed on drop.
struct Nats {
    child: Child,
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
        Self { child, port, url }
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
            "--json",
        ];
        args.extend_from_slice(extra);
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let mut p = Proc::spawn(
            &args,
            self.path(&format!("coord-{n}.log")),
            Some(self.path("summary.json")),
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

    /// An agent that reaches the server at `url` (the server's, or the proxy's).
    fn agent(&self, host: &str, workers: u32, url: &str) -> Proc {
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
            ],
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
    let mut a = farm.agent("a", 2, &proxy.url);
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
    let mut b = farm.agent("b", 2, &farm.url);
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
