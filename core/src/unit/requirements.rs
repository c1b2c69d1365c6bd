//! What a unit's `[X-Fleet]` section asks of the machine it runs on.

use std::collections::{BTreeMap, BTreeSet};

/// The scheduling requirements of one unit, with specifiers (`%n %N %p %i`) already expanded for
/// that unit's name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirements {
    /// `MachineID=` (or its legacy spellings): a full machine ID or its 8-character short form.
    pub machine_id: Option<String>,
    /// `MachineOf=`: exact unit names that must be on the same machine.
    pub peers: Vec<String>,
    /// `MachineMetadata=`: for each key, the set of accepted values (AND across keys, OR within).
    pub metadata: BTreeMap<String, BTreeSet<String>>,
    /// `Conflicts=`: glob patterns of units that must not share the machine.
    pub conflicts: Vec<String>,
    /// `Replaces=`: glob patterns of units this one pushes off its machine.
    pub replaces: Vec<String>,
    /// `Global=`: run on every machine that meets the other requirements.
    pub global: bool,
}

impl Requirements {
    /// Whether a machine with this (merged) metadata satisfies `MachineMetadata=`: for every
    /// required key the machine has the key and its value is one of the accepted values.
    pub fn metadata_matches(&self, machine_metadata: &BTreeMap<String, String>) -> bool {
        self.metadata.iter().all(|(key, accepted)| {
            machine_metadata
                .get(key)
                .is_some_and(|value| accepted.contains(value))
        })
    }

    /// Whether `machine_id` satisfies `MachineID=` (always true when there is none).
    pub fn machine_id_matches(&self, machine_id: &str) -> bool {
        match &self.machine_id {
            None => true,
            Some(want) => want == machine_id || short_machine_id(machine_id) == want,
        }
    }
}

/// The first 8 characters of a machine ID (the whole ID if shorter).
pub fn short_machine_id(machine_id: &str) -> &str {
    machine_id.get(..8).unwrap_or(machine_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_and_across_keys_or_within() {
        let mut req = Requirements::default();
        req.metadata
            .insert("region".into(), ["us".to_string(), "eu".to_string()].into());
        req.metadata
            .insert("disk".into(), ["ssd".to_string()].into());
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(req.metadata_matches(&m(&[("region", "eu"), ("disk", "ssd")])));
        assert!(req.metadata_matches(&m(&[("region", "us"), ("disk", "ssd"), ("x", "y")])));
        assert!(!req.metadata_matches(&m(&[("region", "ap"), ("disk", "ssd")])));
        assert!(!req.metadata_matches(&m(&[("region", "us")])));
        assert!(Requirements::default().metadata_matches(&m(&[])));
    }

    #[test]
    fn machine_id_full_or_short() {
        let req = Requirements {
            machine_id: Some("113f16a7".into()),
            ..Requirements::default()
        };
        assert!(req.machine_id_matches("113f16a7d8c64b0f9c0e1a2b3c4d5e6f"));
        assert!(!req.machine_id_matches("213f16a7d8c64b0f9c0e1a2b3c4d5e6f"));
        let full = Requirements {
            machine_id: Some("113f16a7d8c64b0f9c0e1a2b3c4d5e6f".into()),
            ..Requirements::default()
        };
        assert!(full.machine_id_matches("113f16a7d8c64b0f9c0e1a2b3c4d5e6f"));
        assert!(Requirements::default().machine_id_matches("anything"));
    }
}
