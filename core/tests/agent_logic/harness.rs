//! A virtual-time world for the agent: an in-memory model of the etcd v2 keyspace (TTLs,
//! directories, indexes, watches with history) and of systemd, both answering at once, and a
//! clock that jumps from one timeout to the next. The models are deliberately small; they are
//! the agent's counterparts in these logic tests, not stand-ins for the real drivers.

use flt_core::agent::{
    Agent, AgentConfig, Command, Event, Input, InventoryUnit, SystemdFailure, SystemdOutcome,
    SystemdReply, SystemdRequest, UnitObserved,
};
use flt_core::registry::records::{ScheduleRecord, TargetState, UnitFileRecord};
use flt_core::registry::{
    Action, Event as WatchEvent, Failure, Keyspace, Node, OpId, Precondition, PutValue, Reply,
    Request, Response,
};
use flt_core::time::Instant;
use flt_core::unit::{UnitFile, UnitHash, UnitOption};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub const MACHINE: &str = "m1";

#[derive(Clone, Debug)]
struct Key {
    /// `None` for a directory.
    value: Option<String>,
    created: u64,
    modified: u64,
    expires: Option<Instant>,
}

/// The etcd model.
#[derive(Debug, Default)]
pub struct Etcd {
    index: u64,
    keys: BTreeMap<String, Key>,
    history: Vec<WatchEvent>,
    /// Watches from before this index cannot be served (history lost).
    history_floor: u64,
    watches: Vec<(OpId, String)>,
    out: VecDeque<Response>,
    /// Unreachable from the agent (the cluster itself keeps running, TTLs keep ticking).
    pub down: bool,
    /// Every request the agent sent, with the time.
    pub log: Vec<(Instant, Request)>,
}

fn under(key: &str, prefix: &str) -> bool {
    key == prefix || key.starts_with(&format!("{}/", prefix.trim_end_matches('/')))
}

fn parent(key: &str) -> Option<&str> {
    let (p, _) = key.rsplit_once('/')?;
    (!p.is_empty()).then_some(p)
}

impl Etcd {
    pub fn value(&self, key: &str) -> Option<&str> {
        self.keys.get(key).and_then(|k| k.value.as_deref())
    }

