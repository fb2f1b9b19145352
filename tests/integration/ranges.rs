//! Byte ranges through the caching proxy (RFC 9110 §14): from whole entries (memory and file), from
//! partial entries stored from a 206, and resumes by curl and wget, against origins that count.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use crate::util::*;

const LAST_MODIFIED: &str = "Tue, 14 Nov 2023 22:00:00 GMT";
/// A date that is not the Last-Modified, for an If-Range that must fail.
const OTHER_DATE: &str = "Wed, 15 Nov 2023 08:00:00 GMT";

/// Deterministic, non-repeating-looking bytes.
fn content(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len as u64).map(|i| (i * 7 + i / 251) as u8).collect())
}

/// An origin serving `body` at every path with validators and an hour of freshness; it answers a
/// single `bytes=` range with a 206 as a file server would, and counts its requests.
fn ranged_origin(body: Arc<Vec<u8>>) -> Origin {
    Origin::start(move |_, _, headers| {
        let mut fields = hdrs(&[
            ("Content-Type", "application/octet-stream"),
            ("Cache-Control", "max-age=3600"),
            ("ETag", "\"v1\""),
            ("Last-Modified", LAST_MODIFIED),
            ("Accept-Ranges", "bytes"),
        ]);
        fields.push((
            "Date".into(),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        ));
        let len = body.len() as u64;
        let range = header_value(headers, "range").and_then(|r| single_range(&r, len));
        match range {
            Some((start, end)) => {
                fields.push(("Content-Range".into(), format!("bytes {start}-{end}/{len}")));
                (206, fields, body[start as usize..=end as usize].to_vec())
            }
            None => (200, fields, body.to_vec()),
        }
    })
}

fn single_range(field: &str, len: u64) -> Option<(u64, u64)> {
    let (first, last) = field.strip_prefix("bytes=")?.split_once('-')?;
    match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e && s < len => Some((s, e.min(len - 1))),
        (Some(s), None) if s < len => Some((s, len - 1)),
        (None, Some(n)) if n > 0 => Some((len.saturating_sub(n), len - 1)),
        _ => None,
    }
}

fn cached_proxy(dir: &Path) -> Porter {
    Porter::start(&["proxy", "--cache-dir", dir.to_str().unwrap()])
}

