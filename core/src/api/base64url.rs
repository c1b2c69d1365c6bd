//! base64url with `=` padding (RFC 4648 §5), decoding exactly as Go's `base64.URLEncoding` did
//! for fleet's page tokens: padding is required, `\r` and `\n` are skipped anywhere, non-zero
//! trailing bits are tolerated, and errors name the offending byte offset.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const PAD: u8 = b'=';

/// `illegal base64 data at input byte <offset>` (Go's `CorruptInputError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptInput {
    pub offset: usize,
}

impl fmt::Display for CorruptInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal base64 data at input byte {}", self.offset)
    }
}

impl std::error::Error for CorruptInput {}

pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push(char::from(PAD));
            }
        }
    }
    out
}

fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

fn is_newline(byte: u8) -> bool {
    byte == b'\n' || byte == b'\r'
}

pub fn decode(text: &str) -> Result<Vec<u8>, CorruptInput> {
    let src = text.as_bytes();
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    loop {
        // One quantum: up to four sextets, ended early only by padding or the end of input.
        let mut quantum = [0u8; 4];
        let mut len = 4;
        let mut j = 0;
        let mut finished = false;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(CorruptInput { offset: si - j });
            }
            let byte = src[si];
            si += 1;
            if let Some(v) = sextet(byte) {
                quantum[j] = v;
                j += 1;
                continue;
            }
            if is_newline(byte) {
                continue;
            }
            if byte != PAD || j < 2 {
                return Err(CorruptInput { offset: si - 1 });
            }
            if j == 2 {
                // "==" is required after two sextets; the first '=' is consumed.
                while si < src.len() && is_newline(src[si]) {
                    si += 1;
                }
                if si == src.len() {
                    return Err(CorruptInput { offset: src.len() });
                }
                if src[si] != PAD {
                    return Err(CorruptInput { offset: si - 1 });
                }
                si += 1;
            }
            while si < src.len() && is_newline(src[si]) {
                si += 1;
            }
            if si < src.len() {
                return Err(CorruptInput { offset: si });
            }
            len = j;
            finished = true;
            break;
        }
        let n = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if finished {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff]), "-_8=");
        assert_eq!(decode("-_8=").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn errors_name_the_byte_like_go() {
        let off = |s: &str| decode(s).unwrap_err().offset;
        assert_eq!(off("Zg"), 0); // missing padding: the quantum's start
        assert_eq!(off("Zm9vZ"), 4);
        assert_eq!(off("Z"), 0);
        assert_eq!(off("Zg=a"), 2); // "==" required: points at the first '='
        assert_eq!(off("Zg="), 3);
        assert_eq!(off("Zm8=x"), 4); // trailing garbage after padding
        assert_eq!(off("=AAA"), 0);
        assert_eq!(off("A=AA"), 1);
        assert_eq!(off("ab+/"), 2); // standard alphabet is not base64url
        assert_eq!(off("ZAACAA==ZAACAA=="), 8);
        assert_eq!(
            decode("a b").unwrap_err().to_string(),
            "illegal base64 data at input byte 1"
        );
    }

    #[test]
    fn newlines_are_skipped_and_loose_trailing_bits_tolerated() {
        assert_eq!(decode("Zm\n9v\r\n").unwrap(), b"foo");
        assert_eq!(decode("Zh==").unwrap(), b"f");
        assert_eq!(decode("Zg=\n=").unwrap(), b"f");
    }

    proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }
}
