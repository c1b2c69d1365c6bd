//! The agent: makes the local systemd do what the schedule says, and reports back (spec §3).
//!
//! [`Agent`] is a sans-IO state machine. It never talks to etcd or systemd itself: it emits
//! [`Command`]s (registry [`Request`]s and [`SystemdRequest`]s, each with an [`OpId`]) and takes
//! their outcomes back as [`Input`]s with the same id. An unanswered request fails inside the
//! agent after a timeout (watches excepted). The driver loop:
//!
//! ```text
//! let mut agent = Agent::new(config, now());
//! agent.handle_input(Input::Inventory(read_units_directory_and_systemd()), now());
//! loop {
//!     while let Some(command) = agent.poll_command() { send(command) }   // etcd / D-Bus
//!     while let Some(event) = agent.poll_event() { log(event) }
//!     let deadline = agent.poll_timeout().map(|(at, _reason)| at);
//!     match wait_for_input_until(deadline) {
//!         Some(input) => agent.handle_input(input, now()),   // replies, watch events, signals
//!         None => agent.handle_timeout(now()),
//!     }
//! }
//! ```
//!
//! What it does:
//! - **Presence** ([`presence`]): registers `P/machines/<id>/object` create-only with TTL
//!   `agent_ttl`, takes over its own leftover record after a restart, reports a duplicate
//!   machine ID, and refreshes the TTL every `agent_ttl/2` (fleet's monitor period).
//! - **Desired state** ([`desired`]): follows its machine directory (dynamic metadata), its
//!   schedule `P/schedule/<id>/` and `P/global/` with one [`crate::registry::PrefixFollower`]
//!   each (retrying with backoff), fetches unit files by hash, and resolves global units by
//!   name. Failures never change the desired state.
//! - **Tasks** ([`task`]): spec §3.5, in order, several of one kind at once (each touches its
//!   own unit; [`TASKS_IN_FLIGHT`]); the first failure ends the batch. The
//!   batch's `ReloadUnitFiles` is skipped when it has no unload and every load reported that
//!   systemd can start the unit without one ([`SystemdOutcome::Loaded`]).
//! - **Observed state**: systemd's own view, pushed in as [`Input::UnitObserved`], published at
//!   once when it changes ([`publisher`]). The agent never restarts a failed unit.
//! - **Adoption**: nothing is done to systemd until the machine is registered, the startup
//!   inventory has arrived and the schedule has been read in full once. Units already in
//!   `units_directory` with the scheduled content and running are then left alone.
//! - **Steady-state etcd traffic** is two TTL refreshes per `agent_ttl/2` (presence and the
//!   unit-state directory) plus a full re-read every `resync_interval`, whatever the number of
//!   units.

mod backoff;
pub mod desired;
mod io;
mod metrics;
pub mod presence;
pub mod publisher;
pub mod systemd;
pub mod task;
mod unit_text;

pub use desired::SourceKind;
pub use metrics::AgentMetrics;
pub use systemd::{
    InventoryUnit, SystemdFailure, SystemdOutcome, SystemdReply, SystemdRequest, UNIT_SUFFIXES,
    UnitObserved, has_unit_suffix,
};
pub use task::{CurrentUnit, DesiredUnit, Task, TaskKind, TaskReason, plan};

use crate::registry::records::{
    Capabilities, MachineRecord, MachineRef, TargetState, UnitStateRecord,
};
use crate::registry::{
    Failure, FollowConfig, FollowTimer, Keyspace, OpId, Precondition, Reply, Request, Response,
};
use crate::time::Instant;
use crate::unit::UnitHash;
use desired::{DesiredState, Schedule, Source, UnitFiles};
pub(crate) use io::Io;
use io::{Owner, Pending, PendingKind};
use presence::{Presence, PresenceChange};
use publisher::{Publisher, PublisherChange};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use unit_text::ParsedUnit;

/// The component number of the agent's [`OpId`]s.
pub const OP_COMPONENT: u8 = 2;

/// The most tasks of one kind (loads, starts, ...) a batch has in flight at once: the driver
/// can then work through them without a round trip through the agent between two.
pub const TASKS_IN_FLIGHT: usize = 64;

/// How the agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This machine's ID (`/etc/machine-id`).
    pub machine_id: String,
    pub public_ip: String,
    /// Metadata from the configuration (dynamic metadata from the registry is laid over it).
    pub metadata: BTreeMap<String, String>,
    /// fltd's version, advertised in the machine record.
    pub version: String,
    pub disable_engine: bool,
    pub keyspace: Keyspace,
    /// TTL of the presence key and of the unit-state directory.
    pub agent_ttl: Duration,
    /// Period of the task calculation when nothing triggers it.
    pub reconcile_interval: Duration,
    /// Period (plus 0–20 % jitter) of the full re-read of the schedule: a safety net only.
    pub resync_interval: Duration,
    /// An unanswered registry request fails after this long.
    pub registry_timeout: Duration,
    /// An unanswered systemd request fails after this long.
    pub systemd_timeout: Duration,
    /// Seed for jitter.
    pub seed: u64,
}

