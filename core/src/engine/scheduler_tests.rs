//! Scenario tests of [`Engine`]: registry answers are fed in directly (that is the point of a
//! sans-IO core) on a virtual clock, and the commands and events coming out are asserted.

use super::*;
use crate::registry::records::{JobRecord, MachineRecord, ScheduleRecord, TargetState};
use crate::registry::view::Dir;
use crate::registry::{Action, Event, Failure, Keyspace, Node, OpId, Precondition, PutValue};
use crate::registry::{Reply, Request, Response};
use crate::time::Instant;
use crate::unit::{UnitFile, UnitHash};
use std::collections::BTreeMap;
use std::time::Duration;

const ME: &str = "m1";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The engine on a virtual clock, with everything it emitted so far.
struct Harness {
    engine: Engine,
    now: Instant,
    ks: Keyspace,
    commands: Vec<Command>,
    events: Vec<EngineEvent>,
    index: u64,
    /// The latest watch on each directory.
    watches: BTreeMap<Dir, OpId>,
    /// The latest watch on the lease directory (a follower's).
    lease_watch: Option<OpId>,
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        let now = Instant::from_epoch(Duration::from_secs(1000));
        let ks = config.keyspace.clone();
        let engine = Engine::new(config, now);
        let mut h = Harness {
            engine,
            now,
            ks,
            commands: Vec::new(),
            events: Vec::new(),
            index: 100,
            watches: BTreeMap::new(),
            lease_watch: None,
        };
        h.drain();
        h
    }

    /// Collects every output and, like a driver, fires timers that are already due.
    fn drain(&mut self) {
        loop {
            while let Some(c) = self.engine.poll_command() {
                self.commands.push(c);
            }
            while let Some(e) = self.engine.poll_event() {
                self.events.push(e);
            }
            match self.engine.poll_timeout() {
                Some((at, _)) if at <= self.now => self.engine.handle_timeout(self.now),
                _ => return,
            }
        }
    }

    /// Commands emitted since the last call.
    fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// The recursive reads (directory reads) among the commands taken.
    fn take_recursive_reads(&mut self) -> Vec<Command> {
        self.take_commands()
            .into_iter()
            .filter(|c| {
                matches!(
                    &c.request,
                    Request::Get {
                        recursive: true,
                        ..
                    }
                )
            })
            .collect()
    }

    fn take_events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }

    fn answer(&mut self, id: OpId, result: Result<Reply, Failure>) {
        self.engine.handle_input(Response { id, result }, self.now);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine.handle_timeout(self.now);
        self.drain();
    }

    /// Runs the clock forward to each timeout until `until`.
    fn run_until(&mut self, until: Instant) {
        let mut steps = 0;
        while let Some((at, why)) = self.engine.poll_timeout() {
            if at > until {
                break;
            }
            steps += 1;
            assert!(
                steps < 10_000,
                "timer {why:?} at {at:?} never clears (now {:?})",
                self.now
            );
            self.now = self.now.max(at);
            self.engine.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
        self.engine.handle_timeout(self.now);
        self.drain();
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Answers a Put as the registry would: the node as written, at a fresh index.
    fn put_ok(&mut self, c: &Command) {
        let Request::Put { key, value, .. } = &c.request else {
            panic!("not a put: {c:?}");
        };
        let value = match value {
            PutValue::Value(v) => Some(v.clone()),
            _ => None,
        };
        let node = Node {
            key: key.clone(),
            value,
            modified_index: self.next_index(),
            ..Node::default()
        };
        self.answer(c.id, Ok(Reply::Put { node }));
    }

    fn delete_ok(&mut self, c: &Command) {
        let index = self.next_index();
        self.answer(c.id, Ok(Reply::Deleted { index }));
    }

    /// Answers every outstanding write (Put/Delete) successfully, repeatedly, until none is left.
    fn complete_writes(&mut self) -> Vec<Request> {
        let mut done = Vec::new();
        loop {
            let commands = self.take_commands();
            let mut any = false;
            for c in commands {
                match &c.request {
                    Request::Put { .. } => {
                        any = true;
                        done.push(c.request.clone());
                        self.put_ok(&c);
                    }
                    Request::Delete { .. } => {
                        any = true;
                        done.push(c.request.clone());
                        self.delete_ok(&c);
                    }
                    _ => self.commands.push(c),
                }
            }
            if !any {
                return done;
            }
        }
    }

    fn find(&mut self, what: impl Fn(&Request) -> bool) -> Command {
        let pos = self
            .commands
            .iter()
            .position(|c| what(&c.request))
            .unwrap_or_else(|| panic!("no such command among {:#?}", self.commands));
        self.commands.remove(pos)
    }

    fn get(&mut self, key: &str) -> Command {
        self.find(|r| matches!(r, Request::Get { key: k, .. } if k == key))
    }

    /// Answers the five directory reads with `registry`'s content, as etcd would: a missing
    /// directory is not found, created by the engine (at a fresh index) and read again empty.
    /// Returns the index each directory was finally read at.
    fn answer_reads(&mut self, registry: &Registry) -> BTreeMap<Dir, u64> {
        let mut read_at = BTreeMap::new();
        for dir in Dir::ALL {
            let key = dir.key(&self.ks);
            let c = self.get(&key);
            let node = match registry.dir(&key) {
                Some(node) => node,
                None => {
                    self.answer(c.id, Err(Failure::NotFound));
                    let create =
                        self.find(|r| matches!(r, Request::Put { key: k, .. } if *k == key));
                    assert_eq!(
                        create.request,
                        Request::Put {
                            key: key.clone(),
                            value: PutValue::Directory,
                            ttl: None,
                            precondition: Precondition::Absent,
                        }
                    );
                    self.put_ok(&create);
                    let reread = self.get(&key);
                    let node = Node {
                        key: key.clone(),
                        dir: true,
                        modified_index: self.index,
                        ..Node::default()
                    };
                    self.answer(
                        reread.id,
                        Ok(Reply::Got {
                            node,
                            index: self.index,
                        }),
                    );
                    read_at.insert(dir, self.index);
                    continue;
                }
            };
            self.answer(
                c.id,
                Ok(Reply::Got {
                    node,
                    index: self.index,
                }),
            );
            read_at.insert(dir, self.index);
        }
        read_at
    }

    /// The version gate and an uncontended lease acquisition.
    fn acquire_lease(&mut self) {
        let version = self.get(&self.ks.engine_version());
        self.answer(version.id, Err(Failure::NotFound));
        let put = self.find(|r| matches!(r, Request::Put { .. }));
        assert_eq!(
            put.request,
            Request::Put {
                key: self.ks.engine_version(),
                value: PutValue::Value("1".into()),
                ttl: None,
                precondition: Precondition::Absent,
            }
        );
        self.put_ok(&put);
        let lease = self.get(&self.ks.engine_lease());
        self.answer(lease.id, Err(Failure::NotFound));
        let acquire = self.find(|r| matches!(r, Request::Put { .. }));
        assert_eq!(
            acquire.request,
            Request::Put {
                key: self.ks.engine_lease(),
                value: PutValue::Value(r#"{"MachineID":"m1","Version":1}"#.into()),
                ttl: Some(Duration::from_secs(10)),
                precondition: Precondition::Absent,
            }
        );
        self.put_ok(&acquire);
    }

    /// Answers the engine's read of `P/engine/version` with this engine's version (1).
    fn answer_version_read(&mut self) {
        let version = self.get(&self.ks.engine_version());
        let node = Node {
            key: self.ks.engine_version(),
            value: Some("1".into()),
            ..Node::default()
        };
        self.answer(version.id, Ok(Reply::Got { node, index: 100 }));
    }

    /// Answers a follower's read of the lease directory with `lease` in it (or none), then
    /// notes its watch.
    fn answer_lease_dir(&mut self, lease: Option<Node>) {
        let dir = self.ks.lease_dir();
        let read = self.get(&dir);
        let node = Node {
            key: dir,
            dir: true,
            nodes: lease.into_iter().collect(),
            ..Node::default()
        };
        let index = self.next_index();
        self.answer(read.id, Ok(Reply::Got { node, index }));
        self.collect_watches();
        assert!(self.lease_watch.is_some(), "the follower watches the lease");
    }

    /// Feeds an event on the lease directory's watch.
    fn lease_event(&mut self, action: Action, value: Option<&str>) {
        let node = Node {
            key: self.ks.engine_lease(),
            value: value.map(str::to_string),
            modified_index: self.next_index(),
            ..Node::default()
        };
        let id = self.lease_watch.expect("a lease watch");
        let event = Event {
            action,
            node,
            prev_node: None,
        };
        self.answer(id, Ok(Reply::Event(event)));
    }

    fn watch_id(&self, dir: Dir) -> OpId {
        // Watches are never answered in these tests unless a test says so; find the last one.
        self.watches
            .get(&dir)
            .copied()
            .unwrap_or_else(|| panic!("no watch on {dir:?}"))
    }

    /// Feeds a watch event on `dir`'s watch.
    /// What the API writes to submit a unit: its file, its job object and its target state,
    /// each arriving as a watch event.
    fn submit_unit(&mut self, name: &str, file: &UnitFile, target_state: &str) {
        let ks = self.ks.clone();
        let unit = unit_record(file);
        self.event(
            Dir::Units,
            Action::Create,
            &ks.unit(&file.hash()),
            Some(&unit),
        );
        let job = job_object(name, file.hash());
        self.event(Dir::Jobs, Action::Set, &ks.job_object(name), Some(&job));
        let state = ks.job_target_state(name);
        self.event(Dir::Jobs, Action::Set, &state, Some(target_state));
    }

    fn event(&mut self, dir: Dir, action: Action, key: &str, value: Option<&str>) {
        let node = Node {
            key: key.to_string(),
            value: value.map(str::to_string),
            modified_index: self.next_index(),
            ..Node::default()
        };
        let id = self.watch_id(dir);
        self.answer(
            id,
            Ok(Reply::Event(Event {
                action,
                node,
                prev_node: None,
            })),
        );
    }
}

impl Harness {
    #[allow(clippy::type_complexity)]
    fn watches_from(&mut self) -> BTreeMap<Dir, (OpId, u64)> {
        let mut found = BTreeMap::new();
        let mut rest = Vec::new();
        for c in self.take_commands() {
            if let Request::Watch { prefix, from_index } = &c.request {
                if *prefix == self.ks.lease_dir() {
                    self.lease_watch = Some(c.id);
                    continue;
                }
                let dir = Dir::ALL
                    .into_iter()
                    .find(|d| d.key(&self.ks) == *prefix)
                    .expect("watch on a known dir");
                found.insert(dir, (c.id, *from_index));
            } else {
                rest.push(c);
            }
        }
        self.commands = rest;
        for (dir, (id, _)) in &found {
            self.watches.insert(*dir, *id);
        }
        found
    }
}

impl Harness {
    fn collect_watches(&mut self) {
        self.watches_from();
    }
}

/// Registry content to answer the initial reads with.
#[derive(Default)]
struct Registry {
    ks: Keyspace,
    nodes: Vec<(String, String)>,
}

fn unit_text(xfleet: &str) -> UnitFile {
    let text = format!("[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\n{xfleet}\n");
    UnitFile::parse(&text).expect("test unit parses")
}

fn job_object(name: &str, hash: UnitHash) -> String {
    serde_json::to_string(&JobRecord {
        name: name.to_string(),
        unit_hash: hash.0,
    })
    .unwrap()
}

fn unit_record(file: &UnitFile) -> String {
    serde_json::json!({ "Raw": file.serialize() }).to_string()
}

fn machine_record(id: &str) -> String {
    serde_json::to_string(&MachineRecord {
        id: id.to_string(),
        ..MachineRecord::default()
    })
    .unwrap()
}

fn schedule_json(hash: UnitHash, state: TargetState) -> String {
    serde_json::to_string(&ScheduleRecord {
        unit_hash: hash.to_hex(),
        target_state: state,
    })
    .unwrap()
}

impl Registry {
    fn machine(mut self, id: &str) -> Self {
        self.nodes
            .push((self.ks.machine_object(id), machine_record(id)));
        self
    }

    fn job(mut self, name: &str, xfleet: &str, state: TargetState, target: Option<&str>) -> Self {
        let file = unit_text(xfleet);
        let hash = file.hash();
        self.nodes.push((self.ks.unit(&hash), unit_record(&file)));
        self.nodes
            .push((self.ks.job_object(name), job_object(name, hash)));
        self.nodes
            .push((self.ks.job_target_state(name), state.to_string()));
        if let Some(machine) = target {
            self.nodes
                .push((self.ks.job_target(name), machine.to_string()));
            if state != TargetState::Inactive && !file.serialize().contains("Global=true") {
                self.nodes.push((
                    self.ks.schedule_entry(machine, name),
                    schedule_json(hash, state),
                ));
            }
        }
        self
    }

    fn global(mut self, name: &str, state: TargetState) -> Self {
        self = self.job(name, "Global=true", state, None);
        let hash = unit_text("Global=true").hash();
        self.nodes
            .push((self.ks.global_entry(name), schedule_json(hash, state)));
        self
    }

    /// A flat directory node holding every key under `key` (the view only walks leaves).
    fn dir(&self, key: &str) -> Option<Node> {
        let prefix = format!("{key}/");
        let nodes: Vec<Node> = self
            .nodes
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| Node {
                key: k.clone(),
                value: Some(v.clone()),
                modified_index: 50,
                ..Node::default()
            })
            .collect();
        (!nodes.is_empty()).then(|| Node {
            key: key.to_string(),
            dir: true,
            nodes,
            ..Node::default()
        })
    }
}

/// Events other than reconcile bookkeeping.
fn lease_events(events: Vec<EngineEvent>) -> Vec<EngineEvent> {
    events
        .into_iter()
        .filter(|e| !matches!(e, EngineEvent::ReconcileDone { .. }))
        .collect()
}

fn config() -> EngineConfig {
    EngineConfig {
        seed: 7,
        reconcile_debounce: Duration::ZERO,
        ..EngineConfig::new(ME)
    }
}

/// An engine that has read `registry` and holds the lease; the commands of its first reconcile
/// are left in `h.commands`.
fn leader(registry: &Registry) -> Harness {
    leader_with(config(), registry)
}

fn leader_with(config: EngineConfig, registry: &Registry) -> Harness {
    let mut h = Harness::new(config);
    h.answer_reads(registry);
    h.collect_watches();
    h.acquire_lease();
    assert!(h.engine.is_leader());
    h
}

fn put_target(ks: &Keyspace, unit: &str, machine: &str) -> Request {
    Request::Put {
        key: ks.job_target(unit),
        value: PutValue::Value(machine.into()),
        ttl: None,
        precondition: Precondition::Absent,
    }
}

/// The compare-and-swap that moves a unit's target off a machine that went away.
fn move_target(ks: &Keyspace, unit: &str, from: &str, to: &str) -> Request {
    Request::Put {
        key: ks.job_target(unit),
        value: PutValue::Value(to.into()),
        ttl: None,
        precondition: Precondition::Value(from.into()),
    }
}

fn put_schedule(ks: &Keyspace, unit: &str, machine: &str, record: String) -> Request {
    Request::Put {
        key: ks.schedule_entry(machine, unit),
        value: PutValue::Value(record),
        ttl: None,
        precondition: Precondition::None,
    }
}

#[test]
fn starts_by_reading_every_directory_and_checking_the_version() {
    let mut h = Harness::new(config());
    let mut keys: Vec<String> = h
        .take_commands()
        .into_iter()
        .map(|c| match c.request {
            Request::Get { key, recursive } => format!("{key} {recursive}"),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    keys.sort();
    let ks = Keyspace::default();
    let mut want = vec![
        format!("{} true", ks.globals_dir()),
        format!("{} true", ks.jobs_dir()),
        format!("{} true", ks.machines_dir()),
        format!("{} true", ks.schedules_dir()),
        format!("{} true", ks.units_dir()),
        format!("{} false", ks.engine_version()),
    ];
    want.sort();
    assert_eq!(keys, want);
    assert!(!h.engine.is_synced());
}

#[test]
fn reads_are_followed_by_watches_from_the_read_index_plus_one() {
    let mut h = Harness::new(config());
    // Only P/machines exists: the other four are created, then read (and watched) from there.
    let read_at = h.answer_reads(&Registry::default().machine("m1"));
    assert!(read_at[&Dir::Jobs] > 100, "created at a fresh index");
    let watches = h.watches_from();
    assert_eq!(watches.len(), 5);
    for (dir, (_, from)) in watches {
        assert!(read_at[&dir] >= 100);
        assert_eq!(from, read_at[&dir] + 1, "{dir:?}");
    }
    assert!(h.engine.is_synced());
}

#[test]
fn leader_schedules_a_unit_target_first_then_schedule_record() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("hello.service", "", TargetState::Launched, None);
    let mut h = leader(&registry);
    let events = h.take_events();
    assert!(events.contains(&EngineEvent::LeaseAcquired), "{events:?}");
    assert!(events.contains(&EngineEvent::ReconcileDone {
        tasks: 1,
        unplaceable: 0
    }));
    let ks = h.ks.clone();
    let first = h.find(|r| matches!(r, Request::Put { .. }));
    assert_eq!(first.request, put_target(&ks, "hello.service", "m1"));
    assert!(h.take_commands().is_empty(), "one step at a time per unit");
    h.put_ok(&first);
    let second = h.find(|r| matches!(r, Request::Put { .. }));
    let hash = unit_text("").hash();
    assert_eq!(
        second.request,
        put_schedule(
            &ks,
            "hello.service",
            "m1",
            schedule_json(hash, TargetState::Launched)
        )
    );
    h.put_ok(&second);
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::UnitScheduled {
            unit: "hello.service".into(),
            machine: "m1".into()
        }]
    );
    assert_eq!(
        h.engine.metrics().task_count.get("attemptscheduleunit"),
        Some(&1)
    );
    // The watch echoes our own writes: nothing changes, nothing is written.
    h.event(
        Dir::Jobs,
        Action::Create,
        &ks.job_target("hello.service"),
        Some("m1"),
    );
    assert!(h.take_commands().is_empty());
}

