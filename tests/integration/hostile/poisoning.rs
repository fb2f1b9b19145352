//! Cache poisoning found in the second attack (issue 12): one client's data served to another.
//! Every origin here counts its requests and changes its answer between them, so a response that
//! came from the cache instead of the origin (or from the wrong stored entry) shows in the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::util::*;

fn cached_proxy(dir: &tempfile::TempDir) -> Porter {
    Porter::start(&[
        "proxy",
        "--cache-dir",
        dir.path().to_str().unwrap(),
        "--memory-cache-size",
        "1MiB",
    ])
}

/// An origin answering `page N` with `Set-Cookie: session=SECRETN` for its Nth request.
fn cookie_origin(cache_control: &'static str) -> Origin {
    let count = Arc::new(AtomicUsize::new(0));
    Origin::start(move |_, _, _| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let cookie = format!("session=SECRET{n}");
        (
            200,
            hdrs(&[("Cache-Control", cache_control), ("Set-Cookie", &cookie)]),
            format!("page {n}").into_bytes(),
        )
    })
}

#[test]
fn regression_a_stored_set_cookie_is_never_served_to_another_client() {
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(&dir);
    // Not explicitly shareable: never stored, so every client gets its own cookie from the origin.
    let private = cookie_origin("max-age=600");
    let alice = proxy_get(porter.addr, &private.url("/"), &[]);
    assert_eq!(alice.header("set-cookie"), Some("session=SECRET1"));
    for n in 2..=3 {
        let bob = proxy_get(porter.addr, &private.url("/"), &[]);
        assert_eq!(bob.text(), format!("page {n}"), "served from the cache");
        assert_eq!(
            bob.header("set-cookie"),
            Some(format!("session=SECRET{n}").as_str())
        );
        assert_eq!(bob.header("x-cache"), Some("MISS"));
    }
    // Explicitly shareable: stored and reused, but never with the cookie.
    for cache_control in [
        "public, max-age=600",
        "s-maxage=600",
        "max-age=600, no-cache=\"Set-Cookie\"",
    ] {
        let origin = cookie_origin(cache_control);
        let alice = proxy_get(porter.addr, &origin.url("/shared"), &[]);
        assert_eq!(
            alice.header("set-cookie"),
            Some("session=SECRET1"),
            "{cache_control}: the client that caused the fetch gets its cookie"
        );
        for _ in 0..2 {
            let bob = proxy_get(porter.addr, &origin.url("/shared"), &[]);
            assert_eq!(bob.header("x-cache"), Some("HIT"), "{cache_control}");
            assert_eq!(bob.text(), "page 1", "{cache_control}");
            assert_eq!(
                bob.header("set-cookie"),
                None,
                "{cache_control}: alice's session went to bob"
            );
        }
        assert_eq!(origin.hits(), 1, "{cache_control}");
    }
}

#[test]
fn regression_set_cookie_from_a_304_is_never_merged_into_the_stored_head() {
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(&dir);
    let count = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start(move |_, _, headers| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        match header_value(headers, "if-none-match") {
            Some(tag) if tag == "\"v1\"" => {
                let cookie = format!("session=SECRET{n}");
                (
                    304,
                    hdrs(&[
                        ("ETag", "\"v1\""),
                        ("Cache-Control", "public, max-age=600"),
                        ("Set-Cookie", &cookie),
                    ]),
                    vec![],
                )
            }
            _ => (
                200,
                hdrs(&[("ETag", "\"v1\""), ("Cache-Control", "public, max-age=0")]),
                b"v1 body".to_vec(),
            ),
        }
    });
    let url = origin.url("/r");
    assert_eq!(proxy_get(porter.addr, &url, &[]).text(), "v1 body");
    // Stale at once: this one revalidates, and the origin's 304 sets a cookie.
    let revalidated = proxy_get(porter.addr, &url, &[]);
    assert_eq!(revalidated.text(), "v1 body");
    assert!(
        revalidated
            .header("cache-status")
            .is_some_and(|s| s.contains("fwd-status=304")),
        "{:?}",
        revalidated.headers
    );
    assert_eq!(origin.hits(), 2);
    // Now fresh for 600 s: the others get hits, and none of them that cookie.
    for _ in 0..3 {
        let other = proxy_get(porter.addr, &url, &[]);
        assert_eq!(
            (other.text(), other.header("x-cache")),
            ("v1 body".into(), Some("HIT"))
        );
        assert_eq!(
            other.header("set-cookie"),
            None,
            "a 304's cookie was merged into the stored head"
        );
    }
    assert_eq!(origin.hits(), 2);
}

/// The attack's origin: first `OLD v1` (stale on arrival, with `old_etag` if given), from then on
/// `NEW v2` with `ETag: "new"`, and a 304 to a request holding `"new"`.
fn changing_origin(old_etag: Option<&'static str>) -> Origin {
    let count = Arc::new(AtomicUsize::new(0));
    Origin::start(move |_, _, headers| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            let mut fields = hdrs(&[("Cache-Control", "max-age=2"), ("Age", "10")]);
            if let Some(tag) = old_etag {
                fields.push(("ETag".into(), tag.into()));
            }
            return (200, fields, b"OLD v1".to_vec());
        }
        let fresh = hdrs(&[("ETag", "\"new\""), ("Cache-Control", "max-age=600")]);
        match header_value(headers, "if-none-match") {
            Some(tag) if tag.contains("\"new\"") => (304, fresh, vec![]),
            _ => (200, fresh, b"NEW v2".to_vec()),
        }
    })
}

