//! [`SimEtcd`]: a SIMULATED etcd v2 keys store in virtual time, for the cluster simulator only.
//!
//! It answers the core's [`Request`]s with the [`Reply`]s and [`Failure`]s that flt's real driver
//! (`flt_driver::etcd`) gives against etcd 3.4's v2 API, following etcd's own store
//! (`etcdserver/api/v2store`), its HTTP layer and the driver's error mapping:
//!
//! - one global index, bumped by every change (including TTL refreshes and expiries);
//!   intermediate directories are created on the way, with the new key's index;
//! - keys whose last path segment starts with `_` are hidden from directory listings and from
//!   watches below them, but can be read directly;
//! - TTLs in whole seconds (the driver rounds up), expiring in virtual time: a directory takes its
//!   children with it; [`PutValue::RefreshTtl`] takes a new index but wakes no watcher;
//! - preconditions map as on the wire: `Index(0)` and `Value("")` are etcd's "not given" and
//!   "prevValue cannot be empty" (error 201); `Present` uses `prevExist=true` (an update, which on
//!   a directory only changes its TTL, and on a file set as `Directory` writes an empty value);
//! - failures as the driver maps them: error 100 is `NotFound` (`PreconditionFailed` under
//!   `Present`), 101/105 `PreconditionFailed`, 401 `HistoryLost{index}`, others `Rejected` with
//!   etcd's message and cause; requests the driver refuses to send are refused the same way;
//! - watches: every change at an index ≥ `from_index` (0: from the next change) under the prefix
//!   (recursively), in index order, each once, plus the removal of a directory above the prefix.
//!   A watch starting before the last [`HISTORY_CAPACITY`] changes fails with `HistoryLost`
//!   carrying the current index, as does a watch of a client that was cut off (see
//!   [`SimEtcd::set_reachable`]) for longer than that history.
//!
//! Where real etcd is itself timing-dependent, the simulation picks one behaviour: keys expire
//! exactly at their deadline (etcd purges every 500 ms), and a watch filters hidden keys also
//! when it replays history (etcd filters them only for a waiting watcher). Checked against a real
//! etcd by `tests/tests/sim/etcd_differential.rs`.

use flt_core::registry::{Action, Event, Failure, Node, Precondition, PutValue, Reply, Request};
use flt_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// How many changes etcd v2 remembers for watches.
pub const HISTORY_CAPACITY: usize = 1000;

/// One client of the simulated etcd (a machine's driver), for fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

/// A watch opened on a [`SimEtcd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u64);

/// etcd v2 error codes the simulation produces.
mod code {
    pub const KEY_NOT_FOUND: u32 = 100;
    pub const TEST_FAILED: u32 = 101;
    pub const NOT_FILE: u32 = 102;
    pub const NOT_DIR: u32 = 104;
    pub const NODE_EXIST: u32 = 105;
    pub const ROOT_READ_ONLY: u32 = 107;
    pub const PREV_VALUE_REQUIRED: u32 = 201;
}

/// etcd's message for an error code (`error/error.go`).
fn message(code: u32) -> &'static str {
    match code {
        code::KEY_NOT_FOUND => "Key not found",
        code::TEST_FAILED => "Compare failed",
        code::NOT_FILE => "Not a file",
        code::NOT_DIR => "Not a directory",
        code::NODE_EXIST => "Key already exists",
        code::ROOT_READ_ONLY => "Root is read only",
        code::PREV_VALUE_REQUIRED => "PrevValue is Required in POST form",
        _ => "Client Internal Error",
    }
}

/// An error of etcd's store, before the driver maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StoreError {
    code: u32,
    cause: String,
}

fn store_error(code: u32, cause: impl Into<String>) -> StoreError {
    StoreError {
        code,
        cause: cause.into(),
    }
}

