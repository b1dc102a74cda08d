//! The engine on NATS JetStream (`async-nats`, checked against Debian's nats-server 2.9.10).
//!
//! # Objects (run `R`)
//!
//! | object | configuration |
//! |---|---|
//! | stream `STURDY_R_WORK` | subjects `sturdy.R.task.*`, work-queue retention, file storage, duplicate window [`Config::duplicate_window`] |
//! | consumer `farm` on it | durable pull, ack explicit, `ack_wait` = [`Config::ack_wait`], **no BackOff** (it would change nak delays), `max_deliver` = [`Config::max_deliver`] (a backstop: attempts are counted in the records), `max_ack_pending`, `max_waiting` |
//! | stream `STURDY_R_STATE` | subjects `sturdy.R.meta`, `sturdy.R.state.*`, `sturdy.R.stale`; limits retention, `max_msgs_per_subject` -1 (every record is kept: the journal), `allow_direct`, `deny_delete`, `deny_purge` |
//! | stream `STURDY_R_OUT` | subjects `sturdy.R.out.*`; limits retention, `max_bytes` [`Config::output_max_bytes`] (the oldest output goes first), `max_msg_size` 256 KiB + 4 KiB |
//!
//! - Task `n`'s work message goes to `sturdy.R.task.n` with message id `R/n/generation`
//!   and header `Sturdy-Generation`.
//! - Task `n`'s record is the last message on `sturdy.R.state.n` (a direct get); its
//!   stream sequence is the [`Revision`]. A write publishes with
//!   `Nats-Expected-Last-Subject-Sequence` = the expected revision: the server's
//!   compare-and-set.
//! - Notes ([`Engine::note`]) go to `sturdy.R.stale` with header `Sturdy-Task`.
//! - Task `n`'s output ([`Engine::put_output`]) goes to `sturdy.R.out.n` in chunks of at
//!   most 256 KiB, with headers `Sturdy-Attempt`, `Sturdy-Epoch`, `Sturdy-Channel`
//!   (`stdout`/`stderr`), `Sturdy-Index` (from 0) and `Sturdy-Last` (`1` on a channel's
//!   last chunk); the coordinator reads it back with an ordered consumer filtered on the
//!   subject ([`Engine::get_output`]). Runs created before this stream existed simply
//!   ship no output (the publish finds no stream; the output stays on the host).
//! - The run's definition ([`RunMeta`]) is the first message on `sturdy.R.meta`, written
//!   once with expected last subject sequence 0. `--resume-failed` amends it
//!   ([`Run::amend`]): the newest message on `sturdy.R.state.amended` (inside the record
//!   subjects' wildcard, never a task's; the journal skips it), written with
//!   compare-and-set on that subject.
//!
//! No KV bucket and no account query: `async-nats` 0.51's helpers for both fail to parse
//! 2.9.10's answers; a plain stream with per-subject compare-and-set is the same mechanism.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), sturdy_farm::engine::Error> {
//! use sturdy_farm::engine::jetstream::{Config, JetStream};
//! use sturdy_farm::engine::{Engine, Generation, RunMeta, TaskId};
//!
//! let js = JetStream::connect("nats://127.0.0.1:4222", Config::default()).await?;
//! let meta = RunMeta { fingerprint: "blake3:…".into(), tasks: 2, ..RunMeta::default() };
//! let (run, _opened) = js.create_run("nas-7", &meta).await?;
//! run.enqueue(TaskId(0), b"python train.py --arch 0", Generation(0)).await?;
//! let delivery = run.next().await?;
//! let (record, revision) = run.read(delivery.task()).await?;
//! # let _ = (record, revision);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use crate::agent::Control;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, RetentionPolicy, StorageType};
use async_nats::jetstream::{self as js, AckKind, ErrorCode};
use async_nats::{ConnectErrorKind, RequestErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::output::{CHUNK_BYTES, Channel, OutputChunk, OutputMark, OutputSink};
use super::{
    Conflict, Delivery, Engine, Enqueued, Entry, Error, Generation, Position, Record, Revision,
    RunMeta, Settle, TaskId,
};

/// The header naming a work message's generation.
const GENERATION_HEADER: &str = "Sturdy-Generation";
/// The header naming a note's task.
const TASK_HEADER: &str = "Sturdy-Task";
/// The headers of an output chunk: its attempt, its claim's epoch, its channel, its
/// index in the channel and whether it is the channel's last.
const ATTEMPT_HEADER: &str = "Sturdy-Attempt";
const EPOCH_HEADER: &str = "Sturdy-Epoch";
const CHANNEL_HEADER: &str = "Sturdy-Channel";
const INDEX_HEADER: &str = "Sturdy-Index";
const LAST_HEADER: &str = "Sturdy-Last";
/// The work consumer's durable name.
const CONSUMER: &str = "farm";
/// The longest run name: stream names stay well under the server's limits.
const MAX_RUN_NAME: usize = 64;

/// The engine's settings; [`Config::default`] gives the documented defaults, then set
/// fields. Checked by [`JetStream::connect`] ([`Error::Config`] names the field).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How long a delivery stays leased without a renewal (the consumer's `ack_wait`), at
    /// least 1 ms; default 10 s. Renew at most every third of it. Applies when the
    /// consumer is created; an existing run keeps its own.
    pub ack_wait: Duration,
    /// How many times the server delivers one work message at most (`max_deliver`), at
    /// least 1; default 25. A backstop only: the core counts attempts in the records
    /// (suggested: 2 × max attempts + 5). A message past it stays in the stream
    /// (nats-server #3294) and is never delivered again.
    pub max_deliver: i64,
    /// How many deliveries may be leased at once over the whole run (`max_ack_pending`),
    /// at least 1; default 1000. Set it to at least 2 × all slots.
    pub max_ack_pending: i64,
    /// How many pulls may wait at the server at once (`max_waiting`), at least 1; default
    /// 512. Set it to at least hosts × pulls in flight.
    pub max_waiting: i64,
    /// How long the server remembers a work message's id, so that enqueueing (task,
    /// generation) again is a no-op; at least 1 s; default 2 min.
    pub duplicate_window: Duration,
    /// Stream replicas: 1 for one server, 3 for a production cluster; 1 to 5; default 1.
    pub replicas: usize,
    /// How long connecting may take before [`Error::Connect`]; at least 1 ms; default 3 s.
    pub connect_timeout: Duration,
    /// How long one request (publish acknowledgement, direct get, ack) may wait for the
    /// server; at least 1 ms; default 5 s.
    pub request_timeout: Duration,
    /// How long one pull of [`Engine::next`] waits at the server before it pulls again;
    /// at least 100 ms; default 5 s.
    pub pull_wait: Duration,
    /// The most bytes the run's output stream (`STURDY_R_OUT`) holds, all tasks
    /// together; past it the oldest chunks are dropped (a coordinator that fetches them
    /// later says the output stays on the host). At least 1 MiB; default 1 GiB. Applies
    /// when the stream is created.
    pub output_max_bytes: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(10),
            max_deliver: 25,
            max_ack_pending: 1000,
            max_waiting: 512,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            pull_wait: Duration::from_secs(5),
            output_max_bytes: 1 << 30,
        }
    }
}

