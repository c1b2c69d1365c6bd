//! Property tests for unit files: the stored (serialized) form round-trips through the parser,
//! and the hash ignores exactly what fleet ignored (comments, blank lines, whitespace around
//! names and values, CRLF, repeated section headers) while every option change changes it.

use flt_core::unit::{UnitFile, UnitOption};
use proptest::prelude::*;
use proptest::sample::Index;

/// Section names: anything up to `]` on one line, plus the names real units use.
fn section_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["Unit", "Service", "X-Fleet", "Install", "Socket"])
            .prop_map(str::to_string),
        1 => "[^\\]\n\r]{0,12}",
    ]
}

/// Option names the lexer gives back unchanged: no `=`, no line end, no surrounding whitespace,
/// and not starting like a section or comment. Empty is allowed (`=value`).
fn option_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Description", "ExecStart", "MachineOf", "Conflicts", "MachineMetadata", "Global",
        ])
        .prop_map(str::to_string),
        2 => "[^\\s\\[#;=]([^=\n\r]{0,10}[^\\s=])?",
        1 => Just(String::new()),
    ]
}

/// Values that survive a round trip: no surrounding whitespace, no `\r`; a line end only as a
/// backslash continuation (`…\` + `\n` + next line); never a final lone `\` — except that a
/// value may end in `\` + `\n`, which fleet produces when a blank line ends a continuation.
fn option_value() -> impl Strategy<Value = String> {
    let single = "([^\\s\\\\]|[^\\s][^\n\r]{0,20}[^\\s\\\\])?";
    let first = "\\\\|[^\\s][^\n\r]{0,10}\\\\";
    let middle = prop::collection::vec("[^\n\r]{0,10}\\\\", 0..3);
    let last = "[^\n\r]{0,10}[^\\s\\\\]";
    let continued = (first, middle, last).prop_map(|(first, middle, last)| {
        let mut lines = vec![first];
        lines.extend(middle);
        lines.push(last);
        lines.join("\n")
    });
    let blank_ended =
        (first, prop::collection::vec("[^\n\r]{0,10}\\\\", 0..2)).prop_map(|(first, middle)| {
            let mut value = first;
            for line in middle {
                value.push('\n');
                value.push_str(&line);
            }
            value.push('\n');
            value
        });
    let quoted = prop::collection::vec("[a-z=.*%@ ]{0,8}", 1..4).prop_map(|vs| {
        vs.iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(" ")
    });
    prop_oneof![6 => single, 2 => continued, 1 => blank_ended, 2 => quoted]
}

/// A unit as fleet stores it: each section's options together, sections in first-appearance
/// order (so it equals its own re-parse), possibly with duplicate options.
fn grouped_unit() -> impl Strategy<Value = UnitFile> {
    let section = (
        section_name(),
        prop::collection::vec((option_name(), option_value()), 1..5),
    );
    prop::collection::vec(section, 0..5).prop_map(|sections| {
        let mut grouped: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (name, options) in sections {
            match grouped.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => existing.extend(options),
                None => grouped.push((name, options)),
            }
        }
        UnitFile::from_options(
            grouped
                .into_iter()
                .flat_map(|(section, options)| {
                    options
                        .into_iter()
                        .map(move |(name, value)| UnitOption::new(section.clone(), name, value))
                })
                .collect(),
        )
    })
}

/// Choices that decide how [`noisy_text`] decorates a unit.
#[derive(Debug, Clone)]
struct Noise {
    choices: Vec<u8>,
    comments: Vec<String>,
}

fn noise() -> impl Strategy<Value = Noise> {
    (
        prop::collection::vec(any::<u8>(), 64..256),
        prop::collection::vec("[#;]([^\n\r]{0,10}[a-z])?", 1..4),
    )
        .prop_map(|(choices, comments)| Noise { choices, comments })
}

impl Noise {
    fn next(&mut self) -> u8 {
        let c = self.choices.pop().unwrap_or(0);
        self.choices.insert(0, c.rotate_left(3));
        c
    }

    fn one_in(&mut self, n: u8) -> bool {
        self.next().is_multiple_of(n)
    }

    fn comment(&mut self) -> String {
        let i = usize::from(self.next()) % self.comments.len();
        self.comments[i].clone()
    }

    fn line_end(&mut self) -> &'static str {
        if self.one_in(4) { "\r\n" } else { "\n" }
    }

    /// Blank lines, whitespace-only lines and comments, each ended.
    fn filler(&mut self) -> String {
        let mut out = String::new();
        for _ in 0..self.next() % 3 {
            match self.next() % 3 {
                0 => out.push_str(self.line_end()),
                1 => {
                    out.push_str(" \t");
                    out.push_str(self.line_end());
                }
                _ => {
                    let comment = self.comment();
                    out.push_str(&comment);
                    out.push_str(self.line_end());
                }
            }
        }
        out
    }
}

