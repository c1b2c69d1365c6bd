//! Tests of [`plan`]: one per scheduling rule, the spec §9 scenarios at engine level, and
//! property tests over random clusters.

use super::*;
use crate::glob::glob_match;
use crate::registry::records::TargetState::{self, Inactive, Launched, Loaded};
use crate::unit::Requirements;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A cluster under construction.
#[derive(Default)]
struct Cluster(ClusterSnapshot);

impl Cluster {
    fn machines(ids: &[&str]) -> Cluster {
        let mut c = Cluster::default();
        for id in ids {
            c = c.machine(id, &[]);
        }
        c
    }

    fn machine(mut self, id: &str, metadata: &[(&str, &str)]) -> Cluster {
        let metadata = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .machines
            .insert(id.to_string(), MachineSnapshot { metadata });
        self
    }

    fn unit(mut self, name: &str, req: Requirements, state: TargetState, on: Option<&str>) -> Self {
        let mut unit = UnitSnapshot::new(req, state);
        unit.target = on.map(str::to_string);
        self.0.units.insert(name.to_string(), unit);
        self
    }

    /// A launched unit with no requirements, not scheduled.
    fn plain(self, name: &str) -> Self {
        self.unit(name, Requirements::default(), Launched, None)
    }

    fn plan(&self) -> Plan {
        plan(&self.0)
    }
}

fn conflicts(patterns: &[&str]) -> Requirements {
    Requirements {
        conflicts: patterns.iter().map(|p| p.to_string()).collect(),
        ..Requirements::default()
    }
}

fn peers(names: &[&str]) -> Requirements {
    Requirements {
        peers: names.iter().map(|p| p.to_string()).collect(),
        ..Requirements::default()
    }
}

fn replaces(patterns: &[&str]) -> Requirements {
    Requirements {
        replaces: patterns.iter().map(|p| p.to_string()).collect(),
        ..Requirements::default()
    }
}

fn pinned(machine: &str) -> Requirements {
    Requirements {
        machine_id: Some(machine.to_string()),
        ..Requirements::default()
    }
}

fn metadata(pairs: &[(&str, &str)]) -> Requirements {
    let mut req = Requirements::default();
    for (k, v) in pairs {
        req.metadata
            .entry(k.to_string())
            .or_default()
            .insert(v.to_string());
    }
    req
}

fn global(req: Requirements) -> Requirements {
    Requirements {
        global: true,
        ..req
    }
}

fn sched(unit: &str, machine: &str) -> Task {
    Task::AttemptSchedule {
        unit: unit.into(),
        machine: machine.into(),
    }
}

/// Where every unit is scheduled after carrying out `plan` on `snapshot`, as the registry would
/// see it (create-only schedule, compare-and-delete unschedule).
fn apply(snapshot: &ClusterSnapshot, plan: &Plan) -> BTreeMap<String, String> {
    let mut targets: BTreeMap<String, String> = snapshot
        .units
        .iter()
        .filter_map(|(name, u)| Some((name.clone(), u.target.clone()?)))
        .collect();
    for task in &plan.tasks {
        match task {
            Task::AttemptSchedule { unit, machine } => {
                assert!(
                    !targets.contains_key(unit),
                    "{unit} scheduled twice: {:?}",
                    plan.tasks
                );
                targets.insert(unit.clone(), machine.clone());
            }
            Task::Unschedule { unit, machine, .. } => {
                assert_eq!(
                    targets.remove(unit).as_deref(),
                    Some(machine.as_str()),
                    "{unit} unscheduled from the wrong machine: {:?}",
                    plan.tasks
                );
            }
        }
    }
    targets
}

fn placements(c: &Cluster) -> BTreeMap<String, String> {
    apply(&c.0, &c.plan())
}

fn on<'a>(placed: &'a BTreeMap<String, String>, unit: &str) -> Option<&'a str> {
    placed.get(unit).map(String::as_str)
}

