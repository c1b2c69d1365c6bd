//! Desired state (spec §3.3): what the schedule wants on this machine.
//!
//! Three registry sources feed it, each followed by a [`PrefixFollower`]: the machine's own
//! directory `P/machines/<id>/` (for dynamic metadata), its schedule `P/schedule/<id>/`, and the
//! global units `P/global/`. A source changes only on a successful read or a watch event: a
//! failure never empties it, so losing etcd never unloads a unit.
//! Unit files are fetched by hash from `P/unit/<hash>` and cached (they are immutable).

use super::backoff::Backoff;
use super::task::DesiredUnit;
use super::unit_text::ParsedUnit;
use super::{Event, Io, Owner};
use crate::glob::glob_match;
use crate::registry::records::{ScheduleRecord, TargetState, UnitFileRecord};
use crate::registry::{
    Event as WatchEvent, Failure, FollowConfig, FollowEvent, FollowTimer, KeyKind, Keyspace, Node,
    OpId, PrefixFollower, Reply, Request, Response,
};
use crate::time::Instant;
use crate::unit::UnitHash;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One of the registry sources of the desired state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// `P/machines/<id>/`: dynamic metadata of this machine.
    Machine,
    /// `P/schedule/<id>/`: the units the engine placed here.
    Schedule,
    /// `P/global/`: the global units.
    Globals,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [
        SourceKind::Machine,
        SourceKind::Schedule,
        SourceKind::Globals,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Machine => "machine",
            SourceKind::Schedule => "schedule",
            SourceKind::Globals => "global",
        }
    }
}

/// A registry directory followed by a [`PrefixFollower`] (read in full, created if missing, then
/// watched, re-read on lost history and at a jittered resync), as the entries it holds.
#[derive(Debug)]
pub(crate) struct Source {
    kind: SourceKind,
    machine_id: String,
    keyspace: Keyspace,
    follower: PrefixFollower,
    /// Entry name (unit name or metadata key) → raw value.
    entries: BTreeMap<String, String>,
    /// Schedule and global sources: each entry decoded once, when it arrives (`None`: a bad
    /// record), so that working out the desired state does not decode every record again.
    records: BTreeMap<String, Option<DesiredUnit>>,
    /// A full read has succeeded at least once.
    complete: bool,
}

impl Source {
    /// Starts following the source: its first read is sent at once (see [`Source::pump`]).
    pub fn new(
        kind: SourceKind,
        keyspace: &Keyspace,
        machine_id: &str,
        config: FollowConfig,
        seed: u64,
        io: &mut Io,
        now: Instant,
    ) -> Source {
        let dir = match kind {
            SourceKind::Machine => keyspace.machine_dir(machine_id),
            SourceKind::Schedule => keyspace.schedule_dir(machine_id),
            SourceKind::Globals => keyspace.globals_dir(),
        };
        let mut source = Source {
            kind,
            machine_id: machine_id.to_string(),
            keyspace: keyspace.clone(),
            follower: PrefixFollower::new(&dir, config, seed, &mut io.ids, now)
                .with_retry_backoff(Duration::from_secs(60)),
            entries: BTreeMap::new(),
            records: BTreeMap::new(),
            complete: false,
        };
        source.pump(io);
        source
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// The decoded schedule records (schedule and global sources; empty for the machine's).
    pub fn records(&self) -> &BTreeMap<String, Option<DesiredUnit>> {
        &self.records
    }

    /// Whether entries of this source are schedule records.
    fn holds_records(&self) -> bool {
        self.kind != SourceKind::Machine
    }

    pub fn complete(&self) -> bool {
        self.complete
    }

    /// When the follower wants to be woken (answer deadline, retry, resync).
    pub fn timeout(&self) -> Option<(Instant, FollowTimer)> {
        self.follower.poll_timeout()
    }

    /// The registry answers again: re-read or re-watch now rather than after the backoff.
    pub fn retry_now(&mut self, now: Instant) {
        self.follower.retry_now(now);
    }

    /// Fires the follower's timers. Returns true if the entries changed.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut Io) -> bool {
        self.follower.handle_timeout(&mut io.ids, now);
        self.pump(io)
    }

