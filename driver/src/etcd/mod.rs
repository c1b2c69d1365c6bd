//! etcd's HTTP v2 keys API, blocking, over `ureq`.
//!
//! - [`EtcdClient`]: one call at a time from any thread. [`EtcdClient::call`] carries out a
//!   core [`Request`](flt_core::registry::Request) (Get, Put, Delete) and returns its
//!   [`Reply`](flt_core::registry::Reply) or [`Failure`](flt_core::registry::Failure);
//!   [`EtcdClient::watch_stream`] follows one streamed watch; [`EtcdClient::watch`] runs a
//!   [`Watch`] on its own thread, one stream after another.
//! - [`RegistryDriver`]: what fltd wires to the core: `(OpId, Request)` in, [`Response`]s out on
//!   a crossbeam channel.
//!
//! How the core's requests map onto etcd v2:
//!
//! | core | etcd v2 |
//! |---|---|
//! | `Get{recursive}` | `GET /v2/keys/K?sorted=true[&recursive=true][&quorum=true]` → `Got{node, index: X-Etcd-Index}` |
//! | `Put{Value(v)}` | `PUT value=v` |
//! | `Put{Directory}` | `PUT dir=true` |
//! | `Put{RefreshTtl}` | `PUT refresh=true&prevExist=true&ttl=…` (watchers are not woken) |
//! | `ttl: Some(d)` | `ttl=<d in whole seconds, rounded up>` |
//! | `Absent` / `Present` / `Index(i)` / `Value(v)` | `prevExist=false` / `prevExist=true` / `prevIndex=i` / `prevValue=v` |
//! | `Delete{recursive, precondition}` | `DELETE [?recursive=true][&prevIndex=i / &prevValue=v]` → `Deleted{index}` |
//! | `Watch{prefix, from_index}` | `GET …?wait=true&recursive=true&waitIndex=…`, re-armed after each answer |
//!
//! Failures: etcd error 100 → `NotFound` (`PreconditionFailed` under a `Present` precondition),
//! 101 and 105 → `PreconditionFailed`, 401 → `HistoryLost{index}` (etcd's current index), other
//! codes → `Rejected{code, message}` (e.g. 110 "Insufficient credentials" for bad basic auth),
//! a refusal without an etcd code → `Rejected{code: 0}`; no endpoint answering → `Unreachable`, no
//! answer in time → `Timeout`. Raft errors (300, 301), a cleared watcher (400) and HTTP 5xx
//! move on to the next endpoint. An environment proxy is never used.

mod client;
mod config;
mod driver;
mod watch;
mod wire;

pub use client::{ETCD_WATCHER_BUFFER, EtcdClient, StreamEnd};
pub use config::{BasicAuth, ConfigError, EtcdConfig, TlsFiles};
pub use driver::{IDLE_WORKER_LIFETIME, MIN_WORKERS, RegistryDriver};
pub use watch::Watch;
pub use wire::basic_auth_header;
