//! [`DaemonNode`]: the core's [`Node`] (agent, engine, API front end) adapted to fltd's drivers.
//!
//! - systemd: the agent's [`SystemdRequest`]s become [`flt_driver::systemd::SystemdRequest`]s
//!   with the same [`OpId`]; driver replies and unit-state reports become [`Input::Systemd`] and
//!   [`Input::UnitObserved`]. The startup inventory is the first systemd request of a
//!   generation (the agent's contract: inventory right after it starts); a failed inventory is
//!   asked again after [`INVENTORY_RETRY`].
//! - registry: the node's requests and watch cancellations go out unchanged.
//! - API: each HTTP request gets an [`ApiRequestId`] and waits here for the front end's answer;
//!   `GET /metrics` is answered here (Prometheus text, `flt_` prefix: the agent's figures, the
//!   engine's and the registry requests of both).
//! - stopping: [`DaemonNode::stop`] asks systemd for its `SystemState` first; `stopping` (the
//!   host shuts down) means [`Node::host_shutdown`] (presence and unit states deleted so the
//!   cluster reschedules at once), anything else [`Node::shutdown`] (units keep running, the
//!   presence expires after `agent_ttl`; spec §3.9).
//! - logs and `sd_notify`: core events become spec §2/§3.5 log lines; READY is due once the
//!   machine is registered; STATUS whenever its text changes.

use crate::daemon::{CoreNode, Notice, Outgoing};
use flt_core::agent::{
    self, AgentMetrics, InventoryUnit, SystemdFailure, SystemdOutcome, SystemdReply,
    SystemdRequest, TaskKind, UnitObserved,
};
use flt_core::api::front::{ApiRequest as CoreApiRequest, ApiRequestId, ApiResponse};
use flt_core::engine::{EngineEvent, EngineMetrics};
use flt_core::node::{Command, Event, Input, Node, NodeConfig};
use flt_core::registry::{OpId, OpIdGen, Response};
use flt_core::time::Instant;
use flt_driver::http::{ApiRequest, ApiResponse as HttpResponse};
use flt_driver::systemd::{self as sd, SystemdEvent};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

/// The component number of the adapter's own systemd requests (inventory, system state).
const DAEMON_COMPONENT: u8 = 7;

/// How long to wait before asking for the startup inventory again after a failure.
pub const INVENTORY_RETRY: Duration = Duration::from_secs(5);

/// How long a stop may take before fltd exits anyway (lease release, host-shutdown deletes).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InventoryState {
    Asked(OpId),
    RetryAt(Instant),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopState {
    Running,
    /// Waiting for systemd's `SystemState`, or until the deadline.
    AskingHost {
        id: OpId,
        deadline: Instant,
    },
    /// The node is shutting down; exit when it is stopped or at the deadline.
    Stopping {
        deadline: Instant,
    },
}

/// See the module docs.
#[derive(Debug)]
pub struct DaemonNode {
    node: Node,
    ids: OpIdGen,
    inventory: InventoryState,
    stop: StopState,
    next_api_id: u64,
    pending_api: BTreeMap<ApiRequestId, ApiRequest>,
    outgoing: VecDeque<Outgoing>,
    notices: VecDeque<Notice>,
    api_ready: bool,
    ready_sent: bool,
    status: String,
}

impl DaemonNode {
    /// A node whose first systemd request is the startup inventory.
    pub fn new(config: NodeConfig, now: Instant) -> DaemonNode {
        let mut ids = OpIdGen::new(DAEMON_COMPONENT);
        let inventory = ids.next_id();
        let mut outgoing = VecDeque::new();
        outgoing.push_back(Outgoing::Systemd(sd::SystemdRequest::Inventory {
            id: inventory,
        }));
        let mut node = DaemonNode {
            node: Node::new(config, now),
            ids,
            inventory: InventoryState::Asked(inventory),
            stop: StopState::Running,
            next_api_id: 0,
            pending_api: BTreeMap::new(),
            outgoing,
            notices: VecDeque::new(),
            api_ready: false,
            ready_sent: false,
            status: String::new(),
        };
        node.drain();
        node
    }

