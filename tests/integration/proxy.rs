//! `porter proxy` end to end: forwarding, framing, keep-alive, errors, access rules, own pages.

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use crate::util::*;

fn proxy() -> Porter {
    Porter::start(&["proxy", "--no-cache"])
}

fn text_origin() -> Origin {
    Origin::start(|method, path, headers| {
        let echo: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            format!("{method} {path}\n{echo}").into_bytes(),
        )
    })
}

#[test]
fn forwards_get_and_rewrites_headers() {
    let origin = text_origin();
    let porter = proxy();
    let response = proxy_get(
        porter.addr,
        &origin.url("/hello?x=1"),
        &[
            ("Proxy-Connection", "keep-alive"),
            ("Connection", "X-Private"),
            ("X-Private", "secret"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ],
    );
    assert_eq!(response.status, 200);
    let seen = origin.requests.lock().unwrap()[0].clone();
    assert!(seen.starts_with("GET /hello?x=1 HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains(&format!("Host: {}", origin.addr)), "{seen}");
    assert!(seen.contains("Via: 1.1 porter-"), "{seen}");
    // `--forwarded-for on`, the default, names the client (`transparent` adds nothing).
    assert!(seen.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{seen}");
    for hop in ["Proxy-Connection", "X-Private", "Proxy-Authorization"] {
        assert!(!seen.contains(hop), "{hop} leaked upstream: {seen}");
    }
    assert!(response.header("via").unwrap().contains("porter-"));
}

#[test]
fn absolute_uri_authority_wins_over_host() {
    let origin = text_origin();
    let porter = proxy();
    let response = proxy_get(porter.addr, &origin.url("/"), &[]);
    assert_eq!(response.status, 200);
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        origin.url("/x")
    );
    let response = raw_request(porter.addr, raw.as_bytes()).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains(&format!("Host: {}", origin.addr)),
        "{}",
        response.text()
    );
}

#[test]
fn keeps_client_connections_alive_across_requests() {
    let origin = text_origin();
    let porter = proxy();
    let (mut writer, mut reader) = connect_split(porter.addr);
    for i in 0..5 {
        write!(
            writer,
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            origin.url(&format!("/{i}"))
        )
        .unwrap();
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.status, 200);
        assert!(response.text().starts_with(&format!("GET /{i}")));
    }
    // Pipelined: two requests in one write, two responses in order.
    write!(
        writer,
        "GET {u}a HTTP/1.1\r\nHost: x\r\n\r\nGET {u}b HTTP/1.1\r\nHost: x\r\n\r\n",
        u = origin.url("/")
    )
    .unwrap();
    assert!(
        read_response(&mut reader, false)
            .unwrap()
            .text()
            .starts_with("GET /a")
    );
    assert!(
        read_response(&mut reader, false)
            .unwrap()
            .text()
            .starts_with("GET /b")
    );
}

#[test]
fn streams_request_bodies_both_framings_and_expect_continue() {
    let origin = Origin::start(|_, _, _| (201, vec![], b"stored".to_vec()));
    let porter = proxy();
    let body = "x".repeat(100_000);
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        origin.url("/upload"),
        body.len()
    );
    assert_eq!(
        raw_request(porter.addr, raw.as_bytes()).unwrap().status,
        201
    );
    assert!(origin.requests.lock().unwrap()[0].ends_with(&body));

    let raw = format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        origin.url("/chunked")
    );
    assert_eq!(
        raw_request(porter.addr, raw.as_bytes()).unwrap().status,
        201
    );
    assert!(origin.requests.lock().unwrap()[1].ends_with("hello world"));

    // Expect: 100-continue: the client waits for 100 before sending its body.
    let mut stream = connect(porter.addr);
    write!(stream, "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", origin.url("/e")).unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"ping").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 201);
    assert!(origin.requests.lock().unwrap()[2].ends_with("ping"));
}

