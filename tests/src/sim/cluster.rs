//! [`Cluster`]: a whole SIMULATED flt cluster in one process and in virtual time. Each machine
//! runs `flt-core`'s [`Engine`] and [`Agent`] (driven directly, as fltd would, through a small
//! per-machine adapter), with its own clock (offset and rate drift), against one [`SimRegistry`]
//! (simulated etcd v2 with lossy calls and delayed or duplicated watch events) and its own
//! [`SimSystemd`]. Users' actions are written straight to etcd as the API would.
//!
//! A run ([`Cluster::run`]) has a safety phase, with the faults its [`Scenario`] drew, then a
//! heal phase without faults. After every step it checks the safety invariants; after healing it
//! waits for convergence within a bound and then checks that the cluster is quiet. A violation
//! ends the run with a [`SimFailure`] carrying the seed and the trace's last lines; the whole
//! trace's digest makes a run's determinism checkable ([`RunReport::trace_digest`]).
//!
//! Invariants after every step:
//! - every unit is scheduled to at most one machine, and only to its `P/job/<name>/target`;
//! - no placement breaks `MachineID=`, `MachineMetadata=`, `MachineOf=` or `Conflicts=`, and no
//!   machine has two conflicting units started (`active` or `activating`: a unit still being
//!   stopped may overlap, since the agent does not wait for stop jobs, as fleet's did not);
//! - at most one engine believes it holds the lease (its local clock is before the lease's
//!   `valid_until`).
//!
//! After healing: every launched unit runs on exactly one eligible machine (global units on
//! every machine whose metadata fits), or has failed there (flt, like fleet, never restarts a
//! failed unit); units that are not launched run nowhere; then no etcd writes happen except TTL
//! refreshes and the engine lease's renewals. How long units ran on two machines at once during
//! the faults (fleet's keep-running policy allows it) is measured, not forbidden.

use super::etcd::{ClientId, SimEtcd};
use super::registry::SimRegistry;
use super::scenario::{Scenario, ScenarioUnit, UserAction};
use super::systemd::{Notice, SimSystemd, SystemdError};
use flt_core::agent::{
    self, Agent, AgentConfig, InventoryUnit, SystemdFailure, SystemdOutcome, SystemdReply,
    SystemdRequest, UnitObserved,
};
use flt_core::engine::{ENGINE_COMPONENT, Engine, EngineConfig, EngineEvent, LeaseState};
use flt_core::registry::records::{JobRecord, TargetState, UnitFileRecord};
use flt_core::registry::{
    Action, Event, KeyKind, Keyspace, OpId, Precondition, PutValue, Record, Request, Response,
};
use flt_core::time::Instant;
use flt_core::unit::{Requirements, UnitFile};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

/// How many trace lines a failure shows (`FLT_SIM_TRACE_LINES` changes it).
const TRACE_TAIL: usize = 300;

fn trace_tail() -> usize {
    std::env::var("FLT_SIM_TRACE_LINES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(TRACE_TAIL)
}
/// Convergence must come within this long after the faults heal.
pub const CONVERGENCE_BOUND: Duration = Duration::from_secs(150);
/// After converging, the cluster must stay quiet from this long on (late unit-state writes of
/// the convergence itself may still land before).
const QUIET_AFTER: Duration = Duration::from_secs(30);

/// A machine's clock: `local = offset + t × (1 + drift_ppm / 10⁶)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub offset: Duration,
    pub drift_ppm: i64,
}

impl Clock {
    fn scale(&self) -> u128 {
        (1_000_000 + self.drift_ppm).max(1) as u128
    }

    /// The machine's local time at virtual time `t`.
    pub fn local(&self, t: Instant) -> Instant {
        let nanos = t.since_epoch().as_nanos() * self.scale() / 1_000_000;
        let total = self.offset.as_nanos() + nanos;
        Instant::from_epoch(Duration::from_nanos(
            u64::try_from(total).unwrap_or(u64::MAX),
        ))
    }

    /// The earliest virtual time at which the local clock reads at least `local`.
    pub fn virtual_time(&self, local: Instant) -> Instant {
        let since = local.since_epoch().saturating_sub(self.offset).as_nanos();
        let nanos = (since * 1_000_000).div_ceil(self.scale());
        let mut t = Instant::from_epoch(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ));
        while self.local(t) < local {
            t += Duration::from_nanos(1);
        }
        t
    }
}

/// Something waiting for a paused node.
#[derive(Clone, Debug)]
enum Delivery {
    Engine(Response),
    Agent(agent::Input),
}

/// One simulated machine.
struct Machine {
    index: usize,
    id: String,
    clock: Clock,
    metadata: BTreeMap<String, String>,
    /// The current incarnation's etcd client (a restart gets a new one, so that answers meant
    /// for the previous process never reach the new one).
    client: ClientId,
    incarnation: u64,
    engine: Option<Engine>,
    agent: Option<Agent>,
    systemd: SimSystemd,
    /// Units the driver follows (inventory + loads − unloads).
    followed: BTreeSet<String>,
    /// Watches this incarnation opened, to cancel at a crash.
    watches: Vec<OpId>,
    cut: bool,
    bus_up: bool,
    paused_until: Option<Instant>,
    pause_armed: Option<Duration>,
    held: Vec<(OpId, Request)>,
    inbox: Vec<Delivery>,
    up_at: Option<Instant>,
    /// When this machine next needs a step (cached: only a step changes it).
    wake_at: Option<Instant>,
}

impl Machine {
    fn is_up(&self) -> bool {
        self.agent.is_some()
    }

    fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }
}

