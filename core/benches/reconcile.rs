//! One full reconcile (`engine::plan`) at 100, 1,000 and 10,000 machines × 10× as many units.
//!
//! `cargo bench -p flt-core --bench reconcile` prints, per size and workload, the median time of
//! one plan. Workloads:
//! - `fresh`: every unit unconstrained and unscheduled (the worst case for placement);
//! - `steady`: the same units already placed (what the safety-net reconcile costs);
//! - `mixed`: 10 % conflict groups (globs), 10 % MachineOf pairs, 5 % metadata, 1 % MachineID,
//!   plus 5 global units, all unscheduled.
//!
//! - `view`: the engine's cluster model ([`ClusterView`]) built from registry reads, then
//!   `snapshot()` + `plan` of the steady state, which is what each engine reconcile costs.
//!
//! The last column divides the time by units × log2(machines): flat means O(units × log machines).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use flt_core::engine::{ClusterSnapshot, MachineSnapshot, Task, UnitSnapshot, plan};
use flt_core::registry::records::{JobRecord, MachineRecord, TargetState};
use flt_core::registry::view::{ClusterView, Dir};
use flt_core::registry::{Keyspace, Node};
use flt_core::unit::Requirements;
use flt_core::unit::UnitFile;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn machine_id(i: usize) -> String {
    format!("{i:08x}{:024x}", i.wrapping_mul(0x9e37_79b9))
}

fn machines(n: usize) -> BTreeMap<String, MachineSnapshot> {
    (0..n)
        .map(|i| {
            let mut metadata = BTreeMap::new();
            metadata.insert("region".to_string(), ["us", "eu", "ap"][i % 3].to_string());
            (machine_id(i), MachineSnapshot { metadata })
        })
        .collect()
}

fn unconstrained(n_machines: usize, n_units: usize) -> ClusterSnapshot {
    let units = (0..n_units)
        .map(|i| {
            let unit = UnitSnapshot::new(Requirements::default(), TargetState::Launched);
            (format!("app-{i:07}.service"), unit)
        })
        .collect();
    ClusterSnapshot {
        machines: machines(n_machines),
        units,
    }
}

fn mixed(n_machines: usize, n_units: usize) -> ClusterSnapshot {
    let mut units = BTreeMap::new();
    for i in 0..n_units {
        let mut req = Requirements::default();
        let name = match i % 100 {
            0..=9 => {
                // Groups of 5 that must not share a machine.
                let group = i / 100;
                req.conflicts.push(format!("conflict-{group:06}.*.service"));
                format!("conflict-{group:06}.{}.service", i % 10)
            }
            10..=14 => format!("leader-{i:07}.service"),
            15..=19 => {
                req.peers.push(format!("leader-{:07}.service", i - 5));
                format!("follower-{i:07}.service")
            }
            20..=24 => {
                req.metadata
                    .entry("region".to_string())
                    .or_default()
                    .insert("eu".to_string());
                format!("eu-{i:07}.service")
            }
            25 => {
                req.machine_id = Some(machine_id(i % n_machines)[..8].to_string());
                format!("pinned-{i:07}.service")
            }
            _ => format!("app-{i:07}.service"),
        };
        units.insert(name, UnitSnapshot::new(req, TargetState::Launched));
    }
    for g in 0..5 {
        let req = Requirements {
            global: true,
            ..Requirements::default()
        };
        units.insert(
            format!("global-{g}.service"),
            UnitSnapshot::new(req, TargetState::Launched),
        );
    }
    ClusterSnapshot {
        machines: machines(n_machines),
        units,
    }
}

fn placed(mut snapshot: ClusterSnapshot) -> ClusterSnapshot {
    for task in plan(&snapshot).tasks {
        if let Task::AttemptSchedule { unit, machine } = task
            && let Some(u) = snapshot.units.get_mut(&unit)
        {
            u.target = Some(machine);
        }
    }
    snapshot
}