    pub fn exists(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    pub fn ttl_deadline(&self, key: &str) -> Option<Instant> {
        self.keys.get(key).and_then(|k| k.expires)
    }

    /// Keys directly or indirectly under `prefix` holding values.
    pub fn values_under(&self, prefix: &str) -> BTreeMap<String, String> {
        self.keys
            .iter()
            .filter(|(k, v)| under(k, prefix) && v.value.is_some())
            .map(|(k, v)| (k.clone(), v.value.clone().unwrap_or_default()))
            .collect()
    }

    /// The next answer or watch event for the client (for harnesses that drive other state
    /// machines against this model, e.g. `node_logic`).
    #[allow(dead_code)]
    pub fn next_response(&mut self) -> Option<Response> {
        self.out.pop_front()
    }

    /// Forget all events so far: a watch from an older index gets HistoryLost.
    pub fn forget_history(&mut self) {
        self.history.clear();
        self.history_floor = self.index + 1;
    }

    /// Writes a key as another component (engine, API) would.
    pub fn set(&mut self, now: Instant, key: &str, value: &str) {
        self.put(now, key, Some(value.to_string()), None, &Precondition::None)
            .expect("set");
    }

    pub fn delete(&mut self, key: &str) {
        let _ = self.remove(key, true, Action::Delete);
    }

    fn notify(&mut self, action: Action, node: Node) {
        let event = WatchEvent {
            action,
            node,
            prev_node: None,
        };
        for (id, prefix) in &self.watches {
            if under(&event.node.key, prefix) {
                self.out.push_back(Response {
                    id: *id,
                    result: Ok(Reply::Event(event.clone())),
                });
            }
        }
        self.history.push(event);
    }

    fn node(&self, key: &str, recursive: bool, top: bool) -> Node {
        let k = &self.keys[key];
        let mut nodes = Vec::new();
        if k.value.is_none() && (recursive || top) {
            let prefix = format!("{key}/");
            for child in self
                .keys
                .keys()
                .filter(|c| c.starts_with(&prefix) && !c[prefix.len()..].contains('/'))
            {
                nodes.push(self.node(child, recursive, false));
            }
        }
        Node {
            key: key.to_string(),
            value: k.value.clone(),
            dir: k.value.is_none(),
            modified_index: k.modified,
            created_index: k.created,
            ttl: None,
            nodes,
        }
    }

    fn put(
        &mut self,
        now: Instant,
        key: &str,
        value: Option<String>,
        ttl: Option<Duration>,
        pre: &Precondition,
    ) -> Result<Node, Failure> {
        let existing = self.keys.get(key).cloned();
        match (pre, &existing) {
            (Precondition::Absent, Some(_)) => return Err(Failure::PreconditionFailed),
            (Precondition::Present, None) => return Err(Failure::NotFound),
            (Precondition::Index(_) | Precondition::Value(_), None) => {
                return Err(Failure::NotFound);
            }
            (Precondition::Index(i), Some(k)) if k.modified != *i => {
                return Err(Failure::PreconditionFailed);
            }
            (Precondition::Value(v), Some(k)) if k.value.as_ref() != Some(v) => {
                return Err(Failure::PreconditionFailed);
            }
            _ => {}
        }
        // Parents spring into existence as plain directories, as in etcd v2.
        let mut missing = Vec::new();
        let mut p = parent(key);
        while let Some(dir) = p {
            if self.keys.contains_key(dir) {
                break;
            }
            missing.push(dir.to_string());
            p = parent(dir);
        }
        self.index += 1;
        for dir in missing {
            self.keys.insert(
                dir,
                Key {
                    value: None,
                    created: self.index,
                    modified: self.index,
                    expires: None,
                },
            );
        }
        let created = existing.as_ref().map_or(self.index, |k| k.created);
        self.keys.insert(
            key.to_string(),
            Key {
                value: value.clone(),
                created,
                modified: self.index,
                expires: ttl.map(|t| now + t),
            },
        );
        let node = self.node(key, false, false);
        let action = if existing.is_some() {
            Action::Set
        } else {
            Action::Create
        };
        self.notify(action, node.clone());
        Ok(node)
    }

    fn remove(&mut self, key: &str, recursive: bool, action: Action) -> Result<u64, Failure> {
        let Some(k) = self.keys.get(key) else {
            return Err(Failure::NotFound);
        };
        if k.value.is_none() && !recursive {
            return Err(Failure::Rejected {
                code: 102,
                message: "Not a file".into(),
            });
        }
        // etcd v2 reports a directory's removal with `dir: true`.
        let dir = k.value.is_none();
        let doomed: Vec<String> = self
            .keys
            .keys()
            .filter(|c| under(c, key))
            .cloned()
            .collect();
        for d in doomed {
            self.keys.remove(&d);
        }
        self.index += 1;
        self.notify(
            action,
            Node {
                key: key.to_string(),
                dir,
                modified_index: self.index,
                ..Node::default()
            },
        );
        Ok(self.index)
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.keys.values().filter_map(|k| k.expires).min()
    }

    pub fn expire(&mut self, now: Instant) {
        while let Some(key) = self
            .keys
            .iter()
            .find(|(_, k)| k.expires.is_some_and(|e| e <= now))
            .map(|(key, _)| key.clone())
        {
            let _ = self.remove(&key, true, Action::Expire);
        }
    }

    /// The agent process went away: its watches end with it, answers in flight are lost.
    pub fn drop_client(&mut self) {
        self.watches.clear();
        self.out.clear();
    }

    pub fn set_down(&mut self, down: bool) {
        self.down = down;
        if down {
            for (id, _) in std::mem::take(&mut self.watches) {
                self.out.push_back(Response {
                    id,
                    result: Err(Failure::Unreachable("connection refused".into())),
                });
            }
        }
    }

    pub fn handle(&mut self, now: Instant, id: OpId, request: Request) {
        self.log.push((now, request.clone()));
        if self.down {
            self.out.push_back(Response {
                id,
                result: Err(Failure::Unreachable("connection refused".into())),
            });
            return;
        }
        let result = match request {
            Request::Get { key, recursive } => {
                if self.keys.contains_key(&key) {
                    Ok(Reply::Got {
                        node: self.node(&key, recursive, true),
                        index: self.index,
                    })
                } else {
                    Err(Failure::NotFound)
                }
            }
            Request::Put {
                key,
                value,
                ttl,
                precondition,
            } => match value {
                PutValue::Value(v) => self
                    .put(now, &key, Some(v), ttl, &precondition)
                    .map(|node| Reply::Put { node }),
                PutValue::Directory => self
                    .put(now, &key, None, ttl, &precondition)
                    .map(|node| Reply::Put { node }),
                PutValue::RefreshTtl => match self.keys.get_mut(&key) {
                    None => Err(Failure::NotFound),
                    Some(k) => {
                        k.expires = ttl.map(|t| now + t);
                        self.index += 1;
                        k.modified = self.index;
                        Ok(Reply::Put {
                            node: self.node(&key, false, false),
                        })
                    }
                },
            },
            Request::Delete { key, recursive, .. } => self
                .remove(&key, recursive, Action::Delete)
                .map(|index| Reply::Deleted { index }),
            Request::Watch { prefix, from_index } => {
                if from_index != 0 && from_index < self.history_floor {
                    Err(Failure::HistoryLost { index: self.index })
                } else {
                    for event in &self.history {
                        if from_index != 0
                            && event.node.modified_index >= from_index
                            && under(&event.node.key, &prefix)
                        {
                            self.out.push_back(Response {
                                id,
                                result: Ok(Reply::Event(event.clone())),
                            });
                        }
                    }
                    self.watches.push((id, prefix));
                    return;
                }
            }
        };
        self.out.push_back(Response { id, result });
    }
}

/// The systemd model: unit files in `units_directory` and the units' states.
#[derive(Debug, Default)]
pub struct Systemd {
    pub files: BTreeMap<String, String>,
    pub states: BTreeMap<String, UnitObserved>,
    /// Every request the agent sent.
    pub log: Vec<SystemdRequest>,
    /// Requests that fail: (request kind, unit) → error.
    pub fail: BTreeMap<(&'static str, String), String>,
    /// Do not answer (the call hangs).
    pub hang: bool,
    /// Answer loads as today's driver does ([`SystemdOutcome::Loaded`]) rather than with a plain
    /// `Done`: a reload is needed only for a unit in `stale`.
    pub reports_reload: bool,
    /// Units whose load reports that a reload is needed (systemd has other content loaded).
    pub stale: BTreeSet<String>,
    out: VecDeque<Input>,
}

pub fn kind_of(request: &SystemdRequest) -> &'static str {
    match request {
        SystemdRequest::LoadUnit { .. } => "load",
        SystemdRequest::UnloadUnit { .. } => "unload",
        SystemdRequest::StartUnit { .. } => "start",
        SystemdRequest::StopUnit { .. } => "stop",
        SystemdRequest::Reload => "reload",
        SystemdRequest::ListUnits { .. } => "list",
    }
}

impl Systemd {
    fn set(&mut self, name: &str, load: &str, active: &str, sub: &str) {
        let state = UnitObserved::new(name, load, active, sub);
        self.states.insert(name.to_string(), state.clone());
        self.out.push_back(Input::UnitObserved(state));
    }

