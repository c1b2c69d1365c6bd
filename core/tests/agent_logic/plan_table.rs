//! Spec §3.5, row by row, on the pure `plan` function.

use flt_core::agent::{CurrentUnit, DesiredUnit, Task, TaskKind, TaskReason, plan};
use flt_core::registry::records::TargetState::{self, *};
use flt_core::unit::UnitHash;
use std::collections::BTreeMap;

const H1: UnitHash = UnitHash([1; 20]);
const H2: UnitHash = UnitHash([2; 20]);

fn desired(units: &[(&str, UnitHash, TargetState)]) -> BTreeMap<String, DesiredUnit> {
    units
        .iter()
        .map(|(n, hash, target)| {
            (
                n.to_string(),
                DesiredUnit {
                    hash: *hash,
                    target: *target,
                },
            )
        })
        .collect()
}

fn current(units: &[(&str, Option<UnitHash>, TargetState)]) -> BTreeMap<String, CurrentUnit> {
    units
        .iter()
        .map(|(n, hash, state)| {
            (
                n.to_string(),
                CurrentUnit {
                    hash: *hash,
                    state: *state,
                },
            )
        })
        .collect()
}

fn brief(tasks: &[Task]) -> Vec<String> {
    tasks
        .iter()
        .map(|t| format!("{} {} ({})", t.kind, t.unit, t.reason))
        .collect()
}

const RELOAD: &str = "ReloadUnitFiles  (always reload unit files)";

#[test]
fn row1_unscheduled_or_inactive_and_present_is_unloaded() {
    for d in [desired(&[]), desired(&[("a.service", H1, Inactive)])] {
        for state in [Inactive, Loaded, Launched] {
            let tasks = plan(&d, &current(&[("a.service", Some(H1), state)]));
            assert_eq!(
                brief(&tasks),
                [
                    "UnloadUnit a.service (unit loaded but not scheduled here)",
                    RELOAD
                ]
            );
        }
    }
    // Inactive and absent: nothing to do.
    assert!(plan(&desired(&[("a.service", H1, Inactive)]), &current(&[])).is_empty());
}

#[test]
fn row2_scheduled_and_absent_is_loaded_and_started_if_launched() {
    let tasks = plan(&desired(&[("a.service", H1, Loaded)]), &current(&[]));
    assert_eq!(
        brief(&tasks),
        [
            "LoadUnit a.service (unit scheduled here but not loaded)",
            RELOAD
        ]
    );
    let tasks = plan(&desired(&[("a.service", H1, Launched)]), &current(&[]));
    assert_eq!(
        brief(&tasks),
        [
            "LoadUnit a.service (unit scheduled here but not loaded)",
            RELOAD,
            "StartUnit a.service (unit currently loaded but desired state is launched)",
        ]
    );
}

#[test]
fn row3_other_content_is_unloaded_and_loaded_again() {
    for have in [Some(H2), None] {
        for state in [Inactive, Loaded, Launched] {
            let tasks = plan(
                &desired(&[("a.service", H1, Launched)]),
                &current(&[("a.service", have, state)]),
            );
            assert_eq!(
                brief(&tasks),
                [
                    "UnloadUnit a.service (unit loaded but hash differs to expected)",
                    "LoadUnit a.service (unit loaded but hash differs to expected)",
                    RELOAD,
                    "StartUnit a.service (unit currently loaded but desired state is launched)",
                ]
            );
        }
    }
    let tasks = plan(
        &desired(&[("a.service", H1, Loaded)]),
        &current(&[("a.service", Some(H2), Launched)]),
    );
    assert_eq!(tasks.len(), 3, "{:?}", brief(&tasks));
}

#[test]
fn row4_matching_state_needs_nothing() {
    for state in [Loaded, Launched] {
        let tasks = plan(
            &desired(&[("a.service", H1, state)]),
            &current(&[("a.service", Some(H1), state)]),
        );
        assert!(tasks.is_empty(), "{:?}", brief(&tasks));
    }
}

#[test]
fn row5_file_present_but_not_loaded_by_the_agent_is_loaded() {
    let tasks = plan(
        &desired(&[("a.service", H1, Launched)]),
        &current(&[("a.service", Some(H1), Inactive)]),
    );
    assert_eq!(
        brief(&tasks),
        [
            "LoadUnit a.service (unit scheduled here but not loaded)",
            RELOAD,
            "StartUnit a.service (unit currently loaded but desired state is launched)",
        ]
    );
    let tasks = plan(
        &desired(&[("a.service", H1, Loaded)]),
        &current(&[("a.service", Some(H1), Inactive)]),
    );
    assert_eq!(tasks.len(), 2);
}

#[test]
fn row6_loaded_but_wanted_launched_is_started() {
    let tasks = plan(
        &desired(&[("a.service", H1, Launched)]),
        &current(&[("a.service", Some(H1), Loaded)]),
    );
    assert_eq!(
        brief(&tasks),
        ["StartUnit a.service (unit currently loaded but desired state is launched)"]
    );
}

#[test]
fn row7_launched_but_wanted_loaded_is_stopped() {
    let tasks = plan(
        &desired(&[("a.service", H1, Loaded)]),
        &current(&[("a.service", Some(H1), Launched)]),
    );
    assert_eq!(
        brief(&tasks),
        ["StopUnit a.service (unit currently launched but desired state is loaded)"]
    );
}

#[test]
fn batch_is_ordered_by_type_then_name_with_one_reload() {
    let tasks = plan(
        &desired(&[
            ("b.service", H1, Launched),
            ("c.service", H1, Loaded),
            ("d.service", H2, Launched),
            ("e.service", H1, Launched),
        ]),
        &current(&[
            ("a.service", Some(H1), Launched),
            ("c.service", Some(H1), Launched),
            ("d.service", Some(H1), Launched),
            ("e.service", Some(H1), Loaded),
            ("z.service", Some(H1), Loaded),
        ]),
    );
    let order: Vec<(TaskKind, &str)> = tasks.iter().map(|t| (t.kind, t.unit.as_str())).collect();
    use TaskKind::*;
    assert_eq!(
        order,
        [
            (UnloadUnit, "a.service"),
            (UnloadUnit, "d.service"),
            (UnloadUnit, "z.service"),
            (LoadUnit, "b.service"),
            (LoadUnit, "d.service"),
            (ReloadUnitFiles, ""),
            (StopUnit, "c.service"),
            (StartUnit, "b.service"),
            (StartUnit, "d.service"),
            (StartUnit, "e.service"),
        ]
    );
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t.reason == TaskReason::AlwaysReload)
            .count(),
        1
    );
}

#[test]
fn reload_is_dropped_without_load_or_unload() {
    let tasks = plan(
        &desired(&[("a.service", H1, Launched), ("b.service", H1, Loaded)]),
        &current(&[
            ("a.service", Some(H1), Loaded),
            ("b.service", Some(H1), Launched),
        ]),
    );
    assert!(tasks.iter().all(|t| t.kind != TaskKind::ReloadUnitFiles));
    assert_eq!(tasks.len(), 2);
}
