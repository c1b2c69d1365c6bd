//! A swarm simulation of `flt_core::registry::PrefixFollower` (what agents and the engine use to
//! keep up with a prefix), the first core state machine driven by the simulator: several nodes
//! each follow one prefix through `SimRegistry` while a writer changes it (TTLs, directories,
//! compare-and-swap, recursive deletes, bursts that push watches out of etcd's history), under
//! the faults a seed draws (lost calls, delayed and duplicated watch events, partitions). After
//! the safety phase the faults heal; every node's mirror must then equal etcd's content.
//!
//! `FLT_SIM_SEED=<seed>` runs one seed; `FLT_SIM_SEEDS=<n>` changes how many are run. The
//! figures (events/s, simulated seconds per wall second) are printed, not asserted.

use flt_core::registry::{
    Event, Failure, FollowConfig, FollowEvent, OpIdGen, Precondition, PrefixFollower, PutValue,
    Request,
};
use flt_core::rng::SplitMix64;
use flt_core::time::Instant;
use flt_tests::sim::etcd::{ClientId, SimEtcd};
use flt_tests::sim::registry::SimRegistry;
use flt_tests::sim::swarm::{FaultPlan, seed_from_env};
use std::collections::BTreeMap;
use std::time::Duration;

const PREFIX: &str = "/_coreos.com/flt/job";
const NODES: usize = 4;
const SAFETY: Duration = Duration::from_secs(600);
const HEAL: Duration = Duration::from_secs(240);

/// One node: a follower and the key → value mirror it maintains.
struct Node {
    client: ClientId,
    ids: OpIdGen,
    follower: PrefixFollower,
    mirror: BTreeMap<String, String>,
    snapshots: usize,
}

impl Node {
    fn apply(&mut self, event: FollowEvent) {
        match event {
            FollowEvent::Snapshot { node, .. } => {
                self.snapshots += 1;
                self.mirror = node
                    .walk()
                    .filter(|n| !n.dir)
                    .map(|n| (n.key.clone(), n.value.clone().unwrap_or_default()))
                    .collect();
            }
            FollowEvent::Change(Event { action, node, .. }) => {
                let below = format!("{}/", node.key);
                if action.is_removal() {
                    self.mirror
                        .retain(|k, _| *k != node.key && !k.starts_with(&below));
                } else if node.dir {
                    // A directory now stands where a file may have been.
                    self.mirror.remove(&node.key);
                } else {
                    self.mirror.insert(node.key, node.value.unwrap_or_default());
                }
            }
        }
    }
}

/// Random changes under the prefix, plus unrelated bursts.
struct Writer {
    rng: SplitMix64,
    next_at: Instant,
}

impl Writer {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.below(items.len() as u64) as usize]
    }

    fn requests(&mut self, etcd: &SimEtcd) -> Vec<Request> {
        let unit = format!("{PREFIX}/u{}.service", self.rng.below(12));
        let key = match self.rng.below(3) {
            0 => unit.clone(),
            _ => format!(
                "{unit}/{}",
                self.pick(&["object", "target", "target-state"])
            ),
        };
        let value = PutValue::Value(format!("v{}", self.rng.below(5)));
        let ttl = (self.rng.below(4) == 0).then(|| Duration::from_secs(1 + self.rng.below(90)));
        let request = match self.rng.below(100) {
            0..45 => Request::Put {
                key,
                value,
                ttl,
                precondition: Precondition::None,
            },
            45..55 => Request::Put {
                key,
                value,
                ttl,
                precondition: match etcd.value(&unit) {
                    Some(v) if self.rng.below(2) == 0 => Precondition::Value(v.to_string()),
                    _ => Precondition::Absent,
                },
            },
            55..65 => Request::Put {
                key: unit,
                value: PutValue::Directory,
                ttl,
                precondition: Precondition::None,
            },
            65..72 => Request::Put {
                key,
                value: PutValue::RefreshTtl,
                ttl: Some(Duration::from_secs(1 + self.rng.below(60))),
                precondition: Precondition::Present,
            },
            72..97 => Request::Delete {
                key,
                precondition: Precondition::None,
                recursive: true,
            },
            _ => {
                // A burst elsewhere: more than etcd's history holds.
                return (0..1100)
                    .map(|i| Request::Put {
                        key: format!("/noise/{}", i % 7),
                        value: PutValue::Value(i.to_string()),
                        ttl: None,
                        precondition: Precondition::None,
                    })
                    .collect();
            }
        };
        vec![request]
    }
}

#[derive(Default)]
struct RunStats {
    responses: u64,
    writes: u64,
    snapshots: usize,
    /// Failures the followers were handed, by kind.
    failures: BTreeMap<&'static str, u64>,
}

fn at(d: Duration) -> Instant {
    Instant::from_epoch(d)
}

