//! [`Engine`]: the scheduler as a sans-IO state machine.
//!
//! Methods come in four kinds (quinn-proto's shape): getters (`&self`); [`Engine::handle_input`]
//! and [`Engine::handle_timeout`] for inputs; [`Engine::shutdown`] for the one user command; and
//! `poll_*` for outputs. After any call that takes `now`, drain [`Engine::poll_command`] and
//! [`Engine::poll_event`], then sleep until [`Engine::poll_timeout`].
//!
//! What it does:
//! - keeps a [`ClusterView`] of `P/job`, `P/unit`, `P/machines`, `P/schedule` and `P/global`
//!   with one [`PrefixFollower`] each: read recursively (a missing directory is created first, so
//!   that even an empty registry gives an index to watch from), then watched from the read's
//!   index + 1 (re-read on `HistoryLost`; each re-read every ~60 s, jittered, as a safety net);
//!   with `use_watches` off, nothing is watched and every directory is re-read every tick;
//! - holds the engine lease (spec §2.1) and writes only while it trusts it;
//! - reconciles at once when a watch event changes the model (at most one reconcile's writes in
//!   flight; changes meanwhile trigger one more), and every `reconcile_interval` as a safety net;
//! - carries out the plan: schedule = create-only `P/job/<name>/target` then
//!   `P/schedule/<machine>/<name>`; unschedule = delete the schedule entry then compare-and-delete
//!   the target; keeps every schedule record and `P/global/<name>` in line with the job's unit
//!   hash and target state. Unschedules run before schedules; a converged cluster writes nothing.

use super::lease::{ENGINE_VERSION, LeaseState, ReadLease, lease_value, parse_version};
use super::metrics::{EngineMetrics, bump};
use super::plan::{Task, UnscheduleReason, plan};
use crate::registry::records::{ScheduleRecord, TargetState};
use crate::registry::view::{ClusterView, Dir};
use crate::registry::{
    Action, Event, Failure, FollowConfig, FollowEvent, FollowTimer, Keyspace, Node, OpId, OpIdGen,
    Precondition, PrefixFollower, PutValue, Reply, Request, Response,
};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// The [`OpIdGen`] component number of the engine.
pub const ENGINE_COMPONENT: u8 = 1;

/// How the engine runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// This machine's ID (the lease holder name).
    pub machine_id: String,
    pub keyspace: Keyspace,
    /// `engine_reconcile_interval` (default 2 s): the lease renewal and safety-net reconcile
    /// period. The lease TTL is 5 × this.
    pub reconcile_interval: Duration,
    /// How long before the lease TTL runs out (counted from when the renewal was sent) this
    /// engine stops trusting it. Covers clock drift between us and etcd. Default 1 interval.
    pub lease_margin: Duration,
    /// Safety-net re-read of each watched directory, jittered by +0–25 % (default 60 s).
    pub resync_interval: Duration,
    /// An unanswered request fails after this long (default 5 s).
    pub request_timeout: Duration,
    /// Wait before re-reading after a failed read or watch (spec: 1 s).
    pub retry_delay: Duration,
    /// How long a reconcile waits after the change that asked for it, so that a burst of watch
    /// events makes one plan, not one per event (default 10 ms).
    pub reconcile_debounce: Duration,
    /// Registry writes in flight at once while carrying out a plan.
    pub max_writes_in_flight: usize,
    /// Seed for jitter.
    pub seed: u64,
    /// `disable_watches=true` sets this to false: no watches, and every directory is re-read on
    /// every tick instead.
    pub use_watches: bool,
    /// Runs beside an agent (as in fltd): the lease is trusted only while this machine's
    /// presence surely exists ([`Engine::set_presence_valid_until`]) minus `presence_margin`.
    /// Because every leader stops acting once its presence may have expired, a follower that
    /// sees the leader's machine leave takes the lease over at once instead of after its TTL.
    pub presence_bound: bool,
    /// See `presence_bound` (default 0.5 s; fltd uses agent_ttl / 6).
    pub presence_margin: Duration,
    /// Hand what the followers of `P/job`, `P/unit` and `P/machines` learn to
    /// [`Engine::poll_shared`] too, for an API front end that follows them through this engine
    /// instead of with watches of its own (fltd: one watch per directory, not two).
    pub share_view: bool,
}

impl EngineConfig {
    pub fn new(machine_id: &str) -> EngineConfig {
        EngineConfig {
            machine_id: machine_id.to_string(),
            keyspace: Keyspace::default(),
            reconcile_interval: Duration::from_secs(2),
            lease_margin: Duration::from_secs(2),
            resync_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_secs(1),
            reconcile_debounce: Duration::from_millis(10),
            max_writes_in_flight: 32,
            seed: 0,
            use_watches: true,
            presence_bound: false,
            presence_margin: Duration::from_millis(500),
            share_view: false,
        }
    }

    /// `5 × reconcile_interval`, as fleet.
    pub fn lease_ttl(&self) -> Duration {
        self.reconcile_interval * 5
    }

    /// How the directory followers time their reads.
    fn follow_config(&self) -> FollowConfig {
        FollowConfig {
            resync_interval: self.resync_interval,
            resync_jitter: FollowConfig::default().resync_jitter,
            request_timeout: self.request_timeout,
            retry_delay: self.retry_delay,
        }
    }
}

/// A registry request to carry out; answer it with a [`Response`] carrying the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub id: OpId,
    pub request: Request,
}

/// What happened, for logs, the API and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// This engine now holds the lease (`Engine leadership acquired`).
    LeaseAcquired,
    /// This engine no longer holds the lease.
    LeaseLost { reason: String },
    /// The lease was released on shutdown.
    LeaseReleased,
    /// Another engine holds the lease (`Engine leader is <id>`), or nobody does.
    LeaderChanged { leader: Option<String> },
    /// The leader's machine left the cluster (its presence expired or was deleted): this
    /// engine takes the lease over without waiting for the lease's TTL.
    LeaseTakeover { from: String },
    /// `Updated cluster engine version from <from> to <to>`.
    EngineVersionUpdated { from: u32, to: u32 },
    /// The cluster runs a newer engine version: this engine does not take part.
    EngineVersionTooNew { version: u32 },
    /// `Scheduled Unit(<unit>) to Machine(<machine>)`: both keys are written.
    UnitScheduled { unit: String, machine: String },
    /// `Unscheduled Job(<unit>) from Machine(<machine>)`.
    UnitUnscheduled {
        unit: String,
        machine: String,
        reason: String,
    },
    /// The unit could not be placed (reported when the reason first appears or changes).
    UnitUnplaceable { unit: String, reason: String },
    /// A reconcile was planned; its writes follow.
    ReconcileDone { tasks: usize, unplaceable: usize },
    /// A write failed (`Failed resolving task: …`).
    TaskFailed { task: String, failure: Failure },
    /// After [`Engine::shutdown`]: nothing more will happen.
    Stopped,
}

