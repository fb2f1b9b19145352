//! `porter fetch` end to end: naming, HEAD, the log, the repeat tally, proxies (plain, environment,
//! CONNECT + TLS) and every error path, against origins on loopback. `proxies` has the proxy
//! credentials and no_proxy, `outcomes` what a run prints, saves and exits with (cache outcome,
//! --print, error statuses, -L).

mod outcomes;
mod proxies;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::tls::TlsOrigin;
use crate::util::*;

/// `porter fetch <args> -o Download --log download.log` in `dir`.
fn fetch(dir: &Path, args: &[&str]) -> Run {
    fetch_env(dir, args, &[])
}

fn fetch_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut all = vec!["fetch", "--timeout", "5s"];
    all.extend_from_slice(args);
    run_porter(&all, dir, env, None)
}

fn html_origin(html: &'static str) -> Origin {
    Origin::start(move |_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/html; charset=utf-8")]),
            html.as_bytes().to_vec(),
        )
    })
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).expect("saved file")
}

#[test]
fn html_is_saved_under_its_decoded_title_and_duplicates_are_numbered() {
    let dir = tempfile::tempdir().unwrap();
    let page = "<!DOCTYPE html><html><head>\n<title>\n  Tom &amp; Jerry&#39;s Caf&eacute; / AC\\DC\n</title></head><body>hi</body></html>";
    let origin = html_origin(page);
    let want = "Tom & Jerry's Café - AC-DC";
    for expected in [
        format!("{want}.html"),
        format!("{want} (2).html"),
        format!("{want} (3).html"),
    ] {
        let run = fetch(dir.path(), &[&origin.url("/page")]);
        assert!(run.ok(), "{run:?}");
        assert!(
            run.stdout
                .starts_with(&format!("200 X  {} B  ", page.len())),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout
                .trim_end()
                .ends_with(&format!("Download/{expected}")),
            "{}",
            run.stdout
        );
        assert_eq!(read(dir.path().join("Download").join(&expected)), page);
    }
    assert_eq!(
        file_names(&dir.path().join("Download")).len(),
        3,
        "no temp files left"
    );
}

#[test]
fn html_without_title_is_named_by_host_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let origin = html_origin("<html><body><p>no title here</p></body></html>");
    let run = fetch(dir.path(), &[&origin.url("/docs/no-title/")]);
    assert!(run.ok(), "{run:?}");
    let name = format!("127.0.0.1_{}_docs_no-title.html", origin.addr.port());
    assert_eq!(file_names(&dir.path().join("Download")), [name]);
}

#[test]
fn other_responses_keep_the_url_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, path, _| match path {
        "/img/b.png" => (
            200,
            hdrs(&[("Content-Type", "image/png")]),
            b"\x89PNG".to_vec(),
        ),
        "/chunked.txt" => (
            200,
            hdrs(&[
                ("Content-Type", "text/plain"),
                ("Transfer-Encoding", "chunked"),
            ]),
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        ),
        _ => (
            404,
            hdrs(&[("Content-Type", "text/plain")]),
            b"nothing".to_vec(),
        ),
    });
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    for path in ["/img/b.png", "/chunked.txt"] {
        let run = fetch(dir.path(), &["-o", out_arg, &origin.url(path)]);
        assert!(run.ok(), "{run:?}");
    }
    // An error page is saved only when asked for; the status still makes the exit status.
    let run = fetch(
        dir.path(),
        &["-o", out_arg, "--save-errors", &origin.url("/")],
    );
    assert_eq!(run.code, Some(8), "{run:?}");
    assert_eq!(file_names(&out), ["b.png", "chunked.txt", "index.html"]);
    assert_eq!(std::fs::read(out.join("b.png")).unwrap(), b"\x89PNG");
    assert_eq!(read(out.join("chunked.txt")), "hello world");
    assert_eq!(read(out.join("index.html")), "nothing");
}

#[test]
fn head_saves_the_response_head_under_the_get_name_with_head_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "image/png"), ("X-Extra", "kept")]),
            vec![7; 100],
        )
    });
    let run = fetch(dir.path(), &["-X", "HEAD", &origin.url("/a/b.png")]);
    assert!(run.ok(), "{run:?}");
    let head =
        "HTTP/1.1 200 X\r\nContent-Type: image/png\r\nX-Extra: kept\r\nContent-Length: 100\r\n\r\n";
    assert_eq!(file_names(&dir.path().join("Download")), ["b.png.head"]);
    assert_eq!(read(dir.path().join("Download/b.png.head")), head);
    // With --print, the head goes to stdout and nowhere else.
    let printed = tempfile::tempdir().unwrap();
    let run = fetch(
        printed.path(),
        &["-X", "HEAD", "--print", &origin.url("/a/b.png")],
    );
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.stdout, head);
    assert!(file_names(printed.path()).is_empty());
    assert!(origin.requests.lock().unwrap()[0].starts_with("HEAD /a/b.png HTTP/1.1\r\n"));
}