    /// Handles the answer to a read, a directory creation or a watch. Returns true if the
    /// entries changed. A failure never changes them: losing etcd never unloads a unit.
    pub fn handle_response(&mut self, response: &Response, now: Instant, io: &mut Io) -> bool {
        let error = match &response.result {
            // The follower's own way of creating a missing directory.
            Err(Failure::NotFound | Failure::PreconditionFailed) => None,
            Err(failure) => Some(failure.to_string()),
            Ok(Reply::Deleted { .. }) => Some("unexpected reply to a read or watch".to_string()),
            Ok(_) => None,
        };
        if let Some(error) = error {
            io.event(Event::SourceFailed {
                source: self.kind,
                error,
            });
        }
        self.follower.handle_input(response, &mut io.ids, now);
        if self.follower.watch_id() != Some(response.id) {
            io.pending.remove(&response.id);
        }
        self.pump(io)
    }

    /// Sends the follower's requests, forgets (and reports) the ones it gave up on, and applies
    /// what it learnt. Returns true if the entries
    /// changed, or on the first full read.
    fn pump(&mut self, io: &mut Io) -> bool {
        let owner = Owner::Source(self.kind);
        let current = [self.follower.pending_id(), self.follower.watch_id()];
        let mut given_up = false;
        io.pending.retain(|id, pending| {
            let keep = pending.owner != owner || current.contains(&Some(*id));
            given_up |= !keep;
            keep
        });
        if given_up {
            io.event(Event::SourceFailed {
                source: self.kind,
                error: "no answer in time".to_string(),
            });
        }
        while let Some((id, request)) = self.follower.poll_command() {
            io.follow(owner, id, request);
        }
        let mut changed = false;
        while let Some(event) = self.follower.poll_event() {
            changed |= match event {
                FollowEvent::Snapshot { node, .. } => self.apply_snapshot(&node),
                FollowEvent::Change(event) => self.apply_change(event),
            };
        }
        changed
    }

    fn apply_snapshot(&mut self, node: &Node) -> bool {
        let mut entries = BTreeMap::new();
        for child in node.walk() {
            if let Some(name) = self.entry_name(&child.key)
                && let Some(value) = &child.value
            {
                entries.insert(name, value.clone());
            }
        }
        let first = !self.complete;
        self.complete = true;
        let changed = entries != self.entries;
        if changed && self.holds_records() {
            self.records = entries
                .iter()
                .map(|(name, raw)| (name.clone(), decode_schedule_record(raw)))
                .collect();
        }
        self.entries = entries;
        changed || first
    }

    fn apply_change(&mut self, event: WatchEvent) -> bool {
        let key = &event.node.key;
        if event.action.is_removal() && self.is_dir_or_parent(key) {
            let changed = !self.entries.is_empty();
            self.entries.clear();
            self.records.clear();
            return changed;
        }
        let Some(name) = self.entry_name(key) else {
            return false;
        };
        if event.action.is_removal() {
            self.records.remove(&name);
            self.entries.remove(&name).is_some()
        } else if let Some(value) = event.node.value {
            if self.entries.get(&name) == Some(&value) {
                return false;
            }
            if self.holds_records() {
                self.records
                    .insert(name.clone(), decode_schedule_record(&value));
            }
            self.entries.insert(name, value);
            true
        } else {
            false
        }
    }

    /// The entry a key stands for in this source, if any.
    fn entry_name(&self, key: &str) -> Option<String> {
        match (self.kind, self.keyspace.classify(key)?) {
            (SourceKind::Machine, KeyKind::MachineMetadata { machine, key })
            | (SourceKind::Schedule, KeyKind::ScheduleEntry { machine, name: key })
                if machine == self.machine_id =>
            {
                Some(key)
            }
            (SourceKind::Globals, KeyKind::GlobalEntry { name }) => Some(name),
            _ => None,
        }
    }

    /// Whether removing `key` removes the whole source directory (or the metadata directory).
    fn is_dir_or_parent(&self, key: &str) -> bool {
        let key = key.trim_end_matches('/');
        let dir = self.follower.prefix();
        let is_ancestor = dir == key
            || dir
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('/'));
        is_ancestor
            || (self.kind == SourceKind::Machine
                && key == self.keyspace.machine_metadata_dir(&self.machine_id))
    }
}

/// Unit files by hash, fetched on demand from `P/unit/<hash>`.
#[derive(Debug, Default)]
pub(crate) struct UnitFiles {
    files: BTreeMap<UnitHash, ParsedUnit>,
    fetching: BTreeMap<OpId, UnitHash>,
    fetching_hashes: BTreeSet<UnitHash>,
    /// Fetches that failed: retried at the instant given, or (`None`: the file does not exist or
    /// does not parse) at the next full resync.
    failed: BTreeMap<UnitHash, Option<Instant>>,
    backoff: BTreeMap<UnitHash, Backoff>,
}

