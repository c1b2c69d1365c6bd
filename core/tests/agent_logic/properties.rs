//! Random scenarios (schedule changes, crashes, etcd outages with lost history, fltd restarts):
//! while etcd is unreachable the agent never stops or unloads anything, and once etcd is back
//! it converges to the schedule, with states published for exactly the units it runs.

use crate::harness::{MACHINE, World, unit};
use flt_core::registry::records::{ScheduleRecord, TargetState};
use flt_core::registry::{PutValue, Request};
use flt_core::unit::{UnitFile, UnitOption};
use proptest::prelude::*;
use std::time::Duration;

const NAMES: [&str; 5] = [
    "a.service",
    "b.service",
    "c.service",
    "d.service",
    "e.service",
];

#[derive(Clone, Debug)]
enum Op {
    Schedule {
        unit: usize,
        content: u8,
        target: TargetState,
    },
    Unschedule {
        unit: usize,
    },
    Crash {
        unit: usize,
    },
    Outage {
        secs: u64,
        changes: Vec<(usize, u8, TargetState)>,
    },
    Restart {
        gone_secs: u64,
    },
    Wait {
        secs: u64,
    },
    Global {
        unit: usize,
        region: Option<&'static str>,
        conflicts: bool,
        target: TargetState,
    },
    Metadata {
        region: &'static str,
    },
}

const GLOBALS: [&str; 3] = ["g0.service", "g1.service", "g2.service"];

/// A global unit: optionally limited to a region, optionally conflicting with every `g*`.
fn global_file(region: Option<&str>, conflicts: bool) -> UnitFile {
    let mut options = vec![
        UnitOption::new("Service", "ExecStart", "/bin/global"),
        UnitOption::new("X-Fleet", "Global", "true"),
    ];
    if let Some(region) = region {
        options.push(UnitOption::new(
            "X-Fleet",
            "MachineMetadata",
            format!("region={region}"),
        ));
    }
    if conflicts {
        options.push(UnitOption::new("X-Fleet", "Conflicts", "g*"));
    }
    UnitFile::from_options(options)
}

/// Which global units should run, computed independently of the agent (spec §3.3): by name,
/// metadata must match, and no conflict with one already included.
fn expected_globals(w: &World, region: Option<&str>) -> Vec<String> {
    let mut included: Vec<(String, bool)> = Vec::new();
    for (key, value) in w.etcd.values_under(&w.ks.globals_dir()) {
        let name = key.rsplit('/').next().unwrap_or_default().to_string();
        let record: ScheduleRecord = serde_json::from_str(&value).expect("record");
        if record.target_state == TargetState::Inactive {
            continue;
        }
        let file_key = format!("{}/{}", w.ks.units_dir(), record.unit_hash);
        let raw = w.etcd.value(&file_key).expect("unit file");
        let file: flt_core::registry::records::UnitFileRecord =
            serde_json::from_str(raw).expect("record");
        let needs = |v: &str| file.raw.contains(&format!("MachineMetadata=region={v}"));
        let wants_region = ["us", "eu"].into_iter().find(|v| needs(v));
        if wants_region.is_some() && wants_region != region {
            continue;
        }
        let conflicts = file.raw.contains("Conflicts=g*");
        if included.iter().any(|(_, c)| *c) || (conflicts && !included.is_empty()) {
            continue;
        }
        included.push((name, conflicts));
    }
    included.into_iter().map(|(n, _)| n).collect()
}

fn target() -> impl Strategy<Value = TargetState> {
    prop_oneof![
        Just(TargetState::Inactive),
        Just(TargetState::Loaded),
        Just(TargetState::Launched)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..NAMES.len(), 0..3u8, target())
            .prop_map(|(unit, content, target)| Op::Schedule { unit, content, target }),
        1 => (0..NAMES.len()).prop_map(|unit| Op::Unschedule { unit }),
        1 => (0..NAMES.len()).prop_map(|unit| Op::Crash { unit }),
        1 => (1..400u64, prop::collection::vec((0..NAMES.len(), 0..3u8, target()), 0..3))
            .prop_map(|(secs, changes)| Op::Outage { secs, changes }),
        1 => prop_oneof![Just(0u64), Just(5), Just(90)].prop_map(|gone_secs| Op::Restart { gone_secs }),
        2 => (1..30u64).prop_map(|secs| Op::Wait { secs }),
        2 => (
            0..GLOBALS.len(),
            prop_oneof![Just(None), Just(Some("us")), Just(Some("eu"))],
            any::<bool>(),
            target()
        )
            .prop_map(|(unit, region, conflicts, target)| Op::Global { unit, region, conflicts, target }),
        1 => prop_oneof![Just("us"), Just("eu"), Just("")].prop_map(|region| Op::Metadata { region }),
    ]
}

fn content(i: u8) -> flt_core::unit::UnitFile {
    unit(&format!("/bin/sleep {}", 100 + u32::from(i)))
}

fn check_no_stop_or_unload(w: &World, from: usize, what: &str) {
    let actions = w.systemd.actions();
    let bad: Vec<&String> = actions[from.min(actions.len())..]
        .iter()
        .filter(|a| a.starts_with("stop ") || a.starts_with("unload "))
        .collect();
    assert!(bad.is_empty(), "{what}: {bad:?}");
}

