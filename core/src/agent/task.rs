//! Task calculation (spec §3.5): a pure function from the desired and the current state of this
//! machine's units to the ordered list of systemd tasks that moves one towards the other.

use crate::registry::records::TargetState;
use crate::unit::UnitHash;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a task does. The declaration order is the execution order of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskKind {
    UnloadUnit,
    LoadUnit,
    ReloadUnitFiles,
    StopUnit,
    StartUnit,
}

impl TaskKind {
    /// A start or a stop: what it changes, systemd reports (the agent publishes that).
    pub fn starts_or_stops(self) -> bool {
        matches!(self, TaskKind::StartUnit | TaskKind::StopUnit)
    }

    /// fleet's name for the task type, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::UnloadUnit => "UnloadUnit",
            TaskKind::LoadUnit => "LoadUnit",
            TaskKind::ReloadUnitFiles => "ReloadUnitFiles",
            TaskKind::StopUnit => "StopUnit",
            TaskKind::StartUnit => "StartUnit",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task was chosen (fleet's reason texts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskReason {
    ScheduledButNotLoaded,
    LoadedButNotScheduled,
    HashDiffers,
    LoadedDesiredLaunched,
    LaunchedDesiredLoaded,
    AlwaysReload,
}

impl TaskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskReason::ScheduledButNotLoaded => "unit scheduled here but not loaded",
            TaskReason::LoadedButNotScheduled => "unit loaded but not scheduled here",
            TaskReason::HashDiffers => "unit loaded but hash differs to expected",
            TaskReason::LoadedDesiredLaunched => {
                "unit currently loaded but desired state is launched"
            }
            TaskReason::LaunchedDesiredLoaded => {
                "unit currently launched but desired state is loaded"
            }
            TaskReason::AlwaysReload => "always reload unit files",
        }
    }
}

impl fmt::Display for TaskReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step for systemd. `unit` is empty for [`TaskKind::ReloadUnitFiles`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub kind: TaskKind,
    pub unit: String,
    pub reason: TaskReason,
}

impl Task {
    fn new(kind: TaskKind, unit: &str, reason: TaskReason) -> Task {
        Task {
            kind,
            unit: unit.to_string(),
            reason,
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type={} job={} reason={:?}",
            self.kind,
            self.unit,
            self.reason.as_str()
        )
    }
}

/// What the schedule wants for one unit on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredUnit {
    pub hash: UnitHash,
    pub target: TargetState,
}

/// A unit whose file is in `units_directory`: the hash of the file (`None` if it could not be
/// read or parsed) and what the agent did with it (`Inactive` if nothing yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurrentUnit {
    pub hash: Option<UnitHash>,
    pub state: TargetState,
}

/// The tasks that move `current` towards `desired`: per name (sorted, union of both maps) the
/// first matching row of spec §3.5, then one `ReloadUnitFiles` if any load or unload precedes it,
/// all stably ordered Unload < Load < ReloadUnitFiles < Stop < Start.
pub fn plan(
    desired: &BTreeMap<String, DesiredUnit>,
    current: &BTreeMap<String, CurrentUnit>,
) -> Vec<Task> {
    let names: BTreeSet<&String> = desired.keys().chain(current.keys()).collect();
    let mut tasks = Vec::new();
    for name in names {
        tasks_for(name, desired.get(name), current.get(name), &mut tasks);
    }
    if tasks
        .iter()
        .any(|t| matches!(t.kind, TaskKind::LoadUnit | TaskKind::UnloadUnit))
    {
        tasks.push(Task::new(
            TaskKind::ReloadUnitFiles,
            "",
            TaskReason::AlwaysReload,
        ));
    }
    tasks.sort_by_key(|t| t.kind);
    tasks
}

fn tasks_for(
    name: &str,
    desired: Option<&DesiredUnit>,
    current: Option<&CurrentUnit>,
    tasks: &mut Vec<Task>,
) {
    use TargetState::*;
    use TaskKind::*;
    use TaskReason::*;
    let wanted = desired.filter(|d| d.target != Inactive);
    let (want, have) = match (wanted, current) {
        // Row 1: not wanted here (or wanted inactive) but present.
        (None, Some(_)) => {
            tasks.push(Task::new(UnloadUnit, name, LoadedButNotScheduled));
            return;
        }
        (None, None) => return,
        // Row 2: wanted but absent.
        (Some(want), None) => {
            tasks.push(Task::new(LoadUnit, name, ScheduledButNotLoaded));
            if want.target == Launched {
                tasks.push(Task::new(StartUnit, name, LoadedDesiredLaunched));
            }
            return;
        }
        (Some(want), Some(have)) => (want, have),
    };
    // Row 3: present with other content.
    if have.hash != Some(want.hash) {
        tasks.push(Task::new(UnloadUnit, name, HashDiffers));
        tasks.push(Task::new(LoadUnit, name, HashDiffers));
        if want.target == Launched {
            tasks.push(Task::new(StartUnit, name, LoadedDesiredLaunched));
        }
        return;
    }
    match (want.target, have.state) {
        // Row 4: already there.
        (w, h) if w == h => {}
        // Row 5: the file is there but the agent has not loaded it.
        (_, Inactive) => {
            tasks.push(Task::new(LoadUnit, name, ScheduledButNotLoaded));
            if want.target == Launched {
                tasks.push(Task::new(StartUnit, name, LoadedDesiredLaunched));
            }
        }
        // Row 6.
        (Launched, Loaded) => tasks.push(Task::new(StartUnit, name, LoadedDesiredLaunched)),
        // Row 7.
        (Loaded, Launched) => tasks.push(Task::new(StopUnit, name, LaunchedDesiredLoaded)),
        // Unreachable: `want.target` is never Inactive here.
        _ => {}
    }
}