#[test]
fn converged_cluster_writes_nothing_but_lease_renewals() {
    let registry = Registry::default()
        .machine("m1")
        .machine("m2")
        .job("a.service", "", TargetState::Launched, Some("m1"))
        .job("b.service", "", TargetState::Loaded, Some("m2"))
        .job("c.service", "", TargetState::Inactive, None)
        .global("g.service", TargetState::Launched);
    let mut h = leader(&registry);
    assert!(h.complete_writes().is_empty());
    for _ in 0..5 {
        // Renewals come every other tick (once less than half the TTL is left).
        h.advance(secs(2.0));
        assert!(h.complete_writes().is_empty());
        h.advance(secs(2.0));
        let renew = h.find(|r| matches!(r, Request::Put { .. }));
        assert!(matches!(
            renew.request,
            Request::Put {
                value: PutValue::RefreshTtl,
                precondition: Precondition::Index(_),
                ..
            }
        ));
        assert_eq!(
            match &renew.request {
                Request::Put { key, .. } => key.clone(),
                _ => unreachable!(),
            },
            h.ks.engine_lease()
        );
        h.put_ok(&renew);
        assert!(h.complete_writes().is_empty());
    }
    assert!(h.engine.metrics().reconcile_count >= 6);
}

#[test]
fn renewal_uses_the_index_of_the_last_lease_write() {
    let mut h = leader(&Registry::default().machine("m1"));
    h.complete_writes();
    h.advance(secs(4.0));
    let renew = h.find(|r| matches!(r, Request::Put { .. }));
    h.put_ok(&renew);
    let written_at = h.index;
    h.advance(secs(4.0));
    let renew = h.find(|r| matches!(r, Request::Put { .. }));
    assert!(
        matches!(&renew.request, Request::Put { precondition: Precondition::Index(i), ttl, .. }
            if *i == written_at && *ttl == Some(Duration::from_secs(10))),
        "{renew:?}"
    );
}

