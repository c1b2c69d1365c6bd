//! The values stored under the keys of [`super::Keyspace`].
//!
//! The records fleet also had keep fleet's exact JSON (Go's capitalised field names, the unit hash
//! as an array of 20 integers), so that the keyspace stays readable by fleet-era tools. The records
//! flt added use camelCase.

use crate::unit::UnitHash;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A unit's desired (or derived current) state in the cluster.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    #[default]
    Inactive,
    Loaded,
    Launched,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Inactive => "inactive",
            TargetState::Loaded => "loaded",
            TargetState::Launched => "launched",
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `inactive`, `loaded`, `launched`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadTargetState(pub String);

impl fmt::Display for BadTargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid target state {:?}: expected inactive, loaded or launched",
            self.0
        )
    }
}

impl std::error::Error for BadTargetState {}

impl FromStr for TargetState {
    type Err = BadTargetState;
    fn from_str(s: &str) -> Result<TargetState, BadTargetState> {
        match s {
            "inactive" => Ok(TargetState::Inactive),
            "loaded" => Ok(TargetState::Loaded),
            "launched" => Ok(TargetState::Launched),
            other => Err(BadTargetState(other.to_string())),
        }
    }
}

/// `P/job/<name>/object` (fleet format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "UnitHash")]
    pub unit_hash: [u8; 20],
}

impl JobRecord {
    pub fn hash(&self) -> UnitHash {
        UnitHash(self.unit_hash)
    }
}

/// `P/unit/<sha1>` (fleet format): the normalized unit text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFileRecord {
    #[serde(rename = "Raw")]
    pub raw: String,
}

/// Machine capabilities advertised in the machine record (fleet format).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(rename = "DISABLE_ENGINE", default)]
    pub disable_engine: bool,
    #[serde(rename = "GRPC", default)]
    pub grpc: bool,
}

/// Go writes a nil map or pointer as `null`: read it as the empty value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `P/machines/<id>/object` (fleet format).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "PublicIP", default)]
    pub public_ip: String,
    #[serde(rename = "Metadata", default, deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    #[serde(rename = "Capabilities", default, deserialize_with = "null_as_default")]
    pub capabilities: Capabilities,
    #[serde(rename = "Version", default)]
    pub version: String,
}

/// The machine reference inside a unit state record (fleet format; only `ID` is meaningful).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRef {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "PublicIP", default)]
    pub public_ip: String,
    #[serde(rename = "Metadata", default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "Capabilities", default)]
    pub capabilities: Option<Capabilities>,
    #[serde(rename = "Version", default)]
    pub version: String,
}

/// `P/unit-states/<machine>/<name>` (fleet's unit state JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStateRecord {
    #[serde(rename = "loadState")]
    pub load_state: String,
    #[serde(rename = "activeState")]
    pub active_state: String,
    #[serde(rename = "subState")]
    pub sub_state: String,
    #[serde(rename = "machineState")]
    pub machine_state: MachineRef,
    #[serde(rename = "unitHash")]
    pub unit_hash: String,
}

/// `P/lease/engine-leader` (fleet format). A value that is not JSON is a bare machine ID at
/// version 0 (fleet's legacy form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    #[serde(rename = "MachineID")]
    pub machine_id: String,
    #[serde(rename = "Version")]
    pub version: u32,
}

/// `P/schedule/<machine>/<name>` and `P/global/<name>`: what one agent must do with one unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The 40-hex hash of the unit file at `P/unit/<hash>`.
    #[serde(rename = "unitHash")]
    pub unit_hash: String,
    #[serde(rename = "targetState")]
    pub target_state: TargetState,
}
