//! What a unit's `[X-Fleet]` section asks of the machine it runs on.
//!
//! [`Requirements::from_unit`] reads fleet's option spellings from the `[X-Fleet]` section only
//! (exact, case-sensitive name), after fleet's multi-value split (`"a=1" "b=2"`), and expands the
//! specifiers `%n %N %p %i` for the unit's name. Unknown keys are not errors here:
//! [`unknown_requirements`] gives fltctl's warnings for them.

use super::UnitFile;
use super::name::UnitNameInfo;
use std::collections::{BTreeMap, BTreeSet};

/// The section fleet reads its options from.
pub const X_FLEET: &str = "X-Fleet";

/// Every `[X-Fleet]` key fleet understands, legacy spellings included.
pub const KNOWN_REQUIREMENTS: [&str; 11] = [
    "MachineID",
    "X-ConditionMachineID",
    "X-ConditionMachineBootID",
    "X-ConditionMachineOf",
    "MachineOf",
    "X-Conflicts",
    "Conflicts",
    "X-ConditionMachineMetadata",
    "MachineMetadata",
    "Global",
    "Replaces",
];

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
    /// The requirements of `unit` when it runs under `name`. Specifiers are expanded only if
    /// `name` has a `.` (fleet's `UnitNameInfo` needs one); pass `""` for the raw values.
    ///
    /// - `MachineID`, then `X-ConditionMachineID`, then `X-ConditionMachineBootID`: the first
    ///   value of the first spelling present;
    /// - `X-ConditionMachineOf` then `MachineOf`: every value, whole;
    /// - `X-ConditionMachineMetadata` then `MachineMetadata`: each `k=v` with exactly one `=` and
    ///   both sides non-empty (anything else is ignored);
    /// - `X-Conflicts` then `Conflicts`: every value split on whitespace;
    /// - `Replaces`: every value, whole;
    /// - `Global`: the last value, true iff its lowercase form is `true yes 1 on t`.
    pub fn from_unit(unit: &UnitFile, name: &str) -> Requirements {
        let info = UnitNameInfo::parse(name);
        let values = |key: &str| -> Vec<String> {
            let raw = unit.fleet_values(X_FLEET, key);
            match &info {
                Some(info) => raw.iter().map(|v| info.expand_specifiers(v)).collect(),
                None => raw,
            }
        };
        let all = |keys: &[&str]| -> Vec<String> { keys.iter().flat_map(|k| values(k)).collect() };

        let machine_id = [
            "MachineID",
            "X-ConditionMachineID",
            "X-ConditionMachineBootID",
        ]
        .iter()
        .find_map(|k| values(k).into_iter().next());
        let mut metadata: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for pair in all(&["X-ConditionMachineMetadata", "MachineMetadata"]) {
            let mut parts = pair.split('=');
            if let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next())
                && !key.is_empty()
                && !value.is_empty()
            {
                metadata
                    .entry(key.to_string())
                    .or_default()
                    .insert(value.to_string());
            }
        }
        let conflicts = all(&["X-Conflicts", "Conflicts"])
            .iter()
            .flat_map(|v| v.split_whitespace().map(str::to_string))
            .collect();
        let global = values("Global").last().is_some_and(|v| is_truthy(v));
        Requirements {
            machine_id,
            peers: all(&["X-ConditionMachineOf", "MachineOf"]),
            metadata,
            conflicts,
            replaces: values("Replaces"),
            global,
        }
    }

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

/// fleet's `isTruthyValue`.
fn is_truthy(value: &str) -> bool {
    matches!(
        value.to_lowercase().as_str(),
        "true" | "yes" | "1" | "on" | "t"
    )
}

/// fltctl's warnings for `[X-Fleet]` keys fleet does not know, one per key in order of first
/// appearance: `unrecognized requirement in [X-Fleet] section: "<key>"`. The API accepts such
/// units; only the client warns.
pub fn unknown_requirements(unit: &UnitFile) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    for option in unit.options() {
        let key = option.name.as_str();
        if option.section == X_FLEET && !KNOWN_REQUIREMENTS.contains(&key) && !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen.into_iter()
        .map(|key| {
            format!(
                "unrecognized requirement in [X-Fleet] section: {}",
                crate::goquote::quote(key)
            )
        })
        .collect()
}

