//! Page tokens and paging, as fleet's API did them.
//!
//! A token is base64url (with `=` padding) of two little-endian `u16`s, `{Limit, Page}`; page 1
//! is implicit when a request has no `nextPageToken`. A list handler sorts its whole result, calls
//! [`page_token_from_query`] with the query's `nextPageToken` values, slices with [`paginate`],
//! and encodes the returned next token (if any) into the page's `nextPageToken`.

use super::base64url;
use std::fmt;
use std::ops::Range;

/// fleet's default (and only accepted) page size, the `token_limit` option's default.
pub const DEFAULT_TOKEN_LIMIT: u16 = 100;

/// `{Limit, Page}`: which slice of the sorted list a request wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageToken {
    pub limit: u16,
    pub page: u16,
}

impl PageToken {
    /// Page 1 with this page size: what a request without a token gets.
    pub fn first(limit: u16) -> PageToken {
        PageToken { limit, page: 1 }
    }

    /// The token for the following page; `None` once the page number cannot grow.
    pub fn next(self) -> Option<PageToken> {
        Some(PageToken {
            limit: self.limit,
            page: self.page.checked_add(1)?,
        })
    }

    /// The wire form, e.g. limit 100 page 2 → `ZAACAA==`.
    pub fn encode(self) -> String {
        let l = self.limit.to_le_bytes();
        let p = self.page.to_le_bytes();
        base64url::encode(&[l[0], l[1], p[0], p[1]])
    }

    /// Decodes the wire form without checking its values. Bytes after the first four are
    /// ignored, as fleet's binary reader did.
    pub fn decode(text: &str) -> Result<PageToken, PageTokenError> {
        let bytes = base64url::decode(text).map_err(|e| PageTokenError::Base64 {
            token: text.to_string(),
            offset: e.offset,
        })?;
        match bytes.as_slice() {
            [l0, l1, p0, p1, ..] => Ok(PageToken {
                limit: u16::from_le_bytes([*l0, *l1]),
                page: u16::from_le_bytes([*p0, *p1]),
            }),
            [] => Err(PageTokenError::Empty {
                token: text.to_string(),
            }),
            short => Err(PageTokenError::Short {
                token: text.to_string(),
                len: short.len(),
            }),
        }
    }
}

/// Why a `nextPageToken` was refused (always HTTP 400). `Display` is fleet's exact message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageTokenError {
    /// The query repeats `nextPageToken`.
    TooManyValues,
    /// Not base64url; `offset` is the first bad byte.
    Base64 { token: String, offset: usize },
    /// Decodes to nothing (Go's reader said `EOF`).
    Empty { token: String },
    /// Decodes to fewer than four bytes (Go's reader said `unexpected EOF`).
    Short { token: String, len: usize },
    /// The token's limit is not the server's `token_limit`.
    Limit { got: u16, expected: u16 },
    /// Page 0.
    PageZero,
}

impl PageTokenError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for PageTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageTokenError::TooManyValues => f.write_str("too many values for page token"),
            PageTokenError::Base64 { offset, .. } => {
                write!(f, "illegal base64 data at input byte {offset}")
            }
            PageTokenError::Empty { .. } => f.write_str("EOF"),
            PageTokenError::Short { .. } => f.write_str("unexpected EOF"),
            PageTokenError::Limit { expected, .. } => {
                write!(f, "token limit must be {expected}")
            }
            PageTokenError::PageZero => f.write_str("token page must be greater than zero"),
        }
    }
}

impl std::error::Error for PageTokenError {}

/// The token a list request asks for, given every value of its `nextPageToken` query parameter
/// (already URL-decoded) and the server's `token_limit`.
pub fn page_token_from_query(
    values: &[&str],
    token_limit: u16,
) -> Result<PageToken, PageTokenError> {
    match values {
        [] => Ok(PageToken::first(token_limit)),
        [value] => {
            let token = PageToken::decode(value)?;
            if token.limit != token_limit {
                return Err(PageTokenError::Limit {
                    got: token.limit,
                    expected: token_limit,
                });
            }
            if token.page == 0 {
                return Err(PageTokenError::PageZero);
            }
            Ok(token)
        }
        _ => Err(PageTokenError::TooManyValues),
    }
}