    /// The unit fails (the main process died), as a D-Bus signal reports it.
    pub fn crash(&mut self, name: &str) {
        self.set(name, "loaded", "failed", "failed");
    }

    pub fn active(&self, name: &str) -> Option<&str> {
        self.states.get(name).map(|s| s.active.as_str())
    }

    /// Requests that change something (everything but ListUnits).
    pub fn actions(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|r| !matches!(r, SystemdRequest::ListUnits { .. }))
            .map(|r| match r.unit() {
                Some(u) => format!("{} {u}", kind_of(r)),
                None => kind_of(r).to_string(),
            })
            .collect()
    }

    /// Carries out a request (answered through [`Systemd::next_input`]).
    #[allow(dead_code)]
    pub fn answer(&mut self, id: OpId, request: SystemdRequest) {
        self.handle(id, request);
    }

    /// The next reply or state change for the agent.
    #[allow(dead_code)]
    pub fn next_input(&mut self) -> Option<Input> {
        self.out.pop_front()
    }

    fn handle(&mut self, id: OpId, request: SystemdRequest) {
        self.log.push(request.clone());
        if self.hang {
            return;
        }
        let key = (kind_of(&request), request.unit().unwrap_or("").to_string());
        if let Some(error) = self.fail.get(&key) {
            self.out.push_back(Input::Systemd(SystemdReply {
                id,
                result: Err(SystemdFailure::Failed(error.clone())),
            }));
            return;
        }
        let mut outcome = SystemdOutcome::Done;
        match &request {
            SystemdRequest::LoadUnit { name, text, .. } => {
                if self.reports_reload {
                    let reload_needed = self.stale.contains(name);
                    outcome = SystemdOutcome::Loaded { reload_needed };
                }
                self.files.insert(name.clone(), text.clone());
                if !self.states.contains_key(name) {
                    self.set(name, "loaded", "inactive", "dead");
                }
            }
            SystemdRequest::UnloadUnit { name } => {
                self.files.remove(name);
                self.states.remove(name);
            }
            SystemdRequest::StartUnit { name } => {
                if self.files.contains_key(name) {
                    self.set(name, "loaded", "active", "running");
                } else {
                    outcome = SystemdOutcome::Units(Vec::new());
                }
            }
            SystemdRequest::StopUnit { name } if self.files.contains_key(name) => {
                self.set(name, "loaded", "inactive", "dead");
            }
            SystemdRequest::ListUnits { names } => {
                outcome = SystemdOutcome::Units(
                    names
                        .iter()
                        .map(|n| {
                            self.states.get(n).cloned().unwrap_or_else(|| {
                                UnitObserved::new(n, "not-found", "inactive", "dead")
                            })
                        })
                        .collect(),
                );
            }
            _ => {}
        }
        let result = match outcome {
            SystemdOutcome::Units(units) if kind_of(&request) == "start" && units.is_empty() => {
                Err(SystemdFailure::Failed("Unit not found.".into()))
            }
            other => Ok(other),
        };
        self.out
            .push_back(Input::Systemd(SystemdReply { id, result }));
    }