#[test]
fn least_loaded_with_ties_broken_by_machine_id() {
    let c = Cluster::machines(&["m2", "m1", "m3"])
        .unit(
            "busy.service",
            Requirements::default(),
            Launched,
            Some("m1"),
        )
        .plain("a.service")
        .plain("b.service")
        .plain("c.service");
    let plan = c.plan();
    // m2 and m3 are empty (m2 wins the tie by ID), then all three hold one unit: m1 wins.
    assert_eq!(
        plan.tasks,
        vec![
            sched("a.service", "m2"),
            sched("b.service", "m3"),
            sched("c.service", "m1")
        ]
    );
    assert!(plan.unplaceable.is_empty());
}

#[test]
fn loaded_units_are_placed_and_inactive_ones_are_not() {
    let c = Cluster::machines(&["m1"])
        .unit("a.service", Requirements::default(), Loaded, None)
        .unit("b.service", Requirements::default(), Inactive, None);
    assert_eq!(c.plan().tasks, vec![sched("a.service", "m1")]);
}

#[test]
fn inactive_scheduled_unit_is_unscheduled_and_frees_its_slot() {
    let c = Cluster::machines(&["m1", "m2"])
        .unit("a.service", Requirements::default(), Inactive, Some("m1"))
        .unit("b.service", Requirements::default(), Launched, Some("m2"))
        .plain("c.service");
    let plan = c.plan();
    assert_eq!(
        plan.tasks,
        vec![
            Task::Unschedule {
                unit: "a.service".into(),
                machine: "m1".into(),
                reason: UnscheduleReason::TargetStateInactive,
            },
            sched("c.service", "m1"),
        ]
    );
    assert!(plan.tasks[0].to_string().contains("target state inactive"));
}

#[test]
fn converged_cluster_plans_nothing() {
    let c = Cluster::machines(&["m1", "m2", "m3"])
        .unit("a.service", conflicts(&["*.service"]), Launched, Some("m1"))
        .unit("b.service", Requirements::default(), Loaded, Some("m2"))
        .unit("c.service", peers(&["b.service"]), Launched, Some("m2"))
        .unit("d.service", pinned("m3"), Launched, Some("m3"))
        .unit("g.service", global(Requirements::default()), Launched, None);
    assert_eq!(c.plan(), Plan::default());
}

#[test]
fn no_machines_means_zero_agents_available() {
    let c = Cluster::default().plain("a.service");
    let plan = c.plan();
    assert!(plan.tasks.is_empty());
    assert_eq!(
        plan.unplaceable,
        vec![Unplaceable {
            unit: "a.service".into(),
            reason: UnplaceableReason::ZeroAgents
        }]
    );
    assert_eq!(
        plan.unplaceable[0].reason.to_string(),
        "zero agents available"
    );
}

#[test]
fn dead_machine_units_are_rescheduled_in_one_pass() {
    // m2 went away (its presence key expired): both of its units move in the same plan.
    let c = Cluster::machines(&["m1", "m3"])
        .unit("a.service", Requirements::default(), Launched, Some("m1"))
        .unit("b.service", Requirements::default(), Launched, Some("m2"))
        .unit("c.service", Requirements::default(), Launched, Some("m2"));
    let plan = c.plan();
    assert_eq!(
        plan.tasks[0],
        Task::Unschedule {
            unit: "b.service".into(),
            machine: "m2".into(),
            reason: UnscheduleReason::MachineAway {
                machine: "m2".into()
            },
        }
    );
    assert_eq!(
        plan.tasks[0].to_string(),
        "Unscheduled Job(b.service) from Machine(m2): target Machine(m2) went away"
    );
    let placed = apply(&c.0, &plan);
    assert_eq!(on(&placed, "a.service"), Some("m1"));
    assert_eq!(on(&placed, "b.service"), Some("m3"));
    assert_eq!(on(&placed, "c.service"), Some("m1"));
    assert_eq!(plan.tasks.len(), 4);
}