/// A run that broke an invariant.
#[derive(Clone, Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub at: Instant,
    pub violations: Vec<String>,
    pub scenario: String,
    pub trace: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation seed {:#x} failed at {:?}: replay with FLT_SIM_SEED={:#x} cargo test -p \
             flt-tests --test sim cluster_",
            self.seed,
            self.at.since_epoch(),
            self.seed
        )?;
        writeln!(f, "scenario: {}", self.scenario)?;
        for v in &self.violations {
            writeln!(f, "violation: {v}")?;
        }
        writeln!(f, "last {} trace lines:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What a successful run measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub seed: u64,
    pub machines: usize,
    pub units: usize,
    pub simulated: Duration,
    /// Inputs and timeouts handed to engines and agents.
    pub events: u64,
    /// Registry requests the nodes sent.
    pub requests: u64,
    /// Summed over units: time a unit ran on more than one machine at once.
    pub double_running: Duration,
    /// Units that ever ran on two machines at once.
    pub double_running_units: usize,
    /// From the end of the faults to convergence.
    pub convergence: Option<Duration>,
    /// Leadership changes seen.
    pub leader_changes: u64,
    /// A digest of the whole trace: equal for two runs of one seed.
    pub trace_digest: u64,
    pub trace_lines: u64,
    /// Steps of the run loop.
    pub steps: u64,
}

/// The user-visible state of one unit, as the users' actions left it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted {
    exists: bool,
    state: TargetState,
}

/// Options of a run beyond its scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Check the safety invariants after every step (off only for speed measurements).
    pub check_every_step: bool,
    /// Check convergence and quiescence after healing.
    pub check_convergence: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            check_every_step: true,
            check_convergence: true,
        }
    }
}

/// A simulated cluster. See the module docs.
pub struct Cluster {
    scenario: Scenario,
    options: RunOptions,
    keys: Keyspace,
    registry: SimRegistry,
    machines: Vec<Machine>,
    client_owner: BTreeMap<ClientId, usize>,
    next_client: u32,
    requirements: BTreeMap<String, Requirements>,
    wanted: BTreeMap<String, Wanted>,
    now: Instant,
    // Observed registry state, kept up to date from etcd's history.
    seen_index: u64,
    schedule: BTreeMap<String, BTreeSet<String>>,
    targets: BTreeMap<String, String>,
    // Which machines run each non-global unit (active, activating or deactivating).
    running: BTreeMap<String, BTreeSet<usize>>,
    double: BTreeSet<String>,
    ever_double: BTreeSet<String>,
    double_time: Duration,
    last_step: Instant,
    trace: VecDeque<String>,
    digest: u64,
    trace_lines: u64,
    events: u64,
    requests: u64,
    steps: u64,
    leader_changes: u64,
    violations: Vec<String>,
    /// After convergence: the etcd index after which only quiet writes may happen.
    quiet_from: Option<u64>,
    trace_tail: usize,
    /// Pauses of the scenario already armed, by index.
    pauses_armed: BTreeSet<usize>,
}