impl Config {
    /// Checks every field against its rule.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first field that breaks its rule.
    pub fn validate(&self) -> Result<(), Error> {
        let ms = Duration::from_millis(1);
        let rules: [(bool, &'static str, &'static str); 10] = [
            (self.ack_wait >= ms, "ack_wait", "must be at least 1 ms"),
            (self.max_deliver >= 1, "max_deliver", "must be at least 1"),
            (
                self.max_ack_pending >= 1,
                "max_ack_pending",
                "must be at least 1",
            ),
            (self.max_waiting >= 1, "max_waiting", "must be at least 1"),
            (
                self.duplicate_window >= Duration::from_secs(1),
                "duplicate_window",
                "must be at least 1 s",
            ),
            (
                (1..=5).contains(&self.replicas),
                "replicas",
                "must be 1 to 5",
            ),
            (
                self.connect_timeout >= ms,
                "connect_timeout",
                "must be at least 1 ms",
            ),
            (
                self.request_timeout >= ms,
                "request_timeout",
                "must be at least 1 ms",
            ),
            (
                self.pull_wait >= Duration::from_millis(100),
                "pull_wait",
                "must be at least 100 ms",
            ),
            (
                self.output_max_bytes >= 1 << 20,
                "output_max_bytes",
                "must be at least 1 MiB",
            ),
        ];
        match rules.iter().find(|(ok, _, _)| !ok) {
            Some(&(_, field, rule)) => Err(Error::Config { field, rule }),
            None => Ok(()),
        }
    }
}

/// A connection to a NATS server with JetStream, from which runs are created or opened.
#[derive(Clone, Debug)]
pub struct JetStream {
    url: String,
    context: js::Context,
    config: Config,
}

/// Whether [`JetStream::create_run`] created the run or found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The run was new; its definition is the one given.
    Created,
    /// The run existed with the same fingerprint; it is re-attached.
    Existing,
}

