//! [`Scenario`]: what a simulated cluster is asked to do and what goes wrong, drawn from one seed
//! (swarm style): the machines (metadata, clock offset and drift), the units in fleet's six
//! deployment patterns, the users' actions on them, and the faults of the safety phase (those of
//! [`FaultPlan`] plus machine crashes, fltd restarts, etcd outages for everyone, and engines
//! paused right after deciding to write). The simulator (`cluster.rs`) and the whole-cluster fuzz
//! target share this generator.

use super::swarm::FaultPlan;
use flt_core::registry::records::TargetState;
use flt_core::rng::SplitMix64;
use flt_core::time::Instant;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// fleet's deployment patterns (spec §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pattern {
    Plain,
    Global,
    /// `MachineOf=` a plain unit.
    MachineOf,
    /// `Conflicts=conflict-*.service`, named `conflict-<i>.service`.
    Conflicts,
    /// `MachineMetadata=region=east`.
    MachineMetadata,
    /// `MachineID=` one machine.
    MachineId,
}

/// One unit of the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioUnit {
    pub name: String,
    pub pattern: Pattern,
    pub text: String,
}

/// A user's action, as the API would write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// Submit (if needed) and set the target state.
    SetTarget { unit: usize, state: TargetState },
    /// Remove the job.
    Destroy { unit: usize },
}

/// One machine of the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioMachine {
    pub id: String,
    pub metadata: BTreeMap<String, String>,
    /// Local clock = offset + virtual time × (1 + drift_ppm / 10⁶).
    pub offset: Duration,
    pub drift_ppm: i64,
}

/// A crash or restart of one machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub node: usize,
    pub at: Instant,
    pub down_for: Duration,
    /// A host crash loses the units (systemd starts empty); otherwise only fltd restarts and the
    /// units keep running, to be adopted.
    pub host: bool,
}

/// An engine that stops running right after it decided to write, for longer than its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    pub node: usize,
    /// Armed from here: the pause starts at the node's next registry write after it.
    pub armed_at: Instant,
    pub length: Duration,
}

/// Everything a run does, drawn from its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub seed: u64,
    pub machines: Vec<ScenarioMachine>,
    pub units: Vec<ScenarioUnit>,
    /// Actions by time (during the safety phase), sorted.
    pub actions: Vec<(Instant, UserAction)>,
    pub faults: FaultPlan,
    pub crashes: Vec<Crash>,
    pub pauses: Vec<Pause>,
    /// Windows in which no machine reaches etcd.
    pub etcd_outages: Vec<(Instant, Instant)>,
    pub safety_phase: Duration,
    pub heal_phase: Duration,
}

/// Sizes of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScenarioSize {
    pub min_machines: usize,
    pub max_machines: usize,
    /// Units per machine, on average.
    pub units_per_machine: usize,
    pub safety_phase: Duration,
    pub heal_phase: Duration,
    /// Whether the faults of the safety phase are drawn (off: a healthy cluster).
    pub faults: bool,
}

impl Default for ScenarioSize {
    /// CI's sweep: 5–20 machines, 3 units each, 10 simulated minutes (6 with faults, 4 healed).
    fn default() -> Self {
        ScenarioSize {
            min_machines: 5,
            max_machines: 20,
            units_per_machine: 3,
            safety_phase: Duration::from_secs(360),
            heal_phase: Duration::from_secs(240),
            faults: true,
        }
    }
}