/// The parts of a multipart/byteranges body: (Content-Range, bytes).
fn multipart_parts(response: &Response) -> Vec<(String, Vec<u8>)> {
    let content_type = response.header("content-type").unwrap();
    let boundary = content_type.split("boundary=").nth(1).unwrap();
    let delimiter = format!("--{boundary}");
    let body = &response.body;
    let mut parts = Vec::new();
    let mut rest = &body[..];
    loop {
        let at = find(rest, delimiter.as_bytes()).expect("a delimiter");
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            return parts;
        }
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        let (span, _) = range["bytes ".len()..].split_once('/').unwrap();
        let (s, e) = span.split_once('-').unwrap();
        let n = e.parse::<usize>().unwrap() - s.parse::<usize>().unwrap() + 1;
        let data = rest[head_end + 4..head_end + 4 + n].to_vec();
        parts.push((range, data));
        rest = &rest[head_end + 4 + n..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every kind of range on a hit, for a body of `len` bytes (small ones are served from memory, large
/// ones from the entry file with sendfile).
fn every_kind_of_range_on_a_hit(len: usize) {
    let body = content(len);
    let origin = ranged_origin(Arc::clone(&body));
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/file.bin");
    let first = proxy_get(porter.addr, &url, &[]);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    assert_eq!(first.body, *body);
    let get = |fields: &[(&str, &str)]| proxy_get(porter.addr, &url, fields);
    let total = format!("/{len}");

    let r = get(&[("Range", "bytes=0-99")]);
    assert_eq!((r.status, r.header("x-cache")), (206, Some("HIT")));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99{total}").as_str())
    );
    assert_eq!(r.body, body[..100]);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));

    let r = get(&[("Range", "bytes=100-")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range").unwrap(),
        format!("bytes 100-{}{total}", len - 1)
    );
    assert_eq!(r.body, body[100..]);

    let r = get(&[("Range", "bytes=-500")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, body[len - 500..]);

    let r = get(&[("Range", "bytes=0-9, 200-299, -10")]);
    assert_eq!(r.status, 206);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("multipart/byteranges; boundary=")
    );
    let parts = multipart_parts(&r);
    let expected = [(0, 9), (200, 299), (len - 10, len - 1)];
    assert_eq!(parts.len(), 3);
    for ((range, data), (s, e)) in parts.iter().zip(expected) {
        assert_eq!(*range, format!("bytes {s}-{e}{total}"));
        assert_eq!(*data, body[s..=e]);
    }

    let r = get(&[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert!(r.body.is_empty());

    // If-Range: the stored ETag or Last-Modified (strong: long before Date) gets the range, else 200.
    for (condition, status) in [
        ("\"v1\"", 206),
        ("\"v0\"", 200),
        ("W/\"v1\"", 200),
        (LAST_MODIFIED, 206),
        (OTHER_DATE, 200),
    ] {
        let r = get(&[("Range", "bytes=0-99"), ("If-Range", condition)]);
        assert_eq!(r.status, status, "If-Range: {condition}");
        assert_eq!(
            r.body.len(),
            if status == 206 { 100 } else { len },
            "{condition}"
        );
    }
    // HEAD ignores Range.
    let head = raw_request(
        porter.addr,
        format!("HEAD {url} HTTP/1.1\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(origin.hits(), 1, "every range came from the cache");
}

#[test]
fn every_kind_of_range_is_served_from_a_cached_body_in_memory() {
    every_kind_of_range_on_a_hit(10_000);
}

#[test]
fn every_kind_of_range_is_served_from_a_cached_file_with_sendfile() {
    every_kind_of_range_on_a_hit(3 << 20);
}

#[test]
fn ranges_on_a_keep_alive_connection_leave_it_usable() {
    let body = content(5000);
    let origin = ranged_origin(Arc::clone(&body));
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/k");
    proxy_get(porter.addr, &url, &[]);
    let mut stream = connect(porter.addr);
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    for range in ["bytes=0-0,10-19", "bytes=9000-", "bytes=-1"] {
        let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\nRange: {range}\r\n\r\n");
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
        let r = read_response(&mut reader, false).unwrap();
        assert!(matches!(r.status, 206 | 416), "{range}: {}", r.status);
    }
    let last = read_after(&mut stream, &mut reader, &url);
    assert_eq!(last.body, *body);
}

fn read_after(
    stream: &mut std::net::TcpStream,
    reader: &mut std::io::BufReader<std::net::TcpStream>,
    url: &str,
) -> Response {
    let request = format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n");
    std::io::Write::write_all(stream, request.as_bytes()).unwrap();
    read_response(reader, false).unwrap()
}

#[test]
fn a_range_miss_is_forwarded_and_its_206_answers_later_ranges_inside_it() {
    let body = content(100_000);
    let origin = ranged_origin(Arc::clone(&body));
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/partial");
    let get = |range: Option<&str>| match range {
        Some(r) => proxy_get(porter.addr, &url, &[("Range", r)]),
        None => proxy_get(porter.addr, &url, &[]),
    };
    let first = get(Some("bytes=1000-1999"));
    assert_eq!((first.status, first.header("x-cache")), (206, Some("MISS")));
    assert_eq!(
        first.header("cache-status"),
        Some("porter; fwd=miss; stored")
    );
    assert!(origin.requests.lock().unwrap()[0].contains("bytes=1000-1999"));
    assert_eq!(first.body, body[1000..2000]);

    let inside = get(Some("bytes=1500-1599"));
    assert_eq!(
        (inside.status, inside.header("x-cache")),
        (206, Some("HIT"))
    );
    assert_eq!(
        inside.header("content-range"),
        Some("bytes 1500-1599/100000")
    );
    assert_eq!(inside.body, body[1500..1600]);
    let two = get(Some("bytes=1000-1009,1990-1999"));
    assert_eq!(two.header("x-cache"), Some("HIT"));
    assert_eq!(multipart_parts(&two)[1].1, body[1990..2000]);
    assert_eq!(origin.hits(), 1);

    let outside = get(Some("bytes=5000-5099"));
    assert_eq!(
        (outside.status, outside.header("x-cache")),
        (206, Some("MISS"))
    );
    assert_eq!(outside.body, body[5000..5100]);
    assert_eq!(origin.hits(), 2);
    let whole = get(None);
    assert_eq!(
        (whole.status, whole.header("x-cache")),
        (200, Some("MISS")),
        "a partial entry is no answer to a plain GET"
    );
    assert_eq!(whole.body, *body);
    assert_eq!(origin.hits(), 3);
    // The complete 200 replaced the partial entry: any range is a hit now.
    for range in ["bytes=0-9", "bytes=1000-1999", "bytes=99000-"] {
        let r = get(Some(range));
        assert_eq!(
            (r.status, r.header("x-cache")),
            (206, Some("HIT")),
            "{range}"
        );
    }
    assert_eq!(get(None).header("x-cache"), Some("HIT"));
    assert_eq!(origin.hits(), 3);
}

/// Whether curl or wget (Debian packages of the same names) is installed: see `util::require_tool`.
fn tool(name: &str) -> bool {
    require_tool(&[name], name).is_some()
}

/// A cached file, a download cut short by half, and a resume through the proxy by `resume`.
fn resume_through_the_proxy(
    resume: impl Fn(&str, &str, &Path) -> std::process::Output,
    cached: bool,
) {
    let len = 2 << 20;
    let body = content(len);
    let origin = ranged_origin(Arc::clone(&body));
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/big.iso");
    if cached {
        assert_eq!(proxy_get(porter.addr, &url, &[]).body, *body);
    }
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("big.iso"), &body[..len / 2 + 123]).unwrap();
    let out = resume(&format!("http://{}", porter.addr), &url, work.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read(work.path().join("big.iso")).unwrap();
    assert_eq!(got.len(), len);
    assert!(got == *body, "the resumed file differs");
    let wanted = format!("bytes={}-", len / 2 + 123);
    let requests = origin.requests.lock().unwrap().clone();
    if cached {
        assert_eq!(requests.len(), 1, "the resume came from the cache");
    } else {
        assert_eq!(requests.len(), 1);
        assert!(
            requests[0].contains(&wanted),
            "the range was forwarded: {}",
            requests[0]
        );
    }
}

fn curl_resume(proxy: &str, url: &str, dir: &Path) -> std::process::Output {
    Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "30",
            "-x",
            proxy,
            "-C",
            "-",
            "-o",
            "big.iso",
            url,
        ])
        .current_dir(dir)
        .env_remove("http_proxy")
        .output()
        .unwrap()
}

fn wget_resume(proxy: &str, url: &str, dir: &Path) -> std::process::Output {
    Command::new("wget")
        .args(["-q", "-c", "--timeout=30", "--tries=1", url])
        .current_dir(dir)
        .env("http_proxy", proxy)
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .output()
        .unwrap()
}

#[test]
fn curl_resume_is_served_from_the_cache() {
    if tool("curl") {
        resume_through_the_proxy(curl_resume, true);
    }
}

#[test]
fn wget_resume_is_served_from_the_cache() {
    if tool("wget") {
        resume_through_the_proxy(wget_resume, true);
    }
}

#[test]
fn curl_and_wget_resume_through_the_proxy_on_a_miss() {
    if tool("curl") {
        resume_through_the_proxy(curl_resume, false);
    }
    if tool("wget") {
        resume_through_the_proxy(wget_resume, false);
    }
}

#[test]
fn partial_entries_with_the_same_etag_join_and_become_complete() {
    let body = content(3000);
    let origin = ranged_origin(Arc::clone(&body));
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/parts");
    let get = |range: &str| proxy_get(porter.addr, &url, &[("Range", range)]);
    assert_eq!(get("bytes=0-999").header("x-cache"), Some("MISS"));
    assert_eq!(get("bytes=1000-1999").header("x-cache"), Some("MISS"));
    // The two parts are one entry now: a range across their seam is a hit.
    let seam = get("bytes=500-1499");
    assert_eq!((seam.status, seam.header("x-cache")), (206, Some("HIT")));
    assert_eq!(seam.header("content-range"), Some("bytes 500-1499/3000"));
    assert_eq!(seam.body, body[500..1500]);
    assert_eq!(origin.hits(), 2);
    // The last part completes the file: the entry is a 200 that answers a plain GET.
    assert_eq!(get("bytes=2000-").header("x-cache"), Some("MISS"));
    let whole = proxy_get(porter.addr, &url, &[]);
    assert_eq!((whole.status, whole.header("x-cache")), (200, Some("HIT")));
    assert!(whole.header("content-range").is_none());
    assert!(whole.body == *body, "the joined body differs");
    assert_eq!(origin.hits(), 3);
}

#[test]
fn partial_entries_with_other_etags_are_not_joined() {
    let body = content(2000);
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    // Each answer carries a new ETag, as an origin whose file changes between requests would.
    let origin = Origin::start(move |_, _, headers| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (start, end) = header_value(headers, "range")
            .and_then(|r| single_range(&r, 2000))
            .unwrap_or((0, 1999));
        let fields = [
            ("Cache-Control", "max-age=3600".to_string()),
            ("ETag", format!("\"v{n}\"")),
            ("Content-Range", format!("bytes {start}-{end}/2000")),
        ];
        let fields = fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        (206, fields, body[start as usize..=end as usize].to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let porter = cached_proxy(dir.path());
    let url = origin.url("/changing");
    let get = |range: &str| proxy_get(porter.addr, &url, &[("Range", range)]);
    get("bytes=0-999");
    get("bytes=1000-1999");
    assert_eq!(get("bytes=500-1499").header("x-cache"), Some("MISS"));
    // The entry is the newest part alone (500-1499): bytes from the part before it are a miss.
    assert_eq!(get("bytes=1000-1099").header("x-cache"), Some("HIT"));
    assert_eq!(get("bytes=1500-1999").header("x-cache"), Some("MISS"));
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(get("bytes=1500-1599").header("x-cache"), Some("HIT"));
}
