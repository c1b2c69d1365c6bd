//! Decodes arbitrary HTTP API requests (routes, unit PUTs, machine PATCHes, page tokens); see
//! `flt_fuzz::api_request`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| flt_fuzz::api_request(data));
