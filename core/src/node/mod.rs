//! [`Node`]: everything one `fltd` runs, as one sans-IO state machine: an [`Agent`], an
//! [`Engine`] (unless `disable_engine`) and an [`ApiFront`].
//!
//! The driver feeds in registry answers, systemd answers and observations, HTTP requests and
//! the clock, and drains commands, events, HTTP answers and the next timeout, exactly as for each
//! component alone (see the crate docs):
//!
//! ```text
//! let mut node = Node::new(config, now());
//! node.handle_input(Input::Inventory(read_units_directory_and_systemd()), now());
//! loop {
//!     while let Some(command) = node.poll_command() { execute(command) }   // etcd, D-Bus
//!     while let Some(event) = node.poll_event() { log(event) }
//!     while let Some((id, answer)) = node.poll_api_response() { reply(id, answer) }
//!     match wait_until(node.poll_timeout()) {
//!         Woke::Input(input) => node.handle_input(input, now()),
//!         Woke::Http(id, request) => node.handle_api_request(id, request, now()),
//!         Woke::Timeout => node.handle_timeout(now()),
//!     }
//! }
//! ```
//!
//! Registry answers go to the component whose [`OpIdGen`] component number the id carries
//! (engine 1, agent 2, API 3). With an engine (and watches), the API front end follows
//! `P/job`, `P/unit` and `P/machines` through the engine's followers: the node hands it what
//! they learn ([`Engine::poll_shared`] into [`ApiFront::handle_shared`]), so each directory is
//! read and watched once per fltd, not twice, and every change reaches each fltd once. Each
//! keeps its own view (the front end's also takes in its own writes at once, so a client reads
//! what it wrote). Without an engine the front end follows them itself.
//!
//! The agent and the API front end start at once and independently: each creates the
//! directories it follows if they are missing, so none waits for another. The engine starts once
//! the agent has registered this machine (spec §3.2): an fltd refused registration (a duplicate
//! machine ID) must not contend for the lease, which names the holder by machine ID only.

use crate::agent::{self, Agent, AgentConfig, InventoryUnit, SystemdReply, SystemdRequest};
use crate::api::front::{
    API_COMPONENT, ApiConfig, ApiFront, ApiRequest, ApiRequestId, ApiResponse, ApiTimer,
};
use crate::engine::{ENGINE_COMPONENT, Engine, EngineConfig, EngineEvent, EngineTimer};
use crate::registry::{FollowConfig, Keyspace, OpId, OpIdGen, Request, Response};
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// How a node runs, from plain values (the daemon maps its configuration file onto these).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// This machine's ID (`/etc/machine-id`).
    pub machine_id: String,
    pub public_ip: String,
    /// Metadata from the configuration.
    pub metadata: BTreeMap<String, String>,
    /// fltd's version (in the machine record).
    pub version: String,
    /// TTL of the machine's presence and unit-state directory (default 30 s).
    pub agent_ttl: Duration,
    /// The engine's lease renewal and safety-net reconcile period (default 2 s).
    pub engine_reconcile_interval: Duration,
    /// Page size of the API's lists (default 100).
    pub token_limit: u16,
    /// Run no engine on this machine.
    pub disable_engine: bool,
    /// No engine watches: the engine re-reads the registry on every tick instead.
    pub disable_watches: bool,
    /// The registry key prefix (`etcd_key_prefix`).
    pub key_prefix: String,
    /// An unanswered registry request fails after this long (every component).
    pub request_timeout: Duration,
    /// Period of every component's safety-net full re-read of what it watches (default
    /// 10 min): watches carry every change, so this only bounds how long a change a watch
    /// missed can go unseen, and it costs one read per followed directory per period.
    pub resync_interval: Duration,
    /// Seed for every component's jitter.
    pub seed: u64,
}

impl NodeConfig {
    /// fleet's defaults.
    pub fn new(machine_id: &str) -> NodeConfig {
        NodeConfig {
            machine_id: machine_id.to_string(),
            public_ip: String::new(),
            metadata: BTreeMap::new(),
            version: String::new(),
            agent_ttl: Duration::from_secs(30),
            engine_reconcile_interval: Duration::from_secs(2),
            token_limit: crate::api::pagination::DEFAULT_TOKEN_LIMIT,
            disable_engine: false,
            disable_watches: false,
            key_prefix: Keyspace::default().prefix().to_string(),
            request_timeout: Duration::from_secs(5),
            resync_interval: Duration::from_secs(600),
            seed: 0,
        }
    }

    fn keyspace(&self) -> Keyspace {
        Keyspace::new(&self.key_prefix)
    }