fn fnv(digest: u64, text: &str) -> u64 {
    text.bytes().fold(digest, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn runs(active: &str) -> bool {
    matches!(active, "active" | "activating" | "deactivating")
}

/// Carries out one systemd request on the simulated systemd, as the D-Bus driver does.
fn execute(
    sd: &mut SimSystemd,
    request: &SystemdRequest,
    now: Instant,
) -> Result<SystemdOutcome, SystemdError> {
    match request {
        SystemdRequest::LoadUnit { name, text, enable } => {
            sd.write_unit_file(name, text);
            sd.link_unit_files(&[name])?;
            if *enable {
                sd.enable_unit_files(&[name])?;
            }
        }
        SystemdRequest::UnloadUnit { name } => {
            match sd.stop_unit(name, now) {
                Ok(_) | Err(SystemdError::NoSuchUnit(_)) => {}
                Err(e) => return Err(e),
            }
            sd.disable_unit_files(&[name])?;
            let _ = sd.reset_failed_unit(name, now);
            sd.remove_unit_file(name);
        }
        SystemdRequest::StartUnit { name } => {
            sd.start_unit(name, now)?;
        }
        SystemdRequest::StopUnit { name } => {
            sd.stop_unit(name, now)?;
        }
        SystemdRequest::Reload => sd.reload(now)?,
        SystemdRequest::ListUnits { names } => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let units = sd
                .list_units_by_names(&refs)?
                .into_iter()
                .map(|s| UnitObserved::new(&s.name, &s.load, &s.active, &s.sub))
                .collect();
            return Ok(SystemdOutcome::Units(units));
        }
    }
    Ok(SystemdOutcome::Done)
}

impl Cluster {
    /// A cluster for `scenario`, nothing started yet.
    pub fn new(scenario: Scenario, options: RunOptions) -> Cluster {
        let keys = Keyspace::default();
        let registry = SimRegistry::new(
            SimEtcd::new(),
            scenario.faults.registry.clone(),
            scenario.seed,
        );
        let machines = scenario
            .machines
            .iter()
            .enumerate()
            .map(|(index, m)| Machine {
                index,
                id: m.id.clone(),
                clock: Clock {
                    offset: m.offset,
                    drift_ppm: m.drift_ppm,
                },
                metadata: m.metadata.clone(),
                client: ClientId(u32::MAX),
                incarnation: 0,
                engine: None,
                agent: None,
                systemd: SimSystemd::new(
                    scenario.seed ^ (index as u64 + 1).wrapping_mul(0x51_7cc1),
                    scenario.faults.systemd.clone(),
                ),
                followed: BTreeSet::new(),
                watches: Vec::new(),
                cut: false,
                bus_up: true,
                paused_until: None,
                pause_armed: None,
                held: Vec::new(),
                inbox: Vec::new(),
                up_at: Some(Instant::ZERO),
                wake_at: Some(Instant::ZERO),
            })
            .collect();
        let requirements = scenario
            .units
            .iter()
            .map(|u| {
                let file = UnitFile::parse(&u.text)
                    .unwrap_or_else(|e| panic!("scenario unit {} does not parse: {e}", u.name));
                (u.name.clone(), Requirements::from_unit(&file, &u.name))
            })
            .collect();
        Cluster {
            scenario,
            options,
            keys,
            registry,
            machines,
            client_owner: BTreeMap::new(),
            next_client: 0,
            requirements,
            wanted: BTreeMap::new(),
            now: Instant::ZERO,
            seen_index: 0,
            schedule: BTreeMap::new(),
            targets: BTreeMap::new(),
            running: BTreeMap::new(),
            double: BTreeSet::new(),
            ever_double: BTreeSet::new(),
            double_time: Duration::ZERO,
            last_step: Instant::ZERO,
            trace: VecDeque::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            trace_lines: 0,
            events: 0,
            requests: 0,
            steps: 0,
            leader_changes: 0,
            violations: Vec::new(),
            pauses_armed: BTreeSet::new(),
            trace_tail: trace_tail(),
            quiet_from: None,
        }
    }

    fn log(&mut self, line: String) {
        let line = format!("{:>12.6} {line}", self.now.since_epoch().as_secs_f64());
        self.digest = fnv(self.digest, &line);
        self.trace_lines += 1;
        if self.trace.len() >= self.trace_tail {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn fail(&self, violations: Vec<String>) -> SimFailure {
        SimFailure {
            seed: self.scenario.seed,
            at: self.now,
            violations,
            scenario: self.scenario.to_string(),
            trace: self.trace.iter().cloned().collect(),
        }
    }

    fn safety_end(&self) -> Instant {
        Instant::from_epoch(self.scenario.safety_phase)
    }

    fn healed(&self) -> bool {
        self.now >= self.safety_end()
    }

    // ---- machines ----

    fn boot(&mut self, i: usize) {
        let now = self.now;
        self.next_client += 1;
        let client = ClientId(self.next_client);
        self.client_owner.insert(client, i);
        let m = &mut self.machines[i];
        m.incarnation += 1;
        m.client = client;
        m.cut = false;
        m.watches.clear();
        m.inbox.clear();
        m.held.clear();
        m.paused_until = None;
        m.up_at = None;
        let seed = self.scenario.seed ^ ((i as u64) << 32) ^ m.incarnation;
        let local = m.clock.local(now);
        let mut agent_config = AgentConfig::new(&m.id);
        // As fltd's Node does: the leader's trust is bound by its presence.
        let mut engine_config = EngineConfig::new(&m.id);
        engine_config.seed = seed;
        engine_config.presence_bound = true;
        engine_config.presence_margin = agent_config.agent_ttl / 6;
        agent_config.metadata = m.metadata.clone();
        agent_config.seed = seed.rotate_left(7);
        m.engine = Some(Engine::new(engine_config, local));
        let mut agent = Agent::new(agent_config, local);
        // The driver's startup inventory: the units directory with systemd's view of each.
        let files = m.systemd.unit_files();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        let statuses = m.systemd.list_units_by_names(&names).unwrap_or_default();
        let inventory: Vec<InventoryUnit> = files
            .iter()
            .zip(statuses)
            .map(|((name, text), s)| InventoryUnit {
                name: name.clone(),
                text: text.clone(),
                observed: Some(UnitObserved::new(&s.name, &s.load, &s.active, &s.sub)),
            })
            .collect();
        m.followed = files.iter().map(|(n, _)| n.clone()).collect();
        agent.handle_input(agent::Input::Inventory(inventory), local);
        m.agent = Some(agent);
        let incarnation = m.incarnation;
        self.log(format!("node {i}: fltd starts (incarnation {incarnation})"));
        self.events += 1;
        self.flush(i);
    }

    fn crash(&mut self, i: usize, host: bool) {
        let m = &mut self.machines[i];
        m.engine = None;
        m.agent = None;
        for id in std::mem::take(&mut m.watches) {
            self.registry.cancel_watch(m.client, id);
        }
        m.inbox.clear();
        m.held.clear();
        m.paused_until = None;
        if host {
            // /run is gone: systemd comes back without the units.
            let seed = self.scenario.seed ^ 0xdead ^ ((i as u64) << 40) ^ m.incarnation;
            m.systemd = SimSystemd::new(seed, self.scenario.faults.systemd.clone());
            m.followed.clear();
            for (name, on) in self.running.iter_mut() {
                if on.remove(&i) && on.len() <= 1 {
                    self.double.remove(name);
                }
            }
        }
        self.log(format!(
            "node {i}: {} crashes",
            if host { "host" } else { "fltd" }
        ));
    }

    /// Sends what a node produced (unless it is paused), executing systemd requests at once,
    /// and notes when the machine needs its next step.
    fn flush(&mut self, i: usize) {
        self.flush_outputs(i);
        let wake = [
            self.node_deadline(i),
            self.machines[i].systemd.next_timeout(),
            self.machines[i].up_at.filter(|_| !self.machines[i].is_up()),
            self.machines[i].systemd.has_notices().then_some(self.now),
        ]
        .into_iter()
        .flatten()
        .min();
        self.machines[i].wake_at = wake;
    }

    fn flush_outputs(&mut self, i: usize) {
        let now = self.now;
        loop {
            let m = &mut self.machines[i];
            let local = m.clock.local(now);
            let mut outgoing: Vec<(OpId, Request)> = Vec::new();
            let mut replies: Vec<SystemdReply> = Vec::new();
            let mut lines: Vec<String> = Vec::new();
            if let (Some(engine), Some(agent)) = (&mut m.engine, &m.agent) {
                engine.set_presence_valid_until(agent.presence_valid_until(), local);
            }
            if let Some(engine) = &mut m.engine {
                while let Some(command) = engine.poll_command() {
                    outgoing.push((command.id, command.request));
                }
                while let Some(event) = engine.poll_event() {
                    match &event {
                        EngineEvent::ReconcileDone { tasks: 0, .. } => {}
                        EngineEvent::LeaseAcquired | EngineEvent::LeaseLost { .. } => {
                            self.leader_changes += 1;
                            lines.push(format!("node {i} engine: {event:?}"));
                        }
                        _ => lines.push(format!("node {i} engine: {event:?}")),
                    }
                }
            }
            if let Some(agent) = &mut m.agent {
                while let Some(command) = agent.poll_command() {
                    match command {
                        agent::Command::Registry { id, request } => outgoing.push((id, request)),
                        agent::Command::Systemd { id, request } => {
                            let result = if m.bus_up {
                                execute(&mut m.systemd, &request, now)
                                    .map_err(|e| SystemdFailure::Failed(e.to_string()))
                            } else {
                                Err(SystemdFailure::Failed(
                                    SystemdError::Disconnected.to_string(),
                                ))
                            };
                            match (&request, &result) {
                                (SystemdRequest::LoadUnit { name, .. }, Ok(_)) => {
                                    m.followed.insert(name.clone());
                                }
                                (SystemdRequest::UnloadUnit { name }, Ok(_)) => {
                                    m.followed.remove(name);
                                }
                                _ => {}
                            }
                            if !matches!(request, SystemdRequest::ListUnits { .. }) {
                                lines.push(format!(
                                    "node {i} systemd: {request:?} → {}",
                                    match &result {
                                        Ok(_) => "ok".to_string(),
                                        Err(e) => e.to_string(),
                                    }
                                ));
                            }
                            replies.push(SystemdReply { id, result });
                        }
                    }
                }
                while let Some(event) = agent.poll_event() {
                    use flt_core::agent::Event as A;
                    match event {
                        A::TaskStarted { .. } | A::TaskDone { .. } => {}
                        A::UnitStatePublished { .. } | A::UnitStateRemoved { .. } => {}
                        other => lines.push(format!("node {i} agent: {other:?}")),
                    }
                }
            }
            let wrote = outgoing.iter().any(|(id, r)| {
                id.0 >> 56 == u64::from(ENGINE_COMPONENT)
                    && matches!(r, Request::Put { .. } | Request::Delete { .. })
                    && !matches!(r, Request::Put { key, .. } | Request::Delete { key, .. }
                        if *key == self.keys.engine_lease())
            });
            if wrote && let Some(length) = m.pause_armed.take() {
                // Pauses are faults: they end when the faults heal.
                let heal_at = Instant::from_epoch(self.scenario.safety_phase);
                m.paused_until = Some((now + length).min(heal_at));
                lines.push(format!(
                    "node {i}: paused for {length:?} right after deciding to write"
                ));
            }
            let paused = m.is_paused(now);
            for (id, request) in &outgoing {
                if matches!(request, Request::Watch { .. }) {
                    m.watches.push(*id);
                }
            }
            if paused {
                m.held.append(&mut outgoing);
            }
            let client = m.client;
            for (id, request) in outgoing {
                self.requests += 1;
                self.registry.submit(client, id, request, now);
            }
            for line in lines {
                self.log(line);
            }
            if replies.is_empty() {
                return;
            }
            let m = &mut self.machines[i];
            for reply in replies {
                if let Some(agent) = &mut m.agent {
                    self.events += 1;
                    agent.handle_input(agent::Input::Systemd(reply), local);
                }
            }
        }
    }

    fn deliver(&mut self, i: usize, delivery: Delivery) {
        let now = self.now;
        let m = &mut self.machines[i];
        if m.is_paused(now) {
            m.inbox.push(delivery);
            return;
        }
        let local = m.clock.local(now);
        self.events += 1;
        match delivery {
            Delivery::Engine(response) => {
                if let Some(engine) = &mut m.engine {
                    engine.handle_input(response, local);
                }
            }
            Delivery::Agent(input) => {
                if let Some(agent) = &mut m.agent {
                    agent.handle_input(input, local);
                }
            }
        }
    }

    /// The node's next deadline, in virtual time.
    fn node_deadline(&self, i: usize) -> Option<Instant> {
        let m = &self.machines[i];
        if let Some(until) = m.paused_until.filter(|u| *u > self.now) {
            return Some(until);
        }
        if !m.is_up() {
            return None;
        }
        let engine = m
            .engine
            .as_ref()
            .and_then(|e| e.poll_timeout())
            .map(|t| t.0);
        let agent = m.agent.as_ref().and_then(|a| a.poll_timeout()).map(|t| t.0);
        [engine, agent]
            .into_iter()
            .flatten()
            .min()
            .map(|local| m.clock.virtual_time(local))
    }

    // ---- faults and users ----

    fn apply_faults(&mut self) {
        let now = self.now;
        let healed = self.healed();
        for i in 0..self.machines.len() {
            // Crashes and restarts.
            for crash in self.scenario.crashes.clone() {
                if crash.node == i && crash.at <= now && self.machines[i].is_up() && !healed {
                    let ends = crash.at + crash.down_for;
                    if now < ends {
                        self.crash(i, crash.host);
                        self.machines[i].up_at = Some(ends);
                    }
                }
            }
            if !self.machines[i].is_up()
                && self.machines[i].up_at.is_some_and(|at| at <= now || healed)
            {
                self.boot(i);
            }
            // Pauses are armed here and start at the node's next write.
            for (k, pause) in self.scenario.pauses.iter().enumerate() {
                if pause.node == i
                    && pause.armed_at <= now
                    && !healed
                    && self.pauses_armed.insert(k)
                {
                    self.machines[i].pause_armed = Some(pause.length);
                }
            }
            if healed {
                self.machines[i].pause_armed = None;
            }
            // Resume a paused node: what it had decided goes out, then what waited for it.
            if self.machines[i].paused_until.is_some_and(|u| u <= now) {
                self.machines[i].paused_until = None;
                self.log(format!("node {i}: resumes"));
                let held = std::mem::take(&mut self.machines[i].held);
                let client = self.machines[i].client;
                for (id, request) in held {
                    self.requests += 1;
                    self.registry.submit(client, id, request, now);
                }
                for delivery in std::mem::take(&mut self.machines[i].inbox) {
                    self.deliver(i, delivery);
                }
                self.flush(i);
            }
            // Partitions from etcd (one machine, or all).
            let all_out = self
                .scenario
                .etcd_outages
                .iter()
                .any(|(from, until)| *from <= now && now < *until);
            let cut = !healed && (self.scenario.faults.partitioned(i, now) || all_out);
            if cut != self.machines[i].cut && self.machines[i].is_up() {
                let client = self.machines[i].client;
                self.machines[i].cut = cut;
                if cut {
                    self.registry.cut_off(client, now);
                } else {
                    self.registry.reconnect(client, now);
                }
                self.log(format!(
                    "node {i}: {}",
                    if cut {
                        "cut off from etcd"
                    } else {
                        "reaches etcd again"
                    }
                ));
            }
            // D-Bus outages.
            let bus_up = healed || !self.scenario.faults.bus_lost(i, now);
            if bus_up != self.machines[i].bus_up {
                self.machines[i].bus_up = bus_up;
                self.machines[i].systemd.set_connected(bus_up);
                self.log(format!(
                    "node {i}: D-Bus {}",
                    if bus_up { "back" } else { "lost" }
                ));
                if bus_up {
                    self.resubscribe(i);
                }
            }
            self.flush(i);
        }
    }

    /// After a D-Bus outage the driver re-reads the followed units (signals were lost).
    fn resubscribe(&mut self, i: usize) {
        let m = &mut self.machines[i];
        let names: Vec<String> = m.followed.iter().cloned().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let statuses = m.systemd.list_units_by_names(&refs).unwrap_or_default();
        for s in statuses {
            let observed = UnitObserved::new(&s.name, &s.load, &s.active, &s.sub);
            self.deliver(i, Delivery::Agent(agent::Input::UnitObserved(observed)));
        }
        self.flush(i);
    }

    fn user_action(&mut self, action: &UserAction) {
        let now = self.now;
        let keys = self.keys.clone();
        let (unit, line) = match action {
            UserAction::SetTarget { unit, state } => {
                let u: ScenarioUnit = self.scenario.units[*unit].clone();
                let wanted = self.wanted.get(&u.name).copied();
                if wanted.is_none_or(|w| !w.exists) {
                    // Submit: the unit file (create-only, content-addressed), then the job.
                    let Ok(file) = UnitFile::parse(&u.text) else {
                        return;
                    };
                    let hash = file.hash();
                    let record = UnitFileRecord {
                        raw: file.serialize(),
                    };
                    let _ = self.registry.apply_direct(
                        &Request::Put {
                            key: keys.unit(&hash),
                            value: PutValue::Value(record.encode()),
                            ttl: None,
                            precondition: Precondition::Absent,
                        },
                        now,
                    );
                    let job = JobRecord {
                        name: u.name.clone(),
                        unit_hash: hash.0,
                    };
                    let _ = self.registry.apply_direct(
                        &Request::Put {
                            key: keys.job_object(&u.name),
                            value: PutValue::Value(job.encode()),
                            ttl: None,
                            precondition: Precondition::None,
                        },
                        now,
                    );
                }
                let _ = self.registry.apply_direct(
                    &Request::Put {
                        key: keys.job_target_state(&u.name),
                        value: PutValue::Value(state.as_str().to_string()),
                        ttl: None,
                        precondition: Precondition::None,
                    },
                    now,
                );
                self.wanted.insert(
                    u.name.clone(),
                    Wanted {
                        exists: true,
                        state: *state,
                    },
                );
                (u.name, state.as_str().to_string())
            }
            UserAction::Destroy { unit } => {
                let name = self.scenario.units[*unit].name.clone();
                let _ = self.registry.apply_direct(
                    &Request::Delete {
                        key: keys.job_dir(&name),
                        precondition: Precondition::None,
                        recursive: true,
                    },
                    now,
                );
                self.wanted.insert(
                    name.clone(),
                    Wanted {
                        exists: false,
                        state: TargetState::Inactive,
                    },
                );
                (name, "destroy".to_string())
            }
        };
        self.log(format!("user: {line} {unit}"));
    }

    // ---- invariants ----

    /// Follows etcd's history since the last step and checks the placement invariants.
    fn observe_registry(&mut self) {
        let etcd = self.registry.etcd();
        if etcd.index() == self.seen_index {
            return;
        }
        if etcd.history_start() > self.seen_index + 1 {
            self.violations.push(format!(
                "changes {}..{} left etcd's history before the checker saw them",
                self.seen_index + 1,
                etcd.history_start()
            ));
        }
        let events: Vec<(Event, bool)> = etcd
            .history()
            .filter(|(e, _)| e.node.modified_index > self.seen_index)
            .map(|(e, refresh)| (e.clone(), refresh))
            .collect();
        self.seen_index = etcd.index();
        let lease = self.keys.engine_lease();
        for (event, refresh) in events {
            // Quiescence: after convergence, only TTL refreshes and lease renewals.
            if self
                .quiet_from
                .is_some_and(|index| event.node.modified_index > index)
                && !refresh
                && event.node.key != lease
            {
                self.violations.push(format!(
                    "write after convergence: {:?} of {} at index {}",
                    event.action, event.node.key, event.node.modified_index
                ));
            }
            let Some(kind) = self.keys.classify(&event.node.key) else {
                continue;
            };
            let removed = event.action.is_removal();
            let value = event.node.value.clone().unwrap_or_default();
            match kind {
                KeyKind::ScheduleEntry { machine, name } => {
                    let on = self.schedule.entry(name.clone()).or_default();
                    if removed {
                        on.remove(&machine);
                    } else {
                        let new = on.insert(machine.clone());
                        if new && self.options.check_every_step {
                            self.check_placement(&name, &machine);
                        }
                    }
                    if self.options.check_every_step {
                        self.check_exclusive(&name);
                    }
                }
                KeyKind::ScheduleDir { machine } if removed => {
                    for on in self.schedule.values_mut() {
                        on.remove(&machine);
                    }
                }
                KeyKind::JobTarget { name } => {
                    if removed {
                        self.targets.remove(&name);
                    } else {
                        self.targets.insert(name.clone(), value);
                    }
                    if self.options.check_every_step {
                        self.check_exclusive(&name);
                    }
                }
                KeyKind::JobDir { name } if removed => {
                    self.targets.remove(&name);
                }
                _ => {}
            }
            if event.action == Action::Expire
                && let Some(KeyKind::MachineObject { machine }) =
                    self.keys.classify(&event.node.key)
            {
                self.log(format!("etcd: presence of {machine} expired"));
            }
        }
    }

    fn check_exclusive(&mut self, name: &str) {
        let on = self.schedule.get(name).cloned().unwrap_or_default();
        if on.len() > 1 {
            self.violations.push(format!(
                "{name} is scheduled to {} machines: {on:?}",
                on.len()
            ));
        }
        if let Some(target) = self.targets.get(name)
            && on.iter().any(|m| m != target)
        {
            self.violations.push(format!(
                "{name} targets {target} but is scheduled to {on:?}"
            ));
        }
    }

    fn machine_index(&self, id: &str) -> Option<usize> {
        self.machines.iter().position(|m| m.id == id)
    }

    /// A new schedule entry must respect the unit's requirements.
    fn check_placement(&mut self, name: &str, machine: &str) {
        let Some(req) = self.requirements.get(name).cloned() else {
            return;
        };
        let Some(i) = self.machine_index(machine) else {
            self.violations
                .push(format!("{name} scheduled to unknown machine {machine}"));
            return;
        };
        let metadata = self.machines[i].metadata.clone();
        if !req.machine_id_matches(machine) {
            self.violations.push(format!(
                "{name} scheduled to {machine}, but its MachineID is {:?}",
                req.machine_id
            ));
        }
        if !req.metadata_matches(&metadata) {
            self.violations.push(format!(
                "{name} scheduled to {machine} with metadata {metadata:?}, against {:?}",
                req.metadata
            ));
        }
        for peer in &req.peers {
            if self.targets.get(peer).is_some_and(|t| t != machine) {
                self.violations.push(format!(
                    "{name} scheduled to {machine}, but its MachineOf peer {peer} targets {:?}",
                    self.targets.get(peer)
                ));
            }
        }
        for (other, on) in &self.schedule {
            if other != name && on.contains(machine) {
                let other_conflicts = self
                    .requirements
                    .get(other)
                    .is_some_and(|r| conflicts(r, name));
                if conflicts(&req, other) || other_conflicts {
                    self.violations.push(format!(
                        "{name} scheduled to {machine}, which already has {other}: Conflicts="
                    ));
                }
            }
        }
    }

    /// Systemd notices: who runs what, conflicts on a machine, double running.
    fn observe_systemd(&mut self, i: usize) {
        let mut forwarded = Vec::new();
        let mut changed = false;
        while let Some(notice) = self.machines[i].systemd.poll_notice() {
            let Notice::UnitChanged(status) = notice else {
                continue;
            };
            changed = true;
            let global = self
                .requirements
                .get(&status.name)
                .is_some_and(|r| r.global);
            if !global {
                let on = self.running.entry(status.name.clone()).or_default();
                if runs(&status.active) {
                    on.insert(i);
                } else {
                    on.remove(&i);
                }
                if on.len() > 1 {
                    if self.double.insert(status.name.clone()) {
                        self.ever_double.insert(status.name.clone());
                        let line = format!("{} runs on machines {on:?}", status.name);
                        self.log(line);
                    }
                } else {
                    self.double.remove(&status.name);
                }
            }
            let m = &self.machines[i];
            if m.is_up() && m.bus_up && m.followed.contains(&status.name) {
                forwarded.push(UnitObserved::new(
                    &status.name,
                    &status.load,
                    &status.active,
                    &status.sub,
                ));
            }
        }
        if changed && self.options.check_every_step {
            let active = self.machines[i].systemd.started_units();
            for a in &active {
                for b in &active {
                    if a != b && self.requirements.get(a).is_some_and(|r| conflicts(r, b)) {
                        self.violations.push(format!(
                            "machine {i} runs {a} and {b}, which {a} conflicts with"
                        ));
                    }
                }
            }
        }
        for observed in forwarded {
            self.deliver(i, Delivery::Agent(agent::Input::UnitObserved(observed)));
        }
    }

    fn check_leaders(&mut self) {
        let now = self.now;
        let leaders: Vec<usize> = self
            .machines
            .iter()
            .filter_map(|m| {
                let engine = m.engine.as_ref()?;
                match engine.lease() {
                    LeaseState::Leader { valid_until, .. } if m.clock.local(now) < *valid_until => {
                        Some(m.index)
                    }
                    _ => None,
                }
            })
            .collect();
        if leaders.len() > 1 {
            self.violations.push(format!(
                "engines {leaders:?} all believe they hold the lease"
            ));
        }
    }

    /// Why the cluster has not converged (empty: it has).
    fn convergence_gaps(&mut self) -> Vec<String> {
        let mut gaps = Vec::new();
        // Every machine is back in the cluster: registered, its presence key there, and
        // refreshed since the faults healed (a key written before a cut can still be there at
        // the heal and expire right after).
        let heal_at = self.safety_end();
        for m in &self.machines {
            let healed = m.clock.local(heal_at);
            let registered = m.agent.as_ref().is_some_and(|a| {
                a.is_registered()
                    && a.presence_valid_until()
                        .is_some_and(|until| until > healed + a.config().agent_ttl)
            });
            let present = self
                .registry
                .etcd()
                .value(&self.keys.machine_object(&m.id))
                .is_some();
            if !registered || !present {
                gaps.push(format!(
                    "machine {} not in the cluster (registered: {registered}, presence key: \
                     {present})",
                    m.index
                ));
            }
        }
        let mut states: Vec<BTreeMap<String, (String, String)>> = Vec::new();
        for m in &mut self.machines {
            let names: Vec<String> = self.requirements.keys().cloned().collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let listed = m.systemd.list_units_by_names(&refs).unwrap_or_default();
            states.push(
                listed
                    .into_iter()
                    .map(|s| (s.name, (s.load, s.active)))
                    .collect(),
            );
        }
        for (name, req) in &self.requirements {
            let wanted = self.wanted.get(name).copied().unwrap_or(Wanted {
                exists: false,
                state: TargetState::Inactive,
            });
            let running: Vec<usize> = (0..self.machines.len())
                .filter(|i| states[*i].get(name).is_some_and(|(_, a)| runs(a)))
                .collect();
            let failed: Vec<usize> = (0..self.machines.len())
                .filter(|i| states[*i].get(name).is_some_and(|(_, a)| a == "failed"))
                .collect();
            // fleet places a MachineOf= unit only where its peer is scheduled.
            let peers_scheduled = req.peers.iter().all(|peer| {
                self.wanted
                    .get(peer)
                    .is_some_and(|w| w.exists && w.state != TargetState::Inactive)
            });
            let launched =
                wanted.exists && wanted.state == TargetState::Launched && peers_scheduled;
            if !launched {
                if !running.is_empty() {
                    gaps.push(format!(
                        "{name} ({:?}) runs on {running:?}",
                        if wanted.exists {
                            wanted.state.as_str()
                        } else {
                            "destroyed"
                        }
                    ));
                }
                continue;
            }
            if req.global {
                for (i, m) in self.machines.iter().enumerate() {
                    let fits = req.metadata_matches(&m.metadata);
                    let ok = if fits {
                        running.contains(&i) || failed.contains(&i)
                    } else {
                        !running.contains(&i)
                    };
                    if !ok {
                        gaps.push(format!(
                            "global {name} {} on machine {i}",
                            if fits { "not running" } else { "running" }
                        ));
                    }
                }
                continue;
            }
            let target = self.targets.get(name).and_then(|t| self.machine_index(t));
            match (running.as_slice(), target) {
                ([one], Some(t)) if *one == t => {}
                ([], Some(t)) if failed.contains(&t) => {}
                _ => gaps.push(format!(
                    "{name} runs on {running:?} (failed on {failed:?}), target {target:?}"
                )),
            }
            if let Some(t) = target {
                let m = &self.machines[t];
                if !req.machine_id_matches(&m.id) || !req.metadata_matches(&m.metadata) {
                    gaps.push(format!("{name} targets ineligible machine {t}"));
                }
                for peer in &req.peers {
                    if self.targets.get(peer) != Some(&m.id) {
                        gaps.push(format!("{name} is not with its peer {peer}"));
                    }
                }
            }
        }
        gaps
    }

    // ---- the loop ----

    /// Runs the scenario to its end, checking the invariants.
    pub fn run(mut self) -> Result<RunReport, Box<SimFailure>> {
        let end = Instant::from_epoch(self.scenario.safety_phase + self.scenario.heal_phase);
        let heal_at = self.safety_end();
        let mut actions: VecDeque<(Instant, UserAction)> =
            self.scenario.actions.clone().into_iter().collect();
        let mut transitions: Vec<Instant> = self.scenario.faults.transitions();
        for c in &self.scenario.crashes {
            transitions.extend([c.at, c.at + c.down_for]);
        }
        for p in &self.scenario.pauses {
            transitions.push(p.armed_at);
        }
        for (a, b) in &self.scenario.etcd_outages {
            transitions.extend([*a, *b]);
        }
        transitions.push(heal_at);
        transitions.sort();
        transitions.dedup();
        transitions.reverse();
        let mut healed_applied = false;
        let mut converged_at: Option<Instant> = None;
        let mut quiet_from: Option<u64> = None;
        let mut next_convergence_check = heal_at;
        self.log(format!("scenario: {}", self.scenario));
        for i in 0..self.machines.len() {
            self.boot(i);
        }
        while self.now < end {
            let now = self.now;
            self.steps += 1;
            let mut fault_due = self.steps == 1;
            while transitions.last().is_some_and(|t| *t <= now) {
                transitions.pop();
                fault_due = true;
            }
            fault_due |= self.machines.iter().any(|m| {
                m.paused_until.is_some_and(|u| u <= now)
                    || (!m.is_up() && m.up_at.is_some_and(|u| u <= now))
            });
            if !healed_applied && now >= heal_at {
                healed_applied = true;
                let (registry, systemd) = self.scenario.faults.healed();
                self.registry.set_faults(registry);
                for m in &mut self.machines {
                    m.systemd.set_faults(systemd.clone());
                    m.systemd.cancel_deaths();
                }
                self.log("faults heal".to_string());
                for i in 0..self.machines.len() {
                    self.flush(i);
                }
            }
            if fault_due {
                self.apply_faults();
            }
            while actions.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, action)) = actions.pop_front() {
                    self.user_action(&action);
                }
            }
            // Registry answers and watch events due now.
            while let Some((client, response)) = self.registry.poll_response(now) {
                let Some(&i) = self.client_owner.get(&client) else {
                    continue;
                };
                if self.machines[i].client != client || !self.machines[i].is_up() {
                    continue; // meant for a previous incarnation
                }
                let delivery = if response.id.0 >> 56 == u64::from(ENGINE_COMPONENT) {
                    Delivery::Engine(response)
                } else {
                    Delivery::Agent(agent::Input::Registry(response))
                };
                self.deliver(i, delivery);
                self.flush(i);
            }
            for i in 0..self.machines.len() {
                if self.machines[i].wake_at.is_none_or(|at| at > now) {
                    continue;
                }
                self.machines[i].systemd.advance(now);
                self.observe_systemd(i);
                let m = &mut self.machines[i];
                if m.is_up() && !m.is_paused(now) {
                    let local = m.clock.local(now);
                    if let Some(engine) = &mut m.engine
                        && engine.poll_timeout().is_some_and(|(at, _)| at <= local)
                    {
                        self.events += 1;
                        engine.handle_timeout(local);
                    }
                    if let Some(agent) = &mut m.agent
                        && agent.poll_timeout().is_some_and(|(at, _)| at <= local)
                    {
                        self.events += 1;
                        agent.handle_timeout(local);
                    }
                }
                self.flush(i);
            }
            // Double running, integrated over the time since the last step.
            self.double_time += (now - self.last_step) * self.double.len() as u32;
            self.last_step = now;
            self.observe_registry();
            if self.options.check_every_step {
                self.check_leaders();
            }
            if !self.violations.is_empty() {
                let violations = std::mem::take(&mut self.violations);
                return Err(Box::new(self.fail(violations)));
            }
            if self.options.check_convergence && now >= next_convergence_check {
                next_convergence_check = now + Duration::from_secs(2);
                let gaps = self.convergence_gaps();
                match (converged_at, gaps.is_empty()) {
                    (None, true) => {
                        converged_at = Some(now);
                        self.log(format!(
                            "converged {:?} after the faults healed",
                            now - heal_at
                        ));
                    }
                    (None, false) if now > heal_at + CONVERGENCE_BOUND => {
                        return Err(Box::new(
                            self.fail(
                                std::iter::once(format!(
                                    "not converged {CONVERGENCE_BOUND:?} after the faults healed"
                                ))
                                .chain(gaps)
                                .collect(),
                            ),
                        ));
                    }
                    (Some(_), false) => {
                        return Err(Box::new(
                            self.fail(
                                std::iter::once("converged, then diverged again".to_string())
                                    .chain(gaps)
                                    .collect(),
                            ),
                        ));
                    }
                    _ => {}
                }
                if let Some(at) = converged_at
                    && quiet_from.is_none()
                    && now >= at + QUIET_AFTER
                {
                    let index = self.registry.etcd().index();
                    quiet_from = Some(index);
                    self.quiet_from = Some(index);
                }
            }
            // The next thing to happen.
            let mut next = [
                self.registry.next_timeout(),
                actions.front().map(|(at, _)| *at),
                transitions.last().copied(),
                Some(end),
                (self.options.check_convergence && now >= heal_at)
                    .then_some(next_convergence_check),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
            for m in &self.machines {
                if let Some(at) = m.wake_at {
                    next = next.min(at);
                }
            }
            self.now = if next > now {
                next
            } else {
                now + Duration::from_micros(1)
            };
        }
        if self.options.check_convergence {
            if converged_at.is_none() {
                let gaps = self.convergence_gaps();
                return Err(Box::new(
                    self.fail(
                        std::iter::once("never converged".to_string())
                            .chain(gaps)
                            .collect(),
                    ),
                ));
            }
            if quiet_from.is_none() {
                return Err(Box::new(self.fail(vec![format!(
                    "converged too late to check quiescence ({converged_at:?})"
                )])));
            }
        }
        Ok(RunReport {
            seed: self.scenario.seed,
            machines: self.machines.len(),
            units: self.scenario.units.len(),
            simulated: end.since_epoch(),
            events: self.events,
            requests: self.requests,
            double_running: self.double_time,
            double_running_units: self.ever_double.len(),
            convergence: converged_at.map(|at| at - heal_at),
            leader_changes: self.leader_changes,
            trace_digest: self.digest,
            trace_lines: self.trace_lines,
            steps: self.steps,
        })
    }
}

/// The whole-cluster fuzz target's body (`fuzz/fuzz_targets/cluster_scenario.rs`, replayed on
/// stable by `tests/tests/sim/cluster.rs`): runs [`Scenario::from_fuzz_input`] and panics with
/// the failure's report if an invariant breaks.
pub fn fuzz_cluster(data: &[u8]) {
    let scenario = Scenario::from_fuzz_input(data);
    if let Err(failure) = Cluster::new(scenario, RunOptions::default()).run() {
        panic!("{failure}");
    }
}

/// Whether `req`'s `Conflicts=` globs match `other`.
fn conflicts(req: &Requirements, other: &str) -> bool {
    req.conflicts
        .iter()
        .any(|pattern| flt_core::glob::glob_match(pattern, other) == Ok(true))
}
