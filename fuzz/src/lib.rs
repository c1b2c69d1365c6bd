//! The bodies of flt's fuzz targets, as plain functions of the input bytes, so that the same
//! checks run under libFuzzer (`fuzz_targets/*.rs`, nightly, `cargo fuzz run`) and on stable
//! (`tests/tests/sim/fuzz_replay.rs` replays the committed corpus in `fuzz/corpus/<target>/` and
//! seeded mutations of it). Each body panics exactly when it finds a bug.
//!
//! This file depends on `flt-core` only: the stable replay includes it by path.

use flt_core::glob::{BadPattern, glob_match};
use flt_core::registry::codec::{EngineVersion, MachineId};
use flt_core::registry::records::{
    JobRecord, LeaseRecord, MachineRecord, ScheduleRecord, TargetState, UnitFileRecord,
    UnitStateRecord,
};
use flt_core::registry::{KeyKind, Keyspace, Record};
use flt_core::unit::{ParseErrorKind, UnitFile, UnitHash};

/// The key named in decode errors.
const KEY: &str = "/_coreos.com/flt/fuzz/key";

/// Decodes `value`; it must not panic, a failure must name the key, and whatever decodes must
/// encode to a text that decodes back to the same record and encodes to the same text.
fn round_trip<R: Record + PartialEq + std::fmt::Debug>(value: &str) {
    match R::decode(KEY, value) {
        Ok(record) => {
            let text = record.encode();
            match R::decode(KEY, &text) {
                Ok(again) => {
                    assert_eq!(again, record, "{} {value:?} → {text:?}", R::NAME);
                    assert_eq!(again.encode(), text, "{} encoding is not stable", R::NAME);
                }
                Err(e) => panic!(
                    "{} {value:?} encoded as {text:?}, which fails: {e}",
                    R::NAME
                ),
            }
        }
        Err(e) => {
            assert_eq!(e.key, KEY);
            assert_eq!(e.record, R::NAME);
            let message = e.to_string();
            assert!(message.contains(KEY), "{message:?} does not name the key");
        }
    }
}

/// Target `registry_codec`: the first byte picks the record type, the rest is the stored value.
pub fn registry_codec(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let value = String::from_utf8_lossy(rest);
    match selector % 9 {
        0 => round_trip::<JobRecord>(&value),
        1 => round_trip::<UnitFileRecord>(&value),
        2 => round_trip::<MachineRecord>(&value),
        3 => round_trip::<UnitStateRecord>(&value),
        4 => round_trip::<ScheduleRecord>(&value),
        5 => round_trip::<LeaseRecord>(&value),
        6 => round_trip::<TargetState>(&value),
        7 => round_trip::<MachineId>(&value),
        _ => round_trip::<EngineVersion>(&value),
    }
}

/// A straightforward matcher for patterns without character classes, from `path.Match`'s
/// definition: `*` is any run of non-`/` characters, `?` one non-`/` character, `\x` is `x`.
/// A pattern ending in an unescaped `\` is malformed. Memoized, so it stays polynomial.
pub fn reference_glob(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Star,
        One,
        Literal(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => Token::Star,
            '?' => Token::One,
            '\\' => Token::Literal(chars.next().ok_or(BadPattern)?),
            c => Token::Literal(c),
        });
    }
    let name: Vec<char> = name.chars().collect();
    // matches[t][n]: tokens[t..] match name[n..].
    let width = name.len() + 1;
    let mut matches = vec![false; (tokens.len() + 1) * width];
    matches[tokens.len() * width + name.len()] = true;
    for t in (0..tokens.len()).rev() {
        for n in (0..=name.len()).rev() {
            let next = |t: usize, n: usize| matches[t * width + n];
            matches[t * width + n] = match tokens[t] {
                // Either the star is done, or it takes one more non-`/` character.
                Token::Star => {
                    next(t + 1, n) || (n < name.len() && name[n] != '/' && next(t, n + 1))
                }
                Token::One => n < name.len() && name[n] != '/' && next(t + 1, n + 1),
                Token::Literal(c) => n < name.len() && name[n] == c && next(t + 1, n + 1),
            };
        }
    }
    Ok(matches[0])
}

/// Target `glob_match`: `pattern NUL name`. Never panics; agrees with [`reference_glob`] on
/// ASCII patterns without classes (on other text, Go's byte-wise `*` may split a character).
pub fn glob(data: &[u8]) {
    let (pattern, name) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let pattern = String::from_utf8_lossy(pattern);
    let name = String::from_utf8_lossy(name);
    let got = glob_match(&pattern, &name);
    // A name is always matched by itself escaped.
    let escaped: String = name
        .chars()
        .flat_map(|c| {
            let escape = matches!(c, '*' | '?' | '[' | ']' | '\\' | '-' | '^');
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect();
    assert_eq!(
        glob_match(&escaped, &name),
        Ok(true),
        "{escaped:?} vs {name:?}"
    );
    if pattern.contains(['[', ']']) || !pattern.is_ascii() || !name.is_ascii() {
        return;
    }
    assert_eq!(
        got,
        reference_glob(&pattern, &name),
        "pattern {pattern:?} name {name:?}"
    );
}

/// Target `unit_parse`: whatever parses has a stored (serialized) form that parses back to the
/// same stored form and hash. Two inputs are exempt because fleet itself does not round-trip
/// them: a value ending in a lone `\` (serialized, it continues onto the next line), and a
/// reparse rejected as "line too long" (the original long line slipped past go-systemd's
/// buffer-aligned check; fleet's API rejected those on the same reparse).
pub fn unit_parse(data: &[u8]) {
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
            assert_eq!(
                again.serialize(),
                stored,
                "stored form of {text:?} is not a fixed point"
            );
            assert_eq!(again.hash(), unit.hash());
        }
        Err(e) if e.kind == ParseErrorKind::LineTooLong => {}
        Err(e) => panic!("stored form {stored:?} of {text:?} does not parse: {e}"),
    }
}