/// Renders `unit` the way a person might write it: junk before the first section, comments and
/// blank lines, indentation, spaces around `=`, CRLF line ends, and each section's options split
/// over several repeated headers interleaved with other sections (first appearances kept in
/// order). fleet stored all of these as the same text.
fn noisy_text(unit: &UnitFile, noise: &mut Noise) -> String {
    let mut sections: Vec<(&str, Vec<&UnitOption>)> = Vec::new();
    for option in unit.options() {
        match sections.iter_mut().find(|(s, _)| *s == option.section) {
            Some((_, opts)) => opts.push(option),
            None => sections.push((&option.section, vec![option])),
        }
    }
    // Cut each section's options into consecutive chunks.
    let mut chunks: Vec<Vec<Vec<&UnitOption>>> = Vec::new();
    for (_, options) in &sections {
        let mut section_chunks = vec![Vec::new()];
        for option in options {
            if !section_chunks.last().is_some_and(Vec::is_empty) && noise.one_in(3) {
                section_chunks.push(Vec::new());
            }
            if let Some(chunk) = section_chunks.last_mut() {
                chunk.push(*option);
            }
        }
        section_chunks.reverse();
        chunks.push(section_chunks);
    }

    let mut out = String::new();
    for _ in 0..noise.next() % 3 {
        out.push_str(match noise.next() % 3 {
            0 => "junk line without brackets = ignored\n",
            1 => "  \n",
            _ => "; top comment\r\n",
        });
    }
    // Emit chunks: any started section, or the next unstarted one, may go next.
    let mut started = 0;
    loop {
        let candidates: Vec<usize> = (0..sections.len())
            .filter(|&i| (i < started && !chunks[i].is_empty()) || i == started)
            .filter(|&i| !chunks[i].is_empty())
            .collect();
        let Some(&pick) = candidates.get(usize::from(noise.next()) % candidates.len().max(1))
        else {
            break;
        };
        if pick == started {
            started += 1;
        }
        let chunk = chunks[pick].pop().unwrap_or_default();
        out.push_str(&noise.filler());
        out.push('[');
        out.push_str(sections[pick].0);
        out.push(']');
        if noise.one_in(4) {
            out.push_str(" \t");
        }
        out.push_str(noise.line_end());
        for option in chunk {
            out.push_str(&noise.filler());
            if noise.one_in(3) {
                out.push_str("  \t");
            }
            out.push_str(&option.name);
            if noise.one_in(2) {
                out.push_str(" = ");
            } else {
                out.push('=');
            }
            out.push_str(&option.value);
            if option.value.contains('\n') {
                // Continuation lines are raw: no trailing noise, and only `\n` ends them.
                out.push('\n');
            } else {
                if noise.one_in(3) {
                    out.push_str(" \t");
                }
                out.push_str(noise.line_end());
            }
        }
    }
    out.push_str(&noise.filler());
    out
}

/// One way to change one option of a non-empty unit.
#[derive(Debug, Clone)]
enum Change {
    Value(Index),
    Name(Index),
    Section(Index),
    Remove(Index),
    Add(Index),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        any::<Index>().prop_map(Change::Value),
        any::<Index>().prop_map(Change::Name),
        any::<Index>().prop_map(Change::Section),
        any::<Index>().prop_map(Change::Remove),
        any::<Index>().prop_map(Change::Add),
    ]
}

fn apply(unit: &UnitFile, change: &Change) -> UnitFile {
    let mut options = unit.options().to_vec();
    let len = options.len();
    match change {
        Change::Value(i) => options[i.index(len)].value.push('x'),
        Change::Name(i) => options[i.index(len)].name.push('x'),
        Change::Section(i) => options[i.index(len)].section.push('x'),
        Change::Remove(i) => {
            options.remove(i.index(options.len()));
        }
        Change::Add(i) => {
            let at = i.index(options.len() + 1);
            let section = options[at.min(options.len() - 1)].section.clone();
            options.insert(at, UnitOption::new(section, "Added", "1"));
        }
    }
    UnitFile::from_options(options)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn serialized_units_round_trip(unit in grouped_unit()) {
        let text = unit.serialize();
        let reparsed = UnitFile::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(&reparsed, &unit, "text {:?}", text);
        prop_assert_eq!(reparsed.serialize(), text);
        for option in unit.options() {
            prop_assert_eq!(
                reparsed.fleet_values(&option.section, &option.name),
                unit.fleet_values(&option.section, &option.name)
            );
        }
    }

    #[test]
    fn hash_ignores_what_fleet_ignores(unit in grouped_unit(), mut noise in noise()) {
        let text = noisy_text(&unit, &mut noise);
        let parsed = UnitFile::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        prop_assert_eq!(parsed.serialize(), unit.serialize(), "noisy text {:?}", text);
        prop_assert_eq!(parsed.hash(), unit.hash());
        // Grouping repeated sections is the only reordering: the stored form is the grouped unit.
        prop_assert_eq!(UnitFile::parse(&parsed.serialize()).ok(), Some(unit));
    }

    #[test]
    fn hash_changes_with_any_option_change(unit in grouped_unit(), change in change()) {
        prop_assume!(!unit.options().is_empty());
        let changed = apply(&unit, &change);
        prop_assert_ne!(changed.hash(), unit.hash(), "{:?}", change);
    }
}