fn run(seed: u64) -> RunStats {
    let plan = FaultPlan::draw(seed, NODES, SAFETY);
    let mut registry = SimRegistry::new(SimEtcd::new(), plan.registry.clone(), seed);
    let config = FollowConfig::default();
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|i| {
            let mut ids = OpIdGen::new(1);
            let follower = PrefixFollower::new(
                PREFIX,
                config.clone(),
                seed ^ i as u64,
                &mut ids,
                Instant::ZERO,
            );
            Node {
                client: ClientId(i as u32),
                ids,
                follower,
                mirror: BTreeMap::new(),
                snapshots: 0,
            }
        })
        .collect();
    let mut writer = Writer {
        rng: SplitMix64::new(seed.rotate_left(17)),
        next_at: Instant::ZERO,
    };
    let mut transitions = plan.transitions();
    transitions.push(at(SAFETY));
    transitions.reverse();
    let end = at(SAFETY + HEAL);
    let mut stats = RunStats::default();
    let mut now = Instant::ZERO;
    let mut cut = [false; NODES];
    let mut healed = false;
    while now < end {
        // Faults due now: partitions start or end; at the end of the safety phase, all heal.
        while transitions.last().is_some_and(|t| *t <= now) {
            transitions.pop();
        }
        if !healed && now >= at(SAFETY) {
            healed = true;
            let (faults, _) = plan.healed();
            registry.set_faults(faults);
        }
        for (i, was_cut) in cut.iter_mut().enumerate() {
            let should = !healed && plan.partitioned(i, now);
            if should != *was_cut {
                *was_cut = should;
                if should {
                    registry.cut_off(ClientId(i as u32), now);
                } else {
                    registry.reconnect(ClientId(i as u32), now);
                }
            }
        }
        // The writer, only during the safety phase.
        if !healed && writer.next_at <= now {
            for request in writer.requests(registry.etcd()) {
                let _ = registry.apply_direct(&request, now);
                stats.writes += 1;
            }
            writer.next_at = now + Duration::from_millis(1 + writer.rng.below(1500));
        }
        while let Some((client, response)) = registry.poll_response(now) {
            stats.responses += 1;
            if let Err(failure) = &response.result {
                let kind = match failure {
                    Failure::Timeout => "timeout",
                    Failure::Unreachable(_) => "unreachable",
                    Failure::HistoryLost { .. } => "history-lost",
                    Failure::NotFound => "not-found",
                    Failure::PreconditionFailed => "precondition-failed",
                    _ => "other",
                };
                *stats.failures.entry(kind).or_default() += 1;
            }
            let node = &mut nodes[client.0 as usize];
            node.follower.handle_input(&response, &mut node.ids, now);
        }
        for node in &mut nodes {
            if node.follower.poll_timeout().is_some_and(|(t, _)| t <= now) {
                node.follower.handle_timeout(&mut node.ids, now);
            }
            while let Some((id, request)) = node.follower.poll_command() {
                registry.submit(node.client, id, request, now);
            }
            while let Some(event) = node.follower.poll_event() {
                node.apply(event);
            }
        }
        let next = [
            registry.next_timeout(),
            (!healed).then_some(writer.next_at),
            transitions.last().copied(),
            Some(end),
        ]
        .into_iter()
        .flatten()
        .chain(
            nodes
                .iter()
                .filter_map(|n| n.follower.poll_timeout().map(|(t, _)| t)),
        )
        .min()
        .unwrap_or(end);
        // Everything due at `now` was handled above: a timer still at `now` moves on a tick.
        now = if next > now {
            next
        } else {
            now + Duration::from_micros(1)
        };
    }
    // Deliver what is left at the end, then compare every mirror with etcd.
    while let Some((client, response)) = registry.poll_response(end) {
        let node = &mut nodes[client.0 as usize];
        node.follower.handle_input(&response, &mut node.ids, end);
    }
    let truth: BTreeMap<String, String> =
        registry.etcd().values_under(PREFIX).into_iter().collect();
    for node in &mut nodes {
        while let Some(event) = node.follower.poll_event() {
            node.apply(event);
        }
        assert_eq!(
            node.mirror, truth,
            "FLT_SIM_SEED={seed:#x}: node {} did not converge ({plan})",
            node.client.0
        );
        stats.snapshots += node.snapshots;
    }
    stats
}

#[test]
fn prefix_followers_converge_under_swarm_faults() {
    let seeds: Vec<u64> = match std::env::var("FLT_SIM_SEED") {
        Ok(_) => vec![seed_from_env(0)],
        Err(_) => {
            let count = std::env::var("FLT_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(12u64);
            (0..count).map(|i| 0xf011_0000 + i).collect()
        }
    };
    let wall = std::time::Instant::now();
    let mut total = RunStats::default();
    for &seed in &seeds {
        let stats = run(seed);
        total.responses += stats.responses;
        total.writes += stats.writes;
        total.snapshots += stats.snapshots;
        for (kind, n) in stats.failures {
            *total.failures.entry(kind).or_default() += n;
        }
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let simulated = (SAFETY + HEAL).as_secs_f64() * seeds.len() as f64;
    eprintln!(
        "follower swarm: {} seeds × {NODES} nodes, {:.0} simulated s in {elapsed:.2} s wall \
         ({:.0} simulated s per wall s); {} registry responses ({:.0}/s), {} writes, {} snapshots; \
         failures handed to followers: {:?}",
        seeds.len(),
        simulated,
        simulated / elapsed,
        total.responses,
        total.responses as f64 / elapsed,
        total.writes,
        total.snapshots,
        total.failures,
    );
    // With the default seeds, the followers met every kind of trouble they must survive.
    if seeds.len() >= 12 {
        for kind in ["timeout", "unreachable", "history-lost"] {
            assert!(
                total.failures.get(kind).is_some_and(|n| *n > 0),
                "no follower saw a {kind}: {:?}",
                total.failures
            );
        }
    }
}