impl StoreError {
    /// The driver's mapping (`driver/src/etcd/wire.rs`, `parse_error`).
    fn into_failure(self, precondition: &Precondition) -> Failure {
        match self.code {
            code::KEY_NOT_FOUND if *precondition == Precondition::Present => {
                Failure::PreconditionFailed
            }
            code::KEY_NOT_FOUND => Failure::NotFound,
            code::TEST_FAILED | code::NODE_EXIST => Failure::PreconditionFailed,
            code => Failure::Rejected {
                code,
                message: if self.cause.is_empty() {
                    message(code).to_string()
                } else {
                    format!("{} ({})", message(code), self.cause)
                },
            },
        }
    }
}

/// A refusal the driver makes without sending anything.
fn refused(message: &str) -> Failure {
    Failure::Rejected {
        code: 0,
        message: message.to_string(),
    }
}

#[derive(Clone, Debug)]
enum Content {
    Value(String),
    Dir(BTreeMap<String, Entry>),
}

#[derive(Clone, Debug)]
struct Entry {
    content: Content,
    created: u64,
    modified: u64,
    expires: Option<Instant>,
}

impl Entry {
    fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir(_))
    }

    fn new_dir(index: u64, expires: Option<Instant>) -> Entry {
        Entry {
            content: Content::Dir(BTreeMap::new()),
            created: index,
            modified: index,
            expires,
        }
    }
}

/// etcd's `path.Clean(path.Join("/", key))`.
pub fn clean_key(key: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in key.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Seconds left, rounded up, as etcd reports them (`omitempty`: 0 is no TTL).
fn ttl_at(expires: Option<Instant>, now: Instant) -> Option<i64> {
    let expires = expires?;
    let secs = if expires >= now {
        let left = expires - now;
        i64::try_from(left.as_secs()).unwrap_or(i64::MAX) + i64::from(left.subsec_nanos() > 0)
    } else {
        // Go's integer division truncates toward zero.
        -i64::try_from((now - expires).as_secs()).unwrap_or(i64::MAX)
    };
    (secs != 0).then_some(secs)
}

/// The driver sends whole seconds, rounded up, at least 1.
fn ttl_deadline(ttl: Option<Duration>, now: Instant) -> Option<Instant> {
    let ttl = ttl?;
    let secs = (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1);
    Some(now + Duration::from_secs(secs))
}

/// `node.Repr(recursive, sorted=true)`: a directory's children only when recursive.
fn repr(entry: &Entry, key: &str, recursive: bool, now: Instant) -> Node {
    let mut node = Node {
        key: key.to_string(),
        value: None,
        dir: entry.is_dir(),
        modified_index: entry.modified,
        created_index: entry.created,
        ttl: ttl_at(entry.expires, now),
        nodes: Vec::new(),
    };
    match &entry.content {
        Content::Value(v) => node.value = Some(v.clone()),
        Content::Dir(children) if recursive => node.nodes = list(children, key, true, now),
        Content::Dir(_) => {}
    }
    node
}

/// A directory's visible children, sorted by key.
fn list(children: &BTreeMap<String, Entry>, key: &str, recursive: bool, now: Instant) -> Vec<Node> {
    children
        .iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, child)| repr(child, &join(key, name), recursive, now))
        .collect()
}

/// What a Put or Delete asks of etcd's store, after the HTTP layer.
#[derive(Clone, Debug, Default)]
struct WriteParams {
    value: String,
    dir: bool,
    refresh: bool,
    prev_exist: Option<bool>,
    prev_index: u64,
    prev_value: String,
}

#[derive(Clone, Debug)]
struct Recorded {
    event: Event,
    /// A TTL refresh: it takes an index and a place in the history but wakes no watcher.
    refresh: bool,
}

#[derive(Clone, Debug)]
struct Watch {
    prefix: String,
    client: Option<ClientId>,
    /// The next index this watch has not looked at (0: "from now", not yet armed).
    cursor: u64,
    outbox: VecDeque<Result<Event, Failure>>,
    ended: bool,
}

