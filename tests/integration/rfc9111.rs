//! What RFC 9111 asks beyond the basics, end to end: a HEAD updating the stored GET (§4.3.5), a 304
//! naming another representation (§4.3.4), Vary values normalised (§4.1), obsolete date formats
//! (RFC 9110 §5.6.7), If-Modified-Since without Last-Modified (§4.3.2), and a POST response that
//! answers later GETs (RFC 9110 §9.3.3). Every origin counts its requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::util::*;

fn cached_proxy(dir: &std::path::Path) -> Porter {
    Porter::start(&["proxy", "--cache-dir", dir.to_str().unwrap()])
}

fn head(proxy: std::net::SocketAddr, url: &str) -> Response {
    raw_request(
        proxy,
        format!("HEAD {url} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap()
}

/// An origin whose GETs must always be revalidated (max-age=0, an ETag) and whose HEAD answers
/// carry `head_etag`, a new `X-Version` and an hour of freshness.
fn head_origin(head_etag: &'static str) -> Origin {
    Origin::start(move |method, _, _| {
        if method == "HEAD" {
            let fields = [
                ("ETag", head_etag),
                ("Cache-Control", "max-age=3600"),
                ("X-Version", "2"),
                ("Content-Length", "4"),
            ];
            return (200, hdrs(&fields), b"body".to_vec());
        }
        let fields = [
            ("ETag", "\"v1\""),
            ("Cache-Control", "max-age=0"),
            ("X-Version", "1"),
        ];
        (200, hdrs(&fields), b"body".to_vec())
    })
}

#[test]
fn a_head_response_updates_the_stored_get_headers() {
    let origin = head_origin("\"v1\"");
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/h");
    assert_eq!(
        proxy_get(porter.addr, &url, &[]).header("x-version"),
        Some("1")
    );
    let h = head(porter.addr, &url);
    assert_eq!((h.status, h.header("x-version")), (200, Some("2")));
    // The stored GET now has the HEAD's fields, its freshness included: a hit with the new field.
    let again = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        (again.header("x-cache"), again.header("x-version")),
        (Some("HIT"), Some("2"))
    );
    assert_eq!(again.text(), "body");
    assert_eq!(origin.hits(), 2);
}

#[test]
fn a_head_response_for_another_representation_drops_the_stored_get() {
    let origin = head_origin("\"v2\"");
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/h");
    proxy_get(porter.addr, &url, &[]);
    assert_eq!(head(porter.addr, &url).header("etag"), Some("\"v2\""));
    let again = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        again.header("cache-status"),
        Some("porter; fwd=miss; stored")
    );
    assert_eq!(origin.hits(), 3);
}

