//! Conditional requests around a stored response: the validators the cache sends upstream when it
//! revalidates (RFC 9111 §4.3.1), the header update a 304 brings (§3.2, §4.3.4), and the evaluation of a
//! client's own If-None-Match / If-Modified-Since against the stored response (RFC 9110 §13.1, §13.2).
//!
//! Which stored response a 304 refers to is `update`'s question; [`freshen`] applies the answer to a
//! stored entry's head and times, for a 304 and for a 200 to a HEAD alike.

use std::time::SystemTime;

use super::entry::ResponseMeta;
use super::freshness::header_date;
use crate::http::{Method, RequestHead, ResponseHead};

/// The request fields that make a request conditional or partial (RFC 9110 §13.1, §14.2): a request
/// with any of them is not answered from an entry still being written, and the cache's own
/// revalidation replaces them with the entry's validators.
pub const PRECONDITION_FIELDS: [&str; 6] = [
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
];

/// Whether `req` carries any of [`PRECONDITION_FIELDS`].
pub fn has_preconditions(req: &RequestHead) -> bool {
    PRECONDITION_FIELDS
        .iter()
        .any(|name| req.headers.contains(name))
}

/// Fields a 304 never replaces: framing and connection-scoped fields (RFC 9111 §3.1, §3.2), those the
/// stored body depends on (its length, encoding and range), since the body itself is not replaced, and
/// Set-Cookie: a 304's cookie answers one client's request and must not reach everyone served the
/// refreshed entry.
const NOT_UPDATED: [&str; 15] = [
    "set-cookie",
    "set-cookie2",
    "content-length",
    "content-encoding",
    "content-range",
    "transfer-encoding",
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authentication-info",
    "authentication-info",
];

/// Conditional fields for revalidating `stored` (RFC 9111 §4.3.1): If-None-Match from its ETag and
/// If-Modified-Since from its Last-Modified, the latter only when it is a valid HTTP-date.
pub fn validators(stored: &ResponseHead) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(etag) = stored.headers.get("etag").map(str::trim)
        && parse_etag(etag).is_some()
    {
        out.push(("If-None-Match", etag.to_string()));
    }
    if header_date(&stored.headers, "last-modified").is_some()
        && let Some(lm) = stored.headers.get("last-modified")
    {
        out.push(("If-Modified-Since", lm.trim().to_string()));
    }
    out
}

/// Updates a stored head from a 304 (RFC 9111 §4.3.4, §3.2): every field the 304 carries replaces all
/// stored fields of that name, except [`NOT_UPDATED`] ones and those the 304's Connection names.
///
/// Age describes the message it arrived with, so a stored Age goes when the 304 has none; the caller
/// should give a 304 without Date one of its own (RFC 9110 §6.6.1) before calling this.
pub fn update_from_304(stored: &mut ResponseHead, not_modified: &ResponseHead) {
    let connection_named: Vec<String> = not_modified
        .headers
        .list("connection")
        .map(str::to_ascii_lowercase)
        .collect();
    let mut names: Vec<String> = Vec::new();
    for (name, _) in not_modified.headers.iter() {
        let lower = name.to_ascii_lowercase();
        if !NOT_UPDATED.contains(&lower.as_str())
            && !connection_named.contains(&lower)
            && !names.contains(&lower)
        {
            names.push(lower);
        }
    }
    if !names.iter().any(|n| n == "age") {
        stored.headers.remove("age");
    }
    for name in &names {
        stored.headers.remove(name);
        for (n, value) in not_modified.headers.iter() {
            if n.eq_ignore_ascii_case(name) {
                stored.headers.append(n, value);
            }
        }
    }
}

/// Freshens a stored response with the response that revalidated it (RFC 9111 §4.3.4 for a 304,
/// §4.3.5 for a 200 to a HEAD): [`update_from_304`] on its head, a Date of the response's arrival when
/// the update carries none (RFC 9110 §6.6.1: the stored Date would make the refreshed entry look
/// old), and the exchange's request and response times for its age (RFC 9111 §4.2.3).
pub fn freshen(
    meta: &mut ResponseMeta,
    update: &ResponseHead,
    request_time: SystemTime,
    response_time: SystemTime,
) {
    update_from_304(&mut meta.head, update);
    if !update.headers.contains("date") {
        meta.head
            .headers
            .set("Date", httpdate::fmt_http_date(response_time));
    }
    meta.request_time = request_time;
    meta.response_time = response_time;
}