#[test]
fn machine_id_full_or_short() {
    let full = "113f16a7d8c64b0f9c0e1a2b3c4d5e6f";
    let other = "213f16a7d8c64b0f9c0e1a2b3c4d5e6f";
    let c = Cluster::machines(&[full, other])
        .unit("full.service", pinned(full), Launched, None)
        .unit("short.service", pinned("113f16a7"), Launched, None)
        .unit("nowhere.service", pinned("deadbeef"), Launched, None)
        .unit("moved.service", pinned("213f16a7"), Launched, Some(full));
    let plan = c.plan();
    let placed = apply(&c.0, &plan);
    assert_eq!(on(&placed, "full.service"), Some(full));
    assert_eq!(on(&placed, "short.service"), Some(full));
    assert_eq!(on(&placed, "moved.service"), Some(other));
    assert_eq!(on(&placed, "nowhere.service"), None);
    assert_eq!(
        plan.tasks[0].to_string(),
        format!(
            "Unscheduled Job(moved.service) from Machine({full}): target Machine({full}) unable \
             to run unit: agent ID \"{full}\" does not match required \"213f16a7\""
        )
    );
    assert_eq!(plan.unplaceable.len(), 1);
    assert_eq!(
        plan.unplaceable[0].reason.to_string(),
        "no agents able to run job: no live machine has the required ID \"deadbeef\""
    );
}

#[test]
fn machine_metadata_and_across_keys_or_within() {
    let c = Cluster::default()
        .machine("m1", &[("region", "us"), ("disk", "hdd")])
        .machine("m2", &[("region", "eu"), ("disk", "ssd")])
        .machine("m3", &[("region", "ap"), ("disk", "ssd")])
        .unit(
            "db.service",
            metadata(&[("region", "us"), ("region", "eu"), ("disk", "ssd")]),
            Launched,
            None,
        )
        .unit(
            "ap.service",
            metadata(&[("region", "ap")]),
            Launched,
            Some("m1"),
        )
        .unit("gpu.service", metadata(&[("gpu", "yes")]), Launched, None);
    let plan = c.plan();
    let placed = apply(&c.0, &plan);
    assert_eq!(on(&placed, "db.service"), Some("m2"));
    assert_eq!(on(&placed, "ap.service"), Some("m3"));
    assert_eq!(on(&placed, "gpu.service"), None);
    assert_eq!(
        plan.unplaceable[0].reason.to_string(),
        "no agents able to run job: local Machine metadata insufficient"
    );
}

#[test]
fn machine_of_follower_visited_before_its_leader_lands_with_it_in_one_pass() {
    // "a-follower" sorts before "z-leader", so it is tried first and must wait for the leader.
    let c = Cluster::machines(&["m1", "m2"])
        .plain("b.service")
        .unit(
            "a-follower.service",
            peers(&["z-leader.service"]),
            Launched,
            None,
        )
        .plain("z-leader.service");
    let placed = placements(&c);
    assert_eq!(
        on(&placed, "z-leader.service"),
        on(&placed, "a-follower.service")
    );
    assert!(on(&placed, "z-leader.service").is_some());
}

#[test]
fn machine_of_peer_missing_or_inactive_is_unplaceable() {
    let c = Cluster::machines(&["m1"])
        .unit("f.service", peers(&["ghost.service"]), Launched, None)
        .unit("g.service", peers(&["off.service"]), Launched, Some("m1"))
        .unit("off.service", Requirements::default(), Inactive, None);
    let plan = c.plan();
    assert_eq!(
        plan.tasks,
        vec![Task::Unschedule {
            unit: "g.service".into(),
            machine: "m1".into(),
            reason: UnscheduleReason::UnableToRun {
                machine: "m1".into(),
                rejection: Rejection::PeerNotLocal {
                    peer: "off.service".into()
                }
            },
        }]
    );
    let reasons: Vec<String> = plan
        .unplaceable
        .iter()
        .map(|u| format!("{}: {}", u.unit, u.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            "f.service: no agents able to run job: required peer Unit(ghost.service) is not scheduled",
            "g.service: no agents able to run job: required peer Unit(off.service) is not scheduled",
        ]
    );
}

