//! Unit names: fleet's validation (`api.ValidateName`), the parts of a name that specifiers and
//! templates use (`unit.UnitNameInfo`), and fltctl's client-side mangling of file arguments.

use crate::goquote::{quote as go_quote, quote_rune as go_quote_rune};
use std::fmt;

/// systemd's `UNIT_NAME_MAX`.
pub const UNIT_NAME_MAX: usize = 256;

/// Every unit type fleet accepts in a name.
const VALID_UNIT_TYPES: [&str; 13] = [
    "automount",
    "busname",
    "device",
    "mount",
    "path",
    "scope",
    "service",
    "slice",
    "snapshot",
    "socket",
    "swap",
    "target",
    "timer",
];

/// Unit types that may be templates (`foo@.service`).
const VALID_TEMPLATE_TYPES: [&str; 5] = ["path", "service", "socket", "target", "timer"];

/// Unit types fltctl recognizes on a file argument; anything else gets `.service` appended.
const RECOGNIZED_UNIT_TYPES: [&str; 7] = [
    "service",
    "socket",
    "timer",
    "path",
    "device",
    "mount",
    "automount",
];

/// Why a unit name is invalid; `Display` gives fleet's exact message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    Empty,
    TooLong,
    NoDot,
    EndsInDot,
    InvalidType(String),
    InvalidTemplateType(String),
    InvalidCharacter(char),
    StartsWithAt,
    /// flt only: etcd v2 hides keys whose name starts with `_` from watches, so such a unit's
    /// changes would reach the engine and agents only at the next full re-read.
    StartsWithUnderscore,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("unit name cannot be empty"),
            NameError::TooLong => {
                write!(f, "unit name exceeds maximum length ({UNIT_NAME_MAX})")
            }
            NameError::NoDot => f.write_str("unit name must contain \".\""),
            NameError::EndsInDot => f.write_str("unit name cannot end in \".\""),
            NameError::InvalidType(suffix) => write!(f, "invalid unit type: {}", go_quote(suffix)),
            NameError::InvalidTemplateType(suffix) => {
                write!(f, "invalid unit type for template: {}", go_quote(suffix))
            }
            NameError::InvalidCharacter(c) => {
                write!(f, "invalid character {} in unit name", go_quote_rune(*c))
            }
            NameError::StartsWithAt => f.write_str("unit name cannot start in \"@\""),
            NameError::StartsWithUnderscore => {
                f.write_str("unit name cannot start in \"_\" (etcd hides such keys from watches)")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// fleet's unit name check, plus one rule of flt's (no leading `_`: etcd v2 hides such keys
/// from watches); the first failing rule wins. (`.service` alone passes, as in fleet.)
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > UNIT_NAME_MAX {
        return Err(NameError::TooLong);
    }
    let Some(dot) = name.rfind('.') else {
        return Err(NameError::NoDot);
    };
    let (stem, suffix) = (&name[..dot], &name[dot + 1..]);
    if suffix.is_empty() {
        return Err(NameError::EndsInDot);
    }
    if !VALID_UNIT_TYPES.contains(&suffix) {
        return Err(NameError::InvalidType(suffix.to_string()));
    }
    if name.contains('@') && !VALID_TEMPLATE_TYPES.contains(&suffix) {
        return Err(NameError::InvalidTemplateType(suffix.to_string()));
    }
    if let Some(c) = stem
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || ":-_.\\@".contains(c)))
    {
        return Err(NameError::InvalidCharacter(c));
    }
    if name.starts_with('@') {
        return Err(NameError::StartsWithAt);
    }
    if name.starts_with('_') {
        return Err(NameError::StartsWithUnderscore);
    }
    Ok(())
}

/// The parts of a unit name (fleet's `UnitNameInfo`), e.g. for `foo@bar.service`:
/// full name `foo@bar.service`, name `foo@bar`, prefix `foo`, instance `bar`, suffix `service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitNameInfo {
    /// The whole name.
    pub full_name: String,
    /// The name up to the last `.`.
    pub name: String,
    /// `name` up to the first `@` (all of `name` without one).
    pub prefix: String,
    /// The text after the first `@` in `name` (may hold further `@`); empty without one.
    pub instance: String,
    /// The text after the last `.`, without the dot.
    pub suffix: String,
}

