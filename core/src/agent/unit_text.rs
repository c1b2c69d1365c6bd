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
}

impl ParsedUnit {
    /// Parses unit text with fleet's dialect; the error names the line and what is wrong.
    pub fn parse(text: &str) -> Result<ParsedUnit, String> {
        let file = UnitFile::parse(text).map_err(|e| e.to_string())?;
        Ok(ParsedUnit {
            text: file.serialize(),
            hash: file.hash(),
            has_install: file.has_install_section(),
            file,
        })
    }

    /// The `[X-Fleet]` requirements of this file when it runs under `name`.
    pub fn requirements(&self, name: &str) -> Requirements {
        Requirements::from_unit(&self.file, name)
    }
}