#[test]
fn spec9_machine_of_pairs_follow_a_failed_leader() {
    // TestScheduleMachineOf: ping.N/pong.N pairs on 3 machines; ping.1's machine fails.
    let mut c = Cluster::machines(&["m1", "m2", "m3"]);
    for n in 0..3 {
        c = c.plain(&format!("ping.{n}.service")).unit(
            &format!("pong.{n}.service"),
            peers(&[&format!("ping.{n}.service")]),
            Launched,
            None,
        );
    }
    let placed = placements(&c);
    for n in 0..3 {
        let ping = on(&placed, &format!("ping.{n}.service"));
        assert!(ping.is_some());
        assert_eq!(ping, on(&placed, &format!("pong.{n}.service")));
    }
    // Write the placement back, then kill ping.1's machine.
    let dead = placed["ping.1.service"].clone();
    for (name, machine) in &placed {
        c.0.units.get_mut(name).unwrap().target = Some(machine.clone());
    }
    assert_eq!(c.plan(), Plan::default());
    c.0.machines.remove(&dead);
    let plan = c.plan();
    let after = apply(&c.0, &plan);
    let moved_to = on(&after, "ping.1.service").expect("ping.1 rescheduled in one pass");
    assert_ne!(moved_to, dead);
    assert_eq!(on(&after, "pong.1.service"), Some(moved_to));
    for n in [0, 2] {
        assert_eq!(
            after[&format!("ping.{n}.service")],
            placed[&format!("ping.{n}.service")]
        );
    }
}

#[test]
fn follower_leaves_when_its_leader_is_evicted_later_in_the_pass() {
    // The follower is checked first and its leader is still there; then the leader is evicted
    // for a conflict. The follower must not be left behind alone.
    let c = Cluster::machines(&["m1", "m2"])
        .unit(
            "a-follower.service",
            peers(&["b-leader.service"]),
            Launched,
            Some("m1"),
        )
        .unit(
            "b-leader.service",
            conflicts(&["c.service"]),
            Launched,
            Some("m1"),
        )
        .unit("c.service", Requirements::default(), Launched, Some("m1"));
    let placed = placements(&c);
    assert_eq!(on(&placed, "c.service"), Some("m1"));
    assert_eq!(on(&placed, "b-leader.service"), Some("m2"));
    assert_eq!(on(&placed, "a-follower.service"), Some("m2"));
}

#[test]
fn spec9_conflict_set_spreads_over_three_machines() {
    // TestScheduleConflicts: conflict.0–4 with Conflicts=conflict.*.service on 3 machines.
    let mut c = Cluster::machines(&["m1", "m2", "m3"]);
    for n in 0..5 {
        c = c.unit(
            &format!("conflict.{n}.service"),
            conflicts(&["conflict.*.service"]),
            Launched,
            None,
        );
    }
    let plan = c.plan();
    let placed = apply(&c.0, &plan);
    assert_eq!(placed.len(), 3);
    let machines: std::collections::BTreeSet<&String> = placed.values().collect();
    assert_eq!(machines.len(), 3);
    assert_eq!(
        plan.unplaceable
            .iter()
            .map(|u| u.unit.as_str())
            .collect::<Vec<_>>(),
        vec!["conflict.3.service", "conflict.4.service"]
    );
    assert!(plan.unplaceable[0].reason.to_string().starts_with(
        "no agents able to run job: found conflict with locally-scheduled Unit(conflict."
    ));
}

#[test]
fn spec9_dynamic_cluster_conflict_unit_migrates_to_new_member() {
    // TestDynamicClusterNewMemberUnitMigration: conflict.{0,1,2} on 3 of 4 machines; the host
    // of conflict.1 dies: conflict.1 moves to the free machine, the others stay.
    let c = Cluster::machines(&["m1", "m3", "m4"])
        .unit(
            "conflict.0.service",
            conflicts(&["conflict.*"]),
            Launched,
            Some("m1"),
        )
        .unit(
            "conflict.1.service",
            conflicts(&["conflict.*"]),
            Launched,
            Some("m2"),
        )
        .unit(
            "conflict.2.service",
            conflicts(&["conflict.*"]),
            Launched,
            Some("m3"),
        );
    let placed = placements(&c);
    assert_eq!(on(&placed, "conflict.0.service"), Some("m1"));
    assert_eq!(on(&placed, "conflict.1.service"), Some("m4"));
    assert_eq!(on(&placed, "conflict.2.service"), Some("m3"));
}

