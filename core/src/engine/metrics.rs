//! Counters behind the engine's Prometheus metrics (spec §10, with fleet's quirks fixed: the
//! reconcile counter counts each reconcile once, and the leader start time is set, not added).

use crate::time::Instant;
use std::collections::BTreeMap;

/// Read with [`super::Engine::metrics`]; the driver exports them under the `flt_` namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// `engine_reconcile_count_total`.
    pub reconcile_count: u64,
    /// `engine_task_count_total{type}`: `attemptscheduleunit`, `unscheduleunit`, and flt's
    /// `syncschedule` for schedule-record rewrites.
    pub task_count: BTreeMap<&'static str, u64>,
    /// `engine_task_failure_count_total{type}`.
    pub task_failure_count: BTreeMap<&'static str, u64>,
    /// `engine_reconcile_failure_count_total{type}`: `machine_away`, `run`, `schedule`.
    pub reconcile_failure_count: BTreeMap<&'static str, u64>,
    /// When this engine last became leader (`engine_leader_start_time`, as driver time).
    pub leader_since: Option<Instant>,
    /// Registry requests issued, by kind (`get`, `put`, `delete`, `watch`).
    pub registry_requests: BTreeMap<&'static str, u64>,
    /// Registry requests that failed or timed out, by kind.
    pub registry_failures: BTreeMap<&'static str, u64>,
}

pub(crate) fn bump(counter: &mut BTreeMap<&'static str, u64>, label: &'static str) {
    *counter.entry(label).or_default() += 1;
}
