//! Machine presence (spec §3.1): create-only registration, takeover of our own leftover
//! record, duplicate machine IDs, and TTL refreshes well before expiry.

use crate::harness::{MACHINE, World, unit};
use flt_core::agent::Event;
use flt_core::registry::records::MachineRecord;
use flt_core::registry::records::TargetState::*;
use flt_core::registry::{Precondition, PutValue, Request};

fn record(ip: &str) -> String {
    serde_json::to_string(&MachineRecord {
        id: MACHINE.into(),
        public_ip: ip.into(),
        ..MachineRecord::default()
    })
    .expect("json")
}

#[test]
fn presence_is_registered_and_never_expires_while_connected() {
    let mut w = World::empty();
    w.start();
    let key = w.ks.machine_object(MACHINE);
    let stored: MachineRecord =
        serde_json::from_str(w.etcd.value(&key).expect("registered")).expect("record");
    assert_eq!(stored.id, MACHINE);
    assert_eq!(stored.public_ip, "10.0.0.1");
    let first = w
        .etcd
        .log
        .iter()
        .find(|(_, r)| matches!(r, Request::Put { key: k, .. } if *k == key));
    assert!(matches!(
        first,
        Some((
            _,
            Request::Put {
                precondition: Precondition::Absent,
                ..
            }
        ))
    ));
    for _ in 0..300 {
        w.secs(1);
        assert!(w.etcd.exists(&key), "presence expired at {:?}", w.now);
        // Refreshed every agent_ttl/2 (+0–10 %): always at least 40 % of the TTL left.
        let left = w.etcd.ttl_deadline(&key).expect("ttl") - w.now;
        assert!(left.as_secs() >= 12, "only {left:?} left");
    }
    let refreshes = w
        .etcd
        .log
        .iter()
        .filter(|(_, r)| matches!(r, Request::Put { key: k, value: PutValue::RefreshTtl, precondition: Precondition::Present, .. } if *k == key))
        .count();
    // Every agent_ttl/2 (+0–10 %): 15–16.5 s.
    assert!(
        (18..=21).contains(&refreshes),
        "{refreshes} refreshes in 300 s"
    );
}

#[test]
fn a_duplicate_machine_id_is_reported_and_nothing_runs() {
    let mut w = World::empty();
    let key = w.ks.machine_object(MACHINE);
    let now = w.now;
    w.etcd.set(now, &key, &record("10.9.9.9"));
    w.schedule_quietly("a.service", &unit("/bin/a"), Launched);
    w.start();
    w.secs(120);
    let dup = w.events.iter().find_map(|e| match e {
        Event::DuplicateMachineId {
            machine_id,
            ours,
            theirs,
        } => Some((machine_id.clone(), ours.clone(), theirs.clone())),
        _ => None,
    });
    let (id, ours, theirs) = dup.expect("duplicate reported");
    assert_eq!(id, MACHINE);
    assert!(
        ours.contains("10.0.0.1") && theirs.contains("10.9.9.9"),
        "{ours} / {theirs}"
    );
    assert!(w.systemd.actions().is_empty());
    assert!(!w.agent.is_registered());
    // It keeps trying, with backoff: a handful of attempts in two minutes, not hundreds.
    let attempts = w
        .etcd
        .log
        .iter()
        .filter(|(_, r)| matches!(r, Request::Put { key: k, precondition: Precondition::Absent, .. } if *k == key))
        .count();
    assert!((4..=10).contains(&attempts), "{attempts} attempts");
    // The other host goes away: this one registers and does its work.
    w.etcd.delete(&key);
    w.secs(120);
    assert!(w.agent.is_registered());
    assert_eq!(w.systemd.active("a.service"), Some("active"));
}

#[test]
fn our_own_leftover_record_is_taken_over_at_once() {
    let mut w = World::empty();
    let key = w.ks.machine_object(MACHINE);
    let now = w.now;
    w.etcd.set(now, &key, &record("10.0.0.1"));
    w.start();
    assert!(w.agent.is_registered());
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::Registered { adopted: true, .. }))
    );
    assert!(
        w.etcd.ttl_deadline(&key).is_some(),
        "taken over without a TTL"
    );
}

#[test]
fn a_vanished_presence_is_registered_again() {
    let mut w = World::empty();
    w.start();
    let key = w.ks.machine_object(MACHINE);
    w.etcd.delete(&key);
    w.secs(17);
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::PresenceLost { .. }))
    );
    assert!(w.etcd.exists(&key));
    assert!(w.agent.is_registered());
}
