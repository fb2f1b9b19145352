//! The proxy's own pages under proxy authentication (the PAC file open, the status page and metrics
//! behind `Authorization: Basic`), and the status page itself: its figures against `/metrics`, and
//! headless Chromium rendering it to a screenshot kept in `target/tmp/` as a test artefact.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::deploy::{basic, metric};
use crate::util::*;

fn get(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw_request(addr, request.as_bytes()).expect("a response")
}

#[test]
fn regression_the_pac_file_answered_407_under_proxy_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--auth-user",
        "alice:pw",
        "--intercept",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
    ]);
    let pac = get(porter.addr, "/proxy.pac", &[]);
    assert_eq!(pac.status, 200);
    assert!(pac.text().contains("FindProxyForURL"));
    let ca = get(porter.addr, "/ca.pem", &[]);
    assert_eq!(ca.status, 200);
    assert!(ca.text().contains("BEGIN CERTIFICATE") && !ca.text().contains("PRIVATE"));
    let status = get(porter.addr, "/", &[]);
    assert_eq!(status.status, 401);
    assert!(
        status
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = basic("alice:wrong");
    assert_eq!(
        get(porter.addr, "/metrics", &[("Authorization", &wrong)]).status,
        401
    );
    let alice = basic("alice:pw");
    assert_eq!(
        get(porter.addr, "/", &[("Authorization", &alice)]).status,
        200
    );
    let metrics = get(porter.addr, "/metrics", &[("Authorization", &alice)]);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("porter_requests_total"));
    // Through the proxy, proxy credentials still rule.
    assert_eq!(
        proxy_get(porter.addr, "http://127.0.0.1:9/", &[]).status,
        407
    );
    // Without auth the pages stay open to allowed clients.
    let open = Porter::start(&["proxy", "--no-cache"]);
    assert_eq!(get(open.addr, "/", &[]).status, 200);
    assert_eq!(get(open.addr, "/metrics", &[]).status, 200);
}

/// The text of the element with `id` in an HTML page.
fn by_id<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[start + id.len() + 6..];
    &rest[..rest.find('<').unwrap()]
}

/// Traffic of every kind: a miss, two hits, a tunnel, a denial and an origin error.
fn make_traffic(porter: &Porter, origin: &Origin, tunnel: std::net::SocketAddr) {
    for _ in 0..3 {
        assert_eq!(
            proxy_get(porter.addr, &origin.url("/cached"), &[]).status,
            200
        );
    }
    assert_eq!(
        proxy_get(porter.addr, "http://denied.test/", &[]).status,
        403
    );
    let url = format!("http://127.0.0.1:{}/", closed_port());
    assert_eq!(proxy_get(porter.addr, &url, &[]).status, 502);
    let request = format!("CONNECT {tunnel} HTTP/1.1\r\nHost: {tunnel}\r\n\r\n");
    let mut stream = connect(porter.addr);
    stream.write_all(request.as_bytes()).unwrap();
    let response = read_response(&mut std::io::BufReader::new(stream), true).unwrap();
    assert_eq!(response.status, 200);
    // A tunnel is counted when it closes (the client hung up above; the origin after a second).
    assert!(eventually(Duration::from_secs(10), || {
        let metrics = get(porter.addr, "/metrics", &[]).text();
        metric(&metrics, "porter_requests_total{outcome=\"tunnel\"}") == Some(1)
    }));
}

fn cached_origin() -> Origin {
    Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[
                ("Content-Type", "text/plain"),
                ("Cache-Control", "max-age=300"),
            ]),
            vec![b'x'; 3000],
        )
    })
}

/// A proxy with a cache, a deny rule, and CONNECT allowed to `tunnel`.
fn start_proxy(dir: &Path, tunnel: std::net::SocketAddr) -> Porter {
    Porter::start(&[
        "proxy",
        "--cache-dir",
        dir.join("cache").to_str().unwrap(),
        "--deny-host",
        "denied.test",
        "--connect-port",
        &tunnel.port().to_string(),
    ])
}

