//! Go's `%q` quoting, which fleet used in the error messages flt reproduces byte for byte
//! (unit names, option keys, garbage after a section name, invalid characters).

/// Go's `%q` for a string: double-quoted, with Go's escapes for what is not printable.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_go_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` for a rune: single-quoted.
pub fn quote_rune(c: char) -> String {
    let mut out = String::with_capacity(4);
    out.push('\'');
    push_go_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

fn push_go_escaped(out: &mut String, c: char, quote: char) {
    use std::fmt::Write as _;
    match c {
        _ if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        _ if go_is_print(c) => out.push(c),
        _ if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        _ if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        _ => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// An approximation of Go's `strconv.IsPrint` (exact for ASCII and Latin-1): controls, spaces
/// other than U+0020, format characters and private-use/non-characters are not printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f | 0x202a..=0x202e
        | 0x2060..=0x206f | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb | 0xfffe | 0xffff
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(quote("a.service"), r#""a.service""#);
        assert_eq!(quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
        assert_eq!(quote("\u{7f}\u{85}"), "\"\\x7f\\u0085\"");
        assert_eq!(quote_rune('\''), "'\\''");
        assert_eq!(quote("😀"), "\"😀\"");
    }
}