/// Whether the client's conditional GET/HEAD shows its copy of `stored` is current, so the cache may
/// answer 304 (RFC 9110 §13.1.2, §13.1.3, §13.2.2). If-None-Match uses the weak comparison and `*`
/// matches; when it is present If-Modified-Since is ignored. Preconditions only apply to a 2xx stored
/// response (§13.2.1).
pub fn client_has_current(req: &RequestHead, stored: &ResponseHead) -> bool {
    if !matches!(req.method, Method::Get | Method::Head) || !(200..300).contains(&stored.status) {
        return false;
    }
    if req.headers.contains("if-none-match") {
        let stored_tag = stored.headers.get("etag").and_then(parse_etag);
        return req.headers.get_all("if-none-match").any(|field| {
            if field.trim() == "*" {
                return true;
            }
            let Some((_, stored_opaque)) = stored_tag else {
                return false;
            };
            etag_list(field).any(|(_, opaque)| opaque == stored_opaque)
        });
    }
    // §13.1.3: ignore If-Modified-Since unless it is one valid date.
    let mut ims = req.headers.get_all("if-modified-since");
    let (Some(ims), None) = (ims.next(), ims.next()) else {
        return false;
    };
    // RFC 9111 §4.3.2: without Last-Modified, the stored response's Date stands for it.
    let modified = header_date(&stored.headers, "last-modified")
        .or_else(|| header_date(&stored.headers, "date"));
    let (Some(since), Some(modified)) = (crate::http::date::parse(ims), modified) else {
        return false;
    };
    modified <= since
}

/// Parses one entity-tag (RFC 9110 §8.8.3) into (weak, opaque-tag including its quotes).
fn parse_etag(text: &str) -> Option<(bool, &str)> {
    let mut tags = etag_list(text);
    let tag = tags.next()?;
    tags.next().is_none().then_some(tag)
}

