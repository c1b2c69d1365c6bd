//! Reconcile as a pure function: [`plan`] turns a [`ClusterSnapshot`] into ordered [`Task`]s and
//! the reasons why some units could not be placed (spec §2.2–§2.4, with the fixes of §12).
//!
//! - Phase A visits every scheduled unit by name: it unschedules units whose target state is
//!   `inactive`, units on machines that went away and units their machine can no longer run, and
//!   moves the victims of `Replaces=`.
//! - Phase B places every unscheduled, non-inactive unit by name on the least-loaded machine that
//!   can run it (ties broken by machine ID). A `MachineOf=` follower visited before its leader is
//!   retried once the leader is placed, so pairs land together in one pass.
//!
//! Global units are never scheduled here, but they count towards each machine's load, conflicts
//! and peers wherever their metadata fits and they do not conflict with what is already there.
//!
//! Cost: machines sit in a set ordered by (load, machine ID), so placing an unconstrained unit is
//! O(log machines). `MachineID=` and `MachineOf=` narrow the candidates to one machine; only
//! metadata and conflicts fall back to walking machines in load order. Glob patterns are matched
//! once per plan, against the name range that shares the pattern's literal prefix.

use super::snapshot::{ClusterSnapshot, UnitSnapshot};
use crate::glob::glob_match;
use crate::registry::records::TargetState;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One step for the engine to carry out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// Schedule `unit` to `machine` (create-only: it fails harmlessly if someone was faster).
    AttemptSchedule { unit: String, machine: String },
    /// Take `unit` off `machine` (compare-and-delete on the machine ID).
    Unschedule {
        unit: String,
        machine: String,
        reason: UnscheduleReason,
    },
}

impl Task {
    /// The unit this task is about.
    pub fn unit(&self) -> &str {
        match self {
            Task::AttemptSchedule { unit, .. } | Task::Unschedule { unit, .. } => unit,
        }
    }

    /// The machine this task is about.
    pub fn machine(&self) -> &str {
        match self {
            Task::AttemptSchedule { machine, .. } | Task::Unschedule { machine, .. } => machine,
        }
    }

    /// The `type` label of `flt_engine_task_count_total` (fleet's names).
    pub fn metric_type(&self) -> &'static str {
        match self {
            Task::AttemptSchedule { .. } => "attemptscheduleunit",
            Task::Unschedule { .. } => "unscheduleunit",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::AttemptSchedule { unit, machine } => {
                write!(f, "Scheduled Unit({unit}) to Machine({machine})")
            }
            Task::Unschedule {
                unit,
                machine,
                reason,
            } => write!(
                f,
                "Unscheduled Job({unit}) from Machine({machine}): {reason}"
            ),
        }
    }
}

/// Why a unit is taken off its machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnscheduleReason {
    /// Its target state is `inactive`.
    TargetStateInactive,
    /// Its machine's presence key is gone.
    MachineAway { machine: String },
    /// Its machine no longer satisfies its requirements.
    UnableToRun {
        machine: String,
        rejection: Rejection,
    },
    /// A unit on the same machine replaces it (`Replaces=`); it moves elsewhere.
    Replaced { by: String },
}

impl UnscheduleReason {
    /// The `type` label of `flt_engine_reconcile_failure_count_total`, if this counts as one.
    pub fn failure_type(&self) -> Option<&'static str> {
        match self {
            UnscheduleReason::MachineAway { .. } => Some("machine_away"),
            UnscheduleReason::UnableToRun { .. } => Some("run"),
            UnscheduleReason::TargetStateInactive | UnscheduleReason::Replaced { .. } => None,
        }
    }
}

impl fmt::Display for UnscheduleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnscheduleReason::TargetStateInactive => f.write_str("target state inactive"),
            UnscheduleReason::MachineAway { machine } => {
                write!(f, "target Machine({machine}) went away")
            }
            UnscheduleReason::UnableToRun { machine, rejection } => {
                write!(
                    f,
                    "target Machine({machine}) unable to run unit: {rejection}"
                )
            }
            UnscheduleReason::Replaced { by } => write!(f, "replaced by Unit({by})"),
        }
    }
}

