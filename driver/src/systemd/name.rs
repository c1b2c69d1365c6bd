//! Unit names as they reach the file system and the bus.

use std::fmt;

/// Why a unit name was refused before any path or D-Bus call was built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnitNameError {
    /// fleet's name rules (`flt_core::unit::validate_name`) reject it.
    Invalid { name: String, reason: String },
    /// It would not be exactly one plain file name inside the units directory.
    NotAFileName { name: String },
}

impl fmt::Display for UnitNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitNameError::Invalid { name, reason } => {
                write!(f, "invalid unit name {name:?}: {reason}")
            }
            UnitNameError::NotAFileName { name } => {
                write!(
                    f,
                    "unit name {name:?} is not a single file name (empty, '.', '..', '/', NUL or too long)"
                )
            }
        }
    }
}

impl std::error::Error for UnitNameError {}

/// Checks `name` before it becomes `<units_dir>/<name>` or a D-Bus argument.
///
/// Two checks on purpose: fleet's rules (`validate_name`) decide which names flt accepts and
/// may be relaxed for compatibility some day; the file-name check is the invariant this driver
/// relies on to never write outside its units directory, whatever those rules become.
pub fn check_unit_name(name: &str) -> Result<(), UnitNameError> {
    let plain_file_name = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\0'])
        // Dot files are the driver's own temporary files in the units directory.
        && !name.starts_with('.');
    if !plain_file_name {
        return Err(UnitNameError::NotAFileName {
            name: name.to_string(),
        });
    }
    match flt_core::unit::validate_name(name) {
        // A rule about what etcd shows watchers, not about files: a unit submitted before it
        // existed must still be loadable and, above all, stoppable.
        Ok(()) | Err(flt_core::unit::NameError::StartsWithUnderscore) => Ok(()),
        Err(e) => Err(UnitNameError::Invalid {
            name: name.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// systemd's D-Bus object path of a unit: every byte other than `[A-Za-z0-9]` (and a leading
/// digit) becomes `_xx` in lowercase hex, e.g. `hello.service` →
/// `/org/freedesktop/systemd1/unit/hello_2eservice`.
pub fn unit_object_path(name: &str) -> String {
    let mut path = String::from("/org/freedesktop/systemd1/unit/");
    if name.is_empty() {
        path.push('_');
    }
    for (i, byte) in name.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (i > 0 && byte.is_ascii_digit()) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("_{byte:02x}"));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_names_that_are_not_one_file_name() {
        for name in [
            "",
            ".",
            "..",
            "../x.service",
            "a/b.service",
            "a\0.service",
            ".hidden.service",
        ] {
            assert!(
                matches!(
                    check_unit_name(name),
                    Err(UnitNameError::NotAFileName { .. })
                ),
                "{name:?} accepted"
            );
        }
        assert!(check_unit_name(&format!("{}.service", "a".repeat(300))).is_err());
    }

    #[test]
    fn applies_fleet_rules_after_the_file_name_check() {
        assert!(check_unit_name("hello.service").is_ok());
        assert!(check_unit_name("web@1.service").is_ok());
        // Refused for new units (etcd hides them from watches), but one already running must
        // stay manageable.
        assert!(check_unit_name("_old.service").is_ok());
        assert!(matches!(
            check_unit_name("hello"),
            Err(UnitNameError::Invalid { .. })
        ));
        assert!(matches!(
            check_unit_name("hello.bogus"),
            Err(UnitNameError::Invalid { .. })
        ));
        assert!(matches!(
            check_unit_name("he llo.service"),
            Err(UnitNameError::Invalid { .. })
        ));
    }

    #[test]
    fn object_paths_match_systemd_escaping() {
        assert_eq!(
            unit_object_path("hello.service"),
            "/org/freedesktop/systemd1/unit/hello_2eservice"
        );
        assert_eq!(
            unit_object_path("web@1-a_b.service"),
            "/org/freedesktop/systemd1/unit/web_401_2da_5fb_2eservice"
        );
        assert_eq!(
            unit_object_path("1x.target"),
            "/org/freedesktop/systemd1/unit/_31x_2etarget"
        );
    }
}
