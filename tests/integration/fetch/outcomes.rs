//! What a `porter fetch` run shows, saves and exits with: the cache's outcome on the request line,
//! `--print` to a file, error statuses (exit 8, not saved unless `--save-errors`, still tallied by
//! `--repeat`) and `-L` across redirects.

use std::process::{Command, Stdio};

use super::*;

#[test]
fn the_cache_outcome_is_on_the_request_line() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[
                ("Content-Type", "text/plain"),
                ("Cache-Control", "max-age=60"),
            ]),
            b"cached\n".to_vec(),
        )
    });
    let cache = dir.path().join("cache");
    let proxy = Porter::start(&["proxy", "--cache-dir", cache.to_str().unwrap()]);
    let proxy_addr = proxy.addr.to_string();
    let url = origin.url("/c.txt");
    let first = fetch(dir.path(), &["--proxy", &proxy_addr, &url]);
    let second = fetch(dir.path(), &["--proxy", &proxy_addr, &url]);
    assert!(first.stdout.contains("  cache MISS  "), "{}", first.stdout);
    assert!(second.stdout.contains("  cache HIT  "), "{}", second.stdout);
    let direct = fetch(dir.path(), &[&url]);
    assert!(!direct.stdout.contains("cache"), "{}", direct.stdout);
}

#[test]
fn print_to_a_file_is_exactly_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let served = body.clone();
    let origin =
        Origin::start(move |_, _, _| (200, hdrs(&[("Content-Type", "image/png")]), served.clone()));
    let out = dir.path().join("body.out");
    let status = Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["fetch", "--no-proxy", "--print", &origin.url("/x.png")])
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), body);
    // --print is stdout only: no saved copy, no download.log.
    assert_eq!(file_names(dir.path()), ["body.out"]);
}

#[test]
fn a_404_exits_8_and_is_saved_only_with_save_errors() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, _, _| {
        (
            404,
            hdrs(&[("Content-Type", "text/html")]),
            b"<title>404 Not Found</title><p>gone</p>".to_vec(),
        )
    });
    let run = fetch(dir.path(), &[&origin.url("/missing")]);
    assert_eq!(run.code, Some(8), "{run:?}");
    assert!(run.stdout.starts_with("404 X  "), "{}", run.stdout);
    assert!(run.stdout.contains("not saved"), "{}", run.stdout);
    assert!(
        run.stderr.contains("the server answered 404"),
        "{}",
        run.stderr
    );
    assert!(file_names(&dir.path().join("Download")).is_empty());
    let run = fetch(dir.path(), &["--save-errors", &origin.url("/missing")]);
    assert_eq!(run.code, Some(8), "{run:?}");
    assert_eq!(
        file_names(&dir.path().join("Download")),
        ["404 Not Found.html"]
    );
    let log = read(dir.path().join("download.log"));
    assert_eq!(log.matches("HTTP/1.1 404").count(), 2, "{log}");
}

#[test]
fn repeat_tallies_error_statuses_and_exits_8() {
    let dir = tempfile::tempdir().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start(move |_, _, _| {
        let status = if n.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            200
        } else {
            404
        };
        (
            status,
            hdrs(&[("Content-Type", "text/plain")]),
            b"x\n".to_vec(),
        )
    });
    let run = fetch(
        dir.path(),
        &["--repeat", "4", "--interval", "0ms", &origin.url("/r.txt")],
    );
    assert_eq!(run.code, Some(8), "{run:?}");
    assert!(run.stdout.contains("  200 X  "), "{}", run.stdout);
    assert!(run.stdout.contains("  404 X  "), "{}", run.stdout);
    assert!(
        run.stderr.contains("2 of 4 requests got an error status"),
        "{}",
        run.stderr
    );
    assert_eq!(
        file_names(&dir.path().join("Download")),
        ["r (2).txt", "r.txt"]
    );
}

/// /a -301-> /b -302-> (absolute) /c, /d -303-> /e -307-> /f -308-> /c; /c is the page.
fn redirecting_origin() -> Origin {
    let slot: Arc<std::sync::Mutex<String>> = Arc::default();
    let base = slot.clone();
    let origin = Origin::start(move |_, path, _| {
        let to = |status: u16, location: String| {
            (
                status,
                hdrs(&[("Location", &location)]),
                b"moved\n".to_vec(),
            )
        };
        match path {
            "/a" => to(301, "/b".into()),
            "/b" => to(302, format!("{}/c", base.lock().unwrap())),
            "/d" => to(303, "e".into()),
            "/e" => to(307, "/f".into()),
            "/f" => to(308, "/c".into()),
            "/loop" => to(302, "/loop".into()),
            _ => (
                200,
                hdrs(&[("Content-Type", "text/html")]),
                b"<title>Landed</title>".to_vec(),
            ),
        }
    });
    *slot.lock().unwrap() = format!("http://{}", origin.addr);
    origin
}

