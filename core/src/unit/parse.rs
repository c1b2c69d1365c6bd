//! The systemd INI dialect exactly as fleet read it (go-systemd's `unit.Deserialize` lexer).
//!
//! Contract: [`UnitFile::parse`] accepts what fleet accepted and rejects what it rejected, with
//! the same values. The quirks are deliberate:
//! - text before the first `[` is skipped; `#`/`;` there skips the rest of the line;
//! - a comment line ending in `\` (after dropping one trailing space) swallows the next line;
//! - a value line whose last byte is `\` continues raw onto the next line (backslash and `\n`
//!   kept, leading whitespace kept, `#` lines not comments); a whitespace-only continuation line
//!   ends the value and the trimmed value keeps one trailing `\n`;
//! - line ends are found by `\n` only: a `\r` before it is whitespace for trimming, so CRLF files
//!   parse, but a CRLF line ending in `\` does not continue (`\` is not its last byte);
//! - duplicate options are kept in order; no quote processing or unescaping happens;
//! - the 2048-byte line limit is checked the way go-systemd did it: before each lexer step, if
//!   its 4096-byte `bufio.Reader` holds at least 2048 unread bytes and the next 2048 contain no
//!   `\r` or `\n`, the text is rejected. That check depends on buffer alignment, so (as in fleet)
//!   an over-long line can slip through; the private `Reader` replays `bufio` byte for byte.

use super::{UnitFile, UnitOption};
use std::fmt;

/// systemd's `LINE_MAX` as go-systemd assumed it.
pub const LINE_MAX: usize = 2048;
/// Go's `bufio.NewReader` default buffer size, which decides when the line-length check runs.
const BUF_SIZE: usize = 4096;
/// `utf8.UTFMax`.
const UTF_MAX: usize = 4;

/// A unit file could not be parsed. `Display` is `line <n>: <fleet's message>`; `kind` alone
/// displays fleet's message without a position (what fleet's API sent).
///
/// `line` is 1-based: the line of the `[` for an unterminated section, of the `]` for garbage,
/// of the name for a newline before `=`, the last line for EOF, and the line where the
/// unchecked run starts for "line too long".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// What went wrong; `Display` gives fleet's exact message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// 2048 bytes without a line end.
    LineTooLong,
    /// A `[` with no `]` after it.
    UnterminatedSection,
    /// Something other than whitespace after `]` on a section header line.
    GarbageAfterSection { section: String, garbage: String },
    /// An option line ended before its `=`.
    NewlineInOptionName,
    /// The text ended before an option's `=`.
    UnexpectedEof,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::LineTooLong => write!(f, "line too long (max {LINE_MAX} bytes)"),
            ParseErrorKind::UnterminatedSection => f.write_str("unable to find end of section"),
            // fleet printed an always-empty section name here; we keep its text.
            ParseErrorKind::GarbageAfterSection { garbage, .. } => {
                write!(
                    f,
                    "found garbage after section name : {}",
                    crate::goquote::quote(garbage)
                )
            }
            ParseErrorKind::NewlineInOptionName => {
                f.write_str("unexpected newline encountered while parsing option name")
            }
            ParseErrorKind::UnexpectedEof => f.write_str("EOF"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for ParseError {}

impl UnitFile {
    /// Parses unit file text exactly as fleet did (see the module docs for the dialect).
    pub fn parse(text: &str) -> Result<UnitFile, ParseError> {
        Lexer::new(text).run().map(UnitFile::from_options)
    }
}

/// Splits an `[X-Fleet]` value that starts and ends with `"` into several values: a quote
/// toggles "inside", a space outside quotes ends a value, quotes are dropped. Any other value
/// is returned whole. (fleet's `parseMultivalueLine`, including its quirks: `"a" "` gives
/// `["a", ""]`.)
pub fn split_multivalue(value: &str) -> Vec<String> {
    if !(value.starts_with('"') && value.ends_with('"')) {
        return vec![value.to_string()];
    }
    let mut values = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    let mut inside = false;
    for &b in value.as_bytes() {
        match b {
            b'"' => inside = !inside,
            b' ' if !inside => values.push(utf8(&std::mem::take(&mut current))),
            _ => current.push(b),
        }
    }
    values.push(utf8(&current));
    values
}

fn utf8(bytes: &[u8]) -> String {
    // The input is a `str` and every cut is at an ASCII byte, so this never substitutes.
    String::from_utf8_lossy(bytes).into_owned()
}

fn trim(bytes: &[u8]) -> String {
    utf8(bytes).trim().to_string()
}

fn is_comment(c: char) -> bool {
    c == '#' || c == ';'
}

/// A byte-for-byte replay of Go's `bufio.Reader` (4096-byte buffer) over a `strings.Reader`,
/// tracking only what is observable: the read position, the end of buffered data, and a
/// pending EOF.
#[derive(Debug)]
struct Reader<'a> {
    input: &'a [u8],
    /// Next unread byte.
    r: usize,
    /// End of the bytes currently in the buffer (`r..w` is buffered).
    w: usize,
    /// `bufio.Reader.err` holds `io.EOF`, not yet returned.
    eof_pending: bool,
}

