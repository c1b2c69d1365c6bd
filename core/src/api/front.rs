//! [`ApiFront`]: API v1 (spec §7) served from a local, watch-maintained view of the registry.
//!
//! fleet re-read the whole registry for every request, so listing 10,000 units page by page
//! took a minute. The front end instead follows `P/job`, `P/unit`, `P/machines` and
//! `P/unit-states` with one [`PrefixFollower`] each (one read, then one watch), and answers every
//! read at once from that view. Beside an engine ([`ApiConfig::engine_fed`]), the first three
//! come from the engine's followers instead ([`ApiFront::handle_shared`]), so that an fltd
//! watches each directory once. Writes are registry requests; their answers are applied to the
//! view before the HTTP answer goes out, so a client reads its own writes.
//!
//! Sans-IO like the rest of the core. Inputs: [`ApiFront::handle_request`] (an HTTP request,
//! already read by the driver, with the driver's id), [`ApiFront::handle_response`] (registry
//! answers and watch events) and [`ApiFront::handle_timeout`]. Outputs:
//! [`ApiFront::poll_command`] (registry requests), [`ApiFront::poll_response`] (HTTP answers,
//! with the request's id) and [`ApiFront::poll_timeout`]. Until every prefix has been read once,
//! every path answers 503.
//!
//! A unit's `currentState` and `machineID` (fleet derived them from `job-state`, which flt does
//! not have; spec §1.4): `machineID` is `P/job/<name>/target`. With no target, or no state
//! published by that machine under `P/unit-states/<target>/<name>`, the unit is `inactive`. If
//! the desired state is `launched` and systemd reports it `active`, `activating`, `reloading` or
//! `deactivating`, it is `launched`; otherwise `loaded`. So `fltctl`'s waits for `loaded` end
//! once the target machine has loaded the unit, and waits for `launched` once it runs, as with
//! fleet's `job-state`. Global units have no target: `GET /units/<name>` omits both fields and
//! the list says `inactive` (fleet's quirk, spec §7.3).
//!
//! The writes (spec §1.1, `Documentation/architecture.md`):
//! - create: create-only `P/unit/<hash>` (already there is fine: content-addressed), then
//!   `P/job/<name>/object`, then `P/job/<name>/target-state`, one after the other;
//! - desired state: `P/job/<name>/target-state` (skipped when unchanged);
//! - destroy: recursive delete of `P/job/<name>` (not found: 404 `unit does not exist`);
//! - `PATCH /machines`: `P/machines/<id>/metadata/<key>` per op, in order (`""` = removed).

use super::discovery::discovery_document;
use super::entities::{
    ErrorEntity, Machine, MachinePage, Unit, UnitPage, UnitState, UnitStatePage,
    options_from_unit_file, to_go_json,
};
use super::machines_patch::decode_patch;
use super::pagination::{DEFAULT_TOKEN_LIMIT, page_token_from_query, paginate};
use super::query::query_values;
use super::routes::{
    ETCD_UNAVAILABLE, Route, RouteError, UNIT_NOT_FOUND, UNIT_STATE_NOT_FOUND, route,
};
use super::units_put::{
    ExistingUnit, MAX_BODY_BYTES, PutDecision, PutError, decide_put, decode_put,
};
use crate::engine::{SHARED_DIRS, SharedFollow};
use crate::registry::records::{JobRecord, TargetState, UnitFileRecord, UnitStateRecord};
use crate::registry::view::{ClusterView, Dir, JobEntry, UnitStatesView};
use crate::registry::{
    Action, Event, Failure, FollowConfig, FollowEvent, FollowTimer, KeyKind, Keyspace, Node, OpId,
    OpIdGen, Precondition, PrefixFollower, PutValue, Record, Reply, Request, Response,
};
use crate::time::Instant;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The [`OpIdGen`] component number of the API front end.
pub const API_COMPONENT: u8 = 3;

