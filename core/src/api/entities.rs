//! The JSON entities of API v1 (fleet's `schema/v1.json`).
//!
//! Keys are exactly fleet's; an empty field is omitted (Go's `omitempty`), so an empty page
//! serializes as `{}` and an option with an empty value has no `value` key. Fields are declared in
//! the order Go emitted them (alphabetical), and [`to_go_json`] escapes strings as Go did, so a
//! response body is byte-for-byte what fleet sent.
//!
//! Deserializing accepts what our own server sends (missing keys are empty). Request bodies, which
//! come from arbitrary clients, are decoded Go-style by [`super::units_put`] and
//! [`super::machines_patch`] instead.

use crate::unit::{self, UnitFile};
use serde::{Deserialize, Serialize};
use serde_json::ser::{CharEscape, Formatter};
use std::collections::BTreeMap;
use std::io;

/// One option of a unit file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitOption {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub section: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

impl From<unit::UnitOption> for UnitOption {
    fn from(o: unit::UnitOption) -> UnitOption {
        UnitOption {
            name: o.name,
            section: o.section,
            value: o.value,
        }
    }
}

impl From<&unit::UnitOption> for UnitOption {
    fn from(o: &unit::UnitOption) -> UnitOption {
        UnitOption::from(o.clone())
    }
}

impl From<UnitOption> for unit::UnitOption {
    fn from(o: UnitOption) -> unit::UnitOption {
        unit::UnitOption {
            section: o.section,
            name: o.name,
            value: o.value,
        }
    }
}

impl From<&UnitOption> for unit::UnitOption {
    fn from(o: &UnitOption) -> unit::UnitOption {
        unit::UnitOption::from(o.clone())
    }
}

/// The API options of a unit file, in file order.
pub fn options_from_unit_file(file: &UnitFile) -> Vec<UnitOption> {
    file.options().iter().map(UnitOption::from).collect()
}

/// The unit file made of API options, in the order given.
pub fn unit_file_from_options(options: &[UnitOption]) -> UnitFile {
    UnitFile::from_options(options.iter().map(unit::UnitOption::from).collect())
}

/// A unit: its file (as options) and its desired and current state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    #[serde(
        rename = "currentState",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub current_state: String,
    #[serde(
        rename = "desiredState",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub desired_state: String,
    #[serde(
        rename = "machineID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<UnitOption>,
}

impl Unit {
    /// The unit file these options make up (its hash is what `fltctl` shows as `HASH`).
    pub fn unit_file(&self) -> UnitFile {
        unit_file_from_options(&self.options)
    }
}

/// What systemd on one machine reports for one unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(
        rename = "machineID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        rename = "systemdActiveState",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub systemd_active_state: String,
    #[serde(
        rename = "systemdLoadState",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub systemd_load_state: String,
    #[serde(
        rename = "systemdSubState",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub systemd_sub_state: String,
}

/// A live machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(
        rename = "primaryIP",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub primary_ip: String,
}

/// One page of `GET /units`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitPage {
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub next_page_token: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
}

/// One page of `GET /state`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatePage {
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub next_page_token: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<UnitState>,
}

/// One page of `GET /machines`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachinePage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<Machine>,
    #[serde(
        rename = "nextPageToken",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub next_page_token: String,
}

/// The body of every error response: `{"error":{"code":<status>,"message":"<text>"}}`. The
/// message key is always present, empty for internal errors whose details only go to the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntity {
    pub error: ErrorBody,
}

/// The inside of an [`ErrorEntity`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: u16,
    #[serde(default)]
    pub message: String,
}