impl AgentConfig {
    /// fleet's defaults: `agent_ttl` 30 s, reconcile every 5 s; a full resync every minute.
    pub fn new(machine_id: &str) -> AgentConfig {
        AgentConfig {
            machine_id: machine_id.to_string(),
            public_ip: String::new(),
            metadata: BTreeMap::new(),
            version: String::new(),
            disable_engine: false,
            keyspace: Keyspace::default(),
            agent_ttl: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(5),
            resync_interval: Duration::from_secs(60),
            registry_timeout: Duration::from_secs(10),
            systemd_timeout: Duration::from_secs(60),
            seed: 0,
        }
    }

    /// fleet's monitor period: half the TTL, so a late or retried refresh still lands in time.
    fn heartbeat_period(&self) -> Duration {
        self.agent_ttl / 2
    }
}

/// Something for the agent to take in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The answer to a registry request (or one event of a watch).
    Registry(Response),
    /// The answer to a systemd request.
    Systemd(SystemdReply),
    /// A unit's systemd state, pushed by the driver (D-Bus signals or polling).
    UnitObserved(UnitObserved),
    /// What `units_directory` holds at startup, with systemd's view of each unit.
    Inventory(Vec<InventoryUnit>),
}

/// Work for the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Registry { id: OpId, request: Request },
    Systemd { id: OpId, request: SystemdRequest },
}

/// Why the agent wants to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Try registering the machine again.
    Register,
    /// Refresh the TTLs of presence and unit-state directory.
    Heartbeat,
    /// Periodic task calculation.
    Reconcile,
    /// Periodic full re-read of the schedule.
    Resync,
    /// Read a schedule source again after a failure.
    SourceRetry,
    /// Fetch a unit file again after a failure.
    UnitFileRetry,
    /// Write unit states again after a failure.
    PublishRetry,
    /// A request went unanswered.
    RequestTimeout,
}

/// What happened, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The presence key was created (or, `adopted`, our previous run's record taken over).
    Registered {
        machine_id: String,
        adopted: bool,
    },
    RegistrationFailed {
        error: String,
    },
    /// A live machine record with our ID belongs to another host; registration keeps retrying.
    DuplicateMachineId {
        machine_id: String,
        ours: String,
        theirs: String,
    },
    /// The presence key was gone at refresh time; registering again.
    PresenceLost {
        machine_id: String,
    },
    HeartbeatFailed {
        error: String,
    },
    /// The unit-state directory was gone; creating it again and republishing every state.
    StatesDirectoryLost {
        key: String,
    },
    /// Creating or reading the unit-state directory failed; retrying with backoff.
    StatesDirectoryFailed {
        error: String,
    },
    SourceFailed {
        source: SourceKind,
        error: String,
    },
    /// The schedule has been read in full for the first time: the agent may now act.
    DesiredStateKnown {
        units: usize,
    },
    /// A schedule entry could not be decoded; the unit is left as it is.
    BadScheduleRecord {
        name: String,
    },
    UnitFileUnavailable {
        hash: String,
        error: String,
    },
    /// A file in `units_directory` that is not a unit type the agent manages: left alone.
    NotAUnit {
        name: String,
    },
    /// A unit found in `units_directory` at startup, with the state it is adopted in.
    UnitFound {
        name: String,
        hash: Option<String>,
        state: TargetState,
    },
    TaskStarted {
        task: Task,
    },
    TaskDone {
        task: Task,
    },
    TaskFailed {
        task: Task,
        error: String,
    },
    /// A `ReloadUnitFiles` left out: no unload in its batch, and systemd had none of the units
    /// the batch loaded in memory, so starting them loads their files.
    TaskSkipped {
        task: Task,
    },
    UnitStatePublished {
        name: String,
        load: String,
        active: String,
        sub: String,
    },
    UnitStateRemoved {
        name: String,
    },
    PublishFailed {
        name: String,
        error: String,
    },
    SystemdQueryFailed {
        error: String,
    },
    /// Deleting the presence or the unit states at host shutdown failed (they expire anyway).
    ShutdownDeleteFailed {
        error: String,
    },
}

/// A batch of tasks: one kind at a time, several of that kind at once.
#[derive(Debug)]
struct Batch {
    queue: VecDeque<Task>,
    /// Tasks sent, all of one kind, by request.
    running: BTreeMap<OpId, Running>,
    touched: BTreeSet<String>,
    /// An unload, or a load systemd cannot pick up without it, asks for the batch's
    /// `ReloadUnitFiles`; without one it is skipped.
    reload_needed: bool,
    /// The batch's `ReloadUnitFiles` was skipped.
    reload_skipped: bool,
    /// Units the batch is still to start or stop: their state is published once that is done.
    changing: BTreeSet<String>,
}