impl JetStream {
    /// Connects to the server at `url` (`nats://HOST:PORT`) and checks that it has
    /// JetStream. Fails within [`Config::connect_timeout`] when nothing answers.
    ///
    /// # Errors
    /// - [`Error::Config`]: a field of `config` breaks its rule;
    /// - [`Error::Url`]: `url` is malformed;
    /// - [`Error::Connect`]: refused, unreachable, timed out;
    /// - [`Error::NoJetStream`]: the server runs without JetStream.
    ///
    /// A password or token in the URL (`nats://user:secret@host`) is shown as `***` in
    /// errors and in [`JetStream::url`].
    pub async fn connect(url_with_secrets: &str, config: Config) -> Result<Self, Error> {
        config.validate()?;
        let shown = redact(url_with_secrets);
        let url = shown.as_str();
        let connecting = async_nats::ConnectOptions::new()
            .name("sturdy-farm")
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout))
            .connect(url_with_secrets);
        // The client's own timeout covers one connection attempt; this one covers the
        // whole (DNS, TCP, the server's INFO, TLS).
        let client = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Err(_) => {
                return Err(Error::Connect {
                    url: url.into(),
                    reason: format!("no answer within {:?}", config.connect_timeout),
                });
            }
            Ok(Err(e)) if e.kind() == ConnectErrorKind::ServerParse => {
                return Err(Error::Url {
                    url: url.into(),
                    reason: e.to_string(),
                });
            }
            Ok(Err(e)) => {
                return Err(Error::Connect {
                    url: url.into(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(client)) => client,
        };
        // Not `query_account`: 0.51 cannot parse 2.9.10's answer. Any answer without an
        // error means JetStream is there.
        let no_js = |reason: String| Error::NoJetStream {
            url: url.into(),
            reason,
        };
        match client.request("$JS.API.INFO", Bytes::new()).await {
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                return Err(no_js("nobody answers $JS.API.INFO".into()));
            }
            Err(e) => {
                return Err(Error::Connect {
                    url: url.into(),
                    reason: format!("$JS.API.INFO: {e}"),
                });
            }
            Ok(answer) => {
                if let Ok(serde_json::Value::Object(body)) =
                    serde_json::from_slice::<serde_json::Value>(&answer.payload)
                    && let Some(error) = body.get("error")
                {
                    return Err(no_js(error.to_string()));
                }
            }
        }
        let context = js::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client);
        Ok(Self {
            url: url.into(),
            context,
            config,
        })
    }

    /// The URL this connection was made with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates run `name` with definition `meta`, or re-attaches to it when it exists with
    /// the same [`RunMeta::fingerprint`]. Creates the streams and the consumer when
    /// missing (an existing consumer keeps its configuration).
    ///
    /// # Errors
    /// - [`Error::RunName`]: `name` is empty, longer than 64 bytes, or holds a character
    ///   other than `A-Z a-z 0-9 _ -`;
    /// - [`Error::Fingerprint`]: the run exists with another fingerprint;
    /// - [`Error::Engine`], [`Error::Malformed`]: the server failed or holds a bad
    ///   definition.
    pub async fn create_run(&self, name: &str, meta: &RunMeta) -> Result<(Run, Opened), Error> {
        check_run_name(name)?;
        let names = Names::new(name);
        let fail = |op: &'static str, subject: &str, e: &dyn std::fmt::Display| Error::Engine {
            run: name.into(),
            op,
            subject: subject.into(),
            reason: e.to_string(),
        };
        let work = self
            .context
            .get_or_create_stream(stream::Config {
                name: names.work.clone(),
                subjects: vec![format!("sturdy.{name}.task.*")],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: self.config.replicas,
                duplicate_window: self.config.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create stream", &names.work, &e))?;
        let state = self
            .context
            .get_or_create_stream(stream::Config {
                name: names.state.clone(),
                subjects: vec![
                    names.meta.clone(),
                    format!("sturdy.{name}.state.*"),
                    names.stale.clone(),
                ],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                num_replicas: self.config.replicas,
                max_messages_per_subject: -1,
                allow_direct: true,
                deny_delete: true,
                deny_purge: true,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create stream", &names.state, &e))?;
        self.context
            .get_or_create_stream(stream::Config {
                name: names.out.clone(),
                subjects: vec![format!("{}*", names.out_prefix)],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                num_replicas: self.config.replicas,
                max_bytes: self.config.output_max_bytes,
                max_message_size: i32::try_from(CHUNK_BYTES + 4096).unwrap_or(i32::MAX),
                discard: stream::DiscardPolicy::Old,
                ..Default::default()
            })
            .await
            .map_err(|e| fail("create stream", &names.out, &e))?;
        let consumer: PullConsumer = work
            .get_or_create_consumer(
                CONSUMER,
                pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    max_deliver: self.config.max_deliver,
                    max_ack_pending: self.config.max_ack_pending,
                    max_waiting: self.config.max_waiting,
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| fail("create consumer", CONSUMER, &e))?;

        let body = serde_json::to_vec(meta).map_err(|e| fail("encode", &names.meta, &e))?;
        let publish = PublishMessage::build()
            .payload(body.into())
            .expected_last_subject_sequence(0);
        let run = Run::new(self, name, names, state, consumer);
        let written = self
            .context
            .send_publish(run.names.meta.clone(), publish)
            .await
            .map_err(|e| fail("publish", &run.names.meta, &e))?
            .await;
        match written {
            Ok(_) => Ok((run, Opened::Created)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                let existing = run.meta().await?;
                if existing.fingerprint == meta.fingerprint {
                    Ok((run, Opened::Existing))
                } else {
                    Err(Error::Fingerprint {
                        run: name.into(),
                        existing: existing.fingerprint,
                        given: meta.fingerprint.clone(),
                    })
                }
            }
            Err(e) => Err(fail("publish", &run.names.meta, &e)),
        }
    }

    /// Opens the existing run `name` (for a host agent) and returns it with its
    /// definition. Creates nothing.
    ///
    /// # Errors
    /// - [`Error::RunName`]: as for [`JetStream::create_run`];
    /// - [`Error::NoSuchRun`]: the run's streams, consumer or definition are missing;
    /// - [`Error::Engine`], [`Error::Malformed`]: the server failed or holds a bad
    ///   definition.
    pub async fn open_run(&self, name: &str) -> Result<(Run, RunMeta), Error> {
        check_run_name(name)?;
        let names = Names::new(name);
        let missing = || Error::NoSuchRun {
            run: name.into(),
            url: self.url.clone(),
        };
        let fail = |subject: &str, e: &dyn std::fmt::Display| Error::Engine {
            run: name.into(),
            op: "open",
            subject: subject.into(),
            reason: e.to_string(),
        };
        let get = |stream_name: String| async move {
            match self.context.get_stream(&stream_name).await {
                Ok(stream) => Ok(stream),
                Err(e) => match e.kind() {
                    js::context::GetStreamErrorKind::JetStream(inner)
                        if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Err(missing())
                    }
                    _ => Err(fail(&stream_name, &e)),
                },
            }
        };
        let work = get(names.work.clone()).await?;
        let state = get(names.state.clone()).await?;
        let consumer: PullConsumer = match work.get_consumer(CONSUMER).await {
            Ok(consumer) => consumer,
            Err(e) => {
                // `get_consumer` fails with a `ConsumerInfoError` (NotFound while the
                // coordinator has made the streams but not yet the consumer).
                let info_not_found = e
                    .downcast_ref::<js::context::ConsumerInfoError>()
                    .is_some_and(|c| {
                        matches!(
                            c.kind(),
                            js::context::ConsumerInfoErrorKind::NotFound
                                | js::context::ConsumerInfoErrorKind::StreamNotFound
                        )
                    });
                let not_found = info_not_found
                    || e.downcast_ref::<stream::ConsumerError>().is_some_and(|c| {
                        matches!(c.kind(), stream::ConsumerErrorKind::JetStream(inner)
                            if inner.error_code() == ErrorCode::CONSUMER_NOT_FOUND)
                    });
                return Err(if not_found {
                    missing()
                } else {
                    fail(CONSUMER, &e)
                });
            }
        };
        let run = Run::new(self, name, names, state, consumer);
        match run.meta().await {
            Ok(meta) => Ok((run, meta)),
            Err(Error::NoSuchRun { .. }) => Err(missing()),
            Err(e) => Err(e),
        }
    }

    /// [`open_run`](Self::open_run), waiting while run `name` does not exist yet: an
    /// agent started before its coordinator (a cluster's agents start in any order).
    /// It listens on the run's definition subject, so it opens the run as soon as the
    /// coordinator has created it, and looks again every `recheck` in case that
    /// message was missed (a reconnection). Cancel the future to stop waiting.
    ///
    /// # Errors
    /// As [`open_run`](Self::open_run), but never [`Error::NoSuchRun`], and
    /// [`Error::Engine`] only when the subscription cannot be made (a server down while
    /// it waits is looked at again every `recheck`).
    pub async fn wait_for_run(
        &self,
        name: &str,
        recheck: Duration,
    ) -> Result<(Run, RunMeta), Error> {
        check_run_name(name)?;
        let subject = Names::new(name).meta;
        // Subscribe first, then look: a run created in between is seen either way.
        let mut created = self
            .context
            .client()
            .subscribe(subject.clone())
            .await
            .map_err(|e| Error::Engine {
                run: name.into(),
                op: "subscribe",
                subject: subject.clone(),
                reason: e.to_string(),
            })?;
        loop {
            match self.open_run(name).await {
                Err(Error::NoSuchRun { .. }) => {
                    let _ = tokio::time::timeout(recheck, created.next()).await;
                }
                // The server is down or restarting (the client reconnects): look again.
                Err(Error::Engine { .. }) => tokio::time::sleep(recheck).await,
                opened => return opened,
            }
        }
    }
}

/// `url` with the secret part of its user information replaced by `***`
/// (`nats://user:***@host:4222`, `nats://***@host:4222` for a bare token).
fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &url[start..start + at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{}{shown}{}", &url[..start], &url[start + at..])
        }
        None => url.to_string(),
    }
}

