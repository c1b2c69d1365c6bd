//! One `Node` (engine + agent + API front end) against the etcd and systemd models.

use crate::front_support::write_hello_unit;
use crate::harness::{Etcd, Systemd};
use flt_core::api::front::{API_COMPONENT, ApiRequest, ApiRequestId, ApiResponse};
use flt_core::engine::EngineEvent;
use flt_core::node::{Command, Event, Input, Node, NodeConfig};
use flt_core::registry::{Keyspace, OpIdGen, Request};
use flt_core::time::Instant;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

struct Cluster {
    node: Node,
    etcd: Etcd,
    systemd: Systemd,
    now: Instant,
    events: Vec<Event>,
    answers: BTreeMap<ApiRequestId, ApiResponse>,
    cancelled: Vec<flt_core::registry::OpId>,
    next_request: u64,
    /// The API front end's registry requests are never answered (a slow or stuck front end).
    silent_api: bool,
}

fn config() -> NodeConfig {
    let mut config = NodeConfig::new("m1");
    config.public_ip = "10.0.0.1".into();
    config.version = "test".into();
    config.seed = 11;
    config
}

impl Cluster {
    fn new(config: NodeConfig) -> Cluster {
        Cluster::build(config, false)
    }

    fn build(config: NodeConfig, silent_api: bool) -> Cluster {
        Cluster::build_on(config, silent_api, Etcd::default())
    }

    /// A node started against `etcd` as it is.
    fn build_on(config: NodeConfig, silent_api: bool, etcd: Etcd) -> Cluster {
        let mut cluster = Cluster {
            node: Node::new(config, Instant::ZERO),
            etcd,
            systemd: Systemd::default(),
            now: Instant::ZERO,
            events: Vec::new(),
            answers: BTreeMap::new(),
            cancelled: Vec::new(),
            next_request: 0,
            silent_api,
        };
        cluster
            .node
            .handle_input(Input::Inventory(Vec::new()), Instant::ZERO);
        cluster.pump();
        cluster
    }

    fn pump(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            while let Some(command) = self.node.poll_command() {
                moved = true;
                match command {
                    Command::Registry { id, .. }
                        if self.silent_api && OpIdGen::new(API_COMPONENT).owns(id) => {}
                    Command::Registry { id, request } => self.etcd.handle(self.now, id, request),
                    Command::Systemd { id, request } => self.systemd.answer(id, request),
                    Command::CancelWatch { id } => self.cancelled.push(id),
                }
            }
            while let Some(event) = self.node.poll_event() {
                self.events.push(event);
            }
            while let Some((id, answer)) = self.node.poll_api_response() {
                self.answers.insert(id, answer);
            }
            if let Some(response) = self.etcd.next_response() {
                moved = true;
                self.node.handle_input(Input::Registry(response), self.now);
            } else if let Some(input) = self.systemd.next_input() {
                moved = true;
                let input = match input {
                    flt_core::agent::Input::Systemd(reply) => Input::Systemd(reply),
                    flt_core::agent::Input::UnitObserved(unit) => Input::UnitObserved(unit),
                    other => panic!("the systemd model sent {other:?}"),
                };
                self.node.handle_input(input, self.now);
            }
            if !moved {
                return;
            }
        }
        panic!("the node never went idle");
    }

    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..1_000_000 {
            self.pump();
            let next = [
                self.node.poll_timeout().map(|(at, _)| at),
                self.etcd.next_expiry(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at <= target => {
                    self.now = self.now.max(at);
                    self.etcd.expire(self.now);
                    self.node.handle_timeout(self.now);
                }
                _ => {
                    self.now = target;
                    self.etcd.expire(self.now);
                    self.node.handle_timeout(self.now);
                    self.pump();
                    return;
                }
            }
        }
        panic!("time never reached {target:?}");
    }

    /// One API request handed to the node, nothing else run: its id.
    fn send(&mut self, method: &str, path: &str, body: &str) -> ApiRequestId {
        self.next_request += 1;
        let id = ApiRequestId(self.next_request);
        let content_types = if body.is_empty() {
            Vec::new()
        } else {
            vec!["application/json".to_string()]
        };
        let request = ApiRequest {
            method: method.into(),
            path: path.into(),
            content_types,
            body: body.as_bytes().to_vec(),
        };
        self.node.handle_api_request(id, request, self.now);
        id
    }

    /// One API request, with everything it sets off run to the end: its answer.
    fn request(&mut self, method: &str, path: &str, body: &str) -> ApiResponse {
        let id = self.send(method, path, body);
        self.pump();
        self.answers
            .remove(&id)
            .unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    fn get_json(&mut self, path: &str) -> Value {
        let answer = self.request("GET", path, "");
        assert_eq!(answer.status, 200, "{}", answer.body_text());
        serde_json::from_slice(&answer.body).expect("JSON")
    }
}

