//! The input of [`super::plan`]: everything the scheduler needs to know about the cluster, as
//! plain data, ordered by name.

use crate::registry::records::TargetState;
use crate::unit::Requirements;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One live machine (its `P/machines/<id>/object` exists).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineSnapshot {
    /// Merged metadata (spec §1.3): config metadata overridden by `metadata/<key>`.
    pub metadata: BTreeMap<String, String>,
}

/// One unit (job) with a readable unit file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSnapshot {
    /// The unit's `[X-Fleet]` requirements, specifiers expanded. Shared with the cluster view, so
    /// that building a snapshot of 100,000 units does not copy them.
    pub requirements: Arc<Requirements>,
    /// `P/job/<name>/target-state`.
    pub target_state: TargetState,
    /// `P/job/<name>/target`: the machine it is scheduled to. Ignored for global units.
    pub target: Option<String>,
}

impl UnitSnapshot {
    /// A unit with these requirements and target state, not scheduled anywhere.
    pub fn new(requirements: Requirements, target_state: TargetState) -> UnitSnapshot {
        UnitSnapshot {
            requirements: Arc::new(requirements),
            target_state,
            target: None,
        }
    }

    /// The same unit, scheduled to `machine`.
    pub fn on(mut self, machine: &str) -> UnitSnapshot {
        self.target = Some(machine.to_string());
        self
    }

    /// True for `Global=true` units, which agents run by themselves.
    pub fn is_global(&self) -> bool {
        self.requirements.global
    }
}

/// The cluster as one reconcile sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// Live machines by ID.
    pub machines: BTreeMap<String, MachineSnapshot>,
    /// Units by name, global ones included.
    pub units: BTreeMap<String, UnitSnapshot>,
}
