//! Unit tests of [`SimRegistry`].

use super::*;
use flt_core::registry::{Action, Precondition, PutValue};

fn t(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

fn put(key: &str, value: &str) -> Request {
    Request::Put {
        key: key.into(),
        value: PutValue::Value(value.into()),
        ttl: None,
        precondition: Precondition::None,
    }
}

/// Runs the registry until nothing is left to happen, collecting every response.
fn drain(registry: &mut SimRegistry) -> Vec<(ClientId, Response)> {
    let mut out = Vec::new();
    while let Some(at) = registry.next_timeout() {
        if at > t(3_600_000) {
            break;
        }
        while let Some(response) = registry.poll_response(at) {
            out.push(response);
        }
    }
    out
}

const A: ClientId = ClientId(1);
const B: ClientId = ClientId(2);

#[test]
fn every_call_is_answered_once_with_its_id() {
    let mut registry = SimRegistry::new(SimEtcd::new(), RegistryFaults::default(), 1);
    registry.submit(A, OpId(1), put("/k", "v"), t(0));
    let get = Request::Get {
        key: "/k".into(),
        recursive: false,
    };
    registry.submit(B, OpId(7), get.clone(), t(0));
    assert_eq!(registry.poll_response(t(0)), None, "nothing is instant");
    let answers = drain(&mut registry);
    assert_eq!(answers.len(), 2);
    let ids: BTreeSet<(ClientId, OpId)> = answers.iter().map(|(c, r)| (*c, r.id)).collect();
    assert_eq!(ids, BTreeSet::from([(A, OpId(1)), (B, OpId(7))]));
    assert!(matches!(answers[0].1.result, Ok(Reply::Put { .. })));
    // B's read raced A's write: either answer is fine, but it is an answer.
    assert!(answers[1].1.result.is_ok() || answers[1].1.result == Err(Failure::NotFound));
    assert_eq!(registry.etcd().value("/k"), Some("v"));
}

#[test]
fn lost_messages_become_timeouts_and_writes_may_have_landed() {
    let faults = RegistryFaults {
        calls: NetworkFaults {
            drop_rate: 0.5,
            ..NetworkFaults::default()
        },
        ..RegistryFaults::default()
    };
    let mut registry = SimRegistry::new(SimEtcd::new(), faults, 2);
    for i in 0..200 {
        registry.submit(A, OpId(i), put(&format!("/k/{i}"), "v"), t(0));
    }
    let answers = drain(&mut registry);
    assert_eq!(answers.len(), 200, "each request answered exactly once");
    let timeouts: Vec<u64> = answers
        .iter()
        .filter(|(_, r)| r.result == Err(Failure::Timeout))
        .map(|(_, r)| r.id.0)
        .collect();
    // Half the requests are lost on the way, a quarter of the replies on the way back.
    assert!((100..200).contains(&timeouts.len()), "{}", timeouts.len());
    let landed_anyway = timeouts
        .iter()
        .filter(|i| registry.etcd().value(&format!("/k/{i}")).is_some())
        .count();
    assert!(
        landed_anyway > 10,
        "{landed_anyway} writes landed although they timed out"
    );
    assert!(
        answers
            .iter()
            .filter(|(_, r)| r.result.is_ok())
            .all(|(_, r)| registry.etcd().value(&format!("/k/{}", r.id.0)).is_some())
    );
}

#[test]
fn watches_stream_in_order_and_stop_when_cancelled() {
    let faults = RegistryFaults {
        streams: NetworkFaults {
            max_delay: Duration::from_millis(30),
            duplicate_rate: 0.0,
            fifo: false, // imposed anyway
            ..NetworkFaults::default()
        },
        ..RegistryFaults::default()
    };
    let mut registry = SimRegistry::new(SimEtcd::new(), faults, 3);
    let watch = Request::Watch {
        prefix: "/w".into(),
        from_index: 0,
    };
    registry.submit(A, OpId(100), watch, t(0));
    drain(&mut registry);
    for i in 0..50 {
        registry.submit(B, OpId(i), put("/w/k", &i.to_string()), t(10 + i));
    }
    let answers = drain(&mut registry);
    let events: Vec<String> = answers
        .iter()
        .filter(|(c, r)| *c == A && r.id == OpId(100))
        .map(|(_, r)| match &r.result {
            Ok(Reply::Event(e)) => e.node.value.clone().unwrap_or_default(),
            other => panic!("{other:?}"),
        })
        .collect();
    let in_etcd_order: Vec<String> = registry
        .etcd()
        .history()
        .filter(|(e, _)| e.action == Action::Set)
        .map(|(e, _)| e.node.value.clone().unwrap_or_default())
        .collect();
    assert_eq!(events.len(), 50);
    assert_eq!(events, in_etcd_order, "in etcd's order");
    assert!(registry.cancel_watch(A, OpId(100)));
    registry.submit(B, OpId(99), put("/w/k", "after"), t(1000));
    let answers = drain(&mut registry);
    assert_eq!(answers.len(), 1, "only B's answer: {answers:?}");
    assert!(!registry.cancel_watch(A, OpId(100)));
}

#[test]
fn a_partition_fails_calls_fast_and_the_watch_catches_up_after() {
    let mut registry = SimRegistry::new(SimEtcd::new(), RegistryFaults::default(), 4);
    let watch = Request::Watch {
        prefix: "/p".into(),
        from_index: 0,
    };
    registry.submit(A, OpId(1), watch, t(0));
    drain(&mut registry);
    registry.cut_off(A, t(10));
    registry.submit(A, OpId(2), put("/p/a", "1"), t(10));
    registry.submit(B, OpId(3), put("/p/b", "2"), t(10));
    let answers = drain(&mut registry);
    let by_id: BTreeMap<OpId, &Result<Reply, Failure>> =
        answers.iter().map(|(_, r)| (r.id, &r.result)).collect();
    assert!(matches!(by_id[&OpId(2)], Err(Failure::Unreachable(_))));
    assert!(matches!(by_id[&OpId(3)], Ok(Reply::Put { .. })));
    assert!(
        !by_id.contains_key(&OpId(1)),
        "the cut-off watch hears nothing"
    );
    assert_eq!(registry.etcd().value("/p/a"), None);
    registry.reconnect(A, t(500));
    let answers = drain(&mut registry);
    assert_eq!(answers.len(), 1);
    match &answers[0].1.result {
        Ok(Reply::Event(e)) => assert_eq!(e.node.key, "/p/b"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let faults = RegistryFaults {
        calls: NetworkFaults {
            drop_rate: 0.1,
            max_delay: Duration::from_millis(20),
            ..NetworkFaults::default()
        },
        streams: NetworkFaults {
            duplicate_rate: 0.2,
            ..NetworkFaults::default()
        },
        ..RegistryFaults::default()
    };
    let run = |seed| {
        let mut registry = SimRegistry::new(SimEtcd::new(), faults.clone(), seed);
        registry.submit(
            A,
            OpId(0),
            Request::Watch {
                prefix: "/".into(),
                from_index: 0,
            },
            t(0),
        );
        for i in 1..100 {
            registry.submit(
                ClientId((i % 3) as u32),
                OpId(i),
                put("/x", &i.to_string()),
                t(i),
            );
        }
        drain(&mut registry)
    };
    let first = run(5);
    assert_eq!(run(5), first);
    assert_ne!(run(6), first);
    // 99 changes, about a fifth of them delivered twice, none lost.
    let events = first
        .iter()
        .filter(|(c, r)| *c == A && r.id == OpId(0))
        .count();
    assert!((99 + 5..99 + 40).contains(&events), "{events} events");
}
