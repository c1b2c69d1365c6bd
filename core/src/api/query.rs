//! URL query strings, decoded as Go's `url.URL.Query()` did for fleet's handlers: pairs are
//! separated by `&`, keys and values are percent-decoded with `+` meaning space, a pair with a
//! bad escape is dropped, and a key without `=` has an empty value. Repeated keys keep every
//! value in order (`nextPageToken` must appear at most once; filters use the first value).

/// The decoded `(key, value)` pairs of `raw` (the text after `?`, without any `#fragment`).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((unescape(key)?, unescape(value)?))
        })
        .collect()
}

/// Every value of `key`, in order.
pub fn query_values(raw: &str, key: &str) -> Vec<String> {
    parse_query(raw)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// Go's `QueryUnescape`; `None` for a `%` not followed by two hex digits. Bytes that do not
/// form UTF-8 are replaced (flt's names and tokens are ASCII).
fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hi = char::from(hex[0]).to_digit(16)?;
                let lo = char::from(hex[1]).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_like_go() {
        assert_eq!(
            parse_query("nextPageToken=ZAACAA%3D%3D&unitName=a%40b.service&machineID=m+1&flag"),
            vec![
                ("nextPageToken".to_string(), "ZAACAA==".to_string()),
                ("unitName".to_string(), "a@b.service".to_string()),
                ("machineID".to_string(), "m 1".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_query(""), vec![]);
        assert_eq!(parse_query("&&a=1&"), vec![("a".into(), "1".into())]);
        // A value may itself contain '=' (an unescaped token).
        assert_eq!(
            query_values("nextPageToken=ZAACAA==", "nextPageToken"),
            ["ZAACAA=="]
        );
    }

    #[test]
    fn repeated_keys_keep_all_values_and_bad_escapes_drop_the_pair() {
        assert_eq!(
            query_values("nextPageToken=a&x=1&nextPageToken=b", "nextPageToken"),
            ["a", "b"]
        );
        assert_eq!(query_values("k=%zz&k=ok&k=%4", "k"), ["ok"]);
        assert_eq!(query_values("K=1", "k"), Vec::<String>::new());
    }
}
