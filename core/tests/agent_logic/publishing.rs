//! Unit states: fleet's JSON, written when systemd's state changes (at once, so a failure shows
//! up immediately), never rewritten otherwise; and the agent leaves restarting to systemd.

use crate::harness::{MACHINE, World, unit};
use flt_core::agent::Input;
use flt_core::agent::UnitObserved;
use flt_core::registry::Request;
use flt_core::registry::records::TargetState::*;

fn state_puts(w: &World, name: &str) -> usize {
    let key = w.state_key(name);
    w.etcd
        .log
        .iter()
        .filter(|(_, r)| matches!(r, Request::Put { key: k, .. } if *k == key))
        .count()
}

#[test]
fn the_state_record_is_fleets_json_for_this_machine() {
    let mut w = World::empty();
    w.start();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    let raw = w.etcd.value(&w.state_key("a.service")).expect("published");
    let v: serde_json::Value = serde_json::from_str(raw).expect("json");
    assert_eq!(v["loadState"], "loaded");
    assert_eq!(v["activeState"], "active");
    assert_eq!(v["subState"], "running");
    assert_eq!(v["machineState"]["ID"], MACHINE);
    assert_eq!(v["unitHash"], unit("/bin/a").hash().to_hex());
    // The state has no TTL of its own: its directory carries it.
    assert!(w.etcd.ttl_deadline(&w.state_key("a.service")).is_none());
    assert!(
        w.etcd
            .ttl_deadline(&w.ks.machine_states_dir(MACHINE))
            .is_some()
    );
}

#[test]
fn states_are_written_only_when_they_change() {
    let mut w = World::empty();
    w.start();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    let settled = state_puts(&w, "a.service");
    w.secs(600);
    assert_eq!(
        state_puts(&w, "a.service"),
        settled,
        "rewritten without a change"
    );
    // The same state reported again (a poll, a repeated signal) writes nothing.
    let same = UnitObserved::new("a.service", "loaded", "active", "running");
    w.agent.handle_input(Input::UnitObserved(same), w.now);
    w.pump();
    assert_eq!(state_puts(&w, "a.service"), settled);
}

#[test]
fn a_failed_unit_is_reported_at_once_and_not_restarted() {
    let mut w = World::empty();
    w.start();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.systemd.log.clear();
    w.systemd.crash("a.service");
    // No time passes: the signal alone publishes the state.
    w.pump();
    assert_eq!(
        w.published("a.service").map(|p| (p.0, p.1)),
        Some(("failed".to_string(), "failed".to_string()))
    );
    w.secs(300);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
}

#[test]
fn units_the_agent_does_not_run_are_not_published() {
    let mut w = World::empty();
    w.start();
    let stray = UnitObserved::new("stray.service", "loaded", "active", "running");
    w.agent.handle_input(Input::UnitObserved(stray), w.now);
    w.pump();
    w.secs(30);
    assert_eq!(w.published("stray.service"), None);
}

/// The state a launched unit passes through between its load and its start (loaded, inactive)
/// is not written: one write per launched unit, with the state it reached.
#[test]
fn a_launched_unit_is_published_once_started() {
    let mut w = World::empty();
    w.start();
    w.secs(1);
    w.schedule_quietly("a.service", &unit("/bin/a"), Launched);
    w.schedule_quietly("b.service", &unit("/bin/b"), Loaded);
    w.pump();
    assert_eq!(state_puts(&w, "a.service"), 1);
    assert_eq!(state_puts(&w, "b.service"), 1);
    assert_eq!(w.published("a.service").map(|p| p.0), Some("active".into()));
    assert_eq!(
        w.published("b.service").map(|p| p.0),
        Some("inactive".into())
    );
    // A stop is published once too, with the state it leads to.
    w.schedule("a.service", &unit("/bin/a"), Loaded);
    assert_eq!(state_puts(&w, "a.service"), 2);
    assert_eq!(
        w.published("a.service").map(|p| p.0),
        Some("inactive".into())
    );
}

/// Seen on a real host: the agent's own `ListUnits` (after a batch, or at a resync) answered
/// with a state older than a watch report that arrived meanwhile (the watch runs on another
/// connection). Applied last, the stale answer was published and stuck: the watch does not
/// repeat a state it already reported. A watch report newer than the list request wins.
#[test]
fn a_list_answer_older_than_a_watch_report_does_not_win() {
    use flt_core::agent::{Command, SystemdOutcome, SystemdReply, SystemdRequest};
    let mut w = World::empty();
    w.start();
    w.schedule("a.service", &unit("/bin/a"), Launched);
    let state = |w: &World| {
        w.published("a.service")
            .map(|(active, sub, _)| (active, sub))
    };
    assert_eq!(state(&w), Some(("active".into(), "running".into())));
    // Run to the agent's resync, which lists its units, and hold that list request.
    let list = loop {
        let (at, _) = w.agent.poll_timeout().expect("a timeout");
        w.now = at;
        w.agent.handle_timeout(at);
        let mut list = None;
        while let Some(command) = w.agent.poll_command() {
            match command {
                Command::Systemd {
                    id,
                    request: SystemdRequest::ListUnits { .. },
                } => list = Some(id),
                Command::Systemd { id, request } => w.systemd.answer(id, request),
                Command::Registry { id, request } => w.etcd.handle(w.now, id, request),
            }
        }
        if let Some(id) = list {
            break id;
        }
        w.pump();
    };
    // The unit stops; the watch reports it, then the list's answer (read before) arrives.
    let stopped = UnitObserved::new("a.service", "loaded", "inactive", "dead");
    w.agent.handle_input(Input::UnitObserved(stopped), w.now);
    let stale = UnitObserved::new("a.service", "loaded", "active", "running");
    let reply = SystemdReply {
        id: list,
        result: Ok(SystemdOutcome::Units(vec![stale])),
    };
    w.agent.handle_input(Input::Systemd(reply), w.now);
    w.pump();
    assert_eq!(state(&w), Some(("inactive".into(), "dead".into())));
}
