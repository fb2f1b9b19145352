//! `porter serve --tls`: HTTPS on loopback end to end with a CA it creates. A TLS client trusting
//! only `DIR/ca.pem` fetches from it, and `porter proxy --intercept --upstream-ca DIR/ca.pem`
//! verifies it, intercepts and caches its page (the second request a HIT).

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::*;
use crate::intercept::{get_inside, read_any_response, tls_through, trusting};

#[test]
fn serve_tls_creates_a_ca_and_is_fetched_directly_and_cached_through_the_intercepting_proxy() {
    let site = Site::new();
    let ca_dir = site.dir.path().join("serve-ca");
    let ca_dir_arg = path_str(&ca_dir).to_string();
    let serve = site.serve(&[
        "--tls",
        "--tls-ca-dir",
        &ca_dir_arg,
        "--tls-name",
        "porter.test",
    ]);
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.pem")).expect("serve made ca.pem");
    let key_mode = std::fs::metadata(ca_dir.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(!ca_pem.contains("PRIVATE KEY"));

    // A direct client that trusts ca.pem alone, for each loopback name.
    for name in ["localhost", "127.0.0.1"] {
        let tcp = TcpStream::connect(serve.addr).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let conn = ClientConnection::new(trusting(&ca_pem), server_name).unwrap();
        let mut stream = StreamOwned::new(conn, tcp);
        write!(
            stream,
            "GET /hello.txt HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        stream.flush().unwrap();
        let response = read_any_response(&mut stream);
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(
            response.body,
            std::fs::read(site.root().join("hello.txt")).unwrap()
        );
    }

    // The proxy intercepts, verifies serve's certificate against ca.pem, and caches the page.
    let proxy_dir = tempfile::tempdir().unwrap();
    let (cache, proxy_ca) = (proxy_dir.path().join("cache"), proxy_dir.path().join("ca"));
    let port = serve.addr.port().to_string();
    let upstream_ca = ca_dir.join("ca.pem");
    let proxy = Porter::start(&[
        "proxy",
        "--intercept",
        "--cache-dir",
        path_str(&cache),
        "--ca-dir",
        path_str(&proxy_ca),
        "--upstream-ca",
        path_str(&upstream_ca),
        "--connect-port",
        &port,
    ]);
    let porter_ca = std::fs::read_to_string(proxy_ca.join("ca.pem")).unwrap();
    let target = format!("127.0.0.1:{port}");
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let mut stream = tls_through(proxy.addr, &target, "127.0.0.1", &porter_ca);
        let response = get_inside(&mut stream, &target, "/hello.txt", true);
        assert_eq!(response.status, 200, "{}", proxy.logs());
        outcomes.push(response.header("x-cache").unwrap_or_default().to_string());
    }
    assert!(outcomes[0].starts_with("MISS"), "{outcomes:?}");
    assert!(outcomes[1].starts_with("HIT"), "{outcomes:?}");
}

#[test]
fn serve_tls_refuses_a_name_no_certificate_can_hold() {
    let site = Site::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = site.dir.path().join("serve-ca");
    let run = run_porter(
        &[
            "serve",
            "--root",
            path_str(&site.root()),
            "--listen",
            "127.0.0.1:0",
            "--tls",
            "--tls-ca-dir",
            path_str(&ca_dir),
            "--tls-name",
            "not a name",
        ],
        dir.path(),
        &[],
        None,
    );
    assert!(!run.ok());
    assert!(
        run.stderr.contains("--tls-name \"not a name\" is neither"),
        "{}",
        run.stderr
    );
}

/// One request over TLS to `serve`, trusting `ca_pem`, on a new connection closed after it: the
/// status and everything after the head (read to the close, so HEAD and any framing work).
fn tls_request(addr: std::net::SocketAddr, ca_pem: &str, head: &str) -> (u16, String) {
    use std::io::Read;
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let server_name = ServerName::try_from("localhost".to_string()).unwrap();
    let conn = ClientConnection::new(trusting(ca_pem), server_name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    stream.write_all(head.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut raw = Vec::new();
    // A close without close_notify is an error after the bytes already read into `raw`.
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, rest)
}

/// `porter serve --tls` with its defaults (`--root .`, `--tls-ca-dir serve-ca`) keeps the CA's private
/// key inside the served folder: no method, range, listing or symlink may reach it.
#[test]
fn regression_serve_tls_never_serves_the_ca_key_from_a_ca_dir_inside_the_root() {
    let site = Site::new();
    let ca_dir = site.root().join("serve-ca");
    let ca_dir_arg = path_str(&ca_dir).to_string();
    let serve = site.serve(&["--tls", "--tls-ca-dir", &ca_dir_arg]);
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.pem")).expect("serve made ca.pem");
    assert!(ca_dir.join("ca-key.pem").exists());
    symlink("serve-ca/ca-key.pem", site.root().join("key-link.pem")).unwrap();

    let ask = |method: &str, target: &str, extra: &str| {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
        );
        tls_request(serve.addr, &ca_pem, &head)
    };
    // The public certificate is served, so the folder itself is reachable.
    assert_eq!(ask("GET", "/serve-ca/ca.pem", "").0, 200);
    for (method, target, extra) in [
        ("GET", "/serve-ca/ca-key.pem", ""),
        ("HEAD", "/serve-ca/ca-key.pem", ""),
        ("GET", "/serve-ca/ca-key.pem", "Range: bytes=0-9\r\n"),
        ("GET", "/key-link.pem", ""),
        ("GET", "/key-link.pem", "Range: bytes=0-9\r\n"),
    ] {
        let (status, body) = ask(method, target, extra);
        assert_eq!(status, 404, "{method} {target} {extra}");
        assert!(!body.contains("PRIVATE KEY"), "{method} {target}");
    }
    // The folder as serve made it is not listed at all; opened to everyone, its listing leaves the
    // key out.
    let (_, body) = ask("GET", "/serve-ca/", "");
    assert!(!body.contains("ca-key.pem"), "{body}");
    std::fs::set_permissions(&ca_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (status, body) = ask("GET", "/serve-ca/", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ca.pem"), "{body}");
    assert!(!body.contains("ca-key.pem"), "{body}");
    assert_eq!(ask("GET", "/serve-ca/ca-key.pem", "").0, 404);
}