impl UnitFiles {
    pub fn get(&self, hash: &UnitHash) -> Option<&ParsedUnit> {
        self.files.get(hash)
    }

    pub fn insert(&mut self, unit: ParsedUnit) {
        self.failed.remove(&unit.hash);
        self.files.insert(unit.hash, unit);
    }

    pub fn busy(&self) -> bool {
        !self.fetching.is_empty()
    }

    pub fn next_retry(&self) -> Option<Instant> {
        self.failed.values().flatten().min().copied()
    }

    /// Fetches every hash that is neither cached, nor being fetched, nor waiting for a retry.
    pub fn fetch_missing(
        &mut self,
        hashes: &BTreeSet<UnitHash>,
        keyspace: &Keyspace,
        now: Instant,
        io: &mut Io,
    ) {
        self.failed.retain(|hash, _| hashes.contains(hash));
        for hash in hashes {
            let waiting = match self.failed.get(hash) {
                Some(Some(at)) => *at > now,
                Some(None) => true,
                None => false,
            };
            if self.files.contains_key(hash) || waiting || self.fetching_hashes.contains(hash) {
                continue;
            }
            self.failed.remove(hash);
            let request = Request::Get {
                key: keyspace.unit(hash),
                recursive: false,
            };
            let id = io.registry(Owner::UnitFile, request, now);
            self.fetching.insert(id, *hash);
            self.fetching_hashes.insert(*hash);
        }
    }

    /// Forgets permanent failures (so they are tried again) and files nobody refers to.
    pub fn resync(&mut self, referenced: &BTreeSet<UnitHash>) {
        self.failed.retain(|_, at| at.is_some());
        self.files.retain(|hash, _| referenced.contains(hash));
        self.backoff.retain(|hash, _| referenced.contains(hash));
    }

    /// Handles a fetch answer. Returns true if a file was added.
    pub fn handle_response(
        &mut self,
        id: OpId,
        result: Result<Reply, Failure>,
        now: Instant,
        io: &mut Io,
    ) -> bool {
        let Some(hash) = self.fetching.remove(&id) else {
            return false;
        };
        self.fetching_hashes.remove(&hash);
        let outcome = match result {
            Ok(Reply::Got { node, .. }) => parse_unit_record(&node, &hash).map_err(|e| (e, true)),
            Ok(other) => Err((format!("unexpected reply {other:?}"), false)),
            Err(Failure::NotFound) => Err(("unit file not found".to_string(), true)),
            Err(failure) => Err((failure.to_string(), false)),
        };
        match outcome {
            Ok(unit) => {
                self.backoff.remove(&hash);
                self.files.insert(hash, unit);
                true
            }
            Err((error, permanent)) => {
                io.event(Event::UnitFileUnavailable {
                    hash: hash.to_hex(),
                    error,
                });
                let retry = if permanent {
                    None
                } else {
                    let backoff = self.backoff.entry(hash).or_insert_with(|| {
                        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
                    });
                    Some(now + backoff.next_delay(&mut io.rng))
                };
                self.failed.insert(hash, retry);
                false
            }
        }
    }
}

fn parse_unit_record(node: &Node, hash: &UnitHash) -> Result<ParsedUnit, String> {
    let raw = node
        .value
        .as_deref()
        .ok_or("unit file key is a directory")?;
    let record: UnitFileRecord =
        serde_json::from_str(raw).map_err(|e| format!("bad unit file record: {e}"))?;
    let mut unit = ParsedUnit::parse(&record.raw)?;
    // The key is the identity the schedule refers to, even if our parse normalizes differently.
    unit.hash = *hash;
    Ok(unit)
}

/// The desired state of this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DesiredState {
    pub units: BTreeMap<String, DesiredUnit>,
    /// Names whose desired state cannot be known yet (unit file not available, bad record):
    /// the agent leaves them as they are.
    pub unknown: BTreeSet<String>,
}

/// What the three sources say, decoded.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    pub scheduled: BTreeMap<String, DesiredUnit>,
    pub globals: BTreeMap<String, DesiredUnit>,
    pub bad: BTreeSet<String>,
    pub metadata: BTreeMap<String, String>,
}