#[test]
fn location_follows_two_redirects_and_logs_each_hop() {
    let dir = tempfile::tempdir().unwrap();
    let origin = redirecting_origin();
    let run = fetch(dir.path(), &["-L", &origin.url("/a")]);
    assert!(run.ok(), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(lines[0], format!("301 X  -> {}", origin.url("/b")));
    assert_eq!(lines[1], format!("302 X  -> {}", origin.url("/c")));
    assert!(lines[2].starts_with("200 X  ") && lines[2].ends_with("Download/Landed.html"));
    let log = read(dir.path().join("download.log"));
    let hops: Vec<&str> = log.lines().filter(|l| l.starts_with("HTTP/1.1")).collect();
    assert_eq!(
        hops,
        ["HTTP/1.1 301 X", "HTTP/1.1 302 X", "HTTP/1.1 200 X"],
        "{log}"
    );

    let run = fetch(dir.path(), &["--location", &origin.url("/d")]);
    assert!(run.ok(), "303, 307 and 308 too: {run:?}");
    assert_eq!(run.stdout.lines().count(), 4, "{}", run.stdout);

    let run = fetch(
        dir.path(),
        &["-L", "--max-redirects", "1", &origin.url("/a")],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("more than 1 redirects"),
        "{}",
        run.stderr
    );
    let run = fetch(dir.path(), &["-L", &origin.url("/loop")]);
    assert!(
        run.stderr.contains("more than 10 redirects"),
        "{}",
        run.stderr
    );

    // Without -L the redirect itself is the answer, saved as it is.
    let plain = tempfile::tempdir().unwrap();
    let run = fetch(plain.path(), &[&origin.url("/a")]);
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.starts_with("301 X  "), "{}", run.stdout);
    assert_eq!(file_names(&plain.path().join("Download")), ["a"]);
}

#[test]
fn repeat_tally_against_unreliable_origin() {
    let dir = tempfile::tempdir().unwrap();
    let script = ["200", "403", "silent", "200", "500", "200"];
    let addr = raw_server(move |n, mut stream| {
        if !read_request_head(&mut stream) {
            return;
        }
        let (status, body) = match script[n % script.len()] {
            "200" => ("200 OK", "balance: 100\n"),
            "403" => ("403 Forbidden", "not your account\n"),
            "500" => ("500 Internal Server Error", "database down\n"),
            _ => {
                thread::sleep(Duration::from_secs(2));
                return;
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes());
    });
    let url = format!("http://{addr}/getbalance");
    let run = run_porter(
        &[
            "fetch",
            "--repeat",
            "6",
            "--interval",
            "50ms",
            "--timeout",
            "300ms",
            &url,
        ],
        dir.path(),
        &[],
        None,
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("[1/6] 200 OK  13 B  "),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("[2/6] 403 Forbidden  17 B  "),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with(&format!(
            "[3/6] timed out after 300ms waiting for the response from {addr}"
        )),
        "{}",
        run.stdout
    );
    assert!(
        lines[4].starts_with("[5/6] 500 Internal Server Error  14 B  "),
        "{}",
        run.stdout
    );
    assert_eq!(lines[6], "outcomes of 6 requests:");
    let tally = &lines[7..];
    let row = |label: &str, bar: usize, count: &str| {
        format!("  {label:<25}  {:<30}  {count}", "#".repeat(bar))
    };
    assert_eq!(tally.len(), 4, "{}", run.stdout);
    assert_eq!(tally[0], row("200 OK", 15, "3   50.0%"));
    assert_eq!(tally[1], row("403 Forbidden", 5, "1   16.7%"));
    assert_eq!(tally[2], row("500 Internal Server Error", 5, "1   16.7%"));
    assert_eq!(tally[3], row("timed out", 5, "1   16.7%"));
    assert_eq!(
        run.code,
        Some(1),
        "an attempt without a response fails the run"
    );
    assert!(
        run.stderr.contains("1 of 6 requests got no response"),
        "{}",
        run.stderr
    );
    // The error pages were tallied and logged, not saved.
    assert_eq!(
        file_names(&dir.path().join("Download")),
        ["getbalance", "getbalance (2)", "getbalance (3)"]
    );
    let log = read(dir.path().join("download.log"));
    assert_eq!(log.matches("=== ").count(), 6, "{log}");
    assert!(log.contains("error: timed out after 300ms"), "{log}");
}

#[test]
fn repeat_tally_against_porter_serve_getbalance() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let cookies = dir.path().join("cookies.json");
    let events = dir.path().join("server.log");
    let serve = Porter::start(&[
        "serve",
        "--root",
        root.path().to_str().unwrap(),
        "--cookies",
        cookies.to_str().unwrap(),
        "--event-log",
        events.to_str().unwrap(),
        "--seed",
        "7",
        "--fault-delay",
        "2s",
    ]);
    let url = format!("http://{}/getbalance", serve.addr);
    let run = run_porter(
        &[
            "fetch",
            "--repeat",
            "20",
            "--interval",
            "0ms",
            "--timeout",
            "300ms",
            &url,
        ],
        dir.path(),
        &[],
        None,
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    let attempts = lines.iter().filter(|l| l.starts_with('[')).count();
    assert_eq!(attempts, 20, "{}", run.stdout);
    let tally_at = lines
        .iter()
        .position(|l| *l == "outcomes of 20 requests:")
        .expect("a tally");
    let counts: u32 = lines[tally_at + 1..]
        .iter()
        .map(|row| {
            row.split_whitespace()
                .rev()
                .nth(1)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(counts, 20, "{}", run.stdout);
    // The default mix (20% timeout, 20% 403, 10% 500) shows more than one outcome in 20 tries.
    assert!(lines.len() - tally_at > 2, "{}", run.stdout);
    assert!(
        lines[tally_at + 1..].iter().all(|row| row.contains('%')),
        "{}",
        run.stdout
    );
}