/// Whether a watch of `prefix` reports `recorded` (etcd's history scan and watcher hub).
fn watch_matches(prefix: &str, recorded: &Recorded) -> bool {
    if recorded.refresh {
        return false;
    }
    let event = &recorded.event;
    let key = event.node.key.as_str();
    if key == prefix {
        return true;
    }
    let below = if prefix == "/" {
        Some(key)
    } else {
        key.strip_prefix(prefix)
            .filter(|rest| rest.starts_with('/'))
    };
    if let Some(rest) = below {
        return !rest.contains("/_");
    }
    // The removal of a directory above the prefix removes the prefix too.
    matches!(event.action, Action::Delete | Action::Expire)
        && event.prev_node.as_ref().is_some_and(|prev| prev.dir)
        && prefix.starts_with(&format!("{}/", key.trim_end_matches('/')))
}

/// A simulated etcd v2 store. See the module docs for what it models.
#[derive(Clone, Debug)]
pub struct SimEtcd {
    root: Entry,
    index: u64,
    now: Instant,
    /// Deadlines of every key and directory with a TTL.
    expiries: BTreeSet<(Instant, String)>,
    history: VecDeque<Recorded>,
    watches: BTreeMap<WatchId, Watch>,
    /// Watches with something in their outbox (so that polling does not scan every watch).
    ready: BTreeSet<WatchId>,
    next_watch: u64,
    unreachable: BTreeSet<ClientId>,
}

impl Default for SimEtcd {
    fn default() -> Self {
        SimEtcd::new()
    }
}

impl SimEtcd {
    /// An empty store at index 0.
    pub fn new() -> SimEtcd {
        SimEtcd::with_index(0)
    }

    /// An empty store whose index is `index` (a real etcd starts a few changes in, from its
    /// membership records).
    pub fn with_index(index: u64) -> SimEtcd {
        SimEtcd {
            root: Entry::new_dir(0, None),
            index,
            now: Instant::ZERO,
            expiries: BTreeSet::new(),
            history: VecDeque::new(),
            watches: BTreeMap::new(),
            next_watch: 0,
            ready: BTreeSet::new(),
            unreachable: BTreeSet::new(),
        }
    }

    /// The index of the last change.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The latest time the store has seen.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The earliest TTL deadline, if any: call [`SimEtcd::advance`] then.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// The value at `key`, if it is a key (not a directory). For invariant checks.
    pub fn value(&self, key: &str) -> Option<&str> {
        match &self.lookup(&clean_key(key)).ok()?.content {
            Content::Value(v) => Some(v),
            Content::Dir(_) => None,
        }
    }

    /// Every key (not directory) at or below `prefix`, with its value, sorted by key; hidden
    /// keys included. For invariant checks.
    pub fn values_under(&self, prefix: &str) -> Vec<(String, String)> {
        fn walk(entry: &Entry, key: &str, out: &mut Vec<(String, String)>) {
            match &entry.content {
                Content::Value(v) => out.push((key.to_string(), v.clone())),
                Content::Dir(children) => {
                    for (name, child) in children {
                        walk(child, &join(key, name), out);
                    }
                }
            }
        }
        let prefix = clean_key(prefix);
        let mut out = Vec::new();
        if let Ok(entry) = self.lookup(&prefix) {
            walk(entry, &prefix, &mut out);
        }
        out
    }

    /// The changes etcd still remembers (at most [`HISTORY_CAPACITY`]), oldest first, each with
    /// whether it was a TTL refresh.
    pub fn history(&self) -> impl Iterator<Item = (&Event, bool)> {
        self.history.iter().map(|r| (&r.event, r.refresh))
    }

    /// The oldest index a watch may still start from (0 before the first change).
    pub fn history_start(&self) -> u64 {
        self.history
            .front()
            .map_or(0, |r| r.event.node.modified_index)
    }

