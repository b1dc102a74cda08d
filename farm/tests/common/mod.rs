//! Test harness: each test starts its own `nats-server` on 127.0.0.1 on a random port,
//! with its store in a temporary directory, and kills only its own child on drop.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use sturdy_farm::engine::RunMeta;
use sturdy_farm::engine::jetstream::{Config, JetStream, Run};

/// What a test says when the server binary is missing: tests never skip silently.
const INSTALL: &str = "install nats-server: apt-get update && apt-get install -y nats-server";

/// A child `nats-server`.
pub(crate) struct Server {
    child: Child,
    dir: tempfile::TempDir,
    jetstream: bool,
    port: u16,
    /// `nats://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Server {
    /// Starts `nats-server -js` on a random port.
    pub(crate) fn start() -> Self {
        Self::spawn_in(
            tempfile::tempdir().expect("temporary directory"),
            true,
            None,
        )
    }

    /// Starts `nats-server` without JetStream.
    pub(crate) fn start_without_jetstream() -> Self {
        Self::spawn_in(
            tempfile::tempdir().expect("temporary directory"),
            false,
            None,
        )
    }

    /// SIGKILLs the server and starts it again on the same port and store.
    pub(crate) fn kill_and_restart(&mut self) {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let restarted = Self::spawn_in(dir, self.jetstream, Some(self.port));
        let old = std::mem::replace(self, restarted);
        std::mem::forget(old); // its child is dead and reaped; its directory moved on
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn spawn_in(dir: tempfile::TempDir, jetstream: bool, port: Option<u16>) -> Self {
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports).expect("ports directory");
        let log = File::create(dir.path().join("server.log")).expect("server log");
        let port_arg = port.map_or_else(|| "-1".to_string(), |p| p.to_string());
        let mut args: Vec<String> = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port_arg,
            "--ports_file_dir".into(),
            ports.display().to_string(),
        ];
        if jetstream {
            args.push("-js".into());
            args.push("-sd".into());
            args.push(dir.path().join("store").display().to_string());
        }
        // STURDY_NATS_SERVER picks another binary (a current upstream server, say).
        let programs = match std::env::var("STURDY_NATS_SERVER") {
            Ok(program) => vec![program],
            Err(_) => vec!["nats-server".into(), "/usr/sbin/nats-server".into()],
        };
        let mut child = None;
        for program in &programs {
            match Command::new(program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone().expect("log handle"))
                .spawn()
            {
                Ok(c) => {
                    child = Some(c);
                    break;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => panic!("cannot start {program} ({e}); {INSTALL}"),
            }
        }
        let Some(mut child) = child else {
            panic!("no nats-server found (tried {programs:?}); {INSTALL}");
        };
        let file = ports.join(format!("nats-server_{}.ports", child.id()));
        let url = match wait_for_url(&file, &mut child) {
            Ok(url) => url,
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("nats-server did not start: {why}\n{log}");
            }
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the ports file");
        Self {
            child,
            dir,
            jetstream,
            port,
            url,
        }
    }
}

/// Waits for the server's ports file and returns its client URL.
fn wait_for_url(file: &Path, child: &mut Child) -> Result<String, String> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("it exited with {status}"));
        }
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(ports) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = ports["nats"][0].as_str()
        {
            return Ok(url.to_string());
        }
        sleep(Duration::from_millis(20));
    }
    Err(format!(
        "no ports file {} within 10 s",
        PathBuf::from(file).display()
    ))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tests' engine settings: a 500 ms lease, short pulls and timeouts.
pub(crate) fn config() -> Config {
    let mut config = Config::default();
    config.ack_wait = Duration::from_millis(500);
    config.pull_wait = Duration::from_millis(200);
    config.request_timeout = Duration::from_secs(2);
    config
}

/// A run definition with fingerprint `fingerprint`.
pub(crate) fn meta(fingerprint: &str) -> RunMeta {
    RunMeta {
        fingerprint: fingerprint.into(),
        tasks: 10,
        ..RunMeta::default()
    }
}

/// Connects to `server` and creates (or opens) run `name`.
pub(crate) async fn run(server: &Server, name: &str) -> Run {
    let js = JetStream::connect(&server.url, config())
        .await
        .expect("connect");
    js.create_run(name, &meta("fp-1"))
        .await
        .expect("create run")
        .0
}
