//! What happens to a CONNECT under `--intercept`: cached HTTPS, tunnelled hosts, origins that do
//! not verify, non-TLS tunnels, broken handshakes, inner Host fields that lie, and keep-alive.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use super::*;

/// curl through the proxy with only Porter's CA trusted; returns (status line and headers, body,
/// curl's verbose stderr).
fn curl(proxy: SocketAddr, ca: &Path, url: &str) -> (String, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20", "--noproxy", ""])
        .arg("--cacert")
        .arg(ca)
        .args(["-x", &format!("http://{proxy}"), "-D", "-", url])
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl failed: {stderr}");
    // -D - writes the CONNECT response's head too: the origin's is the last one.
    let (head, body) = stdout.rsplit_once("\r\n\r\n").unwrap_or((&stdout, ""));
    let head = head.rsplit("\r\n\r\n").next().unwrap_or(head);
    (head.to_string(), body.to_string(), stderr)
}

#[test]
fn curl_through_interception_is_cached_and_the_entry_survives_a_restart() {
    let setup = Setup::new();
    let mut proxy = setup.proxy(&[]);
    let url = format!("https://localhost:{}/page", setup.port());
    let ca = setup.porter_ca_path();

    let (head, body, verbose) = curl(proxy.addr, &ca, &url);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "GET /page from the TLS origin");
    assert!(head.contains("X-Cache: MISS"), "{head}");
    // The certificate curl accepted is Porter's leaf for localhost.
    assert!(verbose.contains("subject: CN=localhost"), "{verbose}");
    assert!(verbose.contains("issuer: CN=Porter proxy CA"), "{verbose}");

    let (head, body, _) = curl(proxy.addr, &ca, &url);
    assert!(head.contains("X-Cache: HIT"), "{head}");
    assert!(head.contains("Cache-Status: porter; hit"), "{head}");
    assert_eq!(body, "GET /page from the TLS origin");
    assert_eq!(setup.origin.hits(), 1, "the origin was asked once");
    assert!(
        eventually(Duration::from_secs(5), || outcome(
            &proxy.logs(),
            "GET",
            &url
        ) == ["MISS", "HIT"]),
        "access log:\n{}",
        proxy.logs()
    );
    let port = setup.port();
    assert_eq!(
        metric(proxy.addr, "porter_connects_total{mode=\"intercepted\"}"),
        Some(2)
    );
    assert_eq!(
        metric(proxy.addr, "porter_tls_certificates_minted_total"),
        Some(1)
    );
    assert_eq!(
        metric(proxy.addr, "porter_tls_certificate_cache_hits_total"),
        Some(1)
    );
    assert!(
        proxy
            .logs()
            .contains(&format!("CONNECT localhost:{port} 200 0 INTERCEPT"))
    );

    // A new process on the same folders: the same CA, and the entry is still there.
    assert!(proxy.terminate().is_some_and(|s| s.success()));
    let proxy = setup.proxy(&[]);
    let (head, _, _) = curl(proxy.addr, &ca, &url);
    assert!(head.contains("X-Cache: HIT"), "{head}");
    assert_eq!(setup.origin.hits(), 1);
    // An http:// URL for the same host and path is another entry.
    let plain = proxy_get(
        proxy.addr,
        &format!("http://localhost:{}/page", setup.port()),
        &[],
    );
    assert_ne!(plain.header("x-cache"), Some("HIT"));
}

