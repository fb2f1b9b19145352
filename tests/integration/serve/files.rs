//! Files: types, lengths, validators, 304, 206/416, 403/404/405, folders, and traversal attempts.

use super::*;

#[test]
fn serves_files_with_types_lengths_and_validators() {
    let site = Site::new();
    let porter = site.serve(&[]);
    for (path, content_type, body) in [
        (
            "/index.html",
            "text/html; charset=utf-8",
            &b"<!DOCTYPE html><title>Home</title><p>home page</p>\n"[..],
        ),
        ("/hello.txt", "text/plain; charset=utf-8", b"hello, world\n"),
        ("/image.png", "image/png", PNG),
        ("/alias.txt", "text/plain; charset=utf-8", b"hello, world\n"),
    ] {
        let response = get(porter.addr, path, &[]);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(response.body, body, "{path}");
        let length = body.len().to_string();
        assert_eq!(response.header("content-length"), Some(length.as_str()));
        assert!(response.header("etag").is_some_and(|e| e.starts_with('"')));
        assert!(
            response
                .header("last-modified")
                .is_some_and(|d| d.ends_with("GMT"))
        );
        let head = request(porter.addr, "HEAD", path, &[]).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-length"), Some(length.as_str()));
        assert_eq!(head.header("etag"), response.header("etag"));
        assert!(head.body.is_empty());
    }
}

#[test]
fn conditional_requests_answer_304() {
    let site = Site::new();
    let porter = site.serve(&[]);
    let first = get(porter.addr, "/hello.txt", &[]);
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    let by_etag = get(porter.addr, "/hello.txt", &[("If-None-Match", &etag)]);
    assert_eq!(by_etag.status, 304);
    assert_eq!(by_etag.header("etag"), Some(etag.as_str()));
    assert!(by_etag.body.is_empty());
    let by_date = get(
        porter.addr,
        "/hello.txt",
        &[("If-Modified-Since", &modified)],
    );
    assert_eq!(by_date.status, 304);
    let changed = get(porter.addr, "/hello.txt", &[("If-None-Match", "\"other\"")]);
    assert_eq!(changed.status, 200);
    let failed = get(porter.addr, "/hello.txt", &[("If-Match", "\"other\"")]);
    assert_eq!(failed.status, 412);
}

#[test]
fn byte_ranges_answer_206_and_416() {
    let site = Site::new();
    let porter = site.serve(&[]);
    let part = get(porter.addr, "/hello.txt", &[("Range", "bytes=0-4")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"hello");
    assert_eq!(part.header("content-range"), Some("bytes 0-4/13"));
    let tail = get(porter.addr, "/hello.txt", &[("Range", "bytes=-6")]);
    assert_eq!((tail.status, tail.text()), (206, "world\n".to_string()));
    let open = get(porter.addr, "/image.png", &[("Range", "bytes=8-")]);
    assert_eq!((open.status, &open.body[..]), (206, &PNG[8..]));
    let beyond = get(porter.addr, "/hello.txt", &[("Range", "bytes=100-")]);
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some("bytes */13"));
    // Several ranges, or an If-Range that no longer matches: the whole file.
    let several = get(porter.addr, "/hello.txt", &[("Range", "bytes=0-1,3-4")]);
    assert_eq!((several.status, several.body.len()), (200, 13));
    let stale = get(
        porter.addr,
        "/hello.txt",
        &[("Range", "bytes=0-4"), ("If-Range", "\"old\"")],
    );
    assert_eq!(stale.status, 200);
}

#[test]
fn missing_unreadable_and_wrong_method() {
    let site = Site::new();
    let porter = site.serve(&[]);
    assert_eq!(get(porter.addr, "/nope.txt", &[]).status, 404);
    let private = get(porter.addr, "/private.txt", &[]);
    assert_eq!(private.status, 403);
    assert!(!private.text().contains("private\n"));
    // A folder that others cannot read has no listing; its readable files are still served.
    assert_eq!(get(porter.addr, "/closed/", &[]).status, 403);
    assert_eq!(get(porter.addr, "/closed/open.txt", &[]).text(), "open\n");
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let response = request(porter.addr, method, "/hello.txt", &[]).unwrap();
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"));
    }
    // A request body this server does not read means the connection cannot be reused.
    let raw = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc";
    let response = raw_request(porter.addr, raw).unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("connection"), Some("close"));
    let bad = raw_request(porter.addr, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n").unwrap();
    assert_eq!(bad.status, 400);
}

#[test]
fn directories_serve_their_index_or_a_listing() {
    let site = Site::new();
    let porter = site.serve(&[]);
    let root = get(porter.addr, "/", &[]);
    assert_eq!(root.status, 200);
    assert!(root.text().contains("home page"));
    let sub = get(porter.addr, "/sub/", &[]);
    assert!(sub.text().contains("sub index"));
    let redirect = get(porter.addr, "/sub", &[]);
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/sub/"));
    let listing = get(porter.addr, "/list/", &[]);
    assert_eq!(listing.status, 200);
    assert_eq!(
        listing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = listing.text();
    assert!(html.contains("<a href=\"a.txt\">a.txt</a>"), "{html}");
    assert!(html.contains("<a href=\"folder/\">folder/</a>"), "{html}");
    assert!(
        html.contains("with%20space%20%26%20%3Cb%3E.txt\">with space &amp; &lt;b&gt;.txt"),
        "{html}"
    );
    let odd = get(porter.addr, "/list/with%20space%20%26%20%3Cb%3E.txt", &[]);
    assert_eq!(odd.text(), "odd name\n");
}

#[test]
fn traversal_attempts_never_leave_the_root() {
    let site = Site::new();
    let porter = site.serve(&[]);
    for target in [
        "/../outside/secret.txt",
        "/sub/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E%2Foutside%2Fsecret.txt",
        "/..%2Foutside%2Fsecret.txt",
        "/.%2e/.%2e/outside/secret.txt",
        "/hello.txt%00.png",
        "/%00",
        "/leak.txt",
        "/out/secret.txt",
        "/out/",
        "http://test/../outside/secret.txt",
    ] {
        let response = get(porter.addr, target, &[]);
        assert!(
            [400, 403, 404].contains(&response.status),
            "{target}: {}",
            response.status
        );
        assert!(!response.text().contains(SECRET), "{target} leaked");
    }
    assert_eq!(get(porter.addr, "/leak.txt", &[]).status, 403);
    assert_eq!(
        get(porter.addr, "/%2e%2e/outside/secret.txt", &[]).status,
        400
    );
    assert_eq!(get(porter.addr, "/a%00b", &[]).status, 400);
    // Dot segments that stay inside are fine.
    let inside = get(porter.addr, "/sub/%2e%2e/hello.txt", &[]);
    assert_eq!(
        (inside.status, inside.text()),
        (200, "hello, world\n".into())
    );
}
