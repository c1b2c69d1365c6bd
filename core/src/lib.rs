//! flt-core: the pure, deterministic heart of flt.
//!
//! This crate turns events (etcd replies and watch events, systemd replies and signals, timer
//! expiries, API requests) into commands. It never reads a clock, opens a socket or file, spawns a
//! thread, reads the environment or draws random numbers: time is passed in as [`time::Instant`],
//! and every output is polled out. The same inputs always give the same outputs, which is what lets
//! the simulator in `flt-tests` run whole clusters in virtual time and lets `fuzz/` explore it.
//!
//! Modules:
//! - [`unit`]: systemd unit files with fleet's parsing, serialization, hashing, names and
//!   `[X-Fleet]` requirements.
//! - [`glob`]: Go's `path.Match` semantics, used by `Conflicts=` and `Replaces=`.
//! - [`registry`]: the etcd keyspace, its value encodings, and backend-neutral requests.
//! - [`engine`]: the cluster scheduler (leader lease, reconcile).
//! - [`agent`]: the per-machine executor (desired vs. observed state, tasks for systemd).
//! - [`api`]: HTTP API v1 entities, page tokens and request decisions (no HTTP itself).

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod engine;
pub mod glob;
pub mod registry;
pub mod rng;
pub mod time;
pub mod unit;
