//! TEST DOUBLE of fltd's API v1 (spec §7), for fltctl's in-process tests only: an HTTP server
//! (tiny_http) holding units, unit states and machines in memory. Routing, PUT decisions and
//! paging come from `flt_core::api` (the same pure pieces fltd uses); a tiny "agent model"
//! moves a unit's current state to its desired state after a configurable number of polls, so
//! the blocking model can be exercised. The real end-to-end tests run against fltd.

use flt_core::api::entities::{
    ErrorEntity, Machine, MachinePage, Unit, UnitOption, UnitPage, UnitState, UnitStatePage,
    unit_file_from_options,
};
use flt_core::api::pagination::{page_token_from_query, paginate};
use flt_core::api::query::query_values;
use flt_core::api::routes::{Route, route};
use flt_core::api::units_put::{ExistingUnit, PutDecision, put_unit};
use flt_core::unit::Requirements;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Page size of the double (small, so lists span pages).
pub const PAGE_LIMIT: u16 = 2;

#[derive(Clone, Debug, Default)]
pub struct StoredUnit {
    pub options: Vec<UnitOption>,
    pub desired: String,
    pub current: String,
    pub machine_id: String,
    /// GETs left before `current` follows `desired`.
    pub lag_left: u32,
}

#[derive(Debug, Default)]
pub struct State {
    pub units: BTreeMap<String, StoredUnit>,
    pub machines: Vec<Machine>,
    /// Every request, as `METHOD /path?query`.
    pub requests: Vec<String>,
    /// Polls before a unit follows a new desired state (0: at once).
    pub lag: u32,
    /// Units whose current state never changes.
    pub frozen: Vec<String>,
    /// Units systemd reports with this ActiveState when launched (default `active`).
    pub active_state: BTreeMap<String, String>,
    /// Units a DELETE answers 204 for but keeps (to test waiting for removal).
    pub undeletable: Vec<String>,
    /// Status answered to every request whose `METHOD /path?query` contains the key.
    pub fail: BTreeMap<String, (u16, String)>,
}

impl State {
    fn is_global(&self, name: &str) -> bool {
        self.units.get(name).is_some_and(|u| {
            Requirements::from_unit(&unit_file_from_options(&u.options), name).global
        })
    }

    /// The agent model: on a poll, a unit whose lag ran out takes its desired state.
    fn tick(&mut self, name: &str) {
        if self.frozen.iter().any(|f| f == name) {
            return;
        }
        let first_machine = self
            .machines
            .first()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if unit.current == unit.desired {
            return;
        }
        if unit.lag_left > 0 {
            unit.lag_left -= 1;
            return;
        }
        unit.current = unit.desired.clone();
        unit.machine_id = if unit.current == "inactive" {
            String::new()
        } else {
            first_machine
        };
    }

    /// What `GET /state` shows: one state per scheduled unit (global: per machine).
    pub fn unit_states(&self) -> Vec<UnitState> {
        let mut states = Vec::new();
        for (name, unit) in &self.units {
            let hash = unit_file_from_options(&unit.options).hash().to_hex();
            let (active, sub) = match unit.current.as_str() {
                "launched" => (
                    self.active_state
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| "active".to_string()),
                    "running",
                ),
                _ => ("inactive".to_string(), "dead"),
            };
            let machines: Vec<String> = if self.is_global(name) {
                if unit.desired == "inactive" {
                    continue;
                }
                self.machines.iter().map(|m| m.id.clone()).collect()
            } else if unit.current == "inactive" || unit.machine_id.is_empty() {
                continue;
            } else {
                vec![unit.machine_id.clone()]
            };
            for machine_id in machines {
                states.push(UnitState {
                    hash: hash.clone(),
                    machine_id,
                    name: name.clone(),
                    systemd_active_state: active.clone(),
                    systemd_load_state: "loaded".to_string(),
                    systemd_sub_state: sub.to_string(),
                });
            }
        }
        states
    }

    fn entity(&self, name: &str, in_list: bool) -> Option<Unit> {
        let stored = self.units.get(name)?;
        let global = self.is_global(name);
        let (current, machine) = if global {
            // GET /units/<n> omits both for a global unit; the list says "inactive".
            (
                if in_list {
                    "inactive".to_string()
                } else {
                    String::new()
                },
                String::new(),
            )
        } else {
            (stored.current.clone(), stored.machine_id.clone())
        };
        Some(Unit {
            current_state: current,
            desired_state: stored.desired.clone(),
            machine_id: machine,
            name: name.to_string(),
            options: stored.options.clone(),
        })
    }
}

/// The running double. Dropping it stops the server.
pub struct ApiDouble {
    pub state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub url: String,
}

impl ApiDouble {
    /// Serves on 127.0.0.1 (an `http://` endpoint).
    pub fn start() -> ApiDouble {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", server.server_addr().to_ip().expect("ip"));
        ApiDouble::serve_on(server, url)
    }

    /// Serves on a Unix socket (a `unix://` endpoint).
    pub fn start_unix(path: &std::path::Path) -> ApiDouble {
        let server = tiny_http::Server::http_unix(path).expect("bind unix");
        ApiDouble::serve_on(server, format!("unix://{}", path.display()))
    }