#[derive(Debug)]
struct Running {
    task: Task,
    /// For a load: the content loaded.
    hash: Option<UnitHash>,
}

/// The per-machine agent. See the module documentation.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    io: Io,
    presence: Presence,
    publisher: Publisher,
    /// Machine, schedule and globals, in [`SourceKind::ALL`] order; followed once registered.
    sources: Option<[Source; 3]>,
    files: UnitFiles,
    schedule: Schedule,
    desired: DesiredState,
    /// The units in `units_directory` and what the agent did with them.
    current: BTreeMap<String, CurrentUnit>,
    /// systemd's latest word on each unit.
    observed: BTreeMap<String, UnitObserved>,
    /// Counts the watch reports ([`Input::UnitObserved`]); per unit, the count at its latest.
    watch_reports: u64,
    watched_at: BTreeMap<String, u64>,
    /// `ListUnits` requests in flight, with the watch report count when each was sent.
    lists_sent: BTreeMap<OpId, u64>,
    inventory_known: bool,
    desired_known: bool,
    /// The sources changed: decode them again.
    schedule_dirty: bool,
    /// The schedule or the unit files changed: compute the desired state again.
    desired_dirty: bool,
    /// Compare and publish every unit state / these units' states.
    publish_all: bool,
    publish_names: BTreeSet<String>,
    reconcile_now: bool,
    batch: Option<Batch>,
    /// A start failed after its batch skipped the reload: the next batch reloads.
    reload_owed: bool,
    reconcile_at: Option<Instant>,
    heartbeat_at: Option<Instant>,
    resync_at: Option<Instant>,
    reported_bad: BTreeSet<String>,
    /// After [`Agent::host_shutdown`]: the deletes still unanswered.
    shutdown: Option<BTreeSet<OpId>>,
}

impl Agent {
    pub fn new(config: AgentConfig, now: Instant) -> Agent {
        let ks = config.keyspace.clone();
        let id = config.machine_id.clone();
        let record = MachineRecord {
            id: id.clone(),
            public_ip: config.public_ip.clone(),
            metadata: config.metadata.clone(),
            capabilities: Capabilities {
                disable_engine: config.disable_engine,
                grpc: false,
            },
            version: config.version.clone(),
        };
        let mut agent = Agent {
            io: Io::new(
                OP_COMPONENT,
                config.registry_timeout,
                config.systemd_timeout,
                config.seed,
            ),
            presence: Presence::new(ks.machine_object(&id), record, config.agent_ttl, now),
            publisher: Publisher::new(&ks, &id, config.agent_ttl * 2),
            sources: None,
            files: UnitFiles::default(),
            schedule: Schedule::default(),
            desired: DesiredState::default(),
            current: BTreeMap::new(),
            observed: BTreeMap::new(),
            watch_reports: 0,
            watched_at: BTreeMap::new(),
            lists_sent: BTreeMap::new(),
            inventory_known: false,
            desired_known: false,
            schedule_dirty: false,
            desired_dirty: false,
            publish_all: false,
            publish_names: BTreeSet::new(),
            reconcile_now: false,
            batch: None,
            reload_owed: false,
            reconcile_at: None,
            heartbeat_at: None,
            resync_at: None,
            reported_bad: BTreeSet::new(),
            shutdown: None,
            config,
        };
        agent.presence.handle_timeout(now, &mut agent.io);
        agent
    }

    // ---- getters ----

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Whether the presence key is ours right now (as far as the agent knows).
    pub fn is_registered(&self) -> bool {
        self.presence.registered()
    }

    /// Until when this machine's presence key surely exists in etcd: the send time of its last
    /// successful write or refresh plus `agent_ttl` (`None` before the first registration).
    /// The engine of the same fltd trusts its lease no longer than this.
    pub fn presence_valid_until(&self) -> Option<Instant> {
        self.presence.valid_until()
    }

    /// The units in `units_directory` and what the agent did with them.
    pub fn current_units(&self) -> &BTreeMap<String, CurrentUnit> {
        &self.current
    }

    /// The desired state as last computed (units whose desired state is unknown are left out).
    pub fn desired_units(&self) -> &BTreeMap<String, DesiredUnit> {
        &self.desired.units
    }

    /// The unit states the agent believes are in the registry.
    pub fn published_states(&self) -> &BTreeMap<String, UnitStateRecord> {
        self.publisher.published()
    }

