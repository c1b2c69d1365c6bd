//! Parses arbitrary text as a unit file; see `flt_fuzz::unit_parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flt_fuzz::unit_parse(data));
