//! Outgoing commands and events, and the bookkeeping of requests in flight (who waits for the
//! answer, and until when), shared by the parts of the agent.

use super::metrics::{AgentMetrics, request_kind};
use super::{Command, Event, SourceKind, SystemdRequest};
use crate::registry::{OpId, OpIdGen, Request};
use crate::rng::SplitMix64;
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Who is waiting for the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Presence,
    Publisher,
    Source(SourceKind),
    UnitFile,
    Task,
    ListUnits,
    Shutdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PendingKind {
    Registry,
    /// A [`crate::registry::PrefixFollower`]'s read, directory creation or watch: the follower
    /// keeps its own deadline, and its source forgets the request when the follower does.
    Follow,
    Systemd,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub owner: Owner,
    pub kind: PendingKind,
    pub deadline: Option<Instant>,
    /// The registry request's metric label (`get`, `put`, ...); empty for systemd requests.
    pub request: &'static str,
}

/// Outgoing commands and events, request bookkeeping and jitter, shared by the parts.
#[derive(Debug)]
pub(crate) struct Io {
    pub ids: OpIdGen,
    pub commands: VecDeque<Command>,
    pub events: VecDeque<Event>,
    pub pending: BTreeMap<OpId, Pending>,
    registry_timeout: Duration,
    systemd_timeout: Duration,
    pub rng: SplitMix64,
    pub metrics: AgentMetrics,
}

impl Io {
    pub fn new(
        component: u8,
        registry_timeout: Duration,
        systemd_timeout: Duration,
        seed: u64,
    ) -> Io {
        Io {
            ids: OpIdGen::new(component),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            pending: BTreeMap::new(),
            registry_timeout,
            systemd_timeout,
            rng: SplitMix64::new(seed),
            metrics: AgentMetrics::default(),
        }
    }

    pub fn registry(&mut self, owner: Owner, request: Request, now: Instant) -> OpId {
        let id = self.ids.next_id();
        self.metrics.count_request(&request);
        self.pending.insert(
            id,
            Pending {
                owner,
                kind: PendingKind::Registry,
                deadline: Some(now + self.registry_timeout),
                request: request_kind(&request),
            },
        );
        self.commands.push_back(Command::Registry { id, request });
        id
    }

    /// Sends a request a follower made with an id from [`Io::ids`].
    pub fn follow(&mut self, owner: Owner, id: OpId, request: Request) {
        self.metrics.count_request(&request);
        let pending = Pending {
            owner,
            kind: PendingKind::Follow,
            deadline: None,
            request: request_kind(&request),
        };
        self.pending.insert(id, pending);
        self.commands.push_back(Command::Registry { id, request });
    }

    pub fn systemd(&mut self, owner: Owner, request: SystemdRequest, now: Instant) -> OpId {
        let id = self.ids.next_id();
        self.pending.insert(
            id,
            Pending {
                owner,
                kind: PendingKind::Systemd,
                deadline: Some(now + self.systemd_timeout),
                request: "",
            },
        );
        self.commands.push_back(Command::Systemd { id, request });
        id
    }

    pub fn event(&mut self, event: Event) {
        self.metrics.count_event(&event);
        self.events.push_back(event);
    }
}