/// Checks that a run name can name streams and subject tokens.
fn check_run_name(name: &str) -> Result<(), Error> {
    let rule = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_RUN_NAME {
        Some("must be at most 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may hold only A-Z, a-z, 0-9, '_' and '-'")
    } else {
        None
    };
    match rule {
        Some(rule) => Err(Error::RunName {
            name: name.into(),
            rule,
        }),
        None => Ok(()),
    }
}

/// The names of one run's objects.
#[derive(Clone, Debug)]
struct Names {
    work: String,
    state: String,
    meta: String,
    stale: String,
    /// `sturdy.R.state.amended`: the newest amendment of the run's definition
    /// (`--resume-failed`), inside the record subjects' wildcard but never a task's.
    amended: String,
    task_prefix: String,
    state_prefix: String,
    out: String,
    out_prefix: String,
}

impl Names {
    fn new(run: &str) -> Self {
        Self {
            work: format!("STURDY_{run}_WORK"),
            state: format!("STURDY_{run}_STATE"),
            meta: format!("sturdy.{run}.meta"),
            stale: format!("sturdy.{run}.stale"),
            amended: format!("sturdy.{run}.state.amended"),
            task_prefix: format!("sturdy.{run}.task."),
            state_prefix: format!("sturdy.{run}.state."),
            out: format!("STURDY_{run}_OUT"),
            out_prefix: format!("sturdy.{run}.out."),
        }
    }
}

/// A task's work message as the engine holds it ([`Run::work_message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkMessage {
    /// Its stream sequence (for [`Run::withdraw`]).
    pub sequence: u64,
    /// The generation it was enqueued under.
    pub generation: Generation,
    /// Its payload: the task's text when it was enqueued.
    pub payload: Bytes,
}

/// A control message on `sturdy.R.meta`.
#[derive(serde::Serialize, serde::Deserialize)]
struct ControlMessage {
    control: Control,
}

/// One run on JetStream: the [`Engine`] implementation. Cheap to clone (one connection).
#[derive(Clone, Debug)]
pub struct Run {
    run: String,
    url: String,
    context: js::Context,
    names: Names,
    state: stream::Stream,
    consumer: PullConsumer,
    pull_wait: Duration,
    request_timeout: Duration,
}

impl Run {
    fn new(
        js: &JetStream,
        run: &str,
        names: Names,
        state: stream::Stream,
        consumer: PullConsumer,
    ) -> Self {
        Self {
            run: run.into(),
            url: js.url.clone(),
            context: js.context.clone(),
            names,
            state,
            consumer,
            pull_wait: js.config.pull_wait,
            request_timeout: js.config.request_timeout,
        }
    }

    /// The run's name.
    pub fn name(&self) -> &str {
        &self.run
    }

    /// Reads the run's definition: its newest amendment ([`Run::amendment`]) if it was
    /// amended, else the first message on `sturdy.R.meta`.
    ///
    /// # Errors
    /// [`Error::NoSuchRun`] when it was never written; [`Error::Engine`],
    /// [`Error::Malformed`].
    pub async fn meta(&self) -> Result<RunMeta, Error> {
        match self.amendment().await? {
            Some((_, meta)) => Ok(meta),
            None => self.first_meta().await,
        }
    }

    /// The definition the run was created with (the first message on `sturdy.R.meta`).
    async fn first_meta(&self) -> Result<RunMeta, Error> {
        let subject = &self.names.meta;
        match self
            .state
            .direct_get_first_for_subject(subject.as_str())
            .await
        {
            Ok(message) => serde_json::from_slice(&message.payload).map_err(|e| {
                self.malformed(subject, message.sequence, format!("run definition: {e}"))
            }),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Err(Error::NoSuchRun {
                run: self.run.clone(),
                url: self.url.clone(),
            }),
            Err(e) => Err(self.fail("direct get", subject, &e)),
        }
    }