#[test]
fn reordering_options_within_a_section_changes_the_hash() {
    let a = UnitFile::parse("[Service]\nExecStartPre=/bin/a\nExecStartPre=/bin/b\n").unwrap();
    let b = UnitFile::parse("[Service]\nExecStartPre=/bin/b\nExecStartPre=/bin/a\n").unwrap();
    assert_ne!(a.hash(), b.hash());
    // Reordering whole sections changes it too: first appearance decides the order.
    let c = UnitFile::parse("[Unit]\nDescription=x\n[Service]\nExecStart=y\n").unwrap();
    let d = UnitFile::parse("[Service]\nExecStart=y\n[Unit]\nDescription=x\n").unwrap();
    assert_ne!(c.hash(), d.hash());
}

/// Unit-like text made of the pieces that matter to the lexer: headers (some broken), options
/// with values full of backslashes, quotes and `\r`, comments, blank lines and junk.
fn lexer_soup() -> impl Strategy<Value = String> {
    let bit = prop::sample::select(vec![
        "a", "b", "é", " ", "\t", "\\", "\\", "\"", "\"", "=", "#", ";", "]", "\r", "%p",
    ]);
    let bits = prop::collection::vec(bit, 0..8).prop_map(|b| b.concat());
    let line = prop_oneof![
        3 => prop::sample::select(vec!["[S]", "[X-Fleet]", "[S] ", "[T]\r", "[X-Fleet]", "[S]"])
            .prop_map(str::to_string),
        1 => prop::sample::select(vec!["[a", "[S]x", "[]"]).prop_map(str::to_string),
        8 => (prop::sample::select(vec!["A", " B ", "", "\tC", "é"]), bits.clone())
            .prop_map(|(name, value)| format!("{name}={value}")),
        1 => bits.clone().prop_map(|b| format!("#{b}")),
        1 => prop::sample::select(vec!["", " ", "\t\r"]).prop_map(str::to_string),
        1 => bits,
    ];
    let end = prop::sample::select(vec!["\n", "\n", "\n", "\r\n", "\\\n"]);
    prop::collection::vec((line, end), 0..16).prop_map(|lines| {
        let end = |l: &str, e| {
            if l.starts_with('[') && e == "\\\n" {
                "\n"
            } else {
                e
            }
        };
        lines
            .into_iter()
            .map(|(l, e)| format!("{l}{}", end(&l, e)))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever parses, its stored form parses back to the same stored form, unless a value
    /// ends in a lone `\` (fleet's own serializer turns that into a continuation).
    #[test]
    fn stored_form_is_a_fixed_point(text in lexer_soup()) {
        if let Ok(unit) = UnitFile::parse(&text) {
            prop_assume!(!unit.options().iter().any(|o| o.value.ends_with('\\')));
            let stored = unit.serialize();
            let again = UnitFile::parse(&stored)
                .map_err(|e| TestCaseError::fail(format!("{e}: {text:?} stored as {stored:?}")))?;
            prop_assert_eq!(again.serialize(), stored, "from {:?}", text);
            prop_assert_eq!(again.hash(), unit.hash());
        }
    }
}

/// Long text (several 4096-byte buffers) with long runs, multi-byte characters and every
/// lexer-relevant byte, to drive the `bufio` replay through refills at odd offsets.
fn long_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "[S]\n", "A=", "\n", "\r\n", "\\\n", "#", "x", "é", "🕴", " ", "]", "[",
    ]);
    prop::collection::vec((piece, 1..1500usize), 0..12)
        .prop_map(|runs| runs.into_iter().map(|(p, n)| p.repeat(n)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The parser never panics, reports a line inside the text, and errors only with one of
    /// fleet's messages.
    #[test]
    fn parser_is_total(text in prop_oneof![any::<String>(), long_soup()]) {
        match UnitFile::parse(&text) {
            Ok(unit) => {
                prop_assert!(unit.options().iter().all(|o| !o.name.contains('\n')));
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.line <= text.matches('\n').count() + 1, "{}", e);
                let message = e.kind.to_string();
                prop_assert!(
                    [
                        "line too long (max 2048 bytes)",
                        "unable to find end of section",
                        "found garbage after section name : \"",
                        "unexpected newline encountered while parsing option name",
                        "EOF",
                    ]
                    .iter()
                    .any(|m| message.starts_with(m)),
                    "{}",
                    message
                );
            }
        }
    }
}