    /// The agent's part.
    pub fn agent_config(&self) -> AgentConfig {
        let mut config = AgentConfig::new(&self.machine_id);
        config.public_ip = self.public_ip.clone();
        config.metadata = self.metadata.clone();
        config.version = self.version.clone();
        config.disable_engine = self.disable_engine;
        config.keyspace = self.keyspace();
        config.agent_ttl = self.agent_ttl;
        config.registry_timeout = self.request_timeout;
        config.resync_interval = self.resync_interval;
        config.seed = self.seed;
        config
    }

    /// The engine's part.
    pub fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig::new(&self.machine_id);
        config.keyspace = self.keyspace();
        config.reconcile_interval = self.engine_reconcile_interval;
        config.lease_margin = self.engine_reconcile_interval;
        config.request_timeout = self.request_timeout;
        config.resync_interval = self.resync_interval;
        config.seed = self.seed.wrapping_add(1);
        config.use_watches = !self.disable_watches;
        // The leader stops acting once its own presence may have expired, so that the other
        // engines may take its lease over as soon as its machine leaves the cluster.
        config.presence_bound = true;
        config.presence_margin = self.agent_ttl / 6;
        config.share_view = self.engine_feeds_api();
        config
    }

    /// Whether the API front end follows `P/job`, `P/unit` and `P/machines` through the
    /// engine's watches instead of its own (see the module docs).
    fn engine_feeds_api(&self) -> bool {
        !self.disable_engine && !self.disable_watches
    }

    /// The API front end's part.
    pub fn api_config(&self) -> ApiConfig {
        ApiConfig {
            keyspace: self.keyspace(),
            token_limit: self.token_limit,
            request_timeout: self.request_timeout,
            follow: FollowConfig {
                request_timeout: self.request_timeout,
                resync_interval: self.resync_interval,
                ..FollowConfig::default()
            },
            seed: self.seed.wrapping_add(2),
            engine_fed: self.engine_feeds_api(),
        }
    }
}

/// Something for the node to take in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The answer to a registry request, or one event of a watch (any component's).
    Registry(Response),
    /// The answer to a systemd request.
    Systemd(SystemdReply),
    /// A unit's systemd state, pushed by the driver.
    UnitObserved(agent::UnitObserved),
    /// What `units_directory` holds at startup.
    Inventory(Vec<InventoryUnit>),
}

/// Something for the driver to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A registry request; answer with [`Input::Registry`] and the same id.
    Registry { id: OpId, request: Request },
    /// A systemd request; answer with [`Input::Systemd`] and the same id.
    Systemd { id: OpId, request: SystemdRequest },
    /// Stop the watch started with this id (its answers would be ignored anyway).
    CancelWatch { id: OpId },
}

/// What happened, by component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Agent(agent::Event),
    Engine(EngineEvent),
    /// The API front end has read the registry once: it stops answering 503.
    ApiReady,
}

/// Why the node wants to be woken, by component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Agent(agent::Reason),
    Engine(EngineTimer),
    Api(ApiTimer),
}

/// One fltd. See the module docs.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    agent: Agent,
    engine: Option<Engine>,
    api: ApiFront,
    api_ready: bool,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    shut_down: bool,
    host_shut_down: bool,
}