#[test]
fn a_unit_put_through_the_api_is_scheduled_started_and_reported_launched() {
    // An empty registry: nothing has been created yet.
    let mut c = Cluster::new(config());
    assert!(c.events.contains(&Event::ApiReady));
    c.advance(Duration::from_secs(3));
    assert!(
        c.node.engine().is_some_and(|e| e.is_leader()),
        "{:?}",
        c.events
    );
    assert!(c.node.agent().is_registered());
    let machines = c.get_json("/flt/v1/machines");
    assert_eq!(
        machines,
        json!({"machines": [{"id": "m1", "primaryIP": "10.0.0.1"}]})
    );

    let body = json!({
        "desiredState": "launched",
        "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/hello"}]
    });
    let answer = c.request("PUT", "/flt/v1/units/hello.service", &body.to_string());
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    // Read-your-writes: desired at once, not yet current.
    let unit = c.get_json("/flt/v1/units/hello.service");
    assert_eq!(unit["desiredState"], "launched");
    assert_eq!(unit["currentState"], "inactive");

    c.advance(Duration::from_secs(1));
    assert!(c.events.iter().any(|e| matches!(
        e,
        Event::Engine(EngineEvent::UnitScheduled { unit, machine })
            if unit == "hello.service" && machine == "m1"
    )));
    let ks = Keyspace::default();
    assert_eq!(c.etcd.value(&ks.job_target("hello.service")), Some("m1"));
    assert_eq!(c.systemd.active("hello.service"), Some("active"));
    assert!(
        c.systemd
            .actions()
            .contains(&"start hello.service".to_string())
    );

    let unit = c.get_json("/flt/v1/units/hello.service");
    assert_eq!(unit["currentState"], "launched", "{unit}");
    assert_eq!(unit["machineID"], "m1");
    let states = c.get_json("/flt/v1/state");
    assert_eq!(
        states["states"][0]["systemdActiveState"], "active",
        "{states}"
    );
    assert_eq!(states["states"][0]["machineID"], "m1");

    // Stop it: desired loaded; the agent stops it and the API says loaded.
    let answer = c.request(
        "PUT",
        "/flt/v1/units/hello.service",
        &json!({"desiredState": "loaded"}).to_string(),
    );
    assert_eq!(answer.status, 204);
    c.advance(Duration::from_secs(1));
    assert_eq!(c.systemd.active("hello.service"), Some("inactive"));
    assert_eq!(
        c.get_json("/flt/v1/units/hello.service")["currentState"],
        "loaded"
    );

    // Destroy: unscheduled, unloaded, gone from the API.
    assert_eq!(
        c.request("DELETE", "/flt/v1/units/hello.service", "")
            .status,
        204
    );
    c.advance(Duration::from_secs(1));
    assert_eq!(c.systemd.active("hello.service"), None);
    assert_eq!(c.get_json("/flt/v1/units"), json!({}));
}

#[test]
fn a_node_can_move_to_the_driver_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Node>();
}