#[test]
fn follower_remembers_the_leader_and_writes_nothing() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("hello.service", "", TargetState::Launched, None);
    let mut h = Harness::new(config());
    h.answer_reads(&registry);
    h.collect_watches();
    h.answer_version_read();
    let lease = h.get(&h.ks.engine_lease());
    let held = Node {
        key: h.ks.engine_lease(),
        value: Some(r#"{"MachineID":"m2","Version":1}"#.into()),
        modified_index: 90,
        ttl: Some(9),
        ..Node::default()
    };
    h.answer(
        lease.id,
        Ok(Reply::Got {
            node: held.clone(),
            index: 100,
        }),
    );
    assert!(!h.engine.is_leader());
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::LeaderChanged {
            leader: Some("m2".into())
        }]
    );
    // From now on the lease is watched, not read every tick.
    h.answer_lease_dir(Some(held));
    assert!(h.take_commands().is_empty());
    h.advance(secs(2.0));
    h.advance(secs(2.0));
    h.advance(secs(2.0));
    assert!(
        h.take_commands().is_empty(),
        "an idle follower sends nothing"
    );
    assert!(h.take_events().is_empty());
}

/// The leader's renewals wake no watcher; its lease expiring does, and the follower contends at
/// once (not at its next tick); a new holder written meanwhile is simply followed.
#[test]
fn a_follower_contends_as_soon_as_the_watched_lease_expires() {
    let registry = Registry::default().machine("m1").machine("m2");
    let mut h = follower_of_m2(&registry);
    let lease = r#"{"MachineID":"m3","Version":1}"#;
    h.lease_event(Action::Create, Some(lease));
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::LeaderChanged {
            leader: Some("m3".into())
        }]
    );
    h.collect_watches();
    assert!(h.take_commands().is_empty());
    h.lease_event(Action::Expire, None);
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::LeaderChanged { leader: None }]
    );
    h.answer_version_read();
    let read = h.get(&h.ks.engine_lease());
    h.answer(read.id, Err(Failure::NotFound));
    let acquire = h.find(|r| matches!(r, Request::Put { .. }));
    assert!(matches!(
        acquire.request,
        Request::Put {
            value: PutValue::Value(_),
            precondition: Precondition::Absent,
            ..
        }
    ));
    h.put_ok(&acquire);
    assert!(h.engine.is_leader());
}

#[test]
fn newer_engine_version_means_no_participation() {
    let mut h = Harness::new(config());
    h.answer_reads(&Registry::default().machine("m1"));
    h.collect_watches();
    let version = h.get(&h.ks.engine_version());
    let node = Node {
        key: h.ks.engine_version(),
        value: Some("2".into()),
        ..Node::default()
    };
    h.answer(version.id, Ok(Reply::Got { node, index: 100 }));
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::EngineVersionTooNew { version: 2 }]
    );
    h.advance(secs(10.0));
    assert!(h.take_commands().is_empty());
}

#[test]
fn older_engine_version_is_updated_with_compare_and_swap() {
    let mut h = Harness::new(config());
    let version = h.get(&h.ks.engine_version());
    let node = Node {
        key: h.ks.engine_version(),
        value: Some("0".into()),
        ..Node::default()
    };
    h.answer(version.id, Ok(Reply::Got { node, index: 100 }));
    let put = h.find(|r| matches!(r, Request::Put { .. }));
    assert!(
        matches!(&put.request, Request::Put { precondition: Precondition::Value(v), .. } if v == "0")
    );
    h.put_ok(&put);
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::EngineVersionUpdated { from: 0, to: 1 }]
    );
    h.get(&h.ks.engine_lease());
}

#[test]
fn lease_is_given_up_before_its_ttl_when_renewals_go_unanswered() {
    let mut cfg = config();
    cfg.request_timeout = secs(60.0);
    let mut h = Harness::new(cfg);
    h.answer_reads(&Registry::default().machine("m1"));
    h.collect_watches();
    let acquired_at = h.now;
    h.acquire_lease();
    h.take_events();
    // TTL 10 s, margin 2 s: trusted until 8 s after the acquiring write was sent.
    h.run_until(acquired_at + secs(7.9));
    assert!(h.engine.is_leader());
    h.run_until(acquired_at + secs(8.0));
    assert!(!h.engine.is_leader());
    assert_eq!(
        lease_events(h.take_events()),
        vec![EngineEvent::LeaseLost {
            reason: "lease not renewed before its TTL ran out".into()
        }]
    );
}

