//! Who may PURGE over the network (issue 21): by default no one, plain or inside an intercepted
//! tunnel; `--purge-allow CIDR` names the networks, `--purge-user USER` the authenticated users
//! (both must hold when both are given), and the rules reload with SIGHUP. A refused PURGE leaves
//! the entry a HIT.

use std::io::{Read, Write};
use std::time::Duration;

use crate::deploy::{basic, write_config};
use crate::intercept::{Setup, read_tls_response, trusting};
use crate::util::*;

/// An origin whose pages are fresh for ten minutes.
fn fresh_origin() -> Origin {
    Origin::start(|_, path, _| {
        (
            200,
            hdrs(&[("Cache-Control", "max-age=600")]),
            format!("body of {path}").into_bytes(),
        )
    })
}

fn caching_proxy(dir: &tempfile::TempDir, extra: &[&str]) -> Porter {
    let cache = dir.path().join("cache");
    let mut args = vec!["proxy", "--cache-dir", cache.to_str().unwrap()];
    args.extend_from_slice(extra);
    Porter::start(&args)
}

/// `PURGE url` on its own connection, with `Proxy-Authorization: auth` when given.
fn purge(proxy: std::net::SocketAddr, url: &str, auth: Option<&str>) -> Response {
    let credentials = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    let raw = format!("PURGE {url} HTTP/1.1\r\n{credentials}Connection: close\r\n\r\n");
    raw_request(proxy, raw.as_bytes()).unwrap()
}

fn x_cache(proxy: std::net::SocketAddr, url: &str, extra: &[(&str, &str)]) -> String {
    let response = proxy_get(proxy, url, extra);
    assert_eq!(response.status, 200, "{}", response.text());
    response.header("x-cache").unwrap_or("-").to_string()
}

#[test]
fn regression_purge_from_a_client_not_in_purge_allow_is_refused_and_the_entry_stays_a_hit() {
    let origin = fresh_origin();
    let url = origin.url("/popular");
    // No --purge-allow at all, and one that names another address than this client's.
    for extra in [&[][..], &["--purge-allow", "127.0.0.2/32"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let porter = caching_proxy(&dir, extra);
        x_cache(porter.addr, &url, &[]);
        assert_eq!(x_cache(porter.addr, &url, &[]), "HIT", "{extra:?}");
        let refused = purge(porter.addr, &url, None);
        assert_eq!(refused.status, 403, "{extra:?}: {}", refused.text());
        assert!(
            refused.text().contains("--purge-allow"),
            "the page names the flag: {}",
            refused.text()
        );
        assert_eq!(x_cache(porter.addr, &url, &[]), "HIT", "{extra:?}: kept");
        let logged = format!(" PURGE {url} 403 ");
        assert!(
            eventually(Duration::from_secs(5), || porter.logs().contains(&logged)),
            "an access-log line: {}",
            porter.logs()
        );
    }
}

#[test]
fn regression_purge_allow_lets_its_networks_purge() {
    let origin = fresh_origin();
    let url = origin.url("/popular");
    let dir = tempfile::tempdir().unwrap();
    let porter = caching_proxy(&dir, &["--purge-allow", "127.0.0.1/32"]);
    x_cache(porter.addr, &url, &[]);
    assert_eq!(x_cache(porter.addr, &url, &[]), "HIT");
    assert_eq!(purge(porter.addr, &url, None).status, 200);
    assert_eq!(purge(porter.addr, &url, None).status, 404, "gone already");
    assert_eq!(x_cache(porter.addr, &url, &[]), "MISS");
}

#[test]
fn regression_purge_user_refuses_other_users_and_allows_the_named_one() {
    let origin = fresh_origin();
    let url = origin.url("/popular");
    let dir = tempfile::tempdir().unwrap();
    let porter = caching_proxy(
        &dir,
        &[
            "--auth-user",
            "alice:one",
            "--auth-user",
            "bob:two",
            "--purge-allow",
            "127.0.0.1/32",
            "--purge-user",
            "alice",
        ],
    );
    let (alice, bob) = (basic("alice:one"), basic("bob:two"));
    let creds = [("Proxy-Authorization", bob.as_str())];
    x_cache(porter.addr, &url, &creds);
    assert_eq!(x_cache(porter.addr, &url, &creds), "HIT");
    let refused = purge(porter.addr, &url, Some(&bob));
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("--purge-user"),
        "{}",
        refused.text()
    );
    assert_eq!(
        x_cache(porter.addr, &url, &creds),
        "HIT",
        "bob purged nothing"
    );
    assert_eq!(purge(porter.addr, &url, None).status, 407, "no user at all");
    assert_eq!(purge(porter.addr, &url, Some(&alice)).status, 200);
    assert_eq!(x_cache(porter.addr, &url, &creds), "MISS");
}

