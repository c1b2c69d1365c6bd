//! [`PrefixFollower`]: keeps a consumer up to date with everything under one prefix, at the cost
//! of one read at start, one long-lived watch, and a slow jittered resync.
//!
//! The recipe it implements (see `Documentation/architecture.md`):
//! 1. `Get` the prefix recursively → [`FollowEvent::Snapshot`] at the read's index `i`;
//! 2. `Watch` from `i + 1` → one [`FollowEvent::Change`] per event, never re-listing;
//! 3. on [`Failure::HistoryLost`] (etcd forgot that index), go back to 1;
//! 4. every `resync_interval` (+ jitter), read again while the watch keeps running, as a safety
//!    net. A snapshot older than the last change already handed out is dropped, not applied.
//!
//! A missing prefix is created as an empty directory first, so that every read has an index to
//! watch from. Sans-IO like the rest of the core: requests are polled out with ids from the
//! caller's [`OpIdGen`], answers come back through [`PrefixFollower::handle_input`], and an
//! unanswered read is given up after `request_timeout` and sent again. The watch itself has no
//! deadline: it is answered by events for as long as it runs.

use super::{
    Event, Failure, Node, OpId, OpIdGen, Precondition, PutValue, Reply, Request, Response,
};
use crate::rng::SplitMix64;
use crate::time::Instant;
use std::collections::VecDeque;
use std::time::Duration;

/// Timing of a [`PrefixFollower`].
#[derive(Clone, Debug, PartialEq)]
pub struct FollowConfig {
    /// Base period of the safety-net resync (at least a minute in production).
    pub resync_interval: Duration,
    /// Up to this fraction of `resync_interval` is added at random to each period.
    pub resync_jitter: f64,
    /// How long to wait for the answer to a read or a directory creation.
    pub request_timeout: Duration,
    /// Pause before trying again after a failure.
    pub retry_delay: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            resync_interval: Duration::from_secs(60),
            resync_jitter: 0.25,
            request_timeout: Duration::from_secs(5),
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// What the consumer learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowEvent {
    /// Everything under the prefix as read at `index` (`node` is the prefix directory). It
    /// replaces all that was known before.
    Snapshot { node: Node, index: u64 },
    /// One change, newer than the last snapshot or change.
    Change(Event),
}

/// Why the follower wants to be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowTimer {
    /// A read or directory creation went unanswered.
    AnswerDeadline,
    /// Try again after a failure.
    Retry,
    /// The periodic safety-net read.
    Resync,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingKind {
    Read,
    CreateDirectory,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    id: OpId,
    kind: PendingKind,
    deadline: Instant,
}

/// Follows one prefix. See the module docs.
#[derive(Clone, Debug)]
pub struct PrefixFollower {
    prefix: String,
    config: FollowConfig,
    rng: SplitMix64,
    /// The index of the last snapshot or change handed out (0: none yet).
    index: u64,
    pending: Option<Pending>,
    watch: Option<OpId>,
    /// False for a polling follower (see [`PrefixFollower::without_watch`]).
    watching: bool,
    retry_at: Option<Instant>,
    /// With [`PrefixFollower::with_retry_backoff`]: (the next delay, its cap).
    backoff: Option<(Duration, Duration)>,
    resync_at: Option<Instant>,
    commands: VecDeque<(OpId, Request)>,
    events: VecDeque<FollowEvent>,
}

impl PrefixFollower {
    /// A follower of `prefix`; it sends its first read at once. `seed` drives the resync jitter.
    pub fn new(
        prefix: &str,
        config: FollowConfig,
        seed: u64,
        ids: &mut OpIdGen,
        now: Instant,
    ) -> PrefixFollower {
        let mut follower = PrefixFollower {
            prefix: prefix.to_string(),
            config,
            rng: SplitMix64::new(seed),
            index: 0,
            pending: None,
            watch: None,
            watching: true,
            retry_at: None,
            backoff: None,
            resync_at: None,
            commands: VecDeque::new(),
            events: VecDeque::new(),
        };
        follower.send(PendingKind::Read, ids, now);
        follower
    }

    /// A follower that never watches: it hands out only snapshots, and the consumer polls with
    /// [`PrefixFollower::read_now`] (`disable_watches=true`).
    pub fn without_watch(mut self) -> PrefixFollower {
        self.watching = false;
        self
    }

