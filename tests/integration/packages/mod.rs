//! `--refresh-preset packages` with the real clients (cargo, pip, npm) against local registries that
//! send the headers the real services (or the mirrors people run of them) send: each client runs
//! twice with its own cache emptied in between, and the second run fetches no artifact from upstream.
//!
//! The registries are one [`Registry`]: files by path, each with its own response fields, an
//! `ETag` on every file and `Last-Modified` on most, `If-None-Match` answered with 304, and every request
//! recorded, so a test counts what reached upstream. The clients are told the proxy explicitly
//! (`CARGO_HTTP_PROXY`, `pip --proxy`, `npm --proxy`), which all three use for 127.0.0.1 too;
//! `NO_PROXY` is removed from their environment so a developer's setting cannot bypass it.

mod cargo;
mod npm;
mod pip;
mod shapes;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

/// The `Last-Modified` every registry file carries: long ago, as a published artifact's is.
pub const PUBLISHED: &str = "Mon, 06 Nov 2023 10:00:00 GMT";

struct File {
    body: Vec<u8>,
    fields: Vec<(String, String)>,
    /// Whether it carries `Last-Modified` (which allows a heuristic freshness, RFC 9111 §4.2.2).
    dated: bool,
}

/// A registry origin: files by path, each with its own fields, validators on every one.
pub struct Registry {
    pub origin: Origin,
    files: Arc<Mutex<HashMap<String, File>>>,
}

impl Registry {
    pub fn start() -> Registry {
        let files: Arc<Mutex<HashMap<String, File>>> = Arc::default();
        let served = Arc::clone(&files);
        let origin = Origin::start(move |method, path, headers| {
            let path = path.split('?').next().unwrap_or(path);
            let files = served.lock().unwrap();
            let Some(file) = files.get(path) else {
                return (
                    404,
                    hdrs(&[("Content-Type", "text/plain")]),
                    b"not found".to_vec(),
                );
            };
            let etag = etag_of(&file.body);
            let mut fields = file.fields.clone();
            fields.push(("ETag".into(), etag.clone()));
            if file.dated {
                fields.push(("Last-Modified".into(), PUBLISHED.into()));
            }
            let current = header_value(headers, "if-none-match")
                .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
            if current && (method == "GET" || method == "HEAD") {
                fields.retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
                return (304, fields, Vec::new());
            }
            (200, fields, file.body.clone())
        });
        Registry { origin, files }
    }

    /// Serves `body` at `path` with `fields` (besides ETag and Last-Modified).
    pub fn put(&self, path: &str, body: Vec<u8>, fields: &[(&str, &str)]) {
        self.insert(path, body, fields, true);
    }

    /// Like [`Registry::put`] with an `ETag` and no `Last-Modified`: nothing in the response makes
    /// it fresh, so only a rule keeps it from being asked for again.
    pub fn put_undated(&self, path: &str, body: Vec<u8>, fields: &[(&str, &str)]) {
        self.insert(path, body, fields, false);
    }

    fn insert(&self, path: &str, body: Vec<u8>, fields: &[(&str, &str)], dated: bool) {
        self.files.lock().unwrap().insert(
            path.to_string(),
            File {
                body,
                fields: hdrs(fields),
                dated,
            },
        );
    }

    pub fn url(&self, path: &str) -> String {
        self.origin.url(path)
    }

    /// The request heads that reached this registry for paths ending in `suffix`.
    pub fn requests_for(&self, suffix: &str) -> Vec<String> {
        self.origin
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.split_whitespace()
                    .nth(1)
                    .is_some_and(|p| p.split('?').next().unwrap_or(p).ends_with(suffix))
            })
            .cloned()
            .collect()
    }

    /// How many requests reached the registry so far.
    pub fn count(&self) -> usize {
        self.origin.hits()
    }
}

/// A strong tag that changes with the bytes (FNV-1a, enough for a test).
fn etag_of(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

/// Porter with the packages preset and its own cache folder.
pub fn porter_with_preset(cache: &Path) -> Porter {
    Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--refresh-preset",
        "packages",
    ])
}