/// How the front end runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiConfig {
    pub keyspace: Keyspace,
    /// The page size of list endpoints (`token_limit`, default 100).
    pub token_limit: u16,
    /// A write that gets no answer within this long is answered 500.
    pub request_timeout: Duration,
    /// Timing of the prefix followers (resync, retries).
    pub follow: FollowConfig,
    /// Seed for the followers' jitter.
    pub seed: u64,
    /// `P/job`, `P/unit` and `P/machines` come from an engine's followers
    /// ([`ApiFront::handle_shared`], [`crate::engine::EngineConfig::share_view`]) instead of
    /// watches of this front end's own; `P/unit-states` it always follows itself.
    pub engine_fed: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keyspace: Keyspace::default(),
            token_limit: DEFAULT_TOKEN_LIMIT,
            request_timeout: Duration::from_secs(5),
            follow: FollowConfig::default(),
            seed: 0,
            engine_fed: false,
        }
    }
}

/// The driver's id of one HTTP request; the answer carries it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiRequestId(pub u64);

/// An HTTP request as the driver read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiRequest {
    pub method: String,
    /// The request target as sent: percent-encoded path, then `?query` if any.
    pub path: String,
    /// Every `Content-Type` header value, in order.
    pub content_types: Vec<String>,
    pub body: Vec<u8>,
}

/// An HTTP answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    /// `None`: no `Content-Type` header.
    pub content_type: Option<String>,
    /// Further headers (`Allow`, `Location`). `Server: fltd/<version>` is the HTTP driver's.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The body as text (lossy), for logs and tests.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A registry request to carry out; answer it through [`ApiFront::handle_response`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCommand {
    pub id: OpId,
    pub request: Request,
}

/// Why the front end wants to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiTimer {
    /// A follower's read deadline, retry or resync.
    Follow(FollowTimerKind),
    /// A write went unanswered.
    WriteTimeout,
}

/// [`FollowTimer`] with an order, so timers can be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FollowTimerKind {
    AnswerDeadline,
    Retry,
    Resync,
}

impl From<FollowTimer> for FollowTimerKind {
    fn from(t: FollowTimer) -> Self {
        match t {
            FollowTimer::AnswerDeadline => FollowTimerKind::AnswerDeadline,
            FollowTimer::Retry => FollowTimerKind::Retry,
            FollowTimer::Resync => FollowTimerKind::Resync,
        }
    }
}

/// What the front end follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Cluster(Dir),
    UnitStates,
}

#[derive(Debug)]
struct Followed {
    source: Source,
    follower: PrefixFollower,
    synced: bool,
}

/// A directory an engine follows for this front end ([`ApiConfig::engine_fed`]).
#[derive(Debug)]
struct Fed {
    dir: Dir,
    prefix: String,
    /// The engine's follower's index after the last thing it passed on.
    index: u64,
    synced: bool,
}

/// What a failed step means for the HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    /// Create-only unit file: "already exists" is success (content-addressed).
    UnitFile,
    /// Destroy: "not found" is 404 `unit does not exist`.
    Destroy,
    /// Any failure is 500 with an empty message.
    Plain,
    /// Any failure is 500 with the registry's message (PATCH, as fleet).
    WithMessage,
}

#[derive(Clone, Debug)]
struct Write {
    request_id: ApiRequestId,
    steps: VecDeque<(StepKind, Request)>,
    current: StepKind,
    /// The request in flight (to apply its effect to the view once it succeeds).
    in_flight: Request,
    deadline: Instant,
    done: ApiResponse,
}

/// The HTTP API front end. See the module docs.
#[derive(Debug)]
pub struct ApiFront {
    config: ApiConfig,
    ids: OpIdGen,
    view: ClusterView,
    states: UnitStatesView,
    followed: Vec<Followed>,
    fed: Vec<Fed>,
    writes: BTreeMap<OpId, Write>,
    /// Keys (or directories) written by this front end, with the write's index: a watch event
    /// for them that is not newer is stale (the view already has the write). Forgotten once the
    /// followers have passed that index.
    own_writes: BTreeMap<String, u64>,
    /// The names `GET /units` lists, in order; rebuilt on the first list after a change of the
    /// view, so that paging through N units costs O(N) once, not once per page.
    unit_names: Option<Vec<String>>,
    commands: VecDeque<ApiCommand>,
    responses: VecDeque<(ApiRequestId, ApiResponse)>,
    stopped: bool,
}

