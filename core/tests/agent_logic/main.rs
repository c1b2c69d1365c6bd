//! Logic tests of the agent state machine (spec §3), driven in virtual time against in-memory
//! models of etcd and systemd (see `harness`).

mod harness;

mod adoption;
mod globals;
mod metrics;
mod outage;
mod plan_table;
mod presence;
mod properties;
mod publishing;
mod tasks;
mod traffic;