impl Schedule {
    /// Decodes the sources; config metadata with dynamic metadata laid over it (`""` deletes).
    pub fn decode(
        config_metadata: &BTreeMap<String, String>,
        machine: &Source,
        schedule: &Source,
        globals: &Source,
    ) -> Schedule {
        let mut out = Schedule {
            metadata: config_metadata.clone(),
            ..Schedule::default()
        };
        for (key, value) in machine.entries() {
            if value.is_empty() {
                out.metadata.remove(key);
            } else {
                out.metadata.insert(key.clone(), value.clone());
            }
        }
        for (source, map) in [(schedule, &mut out.scheduled), (globals, &mut out.globals)] {
            for (name, record) in source.records() {
                match record {
                    Some(record) => {
                        map.insert(name.clone(), *record);
                    }
                    None => {
                        out.bad.insert(name.clone());
                    }
                }
            }
        }
        out
    }

    /// Every unit file hash the schedule refers to.
    pub fn hashes(&self) -> BTreeSet<UnitHash> {
        self.scheduled
            .values()
            .chain(self.globals.values())
            .map(|r| r.hash)
            .collect()
    }

    /// The desired state (spec §3.3): the units scheduled here, then the global units in name
    /// order whose MachineID and MachineMetadata match this machine and which conflict (globs
    /// both ways) with no unit already included. Inactive units count as not running here.
    pub fn desired(&self, machine_id: &str, files: &UnitFiles) -> DesiredState {
        let mut out = DesiredState {
            unknown: self.bad.clone(),
            ..DesiredState::default()
        };
        // (name, Conflicts patterns) of the units that will run here: only global units are
        // checked against them, so they are worked out only when there are any.
        let mut running: Vec<(String, Vec<String>)> = Vec::new();
        for (name, record) in &self.scheduled {
            let Some(unit) = files.get(&record.hash) else {
                out.unknown.insert(name.clone());
                continue;
            };
            out.units.insert(name.clone(), *record);
            if record.target != TargetState::Inactive && !self.globals.is_empty() {
                running.push((name.clone(), unit.conflicts(name)));
            }
        }
        for (name, record) in &self.globals {
            if out.units.contains_key(name) || out.unknown.contains(name) {
                continue;
            }
            let Some(unit) = files.get(&record.hash) else {
                out.unknown.insert(name.clone());
                continue;
            };
            let req = unit.requirements(name);
            if !req.machine_id_matches(machine_id) || !req.metadata_matches(&self.metadata) {
                continue;
            }
            if record.target != TargetState::Inactive {
                if conflicts_with_any(name, &req.conflicts, &running) {
                    continue;
                }
                running.push((name.clone(), req.conflicts));
            }
            out.units.insert(name.clone(), *record);
        }
        out
    }
}

/// A schedule record as the desired state of its unit; `None` if it is not valid JSON or its
/// hash is not 40 hex digits.
fn decode_schedule_record(raw: &str) -> Option<DesiredUnit> {
    let record: ScheduleRecord = serde_json::from_str(raw).ok()?;
    Some(DesiredUnit {
        hash: UnitHash::from_hex(&record.unit_hash)?,
        target: record.target_state,
    })
}

/// fleet's conflict test, both ways: an included unit's pattern matches `name`, or one of
/// `patterns` matches an included unit. A malformed pattern matches nothing.
fn conflicts_with_any(name: &str, patterns: &[String], running: &[(String, Vec<String>)]) -> bool {
    let matches = |pattern: &str, candidate: &str| glob_match(pattern, candidate).unwrap_or(false);
    running.iter().any(|(other, other_patterns)| {
        other != name
            && (other_patterns.iter().any(|p| matches(p, name))
                || patterns.iter().any(|p| matches(p, other)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(units: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        units
            .iter()
            .map(|(n, p)| (n.to_string(), p.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn conflicts_are_checked_both_ways_with_globs() {
        let here = running(&[("web.service", &["db*"]), ("cache.service", &[])]);
        // An included unit's pattern matches the newcomer.
        assert!(conflicts_with_any("db1.service", &[], &here));
        // The newcomer's pattern matches an included unit.
        assert!(conflicts_with_any("x.service", &["cache.*".into()], &here));
        assert!(!conflicts_with_any("x.service", &["cache".into()], &here));
        // A unit never conflicts with itself; a malformed pattern matches nothing.
        assert!(!conflicts_with_any(
            "web.service",
            &["web*".into()],
            &running(&[("web.service", &[])])
        ));
        assert!(!conflicts_with_any("x.service", &["[".into()], &here));
    }
}
