//! The one place where the agent turns unit text into what it needs: the content hash, whether
//! the unit must be enabled (it has an `[Install]` section), and its `[X-Fleet]` requirements.

use crate::unit::{Requirements, UnitFile, UnitHash, UnitOption};

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
    /// Parses unit text; the error names what is wrong.
    pub fn parse(text: &str) -> Result<ParsedUnit, String> {
        let file = parse_unit_file(text)?;
        let has_install = file.options().iter().any(|o| o.section == "Install");
        Ok(ParsedUnit {
            text: file.serialize(),
            hash: file.hash(),
            has_install,
            file,
        })
    }

    /// The `[X-Fleet]` requirements of this file when it runs under `name`.
    pub fn requirements(&self, name: &str) -> Requirements {
        requirements_of(&self.file, name)
    }
}

// PROVISIONAL until `UnitFile::parse` and `Requirements::from_unit` land from branch `unit`:
// a minimal reader of `[Section]` headers and `Name=Value` lines (no continuations) and of the
// X-Fleet keys the agent needs (MachineID, MachineMetadata, Conflicts, Global).
fn parse_unit_file(text: &str) -> Result<UnitFile, String> {
    let mut section: Option<String> = None;
    let mut options = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: unterminated section header", number + 1))?;
            section = Some(name.to_string());
            continue;
        }
        let Some(section) = &section else {
            return Err(format!("line {}: option outside of a section", number + 1));
        };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected Name=Value", number + 1))?;
        options.push(UnitOption::new(section.as_str(), name.trim(), value.trim()));
    }
    Ok(UnitFile::from_options(options))
}

fn requirements_of(file: &UnitFile, name: &str) -> Requirements {
    let expand = |v: &str| {
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        let prefix = stem.split_once('@').map_or(stem, |(p, _)| p);
        let instance = stem.split_once('@').map_or("", |(_, i)| i);
        v.replace("%n", name)
            .replace("%N", stem)
            .replace("%p", prefix)
            .replace("%i", instance)
    };
    let mut req = Requirements::default();
    for o in file.options().iter().filter(|o| o.section == "X-Fleet") {
        let value = expand(&o.value);
        match o.name.as_str() {
            "MachineID" | "X-ConditionMachineID" | "X-ConditionMachineBootID"
                if req.machine_id.is_none() =>
            {
                req.machine_id = Some(value);
            }
            "MachineMetadata" | "X-ConditionMachineMetadata" => {
                for pair in value.split_whitespace() {
                    if let Some((k, v)) = pair.split_once('=')
                        && !k.is_empty()
                        && !v.is_empty()
                        && !v.contains('=')
                    {
                        req.metadata
                            .entry(k.to_string())
                            .or_default()
                            .insert(v.to_string());
                    }
                }
            }
            "Conflicts" | "X-Conflicts" => {
                req.conflicts
                    .extend(value.split_whitespace().map(str::to_string));
            }
            "Global" => {
                req.global = matches!(
                    value.to_lowercase().as_str(),
                    "true" | "yes" | "1" | "on" | "t"
                );
            }
            _ => {}
        }
    }
    req
}
