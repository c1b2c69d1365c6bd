//! stop, unload, destroy and restart.

use super::harness::*;

#[test]
fn stop_waits_for_loaded_and_reports_on_stderr() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "loaded", "loaded");
    let o = fltctl(&api, &["stop", "a.service", "b", "missing.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, "Unit a.service loaded on 113f16a7.../172.17.8.103\n");
    assert_eq!(o.err, "Successfully stopped units [a.service].\n");
    // b was already loaded: no request to change it.
    assert_eq!(api.requests("PUT ").len(), 1);
}

#[test]
fn stop_refuses_an_inactive_unit() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["stop", "a.service"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "Unable to stop unit a.service in state inactive\n")
    );
}

#[test]
fn stop_and_unload_and_destroy_of_unknown_units() {
    let api = cluster();
    for command in ["stop", "unload", "destroy", "restart"] {
        let o = fltctl(&api, &[command, "nope.service"]);
        assert_eq!(
            (o.code, o.err.as_str()),
            (0, "Units not found in registry\n"),
            "{command}"
        );
    }
}

#[test]
fn stop_timeout_and_global_units() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("g.service", GLOBAL, "launched", "");
    api.lock().frozen.push("a.service".to_string());
    let o = fltctl(
        &api,
        &["stop", "--block-attempts=1", "a.service", "g.service"],
    );
    assert_eq!(o.code, 1);
    assert_eq!(o.out, "Triggered global unit g.service stop\n");
    let e = "timed out waiting for unit a.service to report state loaded";
    assert_eq!(
        o.err,
        format!("Error waiting for units: {e}\nFailed to stop units [a.service]. err: {e}\n")
    );
}

#[test]
fn unload_waits_for_inactive() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["unload", "a.service", "b.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, "Unit a.service inactive\n");
    assert_eq!(o.err, "Successfully unloaded units [a.service].\n");
    let o = fltctl(&api, &["unload", "--no-block", "a.service"]);
    assert_eq!(o.err, "Successfully unloaded units [].\n");
}

#[test]
fn destroy_deletes_and_waits_until_gone_unless_no_block() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["destroy", "a.service", "b.service", "c.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, "Destroyed a.service\nDestroyed b.service\n");
    assert!(api.lock().units.is_empty());
    // Blocking: a GET after each DELETE confirms the unit is gone.
    let log = api.lock().requests.clone();
    let after: Vec<&String> = log
        .iter()
        .skip_while(|r| !r.starts_with("DELETE"))
        .collect();
    assert!(
        after
            .iter()
            .any(|r| r.starts_with("GET /flt/v1/units/a.service")),
        "{log:?}"
    );

    api.unit("c.service", HELLO, "inactive", "inactive");
    api.lock().requests.clear();
    let o = fltctl(&api, &["destroy", "--no-block", "c.service"]);
    assert_eq!(o.out, "Destroyed c.service\n");
    assert!(api.requests("GET /flt/v1/units/c.service").is_empty());
}

#[test]
fn destroy_errors_continue_with_the_next_unit() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.unit("b.service", HELLO, "inactive", "inactive");
    api.lock().fail.insert(
        "DELETE /flt/v1/units/a.service".to_string(),
        (500, "nope".to_string()),
    );
    let o = fltctl(&api, &["destroy", "a.service", "b.service"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error destroying units: googleapi: Error 500: nope\n"
    );
    assert_eq!(o.out, "Destroyed b.service\n");
}

#[test]
fn restart_stops_until_loaded_then_starts_until_launched() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "loaded", "loaded");
    api.unit("c.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["restart", "a.service", "b.service", "c.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "Unit a.service loaded on 113f16a7.../172.17.8.103\n\
         Unit a.service launched on 113f16a7.../172.17.8.103\n\
         Unit b.service launched on 113f16a7.../172.17.8.103\n"
    );
    assert_eq!(
        o.err,
        "Unable to restart unit c.service in state inactive\n"
    );
}

#[test]
fn restart_timeout_and_set_state_errors() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.lock().frozen.push("a.service".to_string());
    let o = fltctl(&api, &["restart", "--block-attempts=1", "a.service"]);
    assert_eq!(o.code, 1);
    let e = "timed out waiting for unit a.service to report state loaded";
    assert_eq!(
        o.err,
        format!("Error waiting for units: {e}\nError waiting for unit states, exit status: {e}\n")
    );
    api.lock().fail.insert(
        "PUT /flt/v1/units/a.service".to_string(),
        (500, "x".to_string()),
    );
    let o = fltctl(&api, &["restart", "a.service"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (
            1,
            "Error setting target state for unit a.service: googleapi: Error 500: x\n"
        )
    );
}

#[test]
fn restart_of_a_global_unit_restarts_it_on_each_machine() {
    let api = cluster();
    api.unit("g.service", GLOBAL, "launched", "");
    let run = Run {
        host: fltctl::context::Host {
            local_machine_id: Some(M1.to_string()),
            ..Default::default()
        },
        ..Run::default()
    };
    let o = run.go(&api, &["restart", "g.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.calls.len(), 2);
    assert_eq!(o.calls[0], ["systemctl", "restart", "g.service"]);
    assert_eq!(o.calls[1][0], "ssh");
    assert!(o.calls[1].ends_with(&[
        "172.17.8.104".to_string(),
        "systemctl restart g.service".to_string()
    ]));
    assert_eq!(
        o.out,
        "Restarted global unit g.service on 113f16a7.../172.17.8.103\n\
         Restarted global unit g.service on 2222aaaa.../172.17.8.104\n"
    );
}

#[test]
fn destroy_times_out_when_the_unit_stays() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.lock().undeletable.push("a.service".to_string());
    let o = fltctl(&api, &["destroy", "--block-attempts=1", "a.service"]);
    assert_eq!((o.code, o.out.as_str()), (1, ""));
    assert_eq!(
        o.err,
        "Error waiting for units: timed out waiting for unit a.service to be destroyed\n"
    );
    assert_eq!(o.elapsed, std::time::Duration::from_secs(2));
}