    /// Moves everything the node produced into the adapter's queues, answers finished API
    /// requests and logs events.
    fn drain(&mut self) {
        while let Some(command) = self.node.poll_command() {
            let outgoing = match command {
                Command::Registry { id, request } => Outgoing::Registry(id, request),
                Command::CancelWatch { id } => Outgoing::CancelWatch(id),
                Command::Systemd { id, request } => Outgoing::Systemd(systemd_request(id, request)),
            };
            self.outgoing.push_back(outgoing);
        }
        while let Some(event) = self.node.poll_event() {
            self.note_event(event);
        }
        while let Some((id, response)) = self.node.poll_api_response() {
            if let Some(request) = self.pending_api.remove(&id) {
                request.respond(http_response(response));
            }
        }
        if self.node.is_registered() && !self.ready_sent {
            self.ready_sent = true;
            self.notices.push_back(Notice::Ready);
        }
        let status = self.status_text();
        if status != self.status {
            self.status.clone_from(&status);
            self.notices.push_back(Notice::Status(status));
        }
    }

    fn status_text(&self) -> String {
        let engine = match self.node.engine() {
            Some(engine) if engine.is_leader() => "engine leader",
            Some(engine) if !engine.is_synced() => "engine starting",
            Some(_) => "engine follower",
            None if self.node.config().disable_engine => "engine disabled",
            None => "engine starting",
        };
        let agent = if self.node.is_registered() {
            format!("agent: {} units", self.node.agent().current_units().len())
        } else {
            "agent: registering".to_string()
        };
        format!("{engine}, {agent}")
    }

    fn note_event(&mut self, event: Event) {
        match event {
            Event::ApiReady => {
                self.api_ready = true;
                log::info!("API front end has read the registry");
            }
            Event::Agent(event) => self.note_agent_event(event),
            Event::Engine(event) => note_engine_event(event),
        }
    }

    fn note_agent_event(&mut self, event: agent::Event) {
        match event {
            agent::Event::Registered {
                machine_id,
                adopted,
            } => {
                let how = if adopted {
                    " (previous record adopted)"
                } else {
                    ""
                };
                log::info!("Registered machine {machine_id}{how}");
            }
            agent::Event::TaskDone { task } => {
                log::info!("AgentReconciler completed task: {task}");
            }
            agent::Event::TaskFailed { task, error } => {
                log::error!("AgentReconciler failed task: {task} err={error:?}");
            }
            agent::Event::TaskStarted { task } => log::debug!("AgentReconciler task: {task}"),
            agent::Event::TaskSkipped { task } => {
                log::info!("AgentReconciler skipped task (not needed): {task}");
            }
            agent::Event::DuplicateMachineId {
                machine_id,
                ours,
                theirs,
            } => log::error!(
                "Machine ID {machine_id} is already registered by another host ({theirs}; ours: {ours})"
            ),
            agent::Event::PresenceLost { machine_id } => {
                log::warn!("Presence of machine {machine_id} was lost; registering again");
            }
            event @ (agent::Event::RegistrationFailed { .. }
            | agent::Event::HeartbeatFailed { .. }
            | agent::Event::StatesDirectoryFailed { .. }
            | agent::Event::SourceFailed { .. }
            | agent::Event::UnitFileUnavailable { .. }
            | agent::Event::PublishFailed { .. }
            | agent::Event::SystemdQueryFailed { .. }
            | agent::Event::ShutdownDeleteFailed { .. }
            | agent::Event::BadScheduleRecord { .. }) => log::warn!("agent: {event:?}"),
            event => log::debug!("agent: {event:?}"),
        }
    }

    fn handle_own_reply(
        &mut self,
        id: OpId,
        result: Result<sd::SystemdReply, sd::SystemdError>,
        now: Instant,
    ) {
        if self.inventory == InventoryState::Asked(id) {
            match result {
                Ok(sd::SystemdReply::Inventory(entries)) => {
                    self.inventory = InventoryState::Done;
                    log::info!("Found {} unit files in the units directory", entries.len());
                    let units = entries.into_iter().map(inventory_unit).collect();
                    self.node.handle_input(Input::Inventory(units), now);
                }
                Ok(other) => {
                    log::error!("systemd inventory: unexpected reply {other:?}");
                    self.inventory = InventoryState::RetryAt(now + INVENTORY_RETRY);
                }
                Err(e) => {
                    log::error!("Failed to read the units directory and systemd's view of it: {e}");
                    self.inventory = InventoryState::RetryAt(now + INVENTORY_RETRY);
                }
            }
        } else if let StopState::AskingHost {
            id: asked,
            deadline,
        } = self.stop
            && asked == id
        {
            let state = match result {
                Ok(sd::SystemdReply::SystemState(state)) => state,
                Ok(other) => format!("{other:?}"),
                Err(e) => {
                    log::warn!("Cannot read systemd's SystemState: {e}");
                    String::new()
                }
            };
            self.stop = StopState::Stopping { deadline };
            if state == "stopping" {
                log::info!(
                    "The host is shutting down: deleting this machine's presence and unit states"
                );
                self.node.host_shutdown(now);
            } else {
                log::info!("Stopping; units keep running, presence expires after agent_ttl");
                self.node.shutdown(now);
            }
        }
    }
}

