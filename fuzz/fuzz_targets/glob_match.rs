//! Matches arbitrary patterns against arbitrary names; see `flt_fuzz::glob`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flt_fuzz::glob(data));