#[test]
fn the_status_page_figures_match_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let origin = cached_origin();
    let tunnel = raw_server(|_, _| thread::sleep(Duration::from_secs(1)));
    let porter = start_proxy(dir.path(), tunnel);
    make_traffic(&porter, &origin, tunnel);
    // A request is counted just after its response is written, so another connection's request can
    // overtake the count: give the last one a moment before each page is rendered.
    let settle = || thread::sleep(Duration::from_millis(300));
    settle();
    let page = get(porter.addr, "/", &[]);
    assert_eq!(page.status, 200);
    let html = page.text();
    settle();
    let metrics = get(porter.addr, "/metrics", &[]).text();
    for outcome in [
        "hit",
        "miss",
        "revalidated",
        "pass",
        "tunnel",
        "denied",
        "error",
    ] {
        let series = format!("porter_requests_total{{outcome=\"{outcome}\"}}");
        assert_eq!(
            by_id(&html, &format!("outcome-{outcome}"))
                .parse::<u64>()
                .ok(),
            metric(&metrics, &series),
            "{outcome}"
        );
    }
    // /metrics also counts the status page request that came before it.
    let local = metric(&metrics, "porter_requests_total{outcome=\"local\"}").unwrap();
    assert_eq!(
        by_id(&html, "outcome-local").parse::<u64>().unwrap() + 1,
        local
    );
    let (hits, misses) = (
        metric(&metrics, "porter_requests_total{outcome=\"hit\"}").unwrap(),
        metric(&metrics, "porter_requests_total{outcome=\"miss\"}").unwrap(),
    );
    assert_eq!((hits, misses), (2, 1));
    assert_eq!(by_id(&html, "hit-ratio"), "66.7%");
    let hit_bytes = metric(&metrics, "porter_outcome_sent_bytes_total{outcome=\"hit\"}").unwrap();
    let miss_bytes = metric(
        &metrics,
        "porter_outcome_sent_bytes_total{outcome=\"miss\"}",
    )
    .unwrap();
    let byte_ratio = 100.0 * hit_bytes as f64 / (hit_bytes + miss_bytes) as f64;
    assert_eq!(by_id(&html, "byte-hit-ratio"), format!("{byte_ratio:.1}%"));
    assert_eq!(by_id(&html, "listen"), porter.addr.to_string());
    assert_eq!(by_id(&html, "version"), env!("CARGO_PKG_VERSION"));
    assert!(
        html.contains("<td>127.0.0.1</td>"),
        "the busiest hosts: {html}"
    );
    assert!(html.contains("http-equiv=\"refresh\""));
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=FILE`); returns stdout.
fn chromium(chromium: &Path, url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let stdout_path = profile.path().join("stdout");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1100,1000",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("data").display()
        ))
        .arg(mode)
        .arg(url)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {url}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "chromium exited with {status}");
    std::fs::read_to_string(&stdout_path).unwrap_or_default()
}

#[test]
fn a_browser_renders_the_status_page_and_a_screenshot_is_kept() {
    let Some(browser) = require_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let origin = cached_origin();
    let tunnel = raw_server(|_, _| thread::sleep(Duration::from_secs(1)));
    let porter = start_proxy(dir.path(), tunnel);
    make_traffic(&porter, &origin, tunnel);
    let url = format!("http://{}/", porter.addr);
    let dom = chromium(&browser, &url, "--dump-dom");
    for text in [
        "Porter",
        "hit ratio (requests)",
        "Busiest hosts",
        "cache hits",
        "tunnels (CONNECT)",
    ] {
        assert!(dom.contains(text), "{text} missing from {dom}");
    }
    assert_eq!(by_id(&dom, "outcome-hit"), "2");
    assert_eq!(by_id(&dom, "hit-ratio"), "66.7%");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&browser, &url, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn regression_rejected_requests_and_purges_with_junk_hosts_stay_out_of_the_busiest_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, _, _| (200, hdrs(&[]), b"ok".to_vec()));
    let porter = Porter::start(&[
        "proxy",
        "--cache-dir",
        dir.path().to_str().unwrap(),
        "--deny-host",
        "*.junk",
    ]);
    let real = origin.url("/");
    assert_eq!(proxy_get(porter.addr, &real, &[]).status, 200);
    // Refused (403 by --deny-host) and PURGE requests, each with its own long junk host name.
    let (mut writer, mut reader) = connect_split(porter.addr);
    for i in 0..300 {
        let host = format!("h{i}-{}.junk", "x".repeat(2000));
        let method = if i % 2 == 0 { "GET" } else { "PURGE" };
        write!(
            writer,
            "{method} http://{host}/ HTTP/1.1\r\nHost: {host}\r\n\r\n"
        )
        .unwrap();
        let answer = read_response(&mut reader, false).expect("an answer");
        assert!(
            answer.status == 403 || answer.status == 404,
            "{}",
            answer.status
        );
    }
    let html = get(porter.addr, "/", &[]).text();
    let start = html.find("id=\"hosts\"").expect("a hosts table");
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    assert!(
        !table.contains("junk") && !table.contains("(other)"),
        "{table}"
    );
    assert!(table.contains("<td>127.0.0.1</td>"), "{table}");
}