#[test]
fn conflicts_apply_in_both_directions() {
    // TestScheduleOneWayConflict: only one side declares the conflict, on one machine.
    let one_way = Cluster::machines(&["m1"])
        .unit(
            "conflicts-with-hello.service",
            conflicts(&["hello.service"]),
            Launched,
            Some("m1"),
        )
        .plain("hello.service");
    let plan = one_way.plan();
    assert!(plan.tasks.is_empty());
    assert_eq!(
        plan.unplaceable[0].reason.to_string(),
        "no agents able to run job: found conflict with locally-scheduled Unit(conflicts-with-hello.service)"
    );
    // The other way round: hello is there, the declaring unit cannot join.
    let other_way = Cluster::machines(&["m1"])
        .unit(
            "hello.service",
            Requirements::default(),
            Launched,
            Some("m1"),
        )
        .unit(
            "conflicts-with-hello.service",
            conflicts(&["hello.service"]),
            Launched,
            None,
        );
    let plan = other_way.plan();
    assert!(plan.tasks.is_empty());
    assert_eq!(plan.unplaceable[0].unit, "conflicts-with-hello.service");
    // After the declaring unit is destroyed, hello gets placed.
    let mut destroyed = one_way;
    destroyed.0.units.remove("conflicts-with-hello.service");
    assert_eq!(destroyed.plan().tasks, vec![sched("hello.service", "m1")]);
}

#[test]
fn colocated_conflicting_units_first_visited_is_evicted_and_rescheduled() {
    let c = Cluster::machines(&["m1", "m2"])
        .unit("a.service", conflicts(&["b.service"]), Launched, Some("m1"))
        .unit("b.service", Requirements::default(), Launched, Some("m1"));
    let plan = c.plan();
    assert_eq!(
        plan.tasks,
        vec![
            Task::Unschedule {
                unit: "a.service".into(),
                machine: "m1".into(),
                reason: UnscheduleReason::UnableToRun {
                    machine: "m1".into(),
                    rejection: Rejection::Conflict {
                        with: "b.service".into()
                    }
                }
            },
            sched("a.service", "m2"),
        ]
    );
}

#[test]
fn spec9_replaces_moves_the_victim_and_the_replacer_stays() {
    // TestScheduleReplace: replace.0 on A; replace.1 and replace.2 (MachineOf replace.1) on B;
    // replace-kick0 (Replaces=replace.0.service) lands on A and pushes replace.0 to B.
    let c = Cluster::machines(&["A", "B"])
        .unit(
            "replace.0.service",
            Requirements::default(),
            Launched,
            Some("A"),
        )
        .unit(
            "replace.1.service",
            Requirements::default(),
            Launched,
            Some("B"),
        )
        .unit(
            "replace.2.service",
            peers(&["replace.1.service"]),
            Launched,
            Some("B"),
        )
        .unit(
            "replace-kick0.service",
            replaces(&["replace.0.service"]),
            Launched,
            None,
        );
    let plan = c.plan();
    assert_eq!(
        plan.tasks,
        vec![
            sched("replace-kick0.service", "A"),
            Task::Unschedule {
                unit: "replace.0.service".into(),
                machine: "A".into(),
                reason: UnscheduleReason::Replaced {
                    by: "replace-kick0.service".into()
                },
            },
            sched("replace.0.service", "B"),
        ]
    );
    // Once written back, the cluster is stable.
    let mut c = c;
    for (name, machine) in apply(&c.0, &plan) {
        c.0.units.get_mut(&name).unwrap().target = Some(machine);
    }
    assert_eq!(c.plan(), Plan::default());
}

#[test]
fn replaces_found_in_phase_a_moves_the_victim_whichever_is_visited_first() {
    for (replacer, victim) in [("a.service", "b.service"), ("b.service", "a.service")] {
        let c = Cluster::machines(&["m1", "m2"])
            .unit(replacer, replaces(&[victim]), Launched, Some("m1"))
            .unit(victim, Requirements::default(), Launched, Some("m1"));
        let placed = placements(&c);
        assert_eq!(on(&placed, replacer), Some("m1"), "{replacer}");
        assert_eq!(on(&placed, victim), Some("m2"), "{victim}");
    }
}

#[test]
fn replaces_with_nowhere_to_go_leaves_both_in_place() {
    let c = Cluster::machines(&["m1"])
        .unit("kick.service", replaces(&["old.*"]), Launched, Some("m1"))
        .unit("old.service", Requirements::default(), Launched, Some("m1"));
    assert_eq!(c.plan(), Plan::default());
}

