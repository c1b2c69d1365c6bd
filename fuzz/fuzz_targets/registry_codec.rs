//! Decodes arbitrary text as each registry record type; see `flt_fuzz::registry_codec`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flt_fuzz::registry_codec(data));
