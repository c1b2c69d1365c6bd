//! `PUT /units/<name>`: create, replace, or change the desired state of a unit.
//!
//! The decision is pure. The front end checks the body size against [`MAX_BODY_BYTES`] (413),
//! then calls [`decode_put`] (content type, body, names: no registry needed), looks the unit up,
//! and calls [`decide_put`] with what it found; [`put_unit`] does both steps when the lookup has
//! already been made. A registry failure during the lookup is the front end's 500.
//!
//! fleet v1.0.0's tree is followed with two fixes (spec §12 item 5): a `desiredState` other than
//! `inactive`, `loaded` or `launched` is refused with 400 (fleet stored it, or answered 500 on
//! create), and a template cannot be activated when it is created either (fleet only refused it
//! on update). As in fleet, a replace (existing unit, different options) does not re-run option
//! validation.

use super::entities::{Unit, UnitOption, unit_file_from_options};
use super::go_json::{self, DecodeError, GoValue};
use crate::registry::records::TargetState;
use crate::unit::{NameError, UnitFile, UnitHash, UnitNameInfo, validate_name, validate_options};
use std::fmt;

/// The largest request body the API reads; a larger one is answered 413 without decoding.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// What the registry holds for the unit named in the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExistingUnit {
    /// The hash of its unit file.
    pub hash: UnitHash,
    /// Its current desired (target) state.
    pub desired_state: TargetState,
}

/// A decoded, name-checked PUT body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRequest {
    /// The unit name (the URL's, which the body's agrees with).
    pub name: String,
    /// `desiredState` as sent (empty if absent).
    pub desired_state: String,
    /// `options` as sent.
    pub options: Vec<UnitOption>,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutDecision {
    /// 201, no body: write the unit file and the unit with this desired state. `replace` is true
    /// when a unit with different content existed (it is overwritten, and its desired state
    /// reset to the one given or `inactive`).
    Create {
        name: String,
        unit: UnitFile,
        desired_state: TargetState,
        replace: bool,
    },
    /// 204, no body: set the desired state of the existing unit. `unchanged` is true when it
    /// already has that state (the write may be skipped).
    SetDesiredState {
        name: String,
        desired_state: TargetState,
        unchanged: bool,
    },
}

impl PutDecision {
    /// The HTTP status of success.
    pub fn status(&self) -> u16 {
        match self {
            PutDecision::Create { .. } => 201,
            PutDecision::SetDesiredState { .. } => 204,
        }
    }
}

/// Why a PUT is refused. `status()` is the HTTP status; `Display` is the message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutError {
    /// 413: the body exceeds [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// 415: not exactly one `Content-Type` header.
    ContentTypeCount(usize),
    /// 415: a media type other than `application/json`.
    ContentType(String),
    /// 400: the body is not a JSON unit.
    Decode(String),
    /// 400: the body names another unit than the URL.
    NameMismatch { url: String, body: String },
    /// 400: fleet's unit name rules (the message is the rule's).
    InvalidName(String),
    /// 409: a new unit needs options.
    MissingOptions,
    /// 400: the options contradict each other (the message is the check's).
    InvalidOptions(String),
    /// 409: an update of an existing unit needs a desired state.
    MissingDesiredState,
    /// 400: not `inactive`, `loaded` or `launched`.
    InvalidDesiredState(String),
    /// 400: a template may only be `inactive`.
    TemplateActivation(String),
}

impl PutError {
    pub fn status(&self) -> u16 {
        match self {
            PutError::BodyTooLarge => 413,
            PutError::ContentTypeCount(_) | PutError::ContentType(_) => 415,
            PutError::MissingOptions | PutError::MissingDesiredState => 409,
            PutError::Decode(_)
            | PutError::NameMismatch { .. }
            | PutError::InvalidName(_)
            | PutError::InvalidOptions(_)
            | PutError::InvalidDesiredState(_)
            | PutError::TemplateActivation(_) => 400,
        }
    }
}