#[test]
fn registry_answers_reach_the_component_that_asked() {
    // The agent and the API front end start at once; the engine once the machine is registered
    // (it does not wait for the API front end).
    let fresh = Node::new(config(), Instant::ZERO);
    assert!(fresh.engine().is_none());
    assert!(!fresh.api().is_ready());
    let c = Cluster::build(config(), true);
    assert!(c.node.agent().is_registered());
    assert!(c.node.engine().is_some());
    assert!(!c.node.api().is_ready());
    let mut c = Cluster::new(config());
    c.advance(Duration::from_secs(1));
    // Every component got its answers: the agent registered, the engine read the registry,
    // the front end is ready.
    assert!(c.node.agent().is_registered());
    assert!(c.node.engine().is_some_and(|e| e.is_synced()));
    assert!(c.node.api().is_ready());
    // An answer to an id nobody handed out is ignored.
    c.node.handle_input(
        Input::Registry(flt_core::registry::Response {
            id: flt_core::registry::OpId(7 << 56 | 1),
            result: Err(flt_core::registry::Failure::Timeout),
        }),
        c.now,
    );
    c.pump();
}

#[test]
fn a_node_refused_registration_never_contends_for_the_engine_lease() {
    // Another host registered machine ID m1 first, and its engine holds the lease under that ID:
    // an fltd given the same ID must not take the lease over as "ours from before a restart".
    let ks = Keyspace::default();
    let mut etcd = Etcd::default();
    let theirs = r#"{"ID":"m1","PublicIP":"10.0.0.9","Metadata":{},"Version":"test"}"#;
    etcd.set(Instant::ZERO, &ks.machine_object("m1"), theirs);
    etcd.set(Instant::ZERO, &ks.engine_version(), "1");
    etcd.set(
        Instant::ZERO,
        &ks.engine_lease(),
        r#"{"MachineID":"m1","Version":1}"#,
    );
    let mut c = Cluster::build_on(config(), false, etcd);
    c.advance(Duration::from_secs(20));
    assert!(!c.node.agent().is_registered());
    assert!(c.events.iter().any(|e| matches!(
        e,
        Event::Agent(flt_core::agent::Event::DuplicateMachineId { .. })
    )));
    assert!(c.node.engine().is_none());
    let lease = ks.engine_lease();
    let touched: Vec<_> = c
        .etcd
        .log
        .iter()
        .filter(|(_, request)| format!("{request:?}").contains(&lease))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
    assert_eq!(c.etcd.value(&ks.machine_object("m1")), Some(theirs));
}

#[test]
fn disable_engine_runs_no_engine_and_the_api_still_serves() {
    let mut config = config();
    config.disable_engine = true;
    let mut c = Cluster::new(config);
    c.advance(Duration::from_secs(3));
    assert!(c.node.engine().is_none());
    assert!(
        !c.etcd.exists(&Keyspace::default().engine_lease()),
        "nobody contends for the lease"
    );
    let body = json!({
        "desiredState": "launched",
        "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/hello"}]
    });
    assert_eq!(
        c.request("PUT", "/flt/v1/units/hello.service", &body.to_string())
            .status,
        201
    );
    c.advance(Duration::from_secs(3));
    assert_eq!(
        c.get_json("/flt/v1/units/hello.service")["currentState"],
        "inactive",
        "no engine: never scheduled"
    );
}

#[test]
fn shutdown_releases_the_lease_and_cancels_the_api_watches() {
    let mut c = Cluster::new(config());
    c.advance(Duration::from_secs(3));
    let ks = Keyspace::default();
    assert!(c.etcd.exists(&ks.engine_lease()));
    // Its own watch of P/unit-states (jobs, units and machines come through the engine's).
    let watches = c.node.api().watch_ids();
    assert_eq!(watches.len(), 1);
    c.node.shutdown(c.now);
    c.pump();
    assert!(c.node.is_stopped());
    assert!(!c.etcd.exists(&ks.engine_lease()));
    assert_eq!(c.cancelled, watches);
    assert!(
        c.etcd.exists(&ks.machine_object("m1")),
        "a plain stop leaves presence to expire"
    );
    assert_eq!(c.request("GET", "/flt/v1/units", "").status, 503);
}

