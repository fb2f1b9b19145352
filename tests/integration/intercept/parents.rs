//! Intercepted CONNECTs whose traffic is not intercepted after all (plain HTTP, or a ClientHello
//! whose ALPN lacks http/1.1) take the route an ordinary CONNECT takes: through `--parent`, with
//! `--parent-fallback`, `--direct-host` and `--deny-dest` honoured. They once dialled the origin
//! themselves (`HIER_DIRECT`), around the parent and past `--parent-fallback fail`.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

use super::{Setup, get_inside, open_tunnel, peer_names, trusting};
use crate::util::*;

/// A plain HTTP origin answering every path with its path.
fn plain_origin() -> Origin {
    Origin::start(|_, path, _| (200, vec![], format!("plain {path}").into_bytes()))
}

/// The intercepting child, logging Squid's format (its hierarchy field says where a tunnel went).
fn child(setup: &Setup, origin: &Origin, extra: &[&str]) -> Porter {
    let plain_port = origin.addr.port().to_string();
    let mut args = vec!["--connect-port", &plain_port, "--log-format", "squid"];
    args.extend_from_slice(extra);
    setup.proxy(&args)
}

/// A parent Porter that tunnels to both origins.
fn parent(setup: &Setup, origin: &Origin, dir: &tempfile::TempDir) -> Porter {
    let (tls_port, plain_port) = (setup.port(), origin.addr.port().to_string());
    Porter::start(&[
        "proxy",
        "--cache-dir",
        dir.path().to_str().unwrap(),
        "--connect-port",
        &tls_port,
        "--connect-port",
        &plain_port,
    ])
}

/// CONNECT then a plain GET inside: the response, or `None` when the tunnel closes unanswered.
fn plain_get_through(proxy: SocketAddr, origin: &Origin, path: &str) -> Option<Response> {
    let target = origin.addr.to_string();
    let (mut tcp, head) = open_tunnel(proxy, &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // One write: `write!` on a socket makes one call per piece, and a proxy that refuses the tunnel
    // on the first piece ("GET ") has closed it before the next, which then fails with EPIPE.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_err() {
        return None;
    }
    read_response(&mut BufReader::new(tcp), false).ok()
}

/// CONNECT then TLS offering only h2 in ALPN, trusting the origin's own CA (the proxy relays it,
/// so the origin's certificate is what the client sees): the response, or `None` when the tunnel
/// closes before the handshake completes.
fn h2_only_get_through(proxy: SocketAddr, setup: &Setup, path: &str) -> Option<Response> {
    let target = format!("localhost:{}", setup.port());
    let (tcp, head) = open_tunnel(proxy, &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut config = (*trusting(&setup.origin.ca_pem)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return None;
        }
    }
    assert!(peer_names(&tls).1.contains("porter test CA"));
    Some(get_inside(&mut tls, &target, path, true))
}

/// The child's access lines for CONNECT to `target`.
fn connect_lines(porter: &Porter, target: &str) -> Vec<String> {
    porter
        .logs()
        .lines()
        .filter(|l| l.contains(&format!(" CONNECT {target} ")))
        .map(str::to_string)
        .collect()
}

