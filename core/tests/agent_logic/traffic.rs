//! etcd traffic at steady state does not grow with the number of units: one refresh of the
//! presence and one of the unit-state directory per period, plus the slow resync reads.

use crate::harness::{World, unit};
use flt_core::registry::records::TargetState::*;
use flt_core::registry::{PutValue, Request};
use std::time::Duration;

/// Runs `units` launched units to steady state, then counts registry requests over 10 minutes:
/// (all requests, writes, TTL refreshes).
fn steady_state(units: usize) -> (usize, usize, usize) {
    let mut w = World::empty();
    w.start();
    for i in 0..units {
        w.schedule_quietly(
            &format!("u{i:04}.service"),
            &unit(&format!("/bin/u {i}")),
            Launched,
        );
    }
    w.pump();
    w.secs(120);
    assert_eq!(w.systemd.files.len(), units);
    assert_eq!(
        w.etcd
            .values_under(&w.ks.machine_states_dir(crate::harness::MACHINE))
            .len(),
        units
    );
    let from = w.now;
    w.advance(Duration::from_secs(600));
    let all = w.requests_since(from).len();
    let writes = w.writes_since(from);
    let refreshes = writes
        .iter()
        .filter(|r| {
            matches!(
                r,
                Request::Put {
                    value: PutValue::RefreshTtl,
                    ..
                }
            )
        })
        .count();
    (all, writes.len(), refreshes)
}

#[test]
fn steady_state_traffic_does_not_grow_with_the_number_of_units() {
    let one = steady_state(1);
    let many = steady_state(500);
    println!(
        "registry requests in 10 simulated minutes at steady state: 1 unit {:?}, 500 units {:?} \
         (all, writes, ttl refreshes)",
        one, many
    );
    assert_eq!(one, many);
    let (_, writes, refreshes) = many;
    // Nothing but TTL refreshes is written: the presence every agent_ttl/2 (+ up to 10 %), i.e.
    // 37–40 times, and the unit-state directory every other time.
    assert_eq!(writes, refreshes);
    assert!((54..=60).contains(&refreshes), "{refreshes}");
}

#[test]
fn missing_directories_are_created_and_watched_so_a_new_unit_needs_no_read() {
    let mut w = World::empty();
    w.start();
    let schedule = w.ks.schedule_dir(crate::harness::MACHINE);
    for dir in [&schedule, &w.ks.globals_dir()] {
        assert!(w.etcd.exists(dir), "{dir} not created");
    }
    let sent = w.etcd.log.len();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    assert_eq!(
        w.systemd.actions(),
        ["load a.service", "reload", "start a.service"]
    );
    // The watch delivered it: the schedule was not read again.
    let reads = w.etcd.log[sent..]
        .iter()
        .filter(|(_, r)| matches!(r, Request::Get { key, .. } if *key == schedule))
        .count();
    assert_eq!(reads, 0);
}
