//! The agent's side of the conversation with systemd: what it asks the driver to do
//! ([`SystemdRequest`], tagged with an [`OpId`]), how the driver answers ([`SystemdReply`]), what the
//! driver reports unasked ([`UnitObserved`], from D-Bus signals or polling) and what it finds at
//! startup ([`InventoryUnit`]).
//!
//! The driver follows (reports [`UnitObserved`] for) every unit it has in `units_directory`: the
//! ones of the startup inventory, plus every [`SystemdRequest::LoadUnit`], minus every successful
//! [`SystemdRequest::UnloadUnit`].

use crate::registry::OpId;
use std::fmt;

/// Work for systemd. Every request is answered by exactly one [`SystemdReply`] with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemdRequest {
    /// Write `text` (already normalized) to `<units_directory>/<name>` (mode 0644), then
    /// `LinkUnitFiles([path], runtime, force)`, then, if `enable`, `EnableUnitFiles([path],
    /// runtime, force)`; if enabling fails, remove the unit again and fail. The driver validates
    /// `name`. Idempotent: loading the same text twice is harmless.
    LoadUnit {
        name: String,
        text: String,
        enable: bool,
    },
    /// `StopUnit(name, "replace")`; only if that succeeded (a unit systemd does not know counts as
    /// stopped), `DisableUnitFiles([name], runtime)`, `ResetFailedUnit(name)` and delete the file.
    /// If the stop fails the file is kept, so the unit can still be stopped later.
    UnloadUnit { name: String },
    /// `StartUnit(name, "replace")`, without waiting for the job to finish.
    StartUnit { name: String },
    /// `StopUnit(name, "replace")`, without waiting for the job to finish.
    StopUnit { name: String },
    /// `Reload()` (daemon-reload).
    Reload,
    /// The current states of these units (`ListUnitsByNames`), answered with
    /// [`SystemdOutcome::Units`]; units systemd does not know come back as `not-found`.
    ListUnits { names: Vec<String> },
}

impl SystemdRequest {
    /// The unit the request is about, if any.
    pub fn unit(&self) -> Option<&str> {
        match self {
            SystemdRequest::LoadUnit { name, .. }
            | SystemdRequest::UnloadUnit { name }
            | SystemdRequest::StartUnit { name }
            | SystemdRequest::StopUnit { name } => Some(name),
            SystemdRequest::Reload | SystemdRequest::ListUnits { .. } => None,
        }
    }
}

/// What systemd says about one unit (the three properties fleet reported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitObserved {
    pub name: String,
    /// `LoadState`: `loaded`, `not-found`, `error`, `masked`…
    pub load: String,
    /// `ActiveState`: `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active: String,
    /// `SubState`: `running`, `dead`, `exited`…
    pub sub: String,
}

impl UnitObserved {
    pub fn new(name: &str, load: &str, active: &str, sub: &str) -> UnitObserved {
        UnitObserved {
            name: name.to_string(),
            load: load.to_string(),
            active: active.to_string(),
            sub: sub.to_string(),
        }
    }
}

/// The successful outcome of a [`SystemdRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemdOutcome {
    /// The call succeeded.
    Done,
    /// A [`SystemdRequest::LoadUnit`] succeeded. `reload_needed`: systemd must `Reload()` before
    /// starting the unit sees the new file (it had the unit loaded with other content); false
    /// for a unit systemd did not have loaded, which `StartUnit` loads from disk (since systemd
    /// 246). A plain [`SystemdOutcome::Done`] for a load counts as `reload_needed`.
    Loaded { reload_needed: bool },
    /// The answer to [`SystemdRequest::ListUnits`].
    Units(Vec<UnitObserved>),
}

/// Why a [`SystemdRequest`] did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemdFailure {
    /// systemd (or the driver) refused, in its own words.
    Failed(String),
    /// No answer within the agent's systemd timeout (raised inside the core).
    Timeout,
}

impl fmt::Display for SystemdFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemdFailure::Failed(why) => f.write_str(why),
            SystemdFailure::Timeout => f.write_str("systemd request timed out"),
        }
    }
}

impl std::error::Error for SystemdFailure {}

/// The answer to the [`SystemdRequest`] with the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdReply {
    pub id: OpId,
    pub result: Result<SystemdOutcome, SystemdFailure>,
}

/// The unit types the agent manages (fleet's list); other files in `units_directory` are not
/// units of the agent's.
pub const UNIT_SUFFIXES: [&str; 7] = [
    "service",
    "socket",
    "timer",
    "path",
    "device",
    "mount",
    "automount",
];

/// Whether `name` ends in one of [`UNIT_SUFFIXES`].
pub fn has_unit_suffix(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(stem, suffix)| !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix))
}

/// One unit file found in `units_directory` at startup (only the suffixes fleet accepted:
/// `service socket timer path device mount automount`), with what systemd says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryUnit {
    pub name: String,
    /// The file's content, as read.
    pub text: String,
    /// systemd's view of the unit, if the driver could get it.
    pub observed: Option<UnitObserved>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_suffixes_are_fleets_list() {
        for name in [
            "a.service",
            "b@1.socket",
            "c.timer",
            "d.path",
            "e.device",
            "f.mount",
        ] {
            assert!(has_unit_suffix(name), "{name}");
        }
        assert!(has_unit_suffix("g.automount"));
        for name in [
            "a.target",
            "a.slice",
            "notes.txt",
            "service",
            ".service",
            "a.service~",
        ] {
            assert!(!has_unit_suffix(name), "{name}");
        }
    }
}
