//! flt-core: the pure, deterministic heart of flt.
//!
//! This crate turns events (etcd replies and watch events, systemd replies and signals, timer
//! expiries, API requests) into commands. It never reads a clock, opens a socket or file, spawns a
//! thread, reads the environment or draws random numbers: time is passed in as [`time::Instant`],
//! and every output is polled out. The same inputs always give the same outputs, which is what lets
//! the simulator in `flt-tests` run whole clusters in virtual time and lets `fuzz/` explore it.
//!
//! # The sans-IO contract
//!
//! Every state machine here (the [`engine::Engine`] today) has four kinds of methods:
//! - getters (`&self`), e.g. `is_leader()`, `metrics()`, `view()`;
//! - `handle_input(input, now)` for answers and watch events, and `handle_timeout(now)` for the
//!   clock (spurious calls are harmless);
//! - mutators for user commands, e.g. `shutdown(now)`;
//! - `poll_command()`, `poll_event()` and `poll_timeout() -> Option<(Instant, Reason)>` for
//!   outputs. After any `handle_*` or mutator, drain every `poll_*` before sleeping.
//!
//! Requests to the outside carry an id ([`registry::OpId`]); the driver carries them out and
//! feeds the outcome back as an input with the same id. Failures are data
//! ([`registry::Failure`]), never panics. A request left unanswered times out inside the core,
//! which then treats it as failed and ignores a late answer. A watch is answered by any number of
//! events and ends only with a failure. `now` must never go backwards.
//!
//! # The driver loop
//!
//! The whole driver of one state machine fits in one loop (`flt-driver` does the same with a
//! `crossbeam-channel` `select!` and one thread per watch):
//!
//! ```no_run
//! use flt_core::engine::{Command, Engine};
//! use flt_core::registry::Response;
//! use flt_core::time::Instant;
//! use std::sync::mpsc::{Receiver, RecvTimeoutError};
//!
//! /// `execute` hands a request to a worker thread that talks to etcd; its answer (or each watch
//! /// event) comes back on `answers`. `clock` reads the driver's monotonic clock.
//! fn drive(
//!     mut engine: Engine,
//!     answers: Receiver<Response>,
//!     execute: impl Fn(Command),
//!     clock: impl Fn() -> Instant,
//! ) {
//!     loop {
//!         // 1. Drain every output.
//!         while let Some(command) = engine.poll_command() {
//!             execute(command);
//!         }
//!         while let Some(event) = engine.poll_event() {
//!             eprintln!("engine: {event:?}");
//!         }
//!         if engine.is_stopped() {
//!             return;
//!         }
//!         // 2. Sleep until an answer arrives or the core's next deadline, whichever is first.
//!         let answer = match engine.poll_timeout() {
//!             Some((at, _reason)) => answers.recv_timeout(at.saturating_since(clock())),
//!             None => answers.recv().map_err(|_| RecvTimeoutError::Disconnected),
//!         };
//!         // 3. Feed in what woke us, with the time it happened.
//!         match answer {
//!             Ok(response) => engine.handle_input(response, clock()),
//!             Err(RecvTimeoutError::Timeout) => engine.handle_timeout(clock()),
//!             Err(RecvTimeoutError::Disconnected) => return,
//!         }
//!     }
//! }
//! ```
//!
//! On SIGTERM the driver calls `engine.shutdown(clock())` and keeps looping until
//! `is_stopped()`: the engine releases its lease first.
//!
//! Modules:
//! - [`unit`](mod@unit): systemd unit files with fleet's parsing, serialization, hashing, names and
//!   `[X-Fleet]` requirements.
//! - [`glob`]: Go's `path.Match` semantics, used by `Conflicts=` and `Replaces=`.
//! - [`goquote`]: Go's `%q` quoting, for fleet's exact error messages.
//! - [`registry`]: the etcd keyspace, its value encodings, backend-neutral requests, and
//!   [`registry::view::ClusterView`], an in-memory model of the cluster built from reads and
//!   watch events.
//! - [`engine`]: the cluster scheduler: [`engine::plan`] (pure reconcile) and [`engine::Engine`]
//!   (leader lease, cluster model, event-driven reconcile, registry writes).
//! - [`agent`]: the per-machine executor (desired vs. observed state, tasks for systemd).
//! - [`api`]: HTTP API v1 entities, page tokens and request decisions (no HTTP itself).
//! - [`node`]: [`node::Node`], one fltd: agent, engine and API front end behind one interface.

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod engine;
pub mod glob;
pub mod goquote;
pub mod node;
pub mod registry;
pub mod rng;
pub mod time;
pub mod unit;