impl UnitNameInfo {
    /// Splits `name`; `None` if it has no `.`.
    pub fn parse(full_name: &str) -> Option<UnitNameInfo> {
        let dot = full_name.rfind('.')?;
        let name = &full_name[..dot];
        let (prefix, instance) = name.split_once('@').unwrap_or((name, ""));
        Some(UnitNameInfo {
            full_name: full_name.to_string(),
            name: name.to_string(),
            prefix: prefix.to_string(),
            instance: instance.to_string(),
            suffix: full_name[dot + 1..].to_string(),
        })
    }

    /// Has `@` in its name.
    fn has_at(&self) -> bool {
        self.name.len() != self.prefix.len()
    }

    /// An instance of a template: a non-empty instance (`foo@1.service`).
    pub fn is_instance(&self) -> bool {
        !self.instance.is_empty()
    }

    /// A template: an `@` and an empty instance (`foo@.service`).
    pub fn is_template(&self) -> bool {
        self.has_at() && !self.is_instance()
    }

    /// The template this name belongs to: `<prefix>@.<suffix>` (meaningful when
    /// [`is_instance`](Self::is_instance) or [`is_template`](Self::is_template)).
    pub fn template_name(&self) -> String {
        format!("{}@.{}", self.prefix, self.suffix)
    }

    /// Replaces `%n %N %p %i` in `value`, one after the other and literally (no `%%`, no
    /// unescaping; other specifiers stay), as fleet did for `[X-Fleet]` values.
    pub fn expand_specifiers(&self, value: &str) -> String {
        value
            .replace("%n", &self.full_name)
            .replace("%N", &self.name)
            .replace("%p", &self.prefix)
            .replace("%i", &self.instance)
    }
}

/// fltctl's unit name for a file argument: the base name (Go `path.Base`), with `.service`
/// appended unless it already ends in `.service .socket .timer .path .device .mount .automount`
/// (so `foo.target` becomes `foo.target.service`).
pub fn mangle_name(arg: &str) -> String {
    let base = go_path_base(arg);
    if RECOGNIZED_UNIT_TYPES
        .iter()
        .any(|t| base.strip_suffix(t).is_some_and(|s| s.ends_with('.')))
    {
        base.to_string()
    } else {
        format!("{base}.service")
    }
}