/// Why one machine cannot run one unit (spec §2.4, fleet's texts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `MachineID=` names another machine.
    MachineId { machine: String, required: String },
    /// No live machine has the ID (full or short) that `MachineID=` names.
    NoSuchMachine { required: String },
    /// `MachineMetadata=` does not match the machine's metadata.
    Metadata,
    /// A `MachineOf=` peer is not on the machine.
    PeerNotLocal { peer: String },
    /// A `MachineOf=` peer is not scheduled anywhere (or does not exist).
    PeerNotScheduled { peer: String },
    /// The unit and one already on the machine conflict (either side's `Conflicts=`).
    Conflict { with: String },
    /// A unit already on the machine replaces this one (`Replaces=`).
    ReplacedBy { by: String },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MachineId { machine, required } => {
                write!(
                    f,
                    "agent ID {machine:?} does not match required {required:?}"
                )
            }
            Rejection::NoSuchMachine { required } => {
                write!(f, "no live machine has the required ID {required:?}")
            }
            Rejection::Metadata => f.write_str("local Machine metadata insufficient"),
            Rejection::PeerNotLocal { peer } => {
                write!(f, "required peer Unit({peer}) is not scheduled locally")
            }
            Rejection::PeerNotScheduled { peer } => {
                write!(f, "required peer Unit({peer}) is not scheduled")
            }
            Rejection::Conflict { with } => {
                write!(f, "found conflict with locally-scheduled Unit({with})")
            }
            Rejection::ReplacedBy { by } => {
                write!(f, "found replace with locally-scheduled Unit({by})")
            }
        }
    }
}

/// Why a unit could not be placed anywhere in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnplaceableReason {
    /// There are no live machines.
    ZeroAgents,
    /// No machine qualifies; `detail` is what the least-loaded candidate lacked.
    NoAgentAble { detail: Rejection },
}

impl fmt::Display for UnplaceableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnplaceableReason::ZeroAgents => f.write_str("zero agents available"),
            UnplaceableReason::NoAgentAble { detail } => {
                write!(f, "no agents able to run job: {detail}")
            }
        }
    }
}

/// A unit that [`plan`] could not place, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaceable {
    pub unit: String,
    pub reason: UnplaceableReason,
}

/// The outcome of one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// What to write, in order.
    pub tasks: Vec<Task>,
    /// Units left unscheduled, by name.
    pub unplaceable: Vec<Unplaceable>,
}

/// Plans one reconcile of `snapshot`. Pure and deterministic: the same snapshot always gives the
/// same plan.
pub fn plan(snapshot: &ClusterSnapshot) -> Plan {
    let mut planner = Planner::new(snapshot);
    planner.phase_a();
    planner.phase_b();
    Plan {
        tasks: planner.tasks,
        unplaceable: planner.unplaceable,
    }
}

type UnitIdx = u32;
type MachineIdx = u32;

/// How a unit relates to one machine (the result of AbleToRun).
enum Fit {
    Able,
    /// The unit replaces units on the machine (see `move_victims`).
    Replaces,
    /// This unit on the machine replaces the unit.
    ReplacedBy(UnitIdx),
    Unable(Rejection),
}

/// A `MachineOf=` peer, resolved to a unit if one has that name.
struct Peer<'a> {
    name: &'a str,
    unit: Option<UnitIdx>,
}

