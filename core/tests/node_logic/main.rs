//! Logic tests of the API front end ([`flt_core::api::front::ApiFront`]) and of the node that
//! owns agent, engine and front end, driven against the in-memory etcd and systemd models of
//! `agent_logic/harness.rs` (shared, not copied).

#[allow(dead_code)]
#[path = "../agent_logic/harness.rs"]
mod harness;

mod front;
mod front_bench;
mod front_support;
mod node;
