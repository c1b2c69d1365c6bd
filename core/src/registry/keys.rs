//! The key layout. Everything flt keeps in etcd lives under one prefix `P`
//! (default `/_coreos.com/flt/`). The layout starts from fleet's and adds per-machine prefixes so
//! that an agent only ever reads and watches what concerns its own machine:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `P/unit/<sha1>` | unit file record | API (create-only, content-addressed, immutable) |
//! | `P/job/<name>/object` | job record (name + hash) | API |
//! | `P/job/<name>/target-state` | `inactive` / `loaded` / `launched` | API |
//! | `P/job/<name>/target` | machine ID | engine (create-only; compare-and-delete) |
//! | `P/schedule/<machine>/<name>` | schedule record (hash + target state) | engine |
//! | `P/global/<name>` | schedule record of a global unit | engine |
//! | `P/machines/<machine>/object` | machine record, TTL `agent_ttl` | agent |
//! | `P/machines/<machine>/metadata/<key>` | dynamic metadata (`""` = removed) | API |
//! | `P/unit-states/<machine>/` | directory with TTL 2 × `agent_ttl` (readers ignore the states of a machine without presence) | agent |
//! | `P/unit-states/<machine>/<name>` | unit state record (no TTL of its own) | agent |
//! | `P/lease/engine-leader` | lease record, TTL | engine |
//! | `P/engine/version` | `"1"` | engine |

use crate::unit::UnitHash;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/_coreos.com/flt/";

/// Builds and classifies keys under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyspace {
    /// Normalized: starts with `/`, no trailing `/` (empty for the root).
    prefix: String,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new(DEFAULT_PREFIX)
    }
}

/// What a key is, as found in a watch event or a recursive read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    UnitFile {
        hash: String,
    },
    JobDir {
        name: String,
    },
    JobObject {
        name: String,
    },
    JobTargetState {
        name: String,
    },
    JobTarget {
        name: String,
    },
    ScheduleDir {
        machine: String,
    },
    ScheduleEntry {
        machine: String,
        name: String,
    },
    GlobalEntry {
        name: String,
    },
    MachineDir {
        machine: String,
    },
    MachineObject {
        machine: String,
    },
    MachineMetadata {
        machine: String,
        key: String,
    },
    MachineStates {
        machine: String,
    },
    UnitState {
        machine: String,
        name: String,
    },
    EngineLease,
    EngineVersion,
    /// Under the prefix, but not a key flt writes.
    Other,
}

