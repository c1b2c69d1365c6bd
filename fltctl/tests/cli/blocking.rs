//! The blocking model: attempts of 2 s polled every 250 ms, 0 = forever, --no-block, the
//! systemd-active check of start, and progress only on a terminal.

use super::harness::*;
use fltctl::context::Host;
use std::time::Duration;

const LOADED_ON_M1: &str = "Unit a.service loaded on 113f16a7.../172.17.8.103\n";

#[test]
fn load_waits_and_prints_the_machine_legend() {
    let api = cluster();
    let dir = Dir::new("load");
    let file = dir.file("a.service", HELLO);
    let o = fltctl(&api, &["load", &file]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, format!("Unit a.service inactive\n{LOADED_ON_M1}"));
    assert_eq!(o.err, "");
}

#[test]
fn one_attempt_is_two_seconds_of_quarter_second_polls() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.lock().frozen.push("a.service".to_string());
    let o = fltctl(&api, &["load", "--block-attempts=1", "a.service"]);
    assert_eq!(o.code, 1);
    assert_eq!(o.elapsed, Duration::from_secs(2));
    let polls = api.requests("GET /flt/v1/units/a.service").len();
    // One GET by the create check, one by set-target-state, then 8 polls in 2 s.
    assert_eq!(polls, 2 + 8);
    let timeout = "timed out waiting for unit a.service to report state loaded";
    assert_eq!(
        o.err,
        format!(
            "Error waiting for units: {timeout}\nError waiting for unit states, exit status: {timeout}\n"
        )
    );
    // Already at desired "loaded": load skips it silently.
    let o = fltctl(&api, &["load", "--block-attempts=3", "a.service"]);
    assert_eq!((o.code, o.out.as_str(), o.elapsed), (0, "", Duration::ZERO));
    api.lock().units.get_mut("a.service").unwrap().desired = "inactive".to_string();
    let o = fltctl(&api, &["load", "--block-attempts=3", "a.service"]);
    assert_eq!((o.code, o.elapsed), (1, Duration::from_secs(6)));
}

#[test]
fn zero_attempts_waits_as_long_as_it_takes() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.lock().lag = 40;
    let o = fltctl(&api, &["load", "a.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, LOADED_ON_M1);
    assert!(o.elapsed >= Duration::from_secs(9), "{:?}", o.elapsed);
}

#[test]
fn no_block_triggers_without_waiting() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.lock().frozen.push("a.service".to_string());
    let o = fltctl(&api, &["load", "--no-block", "a.service"]);
    assert_eq!(
        (o.code, o.out.as_str()),
        (0, "Triggered unit a.service load\n")
    );
    assert_eq!(o.sleeps, 0);
    assert_eq!(api.lock().units["a.service"].desired, "loaded");
}

#[test]
fn start_no_block_on_a_new_unit_waits_for_creation_and_triggers_twice() {
    let api = cluster();
    let dir = Dir::new("startnb");
    let file = dir.file("hello.service", HELLO);
    let o = fltctl(&api, &["start", "--no-block", &file]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "Unit hello.service inactive\nTriggered unit hello.service start\nTriggered unit hello.service start\n"
    );
}

#[test]
fn start_waits_for_launched_and_systemd_active() {
    let api = cluster();
    api.unit("a.service", HELLO, "loaded", "loaded");
    let o = fltctl(&api, &["start", "a.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "Unit a.service launched on 113f16a7.../172.17.8.103\n"
    );
    assert_eq!(
        api.requests("GET /flt/v1/state?unitName=a.service").len(),
        1
    );
}

#[test]
fn start_fails_when_systemd_does_not_report_active() {
    let api = cluster();
    api.unit("a.service", HELLO, "loaded", "loaded");
    api.lock()
        .active_state
        .insert("a.service".to_string(), "failed".to_string());
    let o = fltctl(&api, &["start", "--block-attempts=2", "a.service"]);
    assert_eq!(o.code, 1);
    let e = "Failed to find an active unit a.service within 4s, err: Error: unit a.service not active (ActiveState failed)";
    assert_eq!(
        o.err,
        format!("Error waiting for units: {e}\nError waiting for systemd unit states, err: {e}\n")
    );
}

#[test]
fn start_on_an_already_launched_unit_does_nothing() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = fltctl(&api, &["start", "a.service"]);
    assert_eq!((o.code, o.out.as_str(), o.err.as_str()), (0, "", ""));
    assert!(api.requests("PUT ").is_empty());
}

#[test]
fn start_of_a_template_is_refused_by_the_api() {
    let api = cluster();
    api.unit("x@.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["start", "x@.service"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error starting units: googleapi: Error 400: cannot activate template \"x@.service\"\n"
    );
}

#[test]
fn global_units_are_triggered_not_waited_for() {
    let api = cluster();
    let dir = Dir::new("global");
    let file = dir.file("g.service", GLOBAL);
    let o = fltctl(&api, &["start", &file]);
    assert_eq!(o.code, 0, "{}", o.err);
    // The creation wait prints the (empty) current state of a global unit.
    assert_eq!(
        o.out,
        "Unit g.service \nTriggered global unit g.service start\n"
    );
    let o = fltctl(&api, &["load", "g.service"]);
    assert_eq!(o.out, "Triggered global unit g.service load\n");
}

#[test]
fn progress_is_shown_on_a_terminal_only() {
    let api = cluster();
    api.unit("a.service", HELLO, "inactive", "inactive");
    api.lock().lag = 3;
    let tty = Run {
        host: Host {
            stdout_is_tty: true,
            ..Host::default()
        },
        ..Run::default()
    }
    .go(&api, &["load", "a.service"]);
    assert_eq!(tty.code, 0, "{}", tty.err);
    assert!(
        tty.out
            .contains("\r\x1b[2KWaiting for 1 unit(s) to be loaded: a.service (inactive)"),
        "{:?}",
        tty.out
    );
    // The progress line is cleared before the result.
    assert!(
        tty.out.ends_with(&format!("\r\x1b[2K{LOADED_ON_M1}")),
        "{:?}",
        tty.out
    );
    api.unit("b.service", HELLO, "inactive", "inactive");
    let plain = fltctl(&api, &["load", "b.service"]);
    assert_eq!(
        plain.out,
        "Unit b.service loaded on 113f16a7.../172.17.8.103\n"
    );
}