#[test]
fn circular_replaces_are_ignored() {
    // TestScheduleCircularReplace.
    let c = Cluster::machines(&["m1", "m2"])
        .unit(
            "replace.0.service",
            replaces(&["replace-kick0.service"]),
            Launched,
            Some("m1"),
        )
        .unit(
            "replace-kick0.service",
            replaces(&["replace.0.service"]),
            Launched,
            None,
        );
    // Without the relation, plain least-loaded placement: the empty m2.
    assert_eq!(c.plan().tasks, vec![sched("replace-kick0.service", "m2")]);
    let c = Cluster::machines(&["m1", "m2"])
        .unit("x.service", replaces(&["y.service"]), Launched, Some("m1"))
        .unit("y.service", replaces(&["x.service"]), Launched, Some("m1"));
    assert_eq!(c.plan(), Plan::default());
}

#[test]
fn victim_avoids_its_replacers_machine() {
    let c = Cluster::machines(&["m1", "m2"])
        .unit(
            "kick.service",
            replaces(&["old.service"]),
            Launched,
            Some("m1"),
        )
        .unit("x.service", Requirements::default(), Launched, Some("m2"))
        .plain("old.service");
    // m1 and m2 have equal load, m1 wins ties, but kick replaces old there.
    assert_eq!(c.plan().tasks, vec![sched("old.service", "m2")]);
}

#[test]
fn spec9_global_units_count_towards_load_and_are_never_scheduled() {
    // TestScheduleGlobalUnits at engine level: the global unit counts on the machines its
    // metadata fits, which pushes ordinary units to the others.
    let c = Cluster::default()
        .machine("m1", &[("role", "web")])
        .machine("m2", &[("role", "db")])
        .unit(
            "global.service",
            global(metadata(&[("role", "web")])),
            Launched,
            None,
        )
        .plain("hello.service");
    let plan = c.plan();
    assert_eq!(plan.tasks, vec![sched("hello.service", "m2")]);
    assert!(plan.unplaceable.is_empty());
}

#[test]
fn global_units_count_towards_conflicts_and_peers() {
    let c = Cluster::machines(&["m1", "m2"])
        .unit("g.service", global(metadata(&[])), Launched, None)
        .unit(
            "h.service",
            global(conflicts(&["blocked.service"])),
            Launched,
            None,
        )
        .unit("blocked.service", Requirements::default(), Launched, None)
        .unit("sidecar.service", peers(&["g.service"]), Launched, None);
    let plan = c.plan();
    assert_eq!(plan.tasks, vec![sched("sidecar.service", "m1")]);
    assert_eq!(
        plan.unplaceable[0].reason.to_string(),
        "no agents able to run job: found conflict with locally-scheduled Unit(h.service)"
    );
}

#[test]
fn spec9_global_conflicts_only_the_first_global_counts() {
    // TestScheduleGlobalConflicts: conflict-global.0 and .1 conflict; only .0 counts anywhere,
    // so a unit conflicting with .1 alone may still run.
    let c = Cluster::machines(&["m1"])
        .unit(
            "conflict-global.0.service",
            global(conflicts(&["conflict-global.*.service"])),
            Launched,
            None,
        )
        .unit(
            "conflict-global.1.service",
            global(conflicts(&["conflict-global.*.service"])),
            Launched,
            None,
        )
        .unit(
            "x.service",
            conflicts(&["conflict-global.1.service"]),
            Launched,
            None,
        );
    assert_eq!(c.plan().tasks, vec![sched("x.service", "m1")]);
}

#[test]
fn job_blocking_a_global_frees_it_when_it_leaves() {
    // j conflicts with the global g; while j is on m1, g does not count there. j becomes
    // inactive: g counts on m1 again and the next unit goes to m2.
    let c = Cluster::machines(&["m1", "m2"])
        .unit("g.service", global(Requirements::default()), Launched, None)
        .unit("j.service", conflicts(&["g.service"]), Inactive, Some("m1"))
        .unit("k.service", Requirements::default(), Launched, Some("m2"))
        .plain("z.service");
    let plan = c.plan();
    assert_eq!(plan.tasks.len(), 2);
    // m1: g (1); m2: g + k (2) → m1.
    assert_eq!(plan.tasks[1], sched("z.service", "m1"));
}

