//! The one place where the agent turns unit text into what it needs: the content hash, whether
//! the unit must be enabled (it has an `[Install]` section), and its `[X-Fleet]` requirements.

use crate::unit::{Requirements, UnitFile, UnitHash};

/// A unit file as the agent uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedUnit {
    /// The normalized text (what is written to disk).
    pub text: String,
    pub hash: UnitHash,
    pub has_install: bool,
    file: UnitFile,
    /// The `Conflicts` patterns as written; `None` if one has a specifier (`%`), which
    /// depends on the name the unit runs under.
    conflicts: Option<Vec<String>>,
}

impl ParsedUnit {
    /// Parses unit text with fleet's dialect; the error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<ParsedUnit, String> {
        let file = UnitFile::parse(text).map_err(|e| e.to_string())?;
        // Without a valid unit name no specifier is expanded: the patterns as written.
        let patterns = Requirements::from_unit(&file, "").conflicts;
        let conflicts = (!patterns.iter().any(|p| p.contains('%'))).then_some(patterns);
        Ok(ParsedUnit {
            text: file.serialize(),
            hash: file.hash(),
            has_install: file.has_install_section(),
            file,
            conflicts,
        })
    }

    /// The `Conflicts` patterns of this file when it runs under `name` (what
    /// `requirements(name).conflicts` says, without working out the rest when no specifier
    /// needs the name).
    pub fn conflicts(&self, name: &str) -> Vec<String> {
        match &self.conflicts {
            Some(patterns) => patterns.clone(),
            None => self.requirements(name).conflicts,
        }
    }

    /// The `[X-Fleet]` requirements of this file when it runs under `name`.
    pub fn requirements(&self, name: &str) -> Requirements {
        Requirements::from_unit(&self.file, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_match_the_requirements_with_and_without_specifiers() {
        let plain = ParsedUnit::parse(
            "[Service]\nExecStart=/bin/true\n[X-Fleet]\nConflicts=db*.service web.service\n",
        )
        .unwrap();
        let templated = ParsedUnit::parse(
            "[Service]\nExecStart=/bin/true\n[X-Fleet]\nConflicts=%p@*.service\nConflicts=x%i\n",
        )
        .unwrap();
        let none = ParsedUnit::parse("[Service]\nExecStart=/bin/true\n").unwrap();
        for name in ["app@1.service", "app@2.service", "solo.service"] {
            for unit in [&plain, &templated, &none] {
                assert_eq!(unit.conflicts(name), unit.requirements(name).conflicts);
            }
        }
        assert_eq!(
            templated.conflicts("app@7.service"),
            ["app@*.service", "x7"]
        );
        assert_eq!(plain.conflicts("a.service"), ["db*.service", "web.service"]);
        assert!(none.conflicts("a.service").is_empty());
    }
}