/// A client command with a clean proxy environment: no `NO_PROXY` to bypass Porter with, and no
/// proxy variables of the developer's.
pub fn client(program: &Path) -> Command {
    let mut command = Command::new(program);
    for name in [
        "NO_PROXY",
        "no_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    command
}

/// Runs `command` with a time limit (a client that hangs fails the test), returning its output.
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client starts");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the client ran longer than {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Panics with the client's output unless it succeeded.
pub fn assert_ran(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of one `/metrics` sample, by its full name with labels.
pub fn metric(porter: &Porter, sample: &str) -> u64 {
    let page = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n").expect("metrics");
    page.text()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{}", page.text()))
}

/// Waits (bounded) until the access log has a line for a URL ending in `suffix` with `words`.
pub fn logged(porter: &Porter, suffix: &str, words: &str) -> bool {
    eventually(Duration::from_secs(5), || {
        porter
            .logs()
            .lines()
            .any(|l| l.contains("porter::access") && l.contains(suffix) && l.contains(words))
    })
}

/// Tar and gzip `folder`'s entry `name` into `out` (the `tar` every system has; cargo's `.crate`
/// and npm's `.tgz` are both gzipped tar files).
pub fn tar_gz(folder: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .args(["-czf", "-", "--owner=0", "--group=0", "-C"])
        .arg(folder)
        .arg(name)
        .output()
        .expect("tar runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Index files are collapsed as any storable miss is, also when the clients ask to reload: three
/// pip-like requests (`Cache-Control: max-age=0`) at once for a PyPI simple page nobody has stored
/// yet (PyPI's `Cache-Control: max-age=600, public` and an `ETag`) make one origin request; the other
/// two wait for its entry and read it. Before, the two went to the origin after all, since a reload
/// never took a response it had not asked for itself, even one the origin sent after it arrived.
#[test]
fn regression_concurrent_reloads_of_an_index_page_make_one_origin_request() {
    use std::sync::Condvar;
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = Arc::clone(&gate);
    let origin = Origin::start(move |_, _, _| {
        let (open, opened) = &*held;
        let guard = open.lock().unwrap();
        let _ = opened
            .wait_timeout_while(guard, IO_TIMEOUT, |open| !*open)
            .unwrap();
        (
            200,
            hdrs(&[
                ("Content-Type", "text/html"),
                ("Cache-Control", "max-age=600, public"),
                ("ETag", "\"page-1\""),
            ]),
            b"<a href=\"/packages/a/b/tiny-1.0.tar.gz\">tiny-1.0.tar.gz</a>\n".to_vec(),
        )
    });
    let cache = tempfile::tempdir().unwrap();
    let proxy = porter_with_preset(cache.path());
    let url = origin.url("/simple/tiny/");
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (addr, url) = (proxy.addr, url.clone());
            std::thread::spawn(move || proxy_get(addr, &url, &[("Cache-Control", "max-age=0")]))
        })
        .collect();
    let waiting = "porter_waiting_connections{state=\"entry\"}";
    let two_wait = eventually(Duration::from_secs(10), || {
        origin.hits() == 1 && metric(&proxy, waiting) == 2
    });
    {
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    let responses: Vec<Response> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        two_wait,
        "two requests should wait for the first one's entry"
    );
    assert!(responses.iter().all(|r| r.status == 200));
    let statuses: Vec<_> = responses.iter().map(|r| r.header("cache-status")).collect();
    assert_eq!(origin.hits(), 1, "{statuses:?}\n{}", proxy.logs());
    // The two that waited read the entry as it was written, or found it stored when the leader was
    // quicker than their wake-up: either way from the cache.
    let from_cache = statuses
        .iter()
        .filter(|s| matches!(s, Some("porter; fwd=miss; collapsed" | "porter; hit")))
        .count();
    assert_eq!(from_cache, 2, "{statuses:?}");
}

/// Revalidations are collapsed too: with a PyPI simple page stored, three pip-like requests
/// (`Cache-Control: max-age=0`) at once make one conditional request; the two that wait for it find
/// the entry it refreshed (a 304) and take it from the cache. Before, each made its own.
#[test]
fn regression_concurrent_revalidations_of_an_index_page_make_one_origin_request() {
    use std::sync::Condvar;
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = Arc::clone(&gate);
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let origin = Origin::start(move |_, _, headers| {
        // The fill and the first revalidation are answered at once, the next ones at the gate.
        let nth = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let fields = hdrs(&[
            ("Content-Type", "text/html"),
            ("Cache-Control", "max-age=600, public"),
            ("ETag", "\"page-1\""),
        ]);
        if header_value(headers, "if-none-match").as_deref() != Some("\"page-1\"") {
            return (
                200,
                fields,
                b"<a href=\"tiny-1.0.tar.gz\">tiny</a>\n".to_vec(),
            );
        }
        if nth >= 2 {
            let (open, opened) = &*held;
            let guard = open.lock().unwrap();
            let _ = opened
                .wait_timeout_while(guard, IO_TIMEOUT, |open| !*open)
                .unwrap();
        }
        (304, fields, Vec::new())
    });
    let cache = tempfile::tempdir().unwrap();
    let proxy = porter_with_preset(cache.path());
    let url = origin.url("/simple/tiny/");
    assert_eq!(proxy_get(proxy.addr, &url, &[]).status, 200);
    // One revalidation on its own first: a request that leads one lets go of the URL before its
    // client has the response, so after it nothing holds the URL (the fill's fetch may still have,
    // a moment after its client had the body).
    let alone = proxy_get(proxy.addr, &url, &[("Cache-Control", "max-age=0")]);
    assert_eq!(
        alone.header("cache-status"),
        Some("porter; fwd=stale; fwd-status=304")
    );
    assert_eq!(origin.hits(), 2);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (addr, url) = (proxy.addr, url.clone());
            std::thread::spawn(move || proxy_get(addr, &url, &[("Cache-Control", "max-age=0")]))
        })
        .collect();
    let waiting = "porter_waiting_connections{state=\"entry\"}";
    let two_wait = eventually(Duration::from_secs(10), || {
        origin.hits() == 3 && metric(&proxy, waiting) == 2
    });
    {
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    let responses: Vec<Response> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let statuses: Vec<_> = responses.iter().map(|r| r.header("cache-status")).collect();
    assert!(
        two_wait,
        "two requests should wait for the first one's revalidation: {statuses:?}, {} origin requests\n{}",
        origin.hits(),
        proxy.logs()
    );
    assert!(responses.iter().all(|r| r.status == 200), "{statuses:?}");
    assert_eq!(origin.hits(), 3, "{statuses:?}");
    let revalidated = statuses
        .iter()
        .filter(|s| **s == Some("porter; fwd=stale; fwd-status=304"))
        .count();
    let hits = statuses
        .iter()
        .filter(|s| **s == Some("porter; hit"))
        .count();
    assert_eq!((revalidated, hits), (1, 2), "{statuses:?}");
}