/// A listener that only counts the connections it accepts.
fn counting_listener(listen: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(listen).unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

#[test]
fn regression_plain_and_h2_only_traffic_in_an_intercepted_connect_goes_through_the_parent() {
    let setup = Setup::new();
    let origin = plain_origin();
    let pdir = tempfile::tempdir().unwrap();
    let parent = parent(&setup, &origin, &pdir);
    let parent_addr = parent.addr.to_string();
    let child = child(&setup, &origin, &["--parent", &parent_addr]);

    let plain = plain_get_through(child.addr, &origin, "/plain").expect("an answer");
    assert_eq!(plain.text(), "plain /plain");
    let h2 = h2_only_get_through(child.addr, &setup, "/h2-only").expect("an answer");
    assert_eq!(h2.text(), "GET /h2-only from the TLS origin");

    // The parent saw both CONNECTs (it logs a tunnel when it ends) ...
    let plain_target = origin.addr.to_string();
    let tls_target = format!("localhost:{}", setup.port());
    for target in [&plain_target, &tls_target] {
        assert!(
            eventually(Duration::from_secs(10), || parent.logs().lines().any(|l| l
                .contains(&format!("CONNECT {target} 200"))
                && l.contains("TUNNEL"))),
            "the parent tunnelled {target}: {}",
            parent.logs()
        );
        // ... and the child logged them as gone through it, not direct.
        assert!(
            eventually(Duration::from_secs(10), || connect_lines(&child, target)
                .iter()
                .any(
                    |l| l.contains(&format!("FIRSTUP_PARENT/{}", parent.addr.ip()))
                )),
            "{}",
            child.logs()
        );
        assert!(
            !connect_lines(&child, target)
                .iter()
                .any(|l| l.contains("HIER_DIRECT")),
            "{}",
            child.logs()
        );
    }
}

#[test]
fn regression_intercepted_non_tls_connects_fail_with_parent_fallback_fail_and_the_parent_down() {
    let setup = Setup::new();
    let origin = plain_origin();
    let gone = format!("127.0.0.1:{}", closed_port());
    let child = child(
        &setup,
        &origin,
        &["--parent", &gone, "--parent-fallback", "fail"],
    );
    assert!(
        plain_get_through(child.addr, &origin, "/plain").is_none(),
        "plain HTTP went around the parent"
    );
    assert!(
        h2_only_get_through(child.addr, &setup, "/h2-only").is_none(),
        "h2-only TLS went around the parent"
    );
    assert_eq!(origin.hits(), 0);
    assert_eq!(setup.origin.hits(), 0);
    assert!(
        eventually(Duration::from_secs(10), || connect_lines(
            &child,
            &origin.addr.to_string()
        )
        .iter()
        .any(|l| l.contains("/502 "))),
        "{}",
        child.logs()
    );

    // With --parent-fallback direct the same tunnels go to the origin.
    let direct = setup.proxy(&[
        "--connect-port",
        &origin.addr.port().to_string(),
        "--parent",
        &gone,
        "--parent-fallback",
        "direct",
    ]);
    let plain = plain_get_through(direct.addr, &origin, "/plain").expect("an answer");
    assert_eq!(plain.text(), "plain /plain");
}

#[test]
fn regression_intercepted_non_tls_connects_honour_deny_dest_on_the_parent_and_direct_host() {
    let setup = Setup::new();
    let origin = plain_origin();
    // A parent on 127.0.0.2 that --deny-dest covers: the tunnel is refused, never dialled.
    let (denied_parent, dialled) = counting_listener("127.0.0.2:0");
    let denied_parent = denied_parent.to_string();
    let child_denied = child(
        &setup,
        &origin,
        &["--parent", &denied_parent, "--deny-dest", "127.0.0.2/32"],
    );
    assert!(plain_get_through(child_denied.addr, &origin, "/plain").is_none());
    assert!(h2_only_get_through(child_denied.addr, &setup, "/h2-only").is_none());
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        0,
        "the denied parent was dialled"
    );
    assert_eq!(origin.hits(), 0);
    assert_eq!(setup.origin.hits(), 0);
    assert!(
        eventually(Duration::from_secs(10), || connect_lines(
            &child_denied,
            &origin.addr.to_string()
        )
        .iter()
        .any(|l| l.contains("TCP_DENIED/"))),
        "{}",
        child_denied.logs()
    );

    // --direct-host sends the same tunnels straight to the origin, past a parent that is up.
    let (counting_parent, reached) = counting_listener("127.0.0.1:0");
    let counting_parent = counting_parent.to_string();
    let direct = child(
        &setup,
        &origin,
        &[
            "--parent",
            &counting_parent,
            "--direct-host",
            "127.0.0.1",
            "--direct-host",
            "localhost",
        ],
    );
    let plain = plain_get_through(direct.addr, &origin, "/plain").expect("an answer");
    assert_eq!(plain.text(), "plain /plain");
    let h2 = h2_only_get_through(direct.addr, &setup, "/h2-only").expect("an answer");
    assert_eq!(h2.text(), "GET /h2-only from the TLS origin");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "a direct host went to the parent"
    );
}
