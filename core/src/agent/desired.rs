//! Desired state (spec §3.3): what the schedule wants on this machine.
//!
//! Three registry sources feed it, each read once in full and then followed with a watch:
//! the machine's own directory `P/machines/<id>/` (for dynamic metadata), its schedule
//! `P/schedule/<id>/`, and the global units `P/global/`. A source changes only on a successful
//! read or a watch event: a failure never empties it, so losing etcd never unloads a unit.
//! Unit files are fetched by hash from `P/unit/<hash>` and cached (they are immutable).

use super::backoff::Backoff;
use super::task::DesiredUnit;
use super::unit_text::ParsedUnit;
use super::{Event, Io, Owner};
use crate::glob::glob_match;
use crate::registry::records::{ScheduleRecord, TargetState, UnitFileRecord};
use crate::registry::{Failure, KeyKind, Keyspace, Node, OpId, Reply, Request};
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

/// A registry directory read in full, then followed by a watch.
#[derive(Debug)]
pub(crate) struct Source {
    kind: SourceKind,
    machine_id: String,
    keyspace: Keyspace,
    /// The directory read and watched.
    dir: String,
    /// Entry name (unit name or metadata key) → raw value.
    entries: BTreeMap<String, String>,
    /// Registry index the entries are current at; events at or below it are old news.
    index: u64,
    /// A full read has succeeded at least once.
    complete: bool,
    /// The read in flight, with the registry index known when it was sent.
    read: Option<(OpId, u64)>,
    watch: Option<OpId>,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Watches that ended with lost history since the last event: re-read at once only for the
    /// first, so that a read that cannot catch up does not spin.
    lost_in_a_row: u32,
    watch_started: Instant,
}

impl Source {
    pub fn new(kind: SourceKind, keyspace: &Keyspace, machine_id: &str) -> Source {
        let dir = match kind {
            SourceKind::Machine => keyspace.machine_dir(machine_id),
            SourceKind::Schedule => keyspace.schedule_dir(machine_id),
            SourceKind::Globals => keyspace.globals_dir(),
        };
        Source {
            kind,
            machine_id: machine_id.to_string(),
            keyspace: keyspace.clone(),
            dir,
            entries: BTreeMap::new(),
            index: 0,
            complete: false,
            read: None,
            watch: None,
            retry_at: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            lost_in_a_row: 0,
            watch_started: Instant::ZERO,
        }
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    pub fn complete(&self) -> bool {
        self.complete
    }

    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The registry answers again: re-read now rather than after the backoff.
    pub fn retry_now(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|at| at > now) {
            self.retry_at = Some(now);
        }
    }

    /// Reads the whole directory (unless a read is already in flight).
    pub fn read(&mut self, now: Instant, io: &mut Io) {
        if self.read.is_some() {
            return;
        }
        self.retry_at = None;
        let request = Request::Get {
            key: self.dir.clone(),
            recursive: true,
        };
        let known = io.known_index;
        let id = io.registry(Owner::Source(self.kind), request, now);
        self.read = Some((id, known));
    }

    /// Fires the retry timer if due.
    pub fn handle_timeout(&mut self, now: Instant, io: &mut Io) {
        if self.retry_at.is_some_and(|at| at <= now) {
            self.read(now, io);
        }
    }

    /// Handles the answer to a read or a watch. Returns true if the entries changed.
    pub fn handle_response(
        &mut self,
        id: OpId,
        result: Result<Reply, Failure>,
        now: Instant,
        io: &mut Io,
    ) -> bool {
        if let Some((read, known)) = self.read
            && read == id
        {
            self.read = None;
            return self.on_read(result, known, now, io);
        }
        if self.watch == Some(id) {
            return self.on_watch(result, now, io);
        }
        false
    }

    fn on_read(
        &mut self,
        result: Result<Reply, Failure>,
        known: u64,
        now: Instant,
        io: &mut Io,
    ) -> bool {
        let (entries, index) = match result {
            Ok(Reply::Got { node, index }) => {
                let mut entries = BTreeMap::new();
                for child in node.walk() {
                    if let Some(name) = self.entry_name(&child.key)
                        && let Some(value) = &child.value
                    {
                        entries.insert(name, value.clone());
                    }
                }
                (entries, index)
            }
            // A directory nobody has written yet: empty as of some index at or after `known`.
            Err(Failure::NotFound) => (BTreeMap::new(), known),
            Ok(other) => {
                self.failed(format!("unexpected reply {other:?}"), false, now, io);
                return false;
            }
            Err(failure) => {
                self.failed(failure.to_string(), false, now, io);
                return false;
            }
        };
        self.backoff.reset();
        let first = !self.complete;
        // A read older than events already applied would take the state backwards.
        let changed = if first || index >= self.index {
            let changed = entries != self.entries;
            self.entries = entries;
            self.index = index;
            self.complete = true;
            changed
        } else {
            false
        };
        if self.watch.is_none() {
            let from_index = if self.index == 0 { 0 } else { self.index + 1 };
            let request = Request::Watch {
                prefix: self.dir.clone(),
                from_index,
            };
            self.watch = Some(io.registry(Owner::Source(self.kind), request, now));
            self.watch_started = now;
        }
        changed || first
    }

