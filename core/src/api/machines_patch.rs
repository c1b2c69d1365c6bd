//! `PATCH /machines`: edits of machine metadata.
//!
//! The body is a JSON array of `{"op","path","value"}`. [`decode_patch`] decodes it, validates
//! every op before any is applied (one bad op refuses the whole request), and returns the writes
//! to make in order: `machines/<id>/metadata/<key>` set to the value, or to `""` (a tombstone
//! that hides a config-provided key) for `remove`. Keys are matched case-insensitively, as Go
//! decoded them. The value may be a string (the documented shape) or `{"value": "<string>"}`
//! (what fleet v1.0.0 actually required); both are accepted.

use super::go_json::{self, DecodeError, GoValue};
use std::fmt;

/// One metadata write resulting from a PATCH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataWrite {
    pub machine_id: String,
    pub key: String,
    /// The new value; empty for `remove` (a tombstone).
    pub value: String,
}

/// Why a PATCH was refused (always HTTP 400). `Display` is fleet's exact message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchError {
    /// The body is not a JSON array of op objects.
    Decode(String),
    /// `op` is not `add`, `remove` or `replace`.
    InvalidOp { index: usize, op: String },
    /// `path` is not `/<machineID>/metadata/<key>`.
    InvalidPath { index: usize, path: String },
    /// `add` or `replace` without a (non-empty) value.
    MissingValue { index: usize },
}

impl PatchError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::Decode(msg) => f.write_str(msg),
            PatchError::InvalidOp { .. } => {
                f.write_str("invalid op: expect add, remove, or replace")
            }
            PatchError::InvalidPath { .. } => f.write_str("machine metadata path invalid"),
            PatchError::MissingValue { .. } => {
                f.write_str("invalid value: add and replace require a value")
            }
        }
    }
}

impl std::error::Error for PatchError {}

impl From<DecodeError> for PatchError {
    fn from(e: DecodeError) -> PatchError {
        PatchError::Decode(e.0)
    }
}

/// One op as sent, before validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RawOp {
    op: String,
    path: String,
    value: String,
}

const GO_OP_TYPE: &str = "Go value of type api.machineMetadataOp";

fn decode_ops(body: &[u8]) -> Result<Vec<RawOp>, DecodeError> {
    let ops = match go_json::first_value(body)? {
        // Go decodes `null` into an empty list.
        GoValue::Null => return Ok(Vec::new()),
        GoValue::Array(ops) => ops,
        other => {
            return Err(go_json::type_error(
                &other,
                "Go value of type []api.machineMetadataOp",
            ));
        }
    };
    ops.iter().map(decode_op).collect()
}

fn decode_op(value: &GoValue) -> Result<RawOp, DecodeError> {
    let members = match value {
        GoValue::Null => return Ok(RawOp::default()),
        GoValue::Object(members) => members,
        other => return Err(go_json::type_error(other, GO_OP_TYPE)),
    };
    let mut op = RawOp::default();
    go_json::for_each_field(members, &["op", "path", "value"], |field, v| match field {
        0 => go_json::assign_string(&mut op.op, v, "machineMetadataOp.op"),
        1 => go_json::assign_string(&mut op.path, v, "machineMetadataOp.path"),
        _ => match v {
            // The nested shape `{"value": "<string>"}`, decoded into the same value in place.
            GoValue::Object(inner) => go_json::for_each_field(inner, &["value"], |_, inner_v| {
                go_json::assign_string(&mut op.value, inner_v, "machineMetadataOp.value.value")
            }),
            other => go_json::assign_string(&mut op.value, other, "machineMetadataOp.value"),
        },
    })?;
    Ok(op)
}

