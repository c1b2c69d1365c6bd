use super::*;
use crate::unit;

const JSON: &[&str] = &["application/json"];

fn sleep_options_json() -> &'static str {
    r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 100"}]"#
}

/// A PUT body with `desiredState` and the options of [`sleep_unit`].
fn launch_body(desired_state: &str) -> String {
    format!(
        r#"{{"desiredState":"{desired_state}","options":{}}}"#,
        sleep_options_json()
    )
}

fn sleep_unit() -> UnitFile {
    UnitFile::from_options(vec![unit::UnitOption::new(
        "Service",
        "ExecStart",
        "/bin/sleep 100",
    )])
}

fn existing(desired: TargetState) -> ExistingUnit {
    ExistingUnit {
        hash: sleep_unit().hash(),
        desired_state: desired,
    }
}

fn put(name: &str, body: &str, found: Option<&ExistingUnit>) -> Result<PutDecision, PutError> {
    put_unit(name, JSON, body.as_bytes(), found)
}

fn err(name: &str, body: &str, found: Option<&ExistingUnit>) -> (u16, String) {
    let e = put(name, body, found).unwrap_err();
    (e.status(), e.to_string())
}

#[test]
fn content_type_must_be_exactly_one_json() {
    let body = br#"{"desiredState":"loaded"}"#;
    let e = put_unit("a.service", &[], body, None).unwrap_err();
    assert_eq!(
        (e.status(), e.to_string()),
        (415, "expected 1 Content-Type, got 0".into())
    );
    let e = put_unit(
        "a.service",
        &["application/json", "application/json"],
        body,
        None,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "expected 1 Content-Type, got 2");
    for bad in [
        "text/plain",
        "application/json-patch",
        "Application/JSON",
        "",
    ] {
        let e = put_unit("a.service", &[bad], body, None).unwrap_err();
        assert_eq!(
            (e.status(), e.to_string()),
            (
                415,
                "only acceptable Content-Type is application/json".into()
            ),
            "{bad:?}"
        );
    }
    for good in [
        "application/json; charset=utf-8",
        " application/json ;x",
        "application/json;",
    ] {
        assert_eq!(check_content_type(&[good]), Ok(()), "{good:?}");
    }
}

