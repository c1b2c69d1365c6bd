//! Global units (spec §3.3, §3.8): each agent decides alone, from its own metadata (dynamic
//! metadata included), `MachineID=`, and conflicts resolved in name order.

use crate::harness::{World, config, unit_with};
use flt_core::registry::records::TargetState::*;
use flt_core::unit::UnitFile;

fn world_with_region(region: &str) -> World {
    let mut w = World::empty();
    let mut c = config();
    c.metadata.insert("region".into(), region.into());
    w.restart_agent(c);
    w.secs(1);
    w.systemd.log.clear();
    w
}

fn global(extra: &[(&str, &str)]) -> UnitFile {
    let mut options = vec![
        ("Service", "ExecStart", "/bin/g"),
        ("X-Fleet", "Global", "true"),
    ];
    options.extend(extra.iter().map(|(k, v)| ("X-Fleet", *k, *v)));
    unit_with(&options)
}

#[test]
fn global_units_follow_the_machine_metadata() {
    let mut w = world_with_region("us");
    w.set_global(
        "g-us.service",
        &global(&[("MachineMetadata", "region=us")]),
        Launched,
    );
    w.set_global(
        "g-eu.service",
        &global(&[("MachineMetadata", "region=eu")]),
        Launched,
    );
    w.set_global("g-any.service", &global(&[]), Launched);
    let mut running: Vec<&String> = w.systemd.files.keys().collect();
    running.sort();
    assert_eq!(running, ["g-any.service", "g-us.service"]);
    // Dynamic metadata overrides the configured value.
    w.systemd.log.clear();
    w.set_metadata("region", "eu");
    assert_eq!(
        w.systemd.actions(),
        [
            "unload g-us.service",
            "load g-eu.service",
            "reload",
            "start g-eu.service"
        ]
    );
    // An empty dynamic value deletes the key: neither regional unit qualifies.
    w.systemd.log.clear();
    w.set_metadata("region", "");
    assert_eq!(w.systemd.actions(), ["unload g-eu.service", "reload"]);
    assert_eq!(
        w.systemd.files.keys().collect::<Vec<_>>(),
        ["g-any.service"]
    );
}

#[test]
fn conflicting_global_units_are_resolved_by_name() {
    let mut w = world_with_region("us");
    // The first name wins, whichever side declares the conflict.
    w.set_global("g-b.service", &global(&[]), Launched);
    w.set_global("g-a.service", &global(&[("Conflicts", "g-b*")]), Launched);
    w.set_global("g-c.service", &global(&[]), Launched);
    w.set_global(
        "g-d.service",
        &global(&[("Conflicts", "x.service g-c.service")]),
        Launched,
    );
    w.secs(10);
    let files: Vec<&String> = w.systemd.files.keys().collect();
    assert_eq!(files, ["g-a.service", "g-c.service"]);
    // Remove the winner: the other one takes its place.
    w.systemd.log.clear();
    let key = w.ks.global_entry("g-a.service");
    w.etcd.delete(&key);
    w.pump();
    assert_eq!(
        w.systemd.actions(),
        [
            "unload g-a.service",
            "load g-b.service",
            "reload",
            "start g-b.service"
        ]
    );
}

#[test]
fn scheduled_units_take_precedence_over_conflicting_globals() {
    let mut w = world_with_region("us");
    w.schedule(
        "z.service",
        &unit_with(&[
            ("Service", "ExecStart", "/bin/z"),
            ("X-Fleet", "Conflicts", "g-*"),
        ]),
        Launched,
    );
    w.set_global("g-a.service", &global(&[]), Launched);
    w.set_global("h.service", &global(&[]), Launched);
    let files: Vec<&String> = w.systemd.files.keys().collect();
    assert_eq!(files, ["h.service", "z.service"]);
}

#[test]
fn global_units_honour_machine_id_and_target_state() {
    let mut w = world_with_region("us");
    w.set_global("g-other.service", &global(&[("MachineID", "m2")]), Launched);
    w.set_global("g-own.service", &global(&[("MachineID", "m1")]), Loaded);
    w.set_global("g-off.service", &global(&[]), Inactive);
    assert_eq!(w.systemd.actions(), ["load g-own.service", "reload"]);
    w.systemd.log.clear();
    w.set_global("g-own.service", &global(&[("MachineID", "m1")]), Inactive);
    assert_eq!(w.systemd.actions(), ["unload g-own.service", "reload"]);
}