#[test]
fn unanswered_renewal_times_out_and_loses_the_lease() {
    let mut cfg = config();
    cfg.request_timeout = secs(1.0);
    let mut h = Harness::new(cfg);
    h.answer_reads(&Registry::default().machine("m1"));
    h.collect_watches();
    h.acquire_lease();
    h.take_events();
    h.advance(secs(4.0));
    let _renew = h.find(|r| matches!(r, Request::Put { .. }));
    h.advance(secs(1.0));
    assert!(!h.engine.is_leader());
    assert_eq!(
        lease_events(h.take_events()),
        vec![EngineEvent::LeaseLost {
            reason: "Engine leadership lost, renewal failed: registry request timed out".into()
        }]
    );
    assert_eq!(h.engine.metrics().registry_failures.get("put"), Some(&1));
}

/// As fltd runs the engine: its trust in the lease is bound by its machine's presence.
fn presence_bound_config() -> EngineConfig {
    let mut config = config();
    config.presence_bound = true;
    config.presence_margin = secs(0.5);
    config
}

/// A leader stops acting once its own presence may have expired (its agent could not refresh
/// it), even though the lease itself would still be valid: that is what lets the others take
/// the lease over as soon as its machine leaves.
#[test]
fn a_leader_whose_presence_may_have_expired_gives_up_the_lease() {
    let registry = Registry::default().machine("m1");
    let mut h = Harness::new(presence_bound_config());
    let (now, until) = (h.now, h.now + secs(3.0));
    h.engine.set_presence_valid_until(Some(until), now);
    h.answer_reads(&registry);
    h.collect_watches();
    h.acquire_lease();
    assert!(h.engine.is_leader());
    h.run_until(now + secs(2.4));
    assert!(h.engine.is_leader());
    h.run_until(now + secs(2.6));
    assert!(!h.engine.is_leader());
    assert!(h.take_events().iter().any(|e| matches!(
        e,
        EngineEvent::LeaseLost { reason } if reason.contains("presence")
    )));
}

/// Without a presence yet (the agent has not registered), a presence-bound engine does not
/// even contend for the lease: it could not act on it. Once the presence exists, it does.
#[test]
fn a_presence_bound_engine_contends_only_once_its_presence_exists() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("hello.service", "", TargetState::Launched, None);
    let mut h = Harness::new(presence_bound_config());
    h.answer_reads(&registry);
    h.collect_watches();
    h.advance(secs(4.5));
    let asked: Vec<_> = h
        .take_commands()
        .into_iter()
        .filter(|c| !matches!(c.request, Request::Watch { .. }))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
    let (now, until) = (h.now, h.now + secs(30.0));
    h.engine.set_presence_valid_until(Some(until), now);
    h.advance(secs(2.0));
    h.acquire_lease();
    assert!(h.engine.is_leader());
    h.complete_writes();
}