    /// Reads the run's control (R6): the newest control message on `sturdy.R.meta`,
    /// [`Control::Run`] when none was written after the definition.
    ///
    /// # Errors
    /// [`Error::NoSuchRun`] when the run has no definition; [`Error::Engine`].
    pub async fn control(&self) -> Result<Control, Error> {
        let subject = &self.names.meta;
        match self
            .state
            .direct_get_last_for_subject(subject.as_str())
            .await
        {
            Ok(message) => Ok(serde_json::from_slice::<ControlMessage>(&message.payload)
                .map_or(Control::Run, |m| m.control)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Err(Error::NoSuchRun {
                run: self.run.clone(),
                url: self.url.clone(),
            }),
            Err(e) => Err(self.fail("direct get", subject, &e)),
        }
    }

    /// Where the run's journal ends now: the position of its newest entry
    /// ([`Position`] 0 for an empty journal). A re-attaching coordinator tells the
    /// entries that came before it from those after.
    ///
    /// # Errors
    /// [`Error::Engine`] when the stream's information cannot be read.
    pub async fn journal_end(&self) -> Result<Position, Error> {
        let info = self
            .context
            .get_stream(&self.names.state)
            .await
            .map_err(|e| self.fail("stream info", &self.names.state, &e))?;
        Ok(Position(info.cached_info().state.last_sequence))
    }

    /// Writes the run's control (R6): `{"control":"drain"}` (or `run`, `abort`) on
    /// `sturdy.R.meta`, after the definition, which stays the subject's first message.
    /// Host agents poll it ([`Run::control`]).
    ///
    /// # Errors
    /// [`Error::Engine`] when the publish fails.
    pub async fn set_control(&self, control: Control) -> Result<(), Error> {
        let subject = &self.names.meta;
        let body = serde_json::to_vec(&ControlMessage { control })
            .map_err(|e| self.fail("encode", subject, &e))?;
        self.context
            .publish(subject.clone(), body.into())
            .await
            .map_err(|e| self.fail("publish", subject, &e))?
            .await
            .map_err(|e| self.fail("publish", subject, &e))?;
        Ok(())
    }

    /// The run's newest amendment (`--resume-failed`: the same number of tasks, some
    /// with a new text): the stream sequence of its message on `sturdy.R.state.amended`
    /// and the definition it records; `None` when the run was never amended.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Malformed`].
    pub async fn amendment(&self) -> Result<Option<(u64, RunMeta)>, Error> {
        let subject = &self.names.amended;
        match self
            .state
            .direct_get_last_for_subject(subject.as_str())
            .await
        {
            Ok(message) => serde_json::from_slice(&message.payload)
                .map(|meta| Some((message.sequence, meta)))
                .map_err(|e| {
                    self.malformed(subject, message.sequence, format!("run definition: {e}"))
                }),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.fail("direct get", subject, &e)),
        }
    }