#[test]
fn the_api_front_end_follows_jobs_units_and_machines_through_the_engine() {
    let mut c = Cluster::new(config());
    c.advance(Duration::from_secs(3));
    let ks = Keyspace::default();
    // Each directory is watched once by this node, not once per component.
    let watches = |c: &Cluster, dir: &str| {
        c.etcd
            .log
            .iter()
            .filter(
                |(_, request)| matches!(request, Request::Watch { prefix, .. } if prefix == dir),
            )
            .count()
    };
    for dir in [ks.jobs_dir(), ks.units_dir(), ks.machines_dir()] {
        assert_eq!(watches(&c, &dir), 1, "watches of {dir}");
    }
    let states = ks.unit_states_dir();
    assert_eq!(watches(&c, &states), 1, "the front end's own watch");
    assert!(c.node.api().is_ready());
    // A unit another node writes reaches the API through the engine's watches.
    write_hello_unit(&mut c.etcd, c.now, "inactive");
    c.pump();
    assert_eq!(
        c.get_json("/flt/v1/units/hello.service")["desiredState"],
        "inactive"
    );
    // The front end's own write is read back at once, before any watch event.
    let body = json!({"desiredState": "loaded"}).to_string();
    c.send("PUT", "/flt/v1/units/hello.service", &body);
    // Answer the write only: the watch events it causes stay queued.
    let Some(Command::Registry {
        id: write_id,
        request,
    }) = c.node.poll_command()
    else {
        panic!("the PUT sent no write");
    };
    assert!(OpIdGen::new(API_COMPONENT).owns(write_id));
    c.etcd.handle(c.now, write_id, request);
    let mut held = Vec::new();
    while let Some(response) = c.etcd.next_response() {
        if response.id == write_id {
            c.node.handle_input(Input::Registry(response), c.now);
        } else {
            held.push(response);
        }
    }
    assert!(!held.is_empty(), "the engine's watch saw the write");
    assert_eq!(c.node.poll_api_response().map(|(_, a)| a.status), Some(204));
    c.send("GET", "/flt/v1/units/hello.service", "");
    let (_, answer) = c.node.poll_api_response().expect("GET answered at once");
    let unit: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(unit["desiredState"], "loaded");
    for response in held {
        c.node.handle_input(Input::Registry(response), c.now);
    }
    c.pump();
    assert_eq!(
        c.get_json("/flt/v1/units/hello.service")["desiredState"],
        "loaded"
    );
}

#[test]
fn host_shutdown_also_deletes_presence_and_unit_states() {
    let mut c = Cluster::new(config());
    c.advance(Duration::from_secs(3));
    let ks = Keyspace::default();
    c.node.host_shutdown(c.now);
    c.pump();
    assert!(c.node.is_stopped());
    assert!(!c.etcd.exists(&ks.machine_object("m1")));
    assert!(!c.etcd.exists(&ks.machine_states_dir("m1")));
}

#[test]
fn the_engine_works_on_an_empty_registry_while_the_api_front_end_gets_no_answers() {
    let mut c = Cluster::build(config(), true);
    c.advance(Duration::from_secs(3));
    assert!(
        !c.node.api().is_ready(),
        "the front end never got an answer"
    );
    assert!(
        c.node
            .engine()
            .is_some_and(|e| e.is_leader() && e.is_synced()),
        "{:?}",
        c.events
    );
    // Another node's API writes a unit (unit file, job object, desired state).
    let ks = Keyspace::default();
    write_hello_unit(&mut c.etcd, c.now, "launched");
    // Seen through the engine's watches at once, not at its resync a minute later.
    c.advance(Duration::from_millis(500));
    assert_eq!(c.etcd.value(&ks.job_target("hello.service")), Some("m1"));
    assert!(c.events.iter().any(|e| matches!(
        e,
        Event::Engine(EngineEvent::UnitScheduled { unit, .. }) if unit == "hello.service"
    )));
    c.advance(Duration::from_millis(500));
    assert_eq!(c.systemd.active("hello.service"), Some("active"));
}
