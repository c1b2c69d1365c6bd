//! The cluster simulator's parts that stand in for the world around `flt-core`, in virtual time.
//!
//! Everything here is a SIMULATION, driven by a virtual clock (`flt_core::time::Instant`) and
//! seeded randomness (`flt_core::rng::SplitMix64`), so that a run is a pure function of its seed:
//!
//! - [`etcd::SimEtcd`]: an etcd v2 keys store with the semantics of etcd 3.4's v2 API as flt's
//!   driver (`flt_driver::etcd`) presents them: the same [`Reply`](flt_core::registry::Reply)
//!   shapes and [`Failure`](flt_core::registry::Failure)s, indexes, TTLs, watches with a
//!   1000-event history. Its faithfulness is checked against a real etcd by the differential test
//!   in `tests/tests/sim/etcd_differential.rs`.
//! - [`network::SimNetwork`]: a message queue with per-message delay, loss and duplication.
//! - [`registry::SimRegistry`]: a `SimEtcd` behind every node's simulated registry driver, with
//!   the contract of `flt_driver::etcd::RegistryDriver` (`(OpId, Request)` in, `Response`s out),
//!   lossy calls, delayed or duplicated watch events, timeouts and partitions.
//! - [`invariants`]: checks over the simulated etcd and systemds (one machine per unit,
//!   `Conflicts=` respected, quiescence), independent of how the engine and agent are written.
//! - [`swarm::FaultPlan`]: which faults a seed turns on, at what rates, and when nodes are cut
//!   off; `FLT_SIM_SEED` replays a seed.
//! - [`systemd::SimSystemd`]: one machine's systemd: unit files, load/active/sub states, jobs with
//!   latency, failures, daemon-reload.
//!
//! None of these may stand in for the real thing in integration tests: drivers are tested against
//! a real etcd and a real systemd (see [`crate::etcd`]). They exist so that many `core` nodes can
//! run, with faults, far faster than real time.

pub mod etcd;
pub mod invariants;
pub mod network;
pub mod registry;
pub mod swarm;
pub mod systemd;