fn run(ops: Vec<Op>) {
    let mut w = World::empty();
    let mut config = crate::harness::config();
    config.metadata.insert("region".into(), "us".into());
    w.restart_agent(config.clone());
    w.secs(1);
    let mut region = Some("us");
    for op in ops {
        match op {
            Op::Schedule {
                unit,
                content: c,
                target,
            } => {
                w.schedule(NAMES[unit], &content(c), target);
            }
            Op::Unschedule { unit } => w.unschedule(NAMES[unit]),
            Op::Crash { unit } => {
                if w.systemd.active(NAMES[unit]) == Some("active") {
                    w.systemd.crash(NAMES[unit]);
                    w.pump();
                }
            }
            Op::Outage { secs, changes } => {
                w.etcd.set_down(true);
                let mark = w.systemd.actions().len();
                w.secs(secs);
                check_no_stop_or_unload(&w, mark, "during an outage");
                for (unit, c, target) in changes {
                    w.schedule_quietly(NAMES[unit], &content(c), target);
                }
                w.etcd.forget_history();
                w.etcd.set_down(false);
            }
            Op::Restart { gone_secs } => {
                w.etcd.drop_client();
                let now = w.now + Duration::from_secs(gone_secs);
                w.now = now;
                w.etcd.expire(now);
                let before = w.systemd.states.clone();
                w.restart_agent(config.clone());
                w.secs(2);
                // Units whose schedule did not change are not touched by the restart: no start
                // of a running unit, no stop of a unit that should run.
                for (name, state) in before {
                    if state.active == "active" && w.systemd.active(&name) != Some("active") {
                        let still_wanted = w
                            .etcd
                            .value(&w.ks.schedule_entry(MACHINE, &name))
                            .and_then(|v| serde_json::from_str::<ScheduleRecord>(v).ok())
                            .is_some_and(|r| r.target_state == TargetState::Launched);
                        assert!(!still_wanted, "restart stopped {name}");
                    }
                }
            }
            Op::Wait { secs } => w.secs(secs),
            Op::Global {
                unit,
                region,
                conflicts,
                target,
            } => {
                w.set_global(GLOBALS[unit], &global_file(region, conflicts), target);
            }
            Op::Metadata { region: r } => {
                w.set_metadata("region", r);
                region = if r.is_empty() { None } else { Some(r) };
            }
        }
    }
    // Heal and converge.
    w.secs(200);
    let schedule = w.etcd.values_under(&w.ks.schedule_dir(MACHINE));
    let mut want_files = Vec::new();
    for (key, value) in &schedule {
        let name = key.rsplit('/').next().unwrap_or_default().to_string();
        let record: ScheduleRecord = serde_json::from_str(value).expect("record");
        if record.target_state == TargetState::Inactive {
            continue;
        }
        want_files.push(name.clone());
        let text = w.systemd.files.get(&name).expect("file").clone();
        let hash = flt_core::unit::UnitFile::parse(&text)
            .expect("parse")
            .hash();
        assert_eq!(hash.to_hex(), record.unit_hash, "{name}: stale content");
        let active = w.systemd.active(&name).unwrap_or("none").to_string();
        match record.target_state {
            TargetState::Launched => assert!(
                active == "active" || active == "failed",
                "{name} should run but is {active}"
            ),
            _ => assert_ne!(active, "active", "{name} should be stopped"),
        }
        let published = w.published(&name).expect("state published");
        assert_eq!(published.0, active, "{name}: published state differs");
        assert_eq!(published.2, record.unit_hash);
    }
    let globals = expected_globals(&w, region);
    for name in &globals {
        assert!(
            w.systemd.files.contains_key(name),
            "global {name} not loaded"
        );
        assert!(w.published(name).is_some(), "global {name} not published");
    }
    want_files.extend(globals);
    want_files.sort();
    let files: Vec<String> = w.systemd.files.keys().cloned().collect();
    assert_eq!(files, want_files, "units on the machine");
    let states = w.etcd.values_under(&w.ks.machine_states_dir(MACHINE));
    assert_eq!(
        states.len(),
        want_files.len(),
        "published states: {states:?}"
    );
    // Quiescence: nothing more happens to systemd, and only TTL refreshes are written.
    let actions = w.systemd.actions().len();
    let from = w.now;
    w.secs(600);
    assert_eq!(w.systemd.actions()[actions..], [] as [String; 0]);
    let writes = w.writes_since(from);
    assert!(
        writes.iter().all(|r| matches!(
            r,
            Request::Put {
                value: PutValue::RefreshTtl,
                ..
            }
        )),
        "{writes:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn outages_never_stop_units_and_the_agent_converges(ops in prop::collection::vec(op(), 1..25)) {
        run(ops);
    }
}

#[test]
fn regression_two_outages() {
    run(vec![
        Op::Wait { secs: 10 },
        Op::Wait { secs: 10 },
        Op::Wait { secs: 24 },
        Op::Outage {
            secs: 100,
            changes: vec![],
        },
        Op::Wait { secs: 11 },
        Op::Outage {
            secs: 375,
            changes: vec![],
        },
    ]);
}