struct Planner<'a> {
    names: Vec<&'a str>,
    units: Vec<&'a UnitSnapshot>,
    machine_ids: Vec<&'a str>,
    machine_metadata: Vec<&'a BTreeMap<String, String>>,
    machine_by_id: BTreeMap<&'a str, MachineIdx>,
    machine_by_short_id: BTreeMap<&'a str, Vec<MachineIdx>>,
    /// Units each unit conflicts with, in either direction, sorted.
    conflicts: Vec<Vec<UnitIdx>>,
    /// Units each unit replaces (circular pairs dropped), sorted.
    victims: Vec<Vec<UnitIdx>>,
    /// Units that replace each unit (circular pairs dropped), sorted.
    replacers: Vec<Vec<UnitIdx>>,
    peers: Vec<Vec<Peer<'a>>>,
    /// Units that name each unit in `MachineOf=`, sorted.
    followers: Vec<Vec<UnitIdx>>,
    /// Units with no requirement and no relation: any machine will do.
    unconstrained: Vec<bool>,
    /// How many more victims may be moved. Each move can evict followers and so start another
    /// round of phase B; the budget guarantees that odd relation cycles still end.
    moves_left: usize,
    /// Units phase B found no machine for; a victim's move frees room, so it resets them.
    given_up: Vec<bool>,
    /// Where each non-global unit currently counts (target set, not inactive, machine live).
    position: Vec<Option<MachineIdx>>,
    /// Where each non-global unit is scheduled in the registry as this plan goes.
    target: Vec<Option<&'a str>>,
    /// Non-inactive global units whose metadata fits, per machine, sorted.
    eligible_globals: Vec<Vec<UnitIdx>>,
    /// Global units counted on each machine, sorted.
    globals_on: Vec<Vec<UnitIdx>>,
    load: Vec<u32>,
    by_load: BTreeSet<(u32, MachineIdx)>,
    /// Each distinct `MachineMetadata=` requirement's matching machines, ordered like
    /// `by_load`, so that metadata-constrained units skip non-matching machines for free.
    metadata_classes: Vec<BTreeSet<(u32, MachineIdx)>>,
    /// The metadata class of each unit with a `MachineMetadata=` requirement.
    unit_class: Vec<Option<u32>>,
    /// The metadata classes each machine belongs to.
    machine_classes: Vec<Vec<u32>>,
    tasks: Vec<Task>,
    unplaceable: Vec<Unplaceable>,
}

fn idx(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The indices of the sorted `names` that `pattern` matches. Only the range sharing the
/// pattern's literal prefix is scanned; a malformed pattern matches nothing (as in fleet).
fn matching_names(pattern: &str, names: &[&str]) -> Vec<UnitIdx> {
    let literal_len = pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len());
    let prefix = &pattern[..literal_len];
    if literal_len == pattern.len() {
        return names
            .binary_search(&pattern)
            .map(|i| vec![idx(i)])
            .unwrap_or_default();
    }
    let start = names.partition_point(|n| *n < prefix);
    names[start..]
        .iter()
        .take_while(|n| n.starts_with(prefix))
        .enumerate()
        .filter(|(_, n)| glob_match(pattern, n) == Ok(true))
        .map(|(i, _)| idx(start + i))
        .collect()
}

/// Groups units by distinct `MachineMetadata=` requirement and finds each group's machines
/// through an index of machine metadata, so the cost follows the number of matches.
#[allow(clippy::type_complexity)]
fn metadata_classes(
    snapshot: &ClusterSnapshot,
    units: &[&UnitSnapshot],
    load: &[u32],
) -> (
    Vec<BTreeSet<(u32, MachineIdx)>>,
    Vec<Option<u32>>,
    Vec<Vec<u32>>,
) {
    let mut by_pair: BTreeMap<(&str, &str), Vec<MachineIdx>> = BTreeMap::new();
    for (m, machine) in snapshot.machines.values().enumerate() {
        for (k, v) in &machine.metadata {
            by_pair.entry((k, v)).or_default().push(idx(m));
        }
    }
    let mut class_of: BTreeMap<&BTreeMap<String, BTreeSet<String>>, u32> = BTreeMap::new();
    let mut classes: Vec<BTreeSet<(u32, MachineIdx)>> = Vec::new();
    let mut machine_classes = vec![Vec::new(); load.len()];
    let mut unit_class = vec![None; units.len()];
    for (u, unit) in units.iter().enumerate() {
        let required = &unit.requirements.metadata;
        if unit.is_global() || required.is_empty() {
            continue;
        }
        if let Some(&class) = class_of.get(required) {
            unit_class[u] = Some(class);
            continue;
        }
        let class = idx(classes.len());
        let mut matching: Option<BTreeSet<MachineIdx>> = None;
        for (key, accepted) in required {
            let with_key: BTreeSet<MachineIdx> = accepted
                .iter()
                .flat_map(|v| by_pair.get(&(key.as_str(), v.as_str())))
                .flatten()
                .copied()
                .collect();
            matching = Some(match matching {
                None => with_key,
                Some(so_far) => so_far.intersection(&with_key).copied().collect(),
            });
        }
        let matching = matching.unwrap_or_default();
        for &m in &matching {
            machine_classes[m as usize].push(class);
        }
        classes.push(matching.iter().map(|&m| (load[m as usize], m)).collect());
        class_of.insert(required, class);
        unit_class[u] = Some(class);
    }
    (classes, unit_class, machine_classes)
}

