//! Stale content on purpose (RFC 5861): stale-while-revalidate serves at once and revalidates once
//! in the background; stale-if-error (and `--stale-if-error`) keeps serving while the origin is
//! stopped, times out or fails, never for responses that forbid it.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

const UP: u8 = 0;
/// Answers 503 to everything.
const FAILING: u8 = 1;
/// Reads the request and says nothing.
const SILENT: u8 = 2;

/// An origin that can fail, fall silent, or stop (its port then refuses connections). Each path's
/// response carries the Cache-Control the path names (see `cache_control`) and an ETag; a matching
/// If-None-Match is answered 304, after `revalidation_delay`.
struct Switch {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    hits: AtomicUsize,
    mode: AtomicU8,
    stop: AtomicBool,
}

fn cache_control(path: &str) -> &'static str {
    match path {
        "/must" => "max-age=1, must-revalidate",
        "/proxy" => "max-age=1, proxy-revalidate",
        "/no-cache" => "no-cache",
        "/s-maxage" => "s-maxage=1",
        "/swr" => "max-age=1, stale-while-revalidate=60",
        _ => "max-age=1",
    }
}

impl Switch {
    fn start(revalidation_delay: Duration) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let origin = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if origin.stop.load(Ordering::SeqCst) {
                    return; // the listener closes: connections are refused from now on
                }
                let origin = Arc::clone(&origin);
                thread::spawn(move || serve(stream, &origin, revalidation_delay));
            }
        });
        Switch { addr, shared }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    fn set(&self, mode: u8) {
        self.shared.mode.store(mode, Ordering::SeqCst);
    }

    fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop so it sees the flag
        assert!(
            eventually(Duration::from_secs(5), || TcpStream::connect(self.addr)
                .is_err()),
            "the origin's port still accepts"
        );
    }
}

fn serve(stream: TcpStream, origin: &Shared, delay: Duration) {
    let Shared { hits, mode, stop } = origin;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(head) = read_test_request_head(&mut reader) {
        if stop.load(Ordering::SeqCst) {
            return; // a stopped origin closes the connections the proxy keeps, too
        }
        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
        let response = match mode.load(Ordering::SeqCst) {
            SILENT => {
                thread::sleep(Duration::from_secs(4));
                return;
            }
            FAILING => {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown".to_string()
            }
            _ if header_value(&head.headers, "if-none-match").as_deref() == Some("\"v1\"") => {
                thread::sleep(delay);
                // The delay counts as age (RFC 9111 §4.2.3): a second max-age would be born stale.
                let cc = "max-age=60";
                format!("HTTP/1.1 304 Not Modified\r\nCache-Control: {cc}\r\nETag: \"v1\"\r\n\r\n")
            }
            _ => {
                let cc = cache_control(&head.path);
                let body = format!("body of {} #{n}", head.path);
                format!(
                    "HTTP/1.1 200 OK\r\nCache-Control: {cc}\r\nETag: \"v1\"\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn proxy(dir: &std::path::Path, origin_timeout: &str, extra: &[&str]) -> Porter {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "proxy",
        "--cache-dir",
        dir,
        "--origin-timeout",
        origin_timeout,
    ];
    args.extend_from_slice(extra);
    Porter::start(&args)
}

/// Stores each path, then waits until all are stale (max-age=1, and Age counts whole seconds).
fn store_then_expire(porter: &Porter, origin: &Switch, paths: &[&str]) {
    for path in paths {
        let first = proxy_get(porter.addr, &origin.url(path), &[]);
        assert_eq!(first.status, 200, "{path}");
        assert!(
            first
                .header("cache-status")
                .unwrap_or("")
                .contains("stored"),
            "{path}: {first:?}"
        );
    }
    thread::sleep(Duration::from_millis(2100));
}

#[test]
fn stale_while_revalidate_serves_at_once_and_revalidates_once_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    // Revalidations take 1.5 s: a client that waited for one would show it.
    let origin = Switch::start(Duration::from_millis(1500));
    let porter = proxy(dir.path(), "5s", &[]);
    store_then_expire(&porter, &origin, &["/swr"]);
    let url = origin.url("/swr");
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            let proxy = porter.addr;
            thread::spawn(move || {
                let asked = Instant::now();
                let response = proxy_get(proxy, &url, &[]);
                (response, asked.elapsed())
            })
        })
        .collect();
    for client in clients {
        let (response, took) = client.join().unwrap();
        assert_eq!(response.text(), "body of /swr #1");
        assert_eq!(
            response.header("cache-status"),
            Some("porter; hit; detail=stale-while-revalidate")
        );
        assert!(
            took < Duration::from_millis(1000),
            "took {took:?}: waited for the origin"
        );
        let age: u64 = response.header("age").unwrap().parse().unwrap();
        assert!(age >= 2, "Age {age}");
    }
    assert!(
        eventually(Duration::from_secs(5), || origin.hits() == 2),
        "one background revalidation, got {} origin requests",
        origin.hits() - 1
    );
    // Refreshed by the 304: fresh again, no more origin requests.
    assert!(eventually(Duration::from_secs(5), || {
        proxy_get(porter.addr, &url, &[]).header("cache-status") == Some("porter; hit")
    }));
    assert_eq!(origin.hits(), 2);
}

