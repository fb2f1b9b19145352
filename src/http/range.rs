//! Byte ranges (RFC 9110 §14): the `Range` field resolved against a representation's length, the
//! `Content-Range` of a 206, `If-Range` with its strong comparison (§13.1.5), and the framing of a
//! `multipart/byteranges` body (§14.6). Pure: the cache decides what it holds and the proxy sends the
//! bytes; this module only does the arithmetic and the text.
//!
//! ```text
//!  Range: bytes=0-99,200-,-50 ──resolve(len)──> Whole            (absent, bad syntax, other unit, too many)
//!                                          ├──> Parts([a..=b])   (one: 206 + Content-Range; several: multipart)
//!                                          └──> Unsatisfiable    (416, Content-Range: bytes */len)
//! ```

use std::time::{Duration, SystemTime};

use super::date;

/// Most ranges one request may ask for; beyond it the request is served whole (§14.2 allows ignoring
/// a Range field, and many small ranges are a known way to make a server work hard for nothing).
pub const MAX_RANGES: usize = 64;

/// The bytes `start..=end` of a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether every byte of `self` is within `outer`.
    pub fn within(&self, outer: &ByteRange) -> bool {
        outer.start <= self.start && self.end <= outer.end
    }

    /// `bytes a-b/len` (or `bytes a-b/*` without a length) for a Content-Range field.
    pub fn content_range(&self, complete: Option<u64>) -> String {
        match complete {
            Some(len) => format!("bytes {}-{}/{len}", self.start, self.end),
            None => format!("bytes {}-{}/*", self.start, self.end),
        }
    }
}

/// What a Range field asks of a representation of known length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAsk {
    /// Send the whole representation: no Range, or one the server may ignore.
    Whole,
    /// These ranges, in the order asked (overlapping ones merged, §14.2); never empty.
    Parts(Vec<ByteRange>),
    /// A valid `bytes` range set of which no range overlaps the representation: 416 (§15.5.17).
    Unsatisfiable,
}