fn note_engine_event(event: EngineEvent) {
    match event {
        EngineEvent::LeaseAcquired => log::info!("Engine leadership acquired"),
        EngineEvent::LeaseLost { reason } => log::info!("Engine leadership lost: {reason}"),
        EngineEvent::LeaseReleased => log::info!("Engine leadership released"),
        EngineEvent::LeaderChanged { leader: Some(id) } => log::info!("Engine leader is {id}"),
        EngineEvent::LeaderChanged { leader: None } => log::info!("No engine leader"),
        EngineEvent::LeaseTakeover { from } => {
            log::info!("Engine leader {from} left the cluster: taking over its lease");
        }
        EngineEvent::EngineVersionUpdated { from, to } => {
            log::info!("Updated cluster engine version from {from} to {to}");
        }
        EngineEvent::UnitScheduled { unit, machine } => {
            log::info!("Scheduled Unit({unit}) to Machine({machine})");
        }
        EngineEvent::UnitUnscheduled {
            unit,
            machine,
            reason,
        } => log::info!("Unscheduled Job({unit}) from Machine({machine}): {reason}"),
        EngineEvent::UnitUnplaceable { unit, reason } => {
            log::info!("Unable to schedule Unit({unit}): {reason}");
        }
        EngineEvent::TaskFailed { task, failure } => {
            log::error!("Failed resolving task: task={task} err={failure}");
        }
        event => log::debug!("engine: {event:?}"),
    }
}

/// The agent's request as the systemd driver's.
fn systemd_request(id: OpId, request: SystemdRequest) -> sd::SystemdRequest {
    match request {
        SystemdRequest::LoadUnit { name, text, enable } => sd::SystemdRequest::Load {
            id,
            name,
            contents: text,
            enable,
        },
        SystemdRequest::UnloadUnit { name } => sd::SystemdRequest::Unload { id, name },
        SystemdRequest::StartUnit { name } => sd::SystemdRequest::Start { id, name },
        SystemdRequest::StopUnit { name } => sd::SystemdRequest::Stop { id, name },
        SystemdRequest::Reload => sd::SystemdRequest::Reload { id },
        SystemdRequest::ListUnits { names } => sd::SystemdRequest::ListStates { id, names },
    }
}

fn observed(name: String, state: &sd::UnitState) -> UnitObserved {
    UnitObserved {
        name,
        load: state.load_state.clone(),
        active: state.active_state.clone(),
        sub: state.sub_state.clone(),
    }
}

fn inventory_unit(entry: sd::InventoryEntry) -> InventoryUnit {
    InventoryUnit {
        observed: entry
            .state
            .as_ref()
            .map(|s| observed(entry.name.clone(), s)),
        name: entry.name,
        text: entry.text,
    }
}

/// The driver's answer as the agent's.
fn systemd_reply(id: OpId, result: Result<sd::SystemdReply, sd::SystemdError>) -> SystemdReply {
    let result = match result {
        Ok(sd::SystemdReply::States(states)) => Ok(SystemdOutcome::Units(
            states
                .into_iter()
                .map(|(name, state)| observed(name, &state))
                .collect(),
        )),
        Ok(sd::SystemdReply::Loaded { reload_needed }) => {
            Ok(SystemdOutcome::Loaded { reload_needed })
        }
        Ok(_) => Ok(SystemdOutcome::Done),
        Err(e) => Err(SystemdFailure::Failed(e.to_string())),
    };
    SystemdReply { id, result }
}