/// Go's `path.Base`: the last `/`-separated element, trailing slashes ignored; `.` for the
/// empty string and `/` for all slashes.
fn go_path_base(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(name: &str) -> String {
        validate_name(name).unwrap_err().to_string()
    }

    #[test]
    fn every_validation_message() {
        assert_eq!(message(""), "unit name cannot be empty");
        assert_eq!(
            message(&format!("{}.service", "a".repeat(249))),
            "unit name exceeds maximum length (256)"
        );
        assert_eq!(message("foo"), "unit name must contain \".\"");
        assert_eq!(message("foo."), "unit name cannot end in \".\"");
        assert_eq!(message("foo.link"), "invalid unit type: \"link\"");
        assert_eq!(
            message("foo@.mount"),
            "invalid unit type for template: \"mount\""
        );
        assert_eq!(
            message("foo bar.service"),
            "invalid character ' ' in unit name"
        );
        assert_eq!(message("@foo.service"), "unit name cannot start in \"@\"");
        assert_eq!(
            message("_foo.service"),
            "unit name cannot start in \"_\" (etcd hides such keys from watches)"
        );
    }

    #[test]
    fn boundaries_and_quirks() {
        let max = format!("{}.service", "a".repeat(248));
        assert_eq!(max.len(), 256);
        assert_eq!(validate_name(&max), Ok(()));
        assert_eq!(validate_name(".service"), Ok(()));
        assert_eq!(validate_name("a:b-c_d.e\\f@g.service"), Ok(()));
        assert_eq!(validate_name("a_.service"), Ok(()));
        assert_eq!(validate_name("hello@.service"), Ok(()));
        assert_eq!(validate_name("hello@1.service"), Ok(()));
        assert_eq!(validate_name("foo.target"), Ok(()));
        assert_eq!(validate_name("foo@.target"), Ok(()));
        for t in VALID_UNIT_TYPES {
            assert_eq!(validate_name(&format!("x.{t}")), Ok(()), "{t}");
        }
    }

    #[test]
    fn first_failing_rule_wins() {
        // Too long beats everything after it.
        assert_eq!(validate_name(&"@ ".repeat(200)), Err(NameError::TooLong));
        // Bad type is reported before bad characters and a leading @.
        assert_eq!(
            validate_name("@a b.link"),
            Err(NameError::InvalidType("link".into()))
        );
        // Template type is checked before characters.
        assert_eq!(
            validate_name("a b@.swap"),
            Err(NameError::InvalidTemplateType("swap".into()))
        );
        // Characters are checked before the leading @.
        assert_eq!(
            validate_name("@a/b.service"),
            Err(NameError::InvalidCharacter('/'))
        );
        // Characters after the last dot are the suffix, which must be a type.
        assert_eq!(
            validate_name("a.serv/ice"),
            Err(NameError::InvalidType("serv/ice".into()))
        );
    }

    #[test]
    fn go_quoting_in_messages() {
        assert_eq!(
            message("a\nb.service"),
            "invalid character '\\n' in unit name"
        );
        assert_eq!(
            message("a'b.service"),
            "invalid character '\\'' in unit name"
        );
        assert_eq!(message("aé.service"), "invalid character 'é' in unit name");
        assert_eq!(
            message("a\u{1}.service"),
            "invalid character '\\x01' in unit name"
        );
        assert_eq!(message("a.\"x\""), "invalid unit type: \"\\\"x\\\"\"");
    }

    #[test]
    fn name_info_like_fleet() {
        // (full, name, prefix, template, instance, is_instance, is_template) from fleet's tests.
        let cases = [
            ("foo.service", "foo", "foo", "", false, false),
            ("foo@.service", "foo@", "foo", "", false, true),
            ("foo@bar.service", "foo@bar", "foo", "bar", true, false),
            (
                "foo@bar@baz.service",
                "foo@bar@baz",
                "foo",
                "bar@baz",
                true,
                false,
            ),
            ("foo.1@.service", "foo.1@", "foo.1", "", false, true),
            ("foo.1@2.service", "foo.1@2", "foo.1", "2", true, false),
            ("ssh@.socket", "ssh@", "ssh", "", false, true),
            ("ssh@1.socket", "ssh@1", "ssh", "1", true, false),
        ];
        for (full, name, prefix, instance, is_instance, is_template) in cases {
            let info = UnitNameInfo::parse(full).unwrap();
            assert_eq!(info.full_name, full);
            assert_eq!(info.name, name);
            assert_eq!(info.prefix, prefix);
            assert_eq!(info.instance, instance);
            assert_eq!(info.is_instance(), is_instance, "{full}");
            assert_eq!(info.is_template(), is_template, "{full}");
        }
        let info = UnitNameInfo::parse("ssh@1.socket").unwrap();
        assert_eq!(info.suffix, "socket");
        assert_eq!(info.template_name(), "ssh@.socket");
        assert_eq!(
            UnitNameInfo::parse("foo.1@2.service")
                .unwrap()
                .template_name(),
            "foo.1@.service"
        );
        assert_eq!(UnitNameInfo::parse("foo"), None);
        assert_eq!(UnitNameInfo::parse("bar@baz"), None);
    }

    #[test]
    fn specifiers_are_sequential_and_literal() {
        let info = UnitNameInfo::parse("foo@bar.service").unwrap();
        assert_eq!(
            info.expand_specifiers("%n %N %p %i %H %% %m"),
            "foo@bar.service foo@bar foo bar %H %% %m"
        );
        assert_eq!(
            UnitNameInfo::parse("foo.service")
                .unwrap()
                .expand_specifiers("%p.socket"),
            "foo.socket"
        );
        // Sequential: the text %n put in is itself expanded by the later passes.
        let odd = UnitNameInfo::parse("x%p.service").unwrap();
        assert_eq!(odd.expand_specifiers("%n"), "xx%p.service");
        // No %% escape: "%%i" is "%" followed by %i.
        assert_eq!(info.expand_specifiers("%%i"), "%bar");
    }

    #[test]
    fn mangling_like_fltctl() {
        assert_eq!(mangle_name("foo"), "foo.service");
        assert_eq!(mangle_name("foo.1"), "foo.1.service");
        assert_eq!(mangle_name("dir/bar.socket"), "bar.socket");
        assert_eq!(mangle_name("foo.target"), "foo.target.service");
        assert_eq!(mangle_name("foo.swap"), "foo.swap.service");
        assert_eq!(mangle_name("/a/b/hello@.service"), "hello@.service");
        assert_eq!(mangle_name("a/b/"), "b.service");
        for t in RECOGNIZED_UNIT_TYPES {
            assert_eq!(mangle_name(&format!("x.{t}")), format!("x.{t}"));
        }
        assert_eq!(mangle_name("xservice"), "xservice.service");
        assert_eq!(mangle_name(""), "..service");
        assert_eq!(mangle_name("//"), "/.service");
    }
}
