//! Decoding request bodies the way Go's `encoding/json` decoded them for fleet: only the first
//! JSON value of the body counts (trailing bytes are ignored), object keys match struct fields
//! case-insensitively, unknown keys are ignored, and `null` leaves a field at its zero value.

use serde_json::{Map, Value};

/// Why a body could not be decoded. Displays like Go's decoder where that is cheap to match
/// (`EOF`, type mismatches); syntax errors carry serde_json's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first JSON value in `body`. An empty (or all-whitespace) body is Go's `EOF`.
pub(crate) fn first_value(body: &[u8]) -> Result<Value, DecodeError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match stream.next() {
        None => Err(DecodeError("EOF".to_string())),
        Some(Err(e)) if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) => {
            Err(DecodeError("EOF".to_string()))
        }
        Some(Err(e)) if e.is_eof() => Err(DecodeError("unexpected EOF".to_string())),
        Some(Err(e)) => Err(DecodeError(e.to_string())),
        Some(Ok(v)) => Ok(v),
    }
}

/// Go's name for the JSON type of `value`, as in `cannot unmarshal <kind> into …`.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's type-mismatch message.
pub(crate) fn type_error(value: &Value, target: &str) -> DecodeError {
    DecodeError(format!(
        "json: cannot unmarshal {} into {target}",
        kind(value)
    ))
}

/// The member of `object` that Go would assign to the field `field` (lowercase): an exact key
/// wins, otherwise the first key that equals it ignoring ASCII case.
pub(crate) fn member<'a>(object: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    object.get(field).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)
    })
}

/// A string field: absent or `null` is empty; anything but a string is a type error.
pub(crate) fn string_member(
    object: &Map<String, Value>,
    field: &str,
    go_struct: &str,
) -> Result<String, DecodeError> {
    match member(object, field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(type_error(
            other,
            &format!("Go struct field {go_struct}.{field} of type string"),
        )),
    }
}

/// Go's `%q` for the strings the API quotes in messages (unit names): `"` and `\` escaped,
/// ASCII controls as Go writes them, everything else verbatim.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a.service"), r#""a.service""#);
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
    }

    #[test]
    fn only_the_first_value_counts() {
        assert_eq!(
            first_value(br#"{"a":1} trailing junk"#).unwrap(),
            serde_json::json!({"a": 1})
        );
    }

    #[test]
    fn empty_body_is_eof_and_truncated_body_is_unexpected_eof() {
        assert_eq!(first_value(b"").unwrap_err().0, "EOF");
        assert_eq!(first_value(b"  \n").unwrap_err().0, "EOF");
        assert_eq!(first_value(b"{\"a\":").unwrap_err().0, "unexpected EOF");
        assert!(first_value(b"}").unwrap_err().0.contains("line 1 column 1"));
    }

    #[test]
    fn members_match_case_insensitively_preferring_exact() {
        let v = serde_json::json!({"NAME": "upper", "Value": "v"});
        let Value::Object(map) = v else { panic!() };
        assert_eq!(member(&map, "name"), Some(&Value::from("upper")));
        let v = serde_json::json!({"NAME": "upper", "name": "exact"});
        let Value::Object(map) = v else { panic!() };
        assert_eq!(member(&map, "name"), Some(&Value::from("exact")));
        assert_eq!(member(&map, "missing"), None);
    }

    #[test]
    fn string_members_follow_go_zero_values_and_type_errors() {
        let v = serde_json::json!({"name": null, "section": 5});
        let Value::Object(map) = v else { panic!() };
        assert_eq!(string_member(&map, "name", "Unit").unwrap(), "");
        assert_eq!(string_member(&map, "value", "Unit").unwrap(), "");
        assert_eq!(
            string_member(&map, "section", "UnitOption").unwrap_err().0,
            "json: cannot unmarshal number into Go struct field UnitOption.section of type string"
        );
    }
}