    /// `--resume-failed`: records `new` as the run's definition in place of the one
    /// whose fingerprint is `from`, with compare-and-set on `sturdy.R.state.amended`, so
    /// that of two coordinators amending the same run at once only one succeeds. Returns
    /// the amendment's stream sequence (unique in the run: the generation of the work
    /// messages it re-enqueues). A run already amended to `new`'s fingerprint (by a
    /// coordinator that won the race with the same list) returns that amendment.
    ///
    /// # Errors
    /// [`Error::Fingerprint`] when the run's definition is no longer `from`'s (another
    /// coordinator amended it to another list); [`Error::Engine`], [`Error::Malformed`].
    pub async fn amend(&self, from: &str, new: &RunMeta) -> Result<u64, Error> {
        let subject = &self.names.amended;
        let refused = |existing: String| Error::Fingerprint {
            run: self.run.clone(),
            existing,
            given: new.fingerprint.clone(),
        };
        let (expect, current) = match self.amendment().await? {
            Some((at, meta)) => (at, meta.fingerprint),
            None => (0, self.first_meta().await?.fingerprint),
        };
        if current == new.fingerprint && expect != 0 {
            return Ok(expect);
        }
        if current != from {
            return Err(refused(current));
        }
        let body = serde_json::to_vec(new).map_err(|e| self.fail("encode", subject, &e))?;
        let publish = PublishMessage::build()
            .payload(body.into())
            .expected_last_subject_sequence(expect);
        let written = self
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| self.fail("publish", subject, &e))?
            .await;
        match written {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                match self.amendment().await? {
                    Some((at, meta)) if meta.fingerprint == new.fingerprint => Ok(at),
                    Some((_, meta)) => Err(refused(meta.fingerprint)),
                    None => Err(refused(current)),
                }
            }
            Err(e) => Err(self.fail("publish", subject, &e)),
        }
    }

    /// Task `task`'s work message in the engine now (waiting, leased, or waiting for its
    /// retry delay; the newest one on `sturdy.R.task.n`), `None` when it has none.
    ///
    /// # Errors
    /// [`Error::Engine`]; [`Error::Malformed`] for a message without a generation.
    pub async fn work_message(&self, task: TaskId) -> Result<Option<WorkMessage>, Error> {
        let subject = format!("{}{}", self.names.task_prefix, task.0);
        let work = self
            .context
            .get_stream_no_info(&self.names.work)
            .await
            .map_err(|e| self.fail("get stream", &self.names.work, &e))?;
        match work.get_last_raw_message_by_subject(subject.as_str()).await {
            Ok(message) => {
                let generation = message
                    .headers
                    .get(GENERATION_HEADER)
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .ok_or_else(|| {
                        self.malformed(&subject, message.sequence, "no generation".into())
                    })?;
                Ok(Some(WorkMessage {
                    sequence: message.sequence,
                    generation: Generation(generation),
                    payload: message.payload,
                }))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.fail("message get", &subject, &e)),
        }
    }

    /// Deletes task `task`'s work message at stream sequence `sequence` (a waiting
    /// message replaced by one with a new text); `false` when it was gone already. A
    /// delivery of it that an agent holds stays with the agent (its settlement then
    /// finds nothing), so fence the task's record before.
    ///
    /// # Errors
    /// [`Error::Engine`].
    pub async fn withdraw(&self, task: TaskId, sequence: u64) -> Result<bool, Error> {
        let work = self
            .context
            .get_stream_no_info(&self.names.work)
            .await
            .map_err(|e| self.fail("get stream", &self.names.work, &e))?;
        match work.delete_message(sequence).await {
            Ok(deleted) => Ok(deleted),
            Err(e) => match self.work_message(task).await? {
                Some(m) if m.sequence == sequence => {
                    Err(self.fail("delete message", &self.names.work, &e))
                }
                _ => Ok(false),
            },
        }
    }

    fn fail(&self, op: &'static str, subject: &str, e: &dyn std::fmt::Display) -> Error {
        Error::Engine {
            run: self.run.clone(),
            op,
            subject: subject.into(),
            reason: e.to_string(),
        }
    }

    fn malformed(&self, subject: &str, sequence: u64, reason: String) -> Error {
        Error::Malformed {
            run: self.run.clone(),
            subject: subject.into(),
            sequence,
            reason,
        }
    }

    fn state_subject(&self, task: TaskId) -> String {
        format!("{}{}", self.names.state_prefix, task.0)
    }

    /// Turns a pulled message into a delivery, or says what is wrong with it.
    fn delivery(&self, message: &js::Message) -> Result<(TaskId, Generation, u64, u64), String> {
        let task = message
            .subject
            .strip_prefix(self.names.task_prefix.as_str())
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or("the subject's last token is not a task number")?;
        let generation = header(&message.headers, GENERATION_HEADER)
            .ok_or("no Sturdy-Generation header with a number")?;
        let info = message
            .info()
            .map_err(|e| format!("no delivery info: {e}"))?;
        let epoch = u64::try_from(info.delivered).unwrap_or(0);
        Ok((
            TaskId(task),
            Generation(generation),
            epoch,
            info.stream_sequence,
        ))
    }

    /// Decodes one journal message; `None` for the run's definition.
    fn entry(&self, message: &js::Message) -> Option<Result<Entry, Error>> {
        let subject = message.subject.as_str();
        if subject == self.names.meta || subject == self.names.amended {
            return None;
        }
        let position = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let (task, note) = if subject == self.names.stale {
            (
                header(&message.headers, TASK_HEADER).and_then(|t| u32::try_from(t).ok()),
                true,
            )
        } else {
            let task = subject
                .strip_prefix(self.names.state_prefix.as_str())
                .and_then(|n| n.parse::<u32>().ok());
            (task, false)
        };
        let Some(task) = task else {
            return Some(Err(self.malformed(
                subject,
                position,
                "no task number".into(),
            )));
        };
        Some(
            serde_json::from_slice::<Record>(&message.payload)
                .map(|record| Entry {
                    position: Position(position),
                    task: TaskId(task),
                    record,
                    note,
                })
                .map_err(|e| self.malformed(subject, position, format!("record: {e}"))),
        )
    }

    /// A pulled work message as a delivery; a malformed one (published by hand?) is
    /// terminated, so that it does not come back after every ack wait, and reported.
    async fn delivered(&self, message: js::Message) -> Result<Delivery<js::Message>, Error> {
        match self.delivery(&message) {
            Ok((task, generation, epoch, sequence)) => {
                let payload = message.payload.clone();
                Ok(Delivery::new(
                    task, generation, payload, epoch, sequence, message,
                ))
            }
            Err(reason) => {
                let subject = message.subject.to_string();
                let sequence = message.info().map_or(0, |i| i.stream_sequence);
                let _ = message.double_ack_with(AckKind::Term).await;
                Err(Error::Malformed {
                    run: self.run.clone(),
                    subject,
                    sequence,
                    reason: format!("work message (terminated): {reason}"),
                })
            }
        }
    }

    async fn ack(&self, delivery: &Delivery<js::Message>, kind: AckKind) -> Result<(), Error> {
        // A request: the server confirms it received the ack (it confirms every kind).
        delivery
            .handle()
            .double_ack_with(kind)
            .await
            .map_err(|e| self.fail("ack", delivery.handle().subject.as_str(), &*e))
    }
}

/// Reads a numeric header.
fn header(headers: &Option<async_nats::HeaderMap>, name: &str) -> Option<u64> {
    headers.as_ref()?.get(name)?.as_str().parse().ok()
}

impl Engine for Run {
    type Handle = js::Message;
    type Follow = BoxStream<'static, Result<Entry, Error>>;

