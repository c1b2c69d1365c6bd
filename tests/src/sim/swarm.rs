//! [`FaultPlan`]: swarm testing's per-seed choice of faults. Each seed turns each kind of fault
//! on or off at random and draws its rate, so that across seeds some runs stress one fault hard
//! while others combine several mildly (Groce et al., "Swarm testing"); partitions and D-Bus
//! outages are scheduled within the safety phase, and [`FaultPlan::healed`] gives the fault-free
//! settings for the heal-and-converge phase that follows.
//!
//! A run prints its plan (`{plan}`) with its seed; `FLT_SIM_SEED=<seed>` replays it
//! ([`seed_from_env`]).

use super::network::NetworkFaults;
use super::registry::RegistryFaults;
use super::systemd::SystemdFaults;
use flt_core::rng::SplitMix64;
use flt_core::time::Instant;
use std::fmt;
use std::time::Duration;

/// The seed to run: `FLT_SIM_SEED` if set (decimal or `0x` hex), else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    let Ok(text) = std::env::var("FLT_SIM_SEED") else {
        return default;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("FLT_SIM_SEED={text:?} is not a number"))
}

/// One node losing something for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// The node's index.
    pub node: usize,
    pub from: Instant,
    pub until: Instant,
}

/// The faults of one simulated run.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub registry: RegistryFaults,
    pub systemd: SystemdFaults,
    /// Nodes cut off from etcd.
    pub partitions: Vec<Outage>,
    /// Nodes whose D-Bus connection is lost.
    pub bus_outages: Vec<Outage>,
    /// How long faults last; after it, [`FaultPlan::healed`] applies.
    pub safety_phase: Duration,
}

fn rate(rng: &mut SplitMix64, max: f64) -> f64 {
    max * rng.below(1001) as f64 / 1000.0
}

fn millis(rng: &mut SplitMix64, max: u64) -> Duration {
    Duration::from_millis(rng.below(max + 1))
}

fn outages(
    rng: &mut SplitMix64,
    nodes: usize,
    safety_phase: Duration,
    longest: Duration,
) -> Vec<Outage> {
    if nodes == 0 || rng.below(2) == 0 {
        return Vec::new();
    }
    let phase = u64::try_from(safety_phase.as_millis()).unwrap_or(u64::MAX);
    let longest = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX);
    let mut list: Vec<Outage> = (0..=rng.below(4))
        .map(|_| {
            let node = rng.below(nodes as u64) as usize;
            let start = rng.below(phase.max(1));
            let end = (start + 1 + rng.below(longest.max(1))).min(phase);
            Outage {
                node,
                from: Instant::from_epoch(Duration::from_millis(start)),
                until: Instant::from_epoch(Duration::from_millis(end.max(start))),
            }
        })
        .collect();
    list.sort_by_key(|o| (o.from, o.node));
    list
}

impl FaultPlan {
    /// Draws the faults of run `seed` for `nodes` nodes, lasting `safety_phase`.
    pub fn draw(seed: u64, nodes: usize, safety_phase: Duration) -> FaultPlan {
        let mut rng = SplitMix64::new(seed);
        let on = |rng: &mut SplitMix64| rng.below(2) == 1;
        let calls = NetworkFaults {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_micros(200) + millis(&mut rng, 200),
            drop_rate: if on(&mut rng) {
                rate(&mut rng, 0.2)
            } else {
                0.0
            },
            duplicate_rate: 0.0,
            fifo: on(&mut rng),
        };
        let streams = NetworkFaults {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_micros(200) + millis(&mut rng, 500),
            drop_rate: 0.0,
            duplicate_rate: if on(&mut rng) {
                rate(&mut rng, 0.3)
            } else {
                0.0
            },
            fifo: true,
        };
        let registry = RegistryFaults {
            calls,
            streams,
            ..RegistryFaults::default()
        };
        let systemd = SystemdFaults {
            min_job_latency: Duration::from_millis(1),
            max_job_latency: Duration::from_millis(2) + millis(&mut rng, 3000),
            start_failure_rate: if on(&mut rng) {
                rate(&mut rng, 0.3)
            } else {
                0.0
            },
            death_rate: if on(&mut rng) {
                rate(&mut rng, 0.3)
            } else {
                0.0
            },
            max_lifetime: Duration::from_secs(1 + rng.below(300)),
        };
        let partitions = outages(&mut rng, nodes, safety_phase, Duration::from_secs(90));
        let bus_outages = outages(&mut rng, nodes, safety_phase, Duration::from_secs(30));
        FaultPlan {
            seed,
            registry,
            systemd,
            partitions,
            bus_outages,
            safety_phase,
        }
    }