#[test]
fn body_decode_errors_are_400() {
    assert_eq!(
        err("a.service", "", None),
        (400, "unable to decode body: EOF".into())
    );
    let (status, msg) = err("a.service", "{nope", None);
    assert_eq!(status, 400);
    assert!(msg.starts_with("unable to decode body: "), "{msg}");
    assert_eq!(
        err("a.service", "[]", None).1,
        "unable to decode body: json: cannot unmarshal array into Go value of type schema.Unit"
    );
    assert_eq!(
        err("a.service", r#"{"desiredState":1}"#, None).1,
        "unable to decode body: json: cannot unmarshal number into Go struct field Unit.desiredState of type string"
    );
    assert_eq!(
        err("a.service", r#"{"options":{}}"#, None).1,
        "unable to decode body: json: cannot unmarshal object into Go struct field Unit.options of type []*schema.UnitOption"
    );
    assert_eq!(
        err("a.service", r#"{"options":[null]}"#, None).1,
        "unable to decode body: json: null in unit options"
    );
    // A type error anywhere wins over a null option, as Go's decoder reported it first.
    assert_eq!(
        err("a.service", r#"{"options":[null],"name":5}"#, None).1,
        "unable to decode body: json: cannot unmarshal number into Go struct field Unit.name of type string"
    );
    // A later `options` member replaces an earlier one, nulls included.
    let body = format!(r#"{{"options":[null],"Options":{}}}"#, sleep_options_json());
    assert!(put("a.service", &body, None).is_ok());
    assert_eq!(
        err("a.service", r#"{"options":[{"value":false}]}"#, None).1,
        "unable to decode body: json: cannot unmarshal bool into Go struct field UnitOption.value of type string"
    );
}

#[test]
fn repeated_members_apply_in_order() {
    // The last member naming a field wins; null leaves a string as it was (checked against Go).
    let unit =
        decode_unit(br#"{"desiredstate":"loaded","DesiredState":null,"name":"a","Name":"b"}"#)
            .unwrap();
    assert_eq!(unit.desired_state, "loaded");
    assert_eq!(unit.name, "b");
    // An exact key and a case-folded one name the same field.
    let unit = decode_unit(br#"{"name":"x","NAME":"y"}"#).unwrap();
    assert_eq!(unit.name, "y");
    // `options: null` clears earlier options.
    let unit = decode_unit(br#"{"options":[{"name":"N"}],"options":null}"#).unwrap();
    assert!(unit.options.is_empty());
}

#[test]
fn body_decodes_go_style() {
    // Keys are case-insensitive, unknown keys ignored, trailing bytes after the value ignored.
    let unit = decode_unit(
        br#"{"Name":"a.service","DESIREDSTATE":"loaded","extra":[1],
             "Options":[{"Section":"Service","NAME":"ExecStart","Value":"/bin/true"}]} tail"#,
    )
    .unwrap();
    assert_eq!(unit.name, "a.service");
    assert_eq!(unit.desired_state, "loaded");
    assert_eq!(
        unit.options,
        [UnitOption {
            name: "ExecStart".into(),
            section: "Service".into(),
            value: "/bin/true".into()
        }]
    );
    assert_eq!(decode_unit(b"null").unwrap(), Unit::default());
}

#[test]
fn names_must_agree_and_be_valid() {
    assert_eq!(
        err(
            "a.service",
            r#"{"name":"b.service","desiredState":"loaded"}"#,
            None
        ),
        (
            400,
            r#"name in URL "a.service" differs from unit name in request body "b.service""#.into()
        )
    );
    assert_eq!(
        err("a.bogus", r#"{"desiredState":"loaded"}"#, None),
        (400, r#"invalid unit type: "bogus""#.into())
    );
    assert_eq!(
        err("", r#"{"desiredState":"loaded"}"#, None),
        (400, "unit name cannot be empty".into())
    );
    assert_eq!(
        err("a@b.device", r#"{"desiredState":"loaded"}"#, None),
        (400, r#"invalid unit type for template: "device""#.into())
    );
    // An empty body name means the URL's; a matching one is fine.
    let body = format!(
        r#"{{"name":"a.service","options":{}}}"#,
        sleep_options_json()
    );
    assert!(put("a.service", &body, None).is_ok());
}

#[test]
fn create_new_unit() {
    let body = format!(r#"{{"options":{}}}"#, sleep_options_json());
    let d = put("a.service", &body, None).unwrap();
    assert_eq!(
        d,
        PutDecision::Create {
            name: "a.service".into(),
            unit: sleep_unit(),
            desired_state: TargetState::Inactive,
            replace: false,
        }
    );
    assert_eq!(d.status(), 201);
    let body = launch_body("launched");
    assert!(matches!(
        put("a.service", &body, None).unwrap(),
        PutDecision::Create {
            desired_state: TargetState::Launched,
            ..
        }
    ));
}

#[test]
fn create_needs_options_and_valid_ones() {
    assert_eq!(
        err("a.service", r#"{"desiredState":"launched"}"#, None),
        (409, "unit does not exist and options field empty".into())
    );
    assert_eq!(
        err("a.service", r#"{"options":[]}"#, None),
        (409, "unit does not exist and options field empty".into())
    );
    let body = r#"{"options":[
        {"section":"X-Fleet","name":"MachineID","value":"abc"},
        {"section":"X-Fleet","name":"Global","value":"true"}]}"#;
    assert_eq!(
        err("a.service", body, None),
        (400, "MachineID cannot be used with Global".into())
    );
}

#[test]
fn create_refuses_bad_desired_state_and_active_templates() {
    // fleet answered 500 for a bad state on create; flt says 400.
    let body = launch_body("running");
    assert_eq!(
        err("a.service", &body, None),
        (
            400,
            r#"invalid desiredState "running": expected inactive, loaded or launched"#.into()
        )
    );
    // fleet let a template be created launched; flt refuses it.
    let body = launch_body("launched");
    assert_eq!(
        err("hello@.service", &body, None),
        (400, r#"cannot activate template "hello@.service""#.into())
    );
    let body = launch_body("inactive");
    assert!(put("hello@.service", &body, None).is_ok());
    // An instance is an ordinary unit.
    let body = launch_body("launched");
    assert!(put("hello@1.service", &body, None).is_ok());
}

#[test]
fn replace_when_options_differ() {
    let found = existing(TargetState::Launched);
    let body = r#"{"options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 200"}]}"#;
    let d = put("a.service", body, Some(&found)).unwrap();
    let PutDecision::Create {
        desired_state,
        replace,
        unit,
        ..
    } = &d
    else {
        panic!("{d:?}")
    };
    // Replacing resets the desired state to inactive unless one is given.
    assert_eq!(*desired_state, TargetState::Inactive);
    assert!(*replace);
    assert_eq!(unit.serialize(), "[Service]\nExecStart=/bin/sleep 200\n");
    assert_eq!(d.status(), 201);
    let body = r#"{"desiredState":"loaded","options":[{"section":"Service","name":"ExecStart","value":"x"}]}"#;
    assert!(matches!(
        put("a.service", body, Some(&found)).unwrap(),
        PutDecision::Create {
            desired_state: TargetState::Loaded,
            replace: true,
            ..
        }
    ));
    // As in fleet, a replace does not re-run option validation.
    let body = r#"{"options":[
        {"section":"X-Fleet","name":"MachineID","value":"abc"},
        {"section":"X-Fleet","name":"Global","value":"true"}]}"#;
    assert!(put("a.service", body, Some(&found)).is_ok());
    // But the desired state is still checked.
    let body = r#"{"desiredState":"up","options":[{"section":"S","name":"N","value":"x"}]}"#;
    assert_eq!(err("a.service", body, Some(&found)).0, 400);
}

#[test]
fn update_desired_state_of_existing_unit() {
    let found = existing(TargetState::Inactive);
    let d = put("a.service", r#"{"desiredState":"launched"}"#, Some(&found)).unwrap();
    assert_eq!(
        d,
        PutDecision::SetDesiredState {
            name: "a.service".into(),
            desired_state: TargetState::Launched,
            unchanged: false,
        }
    );
    assert_eq!(d.status(), 204);
    // Identical options count as no options.
    let body = launch_body("inactive");
    assert_eq!(
        put("a.service", &body, Some(&found)).unwrap(),
        PutDecision::SetDesiredState {
            name: "a.service".into(),
            desired_state: TargetState::Inactive,
            unchanged: true,
        }
    );
}

#[test]
fn update_errors() {
    let found = existing(TargetState::Loaded);
    assert_eq!(
        err("a.service", "{}", Some(&found)),
        (
            409,
            "must provide DesiredState to update existing unit".into()
        )
    );
    let body = format!(r#"{{"options":{}}}"#, sleep_options_json());
    assert_eq!(
        err("a.service", &body, Some(&found)),
        (
            409,
            "must provide DesiredState to update existing unit".into()
        )
    );
    // fleet stored any string here; flt refuses it.
    assert_eq!(
        err("a.service", r#"{"desiredState":"Launched"}"#, Some(&found)),
        (
            400,
            r#"invalid desiredState "Launched": expected inactive, loaded or launched"#.into()
        )
    );
    assert_eq!(
        err("x@.service", r#"{"desiredState":"loaded"}"#, Some(&found)),
        (400, r#"cannot activate template "x@.service""#.into())
    );
    assert!(put("x@.service", r#"{"desiredState":"inactive"}"#, Some(&found)).is_ok());
}

/// flt refuses new units named `_…` (etcd v2 hides such keys from watches) but keeps one that
/// exists from before the rule manageable.
#[test]
fn a_leading_underscore_is_refused_for_new_units_only() {
    let body = launch_body("launched");
    assert_eq!(
        err("_x.service", &body, None),
        (
            400,
            r#"unit name cannot start in "_" (etcd hides such keys from watches)"#.into()
        )
    );
    let found = existing(TargetState::Launched);
    assert_eq!(
        put("_x.service", r#"{"desiredState":"inactive"}"#, Some(&found)).unwrap(),
        PutDecision::SetDesiredState {
            name: "_x.service".into(),
            desired_state: TargetState::Inactive,
            unchanged: false,
        }
    );
}

#[test]
fn checks_run_in_fleets_order() {
    // Content type before body, body before names, names before the registry facts.
    let e = put_unit("bad", &["text/plain"], b"{", None).unwrap_err();
    assert_eq!(e.status(), 415);
    let e = put_unit("bad", JSON, b"{", None).unwrap_err();
    assert!(matches!(e, PutError::Decode(_)));
    let e = put_unit("bad", JSON, br#"{"name":"other"}"#, None).unwrap_err();
    assert!(matches!(e, PutError::NameMismatch { .. }));
    let e = put_unit("bad", JSON, b"{}", None).unwrap_err();
    assert!(matches!(e, PutError::InvalidName(_)));
}

#[test]
fn body_limit_error() {
    assert_eq!(MAX_BODY_BYTES, 1_048_576);
    assert_eq!(PutError::BodyTooLarge.status(), 413);
    assert_eq!(
        PutError::BodyTooLarge.to_string(),
        "request body exceeds the maximum of 1048576 bytes"
    );
}