    async fn enqueue(
        &self,
        task: TaskId,
        payload: &[u8],
        generation: Generation,
    ) -> Result<Enqueued, Error> {
        let subject = format!("{}{}", self.names.task_prefix, task.0);
        let publish = PublishMessage::build()
            .payload(Bytes::copy_from_slice(payload))
            .message_id(format!("{}/{}/{}", self.run, task.0, generation.0))
            .header(GENERATION_HEADER, generation.0.to_string().as_str());
        let ack = self
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| self.fail("publish", &subject, &e))?
            .await
            .map_err(|e| self.fail("publish", &subject, &e))?;
        Ok(if ack.duplicate {
            Enqueued::Duplicate
        } else {
            Enqueued::Queued
        })
    }

    async fn next(&self) -> Result<Delivery<js::Message>, Error> {
        loop {
            if let Some(delivery) = self.next_within(self.pull_wait).await? {
                return Ok(delivery);
            }
        }
    }

    async fn next_within(&self, wait: Duration) -> Result<Option<Delivery<js::Message>>, Error> {
        let consumer = CONSUMER;
        let mut batch = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| self.fail("pull", consumer, &e))?;
        let Some(message) = batch.next().await else {
            return Ok(None);
        };
        let message = message.map_err(|e| self.fail("pull", consumer, &*e))?;
        self.delivered(message).await.map(Some)
    }

    async fn ack_next(
        &self,
        delivery: Delivery<js::Message>,
        wait: Duration,
    ) -> Result<Option<Delivery<js::Message>>, Error> {
        let consumer = CONSUMER;
        let client = self.context.client();
        let Some(ack_subject) = delivery.handle().reply.clone() else {
            return Err(self.fail("ack", consumer, &"the delivery has no reply subject"));
        };
        // `+NXT` on the delivery's ack subject: the server acknowledges it and takes the
        // rest as a pull request whose messages go to the reply subject.
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| self.fail("pull", consumer, &e))?;
        let wait_ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        let request = format!("+NXT {{\"batch\":1,\"expires\":{wait_ns}}}");
        client
            .publish_with_reply(ack_subject.clone(), inbox, request.into())
            .await
            .map_err(|e| self.fail("ack", ack_subject.as_str(), &e))?;
        drop(delivery);
        // The server answers within `wait` (a delivery, or 408 when the request expired);
        // a second of slack covers a lost answer.
        let until = tokio::time::Instant::now() + wait + Duration::from_secs(1);
        loop {
            let message = match tokio::time::timeout_at(until, replies.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(self.fail("pull", consumer, &"the reply inbox closed")),
                Ok(Some(message)) => message,
            };
            match message.status {
                None | Some(async_nats::StatusCode::OK) => {
                    let message = js::Message {
                        message,
                        context: self.context.clone(),
                    };
                    return self.delivered(message).await.map(Some);
                }
                Some(async_nats::StatusCode::IDLE_HEARTBEAT) => {}
                // Expired (408), nothing to pull (404), or ended by the server (409).
                Some(_) => return Ok(None),
            }
        }
    }

    /// A message get on the work stream (which has no direct get): the last message on
    /// `sturdy.R.task.n`.
    async fn queued(&self, task: TaskId) -> Result<Option<bool>, Error> {
        Ok(Some(self.work_message(task).await?.is_some()))
    }

    async fn read(&self, task: TaskId) -> Result<(Option<Record>, Revision), Error> {
        let subject = self.state_subject(task);
        match self
            .state
            .direct_get_last_for_subject(subject.as_str())
            .await
        {
            Ok(message) => {
                let record = serde_json::from_slice(&message.payload).map_err(|e| {
                    self.malformed(&subject, message.sequence, format!("record: {e}"))
                })?;
                Ok((Some(record), Revision(message.sequence)))
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok((None, Revision::NONE)),
            Err(e) => Err(self.fail("direct get", &subject, &e)),
        }
    }

    async fn write(
        &self,
        task: TaskId,
        expect: Revision,
        record: &Record,
    ) -> Result<Result<Revision, Conflict>, Error> {
        let subject = self.state_subject(task);
        let body = serde_json::to_vec(record).map_err(|e| self.fail("encode", &subject, &e))?;
        let publish = PublishMessage::build()
            .payload(body.into())
            .expected_last_subject_sequence(expect.0);
        let written = self
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| self.fail("publish", &subject, &e))?
            .await;
        match written {
            Ok(ack) => Ok(Ok(Revision(ack.sequence))),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(Err(Conflict {
                task,
                expected: expect,
            })),
            Err(e) => Err(self.fail("publish", &subject, &e)),
        }
    }

    async fn note(&self, task: TaskId, record: &Record) -> Result<Position, Error> {
        let subject = &self.names.stale;
        let body = serde_json::to_vec(record).map_err(|e| self.fail("encode", subject, &e))?;
        let publish = PublishMessage::build()
            .payload(body.into())
            .header(TASK_HEADER, task.0.to_string().as_str());
        let ack = self
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| self.fail("publish", subject, &e))?
            .await
            .map_err(|e| self.fail("publish", subject, &e))?;
        Ok(Position(ack.sequence))
    }

    async fn renew(&self, delivery: &Delivery<js::Message>) -> Result<(), Error> {
        self.ack(delivery, AckKind::Progress).await
    }

    async fn settle(&self, delivery: Delivery<js::Message>, how: Settle) -> Result<(), Error> {
        let kind = match how {
            // A plain ack (one message, no reply): the fence is the `ended` record's
            // compare-and-set, written before; the ack only removes the work message. A
            // lost ack redelivers a finished task after the ack wait, and R1 acks it
            // without running it (the record says `ended`).
            Settle::Ack => {
                return delivery
                    .handle()
                    .ack_with(AckKind::Ack)
                    .await
                    .map_err(|e| self.fail("ack", delivery.handle().subject.as_str(), &*e));
            }
            Settle::Nak(delay) if delay.is_zero() => AckKind::Nak(None),
            Settle::Nak(delay) => AckKind::Nak(Some(delay)),
            Settle::Term => AckKind::Term,
        };
        self.ack(&delivery, kind).await
    }

    async fn put_output(&self, chunk: &OutputChunk) -> Result<Option<Position>, Error> {
        let subject = format!("{}{}", self.names.out_prefix, chunk.task.0);
        let publish = PublishMessage::build()
            .payload(chunk.data.clone())
            .header(ATTEMPT_HEADER, chunk.attempt.to_string().as_str())
            .header(EPOCH_HEADER, chunk.epoch.to_string().as_str())
            .header(CHANNEL_HEADER, chunk.channel.as_str())
            .header(INDEX_HEADER, chunk.index.to_string().as_str())
            .header(LAST_HEADER, if chunk.last { "1" } else { "0" });
        let ack = self
            .context
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| self.fail("publish", &subject, &e))?
            .await
            .map_err(|e| self.fail("publish", &subject, &e))?;
        Ok(Some(Position(ack.sequence)))
    }

    /// An ordered consumer on `sturdy.R.out.n` from the mark's first chunk: the chunks
    /// of (attempt, epoch), checked for order, until each channel's last one. A chunk
    /// that does not come within the request timeout (dropped from a full stream) fails
    /// the fetch.
    async fn get_output(
        &self,
        task: TaskId,
        attempt: u32,
        epoch: u64,
        mark: &OutputMark,
        sink: &mut OutputSink<'_>,
    ) -> Result<(), Error> {
        let subject = format!("{}{}", self.names.out_prefix, task.0);
        let Some(from) = mark.from else {
            return Ok(());
        };
        // Each channel: whether it still expects chunks, and the index due next.
        let mut open = [
            (Channel::Stdout, mark.shipped(Channel::Stdout) > 0, 0u32),
            (Channel::Stderr, mark.shipped(Channel::Stderr) > 0, 0u32),
        ];
        if !open.iter().any(|(_, o, _)| *o) {
            return Ok(());
        }
        let out = self
            .context
            .get_stream_no_info(&self.names.out)
            .await
            .map_err(|e| self.fail("get stream", &self.names.out, &e))?;
        let mut messages = out
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| self.fail("create ordered consumer", &subject, &e))?
            .messages()
            .await
            .map_err(|e| self.fail("fetch output", &subject, &e))?;
        while open.iter().any(|(_, o, _)| *o) {
            let message = match tokio::time::timeout(self.request_timeout, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(self.fail("fetch output", &subject, &e)),
                Ok(None) | Err(_) => {
                    return Err(self.fail(
                        "fetch output",
                        &subject,
                        &"a chunk is missing (dropped from a full output stream?)",
                    ));
                }
            };
            let headers = &message.headers;
            if header(headers, ATTEMPT_HEADER) != Some(u64::from(attempt))
                || header(headers, EPOCH_HEADER) != Some(epoch)
            {
                continue; // another attempt's (one that found itself stale)
            }
            let channel = headers
                .as_ref()
                .and_then(|h| h.get(CHANNEL_HEADER))
                .and_then(|c| Channel::parse(c.as_str()));
            let index = header(headers, INDEX_HEADER);
            let last = header(headers, LAST_HEADER) == Some(1);
            let Some(due) = open.iter_mut().find(|(c, o, _)| Some(*c) == channel && *o) else {
                continue; // a finished channel's chunk again (a publish retried)
            };
            if index != Some(u64::from(due.2)) {
                let sequence = message.info().map_or(0, |i| i.stream_sequence);
                return Err(self.malformed(
                    &subject,
                    sequence,
                    format!("output chunk {index:?} where chunk {} was due", due.2),
                ));
            }
            due.2 += 1;
            if last {
                due.1 = false;
            }
            sink(due.0, &message.payload);
        }
        Ok(())
    }

    async fn follow(&self, from: Position) -> Result<Self::Follow, Error> {
        let deliver_policy = if from.0 <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: from.0,
            }
        };
        let subject = self.names.state.clone();
        let messages = self
            .state
            .create_consumer(pull::OrderedConfig {
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| self.fail("create ordered consumer", &subject, &e))?
            .messages()
            .await
            .map_err(|e| self.fail("follow", &subject, &e))?;
        let run = self.clone();
        Ok(messages
            .filter_map(move |message| {
                let entry = match message {
                    Ok(message) => run.entry(&message),
                    Err(e) => Some(Err(run.fail("follow", &subject, &e))),
                };
                std::future::ready(entry)
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_rule_names_its_field() {
        assert!(Config::default().validate().is_ok());
        type BreakIt = fn(&mut Config);
        let cases: [(BreakIt, &str, &str); 10] = [
            (
                |c| c.ack_wait = Duration::ZERO,
                "ack_wait",
                "must be at least 1 ms",
            ),
            (|c| c.max_deliver = 0, "max_deliver", "must be at least 1"),
            (
                |c| c.max_ack_pending = -1,
                "max_ack_pending",
                "must be at least 1",
            ),
            (|c| c.max_waiting = 0, "max_waiting", "must be at least 1"),
            (
                |c| c.duplicate_window = Duration::from_millis(999),
                "duplicate_window",
                "must be at least 1 s",
            ),
            (|c| c.replicas = 6, "replicas", "must be 1 to 5"),
            (
                |c| c.connect_timeout = Duration::ZERO,
                "connect_timeout",
                "must be at least 1 ms",
            ),
            (
                |c| c.request_timeout = Duration::ZERO,
                "request_timeout",
                "must be at least 1 ms",
            ),
            (
                |c| c.pull_wait = Duration::from_millis(99),
                "pull_wait",
                "must be at least 100 ms",
            ),
            (
                |c| c.output_max_bytes = (1 << 20) - 1,
                "output_max_bytes",
                "must be at least 1 MiB",
            ),
        ];
        for (break_it, field, rule) in cases {
            let mut config = Config::default();
            break_it(&mut config);
            match config.validate() {
                Err(Error::Config { field: f, rule: r }) => assert_eq!((f, r), (field, rule)),
                other => panic!("{field}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_in_urls_are_not_shown() {
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(redact("nats://u:pw@h:4222"), "nats://u:***@h:4222");
        assert_eq!(redact("nats://tok@h:4222/x@y"), "nats://***@h:4222/x@y");
        assert_eq!(redact("u:p:q@h"), "u:***@h");
    }

    #[test]
    fn run_names_must_fit_stream_names_and_subject_tokens() {
        for good in ["a", "nas-7", "RUN_2", &"x".repeat(64)] {
            assert!(check_run_name(good).is_ok(), "{good:?}");
        }
        for (bad, rule) in [
            ("", "must not be empty"),
            (&"x".repeat(65), "must be at most 64 bytes"),
            ("a.b", "may hold only A-Z, a-z, 0-9, '_' and '-'"),
            ("a>", "may hold only A-Z, a-z, 0-9, '_' and '-'"),
            ("é", "may hold only A-Z, a-z, 0-9, '_' and '-'"),
        ] {
            match check_run_name(bad) {
                Err(Error::RunName { name, rule: r }) => {
                    assert_eq!((name.as_str(), r), (bad, rule))
                }
                other => panic!("{bad:?}: expected a run-name error, got {other:?}"),
            }
        }
        let names = Names::new("nas-7");
        assert_eq!(
            (names.work.as_str(), names.state.as_str()),
            ("STURDY_nas-7_WORK", "STURDY_nas-7_STATE")
        );
        assert_eq!(
            (names.meta.as_str(), names.stale.as_str()),
            ("sturdy.nas-7.meta", "sturdy.nas-7.stale")
        );
    }
}