impl ApiFront {
    /// A front end; it starts reading the registry at once.
    pub fn new(config: ApiConfig, now: Instant) -> ApiFront {
        let mut ids = OpIdGen::new(API_COMPONENT);
        let ks = config.keyspace.clone();
        let sources = [
            (Source::Cluster(Dir::Jobs), ks.jobs_dir()),
            (Source::Cluster(Dir::Units), ks.units_dir()),
            (Source::Cluster(Dir::Machines), ks.machines_dir()),
            (Source::UnitStates, ks.unit_states_dir()),
        ];
        let fed: Vec<Fed> = if config.engine_fed {
            SHARED_DIRS
                .into_iter()
                .map(|dir| Fed {
                    dir,
                    prefix: dir.key(&ks),
                    index: 0,
                    synced: false,
                })
                .collect()
        } else {
            Vec::new()
        };
        let followed = sources
            .into_iter()
            .enumerate()
            .filter(|(_, (source, _))| {
                !matches!(source, Source::Cluster(dir) if fed.iter().any(|f| f.dir == *dir))
            })
            .map(|(i, (source, prefix))| Followed {
                source,
                follower: PrefixFollower::new(
                    &prefix,
                    config.follow.clone(),
                    config.seed.wrapping_add(i as u64),
                    &mut ids,
                    now,
                ),
                synced: false,
            })
            .collect();
        let mut front = ApiFront {
            view: ClusterView::new(ks.clone()),
            states: UnitStatesView::new(ks),
            config,
            ids,
            followed,
            fed,
            writes: BTreeMap::new(),
            own_writes: BTreeMap::new(),
            unit_names: None,
            commands: VecDeque::new(),
            responses: VecDeque::new(),
            stopped: false,
        };
        front.collect_follower_output();
        front
    }

    // ---- getters ----

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// True once every followed prefix has been read once: until then every path is 503.
    pub fn is_ready(&self) -> bool {
        self.followed.iter().all(|f| f.synced) && self.fed.iter().all(|f| f.synced)
    }

    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    pub fn unit_states(&self) -> &UnitStatesView {
        &self.states
    }

    /// Whether `id` is one of this front end's request ids.
    pub fn owns(&self, id: OpId) -> bool {
        self.ids.owns(id)
    }

    /// The ids of the running watches (for a driver that cancels watches on shutdown).
    pub fn watch_ids(&self) -> Vec<OpId> {
        self.followed
            .iter()
            .filter_map(|f| f.follower.watch_id())
            .collect()
    }

    // ---- outputs ----

    pub fn poll_command(&mut self) -> Option<ApiCommand> {
        self.commands.pop_front()
    }

