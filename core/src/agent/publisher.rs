//! Unit state publishing (spec §3.7), with etcd traffic that does not grow with the number of
//! units: the states live in one directory per machine, `P/unit-states/<id>/`, which carries the
//! TTL (2 × `agent_ttl`). The agent's heartbeat refreshes that one directory every other beat
//! (once less than half its TTL is left): the TTL only collects a dead machine's states, which
//! readers already ignore once the machine's presence (TTL `agent_ttl`) is gone. Each
//! `P/unit-states/<id>/<name>` (no TTL of its own) is written only when the state changes and
//! deleted only when the unit leaves this machine. If the directory is found gone (it expired
//! during an etcd outage) or replaced, it is created or read again and every state is republished.

use super::backoff::Backoff;
use super::{Event, Io, Owner};
use crate::registry::records::UnitStateRecord;
use crate::registry::{Failure, KeyKind, Keyspace, OpId, Precondition, PutValue, Reply, Request};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Not started (the machine is not registered yet).
    Idle,
    /// Create-only write of the directory in flight.
    Creating(OpId),
    /// Reading an existing directory to learn what it holds.
    Reading(OpId),
    Ready,
    /// Waiting to try creating it again.
    Waiting(Instant),
}

#[derive(Debug)]
pub(crate) struct Publisher {
    machine_id: String,
    keyspace: Keyspace,
    dir_key: String,
    ttl: Duration,
    dir: Dir,
    /// When the directory we know was created; another value means it was replaced.
    created_index: u64,
    refresh: Option<OpId>,
    /// When the last successful refresh (or the creation) was sent.
    refreshed_sent: Option<Instant>,
    /// When the refresh in flight was sent.
    refresh_sent: Instant,
    /// What the registry holds, as far as we know.
    published: BTreeMap<String, UnitStateRecord>,
    /// Writes in flight: name, the record written (`None`: a delete), and the directory
    /// generation they were sent in.
    writes: BTreeMap<OpId, (String, Option<UnitStateRecord>, u64)>,
    writing: BTreeSet<String>,
    /// Bumped whenever `published` is rebuilt, so that older writes do not update it.
    generation: u64,
    retry_at: Option<Instant>,
    backoff: Backoff,
}

/// What a publisher response means for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublisherChange {
    None,
    /// Every state must be compared and written again.
    SyncAll,
    /// This unit's state must be compared and written again.
    SyncOne(String),
    /// The directory refresh failed (the heartbeat should retry soon).
    RefreshFailed,
}

impl Publisher {
    /// `ttl`: the directory's TTL.
    pub fn new(keyspace: &Keyspace, machine_id: &str, ttl: Duration) -> Publisher {
        Publisher {
            machine_id: machine_id.to_string(),
            keyspace: keyspace.clone(),
            dir_key: keyspace.machine_states_dir(machine_id),
            ttl,
            dir: Dir::Idle,
            created_index: 0,
            refresh: None,
            refreshed_sent: None,
            refresh_sent: Instant::from_epoch(Duration::ZERO),
            published: BTreeMap::new(),
            writes: BTreeMap::new(),
            writing: BTreeSet::new(),
            generation: 0,
            retry_at: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }

    /// What the registry holds (as far as the agent knows).
    pub fn published(&self) -> &BTreeMap<String, UnitStateRecord> {
        &self.published
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        let dir = match self.dir {
            Dir::Waiting(at) => Some(at),
            _ => None,
        };
        [dir, self.retry_at].into_iter().flatten().min()
    }

    /// The registry answers again: retry failed writes now rather than after the backoff.
    pub fn retry_now(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at > now) {
            self.retry_at = Some(now);
        }
        if let Dir::Waiting(at) = self.dir
            && at > now
        {
            self.dir = Dir::Waiting(now);
        }
    }

    /// Starts (once the machine is registered): creates the directory.
    pub fn start(&mut self, now: Instant, io: &mut Io) {
        if self.dir == Dir::Idle {
            self.create(now, io);
        }
    }

    fn create(&mut self, now: Instant, io: &mut Io) {
        let request = Request::Put {
            key: self.dir_key.clone(),
            value: PutValue::Directory,
            ttl: Some(self.ttl),
            precondition: Precondition::Absent,
        };
        self.dir = Dir::Creating(io.registry(Owner::Publisher, request, now));
    }

    fn read(&mut self, now: Instant, io: &mut Io) {
        let request = Request::Get {
            key: self.dir_key.clone(),
            recursive: true,
        };
        self.dir = Dir::Reading(io.registry(Owner::Publisher, request, now));
    }

    fn reset(&mut self) {
        self.published.clear();
        self.generation += 1;
    }

    /// Refreshes the directory's TTL (part of the heartbeat, every `agent_ttl/2`) once less than
    /// about half of it (`agent_ttl`) is left, up to an eighth of it early: every other beat.
    pub fn refresh(&mut self, now: Instant, io: &mut Io) {
        if self.dir != Dir::Ready || self.refresh.is_some() {
            return;
        }
        if let Some(sent) = self.refreshed_sent
            && now + self.ttl / 8 < sent + self.ttl / 2
        {
            return;
        }
        self.refresh_sent = now;
        let request = Request::Put {
            key: self.dir_key.clone(),
            value: PutValue::RefreshTtl,
            ttl: Some(self.ttl),
            precondition: Precondition::Present,
        };
        self.refresh = Some(io.registry(Owner::Publisher, request, now));
    }

