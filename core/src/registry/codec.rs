//! Encoding and decoding of the values stored under [`super::Keyspace`] keys.
//!
//! Every value flt stores implements [`Record`]: `encode()` gives the exact text to store and
//! `decode(key, value)` parses what was read, failing with a [`DecodeError`] that names the key,
//! the kind of record and the problem. Decoding is lenient where fleet was (unknown JSON fields are
//! ignored, `null` maps read as empty, a lease that is not JSON is fleet's legacy bare machine ID)
//! and strict where a wrong value would mislead the scheduler (unit hashes, target states, machine
//! IDs).

use super::records::{
    JobRecord, LeaseRecord, MachineRecord, ScheduleRecord, TargetState, UnitFileRecord,
    UnitStateRecord,
};
use crate::unit::UnitHash;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

/// A stored value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The key the value was read from.
    pub key: String,
    /// What the value was expected to be, e.g. `job record`.
    pub record: &'static str,
    /// What is wrong with it.
    pub kind: DecodeErrorKind,
}

/// What is wrong with a stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not valid JSON for this record; serde's explanation.
    Json(String),
    /// The value (or a field of it) must not be empty.
    Empty { field: &'static str },
    /// A unit hash that is not 40 hex digits.
    BadHash(String),
    /// Not `inactive`, `loaded` or `launched`.
    BadTargetState(String),
    /// Not a non-negative decimal integer.
    BadNumber(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad {} at {}: ", self.record, self.key)?;
        match &self.kind {
            DecodeErrorKind::Json(why) => write!(f, "invalid JSON: {why}"),
            DecodeErrorKind::Empty { field } => write!(f, "{field} is empty"),
            DecodeErrorKind::BadHash(h) => write!(f, "unit hash {h:?} is not 40 hex digits"),
            DecodeErrorKind::BadTargetState(s) => write!(
                f,
                "target state {s:?} is not one of inactive, loaded, launched"
            ),
            DecodeErrorKind::BadNumber(s) => write!(f, "{s:?} is not a non-negative integer"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A value stored in the registry.
pub trait Record: Sized {
    /// Names the record in errors.
    const NAME: &'static str;
    /// The exact text to store.
    fn encode(&self) -> String;
    /// Parses the text read from `key`.
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError>;
}

fn error(key: &str, record: &'static str, kind: DecodeErrorKind) -> DecodeError {
    DecodeError {
        key: key.to_string(),
        record,
        kind,
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Only structs of strings, integers, bools and string-keyed maps reach here: infallible.
    serde_json::to_string(value).expect("registry records always serialize")
}

fn from_json<T: DeserializeOwned>(
    key: &str,
    record: &'static str,
    value: &str,
) -> Result<T, DecodeError> {
    serde_json::from_str(value)
        .map_err(|e| error(key, record, DecodeErrorKind::Json(e.to_string())))
}

fn check_hash(key: &str, record: &'static str, hex: &str) -> Result<(), DecodeError> {
    match UnitHash::from_hex(hex) {
        Some(_) => Ok(()),
        None => Err(error(
            key,
            record,
            DecodeErrorKind::BadHash(hex.to_string()),
        )),
    }
}

impl Record for JobRecord {
    const NAME: &'static str = "job record";
    fn encode(&self) -> String {
        to_json(self)
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        let job: JobRecord = from_json(key, Self::NAME, value)?;
        if job.name.is_empty() {
            return Err(error(
                key,
                Self::NAME,
                DecodeErrorKind::Empty { field: "Name" },
            ));
        }
        Ok(job)
    }
}

impl Record for UnitFileRecord {
    const NAME: &'static str = "unit file record";
    fn encode(&self) -> String {
        to_json(self)
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        from_json(key, Self::NAME, value)
    }
}

impl Record for MachineRecord {
    const NAME: &'static str = "machine record";
    fn encode(&self) -> String {
        to_json(self)
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        let machine: MachineRecord = from_json(key, Self::NAME, value)?;
        if machine.id.is_empty() {
            return Err(error(
                key,
                Self::NAME,
                DecodeErrorKind::Empty { field: "ID" },
            ));
        }
        Ok(machine)
    }
}

impl Record for UnitStateRecord {
    const NAME: &'static str = "unit state record";
    fn encode(&self) -> String {
        to_json(self)
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        from_json(key, Self::NAME, value)
    }
}

impl Record for ScheduleRecord {
    const NAME: &'static str = "schedule record";
    fn encode(&self) -> String {
        to_json(self)
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        let raw: serde_json::Value = from_json(key, Self::NAME, value)?;
        // Check the parts by hand first, so that a bad state or hash is named as such.
        if let Some(state) = raw.get("targetState").and_then(|s| s.as_str())
            && state.parse::<TargetState>().is_err()
        {
            return Err(error(
                key,
                Self::NAME,
                DecodeErrorKind::BadTargetState(state.to_string()),
            ));
        }
        let record: ScheduleRecord = from_json(key, Self::NAME, value)?;
        check_hash(key, Self::NAME, &record.unit_hash)?;
        Ok(record)
    }
}

impl Record for LeaseRecord {
    const NAME: &'static str = "engine lease";
    fn encode(&self) -> String {
        to_json(self)
    }
    /// fleet's legacy lease value is the bare machine ID, read as version 0.
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        if value.trim_start().starts_with('{') {
            let lease: LeaseRecord = from_json(key, Self::NAME, value)?;
            if lease.machine_id.is_empty() {
                return Err(error(
                    key,
                    Self::NAME,
                    DecodeErrorKind::Empty { field: "MachineID" },
                ));
            }
            return Ok(lease);
        }
        if value.is_empty() {
            return Err(error(
                key,
                Self::NAME,
                DecodeErrorKind::Empty { field: "MachineID" },
            ));
        }
        Ok(LeaseRecord {
            machine_id: value.to_string(),
            version: 0,
        })
    }
}

impl Record for TargetState {
    const NAME: &'static str = "target state";
    fn encode(&self) -> String {
        self.as_str().to_string()
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        value.parse().map_err(|_| {
            error(
                key,
                Self::NAME,
                DecodeErrorKind::BadTargetState(value.to_string()),
            )
        })
    }
}

/// `P/job/<name>/target`: the ID of the machine a unit is scheduled to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MachineId(pub String);

impl Record for MachineId {
    const NAME: &'static str = "machine ID";
    fn encode(&self) -> String {
        self.0.clone()
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        if value.is_empty() {
            return Err(error(
                key,
                Self::NAME,
                DecodeErrorKind::Empty { field: "value" },
            ));
        }
        Ok(MachineId(value.to_string()))
    }
}

/// `P/engine/version`: the cluster's engine version, a decimal integer stored as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EngineVersion(pub u32);

impl Record for EngineVersion {
    const NAME: &'static str = "engine version";
    fn encode(&self) -> String {
        self.0.to_string()
    }
    fn decode(key: &str, value: &str) -> Result<Self, DecodeError> {
        // Only plain ASCII digits: u32::from_str would also take a leading `+`.
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(
                key,
                Self::NAME,
                DecodeErrorKind::BadNumber(value.to_string()),
            ));
        }
        value.parse().map(EngineVersion).map_err(|_| {
            error(
                key,
                Self::NAME,
                DecodeErrorKind::BadNumber(value.to_string()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::records::{Capabilities, MachineRef};
    use std::collections::BTreeMap;

    const KEY: &str = "/_coreos.com/flt/some/key";

    fn hello_hash() -> [u8; 20] {
        [
            55, 80, 179, 233, 243, 150, 42, 86, 199, 88, 41, 41, 66, 110, 154, 187, 1, 39, 84, 207,
        ]
    }

    #[test]
    fn job_record_is_fleets_json_with_hash_as_20_ints() {
        let job = JobRecord {
            name: "hello.service".into(),
            unit_hash: hello_hash(),
        };
        let text = r#"{"Name":"hello.service","UnitHash":[55,80,179,233,243,150,42,86,199,88,41,41,66,110,154,187,1,39,84,207]}"#;
        assert_eq!(job.encode(), text);
        assert_eq!(JobRecord::decode(KEY, text).unwrap(), job);
        assert_eq!(
            job.hash().to_hex(),
            "3750b3e9f3962a56c7582929426e9abb012754cf"
        );
    }

    #[test]
    fn decode_failures_name_key_record_and_problem() {
        let cases: Vec<(Result<(), DecodeError>, &str)> = vec![
            (
                JobRecord::decode(KEY, r#"{"Name":"a","UnitHash":[1,2]}"#).map(drop),
                "bad job record at /_coreos.com/flt/some/key: invalid JSON",
            ),
            (
                JobRecord::decode(KEY, r#"{"Name":"a","UnitHash":"3750b3e9"}"#).map(drop),
                "bad job record at /_coreos.com/flt/some/key: invalid JSON",
            ),
            (
                JobRecord::decode(KEY, &format!(r#"{{"Name":"","UnitHash":{:?}}}"#, [0u8; 20]))
                    .map(drop),
                "bad job record at /_coreos.com/flt/some/key: Name is empty",
            ),
            (
                JobRecord::decode(KEY, "not json").map(drop),
                "bad job record at /_coreos.com/flt/some/key: invalid JSON",
            ),
            (
                TargetState::decode(KEY, "started").map(drop),
                r#"bad target state at /_coreos.com/flt/some/key: target state "started" is not"#,
            ),
            (
                ScheduleRecord::decode(KEY, r#"{"unitHash":"abc","targetState":"loaded"}"#)
                    .map(drop),
                r#"bad schedule record at /_coreos.com/flt/some/key: unit hash "abc" is not 40 hex digits"#,
            ),
            (
                ScheduleRecord::decode(
                    KEY,
                    &format!(r#"{{"unitHash":"{}","targetState":"on"}}"#, "a".repeat(40)),
                )
                .map(drop),
                r#"bad schedule record at /_coreos.com/flt/some/key: target state "on""#,
            ),
            (
                MachineRecord::decode(KEY, r#"{"ID":""}"#).map(drop),
                "bad machine record at /_coreos.com/flt/some/key: ID is empty",
            ),
            (
                LeaseRecord::decode(KEY, "").map(drop),
                "bad engine lease at /_coreos.com/flt/some/key: MachineID is empty",
            ),
            (
                LeaseRecord::decode(KEY, r#"{"MachineID":"m1","Version":"x"}"#).map(drop),
                "bad engine lease at /_coreos.com/flt/some/key: invalid JSON",
            ),
            (
                MachineId::decode(KEY, "").map(drop),
                "bad machine ID at /_coreos.com/flt/some/key: value is empty",
            ),
            (
                EngineVersion::decode(KEY, "+1").map(drop),
                r#"bad engine version at /_coreos.com/flt/some/key: "+1" is not"#,
            ),
            (
                EngineVersion::decode(KEY, "99999999999").map(drop),
                r#"bad engine version at /_coreos.com/flt/some/key: "99999999999" is not"#,
            ),
        ];
        for (result, expected) in cases {
            let err = result.expect_err(expected);
            let text = err.to_string();
            assert!(
                text.starts_with(expected),
                "{text:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn unit_file_record() {
        let unit = UnitFileRecord {
            raw: "[Service]\nExecStart=/bin/sleep 100\n".into(),
        };
        let text = r#"{"Raw":"[Service]\nExecStart=/bin/sleep 100\n"}"#;
        assert_eq!(unit.encode(), text);
        assert_eq!(UnitFileRecord::decode(KEY, text).unwrap(), unit);
    }

    #[test]
    fn machine_record_matches_fleet_and_reads_null_maps() {
        let machine = MachineRecord {
            id: "m1".into(),
            public_ip: "10.0.0.1".into(),
            metadata: BTreeMap::from([("z".into(), "1".into()), ("a".into(), "2".into())]),
            capabilities: Capabilities::default(),
            version: "v1.0.0".into(),
        };
        let text = r#"{"ID":"m1","PublicIP":"10.0.0.1","Metadata":{"a":"2","z":"1"},"Capabilities":{"DISABLE_ENGINE":false,"GRPC":false},"Version":"v1.0.0"}"#;
        assert_eq!(machine.encode(), text);
        assert_eq!(MachineRecord::decode(KEY, text).unwrap(), machine);

        // Go writes nil maps and structs as null, and old agents omitted fields.
        let sparse = MachineRecord::decode(
            KEY,
            r#"{"ID":"m2","PublicIP":"","Metadata":null,"Capabilities":null,"Extra":1}"#,
        )
        .unwrap();
        assert_eq!(sparse.id, "m2");
        assert!(sparse.metadata.is_empty());
        assert_eq!(sparse.capabilities, Capabilities::default());
    }

    #[test]
    fn unit_state_record_matches_fleet() {
        let text = r#"{"loadState":"loaded","activeState":"active","subState":"running","machineState":{"ID":"m1","PublicIP":"","Metadata":null,"Capabilities":null,"Version":""},"unitHash":"3750b3e9f3962a56c7582929426e9abb012754cf"}"#;
        let state = UnitStateRecord {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            machine_state: MachineRef {
                id: "m1".into(),
                ..MachineRef::default()
            },
            unit_hash: "3750b3e9f3962a56c7582929426e9abb012754cf".into(),
        };
        assert_eq!(state.encode(), text);
        assert_eq!(UnitStateRecord::decode(KEY, text).unwrap(), state);
    }

    #[test]
    fn lease_json_and_legacy_bare_machine_id() {
        let lease = LeaseRecord {
            machine_id: "m1".into(),
            version: 1,
        };
        assert_eq!(lease.encode(), r#"{"MachineID":"m1","Version":1}"#);
        assert_eq!(
            LeaseRecord::decode(KEY, r#"{"MachineID":"m1","Version":1}"#).unwrap(),
            lease
        );
        assert_eq!(
            LeaseRecord::decode(KEY, "0123456789abcdef").unwrap(),
            LeaseRecord {
                machine_id: "0123456789abcdef".into(),
                version: 0
            }
        );
    }

    #[test]
    fn schedule_record_round_trips() {
        let record = ScheduleRecord {
            unit_hash: "3750b3e9f3962a56c7582929426e9abb012754cf".into(),
            target_state: TargetState::Launched,
        };
        let text =
            r#"{"unitHash":"3750b3e9f3962a56c7582929426e9abb012754cf","targetState":"launched"}"#;
        assert_eq!(record.encode(), text);
        assert_eq!(ScheduleRecord::decode(KEY, text).unwrap(), record);
    }

    #[test]
    fn plain_text_values() {
        for state in [
            TargetState::Inactive,
            TargetState::Loaded,
            TargetState::Launched,
        ] {
            assert_eq!(TargetState::decode(KEY, &state.encode()).unwrap(), state);
        }
        assert_eq!(TargetState::Launched.encode(), "launched");
        assert_eq!(EngineVersion(1).encode(), "1");
        assert_eq!(EngineVersion::decode(KEY, "1").unwrap(), EngineVersion(1));
        assert_eq!(
            MachineId::decode(KEY, "m1").unwrap(),
            MachineId("m1".into())
        );
    }
}