    pub fn poll_response(&mut self) -> Option<(ApiRequestId, ApiResponse)> {
        self.responses.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<(Instant, ApiTimer)> {
        if self.stopped {
            return None;
        }
        let follow = self.followed.iter().filter_map(|f| {
            f.follower
                .poll_timeout()
                .map(|(at, why)| (at, ApiTimer::Follow(why.into())))
        });
        let writes = self
            .writes
            .values()
            .map(|w| (w.deadline, ApiTimer::WriteTimeout));
        follow.chain(writes).min()
    }

    // ---- inputs ----

    /// A registry answer or watch event. Returns false if it is not for this front end.
    pub fn handle_response(&mut self, response: Response, now: Instant) -> bool {
        if self.stopped {
            return self.owns(response.id);
        }
        let mut taken = false;
        for f in &mut self.followed {
            if f.follower.handle_input(&response, &mut self.ids, now) {
                taken = true;
                break;
            }
        }
        if taken {
            self.collect_follower_output();
            return true;
        }
        let Some(write) = self.writes.remove(&response.id) else {
            return self.owns(response.id);
        };
        self.on_write_answer(write, response.result, now);
        true
    }

    /// Timers: follower deadlines, retries and resyncs; overdue writes (answered 500).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        for f in &mut self.followed {
            f.follower.handle_timeout(&mut self.ids, now);
        }
        self.collect_follower_output();
        let overdue: Vec<OpId> = self
            .writes
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(write) = self.writes.remove(&id) {
                self.on_write_answer(write, Err(Failure::Timeout), now);
            }
        }
    }

    /// One HTTP request. Reads are answered at once; writes once the registry has answered.
    pub fn handle_request(&mut self, request_id: ApiRequestId, request: ApiRequest, now: Instant) {
        if !self.is_ready() || self.stopped {
            // Go's http.Error, as fleet's placeholder handler (spec §7.1).
            let response = ApiResponse {
                status: 503,
                content_type: Some("text/plain; charset=utf-8".into()),
                headers: Vec::new(),
                body: format!("{ETCD_UNAVAILABLE}\n").into_bytes(),
            };
            self.responses.push_back((request_id, response));
            return;
        }
        let (path, query) = match request.path.split_once('?') {
            Some((path, query)) => (path, query),
            None => (request.path.as_str(), ""),
        };
        let answer = match route(&request.method, path) {
            Err(e) => Some(self.route_error(&e, query)),
            Ok(route) => self.serve(request_id, route, query, &request, now),
        };
        if let Some(answer) = answer {
            self.responses.push_back((request_id, answer));
        }
    }

    /// What the engine's followers of the directories this front end does not follow itself
    /// learnt, in order ([`ApiConfig::engine_fed`]); anything else is ignored.
    pub fn handle_shared(&mut self, learnt: impl IntoIterator<Item = SharedFollow>) {
        if self.stopped {
            return;
        }
        for shared in learnt {
            let Some(fed) = self.fed.iter_mut().find(|f| f.dir == shared.dir) else {
                continue;
            };
            fed.index = shared.index;
            if matches!(shared.event, FollowEvent::Snapshot { .. }) {
                fed.synced = true;
            }
            self.take_in(Source::Cluster(shared.dir), shared.event);
        }
        self.forget_own_writes();
    }

    /// Stops: no more requests to the registry; requests are answered 503.
    pub fn shutdown(&mut self) {
        self.stopped = true;
        self.commands.clear();
        for (_, write) in std::mem::take(&mut self.writes) {
            let answer = self.error(500, "fltd is shutting down: the write may not have landed");
            self.responses.push_back((write.request_id, answer));
        }
    }

    // ---- internals: the view ----

    fn collect_follower_output(&mut self) {
        let mut learnt = Vec::new();
        for f in &mut self.followed {
            while let Some((id, request)) = f.follower.poll_command() {
                self.commands.push_back(ApiCommand { id, request });
            }
            while let Some(event) = f.follower.poll_event() {
                if matches!(event, FollowEvent::Snapshot { .. }) {
                    f.synced = true;
                }
                learnt.push((f.source, event));
            }
        }
        for (source, event) in learnt {
            self.take_in(source, event);
        }
        self.forget_own_writes();
    }

    /// Applies what a follower (this front end's or the engine's) learnt to the view.
    fn take_in(&mut self, source: Source, event: FollowEvent) {
        if matches!(source, Source::Cluster(Dir::Jobs | Dir::Units)) {
            self.unit_names = None;
        }
        match (source, event) {
            (Source::Cluster(dir), FollowEvent::Snapshot { node, index }) => {
                self.view.apply_read(dir, Some(&node), index);
            }
            (Source::UnitStates, FollowEvent::Snapshot { node, index }) => {
                self.states.apply_read(Some(&node), index);
            }
            (_, FollowEvent::Change(event)) if is_stale(&self.own_writes, &event) => {}
            (Source::Cluster(_), FollowEvent::Change(event)) => {
                self.view.apply_event(&event);
            }
            (Source::UnitStates, FollowEvent::Change(event)) => {
                self.states.apply_event(&event);
            }
        }
    }

    /// Forgets the own writes that every feed of their key has passed.
    fn forget_own_writes(&mut self) {
        if self.own_writes.is_empty() {
            return;
        }
        let feeds: Vec<(&str, u64)> = self
            .followed
            .iter()
            .map(|f| (f.follower.prefix(), f.follower.index()))
            .chain(self.fed.iter().map(|f| (f.prefix.as_str(), f.index)))
            .collect();
        self.own_writes.retain(|key, index| {
            feeds
                .iter()
                .filter(|(prefix, _)| is_under(key, prefix))
                .any(|(_, seen)| *seen < *index)
        });
    }

    /// Read-your-writes: what a successful write did, applied as if its watch event had come.
    fn apply_own_write(&mut self, request: &Request, reply: &Reply) {
        let index = match reply {
            Reply::Put { node } => node.modified_index,
            Reply::Deleted { index } => *index,
            _ => return,
        };
        let event = match request {
            Request::Put {
                key,
                value: PutValue::Value(value),
                ..
            } => Event {
                action: Action::Set,
                node: Node {
                    key: key.clone(),
                    value: Some(value.clone()),
                    modified_index: index,
                    created_index: index,
                    ..Node::default()
                },
                prev_node: None,
            },
            Request::Delete { key, recursive, .. } => Event {
                action: Action::Delete,
                node: Node {
                    key: key.clone(),
                    dir: *recursive,
                    modified_index: index,
                    ..Node::default()
                },
                prev_node: None,
            },
            _ => return,
        };
        self.own_writes
            .insert(event.node.key.clone(), event.node.modified_index);
        self.unit_names = None;
        if matches!(
            self.config.keyspace.classify(&event.node.key),
            Some(KeyKind::UnitState { .. } | KeyKind::MachineStates { .. })
        ) {
            self.states.apply_event(&event);
        } else {
            self.view.apply_event(&event);
        }
    }

    // ---- internals: writes ----

    fn start_write(
        &mut self,
        request_id: ApiRequestId,
        mut steps: VecDeque<(StepKind, Request)>,
        done: ApiResponse,
        now: Instant,
    ) -> Option<ApiResponse> {
        let Some((kind, request)) = steps.pop_front() else {
            return Some(done);
        };
        let write = Write {
            request_id,
            steps,
            current: kind,
            in_flight: request,
            deadline: now,
            done,
        };
        self.send_step(write, now);
        None
    }

    fn send_step(&mut self, mut write: Write, now: Instant) {
        let id = self.ids.next_id();
        write.deadline = now + self.config.request_timeout;
        self.commands.push_back(ApiCommand {
            id,
            request: write.in_flight.clone(),
        });
        self.writes.insert(id, write);
    }

    fn on_write_answer(&mut self, mut write: Write, result: Result<Reply, Failure>, now: Instant) {
        let failure = match (&result, write.current) {
            (Ok(reply), _) => {
                self.apply_own_write(&write.in_flight, reply);
                None
            }
            (Err(Failure::PreconditionFailed), StepKind::UnitFile) => None,
            (Err(Failure::NotFound), StepKind::Destroy) => Some(self.error(404, UNIT_NOT_FOUND)),
            (Err(f), StepKind::WithMessage) => Some(self.error(500, &f.to_string())),
            // fleet answered these with an empty message; saying what failed costs nothing.
            (Err(f), _) => Some(self.error(500, &format!("registry write failed: {f}"))),
        };
        if let Some(answer) = failure {
            self.responses.push_back((write.request_id, answer));
            return;
        }
        match write.steps.pop_front() {
            Some((kind, request)) => {
                write.current = kind;
                write.in_flight = request;
                self.send_step(write, now);
            }
            None => self.responses.push_back((write.request_id, write.done)),
        }
    }

    // ---- internals: answers ----

    fn answer(&self, status: u16, content_type: Option<&str>, body: Vec<u8>) -> ApiResponse {
        ApiResponse {
            status,
            content_type: content_type.map(str::to_string),
            headers: Vec::new(),
            body,
        }
    }

    fn error(&self, status: u16, message: &str) -> ApiResponse {
        let body = ErrorEntity::new(status, message).to_json().into_bytes();
        self.answer(status, Some("application/json"), body)
    }

    fn json<T: Serialize>(&self, value: &T) -> ApiResponse {
        match to_go_json(value) {
            Ok(body) => self.answer(200, Some("application/json"), body.into_bytes()),
            Err(_) => self.error(500, ""),
        }
    }

    fn route_error(&self, e: &RouteError, query: &str) -> ApiResponse {
        match e {
            RouteError::Redirect(to) => {
                let mut answer = self.answer(301, None, Vec::new());
                let location = if query.is_empty() {
                    to.clone()
                } else {
                    format!("{to}?{query}")
                };
                answer.headers.push(("Location".into(), location));
                answer
            }
            RouteError::Status { allow, .. } => {
                let mut answer = self.error(e.status(), &e.entity().error.message);
                if let Some(allow) = allow {
                    answer.headers.push(("Allow".into(), allow.to_string()));
                }
                answer
            }
            _ => self.error(e.status(), &e.entity().error.message),
        }
    }

    fn serve(
        &mut self,
        request_id: ApiRequestId,
        route: Route,
        query: &str,
        request: &ApiRequest,
        now: Instant,
    ) -> Option<ApiResponse> {
        match route {
            Route::Discovery => Some(self.answer(
                200,
                Some("application/json"),
                discovery_document().into_bytes(),
            )),
            Route::Metrics => Some(self.metrics()),
            Route::ListUnits => {
                if self.unit_names.is_none() {
                    let names = self
                        .view
                        .jobs()
                        .iter()
                        .filter(|(_, job)| self.unit_file_of(job).is_some())
                        .map(|(name, _)| name.clone())
                        .collect();
                    self.unit_names = Some(names);
                }
                Some(self.list_units(query))
            }
            Route::GetUnit(name) => Some(self.get_unit(&name)),
            Route::ListStates => Some(self.list_states(query)),
            Route::GetState(name) => Some(self.get_state(&name)),
            Route::ListMachines => Some(self.list_machines(query)),
            Route::PutUnit(name) => self.put_unit(request_id, &name, request, now),
            Route::DeleteUnit(name) => {
                let steps = VecDeque::from([(
                    StepKind::Destroy,
                    Request::Delete {
                        key: self.config.keyspace.job_dir(&name),
                        precondition: Precondition::None,
                        recursive: true,
                    },
                )]);
                let done = self.answer(204, None, Vec::new());
                self.start_write(request_id, steps, done, now)
            }
            Route::PatchMachines => match decode_patch(&request.body) {
                Err(e) => Some(self.error(e.status(), &e.to_string())),
                Ok(writes) => {
                    let steps = writes
                        .into_iter()
                        .map(|w| {
                            let request = Request::Put {
                                key: self.config.keyspace.machine_metadata(&w.machine_id, &w.key),
                                value: PutValue::Value(w.value),
                                ttl: None,
                                precondition: Precondition::None,
                            };
                            (StepKind::WithMessage, request)
                        })
                        .collect();
                    let done = self.answer(204, Some("application/json"), Vec::new());
                    self.start_write(request_id, steps, done, now)
                }
            },
        }
    }

    /// The page token of a list request, or the 400 answer.
    fn page(
        &self,
        query: &str,
        total: usize,
    ) -> Result<(std::ops::Range<usize>, String), ApiResponse> {
        let tokens = query_values(query, "nextPageToken");
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let token = page_token_from_query(&tokens, self.config.token_limit)
            .map_err(|e| self.error(e.status(), &e.to_string()))?;
        let (range, next) = paginate(total, token);
        Ok((range, next.map(|t| t.encode()).unwrap_or_default()))
    }

    fn list_units(&self, query: &str) -> ApiResponse {
        let names = self.unit_names.as_deref().unwrap_or_default();
        let (range, next_page_token) = match self.page(query, names.len()) {
            Ok(page) => page,
            Err(answer) => return answer,
        };
        let units = names[range]
            .iter()
            .filter_map(|name| {
                let job = self.view.jobs().get(name)?;
                self.unit_entity(name, job, true)
            })
            .collect();
        self.json(&UnitPage {
            units,
            next_page_token,
        })
    }

    fn get_unit(&self, name: &str) -> ApiResponse {
        match self
            .view
            .jobs()
            .get(name)
            .and_then(|job| self.unit_entity(name, job, false))
        {
            Some(unit) => self.json(&unit),
            None => self.error(404, UNIT_NOT_FOUND),
        }
    }

    /// The unit file of a job that is a unit as fleet's `Units()` saw it: object, known unit
    /// file that parses, and a target state.
    fn unit_file_of(&self, job: &JobEntry) -> Option<&crate::unit::UnitFile> {
        job.target_state?;
        let stored = self.view.unit_file(&job.hash?)?;
        stored.file.as_ref().ok()
    }

    fn unit_entity(&self, name: &str, job: &JobEntry, listing: bool) -> Option<Unit> {
        let file = self.unit_file_of(job)?;
        let desired = job.target_state?;
        let (current_state, machine_id) = if job.is_global() {
            let current = if listing { "inactive" } else { "" };
            (current.to_string(), String::new())
        } else {
            let current = current_state(job, |machine| {
                self.states
                    .get(name, machine)
                    .filter(|_| self.machine_live(machine))
            });
            (
                current.as_str().to_string(),
                job.target.clone().unwrap_or_default(),
            )
        };
        Some(Unit {
            current_state,
            desired_state: desired.as_str().to_string(),
            machine_id,
            name: name.to_string(),
            options: options_from_unit_file(file),
        })
    }

    fn list_states(&self, query: &str) -> ApiResponse {
        let first = |key: &str| query_values(query, key).into_iter().next();
        let machine_filter = first("machineID");
        let unit_filter = first("unitName");
        let matching = || {
            self.states.states().iter().filter(|((name, machine), _)| {
                machine_filter.as_ref().is_none_or(|m| m == machine)
                    && unit_filter.as_ref().is_none_or(|u| u == name)
                    && self.machine_live(machine)
            })
        };
        let total = matching().count();
        let (range, next_page_token) = match self.page(query, total) {
            Ok(page) => page,
            Err(answer) => return answer,
        };
        let states = matching()
            .skip(range.start)
            .take(range.len())
            .map(|((name, machine), record)| state_entity(name, machine, record))
            .collect();
        self.json(&UnitStatePage {
            next_page_token,
            states,
        })
    }

    /// Whether `machine` has a presence: the states of a machine without one are stale (its
    /// unit-state directory outlives the presence by up to `agent_ttl`) and are not shown.
    fn machine_live(&self, machine: &str) -> bool {
        self.view
            .machines()
            .get(machine)
            .is_some_and(|m| m.record.is_some())
    }

    fn get_state(&self, name: &str) -> ApiResponse {
        let found = self
            .states
            .states()
            .range((name.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == name)
            .find(|((_, machine), _)| self.machine_live(machine));
        match found {
            Some(((n, machine), record)) => self.json(&state_entity(n, machine, record)),
            None => self.error(404, UNIT_STATE_NOT_FOUND),
        }
    }

    fn list_machines(&self, query: &str) -> ApiResponse {
        let total = self.view.live_machines().count();
        let (range, next_page_token) = match self.page(query, total) {
            Ok(page) => page,
            Err(answer) => return answer,
        };
        let machines = self
            .view
            .live_machines()
            .skip(range.start)
            .take(range.len())
            .map(|(id, entry)| Machine {
                id: id.clone(),
                metadata: entry.metadata(),
                primary_ip: entry
                    .record
                    .as_ref()
                    .map(|r| r.public_ip.clone())
                    .unwrap_or_default(),
            })
            .collect();
        self.json(&MachinePage {
            machines,
            next_page_token,
        })
    }

    fn put_unit(
        &mut self,
        request_id: ApiRequestId,
        name: &str,
        request: &ApiRequest,
        now: Instant,
    ) -> Option<ApiResponse> {
        if request.body.len() > MAX_BODY_BYTES {
            let e = PutError::BodyTooLarge;
            return Some(self.error(e.status(), &e.to_string()));
        }
        let content_types: Vec<&str> = request.content_types.iter().map(String::as_str).collect();
        let decided = decode_put(name, &content_types, &request.body).and_then(|put| {
            let existing = self.view.jobs().get(name).and_then(|job| {
                Some(ExistingUnit {
                    hash: job.hash?,
                    desired_state: job.target_state.unwrap_or_default(),
                })
            });
            decide_put(&put, existing.as_ref())
        });
        let decision = match decided {
            Ok(decision) => decision,
            Err(e) => return Some(self.error(e.status(), &e.to_string())),
        };
        let ks = &self.config.keyspace;
        let put = |key: String, value: String, precondition: Precondition| Request::Put {
            key,
            value: PutValue::Value(value),
            ttl: None,
            precondition,
        };
        let (steps, status) = match decision {
            PutDecision::Create {
                name,
                unit,
                desired_state,
                ..
            } => {
                let hash = unit.hash();
                let file = UnitFileRecord {
                    raw: unit.serialize(),
                };
                let object = JobRecord {
                    name: name.clone(),
                    unit_hash: hash.0,
                };
                let steps = VecDeque::from([
                    (
                        StepKind::UnitFile,
                        put(ks.unit(&hash), file.encode(), Precondition::Absent),
                    ),
                    (
                        StepKind::Plain,
                        put(ks.job_object(&name), object.encode(), Precondition::None),
                    ),
                    (
                        StepKind::Plain,
                        put(
                            ks.job_target_state(&name),
                            desired_state.encode(),
                            Precondition::None,
                        ),
                    ),
                ]);
                (steps, 201)
            }
            PutDecision::SetDesiredState {
                unchanged: true, ..
            } => (VecDeque::new(), 204),
            PutDecision::SetDesiredState {
                name,
                desired_state,
                ..
            } => {
                let steps = VecDeque::from([(
                    StepKind::Plain,
                    put(
                        ks.job_target_state(&name),
                        desired_state.encode(),
                        Precondition::None,
                    ),
                )]);
                (steps, 204)
            }
        };
        let done = self.answer(status, None, Vec::new());
        self.start_write(request_id, steps, done, now)
    }

    fn metrics(&self) -> ApiResponse {
        let text = format!(
            "# HELP flt_api_view_units Units in the API's view of the registry.\n\
             # TYPE flt_api_view_units gauge\nflt_api_view_units {}\n\
             # HELP flt_api_view_machines Live machines in the API's view of the registry.\n\
             # TYPE flt_api_view_machines gauge\nflt_api_view_machines {}\n\
             # HELP flt_api_view_unit_states Unit states in the API's view of the registry.\n\
             # TYPE flt_api_view_unit_states gauge\nflt_api_view_unit_states {}\n",
            self.view.jobs().len(),
            self.view.live_machines().count(),
            self.states.states().len(),
        );
        self.answer(200, Some("text/plain; version=0.0.4"), text.into_bytes())
    }
}

