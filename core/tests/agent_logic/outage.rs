//! Losing etcd never stops a unit; after reconnecting the agent converges without restarting
//! anything.

use crate::harness::{MACHINE, World, unit};
use flt_core::agent::Event;
use flt_core::registry::Request;
use flt_core::registry::records::TargetState::*;

fn running_world() -> World {
    let mut w = World::empty();
    w.start();
    w.secs(1);
    w.schedule("a.service", &unit("/bin/a"), Launched);
    w.schedule("b.service", &unit("/bin/b"), Launched);
    w.secs(10);
    w.systemd.log.clear();
    w
}

#[test]
fn losing_etcd_stops_nothing_and_reconnecting_restarts_nothing() {
    let mut w = running_world();
    w.etcd.set_down(true);
    w.secs(300);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert_eq!(w.systemd.active("a.service"), Some("active"));
    // The cluster saw the machine vanish.
    assert!(!w.etcd.exists(&w.ks.machine_object(MACHINE)));
    assert!(!w.etcd.exists(&w.ks.machine_states_dir(MACHINE)));
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::HeartbeatFailed { .. }))
    );
    w.etcd.set_down(false);
    w.secs(60);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
    assert!(w.agent.is_registered());
    assert!(w.etcd.exists(&w.ks.machine_object(MACHINE)));
    // Every state is back.
    assert_eq!(
        w.published("a.service").map(|p| p.0),
        Some("active".to_string())
    );
    assert_eq!(
        w.published("b.service").map(|p| p.0),
        Some("active".to_string())
    );
}

#[test]
fn changes_made_during_the_outage_are_applied_after_reconnect() {
    let mut w = running_world();
    w.etcd.set_down(true);
    w.secs(20);
    // Meanwhile the engine moved a.service away and placed c.service here; etcd forgot the
    // events, so the agent's watch cannot resume.
    let key = w.ks.schedule_entry(MACHINE, "a.service");
    w.etcd.delete(&key);
    w.schedule_quietly("c.service", &unit("/bin/c"), Launched);
    w.etcd.forget_history();
    w.etcd.set_down(false);
    w.secs(120);
    assert_eq!(
        w.systemd.actions(),
        [
            "unload a.service",
            "load c.service",
            "reload",
            "start c.service"
        ]
    );
    assert_eq!(w.systemd.active("b.service"), Some("active"));
}

#[test]
fn a_watch_that_lost_its_history_is_replaced_by_a_fresh_read() {
    let mut w = running_world();
    // Break the watches (the connection drops) and lose the history at the same time.
    w.etcd.set_down(true);
    w.etcd.forget_history();
    w.schedule_quietly("c.service", &unit("/bin/c"), Launched);
    w.etcd.set_down(false);
    w.secs(10);
    assert_eq!(
        w.systemd.actions(),
        ["load c.service", "reload", "start c.service"]
    );
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, Event::SourceFailed { .. }))
    );
}

#[test]
fn a_failure_during_the_outage_is_published_soon_after_reconnect() {
    let mut w = running_world();
    w.etcd.set_down(true);
    w.secs(200);
    w.systemd.crash("a.service");
    w.pump();
    w.secs(100);
    w.etcd.set_down(false);
    // Refreshes retry every agent_ttl/12 while failing, and everything waiting on a backoff
    // goes as soon as etcd answers again.
    w.secs(5);
    assert!(w.agent.is_registered());
    assert_eq!(
        w.published("a.service").map(|p| p.0),
        Some("failed".to_string())
    );
    assert_eq!(
        w.published("b.service").map(|p| p.0),
        Some("active".to_string())
    );
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
}

#[test]
fn host_shutdown_removes_presence_and_states_at_once_and_then_stays_quiet() {
    let mut w = running_world();
    let now = w.now;
    w.agent.host_shutdown(now);
    w.pump();
    assert!(w.agent.is_shut_down());
    assert!(!w.etcd.exists(&w.ks.machine_object(MACHINE)));
    assert!(!w.etcd.exists(&w.ks.machine_states_dir(MACHINE)));
    let sent = w.etcd.log.len();
    w.systemd.crash("b.service");
    w.pump();
    w.secs(120);
    assert_eq!(w.etcd.log.len(), sent, "{:?}", &w.etcd.log[sent..]);
    assert!(w.systemd.actions().is_empty(), "{:?}", w.systemd.actions());
}

#[test]
fn the_schedule_is_retried_with_backoff_during_an_outage_and_at_once_after_it() {
    let mut w = running_world();
    w.etcd.set_down(true);
    let from = w.now;
    w.secs(300);
    let source_requests = |w: &World, since| {
        w.requests_since(since)
            .into_iter()
            .filter(|r| {
                matches!(
                    r,
                    Request::Get {
                        recursive: true,
                        ..
                    } | Request::Watch { .. }
                )
            })
            .count()
    };
    // Three sources, each retried after 1, 2, 4 … up to 60 s (+ jitter): about ten times each.
    let during = source_requests(&w, from);
    println!("schedule source requests in a 300 s outage: {during}");
    assert!((15..=45).contains(&during), "{during}");
    // etcd answers again (the presence retries first): the sources do not wait out their delay.
    w.etcd.set_down(false);
    let key = w.ks.schedule_entry(MACHINE, "b.service");
    w.etcd.delete(&key);
    w.secs(5);
    assert_eq!(w.systemd.actions(), ["unload b.service", "reload"]);
}
