//! `porter serve` end to end: files and their status codes, traversal attempts, visitor cookies across
//! a restart, the Nth-visit page, bans and the browser that is not banned, the seeded fault mix, and
//! the event log.

use std::io::{BufReader, ErrorKind, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const PNG: &[u8] = include_bytes!("../../examples/www/porter.png");
const SECRET: &str = "TOP SECRET: outside the root";

/// A served folder and the server's files, in one temporary directory:
///
/// ```text
/// tmp/root/      index.html hello.txt image.png private.txt (0640) sub/index.html list/… closed/ (0750)
///                leak.txt -> ../outside/secret.txt, out -> ../outside, alias.txt -> hello.txt
/// tmp/outside/   secret.txt
/// tmp/cookies.json tmp/server.log
/// ```
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        for folder in [
            &root,
            &outside,
            &root.join("sub"),
            &root.join("list/folder"),
        ] {
            std::fs::create_dir_all(folder).unwrap();
        }
        let files: [(&str, &[u8]); 7] = [
            (
                "index.html",
                b"<!DOCTYPE html><title>Home</title><p>home page</p>\n",
            ),
            ("hello.txt", b"hello, world\n"),
            ("image.png", PNG),
            ("private.txt", b"private\n"),
            ("sub/index.html", b"<title>Sub</title><p>sub index</p>\n"),
            ("list/a.txt", b"a\n"),
            ("list/with space & <b>.txt", b"odd name\n"),
        ];
        for (name, bytes) in files {
            std::fs::write(root.join(name), bytes).unwrap();
        }
        std::fs::set_permissions(
            root.join("private.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::create_dir(root.join("closed")).unwrap();
        std::fs::write(root.join("closed/open.txt"), b"open\n").unwrap();
        std::fs::set_permissions(root.join("closed"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        symlink("../outside/secret.txt", root.join("leak.txt")).unwrap();
        symlink("../outside", root.join("out")).unwrap();
        symlink("hello.txt", root.join("alias.txt")).unwrap();
        Site { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn cookies(&self) -> PathBuf {
        self.dir.path().join("cookies.json")
    }

    fn events(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts `porter serve` on this site with extra flags.
    fn serve(&self, extra: &[&str]) -> Porter {
        let (root, cookies, events) = (self.root(), self.cookies(), self.events());
        let mut args = vec![
            "serve",
            "--root",
            path_str(&root),
            "--cookies",
            path_str(&cookies),
            "--event-log",
            path_str(&events),
        ];
        args.extend_from_slice(extra);
        Porter::start(&args)
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// One request on a new connection (closed after it).
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw_request(addr, raw.as_bytes())
}

fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", target, headers).expect("a response")
}

/// The visitor id a response sets, if any.
fn set_cookie_id(response: &Response) -> Option<String> {
    let value = response.header("set-cookie")?;
    let pair = value.split(';').next()?;
    pair.strip_prefix("porter_visitor=").map(str::to_string)
}

fn visits(response: &Response) -> Option<u64> {
    response.header("x-visit-count")?.parse().ok()
}

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

#[test]
fn visitor_cookie_counts_visits_and_survives_a_restart() {
    let site = Site::new();
    let mut porter = site.serve(&[]);
    let first = get(porter.addr, "/hello.txt", &[]);
    let id = set_cookie_id(&first).expect("a visitor cookie");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        first.header("set-cookie"),
        Some(format!("porter_visitor={id}; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    assert_eq!(visits(&first), Some(1));
    assert_eq!(
        first.header("cache-control"),
        Some("no-cache=\"Set-Cookie\""),
        "a shared cache must not hand this cookie to others"
    );
    let cookie = format!("theme=dark; porter_visitor={id}");
    let second = get(porter.addr, "/", &[("Cookie", &cookie)]);
    assert_eq!(visits(&second), Some(2));
    assert!(second.header("set-cookie").is_none());
    // A forged or unknown id is no cookie at all: the client gets a fresh one.
    let forged = get(
        porter.addr,
        "/",
        &[("Cookie", "porter_visitor=00000000000000000000000000000001")],
    );
    let other = set_cookie_id(&forged).expect("a new cookie");
    assert_ne!(other, id);
    assert_eq!(visits(&forged), Some(1));

    let status = porter.terminate().expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let saved = std::fs::read_to_string(site.cookies()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&saved).expect("readable JSON");
    assert_eq!(json["visitors"][&id]["visits"], 2);
    assert!(json["visitors"][&id]["last_visit"].is_string());

    let porter = site.serve(&[]);
    let after = get(porter.addr, "/hello.txt", &[("Cookie", &cookie)]);
    assert_eq!(visits(&after), Some(3));
    assert!(after.header("set-cookie").is_none());
}

#[test]
fn visitors_are_saved_while_running() {
    let site = Site::new();
    let porter = site.serve(&["--save-every", "100ms"]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(site.cookies()).is_ok_and(|s| s.contains(&id))
    }));
}

#[test]
fn corrupt_cookies_file_is_moved_aside() {
    let site = Site::new();
    std::fs::write(site.cookies(), b"{\"visitors\": {\"abc\": tru").unwrap();
    let mut porter = site.serve(&[]);
    assert_eq!(get(porter.addr, "/", &[]).status, 200);
    assert!(porter.logs().contains("is not valid"), "{}", porter.logs());
    let aside: Vec<PathBuf> = std::fs::read_dir(site.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("cookies.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        b"{\"visitors\": {\"abc\": tru"
    );
    assert!(porter.terminate().is_some_and(|s| s.success()));
    let fresh = std::fs::read_to_string(site.cookies()).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&fresh).is_ok());
}

#[test]
fn nth_request_reaches_the_center_of_the_pop() {
    let site = Site::new();
    let porter = site.serve(&["--special-after", "3"]);
    assert!(get(porter.addr, "/", &[]).text().contains("home page"));
    assert!(get(porter.addr, "/", &[]).text().contains("home page"));
    let third = get(porter.addr, "/", &[]);
    assert_eq!(third.status, 200);
    assert!(
        third.text().contains("center of the pop"),
        "{}",
        third.text()
    );
    assert!(third.text().contains("For you, 3."));
    assert_eq!(third.header("cache-control"), Some("no-store"));
    // Other paths stay normal; / stays special.
    assert_eq!(get(porter.addr, "/hello.txt", &[]).text(), "hello, world\n");
    assert!(get(porter.addr, "/", &[]).text().contains("For you, 5."));

    let off = site.serve(&["--special-after", "0"]);
    for _ in 0..5 {
        assert!(get(off.addr, "/", &[]).text().contains("home page"));
    }
}

#[test]
fn script_hammering_without_a_cookie_is_banned() {
    let site = Site::new();
    let porter = site.serve(&["--ban-after", "20"]);
    for i in 0..20 {
        assert_eq!(
            get(porter.addr, "/hello.txt", &[]).status,
            200,
            "request {i}"
        );
    }
    let banned = get(porter.addr, "/hello.txt", &[]);
    assert_eq!(banned.status, 403);
    assert!(banned.text().contains("banned"), "{}", banned.text());
    assert!(banned.text().contains("more than 20 requests within 1m"));
    assert_eq!(banned.header("connection"), Some("close"));
    // Still banned, cookie or not, and logged once.
    assert_eq!(get(porter.addr, "/", &[]).status, 403);
    assert!(eventually(Duration::from_secs(5), || porter
        .logs()
        .contains("banning 127.0.0.1")));
    assert_eq!(porter.logs().matches("banning 127.0.0.1").count(), 1);
}

#[test]
fn script_keeping_its_cookie_but_never_pausing_is_banned() {
    let site = Site::new();
    let porter = site.serve(&["--visitor-burst", "10", "--visitor-rate", "0.01"]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).unwrap();
    let cookie = format!("porter_visitor={id}");
    let statuses: Vec<u16> = (0..15)
        .map(|_| get(porter.addr, "/hello.txt", &[("Cookie", &cookie)]).status)
        .collect();
    assert!(statuses.contains(&403), "{statuses:?}");
    assert!(statuses[..10].iter().all(|&s| s == 200), "{statuses:?}");
}

#[test]
fn browser_loading_pages_in_bursts_with_its_cookie_is_not_banned() {
    let site = Site::new();
    // Without the cookie rule, 21 requests would ban this client; the browser makes 61.
    let porter = site.serve(&["--ban-after", "20"]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).unwrap();
    let cookie = format!("porter_visitor={id}");
    for page in 0..3 {
        // A page and its images over one keep-alive connection, as a browser does.
        let stream = connect(porter.addr);
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        for i in 0..20 {
            let target = if i == 0 { "/index.html" } else { "/image.png" };
            write!(
                writer,
                "GET {target} HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\n\r\n"
            )
            .unwrap();
            let response = read_response(&mut reader, false).unwrap();
            assert_eq!(response.status, 200, "page {page} request {i}");
        }
        // The pause between pages is what a person's reading time looks like, shortened.
        std::thread::sleep(Duration::from_millis(400));
    }
    let last = get(porter.addr, "/hello.txt", &[("Cookie", &cookie)]);
    assert_eq!(last.status, 200);
    assert_eq!(visits(&last), Some(62));
    assert!(!porter.logs().contains("banning"));
}

#[test]
fn bans_end_after_ban_for() {
    let site = Site::new();
    let porter = site.serve(&["--ban-after", "3", "--ban-for", "300ms"]);
    for _ in 0..3 {
        assert_eq!(get(porter.addr, "/", &[]).status, 200);
    }
    let banned = get(porter.addr, "/", &[]);
    assert_eq!(banned.status, 403);
    assert!(banned.text().contains("It ends in"), "{}", banned.text());
    assert!(eventually(Duration::from_secs(5), || get(
        porter.addr,
        "/",
        &[]
    )
    .status
        == 200));
}

/// How a /getbalance request ended, as the client saw it.
fn balance_outcome(addr: SocketAddr) -> String {
    match request(addr, "GET", "/getbalance", &[]) {
        Ok(response) => {
            if response.status == 200 {
                assert!(response.text().contains("Account balance"));
            }
            response.status.to_string()
        }
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => "timeout".to_string(),
        Err(e) => panic!("/getbalance: {e}"),
    }
}

fn seeded_run(site: &Site, seed: &str) -> (Vec<String>, Vec<String>) {
    let porter = site.serve(&["--seed", seed, "--fault-delay", "200ms"]);
    let seen: Vec<String> = (0..40).map(|_| balance_outcome(porter.addr)).collect();
    let logs = get(porter.addr, "/getlogs?limit=40", &[]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&logs.body).unwrap();
    let logged = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    (seen, logged)
}

#[test]
fn seeded_fault_mix_is_reproducible() {
    let (first, logged) = seeded_run(&Site::new(), "2024");
    let count = |kind: &str| first.iter().filter(|o| *o == kind).count();
    let counts = [count("200"), count("403"), count("500"), count("timeout")];
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 40, "{first:?}");
    assert_eq!(logged, first, "the event log records what clients saw");
    let (again, _) = seeded_run(&Site::new(), "2024");
    assert_eq!(again, first, "same seed, same sequence");
}

#[test]
fn timeout_fault_does_not_hold_a_worker() {
    let site = Site::new();
    let porter = site.serve(&[
        "--workers",
        "1",
        "--faults",
        "timeout=1",
        "--fault-delay",
        "60s",
    ]);
    // Held connections get no response; the single worker is free for the next client meanwhile.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect(porter.addr);
        stream
            .write_all(b"GET /getbalance HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        held.push(stream);
        assert_eq!(get(porter.addr, "/hello.txt", &[]).status, 200);
    }
    let logs = get(porter.addr, "/getlogs", &[]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&logs.body).unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["outcome"] == "timeout"));
}

#[test]
fn getlogs_returns_events_and_the_log_survives_a_restart() {
    let site = Site::new();
    let mut porter = site.serve(&["--faults", "none"]);
    for n in 0..5 {
        let response = get(porter.addr, &format!("/getbalance?n={n}"), &[]);
        assert_eq!(response.status, 200);
    }
    let all = get(porter.addr, "/getlogs", &[]);
    assert_eq!(all.header("content-type"), Some("application/json"));
    let events: Vec<serde_json::Value> = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(events.len(), 5);
    let event = &events[0];
    assert_eq!(event["path"], "/getbalance?n=0");
    assert_eq!(event["client_ip"], "127.0.0.1");
    assert_eq!(event["outcome"], "200");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    let newest = get(porter.addr, "/getlogs?limit=2", &[]);
    let newest: Vec<serde_json::Value> = serde_json::from_slice(&newest.body).unwrap();
    let paths: Vec<&str> = newest.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/getbalance?n=3", "/getbalance?n=4"]);
    assert_eq!(get(porter.addr, "/getlogs?limit=lots", &[]).status, 400);

    assert!(porter.terminate().is_some_and(|s| s.success()));
    let porter = site.serve(&["--faults", "none"]);
    get(porter.addr, "/getbalance?n=5", &[]);
    let all = get(porter.addr, "/getlogs", &[]);
    let events: Vec<serde_json::Value> = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(events.len(), 6);
    assert_eq!(events[5]["path"], "/getbalance?n=5");
}

#[test]
fn bad_flags_are_rejected_with_a_clear_error() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_porter"))
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .expect("porter runs")
    };
    let over = run(&["--faults", "timeout=0.6,403=0.5"]);
    assert!(!over.status.success());
    let stderr = String::from_utf8_lossy(&over.stderr);
    assert!(
        stderr.contains("fault shares sum to 1.1, more than 1"),
        "{stderr}"
    );
    let unknown = run(&["--faults", "404=0.1"]);
    assert!(!unknown.status.success());
    let missing = run(&["--root", "/nonexistent/porter-root"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("cannot serve --root"), "{stderr}");
    let site = Site::new();
    let unwritable = site.dir.path().join("no/such/folder/cookies.json");
    let root = site.root();
    let cookies = run(&[
        "--root",
        path_str(&root),
        "--cookies",
        path_str(&unwritable),
    ]);
    assert!(!cookies.status.success());
    let stderr = String::from_utf8_lossy(&cookies.stderr);
    assert!(stderr.contains("cannot write cookies file"), "{stderr}");
}
