//! Tasks through the whole agent: what reaches systemd, in which order, and what happens on
//! failure.

use crate::harness::{World, unit};
use flt_core::agent::{Event, TaskKind};
use flt_core::registry::records::TargetState::*;
use std::time::Duration;

fn started() -> World {
    let mut w = World::empty();
    w.start();
    w.secs(1);
    w
}

#[test]
fn a_launched_unit_is_loaded_reloaded_and_started() {
    let mut w = started();
    assert!(w.agent.is_registered());
    w.schedule("hello.service", &unit("/bin/sleep 100"), Launched);
    assert_eq!(
        w.systemd.actions(),
        ["load hello.service", "reload", "start hello.service"]
    );
    assert_eq!(
        w.systemd.files["hello.service"],
        "[Service]\nExecStart=/bin/sleep 100\n"
    );
    assert_eq!(w.systemd.active("hello.service"), Some("active"));
    let hash = unit("/bin/sleep 100").hash().to_hex();
    assert_eq!(
        w.published("hello.service"),
        Some(("active".into(), "running".into(), hash))
    );
    let done: Vec<String> = w
        .events
        .iter()
        .filter_map(|e| match e {
            Event::TaskDone { task } => Some(task.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        done,
        [
            "type=LoadUnit job=hello.service reason=\"unit scheduled here but not loaded\"",
            "type=ReloadUnitFiles job= reason=\"always reload unit files\"",
            "type=StartUnit job=hello.service reason=\"unit currently loaded but desired state is launched\"",
        ]
    );
}

#[test]
fn target_changes_stop_start_and_unload() {
    let mut w = started();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.systemd.log.clear();
    w.schedule("a.service", &unit("/bin/a"), Loaded);
    assert_eq!(w.systemd.actions(), ["stop a.service"]);
    assert_eq!(w.systemd.active("a.service"), Some("inactive"));
    w.systemd.log.clear();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    assert_eq!(w.systemd.actions(), ["start a.service"]);
    w.systemd.log.clear();
    w.schedule("a.service", &unit("/bin/a"), Inactive);
    assert_eq!(w.systemd.actions(), ["unload a.service", "reload"]);
    assert!(!w.systemd.files.contains_key("a.service"));
    assert_eq!(w.published("a.service"), None);
}

#[test]
fn new_content_replaces_the_unit() {
    let mut w = started();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.systemd.log.clear();
    w.schedule("a.service", &unit("/bin/a --v2"), Launched);
    assert_eq!(
        w.systemd.actions(),
        [
            "unload a.service",
            "load a.service",
            "reload",
            "start a.service"
        ]
    );
    assert_eq!(
        w.published("a.service").map(|p| p.2),
        Some(unit("/bin/a --v2").hash().to_hex())
    );
}

#[test]
fn unscheduled_unit_is_unloaded_and_only_our_state_deleted() {
    let mut w = started();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    // Another machine's state for the same (e.g. global or just moved) unit.
    let theirs = w.ks.unit_state("m2", "a.service");
    let now = w.now;
    w.etcd.set(now, &theirs, "{}");
    assert!(w.published("a.service").is_some());
    w.systemd.log.clear();
    w.unschedule("a.service");
    assert_eq!(w.systemd.actions(), ["unload a.service", "reload"]);
    assert!(!w.etcd.exists(&w.state_key("a.service")));
    assert!(
        w.etcd.exists(&theirs),
        "another machine's state was deleted"
    );
}

#[test]
fn the_first_failure_aborts_the_batch_and_the_next_round_retries() {
    let mut w = started();
    w.systemd
        .fail
        .insert(("load", "a.service".into()), "disk full".into());
    w.schedule("b.service", &unit("/bin/b"), Launched);
    w.systemd.log.clear();
    // Both arrive before the agent runs a batch.
    w.schedule_quietly("a.service", &unit("/bin/a"), Launched);
    w.schedule_quietly("c.service", &unit("/bin/c"), Launched);
    w.pump();
    // Both loads go out together; the failure stops the batch before the reload and starts.
    assert_eq!(
        w.systemd.actions(),
        ["load a.service", "load c.service"],
        "batch not aborted"
    );
    let failed = w.events.iter().any(|e| {
        matches!(e, Event::TaskFailed { task, error } if task.kind == TaskKind::LoadUnit
            && task.unit == "a.service" && error == "disk full")
    });
    assert!(failed);
    // Nothing more until the periodic round; then everything converges.
    w.systemd.fail.clear();
    w.systemd.log.clear();
    w.advance(Duration::from_millis(4_000));
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    w.secs(2);
    assert_eq!(
        w.systemd.actions(),
        [
            "load a.service",
            "reload",
            "start a.service",
            "start c.service"
        ]
    );
}

#[test]
fn a_hanging_systemd_call_times_out_inside_the_agent() {
    let mut w = started();
    w.systemd.hang = true;
    w.schedule("a.service", &unit("/bin/a"), Launched);
    assert_eq!(w.systemd.actions(), ["load a.service"]);
    assert!(w.agent.is_busy());
    w.secs(61);
    assert!(w.events.iter().any(|e| matches!(e,
        Event::TaskFailed { task, error } if task.unit == "a.service" && error.contains("timed out"))));
    // The next round tries again (the retry may itself still hang and time out first).
    w.systemd.hang = false;
    w.systemd.log.clear();
    w.secs(70);
    assert_eq!(
        w.systemd.actions(),
        ["load a.service", "reload", "start a.service"]
    );
    assert!(!w.agent.is_busy());
}

#[test]
fn a_unit_whose_file_is_missing_is_left_alone() {
    let mut w = started();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.systemd.log.clear();
    // The schedule points at content the registry does not have.
    let ghost = unit("/bin/ghost");
    let key = w.ks.schedule_entry(crate::harness::MACHINE, "a.service");
    let value = format!(
        "{{\"unitHash\":\"{}\",\"targetState\":\"launched\"}}",
        ghost.hash().to_hex()
    );
    let now = w.now;
    w.etcd.set(now, &key, &value);
    w.pump();
    w.secs(30);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::UnitFileUnavailable { .. }))
    );
    // Once the file appears (it is fetched again at the next resync), the unit is replaced.
    w.store_unit(&ghost);
    w.secs(80);
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
fn an_undecodable_schedule_entry_leaves_the_unit_alone() {
    let mut w = started();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.systemd.log.clear();
    let key = w.ks.schedule_entry(crate::harness::MACHINE, "a.service");
    let now = w.now;
    w.etcd.set(now, &key, "{not json");
    w.pump();
    w.secs(30);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::BadScheduleRecord { name } if name == "a.service"))
    );
    assert_eq!(w.systemd.active("a.service"), Some("active"));
}