#[test]
fn regression_revalidation_uses_the_entrys_own_validators_not_the_clients() {
    for old_etag in [None, Some("\"old\"")] {
        let dir = tempfile::tempdir().unwrap();
        let porter = cached_proxy(&dir);
        let origin = changing_origin(old_etag);
        let url = origin.url("/doc");
        assert_eq!(proxy_get(porter.addr, &url, &[]).text(), "OLD v1");
        // A browser that holds the new version asks; the stored entry is stale.
        let browser = proxy_get(porter.addr, &url, &[("If-None-Match", "\"new\"")]);
        assert!(
            browser.status == 304 || browser.text() == "NEW v2",
            "{old_etag:?}: the browser got {} {:?}",
            browser.status,
            browser.text()
        );
        // Everyone else must get the new version, never the old body under the new validator.
        for _ in 0..2 {
            let other = proxy_get(porter.addr, &url, &[]);
            assert_eq!(
                (other.status, other.text(), other.header("etag")),
                (200, "NEW v2".to_string(), Some("\"new\"")),
                "{old_etag:?}: the old entry was refreshed by the client's validator"
            );
        }
    }
}

#[test]
fn regression_a_304_for_another_validator_refreshes_nothing() {
    // A confused origin answers any conditional with a 304 for its current version "b", though the
    // cache asked about "a" (RFC 9111 §4.3.4: a 304 updates only the stored response it matches).
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(&dir);
    let count = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start(move |_, _, headers| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            let old = hdrs(&[("ETag", "\"a\""), ("Cache-Control", "max-age=0")]);
            return (200, old, b"version a".to_vec());
        }
        let current = hdrs(&[("ETag", "\"b\""), ("Cache-Control", "max-age=600")]);
        if header_value(headers, "if-none-match").is_some() {
            (304, current, vec![])
        } else {
            (200, current, b"version b".to_vec())
        }
    });
    let url = origin.url("/x");
    assert_eq!(proxy_get(porter.addr, &url, &[]).text(), "version a");
    let next = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        (next.text(), next.header("etag")),
        ("version b".to_string(), Some("\"b\"")),
        "version a was served as \"b\""
    );
    let after = proxy_get(porter.addr, &url, &[]);
    assert_eq!(
        (after.text(), after.header("x-cache")),
        ("version b".into(), Some("HIT"))
    );
}

#[test]
fn regression_connection_named_accept_language_cannot_poison_the_fr_variant() {
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(&dir);
    let count = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start(move |_, _, headers| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let lang = header_value(headers, "accept-language").unwrap_or_else(|| "none".into());
        (
            200,
            hdrs(&[
                ("Vary", "Accept-Language"),
                ("Cache-Control", "max-age=600"),
            ]),
            format!("lang={lang} #{n}").into_bytes(),
        )
    });
    let url = origin.url("/v");
    // The attacker's Accept-Language is hop-by-hop by its own Connection header: not forwarded.
    let attacker = proxy_get(
        porter.addr,
        &url,
        &[("Accept-Language", "fr"), ("Connection", "Accept-Language")],
    );
    assert_eq!(attacker.text(), "lang=none #1");
    let victim = proxy_get(porter.addr, &url, &[("Accept-Language", "fr")]);
    assert_eq!(victim.text(), "lang=fr #2", "the fr variant was poisoned");
    let again = proxy_get(porter.addr, &url, &[("Accept-Language", "fr")]);
    assert_eq!(
        (again.text(), again.header("x-cache")),
        ("lang=fr #2".into(), Some("HIT"))
    );
    // What the attacker got is the variant for no Accept-Language, which is what it is.
    let none = proxy_get(porter.addr, &url, &[]);
    assert_eq!(none.text(), "lang=none #1");
    let attacker_again = proxy_get(
        porter.addr,
        &url,
        &[("Accept-Language", "fr"), ("Connection", "Accept-Language")],
    );
    assert_eq!(attacker_again.text(), "lang=none #1");
    assert_eq!(origin.hits(), 2);
}

#[test]
fn regression_a_set_cookie_in_an_entry_written_by_an_older_porter_is_never_served() {
    use porter::cache::entry::{ResponseMeta, Stored};
    use porter::cache::key::Key;
    use porter::cache::store::Store;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, _, _| (200, vec![], b"from the origin".to_vec()));
    let url = origin.url("/old");
    // What an older Porter stored: the head as it came, cookie included, fresh for an hour.
    {
        let store = Store::open(dir.path(), 1 << 30).unwrap();
        let mut head = porter::http::ResponseHead::new(200);
        head.headers.append("Cache-Control", "max-age=3600");
        head.headers.append("Set-Cookie", "session=SECRET1");
        let now = std::time::SystemTime::now();
        head.headers.append("Date", httpdate::fmt_http_date(now));
        let meta = ResponseMeta {
            head,
            request_time: now,
            response_time: now,
            vary_values: Vec::new(),
        };
        let mut writer = store
            .writer(Key::for_url(&url), &url, &Stored::Response(meta), 1 << 20)
            .unwrap();
        writer.write_all(b"stored body").unwrap();
        writer.commit().unwrap();
    }
    let porter = cached_proxy(&dir);
    for _ in 0..2 {
        let response = proxy_get(porter.addr, &url, &[]);
        assert_eq!(
            (response.text(), response.header("x-cache")),
            ("stored body".into(), Some("HIT"))
        );
        assert_eq!(
            response.header("set-cookie"),
            None,
            "a stored cookie was served"
        );
    }
    assert_eq!(origin.hits(), 0);
}
