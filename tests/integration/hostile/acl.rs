//! Access-control bypasses found in the second attack (issue 12): other spellings of a denied
//! address, destinations reached through DNS, CONNECT to the proxy itself, a lowercase auth scheme and
//! a signed CONNECT port. Every origin here counts its hits, so "refused" also means "never reached".

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::util::*;

/// Sends a CONNECT and returns the status of the proxy's answer (0 when none came).
fn connect_status(proxy: std::net::SocketAddr, authority: &str) -> u16 {
    let mut stream = connect(proxy);
    write!(
        stream,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    let _ = BufReader::new(&mut stream).read_line(&mut line);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A TCP server on `listen` that only counts the connections it accepts (a CONNECT target).
fn counting_listener(listen: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind(listen).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

fn hello_origin() -> Origin {
    Origin::start(|_, _, _| (200, vec![], b"hello".to_vec()))
}

#[test]
fn regression_deny_host_127_0_0_1_is_not_bypassed_by_other_spellings_for_get_and_connect() {
    let origin = hello_origin();
    let port = origin.addr.port();
    let (tunnel_port, tunnels) = counting_listener("127.0.0.1:0");
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--deny-host",
        "127.0.0.1",
        "--deny-host",
        "localhost",
        "--deny-host",
        "::1",
        "--connect-port",
        &tunnel_port.to_string(),
    ]);
    let spellings = [
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "0.0.0.0",
        "0",
        "127.1",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "2130706433",
        "127.0.0.1.",
        "LOCALHOST",
        "[::]",
        "[0:0:0:0:0:0:0:1]",
    ];
    for host in spellings {
        let response = proxy_get(porter.addr, &format!("http://{host}:{port}/"), &[]);
        assert_eq!(response.status, 403, "GET via {host}: {}", response.text());
        assert!(response.text().contains("--deny-host"), "GET via {host}");
        let status = connect_status(porter.addr, &format!("{host}:{tunnel_port}"));
        assert_eq!(status, 403, "CONNECT via {host}");
    }
    assert_eq!(origin.hits(), 0, "a denied spelling reached the origin");
    assert_eq!(
        tunnels.load(Ordering::SeqCst),
        0,
        "a denied spelling was tunnelled"
    );
}

#[test]
fn deny_dest_refuses_127_0_0_2_after_resolution_while_127_0_0_1_works() {
    let allowed = hello_origin();
    let denied = Origin::start_at("127.0.0.2:0", |_, _, _| (200, vec![], b"internal".to_vec()));
    let (allowed_tunnel, allowed_tunnels) = counting_listener("127.0.0.1:0");
    let (denied_tunnel, denied_tunnels) = counting_listener("127.0.0.2:0");
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--deny-dest",
        "127.0.0.2/32",
        "--deny-dest",
        "10.0.0.0/8",
        "--connect-port",
        &allowed_tunnel.to_string(),
        "--connect-port",
        &denied_tunnel.to_string(),
    ]);
    let ok = proxy_get(porter.addr, &allowed.url("/"), &[]);
    assert_eq!((ok.status, ok.text()), (200, "hello".to_string()));
    for host in ["127.0.0.2", "[::ffff:127.0.0.2]", "127.0.2"] {
        let url = format!("http://{host}:{}/", denied.addr.port());
        let refused = proxy_get(porter.addr, &url, &[]);
        assert_eq!(refused.status, 403, "{url}: {}", refused.text());
        assert!(
            refused.text().contains("--deny-dest 127.0.0.2/32"),
            "the page names the rule: {}",
            refused.text()
        );
    }
    assert_eq!(denied.hits(), 0, "a denied destination was reached");
    assert_eq!(
        connect_status(porter.addr, &format!("127.0.0.2:{denied_tunnel}")),
        403
    );
    assert_eq!(
        connect_status(porter.addr, &format!("127.0.0.1:{allowed_tunnel}")),
        200
    );
    assert_eq!(
        denied_tunnels.load(Ordering::SeqCst),
        0,
        "no SYN to a denied address"
    );
    assert!(eventually(std::time::Duration::from_secs(5), || {
        allowed_tunnels.load(Ordering::SeqCst) == 1
    }));
    assert!(eventually(std::time::Duration::from_secs(5), || porter
        .logs()
        .lines()
        .any(|l| l.contains("porter::access")
            && l.contains("403")
            && l.ends_with("DENIED"))));
}

#[test]
fn deny_dest_checks_the_address_a_name_resolves_to() {
    let origin = hello_origin();
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--deny-dest",
        "127.0.0.0/8",
        "--deny-dest",
        "::1/128",
    ]);
    // `localhost` is a name, not an address: no --deny-host rule names it, DNS gives loopback.
    let url = format!("http://localhost:{}/", origin.addr.port());
    let response = proxy_get(porter.addr, &url, &[]);
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(response.text().contains("--deny-dest"));
    assert_eq!(origin.hits(), 0);
}

#[test]
fn regression_connect_to_the_proxys_own_address_is_refused_in_every_spelling() {
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let porter = Porter::start_at(
        &["proxy", "--no-cache", "--connect-port", &port.to_string()],
        None,
        &listen,
    );
    assert_eq!(porter.addr.port(), port);
    for host in [
        "127.0.0.1",
        "0.0.0.0",
        "0",
        "[::ffff:127.0.0.1]",
        "127.1",
        "localhost",
    ] {
        let mut stream = connect(porter.addr);
        // Nested CONNECTs on one connection: the first must already be refused.
        let one = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
        stream.write_all(one.repeat(3).as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 403"), "CONNECT {host}: {line}");
    }
    // Absolute-form requests naming the proxy in another spelling are its own pages, never forwarded.
    for host in ["0.0.0.0", "0", "[::ffff:127.0.0.1]", "127.1"] {
        let url = format!("http://{host}:{port}/metrics");
        let response = proxy_get(porter.addr, &url, &[]);
        assert_eq!(response.status, 200, "{url}: {}", response.text());
        assert!(response.text().contains("porter_requests_total"), "{url}");
    }
}

#[test]
fn regression_lowercase_basic_auth_scheme_is_accepted() {
    let origin = hello_origin();
    let porter = Porter::start(&["proxy", "--no-cache", "--auth-user", "alice:s3cret"]);
    for scheme in ["basic", "BASIC", "Basic"] {
        let credentials = format!("{scheme} YWxpY2U6czNjcmV0");
        let response = proxy_get(
            porter.addr,
            &origin.url("/"),
            &[("Proxy-Authorization", &credentials)],
        );
        assert_eq!(response.status, 200, "{scheme}");
    }
    let wrong = proxy_get(
        porter.addr,
        &origin.url("/"),
        &[("Proxy-Authorization", "basic YWxpY2U6d3Jvbmc=")],
    );
    assert_eq!(wrong.status, 407);
}

#[test]
fn regression_connect_port_with_a_sign_is_refused() {
    let (port, accepted) = counting_listener("127.0.0.1:0");
    let porter = Porter::start(&["proxy", "--no-cache", "--connect-port", &port.to_string()]);
    for authority in [
        format!("127.0.0.1:+{port}"),
        format!("127.0.0.1:-{port}"),
        format!("127.0.0.1:0{port}0"),
        format!("127.0.0.1:{port}x"),
    ] {
        assert_eq!(connect_status(porter.addr, &authority), 400, "{authority}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    // The plain spelling still tunnels.
    let mut stream: TcpStream = connect(porter.addr);
    write!(stream, "CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(&mut stream).read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}