/// A started world whose systemd answers loads as the driver does: whether a reload is needed.
fn started_reporting_reloads() -> World {
    let mut w = started();
    w.systemd.reports_reload = true;
    w
}

fn skipped(w: &World) -> usize {
    w.events
        .iter()
        .filter(
            |e| matches!(e, Event::TaskSkipped { task } if task.kind == TaskKind::ReloadUnitFiles),
        )
        .count()
}

#[test]
fn loads_of_units_systemd_never_had_start_without_a_reload() {
    let mut w = started_reporting_reloads();
    w.schedule_quietly("a.service", &unit("/bin/a"), Launched);
    w.schedule_quietly("b.service", &unit("/bin/b"), Loaded);
    w.pump();
    assert_eq!(
        w.systemd.actions(),
        ["load a.service", "load b.service", "start a.service"]
    );
    assert_eq!(skipped(&w), 1);
    assert_eq!(w.systemd.active("a.service"), Some("active"));
    assert_eq!(w.published("a.service").map(|p| p.0), Some("active".into()));
}

#[test]
fn one_load_systemd_needs_a_reload_for_keeps_the_batch_reload() {
    let mut w = started_reporting_reloads();
    w.systemd.stale.insert("b.service".into());
    w.schedule_quietly("a.service", &unit("/bin/a"), Launched);
    w.schedule_quietly("b.service", &unit("/bin/b"), Launched);
    w.pump();
    assert_eq!(
        w.systemd.actions(),
        [
            "load a.service",
            "load b.service",
            "reload",
            "start a.service",
            "start b.service"
        ]
    );
    assert_eq!(skipped(&w), 0);
}

#[test]
fn unloads_still_reload() {
    let mut w = started_reporting_reloads();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.systemd.log.clear();
    w.unschedule("a.service");
    assert_eq!(w.systemd.actions(), ["unload a.service", "reload"]);
    w.systemd.log.clear();
    // New content: the unload in the batch asks for the reload whatever the load reports.
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.schedule("a.service", &unit("/bin/a --v2"), Launched);
    assert_eq!(
        w.systemd.actions(),
        [
            "load a.service",
            "start a.service",
            "unload a.service",
            "load a.service",
            "reload",
            "start a.service"
        ]
    );
}

#[test]
fn a_start_failing_after_a_skipped_reload_is_retried_after_one() {
    let mut w = started_reporting_reloads();
    w.systemd.fail.insert(
        ("start", "a.service".into()),
        "Unit a.service not found.".into(),
    );
    w.schedule("a.service", &unit("/bin/a"), Launched);
    assert_eq!(w.systemd.actions(), ["load a.service", "start a.service"]);
    w.systemd.fail.clear();
    w.systemd.log.clear();
    w.secs(6);
    assert_eq!(w.systemd.actions(), ["reload", "start a.service"]);
    assert_eq!(w.systemd.active("a.service"), Some("active"));
    // Owed once only: the next launch skips it again.
    w.systemd.log.clear();
    w.schedule("b.service", &unit("/bin/b"), Launched);
    assert_eq!(w.systemd.actions(), ["load b.service", "start b.service"]);
}