impl ErrorEntity {
    pub fn new(code: u16, message: impl Into<String>) -> ErrorEntity {
        ErrorEntity {
            error: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }

    /// The response body.
    pub fn to_json(&self) -> String {
        // Serializing a struct of a number and a string cannot fail.
        to_go_json(self).unwrap_or_default()
    }
}

/// Compact JSON with Go's `encoding/json` string escapes: `<`, `>`, `&`, U+2028 and U+2029 as
/// `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`, and backspace and form feed as `\u0008`
/// and `\u000c`. This is how every API response body is written.
pub fn to_go_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut serializer)?;
    // The serializer only writes UTF-8.
    Ok(String::from_utf8(out).unwrap_or_default())
}

struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        let short = |c: u8| [b'\\', c];
        match char_escape {
            CharEscape::Quote => writer.write_all(&short(b'"')),
            CharEscape::ReverseSolidus => writer.write_all(&short(b'\\')),
            CharEscape::Solidus => writer.write_all(&short(b'/')),
            CharEscape::LineFeed => writer.write_all(&short(b'n')),
            CharEscape::CarriageReturn => writer.write_all(&short(b'r')),
            CharEscape::Tab => writer.write_all(&short(b't')),
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            CharEscape::AsciiControl(byte) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                writer.write_all(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn to_json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn go_string_escapes() {
        // Expected bytes from Go 1.19's json.Marshal of the same option.
        let option = UnitOption {
            name: "ExecStart".into(),
            section: "Service".into(),
            value:
                "/bin/sh -c \"a && b > /dev/null <x\"\u{8}\u{c}\n\t\u{1}\u{7f}\u{2028}\u{2029}é\\"
                    .into(),
        };
        let expected = concat!(
            r#"{"name":"ExecStart","section":"Service","value":"/bin/sh -c \"a \u0026\u0026 b "#,
            r#"\u003e /dev/null \u003cx\"\u0008\u000c\n\t\u0001"#,
            "\u{7f}",
            r#"\u2028\u2029é\\"}"#
        );
        assert_eq!(to_go_json(&option).unwrap(), expected);
    }

    #[test]
    fn empty_entities_and_pages_are_empty_objects() {
        assert_eq!(to_json(&UnitPage::default()), "{}");
        assert_eq!(to_json(&UnitStatePage::default()), "{}");
        assert_eq!(to_json(&MachinePage::default()), "{}");
        assert_eq!(to_json(&Unit::default()), "{}");
        assert_eq!(to_json(&UnitState::default()), "{}");
        assert_eq!(to_json(&Machine::default()), "{}");
        assert_eq!(to_json(&UnitOption::default()), "{}");
    }

    #[test]
    fn unit_keys_and_order_match_fleet() {
        let unit = Unit {
            current_state: "launched".into(),
            desired_state: "launched".into(),
            machine_id: "113f16a7".into(),
            name: "hello.service".into(),
            options: vec![
                UnitOption {
                    name: "ExecStart".into(),
                    section: "Service".into(),
                    value: "/bin/true".into(),
                },
                UnitOption {
                    name: "Description".into(),
                    section: "Unit".into(),
                    value: String::new(),
                },
            ],
        };
        assert_eq!(
            to_json(&unit),
            r#"{"currentState":"launched","desiredState":"launched","machineID":"113f16a7","name":"hello.service","options":[{"name":"ExecStart","section":"Service","value":"/bin/true"},{"name":"Description","section":"Unit"}]}"#
        );
        let back: Unit = serde_json::from_str(&to_json(&unit)).unwrap();
        assert_eq!(back, unit);
    }

    #[test]
    fn global_unit_omits_machine_and_current_state() {
        let unit = Unit {
            desired_state: "launched".into(),
            name: "global.service".into(),
            ..Unit::default()
        };
        assert_eq!(
            to_json(&unit),
            r#"{"desiredState":"launched","name":"global.service"}"#
        );
    }

    #[test]
    fn unit_state_keys() {
        let state = UnitState {
            hash: "1c6fb6f3684bafb0c173d8b8b957ceff031180c1".into(),
            machine_id: "m1".into(),
            name: "a.service".into(),
            systemd_active_state: "active".into(),
            systemd_load_state: "loaded".into(),
            systemd_sub_state: "running".into(),
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            json!({"hash":"1c6fb6f3684bafb0c173d8b8b957ceff031180c1","machineID":"m1","name":"a.service","systemdActiveState":"active","systemdLoadState":"loaded","systemdSubState":"running"})
        );
        assert_eq!(
            to_json(&state),
            r#"{"hash":"1c6fb6f3684bafb0c173d8b8b957ceff031180c1","machineID":"m1","name":"a.service","systemdActiveState":"active","systemdLoadState":"loaded","systemdSubState":"running"}"#
        );
    }

    #[test]
    fn machine_keys_and_empty_metadata_omitted() {
        let mut m = Machine {
            id: "abc".into(),
            metadata: BTreeMap::new(),
            primary_ip: "10.0.0.1".into(),
        };
        assert_eq!(to_json(&m), r#"{"id":"abc","primaryIP":"10.0.0.1"}"#);
        m.metadata.insert("region".into(), "us".into());
        m.metadata.insert("disk".into(), "ssd".into());
        assert_eq!(
            to_json(&m),
            r#"{"id":"abc","metadata":{"disk":"ssd","region":"us"},"primaryIP":"10.0.0.1"}"#
        );
    }

    #[test]
    fn pages_carry_items_and_token() {
        let page = UnitPage {
            next_page_token: "ZAACAA==".into(),
            units: vec![Unit {
                name: "a.service".into(),
                ..Unit::default()
            }],
        };
        assert_eq!(
            to_json(&page),
            r#"{"nextPageToken":"ZAACAA==","units":[{"name":"a.service"}]}"#
        );
        let states = UnitStatePage {
            next_page_token: String::new(),
            states: vec![UnitState::default()],
        };
        assert_eq!(to_json(&states), r#"{"states":[{}]}"#);
        let machines = MachinePage {
            machines: vec![Machine {
                id: "m".into(),
                ..Machine::default()
            }],
            next_page_token: "ZAACAA==".into(),
        };
        assert_eq!(
            to_json(&machines),
            r#"{"machines":[{"id":"m"}],"nextPageToken":"ZAACAA=="}"#
        );
        let back: MachinePage = serde_json::from_str(&to_json(&machines)).unwrap();
        assert_eq!(back, machines);
        let empty: UnitPage = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, UnitPage::default());
    }

    #[test]
    fn error_entity_always_has_code_and_message() {
        assert_eq!(
            ErrorEntity::new(404, "unit does not exist").to_json(),
            r#"{"error":{"code":404,"message":"unit does not exist"}}"#
        );
        assert_eq!(
            ErrorEntity::new(500, "").to_json(),
            r#"{"error":{"code":500,"message":""}}"#
        );
        let back: ErrorEntity =
            serde_json::from_str(r#"{"error":{"code":400,"message":"bad"}}"#).unwrap();
        assert_eq!(back, ErrorEntity::new(400, "bad"));
    }

    #[test]
    fn options_convert_both_ways_and_hash_like_the_core() {
        let core_opts = vec![
            unit::UnitOption::new("Service", "ExecStart", "/bin/sleep 100"),
            unit::UnitOption::new("Unit", "Description", ""),
        ];
        let file = UnitFile::from_options(core_opts.clone());
        let api_opts = options_from_unit_file(&file);
        assert_eq!(api_opts[0].section, "Service");
        assert_eq!(api_opts[0].name, "ExecStart");
        assert_eq!(api_opts[0].value, "/bin/sleep 100");
        assert_eq!(unit_file_from_options(&api_opts), file);
        let api_unit = Unit {
            options: api_opts[..1].to_vec(),
            ..Unit::default()
        };
        assert_eq!(
            api_unit.unit_file().hash().to_hex(),
            "1c6fb6f3684bafb0c173d8b8b957ceff031180c1"
        );
        let round: Vec<unit::UnitOption> = api_opts.iter().map(unit::UnitOption::from).collect();
        assert_eq!(round, core_opts);
    }
}