    fn serve_on(server: tiny_http::Server, url: String) -> ApiDouble {
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State::default()));
        let (s, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                serve(&st, request);
            }
        });
        ApiDouble {
            state,
            server,
            thread: Some(thread),
            url,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("state")
    }

    /// Adds a machine.
    pub fn machine(&self, id: &str, ip: &str, metadata: &[(&str, &str)]) {
        self.lock().machines.push(Machine {
            id: id.to_string(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            primary_ip: ip.to_string(),
        });
    }

    /// Stores a unit from unit-file text with this desired and current state (current state
    /// other than inactive puts it on the first machine).
    pub fn unit(&self, name: &str, text: &str, desired: &str, current: &str) {
        let options = flt_core::api::entities::options_from_unit_file(
            &flt_core::unit::UnitFile::parse(text).expect("unit file"),
        );
        let mut state = self.lock();
        let machine_id = if current == "inactive" {
            String::new()
        } else {
            state
                .machines
                .first()
                .map(|m| m.id.clone())
                .unwrap_or_default()
        };
        state.units.insert(
            name.to_string(),
            StoredUnit {
                options,
                desired: desired.to_string(),
                current: current.to_string(),
                machine_id,
                lag_left: 0,
            },
        );
    }

    /// Requests so far that start with `prefix` (e.g. `"PUT "`).
    pub fn requests(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for ApiDouble {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json_response(status: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("hdr");
    tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(header)
}

fn error(status: u16, message: &str) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let body = serde_json::to_string(&ErrorEntity::new(status, message)).expect("json");
    json_response(status, body)
}

fn page<T: Clone>(items: &[T], query: &str) -> Result<(Vec<T>, String), String> {
    let values = query_values(query, "nextPageToken");
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let token = page_token_from_query(&refs, PAGE_LIMIT).map_err(|e| e.to_string())?;
    let (range, next) = paginate(items.len(), token);
    Ok((
        items[range].to_vec(),
        next.map(|t| t.encode()).unwrap_or_default(),
    ))
}

fn serve(state: &Mutex<State>, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_string();
    let target = request.url().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let content_types: Vec<String> = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.as_str().to_string())
        .collect();
    let mut st = state.lock().expect("state");
    st.requests.push(format!("{method} {target}"));
    if let Some((status, message)) = st
        .fail
        .iter()
        .find(|(k, _)| format!("{method} {target}").contains(k.as_str()))
        .map(|(_, v)| v.clone())
    {
        let _ = request.respond(error(status, &message));
        return;
    }
    let response = match route(&method, path) {
        Err(e) => error(e.status(), &e.entity().error.message),
        Ok(Route::ListUnits) => {
            let units: Vec<Unit> = st.units.keys().filter_map(|n| st.entity(n, true)).collect();
            match page(&units, query) {
                Ok((units, next_page_token)) => json_response(
                    200,
                    serde_json::to_string(&UnitPage {
                        next_page_token,
                        units,
                    })
                    .expect("json"),
                ),
                Err(e) => error(400, &e),
            }
        }
        Ok(Route::GetUnit(name)) => {
            st.tick(&name);
            match st.entity(&name, false) {
                Some(unit) => json_response(200, serde_json::to_string(&unit).expect("json")),
                None => error(404, "unit does not exist"),
            }
        }
        Ok(Route::PutUnit(name)) => {
            let ct: Vec<&str> = content_types.iter().map(String::as_str).collect();
            let existing = st.units.get(&name).map(|u| ExistingUnit {
                hash: unit_file_from_options(&u.options).hash(),
                desired_state: u.desired.parse().unwrap_or_default(),
            });
            match put_unit(&name, &ct, &body, existing.as_ref()) {
                Err(e) => error(e.status(), &e.to_string()),
                Ok(decision) => {
                    let status = decision.status();
                    let lag = st.lag;
                    match decision {
                        PutDecision::Create {
                            name,
                            unit,
                            desired_state,
                            ..
                        } => {
                            st.units.insert(
                                name,
                                StoredUnit {
                                    options: flt_core::api::entities::options_from_unit_file(&unit),
                                    desired: desired_state.to_string(),
                                    current: String::new(),
                                    machine_id: String::new(),
                                    lag_left: lag,
                                },
                            );
                        }
                        PutDecision::SetDesiredState {
                            name,
                            desired_state,
                            ..
                        } => {
                            if let Some(u) = st.units.get_mut(&name) {
                                u.desired = desired_state.to_string();
                                u.lag_left = lag;
                            }
                        }
                    }
                    tiny_http::Response::from_string("").with_status_code(status)
                }
            }
        }
        Ok(Route::DeleteUnit(name)) => {
            if st.undeletable.contains(&name) || st.units.remove(&name).is_some() {
                tiny_http::Response::from_string("").with_status_code(204)
            } else {
                error(404, "unit does not exist")
            }
        }
        Ok(Route::ListStates) => {
            let mut states = st.unit_states();
            if let Some(name) = query_values(query, "unitName").first() {
                states.retain(|s| &s.name == name);
            }
            match page(&states, query) {
                Ok((states, next_page_token)) => json_response(
                    200,
                    serde_json::to_string(&UnitStatePage {
                        next_page_token,
                        states,
                    })
                    .expect("json"),
                ),
                Err(e) => error(400, &e),
            }
        }
        Ok(Route::ListMachines) => {
            let mut machines = st.machines.clone();
            machines.sort_by(|a, b| a.id.cmp(&b.id));
            match page(&machines, query) {
                Ok((machines, next_page_token)) => json_response(
                    200,
                    serde_json::to_string(&MachinePage {
                        machines,
                        next_page_token,
                    })
                    .expect("json"),
                ),
                Err(e) => error(400, &e),
            }
        }
        Ok(_) => error(405, "not in the test double"),
    };
    let _ = request.respond(response);
}