impl Keyspace {
    /// A keyspace under `prefix`. Path-joining semantics: a trailing `/` does not matter and a
    /// missing leading `/` is added.
    pub fn new(prefix: &str) -> Keyspace {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        };
        Keyspace { prefix }
    }

    /// The normalized prefix (no trailing `/`).
    pub fn prefix(&self) -> &str {
        if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        }
    }

    fn join(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push('/');
            key.push_str(part);
        }
        key
    }

    pub fn units_dir(&self) -> String {
        self.join(&["unit"])
    }
    pub fn unit(&self, hash: &UnitHash) -> String {
        self.join(&["unit", &hash.to_hex()])
    }

    pub fn jobs_dir(&self) -> String {
        self.join(&["job"])
    }
    pub fn job_dir(&self, name: &str) -> String {
        self.join(&["job", name])
    }
    pub fn job_object(&self, name: &str) -> String {
        self.join(&["job", name, "object"])
    }
    pub fn job_target_state(&self, name: &str) -> String {
        self.join(&["job", name, "target-state"])
    }
    pub fn job_target(&self, name: &str) -> String {
        self.join(&["job", name, "target"])
    }

    pub fn schedules_dir(&self) -> String {
        self.join(&["schedule"])
    }
    pub fn schedule_dir(&self, machine: &str) -> String {
        self.join(&["schedule", machine])
    }
    pub fn schedule_entry(&self, machine: &str, name: &str) -> String {
        self.join(&["schedule", machine, name])
    }

    pub fn globals_dir(&self) -> String {
        self.join(&["global"])
    }
    pub fn global_entry(&self, name: &str) -> String {
        self.join(&["global", name])
    }

    pub fn machines_dir(&self) -> String {
        self.join(&["machines"])
    }
    pub fn machine_dir(&self, machine: &str) -> String {
        self.join(&["machines", machine])
    }
    pub fn machine_object(&self, machine: &str) -> String {
        self.join(&["machines", machine, "object"])
    }
    pub fn machine_metadata_dir(&self, machine: &str) -> String {
        self.join(&["machines", machine, "metadata"])
    }
    pub fn machine_metadata(&self, machine: &str, key: &str) -> String {
        self.join(&["machines", machine, "metadata", key])
    }

    pub fn unit_states_dir(&self) -> String {
        self.join(&["unit-states"])
    }
    pub fn machine_states_dir(&self, machine: &str) -> String {
        self.join(&["unit-states", machine])
    }
    pub fn unit_state(&self, machine: &str, name: &str) -> String {
        self.join(&["unit-states", machine, name])
    }

    /// The directory of the engine lease (followed by non-leader engines).
    pub fn lease_dir(&self) -> String {
        self.join(&["lease"])
    }
    pub fn engine_lease(&self) -> String {
        self.join(&["lease", "engine-leader"])
    }
    pub fn engine_version(&self) -> String {
        self.join(&["engine", "version"])
    }

    /// Classifies a full key. `None` if it is not under this prefix.
    pub fn classify(&self, key: &str) -> Option<KeyKind> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let rest = rest.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let s = |x: &str| x.to_string();
        Some(match parts.as_slice() {
            ["unit", hash] => KeyKind::UnitFile { hash: s(hash) },
            ["job", name] => KeyKind::JobDir { name: s(name) },
            ["job", name, "object"] => KeyKind::JobObject { name: s(name) },
            ["job", name, "target-state"] => KeyKind::JobTargetState { name: s(name) },
            ["job", name, "target"] => KeyKind::JobTarget { name: s(name) },
            ["schedule", machine] => KeyKind::ScheduleDir {
                machine: s(machine),
            },
            ["schedule", machine, name] => KeyKind::ScheduleEntry {
                machine: s(machine),
                name: s(name),
            },
            ["global", name] => KeyKind::GlobalEntry { name: s(name) },
            ["machines", machine] => KeyKind::MachineDir {
                machine: s(machine),
            },
            ["machines", machine, "object"] => KeyKind::MachineObject {
                machine: s(machine),
            },
            ["machines", machine, "metadata", key] => KeyKind::MachineMetadata {
                machine: s(machine),
                key: s(key),
            },
            ["unit-states", machine] => KeyKind::MachineStates {
                machine: s(machine),
            },
            ["unit-states", machine, name] => KeyKind::UnitState {
                machine: s(machine),
                name: s(name),
            },
            ["lease", "engine-leader"] => KeyKind::EngineLease,
            ["engine", "version"] => KeyKind::EngineVersion,
            _ => KeyKind::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_path_joined() {
        for p in ["/_coreos.com/flt/", "/_coreos.com/flt", "_coreos.com/flt/"] {
            let ks = Keyspace::new(p);
            assert_eq!(
                ks.job_object("hello.service"),
                "/_coreos.com/flt/job/hello.service/object"
            );
        }
        assert_eq!(
            Keyspace::new("/").machine_object("m1"),
            "/machines/m1/object"
        );
        assert_eq!(Keyspace::new("").prefix(), "/");
    }

    #[test]
    fn classify_round_trips_every_builder() {
        let ks = Keyspace::default();
        let cases = [
            (
                ks.unit(&UnitHash([1; 20])),
                KeyKind::UnitFile {
                    hash: "01".repeat(20),
                },
            ),
            (
                ks.job_dir("a.service"),
                KeyKind::JobDir {
                    name: "a.service".into(),
                },
            ),
            (
                ks.job_object("a.service"),
                KeyKind::JobObject {
                    name: "a.service".into(),
                },
            ),
            (
                ks.job_target_state("a.service"),
                KeyKind::JobTargetState {
                    name: "a.service".into(),
                },
            ),
            (
                ks.job_target("a.service"),
                KeyKind::JobTarget {
                    name: "a.service".into(),
                },
            ),
            (
                ks.schedule_dir("m"),
                KeyKind::ScheduleDir {
                    machine: "m".into(),
                },
            ),
            (
                ks.schedule_entry("m", "a.service"),
                KeyKind::ScheduleEntry {
                    machine: "m".into(),
                    name: "a.service".into(),
                },
            ),
            (
                ks.global_entry("g.service"),
                KeyKind::GlobalEntry {
                    name: "g.service".into(),
                },
            ),
            (
                ks.machine_dir("m"),
                KeyKind::MachineDir {
                    machine: "m".into(),
                },
            ),
            (
                ks.machine_object("m"),
                KeyKind::MachineObject {
                    machine: "m".into(),
                },
            ),
            (
                ks.machine_metadata("m", "region"),
                KeyKind::MachineMetadata {
                    machine: "m".into(),
                    key: "region".into(),
                },
            ),
            (
                ks.machine_states_dir("m"),
                KeyKind::MachineStates {
                    machine: "m".into(),
                },
            ),
            (
                ks.unit_state("m", "a.service"),
                KeyKind::UnitState {
                    machine: "m".into(),
                    name: "a.service".into(),
                },
            ),
            (ks.engine_lease(), KeyKind::EngineLease),
            (ks.engine_version(), KeyKind::EngineVersion),
        ];
        for (key, kind) in cases {
            assert_eq!(ks.classify(&key), Some(kind), "{key}");
        }
        assert_eq!(ks.classify("/elsewhere/job/a/object"), None);
        assert_eq!(
            ks.classify("/_coreos.com/flt/job/a/b/c"),
            Some(KeyKind::Other)
        );
        assert_eq!(ks.classify("/_coreos.com/fltx/job/a"), None);
    }
}
