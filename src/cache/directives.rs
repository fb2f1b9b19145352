//! Cache-Control parsing (RFC 9111 §5.2), for requests and responses alike.
//!
//! Only the directives a shared cache acts on are kept; unknown ones and cache extensions are skipped.
//! Values may be tokens or quoted strings (§5.2: recipients accept both). The field-named form
//! `no-cache="Set-Cookie"` is honoured as RFC 9111 §5.2.2.4 allows: the response is stored without the
//! named fields and reused without revalidation (origins use it to keep one visitor's cookie from
//! another). `private="x"` is treated as plain `private`: only ever more conservative.

use std::borrow::Cow;

use crate::http::Headers;

/// The largest delta-seconds we keep; bigger values are clamped to it (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// Parsed Cache-Control directives of a request or a response (RFC 9111 §5.2).
///
/// Repeated directives: the first occurrence wins (§4.2.1). An invalid `max-age` or `s-maxage` value
/// reads as 0, so the response is stale (§4.2.1, §1.2.2); an invalid `max-stale` allows no staleness and
/// an invalid `min-fresh` is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    /// Unqualified `no-cache`: every reuse needs revalidation.
    pub no_cache: bool,
    /// Fields named by `no-cache="a, b"` (lowercase): stripped from a stored response.
    pub no_cache_fields: Vec<String>,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    /// §5.2.2.3: store only when the status code's caching rules are understood; then ignore `no-store`.
    pub must_understand: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    /// `Some(None)`: any staleness is acceptable (`max-stale` without a value).
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
    pub immutable: bool,
    pub no_transform: bool,
    /// RFC 5861 §3: seconds after expiry during which the stale response may be served while it is
    /// revalidated in the background. An invalid value is ignored.
    pub stale_while_revalidate: Option<u64>,
    /// RFC 5861 §4: seconds after expiry during which the stale response may be served when the
    /// origin fails. An invalid value is ignored.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// The directives of every Cache-Control field in `headers`. Pragma is not consulted; requests
    /// should use [`CacheControl::parse_request`].
    pub fn parse(headers: &Headers) -> CacheControl {
        let mut cc = CacheControl::default();
        for field in headers.get_all("cache-control") {
            for (name, value) in Directives::new(field) {
                cc.apply(name, value.as_deref());
            }
        }
        cc
    }

    /// Like [`CacheControl::parse`], plus RFC 9111 §5.4: a request with `Pragma: no-cache` and no
    /// Cache-Control field is treated as `Cache-Control: no-cache`.
    pub fn parse_request(headers: &Headers) -> CacheControl {
        let mut cc = CacheControl::parse(headers);
        if !headers.contains("cache-control") && headers.has_token("pragma", "no-cache") {
            cc.no_cache = true;
        }
        cc
    }

    fn apply(&mut self, name: &str, value: Option<&str>) {
        // Lowercased on the stack (a field is parsed for every request and every hit from disk):
        // a name longer than the longest directive known is none of them.
        let mut lower = [0u8; 24];
        let Some(lower) = lower.get_mut(..name.len()) else {
            return;
        };
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        match std::str::from_utf8(lower).unwrap_or_default() {
            "no-store" => self.no_store = true,
            "no-cache" => match value.map(str::trim).filter(|v| !v.is_empty()) {
                Some(fields) => self.no_cache_fields.extend(
                    fields
                        .split(',')
                        .map(|f| f.trim().to_ascii_lowercase())
                        .filter(|f| !f.is_empty()),
                ),
                None => self.no_cache = true,
            },
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "only-if-cached" => self.only_if_cached = true,
            "immutable" => self.immutable = true,
            "no-transform" => self.no_transform = true,
            "max-age" if self.max_age.is_none() => {
                self.max_age = Some(value.and_then(delta_seconds).unwrap_or(0));
            }
            "s-maxage" if self.s_maxage.is_none() => {
                self.s_maxage = Some(value.and_then(delta_seconds).unwrap_or(0));
            }
            "max-stale" if self.max_stale.is_none() => {
                self.max_stale = Some(value.map(|v| delta_seconds(v).unwrap_or(0)));
            }
            "stale-while-revalidate" if self.stale_while_revalidate.is_none() => {
                self.stale_while_revalidate = value.and_then(delta_seconds);
            }
            "stale-if-error" if self.stale_if_error.is_none() => {
                self.stale_if_error = value.and_then(delta_seconds);
            }
            // An invalid min-fresh cannot be "first": a later valid one may still apply.
            "min-fresh" if self.min_fresh.is_none() => {
                self.min_fresh = value.and_then(delta_seconds);
            }
            _ => {}
        }
    }
}

/// Parses delta-seconds (RFC 9111 §1.2.2): ASCII digits only, clamped to [`DELTA_SECONDS_MAX`].
pub fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(value.min(DELTA_SECONDS_MAX))
}

/// Iterator over `name[=value]` directives of one field value. Quoted values are unescaped, so a comma
/// inside quotes does not split a directive.
struct Directives<'a> {
    rest: &'a str,
}

impl<'a> Directives<'a> {
    fn new(field: &'a str) -> Self {
        Directives { rest: field }
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = (&'a str, Option<Cow<'a, str>>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.rest = self
                .rest
                .trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if self.rest.is_empty() {
                return None;
            }
            let end = self.rest.find([',', '=']).unwrap_or(self.rest.len());
            let name = self.rest[..end].trim();
            self.rest = &self.rest[end..];
            let value = match self.rest.strip_prefix('=') {
                Some(after) => {
                    let after = after.trim_start();
                    let (value, rest) = if let Some(quoted) = after.strip_prefix('"') {
                        unquote(quoted)
                    } else {
                        let end = after.find(',').unwrap_or(after.len());
                        (Cow::Borrowed(after[..end].trim()), &after[end..])
                    };
                    self.rest = rest;
                    Some(value)
                }
                None => None,
            };
            if !name.is_empty() {
                return Some((name, value));
            }
        }
    }
}

