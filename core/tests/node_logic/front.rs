//! Every route, status and error of API v1 (spec §7) through `ApiFront`.

use crate::front_support::{Front, error_of, unit_file};
use flt_core::api::front::{ApiRequest, ApiRequestId};
use flt_core::registry::records::TargetState;
use serde_json::{Value, json};
use std::time::Duration;

const UNITS: &str = "/flt/v1/units";

fn hello_body(desired: &str) -> String {
    json!({
        "desiredState": desired,
        "options": [{"section": "Service", "name": "ExecStart", "value": "/bin/hello"}]
    })
    .to_string()
}

fn names(page: &Value, list: &str) -> Vec<String> {
    page[list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| u["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_path_is_503_until_the_registry_has_been_read() {
    let mut f = Front::unstarted(100);
    for (i, path) in ["/flt/v1/units", "/metrics", "/flt/v1/discovery", "/nowhere"]
        .into_iter()
        .enumerate()
    {
        let request = ApiRequest {
            method: "GET".into(),
            path: path.into(),
            ..ApiRequest::default()
        };
        f.front
            .handle_request(ApiRequestId(i as u64), request, f.now);
        let (id, answer) = f.front.poll_response().expect("answered at once");
        assert_eq!(id, ApiRequestId(i as u64));
        assert_eq!(answer.status, 503);
        assert_eq!(
            answer.body_text(),
            "flt server unable to communicate with etcd\n"
        );
    }
    assert!(!f.front.is_ready());
    f.pump();
    assert!(f.front.is_ready());
    let answer = f.request("GET", UNITS, "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body_text(), "{}");
}

#[test]
fn lists_250_units_in_pages_of_the_token_limit() {
    let mut f = Front::ready();
    for i in 0..250 {
        f.store_unit(
            &format!("u{i:03}.service"),
            &unit_file(&format!("/bin/u {i}")),
            TargetState::Loaded,
        );
    }
    f.pump();
    let mut seen = Vec::new();
    let mut path = UNITS.to_string();
    let mut pages = 0;
    loop {
        let page = f.get_json(&path);
        pages += 1;
        seen.extend(names(&page, "units"));
        match page["nextPageToken"].as_str() {
            Some(token) => path = format!("{UNITS}?nextPageToken={token}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..250).map(|i| format!("u{i:03}.service")).collect();
    assert_eq!(seen, want);
    let first = f.get_json(UNITS);
    assert_eq!(first["nextPageToken"], "ZAACAA==");
    assert_eq!(first["units"][0]["desiredState"], "loaded");
    assert_eq!(first["units"][0]["currentState"], "inactive");
    assert_eq!(
        first["units"][0]["options"],
        json!([{"name": "ExecStart", "section": "Service", "value": "/bin/u 0"}])
    );
}

#[test]
fn an_exactly_full_last_page_points_at_an_empty_page() {
    let mut f = Front::unstarted(2);
    f.pump();
    for name in ["a.service", "b.service"] {
        f.store_unit(name, &unit_file("/bin/x"), TargetState::Inactive);
    }
    f.pump();
    let page = f.get_json(UNITS);
    assert_eq!(names(&page, "units"), ["a.service", "b.service"]);
    let token = page["nextPageToken"].as_str().expect("a token").to_string();
    let answer = f.request("GET", &format!("{UNITS}?nextPageToken={token}"), "");
    assert_eq!(answer.body_text(), "{}");
}

#[test]
fn bad_page_tokens_are_400() {
    let mut f = Front::ready();
    let cases = [
        ("nextPageToken=EwBMLg==", "token limit must be 100"),
        (
            "nextPageToken=ZAACAA==&nextPageToken=ZAACAA==",
            "too many values for page token",
        ),
        (
            "nextPageToken=ZAAAAA==",
            "token page must be greater than zero",
        ),
    ];
    for list in ["/flt/v1/units", "/flt/v1/machines", "/flt/v1/state"] {
        for (query, message) in cases {
            let answer = f.request("GET", &format!("{list}?{query}"), "");
            assert_eq!(
                error_of(&answer),
                (400, message.to_string()),
                "{list}?{query}"
            );
        }
        let answer = f.request("GET", &format!("{list}?nextPageToken=!!"), "");
        assert_eq!(answer.status, 400);
    }
}

#[test]
fn get_unit_and_unknown_unit() {
    let mut f = Front::ready();
    f.store_unit(
        "hello.service",
        &unit_file("/bin/hello"),
        TargetState::Launched,
    );
    f.pump();
    let unit = f.get_json("/flt/v1/units/hello.service");
    assert_eq!(
        unit,
        json!({"currentState": "inactive", "desiredState": "launched", "name": "hello.service",
               "options": [{"name": "ExecStart", "section": "Service", "value": "/bin/hello"}]})
    );
    // The legacy prefix serves the same.
    assert_eq!(f.get_json("/v1-alpha/units/hello.service"), unit);
    let answer = f.request("GET", "/flt/v1/units/nope.service", "");
    assert_eq!(error_of(&answer), (404, "unit does not exist".into()));
}

#[test]
fn put_creates_a_unit_with_content_addressed_file_object_and_target_state() {
    let mut f = Front::ready();
    let answer = f.request(
        "PUT",
        "/flt/v1/units/hello.service",
        &hello_body("launched"),
    );
    assert_eq!(answer.status, 201, "{}", answer.body_text());
    assert!(answer.body.is_empty());
    assert_eq!(answer.content_type, None);
    let file = unit_file("/bin/hello");
    let ks = f.ks.clone();
    assert_eq!(
        f.etcd.value(&ks.unit(&file.hash())),
        Some(json!({"Raw": file.serialize()}).to_string().as_str())
    );
    assert!(f.etcd.value(&ks.job_object("hello.service")).is_some());
    assert_eq!(
        f.etcd.value(&ks.job_target_state("hello.service")),
        Some("launched")
    );
    // A second unit with the same content: the existing file is fine.
    let answer = f.request("PUT", "/flt/v1/units/again.service", &hello_body(""));
    assert_eq!(answer.status, 201);
    assert_eq!(
        f.etcd.value(&ks.job_target_state("again.service")),
        Some("inactive")
    );
    // Replace: different options overwrite the object and reset the desired state.
    let body =
        json!({"options": [{"section": "Service", "name": "ExecStart", "value": "/bin/v2"}]});
    let answer = f.request("PUT", "/flt/v1/units/hello.service", &body.to_string());
    assert_eq!(answer.status, 201);
    let unit = f.get_json("/flt/v1/units/hello.service");
    assert_eq!(unit["options"][0]["value"], "/bin/v2");
    assert_eq!(unit["desiredState"], "inactive");
}

#[test]
fn writes_are_visible_at_once_without_their_watch_events() {
    let mut f = Front::ready();
    f.hold_watch_events = true;
    let answer = f.request("PUT", "/flt/v1/units/hello.service", &hello_body("loaded"));
    assert_eq!(answer.status, 201);
    assert!(!f.held.is_empty(), "the watch events were held back");
    let unit = f.get_json("/flt/v1/units/hello.service");
    assert_eq!(unit["desiredState"], "loaded");
    let answer = f.request(
        "PUT",
        "/flt/v1/units/hello.service",
        &json!({"desiredState": "launched"}).to_string(),
    );
    assert_eq!(answer.status, 204);
    assert_eq!(f.get_json(UNITS)["units"][0]["desiredState"], "launched");
    let answer = f.request(
        "PATCH",
        "/flt/v1/machines",
        &json!([{"op": "add", "path": "/m1/metadata/role", "value": "web"}]).to_string(),
    );
    assert_eq!(answer.status, 204);
    let answer = f.request("DELETE", "/flt/v1/units/hello.service", "");
    assert_eq!(answer.status, 204);
    assert_eq!(f.get_json(UNITS), json!({}));
    // The late watch events change nothing.
    for response in std::mem::take(&mut f.held) {
        f.front.handle_response(response, f.now);
    }
    assert_eq!(f.get_json(UNITS), json!({}));
    assert_eq!(
        f.front.view().machines()["m1"].dynamic_metadata["role"],
        "web"
    );
}

#[test]
fn put_refusals_have_fleets_statuses_and_messages() {
    let mut f = Front::ready();
    let path = "/flt/v1/units/hello.service";
    let body = hello_body("launched");
    let cases: Vec<(&[&str], String, u64, &str)> = vec![
        (&[], body.clone(), 415, "expected 1 Content-Type, got 0"),
        (
            &["application/json", "application/json"],
            body.clone(),
            415,
            "expected 1 Content-Type, got 2",
        ),
        (
            &["text/plain"],
            body.clone(),
            415,
            "only acceptable Content-Type is application/json",
        ),
        (
            &["application/json"],
            json!({"desiredState": "launched"}).to_string(),
            409,
            "unit does not exist and options field empty",
        ),
        (
            &["application/json"],
            json!({"name": "other.service", "desiredState": "launched"}).to_string(),
            400,
            "name in URL \"hello.service\" differs from unit name in request body \"other.service\"",
        ),
        (&["application/json"], hello_body("running"), 400, ""),
    ];
    for (types, body, code, message) in cases {
        let answer = f.request_typed("PUT", path, types, &body);
        let (got_code, got_message) = error_of(&answer);
        assert_eq!(got_code, code, "{body}: {got_message}");
        if !message.is_empty() {
            assert_eq!(got_message, message);
        }
    }
    let answer = f.request_typed("PUT", path, &["application/json; charset=utf-8"], "{");
    let (code, message) = error_of(&answer);
    assert_eq!(code, 400);
    assert!(message.starts_with("unable to decode body: "), "{message}");
    let answer = f.request("PUT", "/flt/v1/units/bad", &hello_body(""));
    assert_eq!(error_of(&answer).0, 400, "no unit suffix");
    // Templates cannot be activated, on create or update.
    let answer = f.request("PUT", "/flt/v1/units/web@.service", &hello_body("launched"));
    assert_eq!(
        error_of(&answer),
        (400, "cannot activate template \"web@.service\"".into())
    );
    assert_eq!(
        f.request("PUT", "/flt/v1/units/web@.service", &hello_body(""))
            .status,
        201
    );
    let answer = f.request(
        "PUT",
        "/flt/v1/units/web@.service",
        &json!({"desiredState": "loaded"}).to_string(),
    );
    assert_eq!(error_of(&answer).0, 400);
    // Updates of an existing unit need a (valid) desired state.
    assert_eq!(f.request("PUT", path, &body).status, 201);
    let answer = f.request("PUT", path, "{}");
    assert_eq!(
        error_of(&answer),
        (
            409,
            "must provide DesiredState to update existing unit".into()
        )
    );
    let answer = f.request("PUT", path, &json!({"desiredState": "running"}).to_string());
    assert_eq!(error_of(&answer).0, 400);
    assert_eq!(
        f.etcd.value(&f.ks.job_target_state("hello.service")),
        Some("launched"),
        "nothing written by refused requests"
    );
    let answer = f.request("PUT", path, &json!({"desiredState": "loaded"}).to_string());
    assert_eq!(answer.status, 204);
    assert_eq!(
        f.etcd.value(&f.ks.job_target_state("hello.service")),
        Some("loaded")
    );
    let big = "x".repeat(2 << 20);
    assert_eq!(f.request("PUT", path, &big).status, 413);
}

#[test]
fn delete_destroys_the_job_and_missing_units_are_404() {
    let mut f = Front::ready();
    f.store_unit(
        "hello.service",
        &unit_file("/bin/hello"),
        TargetState::Launched,
    );
    f.pump();
    let answer = f.request("DELETE", "/flt/v1/units/hello.service", "");
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());
    assert_eq!(answer.content_type, None);
    assert!(!f.etcd.exists(&f.ks.job_dir("hello.service")));
    assert!(
        f.etcd.exists(&f.ks.unit(&unit_file("/bin/hello").hash())),
        "unit files stay"
    );
    let answer = f.request("DELETE", "/flt/v1/units/hello.service", "");
    assert_eq!(error_of(&answer), (404, "unit does not exist".into()));
    assert_eq!(
        error_of(&f.request("GET", "/flt/v1/units/hello.service", "")).0,
        404
    );
}

#[test]
fn registry_failures_and_silence_are_500_saying_what_failed() {
    let mut f = Front::ready();
    f.etcd.set_down(true);
    // fleet's message was empty; flt says what failed.
    let refused = "registry write failed: registry unreachable: connection refused";
    let answer = f.request("PUT", "/flt/v1/units/hello.service", &hello_body(""));
    assert_eq!(error_of(&answer), (500, refused.into()));
    let answer = f.request("DELETE", "/flt/v1/units/hello.service", "");
    assert_eq!(error_of(&answer), (500, refused.into()));
    // PATCH passes the registry's message on, as fleet.
    let patch = json!([{"op": "add", "path": "/m1/metadata/a", "value": "b"}]).to_string();
    let answer = f.request("PATCH", "/flt/v1/machines", &patch);
    assert_eq!(
        error_of(&answer),
        (500, "registry unreachable: connection refused".into())
    );
    // Reads keep being answered from the view.
    assert_eq!(f.request("GET", UNITS, "").status, 200);
}

#[test]
fn an_unanswered_write_is_500_after_the_request_timeout() {
    let mut f = Front::ready();
    f.front.handle_request(
        ApiRequestId(99),
        ApiRequest {
            method: "DELETE".into(),
            path: "/flt/v1/units/x.service".into(),
            ..Default::default()
        },
        f.now,
    );
    let command = f.front.poll_command().expect("a delete");
    assert!(matches!(
        command.request,
        flt_core::registry::Request::Delete {
            recursive: true,
            ..
        }
    ));
    f.now += Duration::from_secs(5);
    f.front.handle_timeout(f.now);
    let (id, answer) = f.front.poll_response().expect("answered");
    assert_eq!(id.0, 99);
    assert_eq!(
        error_of(&answer),
        (
            500,
            "registry write failed: registry request timed out".into()
        )
    );
}

#[test]
fn routing_errors_are_fleets() {
    let mut f = Front::ready();
    let cases = [
        (
            "POST",
            "/flt/v1/units",
            405,
            "only GET supported against this resource",
            Some("GET"),
        ),
        (
            "POST",
            "/flt/v1/units/a.service",
            405,
            "only GET, PUT and DELETE supported against this resource",
            Some("GET, PUT, DELETE"),
        ),
        (
            "PUT",
            "/flt/v1/state",
            405,
            "only GET supported against this resource",
            Some("GET"),
        ),
        (
            "DELETE",
            "/flt/v1/machines",
            405,
            "only GET and PATCH supported against this resource",
            Some("GET, PATCH"),
        ),
        (
            "POST",
            "/flt/v1/discovery",
            400,
            "only HTTP GET supported against this resource",
            None,
        ),
        ("GET", "/flt/v1", 405, "", None),
        ("GET", "/", 405, "", None),
        ("GET", "/flt/v1/units/", 404, "", None),
        ("GET", "/flt/v1/machines/", 404, "", None),
        ("GET", "/flt/v1/units/a/b", 404, "", None),
        ("GET", "/elsewhere", 404, "", None),
    ];
    for (method, path, code, message, allow) in cases {
        let answer = f.request(method, path, "");
        assert_eq!(
            error_of(&answer),
            (code, message.to_string()),
            "{method} {path}"
        );
        assert_eq!(answer.header("Allow"), allow, "{method} {path}");
    }
    let answer = f.request("GET", "/flt/v1/./units?nextPageToken=x", "");
    assert_eq!(answer.status, 301);
    assert_eq!(
        answer.header("Location"),
        Some("/flt/v1/units?nextPageToken=x")
    );
    let discovery = f.get_json("/flt/v1/discovery");
    assert_eq!(discovery["id"], "flt:v1");
    let metrics = f.request("GET", "/metrics", "");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body_text().contains("flt_api_view_units 0"));
}

#[test]
fn machines_patch_add_replace_remove_as_the_functional_tests() {
    let mut f = Front::ready();
    f.store_machine("m0", "10.0.0.1", &[("hostname", "smoke0")]);
    f.store_machine("m1", "10.0.0.2", &[("hostname", "smoke1")]);
    f.pump();
    // TestMachinesPatchAddModify: the nested value object, and the documented string.
    let patch = json!([
        {"op": "add", "path": "/m0/metadata/foo", "value": {"value": "bar"}},
        {"op": "replace", "path": "/m1/metadata/ping", "value": "splat"}
    ]);
    let answer = f.request("PATCH", "/flt/v1/machines", &patch.to_string());
    assert_eq!(answer.status, 204);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    assert!(answer.body.is_empty());
    let machines = f.get_json("/flt/v1/machines");
    assert_eq!(
        machines,
        json!({"machines": [
            {"id": "m0", "metadata": {"foo": "bar", "hostname": "smoke0"}, "primaryIP": "10.0.0.1"},
            {"id": "m1", "metadata": {"hostname": "smoke1", "ping": "splat"}, "primaryIP": "10.0.0.2"}
        ]})
    );
    // TestMachinesPatchDelete: removing keys that never existed; then a config key is hidden.
    let patch = json!([
        {"op": "remove", "path": "/m0/metadata/nope"},
        {"op": "remove", "path": "/m1/metadata/hostname"}
    ]);
    assert_eq!(
        f.request("PATCH", "/flt/v1/machines", &patch.to_string())
            .status,
        204
    );
    assert_eq!(
        f.etcd.value(&f.ks.machine_metadata("m1", "hostname")),
        Some("")
    );
    let machines = f.get_json("/flt/v1/machines");
    assert_eq!(
        machines["machines"][1]["metadata"],
        json!({"ping": "splat"})
    );
    // TestMachinesPatchBad: nothing is applied if any op is bad.
    let bad = [
        (
            json!([{"op": "add", "path": "/m0/metadata/x", "value": "1"}, {"op": "noop", "path": "/m0/metadata/y", "value": "1"}]),
            "invalid op: expect add, remove, or replace",
        ),
        (
            json!([{"op": "add", "path": "/m0/foo", "value": "1"}]),
            "machine metadata path invalid",
        ),
        (
            json!([{"op": "add", "path": "/m0/metadata/x", "value": ""}]),
            "invalid value: add and replace require a value",
        ),
    ];
    for (patch, message) in bad {
        let answer = f.request("PATCH", "/flt/v1/machines", &patch.to_string());
        assert_eq!(error_of(&answer), (400, message.to_string()), "{patch}");
    }
    assert!(!f.etcd.exists(&f.ks.machine_metadata("m0", "x")));
    let answer = f.request("PATCH", "/flt/v1/machines", "{}");
    assert_eq!(error_of(&answer).0, 400);
    // Machines whose presence expired are not listed.
    f.etcd.delete(&f.ks.machine_object("m0"));
    f.pump();
    let machines = f.get_json("/flt/v1/machines");
    assert_eq!(machines["machines"].as_array().map(Vec::len), Some(1));
    assert_eq!(machines["machines"][0]["id"], "m1");
}

#[test]
fn unit_states_list_filters_sorts_and_gets() {
    let mut f = Front::ready();
    f.store_machine("m1", "10.0.0.1", &[]);
    f.store_machine("m2", "10.0.0.2", &[]);
    f.store_state("m2", "b.service", "active", "running");
    f.store_state("m1", "b.service", "inactive", "dead");
    f.store_state("m1", "a.service", "failed", "failed");
    f.pump();
    let all = f.get_json("/flt/v1/state");
    let pairs: Vec<(String, String)> = all["states"]
        .as_array()
        .expect("states")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").into(),
                s["machineID"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    let want = [
        ("a.service", "m1"),
        ("b.service", "m1"),
        ("b.service", "m2"),
    ];
    assert_eq!(pairs, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(
        all["states"][0],
        json!({"hash": "ab".repeat(20), "machineID": "m1", "name": "a.service",
               "systemdActiveState": "failed", "systemdLoadState": "loaded", "systemdSubState": "failed"})
    );
    let by_machine = f.get_json("/flt/v1/state?machineID=m1&machineID=m2");
    assert_eq!(names(&by_machine, "states"), ["a.service", "b.service"]);
    let by_unit = f.get_json("/flt/v1/state?unitName=b.service&machineID=m2");
    assert_eq!(by_unit["states"][0]["machineID"], "m2");
    assert_eq!(by_unit["states"].as_array().map(Vec::len), Some(1));
    assert_eq!(f.get_json("/flt/v1/state/b.service")["machineID"], "m1");
    let answer = f.request("GET", "/flt/v1/state/c.service", "");
    assert_eq!(error_of(&answer), (404, "unit state does not exist".into()));
    // A machine's presence expires: its states are no longer shown, though its state
    // directory (TTL 2 × agent_ttl) is still there; then that expires too.
    f.etcd.delete(&f.ks.machine_object("m2"));
    f.pump();
    assert_eq!(
        names(&f.get_json("/flt/v1/state"), "states"),
        ["a.service", "b.service"]
    );
    assert!(names(&f.get_json("/flt/v1/state?machineID=m2"), "states").is_empty());
    f.etcd.delete(&f.ks.machine_states_dir("m1"));
    f.pump();
    assert!(names(&f.get_json("/flt/v1/state"), "states").is_empty());
    let answer = f.request("GET", "/flt/v1/state/b.service", "");
    assert_eq!(error_of(&answer), (404, "unit state does not exist".into()));
}

#[test]
fn current_state_derives_from_target_and_the_targets_published_state() {
    let mut f = Front::ready();
    let ks = f.ks.clone();
    f.store_unit("a.service", &unit_file("/bin/a"), TargetState::Launched);
    f.pump();
    f.store_machine("m1", "10.0.0.1", &[]);
    f.store_machine("m2", "10.0.0.2", &[]);
    let unit = |f: &mut Front| f.get_json("/flt/v1/units/a.service");
    assert_eq!(unit(&mut f)["currentState"], "inactive");
    f.etcd.set(f.now, &ks.job_target("a.service"), "m1");
    f.pump();
    assert_eq!(unit(&mut f)["machineID"], "m1");
    assert_eq!(unit(&mut f)["currentState"], "inactive", "no state yet");
    f.store_state("m2", "a.service", "active", "running");
    f.pump();
    assert_eq!(
        unit(&mut f)["currentState"],
        "inactive",
        "another machine's state"
    );
    f.store_state("m1", "a.service", "inactive", "dead");
    f.pump();
    assert_eq!(unit(&mut f)["currentState"], "loaded");
    f.store_state("m1", "a.service", "active", "running");
    f.pump();
    assert_eq!(unit(&mut f)["currentState"], "launched");
    f.etcd
        .set(f.now, &ks.job_target_state("a.service"), "loaded");
    f.pump();
    assert_eq!(unit(&mut f)["currentState"], "loaded", "desired loaded");
    // Global units: GET omits both fields, the list says inactive.
    let global = flt_core::unit::UnitFile::from_options(vec![
        flt_core::unit::UnitOption::new("Service", "ExecStart", "/bin/g"),
        flt_core::unit::UnitOption::new("X-Fleet", "Global", "true"),
    ]);
    f.store_unit("g.service", &global, TargetState::Launched);
    f.store_state("m1", "g.service", "active", "running");
    f.pump();
    let g = f.get_json("/flt/v1/units/g.service");
    assert_eq!(g.get("currentState"), None);
    assert_eq!(g.get("machineID"), None);
    let list = f.get_json(UNITS);
    assert_eq!(list["units"][1]["name"], "g.service");
    assert_eq!(list["units"][1]["currentState"], "inactive");
}

#[test]
fn the_view_recovers_after_the_registry_was_unreachable() {
    let mut f = Front::ready();
    f.etcd.set_down(true);
    f.pump();
    f.etcd.set_down(false);
    // Written while the front end's watches were down.
    f.store_unit("late.service", &unit_file("/bin/late"), TargetState::Loaded);
    assert_eq!(f.get_json(UNITS), json!({}), "not seen yet");
    f.advance(Duration::from_secs(2));
    assert_eq!(names(&f.get_json(UNITS), "units"), ["late.service"]);
    // Served from the view all along: reads after recovery send nothing to the registry.
    let before = f.etcd.log.len();
    f.get_json(UNITS);
    f.get_json("/flt/v1/units/late.service");
    assert_eq!(f.etcd.log.len(), before);
}

#[test]
fn jobs_without_a_readable_unit_file_or_target_state_are_not_units() {
    let mut f = Front::ready();
    let ks = f.ks.clone();
    f.store_unit("ok.service", &unit_file("/bin/ok"), TargetState::Loaded);
    // An object whose unit file was never stored, and a job with only a target state.
    let object = json!({"Name": "orphan.service", "UnitHash": vec![7; 20]}).to_string();
    f.etcd.set(f.now, &ks.job_object("orphan.service"), &object);
    f.etcd
        .set(f.now, &ks.job_target_state("orphan.service"), "loaded");
    f.etcd
        .set(f.now, &ks.job_target_state("bare.service"), "launched");
    f.pump();
    assert_eq!(names(&f.get_json(UNITS), "units"), ["ok.service"]);
    for name in ["orphan.service", "bare.service"] {
        let answer = f.request("GET", &format!("{UNITS}/{name}"), "");
        assert_eq!(error_of(&answer).0, 404, "{name}");
    }
}