/// The first 8 characters of a machine ID (the whole ID if shorter).
pub fn short_machine_id(machine_id: &str) -> &str {
    machine_id.get(..8).unwrap_or(machine_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(text: &str) -> UnitFile {
        UnitFile::parse(text).unwrap()
    }

    fn reqs(text: &str, name: &str) -> Requirements {
        Requirements::from_unit(&unit(text), name)
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_x_fleet_section_means_no_requirements() {
        assert_eq!(
            reqs("[Service]\nExecStart=/bin/true\n", "a.service"),
            Requirements::default()
        );
        // The section name is exact and case-sensitive; other sections are never read.
        let text = "[x-fleet]\nGlobal=true\n[Unit]\nMachineOf=b.service\n[X-Fleet ]\nGlobal=1\n";
        assert_eq!(reqs(text, "a.service"), Requirements::default());
    }

    #[test]
    fn machine_id_spellings_in_precedence_order() {
        let text = "[X-Fleet]\nX-ConditionMachineBootID=boot\nX-ConditionMachineID=cond1\n\
                    X-ConditionMachineID=cond2\nMachineID=\"m1\" \"m2\"\n";
        assert_eq!(reqs(text, "a.service").machine_id.as_deref(), Some("m1"));
        let text = "[X-Fleet]\nX-ConditionMachineBootID=boot\nX-ConditionMachineID=cond1\n";
        assert_eq!(reqs(text, "a.service").machine_id.as_deref(), Some("cond1"));
        let text = "[X-Fleet]\nX-ConditionMachineBootID=boot\nX-ConditionMachineBootID=b2\n";
        assert_eq!(reqs(text, "a.service").machine_id.as_deref(), Some("boot"));
        // Un-prefixed MachineBootID is not a spelling fleet knows.
        assert_eq!(
            reqs("[X-Fleet]\nMachineBootID=x\n", "a.service").machine_id,
            None
        );
        // An empty value still pins (to a machine that cannot exist), as in fleet.
        assert_eq!(
            reqs("[X-Fleet]\nMachineID=\n", "a.service")
                .machine_id
                .as_deref(),
            Some("")
        );
    }

    #[test]
    fn peers_legacy_first_and_never_split_on_whitespace() {
        let text = "[X-Fleet]\nMachineOf=b.service c.service\nX-ConditionMachineOf=a.service\n\
                    MachineOf=\"d.service\" \"e.service\"\nX-MachineOf=z.service\n";
        assert_eq!(
            reqs(text, "x.service").peers,
            strings(&["a.service", "b.service c.service", "d.service", "e.service"])
        );
    }

    #[test]
    fn metadata_pairs_need_exactly_one_equals_and_both_sides() {
        let text = "[X-Fleet]\nMachineMetadata=region=us\nMachineMetadata=\"disk=ssd\" \"region=eu\"\n\
                    MachineMetadata=bare\nMachineMetadata=a=b=c\nMachineMetadata==v\n\
                    MachineMetadata=k=\nX-ConditionMachineMetadata=disk=hdd\n\
                    MachineMetadata=region = us\n";
        let got = reqs(text, "x.service").metadata;
        let want: BTreeMap<String, BTreeSet<String>> = [
            ("disk".to_string(), ["hdd", "ssd"].map(String::from).into()),
            ("region".to_string(), ["eu", "us"].map(String::from).into()),
            ("region ".to_string(), [" us".to_string()].into()),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn conflicts_split_on_whitespace_replaces_do_not() {
        let text = "[X-Fleet]\nConflicts=a.service  b*.service\tc.service\nX-Conflicts=x.service\n\
                    Conflicts=\"d.service e.service\" \"f.service\"\n\
                    Replaces=r1.service r2.service\nReplaces=\"r3.service\" \"r4.service\"\n";
        let req = reqs(text, "z.service");
        assert_eq!(
            req.conflicts,
            strings(&[
                "x.service",
                "a.service",
                "b*.service",
                "c.service",
                "d.service",
                "e.service",
                "f.service"
            ])
        );
        assert_eq!(
            req.replaces,
            strings(&["r1.service r2.service", "r3.service", "r4.service"])
        );
        // An empty Conflicts= gives no pattern at all.
        assert!(
            reqs("[X-Fleet]\nConflicts=\n", "z.service")
                .conflicts
                .is_empty()
        );
    }

    #[test]
    fn global_last_value_truthy_lowercase() {
        for (value, want) in [
            ("true", true),
            ("TRUE", true),
            ("Yes", true),
            ("1", true),
            ("on", true),
            ("T", true),
            ("false", false),
            ("y", false),
            ("0", false),
            ("", false),
            ("enabled", false),
        ] {
            let text = format!("[X-Fleet]\nGlobal={value}\n");
            assert_eq!(reqs(&text, "g.service").global, want, "{value:?}");
        }
        assert!(!reqs("[X-Fleet]\nGlobal=true\nGlobal=false\n", "g.service").global);
        assert!(reqs("[X-Fleet]\nGlobal=no\nGlobal=on\n", "g.service").global);
        assert!(!reqs("[X-Fleet]\nGlobal=\"true\" \"no\"\n", "g.service").global);
        assert!(!reqs("[X-Fleet]\nX-Global=true\n", "g.service").global);
    }

    #[test]
    fn specifiers_expanded_for_the_name_in_every_option() {
        let text = "[X-Fleet]\nMachineOf=%p.socket\nMachineOf=%n-%N-%i\nMachineID=%i\n\
                    MachineMetadata=role=%p\nConflicts=%p@*.service other-%i\nReplaces=%N.old\n\
                    Global=%i\n";
        let req = reqs(text, "web@1.service");
        assert_eq!(req.peers, strings(&["web.socket", "web@1.service-web@1-1"]));
        assert_eq!(req.machine_id.as_deref(), Some("1"));
        assert_eq!(
            req.metadata,
            [("role".to_string(), ["web".to_string()].into())].into()
        );
        assert_eq!(req.conflicts, strings(&["web@*.service", "other-1"]));
        assert_eq!(req.replaces, strings(&["web@1.old"]));
        assert!(req.global, "%i expanded to 1 before the truthy check");
        assert_eq!(
            reqs("[X-Fleet]\nMachineOf=%p.socket\n", "foo.service").peers,
            strings(&["foo.socket"])
        );
        // Other specifiers stay, and without a `.` in the name nothing is expanded.
        assert_eq!(
            reqs("[X-Fleet]\nMachineOf=%H-%m-%%p\n", "foo.service").peers,
            strings(&["%H-%m-%foo"])
        );
        assert_eq!(
            reqs("[X-Fleet]\nMachineOf=%p.socket\n", "").peers,
            strings(&["%p.socket"])
        );
        assert_eq!(
            reqs("[X-Fleet]\nMachineOf=%p.socket\n", "nodot").peers,
            strings(&["%p.socket"])
        );
    }

    #[test]
    fn unknown_requirements_warn_once_per_key_in_order() {
        let text = "[X-Fleet]\nMachineBootID=x\nGlobal=true\nX-MachineOf=a\nMachineBootID=y\n\
                    machineof=b\n[Service]\nBogus=1\n";
        assert_eq!(
            unknown_requirements(&unit(text)),
            strings(&[
                "unrecognized requirement in [X-Fleet] section: \"MachineBootID\"",
                "unrecognized requirement in [X-Fleet] section: \"X-MachineOf\"",
                "unrecognized requirement in [X-Fleet] section: \"machineof\"",
            ])
        );
        let all_known: String = KNOWN_REQUIREMENTS
            .iter()
            .map(|k| format!("{k}=v\n"))
            .collect();
        assert!(unknown_requirements(&unit(&format!("[X-Fleet]\n{all_known}"))).is_empty());
    }

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
