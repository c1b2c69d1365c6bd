//! The agent's counters for `/metrics`: tasks by type, failures, unit gauges, unit-state
//! publications and registry requests, checked against what the models saw.

use crate::harness::{World, unit};
use flt_core::registry::Request;
use flt_core::registry::records::TargetState::*;

fn started() -> World {
    let mut w = World::empty();
    w.start();
    w.secs(1);
    w
}

#[test]
fn tasks_units_and_publications_are_counted() {
    let mut w = started();
    w.schedule("a.service", &unit("/bin/sleep 100"), Launched);
    w.schedule("b.service", &unit("/bin/sleep 200"), Loaded);
    let m = w.agent.metrics();
    assert_eq!(m.tasks.get("LoadUnit"), Some(&2), "{m:?}");
    assert_eq!(m.tasks.get("StartUnit"), Some(&1), "{m:?}");
    assert_eq!(m.tasks.get("ReloadUnitFiles"), Some(&2), "{m:?}");
    assert!(m.task_failures.is_empty(), "{m:?}");
    assert_eq!(
        (m.units_desired, m.units_loaded, m.units_active),
        (2, 2, 1),
        "{m:?}"
    );
    assert!(m.states_published >= 2, "{m:?}");
    // The requests counted are exactly the ones etcd received.
    let sent: u64 = m.registry_requests.values().sum();
    assert_eq!(sent, w.etcd.log.len() as u64, "{m:?}");
    let puts = w
        .etcd
        .log
        .iter()
        .filter(|(_, r)| matches!(r, Request::Put { .. }))
        .count() as u64;
    assert_eq!(m.registry_requests.get("put").copied(), Some(puts), "{m:?}");
    assert!(m.registry_failures.is_empty(), "{m:?}");

    w.unschedule("a.service");
    let m = w.agent.metrics();
    assert_eq!(m.tasks.get("UnloadUnit"), Some(&1), "{m:?}");
    assert_eq!(
        (m.units_desired, m.units_loaded, m.units_active),
        (1, 1, 0),
        "{m:?}"
    );
    assert!(m.states_removed >= 1, "{m:?}");
}

#[test]
fn failed_tasks_and_unreachable_etcd_are_counted_as_failures() {
    let mut w = started();
    w.systemd
        .fail
        .insert(("start", "a.service".into()), "boom".into());
    w.schedule("a.service", &unit("/bin/sleep 100"), Launched);
    let m = w.agent.metrics();
    assert!(
        m.task_failures.get("StartUnit").is_some_and(|n| *n >= 1),
        "{m:?}"
    );
    assert_eq!(m.task_failures.get("StartUnit"), m.tasks.get("StartUnit"));
    assert_eq!(m.units_active, 0, "{m:?}");

    assert!(m.registry_failures.is_empty(), "{m:?}");
    w.etcd.set_down(true);
    w.secs(30);
    let m = w.agent.metrics();
    let failed: u64 = m.registry_failures.values().sum();
    assert!(failed >= 1, "{m:?}");
}