/// Why the engine wants to be woken up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EngineTimer {
    /// Lease renewal and safety-net reconcile.
    Tick,
    /// A change asked for a reconcile (after the debounce).
    Reconcile,
    /// The lease is about to become untrustworthy.
    LeaseExpiry,
    /// A request is overdue.
    RequestTimeout,
    /// Re-read or re-watch a directory after a failure.
    Retry,
    /// Periodic full re-read.
    Resync,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LeaseOp {
    GetVersion,
    PutVersion {
        from: u32,
    },
    Get,
    /// Acquire, renew or steal; `sent` starts the TTL, `wait` is a stolen lease's leftover.
    Write {
        sent: Instant,
        wait: Duration,
    },
    Release,
}

/// One step of a write chain.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Create-only `P/job/<name>/target`; a precondition failure ends the chain quietly.
    PutTarget {
        unit: String,
        machine: String,
    },
    /// Compare-and-delete of `P/job/<name>/target`; missing or changed is fine.
    DeleteTarget {
        unit: String,
        machine: String,
    },
    PutSchedule {
        unit: String,
        machine: String,
        record: ScheduleRecord,
        /// Rewrite an entry that exists (update-only), so that a write of an engine that
        /// was paused past its lease cannot re-create an entry the new leader removed.
        update_only: bool,
    },
    DeleteSchedule {
        unit: String,
        machine: String,
    },
    /// Compare-and-swap of `P/job/<name>/target` from a machine that went away to the one
    /// the unit moves to: the unschedule and the target half of the schedule in one write.
    MoveTarget {
        unit: String,
        from: String,
        to: String,
    },
    /// Recursive delete of `P/schedule/<machine>`: every entry of a machine that went away.
    DeleteScheduleDir {
        machine: String,
    },
    PutGlobal {
        unit: String,
        record: ScheduleRecord,
    },
    DeleteGlobal {
        unit: String,
    },
}

/// The writes for one unit in one stage, in order, and what to report when all succeed.
#[derive(Clone, Debug)]
struct Chain {
    steps: VecDeque<Step>,
    task_type: &'static str,
    done: Option<EngineEvent>,
}

/// Where a follower's requests go: counted, routed back by id, sent.
struct FollowerOutput<'a> {
    metrics: &'a mut EngineMetrics,
    follow_ops: &'a mut BTreeMap<OpId, (Followed, &'static str)>,
    commands: &'a mut VecDeque<Command>,
}

impl FollowerOutput<'_> {
    fn send(&mut self, follower: &mut PrefixFollower, followed: Followed) {
        while let Some((id, request)) = follower.poll_command() {
            let kind = request_kind(&request);
            bump(&mut self.metrics.registry_requests, kind);
            self.follow_ops.insert(id, (followed, kind));
            self.commands.push_back(Command { id, request });
        }
    }
}

/// What a follower of a directory the engine shares ([`EngineConfig::share_view`]) learnt, in
/// order: apply it to a view as the follower's own output; `index` is the follower's index
/// once it was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFollow {
    pub dir: Dir,
    pub event: FollowEvent,
    pub index: u64,
}

/// The directories an engine shares with an API front end.
pub const SHARED_DIRS: [Dir; 3] = [Dir::Jobs, Dir::Units, Dir::Machines];

/// Which follower a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Followed {
    Dir(Dir),
    Lease,
}

#[derive(Clone, Debug)]
enum Pending {
    Lease(LeaseOp),
    Write(Chain),
}

/// The scheduler. See the module docs.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    ids: OpIdGen,
    view: ClusterView,
    /// One follower per watched directory; they share `ids`.
    followers: BTreeMap<Dir, PrefixFollower>,
    /// Directories whose first snapshot has been applied.
    synced: BTreeSet<Dir>,
    /// Follows `P/lease` once another engine is known to lead (with watches on): a follower
    /// learns of a new holder, or of the lease's expiry, from its watch instead of reading the
    /// lease every tick. Renewals refresh the TTL only, which wakes no watcher, so the followers
    /// of an idle cluster send nothing.
    lease_follower: Option<PrefixFollower>,
    /// Followers' requests in flight (and running watches), for routing answers and metrics.
    follow_ops: BTreeMap<OpId, (Followed, &'static str)>,
    /// What the shared directories' followers learnt, until [`Engine::poll_shared`].
    shared: VecDeque<SharedFollow>,
    lease: LeaseState,
    lease_op: Option<OpId>,
    version_too_new: bool,
    pending: BTreeMap<OpId, Pending>,
    deadlines: BTreeSet<(Instant, OpId)>,
    commands: VecDeque<Command>,
    events: VecDeque<EngineEvent>,
    next_tick: Instant,
    /// The model changed since the last plan.
    dirty: bool,
    /// When the reconcile asked for by a change is due.
    reconcile_at: Option<Instant>,
    /// Chains of the current stage not yet started, then the stages after it (never empty
    /// ones): a stage starts once every write of the one before has been answered.
    queued: VecDeque<Chain>,
    next_stages: VecDeque<VecDeque<Chain>>,
    writes_in_flight: usize,
    unplaceable: BTreeMap<String, String>,
    metrics: EngineMetrics,
    shutting_down: bool,
    stopped: bool,
    /// The latest `now` passed in.
    last_now: Instant,
    /// The lease holder whose machine this engine has seen registered (see
    /// `leader_machine_gone`).
    leader_seen_live: Option<String>,
    /// Until when this machine's presence surely exists (see `EngineConfig::presence_bound`).
    presence_until: Option<Instant>,
}

fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Get { .. } => "get",
        Request::Put { .. } => "put",
        Request::Delete { .. } => "delete",
        Request::Watch { .. } => "watch",
    }
}

