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
//! - [`scenario::Scenario`]: one seed's machines, units (the six deployment patterns), users'
//!   actions and faults (those of `FaultPlan` plus crashes, pauses, etcd-wide outages); shared
//!   with the whole-cluster fuzz target.
//! - [`cluster::Cluster`]: the whole cluster: every machine's `Engine` and `Agent` with its own
//!   drifting clock, the loop below, the invariants after every step, convergence and
//!   quiescence after healing. `Documentation/simulation.md` describes it for users.
//!
//! None of these may stand in for the real thing in integration tests: drivers are tested against
//! a real etcd and a real systemd (see [`crate::etcd`]). They exist so that many `core` nodes can
//! run, with faults, far faster than real time.
//!
//! The run loop of a cluster simulation (`cluster.rs` is the whole-cluster instance;
//! `tests/tests/sim/follower_swarm.rs` a small one for `PrefixFollower`):
//!
//! ```text
//! plan = FaultPlan::draw(seed, nodes, safety_phase); print it
//! loop until safety_phase + heal:
//!     apply the plan's partitions / D-Bus outages due now (cut_off, reconnect, set_connected);
//!     at the end of the safety phase: set_faults(plan.healed())
//!     while let Some((client, response)) = registry.poll_response(now): feed that node
//!     for each node: drain its SimSystemd notices into it; handle_timeout if due;
//!         registry commands → registry.submit(client, id, request, now),
//!         systemd commands → that node's SimSystemd (then its answer back as an input)
//!     check the invariants; print the seed and a trace on a violation
//!     now = min(registry.next_timeout(), every systemd's next_timeout(), every node's
//!               poll_timeout(), the plan's next transition)   (+1 µs if nothing moved)
//! after healing: wait for convergence, then check quiescence (invariants::changes_since)
//! ```

pub mod cluster;
pub mod etcd;
pub mod invariants;
pub mod network;
pub mod registry;
pub mod scenario;
pub mod swarm;
pub mod systemd;
