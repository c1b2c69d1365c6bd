//! Invariants the cluster simulator checks after every step (STYLE.md §5), over what the
//! simulated etcd and systemds hold, so that they do not depend on how the engine and agent are
//! written. Each returns the violations it found, described for a failure message (empty: none).

use super::etcd::SimEtcd;
use super::systemd::SimSystemd;
use flt_core::glob::glob_match;
use flt_core::registry::{Event, KeyKind, Keyspace};
use flt_core::unit::{Requirements, UnitFile};
use std::collections::BTreeMap;

/// Every unit is scheduled to at most one machine (`P/schedule/<machine>/<name>`), and, where
/// the unit has a target (`P/job/<name>/target`), only to that machine. Global units live under
/// `P/global/` and are not concerned.
pub fn schedule_is_exclusive(etcd: &SimEtcd, keys: &Keyspace) -> Vec<String> {
    let mut scheduled: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut targets: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in etcd.values_under(keys.prefix()) {
        match keys.classify(&key) {
            Some(KeyKind::ScheduleEntry { machine, name }) => {
                scheduled.entry(name).or_default().push(machine);
            }
            Some(KeyKind::JobTarget { name }) => {
                targets.insert(name, value);
            }
            _ => {}
        }
    }
    let mut violations = Vec::new();
    for (name, machines) in &scheduled {
        if machines.len() > 1 {
            violations.push(format!(
                "{name} is scheduled to {} machines: {machines:?}",
                machines.len()
            ));
        }
        if let Some(target) = targets.get(name)
            && machines.iter().any(|m| m != target)
        {
            violations.push(format!(
                "{name} targets {target} but is scheduled to {machines:?}"
            ));
        }
    }
    violations
}

/// No machine runs (or is starting or stopping) two units of which one conflicts with the other
/// (`X-Fleet` `Conflicts=` globs, in the text the unit was loaded with).
pub fn conflicts_respected<'a>(
    machines: impl IntoIterator<Item = (&'a str, &'a SimSystemd)>,
) -> Vec<String> {
    let mut violations = Vec::new();
    for (machine, systemd) in machines {
        let active = systemd.active_units();
        for name in &active {
            let Some(unit) = systemd
                .loaded_text(name)
                .and_then(|text| UnitFile::parse(text).ok())
            else {
                continue;
            };
            let requirements = Requirements::from_unit(&unit, name);
            for other in active.iter().filter(|other| *other != name) {
                if requirements
                    .conflicts
                    .iter()
                    .any(|pattern| glob_match(pattern, other) == Ok(true))
                {
                    violations.push(format!(
                        "{machine} runs {name} and {other}, which {name} conflicts with"
                    ));
                }
            }
        }
    }
    violations
}

/// The registry changes after `index` that `allowed` does not accept (quiescence after
/// convergence: only heartbeats, i.e. TTL refreshes and the like). `allowed` is given each event
/// and whether it was a TTL refresh. If etcd no longer remembers every change since `index`,
/// that is reported too.
pub fn changes_since(
    etcd: &SimEtcd,
    index: u64,
    allowed: impl Fn(&Event, bool) -> bool,
) -> Vec<String> {
    let mut violations = Vec::new();
    if etcd.index() > index && etcd.history_start() > index + 1 {
        violations.push(format!(
            "changes {}..{} are no longer in etcd's history",
            index + 1,
            etcd.history_start()
        ));
    }
    for (event, refresh) in etcd.history() {
        if event.node.modified_index > index && !allowed(event, refresh) {
            violations.push(format!(
                "{:?} of {} at index {}{}",
                event.action,
                event.node.key,
                event.node.modified_index,
                if refresh { " (TTL refresh)" } else { "" }
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::systemd::SystemdFaults;
    use flt_core::registry::{Precondition, PutValue, Reply, Request};
    use flt_core::time::Instant;
    use std::time::Duration;

    fn set(etcd: &mut SimEtcd, key: &str, value: &str) -> Reply {
        let request = Request::Put {
            key: key.into(),
            value: PutValue::Value(value.into()),
            ttl: None,
            precondition: Precondition::None,
        };
        etcd.apply(&request, Instant::ZERO).unwrap()
    }

    #[test]
    fn a_unit_on_two_machines_or_off_its_target_is_reported() {
        let keys = Keyspace::default();
        let mut etcd = SimEtcd::new();
        set(&mut etcd, &keys.job_target("a.service"), "m1");
        set(&mut etcd, &keys.schedule_entry("m1", "a.service"), "{}");
        set(&mut etcd, &keys.schedule_entry("m2", "b.service"), "{}");
        assert_eq!(schedule_is_exclusive(&etcd, &keys), Vec::<String>::new());
        set(&mut etcd, &keys.schedule_entry("m2", "a.service"), "{}");
        assert_eq!(
            schedule_is_exclusive(&etcd, &keys),
            [
                r#"a.service is scheduled to 2 machines: ["m1", "m2"]"#,
                r#"a.service targets m1 but is scheduled to ["m1", "m2"]"#,
            ]
        );
    }

    #[test]
    fn conflicting_units_running_together_are_reported() {
        let mut sd = SimSystemd::new(1, SystemdFaults::default());
        let units = [
            (
                "a.service",
                "[Service]\nExecStart=/bin/a\n[X-Fleet]\nConflicts=b*.service\n",
            ),
            ("b1.service", "[Service]\nExecStart=/bin/b\n"),
            ("c.service", "[Service]\nExecStart=/bin/c\n"),
        ];
        for (name, text) in units {
            sd.write_unit_file(name, text);
        }
        sd.link_unit_files(&["a.service", "b1.service", "c.service"])
            .unwrap();
        let now = Instant::from_epoch(Duration::from_secs(1));
        sd.start_unit("a.service", Instant::ZERO).unwrap();
        sd.start_unit("c.service", Instant::ZERO).unwrap();
        sd.advance(now);
        assert!(conflicts_respected([("m1", &sd)]).is_empty());
        sd.start_unit("b1.service", now).unwrap();
        assert_eq!(
            conflicts_respected([("m1", &sd)]),
            ["m1 runs a.service and b1.service, which a.service conflicts with"],
            "a starting unit counts"
        );
        sd.stop_unit("b1.service", now).unwrap();
        sd.advance(now + Duration::from_secs(1));
        assert!(conflicts_respected([("m1", &sd)]).is_empty());
    }

    #[test]
    fn changes_after_convergence_are_reported_unless_allowed() {
        let mut etcd = SimEtcd::new();
        set(&mut etcd, "/k", "1");
        let converged = etcd.index();
        let refresh = Request::Put {
            key: "/k".into(),
            value: PutValue::RefreshTtl,
            ttl: Some(Duration::from_secs(10)),
            precondition: Precondition::Present,
        };
        etcd.apply(&refresh, Instant::ZERO).unwrap();
        let only_refreshes = |_: &Event, refresh: bool| refresh;
        assert!(changes_since(&etcd, converged, only_refreshes).is_empty());
        set(&mut etcd, "/k", "2");
        assert_eq!(
            changes_since(&etcd, converged, only_refreshes),
            ["Set of /k at index 3"]
        );
        for i in 0..1000 {
            set(&mut etcd, "/k", &i.to_string());
        }
        assert_eq!(
            changes_since(&etcd, converged, |_, _| true),
            ["changes 2..4 are no longer in etcd's history"]
        );
    }
}