/// A follower of m2 whose registry has `machines` (m2 among them or not).
fn follower_of_m2(registry: &Registry) -> Harness {
    let mut h = Harness::new(presence_bound_config());
    let (now, until) = (h.now, h.now + secs(100.0));
    h.engine.set_presence_valid_until(Some(until), now);
    h.answer_reads(registry);
    h.collect_watches();
    h.answer_version_read();
    let lease = h.get(&h.ks.engine_lease());
    let held = Node {
        key: h.ks.engine_lease(),
        value: Some(r#"{"MachineID":"m2","Version":1}"#.into()),
        modified_index: 90,
        ttl: Some(9),
        ..Node::default()
    };
    h.answer(
        lease.id,
        Ok(Reply::Got {
            node: held.clone(),
            index: 100,
        }),
    );
    h.answer_lease_dir(Some(held));
    assert!(!h.engine.is_leader());
    h.take_events();
    h.take_commands();
    h
}

/// The leader's host died: its presence expires after agent_ttl. The follower reads the lease
/// at once and takes it over (CAS on its index) instead of waiting out the lease TTL, then
/// moves the dead machine's unit.
#[test]
fn the_lease_of_a_leader_whose_machine_left_is_taken_over_at_once() {
    let registry = Registry::default().machine("m1").machine("m2").job(
        "a.service",
        "",
        TargetState::Launched,
        Some("m2"),
    );
    let mut h = follower_of_m2(&registry);
    let ks = h.ks.clone();
    h.event(
        Dir::Machines,
        Action::Expire,
        &ks.machine_object("m2"),
        None,
    );
    // No tick passed: the lease read comes from the event itself.
    let lease = h.get(&ks.engine_lease());
    let held = Node {
        key: ks.engine_lease(),
        value: Some(r#"{"MachineID":"m2","Version":1}"#.into()),
        modified_index: 90,
        ttl: Some(8),
        ..Node::default()
    };
    h.answer(
        lease.id,
        Ok(Reply::Got {
            node: held,
            index: 120,
        }),
    );
    let takeover = h.find(|r| matches!(r, Request::Put { .. }));
    assert_eq!(
        takeover.request,
        Request::Put {
            key: ks.engine_lease(),
            value: PutValue::Value(r#"{"MachineID":"m1","Version":1}"#.into()),
            ttl: Some(Duration::from_secs(10)),
            precondition: Precondition::Index(90),
        }
    );
    assert!(
        h.take_events()
            .contains(&EngineEvent::LeaseTakeover { from: "m2".into() })
    );
    h.put_ok(&takeover);
    assert!(h.engine.is_leader());
    let writes = h.complete_writes();
    assert!(
        writes.contains(&move_target(&ks, "a.service", "m2", "m1")),
        "{writes:?}"
    );
}

/// After an etcd outage the machines watch replays the expiry of the leader's presence, but the
/// leader has registered again and re-written the lease since (a higher index than the expiry):
/// that expiry says nothing about the lease's current holder, so no takeover (found by the
/// cluster simulator, seed 0xc10055: two engines believed they led).
#[test]
fn a_presence_expiry_older_than_the_lease_write_is_no_reason_for_a_takeover() {
    let registry = Registry::default().machine("m1").machine("m2");
    let mut h = follower_of_m2(&registry);
    let ks = h.ks.clone();
    h.event(
        Dir::Machines,
        Action::Expire,
        &ks.machine_object("m2"),
        None,
    );
    let expired_at = h.index;
    let lease = h.get(&ks.engine_lease());
    let rewritten = Node {
        key: ks.engine_lease(),
        value: Some(r#"{"MachineID":"m2","Version":1}"#.into()),
        modified_index: expired_at + 5,
        ttl: Some(10),
        ..Node::default()
    };
    h.answer(
        lease.id,
        Ok(Reply::Got {
            node: rewritten,
            index: expired_at + 5,
        }),
    );
    let writes: Vec<_> = h
        .take_commands()
        .into_iter()
        .filter(|c| matches!(c.request, Request::Put { .. } | Request::Delete { .. }))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(!h.engine.is_leader());
    assert!(
        !h.take_events()
            .iter()
            .any(|e| matches!(e, EngineEvent::LeaseTakeover { .. }))
    );
}

/// A lease holder never seen registered (its engine won the lease before its agent wrote the
/// presence) is not a departed leader: the follower keeps following.
#[test]
fn a_leader_never_seen_registered_keeps_its_lease() {
    let registry = Registry::default().machine("m1");
    let mut h = follower_of_m2(&registry);
    let ks = h.ks.clone();
    h.event(
        Dir::Machines,
        Action::Expire,
        &ks.machine_object("m3"),
        None,
    );
    h.advance(secs(2.0));
    h.collect_watches();
    // No takeover, not even a read of the lease: m2 was never seen live, so its machine
    // missing proves nothing; its lease is watched.
    let sent = h.take_commands();
    assert!(sent.is_empty(), "{sent:?}");
    assert!(!h.engine.is_leader());
}

#[test]
fn legacy_lease_is_stolen_and_its_remaining_ttl_waited_out() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("hello.service", "", TargetState::Launched, None);
    let mut h = Harness::new(config());
    h.answer_reads(&registry);
    h.collect_watches();
    h.answer_version_read();
    let lease = h.get(&h.ks.engine_lease());
    let legacy = Node {
        key: h.ks.engine_lease(),
        value: Some("oldmachine".into()),
        modified_index: 77,
        ttl: Some(3),
        ..Node::default()
    };
    h.answer(
        lease.id,
        Ok(Reply::Got {
            node: legacy,
            index: 100,
        }),
    );
    let steal = h.find(|r| matches!(r, Request::Put { .. }));
    assert_eq!(
        steal.request,
        Request::Put {
            key: h.ks.engine_lease(),
            value: PutValue::Value(r#"{"MachineID":"m1","Version":1}"#.into()),
            ttl: Some(Duration::from_secs(13)),
            precondition: Precondition::Index(77),
        }
    );
    let stolen_at = h.now;
    h.put_ok(&steal);
    assert!(h.engine.is_leader());
    // No writes until the old holder's 3 s are over.
    h.run_until(stolen_at + secs(2.9));
    let early: Vec<_> = h
        .take_commands()
        .into_iter()
        .filter(|c| !matches!(&c.request, Request::Put { key, .. } if *key == h.ks.engine_lease()))
        .collect();
    assert!(early.is_empty(), "{early:?}");
    h.run_until(stolen_at + secs(4.1));
    h.find(|r| *r == put_target(&Keyspace::default(), "hello.service", "m1"));
}

#[test]
fn watch_event_triggers_an_immediate_coalesced_reconcile() {
    let registry = Registry::default().machine("m1").machine("m2");
    let mut h = leader(&registry);
    h.complete_writes();
    let ks = h.ks.clone();
    let reconciles = h.engine.metrics().reconcile_count;
    // A unit is created: unit file, object, target-state (three events).
    let file = unit_text("");
    h.event(
        Dir::Units,
        Action::Create,
        &ks.unit(&file.hash()),
        Some(&unit_record(&file)),
    );
    h.event(
        Dir::Jobs,
        Action::Set,
        &ks.job_object("a.service"),
        Some(&job_object("a.service", file.hash())),
    );
    assert!(
        h.take_commands().is_empty(),
        "no target state yet: nothing to do"
    );
    let before = h.engine.metrics().reconcile_count;
    h.event(
        Dir::Jobs,
        Action::Set,
        &ks.job_target_state("a.service"),
        Some("launched"),
    );
    let first = h.find(|r| matches!(r, Request::Put { .. }));
    assert_eq!(first.request, put_target(&ks, "a.service", "m1"));
    // A second unit arrives while the first is being written: no second plan yet.
    h.event(
        Dir::Jobs,
        Action::Set,
        &ks.job_object("b.service"),
        Some(&job_object("b.service", file.hash())),
    );
    h.event(
        Dir::Jobs,
        Action::Set,
        &ks.job_target_state("b.service"),
        Some("launched"),
    );
    assert!(h.take_commands().is_empty());
    assert_eq!(
        h.engine.metrics().reconcile_count,
        before + 1,
        "one plan while writing"
    );
    h.put_ok(&first);
    let second = h.find(|r| matches!(r, Request::Put { .. }));
    h.put_ok(&second);
    // Now the coalesced reconcile runs and places b on the other machine.
    let third = h.find(|r| matches!(r, Request::Put { .. }));
    assert_eq!(third.request, put_target(&ks, "b.service", "m2"));
    assert!(
        h.now < Instant::from_epoch(Duration::from_secs(1001)),
        "no timer needed"
    );
    assert_eq!(
        h.engine.metrics().reconcile_count,
        before + 2,
        "then exactly one more"
    );
    assert!(
        before > reconciles,
        "the first events already reconciled at once"
    );
}

/// The schedule entries of a machine that went away go in one recursive delete, then each of
/// its units moves with one compare-and-swap of its target, then gets its new entry: an entry
/// never exists but where its unit's target is.
#[test]
fn dead_machine_units_are_moved_entries_first_then_target_then_schedule() {
    let registry = Registry::default().machine("m1").machine("m2").job(
        "a.service",
        "",
        TargetState::Launched,
        Some("m2"),
    );
    let mut h = leader(&registry);
    h.complete_writes();
    let ks = h.ks.clone();
    h.event(
        Dir::Machines,
        Action::Expire,
        &ks.machine_object("m2"),
        None,
    );
    let writes = h.complete_writes();
    let hash = unit_text("").hash();
    assert_eq!(
        writes,
        vec![
            Request::Delete {
                key: ks.schedule_dir("m2"),
                precondition: Precondition::None,
                recursive: true
            },
            move_target(&ks, "a.service", "m2", "m1"),
            put_schedule(
                &ks,
                "a.service",
                "m1",
                schedule_json(hash, TargetState::Launched)
            ),
        ]
    );
    let events = h.take_events();
    assert!(events.contains(&EngineEvent::UnitUnscheduled {
        unit: "a.service".into(),
        machine: "m2".into(),
        reason: "target Machine(m2) went away".into()
    }));
    assert!(events.contains(&EngineEvent::UnitScheduled {
        unit: "a.service".into(),
        machine: "m1".into(),
    }));
    assert!(
        h.engine.view().schedules().keys().all(|(m, _)| m != "m2"),
        "the recursive delete is applied to the engine's own view"
    );
    assert_eq!(
        h.engine
            .metrics()
            .reconcile_failure_count
            .get("machine_away"),
        Some(&1)
    );
}

/// Found by the cluster simulator (`FLT_SIM_SEED=0xc10003`): a failed unschedule of a unit
/// whose `MachineOf=` dependent moved with it let the schedules run anyway, placing the
/// dependent on the new machine while its peer still targeted the dead one.
#[test]
fn a_failed_unschedule_holds_back_the_schedules_planned_on_it() {
    let registry = Registry::default()
        .machine("m1")
        .machine("m2")
        .job("a.service", "", TargetState::Launched, Some("m2"))
        .job(
            "b.service",
            "MachineOf=a.service",
            TargetState::Launched,
            Some("m2"),
        );
    let mut h = leader(&registry);
    h.complete_writes();
    let ks = h.ks.clone();
    h.event(
        Dir::Machines,
        Action::Expire,
        &ks.machine_object("m2"),
        None,
    );
    let entries = h.find(|r| {
        matches!(
            r,
            Request::Delete {
                recursive: true,
                ..
            }
        )
    });
    h.delete_ok(&entries);
    let move_a = move_target(&ks, "a.service", "m2", "m1");
    let first = h.find(|r| *r == move_a);
    h.answer(first.id, Err(Failure::Timeout));
    let mut writes = h.complete_writes();
    h.run_until(h.now + secs(3.0));
    writes.extend(h.complete_writes());
    let a_moved = writes.iter().position(|r| *r == move_a);
    let schedule_entry = |r: &Request| matches!(r, Request::Put { key, .. } if key.starts_with(&ks.schedule_dir("m1")));
    let first_entry = writes.iter().position(schedule_entry);
    assert!(
        a_moved.is_some() && first_entry > a_moved,
        "no schedule entry may be written before a.service is moved: {writes:#?}"
    );
    for unit in ["a.service", "b.service"] {
        assert!(
            writes.contains(&move_target(&ks, unit, "m2", "m1")),
            "{unit} not moved: {writes:#?}"
        );
        assert!(
            writes.iter().any(|r| schedule_entry(r)
                && matches!(r, Request::Put { key, .. } if *key == ks.schedule_entry("m1", unit))),
            "{unit} not scheduled on m1 on the next reconcile: {writes:#?}"
        );
    }
}

/// Found by the cluster simulator (`FLT_SIM_SEED=0xca00be`): a unit destroyed while the engine
/// scheduled it kept the target the engine's create re-made, and its schedule entry, forever.
#[test]
fn a_target_left_of_a_destroyed_job_is_unscheduled() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("a.service", "", TargetState::Launched, Some("m1"));
    let mut h = leader(&registry);
    h.complete_writes();
    let ks = h.ks.clone();
    h.event(Dir::Jobs, Action::Delete, &ks.job_object("a.service"), None);
    h.event(
        Dir::Jobs,
        Action::Delete,
        &ks.job_target_state("a.service"),
        None,
    );
    h.run_until(h.now + secs(3.0));
    let lease = ks.engine_lease();
    let mut writes = h.complete_writes();
    writes.retain(|r| !matches!(r, Request::Put { key, .. } if *key == lease));
    assert_eq!(
        writes,
        vec![
            Request::Delete {
                key: ks.schedule_entry("m1", "a.service"),
                precondition: Precondition::None,
                recursive: false
            },
            Request::Delete {
                key: ks.job_target("a.service"),
                precondition: Precondition::Value("m1".into()),
                recursive: false
            },
        ]
    );
}

#[test]
fn target_state_change_rewrites_the_schedule_record() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("a.service", "", TargetState::Launched, Some("m1"));
    let mut h = leader(&registry);
    assert!(h.complete_writes().is_empty());
    let ks = h.ks.clone();
    h.event(
        Dir::Jobs,
        Action::Set,
        &ks.job_target_state("a.service"),
        Some("loaded"),
    );
    let hash = unit_text("").hash();
    // Update-only (found by the cluster simulator, `FLT_SIM_SEED=0xca00fa`): an engine paused
    // past its lease after deciding this write must not re-create an entry that the new
    // leader removed meanwhile, scheduling the unit to two machines.
    let mut update = put_schedule(
        &ks,
        "a.service",
        "m1",
        schedule_json(hash, TargetState::Loaded),
    );
    if let Request::Put { precondition, .. } = &mut update {
        *precondition = Precondition::Present;
    }
    assert_eq!(h.complete_writes(), vec![update]);
    // Going inactive: unscheduled (schedule entry, then target).
    h.event(
        Dir::Jobs,
        Action::Set,
        &ks.job_target_state("a.service"),
        Some("inactive"),
    );
    let writes = h.complete_writes();
    assert_eq!(writes.len(), 2);
    assert!(
        matches!(&writes[0], Request::Delete { key, .. } if *key == ks.schedule_entry("m1", "a.service"))
    );
}

#[test]
fn global_units_are_mirrored_and_removed_on_destroy() {
    let registry = Registry::default().machine("m1");
    let mut h = leader(&registry);
    h.complete_writes();
    let ks = h.ks.clone();
    let file = unit_text("Global=true");
    h.submit_unit("g.service", &file, "launched");
    assert_eq!(
        h.complete_writes(),
        vec![Request::Put {
            key: ks.global_entry("g.service"),
            value: PutValue::Value(schedule_json(file.hash(), TargetState::Launched)),
            ttl: None,
            precondition: Precondition::None,
        }]
    );
    // Destroy: the whole job directory goes.
    let node = Node {
        key: ks.job_dir("g.service"),
        dir: true,
        modified_index: h.next_index(),
        ..Node::default()
    };
    let id = h.watch_id(Dir::Jobs);
    h.answer(
        id,
        Ok(Reply::Event(Event {
            action: Action::Delete,
            node,
            prev_node: None,
        })),
    );
    assert_eq!(
        h.complete_writes(),
        vec![Request::Delete {
            key: ks.global_entry("g.service"),
            precondition: Precondition::None,
            recursive: false,
        }]
    );
}

#[test]
fn stale_schedule_entries_are_removed() {
    let mut registry = Registry::default().machine("m1");
    let ks = Keyspace::default();
    registry.nodes.push((
        ks.schedule_entry("m1", "gone.service"),
        schedule_json(UnitHash::default(), TargetState::Launched),
    ));
    let mut h = leader(&registry);
    assert_eq!(
        h.complete_writes(),
        vec![Request::Delete {
            key: ks.schedule_entry("m1", "gone.service"),
            precondition: Precondition::None,
            recursive: false,
        }]
    );
}

#[test]
fn unplaceable_units_are_reported_once_with_the_reason() {
    let registry = Registry::default().machine("m1").job(
        "pinned.service",
        "MachineID=elsewhere",
        TargetState::Launched,
        None,
    );
    let mut h = leader(&registry);
    h.complete_writes();
    let reason = "no agents able to run job: no live machine has the required ID \"elsewhere\"";
    let reported: Vec<_> = h
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, EngineEvent::UnitUnplaceable { .. }))
        .collect();
    assert_eq!(
        reported,
        vec![EngineEvent::UnitUnplaceable {
            unit: "pinned.service".into(),
            reason: reason.into()
        }]
    );
    assert_eq!(
        h.engine
            .unplaceable()
            .get("pinned.service")
            .map(String::as_str),
        Some(reason)
    );
    // The safety-net reconcile does not repeat the event.
    h.advance(secs(2.0));
    assert!(
        !h.take_events()
            .iter()
            .any(|e| matches!(e, EngineEvent::UnitUnplaceable { .. }))
    );
    assert_eq!(
        h.engine.metrics().reconcile_failure_count.get("schedule"),
        Some(&2)
    );
}

