//! sturdy's task farm as a library.
//!
//! The farm (`sturdy run`: supervisor, process pool, journal, state directory) moves into
//! this crate so that the local mode, the multi-host coordinator and the host agent share
//! it. It holds:
//! - [`supervisor`]: drives the core's ledger in real time over a
//!   [`WorkerPool`](supervisor::WorkerPool) (in-process tokio tasks with
//!   [`LocalPool`](supervisor::LocalPool), child processes in the `sturdy` CLI), with
//!   checkpoints to a `sturdy_tokio::checkpoint_store`;
//! - [`local`]: the single-machine farm's parts around its worker processes: the
//!   `sturdy worker` child's loop and the master–worker frame protocol, the journal, the
//!   state directory and its lock, outcome classification, process fencing, the cgroup OOM-kill counter, the
//!   storage-fault latch, the process pool of worker children, resume planning and the
//!   host health gate;
//! - [`agent`] (the host agent) and [`coordinator`] (enqueue, the journal's projection) of a
//!   multi-host run; [`coordinate`]: the coordinator on a real machine (create, enqueue,
//!   follow into the journal, SIGINT); and [`host`]: the agent on a real host (its settings from the run's,
//!   the health gate, signals, each attempt a child process); [`task_output`]: a task's
//!   output across hosts (shipped by the agent when its end is final, fetched by the
//!   coordinator);
//! - `sim` (with the cargo feature `sim`, which brings tokio's `test-util`): a
//!   deterministic simulation of the whole multi-host farm (a model of the engine, hosts,
//!   network and faults) in which the host agent and coordinator run unchanged, in virtual time
//!   (`sturdy simulate`);
//! - the [`engine`]: the small trait through which the farm reaches whatever carries tasks
//!   between hosts, with a NATS JetStream implementation ([`engine::jetstream`]).
//!
//! # What the engine decides, and what it does not
//!
//! Across hosts the engine decides exactly three things:
//! - **who pulls next**: a free slot pulls one task ([`Engine::next`]);
//! - **when a lease lapsed**: a delivery not renewed within the consumer's AckWait is
//!   handed to another puller, with a higher delivery count ([`Delivery::epoch`]);
//! - **the order of concurrent writes**: each task's record is written with a
//!   server-checked compare-and-set ([`Engine::write`]), so of two writers holding the same
//!   [`Revision`] exactly one wins and the other gets a [`Conflict`].
//!
//! Every other decision is the core's (`sturdy-core`), taken where the facts are: retry or
//! give up and the delay (carried by [`Settle::Nak`]), breaker admission, classification,
//! health gating, slot-death detection, and what a record transition means. The engine
//! never interprets a [`Record`]; it stores and orders them.
//!
//! # The server's limits
//!
//! - **Acks and renewals are not fenced by the server** (nats-server
//!   [#4786](https://github.com/nats-io/nats-server/issues/4786),
//!   [#6937](https://github.com/nats-io/nats-server/issues/6937), reproduced on 2.9.10 and
//!   2.15.1): a late ack from an attempt whose lease lapsed deletes the live redelivery,
//!   and a late `+WPI` keeps a dead owner's task leased for ever. The fence is the task's
//!   record: before [`Engine::renew`] or [`Engine::settle`], a caller must [`Engine::read`]
//!   the record (or hold the revision its own last [`Engine::write`] returned) and check it
//!   is still its own newest one; if not, it is stale and touches the delivery no more
//!   ([`Engine::renew_fenced`] does this for renewals).
//! - **Durability**: Debian's nats-server 2.9.10 (what CI installs) fsyncs lazily (every
//!   2 minutes by default) and cannot set `sync_interval: always`; a server *process*
//!   crash loses nothing, a *machine* crash can lose the last records, so a `done` may be
//!   recorded again. Production wants nats-server ≥ 2.10.23 with `sync_interval: always`
//!   and a 3-node cluster ([`engine::jetstream::Config::replicas`] = 3).
//! - Execution is at least once: a partition, a paused host or a crash window can start a
//!   command twice. Only the success record is exactly once.
//!
//! [`Engine`]: engine::Engine
//! [`Engine::next`]: engine::Engine::next
//! [`Engine::write`]: engine::Engine::write
//! [`Engine::read`]: engine::Engine::read
//! [`Engine::renew`]: engine::Engine::renew
//! [`Engine::renew_fenced`]: engine::Engine::renew_fenced
//! [`Engine::settle`]: engine::Engine::settle
//! [`Delivery::epoch`]: engine::Delivery::epoch
//! [`Revision`]: engine::Revision
//! [`Conflict`]: engine::Conflict
//! [`Settle::Nak`]: engine::Settle::Nak
//! [`Record`]: engine::Record

pub mod agent;
pub mod amend;
pub mod coordinate;
pub mod coordinator;
pub mod engine;
pub mod halt;
pub mod host;
pub mod local;
#[cfg(feature = "sim")]
pub mod sim;
pub mod supervisor;
pub mod task_output;