/// One element of a bytes range set, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` or `a-` (`end` is `None`).
    From { start: u64, end: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Resolves a Range field value against a representation of `len` bytes.
pub fn resolve(field: &str, len: u64) -> RangeAsk {
    let Some(specs) = parse(field) else {
        return RangeAsk::Whole;
    };
    // §14.1.1: a suffix range of non-zero length is satisfiable even against an empty
    // representation, yet no 206 can be formed of zero bytes: the Range is ignored (§14.2), 200.
    if len == 0
        && specs
            .iter()
            .any(|spec| matches!(spec, Spec::Suffix(n) if *n > 0))
    {
        return RangeAsk::Whole;
    }
    let mut parts: Vec<ByteRange> = specs
        .iter()
        .filter_map(|spec| match *spec {
            Spec::From { start, .. } if start >= len => None,
            Spec::From { start, end } => Some(ByteRange {
                start,
                end: end.unwrap_or(u64::MAX).min(len - 1),
            }),
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some(ByteRange {
                start: len.saturating_sub(n),
                end: len - 1,
            }),
        })
        .collect();
    if parts.is_empty() {
        return RangeAsk::Unsatisfiable;
    }
    let overlapping = parts.iter().enumerate().any(|(i, a)| {
        parts[i + 1..]
            .iter()
            .any(|b| a.start <= b.end && b.start <= a.end)
    });
    if overlapping {
        parts.sort_by_key(|r| r.start);
        let mut merged: Vec<ByteRange> = Vec::with_capacity(parts.len());
        for r in parts {
            match merged.last_mut() {
                Some(last) if r.start <= last.end.saturating_add(1) => {
                    last.end = last.end.max(r.end)
                }
                _ => merged.push(r),
            }
        }
        parts = merged;
    }
    RangeAsk::Parts(parts)
}

/// The specs of `bytes=…`, or `None` when the field is to be ignored: another unit, a syntax error in
/// any element, or more than [`MAX_RANGES`] elements.
fn parse(field: &str) -> Option<Vec<Spec>> {
    let (unit, set) = field.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    // §5.6.1: empty list elements are allowed and ignored.
    for element in set.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = element.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let spec = match (first.is_empty(), last.is_empty()) {
            (true, false) => Spec::Suffix(number(last)?),
            (false, true) => Spec::From {
                start: number(first)?,
                end: None,
            },
            (false, false) => {
                let (start, end) = (number(first)?, number(last)?);
                if end < start {
                    return None; // §14.1.1: invalid, so the whole field is
                }
                Spec::From {
                    start,
                    end: Some(end),
                }
            }
            (true, true) => return None,
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses a 206's `Content-Range: bytes a-b/len` (or `/*`) into the range and the complete length.
pub fn parse_content_range(field: &str) -> Option<(ByteRange, Option<u64>)> {
    let rest = field.trim();
    let (unit, rest) = rest.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (span, complete) = rest.trim().split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let range = ByteRange {
        start: number(start)?,
        end: number(end)?,
    };
    let complete = match complete {
        "*" => None,
        n => Some(number(n)?),
    };
    let valid = range.start <= range.end && complete.is_none_or(|len| range.end < len);
    valid.then_some((range, complete))
}

/// What the stored response offers `If-Range` to compare with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validator<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<SystemTime>,
    pub date: Option<SystemTime>,
}

/// RFC 9110 §13.1.5: whether the ranges may be served, i.e. the client's copy is the stored one.
/// Both comparisons are strong: a weak entity-tag never matches, and a date matches only a
/// Last-Modified that is equal to it and strong (at least a second before the response's Date,
/// §8.8.2.2). A value that is neither is false, so the client gets the whole representation.
pub fn if_range_holds(condition: &str, stored: &Validator<'_>) -> bool {
    let condition = condition.trim();
    if condition.starts_with('"') || condition.starts_with("W/") {
        let strong_tag = |t: &str| t.len() >= 2 && t.starts_with('"') && t.ends_with('"');
        return strong_tag(condition)
            && stored
                .etag
                .map(str::trim)
                .is_some_and(|etag| strong_tag(etag) && etag == condition);
    }
    let (Some(asked), Some(modified), Some(date)) =
        (date::parse(condition), stored.last_modified, stored.date)
    else {
        return false;
    };
    asked == modified && modified + Duration::from_secs(1) <= date
}

/// The framing of a `multipart/byteranges` body (§14.6): one head before each part, a closing line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    pub boundary: String,
    /// Per part: the bytes that precede it, and the range of the representation it carries.
    pub parts: Vec<(Vec<u8>, ByteRange)>,
    pub tail: Vec<u8>,
}

impl Multipart {
    /// Frames `ranges` of a representation of `len` bytes; `content_type` is the representation's.
    pub fn new(
        ranges: &[ByteRange],
        len: u64,
        content_type: Option<&[u8]>,
        boundary: &str,
    ) -> Self {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut head = Vec::with_capacity(128);
                if i > 0 {
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                if let Some(ct) = content_type {
                    head.extend_from_slice(b"Content-Type: ");
                    head.extend_from_slice(ct);
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(
                    format!("Content-Range: {}\r\n\r\n", r.content_range(Some(len))).as_bytes(),
                );
                (head, *r)
            })
            .collect();
        Multipart {
            boundary: boundary.to_string(),
            parts,
            tail: format!("\r\n--{boundary}--\r\n").into_bytes(),
        }
    }

    /// The Content-Type of the whole body.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The length of the whole body, framing included.
    pub fn content_length(&self) -> u64 {
        let parts: u64 = self
            .parts
            .iter()
            .map(|(head, r)| head.len() as u64 + r.len())
            .sum();
        parts + self.tail.len() as u64
    }

    /// The whole body, given the representation's bytes (for bodies in memory, and for tests).
    pub fn body(&self, representation: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content_length() as usize);
        for (head, r) in &self.parts {
            out.extend_from_slice(head);
            out.extend_from_slice(&representation[r.start as usize..=r.end as usize]);
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn parts(field: &str, len: u64) -> Vec<ByteRange> {
        match resolve(field, len) {
            RangeAsk::Parts(p) => p,
            other => panic!("{field}: {other:?}"),
        }
    }

    #[test]
    fn single_ranges_of_the_three_forms() {
        assert_eq!(parts("bytes=0-99", 1000), [r(0, 99)]);
        assert_eq!(parts("bytes=100-", 1000), [r(100, 999)]);
        assert_eq!(parts("bytes=-500", 1000), [r(500, 999)]);
        assert_eq!(
            parts("bytes=-5000", 1000),
            [r(0, 999)],
            "suffix longer than the body"
        );
        assert_eq!(parts("bytes=900-5000", 1000), [r(900, 999)], "end clipped");
        assert_eq!(parts(" Bytes = 5 - 9 ", 10), [r(5, 9)]);
    }

    #[test]
    fn several_ranges_keep_their_order_unless_they_overlap() {
        assert_eq!(
            parts("bytes=500-599, 0-9,-1", 1000),
            [r(500, 599), r(0, 9), r(999, 999)]
        );
        assert_eq!(parts("bytes=0-9,5-20,100-", 1000), [r(0, 20), r(100, 999)]);
        assert_eq!(
            parts("bytes=50-60,0-49,55-70", 1000),
            [r(0, 70)],
            "once merging, adjacent ranges merge too"
        );
        assert_eq!(
            parts("bytes=0-9,,20-29", 100),
            [r(0, 9), r(20, 29)],
            "empty elements ignored"
        );
    }

    #[test]
    fn unsatisfiable_only_when_no_range_overlaps() {
        assert_eq!(resolve("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(resolve("bytes=-0", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(resolve("bytes=0-0", 0), RangeAsk::Unsatisfiable);
        assert_eq!(resolve("bytes=-0", 0), RangeAsk::Unsatisfiable);
        assert_eq!(parts("bytes=2000-3000,0-0", 1000), [r(0, 0)]);
    }

    /// RFC 9110 §14.1.1 counts `-5` as satisfiable whatever the length, but an empty representation
    /// has no byte to put in a 206: the answer is the whole (empty) 200, never a 416.
    #[test]
    fn a_suffix_range_of_an_empty_representation_is_ignored_not_unsatisfiable() {
        assert_eq!(resolve("bytes=-5", 0), RangeAsk::Whole);
        assert_eq!(resolve("bytes=0-0,-1", 0), RangeAsk::Whole);
        assert_eq!(resolve("bytes=0-", 0), RangeAsk::Unsatisfiable);
    }

    #[test]
    fn bad_syntax_other_units_and_too_many_ranges_mean_the_whole_body() {
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        for field in [
            "",
            "bytes",
            "bytes=",
            "bytes=a-b",
            "bytes=9-5",
            "bytes=-",
            "items=0-9",
            "bytes=0-9,x",
            "bytes=1-2-3",
            "bytes=+1-2",
            many.as_str(),
        ] {
            assert_eq!(resolve(field, 1000), RangeAsk::Whole, "{field:?}");
        }
        let most = format!("bytes={}", vec!["0-0"; MAX_RANGES].join(","));
        assert_eq!(parts(&most, 10), [r(0, 0)]);
    }

    #[test]
    fn content_range_round_trips_and_rejects_nonsense() {
        assert_eq!(r(0, 99).content_range(Some(1000)), "bytes 0-99/1000");
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((r(0, 99), Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((r(5, 9), None)));
        for bad in [
            "bytes */1000",
            "bytes 9-5/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn if_range_compares_strongly() {
        use std::time::UNIX_EPOCH;
        let lm = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let lm_text = httpdate::fmt_http_date(lm);
        let stored = Validator {
            etag: Some("\"v1\""),
            last_modified: Some(lm),
            date: Some(lm + Duration::from_secs(60)),
        };
        assert!(if_range_holds("\"v1\"", &stored));
        assert!(!if_range_holds("\"v2\"", &stored));
        assert!(
            !if_range_holds("W/\"v1\"", &stored),
            "weak tags never match"
        );
        let weak = Validator {
            etag: Some("W/\"v1\""),
            ..stored
        };
        assert!(!if_range_holds("W/\"v1\"", &weak));
        assert!(if_range_holds(&lm_text, &stored));
        assert!(
            if_range_holds(&lm_text.to_uppercase(), &stored),
            "date names in any case"
        );
        let later = httpdate::fmt_http_date(lm + Duration::from_secs(1));
        assert!(
            !if_range_holds(&later, &stored),
            "only an exact date matches"
        );
        let same_second = Validator {
            date: Some(lm),
            ..stored
        };
        assert!(
            !if_range_holds(&lm_text, &same_second),
            "Last-Modified equal to Date is weak"
        );
        assert!(!if_range_holds(
            &lm_text,
            &Validator {
                date: None,
                ..stored
            }
        ));
        assert!(!if_range_holds("yesterday", &stored));
    }

    #[test]
    fn multipart_frames_each_part_and_counts_its_length() {
        let data: Vec<u8> = (0..100u8).collect();
        let m = Multipart::new(&[r(0, 1), r(98, 99)], 100, Some(b"text/plain"), "XB");
        assert_eq!(m.content_type(), "multipart/byteranges; boundary=XB");
        let body = m.body(&data);
        let expected =
            b"--XB\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/100\r\n\r\n\x00\x01\
\r\n--XB\r\nContent-Type: text/plain\r\nContent-Range: bytes 98-99/100\r\n\r\nbc\r\n--XB--\r\n";
        assert_eq!(body, expected.as_slice());
        assert_eq!(m.content_length(), body.len() as u64);
    }
}
