//! Runs a whole simulated cluster (the simulator's scenario generator, seeded by the input) and
//! fails if an invariant breaks; see `flt_tests::sim::cluster::fuzz_cluster`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flt_tests::sim::cluster::fuzz_cluster(data));