#[test]
fn glob_patterns_use_go_path_match() {
    // `[0-9]` and `?` are Go path.Match classes; `*` does not cross `/`. Each unit declares a
    // conflict matching only some of the others, so exactly those pairs end up apart.
    let c = Cluster::machines(&["m1", "m2", "m3"])
        .unit(
            "web-1.service",
            conflicts(&["web-[0-9].service"]),
            Launched,
            Some("m1"),
        )
        .unit(
            "web-2.service",
            Requirements::default(),
            Launched,
            Some("m1"),
        )
        .unit(
            "web-a.service",
            Requirements::default(),
            Launched,
            Some("m1"),
        )
        .unit(
            "db-1.service",
            conflicts(&["db-?.service", "[bad"]),
            Launched,
            Some("m2"),
        )
        .unit(
            "db-22.service",
            Requirements::default(),
            Launched,
            Some("m2"),
        );
    let placed = placements(&c);
    // web-1 conflicts with web-2 (class match) but not web-a; db-1 with no one ("db-22" is two
    // characters after "db-"; "[bad" is malformed and matches nothing).
    assert_ne!(placed["web-1.service"], placed["web-2.service"]);
    assert_eq!(placed["web-2.service"], placed["web-a.service"]);
    assert_eq!(placed["db-1.service"], placed["db-22.service"]);
}

#[test]
fn plan_is_identical_for_identical_snapshots() {
    let mut c = Cluster::machines(&["m1", "m2", "m3"]);
    for n in 0..20 {
        c = c.unit(
            &format!("u{n:02}.service"),
            if n % 3 == 0 {
                conflicts(&["u0*"])
            } else {
                Requirements::default()
            },
            Launched,
            None,
        );
    }
    let first = c.plan();
    let copy = Cluster(c.0.clone());
    assert_eq!(first, copy.plan());
    assert_eq!(first, c.plan());
}

// ---- property tests ----

fn arb_requirements(
    names: Vec<String>,
    machines: Vec<String>,
) -> impl Strategy<Value = Requirements> {
    let name = proptest::sample::select(names);
    let pattern = prop_oneof![
        name.clone(),
        Just("u*".to_string()),
        Just("u[0-3]*".to_string()),
        Just("u?.service".to_string()),
    ];
    let machine_id = prop_oneof![
        4 => Just(None),
        1 => proptest::sample::select(machines).prop_map(|m| Some(m[..m.len().min(8)].to_string())),
        1 => Just(Some("nosuchmachine".to_string())),
    ];
    let metadata = proptest::collection::btree_map(
        prop_oneof![Just("region".to_string()), Just("disk".to_string())],
        proptest::collection::btree_set(
            prop_oneof![Just("a".to_string()), Just("b".to_string())],
            1..=2,
        ),
        0..=1,
    );
    (
        machine_id,
        proptest::collection::vec(name, 0..=1),
        metadata,
        proptest::collection::vec(pattern.clone(), 0..=2),
        proptest::collection::vec(pattern, 0..=1),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(machine_id, peers, metadata, conflicts, replaces, global)| Requirements {
                machine_id,
                peers,
                metadata,
                conflicts,
                replaces,
                global,
            },
        )
}

