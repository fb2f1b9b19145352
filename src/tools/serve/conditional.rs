//! Conditional requests (RFC 9110 §13) and byte ranges (RFC 9110 §14) for static files: pure
//! functions of the request's fields and the file's validators, so a cache in front of the server
//! can revalidate (304) and resume (206) against something real.
//!
//! ```text
//!  If-Match / If-Unmodified-Since fail ──> 412
//!  If-None-Match matches, or If-Modified-Since not older ──> 304   (GET and HEAD)
//!  Range: bytes=a-b | a- | -n (one range; If-Range must match) ──> 206 | 416 | whole file
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::{Headers, Method};

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quotes included: `"1f-5f1e2a3b4c"`.
    pub etag: String,
    /// The modification time, truncated to whole seconds as HTTP dates are.
    pub last_modified: SystemTime,
}

impl Validators {
    /// Validators from a file's size and modification time (nanoseconds, where the file system has them).
    pub fn new(len: u64, modified: SystemTime) -> Self {
        let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
        Validators {
            etag: format!(
                "\"{len:x}-{:x}{:08x}\"",
                since.as_secs(),
                since.subsec_nanos()
            ),
            last_modified: UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        }
    }

    pub fn last_modified_http(&self) -> String {
        httpdate::fmt_http_date(self.last_modified)
    }
}