impl Engine {
    /// A new engine; it starts reading the registry and contending for the lease at once.
    pub fn new(config: EngineConfig, now: Instant) -> Engine {
        let view = ClusterView::new(config.keyspace.clone());
        let mut ids = OpIdGen::new(ENGINE_COMPONENT);
        let follow = config.follow_config();
        let followers = Dir::ALL
            .into_iter()
            .zip(1u64..)
            .map(|(dir, n)| {
                // A seed per directory, so that the five resyncs spread out.
                let seed = config
                    .seed
                    .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let key = dir.key(&config.keyspace);
                let follower = PrefixFollower::new(&key, follow.clone(), seed, &mut ids, now);
                let follower = if config.use_watches {
                    follower
                } else {
                    follower.without_watch()
                };
                (dir, follower)
            })
            .collect();
        let mut engine = Engine {
            ids,
            view,
            followers,
            synced: BTreeSet::new(),
            lease_follower: None,
            follow_ops: BTreeMap::new(),
            shared: VecDeque::new(),
            lease: LeaseState::Follower { leader: None },
            lease_op: None,
            version_too_new: false,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: now,
            dirty: true,
            reconcile_at: None,
            queued: VecDeque::new(),
            next_stages: VecDeque::new(),
            writes_in_flight: 0,
            unplaceable: BTreeMap::new(),
            metrics: EngineMetrics::default(),
            shutting_down: false,
            stopped: false,
            last_now: now,
            leader_seen_live: None,
            presence_until: None,
            config,
        };
        engine.collect_follow_output(now);
        engine.tick(now);
        engine
    }

    // ---- getters ----

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The cluster model, for the API.
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    pub fn is_leader(&self) -> bool {
        self.lease.is_leader()
    }

    pub fn lease(&self) -> &LeaseState {
        &self.lease
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Units the last reconcile could not place, with the reason (for the API).
    pub fn unplaceable(&self) -> &BTreeMap<String, String> {
        &self.unplaceable
    }

    /// True once every watched directory has been read.
    /// This machine's presence surely exists until `until` (the agent's
    /// `presence_valid_until`); only used with `EngineConfig::presence_bound`.
    pub fn set_presence_valid_until(&mut self, until: Option<Instant>, now: Instant) {
        if self.presence_until == until {
            return;
        }
        let was_ok = self.presence_ok(now);
        self.presence_until = until;
        if !was_ok {
            // Registered just now: contend at once rather than at the next tick.
            self.contend(now);
        }
        self.maybe_reconcile(now);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.len() == self.followers.len()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    // ---- outputs ----

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next thing a shared directory's follower learnt ([`EngineConfig::share_view`]).
    pub fn poll_shared(&mut self) -> Option<SharedFollow> {
        self.shared.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    /// The next instant [`Engine::handle_timeout`] must be called, and why.
    pub fn poll_timeout(&self) -> Option<(Instant, EngineTimer)> {
        if self.stopped {
            return None;
        }
        let mut timers = vec![(self.next_tick, EngineTimer::Tick)];
        if let LeaseState::Leader {
            valid_until,
            act_after,
            ..
        } = self.lease
        {
            timers.push((self.trust_until(valid_until), EngineTimer::LeaseExpiry));
            // After stealing a lease: wake when we may act, not a whole tick later.
            if self.dirty && act_after > self.last_now {
                timers.push((act_after, EngineTimer::Tick));
            }
        }
        if let Some(&(deadline, _)) = self.deadlines.first() {
            timers.push((deadline, EngineTimer::RequestTimeout));
        }
        if let Some(at) = self.reconcile_at {
            timers.push((at, EngineTimer::Reconcile));
        }
        if self.shutting_down {
            // Only the lease release is still waited for; the followers are stopped.
            timers.retain(|(_, t)| *t == EngineTimer::RequestTimeout);
        } else {
            timers.extend(
                self.followers
                    .values()
                    .chain(&self.lease_follower)
                    .filter_map(|f| {
                        let (at, why) = f.poll_timeout()?;
                        let why = match why {
                            FollowTimer::AnswerDeadline => EngineTimer::RequestTimeout,
                            FollowTimer::Retry => EngineTimer::Retry,
                            FollowTimer::Resync => EngineTimer::Resync,
                        };
                        Some((at, why))
                    }),
            );
        }
        timers.into_iter().min()
    }

    // ---- inputs ----

    /// An answer to one of our commands. Answers to unknown (e.g. timed-out) ids are ignored.
    pub fn handle_input(&mut self, response: Response, now: Instant) {
        self.last_now = self.last_now.max(now);
        if let Some(&(followed, kind)) = self.follow_ops.get(&response.id) {
            // A watch lives on until it fails; any other request ends with its answer.
            if kind != "watch" || response.result.is_err() {
                self.follow_ops.remove(&response.id);
            }
            if self.shutting_down {
                return;
            }
            if let Err(failure) = &response.result
                && !matches!(failure, Failure::NotFound | Failure::PreconditionFailed)
            {
                bump(&mut self.metrics.registry_failures, kind);
            }
            let follower = match followed {
                Followed::Dir(dir) => self.followers.get_mut(&dir),
                Followed::Lease => self.lease_follower.as_mut(),
            };
            if let Some(follower) = follower {
                follower.handle_input(&response, &mut self.ids, now);
            }
            self.collect_follow_output(now);
            return;
        }
        let Some(pending) = self.pending.remove(&response.id) else {
            return;
        };
        self.deadlines.retain(|(_, id)| *id != response.id);
        self.on_answer(response.id, pending, response.result, now);
    }

    /// Timers: request timeouts, lease expiry, retries, resync, tick. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(pending) = self.pending.remove(&id) {
                self.on_answer(id, pending, Err(Failure::Timeout), now);
            }
        }
        if self.shutting_down {
            return;
        }
        if let LeaseState::Leader { valid_until, .. } = self.lease {
            if now >= valid_until {
                self.lose_lease("lease not renewed before its TTL ran out".to_string());
            } else if now >= self.trust_until(valid_until) {
                self.lose_lease(
                    "this machine's presence was not refreshed in time (etcd unreachable?)"
                        .to_string(),
                );
            }
        }
        for follower in self
            .followers
            .values_mut()
            .chain(self.lease_follower.as_mut())
        {
            follower.handle_timeout(&mut self.ids, now);
        }
        // A follower gives up on an unanswered request by itself: count it as failed here.
        let (followers, lease_follower) = (&self.followers, &self.lease_follower);
        let mut timed_out = Vec::new();
        self.follow_ops.retain(|id, (followed, kind)| {
            let follower = match followed {
                Followed::Dir(dir) => followers.get(dir),
                Followed::Lease => lease_follower.as_ref(),
            };
            let current =
                follower.is_some_and(|f| f.pending_id() == Some(*id) || f.watch_id() == Some(*id));
            if !current {
                timed_out.push(*kind);
            }
            current
        });
        for kind in timed_out {
            bump(&mut self.metrics.registry_failures, kind);
        }
        self.collect_follow_output(now);
        if now >= self.next_tick {
            self.tick(now);
        }
        self.maybe_reconcile(now);
        if let Some(at) = self.reconcile_at
            && at <= now
        {
            self.reconcile_at = None;
            if self.dirty && self.may_act(now) && self.is_synced() && !self.writes_busy() {
                self.reconcile(now);
            }
        }
    }

