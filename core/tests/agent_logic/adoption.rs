//! A restarted fltd adopts what is already running: no stop, no restart, no reload unless the
//! content differs; and nothing at all is done before the schedule has been read.

use crate::harness::{World, unit};
use flt_core::agent::Event;
use flt_core::registry::Request;
use flt_core::registry::records::TargetState::*;

fn running_world() -> World {
    let mut w = World::empty();
    w.start();
    w.secs(1);
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.schedule("b.service", &unit("/bin/b"), Loaded);
    w.schedule("c.service", &unit("/bin/c"), Launched);
    w.secs(10);
    w
}

#[test]
fn a_restart_within_the_ttl_adopts_every_unit_untouched() {
    let mut w = running_world();
    let before: Vec<_> = ["a.service", "b.service", "c.service"]
        .iter()
        .map(|n| w.published(n))
        .collect();
    let restart = w.now;
    w.start();
    w.secs(60);
    assert!(
        w.systemd.actions().is_empty(),
        "adoption touched systemd: {:?}",
        w.systemd.actions()
    );
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::Registered { adopted: true, .. }))
    );
    let after: Vec<_> = ["a.service", "b.service", "c.service"]
        .iter()
        .map(|n| w.published(n))
        .collect();
    assert_eq!(before, after);
    assert!(after.iter().all(Option::is_some));
    // The states already in the registry are not written again.
    let state_writes = w
        .writes_since(restart)
        .into_iter()
        .filter(|r| match r {
            Request::Put { key, .. } | Request::Delete { key, .. } => {
                key.contains("/a.service")
                    || key.contains("/b.service")
                    || key.contains("/c.service")
            }
            _ => false,
        })
        .count();
    assert_eq!(state_writes, 0);
    assert_eq!(w.systemd.active("a.service"), Some("active"));
    assert_eq!(w.systemd.active("b.service"), Some("inactive"));
}

#[test]
fn a_restart_after_the_ttl_registers_anew_and_republishes_without_touching_units() {
    let mut w = running_world();
    // fltd is gone for two minutes: its presence and state directory expire.
    w.etcd.drop_client();
    let gone = w.now;
    w.now = gone + std::time::Duration::from_secs(120);
    w.etcd.expire(w.now);
    assert!(!w.etcd.exists(&w.ks.machine_object("m1")));
    assert_eq!(w.published("a.service"), None);
    w.start();
    w.secs(30);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::Registered { adopted: false, .. }))
    );
    assert_eq!(
        w.published("a.service").map(|p| p.0),
        Some("active".to_string())
    );
    assert_eq!(
        w.published("b.service").map(|p| p.0),
        Some("inactive".to_string())
    );
}

#[test]
fn changed_content_is_replaced_and_only_that_unit_is_touched() {
    let mut w = running_world();
    // While fltd is down, the unit is replaced with new content.
    w.etcd.drop_client();
    w.schedule_quietly("a.service", &unit("/bin/a --new"), Launched);
    w.start();
    w.secs(10);
    assert_eq!(
        w.systemd.actions(),
        [
            "unload a.service",
            "load a.service",
            "reload",
            "start a.service"
        ]
    );
}

#[test]
fn a_failed_unit_is_adopted_as_launched_and_not_restarted() {
    let mut w = running_world();
    w.systemd.crash("c.service");
    w.start();
    w.secs(60);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert_eq!(
        w.published("c.service").map(|p| p.0),
        Some("failed".to_string())
    );
}

#[test]
fn nothing_is_done_to_systemd_before_the_schedule_is_read() {
    let mut w = running_world();
    // A unit nobody scheduled, found in the units directory.
    w.etcd.drop_client();
    w.systemd
        .files
        .insert("x.service".into(), "[Service]\nExecStart=/bin/x\n".into());
    w.etcd.set_down(true);
    w.start();
    w.secs(300);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert!(!w.agent.is_registered());
    w.etcd.set_down(false);
    w.secs(120);
    assert_eq!(w.systemd.actions(), ["unload x.service", "reload"]);
    assert_eq!(w.systemd.active("a.service"), Some("active"));
}

#[test]
fn a_unit_file_that_does_not_parse_is_replaced() {
    let mut w = running_world();
    w.etcd.drop_client();
    w.systemd
        .files
        .insert("a.service".into(), "this is not a unit file".into());
    w.start();
    w.secs(10);
    assert_eq!(
        w.systemd.actions(),
        [
            "unload a.service",
            "load a.service",
            "reload",
            "start a.service"
        ]
    );
}

#[test]
fn a_loaded_but_inactive_unit_that_should_run_is_started_without_reloading() {
    let mut w = running_world();
    // a.service was stopped behind the agent's back (or exited) while fltd was down.
    w.etcd.drop_client();
    w.systemd.states.insert(
        "a.service".into(),
        flt_core::agent::UnitObserved::new("a.service", "loaded", "inactive", "dead"),
    );
    w.start();
    w.secs(10);
    assert_eq!(w.systemd.actions(), ["start a.service"]);
}

#[test]
fn files_that_are_not_units_are_left_alone() {
    let mut w = running_world();
    w.etcd.drop_client();
    w.systemd
        .files
        .insert("notes.txt".into(), "[Service]\nExecStart=/bin/x\n".into());
    w.systemd
        .files
        .insert(".service".into(), "[Service]\nExecStart=/bin/x\n".into());
    w.start();
    w.secs(30);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    let ignored = w
        .events
        .iter()
        .filter(|e| matches!(e, Event::NotAUnit { .. }))
        .count();
    assert_eq!(ignored, 2);
}