fn arb_snapshot() -> impl Strategy<Value = ClusterSnapshot> {
    (0usize..=5, 1usize..=14).prop_flat_map(|(n_machines, n_units)| {
        let machine_ids: Vec<String> = (0..n_machines)
            .map(|i| format!("{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}{i:x}cafe"))
            .collect();
        let names: Vec<String> = (0..n_units).map(|i| format!("u{i}.service")).collect();
        let all_machines = if machine_ids.is_empty() {
            vec!["gone".to_string()]
        } else {
            machine_ids.clone()
        };
        let metadata_value = prop_oneof![Just("a".to_string()), Just("b".to_string())];
        let machines = proptest::collection::vec(
            (
                proptest::option::of(metadata_value.clone()),
                proptest::option::of(metadata_value),
            ),
            n_machines,
        );
        let target = prop_oneof![
            2 => Just(None),
            3 => proptest::sample::select(all_machines.clone()).prop_map(Some),
            1 => Just(Some("gone".to_string())),
        ];
        let state = prop_oneof![Just(Inactive), Just(Loaded), Just(Launched), Just(Launched)];
        let units = proptest::collection::vec(
            (arb_requirements(names.clone(), all_machines), state, target),
            n_units,
        );
        (machines, units).prop_map(move |(machines, units)| {
            let mut snapshot = ClusterSnapshot::default();
            for (id, (region, disk)) in machine_ids.iter().zip(machines) {
                let mut metadata = BTreeMap::new();
                if let Some(r) = region {
                    metadata.insert("region".to_string(), r);
                }
                if let Some(d) = disk {
                    metadata.insert("disk".to_string(), d);
                }
                snapshot
                    .machines
                    .insert(id.clone(), MachineSnapshot { metadata });
            }
            for (name, (req, state, target)) in names.iter().zip(units) {
                let mut unit = UnitSnapshot::new(req, state);
                unit.target = target;
                snapshot.units.insert(name.clone(), unit);
            }
            snapshot
        })
    })
}

fn conflict_between(snapshot: &ClusterSnapshot, a: &str, b: &str) -> bool {
    let declares = |x: &str, y: &str| {
        snapshot.units[x]
            .requirements
            .conflicts
            .iter()
            .any(|p| glob_match(p, y) == Ok(true))
    };
    declares(a, b) || declares(b, a)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// After the plan, every active non-global unit that is scheduled runs on a live machine
    /// that meets its MachineID, metadata and MachineOf requirements, and no machine holds two
    /// units that conflict.
    #[test]
    fn plans_never_break_constraints(snapshot in arb_snapshot()) {
        let plan = plan(&snapshot);
        let placed = apply(&snapshot, &plan);
        for (name, machine) in &placed {
            let unit = &snapshot.units[name];
            if unit.is_global() || unit.target_state == Inactive {
                prop_assert!(unit.target.as_deref() == Some(machine.as_str()) && unit.is_global(),
                    "{name} (inactive or global) left scheduled on {machine}: {:?}", plan.tasks);
                continue;
            }
            let Some(m) = snapshot.machines.get(machine) else {
                prop_assert!(false, "{name} left on dead machine {machine}");
                continue;
            };
            let req = &unit.requirements;
            prop_assert!(req.machine_id_matches(machine), "{name} on {machine} breaks MachineID");
            prop_assert!(req.metadata_matches(&m.metadata), "{name} on {machine} breaks metadata");
            for peer in &req.peers {
                let peer_global = snapshot.units.get(peer).is_some_and(|p| p.is_global()
                    && p.target_state != Inactive);
                prop_assert!(peer_global || placed.get(peer) == Some(machine),
                    "{name} on {machine} without its peer {peer}: {:?}", plan.tasks);
            }
            for (other, other_machine) in &placed {
                let o = &snapshot.units[other];
                if other != name && other_machine == machine && !o.is_global()
                    && o.target_state != Inactive {
                    prop_assert!(!conflict_between(&snapshot, name, other),
                        "{name} and {other} conflict on {machine}: {:?}", plan.tasks);
                }
            }
        }
        // Every active non-global unit is either placed or reported.
        for (name, unit) in &snapshot.units {
            if !unit.is_global() && unit.target_state != Inactive && !placed.contains_key(name) {
                prop_assert!(plan.unplaceable.iter().any(|u| &u.unit == name),
                    "{name} neither placed nor reported");
            }
        }
    }

    #[test]
    fn plan_is_deterministic(snapshot in arb_snapshot()) {
        let copy = snapshot.clone();
        prop_assert_eq!(plan(&snapshot), plan(&copy));
    }

    /// Carrying out a plan and planning again changes nothing: the steady state writes nothing.
    #[test]
    fn plan_reaches_a_fixed_point(snapshot in arb_snapshot()) {
        let placed = apply(&snapshot, &plan(&snapshot));
        let mut next = snapshot.clone();
        for (name, unit) in next.units.iter_mut() {
            unit.target = placed.get(name).cloned();
        }
        let again = plan(&next);
        prop_assert!(again.tasks.is_empty(), "second plan not empty: {:?}", &again.tasks[..again.tasks.len().min(8)]);
    }
}