#[test]
fn history_lost_rereads_the_directory_and_watches_from_the_new_index() {
    let mut h = leader(&Registry::default().machine("m1"));
    h.complete_writes();
    let id = h.watch_id(Dir::Jobs);
    h.answer(id, Err(Failure::HistoryLost { index: 500 }));
    let read = h.get(&h.ks.jobs_dir());
    h.answer(
        read.id,
        Ok(Reply::Got {
            node: Node {
                key: h.ks.jobs_dir(),
                dir: true,
                ..Node::default()
            },
            index: 600,
        }),
    );
    let watches = h.watches_from();
    assert_eq!(watches.get(&Dir::Jobs).map(|w| w.1), Some(601));
}

/// Seen on a 1,000-unit launch: the re-read after a lost watch history was older than the
/// engine's own latest write (applied from its reply), the view dropped it, and every job
/// created between the lost watch and the read stayed unscheduled until the next resync.
#[test]
fn a_reread_older_than_our_own_write_is_applied_with_that_write_on_top() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("a.service", "", TargetState::Launched, None);
    let mut h = leader(&registry);
    let ks = h.ks.clone();
    let target_a = ks.job_target("a.service");
    let put = h.find(|r| matches!(r, Request::Put { key, .. } if *key == target_a));
    h.index = 699;
    h.put_ok(&put);
    h.complete_writes();
    // The jobs watch lost its history before our write's event came back, and etcd served
    // the re-read (which finds a new job) before it applied our write.
    let id = h.watch_id(Dir::Jobs);
    h.answer(id, Err(Failure::HistoryLost { index: 900 }));
    let read = h.get(&ks.jobs_dir());
    let later = registry.job("b.service", "", TargetState::Launched, None);
    let node = later.dir(&ks.jobs_dir()).expect("jobs");
    h.answer(read.id, Ok(Reply::Got { node, index: 650 }));
    h.advance(secs(0.1));
    let writes = h.complete_writes();
    assert!(
        writes.contains(&put_target(&ks, "b.service", "m1")),
        "the job found by the re-read is not scheduled: {writes:#?}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| matches!(w, Request::Put { key, .. } if *key == target_a)),
        "our own write was undone by the older read: {writes:#?}"
    );
    assert_eq!(
        h.engine.view().jobs()["a.service"].target.as_deref(),
        Some("m1")
    );
}

#[test]
fn other_watch_failures_resume_the_watch_after_the_retry_delay() {
    let mut h = leader(&Registry::default().machine("m1"));
    h.complete_writes();
    let id = h.watch_id(Dir::Machines);
    h.event(
        Dir::Machines,
        Action::Set,
        &h.ks.machine_object("m2"),
        Some(&machine_record("m2")),
    );
    let last = h.index;
    h.answer(id, Err(Failure::Unreachable("connection refused".into())));
    assert!(h.take_commands().is_empty());
    h.advance(secs(0.5));
    assert!(h.take_commands().is_empty(), "not before the retry delay");
    h.advance(secs(0.5));
    // Nothing was missed: the watch goes on from the last event seen (etcd replays the rest).
    let watches = h.watches_from();
    assert_eq!(watches.get(&Dir::Machines).map(|w| w.1), Some(last + 1));
    assert_ne!(h.watch_id(Dir::Machines), id);
}

#[test]
fn unanswered_write_times_out_as_a_task_failure_and_late_answers_are_ignored() {
    let registry =
        Registry::default()
            .machine("m1")
            .job("hello.service", "", TargetState::Launched, None);
    let mut h = leader(&registry);
    let put = h.find(|r| matches!(r, Request::Put { .. }));
    h.advance(secs(5.0));
    let failed: Vec<_> = h
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, EngineEvent::TaskFailed { .. }))
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(matches!(
        &failed[0],
        EngineEvent::TaskFailed {
            failure: Failure::Timeout,
            ..
        }
    ));
    assert_eq!(
        h.engine
            .metrics()
            .task_failure_count
            .get("attemptscheduleunit"),
        Some(&1)
    );
    // A late answer changes nothing.
    h.take_commands();
    h.put_ok(&put);
    assert!(h.take_commands().is_empty());
}