#[test]
fn relays_chunked_and_close_delimited_responses() {
    // An origin speaking raw bytes: chunked, then close-delimited.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let reply: &[u8] = if i == 0 {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
            } else {
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
            };
            let _ = stream.write_all(reply);
        }
    });
    let porter = proxy();
    let response = proxy_get(porter.addr, &format!("http://{addr}/chunked"), &[]);
    assert_eq!(response.body, b"abcdefg");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    // A close-delimited body reaches an HTTP/1.1 client chunked, so its connection can stay open.
    let response = proxy_get(porter.addr, &format!("http://{addr}/close"), &[]);
    assert_eq!(response.body, b"until the end");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
}

#[test]
fn head_204_and_304_have_no_body() {
    let origin = Origin::start(|_, path, _| match path {
        "/204" => (204, vec![], vec![]),
        "/304" => (304, hdrs(&[("ETag", "\"v1\"")]), vec![]),
        _ => (
            200,
            hdrs(&[("Content-Length", "11")]),
            b"hello world".to_vec(),
        ),
    });
    let porter = proxy();
    let (mut writer, mut reader) = connect_split(porter.addr);
    write!(
        writer,
        "HEAD {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/file")
    )
    .unwrap();
    let head = read_response(&mut reader, true).unwrap();
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("11"))
    );
    for path in ["/204", "/304"] {
        write!(
            writer,
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            origin.url(path)
        )
        .unwrap();
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.status.to_string(), path[1..]);
    }
    // The connection is still in step: a normal GET after the bodiless responses.
    write!(
        writer,
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/file")
    )
    .unwrap();
    assert_eq!(
        read_response(&mut reader, false).unwrap().body,
        b"hello world"
    );
}

#[test]
fn origin_failures_are_502_and_504() {
    let porter = Porter::start(&["proxy", "--no-cache", "--origin-timeout", "500ms"]);
    // Refused: nothing listens on a port we just released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        proxy_get(porter.addr, &format!("http://{closed}/"), &[]).status,
        502
    );
    // Never answers: accepts and stays silent.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let response = proxy_get(porter.addr, &format!("http://{silent_addr}/"), &[]);
    assert_eq!(response.status, 504);
    assert!(response.text().contains("did not answer in time"));
    drop(silent);
    // Garbage instead of HTTP.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in garbage.incoming() {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
        }
    });
    assert_eq!(
        proxy_get(porter.addr, &format!("http://{garbage_addr}/"), &[]).status,
        502
    );
    // Unknown host name.
    assert_eq!(
        proxy_get(porter.addr, "http://no-such-host.invalid/", &[]).status,
        502
    );
}