/// The slice `[(page−1)·limit, page·limit)` of a sorted list of `total_len` items, clamped to
/// the list, and the token of the following page.
///
/// fleet's quirk is kept: a next token is returned whenever the page is non-empty and
/// `page·limit ≤ total_len`, so an exactly full last page still points at an empty page (`{}`).
/// Unlike fleet the arithmetic does not wrap at 16 bits.
pub fn paginate(total_len: usize, token: PageToken) -> (Range<usize>, Option<PageToken>) {
    let limit = usize::from(token.limit);
    let start = usize::from(token.page.saturating_sub(1)) * limit;
    let stop = usize::from(token.page) * limit;
    if start >= total_len {
        return (total_len..total_len, None);
    }
    if stop > total_len {
        (start..total_len, None)
    } else {
        (start..stop, token.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_token_vector() {
        let tok = PageToken {
            limit: 100,
            page: 2,
        };
        assert_eq!(tok.encode(), "ZAACAA==");
        assert_eq!(PageToken::decode("ZAACAA==").unwrap(), tok);
        assert_eq!(PageToken::first(100).next(), Some(tok));
        assert_eq!(PageToken::first(100).encode(), "ZAABAA==");
    }

    #[test]
    fn functional_test_token_is_refused_for_its_limit() {
        // TestMachinesListBadNextPageToken sends limit 19.
        let err = page_token_from_query(&["EwBMLg=="], 100).unwrap_err();
        assert_eq!(
            err,
            PageTokenError::Limit {
                got: 19,
                expected: 100
            }
        );
        assert_eq!(err.to_string(), "token limit must be 100");
        assert_eq!(err.status(), 400);
        assert_eq!(
            page_token_from_query(&["ZAACAA=="], 50)
                .unwrap_err()
                .to_string(),
            "token limit must be 50"
        );
    }

    #[test]
    fn query_errors_have_fleets_texts() {
        let msg = |values: &[&str]| page_token_from_query(values, 100).unwrap_err().to_string();
        assert_eq!(
            msg(&["ZAACAA==", "ZAACAA=="]),
            "too many values for page token"
        );
        assert_eq!(msg(&["ZAAAAA=="]), "token page must be greater than zero");
        assert_eq!(msg(&["ZAAC"]), "unexpected EOF");
        assert_eq!(msg(&["ZA=="]), "unexpected EOF");
        assert_eq!(msg(&[""]), "EOF");
        assert_eq!(msg(&["ZAACAA"]), "illegal base64 data at input byte 4");
        assert_eq!(
            msg(&["ZAACAA%3D%3D"]),
            "illegal base64 data at input byte 6"
        );
        assert_eq!(msg(&["ZAAC+A=="]), "illegal base64 data at input byte 4");
    }

    #[test]
    fn query_without_token_is_page_one_and_extra_bytes_are_ignored() {
        assert_eq!(
            page_token_from_query(&[], 100).unwrap(),
            PageToken::first(100)
        );
        // Six bytes: the last two are ignored, as fleet's reader ignored them.
        assert_eq!(
            page_token_from_query(&["ZAADAP__"], 100).unwrap(),
            PageToken {
                limit: 100,
                page: 3
            }
        );
    }

    #[test]
    fn paginate_slices_and_keeps_the_full_last_page_quirk() {
        let t = |page| PageToken { limit: 100, page };
        assert_eq!(paginate(0, t(1)), (0..0, None));
        assert_eq!(paginate(5, t(1)), (0..5, None));
        assert_eq!(paginate(99, t(1)), (0..99, None));
        assert_eq!(paginate(100, t(1)), (0..100, Some(t(2))));
        assert_eq!(paginate(100, t(2)), (100..100, None));
        assert_eq!(paginate(250, t(1)), (0..100, Some(t(2))));
        assert_eq!(paginate(250, t(2)), (100..200, Some(t(3))));
        assert_eq!(paginate(250, t(3)), (200..250, None));
        assert_eq!(paginate(250, t(9)), (250..250, None));
    }

    #[test]
    fn paginate_does_not_wrap_at_sixteen_bits() {
        // fleet computed (page-1)*limit in u16 and wrapped; page 700 of 100 is far past 65535.
        let tok = PageToken {
            limit: 100,
            page: 700,
        };
        assert_eq!(
            paginate(70_000, tok),
            (69_900..70_000, Some(tok.next().unwrap()))
        );
        let last = PageToken {
            limit: 1,
            page: u16::MAX,
        };
        assert_eq!(paginate(70_000, last), (65_534..65_535, None));
    }

    proptest! {
        #[test]
        fn token_roundtrip(limit in any::<u16>(), page in any::<u16>()) {
            let tok = PageToken { limit, page };
            prop_assert_eq!(PageToken::decode(&tok.encode()).unwrap(), tok);
        }

        #[test]
        fn following_tokens_visits_every_item_once(total in 0usize..1000, limit in 1u16..50) {
            let mut seen = Vec::new();
            let mut tok = Some(PageToken::first(limit));
            while let Some(t) = tok {
                let (range, next) = paginate(total, t);
                prop_assert!(range.len() <= usize::from(limit));
                seen.extend(range);
                tok = next;
            }
            prop_assert_eq!(seen, (0..total).collect::<Vec<_>>());
        }
    }
}
