//! An [`Engine`] on its own (as the simulator drives it) against the etcd model: it must not
//! depend on anyone else having created the registry's directories.

use crate::front_support::write_hello_unit;
use crate::harness::Etcd;
use flt_core::engine::{Engine, EngineConfig, EngineEvent};
use flt_core::registry::Keyspace;
use flt_core::registry::records::MachineRecord;
use flt_core::time::Instant;
use std::time::Duration;

struct World {
    engine: Engine,
    etcd: Etcd,
    now: Instant,
    events: Vec<EngineEvent>,
}

impl World {
    fn pump(&mut self) {
        for _ in 0..1_000_000 {
            while let Some(command) = self.engine.poll_command() {
                self.etcd.handle(self.now, command.id, command.request);
            }
            while let Some(event) = self.engine.poll_event() {
                self.events.push(event);
            }
            match self.etcd.next_response() {
                Some(response) => self.engine.handle_input(response, self.now),
                None => return,
            }
        }
        panic!("the engine never went idle");
    }

    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            self.pump();
            let next = [
                self.engine.poll_timeout().map(|(at, _)| at),
                self.etcd.next_expiry(),
            ]
            .into_iter()
            .flatten()
            .min();
            let at = next.filter(|at| *at <= target).unwrap_or(target);
            self.now = self.now.max(at);
            self.etcd.expire(self.now);
            self.engine.handle_timeout(self.now);
            if at == target {
                self.pump();
                return;
            }
        }
    }

    fn scheduled(&self, unit: &str) -> bool {
        self.events.iter().any(|e| {
            matches!(e, EngineEvent::UnitScheduled { unit: u, machine } if u == unit && machine == "m1")
        })
    }
}

#[test]
fn an_engine_alone_on_an_empty_registry_schedules_a_new_unit_within_one_reconcile_interval() {
    let config = EngineConfig::new("m1");
    let interval = config.reconcile_interval;
    let mut w = World {
        engine: Engine::new(config, Instant::ZERO),
        etcd: Etcd::default(),
        now: Instant::ZERO,
        events: Vec::new(),
    };
    w.advance(Duration::from_secs(3));
    assert!(
        w.engine.is_leader() && w.engine.is_synced(),
        "{:?}",
        w.events
    );

    // A machine joins and a unit is submitted, both after the engine started.
    let ks = Keyspace::default();
    let machine = serde_json::to_string(&MachineRecord {
        id: "m1".into(),
        ..MachineRecord::default()
    })
    .expect("json");
    w.etcd.set(w.now, &ks.machine_object("m1"), &machine);
    write_hello_unit(&mut w.etcd, w.now, "launched");

    w.advance(interval);
    assert!(w.scheduled("hello.service"), "{:?}", w.events);
    assert_eq!(w.etcd.value(&ks.job_target("hello.service")), Some("m1"));
    assert!(
        w.etcd
            .value(&ks.schedule_entry("m1", "hello.service"))
            .is_some()
    );
}