    /// Expires every key and directory whose TTL ran out by `now`, in deadline order.
    pub fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        while let Some((at, path)) = self.expiries.first().cloned() {
            if at > self.now {
                break;
            }
            self.expiries.pop_first();
            let Ok(entry) = self.lookup(&path) else {
                continue;
            };
            let node = Node {
                key: path.clone(),
                dir: entry.is_dir(),
                modified_index: self.index + 1,
                created_index: entry.created,
                ..Node::default()
            };
            // Described as of its deadline, as etcd's purge (every 500 ms) nearly does.
            let prev = repr(entry, &path, false, at);
            self.index += 1;
            self.remove(&path);
            self.record(
                Event {
                    action: Action::Expire,
                    node,
                    prev_node: Some(prev),
                },
                false,
            );
        }
    }

    /// Carries out a Get, Put or Delete at `now`, as the real driver would. A Watch is refused:
    /// use [`SimEtcd::open_watch`].
    pub fn apply(&mut self, request: &Request, now: Instant) -> Result<Reply, Failure> {
        self.advance(now);
        match request {
            Request::Get { key, recursive } => {
                let path = clean_key(key);
                let entry = self
                    .lookup(&path)
                    .map_err(|e| e.into_failure(&Precondition::None))?;
                let mut node = repr(entry, &path, *recursive, self.now);
                if let Content::Dir(children) = &entry.content {
                    node.nodes = list(children, &path, *recursive, self.now);
                }
                Ok(Reply::Got {
                    node,
                    index: self.index,
                })
            }
            Request::Put {
                key,
                value,
                ttl,
                precondition,
            } => {
                let params = put_params(value, *ttl, precondition)?;
                let expires = ttl_deadline(*ttl, self.now);
                let (event, refresh) = self
                    .put(&clean_key(key), params, expires)
                    .map_err(|e| e.into_failure(precondition))?;
                let node = event.node.clone();
                self.record(event, refresh);
                Ok(Reply::Put { node })
            }
            Request::Delete {
                key,
                precondition,
                recursive,
            } => {
                let path = clean_key(key);
                let event = match precondition {
                    Precondition::Absent => {
                        return Err(refused("cannot delete a key that must be absent"));
                    }
                    Precondition::Value(v) if v.is_empty() => Err(prev_value_required()),
                    Precondition::Value(v) => self.compare_and_delete(&path, v, 0),
                    Precondition::Index(i) if *i > 0 => self.compare_and_delete(&path, "", *i),
                    _ => self.delete(&path, *recursive),
                }
                .map_err(|e| e.into_failure(precondition))?;
                let index = event.node.modified_index;
                self.record(event, false);
                Ok(Reply::Deleted { index })
            }
            Request::Watch { .. } => Err(refused("a watch is not a single call: use a watch")),
        }
    }

    /// Like [`SimEtcd::apply`], for `client`: fails with [`Failure::Unreachable`], without
    /// applying anything, while the client is cut off.
    pub fn call(
        &mut self,
        client: ClientId,
        request: &Request,
        now: Instant,
    ) -> Result<Reply, Failure> {
        if self.unreachable.contains(&client) {
            self.advance(now);
            return Err(cut_off(client));
        }
        self.apply(request, now)
    }

    /// A request that reaches etcd and is applied, but whose answer is lost: the driver reports
    /// [`Failure::Timeout`] (or `Unreachable` if the client is cut off, and nothing is applied).
    pub fn call_losing_reply(
        &mut self,
        client: ClientId,
        request: &Request,
        now: Instant,
    ) -> Failure {
        match self.call(client, request, now) {
            Err(failure @ Failure::Unreachable(_)) => failure,
            _ => Failure::Timeout,
        }
    }

    /// Cuts `client` off from etcd (or reconnects it). While cut off its calls fail with
    /// `Unreachable` and its watches deliver nothing; on reconnection they resume from where they
    /// were, or fail with `HistoryLost` if etcd no longer remembers that far back (the real
    /// driver's watch retries through an outage the same way).
    pub fn set_reachable(&mut self, client: ClientId, reachable: bool, now: Instant) {
        self.advance(now);
        if reachable {
            if self.unreachable.remove(&client) {
                let ids: Vec<WatchId> = self
                    .watches
                    .iter()
                    .filter(|(_, w)| w.client == Some(client))
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    self.catch_up(id);
                }
            }
        } else {
            self.unreachable.insert(client);
        }
    }

    /// Whether `client` can reach etcd.
    pub fn is_reachable(&self, client: ClientId) -> bool {
        !self.unreachable.contains(&client)
    }

    /// Opens a watch on everything under `prefix` from `from_index` (0: from the next change),
    /// not tied to any client. Its events (and at most one final failure) are taken with
    /// [`SimEtcd::poll_watch`].
    pub fn open_watch(&mut self, prefix: &str, from_index: u64, now: Instant) -> WatchId {
        self.open(None, prefix, from_index, now)
    }

    /// Like [`SimEtcd::open_watch`], for `client` (see [`SimEtcd::set_reachable`]).
    pub fn open_watch_for(
        &mut self,
        client: ClientId,
        prefix: &str,
        from_index: u64,
        now: Instant,
    ) -> WatchId {
        self.open(Some(client), prefix, from_index, now)
    }

    fn open(
        &mut self,
        client: Option<ClientId>,
        prefix: &str,
        from_index: u64,
        now: Instant,
    ) -> WatchId {
        self.advance(now);
        self.next_watch += 1;
        let id = WatchId(self.next_watch);
        self.watches.insert(
            id,
            Watch {
                prefix: clean_key(prefix),
                client,
                cursor: from_index,
                outbox: VecDeque::new(),
                ended: false,
            },
        );
        if client.is_none_or(|c| self.is_reachable(c)) {
            self.catch_up(id);
        }
        id
    }

    /// The next event (or final failure) of watch `id`, if one is waiting.
    pub fn poll_watch(&mut self, id: WatchId) -> Option<Result<Event, Failure>> {
        let watch = self.watches.get_mut(&id)?;
        let item = watch.outbox.pop_front();
        if watch.outbox.is_empty() {
            self.ready.remove(&id);
            if watch.ended {
                self.watches.remove(&id);
            }
        }
        item
    }

    /// The next waiting item of any watch, lowest id first.
    pub fn poll_any_watch(&mut self) -> Option<(WatchId, Result<Event, Failure>)> {
        let id = *self.ready.first()?;
        self.poll_watch(id).map(|item| (id, item))
    }

    /// Stops watch `id`; what it had not delivered is dropped. False if there was no such watch.
    pub fn cancel_watch(&mut self, id: WatchId) -> bool {
        self.ready.remove(&id);
        self.watches.remove(&id).is_some()
    }

    /// How many watches are open (including ended ones with undelivered items).
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    fn catch_up(&mut self, id: WatchId) {
        let index = self.index;
        let start = self.history_start();
        let Some(watch) = self.watches.get_mut(&id) else {
            return;
        };
        if watch.ended {
            return;
        }
        if watch.cursor == 0 {
            watch.cursor = index + 1;
            return;
        }
        if watch.cursor < start {
            watch.outbox.push_back(Err(Failure::HistoryLost { index }));
            self.ready.insert(id);
            watch.ended = true;
            return;
        }
        for recorded in &self.history {
            if recorded.event.node.modified_index >= watch.cursor
                && watch_matches(&watch.prefix, recorded)
            {
                watch.outbox.push_back(Ok(recorded.event.clone()));
            }
        }
        if !watch.outbox.is_empty() {
            self.ready.insert(id);
        }
        watch.cursor = watch.cursor.max(index + 1);
    }

    /// Adds a change to the history and hands it to every live watch it concerns.
    fn record(&mut self, event: Event, refresh: bool) {
        let recorded = Recorded { event, refresh };
        let index = recorded.event.node.modified_index;
        for (id, watch) in self.watches.iter_mut() {
            let live = watch.client.is_none_or(|c| !self.unreachable.contains(&c));
            if watch.ended || !live || watch.cursor == 0 || index < watch.cursor {
                continue;
            }
            if watch_matches(&watch.prefix, &recorded) {
                watch.outbox.push_back(Ok(recorded.event.clone()));
                self.ready.insert(*id);
            }
            watch.cursor = index + 1;
        }
        if self.history.len() == HISTORY_CAPACITY {
            self.history.pop_front();
        }
        self.history.push_back(recorded);
    }

    /// etcd's `internalGet`.
    fn lookup(&self, path: &str) -> Result<&Entry, StoreError> {
        let mut entry = &self.root;
        let mut at = "/".to_string();
        for name in segments(path) {
            let Content::Dir(children) = &entry.content else {
                return Err(store_error(code::NOT_DIR, at));
            };
            at = join(&at, name);
            entry = children
                .get(name)
                .ok_or_else(|| store_error(code::KEY_NOT_FOUND, at.clone()))?;
        }
        Ok(entry)
    }

    fn lookup_mut(&mut self, path: &str) -> Option<&mut Entry> {
        let mut entry = &mut self.root;
        for name in segments(path) {
            let Content::Dir(children) = &mut entry.content else {
                return None;
            };
            entry = children.get_mut(name)?;
        }
        Some(entry)
    }

    /// The directory that is to hold `path`, creating missing ones (etcd's `checkDir` walk).
    fn parent_dir_mut(&mut self, path: &str) -> Result<&mut BTreeMap<String, Entry>, StoreError> {
        let index = self.index + 1;
        let mut names = segments(path);
        names.pop();
        let mut at = "/".to_string();
        let mut entry = &mut self.root;
        for name in names {
            let Content::Dir(children) = &mut entry.content else {
                return Err(store_error(code::NOT_DIR, at));
            };
            at = join(&at, name);
            entry = children
                .entry(name.to_string())
                .or_insert_with(|| Entry::new_dir(index, None));
        }
        match &mut entry.content {
            Content::Dir(children) => Ok(children),
            Content::Value(_) => Err(store_error(code::NOT_DIR, at)),
        }
    }

    /// Removes the key or directory at `path` with everything below it.
    fn remove(&mut self, path: &str) {
        let Some(name) = segments(path).last().map(|s| s.to_string()) else {
            return;
        };
        let Some(Entry {
            content: Content::Dir(children),
            ..
        }) = self.lookup_mut(parent_of(path))
        else {
            return;
        };
        let Some(removed) = children.remove(&name) else {
            return;
        };
        let mut stack = vec![(path.to_string(), removed)];
        while let Some((key, entry)) = stack.pop() {
            if let Some(at) = entry.expires {
                self.expiries.remove(&(at, key.clone()));
            }
            if let Content::Dir(children) = entry.content {
                stack.extend(children.into_iter().map(|(n, e)| (join(&key, &n), e)));
            }
        }
    }

    fn set_expiry(&mut self, path: &str, old: Option<Instant>, new: Option<Instant>) {
        if let Some(at) = old {
            self.expiries.remove(&(at, path.to_string()));
        }
        if let Some(at) = new {
            self.expiries.insert((at, path.to_string()));
        }
    }

    /// The v2 applier's choice between set, create, update and compare-and-swap.
    fn put(
        &mut self,
        path: &str,
        params: WriteParams,
        expires: Option<Instant>,
    ) -> Result<(Event, bool), StoreError> {
        let refresh = params.refresh;
        let compare = params.prev_index > 0 || !params.prev_value.is_empty();
        let event = match params.prev_exist {
            Some(true) if !compare => self.update(path, params, expires)?,
            Some(true) => self.compare_and_swap(path, params, expires)?,
            Some(false) => self.create(path, params, expires, false)?,
            None if compare => self.compare_and_swap(path, params, expires)?,
            None => self.create(path, params, expires, true)?,
        };
        Ok((event, refresh))
    }

    /// etcd's `internalCreate`: `Set` when `replace`, else `Create`.
    fn create(
        &mut self,
        path: &str,
        params: WriteParams,
        expires: Option<Instant>,
        replace: bool,
    ) -> Result<Event, StoreError> {
        if path == "/" {
            return Err(store_error(code::ROOT_READ_ONLY, "/"));
        }
        let index = self.index + 1;
        let now = self.now;
        let name = segments(path)
            .last()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let children = self.parent_dir_mut(path)?;
        let mut prev_node = None;
        let mut old_expiry = None;
        if let Some(existing) = children.get(&name) {
            if !replace {
                return Err(store_error(code::NODE_EXIST, path));
            }
            if existing.is_dir() {
                return Err(store_error(code::NOT_FILE, path));
            }
            prev_node = Some(repr(existing, path, false, now));
            old_expiry = existing.expires;
        }
        let entry = Entry {
            content: if params.dir {
                Content::Dir(BTreeMap::new())
            } else {
                Content::Value(params.value)
            },
            created: index,
            modified: index,
            expires,
        };
        let node = repr(&entry, path, false, now);
        children.insert(name, entry);
        self.set_expiry(path, old_expiry, expires);
        self.index = index;
        Ok(Event {
            action: if replace { Action::Set } else { Action::Create },
            node,
            prev_node,
        })
    }

    /// etcd's `Update`: a new value (files) and TTL; on a directory only the TTL.
    fn update(
        &mut self,
        path: &str,
        params: WriteParams,
        expires: Option<Instant>,
    ) -> Result<Event, StoreError> {
        if path == "/" {
            return Err(store_error(code::ROOT_READ_ONLY, "/"));
        }
        let entry = self.lookup(path)?;
        if entry.is_dir() && !params.value.is_empty() {
            return Err(store_error(code::NOT_FILE, path));
        }
        self.rewrite(path, Action::Update, params, expires)
    }

    /// etcd's `CompareAndSwap`, files only.
    fn compare_and_swap(
        &mut self,
        path: &str,
        params: WriteParams,
        expires: Option<Instant>,
    ) -> Result<Event, StoreError> {
        if path == "/" {
            return Err(store_error(code::ROOT_READ_ONLY, "/"));
        }
        let entry = self.lookup(path)?;
        compare(entry, path, &params.prev_value, params.prev_index)?;
        self.rewrite(path, Action::CompareAndSwap, params, expires)
    }

    /// Writes a new value (unless a refresh or a directory) and TTL into an existing entry.
    fn rewrite(
        &mut self,
        path: &str,
        action: Action,
        params: WriteParams,
        expires: Option<Instant>,
    ) -> Result<Event, StoreError> {
        let index = self.index + 1;
        let now = self.now;
        let Some(entry) = self.lookup_mut(path) else {
            return Err(store_error(code::KEY_NOT_FOUND, path));
        };
        let prev = repr(entry, path, false, now);
        let old_expiry = entry.expires;
        if let Content::Value(value) = &mut entry.content {
            if !params.refresh {
                *value = params.value;
            }
            entry.modified = index;
        }
        entry.expires = expires;
        let mut node = repr(entry, path, false, now);
        node.modified_index = index;
        node.created_index = entry.created;
        self.set_expiry(path, old_expiry, expires);
        self.index = index;
        Ok(Event {
            action,
            node,
            prev_node: Some(prev),
        })
    }

    /// etcd's `Delete` (the driver never sends `dir=true`: only `recursive` removes a directory).
    fn delete(&mut self, path: &str, recursive: bool) -> Result<Event, StoreError> {
        if path == "/" {
            return Err(store_error(code::ROOT_READ_ONLY, "/"));
        }
        let entry = self.lookup(path)?;
        if entry.is_dir() && !recursive {
            return Err(store_error(code::NOT_FILE, path));
        }
        Ok(self.removal(path, Action::Delete))
    }

    /// etcd's `CompareAndDelete`, files only.
    fn compare_and_delete(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
    ) -> Result<Event, StoreError> {
        let entry = self.lookup(path)?;
        let cause = if path == "/" { "" } else { path };
        if entry.is_dir() {
            return Err(store_error(code::NOT_FILE, cause));
        }
        compare(entry, path, prev_value, prev_index)?;
        Ok(self.removal(path, Action::CompareAndDelete))
    }

    /// Removes an existing entry and describes it as etcd does.
    fn removal(&mut self, path: &str, action: Action) -> Event {
        let (dir, created, prev) = match self.lookup(path) {
            Ok(entry) => (
                entry.is_dir(),
                entry.created,
                Some(repr(entry, path, false, self.now)),
            ),
            Err(_) => (false, 0, None),
        };
        self.index += 1;
        self.remove(path);
        Event {
            action,
            node: Node {
                key: path.to_string(),
                // A compare-and-delete only ever removes a file.
                dir: dir && action == Action::Delete,
                modified_index: self.index,
                created_index: created,
                ..Node::default()
            },
            prev_node: prev,
        }
    }
}

