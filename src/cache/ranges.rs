//! Which bytes of a stored response a request gets (RFC 9110 §14): pure, a request and a stored head
//! in, a [`RangeReply`] out; the proxy sends what it says.
//!
//! A stored response is either whole (any status; ranges only apply to a 200) or a partial entry: a
//! 206 with one `Content-Range`, which holds some bytes of a representation of known length. A
//! partial entry answers only ranges inside the bytes it holds; anything else about it is a miss.
//!
//! ```text
//!  GET + Range ── If-Range holds? ── no ──> Whole (or NotHeld for a partial entry)
//!                        └─ yes ── resolve(len) ─┬─ one range ──> Ranged(Single)   (206, Content-Range)
//!                                                ├─ several ───> Ranged(Multi)    (206 multipart/byteranges)
//!                                                ├─ none fits ─> Ranged(Unsatisfiable) (416, bytes */len)
//!                                                └─ not held ──> NotHeld  (a miss: ask the origin)
//! ```

use super::freshness::header_date;
use crate::http::range::{self, ByteRange, RangeAsk, Validator};
use crate::http::{Method, RequestHead, ResponseHead};

/// What a stored body holds of its representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The bytes the stored body holds.
    pub bytes: Option<ByteRange>,
    /// The length of the whole representation.
    pub complete: u64,
    /// Whether the entry is a stored 206.
    pub partial: bool,
}

impl Held {
    /// Reads a stored head and its body length; `None` for a 206 whose Content-Range is not one
    /// range of a known length matching the body (such an entry is never used).
    pub fn of(stored: &ResponseHead, body_len: u64) -> Option<Held> {
        if stored.status != 206 {
            let bytes = (body_len > 0).then(|| ByteRange {
                start: 0,
                end: body_len - 1,
            });
            return Some(Held {
                bytes,
                complete: body_len,
                partial: false,
            });
        }
        let (bytes, complete) = range::parse_content_range(stored.headers.get("content-range")?)?;
        (bytes.len() == body_len).then_some(Held {
            bytes: Some(bytes),
            complete: complete?,
            partial: true,
        })
    }

    /// Where `r` of the representation starts in the stored body.
    pub fn offset_of(&self, r: &ByteRange) -> u64 {
        r.start - self.bytes.map_or(0, |b| b.start)
    }
}

/// What to send for a request from a stored response. Decided once when the entry is looked up and
/// handed to the code that serves it; decided again only after a 304 or a HEAD changed the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeReply {
    /// The stored response as it is.
    Whole,
    /// A range response from the bytes the entry holds.
    Ranged(Held, Ranged),
    /// The request needs bytes (or the whole) that a partial entry does not hold, or the entry is a
    /// 206 that cannot be used at all: a miss, to be asked of the origin (RFC 9111 §3.3).
    NotHeld,
}

/// The range response a stored entry gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// 206 with one Content-Range.
    Single(ByteRange),
    /// 206 multipart/byteranges.
    Multi(Vec<ByteRange>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

impl RangeReply {
    pub fn as_str(&self) -> &'static str {
        match self {
            RangeReply::Whole => "whole",
            RangeReply::Ranged(_, ranged) => ranged.as_str(),
            RangeReply::NotHeld => "not-held",
        }
    }
}

impl Ranged {
    pub fn as_str(&self) -> &'static str {
        match self {
            Ranged::Single(_) => "range",
            Ranged::Multi(_) => "multipart",
            Ranged::Unsatisfiable => "unsatisfiable",
        }
    }

    /// The status line's code: 206, or 416 for an unsatisfiable range set.
    pub fn status(&self) -> u16 {
        match self {
            Ranged::Single(_) | Ranged::Multi(_) => 206,
            Ranged::Unsatisfiable => 416,
        }
    }
}