#[test]
fn regression_purge_user_without_authentication_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_porter(
        &[
            "proxy",
            "--purge-allow",
            "127.0.0.1/32",
            "--purge-user",
            "alice",
            "--check",
        ],
        dir.path(),
        &[],
        None,
    );
    assert!(!run.ok(), "{run:?}");
    assert!(run.stderr.contains("--auth-user"), "{run:?}");
}

/// CONNECT (with `auth` when given) and a TLS session trusting Porter's CA.
fn intercepted(
    setup: &Setup,
    proxy: std::net::SocketAddr,
    auth: Option<&str>,
) -> crate::intercept::Tunnelled {
    let target = format!("localhost:{}", setup.port());
    let mut tcp = connect(proxy);
    let credentials = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        tcp,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{credentials}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the CONNECT answer ended early ({other:?})"),
        }
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(trusting(&setup.porter_ca()), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("handshake");
    }
    stream
}

#[test]
fn regression_purge_inside_an_intercepted_tunnel_is_refused_unless_allowed() {
    let setup = Setup::new();
    let host = format!("localhost:{}", setup.port());
    let send = |stream: &mut crate::intercept::Tunnelled, method: &str| {
        write!(stream, "{method} /page HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        stream.flush().unwrap();
        read_tls_response(stream)
    };
    {
        let proxy = setup.proxy(&[]);
        let mut tls = intercepted(&setup, proxy.addr, None);
        send(&mut tls, "GET");
        assert_eq!(send(&mut tls, "GET").header("x-cache"), Some("HIT"));
        let refused = send(&mut tls, "PURGE");
        assert_eq!(refused.status, 403, "{}", refused.text());
        assert!(refused.text().contains("--purge-allow"));
        let mut again = intercepted(&setup, proxy.addr, None);
        assert_eq!(send(&mut again, "GET").header("x-cache"), Some("HIT"));
    }
    // With both rules, the user is the one the CONNECT authenticated as.
    let proxy = setup.proxy(&[
        "--auth-user",
        "alice:one",
        "--auth-user",
        "bob:two",
        "--purge-allow",
        "127.0.0.1/32",
        "--purge-user",
        "alice",
    ]);
    let mut bob = intercepted(&setup, proxy.addr, Some(&basic("bob:two")));
    send(&mut bob, "GET");
    assert_eq!(send(&mut bob, "GET").header("x-cache"), Some("HIT"));
    assert_eq!(send(&mut bob, "PURGE").status, 403);
    assert_eq!(send(&mut bob, "GET").header("x-cache"), Some("HIT"));
    let mut alice = intercepted(&setup, proxy.addr, Some(&basic("alice:one")));
    assert_eq!(send(&mut alice, "PURGE").status, 200);
    assert_eq!(send(&mut alice, "GET").header("x-cache"), Some("MISS"));
}

#[test]
fn regression_purge_rules_reload_with_sighup() {
    let origin = fresh_origin();
    let url = origin.url("/popular");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let cache = dir.path().join("cache");
    let base = format!("cache-dir = {:?}\n", cache.to_str().unwrap());
    write_config(&config, &base);
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    x_cache(porter.addr, &url, &[]);
    assert_eq!(purge(porter.addr, &url, None).status, 403);
    reload(
        &porter,
        &config,
        &format!("{base}purge-allow = [\"127.0.0.1/32\"]\n"),
    );
    assert_eq!(purge(porter.addr, &url, None).status, 200);
}