    /// What the driver would find at startup.
    pub fn inventory(&self) -> Vec<InventoryUnit> {
        self.files
            .iter()
            .map(|(name, text)| InventoryUnit {
                name: name.clone(),
                text: text.clone(),
                observed: self.states.get(name).cloned(),
            })
            .collect()
    }
}

/// An agent with its etcd and systemd, on a virtual clock.
#[derive(Debug)]
pub struct World {
    pub agent: Agent,
    pub etcd: Etcd,
    pub systemd: Systemd,
    pub now: Instant,
    pub events: Vec<Event>,
    pub ks: Keyspace,
}

pub fn config() -> AgentConfig {
    let mut config = AgentConfig::new(MACHINE);
    config.public_ip = "10.0.0.1".into();
    config.seed = 7;
    config
}

pub fn unit(exec: &str) -> UnitFile {
    UnitFile::from_options(vec![UnitOption::new("Service", "ExecStart", exec)])
}

pub fn unit_with(options: &[(&str, &str, &str)]) -> UnitFile {
    UnitFile::from_options(
        options
            .iter()
            .map(|(s, n, v)| UnitOption::new(*s, *n, *v))
            .collect(),
    )
}

impl World {
    /// A world with an empty registry and an empty units directory; the agent is not started.
    pub fn empty() -> World {
        World {
            agent: Agent::new(config(), Instant::ZERO),
            etcd: Etcd::default(),
            systemd: Systemd::default(),
            now: Instant::ZERO,
            events: Vec::new(),
            ks: Keyspace::default(),
        }
    }

    /// Restarts the agent (a new fltd process) at the current time, keeping etcd and systemd,
    /// and hands it the inventory.
    pub fn restart_agent(&mut self, config: AgentConfig) {
        self.etcd.drop_client();
        self.systemd.out.clear();
        self.agent = Agent::new(config, self.now);
        self.systemd.log.clear();
        self.events.clear();
        let inventory = self.systemd.inventory();
        self.agent
            .handle_input(Input::Inventory(inventory), self.now);
        self.pump();
    }

    /// A fresh agent with the standard config, started with the current inventory.
    pub fn start(&mut self) {
        self.restart_agent(config());
    }