#[test]
fn shutdown_releases_the_lease_with_its_index() {
    let mut h = leader(&Registry::default().machine("m1"));
    h.complete_writes();
    let index = h.index;
    h.take_events();
    h.engine.shutdown(h.now);
    h.drain();
    let release = h.find(|r| matches!(r, Request::Delete { .. }));
    assert_eq!(
        release.request,
        Request::Delete {
            key: h.ks.engine_lease(),
            precondition: Precondition::Index(index),
            recursive: false,
        }
    );
    assert!(!h.engine.is_leader());
    h.delete_ok(&release);
    assert_eq!(
        h.take_events(),
        vec![EngineEvent::LeaseReleased, EngineEvent::Stopped]
    );
    assert_eq!(h.engine.poll_timeout(), None);
}

#[test]
fn periodic_resync_rereads_everything_without_restarting_watches() {
    let mut cfg = config();
    cfg.request_timeout = secs(60.0);
    let mut h = leader_with(cfg, &Registry::default().machine("m1"));
    h.complete_writes();
    h.run_until(h.now + secs(80.0));
    let reads = h.take_recursive_reads();
    assert_eq!(reads.len(), 5);
    h.collect_watches();
    assert!(
        h.watches.len() == 5
            && h.take_commands()
                .iter()
                .all(|c| !matches!(c.request, Request::Watch { .. }))
    );
}

#[test]
fn poll_timeout_names_the_reason() {
    let mut h = leader(&Registry::default().machine("m1"));
    h.complete_writes();
    let (at, why) = h.engine.poll_timeout().unwrap();
    assert_eq!(why, EngineTimer::Tick);
    assert_eq!(at, h.now + secs(2.0));
}

#[test]
fn a_burst_of_events_makes_one_plan_after_the_debounce() {
    let mut cfg = config();
    cfg.reconcile_debounce = secs(0.05);
    let registry = Registry::default().machine("m1").machine("m2");
    let mut h = leader_with(cfg, &registry);
    h.advance(secs(0.05));
    h.complete_writes();
    let ks = h.ks.clone();
    let before = h.engine.metrics().reconcile_count;
    let file = unit_text("");
    h.event(
        Dir::Units,
        Action::Create,
        &ks.unit(&file.hash()),
        Some(&unit_record(&file)),
    );
    for name in ["a.service", "b.service", "c.service"] {
        h.event(
            Dir::Jobs,
            Action::Set,
            &ks.job_object(name),
            Some(&job_object(name, file.hash())),
        );
        h.event(
            Dir::Jobs,
            Action::Set,
            &ks.job_target_state(name),
            Some("launched"),
        );
    }
    assert!(h.take_commands().is_empty());
    assert_eq!(
        h.engine.poll_timeout().map(|t| t.1),
        Some(EngineTimer::Reconcile)
    );
    h.advance(secs(0.05));
    assert_eq!(h.engine.metrics().reconcile_count, before + 1);
    let targets: Vec<Request> = h.take_commands().into_iter().map(|c| c.request).collect();
    assert_eq!(
        targets,
        vec![
            put_target(&ks, "a.service", "m1"),
            put_target(&ks, "b.service", "m2"),
            put_target(&ks, "c.service", "m1"),
        ]
    );
}