#[test]
fn stale_if_error_serves_the_stored_response_while_the_origin_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Switch::start(Duration::ZERO);
    let porter = proxy(dir.path(), "1s", &[]);
    let paths = ["/plain", "/must", "/proxy", "/no-cache", "/s-maxage"];
    store_then_expire(&porter, &origin, &paths);
    origin.stop();
    let stale = proxy_get(porter.addr, &origin.url("/plain"), &[]);
    assert_eq!(
        (stale.status, stale.text().as_str()),
        (200, "body of /plain #1")
    );
    assert_eq!(
        stale.header("cache-status"),
        Some("porter; hit; detail=stale-if-error")
    );
    let age: u64 = stale.header("age").unwrap().parse().unwrap();
    assert!(age >= 2, "Age {age}");
    assert!(
        eventually(Duration::from_secs(5), || porter
            .logs()
            .contains("detail=stale-if-error")),
        "the access log says why"
    );
    // A client's reload gets what the cache has too, rather than an error.
    let reload = proxy_get(
        porter.addr,
        &origin.url("/plain"),
        &[("Cache-Control", "no-cache")],
    );
    assert_eq!(reload.status, 200);
    for path in &paths[1..] {
        let refused = proxy_get(porter.addr, &origin.url(path), &[]);
        assert_eq!(
            refused.status, 502,
            "{path} forbids serving stale: {refused:?}"
        );
    }
}

#[test]
fn stale_if_error_stands_in_for_503_and_timeouts_but_not_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Switch::start(Duration::ZERO);
    let porter = proxy(dir.path(), "1s", &[]);
    store_then_expire(&porter, &origin, &["/a", "/b"]);
    origin.set(FAILING);
    let failed = proxy_get(porter.addr, &origin.url("/a"), &[]);
    assert_eq!(
        (failed.status, failed.text().as_str()),
        (200, "body of /a #1")
    );
    assert_eq!(
        failed.header("cache-status"),
        Some("porter; hit; detail=stale-if-error")
    );
    origin.set(SILENT);
    let timed_out = proxy_get(porter.addr, &origin.url("/b"), &[]);
    assert_eq!(
        (timed_out.status, timed_out.text().as_str()),
        (200, "body of /b #2")
    );
    assert_eq!(
        timed_out.header("cache-status"),
        Some("porter; hit; detail=stale-if-error")
    );
    // With the default off, the origin's error goes through.
    let off_dir = tempfile::tempdir().unwrap();
    let off = proxy(off_dir.path(), "1s", &["--stale-if-error", "0"]);
    origin.set(UP);
    store_then_expire(&off, &origin, &["/c"]);
    origin.set(FAILING);
    let error = proxy_get(off.addr, &origin.url("/c"), &[]);
    assert_eq!((error.status, error.text().as_str()), (503, "down"));
}

#[test]
fn regression_stale_while_revalidate_behind_a_parent_never_goes_around_it() {
    let origin = Switch::start(Duration::ZERO);
    let child_dir = tempfile::tempdir().unwrap();
    // A parent that caches nothing, so every origin request shows in its access log.
    let parent = Porter::start(&["proxy", "--no-cache"]);
    let parent_addr = parent.addr.to_string();
    let child = proxy(child_dir.path(), "5s", &["--parent", &parent_addr]);
    store_then_expire(&child, &origin, &["/swr"]);
    let stale = proxy_get(child.addr, &origin.url("/swr"), &[]);
    assert_eq!(stale.text(), "body of /swr #1");
    // Revalidated in the foreground, through the parent: not a background dial around it.
    assert_eq!(
        stale.header("cache-status"),
        Some("porter; fwd=stale; fwd-status=304")
    );
    assert_eq!(origin.hits(), 2);
    let through_parent = || {
        parent
            .logs()
            .lines()
            .filter(|l| l.contains("porter::access") && l.contains("/swr"))
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || through_parent() == 2),
        "both origin requests went through the parent: {}",
        parent.logs()
    );
}