    /// Returns true when states should be synced again.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut Io) -> bool {
        if let Dir::Waiting(at) = self.dir
            && at <= now
        {
            self.create(now, io);
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            return true;
        }
        false
    }

    /// Writes every state in `wanted` that differs from what was published, and deletes the
    /// published states of units no longer in `wanted` (only this machine's keys).
    pub fn sync(&mut self, wanted: &BTreeMap<String, UnitStateRecord>, now: Instant, io: &mut Io) {
        if self.dir != Dir::Ready {
            return;
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for (name, record) in wanted {
            self.sync_one(name, Some(record), now, io);
        }
        for name in gone {
            self.sync_one(&name, None, now, io);
        }
    }

    /// Writes (or, with `None`, deletes) the state of one unit if it differs from what was
    /// published and no write for it is in flight (its answer triggers another look).
    pub fn sync_one(
        &mut self,
        name: &str,
        wanted: Option<&UnitStateRecord>,
        now: Instant,
        io: &mut Io,
    ) {
        if self.dir != Dir::Ready
            || self.writing.contains(name)
            || self.published.get(name) == wanted
        {
            return;
        }
        let key = self.keyspace.unit_state(&self.machine_id, name);
        let request = match wanted {
            Some(record) => Request::Put {
                key,
                value: PutValue::Value(serde_json::to_string(record).unwrap_or_default()),
                ttl: None,
                precondition: Precondition::None,
            },
            None => Request::Delete {
                key,
                precondition: Precondition::None,
                recursive: false,
            },
        };
        let id = io.registry(Owner::Publisher, request, now);
        self.writing.insert(name.to_string());
        self.writes
            .insert(id, (name.to_string(), wanted.cloned(), self.generation));
    }

    pub fn handle_response(
        &mut self,
        id: OpId,
        result: Result<Reply, Failure>,
        now: Instant,
        io: &mut Io,
    ) -> PublisherChange {
        if let Some((name, record, generation)) = self.writes.remove(&id) {
            self.writing.remove(&name);
            let ok = match (&record, &result) {
                (_, Ok(_)) | (None, Err(Failure::NotFound)) => true,
                (_, Err(failure)) => {
                    io.event(Event::PublishFailed {
                        name: name.clone(),
                        error: failure.to_string(),
                    });
                    false
                }
            };
            if !ok {
                if self.retry_at.is_none() {
                    self.retry_at = Some(now + self.backoff.next_delay(&mut io.rng));
                }
                return PublisherChange::None;
            }
            self.backoff.reset();
            if generation == self.generation {
                match record {
                    Some(record) => {
                        io.event(Event::UnitStatePublished {
                            name: name.clone(),
                            load: record.load_state.clone(),
                            active: record.active_state.clone(),
                            sub: record.sub_state.clone(),
                        });
                        self.published.insert(name.clone(), record);
                    }
                    None => {
                        io.event(Event::UnitStateRemoved { name: name.clone() });
                        self.published.remove(&name);
                    }
                }
            }
            return PublisherChange::SyncOne(name);
        }
        if self.refresh == Some(id) {
            self.refresh = None;
            return match result {
                Ok(Reply::Put { node }) => {
                    self.refreshed_sent = Some(self.refresh_sent);
                    if node.created_index != 0
                        && self.created_index != 0
                        && node.created_index != self.created_index
                    {
                        // Expired and re-created (by a late child write, without our TTL): learn
                        // what it holds now.
                        self.reset();
                        self.read(now, io);
                    }
                    PublisherChange::None
                }
                Ok(_) => PublisherChange::None,
                Err(Failure::NotFound | Failure::PreconditionFailed) => {
                    io.event(Event::StatesDirectoryLost {
                        key: self.dir_key.clone(),
                    });
                    self.reset();
                    self.create(now, io);
                    PublisherChange::None
                }
                Err(failure) => {
                    io.event(Event::HeartbeatFailed {
                        error: failure.to_string(),
                    });
                    PublisherChange::RefreshFailed
                }
            };
        }
        match self.dir {
            Dir::Creating(x) if x == id => match result {
                Ok(reply) => {
                    if let Reply::Put { node } = reply {
                        self.created_index = node.created_index;
                    }
                    self.reset();
                    self.dir = Dir::Ready;
                    PublisherChange::SyncAll
                }
                Err(Failure::PreconditionFailed) => {
                    self.read(now, io);
                    PublisherChange::None
                }
                Err(failure) => {
                    io.event(Event::StatesDirectoryFailed {
                        error: failure.to_string(),
                    });
                    self.dir = Dir::Waiting(now + self.backoff.next_delay(&mut io.rng));
                    PublisherChange::None
                }
            },
            Dir::Reading(x) if x == id => match result {
                Ok(Reply::Got { node, .. }) => {
                    self.reset();
                    for child in node.walk() {
                        if let Some(KeyKind::UnitState { machine, name }) =
                            self.keyspace.classify(&child.key)
                            && machine == self.machine_id
                        {
                            // An unreadable leftover counts as something to overwrite or delete.
                            let record = child
                                .value
                                .as_deref()
                                .and_then(|v| serde_json::from_str(v).ok())
                                .unwrap_or_default();
                            self.published.insert(name.clone(), record);
                        }
                    }
                    self.created_index = node.created_index;
                    self.dir = Dir::Ready;
                    // It may be a leftover whose TTL is about to run out, or one without a TTL.
                    self.refresh(now, io);
                    PublisherChange::SyncAll
                }
                Err(Failure::NotFound) => {
                    self.create(now, io);
                    PublisherChange::None
                }
                other => {
                    let error = match other {
                        Err(f) => f.to_string(),
                        Ok(r) => format!("unexpected reply {r:?}"),
                    };
                    io.event(Event::StatesDirectoryFailed { error });
                    self.dir = Dir::Waiting(now + self.backoff.next_delay(&mut io.rng));
                    PublisherChange::None
                }
            },
            _ => PublisherChange::None,
        }
    }
}