mod random {
    //! Random answers, failures, delays and watch events: the engine must never write cluster
    //! state unless it holds a lease it still trusts, and must never panic.

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        /// Answer the pending command at this position with this outcome.
        Answer(usize, u8),
        Advance(u16),
        /// A job (target state) or machine (presence) change on a watch.
        Job(u8, u8),
        Machine(u8, bool),
        Shutdown,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => (any::<usize>(), 0u8..6).prop_map(|(i, o)| Step::Answer(i, o)),
            3 => (0u16..4000).prop_map(Step::Advance),
            2 => (0u8..4, 0u8..3).prop_map(|(u, s)| Step::Job(u, s)),
            1 => (0u8..3, any::<bool>()).prop_map(|(m, up)| Step::Machine(m, up)),
            1 => Just(Step::Shutdown),
        ]
    }

    fn is_cluster_write(ks: &Keyspace, request: &Request) -> bool {
        let key = match request {
            // Creating a missing watched directory (empty, create-only) changes no cluster state.
            Request::Put {
                key,
                value: PutValue::Directory,
                ttl: None,
                precondition: Precondition::Absent,
            } if Dir::ALL.iter().any(|d| d.key(ks) == *key) => return false,
            Request::Put { key, .. } | Request::Delete { key, .. } => key,
            _ => return false,
        };
        key.starts_with(&ks.schedules_dir())
            || key.starts_with(&ks.globals_dir())
            || key.starts_with(&ks.jobs_dir())
    }

    fn reply(h: &mut Harness, c: &Command, outcome: u8) -> Result<Reply, Failure> {
        let ks = h.ks.clone();
        match outcome {
            1 => return Err(Failure::NotFound),
            2 => return Err(Failure::PreconditionFailed),
            3 => return Err(Failure::Unreachable("refused".into())),
            _ => {}
        }
        let index = h.next_index();
        Ok(match &c.request {
            Request::Get { key, .. } if *key == ks.engine_version() => Reply::Got {
                node: Node {
                    key: key.clone(),
                    value: Some("1".into()),
                    ..Node::default()
                },
                index,
            },
            Request::Get { key, .. } if *key == ks.engine_lease() => {
                let holder = if outcome == 4 { "m2" } else { ME };
                Reply::Got {
                    node: Node {
                        key: key.clone(),
                        value: Some(format!(r#"{{"MachineID":"{holder}","Version":1}}"#)),
                        modified_index: index,
                        ttl: Some(5),
                        ..Node::default()
                    },
                    index,
                }
            }
            Request::Get { key, .. } => {
                let registry = Registry::default()
                    .machine("m1")
                    .machine("m2")
                    .job("a.service", "", TargetState::Launched, Some("m1"))
                    .job(
                        "b.service",
                        "Conflicts=a.service",
                        TargetState::Launched,
                        None,
                    );
                let node = registry.dir(key).unwrap_or(Node {
                    key: key.clone(),
                    dir: true,
                    ..Node::default()
                });
                Reply::Got { node, index }
            }
            Request::Put { key, value, .. } => Reply::Put {
                node: Node {
                    key: key.clone(),
                    value: match value {
                        PutValue::Value(v) => Some(v.clone()),
                        _ => None,
                    },
                    modified_index: index,
                    ..Node::default()
                },
            },
            Request::Delete { .. } => Reply::Deleted { index },
            Request::Watch { .. } => return Err(Failure::HistoryLost { index }),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn never_writes_without_a_trusted_lease(steps in proptest::collection::vec(step(), 1..120)) {
            let mut h = Harness::new(config());
            let ks = h.ks.clone();
            let mut pending: Vec<Command> = Vec::new();
            for step in steps {
                match step {
                    Step::Answer(i, outcome) if !pending.is_empty() => {
                        let c = pending.remove(i % pending.len());
                        let result = reply(&mut h, &c, outcome);
                        h.answer(c.id, result);
                    }
                    Step::Answer(..) => {}
                    Step::Advance(ms) => h.advance(Duration::from_millis(u64::from(ms))),
                    Step::Job(u, s) => {
                        let name = format!("{}.service", ["a", "b", "c", "d"][usize::from(u)]);
                        let state = ["inactive", "loaded", "launched"][usize::from(s)];
                        if h.watches.contains_key(&Dir::Jobs) {
                            h.event(Dir::Jobs, Action::Set, &ks.job_target_state(&name), Some(state));
                        }
                    }
                    Step::Machine(m, up) => {
                        let id = ["m1", "m2", "m3"][usize::from(m)];
                        if h.watches.contains_key(&Dir::Machines) {
                            if up {
                                let record = machine_record(id);
                                h.event(Dir::Machines, Action::Set, &ks.machine_object(id), Some(&record));
                            } else {
                                h.event(Dir::Machines, Action::Expire, &ks.machine_object(id), None);
                            }
                        }
                    }
                    Step::Shutdown => {
                        h.engine.shutdown(h.now);
                        h.drain();
                    }
                }
                h.collect_watches();
                let new = h.take_commands();
                let writes = new.iter().filter(|c| is_cluster_write(&ks, &c.request)).count();
                if writes > 0 {
                    let trusted = matches!(h.engine.lease(),
                        LeaseState::Leader { valid_until, act_after, .. }
                            if h.now < *valid_until && h.now >= *act_after);
                    prop_assert!(trusted, "{writes} writes without a trusted lease: {:?}", h.engine.lease());
                }
                pending.extend(new);
                h.take_events();
            }
        }
    }
}

/// Two engines contend for one lease key, modelled here with etcd's TTL and prevIndex rules;
/// engine A is cut off from the registry after it leads. B must not lead before A has stopped
/// believing it does.
#[test]
fn two_engines_never_both_believe_they_lead() {
    struct LeaseKey {
        value: Option<String>,
        index: u64,
        expires: Instant,
    }
    let start = Instant::from_epoch(Duration::from_secs(1000));
    let mut engines = [
        Engine::new(EngineConfig::new("a"), start),
        Engine::new(EngineConfig::new("b"), start + secs(0.5)),
    ];
    let ks = Keyspace::default();
    let mut key = LeaseKey {
        value: None,
        index: 0,
        expires: start,
    };
    let mut index = 10;
    let cut_at = start + secs(7.0);
    let mut a_led = false;
    let mut b_led_at = None;
    let mut now = start;
    // Watches of the lease directory, by engine: told when the key expires.
    let mut lease_watches: Vec<(usize, OpId)> = Vec::new();
    while now < start + secs(40.0) {
        if key.value.is_some() && now >= key.expires {
            key.value = None;
            index += 1;
            for (e, id) in lease_watches.drain(..) {
                let event = Event {
                    action: Action::Expire,
                    node: Node {
                        key: ks.engine_lease(),
                        modified_index: index,
                        ..Node::default()
                    },
                    prev_node: None,
                };
                let result = Ok(Reply::Event(event));
                engines[e].handle_input(Response { id, result }, now);
            }
        }
        for (e, engine) in engines.iter_mut().enumerate() {
            engine.handle_timeout(now);
            while let Some(c) = engine.poll_command() {
                if e == 0 && now >= cut_at {
                    continue; // A's requests are lost: they time out inside A.
                }
                index += 1;
                let result = match &c.request {
                    Request::Get { key: k, .. } if *k == ks.engine_version() => Ok(Reply::Got {
                        node: Node {
                            key: k.clone(),
                            value: Some("1".into()),
                            ..Node::default()
                        },
                        index,
                    }),
                    Request::Get { key: k, .. } if *k == ks.engine_lease() => match &key.value {
                        None => Err(Failure::NotFound),
                        Some(v) => Ok(Reply::Got {
                            node: Node {
                                key: k.clone(),
                                value: Some(v.clone()),
                                modified_index: key.index,
                                ..Node::default()
                            },
                            index,
                        }),
                    },
                    Request::Put {
                        key: k,
                        value: value @ (PutValue::Value(_) | PutValue::RefreshTtl),
                        ttl,
                        precondition,
                    } if *k == ks.engine_lease() => {
                        let v = match (value, &key.value) {
                            (PutValue::Value(v), _) | (_, Some(v)) => v.clone(),
                            _ => String::new(),
                        };
                        let holds = match precondition {
                            Precondition::Absent => key.value.is_none(),
                            Precondition::Index(i) => key.value.is_some() && *i == key.index,
                            _ => false,
                        };
                        if holds {
                            key.value = Some(v.clone());
                            key.index = index;
                            key.expires = now + ttl.unwrap_or_default();
                            Ok(Reply::Put {
                                node: Node {
                                    key: k.clone(),
                                    value: Some(v.clone()),
                                    modified_index: index,
                                    ..Node::default()
                                },
                            })
                        } else {
                            Err(Failure::PreconditionFailed)
                        }
                    }
                    Request::Get { key: k, .. } => {
                        // The lease directory holds the lease; the other directories are empty.
                        let nodes = match &key.value {
                            Some(v) if *k == ks.lease_dir() => vec![Node {
                                key: ks.engine_lease(),
                                value: Some(v.clone()),
                                modified_index: key.index,
                                ..Node::default()
                            }],
                            _ => Vec::new(),
                        };
                        Ok(Reply::Got {
                            node: Node {
                                key: k.clone(),
                                dir: true,
                                nodes,
                                ..Node::default()
                            },
                            index,
                        })
                    }
                    Request::Watch { prefix, .. } => {
                        if *prefix == ks.lease_dir() {
                            lease_watches.push((e, c.id));
                        }
                        continue;
                    }
                    Request::Put { .. } => Err(Failure::Rejected {
                        code: 0,
                        message: "unexpected".into(),
                    }),
                    Request::Delete { .. } => Ok(Reply::Deleted { index }),
                };
                engine.handle_input(Response { id: c.id, result }, now);
            }
            while engine.poll_event().is_some() {}
        }
        let [a, b] = &engines;
        assert!(
            !(a.is_leader() && b.is_leader()),
            "both lead at {:?}",
            now - start
        );
        a_led |= a.is_leader();
        if b.is_leader() && b_led_at.is_none() {
            b_led_at = Some(now);
        }
        now += secs(0.1);
    }
    assert!(a_led, "a acquired the free lease first");
    let b_led_at = b_led_at.expect("b takes over once a's lease expired");
    assert!(b_led_at >= cut_at + secs(3.0), "{:?}", b_led_at - start);
}

#[test]
fn without_watches_every_directory_is_reread_each_tick() {
    let mut cfg = config();
    cfg.use_watches = false;
    let mut h = leader_with(cfg, &Registry::default().machine("m1"));
    assert!(h.watches.is_empty());
    h.complete_writes();
    h.advance(secs(2.0));
    let reads = h.take_recursive_reads().len();
    assert_eq!(reads, 5);
}

#[test]
fn on_an_empty_registry_the_directories_are_created_and_watched_at_once() {
    let mut h = Harness::new(config());
    // Every directory is missing: each is created, read empty, and watched from that read.
    let read_at = h.answer_reads(&Registry::default());
    let watches = h.watches_from();
    assert_eq!(watches.len(), 5);
    for (dir, (_, from)) in &watches {
        assert_eq!(*from, read_at[dir] + 1, "{dir:?}");
    }
    h.acquire_lease();
    h.complete_writes();
    let start = h.now;
    // A machine and a unit appear after start: scheduled on their watch events, no timer.
    let ks = h.ks.clone();
    let file = unit_text("");
    h.event(
        Dir::Machines,
        Action::Set,
        &ks.machine_object("m1"),
        Some(&machine_record("m1")),
    );
    h.submit_unit("a.service", &file, "launched");
    let done = h.complete_writes();
    assert_eq!(done[0], put_target(&ks, "a.service", "m1"));
    assert_eq!(h.now, start);
    assert!(h.take_events().contains(&EngineEvent::UnitScheduled {
        unit: "a.service".into(),
        machine: "m1".into()
    }));
}

#[test]
fn without_watches_an_empty_registry_is_created_then_polled() {
    let mut cfg = config();
    cfg.use_watches = false;
    let mut h = Harness::new(cfg);
    h.answer_reads(&Registry::default());
    assert!(h.engine.is_synced());
    assert!(h.watches_from().is_empty());
    h.acquire_lease();
    h.complete_writes();
    h.advance(secs(2.0));
    let reads = h.take_recursive_reads().len();
    assert_eq!(reads, 5);
}

#[test]
fn unanswered_directory_reads_count_as_failures_and_are_sent_again() {
    let mut h = Harness::new(config());
    h.take_commands();
    h.advance(secs(5.0));
    // The five directory reads and the engine version read.
    assert_eq!(h.engine.metrics().registry_failures.get("get"), Some(&6));
    let rereads = h.take_recursive_reads().len();
    assert_eq!(rereads, 5);
    assert!(!h.engine.is_synced());
}