    fn on_watch(&mut self, result: Result<Reply, Failure>, now: Instant, io: &mut Io) -> bool {
        match result {
            Ok(Reply::Event(event)) => {
                self.lost_in_a_row = 0;
                let index = event.node.modified_index;
                if index != 0 && index <= self.index {
                    return false;
                }
                self.index = self.index.max(index);
                let key = &event.node.key;
                if event.action.is_removal() && self.is_dir_or_parent(key) {
                    let changed = !self.entries.is_empty();
                    self.entries.clear();
                    return changed;
                }
                let Some(name) = self.entry_name(key) else {
                    return false;
                };
                if event.action.is_removal() {
                    self.entries.remove(&name).is_some()
                } else if let Some(value) = event.node.value {
                    self.entries.insert(name, value.clone()) != Some(value)
                } else {
                    false
                }
            }
            Ok(other) => {
                self.watch = None;
                self.failed(format!("unexpected reply {other:?}"), false, now, io);
                false
            }
            Err(failure) => {
                self.watch = None;
                let at_once = if matches!(failure, Failure::HistoryLost { .. }) {
                    // A watch that lived a while just fell behind a busy registry: not a loop.
                    if now.saturating_since(self.watch_started) >= Duration::from_secs(1) {
                        self.lost_in_a_row = 0;
                    }
                    self.lost_in_a_row += 1;
                    self.lost_in_a_row == 1
                } else {
                    false
                };
                self.failed(failure.to_string(), at_once, now, io);
                false
            }
        }
    }

    /// Records a failure and arranges a re-read (at once after lost history, else with backoff).
    fn failed(&mut self, error: String, at_once: bool, now: Instant, io: &mut Io) {
        io.event(Event::SourceFailed {
            source: self.kind,
            error,
        });
        if at_once {
            self.read(now, io);
        } else {
            let delay = self.backoff.next_delay(&mut io.rng);
            self.retry_at = Some(now + delay);
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
        let is_ancestor = self.dir == key
            || self
                .dir
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
    pub scheduled: BTreeMap<String, ScheduleRecord>,
    pub globals: BTreeMap<String, ScheduleRecord>,
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
            for (name, raw) in source.entries() {
                match decode_schedule_record(raw) {
                    Some(record) => {
                        map.insert(name.clone(), record);
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
            .filter_map(|r| UnitHash::from_hex(&r.unit_hash))
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
        // (name, Conflicts patterns) of the units that will run here.
        let mut running: Vec<(String, Vec<String>)> = Vec::new();
        for (name, record) in &self.scheduled {
            let Some(hash) = UnitHash::from_hex(&record.unit_hash) else {
                out.unknown.insert(name.clone());
                continue;
            };
            let Some(unit) = files.get(&hash) else {
                out.unknown.insert(name.clone());
                continue;
            };
            out.units.insert(
                name.clone(),
                DesiredUnit {
                    hash,
                    target: record.target_state,
                },
            );
            if record.target_state != TargetState::Inactive {
                running.push((name.clone(), unit.requirements(name).conflicts));
            }
        }
        for (name, record) in &self.globals {
            if out.units.contains_key(name) || out.unknown.contains(name) {
                continue;
            }
            let Some(hash) = UnitHash::from_hex(&record.unit_hash) else {
                out.unknown.insert(name.clone());
                continue;
            };
            let Some(unit) = files.get(&hash) else {
                out.unknown.insert(name.clone());
                continue;
            };
            let req = unit.requirements(name);
            if !req.machine_id_matches(machine_id) || !req.metadata_matches(&self.metadata) {
                continue;
            }
            if record.target_state != TargetState::Inactive {
                if conflicts_with_any(name, &req.conflicts, &running) {
                    continue;
                }
                running.push((name.clone(), req.conflicts));
            }
            out.units.insert(
                name.clone(),
                DesiredUnit {
                    hash,
                    target: record.target_state,
                },
            );
        }
        out
    }
}

fn decode_schedule_record(raw: &str) -> Option<ScheduleRecord> {
    let record: ScheduleRecord = serde_json::from_str(raw).ok()?;
    UnitHash::from_hex(&record.unit_hash)?;
    Some(record)
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