/// The HTTP request as the API front end reads it.
fn core_request(request: &ApiRequest) -> CoreApiRequest {
    let mut path = request.path().to_string();
    if !request.query().is_empty() {
        path.push('?');
        path.push_str(request.query());
    }
    CoreApiRequest {
        method: request.method().to_string(),
        path,
        content_types: request
            .header_values("Content-Type")
            .into_iter()
            .map(str::to_string)
            .collect(),
        body: request.body().to_vec(),
    }
}

fn http_response(response: ApiResponse) -> HttpResponse {
    HttpResponse {
        status: response.status,
        content_type: response.content_type,
        headers: response.headers,
        body: response.body,
    }
}

impl CoreNode for DaemonNode {
    fn is_registered(&self) -> bool {
        self.node.is_registered() && self.api_ready
    }

    fn handle_registry(&mut self, response: Response, now: Instant) {
        self.node.handle_input(Input::Registry(response), now);
        self.drain();
    }

    fn handle_systemd(&mut self, event: SystemdEvent, now: Instant) {
        match event {
            SystemdEvent::Reply { id, result } => {
                if self.ids.owns(id) {
                    self.handle_own_reply(id, result, now);
                } else {
                    self.node
                        .handle_input(Input::Systemd(systemd_reply(id, result)), now);
                }
            }
            SystemdEvent::UnitState {
                name,
                state: Some(state),
            } => self
                .node
                .handle_input(Input::UnitObserved(observed(name, &state)), now),
            // After an unload: the agent has already forgotten the unit.
            SystemdEvent::UnitState { state: None, .. } => {}
            SystemdEvent::WatchLost { reason } => {
                log::warn!(
                    "Lost systemd's unit signals ({reason}); states are polled until they are back"
                );
            }
            SystemdEvent::WatchRestored => log::info!("systemd unit signals restored"),
            event => log::debug!("systemd: {event:?}"),
        }
        self.drain();
    }

    fn handle_api(&mut self, request: ApiRequest, now: Instant) {
        if request.path() == "/metrics" {
            let response = if request.method() == "GET" {
                HttpResponse {
                    status: 200,
                    content_type: Some("text/plain; version=0.0.4; charset=utf-8".to_string()),
                    headers: Vec::new(),
                    body: metrics_text(&self.node, now).into_bytes(),
                }
            } else {
                HttpResponse::error(405, "").with_header("Allow", "GET")
            };
            request.respond(response);
            return;
        }
        let id = ApiRequestId(self.next_api_id);
        self.next_api_id += 1;
        let core = core_request(&request);
        self.pending_api.insert(id, request);
        self.node.handle_api_request(id, core, now);
        self.drain();
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let InventoryState::RetryAt(at) = self.inventory
            && at <= now
        {
            let id = self.ids.next_id();
            self.inventory = InventoryState::Asked(id);
            self.outgoing
                .push_back(Outgoing::Systemd(sd::SystemdRequest::Inventory { id }));
        }
        if let StopState::AskingHost { deadline, .. } = self.stop
            && deadline <= now
        {
            log::warn!("systemd did not say whether the host is shutting down; stopping normally");
            self.stop = StopState::Stopping { deadline };
            self.node.shutdown(now);
        }
        self.node.handle_timeout(now);
        self.drain();
    }

    fn stop(&mut self, check_host: bool, now: Instant) {
        if self.stop != StopState::Running {
            return;
        }
        let deadline = now + STOP_GRACE;
        if check_host {
            let id = self.ids.next_id();
            self.stop = StopState::AskingHost { id, deadline };
            self.outgoing
                .push_back(Outgoing::Systemd(sd::SystemdRequest::SystemState { id }));
        } else {
            self.stop = StopState::Stopping { deadline };
            self.node.shutdown(now);
            self.drain();
        }
    }

    fn is_stopped(&self, now: Instant) -> bool {
        match self.stop {
            StopState::Running => false,
            StopState::AskingHost { .. } => false,
            StopState::Stopping { deadline } => self.node.is_stopped() || deadline <= now,
        }
    }

    fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }

    fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = [
            match self.inventory {
                InventoryState::RetryAt(at) => Some(at),
                _ => None,
            },
            match self.stop {
                StopState::Running => None,
                StopState::AskingHost { deadline, .. } | StopState::Stopping { deadline } => {
                    Some(deadline)
                }
            },
        ];
        own.into_iter()
            .flatten()
            .chain(self.node.poll_timeout().map(|(at, _)| at))
            .min()
    }

    fn dump_state(&self) -> serde_json::Value {
        let agent = self.node.agent();
        let target_states: serde_json::Map<String, serde_json::Value> = agent
            .desired_units()
            .iter()
            .map(|(name, unit)| {
                (
                    name.clone(),
                    serde_json::json!(format!("{:?}", unit.target)),
                )
            })
            .collect();
        let cache: serde_json::Map<String, serde_json::Value> = agent
            .published_states()
            .iter()
            .map(|(name, record)| (name.clone(), serde_json::json!(format!("{record:?}"))))
            .collect();
        serde_json::json!({
            "Agent": {"Cache": {"TargetStates": target_states}},
            "UnitStatePublisher": {"Cache": cache, "ToPublish": {}},
            "UnitStateGenerator": {"Subscribed": agent.current_units().keys().collect::<Vec<_>>()},
        })
    }
}

/// `/metrics`: the agent's figures, spec §10's engine metrics with the `flt_` prefix (leader
/// start time set, not added; one reconcile counted once), and the registry request counters
/// flt adds.
fn metrics_text(node: &Node, now: Instant) -> String {
    let engine = node.engine().map(|engine| {
        let metrics = engine.metrics();
        let leader_start = metrics.leader_since.map_or(0.0, |since| {
            // Driver time to Unix time: now's Unix time minus how long ago it was.
            let unix_now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            unix_now
                .saturating_sub(now.saturating_since(since))
                .as_secs_f64()
        });
        (metrics, leader_start)
    });
    format_metrics(&node.agent().metrics(), engine)
}

/// The agent's task types, always listed (at 0 until the first task) so that the series exist.
const AGENT_TASK_TYPES: [TaskKind; 5] = [
    TaskKind::UnloadUnit,
    TaskKind::LoadUnit,
    TaskKind::ReloadUnitFiles,
    TaskKind::StopUnit,
    TaskKind::StartUnit,
];

fn write_family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn write_by_label(out: &mut String, name: &str, labels: &str, values: &BTreeMap<&str, u64>) {
    for (label, value) in values {
        let _ = writeln!(out, "{name}{{{labels}type=\"{label}\"}} {value}");
    }
}

