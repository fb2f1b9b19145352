//! Porter as a browser meets it: a CONNECT tunnel carrying a real TLS session, then headless Chromium
//! loading pages (HTML, two images, a script) through the proxy over HTTP and, tunnelled, over HTTPS.
//!
//! The Chromium test skips (and says so on stderr) where no `chromium` is installed, and fails
//! under `PORTER_CI=1` (`util::require_tool`); `.ci/run` installs Debian's package and sets it. Nothing leaves the machine: Chromium's own host
//! resolver answers "not found" for every name but 127.0.0.1, and the proxy refuses the hosts of
//! Chromium's background requests with `--deny-host` before it looks them up.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use crate::intercept::{open_tunnel, trusting};
use crate::tls::TlsOrigin;
use crate::util::*;

/// How long one Chromium run may take before it is killed and the test fails.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(60);

/// The access log lines (the `porter::access` target) in `logs`.
fn access_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|line| line.contains("porter::access"))
        .collect()
}

/// The outcome (last field) of the first access line for `method url`, if there is one.
fn outcome_of<'a>(logs: &'a str, method: &str, url: &str) -> Option<&'a str> {
    let needle = format!(" {method} {url} ");
    access_lines(logs)
        .into_iter()
        .find(|line| line.contains(&needle))
        .and_then(|line| line.split_whitespace().last())
}

#[test]
fn connect_tunnel_reaches_a_local_tls_origin() {
    let origin = TlsOrigin::start_with(|method, path, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            format!("{method} {path} over TLS").into_bytes(),
        )
    });
    let port = origin.addr.port();
    let closed = closed_port();
    let proxy = Porter::start(&[
        "proxy",
        "--no-cache",
        "--connect-port",
        &port.to_string(),
        "--connect-port",
        &closed.to_string(),
    ]);

    let target = format!("127.0.0.1:{port}");
    let (tcp, head) = open_tunnel(proxy.addr, &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = ClientConnection::new(trusting(&origin.ca_pem), name).expect("client");
    let mut stream = StreamOwned::new(tls, tcp);
    write!(
        stream,
        "GET /inside HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("the response, then close_notify");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.ends_with("\r\n\r\nGET /inside over TLS"),
        "{response}"
    );
    assert_eq!(origin.hits(), 1);
    drop(stream);

    // The tunnel is logged once it closes, with the bytes relayed.
    let logged = eventually(Duration::from_secs(5), || {
        outcome_of(&proxy.logs(), "CONNECT", &target) == Some("TUNNEL")
    });
    assert!(logged, "no CONNECT ... TUNNEL line:\n{}", proxy.logs());

    // A port not named by --connect-port is refused before any connection is tried.
    let response = raw_request(
        proxy.addr,
        b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("CONNECT to port 9 is not allowed"));

    // An allowed port where nothing listens: the origin side failed, so 502.
    let target = format!("127.0.0.1:{closed}");
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let response = raw_request(proxy.addr, request.as_bytes()).unwrap();
    assert_eq!(response.status, 502, "{}", response.text());
}

/// Runs headless Chromium through `proxy` on `url` with a fresh profile and returns the DOM it
/// dumped. Killed, with its whole process group, if it runs past `CHROMIUM_LIMIT`.
fn chromium_dump_dom(
    chromium: &Path,
    proxy: std::net::SocketAddr,
    url: &str,
    extra: &[&str],
) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    chromium_dump_dom_in(chromium, proxy, url, extra, profile.path())
}

/// Like `chromium_dump_dom`, with `home` as HOME (and the profile inside it), so a test can prepare
/// an NSS database there first.
pub fn chromium_dump_dom_in(
    chromium: &Path,
    proxy: std::net::SocketAddr,
    url: &str,
    extra: &[&str],
    home: &Path,
) -> String {
    let profile = tempfile::tempdir_in(home).expect("profile dir");
    let stdout_path = profile.path().join("dom.html");
    let stderr_path = profile.path().join("chromium.log");
    let user_data = profile.path().join("user-data");
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", user_data.display()))
        .arg(format!("--proxy-server={proxy}"))
        // Chromium sends loopback requests direct unless told otherwise; this test is about the proxy.
        .arg("--proxy-bypass-list=<-loopback>")
        // Chromium resolves some names itself (HTTPS records) even behind a proxy: let it resolve none.
        .arg("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
        .args(extra)
        .arg("--dump-dom")
        .arg(url)
        // Its NSS database and any other dotfiles land in the temporary folder, not the user's home.
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_CACHE_HOME")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        // Its own process group, so a timeout can end the renderers and helpers with it.
        .process_group(0);
    let mut child = command.spawn().expect("chromium starts");
    let deadline = Instant::now() + CHROMIUM_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_LIMIT:?} on {url}:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let dom = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium exited with {status} on {url}:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    dom
}

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Porter browser test</title></head>
<body>
<h1>Through the proxy</h1>
<img src="porter.png" alt="a PNG"> <img src="harbour.jpg" alt="a JPEG">
<script src="mark.js"></script>
</body></html>
"#;

/// Written into the DOM only if the script was fetched and ran.
const MARK: &str = "script ran through porter";

const SCRIPT: &str = r#"var p = document.createElement("p");
p.id = "mark";
p.textContent = "script ran" + " through porter";
document.body.appendChild(p);
"#;