fn sort_dedup(lists: &mut [Vec<UnitIdx>]) {
    for list in lists {
        list.sort_unstable();
        list.dedup();
    }
}

impl<'a> Planner<'a> {
    fn new(snapshot: &'a ClusterSnapshot) -> Planner<'a> {
        let names: Vec<&str> = snapshot.units.keys().map(String::as_str).collect();
        let units: Vec<&UnitSnapshot> = snapshot.units.values().collect();
        let machine_ids: Vec<&str> = snapshot.machines.keys().map(String::as_str).collect();
        let machine_by_id: BTreeMap<&str, MachineIdx> = machine_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, idx(i)))
            .collect();
        let mut machine_by_short_id: BTreeMap<&str, Vec<MachineIdx>> = BTreeMap::new();
        for (i, id) in machine_ids.iter().enumerate() {
            if let Some(short) = id.get(..8) {
                machine_by_short_id.entry(short).or_default().push(idx(i));
            }
        }
        let n = names.len();

        let mut conflicts = vec![Vec::new(); n];
        let mut replace_edges: Vec<(UnitIdx, UnitIdx)> = Vec::new();
        for (u, unit) in units.iter().enumerate() {
            let u = idx(u);
            for pattern in &unit.requirements.conflicts {
                for v in matching_names(pattern, &names) {
                    if v != u {
                        conflicts[u as usize].push(v);
                        conflicts[v as usize].push(u);
                    }
                }
            }
            // Global units never move, so they neither replace nor get replaced.
            if unit.is_global() {
                continue;
            }
            for pattern in &unit.requirements.replaces {
                for v in matching_names(pattern, &names) {
                    if v != u && !units[v as usize].is_global() {
                        replace_edges.push((u, v));
                    }
                }
            }
        }
        sort_dedup(&mut conflicts);
        replace_edges.sort_unstable();
        replace_edges.dedup();
        let mut victims = vec![Vec::new(); n];
        let mut replacers = vec![Vec::new(); n];
        let is_peer = |a: UnitIdx, b: UnitIdx| {
            units[a as usize]
                .requirements
                .peers
                .iter()
                .any(|p| p == names[b as usize])
        };
        for &(u, v) in &replace_edges {
            // Units that replace each other cancel out (spec §2.3), and replacing one's own
            // `MachineOf=` peer (which the API refuses) is ignored rather than chased forever.
            if replace_edges.binary_search(&(v, u)).is_err() && !is_peer(u, v) && !is_peer(v, u) {
                victims[u as usize].push(v);
                replacers[v as usize].push(u);
            }
        }

        let peers: Vec<Vec<Peer<'_>>> = units
            .iter()
            .map(|unit| {
                unit.requirements
                    .peers
                    .iter()
                    .map(|p| Peer {
                        name: p.as_str(),
                        unit: names.binary_search(&p.as_str()).ok().map(idx),
                    })
                    .collect()
            })
            .collect();
        let mut followers = vec![Vec::new(); n];
        for (u, unit_peers) in peers.iter().enumerate() {
            if units[u].is_global() {
                continue;
            }
            for p in unit_peers.iter().filter_map(|p| p.unit) {
                followers[p as usize].push(idx(u));
            }
        }
        sort_dedup(&mut followers);
        let unconstrained = (0..n)
            .map(|u| {
                let r = &units[u].requirements;
                r.machine_id.is_none()
                    && r.metadata.is_empty()
                    && r.peers.is_empty()
                    && conflicts[u].is_empty()
                    && victims[u].is_empty()
                    && replacers[u].is_empty()
            })
            .collect();

