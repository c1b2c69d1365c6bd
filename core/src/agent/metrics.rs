//! Counters behind the agent's Prometheus metrics (the driver exports them with the `flt_`
//! prefix). Counting happens where the agent already funnels its work: events (tasks, unit-state
//! publications) and registry requests (sent, failed) all pass through [`super::Io`].

use super::Event;
use crate::registry::{Failure, Request};
use std::collections::BTreeMap;

/// Read with [`super::Agent::metrics`]. Counters only grow; the unit gauges are filled in when
/// read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentMetrics {
    /// Tasks finished (done or failed), by type (`LoadUnit`, `StartUnit`, ...).
    pub tasks: BTreeMap<&'static str, u64>,
    /// Tasks that failed, by type.
    pub task_failures: BTreeMap<&'static str, u64>,
    /// Unit states written to the registry.
    pub states_published: u64,
    /// Unit states deleted from the registry.
    pub states_removed: u64,
    /// Unit-state writes or deletes that failed.
    pub state_publish_failures: u64,
    /// Registry requests issued, by kind (`get`, `put`, `delete`, `watch`).
    pub registry_requests: BTreeMap<&'static str, u64>,
    /// Registry requests that failed or timed out, by kind. A missing key or an unmet
    /// precondition is an answer, not a failure.
    pub registry_failures: BTreeMap<&'static str, u64>,
    /// Gauge: units in this machine's desired state.
    pub units_desired: u64,
    /// Gauge: units the agent has loaded into systemd (state `loaded` or `launched`).
    pub units_loaded: u64,
    /// Gauge: loaded units whose systemd active state is `active`.
    pub units_active: u64,
}

impl AgentMetrics {
    pub(crate) fn count_event(&mut self, event: &Event) {
        match event {
            Event::TaskDone { task } => bump(&mut self.tasks, task.kind.as_str()),
            Event::TaskFailed { task, .. } => {
                bump(&mut self.tasks, task.kind.as_str());
                bump(&mut self.task_failures, task.kind.as_str());
            }
            Event::UnitStatePublished { .. } => self.states_published += 1,
            Event::UnitStateRemoved { .. } => self.states_removed += 1,
            Event::PublishFailed { .. } => self.state_publish_failures += 1,
            _ => {}
        }
    }

    pub(crate) fn count_request(&mut self, request: &Request) {
        bump(&mut self.registry_requests, request_kind(request));
    }

    pub(crate) fn count_failure(&mut self, kind: &'static str, failure: &Failure) {
        if !matches!(failure, Failure::NotFound | Failure::PreconditionFailed) {
            bump(&mut self.registry_failures, kind);
        }
    }
}

/// The metric label of a registry request.
pub(crate) fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::Delete { .. } => "delete",
        Request::Watch { .. } => "watch",
    }
}

fn bump(counter: &mut BTreeMap<&'static str, u64>, label: &'static str) {
    *counter.entry(label).or_default() += 1;
}