impl fmt::Display for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::BodyTooLarge => write!(
                f,
                "request body exceeds the maximum of {MAX_BODY_BYTES} bytes"
            ),
            PutError::ContentTypeCount(n) => write!(f, "expected 1 Content-Type, got {n}"),
            PutError::ContentType(_) => {
                f.write_str("only acceptable Content-Type is application/json")
            }
            PutError::Decode(e) => write!(f, "unable to decode body: {e}"),
            PutError::NameMismatch { url, body } => write!(
                f,
                "name in URL {} differs from unit name in request body {}",
                crate::goquote::quote(url),
                crate::goquote::quote(body)
            ),
            PutError::InvalidName(msg) | PutError::InvalidOptions(msg) => f.write_str(msg),
            PutError::MissingOptions => f.write_str("unit does not exist and options field empty"),
            PutError::MissingDesiredState => {
                f.write_str("must provide DesiredState to update existing unit")
            }
            PutError::InvalidDesiredState(state) => write!(
                f,
                "invalid desiredState {}: expected inactive, loaded or launched",
                crate::goquote::quote(state)
            ),
            PutError::TemplateActivation(name) => {
                write!(
                    f,
                    "cannot activate template {}",
                    crate::goquote::quote(name)
                )
            }
        }
    }
}

impl std::error::Error for PutError {}