#[test]
fn a_304_with_other_validators_does_not_update_and_the_cache_asks_again() {
    // The origin changed: conditional requests get a 304 naming v2, unconditional ones the new body.
    let origin = Origin::start(|_, _, headers| {
        let cc = ("Cache-Control", "max-age=0");
        if header_value(headers, "if-none-match").is_some() {
            return (304, hdrs(&[("ETag", "\"v2\""), cc]), Vec::new());
        }
        let first = header_value(headers, "x-first").is_some();
        let (tag, body) = if first {
            ("\"v1\"", "one")
        } else {
            ("\"v2\"", "two")
        };
        (200, hdrs(&[("ETag", tag), cc]), body.as_bytes().to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/changed");
    assert_eq!(
        proxy_get(porter.addr, &url, &[("X-First", "1")]).text(),
        "one"
    );
    let second = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        second.text(),
        "two",
        "not the old body under the new validator"
    );
    assert_eq!(second.header("etag"), Some("\"v2\""));
    assert_eq!(
        second.header("cache-status"),
        Some("porter; fwd=stale; stored")
    );
    assert_eq!(origin.hits(), 3);
}

#[test]
fn accept_language_values_that_ask_the_same_share_a_variant() {
    let origin = Origin::start(|_, _, headers| {
        let lang = header_value(headers, "accept-language").unwrap_or_default();
        let fields = [
            ("Vary", "Accept-Language"),
            ("Cache-Control", "max-age=300"),
        ];
        (200, hdrs(&fields), format!("lang={lang}").into_bytes())
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/v");
    let get = |lang: &str| proxy_get(porter.addr, &url, &[("Accept-Language", lang)]);
    assert_eq!(get("en, de").header("x-cache"), Some("MISS"));
    for same in ["DE, EN", "de,en", "en;q=1.0, de"] {
        let r = get(same);
        assert_eq!(
            (r.header("x-cache"), r.text().as_str()),
            (Some("HIT"), "lang=en, de"),
            "{same}"
        );
    }
    assert_eq!(
        get("en, de;q=0.5").header("x-cache"),
        Some("MISS"),
        "a preference is another variant"
    );
    assert_eq!(origin.hits(), 2);
}

/// `t` in the RFC 850 format (`Tuesday, 14-Nov-23 22:00:00 GMT`), names upper-cased.
fn rfc850_upper(t: SystemTime) -> String {
    let imf = httpdate::fmt_http_date(t); // "Tue, 14 Nov 2023 22:00:00 GMT"
    let day = match &imf[..3] {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    let (d, mon, year, time) = (&imf[5..7], &imf[8..11], &imf[14..16], &imf[17..25]);
    format!("{day}, {d}-{mon}-{year} {time} GMT").to_uppercase()
}

/// `t` in the asctime format (`Tue Nov 14 22:00:00 2023`).
fn asctime(t: SystemTime) -> String {
    let imf = httpdate::fmt_http_date(t);
    let day: u32 = imf[5..7].parse().unwrap();
    format!(
        "{} {} {day:>2} {} {}",
        &imf[..3],
        &imf[8..11],
        &imf[17..25],
        &imf[12..16]
    )
}

#[test]
fn expires_and_date_in_obsolete_formats_are_read_and_an_invalid_expires_is_expired() {
    let origin = Origin::start(|_, path, _| {
        let now = SystemTime::now();
        let mut fields = vec![("Date".to_string(), asctime(now))];
        if path == "/old-formats" {
            fields.push((
                "Expires".into(),
                rfc850_upper(now + Duration::from_secs(3600)),
            ));
        } else {
            fields.push(("Expires".into(), "0".into()));
            fields.push(("ETag".into(), "\"e\"".into()));
        }
        (200, fields, b"dated".to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/old-formats");
    proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        proxy_get(porter.addr, &url, &[]).header("x-cache"),
        Some("HIT")
    );
    let invalid = origin.url("/invalid-expires");
    let first = proxy_get(porter.addr, &invalid, &[]);
    assert_eq!(
        first.header("cache-status"),
        Some("porter; fwd=miss; stored")
    );
    let again = proxy_get(porter.addr, &invalid, &[]);
    assert_eq!(
        again.header("cache-status"),
        Some("porter; fwd=stale; stored"),
        "already expired"
    );
    assert_eq!(origin.hits(), 3);
}

#[test]
fn if_modified_since_is_answered_from_date_when_there_is_no_last_modified() {
    let date = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = Arc::clone(&date);
    let origin = Origin::start(move |_, _, _| {
        let now = httpdate::fmt_http_date(SystemTime::now());
        *seen.lock().unwrap() = now.clone();
        let fields = [("Cache-Control", "max-age=300"), ("Date", &now)];
        (200, hdrs(&fields), b"no last-modified".to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/ims");
    proxy_get(porter.addr, &url, &[]);
    let stored_date = date.lock().unwrap().clone();
    let same = proxy_get(porter.addr, &url, &[("If-Modified-Since", &stored_date)]);
    assert_eq!((same.status, same.header("x-cache")), (304, Some("HIT")));
    let earlier = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    let older = proxy_get(porter.addr, &url, &[("If-Modified-Since", &earlier)]);
    assert_eq!(
        (older.status, older.text().as_str()),
        (200, "no last-modified")
    );
    assert_eq!(origin.hits(), 1);
}

#[test]
fn a_post_response_with_freshness_and_its_own_content_location_serves_later_gets() {
    let posts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&posts);
    let origin = Origin::start(move |method, path, _| {
        if method == "POST" {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let location = if path == "/form" {
                "/form"
            } else {
                "/elsewhere"
            };
            let fields = [
                ("Cache-Control", "max-age=300"),
                ("Content-Location", location),
            ];
            return (200, hdrs(&fields), format!("posted {n}").into_bytes());
        }
        (
            200,
            hdrs(&[("Cache-Control", "max-age=300")]),
            b"from GET".to_vec(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let post = |path: &str| {
        let request = format!(
            "POST {} HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\na=b",
            origin.url(path)
        );
        raw_request(porter.addr, request.as_bytes()).unwrap()
    };
    assert_eq!(post("/form").text(), "posted 0");
    let get = proxy_get(porter.addr, &origin.url("/form"), &[]);
    assert_eq!(
        (get.header("x-cache"), get.text().as_str()),
        (Some("HIT"), "posted 0")
    );
    assert_eq!(post("/other").text(), "posted 1");
    let other = proxy_get(porter.addr, &origin.url("/other"), &[]);
    assert_eq!(
        (other.header("x-cache"), other.text().as_str()),
        (Some("MISS"), "from GET")
    );
    assert_eq!(origin.hits(), 3);
}