    /// Stops: drops queued writes and, if leader, releases the lease (delete with prevIndex).
    /// [`EngineEvent::Stopped`] follows once that is answered or timed out.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.queued.clear();
        self.next_stages.clear();
        if let LeaseState::Leader { index, .. } = self.lease {
            let request = Request::Delete {
                key: self.config.keyspace.engine_lease(),
                precondition: Precondition::Index(index),
                recursive: false,
            };
            self.lease = LeaseState::Follower { leader: None };
            let id = self.send(request, Pending::Lease(LeaseOp::Release), now);
            self.lease_op = Some(id);
        } else {
            self.stop();
        }
    }

    // ---- internals ----

    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.events.push_back(EngineEvent::Stopped);
        }
    }

    fn send(&mut self, request: Request, pending: Pending, now: Instant) -> OpId {
        let id = self.ids.next_id();
        bump(&mut self.metrics.registry_requests, request_kind(&request));
        self.deadlines
            .insert((now + self.config.request_timeout, id));
        self.pending.insert(id, pending);
        self.commands.push_back(Command { id, request });
        id
    }

    /// Sends the followers' requests and applies what they learnt to the model.
    fn collect_follow_output(&mut self, now: Instant) {
        let mut changed = false;
        let mut out = FollowerOutput {
            metrics: &mut self.metrics,
            follow_ops: &mut self.follow_ops,
            commands: &mut self.commands,
        };
        let share = self.config.share_view;
        for (dir, follower) in &mut self.followers {
            out.send(follower, Followed::Dir(*dir));
            while let Some(event) = follower.poll_event() {
                if share && SHARED_DIRS.contains(dir) {
                    self.shared.push_back(SharedFollow {
                        dir: *dir,
                        event: event.clone(),
                        index: follower.index(),
                    });
                }
                match event {
                    FollowEvent::Snapshot { node, index } => {
                        self.view.apply_read(*dir, Some(&node), index);
                        self.synced.insert(*dir);
                        changed = true;
                    }
                    FollowEvent::Change(event) => {
                        changed |= self.view.apply_event(&event).is_some();
                    }
                }
            }
        }
        let mut lease_seen = Vec::new();
        if let Some(follower) = &mut self.lease_follower {
            out.send(follower, Followed::Lease);
            let key = self.config.keyspace.engine_lease();
            while let Some(event) = follower.poll_event() {
                match event {
                    FollowEvent::Snapshot { node, .. } => {
                        let lease = node.nodes.iter().find(|n| n.key == key);
                        lease_seen.push(lease.map(ReadLease::from_node));
                    }
                    FollowEvent::Change(event) if event.node.key == key => {
                        lease_seen.push(
                            (!event.action.is_removal()).then(|| ReadLease::from_node(&event.node)),
                        );
                    }
                    FollowEvent::Change(_) => {}
                }
            }
        }
        for seen in lease_seen {
            self.on_lease_seen(seen, now);
        }
        if changed {
            self.dirty = true;
            self.check_leader_presence(now);
            self.maybe_reconcile(now);
        }
    }

    /// Starts following `P/lease` (see `lease_follower`), once.
    fn follow_lease(&mut self, now: Instant) {
        if !self.config.use_watches || self.lease_follower.is_some() {
            return;
        }
        let seed = self.config.seed.wrapping_add(0x5851_f42d_4c95_7f2d);
        let key = self.config.keyspace.lease_dir();
        self.lease_follower = Some(PrefixFollower::new(
            &key,
            self.config.follow_config(),
            seed,
            &mut self.ids,
            now,
        ));
        self.collect_follow_output(now);
    }

    /// What the lease follower read or was told: the lease as it now is (`None`: nobody holds
    /// it). A follower learns the holder, or contends at once when the lease is gone; the
    /// contention re-reads the lease, so a stale view here only costs a read.
    fn on_lease_seen(&mut self, seen: Option<ReadLease>, now: Instant) {
        if self.lease.is_leader() || self.shutting_down || self.version_too_new {
            return;
        }
        match seen {
            Some(read)
                if read.holder != self.config.machine_id && read.version >= ENGINE_VERSION =>
            {
                self.set_leader(Some(read.holder));
                self.check_leader_presence(now);
            }
            // Free, ours from before a restart, or a legacy engine's: the contention decides.
            _ => {
                self.set_leader(None);
                self.contend(now);
            }
        }
    }

    /// Whether `holder`'s machine is known to be gone: the machines directory is read and has
    /// no live presence for it. A leader whose presence expired (agent_ttl) cannot reach etcd,
    /// so its lease can be taken over at once instead of after the lease TTL (5 ticks).
    /// Only a holder seen live before counts: one that never registered (an fltd whose engine
    /// won the lease before its agent wrote the presence) keeps the lease's full TTL.
    fn leader_machine_gone(&self, holder: &str) -> bool {
        self.config.presence_bound
            && self.leader_seen_live.as_deref() == Some(holder)
            && self.synced.contains(&Dir::Machines)
            && !self.machine_live(holder)
    }

    /// Whether the machines directory is known at least up to `index`: only then does a
    /// missing presence say that the holder of a lease written at `index` has left since (an
    /// older view may show the expiry of a presence its machine has renewed before it took
    /// the lease, e.g. right after an etcd outage).
    fn machines_seen_up_to(&self, index: u64) -> bool {
        self.followers
            .get(&Dir::Machines)
            .is_some_and(|f| f.index() >= index)
    }

    fn machine_live(&self, id: &str) -> bool {
        self.view
            .machines()
            .get(id)
            .is_some_and(|m| m.record.is_some())
    }

    /// Remembers that the known leader's machine is registered (see `leader_machine_gone`).
    fn note_leader_liveness(&mut self) {
        if let LeaseState::Follower {
            leader: Some(leader),
        } = &self.lease
            && self.machine_live(leader)
            && self.leader_seen_live.as_deref() != Some(leader)
        {
            self.leader_seen_live = Some(leader.clone());
        }
    }

    /// When the known leader's machine just disappeared, reads the lease now (not at the next
    /// tick) so that the takeover and the rescheduling of that machine's units start at once.
    fn check_leader_presence(&mut self, now: Instant) {
        self.note_leader_liveness();
        let LeaseState::Follower {
            leader: Some(leader),
        } = &self.lease
        else {
            return;
        };
        if self.lease_op.is_some()
            || self.shutting_down
            || self.version_too_new
            || !self.leader_machine_gone(leader)
        {
            return;
        }
        let request = Request::Get {
            key: self.config.keyspace.engine_lease(),
            recursive: false,
        };
        let id = self.send(request, Pending::Lease(LeaseOp::Get), now);
        self.lease_op = Some(id);
    }

    fn tick(&mut self, now: Instant) {
        self.next_tick = now + self.config.reconcile_interval;
        if self.shutting_down || self.version_too_new {
            return;
        }
        if !self.config.use_watches && self.is_synced() {
            for follower in self.followers.values_mut() {
                follower.read_now(&mut self.ids, now);
            }
            self.collect_follow_output(now);
        }
        match self.lease {
            LeaseState::Leader {
                index, valid_until, ..
            } => {
                // Renew once less than half the TTL is left: every other tick by default.
                if self.lease_op.is_none() && now + self.config.lease_ttl() / 2 >= valid_until {
                    self.renew_lease(index, now);
                }
                // The safety net: reconcile even if no event said so.
                self.dirty = true;
                self.maybe_reconcile(now);
            }
            // A known leader is watched (its loss wakes `on_lease_seen`); without a watch, or
            // while nobody is known to hold the lease, the lease is read every tick.
            LeaseState::Follower { ref leader } => {
                if leader.is_none() || self.lease_follower.is_none() {
                    self.contend(now);
                }
            }
        }
    }

    /// A follower checks the version and the lease (and takes it if free). A presence-bound
    /// engine does not before its presence exists: it could not act on the lease.
    fn contend(&mut self, now: Instant) {
        if self.lease.is_leader()
            || self.lease_op.is_some()
            || self.shutting_down
            || self.version_too_new
            || !self.presence_ok(now)
        {
            return;
        }
        let request = Request::Get {
            key: self.config.keyspace.engine_version(),
            recursive: false,
        };
        let id = self.send(request, Pending::Lease(LeaseOp::GetVersion), now);
        self.lease_op = Some(id);
    }

    /// Renews the held lease: a TTL refresh (compare-and-swap on its index) that keeps the value
    /// and wakes no watcher.
    fn renew_lease(&mut self, index: u64, now: Instant) {
        let request = Request::Put {
            key: self.config.keyspace.engine_lease(),
            value: PutValue::RefreshTtl,
            ttl: Some(self.config.lease_ttl()),
            precondition: Precondition::Index(index),
        };
        let pending = Pending::Lease(LeaseOp::Write {
            sent: now,
            wait: Duration::ZERO,
        });
        let id = self.send(request, pending, now);
        self.lease_op = Some(id);
    }

    fn write_lease(&mut self, precondition: Precondition, wait: Duration, now: Instant) {
        let request = Request::Put {
            key: self.config.keyspace.engine_lease(),
            value: PutValue::Value(lease_value(&self.config.machine_id)),
            ttl: Some(self.config.lease_ttl() + wait),
            precondition,
        };
        let id = self.send(
            request,
            Pending::Lease(LeaseOp::Write { sent: now, wait }),
            now,
        );
        self.lease_op = Some(id);
    }

    fn set_leader(&mut self, leader: Option<String>) {
        if let LeaseState::Follower { leader: known } = &self.lease
            && *known == leader
        {
            return;
        }
        self.lease = LeaseState::Follower {
            leader: leader.clone(),
        };
        self.note_leader_liveness();
        self.events.push_back(EngineEvent::LeaderChanged { leader });
    }

    fn lose_lease(&mut self, reason: String) {
        if !self.lease.is_leader() {
            return;
        }
        self.lease = LeaseState::Follower { leader: None };
        self.queued.clear();
        self.next_stages.clear();
        self.events.push_back(EngineEvent::LeaseLost { reason });
    }

    fn on_answer(
        &mut self,
        id: OpId,
        pending: Pending,
        result: Result<Reply, Failure>,
        now: Instant,
    ) {
        if let Err(failure) = &result {
            let kind = match &pending {
                Pending::Lease(LeaseOp::GetVersion | LeaseOp::Get) => "get",
                Pending::Lease(LeaseOp::Release) => "delete",
                Pending::Lease(_) => "put",
                Pending::Write(chain) => match chain.steps.front() {
                    Some(Step::DeleteTarget { .. } | Step::DeleteSchedule { .. })
                    | Some(Step::DeleteGlobal { .. }) => "delete",
                    _ => "put",
                },
            };
            if !matches!(failure, Failure::NotFound | Failure::PreconditionFailed) {
                bump(&mut self.metrics.registry_failures, kind);
            }
        }
        match pending {
            Pending::Lease(op) => {
                if self.lease_op == Some(id) {
                    self.lease_op = None;
                }
                self.on_lease(op, result, now);
            }
            Pending::Write(chain) => {
                self.writes_in_flight -= 1;
                self.on_write(chain, result, now);
            }
        }
    }

    fn on_lease(&mut self, op: LeaseOp, result: Result<Reply, Failure>, now: Instant) {
        let keyspace = self.config.keyspace.clone();
        match (op, result) {
            (LeaseOp::Release, _) => {
                self.events.push_back(EngineEvent::LeaseReleased);
                self.stop();
            }
            _ if self.shutting_down => {}
            (LeaseOp::GetVersion, result) => {
                let version = match result {
                    Ok(Reply::Got { node, .. }) => Some(parse_version(node.value.as_deref())),
                    Err(Failure::NotFound) => None,
                    Err(_) | Ok(_) => return,
                };
                let current = version.unwrap_or(0);
                if current > ENGINE_VERSION {
                    if !self.version_too_new {
                        self.version_too_new = true;
                        self.events
                            .push_back(EngineEvent::EngineVersionTooNew { version: current });
                    }
                    return;
                }
                let op = if current < ENGINE_VERSION {
                    let precondition = match version {
                        Some(_) => Precondition::Value(current.to_string()),
                        None => Precondition::Absent,
                    };
                    let request = Request::Put {
                        key: keyspace.engine_version(),
                        value: PutValue::Value(ENGINE_VERSION.to_string()),
                        ttl: None,
                        precondition,
                    };
                    (request, LeaseOp::PutVersion { from: current })
                } else {
                    let request = Request::Get {
                        key: keyspace.engine_lease(),
                        recursive: false,
                    };
                    (request, LeaseOp::Get)
                };
                let id = self.send(op.0, Pending::Lease(op.1), now);
                self.lease_op = Some(id);
            }
            (LeaseOp::PutVersion { from }, Ok(_)) => {
                self.events.push_back(EngineEvent::EngineVersionUpdated {
                    from,
                    to: ENGINE_VERSION,
                });
                let request = Request::Get {
                    key: keyspace.engine_lease(),
                    recursive: false,
                };
                let id = self.send(request, Pending::Lease(LeaseOp::Get), now);
                self.lease_op = Some(id);
            }
            // Someone else moved the version: try again next tick.
            (LeaseOp::PutVersion { .. }, Err(_)) => {}
            (LeaseOp::Get, Err(Failure::NotFound)) => {
                self.write_lease(Precondition::Absent, Duration::ZERO, now);
            }
            (LeaseOp::Get, Ok(Reply::Got { node, .. })) => {
                let read = ReadLease::from_node(&node);
                if read.holder == self.config.machine_id {
                    // Ours from before a restart: keep it.
                    self.write_lease(Precondition::Index(read.index), Duration::ZERO, now);
                } else if read.version >= ENGINE_VERSION
                    && self.leader_machine_gone(&read.holder)
                    && self.machines_seen_up_to(read.index)
                {
                    // The holder's machine is gone: take the lease over now (CAS on its index,
                    // so of two contenders only one wins).
                    self.events
                        .push_back(EngineEvent::LeaseTakeover { from: read.holder });
                    self.write_lease(Precondition::Index(read.index), Duration::ZERO, now);
                } else if read.version >= ENGINE_VERSION {
                    self.set_leader(Some(read.holder));
                    self.follow_lease(now);
                } else {
                    // A legacy engine holds it: steal, then wait out its TTL before acting.
                    self.write_lease(Precondition::Index(read.index), read.remaining, now);
                }
            }
            (LeaseOp::Get, _) => {}
            (LeaseOp::Write { sent, wait }, Ok(Reply::Put { node })) => {
                let expires = (sent + self.config.lease_ttl() + wait).since_epoch();
                let valid_until =
                    Instant::from_epoch(expires.saturating_sub(self.config.lease_margin));
                let was_leader = self.lease.is_leader();
                self.lease = LeaseState::Leader {
                    index: node.modified_index,
                    valid_until,
                    act_after: sent + wait,
                };
                if !was_leader {
                    self.metrics.leader_since = Some(now);
                    self.events.push_back(EngineEvent::LeaseAcquired);
                    self.dirty = true;
                }
                self.maybe_reconcile(now);
            }
            (LeaseOp::Write { .. }, result) => {
                let why = match result {
                    Err(failure) => failure.to_string(),
                    Ok(_) => "unexpected reply".to_string(),
                };
                if self.lease.is_leader() {
                    self.lose_lease(format!("Engine leadership lost, renewal failed: {why}"));
                } else {
                    // Another engine was faster.
                    self.set_leader(None);
                }
            }
        }
    }

    /// The end of this engine's trust in a lease valid until `valid_until`: with
    /// `presence_bound`, also no later than its machine's presence minus the margin.
    fn trust_until(&self, valid_until: Instant) -> Instant {
        if !self.config.presence_bound {
            return valid_until;
        }
        let presence = self
            .presence_until
            .map_or(Instant::from_epoch(Duration::ZERO), |p| {
                Instant::from_epoch(p.since_epoch().saturating_sub(self.config.presence_margin))
            });
        valid_until.min(presence)
    }

    /// Whether this machine's presence allows trusting a lease now (always without
    /// `presence_bound`).
    fn presence_ok(&self, now: Instant) -> bool {
        !self.config.presence_bound || now < self.trust_until(Instant::from_epoch(Duration::MAX))
    }

    /// Whether this engine may write now.
    fn may_act(&self, now: Instant) -> bool {
        match self.lease {
            LeaseState::Leader {
                valid_until,
                act_after,
                ..
            } => !self.shutting_down && now >= act_after && now < self.trust_until(valid_until),
            LeaseState::Follower { .. } => false,
        }
    }

    fn writes_busy(&self) -> bool {
        self.writes_in_flight > 0 || !self.queued.is_empty() || !self.next_stages.is_empty()
    }

    /// Asks for a reconcile after the debounce if the model changed and this engine could act
    /// on it; [`Engine::handle_timeout`] runs it.
    fn maybe_reconcile(&mut self, now: Instant) {
        if self.reconcile_at.is_none()
            && self.dirty
            && self.may_act(now)
            && self.is_synced()
            && !self.writes_busy()
        {
            self.reconcile_at = Some(now + self.config.reconcile_debounce);
        }
    }

    fn reconcile(&mut self, now: Instant) {
        self.dirty = false;
        self.metrics.reconcile_count += 1;
        let snapshot = self.view.snapshot();
        let plan = plan(&snapshot);

        let mut unscheduled: BTreeSet<&str> = BTreeSet::new();
        let mut scheduled: BTreeMap<&str, &str> = BTreeMap::new();
        // Stage zero: the schedule directories of machines that went away, each in one
        // recursive delete. Stage one: unschedules. Stage two: schedules.
        let mut stage_zero: VecDeque<Chain> = VecDeque::new();
        let mut stage_one: VecDeque<Chain> = VecDeque::new();
        let mut stage_two: VecDeque<Chain> = VecDeque::new();
        // A unit whose machine went away and that this plan places elsewhere: its target is
        // swapped from the old machine to the new one in stage one (one write instead of a
        // delete and a create), its new schedule entry written in stage two as any other. So
        // an entry never exists but where the unit's target is, and never on two machines.
        let placements: BTreeMap<&str, &str> = plan
            .tasks
            .iter()
            .filter_map(|task| match task {
                Task::AttemptSchedule { unit, machine } => Some((unit.as_str(), machine.as_str())),
                Task::Unschedule { .. } => None,
            })
            .collect();
        let mut moved: BTreeSet<&str> = BTreeSet::new();
        let mut away: BTreeSet<&str> = BTreeSet::new();
        for task in &plan.tasks {
            match task {
                Task::Unschedule {
                    unit,
                    machine,
                    reason,
                } => {
                    if let Some(kind) = reason.failure_type() {
                        bump(&mut self.metrics.reconcile_failure_count, kind);
                    }
                    unscheduled.insert(unit);
                    let steps = match (reason, placements.get(unit.as_str())) {
                        (UnscheduleReason::MachineAway { .. }, Some(&to)) => {
                            away.insert(machine);
                            moved.insert(unit);
                            VecDeque::from([Step::MoveTarget {
                                unit: unit.clone(),
                                from: machine.clone(),
                                to: to.to_string(),
                            }])
                        }
                        (UnscheduleReason::MachineAway { .. }, None) => {
                            away.insert(machine);
                            VecDeque::from([Step::DeleteTarget {
                                unit: unit.clone(),
                                machine: machine.clone(),
                            }])
                        }
                        _ => VecDeque::from([
                            Step::DeleteSchedule {
                                unit: unit.clone(),
                                machine: machine.clone(),
                            },
                            Step::DeleteTarget {
                                unit: unit.clone(),
                                machine: machine.clone(),
                            },
                        ]),
                    };
                    stage_one.push_back(Chain {
                        steps,
                        task_type: task.metric_type(),
                        done: Some(EngineEvent::UnitUnscheduled {
                            unit: unit.clone(),
                            machine: machine.clone(),
                            reason: reason.to_string(),
                        }),
                    });
                }
                Task::AttemptSchedule { unit, machine } => {
                    scheduled.insert(unit, machine);
                    let Some(record) = self.schedule_record(unit) else {
                        continue;
                    };
                    let mut steps = VecDeque::from([Step::PutSchedule {
                        unit: unit.clone(),
                        machine: machine.clone(),
                        record,
                        update_only: false,
                    }]);
                    if !moved.contains(unit.as_str()) {
                        steps.push_front(Step::PutTarget {
                            unit: unit.clone(),
                            machine: machine.clone(),
                        });
                    }
                    stage_two.push_back(Chain {
                        steps,
                        task_type: task.metric_type(),
                        done: Some(EngineEvent::UnitScheduled {
                            unit: unit.clone(),
                            machine: machine.clone(),
                        }),
                    });
                }
            }
        }

        // Keep schedule records in line with jobs that stay where they are.
        let mut wanted: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (name, job) in self.view.jobs() {
            if job.is_global() {
                continue;
            }
            let Some(target) = job.target.as_deref() else {
                continue;
            };
            if unscheduled.contains(name.as_str())
                || job.target_state == Some(TargetState::Inactive)
            {
                continue;
            }
            // Only a target is left: the job was destroyed while a schedule of it was in
            // flight (the target write re-created it). Unschedule it.
            if job.hash.is_none() && job.target_state.is_none() {
                unscheduled.insert(name.as_str());
                stage_one.push_back(Chain {
                    steps: VecDeque::from([
                        Step::DeleteSchedule {
                            unit: name.clone(),
                            machine: target.to_string(),
                        },
                        Step::DeleteTarget {
                            unit: name.clone(),
                            machine: target.to_string(),
                        },
                    ]),
                    task_type: "unscheduleunit",
                    done: Some(EngineEvent::UnitUnscheduled {
                        unit: name.clone(),
                        machine: target.to_string(),
                        reason: "job destroyed".to_string(),
                    }),
                });
                continue;
            }
            // Kept even when no record can be built (unreadable target state): leave it be.
            wanted.insert((target, name.as_str()));
            let Some(record) = self.schedule_record(name) else {
                continue;
            };
            let key = (target.to_string(), name.clone());
            let existing = self.view.schedules().get(&key);
            if existing != Some(&record) {
                stage_two.push_back(sync_chain(Step::PutSchedule {
                    unit: name.clone(),
                    machine: target.to_string(),
                    record,
                    update_only: existing.is_some(),
                }));
            }
        }
        for (machine, name) in scheduled {
            wanted.insert((machine, name));
        }
        for machine in &away {
            stage_zero.push_back(sync_chain(Step::DeleteScheduleDir {
                machine: machine.to_string(),
            }));
        }
        for (machine, name) in self.view.schedules().keys() {
            if !wanted.contains(&(machine.as_str(), name.as_str()))
                && !unscheduled.contains(name.as_str())
                && !away.contains(machine.as_str())
            {
                stage_one.push_back(sync_chain(Step::DeleteSchedule {
                    unit: name.clone(),
                    machine: machine.clone(),
                }));
            }
        }
        // Mirror global units into P/global.
        for (name, job) in self.view.jobs() {
            if !job.is_global() {
                continue;
            }
            if let Some(record) = self.schedule_record(name)
                && self.view.globals().get(name) != Some(&record)
            {
                stage_two.push_back(sync_chain(Step::PutGlobal {
                    unit: name.clone(),
                    record,
                }));
            }
        }
        for name in self.view.globals().keys() {
            let still_global = self.view.jobs().get(name).is_some_and(|j| j.is_global());
            if !still_global {
                stage_one.push_back(sync_chain(Step::DeleteGlobal { unit: name.clone() }));
            }
        }

        // Report units that cannot be placed, once per reason.
        let mut now_unplaceable = BTreeMap::new();
        for u in &plan.unplaceable {
            bump(&mut self.metrics.reconcile_failure_count, "schedule");
            let reason = u.reason.to_string();
            if self.unplaceable.get(&u.unit) != Some(&reason) {
                self.events.push_back(EngineEvent::UnitUnplaceable {
                    unit: u.unit.clone(),
                    reason: reason.clone(),
                });
            }
            now_unplaceable.insert(u.unit.clone(), reason);
        }
        self.unplaceable = now_unplaceable;
        self.events.push_back(EngineEvent::ReconcileDone {
            tasks: plan.tasks.len(),
            unplaceable: plan.unplaceable.len(),
        });

        self.next_stages = [stage_zero, stage_one, stage_two]
            .into_iter()
            .filter(|stage| !stage.is_empty())
            .collect();
        self.queued = self.next_stages.pop_front().unwrap_or_default();
        self.dispatch(now);
    }

    /// The schedule record of a job: its unit hash and target state.
    fn schedule_record(&self, name: &str) -> Option<ScheduleRecord> {
        let job = self.view.jobs().get(name)?;
        Some(ScheduleRecord {
            unit_hash: job.hash?.to_hex(),
            target_state: job.target_state?,
        })
    }

    fn dispatch(&mut self, now: Instant) {
        if !self.may_act(now) {
            self.queued.clear();
            self.next_stages.clear();
            return;
        }
        loop {
            if self.queued.is_empty() && self.writes_in_flight == 0 {
                let Some(stage) = self.next_stages.pop_front() else {
                    break;
                };
                self.queued = stage;
            }
            if self.writes_in_flight >= self.config.max_writes_in_flight.max(1) {
                break;
            }
            let Some(chain) = self.queued.pop_front() else {
                break;
            };
            self.start_step(chain, now);
        }
        if !self.writes_busy() {
            self.maybe_reconcile(now);
        }
    }

    fn start_step(&mut self, chain: Chain, now: Instant) {
        let Some(step) = chain.steps.front() else {
            return;
        };
        let ks = &self.config.keyspace;
        let record_json = |r: &ScheduleRecord| serde_json::to_string(r).unwrap_or_default();
        let request = match step {
            Step::PutTarget { unit, machine } => Request::Put {
                key: ks.job_target(unit),
                value: PutValue::Value(machine.clone()),
                ttl: None,
                precondition: Precondition::Absent,
            },
            Step::DeleteTarget { unit, machine } => Request::Delete {
                key: ks.job_target(unit),
                precondition: Precondition::Value(machine.clone()),
                recursive: false,
            },
            Step::PutSchedule {
                unit,
                machine,
                record,
                update_only,
            } => Request::Put {
                key: ks.schedule_entry(machine, unit),
                value: PutValue::Value(record_json(record)),
                ttl: None,
                precondition: if *update_only {
                    Precondition::Present
                } else {
                    Precondition::None
                },
            },
            Step::DeleteSchedule { unit, machine } => Request::Delete {
                key: ks.schedule_entry(machine, unit),
                precondition: Precondition::None,
                recursive: false,
            },
            Step::MoveTarget { unit, from, to } => Request::Put {
                key: ks.job_target(unit),
                value: PutValue::Value(to.clone()),
                ttl: None,
                precondition: Precondition::Value(from.clone()),
            },
            Step::DeleteScheduleDir { machine } => Request::Delete {
                key: ks.schedule_dir(machine),
                precondition: Precondition::None,
                recursive: true,
            },
            Step::PutGlobal { unit, record } => Request::Put {
                key: ks.global_entry(unit),
                value: PutValue::Value(record_json(record)),
                ttl: None,
                precondition: Precondition::None,
            },
            Step::DeleteGlobal { unit } => Request::Delete {
                key: ks.global_entry(unit),
                precondition: Precondition::None,
                recursive: false,
            },
        };
        self.writes_in_flight += 1;
        self.send(request, Pending::Write(chain), now);
    }

    fn on_write(&mut self, mut chain: Chain, result: Result<Reply, Failure>, now: Instant) {
        let Some(step) = chain.steps.pop_front() else {
            return;
        };
        let tolerated = matches!(
            (&step, &result),
            (_, Ok(_))
                | (
                    Step::DeleteTarget { .. }
                        | Step::DeleteSchedule { .. }
                        | Step::DeleteScheduleDir { .. }
                        | Step::DeleteGlobal { .. },
                    Err(Failure::NotFound)
                )
                | (Step::DeleteTarget { .. }, Err(Failure::PreconditionFailed))
        );
        // Apply our own write to the model at once, so that its watch event changes nothing.
        match &result {
            Ok(Reply::Put { node }) => {
                self.view.apply_event(&Event {
                    action: Action::Set,
                    node: node.clone(),
                    prev_node: None,
                });
            }
            Ok(Reply::Deleted { index }) => {
                let key = self.step_key(&step);
                self.view.apply_event(&Event {
                    action: Action::Delete,
                    node: Node {
                        key,
                        modified_index: *index,
                        dir: matches!(step, Step::DeleteScheduleDir { .. }),
                        ..Node::default()
                    },
                    prev_node: None,
                });
            }
            _ => {}
        }
        if !tolerated {
            match (&step, result) {
                // Someone scheduled it first: nothing to do, and no failure.
                (Step::PutTarget { .. }, Err(Failure::PreconditionFailed)) => {}
                (_, Err(failure)) => {
                    bump(&mut self.metrics.task_failure_count, chain.task_type);
                    self.events.push_back(EngineEvent::TaskFailed {
                        task: format!("{step:?}"),
                        failure,
                    });
                    // The schedules were planned on these unschedules having happened (a
                    // MachineOf= unit moving with its peer): plan again instead.
                    self.next_stages.clear();
                    self.dirty = true;
                }
                (_, Ok(_)) => {}
            }
            self.dispatch(now);
            return;
        }
        if chain.steps.is_empty() {
            bump(&mut self.metrics.task_count, chain.task_type);
            if let Some(event) = chain.done.take() {
                self.events.push_back(event);
            }
        } else if self.may_act(now) {
            self.start_step(chain, now);
        }
        self.dispatch(now);
    }

    fn step_key(&self, step: &Step) -> String {
        let ks = &self.config.keyspace;
        match step {
            Step::PutTarget { unit, .. }
            | Step::DeleteTarget { unit, .. }
            | Step::MoveTarget { unit, .. } => ks.job_target(unit),
            Step::DeleteScheduleDir { machine } => ks.schedule_dir(machine),
            Step::PutSchedule { unit, machine, .. } | Step::DeleteSchedule { unit, machine } => {
                ks.schedule_entry(machine, unit)
            }
            Step::PutGlobal { unit, .. } | Step::DeleteGlobal { unit } => ks.global_entry(unit),
        }
    }
}

fn sync_chain(step: Step) -> Chain {
    Chain {
        steps: VecDeque::from([step]),
        task_type: "syncschedule",
        done: None,
    }
}