/// Step 1: exactly one `Content-Type`, whose media type (before any `;`, trimmed) is
/// `application/json`.
pub fn check_content_type(values: &[&str]) -> Result<(), PutError> {
    let [value] = values else {
        return Err(PutError::ContentTypeCount(values.len()));
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type != "application/json" {
        return Err(PutError::ContentType((*value).to_string()));
    }
    Ok(())
}

/// Decodes a [`Unit`] the way Go did for fleet (see [`super::go_json`]).
pub fn decode_unit(body: &[u8]) -> Result<Unit, PutError> {
    decode_unit_value(body).map_err(|e| PutError::Decode(e.0))
}

fn decode_unit_value(body: &[u8]) -> Result<Unit, DecodeError> {
    let members = match go_json::first_value(body)? {
        GoValue::Null => return Ok(Unit::default()),
        GoValue::Object(members) => members,
        other => return Err(go_json::type_error(&other, "Go value of type schema.Unit")),
    };
    let mut unit = Unit::default();
    // A null option is refused only once the whole body decoded, so that a type error anywhere
    // wins as in Go; a later `options` member may also replace it.
    let mut options: Vec<Option<UnitOption>> = Vec::new();
    let fields = [
        "currentState",
        "desiredState",
        "machineID",
        "name",
        "options",
    ];
    go_json::for_each_field(&members, &fields, |field, value| match field {
        0 => go_json::assign_string(&mut unit.current_state, value, "Unit.currentState"),
        1 => go_json::assign_string(&mut unit.desired_state, value, "Unit.desiredState"),
        2 => go_json::assign_string(&mut unit.machine_id, value, "Unit.machineID"),
        3 => go_json::assign_string(&mut unit.name, value, "Unit.name"),
        _ => {
            options = decode_options(value)?;
            Ok(())
        }
    })?;
    unit.options = options
        .into_iter()
        .collect::<Option<Vec<_>>>()
        // fleet crashed on a null option; refuse it instead.
        .ok_or_else(|| DecodeError("json: null in unit options".to_string()))?;
    Ok(unit)
}

fn decode_options(value: &GoValue) -> Result<Vec<Option<UnitOption>>, DecodeError> {
    match value {
        // Go sets a slice to nil on null.
        GoValue::Null => Ok(Vec::new()),
        GoValue::Array(items) => items.iter().map(decode_option).collect(),
        other => Err(go_json::type_error(
            other,
            "Go struct field Unit.options of type []*schema.UnitOption",
        )),
    }
}

fn decode_option(value: &GoValue) -> Result<Option<UnitOption>, DecodeError> {
    match value {
        GoValue::Object(members) => {
            let mut option = UnitOption::default();
            go_json::for_each_field(members, &["name", "section", "value"], |field, v| {
                let (target, go_field) = match field {
                    0 => (&mut option.name, "UnitOption.name"),
                    1 => (&mut option.section, "UnitOption.section"),
                    _ => (&mut option.value, "UnitOption.value"),
                };
                go_json::assign_string(target, v, go_field)
            })?;
            Ok(Some(option))
        }
        GoValue::Null => Ok(None),
        other => Err(go_json::type_error(
            other,
            "Go value of type schema.UnitOption",
        )),
    }
}

/// Steps 1–4: content type, body, name agreement, name rules.
pub fn decode_put(
    url_name: &str,
    content_types: &[&str],
    body: &[u8],
) -> Result<PutRequest, PutError> {
    check_content_type(content_types)?;
    let unit = decode_unit(body)?;
    if !unit.name.is_empty() && unit.name != url_name {
        return Err(PutError::NameMismatch {
            url: url_name.to_string(),
            body: unit.name,
        });
    }
    match validate_name(url_name) {
        // Only new units are refused that name (see `decide_put`): one that exists from
        // before the rule must stay manageable.
        Ok(()) | Err(NameError::StartsWithUnderscore) => {}
        Err(e) => return Err(PutError::InvalidName(e.to_string())),
    }
    Ok(PutRequest {
        name: url_name.to_string(),
        desired_state: unit.desired_state,
        options: unit.options,
    })
}

/// A desired state as sent: empty means `inactive`; a template may only be `inactive`.
fn desired_state(request: &PutRequest) -> Result<TargetState, PutError> {
    let state = if request.desired_state.is_empty() {
        TargetState::Inactive
    } else {
        request
            .desired_state
            .parse()
            .map_err(|_| PutError::InvalidDesiredState(request.desired_state.clone()))?
    };
    let template = UnitNameInfo::parse(&request.name).is_some_and(|info| info.is_template());
    if template && state != TargetState::Inactive {
        return Err(PutError::TemplateActivation(request.name.clone()));
    }
    Ok(state)
}

/// Steps 5–6, given what the registry holds under the name.
pub fn decide_put(
    request: &PutRequest,
    existing: Option<&ExistingUnit>,
) -> Result<PutDecision, PutError> {
    let unit = unit_file_from_options(&request.options);
    match existing {
        None => {
            if let Err(e @ NameError::StartsWithUnderscore) = validate_name(&request.name) {
                return Err(PutError::InvalidName(e.to_string()));
            }
            if request.options.is_empty() {
                return Err(PutError::MissingOptions);
            }
            validate_options(&unit).map_err(|e| PutError::InvalidOptions(e.to_string()))?;
            Ok(PutDecision::Create {
                name: request.name.clone(),
                desired_state: desired_state(request)?,
                unit,
                replace: false,
            })
        }
        Some(existing) if !request.options.is_empty() && unit.hash() != existing.hash => {
            Ok(PutDecision::Create {
                name: request.name.clone(),
                desired_state: desired_state(request)?,
                unit,
                replace: true,
            })
        }
        Some(existing) => {
            if request.desired_state.is_empty() {
                return Err(PutError::MissingDesiredState);
            }
            let state = desired_state(request)?;
            Ok(PutDecision::SetDesiredState {
                name: request.name.clone(),
                desired_state: state,
                unchanged: state == existing.desired_state,
            })
        }
    }
}

/// The whole tree at once, for a caller that has already looked the unit up.
pub fn put_unit(
    url_name: &str,
    content_types: &[&str],
    body: &[u8],
    existing: Option<&ExistingUnit>,
) -> Result<PutDecision, PutError> {
    decide_put(&decode_put(url_name, content_types, body)?, existing)
}

#[cfg(test)]
mod tests;