#[test]
fn malformed_and_oversized_requests_get_4xx() {
    let porter = proxy();
    let long_uri = format!(
        "GET http://127.0.0.1/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(10_000)
    );
    let huge_header = format!(
        "GET http://127.0.0.1/ HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET http://127.0.0.1/ HTTP/1.1\r\n{}\r\n",
        "X: y\r\n".repeat(101)
    );
    let cases: Vec<(&[u8], u16)> = vec![
        (b"garbage\r\n\r\n", 400),
        (b"GET http://127.0.0.1/ HTTP/2.0\r\n\r\n", 505),
        (long_uri.as_bytes(), 414),
        (huge_header.as_bytes(), 431),
        (many_headers.as_bytes(), 431),
        (b"GET http://127.0.0.1/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET ftp://example.com/ HTTP/1.1\r\n\r\n", 501),
        (b"GET https://example.com/ HTTP/1.1\r\n\r\n", 501),
        (b"GET http:/// HTTP/1.1\r\n\r\n", 400),
    ];
    for (raw, status) in cases {
        let response = raw_request(porter.addr, raw).unwrap();
        assert_eq!(
            response.status,
            status,
            "{}",
            String::from_utf8_lossy(&raw[..raw.len().min(60)])
        );
        assert!(
            response.text().contains("<html>"),
            "error pages have an HTML body"
        );
    }
    // The proxy still serves after all that.
    assert_eq!(
        raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn deny_host_and_connect_port_rules() {
    let origin = text_origin();
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--deny-host",
        "*.blocked.test",
        "--deny-host",
        "127.0.0.1",
    ]);
    let response = proxy_get(porter.addr, &origin.url("/"), &[]);
    assert_eq!(response.status, 403);
    assert!(response.text().contains("--deny-host 127.0.0.1"));
    let response = proxy_get(porter.addr, "http://ads.blocked.test/", &[]);
    assert_eq!(response.status, 403);
    assert_eq!(origin.hits(), 0);
    let response = raw_request(
        porter.addr,
        b"CONNECT localhost:25 HTTP/1.1\r\nHost: localhost:25\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response.status, 403);
}

#[test]
fn clients_outside_allow_are_refused() {
    // Only 10.0.0.0/8 allowed: our loopback client is outside it.
    let porter = Porter::start(&["proxy", "--no-cache", "--allow", "10.0.0.0/8"]);
    let response = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(response.status, 403);
    assert!(eventually(Duration::from_secs(5), || porter
        .logs()
        .contains("refused 127.0.0.1")));
}

#[test]
fn own_pages_status_metrics_and_pac() {
    let porter = proxy();
    let status = raw_request(porter.addr, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(status.status, 200);
    assert!(status.text().contains("requests in progress"));
    let metrics = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        metrics
            .text()
            .contains("porter_requests_total{outcome=\"local\"}")
    );
    let pac = raw_request(
        porter.addr,
        b"GET /proxy.pac HTTP/1.1\r\nHost: proxy.lan:3128\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        pac.header("content-type"),
        Some("application/x-ns-proxy-autoconfig")
    );
    assert!(pac.text().contains("PROXY proxy.lan:3128"));
    assert_eq!(
        raw_request(porter.addr, b"GET /nope HTTP/1.1\r\n\r\n")
            .unwrap()
            .status,
        404
    );
    // An absolute-form request naming the proxy itself is its own page, never a loop.
    let own = format!("GET http://{}/metrics HTTP/1.1\r\n\r\n", porter.addr);
    assert_eq!(
        raw_request(porter.addr, own.as_bytes()).unwrap().status,
        200
    );
}

#[test]
fn access_log_has_one_line_per_request() {
    let origin = text_origin();
    let porter = proxy();
    proxy_get(porter.addr, &origin.url("/logged"), &[]);
    let url = origin.url("/logged");
    assert!(eventually(Duration::from_secs(5), || porter
        .logs()
        .lines()
        .any(|l| l.contains("porter::access")
            && l.contains(&format!("GET {url} 200"))
            && l.ends_with("PASS"))));
}

#[test]
fn basic_proxy_authentication() {
    let origin = text_origin();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    std::fs::write(&file, "# team\ncarol:from-file\n").unwrap();
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--auth-user",
        "alice:s3cret",
        "--auth-file",
        file.to_str().unwrap(),
    ]);
    let denied = proxy_get(porter.addr, &origin.url("/"), &[]);
    assert_eq!(denied.status, 407);
    assert!(
        denied
            .header("proxy-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );
    let wrong = proxy_get(
        porter.addr,
        &origin.url("/"),
        &[("Proxy-Authorization", "Basic YWxpY2U6d3Jvbmc=")],
    );
    assert_eq!(wrong.status, 407);
    assert_eq!(origin.hits(), 0);
    // alice:s3cret and carol:from-file
    for token in ["YWxpY2U6czNjcmV0", "Y2Fyb2w6ZnJvbS1maWxl"] {
        let ok = proxy_get(
            porter.addr,
            &origin.url("/"),
            &[("Proxy-Authorization", &format!("Basic {token}"))],
        );
        assert_eq!(ok.status, 200);
        assert!(
            !ok.text()
                .to_ascii_lowercase()
                .contains("proxy-authorization"),
            "never forwarded"
        );
    }
    let connect = raw_request(porter.addr, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(connect.status, 407);
    assert!(
        !porter.logs().contains("s3cret") && !porter.logs().contains("YWxpY2U6czNjcmV0"),
        "never logged"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["proxy", "--auth-user", "nopassword"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("USER:PASSWORD"));
}

#[test]
fn max_forwards_and_via_loops() {
    let origin = text_origin();
    let porter = proxy();
    let trace = format!(
        "TRACE {} HTTP/1.1\r\nMax-Forwards: 0\r\nCookie: secret\r\nX-Mine: 1\r\nConnection: close\r\n\r\n",
        origin.url("/t")
    );
    let response = raw_request(porter.addr, trace.as_bytes()).unwrap();
    assert_eq!(
        (response.status, response.header("content-type")),
        (200, Some("message/http"))
    );
    assert!(response.text().contains("X-Mine: 1") && !response.text().contains("secret"));
    let options = format!(
        "OPTIONS {} HTTP/1.1\r\nMax-Forwards: 0\r\nConnection: close\r\n\r\n",
        origin.url("/")
    );
    assert!(
        raw_request(porter.addr, options.as_bytes())
            .unwrap()
            .header("allow")
            .is_some()
    );
    assert_eq!(origin.hits(), 0);
    let trace = format!(
        "TRACE {} HTTP/1.1\r\nMax-Forwards: 5\r\nConnection: close\r\n\r\n",
        origin.url("/t")
    );
    raw_request(porter.addr, trace.as_bytes()).unwrap();
    assert!(origin.requests.lock().unwrap()[0].contains("Max-Forwards: 4"));
    // A request that already went through this proxy is a loop.
    let first = proxy_get(porter.addr, &origin.url("/v"), &[]);
    let via = first.header("via").unwrap().to_string();
    let looped = proxy_get(porter.addr, &origin.url("/v"), &[("Via", &via)]);
    assert_eq!(looped.status, 508);
}

/// The proxy's own pages lacked the HTTP/1.0 keep-alive branch of the Connection rule: an HTTP/1.0
/// client asking to keep its connection got no `Connection: keep-alive`, so it had to assume close.
#[test]
fn own_pages_tell_http10_clients_the_connection_stays_open() {
    let porter = proxy();
    let (mut writer, mut reader) = connect_split(porter.addr);
    for _ in 0..2 {
        writer
            .write_all(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    writer.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(response.header("connection"), Some("close"));
}

/// A HEAD whose framing the proxy refuses was answered with the error page's body, which a client
/// reading a HEAD response takes for the start of the next response.
#[test]
fn head_with_bad_framing_gets_an_error_head_without_a_body() {
    let porter = proxy();
    let (mut writer, mut reader) = connect_split(porter.addr);
    writer
        .write_all(
            b"HEAD http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
    let response = read_response(&mut reader, true).unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn regression_many_tiny_chunks_arrive_intact_in_far_fewer_chunks() {
    // 20,000 one-byte chunks, written 100 chunks at a time; the proxy used to re-frame each one with
    // three writes of its own.
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let sent = body.clone();
    let origin = raw_server(move |_, mut stream| {
        if !read_request_head(&mut stream) {
            return;
        }
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        for group in sent.chunks(100) {
            let mut framed = Vec::new();
            for byte in group {
                framed.extend_from_slice(b"1\r\n");
                framed.push(*byte);
                framed.extend_from_slice(b"\r\n");
            }
            if stream.write_all(&framed).is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    });
    let porter = proxy();
    let mut stream = connect(porter.addr);
    write!(
        stream,
        "GET http://{origin}/tiny HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // Decode by hand, counting the chunks the proxy wrote.
    let (mut rest, mut decoded, mut chunks) = (&raw[split..], Vec::new(), 0);
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        decoded.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
        chunks += 1;
    }
    assert_eq!(decoded, body);
    assert!(
        chunks <= 2_000,
        "{chunks} chunks for 200 writes of the origin"
    );
}