/// A folder for `porter serve`: the page, the script and the demo site's PNG and JPEG, all dated ten
/// days back so that heuristic freshness (a tenth of that age, RFC 9111 §4.2.2) lets the proxy serve
/// them from its cache on the second visit.
fn write_site(root: &Path) {
    let www = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/www");
    std::fs::write(root.join("index.html"), PAGE).unwrap();
    std::fs::write(root.join("mark.js"), SCRIPT).unwrap();
    for image in ["porter.png", "harbour.jpg"] {
        std::fs::copy(www.join(image), root.join(image)).unwrap();
    }
    let past = SystemTime::now() - Duration::from_secs(10 * 24 * 3600);
    for name in ["index.html", "mark.js", "porter.png", "harbour.jpg"] {
        let file = std::fs::File::options()
            .write(true)
            .open(root.join(name))
            .unwrap();
        file.set_modified(past).unwrap();
    }
}

/// Every proxied request for a host other than 127.0.0.1 (Chromium's background traffic) must have
/// been refused by `--deny-host`, never forwarded.
fn assert_nothing_left_the_machine(logs: &str) {
    for line in access_lines(logs) {
        // A porter line ends `URL STATUS BYTES OUTCOME`, then optional `detail=…` and `user=…`.
        let fields: Vec<&str> = line
            .split_whitespace()
            .filter(|f| !f.starts_with("detail=") && !f.starts_with("user="))
            .collect();
        let url = fields[fields.len() - 4];
        let outcome = fields[fields.len() - 1];
        let local = url.starts_with("http://127.0.0.1:")
            || url.starts_with("127.0.0.1:")
            || url.starts_with('/')
            || url == "-";
        assert!(
            local || outcome == "DENIED",
            "chromium asked for an outside host and the proxy forwarded it (add a --deny-host): {line}"
        );
    }
}

#[test]
fn headless_chromium_renders_pages_through_the_proxy() {
    let Some(chromium) = require_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir(&root).unwrap();
    write_site(&root);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let serve = Porter::start(&[
        "serve",
        "--root",
        &path("www"),
        "--cookies",
        &path("cookies.json"),
        "--event-log",
        &path("server.log"),
    ]);
    let tls = TlsOrigin::start(
        b"<!DOCTYPE html><html><head><title>Porter over TLS</title></head><body>tunnelled</body></html>"
            .to_vec(),
    );
    let tls_port = tls.addr.port().to_string();
    let mut args = vec!["proxy", "--cache-dir", "cache", "--connect-port", &tls_port];
    // Chromium's background requests (time, accounts, search preconnects) go to these; refusing them
    // by name means the proxy never looks them up.
    for tld in [
        "*.com", "*.net", "*.org", "*.goog", "*.dev", "*.app", "*.io",
    ] {
        args.extend(["--deny-host", tld]);
    }
    let proxy = Porter::start_in(&args, Some(dir.path()));

    // First visit: everything is fetched through the proxy and stored.
    let base = format!("http://{}", serve.addr);
    let page = format!("{base}/");
    let dom = chromium_dump_dom(&chromium, proxy.addr, &page, &[]);
    assert!(dom.contains("<title>Porter browser test</title>"), "{dom}");
    assert!(dom.contains(MARK), "the script did not run:\n{dom}");
    let subresources =
        ["porter.png", "harbour.jpg", "mark.js"].map(|name| format!("{base}/{name}"));
    let all_logged = |logs: &str| {
        std::iter::once(&page)
            .chain(&subresources)
            .all(|url| outcome_of(logs, "GET", url).is_some())
    };
    assert!(
        eventually(Duration::from_secs(5), || all_logged(&proxy.logs())),
        "the proxy did not see the page, the images and the script:\n{}",
        proxy.logs()
    );
    let logs = proxy.logs();
    for url in std::iter::once(&page).chain(&subresources) {
        assert_eq!(outcome_of(&logs, "GET", url), Some("MISS"), "{url}\n{logs}");
    }

    // Second visit with a fresh profile, so nothing comes from Chromium's own cache: the images and
    // the script are proxy hits. (The page itself revalidates: it set a visitor cookie.)
    let seen = logs.len();
    let dom = chromium_dump_dom(&chromium, proxy.addr, &page, &[]);
    assert!(dom.contains(MARK), "{dom}");
    assert!(
        eventually(Duration::from_secs(5), || all_logged(&proxy.logs()[seen..])),
        "{}",
        proxy.logs()
    );
    let logs = proxy.logs();
    for url in &subresources {
        assert_eq!(
            outcome_of(&logs[seen..], "GET", url),
            Some("HIT"),
            "{url}\n{logs}"
        );
    }

    // HTTPS: a CONNECT tunnel to the TLS origin, whose test certificate Chromium is told to accept.
    let dom = chromium_dump_dom(
        &chromium,
        proxy.addr,
        &tls.url("/"),
        &["--ignore-certificate-errors"],
    );
    assert!(dom.contains("<title>Porter over TLS</title>"), "{dom}");
    assert!(tls.hits() >= 1);
    let target = format!("127.0.0.1:{tls_port}");
    assert!(
        eventually(Duration::from_secs(5), || {
            outcome_of(&proxy.logs(), "CONNECT", &target) == Some("TUNNEL")
        }),
        "no CONNECT {target} ... TUNNEL line:\n{}",
        proxy.logs()
    );
    assert_nothing_left_the_machine(&proxy.logs());
}