    /// The settings for the heal-and-converge phase: no loss, no failures, no deaths, short
    /// delays (outages are over by then).
    pub fn healed(&self) -> (RegistryFaults, SystemdFaults) {
        (RegistryFaults::default(), SystemdFaults::default())
    }

    /// Whether `node` is cut off from etcd at `now`.
    pub fn partitioned(&self, node: usize, now: Instant) -> bool {
        self.partitions
            .iter()
            .any(|o| o.node == node && o.from <= now && now < o.until)
    }

    /// Whether `node`'s D-Bus connection is lost at `now`.
    pub fn bus_lost(&self, node: usize, now: Instant) -> bool {
        self.bus_outages
            .iter()
            .any(|o| o.node == node && o.from <= now && now < o.until)
    }

    /// The instants at which some outage starts or ends, sorted (when to re-check the above).
    pub fn transitions(&self) -> Vec<Instant> {
        let mut at: Vec<Instant> = self
            .partitions
            .iter()
            .chain(&self.bus_outages)
            .flat_map(|o| [o.from, o.until])
            .collect();
        at.sort();
        at.dedup();
        at
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.registry.calls;
        let s = &self.registry.streams;
        let d = &self.systemd;
        write!(
            f,
            "seed {:#x}: calls drop {:.3} delay ≤{:?}{}; watch events duplicate {:.3} delay \
             ≤{:?}; systemd jobs ≤{:?}, start failures {:.3}, deaths {:.3} within {:?}; \
             {} partition(s), {} D-Bus outage(s) in {:?}",
            self.seed,
            c.drop_rate,
            c.max_delay,
            if c.fifo { "" } else { ", reordered" },
            s.duplicate_rate,
            s.max_delay,
            d.max_job_latency,
            d.start_failure_rate,
            d.death_rate,
            d.max_lifetime,
            self.partitions.len(),
            self.bus_outages.len(),
            self.safety_phase,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASE: Duration = Duration::from_secs(600);

    #[test]
    fn plans_follow_the_seed_and_vary_across_seeds() {
        assert_eq!(FaultPlan::draw(1, 5, PHASE), FaultPlan::draw(1, 5, PHASE));
        let plans: Vec<FaultPlan> = (0..200).map(|s| FaultPlan::draw(s, 5, PHASE)).collect();
        let count = |f: &dyn Fn(&FaultPlan) -> bool| plans.iter().filter(|p| f(p)).count();
        // Each fault is on in about half the runs, so some runs have none and some have all.
        for (name, n) in [
            ("lossy calls", count(&|p| p.registry.calls.drop_rate > 0.0)),
            (
                "duplicated events",
                count(&|p| p.registry.streams.duplicate_rate > 0.0),
            ),
            (
                "start failures",
                count(&|p| p.systemd.start_failure_rate > 0.0),
            ),
            ("deaths", count(&|p| p.systemd.death_rate > 0.0)),
            ("partitions", count(&|p| !p.partitions.is_empty())),
            ("bus outages", count(&|p| !p.bus_outages.is_empty())),
        ] {
            assert!((60..140).contains(&n), "{name}: {n} of 200");
        }
        assert!(
            count(&|p| p.registry.calls.drop_rate == 0.0
                && p.systemd.start_failure_rate == 0.0
                && p.partitions.is_empty())
                > 0
        );
    }

    #[test]
    fn outages_lie_within_the_safety_phase() {
        for seed in 0..100 {
            let plan = FaultPlan::draw(seed, 3, PHASE);
            let end = Instant::from_epoch(PHASE);
            for o in plan.partitions.iter().chain(&plan.bus_outages) {
                assert!(o.node < 3 && o.from <= o.until && o.until <= end, "{o:?}");
                assert!(plan.transitions().contains(&o.from));
            }
            if let Some(o) = plan.partitions.first()
                && o.from < o.until
            {
                assert!(plan.partitioned(o.node, o.from));
                assert!(!plan.partitioned(o.node, o.until) || plan.partitions.len() > 1);
            }
            assert!(!plan.partitioned(0, end));
            assert!(plan.to_string().starts_with(&format!("seed {seed:#x}: ")));
        }
        let (registry, systemd) = FaultPlan::draw(3, 3, PHASE).healed();
        assert_eq!(registry.calls.drop_rate, 0.0);
        assert_eq!(systemd.start_failure_rate, 0.0);
    }
}
