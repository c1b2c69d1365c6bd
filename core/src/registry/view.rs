//! [`ClusterView`]: an in-memory model of the registry's jobs, unit files, machines and
//! schedules, kept up to date from recursive reads ([`ClusterView::apply_read`]) and watch
//! events ([`ClusterView::apply_event`]). Pure data; the engine builds its snapshots from it and
//! the API front end can list units and machines from it.
//!
//! Each directory remembers the index of its last full read, and events at or below it are
//! ignored: a re-read while a watch is running never goes back in time.

use super::Record;
use super::records::{
    JobRecord, MachineRecord, ScheduleRecord, TargetState, UnitFileRecord, UnitStateRecord,
};
use super::{Event, KeyKind, Keyspace, Node};
use crate::engine::{ClusterSnapshot, MachineSnapshot, UnitSnapshot};
use crate::unit::{Requirements, UnitFile, UnitHash};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A unit file stored under `P/unit/<hash>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUnitFile {
    /// The normalized text as stored.
    pub raw: String,
    /// The parsed file, or why it did not parse.
    pub file: Result<UnitFile, String>,
}

/// One job (`P/job/<name>/…`). Fields are `None` when the key is missing or unreadable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobEntry {
    /// From `object`.
    pub hash: Option<UnitHash>,
    /// From `target-state`.
    pub target_state: Option<TargetState>,
    /// From `target`: the machine the engine scheduled it to.
    pub target: Option<String>,
    /// The requirements of its unit file, once both the object and the file are known.
    pub requirements: Option<Arc<Requirements>>,
}

impl JobEntry {
    fn is_empty(&self) -> bool {
        self.hash.is_none() && self.target_state.is_none() && self.target.is_none()
    }

    /// True for a `Global=true` unit.
    pub fn is_global(&self) -> bool {
        self.requirements.as_ref().is_some_and(|r| r.global)
    }
}

/// One machine directory (`P/machines/<id>/…`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineEntry {
    /// The presence record; `None` once it expired (the machine is gone).
    pub record: Option<MachineRecord>,
    /// `metadata/<key>` values as written by the API (`""` deletes the key).
    pub dynamic_metadata: BTreeMap<String, String>,
}

impl MachineEntry {
    /// Metadata as spec §1.3 merges it: the record's, overridden by `metadata/<key>`, where an
    /// empty value deletes the key.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut merged = self
            .record
            .as_ref()
            .map(|r| r.metadata.clone())
            .unwrap_or_default();
        for (key, value) in &self.dynamic_metadata {
            if value.is_empty() {
                merged.remove(key);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        merged
    }
}

/// The directories a [`ClusterView`] models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    Jobs,
    Units,
    Machines,
    Schedules,
    Globals,
}

impl Dir {
    pub const ALL: [Dir; 5] = [
        Dir::Jobs,
        Dir::Units,
        Dir::Machines,
        Dir::Schedules,
        Dir::Globals,
    ];

    /// The directory's key under `keyspace`.
    pub fn key(self, keyspace: &Keyspace) -> String {
        match self {
            Dir::Jobs => keyspace.jobs_dir(),
            Dir::Units => keyspace.units_dir(),
            Dir::Machines => keyspace.machines_dir(),
            Dir::Schedules => keyspace.schedules_dir(),
            Dir::Globals => keyspace.globals_dir(),
        }
    }

    fn of(kind: &KeyKind) -> Option<Dir> {
        Some(match kind {
            KeyKind::UnitFile { .. } => Dir::Units,
            KeyKind::JobDir { .. }
            | KeyKind::JobObject { .. }
            | KeyKind::JobTargetState { .. }
            | KeyKind::JobTarget { .. } => Dir::Jobs,
            KeyKind::MachineDir { .. }
            | KeyKind::MachineObject { .. }
            | KeyKind::MachineMetadata { .. } => Dir::Machines,
            KeyKind::ScheduleDir { .. } | KeyKind::ScheduleEntry { .. } => Dir::Schedules,
            KeyKind::GlobalEntry { .. } => Dir::Globals,
            _ => return None,
        })
    }
}

/// The registry's jobs, unit files, machines and schedules, as last read and watched.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    keyspace: Keyspace,
    unit_files: BTreeMap<UnitHash, Arc<StoredUnitFile>>,
    jobs: BTreeMap<String, JobEntry>,
    machines: BTreeMap<String, MachineEntry>,
    /// `P/schedule/<machine>/<name>`, keyed by (machine, name).
    schedules: BTreeMap<(String, String), ScheduleRecord>,
    globals: BTreeMap<String, ScheduleRecord>,
    read_index: BTreeMap<Dir, u64>,
    /// The index of the latest event applied to each directory.
    event_index: BTreeMap<Dir, u64>,
    /// The latest change applied to each key since its directory's last read, with its index:
    /// a late watch event cannot undo a newer write the engine applied from its own reply, and
    /// a re-read older than such a change is applied with the change laid over it.
    key_index: BTreeMap<String, AppliedChange>,
}

/// One key's change as applied by [`ClusterView::apply_event`].
#[derive(Clone, Debug)]
struct AppliedChange {
    index: u64,
    /// The new value; `None` for a removal.
    value: Option<String>,
    removal: bool,
    /// The key is a directory (only its removal changes the model).
    dir: bool,
}

impl ClusterView {
    pub fn new(keyspace: Keyspace) -> ClusterView {
        ClusterView {
            keyspace,
            ..ClusterView::default()
        }
    }

    pub fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub fn jobs(&self) -> &BTreeMap<String, JobEntry> {
        &self.jobs
    }

    pub fn unit_file(&self, hash: &UnitHash) -> Option<&StoredUnitFile> {
        self.unit_files.get(hash).map(|f| &**f)
    }

    pub fn machines(&self) -> &BTreeMap<String, MachineEntry> {
        &self.machines
    }

    /// Machines whose presence record exists, by ID.
    pub fn live_machines(&self) -> impl Iterator<Item = (&String, &MachineEntry)> {
        self.machines.iter().filter(|(_, m)| m.record.is_some())
    }

    pub fn schedules(&self) -> &BTreeMap<(String, String), ScheduleRecord> {
        &self.schedules
    }

    pub fn globals(&self) -> &BTreeMap<String, ScheduleRecord> {
        &self.globals
    }

    /// The registry index of the last full read of `dir` (0 if never read).
    pub fn read_index(&self, dir: Dir) -> u64 {
        self.read_index.get(&dir).copied().unwrap_or(0)
    }

    /// Replaces the model of `dir` with a recursive read of it. `node` is `None` when the
    /// directory does not exist; `index` is the registry index of the read. The changes applied
    /// since with a newer index (the engine's own writes, applied from their replies while the
    /// read was on its way) are laid over it again: a re-read after a lost watch history must
    /// not be dropped for them, or every change between the lost watch and the read would be
    /// missing until the next re-read. Returns whether the model was rebuilt (always).
    pub fn apply_read(&mut self, dir: Dir, node: Option<&Node>, index: u64) -> bool {
        let newer: Vec<(String, AppliedChange)> = self
            .key_index
            .iter()
            .filter(|(key, change)| {
                change.index > index
                    && self.keyspace.classify(key).and_then(|k| Dir::of(&k)) == Some(dir)
            })
            .map(|(key, change)| (key.clone(), change.clone()))
            .collect();
        match dir {
            Dir::Jobs => self.jobs.clear(),
            Dir::Units => self.unit_files.clear(),
            Dir::Machines => self.machines.clear(),
            Dir::Schedules => self.schedules.clear(),
            Dir::Globals => self.globals.clear(),
        }
        if let Some(node) = node {
            for child in node.walk().filter(|n| !n.dir) {
                if let Some(kind) = self.keyspace.classify(&child.key) {
                    self.apply_value(&kind, child.value.as_deref());
                }
            }
        }
        if matches!(dir, Dir::Jobs | Dir::Units) {
            let names: Vec<String> = self.jobs.keys().cloned().collect();
            for name in names {
                self.refresh_requirements(&name);
            }
        }
        for (key, change) in &newer {
            if let Some(kind) = self.keyspace.classify(key) {
                self.apply_change(&kind, change);
            }
        }
        self.read_index.insert(dir, index);
        // Events up to the read are ignored anyway: forget them, so the map stays small.
        self.key_index.retain(|_, change| change.index > index);
        true
    }

    /// Applies one watch event. Returns the directory it changed, or `None` if the model did not
    /// change (an unrelated key, an identical value, or an event older than the last read).
    pub fn apply_event(&mut self, event: &Event) -> Option<Dir> {
        let kind = self.keyspace.classify(&event.node.key)?;
        let dir = Dir::of(&kind)?;
        let read_at = self.read_index.get(&dir).copied().unwrap_or(0);
        if event.node.modified_index != 0 && event.node.modified_index <= read_at {
            return None;
        }
        if self
            .key_index
            .get(&event.node.key)
            .is_some_and(|newest| event.node.modified_index < newest.index)
        {
            return None;
        }
        // An entry older than the removal of its machine's whole schedule directory (the
        // engine's own recursive delete, applied from its reply) does not come back.
        if let KeyKind::ScheduleEntry { machine, .. } = &kind
            && self
                .key_index
                .get(&self.keyspace.schedule_dir(machine))
                .is_some_and(|dir| dir.removal && event.node.modified_index < dir.index)
        {
            return None;
        }
        let change = AppliedChange {
            index: event.node.modified_index,
            value: if event.action.is_removal() {
                None
            } else {
                event.node.value.clone()
            },
            removal: event.action.is_removal(),
            dir: event.node.dir,
        };
        let index = self.event_index.entry(dir).or_default();
        *index = (*index).max(event.node.modified_index);
        let changed = self.apply_change(&kind, &change);
        self.key_index.insert(event.node.key.clone(), change);
        changed.then_some(dir)
    }

    fn apply_change(&mut self, kind: &KeyKind, change: &AppliedChange) -> bool {
        if change.dir {
            change.removal && self.remove_dir(kind)
        } else {
            self.apply_value(kind, change.value.as_deref())
        }
    }

    /// Sets (`Some`) or removes (`None`) one key. Returns whether the model changed.
    fn apply_value(&mut self, kind: &KeyKind, value: Option<&str>) -> bool {
        match kind {
            KeyKind::UnitFile { hash } => {
                let Some(hash) = UnitHash::from_hex(hash) else {
                    return false;
                };
                let changed = match value {
                    Some(text) => {
                        let stored = parse_unit_file(text);
                        let same = self.unit_files.get(&hash).is_some_and(|f| **f == stored);
                        if !same {
                            self.unit_files.insert(hash, Arc::new(stored));
                        }
                        !same
                    }
                    None => self.unit_files.remove(&hash).is_some(),
                };
                if changed {
                    let users: Vec<String> = self
                        .jobs
                        .iter()
                        .filter(|(_, j)| j.hash == Some(hash))
                        .map(|(n, _)| n.clone())
                        .collect();
                    for name in users {
                        self.refresh_requirements(&name);
                    }
                }
                changed
            }
            KeyKind::JobObject { name } => {
                let hash = value
                    .and_then(|v| serde_json::from_str::<JobRecord>(v).ok())
                    .map(|r| r.hash())
                    .filter(|h| !h.is_zero());
                let changed = self.update_job(name, |job| replace(&mut job.hash, hash));
                if changed {
                    self.refresh_requirements(name);
                }
                changed
            }
            KeyKind::JobTargetState { name } => {
                let state = value.and_then(|v| v.parse::<TargetState>().ok());
                self.update_job(name, |job| replace(&mut job.target_state, state))
            }
            KeyKind::JobTarget { name } => {
                let target = value.filter(|v| !v.is_empty()).map(str::to_string);
                self.update_job(name, |job| replace(&mut job.target, target))
            }
            KeyKind::MachineObject { machine } => {
                let record = value.and_then(|v| serde_json::from_str::<MachineRecord>(v).ok());
                self.update_machine(machine, |m| replace(&mut m.record, record))
            }
            KeyKind::MachineMetadata { machine, key } => self.update_machine(machine, |m| {
                let old = match value {
                    Some(v) => m.dynamic_metadata.insert(key.clone(), v.to_string()),
                    None => m.dynamic_metadata.remove(key),
                };
                old.as_deref() != value
            }),
            KeyKind::ScheduleEntry { machine, name } => {
                let record = value.and_then(|v| serde_json::from_str::<ScheduleRecord>(v).ok());
                let key = (machine.clone(), name.clone());
                set_or_remove(&mut self.schedules, key, record)
            }
            KeyKind::GlobalEntry { name } => {
                let record = value.and_then(|v| serde_json::from_str::<ScheduleRecord>(v).ok());
                set_or_remove(&mut self.globals, name.clone(), record)
            }
            _ => false,
        }
    }

    /// A directory was deleted or expired: drop everything below it.
    fn remove_dir(&mut self, kind: &KeyKind) -> bool {
        match kind {
            KeyKind::JobDir { name } => self.jobs.remove(name).is_some(),
            KeyKind::MachineDir { machine } => self.machines.remove(machine).is_some(),
            KeyKind::ScheduleDir { machine } => {
                let before = self.schedules.len();
                self.schedules.retain(|(m, _), _| m != machine);
                before != self.schedules.len()
            }
            _ => false,
        }
    }

    fn update_job(&mut self, name: &str, change: impl FnOnce(&mut JobEntry) -> bool) -> bool {
        let job = self.jobs.entry(name.to_string()).or_default();
        let changed = change(job);
        if job.is_empty() {
            self.jobs.remove(name);
        }
        changed
    }

    fn update_machine(
        &mut self,
        machine: &str,
        change: impl FnOnce(&mut MachineEntry) -> bool,
    ) -> bool {
        let entry = self.machines.entry(machine.to_string()).or_default();
        let changed = change(entry);
        if entry.record.is_none() && entry.dynamic_metadata.is_empty() {
            self.machines.remove(machine);
        }
        changed
    }

    fn refresh_requirements(&mut self, name: &str) {
        let Some(job) = self.jobs.get(name) else {
            return;
        };
        let requirements = job
            .hash
            .and_then(|h| self.unit_files.get(&h))
            .and_then(|f| f.file.as_ref().ok())
            .map(|file| Arc::new(Requirements::from_unit(file, name)));
        if let Some(job) = self.jobs.get_mut(name) {
            job.requirements = requirements;
        }
    }

    /// What the scheduler needs: live machines with merged metadata, and every job whose unit
    /// file and target state are known (others are skipped, as fleet did).
    pub fn snapshot(&self) -> ClusterSnapshot {
        let machines = self
            .live_machines()
            .map(|(id, m)| {
                let metadata = m.metadata();
                (id.clone(), MachineSnapshot { metadata })
            })
            .collect();
        let units = self
            .jobs
            .iter()
            .filter_map(|(name, job)| {
                let unit = UnitSnapshot {
                    requirements: job.requirements.clone()?,
                    target_state: job.target_state?,
                    target: job.target.clone(),
                };
                Some((name.clone(), unit))
            })
            .collect();
        ClusterSnapshot { machines, units }
    }
}

/// `P/unit-states/<machine>/<name>`: what each agent last published, kept from recursive reads
/// and watch events of `P/unit-states` like [`ClusterView`]. Keyed by (unit name, machine ID),
/// the order the API lists them in. Records that do not decode are left out.
#[derive(Clone, Debug, Default)]
pub struct UnitStatesView {
    keyspace: Keyspace,
    states: BTreeMap<(String, String), UnitStateRecord>,
    read_index: u64,
    event_index: u64,
}

impl UnitStatesView {
    pub fn new(keyspace: Keyspace) -> UnitStatesView {
        UnitStatesView {
            keyspace,
            ..UnitStatesView::default()
        }
    }

    /// Every state, by (unit name, machine ID).
    pub fn states(&self) -> &BTreeMap<(String, String), UnitStateRecord> {
        &self.states
    }

    /// The state `machine` published for `name`.
    pub fn get(&self, name: &str, machine: &str) -> Option<&UnitStateRecord> {
        self.states.get(&(name.to_string(), machine.to_string()))
    }

    /// The registry index of the last full read (0 if never read).
    pub fn read_index(&self) -> u64 {
        self.read_index
    }

    /// Replaces everything with a recursive read of `P/unit-states` (`None`: it does not
    /// exist). A read older than an applied event is dropped; returns whether it was applied.
    pub fn apply_read(&mut self, node: Option<&Node>, index: u64) -> bool {
        if index < self.event_index {
            return false;
        }
        self.states.clear();
        if let Some(node) = node {
            for child in node.walk().filter(|n| !n.dir) {
                if let Some(KeyKind::UnitState { machine, name }) =
                    self.keyspace.classify(&child.key)
                {
                    self.set(machine, name, &child.key, child.value.as_deref());
                }
            }
        }
        self.read_index = index;
        true
    }

    /// Applies one watch event; returns whether the model changed.
    pub fn apply_event(&mut self, event: &Event) -> bool {
        let Some(kind) = self.keyspace.classify(&event.node.key) else {
            return false;
        };
        if event.node.modified_index != 0 && event.node.modified_index <= self.read_index {
            return false;
        }
        self.event_index = self.event_index.max(event.node.modified_index);
        let value = if event.action.is_removal() {
            None
        } else {
            event.node.value.as_deref()
        };
        match kind {
            KeyKind::UnitState { machine, name } if !event.node.dir => {
                self.set(machine, name, &event.node.key, value)
            }
            // The machine's directory expired or was deleted: its states go with it.
            KeyKind::MachineStates { machine } if event.action.is_removal() => {
                let before = self.states.len();
                self.states.retain(|(_, m), _| *m != machine);
                before != self.states.len()
            }
            _ => false,
        }
    }

    fn set(&mut self, machine: String, name: String, key: &str, value: Option<&str>) -> bool {
        let record = value.and_then(|v| UnitStateRecord::decode(key, v).ok());
        set_or_remove(&mut self.states, (name, machine), record)
    }
}

fn parse_unit_file(text: &str) -> StoredUnitFile {
    match serde_json::from_str::<UnitFileRecord>(text) {
        Ok(record) => {
            let file = UnitFile::parse(&record.raw).map_err(|e| e.to_string());
            StoredUnitFile {
                raw: record.raw,
                file,
            }
        }
        Err(e) => StoredUnitFile {
            raw: String::new(),
            file: Err(format!("unit file record is not JSON: {e}")),
        },
    }
}

fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    let changed = *slot != value;
    *slot = value;
    changed
}

fn set_or_remove<K: Ord, V: PartialEq>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) -> bool {
    match value {
        Some(v) => {
            let same = map.get(&key) == Some(&v);
            map.insert(key, v);
            !same
        }
        None => map.remove(&key).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Action;

    fn ks() -> Keyspace {
        Keyspace::default()
    }

    fn leaf(key: String, value: &str, index: u64) -> Node {
        Node {
            key,
            value: Some(value.to_string()),
            modified_index: index,
            ..Node::default()
        }
    }

    fn event(action: Action, key: String, value: Option<&str>, index: u64) -> Event {
        Event {
            action,
            node: Node {
                key,
                value: value.map(str::to_string),
                modified_index: index,
                ..Node::default()
            },
            prev_node: None,
        }
    }

    fn dir(key: String, nodes: Vec<Node>) -> Node {
        Node {
            key,
            dir: true,
            nodes,
            ..Node::default()
        }
    }

    /// Found by the cluster simulator (`FLT_SIM_SEED=0xca0065`): the engine applies its own
    /// writes from their replies; the watch event of an older change to the same key, arriving
    /// later, removed a target the engine had just written.
    #[test]
    fn a_late_event_does_not_undo_a_newer_change_to_the_same_key() {
        let ks = ks();
        let mut view = ClusterView::new(ks.clone());
        view.apply_read(Dir::Jobs, None, 10);
        for (i, name) in ["a.service", "b.service"].into_iter().enumerate() {
            let state = event(
                Action::Set,
                ks.job_target_state(name),
                Some("launched"),
                50 + i as u64,
            );
            view.apply_event(&state);
        }
        let target = ks.job_target("a.service");
        let written = event(Action::Create, target.clone(), Some("m2"), 60);
        assert_eq!(view.apply_event(&written), Some(Dir::Jobs));
        let stale = event(Action::CompareAndDelete, target.clone(), None, 55);
        assert_eq!(view.apply_event(&stale), None);
        assert_eq!(view.jobs()["a.service"].target.as_deref(), Some("m2"));
        // Older events of other keys still count.
        let other = event(Action::Set, ks.job_target("b.service"), Some("m1"), 56);
        assert_eq!(view.apply_event(&other), Some(Dir::Jobs));
        assert_eq!(view.jobs()["b.service"].target.as_deref(), Some("m1"));
        let newer = event(Action::Delete, target, None, 61);
        assert_eq!(view.apply_event(&newer), Some(Dir::Jobs));
        assert_eq!(view.jobs()["a.service"].target, None);
    }

    #[test]
    fn machine_metadata_merges_dynamic_over_config_and_empty_deletes() {
        let ks = ks();
        let record = r#"{"ID":"m1","PublicIP":"10.0.0.1","Metadata":{"region":"us","disk":"hdd"},"Capabilities":{"DISABLE_ENGINE":false,"GRPC":false},"Version":"v1"}"#;
        let machines = dir(
            ks.machines_dir(),
            vec![dir(
                ks.machine_dir("m1"),
                vec![
                    leaf(ks.machine_object("m1"), record, 5),
                    leaf(ks.machine_metadata("m1", "disk"), "ssd", 6),
                    leaf(ks.machine_metadata("m1", "region"), "", 7),
                    leaf(ks.machine_metadata("m1", "role"), "web", 8),
                ],
            )],
        );
        let mut view = ClusterView::new(ks.clone());
        view.apply_read(Dir::Machines, Some(&machines), 10);
        let merged = view.machines()["m1"].metadata();
        let want: BTreeMap<String, String> = [("disk", "ssd"), ("role", "web")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(merged, want);
        assert_eq!(view.snapshot().machines["m1"].metadata, want);
        // The presence key expires: the machine is no longer live, its metadata stays known.
        let expired = event(Action::Expire, ks.machine_object("m1"), None, 11);
        assert_eq!(view.apply_event(&expired), Some(Dir::Machines));
        assert_eq!(view.live_machines().count(), 0);
        assert!(view.snapshot().machines.is_empty());
    }

    #[test]
    fn jobs_become_schedulable_once_object_state_and_unit_file_are_known() {
        let ks = ks();
        let mut view = ClusterView::new(ks.clone());
        view.apply_read(Dir::Jobs, None, 10);
        view.apply_read(Dir::Units, None, 10);
        let file =
            UnitFile::parse("[X-Fleet]\nConflicts=other@*.service\nMachineOf=%p.socket\n").unwrap();
        let object = serde_json::to_string(&JobRecord {
            name: "web@1.service".into(),
            unit_hash: file.hash().0,
        })
        .unwrap();
        let name = "web@1.service";
        assert_eq!(
            view.apply_event(&event(Action::Set, ks.job_object(name), Some(&object), 11)),
            Some(Dir::Jobs)
        );
        assert_eq!(
            view.apply_event(&event(
                Action::Set,
                ks.job_target_state(name),
                Some("launched"),
                12
            )),
            Some(Dir::Jobs)
        );
        assert!(view.snapshot().units.is_empty(), "unit file not yet known");
        let record = serde_json::json!({ "Raw": file.serialize() }).to_string();
        let unit_key = ks.unit(&file.hash());
        assert_eq!(
            view.apply_event(&event(Action::Create, unit_key.clone(), Some(&record), 13)),
            Some(Dir::Units)
        );
        let snapshot = view.snapshot();
        let unit = &snapshot.units[name];
        assert_eq!(unit.target_state, TargetState::Launched);
        assert_eq!(unit.requirements.peers, vec!["web.socket".to_string()]);
        assert_eq!(
            unit.requirements.conflicts,
            vec!["other@*.service".to_string()]
        );
        // The same value again changes nothing.
        assert_eq!(
            view.apply_event(&event(Action::Set, unit_key, Some(&record), 14)),
            None
        );
        // Destroy removes the job.
        let destroy = Event {
            action: Action::Delete,
            node: Node {
                key: ks.job_dir(name),
                dir: true,
                modified_index: 15,
                ..Node::default()
            },
            prev_node: None,
        };
        assert_eq!(view.apply_event(&destroy), Some(Dir::Jobs));
        assert!(view.jobs().is_empty());
    }

    #[test]
    fn events_older_than_the_last_read_are_ignored() {
        let ks = ks();
        let jobs = dir(
            ks.jobs_dir(),
            vec![dir(
                ks.job_dir("a.service"),
                vec![leaf(ks.job_target_state("a.service"), "loaded", 40)],
            )],
        );
        let mut view = ClusterView::new(ks.clone());
        view.apply_read(Dir::Jobs, Some(&jobs), 50);
        let stale = event(
            Action::Set,
            ks.job_target_state("a.service"),
            Some("launched"),
            45,
        );
        assert_eq!(view.apply_event(&stale), None);
        assert_eq!(
            view.jobs()["a.service"].target_state,
            Some(TargetState::Loaded)
        );
        let fresh = event(
            Action::Set,
            ks.job_target_state("a.service"),
            Some("launched"),
            51,
        );
        assert_eq!(view.apply_event(&fresh), Some(Dir::Jobs));
        // A re-read older than an applied change keeps that change on top of what it read.
        let older = dir(ks.jobs_dir(), vec![]);
        assert!(view.apply_read(Dir::Jobs, Some(&older), 50));
        assert_eq!(
            view.jobs()["a.service"].target_state,
            Some(TargetState::Launched)
        );
        assert!(view.apply_read(Dir::Jobs, Some(&older), 51));
        assert!(view.jobs().is_empty());
        // Keys outside the modelled directories are not the view's business.
        let other = event(Action::Set, ks.engine_lease(), Some("x"), 52);
        assert_eq!(view.apply_event(&other), None);
    }

    #[test]
    fn unit_states_follow_reads_events_and_directory_expiry() {
        let ks = ks();
        let state = |machine: &str, active: &str| {
            serde_json::json!({"loadState": "loaded", "activeState": active, "subState": "x",
                "machineState": {"ID": machine}, "unitHash": "ab".repeat(20)})
            .to_string()
        };
        let read = dir(
            ks.unit_states_dir(),
            vec![
                dir(
                    ks.machine_states_dir("m2"),
                    vec![leaf(
                        ks.unit_state("m2", "a.service"),
                        &state("m2", "active"),
                        3,
                    )],
                ),
                dir(
                    ks.machine_states_dir("m1"),
                    vec![
                        leaf(ks.unit_state("m1", "b.service"), &state("m1", "failed"), 4),
                        leaf(ks.unit_state("m1", "a.service"), "not json", 5),
                    ],
                ),
            ],
        );
        let mut view = UnitStatesView::new(ks.clone());
        assert!(view.apply_read(Some(&read), 10));
        let keys: Vec<_> = view.states().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                ("a.service".to_string(), "m2".to_string()),
                ("b.service".to_string(), "m1".to_string())
            ],
            "sorted by unit, then machine; undecodable records left out"
        );
        let stale = event(
            Action::Set,
            ks.unit_state("m1", "a.service"),
            Some(&state("m1", "active")),
            9,
        );
        assert!(!view.apply_event(&stale));
        let fresh = event(
            Action::Set,
            ks.unit_state("m1", "a.service"),
            Some(&state("m1", "active")),
            11,
        );
        assert!(view.apply_event(&fresh));
        assert_eq!(
            view.get("a.service", "m1").map(|s| s.active_state.as_str()),
            Some("active")
        );
        let expired = event(Action::Expire, ks.machine_states_dir("m1"), None, 12);
        assert!(view.apply_event(&expired));
        assert_eq!(view.states().len(), 1);
        assert!(view.get("a.service", "m2").is_some());
        // A read the events have overtaken is dropped.
        assert!(!view.apply_read(None, 11));
        assert_eq!(view.states().len(), 1);
    }

    #[test]
    fn schedule_and_global_records_are_tracked() {
        let ks = ks();
        let mut view = ClusterView::new(ks.clone());
        let record =
            r#"{"unitHash":"1c6fb6f3684bafb0c173d8b8b957ceff031180c1","targetState":"launched"}"#;
        let put = event(
            Action::Set,
            ks.schedule_entry("m1", "a.service"),
            Some(record),
            3,
        );
        assert_eq!(view.apply_event(&put), Some(Dir::Schedules));
        assert_eq!(
            view.schedules()[&("m1".to_string(), "a.service".to_string())].target_state,
            TargetState::Launched
        );
        let global = event(Action::Set, ks.global_entry("g.service"), Some(record), 4);
        assert_eq!(view.apply_event(&global), Some(Dir::Globals));
        let gone = Event {
            action: Action::Delete,
            node: Node {
                key: ks.schedule_dir("m1"),
                dir: true,
                modified_index: 5,
                ..Node::default()
            },
            prev_node: None,
        };
        assert_eq!(view.apply_event(&gone), Some(Dir::Schedules));
        assert!(view.schedules().is_empty());
        assert_eq!(view.globals().len(), 1);
        // A late event of an entry written before the directory went does not bring it back;
        // one written after it does.
        let late = event(
            Action::Set,
            ks.schedule_entry("m1", "b.service"),
            Some(record),
            4,
        );
        assert_eq!(view.apply_event(&late), None);
        assert!(view.schedules().is_empty());
        let newer = event(
            Action::Set,
            ks.schedule_entry("m1", "b.service"),
            Some(record),
            6,
        );
        assert_eq!(view.apply_event(&newer), Some(Dir::Schedules));
        assert_eq!(view.schedules().len(), 1);
    }
}
