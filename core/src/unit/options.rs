//! fleet's cross-option checks on a unit before it is created (`api.ValidateOptions`): the API
//! answers 400 with the message, fltctl refuses before calling. The first failure wins.

use super::UnitFile;
use super::parse::{ParseError, go_quote};
use super::requirements::Requirements;
use crate::glob::glob_match;
use std::fmt;

/// A unit's `[X-Fleet]` options contradict each other; `Display` gives fleet's exact message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// The serialized unit does not parse again (e.g. a line too long).
    Parse(ParseError),
    PeerMatchesConflict {
        peer: String,
        conflict: String,
    },
    PeerMatchesReplace {
        peer: String,
        replace: String,
    },
    MachineIdWithPeers,
    MachineIdWithConflicts,
    MachineIdWithGlobal,
    MachineIdWithReplaces,
    GlobalWithPeers,
    GlobalWithReplaces,
    ConflictsWithReplaces,
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Parse(e) => write!(f, "{e}"),
            OptionsError::PeerMatchesConflict { peer, conflict } => write!(
                f,
                "unresolvable requirements: peer {} matches conflict {}",
                go_quote(peer),
                go_quote(conflict)
            ),
            OptionsError::PeerMatchesReplace { peer, replace } => write!(
                f,
                "unresolvable requirements: peer {} matches replace {}",
                go_quote(peer),
                go_quote(replace)
            ),
            OptionsError::MachineIdWithPeers => f.write_str("MachineID cannot be used with Peers"),
            OptionsError::MachineIdWithConflicts => {
                f.write_str("MachineID cannot be used with Conflicts")
            }
            OptionsError::MachineIdWithGlobal => {
                f.write_str("MachineID cannot be used with Global")
            }
            OptionsError::MachineIdWithReplaces => {
                f.write_str("MachineID cannot be used with Replaces")
            }
            OptionsError::GlobalWithPeers => f.write_str("Global cannot be used with Peers"),
            OptionsError::GlobalWithReplaces => f.write_str("Global cannot be used with Replaces"),
            OptionsError::ConflictsWithReplaces => {
                f.write_str("Conflicts cannot be used with Replaces")
            }
        }
    }
}

impl std::error::Error for OptionsError {}

impl From<ParseError> for OptionsError {
    fn from(e: ParseError) -> OptionsError {
        OptionsError::Parse(e)
    }
}

/// fleet's `ValidateOptions`. It sees the RAW values (no specifier expansion: fleet attached no
/// unit name), deduplicates peers, conflicts and replaces, and treats a malformed glob as "no
/// match". Where fleet iterated Go maps, this checks in order of first appearance.
pub fn validate_options(unit: &UnitFile) -> Result<(), OptionsError> {
    let unit = UnitFile::parse(&unit.serialize())?;
    let req = Requirements::from_unit(&unit, "");
    let peers = dedup(&req.peers);
    let conflicts = dedup(&req.conflicts);
    let replaces = dedup(&req.replaces);
    for peer in &peers {
        if let Some(conflict) = conflicts.iter().find(|c| matches(c, peer)) {
            return Err(OptionsError::PeerMatchesConflict {
                peer: peer.to_string(),
                conflict: conflict.to_string(),
            });
        }
    }
    for peer in &peers {
        if let Some(replace) = replaces.iter().find(|r| matches(r, peer)) {
            return Err(OptionsError::PeerMatchesReplace {
                peer: peer.to_string(),
                replace: replace.to_string(),
            });
        }
    }
    let has_machine_id = req.machine_id.is_some();
    let (has_peers, has_conflicts, has_replaces) = (
        !peers.is_empty(),
        !conflicts.is_empty(),
        !replaces.is_empty(),
    );
    let checks = [
        (
            has_machine_id && has_peers,
            OptionsError::MachineIdWithPeers,
        ),
        (
            has_machine_id && has_conflicts,
            OptionsError::MachineIdWithConflicts,
        ),
        (
            has_machine_id && req.global,
            OptionsError::MachineIdWithGlobal,
        ),
        (
            has_machine_id && has_replaces,
            OptionsError::MachineIdWithReplaces,
        ),
        (req.global && has_peers, OptionsError::GlobalWithPeers),
        (req.global && has_replaces, OptionsError::GlobalWithReplaces),
        (
            has_conflicts && has_replaces,
            OptionsError::ConflictsWithReplaces,
        ),
    ];
    match checks.into_iter().find(|(failed, _)| *failed) {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    glob_match(pattern, name).unwrap_or(false)
}

fn dedup(values: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for v in values {
        if !out.contains(&v.as_str()) {
            out.push(v);
        }
    }
    out
}