    /// A follower whose retry delay doubles after each failure in a row, up to `max`, plus up to
    /// 20 % jitter, so that a host that lost the registry does not poll it every `retry_delay`.
    pub fn with_retry_backoff(mut self, max: Duration) -> PrefixFollower {
        self.backoff = Some((self.config.retry_delay, max));
        self
    }

    /// The registry answers again: a retry waiting out its delay goes at the next timeout.
    pub fn retry_now(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at > now) {
            self.retry_at = Some(now);
        }
    }

    /// Reads the prefix now, unless a read or directory creation is already in flight.
    pub fn read_now(&mut self, ids: &mut OpIdGen, now: Instant) {
        if self.pending.is_none() {
            self.send(PendingKind::Read, ids, now);
        }
    }

    /// The id of the read or directory creation in flight, if any.
    pub fn pending_id(&self) -> Option<OpId> {
        self.pending.map(|p| p.id)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The index of the last snapshot or change handed out (0 before the first snapshot).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The id of the running watch, if any (for a driver that can cancel watches).
    pub fn watch_id(&self) -> Option<OpId> {
        self.watch
    }

    /// Takes an answer. Returns false if it answers none of this follower's current requests
    /// (including late answers to requests it gave up on).
    pub fn handle_input(&mut self, response: &Response, ids: &mut OpIdGen, now: Instant) -> bool {
        if let Some(pending) = self.pending.filter(|p| p.id == response.id) {
            self.pending = None;
            match (pending.kind, &response.result) {
                (PendingKind::Read, Ok(Reply::Got { node, index })) => {
                    self.snapshot(node, *index, ids, now)
                }
                (PendingKind::Read, Err(Failure::NotFound)) => {
                    self.send(PendingKind::CreateDirectory, ids, now)
                }
                // Created, or created meanwhile by someone else: either way, read it now.
                (PendingKind::CreateDirectory, Ok(_) | Err(Failure::PreconditionFailed)) => {
                    self.send(PendingKind::Read, ids, now)
                }
                _ => self.retry_later(now),
            }
            return true;
        }
        if self.watch != Some(response.id) {
            return false;
        }
        match &response.result {
            Ok(Reply::Event(event)) => {
                self.reset_backoff();
                // Events up to the snapshot's index are already part of it.
                if event.node.modified_index > self.index {
                    self.index = event.node.modified_index;
                    self.events.push_back(FollowEvent::Change(event.clone()));
                }
            }
            Ok(_) => {}
            Err(Failure::HistoryLost { .. }) => {
                self.watch = None;
                if self.pending.is_none() {
                    self.send(PendingKind::Read, ids, now);
                }
            }
            Err(_) => {
                self.watch = None;
                self.retry_later(now);
            }
        }
        true
    }

    /// Acts on every timer that is due. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, ids: &mut OpIdGen, now: Instant) {
        if self.pending.is_some_and(|p| p.deadline <= now) {
            // Given up; a late answer to it is ignored. Start over with a read.
            self.pending = None;
            self.send(PendingKind::Read, ids, now);
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            if self.index == 0 || !self.watching {
                if self.pending.is_none() {
                    self.send(PendingKind::Read, ids, now);
                }
            } else if self.watch.is_none() {
                self.start_watch(ids);
            }
        }
        if self.resync_at.is_some_and(|at| at <= now) {
            self.resync_at = None;
            if self.pending.is_none() {
                self.send(PendingKind::Read, ids, now);
            }
        }
    }

    /// The next request to carry out.
    pub fn poll_command(&mut self) -> Option<(OpId, Request)> {
        self.commands.pop_front()
    }

    /// The next thing the consumer must apply, in order.
    pub fn poll_event(&mut self) -> Option<FollowEvent> {
        self.events.pop_front()
    }

    /// When to call [`PrefixFollower::handle_timeout`] next, and why.
    pub fn poll_timeout(&self) -> Option<(Instant, FollowTimer)> {
        [
            self.pending
                .map(|p| (p.deadline, FollowTimer::AnswerDeadline)),
            self.retry_at.map(|at| (at, FollowTimer::Retry)),
            self.resync_at.map(|at| (at, FollowTimer::Resync)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
    }

    fn send(&mut self, kind: PendingKind, ids: &mut OpIdGen, now: Instant) {
        let id = ids.next_id();
        let request = match kind {
            PendingKind::Read => Request::Get {
                key: self.prefix.clone(),
                recursive: true,
            },
            PendingKind::CreateDirectory => Request::Put {
                key: self.prefix.clone(),
                value: PutValue::Directory,
                ttl: None,
                precondition: Precondition::Absent,
            },
        };
        self.commands.push_back((id, request));
        self.pending = Some(Pending {
            id,
            kind,
            deadline: now + self.config.request_timeout,
        });
        self.retry_at = None;
    }

    fn retry_later(&mut self, now: Instant) {
        let delay = match &mut self.backoff {
            Some((next, max)) => {
                let delay = *next;
                *next = (*next * 2).min(*max);
                self.rng.jitter(delay, 0.2)
            }
            None => self.config.retry_delay,
        };
        self.retry_at = Some(now + delay);
    }

    fn reset_backoff(&mut self) {
        if let Some((next, _)) = &mut self.backoff {
            *next = self.config.retry_delay;
        }
    }

    fn start_watch(&mut self, ids: &mut OpIdGen) {
        let id = ids.next_id();
        self.commands.push_back((
            id,
            Request::Watch {
                prefix: self.prefix.clone(),
                from_index: self.index + 1,
            },
        ));
        self.watch = Some(id);
    }

    fn snapshot(&mut self, node: &Node, index: u64, ids: &mut OpIdGen, now: Instant) {
        self.reset_backoff();
        let period = self
            .rng
            .jitter(self.config.resync_interval, self.config.resync_jitter);
        self.resync_at = Some(now + period);
        if index < self.index {
            // The watch has already handed out newer changes: this read would undo them. If
            // this read replaced a watch that ended (lost history), watch again from there.
            if self.watching && self.watch.is_none() {
                self.start_watch(ids);
            }
            return;
        }
        self.index = index;
        self.events.push_back(FollowEvent::Snapshot {
            node: node.clone(),
            index,
        });
        if self.watching && self.watch.is_none() {
            self.start_watch(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Action;

    const PREFIX: &str = "/_coreos.com/flt/schedule/m1";

    fn at(secs: u64) -> Instant {
        Instant::from_epoch(Duration::from_secs(secs))
    }

    fn dir(index: u64) -> Node {
        Node {
            key: PREFIX.to_string(),
            dir: true,
            modified_index: index,
            created_index: index,
            ..Node::default()
        }
    }

    fn event(index: u64) -> Event {
        Event {
            action: Action::Set,
            node: Node {
                key: format!("{PREFIX}/a.service"),
                value: Some(index.to_string()),
                modified_index: index,
                created_index: index,
                ..Node::default()
            },
            prev_node: None,
        }
    }

    fn ok(id: OpId, reply: Reply) -> Response {
        Response {
            id,
            result: Ok(reply),
        }
    }

    fn err(id: OpId, failure: Failure) -> Response {
        Response {
            id,
            result: Err(failure),
        }
    }

    struct Harness {
        follower: PrefixFollower,
        ids: OpIdGen,
    }

    impl Harness {
        fn new() -> Harness {
            let mut ids = OpIdGen::new(9);
            let follower =
                PrefixFollower::new(PREFIX, FollowConfig::default(), 42, &mut ids, at(0));
            Harness { follower, ids }
        }
        fn command(&mut self) -> (OpId, Request) {
            self.follower.poll_command().expect("a command")
        }
        fn input(&mut self, response: Response, now: Instant) -> bool {
            self.follower.handle_input(&response, &mut self.ids, now)
        }
        fn events(&mut self) -> Vec<FollowEvent> {
            std::iter::from_fn(|| self.follower.poll_event()).collect()
        }
        /// Answers the initial read at `index`; returns the watch's id.
        fn start(&mut self, index: u64) -> OpId {
            let (read, _) = self.command();
            assert!(self.input(
                ok(
                    read,
                    Reply::Got {
                        node: dir(index),
                        index
                    }
                ),
                at(0)
            ));
            let (watch, request) = self.command();
            assert_eq!(
                request,
                Request::Watch {
                    prefix: PREFIX.into(),
                    from_index: index + 1
                }
            );
            watch
        }
    }

    #[test]
    fn reads_then_watches_from_the_next_index_and_drops_old_events() {
        let mut h = Harness::new();
        let (_, first) = h.follower.commands.front().cloned().unwrap();
        assert_eq!(
            first,
            Request::Get {
                key: PREFIX.into(),
                recursive: true
            }
        );
        let watch = h.start(10);
        assert_eq!(
            h.events(),
            [FollowEvent::Snapshot {
                node: dir(10),
                index: 10
            }]
        );
        for index in [11, 9, 11, 12] {
            assert!(h.input(ok(watch, Reply::Event(event(index))), at(1)));
        }
        assert_eq!(
            h.events(),
            [
                FollowEvent::Change(event(11)),
                FollowEvent::Change(event(12))
            ]
        );
        assert_eq!(h.follower.index(), 12);
        assert!(h.follower.poll_command().is_none(), "no re-listing");
    }

    #[test]
    fn history_lost_rereads_and_watches_again() {
        let mut h = Harness::new();
        let watch = h.start(10);
        h.events();
        assert!(h.input(err(watch, Failure::HistoryLost { index: 2000 }), at(5)));
        let (read, request) = h.command();
        assert!(matches!(request, Request::Get { .. }));
        assert!(h.input(
            ok(
                read,
                Reply::Got {
                    node: dir(2000),
                    index: 2000
                }
            ),
            at(5)
        ));
        let (new_watch, request) = h.command();
        assert_ne!(new_watch, watch);
        assert_eq!(
            request,
            Request::Watch {
                prefix: PREFIX.into(),
                from_index: 2001
            }
        );
        assert!(
            !h.input(ok(watch, Reply::Event(event(2001))), at(6)),
            "the ended watch is no longer ours"
        );
    }

    #[test]
    fn a_reread_older_than_the_last_change_still_resumes_the_watch() {
        let mut h = Harness::new();
        let watch = h.start(10);
        assert!(h.input(ok(watch, Reply::Event(event(20))), at(1)));
        h.events();
        assert!(h.input(err(watch, Failure::HistoryLost { index: 2000 }), at(5)));
        let (read, _) = h.command();
        assert!(h.input(
            ok(
                read,
                Reply::Got {
                    node: dir(15),
                    index: 15
                }
            ),
            at(5)
        ));
        assert!(
            h.events().is_empty(),
            "an older read must not undo newer changes"
        );
        let (_, request) = h.command();
        assert_eq!(
            request,
            Request::Watch {
                prefix: PREFIX.into(),
                from_index: 21
            }
        );
    }

    #[test]
    fn a_missing_prefix_is_created_then_read() {
        let mut h = Harness::new();
        let (read, _) = h.command();
        h.input(err(read, Failure::NotFound), at(0));
        let (create, request) = h.command();
        assert_eq!(
            request,
            Request::Put {
                key: PREFIX.into(),
                value: PutValue::Directory,
                ttl: None,
                precondition: Precondition::Absent
            }
        );
        // Someone else created it first: read it anyway.
        h.input(err(create, Failure::PreconditionFailed), at(0));
        let (_, request) = h.command();
        assert!(matches!(request, Request::Get { .. }));
    }

    #[test]
    fn unanswered_and_failed_requests_are_retried() {
        let mut h = Harness::new();
        let (read, _) = h.command();
        let (deadline, why) = h.follower.poll_timeout().unwrap();
        assert_eq!((deadline, why), (at(5), FollowTimer::AnswerDeadline));
        h.follower.handle_timeout(&mut h.ids, at(5));
        let (again, _) = h.command();
        assert_ne!(again, read);
        assert!(
            !h.input(
                ok(
                    read,
                    Reply::Got {
                        node: dir(3),
                        index: 3
                    }
                ),
                at(6)
            ),
            "a late answer to a given-up read is ignored"
        );
        h.input(err(again, Failure::Unreachable("down".into())), at(6));
        assert_eq!(h.follower.poll_timeout(), Some((at(7), FollowTimer::Retry)));
        h.follower.handle_timeout(&mut h.ids, at(7));
        let watch = h.start(20);
        // A failed watch resumes from the last index after the retry delay, without a read.
        h.input(err(watch, Failure::Unreachable("down".into())), at(8));
        h.follower.handle_timeout(&mut h.ids, at(9));
        assert_eq!(
            h.command().1,
            Request::Watch {
                prefix: PREFIX.into(),
                from_index: 21
            }
        );
    }

    #[test]
    fn a_follower_without_watch_only_reads_when_asked() {
        let mut ids = OpIdGen::new(9);
        let mut follower = PrefixFollower::new(PREFIX, FollowConfig::default(), 1, &mut ids, at(0))
            .without_watch();
        let (read, _) = follower.poll_command().unwrap();
        assert_eq!(follower.pending_id(), Some(read));
        follower.read_now(&mut ids, at(0));
        assert!(follower.poll_command().is_none(), "one read at a time");
        let got = ok(
            read,
            Reply::Got {
                node: dir(4),
                index: 4,
            },
        );
        assert!(follower.handle_input(&got, &mut ids, at(0)));
        assert!(follower.poll_command().is_none(), "no watch");
        assert_eq!(follower.pending_id(), None);
        follower.read_now(&mut ids, at(2));
        let (again, request) = follower.poll_command().unwrap();
        assert!(matches!(request, Request::Get { .. }));
        // A failed read is retried as a read, never as a watch.
        follower.handle_input(
            &err(again, Failure::Unreachable("down".into())),
            &mut ids,
            at(2),
        );
        follower.handle_timeout(&mut ids, at(3));
        assert!(matches!(
            follower.poll_command(),
            Some((_, Request::Get { .. }))
        ));
        assert_eq!(follower.watch_id(), None);
    }

    #[test]
    fn retry_backoff_doubles_up_to_its_cap_resets_on_success_and_can_be_cut_short() {
        let mut ids = OpIdGen::new(9);
        let mut follower = PrefixFollower::new(PREFIX, FollowConfig::default(), 3, &mut ids, at(0))
            .with_retry_backoff(Duration::from_secs(4));
        let mut now = at(0);
        let mut delays = Vec::new();
        for _ in 0..5 {
            let (read, _) = follower.poll_command().expect("a read");
            follower.handle_input(
                &err(read, Failure::Unreachable("down".into())),
                &mut ids,
                now,
            );
            let (retry, why) = follower.poll_timeout().unwrap();
            assert_eq!(why, FollowTimer::Retry);
            delays.push(retry.saturating_since(now));
            now = retry;
            follower.handle_timeout(&mut ids, now);
        }
        for (delay, base) in delays.iter().zip([1u64, 2, 4, 4, 4]) {
            let base = Duration::from_secs(base);
            assert!(*delay >= base && *delay <= base.mul_f64(1.2), "{delays:?}");
        }
        // The registry answers again: the next retry goes now, and a success resets the delay.
        let (read, _) = follower.poll_command().unwrap();
        follower.handle_input(
            &err(read, Failure::Unreachable("down".into())),
            &mut ids,
            now,
        );
        follower.retry_now(now);
        assert_eq!(follower.poll_timeout(), Some((now, FollowTimer::Retry)));
        follower.handle_timeout(&mut ids, now);
        let (read, _) = follower.poll_command().unwrap();
        let got = ok(
            read,
            Reply::Got {
                node: dir(4),
                index: 4,
            },
        );
        follower.handle_input(&got, &mut ids, now);
        let (watch, _) = follower.poll_command().unwrap();
        follower.handle_input(
            &err(watch, Failure::Unreachable("down".into())),
            &mut ids,
            now,
        );
        let (retry, _) = follower.poll_timeout().unwrap();
        assert!(retry.saturating_since(now) <= Duration::from_millis(1200));
    }

    #[test]
    fn resync_is_slow_jittered_and_never_rolls_back() {
        let mut h = Harness::new();
        let watch = h.start(10);
        h.events();
        let (resync, why) = h.follower.poll_timeout().unwrap();
        assert_eq!(why, FollowTimer::Resync);
        assert!(resync >= at(60) && resync <= at(75), "{resync:?}");
        h.follower.handle_timeout(&mut h.ids, at(59));
        assert!(h.follower.poll_command().is_none(), "not yet");
        h.follower.handle_timeout(&mut h.ids, resync);
        let (read, _) = h.command();
        // The watch delivered a newer change while the read was in flight.
        h.input(ok(watch, Reply::Event(event(15))), resync);
        h.input(
            ok(
                read,
                Reply::Got {
                    node: dir(14),
                    index: 14,
                },
            ),
            resync,
        );
        assert_eq!(h.events(), [FollowEvent::Change(event(15))]);
        assert!(
            h.follower.poll_command().is_none(),
            "the watch keeps running"
        );
        assert_eq!(h.follower.watch_id(), Some(watch));
        // The next resync is scheduled again, with fresh jitter; same seed, same schedule.
        let (next, why) = h.follower.poll_timeout().unwrap();
        assert_eq!(why, FollowTimer::Resync);
        assert!(next >= resync + Duration::from_secs(60));
        let mut twin = Harness::new();
        twin.start(10);
        assert_eq!(twin.follower.poll_timeout().unwrap().0, resync);
    }
}
