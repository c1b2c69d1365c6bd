//! An [`ApiFront`] wired to the etcd model, on a clock that only moves when told.

use crate::harness::Etcd;
use flt_core::api::front::{ApiConfig, ApiFront, ApiRequest, ApiRequestId, ApiResponse};
use flt_core::registry::Keyspace;
use flt_core::registry::records::{JobRecord, TargetState, UnitFileRecord, UnitStateRecord};
use flt_core::registry::{Record, Response};
use flt_core::time::Instant;
use flt_core::unit::{UnitFile, UnitOption};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Front {
    pub front: ApiFront,
    pub etcd: Etcd,
    pub now: Instant,
    pub ks: Keyspace,
    next_request: u64,
    pub answers: BTreeMap<ApiRequestId, ApiResponse>,
    /// Watch events held back instead of delivered (to test read-your-writes).
    pub hold_watch_events: bool,
    pub held: Vec<Response>,
}

pub fn unit_file(exec: &str) -> UnitFile {
    UnitFile::from_options(vec![UnitOption::new("Service", "ExecStart", exec)])
}

impl Front {
    /// A front end whose etcd is not yet answered.
    pub fn unstarted(token_limit: u16) -> Front {
        let config = ApiConfig {
            token_limit,
            ..ApiConfig::default()
        };
        Front {
            front: ApiFront::new(config, Instant::ZERO),
            etcd: Etcd::default(),
            now: Instant::ZERO,
            ks: Keyspace::default(),
            next_request: 0,
            answers: BTreeMap::new(),
            hold_watch_events: false,
            held: Vec::new(),
        }
    }

    /// A front end that has read the (empty) registry.
    pub fn ready() -> Front {
        let mut f = Front::unstarted(100);
        f.pump();
        assert!(f.front.is_ready());
        f
    }

    pub fn pump(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            while let Some(command) = self.front.poll_command() {
                moved = true;
                self.etcd.handle(self.now, command.id, command.request);
            }
            while let Some((id, answer)) = self.front.poll_response() {
                self.answers.insert(id, answer);
            }
            if let Some(response) = self.etcd.next_response() {
                moved = true;
                let watch_event = self.front.watch_ids().contains(&response.id);
                if self.hold_watch_events && watch_event {
                    self.held.push(response);
                } else {
                    assert!(self.front.handle_response(response, self.now));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the front end never went idle");
    }

    /// Moves the clock, firing the front end's timers.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.front.handle_timeout(self.now);
        self.pump();
    }

    /// Sends a request, pumps, and returns the answer if there is one yet.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        content_types: &[&str],
        body: &str,
    ) -> (ApiRequestId, Option<ApiResponse>) {
        self.next_request += 1;
        let id = ApiRequestId(self.next_request);
        let request = ApiRequest {
            method: method.into(),
            path: path.into(),
            content_types: content_types.iter().map(|c| c.to_string()).collect(),
            body: body.as_bytes().to_vec(),
        };
        self.front.handle_request(id, request, self.now);
        self.pump();
        (id, self.answers.remove(&id))
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str) -> ApiResponse {
        let types: &[&str] = if body.is_empty() {
            &[]
        } else {
            &["application/json"]
        };
        self.request_typed(method, path, types, body)
    }

    pub fn request_typed(
        &mut self,
        method: &str,
        path: &str,
        content_types: &[&str],
        body: &str,
    ) -> ApiResponse {
        let (_, answer) = self.try_request(method, path, content_types, body);
        answer.unwrap_or_else(|| panic!("no answer to {method} {path}"))
    }

    pub fn get_json(&mut self, path: &str) -> serde_json::Value {
        let answer = self.request("GET", path, "");
        assert_eq!(answer.status, 200, "{path}: {}", answer.body_text());
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        serde_json::from_slice(&answer.body).expect("JSON body")
    }

    /// Writes a unit straight into the registry, as another fltd's API would.
    pub fn store_unit(&mut self, name: &str, file: &UnitFile, target: TargetState) {
        let hash = file.hash();
        let raw = UnitFileRecord {
            raw: file.serialize(),
        };
        self.etcd.set(self.now, &self.ks.unit(&hash), &raw.encode());
        let object = JobRecord {
            name: name.into(),
            unit_hash: hash.0,
        };
        self.etcd
            .set(self.now, &self.ks.job_object(name), &object.encode());
        self.etcd
            .set(self.now, &self.ks.job_target_state(name), target.as_str());
    }

    pub fn store_state(&mut self, machine: &str, name: &str, active: &str, sub: &str) {
        let mut record = UnitStateRecord {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            unit_hash: "ab".repeat(20),
            ..UnitStateRecord::default()
        };
        record.machine_state.id = machine.into();
        self.etcd.set(
            self.now,
            &self.ks.unit_state(machine, name),
            &record.encode(),
        );
    }

    pub fn store_machine(&mut self, id: &str, ip: &str, metadata: &[(&str, &str)]) {
        let metadata: BTreeMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let record = serde_json::json!({
            "ID": id, "PublicIP": ip, "Metadata": metadata,
            "Capabilities": {"DISABLE_ENGINE": false, "GRPC": false}, "Version": "v1"
        });
        self.etcd
            .set(self.now, &self.ks.machine_object(id), &record.to_string());
    }
}

/// The JSON error entity of an answer: (code, message).
pub fn error_of(answer: &ApiResponse) -> (u64, String) {
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON error body");
    (
        v["error"]["code"].as_u64().unwrap_or(0),
        v["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

/// What another node's API writes for `hello.service` (`ExecStart=/bin/hello`): the unit file,
/// the job object and the desired state, straight into the etcd model.
pub fn write_hello_unit(etcd: &mut Etcd, now: Instant, desired: &str) {
    let ks = Keyspace::default();
    let file = unit_file("/bin/hello");
    let hash = file.hash();
    let raw = serde_json::to_string(&UnitFileRecord {
        raw: file.serialize(),
    })
    .expect("json");
    let job = serde_json::to_string(&JobRecord {
        name: "hello.service".into(),
        unit_hash: hash.0,
    })
    .expect("json");
    etcd.set(now, &ks.unit(&hash), &raw);
    etcd.set(now, &ks.job_object("hello.service"), &job);
    etcd.set(now, &ks.job_target_state("hello.service"), desired);
}
