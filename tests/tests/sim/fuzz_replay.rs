//! The fuzz targets of `fuzz/` on stable Rust: each target's body (`fuzz/src/lib.rs`) over its
//! committed corpus (`fuzz/corpus/<target>/`, the regression suite) and over seeded mutations
//! of it, plus, for the glob matcher, seeded patterns from a small alphabet where the reference
//! matcher must agree. `FLT_SIM_SEED` changes the seed, `FLT_FUZZ_RUNS` the inputs per target.

use crate::fuzz_bodies::TARGETS;
use flt_core::rng::SplitMix64;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

const DEFAULT_RUNS: u64 = 4000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("read corpus entry");
            (path.display().to_string(), data)
        })
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "corpus {} is empty", dir.display());
    entries
}

/// Bytes that matter to the parsers: JSON, glob and unit file syntax.
const INTERESTING: &[u8] = b"{}[]\":,\\/*?^-=#;\n\r\t 019azAZ\0\xc3\xa9\xff";

fn mutate(rng: &mut SplitMix64, corpus: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = corpus[rng.below(corpus.len() as u64) as usize].1.clone();
    for _ in 0..=rng.below(4) {
        let len = data.len() as u64;
        let at = rng.below(len + 1) as usize;
        let byte = if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len() as u64) as usize]
        } else {
            rng.below(256) as u8
        };
        match rng.below(5) {
            0 if at < data.len() => data[at] = byte,
            1 => data.insert(at, byte),
            2 => {
                let end = (at + 1 + rng.below(8) as usize).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 => {
                let end = (at + 1 + rng.below(16) as usize).min(data.len());
                let piece = data[at.min(end)..end].to_vec();
                data.splice(at..at, piece);
            }
            _ => {
                let other = &corpus[rng.below(corpus.len() as u64) as usize].1;
                let from = rng.below(other.len() as u64 + 1) as usize;
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}

fn run(name: &str, body: fn(&[u8]), input: &[u8], origin: &str) {
    if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
        panic!("fuzz target {name} failed on {origin}: input {input:?}");
    }
}

#[test]
fn fuzz_targets_pass_over_their_corpus_and_seeded_mutations() {
    let seed = flt_tests::sim::swarm::seed_from_env(0xf022);
    let runs = env_u64("FLT_FUZZ_RUNS").unwrap_or(DEFAULT_RUNS);
    for (name, body) in TARGETS {
        let corpus = corpus(name);
        for (path, data) in &corpus {
            run(name, body, data, path);
        }
        let mut rng = SplitMix64::new(seed);
        for i in 0..runs {
            let input = mutate(&mut rng, &corpus);
            run(name, body, &input, &format!("seed {seed} mutation {i}"));
        }
        eprintln!("{name}: {} corpus entries, {runs} mutations", corpus.len());
    }
}

#[test]
fn glob_matcher_agrees_with_the_reference_on_seeded_patterns() {
    let seed = flt_tests::sim::swarm::seed_from_env(0x610b);
    let runs = env_u64("FLT_FUZZ_RUNS").unwrap_or(DEFAULT_RUNS) * 5;
    let mut rng = SplitMix64::new(seed);
    let mut matched = 0;
    let pick = |rng: &mut SplitMix64, alphabet: &[u8], max: u64| -> Vec<u8> {
        (0..rng.below(max + 1))
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect()
    };
    for i in 0..runs {
        let pattern = pick(&mut rng, b"ab/*?\\", 8);
        let name = pick(&mut rng, b"ab/*?\\", 8);
        let mut input = pattern.clone();
        input.push(0);
        input.extend_from_slice(&name);
        run(
            "glob_match",
            crate::fuzz_bodies::glob,
            &input,
            &format!("seed {seed} pattern {i}"),
        );
        let (p, n) = (
            String::from_utf8_lossy(&pattern),
            String::from_utf8_lossy(&name),
        );
        matched += usize::from(crate::fuzz_bodies::reference_glob(&p, &n) == Ok(true));
    }
    // Patterns and names from one small alphabet match often enough to test both answers.
    assert!(
        matched as u64 > runs / 50,
        "only {matched} of {runs} pairs matched"
    );
    eprintln!("glob: {runs} seeded pairs, {matched} matching, all agreeing with the reference");
}