/// Splits `/<machineID>/metadata/<key>`, i.e. fleet's `^/([^/]+)/metadata/([A-Za-z0-9_.-]+)$`,
/// except that `.` and `..` are refused as machine ID or key: etcd cleans such a key segment
/// away, so the write would land elsewhere (fleet's `path.Join` did the same).
pub fn parse_metadata_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let slash = rest.find('/')?;
    let (machine_id, rest) = rest.split_at(slash);
    let key = rest.strip_prefix("/metadata/")?;
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    let dots = |segment: &str| matches!(segment, "." | "..");
    if machine_id.is_empty() || dots(machine_id) || dots(key) || !key_ok {
        return None;
    }
    Some((machine_id, key))
}

/// Decodes and validates a PATCH body; on success, the writes to apply in order.
pub fn decode_patch(body: &[u8]) -> Result<Vec<MetadataWrite>, PatchError> {
    let ops = decode_ops(body)?;
    let mut writes = Vec::with_capacity(ops.len());
    for (index, raw) in ops.into_iter().enumerate() {
        let remove = match raw.op.as_str() {
            "add" | "replace" => false,
            "remove" => true,
            _ => return Err(PatchError::InvalidOp { index, op: raw.op }),
        };
        let Some((machine_id, key)) = parse_metadata_path(&raw.path) else {
            return Err(PatchError::InvalidPath {
                index,
                path: raw.path,
            });
        };
        if !remove && raw.value.is_empty() {
            return Err(PatchError::MissingValue { index });
        }
        writes.push(MetadataWrite {
            machine_id: machine_id.to_string(),
            key: key.to_string(),
            value: if remove {
                String::new()
            } else {
                raw.value.clone()
            },
        });
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(m: &str, k: &str, v: &str) -> MetadataWrite {
        MetadataWrite {
            machine_id: m.into(),
            key: k.into(),
            value: v.into(),
        }
    }

    fn err(body: &str) -> PatchError {
        decode_patch(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn functional_test_add_and_nested_replace() {
        // TestMachinesPatchAddModify's body: a string value and the nested object form.
        let body = r#"[
            {"op":"add","path":"/m0/metadata/foo","value":"bar"},
            {"op":"replace","path":"/m1/metadata/ping","value":{"value":"splat"}}
        ]"#;
        assert_eq!(
            decode_patch(body.as_bytes()).unwrap(),
            vec![write("m0", "foo", "bar"), write("m1", "ping", "splat")]
        );
    }

    #[test]
    fn functional_test_wire_shape() {
        // The functional tests' struct has an untagged `Value ValueType` field, so Go sends the
        // key as "Value" around an object with "value".
        let body = r#"[{"op":"add","path":"/m0/metadata/foo","Value":{"value":"bar"}}]"#;
        assert_eq!(
            decode_patch(body.as_bytes()).unwrap(),
            vec![write("m0", "foo", "bar")]
        );
    }

    #[test]
    fn keys_are_case_insensitive_in_both_value_shapes() {
        let body = r#"[{"OP":"add","Path":"/m/metadata/k","Value":{"Value":"v"}},
                       {"op":"add","path":"/m/metadata/k2","VALUE":"w"}]"#;
        assert_eq!(
            decode_patch(body.as_bytes()).unwrap(),
            vec![write("m", "k", "v"), write("m", "k2", "w")]
        );
    }

    #[test]
    fn remove_writes_a_tombstone_and_ignores_a_value() {
        let body = r#"[{"op":"remove","path":"/m0/metadata/nope"},
                       {"op":"remove","path":"/m1/metadata/x","value":"ignored"}]"#;
        assert_eq!(
            decode_patch(body.as_bytes()).unwrap(),
            vec![write("m0", "nope", ""), write("m1", "x", "")]
        );
    }

    #[test]
    fn functional_test_bad_ops() {
        // TestMachinesPatchBad: op noop; path without /metadata/; bad path and empty value.
        let e = err(r#"[{"op":"noop","path":"/m/metadata/a","value":"b"}]"#);
        assert_eq!(e.to_string(), "invalid op: expect add, remove, or replace");
        assert_eq!(e.status(), 400);
        assert_eq!(
            err(r#"[{"op":"add","path":"/m/foo","value":"b"}]"#).to_string(),
            "machine metadata path invalid"
        );
        // The path is checked before the value.
        assert_eq!(
            err(r#"[{"op":"add","path":"/m/foo"}]"#).to_string(),
            "machine metadata path invalid"
        );
        assert_eq!(
            err(r#"[{"op":"replace","path":"/m/metadata/a","value":""}]"#).to_string(),
            "invalid value: add and replace require a value"
        );
        assert_eq!(
            err(r#"[{"op":"add","path":"/m/metadata/a","value":{"value":""}}]"#).to_string(),
            "invalid value: add and replace require a value"
        );
        assert_eq!(
            err(r#"[{"op":"add","path":"/m/metadata/a","value":{}}]"#).to_string(),
            "invalid value: add and replace require a value"
        );
    }

    #[test]
    fn ops_are_case_sensitive() {
        assert!(matches!(
            err(r#"[{"op":"ADD","path":"/m/metadata/a","value":"b"}]"#),
            PatchError::InvalidOp { index: 0, .. }
        ));
    }

    #[test]
    fn one_bad_op_refuses_the_whole_patch() {
        let e = err(r#"[{"op":"add","path":"/m/metadata/a","value":"b"},
                       {"op":"add","path":"/m/metadata/a b","value":"c"}]"#);
        assert_eq!(
            e,
            PatchError::InvalidPath {
                index: 1,
                path: "/m/metadata/a b".into()
            }
        );
    }

    #[test]
    fn null_body_and_empty_array_are_no_writes() {
        assert_eq!(decode_patch(b"null").unwrap(), vec![]);
        assert_eq!(decode_patch(b"[]").unwrap(), vec![]);
        // A null op is Go's zero op, whose empty op name is invalid.
        assert!(matches!(err("[null]"), PatchError::InvalidOp { .. }));
    }

    #[test]
    fn decode_errors() {
        assert_eq!(err("").to_string(), "EOF");
        assert_eq!(
            err(r#"{"op":"add"}"#).to_string(),
            "json: cannot unmarshal object into Go value of type []api.machineMetadataOp"
        );
        assert_eq!(
            err(r#"["add"]"#).to_string(),
            "json: cannot unmarshal string into Go value of type api.machineMetadataOp"
        );
        assert_eq!(
            err(r#"[{"op":"add","path":"/m/metadata/a","value":5}]"#).to_string(),
            "json: cannot unmarshal number into Go struct field machineMetadataOp.value of type string"
        );
        assert_eq!(
            err(r#"[{"op":"add","path":"/m/metadata/a","value":{"value":true}}]"#).to_string(),
            "json: cannot unmarshal bool into Go struct field machineMetadataOp.value.value of type string"
        );
        assert!(matches!(err("[{"), PatchError::Decode(_)));
    }

    #[test]
    fn metadata_path_matches_fleets_regex() {
        assert_eq!(parse_metadata_path("/m0/metadata/foo"), Some(("m0", "foo")));
        assert_eq!(
            parse_metadata_path("/113f16a7/metadata/Az_09.-x"),
            Some(("113f16a7", "Az_09.-x"))
        );
        // `[^/]+` takes anything but '/', including spaces and non-ASCII.
        assert_eq!(parse_metadata_path("/a b€/metadata/k"), Some(("a b€", "k")));
        for bad in [
            "",
            "/",
            "m/metadata/k",
            "//metadata/k",
            "/m/metadata/",
            "/m/metadata",
            "/m/metadata/k/",
            "/m/metadata/k/x",
            "/m/Metadata/k",
            "/m/x/metadata/k",
            "/m/metadata/k\n",
            "/m/metadata/ké",
            "/m/metadata/k:v",
            // Segments etcd would clean away (the write would land elsewhere).
            "/../metadata/k",
            "/./metadata/k",
            "/m/metadata/..",
            "/m/metadata/.",
        ] {
            assert_eq!(parse_metadata_path(bad), None, "{bad:?}");
        }
    }
}