impl Node {
    /// A node; the agent and the API front end start their first requests at once, the engine
    /// once the machine is registered.
    pub fn new(config: NodeConfig, now: Instant) -> Node {
        Node {
            agent: Agent::new(config.agent_config(), now),
            api: ApiFront::new(config.api_config(), now),
            engine: None,
            config,
            api_ready: false,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            shut_down: false,
            host_shut_down: false,
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The engine (none with `disable_engine`, nor before the machine is first registered).
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    pub fn api(&self) -> &ApiFront {
        &self.api
    }

    /// This machine is registered in the registry (fltd serves the API only then).
    pub fn is_registered(&self) -> bool {
        self.agent.is_registered()
    }

    /// True once [`Node::shutdown`] has finished (lease released; after
    /// [`Node::host_shutdown`], presence and unit states deleted too).
    pub fn is_stopped(&self) -> bool {
        self.shut_down
            && self.engine.as_ref().is_none_or(Engine::is_stopped)
            && (!self.host_shut_down || self.agent.is_shut_down())
    }

    // ---- inputs ----

    pub fn handle_input(&mut self, input: Input, now: Instant) {
        match input {
            Input::Registry(response) => {
                let id = response.id;
                if OpIdGen::new(ENGINE_COMPONENT).owns(id) {
                    if let Some(engine) = &mut self.engine {
                        engine.handle_input(response, now);
                    }
                } else if OpIdGen::new(API_COMPONENT).owns(id) {
                    self.api.handle_response(response, now);
                    self.note_api_ready();
                } else if OpIdGen::new(agent::OP_COMPONENT).owns(id) {
                    self.agent
                        .handle_input(agent::Input::Registry(response), now);
                }
            }
            Input::Systemd(reply) => self.agent.handle_input(agent::Input::Systemd(reply), now),
            Input::UnitObserved(unit) => self
                .agent
                .handle_input(agent::Input::UnitObserved(unit), now),
            Input::Inventory(units) => self.agent.handle_input(agent::Input::Inventory(units), now),
        }
        self.start_engine_once_registered(now);
        self.feed_api();
        self.sync_presence(now);
    }

    /// Hands the API front end what the engine's shared followers learnt.
    fn feed_api(&mut self) {
        let Some(engine) = &mut self.engine else {
            return;
        };
        self.api
            .handle_shared(std::iter::from_fn(|| engine.poll_shared()));
        self.note_api_ready();
    }

    /// Tells the engine until when this machine's presence surely exists.
    fn sync_presence(&mut self, now: Instant) {
        if let Some(engine) = &mut self.engine {
            engine.set_presence_valid_until(self.agent.presence_valid_until(), now);
        }
    }

    /// Fires whatever is due in any component. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
        if let Some(engine) = &mut self.engine {
            engine.handle_timeout(now);
        }
        self.api.handle_timeout(now);
        self.note_api_ready();
        self.start_engine_once_registered(now);
        self.feed_api();
        self.sync_presence(now);
    }

    /// One HTTP request (see [`ApiFront::handle_request`]).
    pub fn handle_api_request(&mut self, id: ApiRequestId, request: ApiRequest, now: Instant) {
        self.api.handle_request(id, request, now);
    }

    // ---- mutators ----

    /// fltd stops (SIGTERM): the engine releases its lease, the API front end stops and its
    /// watches are cancelled. Units keep running; presence expires after `agent_ttl`.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        if let Some(engine) = &mut self.engine {
            engine.shutdown(now);
        }
        for id in self.api.watch_ids() {
            self.commands.push_back(Command::CancelWatch { id });
        }
        self.api.shutdown();
    }

    /// The host shuts down: as [`Node::shutdown`], and the agent deletes this machine's
    /// presence and unit states at once so the cluster reschedules now.
    pub fn host_shutdown(&mut self, now: Instant) {
        self.host_shut_down = true;
        self.agent.host_shutdown(now);
        self.shutdown(now);
    }

    // ---- outputs ----

    pub fn poll_command(&mut self) -> Option<Command> {
        if let Some(command) = self.commands.pop_front() {
            return Some(command);
        }
        if let Some(command) = self.api.poll_command() {
            return Some(Command::Registry {
                id: command.id,
                request: command.request,
            });
        }
        if let Some(command) = self.engine.as_mut().and_then(Engine::poll_command) {
            return Some(Command::Registry {
                id: command.id,
                request: command.request,
            });
        }
        self.agent.poll_command().map(|command| match command {
            agent::Command::Registry { id, request } => Command::Registry { id, request },
            agent::Command::Systemd { id, request } => Command::Systemd { id, request },
        })
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        if let Some(event) = self.engine.as_mut().and_then(Engine::poll_event) {
            return Some(Event::Engine(event));
        }
        self.agent.poll_event().map(Event::Agent)
    }

    pub fn poll_api_response(&mut self) -> Option<(ApiRequestId, ApiResponse)> {
        self.api.poll_response()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, Reason)> {
        let agent = self
            .agent
            .poll_timeout()
            .map(|(at, why)| (at, Reason::Agent(why)));
        let engine = self
            .engine
            .as_ref()
            .and_then(Engine::poll_timeout)
            .map(|(at, why)| (at, Reason::Engine(why)));
        let api = self
            .api
            .poll_timeout()
            .map(|(at, why)| (at, Reason::Api(why)));
        [agent, engine, api].into_iter().flatten().min()
    }

    fn start_engine_once_registered(&mut self, now: Instant) {
        if self.engine.is_none()
            && !self.config.disable_engine
            && !self.shut_down
            && self.agent.is_registered()
        {
            self.engine = Some(Engine::new(self.config.engine_config(), now));
        }
    }

    fn note_api_ready(&mut self) {
        if !self.api_ready && self.api.is_ready() {
            self.api_ready = true;
            self.events.push_back(Event::ApiReady);
        }
    }
}
