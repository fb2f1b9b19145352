//! Ranges meeting revalidation and partial joins: regressions from the review of issue 14's range
//! work, each against an origin that records what it was asked.

use std::path::Path;
use std::sync::Arc;

use crate::cache::entry_files;
use crate::util::*;

/// Deterministic bytes.
fn content(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len as u64).map(|i| (i * 13 + i / 7) as u8).collect())
}

fn cached_proxy(dir: &Path, extra: &[&str]) -> Porter {
    let mut args = vec!["proxy", "--cache-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Porter::start(&args)
}

/// `Some((start, end))` for a `bytes=a-b` or `bytes=a-` field against `len` bytes.
fn single_range(field: &str, len: u64) -> Option<(u64, u64)> {
    let (first, last) = field.strip_prefix("bytes=")?.split_once('-')?;
    let start = first.parse::<u64>().ok().filter(|s| *s < len)?;
    let end = last.parse::<u64>().map_or(len - 1, |e| e.min(len - 1));
    (start <= end).then_some((start, end))
}

/// Review defect 1. A stale stored `206 bytes 0-99/1000` with ETag "v1"; the client asks
/// `bytes=0-9` with `If-Range: "v1"`, which the entry answers; the revalidation's 304 says
/// `ETag: W/"v1"`, so once applied the If-Range no longer holds and the entry does not have the whole.
/// That used to end in `416 bytes */1000` for a range the entry holds (and wget -c then took the file
/// for complete); it is a miss now, asked of the origin.
#[test]
fn a_304_that_weakens_a_partial_entrys_etag_goes_to_the_origin_instead_of_a_416() {
    let body = content(1000);
    let served = Arc::clone(&body);
    let origin = Origin::start(move |_, _, headers| {
        if header_value(headers, "if-none-match").is_some() {
            return (
                304,
                hdrs(&[("ETag", "W/\"v1\""), ("Cache-Control", "max-age=0")]),
                vec![],
            );
        }
        let range = header_value(headers, "range").and_then(|r| single_range(&r, 1000));
        // The origin's representation now has a weak tag: If-Range "v1" never holds there.
        match range {
            Some((s, e)) if header_value(headers, "if-range").is_none() => {
                let mut fields = hdrs(&[("ETag", "\"v1\""), ("Cache-Control", "max-age=0")]);
                fields.push(("Content-Range".into(), format!("bytes {s}-{e}/1000")));
                (206, fields, served[s as usize..=e as usize].to_vec())
            }
            _ => (200, hdrs(&[("ETag", "W/\"v1\"")]), served.to_vec()),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path(), &[]);
    let url = origin.url("/part.bin");
    let first = proxy_get(porter.addr, &url, &[("Range", "bytes=0-99")]);
    assert_eq!(
        (first.status, first.header("cache-status")),
        (206, Some("porter; fwd=miss; stored"))
    );
    let r = proxy_get(
        porter.addr,
        &url,
        &[("Range", "bytes=0-9"), ("If-Range", "\"v1\"")],
    );
    assert_ne!(
        r.status, 416,
        "a range the entry holds is never unsatisfiable"
    );
    assert_eq!(
        r.status, 200,
        "the origin's answer to the client's If-Range"
    );
    assert_eq!(r.body, *body);
    let requests = origin.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "part, revalidation, then the miss");
    assert!(
        requests[1].contains("If-None-Match: \"v1\""),
        "{}",
        requests[1]
    );
    assert!(requests[2].contains("If-Range: \"v1\""), "{}", requests[2]);
}

/// Review defect 2. An entry a `--refresh` rule stored has no validators; revalidating it used to
/// forward the client's Range and conditionals, so the origin's 206 replaced the complete stored
/// 200, and a 304 to the client's own If-Modified-Since refreshed an entry nobody had confirmed.
#[test]
fn revalidating_an_entry_without_validators_never_forwards_the_clients_range_or_conditionals() {
    let body = content(5000);
    let served = Arc::clone(&body);
    // An origin with no freshness and no validators that honours whatever it is sent.
    let origin = Origin::start(move |_, _, headers| {
        let fields = hdrs(&[("Content-Type", "application/octet-stream")]);
        if header_value(headers, "if-modified-since").is_some()
            || header_value(headers, "if-none-match").is_some()
        {
            return (304, vec![], vec![]);
        }
        match header_value(headers, "range").and_then(|r| single_range(&r, 5000)) {
            Some((s, e)) => {
                let mut fields = fields;
                fields.push(("Content-Range".into(), format!("bytes {s}-{e}/5000")));
                (206, fields, served[s as usize..=e as usize].to_vec())
            }
            None => (200, fields, served.to_vec()),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path(), &["--refresh", r"\.deb$=1h"]);
    let url = origin.url("/pool/p.deb");
    let first = proxy_get(porter.addr, &url, &[]);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    let never_seen = "Mon, 01 Jan 2024 00:00:00 GMT";
    for conditionals in [
        &[("Range", "bytes=0-99"), ("If-Range", never_seen)][..],
        &[("If-Modified-Since", never_seen)][..],
        &[("If-None-Match", "\"client-copy\"")][..],
    ] {
        let mut fields = vec![("Cache-Control", "max-age=0")];
        fields.extend_from_slice(conditionals);
        let r = proxy_get(porter.addr, &url, &fields);
        assert_eq!(r.status, 200, "{conditionals:?}");
        assert_eq!(r.body, *body, "{conditionals:?}");
        let requests = origin.requests.lock().unwrap().clone();
        let asked = requests.last().unwrap().to_ascii_lowercase();
        for name in [
            "range:",
            "if-range:",
            "if-modified-since:",
            "if-none-match:",
        ] {
            assert!(!asked.contains(name), "{name} was forwarded: {asked}");
        }
    }
    // The complete 200 is still the entry: a plain GET and a range are both hits.
    let whole = proxy_get(porter.addr, &url, &[]);
    assert_eq!((whole.status, whole.header("x-cache")), (200, Some("HIT")));
    assert_eq!(whole.body, *body);
    let part = proxy_get(porter.addr, &url, &[("Range", "bytes=4000-4099")]);
    assert_eq!((part.status, part.header("x-cache")), (206, Some("HIT")));
    assert_eq!(part.body, body[4000..4100]);
    assert_eq!(origin.hits(), 4);
}

/// Review defect 3. `bytes=-5` is satisfiable by RFC 9110 §14.1.1 even for an empty representation,
/// but no 206 can be formed of it: the cached empty body is sent whole (200), not a 416.
#[test]
fn a_suffix_range_of_a_cached_empty_body_is_a_200_not_a_416() {
    let origin = Origin::start(|_, _, _| (200, hdrs(&[("Cache-Control", "max-age=3600")]), vec![]));
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path(), &[]);
    let url = origin.url("/empty");
    assert_eq!(proxy_get(porter.addr, &url, &[]).status, 200);
    let r = proxy_get(porter.addr, &url, &[("Range", "bytes=-5")]);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.header("content-range").is_none());
    let unsatisfiable = proxy_get(porter.addr, &url, &[("Range", "bytes=0-")]);
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(origin.hits(), 1);
}

/// Review defect 4. Joining a new part with the older one it replaced checked the older file's body
/// and, when that failed, removed the entry by key, which by then named the newer part just stored.
/// A damaged older part is now only left out of the join.
#[test]
fn a_damaged_older_part_is_left_out_of_the_join_without_removing_the_newer_part() {
    let body = content(3000);
    let served = Arc::clone(&body);
    let origin = Origin::start(move |_, _, headers| {
        let (s, e) = header_value(headers, "range")
            .and_then(|r| single_range(&r, 3000))
            .unwrap_or((0, 2999));
        let mut fields = hdrs(&[("Cache-Control", "max-age=3600"), ("ETag", "\"v1\"")]);
        fields.push(("Content-Range".into(), format!("bytes {s}-{e}/3000")));
        (206, fields, served[s as usize..=e as usize].to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let url = origin.url("/joined.bin");
    {
        let porter = cached_proxy(dir.path(), &[]);
        let first = proxy_get(porter.addr, &url, &[("Range", "bytes=0-999")]);
        assert_eq!(
            first.header("cache-status"),
            Some("porter; fwd=miss; stored")
        );
    }
    // Damage the stored part's body; the next proxy has never verified it.
    let files = entry_files(dir.path());
    assert_eq!(files.len(), 1);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    std::fs::write(&files[0], bytes).unwrap();

    let porter = cached_proxy(dir.path(), &[]);
    let second = proxy_get(porter.addr, &url, &[("Range", "bytes=1000-1999")]);
    assert_eq!(
        (second.status, second.header("x-cache")),
        (206, Some("MISS"))
    );
    assert_eq!(second.body, body[1000..2000]);
    // The newer part is still stored, and alone: its bytes are a hit, the damaged ones a miss.
    let inside = proxy_get(porter.addr, &url, &[("Range", "bytes=1500-1599")]);
    assert_eq!(
        (inside.status, inside.header("x-cache")),
        (206, Some("HIT"))
    );
    assert_eq!(inside.body, body[1500..1600]);
    assert_eq!(origin.hits(), 2);
    let damaged = proxy_get(porter.addr, &url, &[("Range", "bytes=0-99")]);
    assert_eq!(damaged.header("x-cache"), Some("MISS"));
    assert_eq!(damaged.body, body[..100]);
}