        let m = machine_ids.len();
        let mut position = vec![None; n];
        let mut target = vec![None; n];
        let mut load = vec![0u32; m];
        let mut globals = Vec::new();
        for (u, unit) in units.iter().enumerate() {
            if unit.is_global() {
                if unit.target_state != TargetState::Inactive {
                    globals.push(idx(u));
                }
                continue;
            }
            target[u] = unit.target.as_deref();
            if unit.target_state == TargetState::Inactive {
                continue;
            }
            if let Some(&mi) = unit.target.as_deref().and_then(|t| machine_by_id.get(t)) {
                position[u] = Some(mi);
                load[mi as usize] += 1;
            }
        }
        let eligible_globals: Vec<Vec<UnitIdx>> = snapshot
            .machines
            .values()
            .map(|machine| {
                globals
                    .iter()
                    .copied()
                    .filter(|&g| {
                        units[g as usize]
                            .requirements
                            .metadata_matches(&machine.metadata)
                    })
                    .collect()
            })
            .collect();

        let (metadata_classes, unit_class, machine_classes) =
            metadata_classes(snapshot, &units, &load);
        let mut planner = Planner {
            names,
            units,
            machine_ids,
            machine_metadata: snapshot.machines.values().map(|m| &m.metadata).collect(),
            machine_by_id,
            machine_by_short_id,
            conflicts,
            victims,
            replacers,
            peers,
            followers,
            unconstrained,
            moves_left: 2 * n + 16,
            given_up: vec![false; n],
            position,
            target,
            eligible_globals,
            globals_on: vec![Vec::new(); m],
            load,
            by_load: BTreeSet::new(),
            metadata_classes,
            unit_class,
            machine_classes,
            tasks: Vec::new(),
            unplaceable: Vec::new(),
        };
        for mi in 0..m {
            let mi = idx(mi);
            planner.by_load.insert((planner.load[mi as usize], mi));
            planner.refresh_globals(mi);
        }
        planner
    }

    /// Whether `unit` counts as being on `machine` right now.
    fn is_on(&self, unit: UnitIdx, machine: MachineIdx) -> bool {
        if self.units[unit as usize].is_global() {
            self.globals_on[machine as usize]
                .binary_search(&unit)
                .is_ok()
        } else {
            self.position[unit as usize] == Some(machine)
        }
    }

    fn set_load(&mut self, machine: MachineIdx, load: u32) {
        let old = self.load[machine as usize];
        if old != load {
            self.by_load.remove(&(old, machine));
            self.by_load.insert((load, machine));
            for &class in &self.machine_classes[machine as usize] {
                let set = &mut self.metadata_classes[class as usize];
                set.remove(&(old, machine));
                set.insert((load, machine));
            }
            self.load[machine as usize] = load;
        }
    }

    /// Recomputes which global units count on `machine`: in name order, each one whose metadata
    /// fits and that conflicts with nothing already there (spec §2.2).
    fn refresh_globals(&mut self, machine: MachineIdx) {
        let eligible = &self.eligible_globals[machine as usize];
        if eligible.is_empty() {
            return;
        }
        let mut on: Vec<UnitIdx> = Vec::with_capacity(eligible.len());
        for &g in eligible {
            let clashes = self.conflicts[g as usize].iter().any(|&p| {
                if self.units[p as usize].is_global() {
                    on.binary_search(&p).is_ok()
                } else {
                    self.position[p as usize] == Some(machine)
                }
            });
            if !clashes {
                on.push(g);
            }
        }
        let old = self.globals_on[machine as usize].len();
        let new = on.len();
        self.globals_on[machine as usize] = on;
        let load = self.load[machine as usize] - idx(old) + idx(new);
        self.set_load(machine, load);
    }

    fn place(&mut self, unit: UnitIdx, machine: MachineIdx) {
        self.position[unit as usize] = Some(machine);
        self.target[unit as usize] = Some(self.machine_ids[machine as usize]);
        let load = self.load[machine as usize] + 1;
        self.set_load(machine, load);
        self.refresh_globals(machine);
    }

    fn remove(&mut self, unit: UnitIdx) {
        self.target[unit as usize] = None;
        if let Some(machine) = self.position[unit as usize].take() {
            let load = self.load[machine as usize] - 1;
            self.set_load(machine, load);
            self.refresh_globals(machine);
        }
    }

    /// AbleToRun (spec §2.4): MachineID, metadata, peers, conflicts, then replaces.
    fn fit(&self, unit: UnitIdx, machine: MachineIdx) -> Fit {
        let u = unit as usize;
        if self.unconstrained[u] {
            return Fit::Able;
        }
        let req = &self.units[u].requirements;
        let id = self.machine_ids[machine as usize];
        if !req.machine_id_matches(id) {
            return Fit::Unable(Rejection::MachineId {
                machine: id.to_string(),
                required: req.machine_id.clone().unwrap_or_default(),
            });
        }
        if !req.metadata_matches(self.machine_metadata[machine as usize]) {
            return Fit::Unable(Rejection::Metadata);
        }
        for peer in &self.peers[u] {
            if !peer.unit.is_some_and(|p| self.is_on(p, machine)) {
                return Fit::Unable(Rejection::PeerNotLocal {
                    peer: peer.name.to_string(),
                });
            }
        }
        if let Some(&other) = self.conflicts[u].iter().find(|&&p| self.is_on(p, machine)) {
            return Fit::Unable(Rejection::Conflict {
                with: self.names[other as usize].to_string(),
            });
        }
        if let Some(&by) = self.replacers[u].iter().find(|&&r| self.is_on(r, machine)) {
            return Fit::ReplacedBy(by);
        }
        if self.victims[u].iter().any(|&v| self.is_on(v, machine)) {
            return Fit::Replaces;
        }
        Fit::Able
    }

    /// Phase A: check every scheduled unit where it is, then move the victims of `Replaces=`.
    fn phase_a(&mut self) {
        for u in 0..self.units.len() {
            let u = idx(u);
            let unit = self.units[u as usize];
            if unit.is_global() {
                continue;
            }
            let Some(target) = self.target[u as usize] else {
                continue;
            };
            if unit.target_state == TargetState::Inactive {
                self.target[u as usize] = None;
                self.unschedule(u, target, UnscheduleReason::TargetStateInactive);
                continue;
            }
            let Some(machine) = self.position[u as usize] else {
                self.target[u as usize] = None;
                let reason = UnscheduleReason::MachineAway {
                    machine: target.to_string(),
                };
                self.unschedule(u, target, reason);
                continue;
            };
            match self.fit(u, machine) {
                Fit::Able => {}
                Fit::Unable(rejection) => {
                    self.remove(u);
                    let reason = UnscheduleReason::UnableToRun {
                        machine: target.to_string(),
                        rejection,
                    };
                    self.unschedule(u, target, reason);
                    self.evict_followers(u, machine);
                }
                Fit::Replaces | Fit::ReplacedBy(_) => {}
            }
        }
        // Replaces only once every unit that stays is known, so that a replacer evicted for
        // another reason pushes nothing away.
        for u in 0..self.units.len() {
            let u = idx(u);
            let Some(machine) = self.position[u as usize] else {
                continue;
            };
            match self.fit(u, machine) {
                Fit::Replaces => self.move_victims(u, machine),
                Fit::ReplacedBy(by) => self.move_victim(by, u, machine),
                Fit::Able | Fit::Unable(_) => {}
            }
        }
    }

    fn unschedule(&mut self, unit: UnitIdx, machine: &str, reason: UnscheduleReason) {
        self.tasks.push(Task::Unschedule {
            unit: self.names[unit as usize].to_string(),
            machine: machine.to_string(),
            reason,
        });
    }

    fn schedule(&mut self, unit: UnitIdx, machine: MachineIdx) {
        self.place(unit, machine);
        self.tasks.push(Task::AttemptSchedule {
            unit: self.names[unit as usize].to_string(),
            machine: self.machine_ids[machine as usize].to_string(),
        });
    }

    /// `replacer` and `victim` share `machine`: move the victim to the least-loaded other machine
    /// that can run it. If there is none, both stay (as in fleet).
    fn move_victim(&mut self, replacer: UnitIdx, victim: UnitIdx, machine: MachineIdx) {
        if self.moves_left == 0 || self.needs_peer(replacer, victim) {
            return;
        }
        self.remove(victim);
        match self.decide(victim, Some(machine)) {
            Ok((dest, Fit::Able)) => {
                self.moves_left -= 1;
                self.given_up.fill(false);
                let by = self.names[replacer as usize].to_string();
                let from = self.machine_ids[machine as usize];
                self.unschedule(victim, from, UnscheduleReason::Replaced { by });
                self.schedule(victim, dest);
                self.evict_followers(victim, machine);
            }
            _ => self.place(victim, machine),
        }
    }

    /// Whether `unit` needs `peer` on its machine, directly or through a chain of `MachineOf=`.
    /// Moving such a victim would drag the replacer after it, so the relation is ignored.
    fn needs_peer(&self, unit: UnitIdx, peer: UnitIdx) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![unit];
        while let Some(u) = stack.pop() {
            for p in self.peers[u as usize].iter().filter_map(|p| p.unit) {
                if p == peer {
                    return true;
                }
                if seen.insert(p) {
                    stack.push(p);
                }
            }
        }
        false
    }

    /// Moves every unit that `replacer` replaces off `machine`, where possible.
    fn move_victims(&mut self, replacer: UnitIdx, machine: MachineIdx) {
        for i in 0..self.victims[replacer as usize].len() {
            let victim = self.victims[replacer as usize][i];
            if self.is_on(victim, machine) {
                self.move_victim(replacer, victim, machine);
            }
        }
    }

    /// `leader` left `machine`: the units that need it there (`MachineOf=`) leave too, and are
    /// placed again in phase B, next to it if they can.
    fn evict_followers(&mut self, leader: UnitIdx, machine: MachineIdx) {
        for i in 0..self.followers[leader as usize].len() {
            let follower = self.followers[leader as usize][i];
            if self.position[follower as usize] != Some(machine) {
                continue;
            }
            self.remove(follower);
            let from = self.machine_ids[machine as usize];
            let reason = UnscheduleReason::UnableToRun {
                machine: from.to_string(),
                rejection: Rejection::PeerNotLocal {
                    peer: self.names[leader as usize].to_string(),
                },
            };
            self.unschedule(follower, from, reason);
            self.evict_followers(follower, machine);
        }
    }

    /// Phase B: place every unscheduled unit that should run, in rounds: a `MachineOf=` follower
    /// tried before its leader, or a follower evicted by a move, is tried again in the next round.
    fn phase_b(&mut self) {
        let mut reasons: BTreeMap<UnitIdx, UnplaceableReason> = BTreeMap::new();
        loop {
            let queue: Vec<UnitIdx> = (0..self.units.len())
                .map(idx)
                .filter(|&u| !self.given_up[u as usize] && self.wants_placement(u))
                .collect();
            if queue.is_empty() {
                break;
            }
            let mut placed_any = false;
            for u in queue {
                match self.decide(u, None) {
                    Ok((machine, fit)) => {
                        placed_any = true;
                        self.schedule(u, machine);
                        if let Fit::Replaces = fit {
                            self.move_victims(u, machine);
                        }
                    }
                    Err(reason) => {
                        // A follower whose leader is still to be placed is tried again.
                        if !self.waits_for_peer(u) {
                            self.given_up[u as usize] = true;
                        }
                        reasons.insert(u, reason);
                    }
                }
            }
            if !placed_any {
                break;
            }
        }
        for (u, reason) in reasons {
            if self.wants_placement(u) {
                self.report_unplaceable(u, reason);
            }
        }
    }

    fn wants_placement(&self, unit: UnitIdx) -> bool {
        let snapshot = self.units[unit as usize];
        !snapshot.is_global()
            && snapshot.target_state != TargetState::Inactive
            && self.target[unit as usize].is_none()
    }

    /// Whether a `MachineOf=` peer of `unit` is itself still waiting to be placed.
    fn waits_for_peer(&self, unit: UnitIdx) -> bool {
        self.peers[unit as usize]
            .iter()
            .any(|p| p.unit.is_some_and(|p| self.wants_placement(p)))
    }

    fn report_unplaceable(&mut self, unit: UnitIdx, reason: UnplaceableReason) {
        self.unplaceable.push(Unplaceable {
            unit: self.names[unit as usize].to_string(),
            reason,
        });
    }

    /// The least-loaded machine (ties by ID) other than `exclude` where `unit` can run, possibly
    /// by replacing a unit there.
    fn decide(
        &self,
        unit: UnitIdx,
        exclude: Option<MachineIdx>,
    ) -> Result<(MachineIdx, Fit), UnplaceableReason> {
        if self.machine_ids.is_empty() {
            return Err(UnplaceableReason::ZeroAgents);
        }
        let mut first_rejection = None;
        let mut consider = |machine: MachineIdx| -> Option<Fit> {
            if Some(machine) == exclude {
                return None;
            }
            match self.fit(unit, machine) {
                Fit::Unable(rejection) => {
                    first_rejection.get_or_insert(rejection);
                    None
                }
                Fit::ReplacedBy(by) => {
                    first_rejection.get_or_insert(Rejection::ReplacedBy {
                        by: self.names[by as usize].to_string(),
                    });
                    None
                }
                fit => Some(fit),
            }
        };
        if let Some(candidates) = self.narrow_candidates(unit) {
            let mut candidates = candidates?;
            candidates.sort_by_key(|&m| (self.load[m as usize], m));
            for machine in candidates {
                if let Some(fit) = consider(machine) {
                    return Ok((machine, fit));
                }
            }
        } else {
            let ordered = match self.unit_class[unit as usize] {
                Some(class) => &self.metadata_classes[class as usize],
                None => &self.by_load,
            };
            for &(_, machine) in ordered {
                if let Some(fit) = consider(machine) {
                    return Ok((machine, fit));
                }
            }
        }
        Err(UnplaceableReason::NoAgentAble {
            detail: first_rejection.unwrap_or(Rejection::Metadata),
        })
    }

    /// The only machines worth trying when `MachineOf=` or `MachineID=` pins the unit, or `None`
    /// when every machine is a candidate.
    fn narrow_candidates(
        &self,
        unit: UnitIdx,
    ) -> Option<Result<Vec<MachineIdx>, UnplaceableReason>> {
        let u = unit as usize;
        for peer in &self.peers[u] {
            let Some(p) = peer.unit else {
                return Some(Err(UnplaceableReason::NoAgentAble {
                    detail: Rejection::PeerNotScheduled {
                        peer: peer.name.to_string(),
                    },
                }));
            };
            if self.units[p as usize].is_global() {
                continue;
            }
            return Some(match self.position[p as usize] {
                Some(machine) => Ok(vec![machine]),
                None => Err(UnplaceableReason::NoAgentAble {
                    detail: Rejection::PeerNotScheduled {
                        peer: peer.name.to_string(),
                    },
                }),
            });
        }
        let required = self.units[u].requirements.machine_id.as_deref()?;
        let mut candidates: Vec<MachineIdx> = Vec::new();
        if let Some(&m) = self.machine_by_id.get(required) {
            candidates.push(m);
        }
        if let Some(short) = self.machine_by_short_id.get(required) {
            candidates.extend(short);
        }
        candidates.sort_unstable();
        candidates.dedup();
        if candidates.is_empty() {
            return Some(Err(UnplaceableReason::NoAgentAble {
                detail: Rejection::NoSuchMachine {
                    required: required.to_string(),
                },
            }));
        }
        Some(Ok(candidates))
    }
}