    /// Stores a unit file in the registry (as the API does) and returns its hash.
    pub fn store_unit(&mut self, file: &UnitFile) -> UnitHash {
        let hash = file.hash();
        let record = UnitFileRecord {
            raw: file.serialize(),
        };
        let value = serde_json::to_string(&record).expect("json");
        self.etcd.set(self.now, &self.ks.unit(&hash), &value);
        hash
    }

    fn record(hash: UnitHash, target: TargetState) -> String {
        serde_json::to_string(&ScheduleRecord {
            unit_hash: hash.to_hex(),
            target_state: target,
        })
        .expect("json")
    }

    /// Schedules a unit on this machine (as the engine does).
    pub fn schedule(&mut self, name: &str, file: &UnitFile, target: TargetState) {
        self.schedule_quietly(name, file, target);
        self.pump();
    }

    /// Schedules without letting the agent see it yet (so that several changes arrive together).
    pub fn schedule_quietly(&mut self, name: &str, file: &UnitFile, target: TargetState) {
        let hash = self.store_unit(file);
        let key = self.ks.schedule_entry(MACHINE, name);
        self.etcd.set(self.now, &key, &Self::record(hash, target));
    }

    pub fn unschedule(&mut self, name: &str) {
        self.etcd.delete(&self.ks.schedule_entry(MACHINE, name));
        self.pump();
    }

    pub fn set_global(&mut self, name: &str, file: &UnitFile, target: TargetState) {
        let hash = self.store_unit(file);
        let key = self.ks.global_entry(name);
        self.etcd.set(self.now, &key, &Self::record(hash, target));
        self.pump();
    }

    pub fn set_metadata(&mut self, key: &str, value: &str) {
        let k = self.ks.machine_metadata(MACHINE, key);
        self.etcd.set(self.now, &k, value);
        self.pump();
    }

    /// Delivers everything in flight until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(command) = self.agent.poll_command() {
                moved = true;
                match command {
                    Command::Registry { id, request } => self.etcd.handle(self.now, id, request),
                    Command::Systemd { id, request } => self.systemd.handle(id, request),
                }
            }
            while let Some(event) = self.agent.poll_event() {
                self.events.push(event);
            }
            if let Some(response) = self.etcd.out.pop_front() {
                moved = true;
                self.agent.handle_input(Input::Registry(response), self.now);
            } else if let Some(input) = self.systemd.out.pop_front() {
                moved = true;
                self.agent.handle_input(input, self.now);
            }
            if !moved {
                return;
            }
        }
        let last: Vec<_> = self.etcd.log.iter().rev().take(6).collect();
        panic!("the agent never went idle; last requests: {last:#?}");
    }

    /// Moves the clock forward by `by`, firing the agent's timeouts and etcd's TTLs on the way.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..1_000_000 {
            self.pump();
            let next = [
                self.agent.poll_timeout().map(|(at, _)| at),
                self.etcd.next_expiry(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    self.etcd.expire(self.now);
                    self.pump();
                    self.agent.handle_timeout(self.now);
                }
                _ => {
                    self.now = target;
                    self.etcd.expire(self.now);
                    self.agent.handle_timeout(self.now);
                    self.pump();
                    return;
                }
            }
        }
        panic!("time never reached {target:?}");
    }

    pub fn secs(&mut self, secs: u64) {
        self.advance(Duration::from_secs(secs));
    }

    /// Registry writes (puts and deletes) sent since `since`.
    pub fn writes_since(&self, since: Instant) -> Vec<&Request> {
        self.etcd
            .log
            .iter()
            .filter(|(at, r)| {
                *at >= since && !matches!(r, Request::Get { .. } | Request::Watch { .. })
            })
            .map(|(_, r)| r)
            .collect()
    }

    pub fn requests_since(&self, since: Instant) -> Vec<&Request> {
        self.etcd
            .log
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, r)| r)
            .collect()
    }

    pub fn state_key(&self, name: &str) -> String {
        self.ks.unit_state(MACHINE, name)
    }

    /// The published unit state of `name` on this machine: (active, sub, hash).
    pub fn published(&self, name: &str) -> Option<(String, String, String)> {
        let raw = self.etcd.value(&self.state_key(name))?;
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        Some((
            v["activeState"].as_str()?.to_string(),
            v["subState"].as_str()?.to_string(),
            v["unitHash"].as_str()?.to_string(),
        ))
    }
}