fn at_ms(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

/// The text of a unit of `pattern`; `peer` and `machine` feed `MachineOf=` and `MachineID=`.
fn unit_text(name: &str, pattern: Pattern, peer: &str, machine: &str, west: bool) -> String {
    let fleet = match pattern {
        Pattern::Plain => String::new(),
        Pattern::Global if west => "Global=true\nMachineMetadata=region=west\n".to_string(),
        Pattern::Global => "Global=true\n".to_string(),
        Pattern::MachineOf => format!("MachineOf={peer}\n"),
        Pattern::Conflicts => "Conflicts=conflict-*.service\n".to_string(),
        Pattern::MachineMetadata => "MachineMetadata=region=east\n".to_string(),
        Pattern::MachineId => format!("MachineID={machine}\n"),
    };
    let mut text = format!("[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep 1d\n");
    if !fleet.is_empty() {
        text.push_str("\n[X-Fleet]\n");
        text.push_str(&fleet);
    }
    text
}

impl Scenario {
    /// Draws the scenario of `seed`.
    pub fn draw(seed: u64, size: ScenarioSize) -> Scenario {
        let mut rng = SplitMix64::new(seed ^ 0x5ce7_a410);
        let spread = size.max_machines.saturating_sub(size.min_machines) as u64;
        let count = size.min_machines.max(1) + rng.below(spread + 1) as usize;
        let safety_ms = u64::try_from(size.safety_phase.as_millis()).unwrap_or(u64::MAX);
        let machines: Vec<ScenarioMachine> = (0..count)
            .map(|i| {
                let region = if i % 2 == 0 { "east" } else { "west" };
                ScenarioMachine {
                    id: format!(
                        "{:08x}{:024x}",
                        i,
                        seed.wrapping_mul(0x9e37_79b9) ^ i as u64
                    ),
                    metadata: BTreeMap::from([("region".to_string(), region.to_string())]),
                    offset: Duration::from_millis(rng.below(3_600_000)),
                    // Drift within ±1 %: the lease margin (20 % of its TTL) covers it.
                    drift_ppm: if size.faults {
                        rng.below(20_001) as i64 - 10_000
                    } else {
                        0
                    },
                }
            })
            .collect();

        // Units: the six patterns in turn; at most half as many Conflicts units as machines, so
        // that every unit is placeable once the faults heal.
        let total = count * size.units_per_machine.max(1);
        let mut units: Vec<ScenarioUnit> = Vec::new();
        let mut plain: Vec<String> = Vec::new();
        let mut conflicts = 0;
        for i in 0..total {
            let mut pattern = match rng.below(10) {
                0..4 => Pattern::Plain,
                4 => Pattern::Global,
                5 | 6 => Pattern::MachineOf,
                7 => Pattern::Conflicts,
                8 => Pattern::MachineMetadata,
                _ => Pattern::MachineId,
            };
            if (pattern == Pattern::MachineOf && plain.is_empty())
                || (pattern == Pattern::Conflicts && conflicts >= count / 2)
            {
                pattern = Pattern::Plain;
            }
            let name = match pattern {
                Pattern::Conflicts => {
                    conflicts += 1;
                    format!("conflict-{i}.service")
                }
                _ => format!("u{i}.service"),
            };
            let peer = if plain.is_empty() {
                String::new()
            } else {
                plain[rng.below(plain.len() as u64) as usize].clone()
            };
            let machine = machines[rng.below(count as u64) as usize].id.clone();
            let text = unit_text(&name, pattern, &peer, &machine, rng.below(2) == 0);
            if pattern == Pattern::Plain {
                plain.push(name.clone());
            }
            units.push(ScenarioUnit {
                name,
                pattern,
                text,
            });
        }

        // Actions: everything launched at the start (in a burst), then random target-state
        // changes and destroys during the first 4/5 of the safety phase.
        let mut actions: Vec<(Instant, UserAction)> = (0..units.len())
            .map(|unit| {
                (
                    at_ms(1000 + rng.below(5000)),
                    UserAction::SetTarget {
                        unit,
                        state: TargetState::Launched,
                    },
                )
            })
            .collect();
        let changes = rng.below(units.len() as u64 + 1);
        for _ in 0..changes {
            let unit = rng.below(units.len() as u64) as usize;
            let at = at_ms(6000 + rng.below(safety_ms * 4 / 5));
            let action = match rng.below(8) {
                0 => UserAction::Destroy { unit },
                1 | 2 => UserAction::SetTarget {
                    unit,
                    state: TargetState::Loaded,
                },
                3 => UserAction::SetTarget {
                    unit,
                    state: TargetState::Inactive,
                },
                _ => UserAction::SetTarget {
                    unit,
                    state: TargetState::Launched,
                },
            };
            actions.push((at, action));
        }
        actions.sort_by_key(|(at, _)| *at);

        let faults = FaultPlan::draw(seed, count, size.safety_phase);
        let mut crashes = Vec::new();
        let mut pauses = Vec::new();
        let mut etcd_outages = Vec::new();
        if size.faults {
            if rng.below(2) == 0 {
                for _ in 0..=rng.below(3) {
                    crashes.push(Crash {
                        node: rng.below(count as u64) as usize,
                        at: at_ms(rng.below(safety_ms * 3 / 4)),
                        down_for: Duration::from_millis(rng.below(90_000)),
                        host: rng.below(2) == 0,
                    });
                }
                crashes.sort_by_key(|c| (c.at, c.node));
            }
            if rng.below(2) == 0 {
                for _ in 0..=rng.below(2) {
                    pauses.push(Pause {
                        node: rng.below(count as u64) as usize,
                        armed_at: at_ms(rng.below(safety_ms * 3 / 4)),
                        length: Duration::from_millis(5_000 + rng.below(40_000)),
                    });
                }
                pauses.sort_by_key(|p| (p.armed_at, p.node));
            }
            if rng.below(3) == 0 {
                let from = rng.below(safety_ms * 3 / 4);
                let until = from + 1 + rng.below(60_000);
                etcd_outages.push((at_ms(from), at_ms(until)));
            }
        }
        let faults = if size.faults {
            faults
        } else {
            let mut healthy = faults;
            let (registry, systemd) = healthy.healed();
            healthy.registry = registry;
            healthy.systemd = systemd;
            healthy.partitions.clear();
            healthy.bus_outages.clear();
            healthy
        };
        Scenario {
            seed,
            machines,
            units,
            actions,
            faults,
            crashes,
            pauses,
            etcd_outages,
            safety_phase: size.safety_phase,
            heal_phase: size.heal_phase,
        }
    }
}

impl Scenario {
    /// The whole-cluster fuzz target's input: the first 8 bytes are the seed (little-endian,
    /// zero-padded), the next picks the size (2–7 machines, 1–4 units each, faults on unless
    /// bit 7 is set). Small and short (2 faulty minutes, then 3 healed), so that a fuzzer runs
    /// many; the same generator as the simulator's sweep.
    pub fn from_fuzz_input(data: &[u8]) -> Scenario {
        let mut seed = [0u8; 8];
        for (slot, byte) in seed.iter_mut().zip(data) {
            *slot = *byte;
        }
        let shape = data.get(8).copied().unwrap_or(0);
        let machines = 2 + usize::from(shape % 6);
        let size = ScenarioSize {
            min_machines: machines,
            max_machines: machines,
            units_per_machine: 1 + usize::from((shape >> 3) % 4),
            safety_phase: Duration::from_secs(120),
            heal_phase: Duration::from_secs(180),
            faults: shape & 0x80 == 0,
        };
        Scenario::draw(u64::from_le_bytes(seed), size)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut patterns: BTreeMap<Pattern, usize> = BTreeMap::new();
        for unit in &self.units {
            *patterns.entry(unit.pattern).or_default() += 1;
        }
        write!(
            f,
            "{} machines, {} units {:?}, {} user actions; {}; {} crash(es) {:?}, {} engine \
             pause(s), {} etcd outage(s) {:?}",
            self.machines.len(),
            self.units.len(),
            patterns,
            self.actions.len(),
            self.faults,
            self.crashes.len(),
            self.crashes
                .iter()
                .map(|c| format!(
                    "{}node {} at {:?} for {:?}",
                    if c.host { "host " } else { "fltd " },
                    c.node,
                    c.at.since_epoch(),
                    c.down_for
                ))
                .collect::<Vec<_>>(),
            self.pauses.len(),
            self.etcd_outages.len(),
            self.etcd_outages
                .iter()
                .map(|(a, b)| (a.since_epoch(), b.since_epoch()))
                .collect::<Vec<_>>(),
        )
    }
}