/// Prometheus text for the agent's metrics and, on machines that run one, the engine's
/// (with its leader start time as Unix seconds).
fn format_metrics(agent: &AgentMetrics, engine: Option<(&EngineMetrics, f64)>) -> String {
    let mut out = String::new();
    let with_all_types = |counts: &BTreeMap<&'static str, u64>| {
        let mut all: BTreeMap<&str, u64> = AGENT_TASK_TYPES
            .iter()
            .map(|kind| (kind.as_str(), 0))
            .collect();
        all.extend(counts.iter().map(|(k, v)| (*k, *v)));
        all
    };
    let name = "flt_agent_tasks_total";
    write_family(&mut out, name, "counter", "Agent tasks finished, by type.");
    write_by_label(&mut out, name, "", &with_all_types(&agent.tasks));
    let name = "flt_agent_task_failures_total";
    write_family(
        &mut out,
        name,
        "counter",
        "Agent tasks that failed, by type.",
    );
    write_by_label(&mut out, name, "", &with_all_types(&agent.task_failures));
    for (name, help, value) in [
        (
            "flt_agent_units_desired",
            "Units scheduled to this machine.",
            agent.units_desired,
        ),
        (
            "flt_agent_units_loaded",
            "Units the agent has loaded into systemd.",
            agent.units_loaded,
        ),
        (
            "flt_agent_units_active",
            "Loaded units that systemd reports active.",
            agent.units_active,
        ),
    ] {
        write_family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    for (name, help, value) in [
        (
            "flt_agent_unit_states_published_total",
            "Unit states written to the registry.",
            agent.states_published,
        ),
        (
            "flt_agent_unit_states_removed_total",
            "Unit states deleted from the registry.",
            agent.states_removed,
        ),
        (
            "flt_agent_unit_state_publish_failures_total",
            "Unit-state writes or deletes that failed.",
            agent.state_publish_failures,
        ),
    ] {
        write_family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = "flt_registry_requests_total";
    write_family(
        &mut out,
        name,
        "counter",
        "Registry requests, by component and type.",
    );
    write_by_label(
        &mut out,
        name,
        "component=\"agent\",",
        &agent.registry_requests,
    );
    if let Some((metrics, _)) = engine {
        let labels = "component=\"engine\",";
        write_by_label(&mut out, name, labels, &metrics.registry_requests);
    }
    let name = "flt_registry_failures_total";
    write_family(
        &mut out,
        name,
        "counter",
        "Registry requests that failed or timed out, by component and type.",
    );
    write_by_label(
        &mut out,
        name,
        "component=\"agent\",",
        &agent.registry_failures,
    );
    if let Some((metrics, _)) = engine {
        let labels = "component=\"engine\",";
        write_by_label(&mut out, name, labels, &metrics.registry_failures);
    }
    let Some((metrics, leader_start)) = engine else {
        let _ = writeln!(out, "# flt: no engine on this machine");
        return out;
    };
    let name = "flt_engine_leader_start_time";
    write_family(
        &mut out,
        name,
        "gauge",
        "Unix time this engine last became leader.",
    );
    let _ = writeln!(out, "{name} {leader_start}");
    let name = "flt_engine_reconcile_count_total";
    write_family(&mut out, name, "counter", "Engine reconciles.");
    let _ = writeln!(out, "{name} {}", metrics.reconcile_count);
    for (name, help, values) in [
        (
            "flt_engine_task_count_total",
            "Engine tasks, by type.",
            &metrics.task_count,
        ),
        (
            "flt_engine_task_failure_count_total",
            "Engine tasks that failed, by type.",
            &metrics.task_failure_count,
        ),
        (
            "flt_engine_reconcile_failure_count_total",
            "Units the engine could not keep or place, by type.",
            &metrics.reconcile_failure_count,
        ),
        (
            "flt_registry_operation_count_total",
            "Registry requests of the engine, by type.",
            &metrics.registry_requests,
        ),
        (
            "flt_registry_operation_failed_count_total",
            "Registry requests of the engine that failed, by type.",
            &metrics.registry_failures,
        ),
    ] {
        write_family(&mut out, name, "counter", help);
        write_by_label(&mut out, name, "", values);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flt_core::registry::{Keyspace, Reply, Request};

    const MACHINE: &str = "0123456789abcdef0123456789abcdef";

    fn start() -> (DaemonNode, Instant) {
        let now = Instant::from_epoch(Duration::from_secs(1));
        (DaemonNode::new(NodeConfig::new(MACHINE), now), now)
    }

    fn outgoing(node: &mut DaemonNode) -> Vec<Outgoing> {
        std::iter::from_fn(|| node.poll_outgoing()).collect()
    }

    fn systemd_ids(out: &[Outgoing], pick: fn(&sd::SystemdRequest) -> Option<OpId>) -> Vec<OpId> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Systemd(request) => pick(request),
                _ => None,
            })
            .collect()
    }

    fn inventory_id(request: &sd::SystemdRequest) -> Option<OpId> {
        match request {
            sd::SystemdRequest::Inventory { id } => Some(*id),
            _ => None,
        }
    }

    fn system_state_id(request: &sd::SystemdRequest) -> Option<OpId> {
        match request {
            sd::SystemdRequest::SystemState { id } => Some(*id),
            _ => None,
        }
    }

    fn deletes(out: &[Outgoing]) -> Vec<(OpId, String)> {
        out.iter()
            .filter_map(|o| match o {
                Outgoing::Registry(id, Request::Delete { key, .. }) => Some((*id, key.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_inventory_is_the_first_systemd_request_and_is_asked_again_after_a_failure() {
        let (mut node, now) = start();
        let out = outgoing(&mut node);
        assert!(
            matches!(
                out.first(),
                Some(Outgoing::Systemd(sd::SystemdRequest::Inventory { .. }))
            ),
            "{out:?}"
        );
        let first = systemd_ids(&out, inventory_id);
        assert_eq!(first.len(), 1);
        node.handle_systemd(
            SystemdEvent::Reply {
                id: first[0],
                result: Err(sd::SystemdError::Stopped),
            },
            now,
        );
        assert!(
            node.poll_timeout()
                .is_some_and(|at| at <= now + INVENTORY_RETRY)
        );
        node.handle_timeout(now + INVENTORY_RETRY / 2);
        assert!(systemd_ids(&outgoing(&mut node), inventory_id).is_empty());
        node.handle_timeout(now + INVENTORY_RETRY);
        let again = systemd_ids(&outgoing(&mut node), inventory_id);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0], first[0]);
        node.handle_systemd(
            SystemdEvent::Reply {
                id: again[0],
                result: Ok(sd::SystemdReply::Inventory(Vec::new())),
            },
            now + INVENTORY_RETRY,
        );
        node.handle_timeout(now + INVENTORY_RETRY * 3);
        assert!(systemd_ids(&outgoing(&mut node), inventory_id).is_empty());
    }

    fn stop_with_host_state(state: &str) -> (DaemonNode, Vec<Outgoing>, Instant) {
        let (mut node, now) = start();
        outgoing(&mut node);
        node.stop(true, now);
        assert!(!node.is_stopped(now), "stopped before systemd answered");
        let asked = systemd_ids(&outgoing(&mut node), system_state_id);
        assert_eq!(asked.len(), 1);
        node.handle_systemd(
            SystemdEvent::Reply {
                id: asked[0],
                result: Ok(sd::SystemdReply::SystemState(state.to_string())),
            },
            now,
        );
        let out = outgoing(&mut node);
        (node, out, now)
    }

    #[test]
    fn a_host_shutting_down_deletes_presence_and_unit_states_before_stopping() {
        let (mut node, out, now) = stop_with_host_state("stopping");
        let deletes = deletes(&out);
        let presence = Keyspace::default().machine_object(MACHINE);
        assert!(
            deletes.iter().any(|(_, key)| *key == presence),
            "{deletes:?}"
        );
        assert_eq!(deletes.len(), 2, "{deletes:?}");
        assert!(
            !node.is_stopped(now),
            "stopped before the deletes were answered"
        );
        for (id, _) in deletes {
            node.handle_registry(
                Response {
                    id,
                    result: Ok(Reply::Deleted { index: 7 }),
                },
                now,
            );
        }
        assert!(node.is_stopped(now));
    }

    #[test]
    fn a_plain_stop_leaves_the_presence_to_its_ttl() {
        let (node, out, now) = stop_with_host_state("running");
        assert_eq!(deletes(&out), Vec::new());
        assert!(node.is_stopped(now));
    }

    #[test]
    fn a_stop_without_an_answer_from_systemd_ends_at_the_grace_deadline() {
        let (mut node, now) = start();
        outgoing(&mut node);
        node.stop(true, now);
        outgoing(&mut node);
        let later = now + STOP_GRACE;
        node.handle_timeout(later);
        assert_eq!(deletes(&outgoing(&mut node)), Vec::new());
        assert!(node.is_stopped(later));
    }

    /// Prometheus text: every sample line is `name{labels} value` with a value that parses, and
    /// every family has HELP and TYPE lines before its samples.
    fn samples(text: &str) -> BTreeMap<String, f64> {
        let mut declared = Vec::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(kind == "counter" || kind == "gauge", "{line}");
                declared.push(name.to_string());
            } else if line.starts_with('#') {
                continue;
            } else {
                let (series, value) = line.rsplit_once(' ').expect("sample");
                let family = series.split('{').next().expect("name");
                assert!(declared.iter().any(|d| d == family), "undeclared {line}");
                let value: f64 = value.parse().expect("value");
                assert!(
                    samples.insert(series.to_string(), value).is_none(),
                    "twice: {line}"
                );
            }
        }
        samples
    }

    #[test]
    fn metrics_show_the_agents_figures_and_the_engines_when_there_is_one() {
        let agent = AgentMetrics {
            tasks: BTreeMap::from([("StartUnit", 3), ("LoadUnit", 4)]),
            task_failures: BTreeMap::from([("StartUnit", 1)]),
            units_desired: 5,
            units_loaded: 4,
            units_active: 2,
            states_published: 9,
            states_removed: 1,
            state_publish_failures: 2,
            registry_requests: BTreeMap::from([("put", 12), ("watch", 3)]),
            registry_failures: BTreeMap::from([("put", 2)]),
        };

        let text = format_metrics(&agent, None);
        let s = samples(&text);
        let get = |k: &str| s.get(k).copied();
        assert_eq!(get("flt_agent_tasks_total{type=\"StartUnit\"}"), Some(3.0));
        assert_eq!(get("flt_agent_tasks_total{type=\"LoadUnit\"}"), Some(4.0));
        // Task types without tasks yet are listed at 0.
        assert_eq!(get("flt_agent_tasks_total{type=\"StopUnit\"}"), Some(0.0));
        assert_eq!(
            get("flt_agent_task_failures_total{type=\"StartUnit\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("flt_agent_task_failures_total{type=\"LoadUnit\"}"),
            Some(0.0)
        );
        assert_eq!(get("flt_agent_units_desired"), Some(5.0));
        assert_eq!(get("flt_agent_units_loaded"), Some(4.0));
        assert_eq!(get("flt_agent_units_active"), Some(2.0));
        assert_eq!(get("flt_agent_unit_states_published_total"), Some(9.0));
        assert_eq!(get("flt_agent_unit_states_removed_total"), Some(1.0));
        assert_eq!(
            get("flt_agent_unit_state_publish_failures_total"),
            Some(2.0)
        );
        assert_eq!(
            get("flt_registry_requests_total{component=\"agent\",type=\"put\"}"),
            Some(12.0)
        );
        assert_eq!(
            get("flt_registry_failures_total{component=\"agent\",type=\"put\"}"),
            Some(2.0)
        );
        assert!(!text.contains("flt_engine_"), "{text}");
        assert!(text.contains("# flt: no engine on this machine"), "{text}");

        let engine = EngineMetrics {
            reconcile_count: 7,
            task_count: BTreeMap::from([("attemptscheduleunit", 2)]),
            registry_requests: BTreeMap::from([("get", 5)]),
            registry_failures: BTreeMap::from([("get", 1)]),
            ..EngineMetrics::default()
        };
        let text = format_metrics(&agent, Some((&engine, 1_700_000_000.5)));
        let s = samples(&text);
        let get = |k: &str| s.get(k).copied();
        assert_eq!(get("flt_engine_reconcile_count_total"), Some(7.0));
        assert_eq!(get("flt_engine_leader_start_time"), Some(1_700_000_000.5));
        assert_eq!(
            get("flt_engine_task_count_total{type=\"attemptscheduleunit\"}"),
            Some(2.0)
        );
        assert_eq!(
            get("flt_registry_requests_total{component=\"engine\",type=\"get\"}"),
            Some(5.0)
        );
        assert_eq!(
            get("flt_registry_failures_total{component=\"engine\",type=\"get\"}"),
            Some(1.0)
        );
        assert_eq!(
            get("flt_registry_operation_count_total{type=\"get\"}"),
            Some(5.0)
        );
        assert_eq!(get("flt_agent_units_active"), Some(2.0));
    }

    #[test]
    fn agent_requests_and_driver_replies_map_one_to_one() {
        let id = OpId(42);
        let load = systemd_request(
            id,
            SystemdRequest::LoadUnit {
                name: "a.service".into(),
                text: "[Service]\nExecStart=/bin/true\n".into(),
                enable: true,
            },
        );
        assert_eq!(
            load,
            sd::SystemdRequest::Load {
                id,
                name: "a.service".into(),
                contents: "[Service]\nExecStart=/bin/true\n".into(),
                enable: true,
            }
        );
        assert_eq!(
            systemd_request(
                id,
                SystemdRequest::ListUnits {
                    names: vec!["a.service".into()]
                }
            ),
            sd::SystemdRequest::ListStates {
                id,
                names: vec!["a.service".into()]
            }
        );
        assert_eq!(
            systemd_request(id, SystemdRequest::Reload),
            sd::SystemdRequest::Reload { id }
        );
        let state = sd::UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
        };
        let reply = systemd_reply(
            id,
            Ok(sd::SystemdReply::States(vec![("a.service".into(), state)])),
        );
        assert_eq!(
            reply.result,
            Ok(SystemdOutcome::Units(vec![UnitObserved::new(
                "a.service",
                "loaded",
                "active",
                "running"
            )]))
        );
        assert_eq!(
            systemd_reply(id, Ok(sd::SystemdReply::Job("/job/1".into()))).result,
            Ok(SystemdOutcome::Done)
        );
        assert_eq!(
            systemd_reply(
                id,
                Ok(sd::SystemdReply::Loaded {
                    reload_needed: false
                })
            )
            .result,
            Ok(SystemdOutcome::Loaded {
                reload_needed: false
            })
        );
        let failed = systemd_reply(id, Err(sd::SystemdError::Stopped));
        assert_eq!(
            failed.result,
            Err(SystemdFailure::Failed(
                "the systemd driver has stopped".into()
            ))
        );
    }
}