/// The result of evaluating the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// Evaluates the preconditions in the order of RFC 9110 §13.2.2.
pub fn evaluate(headers: &Headers, method: &Method, v: &Validators) -> Precondition {
    if let Some(field) = headers.get("if-match") {
        if !matches_list(field, &v.etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(date) = headers.get("if-unmodified-since").and_then(parse_date)
        && v.last_modified > date
    {
        return Precondition::Failed;
    }
    let safe = matches!(method, Method::Get | Method::Head);
    if let Some(field) = headers.get("if-none-match") {
        if matches_list(field, &v.etag, false) {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe
        && let Some(date) = headers.get("if-modified-since").and_then(parse_date)
        && v.last_modified <= date
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// What the Range field asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range: send the whole file.
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// A valid range that lies beyond the end (416).
    Unsatisfiable,
}

/// Interprets Range (and If-Range) for a GET. Several ranges, other units or bad syntax are ignored,
/// which RFC 9110 §14.2 allows: the client gets the whole file.
pub fn range(headers: &Headers, len: u64, v: &Validators) -> RangeRequest {
    let Some(field) = headers.get("range") else {
        return RangeRequest::Full;
    };
    if let Some(condition) = headers.get("if-range") {
        let current = if condition.trim_start().starts_with(['"', 'W']) {
            condition.trim() == v.etag
        } else {
            parse_date(condition) == Some(v.last_modified)
        };
        if !current {
            return RangeRequest::Full;
        }
    }
    parse_range(field, len)
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` against a length.
pub fn parse_range(field: &str, len: u64) -> RangeRequest {
    let Some((unit, set)) = field.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // Suffix: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (false, Some(start), None) if last.trim().is_empty() => satisfiable(start, u64::MAX, len),
        (false, Some(start), Some(end)) if start <= end => satisfiable(start, end, len),
        _ => RangeRequest::Full,
    }
}

fn satisfiable(start: u64, end: u64, len: u64) -> RangeRequest {
    if start >= len {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial {
            start,
            end: end.min(len - 1),
        }
    }
}

fn parse_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

/// Whether an If-Match / If-None-Match list matches `etag`: strong comparison for If-Match, weak for
/// If-None-Match (RFC 9110 §8.8.3.2).
fn matches_list(field: &str, etag: &str, strong: bool) -> bool {
    if field.trim() == "*" {
        return true;
    }
    let ours = etag.trim_start_matches("W/");
    entity_tags(field).any(|(weak, tag)| tag == ours && !(strong && weak))
}

/// The entity tags in a list, as (is weak, quoted opaque tag). Commas inside quotes do not split.
fn entity_tags(field: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = field;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                return None;
            }
            let weak = rest.starts_with("W/");
            let body = if weak { &rest[2..] } else { rest };
            if let Some(after_quote) = body.strip_prefix('"')
                && let Some(close) = after_quote.find('"')
            {
                let tag = &body[..close + 2];
                rest = &after_quote[close + 1..];
                return Some((weak, tag));
            }
            // Not a tag: skip to the next comma.
            rest = rest.find(',').map_or("", |i| &rest[i..]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validators {
        Validators::new(100, UNIX_EPOCH + Duration::new(1_700_000_000, 5))
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    #[test]
    fn parses_ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=90-500", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("Bytes = 5-5", 100),
            Partial { start: 5, end: 5 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        for ignored in [
            "bytes=9-0",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
            "bytes",
        ] {
            assert_eq!(parse_range(ignored, 100), Full, "{ignored}");
        }
    }

    #[test]
    fn if_range_must_match() {
        let v = v();
        let etag = v.etag.clone();
        let lm = v.last_modified_http();
        let want = RangeRequest::Partial { start: 0, end: 0 };
        assert_eq!(
            range(&h(&[("Range", "bytes=0-0"), ("If-Range", &etag)]), 100, &v),
            want
        );
        assert_eq!(
            range(&h(&[("Range", "bytes=0-0"), ("If-Range", &lm)]), 100, &v),
            want
        );
        assert_eq!(
            range(
                &h(&[("Range", "bytes=0-0"), ("If-Range", "\"old\"")]),
                100,
                &v
            ),
            RangeRequest::Full
        );
    }

    #[test]
    fn conditional_get() {
        let v = v();
        let etag = v.etag.clone();
        let lm = v.last_modified_http();
        let weak = format!("W/{etag}");
        use Precondition::*;
        assert_eq!(evaluate(&h(&[]), &Method::Get, &v), Proceed);
        assert_eq!(
            evaluate(&h(&[("If-None-Match", &etag)]), &Method::Get, &v),
            NotModified
        );
        assert_eq!(
            evaluate(&h(&[("If-None-Match", &weak)]), &Method::Head, &v),
            NotModified
        );
        let list = format!("\"a,b\", {etag}");
        assert_eq!(
            evaluate(&h(&[("If-None-Match", &list)]), &Method::Get, &v),
            NotModified
        );
        assert_eq!(
            evaluate(&h(&[("If-None-Match", "\"x\"")]), &Method::Get, &v),
            Proceed
        );
        assert_eq!(
            evaluate(&h(&[("If-None-Match", "*")]), &Method::Get, &v),
            NotModified
        );
        assert_eq!(
            evaluate(&h(&[("If-Modified-Since", &lm)]), &Method::Get, &v),
            NotModified
        );
        let earlier = httpdate::fmt_http_date(v.last_modified - Duration::from_secs(1));
        assert_eq!(
            evaluate(&h(&[("If-Modified-Since", &earlier)]), &Method::Get, &v),
            Proceed
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            evaluate(
                &h(&[("If-None-Match", "\"x\""), ("If-Modified-Since", &lm)]),
                &Method::Get,
                &v
            ),
            Proceed
        );
        assert_eq!(
            evaluate(&h(&[("If-Modified-Since", "garbage")]), &Method::Get, &v),
            Proceed
        );
        assert_eq!(
            evaluate(&h(&[("If-Match", "\"x\"")]), &Method::Get, &v),
            Failed
        );
        assert_eq!(
            evaluate(&h(&[("If-Match", &weak)]), &Method::Get, &v),
            Failed
        );
        assert_eq!(
            evaluate(&h(&[("If-Match", &etag)]), &Method::Get, &v),
            Proceed
        );
        assert_eq!(
            evaluate(&h(&[("If-Unmodified-Since", &earlier)]), &Method::Get, &v),
            Failed
        );
    }
}