/// Target `registry_keys`: `prefix NUL name NUL machine NUL key`. `Keyspace::classify` never
/// panics on any key, and classifies every key the keyspace builds (for names and machines
/// without `/`) as what it was built as.
pub fn registry_keys(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\0');
    let prefix = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("a.service");
    let machine = parts.next().unwrap_or("m1");
    let other = parts.next().unwrap_or("");
    let keys = Keyspace::new(prefix);
    let _ = keys.classify(other);
    let _ = keys.classify(&text);
    if name.contains('/') || machine.contains('/') {
        return;
    }
    let mut hash = [0u8; 20];
    for (slot, byte) in hash.iter_mut().zip(data.iter().rev()) {
        *slot = *byte;
    }
    let hash = UnitHash(hash);
    let s = |x: &str| x.to_string();
    let built = [
        (
            keys.unit(&hash),
            KeyKind::UnitFile {
                hash: hash.to_hex(),
            },
        ),
        (keys.job_dir(name), KeyKind::JobDir { name: s(name) }),
        (keys.job_object(name), KeyKind::JobObject { name: s(name) }),
        (
            keys.job_target_state(name),
            KeyKind::JobTargetState { name: s(name) },
        ),
        (keys.job_target(name), KeyKind::JobTarget { name: s(name) }),
        (
            keys.schedule_dir(machine),
            KeyKind::ScheduleDir {
                machine: s(machine),
            },
        ),
        (
            keys.schedule_entry(machine, name),
            KeyKind::ScheduleEntry {
                machine: s(machine),
                name: s(name),
            },
        ),
        (
            keys.global_entry(name),
            KeyKind::GlobalEntry { name: s(name) },
        ),
        (
            keys.machine_dir(machine),
            KeyKind::MachineDir {
                machine: s(machine),
            },
        ),
        (
            keys.machine_object(machine),
            KeyKind::MachineObject {
                machine: s(machine),
            },
        ),
        (
            keys.machine_metadata(machine, name),
            KeyKind::MachineMetadata {
                machine: s(machine),
                key: s(name),
            },
        ),
        (
            keys.machine_states_dir(machine),
            KeyKind::MachineStates {
                machine: s(machine),
            },
        ),
        (
            keys.unit_state(machine, name),
            KeyKind::UnitState {
                machine: s(machine),
                name: s(name),
            },
        ),
        (keys.engine_lease(), KeyKind::EngineLease),
        (keys.engine_version(), KeyKind::EngineVersion),
    ];
    for (key, kind) in built {
        assert_eq!(
            keys.classify(&key),
            Some(kind),
            "key {key:?} under {prefix:?}"
        );
    }
}

/// Target `api_request`: the first byte picks a decoder of the HTTP API (`core::api`), the rest
/// is split at NUL bytes into its inputs: `route(method, path)`, `decode_put(name, content type,
/// body)`, `decode_patch(body)` or `PageToken::decode(token)`. None may panic; an accepted PUT
/// carries the URL's name, and an accepted page token encodes to a token that decodes to it.
pub fn api_request(data: &[u8]) {
    use flt_core::api::machines_patch::decode_patch;
    use flt_core::api::pagination::PageToken;
    use flt_core::api::routes::route;
    use flt_core::api::units_put::decode_put;
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let first = parts.next().unwrap_or(b"");
    let second = parts.next().unwrap_or(b"");
    let third = parts.next().unwrap_or(b"");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match selector % 4 {
        0 => {
            let _ = route(&text(first), &text(second));
        }
        1 => {
            let name = text(first);
            let content_type = text(second);
            if let Ok(put) = decode_put(&name, &[content_type.as_str()], third) {
                assert_eq!(put.name, name, "accepted PUT names another unit");
            }
        }
        2 => {
            let _ = decode_patch(rest);
        }
        _ => {
            let token = text(rest);
            if let Ok(decoded) = PageToken::decode(&token) {
                let again = PageToken::decode(&decoded.encode());
                assert_eq!(again, Ok(decoded), "token {token:?} does not round-trip");
            }
        }
    }
}

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target by name, for the stable replay.
pub const TARGETS: [(&str, Body); 5] = [
    ("api_request", api_request),
    ("registry_codec", registry_codec),
    ("registry_keys", registry_keys),
    ("glob_match", glob),
    ("unit_parse", unit_parse),
];
