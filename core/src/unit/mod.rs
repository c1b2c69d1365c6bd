//! systemd unit files as fleet understood them.
//!
//! A [`UnitFile`] is an ordered list of [`UnitOption`]s. Its normalized text ([`UnitFile::serialize`])
//! is what the registry stores, what the agent writes to disk and what `fltctl cat` prints; its
//! SHA-1 over that text ([`UnitFile::hash`]) identifies the content everywhere.
//!
//! - [`UnitFile::parse`] reads the systemd INI dialect exactly as fleet did (`parse.rs`);
//! - [`validate_name`], [`UnitNameInfo`] and [`mangle_name`] handle unit names (`name.rs`);
//! - [`Requirements::from_unit`] reads the `[X-Fleet]` options (`requirements.rs`);
//! - [`validate_options`] is fleet's cross-option check before a unit is created (`options.rs`).

mod name;
mod options;
mod parse;
mod requirements;

pub use name::{NameError, UNIT_NAME_MAX, UnitNameInfo, mangle_name, validate_name};
pub use options::{OptionsError, validate_options};
pub use parse::{LINE_MAX, ParseError, ParseErrorKind, split_multivalue};
pub use requirements::{
    KNOWN_REQUIREMENTS, Requirements, X_FLEET, short_machine_id, unknown_requirements,
};

use sha1::{Digest, Sha1};
use std::fmt;

/// One `Name=Value` line of a unit file, with the section it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitOption {
    pub section: String,
    pub name: String,
    pub value: String,
}

impl UnitOption {
    pub fn new(
        section: impl Into<String>,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> UnitOption {
        UnitOption {
            section: section.into(),
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A unit file: its options in file order. Duplicate options are kept, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitFile {
    options: Vec<UnitOption>,
}

impl UnitFile {
    pub fn from_options(options: Vec<UnitOption>) -> UnitFile {
        UnitFile { options }
    }

    pub fn options(&self) -> &[UnitOption] {
        &self.options
    }

    pub fn into_options(self) -> Vec<UnitOption> {
        self.options
    }

    /// The values of `name` in `section`, in order.
    pub fn values<'a>(&'a self, section: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.options
            .iter()
            .filter(move |o| o.section == section && o.name == name)
            .map(|o| o.value.as_str())
    }

    /// fleet's view of the values of `name` in `section` (its `Contents` map): in `[X-Fleet]`
    /// a value that starts and ends with `"` is split into several ([`split_multivalue`]);
    /// elsewhere values are whole.
    pub fn fleet_values(&self, section: &str, name: &str) -> Vec<String> {
        self.values(section, name)
            .flat_map(|v| {
                if section == requirements::X_FLEET {
                    split_multivalue(v)
                } else {
                    vec![v.to_string()]
                }
            })
            .collect()
    }

    /// Whether the unit has any option in `[Install]` (fltctl warns: fleet ignores it).
    pub fn has_install_section(&self) -> bool {
        self.options.iter().any(|o| o.section == "Install")
    }

    /// The first `Description=` of `[Unit]`, as `fltctl list-unit-files` shows it.
    pub fn description(&self) -> Option<&str> {
        self.values("Unit", "Description").next()
    }

    /// fleet's normalized text: sections in order of first appearance, each followed by all of its
    /// options in original order as `Name=Value`, one blank line between sections, no trailing
    /// blank line. Comments and empty sections are gone; no options give the empty string.
    pub fn serialize(&self) -> String {
        let mut sections: Vec<(&str, Vec<&UnitOption>)> = Vec::new();
        for option in &self.options {
            match sections.iter_mut().find(|(s, _)| *s == option.section) {
                Some((_, opts)) => opts.push(option),
                None => sections.push((&option.section, vec![option])),
            }
        }
        let mut out = String::new();
        for (i, (section, opts)) in sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('[');
            out.push_str(section);
            out.push_str("]\n");
            for o in opts {
                out.push_str(&o.name);
                out.push('=');
                out.push_str(&o.value);
                out.push('\n');
            }
        }
        out
    }

    /// SHA-1 of the normalized text.
    pub fn hash(&self) -> UnitHash {
        let digest = Sha1::digest(self.serialize().as_bytes());
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&digest);
        UnitHash(bytes)
    }
}

/// The SHA-1 of a unit's normalized text. Printed as 40 lowercase hex digits; its short form is
/// the first 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnitHash(pub [u8; 20]);

impl UnitHash {
    /// The 40-digit lowercase hex form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(40);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
        s
    }

    /// The 7-digit short form shown by `fltctl list-unit-files`.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(7);
        s
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<UnitHash> {
        let bytes = hex.as_bytes();
        if bytes.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(UnitHash(out))
    }

    /// True for the all-zero hash, which fleet used to mean "no hash".
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 20]
    }
}

impl fmt::Display for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_hash_vector() {
        let unit = UnitFile::from_options(vec![UnitOption::new(
            "Service",
            "ExecStart",
            "/bin/sleep 100",
        )]);
        assert_eq!(unit.serialize(), "[Service]\nExecStart=/bin/sleep 100\n");
        assert_eq!(
            unit.hash().to_hex(),
            "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
        );
        assert_eq!(unit.hash().short(), "1c6fb6f");
        assert_eq!(UnitHash::from_hex(&unit.hash().to_hex()), Some(unit.hash()));
    }

    #[test]
    fn serialize_groups_sections_in_first_appearance_order() {
        let unit = UnitFile::from_options(vec![
            UnitOption::new("Unit", "Description", "x"),
            UnitOption::new("Service", "ExecStart", "/bin/true"),
            UnitOption::new("Unit", "After", "y"),
        ]);
        assert_eq!(
            unit.serialize(),
            "[Unit]\nDescription=x\nAfter=y\n\n[Service]\nExecStart=/bin/true\n"
        );
        assert_eq!(UnitFile::default().serialize(), "");
    }

    #[test]
    fn from_hex_rejects_bad_input() {
        assert_eq!(UnitHash::from_hex("abc"), None);
        assert_eq!(UnitHash::from_hex(&"g".repeat(40)), None);
        assert!(UnitHash::default().is_zero());
    }
}