/// The entity-tags of an If-None-Match list. Tags may contain commas, so the list is scanned for quotes
/// rather than split; scanning stops at the first malformed element.
fn etag_list(text: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        let (weak, tagged) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let body = tagged.strip_prefix('"')?;
        let close = body.find('"')?;
        let opaque = &tagged[..close + 2];
        rest = &body[close + 1..];
        Some((weak, opaque))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::{req, resp};

    fn get(fields: &[(&str, &str)]) -> RequestHead {
        req("GET", fields)
    }

    const LM: &str = "Tue, 14 Nov 2023 22:00:00 GMT";

    #[test]
    fn validators_come_from_etag_and_valid_last_modified() {
        let stored = resp(200, &[("ETag", "W/\"v1\""), ("Last-Modified", LM)]);
        assert_eq!(
            validators(&stored),
            [
                ("If-None-Match", "W/\"v1\"".to_string()),
                ("If-Modified-Since", LM.to_string())
            ]
        );
        let bad = resp(200, &[("ETag", "unquoted"), ("Last-Modified", "yesterday")]);
        assert!(validators(&bad).is_empty());
    }

    #[test]
    fn a_304_replaces_fields_it_carries_and_keeps_the_rest() {
        let mut stored = resp(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Content-Length", "10"),
                ("Cache-Control", "max-age=1"),
                ("X-Multi", "a"),
                ("X-Multi", "b"),
                ("Age", "50"),
                ("ETag", "\"v1\""),
            ],
        );
        let not_modified = resp(
            304,
            &[
                ("Cache-Control", "max-age=600"),
                ("Content-Length", "0"),
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "x-hop"),
                ("X-Hop", "1"),
                ("X-Multi", "c"),
                ("X-New", "n1"),
                ("x-new", "n2"),
            ],
        );
        update_from_304(&mut stored, &not_modified);
        let h = &stored.headers;
        assert_eq!(stored.status, 200);
        assert_eq!(h.get("cache-control"), Some("max-age=600"));
        assert_eq!(h.get("content-length"), Some("10"));
        assert_eq!(h.get("content-type"), Some("text/plain"));
        assert_eq!(h.get("etag"), Some("\"v1\""));
        assert_eq!(h.get_all("x-multi").collect::<Vec<_>>(), ["c"]);
        assert_eq!(h.get_all("x-new").collect::<Vec<_>>(), ["n1", "n2"]);
        assert!(!h.contains("content-encoding") && !h.contains("transfer-encoding"));
        assert!(!h.contains("x-hop") && !h.contains("connection"));
        assert!(
            !h.contains("age"),
            "the old Age belongs to the old exchange"
        );
    }

    #[test]
    fn regression_a_304_never_merges_set_cookie() {
        let mut stored = resp(200, &[("ETag", "\"v1\"")]);
        let not_modified = resp(
            304,
            &[
                ("ETag", "\"v1\""),
                ("Set-Cookie", "session=SECRET"),
                ("Set-Cookie2", "old=style"),
            ],
        );
        update_from_304(&mut stored, &not_modified);
        assert!(!stored.headers.contains("set-cookie"));
        assert!(!stored.headers.contains("set-cookie2"));
    }

    #[test]
    fn freshen_dates_an_undated_update_and_takes_the_new_times() {
        use crate::cache::testutil::{at, date};
        let mut meta = ResponseMeta {
            head: resp(200, &[("Date", &date(-100)), ("ETag", "\"v1\"")]),
            request_time: at(-101),
            response_time: at(-100),
            vary_values: Vec::new(),
        };
        freshen(&mut meta, &resp(304, &[("ETag", "\"v1\"")]), at(-1), at(0));
        assert_eq!(meta.head.headers.get("date"), Some(date(0).as_str()));
        assert_eq!((meta.request_time, meta.response_time), (at(-1), at(0)));
        let dated = resp(304, &[("Date", &date(-5))]);
        freshen(&mut meta, &dated, at(-1), at(0));
        assert_eq!(
            meta.head.headers.get_all("date").collect::<Vec<_>>(),
            [date(-5)]
        );
    }

    #[test]
    fn a_304_age_replaces_the_stored_age() {
        let mut stored = resp(200, &[("Age", "50")]);
        update_from_304(&mut stored, &resp(304, &[("Age", "3")]));
        assert_eq!(stored.headers.get("age"), Some("3"));
    }

    #[test]
    fn if_none_match_uses_weak_comparison_over_lists() {
        let strong = resp(200, &[("ETag", "\"abc\"")]);
        let weak = resp(200, &[("ETag", "W/\"abc\"")]);
        for inm in [
            "\"abc\"",
            "W/\"abc\"",
            "\"x\", W/\"abc\"",
            "\"a,b\" , \"abc\"",
        ] {
            let r = get(&[("If-None-Match", inm)]);
            assert!(client_has_current(&r, &strong), "{inm} vs strong");
            assert!(client_has_current(&r, &weak), "{inm} vs weak");
        }
        let r = get(&[("If-None-Match", "\"abcd\", W/\"ab\"")]);
        assert!(!client_has_current(&r, &strong));
        let split = get(&[("If-None-Match", "\"x\""), ("If-None-Match", "\"abc\"")]);
        assert!(client_has_current(&split, &strong), "list across fields");
    }

    #[test]
    fn if_none_match_star_matches_any_stored_2xx_and_missing_etag_never_matches() {
        let plain = resp(200, &[]);
        assert!(client_has_current(&get(&[("If-None-Match", "*")]), &plain));
        assert!(!client_has_current(
            &get(&[("If-None-Match", "\"abc\"")]),
            &plain
        ));
        let not_found = resp(404, &[("ETag", "\"abc\"")]);
        assert!(!client_has_current(
            &get(&[("If-None-Match", "*")]),
            &not_found
        ));
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let stored = resp(200, &[("ETag", "\"v2\""), ("Last-Modified", LM)]);
        let r = get(&[
            ("If-None-Match", "\"v1\""),
            ("If-Modified-Since", "Wed, 15 Nov 2023 00:00:00 GMT"),
        ]);
        assert!(!client_has_current(&r, &stored));
    }

    #[test]
    fn if_modified_since_compares_with_valid_last_modified_only() {
        let stored = resp(200, &[("Last-Modified", LM)]);
        let at = |ims: &str| client_has_current(&get(&[("If-Modified-Since", ims)]), &stored);
        assert!(at(LM), "equal dates: not modified");
        assert!(at("Wed, 15 Nov 2023 00:00:00 GMT"));
        assert!(at("Wednesday, 15-Nov-23 00:00:00 GMT"), "RFC 850 date");
        assert!(!at("Tue, 14 Nov 2023 21:59:59 GMT"));
        assert!(!at("not a date"));
        assert!(
            at("TUESDAY, 14-NOV-23 22:00:00 GMT"),
            "wrong-case RFC 850 date"
        );
        assert!(at("Tue Nov 14 22:00:00 2023"), "asctime date");
        let no_modified = resp(200, &[]);
        assert!(!client_has_current(
            &get(&[("If-Modified-Since", LM)]),
            &no_modified
        ));
        let mut post = get(&[("If-Modified-Since", LM)]);
        post.method = "POST".into();
        assert!(!client_has_current(&post, &stored));
    }

    #[test]
    fn if_modified_since_without_last_modified_compares_with_date() {
        let stored = resp(200, &[("Date", LM)]);
        let at = |ims: &str| client_has_current(&get(&[("If-Modified-Since", ims)]), &stored);
        assert!(at(LM), "Date not after If-Modified-Since: not modified");
        assert!(at("Wed, 15 Nov 2023 00:00:00 GMT"));
        assert!(
            !at("Tue, 14 Nov 2023 21:59:59 GMT"),
            "Date after it: send the body"
        );
        let both = resp(
            200,
            &[
                ("Date", "Wed, 15 Nov 2023 00:00:00 GMT"),
                ("Last-Modified", LM),
            ],
        );
        assert!(
            client_has_current(&get(&[("If-Modified-Since", LM)]), &both),
            "Last-Modified wins over Date"
        );
    }
}
