//! Parses arbitrary text as a unit file. Whatever parses must have a stored (serialized) form
//! that parses back to the same stored form and hash. Two inputs are exempt because fleet
//! itself does not round-trip them: a value ending in a lone `\` (serialized, it continues onto
//! the next line), and a reparse rejected as "line too long" (the original long line slipped
//! past go-systemd's buffer-aligned check; fleet's API rejected those on the same reparse).

#![no_main]

use flt_core::unit::{ParseErrorKind, UnitFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(unit) = UnitFile::parse(text) else {
        return;
    };
    if unit.options().iter().any(|o| o.value.ends_with('\\')) {
        return;
    }
    let stored = unit.serialize();
    match UnitFile::parse(&stored) {
        Ok(again) => {
            assert_eq!(again.serialize(), stored, "stored form of {text:?} is not a fixed point");
            assert_eq!(again.hash(), unit.hash());
        }
        Err(e) if e.kind == ParseErrorKind::LineTooLong => {}
        Err(e) => panic!("stored form {stored:?} of {text:?} does not parse: {e}"),
    }
});