#[test]
fn a_no_intercept_host_is_tunnelled_and_the_client_sees_the_origins_certificate() {
    let setup = Setup::new();
    let proxy = setup.proxy(&["--no-intercept-host", "localhost"]);
    let target = format!("localhost:{}", setup.port());
    let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.origin.ca_pem);
    let (subject, issuer) = peer_names(&stream);
    assert!(issuer.contains("porter test CA"), "{issuer}");
    assert!(subject.contains("localhost"), "{subject}");
    let response = get_inside(&mut stream, &target, "/tunnelled", true);
    assert_eq!(response.text(), "GET /tunnelled from the TLS origin");
    assert_eq!(
        response.header("x-cache"),
        None,
        "nothing of the proxy's inside"
    );
    drop(stream);
    assert!(eventually(Duration::from_secs(5), || outcome(
        &proxy.logs(),
        "CONNECT",
        &target
    ) == ["TUNNEL"]));

    // A client offering ALPN protocols without http/1.1 (here only h2) is relayed, not intercepted.
    let proxy_all = setup.proxy(&[]);
    let (tcp, head) = open_tunnel(proxy_all.addr, &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut config = (*trusting(&setup.origin.ca_pem)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut h2_only = StreamOwned::new(conn, tcp);
    let response = get_inside(&mut h2_only, &target, "/h2-only", true);
    assert_eq!(response.text(), "GET /h2-only from the TLS origin");
    assert!(peer_names(&h2_only).1.contains("porter test CA"));
    drop(proxy_all);

    // --intercept-host limits interception to the hosts it names.
    let proxy = setup.proxy(&["--intercept-host", "*.example.test"]);
    let stream = tls_through(proxy.addr, &target, "localhost", &setup.origin.ca_pem);
    assert!(peer_names(&stream).1.contains("porter test CA"));
}

#[test]
fn an_origin_whose_certificate_does_not_verify_gets_a_502_naming_the_reason_and_nothing_is_cached()
{
    let setup = Setup::new();
    // No --upstream-ca: the origin's test CA is unknown to the proxy.
    let (cache, ca, port) = (setup.path("cache"), setup.path("ca"), setup.port());
    let proxy = Porter::start(&[
        "proxy",
        "--intercept",
        "--cache-dir",
        &cache,
        "--ca-dir",
        &ca,
        "--connect-port",
        &port,
    ]);
    let target = format!("localhost:{port}");
    for _ in 0..2 {
        let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
        let response = get_inside(&mut stream, &target, "/secret", true);
        assert_eq!(response.status, 502, "{}", response.text());
        let text = response.text();
        assert!(text.contains("unknown-issuer"), "{text}");
        assert!(text.contains("localhost"), "{text}");
        assert!(text.contains("--upstream-ca"), "{text}");
    }
    assert_eq!(setup.origin.hits(), 0, "no request reached the origin");
    assert_eq!(
        metric(
            proxy.addr,
            "porter_tls_handshake_failures_total{side=\"upstream\",reason=\"unknown-issuer\"}"
        ),
        Some(2)
    );
    let run = run_porter(
        &["cache", "--cache-dir", &cache, "stats"],
        setup.dir.path(),
        &[],
        None,
    );
    assert!(run.stdout.contains("entries:  0\n"), "{}", run.stdout);
}

#[test]
fn non_tls_bytes_after_connect_are_relayed_unchanged() {
    let echo = raw_server(|_, mut stream| {
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let setup = Setup::new();
    let echo_port = echo.port().to_string();
    let proxy = setup.proxy(&["--connect-port", &echo_port]);
    let (mut tcp, head) = open_tunnel(proxy.addr, &format!("127.0.0.1:{echo_port}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Bytes no TLS server would take, including a first byte that is not a handshake record.
    let message = b"SSH-2.0-porter-test\r\n\x00\x01\x02 binary \xff\r\n";
    tcp.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    tcp.read_exact(&mut back).unwrap();
    assert_eq!(&back[..], &message[..]);
    tcp.write_all(b"and more").unwrap();
    let mut more = [0u8; 8];
    tcp.read_exact(&mut more).unwrap();
    assert_eq!(&more, b"and more");
    drop(tcp);
    assert!(eventually(Duration::from_secs(5), || metric(
        proxy.addr,
        "porter_connects_total{mode=\"tunnelled\"}"
    ) == Some(1)));
}

#[test]
fn tls_clients_that_abort_or_stall_the_handshake_disturb_nobody() {
    let setup = Setup::new();
    // One worker: a connection that pinned it would stall every request after it.
    let proxy = setup.proxy(&["--workers", "1"]);
    let target = format!("localhost:{}", setup.port());
    let hello = client_hello("localhost");
    let mut held = Vec::new();
    for (name, bytes, close) in [
        ("half a hello, then close", &hello[..hello.len() / 2], true),
        (
            "half a hello, then silence",
            &hello[..hello.len() / 2],
            false,
        ),
        ("a first byte, then silence", &hello[..1], false),
        ("nothing at all", &hello[..0], false),
        (
            "a broken handshake record",
            &[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0][..],
            true,
        ),
    ] {
        let (mut tcp, head) = open_tunnel(proxy.addr, &target);
        assert!(head.starts_with("HTTP/1.1 200"), "{name}: {head}");
        tcp.write_all(bytes).unwrap();
        if close {
            drop(tcp);
        } else {
            held.push(tcp);
        }
    }
    // A whole hello and then an abort right after the server's answer: what Node does
    // when they refuse the certificate, so it counts as `client-distrusts-ca` (issue 25).
    let (mut tcp, _) = open_tunnel(proxy.addr, &target);
    tcp.write_all(&hello).unwrap();
    let mut some = [0u8; 64];
    assert!(tcp.read(&mut some).unwrap() > 0, "the server's hello");
    drop(tcp);

    // A client that does not trust Porter's CA refuses the leaf with an alert: counted by reason.
    let (tcp, _) = open_tunnel(proxy.addr, &target);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(trusting(&setup.origin.ca_pem), name).unwrap();
    let mut distrusting = StreamOwned::new(conn, tcp);
    let refused = distrusting.write_all(b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        refused.is_err(),
        "a client trusting another CA must refuse Porter's leaf"
    );
    drop(distrusting);

    for round in 0..3 {
        let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
        let response = get_inside(&mut stream, &target, "/fine", true);
        assert_eq!(response.status, 200, "round {round}");
    }
    drop(held);
    assert!(metric(proxy.addr, "porter_tls_handshakes_total{side=\"client\"}").unwrap() >= 3);
    let distrust =
        "porter_tls_handshake_failures_total{side=\"client\",reason=\"client-distrusts-ca\"}";
    assert!(
        eventually(Duration::from_secs(5), || metric(proxy.addr, distrust)
            == Some(2)),
        "{:?}",
        metric(proxy.addr, distrust)
    );
}

/// The first flight of a rustls client asking for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let mut conn = ClientConnection::new(
        trusting(""),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[test]
fn an_inner_host_naming_another_host_gets_400_and_reaches_no_origin() {
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let target = format!("localhost:{}", setup.port());
    for (host, path) in [
        ("other.test", "/poison".to_string()),
        ("localhost:1", "/poison".to_string()),
        (target.as_str(), "https://other.test/poison".to_string()),
    ] {
        let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
        let response = get_inside(&mut stream, host, &path, true);
        assert_eq!(
            response.status,
            400,
            "Host {host}, {path}: {}",
            response.text()
        );
        assert!(
            response.text().contains("tunnel was opened to"),
            "{}",
            response.text()
        );
    }
    assert_eq!(setup.origin.hits(), 0);
}

#[test]
fn idle_intercepted_keep_alive_connections_pin_no_worker_and_pipelined_requests_are_answered() {
    let setup = Setup::new();
    let proxy = setup.proxy(&["--workers", "1"]);
    let target = format!("localhost:{}", setup.port());
    let mut idle = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
    assert_eq!(get_inside(&mut idle, &target, "/one", false).status, 200);
    // While `idle` waits between requests, another client is served by the only worker.
    let mut other = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
    assert_eq!(get_inside(&mut other, &target, "/two", false).status, 200);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        get_inside(&mut idle, &target, "/one", false).header("x-cache"),
        Some("HIT")
    );
    // Three requests in one TLS record: rustls decrypts them at once, the socket shows nothing more,
    // and the worker must answer all three rather than wait on a socket with nothing to show.
    let three = format!(
        "GET /a HTTP/1.1\r\nHost: {target}\r\n\r\nGET /b HTTP/1.1\r\nHost: {target}\r\n\r\n\
         GET /c HTTP/1.1\r\nHost: {target}\r\n\r\n"
    );
    other.write_all(three.as_bytes()).unwrap();
    other.flush().unwrap();
    for path in ["/a", "/b", "/c"] {
        let response = read_tls_response(&mut other);
        assert_eq!(response.text(), format!("GET {path} from the TLS origin"));
    }
    // Five misses, one after another: one TLS connection to the origin, reused from the pool.
    assert_eq!(
        metric(proxy.addr, "porter_tls_handshakes_total{side=\"upstream\"}"),
        Some(1)
    );
}

/// A burst of pipelined requests bigger than a worker's read buffer (4 KiB between requests), in one
/// TLS record: the worker copies 4 KiB of the plaintext, and the rest stays decrypted inside rustls,
/// where the socket cannot show it. Each request is 256 bytes, so the buffer runs empty exactly at
/// a request's end: waiting on the socket then, the connection would wait for bytes that came long
/// ago.
#[test]
fn pipelined_requests_left_decrypted_inside_rustls_are_answered_not_parked() {
    let setup = Setup::new();
    let proxy = setup.proxy(&["--workers", "1"]);
    let target = format!("localhost:{}", setup.port());
    let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
    assert_eq!(
        get_inside(&mut stream, &target, "/burst", false).status,
        200
    );
    let request =
        |pad: &str| format!("GET /burst HTTP/1.1\r\nHost: {target}\r\nX-Pad: {pad}\r\n\r\n");
    let pad = "p".repeat(256 - request("").len());
    let one = request(&pad);
    assert_eq!(one.len(), 256);
    stream.write_all(one.repeat(40).as_bytes()).unwrap();
    stream.flush().unwrap();
    for n in 0..40 {
        let response = read_tls_response(&mut stream);
        assert_eq!(response.header("x-cache"), Some("HIT"), "response {n}");
        assert_eq!(response.text(), "GET /burst from the TLS origin");
    }
    assert_eq!(setup.origin.hits(), 1);
}

#[test]
fn a_large_hit_read_from_disk_is_encrypted_whole_where_sendfile_cannot_be_used() {
    // Over the memory tier's limit, so the hit comes from the entry file: through TLS the bytes must
    // pass through user space to be encrypted.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let served = body.clone();
    let origin = TlsOrigin::start_with(move |_, _, _| {
        (
            200,
            hdrs(&[
                ("Content-Type", "application/octet-stream"),
                ("Cache-Control", "max-age=600"),
            ]),
            served.clone(),
        )
    });
    let setup = Setup::with_origin(origin);
    let proxy = setup.proxy(&[]);
    let target = format!("localhost:{}", setup.port());
    let mut stream = tls_through(proxy.addr, &target, "localhost", &setup.porter_ca());
    for expected in ["MISS", "HIT"] {
        let response = get_inside(&mut stream, &target, "/big.bin", false);
        assert_eq!(response.header("x-cache"), Some(expected));
        assert!(response.body == body, "{expected}: the body differs");
    }
    assert_eq!(setup.origin.hits(), 1);
}

#[test]
fn regression_deny_dest_refuses_an_intercepted_connect_before_its_200() {
    let setup = Setup::new();
    let port = setup.port();
    // The TLS origin listens on 127.0.0.1: a rule covering it refuses the CONNECT up front.
    let proxy = setup.proxy(&["--deny-dest", "127.0.0.0/8", "--deny-dest", "::1/128"]);
    for host in ["127.0.0.1", "localhost", "0.0.0.0"] {
        let mut stream = connect(proxy.addr);
        write!(
            stream,
            "CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut stream), &mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 403"), "CONNECT {host}: {line}");
    }
    assert!(eventually(Duration::from_secs(5), || proxy
        .logs()
        .lines()
        .any(|l| l.contains("porter::access")
            && l.contains("CONNECT")
            && l.ends_with("DENIED"))));
}
