//! Decoding request bodies the way Go's `encoding/json` decoded them for fleet: only the first
//! JSON value of the body counts (trailing bytes are ignored); an object's members are applied in
//! document order, each to the field its key names (exactly, else ignoring ASCII case), so a
//! repeated key's last value wins; unknown keys are ignored; `null` leaves a string as it was;
//! and any type mismatch fails the whole decode.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A JSON value that keeps an object's members in document order, duplicates included, which
/// Go's field-by-field decoding depends on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum GoValue {
    Null,
    Bool,
    Number,
    String(String),
    Array(Vec<GoValue>),
    Object(Vec<(String, GoValue)>),
}

impl<'de> Deserialize<'de> for GoValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GoValue, D::Error> {
        deserializer.deserialize_any(GoValueVisitor)
    }
}

struct GoValueVisitor;

impl<'de> Visitor<'de> for GoValueVisitor {
    type Value = GoValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<GoValue, E> {
        Ok(GoValue::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<GoValue, E> {
        Ok(GoValue::Bool)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<GoValue, E> {
        Ok(GoValue::Number)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<GoValue, E> {
        Ok(GoValue::Number)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<GoValue, E> {
        Ok(GoValue::Number)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<GoValue, E> {
        Ok(GoValue::String(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<GoValue, E> {
        Ok(GoValue::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GoValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(GoValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoValue, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, GoValue>()? {
            members.push(member);
        }
        Ok(GoValue::Object(members))
    }
}

/// Why a body could not be decoded. Displays like Go's decoder where that is cheap to match
/// (`EOF`, type mismatches); syntax errors carry serde_json's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first JSON value in `body`. An empty (or all-whitespace) body is Go's `EOF`.
pub(crate) fn first_value(body: &[u8]) -> Result<GoValue, DecodeError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<GoValue>();
    match stream.next() {
        None => Err(DecodeError("EOF".to_string())),
        Some(Err(e)) if e.is_eof() => Err(DecodeError("unexpected EOF".to_string())),
        Some(Err(e)) => Err(DecodeError(e.to_string())),
        Some(Ok(v)) => Ok(v),
    }
}

/// Go's name for the JSON type of `value`, as in `cannot unmarshal <kind> into …`.
pub(crate) fn kind(value: &GoValue) -> &'static str {
    match value {
        GoValue::Null => "null",
        GoValue::Bool => "bool",
        GoValue::Number => "number",
        GoValue::String(_) => "string",
        GoValue::Array(_) => "array",
        GoValue::Object(_) => "object",
    }
}

/// Go's type-mismatch message.
pub(crate) fn type_error(value: &GoValue, target: &str) -> DecodeError {
    DecodeError(format!(
        "json: cannot unmarshal {} into {target}",
        kind(value)
    ))
}

/// Go's struct decoding: for each member of `members` in order whose key names one of `fields`
/// (exactly, else ignoring ASCII case), calls `apply(index of the field, value)`.
pub(crate) fn for_each_field<'a>(
    members: &'a [(String, GoValue)],
    fields: &[&str],
    mut apply: impl FnMut(usize, &'a GoValue) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    for (key, value) in members {
        let field = fields
            .iter()
            .position(|f| f == key)
            .or_else(|| fields.iter().position(|f| f.eq_ignore_ascii_case(key)));
        if let Some(field) = field {
            apply(field, value)?;
        }
    }
    Ok(())
}

/// Assigns a JSON value to a Go string field: a string replaces it, `null` leaves it, anything
/// else is a type error naming `go_field` (`Struct.field`).
pub(crate) fn assign_string(
    target: &mut String,
    value: &GoValue,
    go_field: &str,
) -> Result<(), DecodeError> {
    match value {
        GoValue::Null => Ok(()),
        GoValue::String(s) => {
            target.clone_from(s);
            Ok(())
        }
        other => Err(type_error(
            other,
            &format!("Go struct field {go_field} of type string"),
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

    fn object(body: &str) -> Vec<(String, GoValue)> {
        match first_value(body.as_bytes()).unwrap() {
            GoValue::Object(members) => members,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a.service"), r#""a.service""#);
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
    }

    #[test]
    fn only_the_first_value_counts() {
        assert_eq!(
            object(r#"{"a":"x"} trailing junk"#),
            vec![("a".to_string(), GoValue::String("x".into()))]
        );
    }

    #[test]
    fn members_keep_order_and_duplicates() {
        let members = object(r#"{"b":1,"a":[null,true],"b":{"c":"d"}}"#);
        assert_eq!(
            members,
            vec![
                ("b".to_string(), GoValue::Number),
                (
                    "a".to_string(),
                    GoValue::Array(vec![GoValue::Null, GoValue::Bool])
                ),
                (
                    "b".to_string(),
                    GoValue::Object(vec![("c".to_string(), GoValue::String("d".into()))])
                ),
            ]
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
    fn fields_match_exactly_or_ignoring_case_in_document_order() {
        let members = object(r#"{"NAME":"upper","x":1,"name":"exact","Name":null}"#);
        let mut name = String::new();
        let mut seen = Vec::new();
        for_each_field(&members, &["name"], |field, value| {
            seen.push(field);
            assign_string(&mut name, value, "Unit.name")
        })
        .unwrap();
        // Three members name the field; null leaves the last string in place.
        assert_eq!(seen, [0, 0, 0]);
        assert_eq!(name, "exact");
    }

    #[test]
    fn strings_take_strings_keep_on_null_and_refuse_other_types() {
        let mut s = "kept".to_string();
        assign_string(&mut s, &GoValue::Null, "Unit.name").unwrap();
        assert_eq!(s, "kept");
        assert_eq!(
            assign_string(&mut s, &GoValue::Number, "UnitOption.section")
                .unwrap_err()
                .0,
            "json: cannot unmarshal number into Go struct field UnitOption.section of type string"
        );
    }
}