fn leaf(key: String, value: String) -> Node {
    Node {
        key,
        value: Some(value),
        ..Node::default()
    }
}

fn dir(key: String, nodes: Vec<Node>) -> Node {
    Node {
        key,
        dir: true,
        nodes,
        ..Node::default()
    }
}

/// A cluster model holding `snapshot`'s machines and placed units, as the engine would have
/// read it from the registry (one shared unit file).
fn view_of(snapshot: &ClusterSnapshot) -> ClusterView {
    let ks = Keyspace::default();
    let file = UnitFile::parse("[Service]\nExecStart=/bin/sleep 1000\n").expect("parses");
    let hash = file.hash();
    let raw = serde_json::json!({ "Raw": file.serialize() }).to_string();
    let units = dir(ks.units_dir(), vec![leaf(ks.unit(&hash), raw)]);
    let jobs = snapshot
        .units
        .iter()
        .map(|(name, unit)| {
            let object = JobRecord {
                name: name.clone(),
                unit_hash: hash.0,
            };
            let mut children = vec![
                leaf(
                    ks.job_object(name),
                    serde_json::to_string(&object).unwrap_or_default(),
                ),
                leaf(ks.job_target_state(name), "launched".to_string()),
            ];
            if let Some(target) = &unit.target {
                children.push(leaf(ks.job_target(name), target.clone()));
            }
            dir(ks.job_dir(name), children)
        })
        .collect();
    let machines = snapshot
        .machines
        .iter()
        .map(|(id, m)| {
            let record = MachineRecord {
                id: id.clone(),
                metadata: m.metadata.clone(),
                ..MachineRecord::default()
            };
            let value = serde_json::to_string(&record).unwrap_or_default();
            dir(ks.machine_dir(id), vec![leaf(ks.machine_object(id), value)])
        })
        .collect();
    let mut view = ClusterView::new(ks.clone());
    view.apply_read(Dir::Units, Some(&units), 1);
    view.apply_read(Dir::Jobs, Some(&dir(ks.jobs_dir(), jobs)), 1);
    view.apply_read(Dir::Machines, Some(&dir(ks.machines_dir(), machines)), 1);
    view
}

/// The median time of `runs` snapshot-and-plan rounds from `view`, and the tasks of one.
fn time_view(view: &ClusterView, runs: usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut tasks = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let p = plan(&std::hint::black_box(view).snapshot());
        times.push(start.elapsed());
        tasks = p.tasks.len();
    }
    times.sort();
    (times[runs / 2], tasks)
}

/// The median of `runs` timed plans, and the number of tasks of one.
fn time(snapshot: &ClusterSnapshot, runs: usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut tasks = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let p = plan(std::hint::black_box(snapshot));
        times.push(start.elapsed());
        tasks = p.tasks.len();
    }
    times.sort();
    (times[runs / 2], tasks)
}

fn main() {
    println!(
        "{:>9} {:>9} {:<8} {:>11} {:>8} {:>20}",
        "machines", "units", "workload", "ms/plan", "tasks", "ns/(unit*log2 M)"
    );
    for n_machines in [100usize, 1_000, 10_000] {
        let n_units = 10 * n_machines;
        let runs = if n_machines >= 10_000 { 5 } else { 11 };
        let fresh = unconstrained(n_machines, n_units);
        let steady = placed(fresh.clone());
        let mixed = mixed(n_machines, n_units);
        let view = view_of(&steady);
        for workload in ["fresh", "steady", "mixed", "view"] {
            let (median, tasks) = match workload {
                "fresh" => time(&fresh, runs),
                "steady" => time(&steady, runs),
                "mixed" => time(&mixed, runs),
                _ => time_view(&view, runs),
            };
            let per = median.as_nanos() as f64 / (n_units as f64 * (n_machines as f64).log2());
            println!(
                "{n_machines:>9} {n_units:>9} {workload:<8} {:>11.2} {tasks:>8} {per:>20.1}",
                median.as_secs_f64() * 1e3
            );
        }
    }
}
