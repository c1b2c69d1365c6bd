//! Whole-cluster simulation (`flt_tests::sim::cluster`): seeds of 5–20 machines × 10 simulated
//! minutes, each with the faults its scenario drew, every safety invariant checked after every
//! step, convergence and quiescence after healing. Each seed runs twice and the two traces must
//! be identical (determinism).
//!
//! `FLT_SIM_SEED=<seed>` runs one seed (and prints its trace digest); `FLT_SIM_SEEDS=<n>` changes
//! how many seeds the sweep runs. The figures are printed, not asserted.

use flt_tests::sim::cluster::{Cluster, RunOptions, RunReport};
use flt_tests::sim::scenario::{Scenario, ScenarioSize};
use flt_tests::sim::swarm::seed_from_env;
use std::time::Duration;

const FIRST_SEED: u64 = 0xc1_0000;

/// Seeds that found bugs, kept as regression tests (each names what it found).
const REGRESSION_SEEDS: [(u64, &str); 4] = [
    (
        0xc1_0003,
        "engine: a failed unschedule let the schedules planned on it run (MachineOf= unit placed \
         away from its peer)",
    ),
    (
        0xca_0065,
        "engine's cluster view: a late watch event undid the engine's newer write of the same \
         key (a peer's target vanished, its MachineOf= dependent was placed elsewhere)",
    ),
    (
        0xca_00be,
        "engine: a unit destroyed while being scheduled kept its re-created target and schedule \
         entry forever (and ran)",
    ),
    (
        0xca_00fa,
        "engine: a target-state rewrite of a schedule entry, sent by an engine paused past its \
         lease, re-created the entry the new leader had removed (unit on two machines)",
    ),
];

fn run(seed: u64, size: ScenarioSize) -> RunReport {
    let scenario = Scenario::draw(seed, size);
    match Cluster::new(scenario, RunOptions::default()).run() {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn cluster_regression_seeds_pass() {
    for (seed, found) in REGRESSION_SEEDS {
        eprintln!("regression seed {seed:#x}: {found}");
        run(seed, ScenarioSize::default());
    }
}

#[test]
fn cluster_seeds_keep_the_invariants_and_converge() {
    let seeds: Vec<u64> = match std::env::var("FLT_SIM_SEED") {
        Ok(_) => vec![seed_from_env(0)],
        Err(_) => {
            let count = env_u64("FLT_SIM_SEEDS").unwrap_or(200);
            let first = env_u64("FLT_SIM_FIRST_SEED").unwrap_or(FIRST_SEED);
            (0..count).map(|i| first + i).collect()
        }
    };
    let size = ScenarioSize::default();
    let wall = std::time::Instant::now();
    let mut simulated = Duration::ZERO;
    let (mut events, mut double, mut double_units, mut slowest) = (0u64, Duration::ZERO, 0, None);
    for &seed in &seeds {
        let first = run(seed, size);
        let second = run(seed, size);
        assert_eq!(
            first, second,
            "FLT_SIM_SEED={seed:#x}: two runs of one seed differ (nondeterminism)"
        );
        simulated += first.simulated;
        events += first.events;
        double += first.double_running;
        double_units += first.double_running_units;
        if first.convergence > slowest {
            slowest = first.convergence;
        }
        if seeds.len() == 1 {
            eprintln!("{first:?}");
        }
    }
    let elapsed = wall.elapsed().as_secs_f64();
    eprintln!(
        "cluster sim: {} seeds (each run twice, traces equal), {:.0} simulated s in {elapsed:.1} s \
         wall ({:.0} simulated s per wall s, {:.0} events/s); units ran on two machines at once \
         for {:.1} s in total ({double_units} units); slowest convergence after healing {:?}",
        seeds.len(),
        simulated.as_secs_f64(),
        2.0 * simulated.as_secs_f64() / elapsed,
        2.0 * events as f64 / elapsed,
        double.as_secs_f64(),
        slowest,
    );
}

/// The whole-cluster fuzz target on stable: its committed corpus (`fuzz/corpus/
/// cluster_scenario/`), then seeded random inputs (`FLT_FUZZ_RUNS`, default 20).
#[test]
fn cluster_fuzz_target_passes_its_corpus_and_seeded_inputs() {
    use flt_core::rng::SplitMix64;
    use flt_tests::sim::cluster::fuzz_cluster;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus/cluster_scenario");
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "corpus {} is empty", dir.display());
    for path in &entries {
        let data = std::fs::read(path).expect("read corpus entry");
        eprintln!("cluster_scenario: {}", path.display());
        fuzz_cluster(&data);
    }
    let mut rng = SplitMix64::new(seed_from_env(0xc1f2));
    let runs = env_u64("FLT_FUZZ_RUNS").unwrap_or(20);
    for _ in 0..runs {
        let data: Vec<u8> = (0..9).map(|_| rng.below(256) as u8).collect();
        fuzz_cluster(&data);
    }
    eprintln!(
        "cluster_scenario: {} corpus entries, {runs} seeded inputs",
        entries.len()
    );
}

/// The simulator's speed on a large healthy cluster: 50 machines × 1,000 units for 3 simulated
/// minutes (every invariant checked, convergence required). Printed, not asserted.
#[test]
fn cluster_speed_at_50_machines_and_1000_units() {
    let size = ScenarioSize {
        min_machines: 50,
        max_machines: 50,
        units_per_machine: 20,
        safety_phase: Duration::from_secs(60),
        heal_phase: Duration::from_secs(120),
        faults: false,
    };
    let wall = std::time::Instant::now();
    let report = run(seed_from_env(0x50_1000), size);
    let elapsed = wall.elapsed().as_secs_f64();
    eprintln!(
        "cluster sim speed: {} machines × {} units, {:.0} simulated s in {elapsed:.1} s wall: \
         {:.1} simulated s per wall s, {:.0} events/s ({} events, {} registry requests, {} steps)",
        report.machines,
        report.units,
        report.simulated.as_secs_f64(),
        report.simulated.as_secs_f64() / elapsed,
        report.events as f64 / elapsed,
        report.events,
        report.requests,
        report.steps,
    );
}