#[test]
fn log_has_url_time_status_line_and_headers_of_each_response() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, path, _| {
        let status = if path == "/missing" { 404 } else { 200 };
        (status, hdrs(&[("X-Custom", "yes")]), b"body".to_vec())
    });
    let log = dir.path().join("logs/fetch.log");
    let log_arg = log.to_str().unwrap();
    assert!(fetch(dir.path(), &["--log", log_arg, &origin.url("/a")]).ok());
    let missing = fetch(dir.path(), &["--log", log_arg, &origin.url("/missing")]);
    assert_eq!(missing.code, Some(8), "{missing:?}");
    let text = read(&log);
    let records: Vec<&str> = text.split("=== ").filter(|r| !r.is_empty()).collect();
    assert_eq!(records.len(), 2, "{text}");
    for (record, (path, status)) in records.iter().zip([("/a", "200 X"), ("/missing", "404 X")]) {
        let lines: Vec<&str> = record.lines().collect();
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.contains('T'),
            "{time}"
        );
        assert_eq!(rest, format!("GET {}", origin.url(path)));
        assert_eq!(lines[1], format!("HTTP/1.1 {status}"));
        assert!(lines.contains(&"X-Custom: yes"), "{record}");
        assert!(lines.contains(&"Content-Length: 4"), "{record}");
    }
}

#[test]
fn print_writes_the_body_alone_to_stdout_and_the_request_line_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            b"printed body\n".to_vec(),
        )
    });
    let run = fetch(dir.path(), &["--print", &origin.url("/p.txt")]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.stdout, "printed body\n");
    assert!(run.stderr.starts_with("200 X  13 B  "), "{}", run.stderr);
}

#[test]
fn large_bodies_stream_intact() {
    let dir = tempfile::tempdir().unwrap();
    const SIZE: usize = 8 << 20;
    let addr = raw_server(|_, mut stream| {
        if !read_request_head(&mut stream) {
            return;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {SIZE}\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
        let block: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
        for _ in 0..SIZE / block.len() {
            if stream.write_all(&block).is_err() {
                return;
            }
        }
    });
    let run = fetch(dir.path(), &[&format!("http://{addr}/big.bin")]);
    assert!(run.ok(), "{run:?}");
    assert!(
        run.stdout.starts_with("200 OK  8.0 MiB  "),
        "{}",
        run.stdout
    );
    let saved = std::fs::read(dir.path().join("Download/big.bin")).unwrap();
    assert_eq!(saved.len(), SIZE);
    assert!(
        saved
            .chunks(256)
            .all(|c| c.iter().enumerate().all(|(i, &b)| b == i as u8))
    );
}

/// An origin like `porter serve`'s /getbalance: each request in turn gets 200, 403 or 500, or is held
/// silent past the client's timeout. Point this test at `porter serve` once it exists.
#[test]
fn fetches_through_porter_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let origin = html_origin("<title>Via the proxy</title>");
    let proxy = Porter::start(&["proxy", "--no-cache"]);
    let proxy_addr = proxy.addr.to_string();
    let run = fetch(dir.path(), &["--proxy", &proxy_addr, &origin.url("/x")]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        file_names(&dir.path().join("Download")),
        ["Via the proxy.html"]
    );
    let seen = origin.requests.lock().unwrap()[0].clone();
    assert!(
        seen.contains("Via: 1.1 porter-"),
        "went through the proxy: {seen}"
    );
}

#[test]
fn http_proxy_environment_variable_is_honoured_and_no_proxy_skips_it() {
    let dir = tempfile::tempdir().unwrap();
    let origin = html_origin("<title>env</title>");
    let proxy = Porter::start(&["proxy", "--no-cache"]);
    let env_value = format!("http://{}/", proxy.addr);
    let run = fetch_env(
        dir.path(),
        &[&origin.url("/")],
        &[("http_proxy", &env_value)],
    );
    assert!(run.ok(), "{run:?}");
    assert!(origin.requests.lock().unwrap()[0].contains("Via: 1.1 porter-"));

    let dead = format!("127.0.0.1:{}", closed_port());
    let run = fetch_env(dir.path(), &[&origin.url("/")], &[("HTTP_PROXY", &dead)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("connection refused by the proxy {dead}")),
        "{}",
        run.stderr
    );
    let run = fetch_env(
        dir.path(),
        &["--no-proxy", &origin.url("/")],
        &[("HTTP_PROXY", &dead)],
    );
    assert!(run.ok(), "{run:?}");
    assert!(
        !origin.requests.lock().unwrap()[1].contains("Via:"),
        "went direct"
    );
}

