//! fleet's cross-option checks on a unit before it is created (`api.ValidateOptions`): the API
//! answers 400 with the message, fltctl refuses before calling. The first failure wins.

use super::UnitFile;
use super::parse::ParseError;
use super::requirements::Requirements;
use crate::glob::glob_match;
use crate::goquote::quote as go_quote;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::{ParseErrorKind, UnitOption};

    fn check(x_fleet: &str) -> Result<(), String> {
        let unit = UnitFile::parse(&format!(
            "[Service]\nExecStart=/bin/true\n[X-Fleet]\n{x_fleet}"
        ))
        .unwrap();
        validate_options(&unit).map_err(|e| e.to_string())
    }

    fn fails(x_fleet: &str) -> String {
        check(x_fleet).unwrap_err()
    }

    #[test]
    fn valid_combinations_pass() {
        for ok in [
            "",
            "MachineID=abc\nMachineMetadata=a=b\n",
            "MachineOf=a.service\nConflicts=b.service\n",
            "MachineOf=a.service\nReplaces=b.service\n",
            "Global=true\nConflicts=b.service\nMachineMetadata=a=b\n",
            "Global=false\nMachineID=abc\n",
            "Global=no\nMachineOf=a.service\n",
            "Bogus=1\n",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn reparse_failure_comes_first() {
        let long = UnitFile::from_options(vec![
            UnitOption::new("X-Fleet", "MachineID", "m"),
            UnitOption::new("X-Fleet", "MachineOf", "p.service"),
            UnitOption::new("Service", "ExecStart", "x".repeat(3000)),
        ]);
        assert_eq!(
            validate_options(&long).unwrap_err().to_string(),
            // Line 6 of the serialized text: [X-Fleet], 2 options, blank, [Service], ExecStart.
            "line 6: line too long (max 2048 bytes)"
        );
        let bad_name = UnitFile::from_options(vec![UnitOption::new("Unit", "A\nB", "x")]);
        match validate_options(&bad_name) {
            Err(OptionsError::Parse(e)) => assert_eq!(e.kind, ParseErrorKind::NewlineInOptionName),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn peer_matching_a_conflict() {
        assert_eq!(
            fails("MachineOf=db.service\nConflicts=web.service db*\nMachineID=m\n"),
            "unresolvable requirements: peer \"db.service\" matches conflict \"db*\""
        );
        // Legacy spellings count too.
        assert_eq!(
            fails("X-ConditionMachineOf=a.service\nX-Conflicts=a.service\n"),
            "unresolvable requirements: peer \"a.service\" matches conflict \"a.service\""
        );
    }

    #[test]
    fn peer_matching_a_replace() {
        assert_eq!(
            fails("MachineOf=old.service\nReplaces=old.*\nMachineID=m\n"),
            "unresolvable requirements: peer \"old.service\" matches replace \"old.*\""
        );
        // Conflicts are checked for every peer before Replaces.
        assert_eq!(
            fails("MachineOf=a.service\nMachineOf=b.service\nReplaces=a.service\nConflicts=b.*\n"),
            "unresolvable requirements: peer \"b.service\" matches conflict \"b.*\""
        );
    }

    #[test]
    fn exclusive_options_in_order() {
        let cases = [
            (
                "MachineID=m\nMachineOf=a.service\nConflicts=b\nGlobal=true\nReplaces=c\n",
                "MachineID cannot be used with Peers",
            ),
            (
                "MachineID=m\nConflicts=b\nGlobal=true\nReplaces=c\n",
                "MachineID cannot be used with Conflicts",
            ),
            (
                "X-ConditionMachineID=m\nGlobal=true\nReplaces=c\n",
                "MachineID cannot be used with Global",
            ),
            (
                "X-ConditionMachineBootID=m\nReplaces=c\n",
                "MachineID cannot be used with Replaces",
            ),
            (
                "Global=yes\nMachineOf=a.service\nReplaces=c\n",
                "Global cannot be used with Peers",
            ),
            (
                "Global=1\nReplaces=c\nConflicts=d\n",
                "Global cannot be used with Replaces",
            ),
            (
                "Conflicts=d\nReplaces=c\n",
                "Conflicts cannot be used with Replaces",
            ),
        ];
        for (x_fleet, want) in cases {
            assert_eq!(fails(x_fleet), want, "{x_fleet:?}");
        }
    }

    #[test]
    fn raw_values_without_specifier_expansion() {
        // For foo.service `%p.socket` would become foo.socket and match; raw it does not.
        assert_eq!(check("MachineOf=%p.socket\nConflicts=foo.socket\n"), Ok(()));
        assert_eq!(
            fails("MachineOf=%p.socket\nConflicts=%p.*\n"),
            "unresolvable requirements: peer \"%p.socket\" matches conflict \"%p.*\""
        );
        // Global is read raw too: `%i` is not truthy.
        assert_eq!(check("Global=%i\nMachineID=m\n"), Ok(()));
    }

    #[test]
    fn malformed_globs_never_match() {
        assert_eq!(check("MachineOf=[\nConflicts=[\n"), Ok(()));
        assert_eq!(check("MachineOf=a\nReplaces=[a\n"), Ok(()));
    }

    #[test]
    fn multivalues_are_split_before_checks() {
        assert_eq!(
            fails("MachineOf=\"a.service\" \"b.service\"\nConflicts=\"x\" \"b.*\"\n"),
            "unresolvable requirements: peer \"b.service\" matches conflict \"b.*\""
        );
    }
}