/// `io.EOF` from a read.
#[derive(Debug)]
struct Eof;

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Reader<'a> {
        Reader {
            input,
            r: 0,
            w: 0,
            eof_pending: false,
        }
    }

    fn buffered(&self) -> usize {
        self.w - self.r
    }

    /// `bufio.Reader.fill`: slide the unread bytes to the front, then one `Read` that fills the
    /// rest of the buffer, or reports EOF when the input is exhausted.
    fn fill(&mut self) {
        let room = BUF_SIZE - self.buffered();
        let available = self.input.len() - self.w;
        if available == 0 {
            self.eof_pending = true;
        } else {
            self.w += room.min(available);
        }
    }

    fn take_eof(&mut self) -> Eof {
        self.eof_pending = false;
        Eof
    }

    /// Whether the buffered bytes start with a complete UTF-8 sequence (`utf8.FullRune`).
    fn full_rune(&self) -> bool {
        let Some(&lead) = self.input.get(self.r).filter(|_| self.r < self.w) else {
            return false;
        };
        let width = match lead {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        self.r + width <= self.w
    }

    /// `bufio.Reader.ReadRune`.
    fn read_rune(&mut self) -> Result<char, Eof> {
        while self.r + UTF_MAX > self.w
            && !self.full_rune()
            && !self.eof_pending
            && self.buffered() < BUF_SIZE
        {
            self.fill();
        }
        if self.r == self.w {
            return Err(self.take_eof());
        }
        let rest = &self.input[self.r..self.w];
        let width = rest
            .iter()
            .skip(1)
            .position(|&b| b & 0xc0 != 0x80)
            .map_or(rest.len(), |n| n + 1);
        let c = utf8(&rest[..width]).chars().next().unwrap_or('\u{fffd}');
        self.r += width;
        Ok(c)
    }

    /// `bufio.Reader.UnreadRune` right after a `read_rune` that returned `c`.
    fn unread_rune(&mut self, c: char) {
        self.r -= c.len_utf8();
    }

    /// `bufio.Reader.ReadBytes(delim)`: the bytes up to and including `delim`, or to the end of
    /// the input with `true` for "hit EOF".
    fn read_bytes(&mut self, delim: u8) -> (&'a [u8], bool) {
        let start = self.r;
        loop {
            if let Some(i) = self.input[self.r..self.w].iter().position(|&b| b == delim) {
                self.r += i + 1;
                return (&self.input[start..self.r], false);
            }
            if self.eof_pending {
                self.r = self.w;
                self.take_eof();
                return (&self.input[start..self.r], true);
            }
            if self.buffered() >= BUF_SIZE {
                // ErrBufferFull: ReadBytes keeps the full buffer and reads on.
                self.r = self.w;
                continue;
            }
            self.fill();
        }
    }

    /// go-systemd's `toEOL`: one line without its `\n` (and without a `\r` only if the input
    /// ends right after it), plus whether the input ended.
    fn read_line(&mut self) -> (&'a [u8], bool) {
        let (mut line, eof) = self.read_bytes(b'\n');
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if let [rest @ .., b'\n'] = line {
            line = rest;
        }
        (line, eof)
    }

    /// go-systemd's per-step line-length check.
    fn line_too_long(&self) -> bool {
        self.buffered() >= LINE_MAX
            && !self.input[self.r..self.r + LINE_MAX]
                .iter()
                .any(|&b| b == b'\r' || b == b'\n')
    }

    /// 1-based line number of byte offset `pos`.
    fn line_at(&self, pos: usize) -> usize {
        1 + self.input[..pos.min(self.input.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }
}

/// One lexer state; each is one "step" of go-systemd's lexer, and the line-length check runs
/// between steps.
#[derive(Debug)]
enum Step {
    /// Before the first section.
    NextSection,
    SectionName,
    SectionSuffix(String),
    /// Skip a comment (with continuations), then go on before the first section or inside one.
    IgnoreLine {
        in_section: bool,
    },
    NextSectionOrOption,
    OptionName,
    OptionValue {
        name: String,
        partial: Vec<u8>,
    },
}

#[derive(Debug)]
struct Lexer<'a> {
    reader: Reader<'a>,
    section: String,
    options: Vec<UnitOption>,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            reader: Reader::new(text.as_bytes()),
            section: String::new(),
            options: Vec::new(),
        }
    }

    fn error(&self, pos: usize, kind: ParseErrorKind) -> ParseError {
        ParseError {
            line: self.reader.line_at(pos),
            kind,
        }
    }

    fn run(mut self) -> Result<Vec<UnitOption>, ParseError> {
        let mut step = Step::NextSection;
        loop {
            if self.reader.line_too_long() {
                return Err(self.error(self.reader.r, ParseErrorKind::LineTooLong));
            }
            match self.step(step)? {
                Some(next) => step = next,
                None => return Ok(self.options),
            }
        }
    }

    fn step(&mut self, step: Step) -> Result<Option<Step>, ParseError> {
        let reader = &mut self.reader;
        let next = match step {
            Step::NextSection => match reader.read_rune() {
                Err(Eof) => return Ok(None),
                Ok('[') => Step::SectionName,
                Ok(c) if is_comment(c) => Step::IgnoreLine { in_section: false },
                Ok(_) => Step::NextSection,
            },
            Step::SectionName => {
                let start = reader.r;
                match reader.read_bytes(b']') {
                    (_, true) => {
                        return Err(self.error(start, ParseErrorKind::UnterminatedSection));
                    }
                    (name, false) => Step::SectionSuffix(utf8(&name[..name.len() - 1])),
                }
            }
            Step::SectionSuffix(section) => {
                let start = reader.r;
                let (line, _) = reader.read_line();
                let garbage = trim(line);
                if !garbage.is_empty() {
                    let kind = ParseErrorKind::GarbageAfterSection { section, garbage };
                    return Err(self.error(start, kind));
                }
                self.section = section;
                Step::NextSectionOrOption
            }
            Step::IgnoreLine { in_section } => {
                loop {
                    let (line, _) = reader.read_line();
                    let line = line.strip_suffix(b" ").unwrap_or(line);
                    if !line.ends_with(b"\\") {
                        break;
                    }
                }
                if in_section {
                    Step::NextSectionOrOption
                } else {
                    Step::NextSection
                }
            }
            Step::NextSectionOrOption => match reader.read_rune() {
                Err(Eof) => return Ok(None),
                Ok(c) if c.is_whitespace() => Step::NextSectionOrOption,
                Ok('[') => Step::SectionName,
                Ok(c) if is_comment(c) => Step::IgnoreLine { in_section: true },
                Ok(c) => {
                    reader.unread_rune(c);
                    Step::OptionName
                }
            },
            Step::OptionName => {
                let start = reader.r;
                loop {
                    let pos = reader.r;
                    match reader.read_rune() {
                        Err(Eof) => {
                            let end = self.reader.input.len();
                            return Err(self.error(end, ParseErrorKind::UnexpectedEof));
                        }
                        Ok('\n' | '\r') => {
                            return Err(self.error(pos, ParseErrorKind::NewlineInOptionName));
                        }
                        Ok('=') => break,
                        Ok(_) => {}
                    }
                }
                let name = trim(&reader.input[start..reader.r - 1]);
                Step::OptionValue {
                    name,
                    partial: Vec::new(),
                }
            }
            Step::OptionValue { name, mut partial } => {
                let (line, eof) = reader.read_line();
                if !trim(line).is_empty() {
                    partial.extend_from_slice(line);
                    if line.ends_with(b"\\") {
                        if !eof {
                            partial.push(b'\n');
                        }
                        return Ok(Some(Step::OptionValue { name, partial }));
                    }
                }
                let raw = utf8(&partial);
                let value = if raw.ends_with('\n') {
                    // Ended by a blank continuation line: fleet keeps one trailing newline.
                    format!("{}\n", raw.trim())
                } else {
                    raw.trim().to_string()
                };
                let section = self.section.clone();
                self.options.push(UnitOption::new(section, name, value));
                Step::NextSectionOrOption
            }
        };
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String, String)> {
        match UnitFile::parse(text) {
            Ok(unit) => unit
                .into_options()
                .into_iter()
                .map(|o| (o.section, o.name, o.value))
                .collect(),
            Err(e) => panic!("{text:?} failed: {e}"),
        }
    }

    fn opts(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|(s, n, v)| (s.to_string(), n.to_string(), v.to_string()))
            .collect()
    }

    fn error(text: &str) -> String {
        match UnitFile::parse(text) {
            Ok(unit) => panic!("{text:?} parsed: {unit:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fleet_deserialize_example() {
        let text = "\nThis=Ignored\n[Unit]\n;ignore this guy\nDescription = Foo\n\n[Service]\n\
                    ExecStart=echo \"ping\";\nExecStop=echo \"pong\"\n# ignore me, too\n\
                    ExecStop=echo post\n\n[X-Fleet]\nMachineMetadata=foo=bar\n\
                    MachineMetadata=baz=qux\n";
        assert_eq!(
            parse(text),
            opts(&[
                ("Unit", "Description", "Foo"),
                ("Service", "ExecStart", "echo \"ping\";"),
                ("Service", "ExecStop", "echo \"pong\""),
                ("Service", "ExecStop", "echo post"),
                ("X-Fleet", "MachineMetadata", "foo=bar"),
                ("X-Fleet", "MachineMetadata", "baz=qux"),
            ])
        );
    }

    #[test]
    fn garbage_before_first_section_and_odd_names() {
        let text = "\n>>>>>>>>>>>>>\n[Service]\nExecStart=jim\n<<<<<<<<<<<=bar\n";
        assert_eq!(
            parse(text),
            opts(&[
                ("Service", "ExecStart", "jim"),
                ("Service", "<<<<<<<<<<<", "bar")
            ])
        );
        // A comment before the first section hides a `[` on its line.
        assert_eq!(parse("; [X]\n[Unit]\nA=1\n"), opts(&[("Unit", "A", "1")]));
        // Empty names and values are allowed; section names are taken raw.
        assert_eq!(
            parse("[ Unit ]\n=x\nA=\nB=   \n"),
            opts(&[
                (" Unit ", "", "x"),
                (" Unit ", "A", ""),
                (" Unit ", "B", "")
            ])
        );
        // Sections without options vanish.
        assert_eq!(parse("[A]\n\n[B]\nX=1\n[C]\n"), opts(&[("B", "X", "1")]));
        assert_eq!(parse(""), opts(&[]));
        assert_eq!(parse("no sections at all = really\n"), opts(&[]));
    }

    #[test]
    fn unicode_whitespace_is_skipped_and_trimmed() {
        assert_eq!(
            parse("[U]\n\u{a0}\u{2003}Name\u{a0} = \u{3000}value\u{85}\n"),
            opts(&[("U", "Name", "value")])
        );
        assert_eq!(
            parse("[U]\n\tA=1\n   B = 2 \n"),
            opts(&[("U", "A", "1"), ("U", "B", "2")])
        );
    }

    #[test]
    fn value_continuations_like_fleet() {
        let text = "[Service]\nExecStart=echo \\\n  \"pi\\\n  ng\"\nExecStop=\\\necho \"po\\\nng\"\n\
                    ExecStopPre=echo\\\n#pang\nExecStopPost=echo\\\n#peng\\\npung\n";
        assert_eq!(
            parse(text),
            opts(&[
                ("Service", "ExecStart", "echo \\\n  \"pi\\\n  ng\""),
                ("Service", "ExecStop", "\\\necho \"po\\\nng\""),
                // `#` lines inside a continuation are value text, not comments.
                ("Service", "ExecStopPre", "echo\\\n#pang"),
                ("Service", "ExecStopPost", "echo\\\n#peng\\\npung"),
            ])
        );
    }

    #[test]
    fn blank_continuation_line_ends_value_and_keeps_newline() {
        assert_eq!(
            parse("[S]\nA=foo \\\n\nB=x\n"),
            opts(&[("S", "A", "foo \\\n"), ("S", "B", "x")])
        );
        assert_eq!(
            parse("[S]\nA=foo\\\n \t \nB=x\n"),
            opts(&[("S", "A", "foo\\\n"), ("S", "B", "x")])
        );
        // The continuation line is raw: a `[` line is text, leading whitespace is kept.
        assert_eq!(
            parse("[S]\nA=one\\\n  [T]\nB=x\n"),
            opts(&[("S", "A", "one\\\n  [T]"), ("S", "B", "x")])
        );
        // Only the last byte counts: a backslash followed by a space does not continue.
        assert_eq!(
            parse("[S]\nA=one\\ \nB=x\n"),
            opts(&[("S", "A", "one\\"), ("S", "B", "x")])
        );
    }

    #[test]
    fn continuation_at_end_of_input() {
        // Backslash on the last line without a newline: kept, nothing added.
        assert_eq!(parse("[S]\nA=foo\\"), opts(&[("S", "A", "foo\\")]));
        // Backslash, newline, end: the newline is kept.
        assert_eq!(parse("[S]\nA=foo\\\n"), opts(&[("S", "A", "foo\\\n")]));
        assert_eq!(parse("[S]\nA=x"), opts(&[("S", "A", "x")]));
    }

    #[test]
    fn comment_continuations() {
        // A comment ending in `\` swallows the next line.
        assert_eq!(
            parse("[S]\n# note \\\nHidden=1\nShown=2\n"),
            opts(&[("S", "Shown", "2")])
        );
        // One trailing space after the backslash is dropped first…
        assert_eq!(
            parse("[S]\n; a\\ \nHidden=1\nShown=2\n"),
            opts(&[("S", "Shown", "2")])
        );
        // …but not two.
        assert_eq!(
            parse("[S]\n; a\\  \nShown=1\n"),
            opts(&[("S", "Shown", "1")])
        );
        // Chains, and before the first section (the header itself is swallowed).
        assert_eq!(
            parse("[S]\n#a\\\n#b\\\nHidden=1\nShown=2\n"),
            opts(&[("S", "Shown", "2")])
        );
        assert_eq!(
            parse("# top\\\n[S]\nA=1\n[T]\nB=2\n"),
            opts(&[("T", "B", "2")])
        );
        // A comment is only a comment at the start of a line.
        assert_eq!(
            parse("[S]\nA=1 # not a comment\n"),
            opts(&[("S", "A", "1 # not a comment")])
        );
    }

    #[test]
    fn crlf_line_ends() {
        assert_eq!(
            parse("[Unit]\r\nDescription=foo\r\n\r\n[Service]\r\nExecStart=/bin/true\r\n"),
            opts(&[
                ("Unit", "Description", "foo"),
                ("Service", "ExecStart", "/bin/true")
            ])
        );
        // `\r` is not the last byte, so a CRLF line ending in `\` does not continue (fleet).
        assert_eq!(
            parse("[S]\r\nA=one \\\r\nB=two\r\n"),
            opts(&[("S", "A", "one \\"), ("S", "B", "two")])
        );
        // Nor does a CRLF comment.
        assert_eq!(parse("[S]\r\n# c\\\r\nA=1\r\n"), opts(&[("S", "A", "1")]));
        // A lone `\r` in the middle of a value stays; at the end it is trimmed.
        assert_eq!(parse("[S]\nA=a\rb\r"), opts(&[("S", "A", "a\rb")]));
        assert_eq!(
            error("[S]\r\nJustAName\r\n"),
            "line 2: unexpected newline encountered while parsing option name"
        );
    }

    #[test]
    fn duplicates_kept_in_order_across_repeated_sections() {
        assert_eq!(
            parse("[A]\nX=1\n[B]\nY=2\n[A]\nX=3\nX=1\n"),
            opts(&[
                ("A", "X", "1"),
                ("B", "Y", "2"),
                ("A", "X", "3"),
                ("A", "X", "1")
            ])
        );
    }

    #[test]
    fn newline_in_option_name_names_the_line() {
        let text = "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n# c\nbroken line\n";
        assert_eq!(
            error(text),
            "line 7: unexpected newline encountered while parsing option name"
        );
        let e = UnitFile::parse(text).unwrap_err();
        assert_eq!(e.line, 7);
        assert_eq!(e.kind, ParseErrorKind::NewlineInOptionName);
        assert_eq!(
            error("\n[Unit]\n\n[Service]\n<<<<<<<<<<<<<<<<\n"),
            "line 5: unexpected newline encountered while parsing option name"
        );
        assert_eq!(
            error("\n[Unit]\nnonsense upon stilts\n"),
            "line 3: unexpected newline encountered while parsing option name"
        );
    }

    #[test]
    fn eof_before_equals() {
        assert_eq!(error("[Unit]\nDescription"), "line 2: EOF");
        assert_eq!(
            UnitFile::parse("[U]\nA=1\nB").unwrap_err().kind,
            ParseErrorKind::UnexpectedEof
        );
        // Whitespace after the last option is fine.
        assert_eq!(parse("[U]\nA=1\n  \n\t"), opts(&[("U", "A", "1")]));
    }

    #[test]
    fn section_header_errors() {
        assert_eq!(
            error("[Unit]\nA=1\n[Service] x y \nB=2\n"),
            "line 3: found garbage after section name : \"x y\""
        );
        assert_eq!(
            UnitFile::parse("[Unit]]\n").unwrap_err().kind,
            ParseErrorKind::GarbageAfterSection {
                section: "Unit".into(),
                garbage: "]".into()
            }
        );
        assert_eq!(
            error("[U] \"q\"\n"),
            "line 1: found garbage after section name : \"\\\"q\\\"\""
        );
        // Whitespace after `]` is fine, including `\r`.
        assert_eq!(parse("[Unit] \t\r\nA=1\n"), opts(&[("Unit", "A", "1")]));
        assert_eq!(
            error("[Unit]\nA=b\n[Service\nB=c\n"),
            "line 3: unable to find end of section"
        );
        assert_eq!(error("["), "line 1: unable to find end of section");
        // The header may span lines: the name runs to the next `]`.
        assert_eq!(parse("[Un\nit]\nA=1\n"), opts(&[("Un\nit", "A", "1")]));
    }

    /// A unit whose second line is `D=` plus `n` bytes of `x`.
    fn long_line(n: usize, newline: bool) -> String {
        format!(
            "[A]\nD={}{}",
            "x".repeat(n),
            if newline { "\n" } else { "" }
        )
    }

    #[test]
    fn line_limit_boundary() {
        // 2047 bytes before the newline pass, 2048 fail.
        assert_eq!(long_line(2045, true).lines().nth(1).unwrap().len(), 2047);
        assert_eq!(parse(&long_line(2045, true))[0].2.len(), 2045);
        assert_eq!(
            error(&long_line(2046, true)),
            "line 2: line too long (max 2048 bytes)"
        );
        // At the end of the input: 2048 bytes with no line end fail, 2047 pass.
        assert_eq!(parse(&long_line(2045, false))[0].2.len(), 2045);
        assert_eq!(
            UnitFile::parse(&long_line(2046, false)).unwrap_err(),
            ParseError {
                line: 2,
                kind: ParseErrorKind::LineTooLong
            }
        );
        // A `\r` counts as a line end for this check.
        let with_cr = format!("[A]\nD={}\r{}\n", "x".repeat(1000), "y".repeat(1500));
        assert_eq!(parse(&with_cr)[0].2.len(), 2501);
        // Long text before the first section is checked too.
        assert_eq!(
            error(&format!("{}\n[A]\n", "#".repeat(3000))),
            "line 1: line too long (max 2048 bytes)"
        );
    }

    #[test]
    fn line_limit_follows_bufio_alignment() {
        // As in fleet: the check only runs when 2048 bytes are buffered, so a long line that
        // starts near the end of the 4096-byte buffer is read whole without being checked.
        let filler: String = (0..30)
            .map(|i| format!("C{i:02}={}\n", "z".repeat(95)))
            .collect();
        let long = "x".repeat(3000);
        let text = format!("[A]\n{filler}D={long}\n");
        assert_eq!(text.find("D=").unwrap(), 3004);
        let unit = UnitFile::parse(&text).unwrap();
        assert_eq!(unit.values("A", "D").next(), Some(long.as_str()));
        // The same line at the start of the buffer is rejected.
        assert_eq!(
            error(&format!("[A]\nD={long}\n{filler}")),
            "line 2: line too long (max 2048 bytes)"
        );
    }

    #[test]
    fn multibyte_text_across_buffer_refills() {
        // Multi-byte characters straddling the 4096-byte buffer edge parse like any other.
        let value = "é".repeat(900);
        let text: String = (0..6).map(|i| format!("[S{i}]\nV={value}\n")).collect();
        let unit = UnitFile::parse(&text).unwrap();
        assert_eq!(unit.options().len(), 6);
        assert!(unit.options().iter().all(|o| o.value == value));
        let name = "ß".repeat(700);
        let text: String = (0..6).map(|i| format!("[S]\n{name}{i}=x\n")).collect();
        assert_eq!(
            UnitFile::parse(&text).unwrap().options()[5].name,
            format!("{name}5")
        );
    }

    #[test]
    fn x_fleet_multivalues_split_only_there() {
        let unit = UnitFile::parse(
            "[X-Fleet]\nMachineMetadata=\"region=us\" \"disk=ssd\"\nMachineMetadata=a=b\n\
             [Service]\nExecStart=\"a b\" \"c\"\n[x-fleet]\nM=\"a\" \"b\"\n",
        )
        .unwrap();
        assert_eq!(
            unit.fleet_values("X-Fleet", "MachineMetadata"),
            ["region=us", "disk=ssd", "a=b"]
        );
        // The raw value is kept: it is what is serialized and hashed.
        assert_eq!(
            unit.values("X-Fleet", "MachineMetadata").next(),
            Some("\"region=us\" \"disk=ssd\"")
        );
        assert_eq!(unit.fleet_values("Service", "ExecStart"), ["\"a b\" \"c\""]);
        assert_eq!(unit.fleet_values("x-fleet", "M"), ["\"a\" \"b\""]);
    }

    #[test]
    fn split_multivalue_like_fleet() {
        let cases: [(&str, &[&str]); 10] = [
            (r#""bar" "ping" "pong""#, &["bar", "ping", "pong"]),
            (r#""bar""#, &["bar"]),
            ("", &[""]),
            (r#""""#, &[""]),
            (r#""bar"#, &[r#""bar"#]),
            (r#"bar""#, &[r#"bar""#]),
            (r#"foo\"bar"#, &[r#"foo\"bar"#]),
            (r#""bar" ""#, &["bar", ""]),
            (r#""foo\"bar""#, &[r"foo\bar"]),
            (r#""a b" "c  d""#, &["a b", "c  d"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_multivalue(input), want, "{input:?}");
        }
        // Two spaces between quoted values give an empty value in between.
        assert_eq!(split_multivalue(r#""a"  "b""#), ["a", "", "b"]);
        assert_eq!(split_multivalue("\"\""), [""]);
        assert_eq!(split_multivalue("\""), [""]);
    }

    #[test]
    fn description_and_install() {
        let unit =
            UnitFile::parse("[Unit]\nDescription = Foo\nDescription=Bar\n[Install]\nWantedBy=x\n")
                .unwrap();
        assert_eq!(unit.description(), Some("Foo"));
        assert!(unit.has_install_section());
        let bare = UnitFile::parse("[Unit]\n\n[Service]\nExecStart=x\n[Install]\n").unwrap();
        assert_eq!(bare.description(), None);
        assert!(!bare.has_install_section());
    }
}