#[test]
fn https_through_connect_with_cacert_and_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TlsOrigin::start(b"<title>Secure &amp; sound</title>".to_vec());
    let ca = origin.write_ca(dir.path());
    let port = origin.addr.port().to_string();
    let proxy = Porter::start(&["proxy", "--no-cache", "--connect-port", &port]);
    let proxy_addr = proxy.addr.to_string();
    let url = origin.url("/secure");

    let run = fetch(
        dir.path(),
        &[
            "--proxy",
            &proxy_addr,
            "--cacert",
            ca.to_str().unwrap(),
            &url,
        ],
    );
    assert!(run.ok(), "{run:?}");
    assert!(run.stdout.starts_with("200 OK  "), "{}", run.stdout);
    let run = fetch(dir.path(), &["--proxy", &proxy_addr, "--insecure", &url]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        file_names(&dir.path().join("Download")),
        ["Secure & sound (2).html", "Secure & sound.html"]
    );
    assert_eq!(origin.hits(), 2);

    let run = fetch(dir.path(), &["--proxy", &proxy_addr, &url]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("invalid peer certificate"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--cacert"), "{}", run.stderr);
    assert_eq!(origin.hits(), 2, "no request after a failed handshake");
}

#[test]
fn https_direct_without_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TlsOrigin::start(b"<title>direct</title>".to_vec());
    let ca = origin.write_ca(dir.path());
    let url = format!("https://localhost:{}/", origin.addr.port());
    let run = fetch(dir.path(), &["--cacert", ca.to_str().unwrap(), &url]);
    assert!(run.ok(), "{run:?}");
    assert_eq!(file_names(&dir.path().join("Download")), ["direct.html"]);
}

#[test]
fn connection_refused_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let run = fetch(dir.path(), &[&format!("http://127.0.0.1:{port}/")]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        format!("porter: connection refused by 127.0.0.1:{port}: is the server running there?")
    );
    assert!(run.stdout.is_empty());
    let log = read(dir.path().join("download.log"));
    assert!(log.contains("error: connection refused"), "{log}");
}

#[test]
fn dns_failure_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = fetch(dir.path(), &["http://porter-test.invalid/"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .starts_with("porter: cannot resolve host \"porter-test.invalid\""),
        "{}",
        run.stderr
    );
}

#[test]
fn silent_server_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let addr = raw_server(|_, mut stream| {
        read_request_head(&mut stream);
        thread::sleep(Duration::from_secs(2));
    });
    let run = run_porter(
        &[
            "fetch",
            "--timeout",
            "300ms",
            &format!("http://{addr}/slow"),
        ],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        format!("porter: timed out after 300ms waiting for the response from {addr}")
    );
}

#[test]
fn bad_urls_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (url, message) in [
        // Without `://` a URL is http:// (as in curl), so this is a host name with spaces.
        (
            "not a url",
            "porter: bad url \"not a url\": the host name holds a character a host name cannot",
        ),
        (
            "ftp://example.com/f",
            "porter: bad url \"ftp://example.com/f\": the \"ftp\" scheme is not supported",
        ),
        ("http://", "porter: bad url \"http://\": it has no host"),
    ] {
        let run = fetch(dir.path(), &[url]);
        assert_eq!(run.code, Some(1), "{url}");
        assert!(run.stderr.starts_with(message), "{url}: {}", run.stderr);
    }
}

#[test]
fn proxy_refusals_are_errors_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let origin = html_origin("<title>forbidden fruit</title>");
    let proxy = Porter::start(&["proxy", "--no-cache", "--deny-host", "127.0.0.1"]);
    let proxy_addr = proxy.addr.to_string();
    let run = fetch(dir.path(), &["--proxy", &proxy_addr, &origin.url("/")]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        format!(
            "porter: the proxy {proxy_addr} answered 403 Forbidden: access to 127.0.0.1 is denied by the rule --deny-host 127.0.0.1"
        )
    );
    assert_eq!(origin.hits(), 0);
    assert!(file_names(&dir.path().join("Download")).is_empty());
    assert!(read(dir.path().join("download.log")).contains("HTTP/1.1 403 Forbidden"));

    // CONNECT to a port the proxy does not allow (only 443 by default).
    let tls = TlsOrigin::start(b"x".to_vec());
    let run = fetch(
        dir.path(),
        &["--proxy", &proxy_addr, "--insecure", &tls.url("/")],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "the proxy {proxy_addr} answered 403 Forbidden: CONNECT to port"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn truncated_body_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let addr = raw_server(move |_, mut stream| {
        if read_request_head(&mut stream) {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
            counter.fetch_add(1, Ordering::SeqCst);
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let run = fetch(dir.path(), &[&format!("http://{addr}/cut.bin")]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stderr.trim(),
        "porter: the response body ended after 10 of 100 bytes"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert!(
        file_names(&dir.path().join("Download")).is_empty(),
        "no partial file"
    );
}