/// RFC 9110 §14.2 and §13.1.5 for a stored response of `body_len` body bytes: Range applies to GET
/// only, and to a 200 (or the stored 206 it came from); If-Range must hold with the stored
/// validators, or the whole is sent (which a partial entry does not have).
pub fn reply(req: &RequestHead, stored: &ResponseHead, body_len: u64) -> RangeReply {
    let Some(held) = Held::of(stored, body_len) else {
        return RangeReply::NotHeld;
    };
    let whole = if held.partial {
        RangeReply::NotHeld
    } else {
        RangeReply::Whole
    };
    let field = match req.headers.get("range") {
        Some(field) if req.method == Method::Get && matches!(stored.status, 200 | 206) => field,
        _ => return whole,
    };
    if let Some(condition) = req.headers.get("if-range") {
        let validator = Validator {
            etag: stored.headers.get("etag"),
            last_modified: header_date(&stored.headers, "last-modified"),
            date: header_date(&stored.headers, "date"),
        };
        if !range::if_range_holds(condition, &validator) {
            return whole;
        }
    }
    let parts = match range::resolve(field, held.complete) {
        RangeAsk::Whole => return whole,
        RangeAsk::Unsatisfiable => return RangeReply::Ranged(held, Ranged::Unsatisfiable),
        RangeAsk::Parts(parts) => parts,
    };
    let all_held = held
        .bytes
        .is_some_and(|bytes| parts.iter().all(|p| p.within(&bytes)));
    match parts.as_slice() {
        _ if !all_held => RangeReply::NotHeld,
        [one] if held.partial || one.len() < held.complete => {
            RangeReply::Ranged(held, Ranged::Single(*one))
        }
        // A range that covers everything is just the whole response (§14.2 lets us send 200).
        [_] => RangeReply::Whole,
        _ => RangeReply::Ranged(held, Ranged::Multi(parts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::{date, req, resp};

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn ask(fields: &[(&str, &str)], stored: &ResponseHead, len: u64) -> RangeReply {
        reply(&req("GET", fields), stored, len)
    }

    /// The reply `ranged` from `stored` of `len` body bytes.
    fn ranged(stored: &ResponseHead, len: u64, ranged: Ranged) -> RangeReply {
        RangeReply::Ranged(Held::of(stored, len).unwrap(), ranged)
    }

    fn single(stored: &ResponseHead, len: u64, r: ByteRange) -> RangeReply {
        ranged(stored, len, Ranged::Single(r))
    }

    #[test]
    fn ranges_of_a_whole_200() {
        let stored = resp(200, &[]);
        assert_eq!(ask(&[], &stored, 1000), RangeReply::Whole);
        assert_eq!(
            ask(&[("Range", "bytes=0-99")], &stored, 1000),
            single(&stored, 1000, r(0, 99))
        );
        assert_eq!(
            ask(&[("Range", "bytes=-500")], &stored, 1000),
            single(&stored, 1000, r(500, 999))
        );
        assert_eq!(
            ask(&[("Range", "bytes=0-0,-1")], &stored, 1000),
            ranged(&stored, 1000, Ranged::Multi(vec![r(0, 0), r(999, 999)]))
        );
        assert_eq!(
            ask(&[("Range", "bytes=1000-")], &stored, 1000),
            ranged(&stored, 1000, Ranged::Unsatisfiable)
        );
        assert_eq!(
            ask(&[("Range", "bytes=0-")], &stored, 1000),
            RangeReply::Whole
        );
        assert_eq!(
            ask(&[("Range", "lines=1-2")], &stored, 1000),
            RangeReply::Whole
        );
    }

    #[test]
    fn range_is_for_get_on_a_200_only() {
        let stored = resp(200, &[]);
        let head = reply(&req("HEAD", &[("Range", "bytes=0-9")]), &stored, 100);
        assert_eq!(head, RangeReply::Whole);
        assert_eq!(
            ask(&[("Range", "bytes=0-9")], &resp(404, &[]), 100),
            RangeReply::Whole
        );
    }

    #[test]
    fn if_range_decides_between_a_range_and_the_whole() {
        let (lm, d) = (date(-100), date(0));
        let stored = resp(
            200,
            &[("ETag", "\"v1\""), ("Last-Modified", &lm), ("Date", &d)],
        );
        let range = ("Range", "bytes=0-9");
        assert_eq!(
            ask(&[range, ("If-Range", "\"v1\"")], &stored, 100),
            single(&stored, 100, r(0, 9))
        );
        assert_eq!(
            ask(&[range, ("If-Range", "\"v0\"")], &stored, 100),
            RangeReply::Whole
        );
        assert_eq!(
            ask(&[range, ("If-Range", &lm)], &stored, 100),
            single(&stored, 100, r(0, 9))
        );
        assert_eq!(
            ask(&[range, ("If-Range", &d)], &stored, 100),
            RangeReply::Whole
        );
    }

    #[test]
    fn a_partial_entry_answers_only_ranges_it_holds() {
        let stored = resp(206, &[("Content-Range", "bytes 100-199/1000")]);
        let held = Held::of(&stored, 100).unwrap();
        assert_eq!(
            held,
            Held {
                bytes: Some(r(100, 199)),
                complete: 1000,
                partial: true
            }
        );
        assert_eq!(held.offset_of(&r(150, 160)), 50);
        assert_eq!(ask(&[], &stored, 100), RangeReply::NotHeld);
        assert_eq!(
            ask(&[("Range", "bytes=150-199")], &stored, 100),
            single(&stored, 100, r(150, 199))
        );
        assert_eq!(
            ask(&[("Range", "bytes=100-109,190-199")], &stored, 100),
            ranged(&stored, 100, Ranged::Multi(vec![r(100, 109), r(190, 199)]))
        );
        assert_eq!(
            ask(&[("Range", "bytes=150-200")], &stored, 100),
            RangeReply::NotHeld
        );
        assert_eq!(
            ask(&[("Range", "bytes=0-")], &stored, 100),
            RangeReply::NotHeld
        );
        assert_eq!(
            ask(&[("Range", "bytes=1000-")], &stored, 100),
            ranged(&stored, 100, Ranged::Unsatisfiable)
        );
    }

    #[test]
    fn a_partial_entry_with_a_bad_content_range_is_unusable() {
        for cr in ["bytes 0-9/*", "bytes 0-9/5", "bytes 0-8/100", "nonsense"] {
            let stored = resp(206, &[("Content-Range", cr)]);
            assert_eq!(Held::of(&stored, 10), None, "{cr}");
        }
        assert_eq!(Held::of(&resp(206, &[]), 10), None);
        let stored = resp(206, &[("Content-Range", "bytes 0-8/100")]);
        assert_eq!(
            ask(&[("Range", "bytes=0-5")], &stored, 10),
            RangeReply::NotHeld
        );
    }

    /// The review's case: a stored `206 bytes 0-99/1000` with ETag "v1", revalidated by a 304 whose
    /// `ETag: W/"v1"` replaced the stored one. `If-Range: "v1"` no longer holds, so the request is for
    /// the whole, which the entry does not have: a miss, never a 416 for a range the entry holds.
    #[test]
    fn a_partial_entry_whose_if_range_fails_is_not_held_rather_than_unsatisfiable() {
        let before = resp(
            206,
            &[("Content-Range", "bytes 0-99/1000"), ("ETag", "\"v1\"")],
        );
        let fields = [("Range", "bytes=0-9"), ("If-Range", "\"v1\"")];
        assert_eq!(ask(&fields, &before, 100), single(&before, 100, r(0, 9)));
        let after = resp(
            206,
            &[("Content-Range", "bytes 0-99/1000"), ("ETag", "W/\"v1\"")],
        );
        assert_eq!(ask(&fields, &after, 100), RangeReply::NotHeld);
    }
}
