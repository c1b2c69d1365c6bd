//! Builds and classifies registry keys from arbitrary parts; see `flt_fuzz::registry_keys`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flt_fuzz::registry_keys(data));