/// Reads a quoted-string body (after the opening quote): the unescaped value and what follows the
/// closing quote. An unterminated string takes the rest of the field.
fn unquote(text: &str) -> (Cow<'_, str>, &str) {
    // Without escapes, the value is the text up to the closing quote, borrowed.
    if let Some(end) = text.find(['"', '\\'])
        && text.as_bytes()[end] == b'"'
    {
        return (Cow::Borrowed(&text[..end]), &text[end + 1..]);
    }
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (Cow::Owned(value), &text[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            _ => value.push(c),
        }
    }
    (Cow::Owned(value), "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(fields: &[&str]) -> CacheControl {
        let headers: Headers = fields.iter().map(|v| ("Cache-Control", *v)).collect();
        CacheControl::parse(&headers)
    }

    #[test]
    fn parses_flags_and_values_across_fields_ignoring_case_and_unknowns() {
        let c = cc(&[
            "Public, MAX-AGE=60, x-ext=\"a, b\", s-maxage=30",
            "must-revalidate,proxy-revalidate , no-transform, immutable, foo",
        ]);
        assert!(c.public && c.must_revalidate && c.proxy_revalidate);
        assert!(c.no_transform && c.immutable);
        assert!(!c.no_store && !c.no_cache && !c.private);
        assert_eq!((c.max_age, c.s_maxage), (Some(60), Some(30)));
    }

    #[test]
    fn quoted_values_are_unquoted_and_commas_inside_do_not_split() {
        let c = cc(&["no-cache=\"set-cookie, x-a\", max-age=\"120\", private=\"x\""]);
        assert!(!c.no_cache, "field-named no-cache is not a bare no-cache");
        assert_eq!(c.no_cache_fields, ["set-cookie", "x-a"]);
        assert!(c.private, "field-named private acts as private");
        assert_eq!(c.max_age, Some(120));
        assert_eq!(
            Directives::new(r#"a="x\"y", b, c="p,q", D=7"#).collect::<Vec<_>>(),
            [
                ("a", Some(Cow::from("x\"y"))),
                ("b", None),
                ("c", Some(Cow::from("p,q"))),
                ("D", Some(Cow::from("7")))
            ]
        );
        assert_eq!(
            Directives::new(r#"a="x\"#).collect::<Vec<_>>(),
            [("a", Some(Cow::from("x")))],
            "an escape at the end of an unterminated string"
        );
        assert_eq!(cc(&["MAX-AGE=5"]).max_age, Some(5));
        assert_eq!(
            cc(&[&format!("{}=5, max-age=6", "x".repeat(40))]).max_age,
            Some(6)
        );
    }

    #[test]
    fn first_occurrence_of_a_repeated_directive_wins() {
        assert_eq!(cc(&["max-age=10, max-age=20"]).max_age, Some(10));
        assert_eq!(cc(&["max-age=10", "max-age=0"]).max_age, Some(10));
        assert_eq!(cc(&["min-fresh=5, min-fresh=9"]).min_fresh, Some(5));
    }

    #[test]
    fn invalid_delta_seconds_make_max_age_zero_and_min_fresh_absent() {
        for bad in [
            "max-age=abc",
            "max-age=-1",
            "max-age=1.5",
            "max-age",
            "max-age=",
        ] {
            assert_eq!(cc(&[bad]).max_age, Some(0), "{bad}");
        }
        assert_eq!(cc(&["s-maxage=x"]).s_maxage, Some(0));
        assert_eq!(cc(&["max-stale=x"]).max_stale, Some(Some(0)));
        assert_eq!(cc(&["min-fresh=x"]).min_fresh, None);
    }

    #[test]
    fn huge_delta_seconds_clamp_to_two_to_the_31() {
        assert_eq!(cc(&["max-age=2147483649"]).max_age, Some(DELTA_SECONDS_MAX));
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            Some(DELTA_SECONDS_MAX)
        );
    }

    #[test]
    fn request_directives_and_max_stale_without_value() {
        let c = cc(&["max-stale, min-fresh=10, only-if-cached, no-store"]);
        assert_eq!(c.max_stale, Some(None));
        assert_eq!(c.min_fresh, Some(10));
        assert!(c.only_if_cached && c.no_store);
        assert_eq!(cc(&["max-stale=30"]).max_stale, Some(Some(30)));
    }

    #[test]
    fn rfc_5861_stale_directives_take_seconds_and_ignore_bad_values() {
        let c = cc(&["max-age=60, stale-while-revalidate=30, STALE-IF-ERROR=\"86400\""]);
        assert_eq!(
            (c.stale_while_revalidate, c.stale_if_error),
            (Some(30), Some(86_400))
        );
        let bad = cc(&["stale-while-revalidate, stale-if-error=soon"]);
        assert_eq!(
            (bad.stale_while_revalidate, bad.stale_if_error),
            (None, None)
        );
    }

    #[test]
    fn pragma_no_cache_counts_only_in_requests_without_cache_control() {
        let pragma: Headers = [("Pragma", "no-cache")].into_iter().collect();
        assert!(CacheControl::parse_request(&pragma).no_cache);
        assert!(!CacheControl::parse(&pragma).no_cache);
        let both: Headers = [("Pragma", "no-cache"), ("Cache-Control", "max-age=5")]
            .into_iter()
            .collect();
        let c = CacheControl::parse_request(&both);
        assert!(!c.no_cache);
        assert_eq!(c.max_age, Some(5));
    }
}