fn is_under(key: &str, dir: &str) -> bool {
    key.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `event` is older than a write of this front end to its key or a directory above it.
fn is_stale(own_writes: &BTreeMap<String, u64>, event: &Event) -> bool {
    let key = event.node.key.as_str();
    let mut path = key;
    loop {
        if own_writes
            .get(path)
            .is_some_and(|index| event.node.modified_index <= *index)
        {
            return true;
        }
        match path.rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() => path = parent,
            _ => return false,
        }
    }
}

/// A unit's derived current state (module docs): `state_on(machine)` is what `machine`
/// published for the unit.
pub fn current_state<'a>(
    job: &JobEntry,
    state_on: impl FnOnce(&str) -> Option<&'a UnitStateRecord>,
) -> TargetState {
    let Some(state) = job.target.as_deref().and_then(state_on) else {
        return TargetState::Inactive;
    };
    let running = matches!(
        state.active_state.as_str(),
        "active" | "activating" | "deactivating" | "reloading"
    );
    if running && job.target_state == Some(TargetState::Launched) {
        TargetState::Launched
    } else {
        TargetState::Loaded
    }
}

fn state_entity(name: &str, machine: &str, record: &UnitStateRecord) -> UnitState {
    UnitState {
        hash: record.unit_hash.clone(),
        machine_id: machine.to_string(),
        name: name.to_string(),
        systemd_active_state: record.active_state.clone(),
        systemd_load_state: record.load_state.clone(),
        systemd_sub_state: record.sub_state.clone(),
    }
}