    /// Counters for `/metrics`, with the unit gauges filled in.
    pub fn metrics(&self) -> AgentMetrics {
        let loaded = self
            .current
            .iter()
            .filter(|(_, u)| u.state != TargetState::Inactive);
        let active = |name: &String| {
            self.observed
                .get(name)
                .is_some_and(|o| o.active == "active")
        };
        let mut metrics = self.io.metrics.clone();
        metrics.units_desired = self.desired.units.len() as u64;
        metrics.units_loaded = loaded.clone().count() as u64;
        metrics.units_active = loaded.filter(|(name, _)| active(name)).count() as u64;
        metrics
    }

    /// Whether a batch of tasks is running.
    pub fn is_busy(&self) -> bool {
        self.batch.is_some()
    }

    // ---- mutators ----

    /// The host is shutting down (systemd's `SystemState` is `stopping`): delete this machine's
    /// presence and unit states at once, so that the cluster reschedules now rather than after
    /// `agent_ttl`; systemd stops the units itself. From here on the agent only waits for those
    /// two answers ([`Agent::is_shut_down`]). (A plain stop of fltd does not call this: units keep
    /// running and a restart adopts them.)
    pub fn host_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let ks = &self.config.keyspace;
        let id = &self.config.machine_id;
        let requests = [
            Request::Delete {
                key: ks.machine_object(id),
                precondition: Precondition::None,
                recursive: false,
            },
            Request::Delete {
                key: ks.machine_states_dir(id),
                precondition: Precondition::None,
                recursive: true,
            },
        ];
        let ids = requests
            .into_iter()
            .map(|request| self.io.registry(Owner::Shutdown, request, now))
            .collect();
        self.shutdown = Some(ids);
    }

    /// True once [`Agent::host_shutdown`]'s deletes have been answered (or have timed out).
    pub fn is_shut_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(BTreeSet::is_empty)
    }

    // ---- outputs ----

    pub fn poll_command(&mut self) -> Option<Command> {
        self.io.commands.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.io.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, Reason)> {
        if let Some(waiting) = &self.shutdown {
            return waiting
                .iter()
                .filter_map(|id| self.io.pending.get(id)?.deadline)
                .min()
                .map(|at| (at, Reason::RequestTimeout));
        }
        let sources = self.sources.iter().flatten().filter_map(Source::timeout);
        let sources = sources.map(|(at, timer)| match timer {
            FollowTimer::AnswerDeadline => (at, Reason::RequestTimeout),
            FollowTimer::Retry => (at, Reason::SourceRetry),
            FollowTimer::Resync => (at, Reason::Resync),
        });
        let request = self.io.pending.values().filter_map(|p| p.deadline).min();
        let reconcile = self.reconcile_at.filter(|_| self.inventory_known);
        [
            (self.presence.retry_at(), Reason::Register),
            (self.heartbeat_at, Reason::Heartbeat),
            (reconcile, Reason::Reconcile),
            (self.resync_at, Reason::Resync),
            (self.files.next_retry(), Reason::UnitFileRetry),
            (self.publisher.next_timeout(), Reason::PublishRetry),
            (request, Reason::RequestTimeout),
        ]
        .into_iter()
        .filter_map(|(at, reason)| at.map(|at| (at, reason)))
        .chain(sources)
        .min()
    }

    // ---- inputs ----

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Registry(response) => self.on_registry(response, now),
            Input::Systemd(reply) => self.on_systemd(reply.id, reply.result, now),
            Input::UnitObserved(unit) => {
                self.watch_reports += 1;
                self.watched_at
                    .insert(unit.name.clone(), self.watch_reports);
                self.observe(unit);
            }
            Input::Inventory(units) => self.on_inventory(units),
        }
        self.drive(now);
    }

    /// Fires whatever is due. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<(OpId, Pending)> = self
            .io
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, p)| (*id, *p))
            .collect();
        for (id, pending) in expired {
            self.io.pending.remove(&id);
            if self.shutdown.is_some() && pending.owner != Owner::Shutdown {
                continue;
            }
            if pending.kind == PendingKind::Systemd {
                self.route_systemd(pending.owner, id, Err(SystemdFailure::Timeout), now);
            } else {
                let kind = pending.request;
                self.io.metrics.count_failure(kind, &Failure::Timeout);
                self.route_registry(pending.owner, id, Err(Failure::Timeout), now);
            }
        }
        if self.shutdown.is_some() {
            return;
        }
        self.presence.handle_timeout(now, &mut self.io);
        if self.heartbeat_at.is_some_and(|at| at <= now) {
            self.presence.refresh(now, &mut self.io);
            self.publisher.refresh(now, &mut self.io);
            let period = self.config.heartbeat_period();
            self.heartbeat_at = Some(now + self.io.rng.jitter(period, 0.1));
        }
        for source in self.sources.iter_mut().flatten() {
            self.schedule_dirty |= source.handle_timeout(now, &mut self.io);
        }
        if self.files.next_retry().is_some_and(|at| at <= now) {
            let hashes = self.schedule.hashes();
            let ks = &self.config.keyspace;
            self.files.fetch_missing(&hashes, ks, now, &mut self.io);
        }
        if self.publisher.handle_timeout(now, &mut self.io) {
            self.publish_all = true;
        }
        if self.resync_at.is_some_and(|at| at <= now) {
            self.resync(now);
        }
        if self.reconcile_at.is_some_and(|at| at <= now) {
            self.reconcile_now = true;
            self.reconcile_at = Some(now + self.config.reconcile_interval);
        }
        self.drive(now);
    }

    fn on_registry(&mut self, response: Response, now: Instant) {
        let Response { id, result } = response;
        // Late answers to requests that already timed out, and answers that are not ours.
        let Some(pending) = self.io.pending.get(&id).copied() else {
            return;
        };
        if pending.kind == PendingKind::Systemd {
            return;
        }
        if self.shutdown.is_some() && pending.owner != Owner::Shutdown {
            return;
        }
        // A source forgets its follower's requests itself (a watch lives on).
        if pending.kind != PendingKind::Follow {
            self.io.pending.remove(&id);
        }
        if let Err(failure) = &result {
            self.io.metrics.count_failure(pending.request, failure);
        }
        if let Ok(reply) = &result
            && !matches!(reply, Reply::Event(_))
        {
            // etcd answers again: work waiting out a backoff may go now.
            for source in self.sources.iter_mut().flatten() {
                source.retry_now(now);
            }
            self.publisher.retry_now(now);
        }
        self.route_registry(pending.owner, id, result, now);
    }

    fn route_registry(
        &mut self,
        owner: Owner,
        id: OpId,
        result: Result<Reply, Failure>,
        now: Instant,
    ) {
        match owner {
            Owner::Presence => match self.presence.handle_response(id, result, now, &mut self.io) {
                PresenceChange::Registered => self.on_registered(now),
                PresenceChange::RefreshFailed => self.heartbeat_soon(now),
                PresenceChange::None => {}
            },
            Owner::Publisher => {
                match self
                    .publisher
                    .handle_response(id, result, now, &mut self.io)
                {
                    PublisherChange::SyncAll => self.publish_all = true,
                    PublisherChange::SyncOne(name) => {
                        self.publish_names.insert(name);
                    }
                    PublisherChange::RefreshFailed => self.heartbeat_soon(now),
                    PublisherChange::None => {}
                }
            }
            Owner::Source(kind) => {
                if let Some(source) = self.sources.as_mut().map(|s| &mut s[kind as usize]) {
                    let response = Response { id, result };
                    self.schedule_dirty |= source.handle_response(&response, now, &mut self.io);
                }
            }
            Owner::UnitFile => {
                self.files.handle_response(id, result, now, &mut self.io);
                self.desired_dirty = true;
            }
            Owner::Shutdown => {
                if let Err(failure) = &result {
                    self.io.event(Event::ShutdownDeleteFailed {
                        error: failure.to_string(),
                    });
                }
                if let Some(waiting) = &mut self.shutdown {
                    waiting.remove(&id);
                }
            }
            Owner::Task | Owner::ListUnits => {}
        }
    }

    fn on_systemd(
        &mut self,
        id: OpId,
        result: Result<SystemdOutcome, SystemdFailure>,
        now: Instant,
    ) {
        let Some(pending) = self.io.pending.get(&id).copied() else {
            return;
        };
        if pending.kind != PendingKind::Systemd {
            return;
        }
        self.io.pending.remove(&id);
        if self.shutdown.is_some() {
            return;
        }
        self.route_systemd(pending.owner, id, result, now);
    }

    fn route_systemd(
        &mut self,
        owner: Owner,
        id: OpId,
        result: Result<SystemdOutcome, SystemdFailure>,
        now: Instant,
    ) {
        match owner {
            Owner::Task => self.on_task_result(id, result, now),
            Owner::ListUnits => match result {
                Ok(SystemdOutcome::Units(units)) => {
                    // The watch reports come from another connection: one that arrived after
                    // this list was sent may be newer than the list's answer (and the watch
                    // will not repeat it), so it wins.
                    let sent = self.lists_sent.remove(&id).unwrap_or(0);
                    for unit in units {
                        if self.watched_at.get(&unit.name).is_none_or(|&at| at <= sent) {
                            self.observe(unit);
                        }
                    }
                }
                Ok(SystemdOutcome::Done | SystemdOutcome::Loaded { .. }) => {
                    self.lists_sent.remove(&id);
                }
                Err(failure) => {
                    self.lists_sent.remove(&id);
                    self.io.event(Event::SystemdQueryFailed {
                        error: failure.to_string(),
                    });
                }
            },
            _ => {}
        }
    }

    fn observe(&mut self, unit: UnitObserved) {
        if self.observed.get(&unit.name) != Some(&unit) {
            self.publish_names.insert(unit.name.clone());
            self.observed.insert(unit.name.clone(), unit);
        }
    }

    fn on_inventory(&mut self, units: Vec<InventoryUnit>) {
        self.current.clear();
        for unit in units {
            if !has_unit_suffix(&unit.name) {
                self.io.event(Event::NotAUnit { name: unit.name });
                continue;
            }
            let parsed = ParsedUnit::parse(&unit.text).ok();
            let state = adopted_state(unit.observed.as_ref());
            let hash = parsed.as_ref().map(|p| p.hash);
            if let Some(parsed) = parsed {
                // Our own normalized writes: content-addressed, so as good as a fetch.
                self.files.insert(parsed);
            }
            self.io.event(Event::UnitFound {
                name: unit.name.clone(),
                hash: hash.map(|h| h.to_hex()),
                state,
            });
            if let Some(observed) = unit.observed {
                self.observed.insert(unit.name.clone(), observed);
            }
            self.current.insert(unit.name, CurrentUnit { hash, state });
        }
        self.inventory_known = true;
        self.reconcile_now = true;
        self.publish_all = true;
    }

    fn on_registered(&mut self, now: Instant) {
        self.publisher.start(now, &mut self.io);
        if self.heartbeat_at.is_none() {
            let period = self.config.heartbeat_period();
            self.heartbeat_at = Some(now + self.io.rng.jitter(period, 0.1));
        }
        if self.sources.is_none() {
            let config = &self.config;
            let follow = FollowConfig {
                resync_interval: config.resync_interval,
                resync_jitter: 0.2,
                request_timeout: config.registry_timeout,
                retry_delay: FollowConfig::default().retry_delay,
            };
            let io = &mut self.io;
            self.sources = Some(SourceKind::ALL.map(|kind| {
                // A seed per source, so that their resyncs spread out.
                let seed = config.seed ^ (kind as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let (ks, id) = (&config.keyspace, &config.machine_id);
                Source::new(kind, ks, id, follow.clone(), seed, io, now)
            }));
            let resync = self.config.resync_interval;
            self.resync_at = Some(now + self.io.rng.jitter(resync, 0.2));
        }
    }

    /// After a failed refresh: try again well before the TTL runs out.
    fn heartbeat_soon(&mut self, now: Instant) {
        // Jittered, so that machines that lost etcd together do not retry in lockstep.
        let soon = now + self.io.rng.jitter(self.config.agent_ttl / 12, 0.5);
        self.heartbeat_at = Some(self.heartbeat_at.map_or(soon, |at| at.min(soon)));
    }

    fn resync(&mut self, now: Instant) {
        let resync = self.config.resync_interval;
        // The sources resync on their own followers' timers.
        self.resync_at = Some(now + self.io.rng.jitter(resync, 0.2));
        let mut referenced = self.schedule.hashes();
        referenced.extend(self.current.values().filter_map(|c| c.hash));
        self.files.resync(&referenced);
        // Late signals about units unloaded since.
        let current = &self.current;
        self.observed.retain(|name, _| current.contains_key(name));
        self.watched_at.retain(|name, _| current.contains_key(name));
        self.schedule_dirty = true;
        self.list_units(self.current.keys().cloned().collect(), now);
    }

    fn list_units(&mut self, names: Vec<String>, now: Instant) {
        if !names.is_empty() && self.inventory_known {
            let id = self
                .io
                .systemd(Owner::ListUnits, SystemdRequest::ListUnits { names }, now);
            self.lists_sent.insert(id, self.watch_reports);
        }
    }

    /// Brings derived state up to date and starts whatever work is now possible.
    fn drive(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        let sources = self
            .sources
            .as_ref()
            .filter(|s| s.iter().all(Source::complete));
        let sources_complete = sources.is_some();
        if self.schedule_dirty
            && let Some([machine, schedule, globals]) = sources
        {
            self.schedule_dirty = false;
            self.schedule = Schedule::decode(&self.config.metadata, machine, schedule, globals);
            for name in &self.schedule.bad {
                if self.reported_bad.insert(name.clone()) {
                    self.io
                        .event(Event::BadScheduleRecord { name: name.clone() });
                }
            }
            self.reported_bad.retain(|n| self.schedule.bad.contains(n));
            let hashes = self.schedule.hashes();
            let ks = &self.config.keyspace;
            self.files.fetch_missing(&hashes, ks, now, &mut self.io);
            self.desired_dirty = true;
        }
        // While unit files are on their way the desired state would be partial: wait for them.
        if self.desired_dirty && sources_complete && !self.files.busy() {
            self.desired_dirty = false;
            let desired = self.schedule.desired(&self.config.machine_id, &self.files);
            if desired != self.desired {
                self.desired = desired;
                self.reconcile_now = true;
            }
            if !self.desired_known {
                self.desired_known = true;
                self.reconcile_now = true;
                self.io.event(Event::DesiredStateKnown {
                    units: self.desired.units.len(),
                });
            }
        }
        let ready = self.presence.registered_once()
            && self.inventory_known
            && self.desired_known
            && !self.desired_dirty
            && self.batch.is_none();
        if ready && self.reconcile_now {
            self.reconcile(now);
        }
        if self.presence.registered_once() {
            if self.publish_all {
                self.publish_all = false;
                self.publish_names.clear();
                let wanted = self.wanted_states();
                self.publisher.sync(&wanted, now, &mut self.io);
            }
            for name in std::mem::take(&mut self.publish_names) {
                // About to be started or stopped: publish what that leads to, not the state
                // on the way (saves a registry write per launched unit).
                if self
                    .batch
                    .as_ref()
                    .is_some_and(|b| b.changing.contains(&name))
                {
                    self.publish_names.insert(name);
                    continue;
                }
                let wanted = self.wanted_state(&name);
                self.publisher
                    .sync_one(&name, wanted.as_ref(), now, &mut self.io);
            }
        }
    }

    fn wanted_states(&self) -> BTreeMap<String, UnitStateRecord> {
        self.current
            .keys()
            .filter_map(|name| Some((name.clone(), self.wanted_state(name)?)))
            .collect()
    }

    /// The state to publish for `name`: systemd's view of a unit the agent loaded.
    fn wanted_state(&self, name: &str) -> Option<UnitStateRecord> {
        let unit = self.current.get(name)?;
        if unit.state == TargetState::Inactive {
            return None;
        }
        let hash = unit.hash?;
        let observed = self.observed.get(name)?;
        Some(UnitStateRecord {
            load_state: observed.load.clone(),
            active_state: observed.active.clone(),
            sub_state: observed.sub.clone(),
            machine_state: MachineRef {
                id: self.config.machine_id.clone(),
                ..MachineRef::default()
            },
            unit_hash: hash.to_hex(),
        })
    }

    fn reconcile(&mut self, now: Instant) {
        self.reconcile_now = false;
        self.reconcile_at = Some(now + self.config.reconcile_interval);
        let unknown = &self.desired.unknown;
        let desired: BTreeMap<String, DesiredUnit> = self
            .desired
            .units
            .iter()
            .filter(|(name, _)| !unknown.contains(*name))
            .map(|(n, d)| (n.clone(), *d))
            .collect();
        let current: BTreeMap<String, CurrentUnit> = self
            .current
            .iter()
            .filter(|(name, _)| !unknown.contains(*name))
            .map(|(n, c)| (n.clone(), *c))
            .collect();
        let mut tasks = plan(&desired, &current);
        if tasks.is_empty() {
            return;
        }
        let reload_needed = std::mem::take(&mut self.reload_owed);
        if reload_needed && !tasks.iter().any(|t| t.kind == TaskKind::ReloadUnitFiles) {
            tasks.push(Task {
                kind: TaskKind::ReloadUnitFiles,
                unit: String::new(),
                reason: TaskReason::AlwaysReload,
            });
            tasks.sort_by_key(|t| t.kind);
        }
        let changing = tasks
            .iter()
            .filter(|t| t.kind.starts_or_stops())
            .map(|t| t.unit.clone())
            .collect();
        self.batch = Some(Batch {
            changing,
            queue: tasks.into(),
            running: BTreeMap::new(),
            touched: BTreeSet::new(),
            reload_needed,
            reload_skipped: false,
        });
        self.next_task(now);
    }

    /// Starts the batch's next tasks, or ends the batch. Tasks of one kind touch one unit each,
    /// so up to [`TASKS_IN_FLIGHT`] of them run at once (the driver answers in order); a task
    /// of the next kind waits until all of them are answered.
    fn next_task(&mut self, now: Instant) {
        loop {
            let Some(batch) = &mut self.batch else {
                return;
            };
            let Some(next) = batch.queue.front() else {
                if batch.running.is_empty() {
                    self.end_batch(now);
                }
                return;
            };
            let busy = batch.running.values().next().map(|r| r.task.kind);
            let joins = match busy {
                None => true,
                Some(kind) => {
                    kind == next.kind
                        && kind != TaskKind::ReloadUnitFiles
                        && batch.running.len() < TASKS_IN_FLIGHT
                }
            };
            if !joins {
                return;
            }
            let Some(task) = batch.queue.pop_front() else {
                return;
            };
            self.start_task(task, now);
        }
    }

    fn end_batch(&mut self, now: Instant) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        let touched: Vec<String> = batch
            .touched
            .into_iter()
            .filter(|n| self.current.contains_key(n))
            .collect();
        self.list_units(touched, now);
    }

    fn start_task(&mut self, task: Task, now: Instant) {
        let Some(batch) = &mut self.batch else {
            return;
        };
        if !task.unit.is_empty() {
            batch.touched.insert(task.unit.clone());
        }
        if task.kind == TaskKind::ReloadUnitFiles && !batch.reload_needed {
            batch.reload_skipped = true;
            self.io.event(Event::TaskSkipped { task });
            return;
        }
        let mut hash = None;
        let request = match task.kind {
            TaskKind::LoadUnit => {
                let unit = self
                    .desired
                    .units
                    .get(&task.unit)
                    .and_then(|d| self.files.get(&d.hash));
                let Some(unit) = unit else {
                    let error = format!("unit file for {} is not available", task.unit);
                    self.io.event(Event::TaskFailed { task, error });
                    batch.queue.clear();
                    batch.changing.clear();
                    return;
                };
                hash = Some(unit.hash);
                SystemdRequest::LoadUnit {
                    name: task.unit.clone(),
                    text: unit.text.clone(),
                    enable: unit.has_install,
                }
            }
            TaskKind::UnloadUnit => SystemdRequest::UnloadUnit {
                name: task.unit.clone(),
            },
            TaskKind::ReloadUnitFiles => SystemdRequest::Reload,
            TaskKind::StopUnit => SystemdRequest::StopUnit {
                name: task.unit.clone(),
            },
            TaskKind::StartUnit => SystemdRequest::StartUnit {
                name: task.unit.clone(),
            },
        };
        self.io.event(Event::TaskStarted { task: task.clone() });
        let id = self.io.systemd(Owner::Task, request, now);
        if let Some(batch) = &mut self.batch {
            batch.running.insert(id, Running { task, hash });
        }
    }

    fn on_task_result(
        &mut self,
        id: OpId,
        result: Result<SystemdOutcome, SystemdFailure>,
        now: Instant,
    ) {
        let Some(batch) = &mut self.batch else {
            return;
        };
        let Some(running) = batch.running.remove(&id) else {
            return;
        };
        let Running { task, hash } = running;
        if task.kind.starts_or_stops() {
            batch.changing.remove(&task.unit);
        }
        match result {
            Ok(outcome) => {
                let name = &task.unit;
                batch.reload_needed |= match (task.kind, outcome) {
                    (TaskKind::LoadUnit, SystemdOutcome::Loaded { reload_needed }) => reload_needed,
                    (TaskKind::LoadUnit | TaskKind::UnloadUnit, _) => true,
                    _ => false,
                };
                match task.kind {
                    TaskKind::LoadUnit => {
                        self.current.insert(
                            name.clone(),
                            CurrentUnit {
                                hash,
                                state: TargetState::Loaded,
                            },
                        );
                    }
                    TaskKind::UnloadUnit => {
                        self.current.remove(name);
                        self.observed.remove(name);
                    }
                    TaskKind::StartUnit => self.set_state(name, TargetState::Launched),
                    TaskKind::StopUnit => self.set_state(name, TargetState::Loaded),
                    TaskKind::ReloadUnitFiles => {}
                }
                // What a start or stop changes, systemd reports (and a report that came while
                // it was pending waits in `publish_names`).
                if !task.kind.starts_or_stops() {
                    self.publish_names.insert(name.clone());
                }
                self.io.event(Event::TaskDone { task });
            }
            Err(failure) => {
                // The first failure ends the batch (tasks already sent still finish); the next
                // round tries again. A start that failed after a skipped reload gets one before
                // its retry, in case systemd did not pick the file up after all.
                batch.queue.clear();
                batch.changing.clear();
                self.reload_owed |= batch.reload_skipped && task.kind == TaskKind::StartUnit;
                self.io.event(Event::TaskFailed {
                    task,
                    error: failure.to_string(),
                });
            }
        }
        self.next_task(now);
    }

    fn set_state(&mut self, name: &str, state: TargetState) {
        if let Some(unit) = self.current.get_mut(name) {
            unit.state = state;
        }
    }
}

/// How a unit found in `units_directory` at startup is adopted: a unit systemd has loaded and
/// that is not `inactive` was launched (a `failed` one too: restarting it is up to systemd's
/// `Restart=`), a loaded inactive one is loaded, anything else is just a file.
fn adopted_state(observed: Option<&UnitObserved>) -> TargetState {
    match observed {
        Some(o) if o.load == "loaded" && o.active == "inactive" => TargetState::Loaded,
        Some(o) if o.load == "loaded" => TargetState::Launched,
        _ => TargetState::Inactive,
    }
}