/// etcd's `node.Compare`: each given condition must hold.
fn compare(entry: &Entry, path: &str, prev_value: &str, prev_index: u64) -> Result<(), StoreError> {
    let Content::Value(value) = &entry.content else {
        return Err(store_error(code::NOT_FILE, path));
    };
    let index_ok = prev_index == 0 || entry.modified == prev_index;
    let value_ok = prev_value.is_empty() || value == prev_value;
    if index_ok && value_ok {
        return Ok(());
    }
    let cause = match (index_ok, value_ok) {
        (false, true) => format!("[{prev_index} != {}]", entry.modified),
        (true, false) => format!("[{prev_value} != {value}]"),
        _ => format!(
            "[{prev_value} != {value}] [{prev_index} != {}]",
            entry.modified
        ),
    };
    Err(store_error(code::TEST_FAILED, cause))
}

fn prev_value_required() -> StoreError {
    store_error(code::PREV_VALUE_REQUIRED, r#""prevValue" cannot be empty"#)
}

fn cut_off(client: ClientId) -> Failure {
    Failure::Unreachable(format!("simulated etcd: client {} is cut off", client.0))
}

/// What the driver sends for a Put and how etcd's HTTP layer reads it.
fn put_params(
    value: &PutValue,
    ttl: Option<Duration>,
    precondition: &Precondition,
) -> Result<WriteParams, Failure> {
    let mut params = WriteParams::default();
    match value {
        PutValue::Value(v) => params.value = v.clone(),
        PutValue::Directory => params.dir = true,
        PutValue::RefreshTtl => {
            if ttl.is_none() {
                return Err(refused("a TTL refresh needs a TTL"));
            }
            if *precondition == Precondition::Absent {
                return Err(refused("a TTL refresh needs an existing key"));
            }
            params.refresh = true;
            params.prev_exist = Some(true);
        }
    }
    match precondition {
        Precondition::None => {}
        Precondition::Absent => params.prev_exist = Some(false),
        Precondition::Present => params.prev_exist = Some(true),
        Precondition::Index(i) => params.prev_index = *i,
        Precondition::Value(v) if v.is_empty() => {
            return Err(prev_value_required().into_failure(precondition));
        }
        Precondition::Value(v) => params.prev_value = v.clone(),
    }
    Ok(params)
}

#[cfg(test)]
mod tests;
