//! `--allow-host` and `--allow-dest`: once either is given, a destination no allow rule admits gets
//! 403, for plain requests, CONNECT, intercepted requests and requests routed to a parent, and a
//! reload changes the list.

use std::io::{Read, Write};

use crate::deploy::{echo_server, write_config};
use crate::intercept::{Setup, get_inside, open_tunnel, tls_through};
use crate::util::*;

const REFUSAL: &str = "is not in the allow list (--allow-host, --allow-dest)";

/// An origin answering every request with the request's header lines as its body.
fn headers_origin_at(listen: &str) -> Origin {
    Origin::start_at(listen, |_, _, headers| {
        let body: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            body.into_bytes(),
        )
    })
}

fn proxy(extra: &[&str]) -> Porter {
    let mut args = vec!["proxy", "--no-cache"];
    args.extend_from_slice(extra);
    Porter::start(&args)
}

fn url_named(origin: &Origin, host: &str, path: &str) -> String {
    format!("http://{host}:{}{path}", origin.addr.port())
}

#[test]
fn regression_allow_host_admits_listed_destinations_and_refuses_every_other() {
    let origin = headers_origin_at("127.0.0.1:0");
    let porter = proxy(&[
        "--allow-host",
        "localhost",
        "--allow-host",
        "*.allowed.test",
    ]);
    let allowed = proxy_get(porter.addr, &url_named(&origin, "localhost", "/a"), &[]);
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    let refused = proxy_get(porter.addr, &origin.url("/b"), &[]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused
            .text()
            .contains(&format!("access to 127.0.0.1 {REFUSAL}")),
        "{}",
        refused.text()
    );
    assert_eq!(
        origin.hits(),
        1,
        "the refused request never reached the origin"
    );
    let status_page = raw_request(porter.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        status_page
            .text()
            .contains("only 2 host rules and 0 networks (--allow-host, --allow-dest)"),
        "{}",
        status_page.text()
    );

    // Deny rules win over allow rules.
    let both = proxy(&["--allow-host", "localhost", "--deny-host", "localhost"]);
    let denied = proxy_get(both.addr, &url_named(&origin, "localhost", "/c"), &[]);
    assert_eq!(denied.status, 403);
    assert!(
        denied.text().contains("--deny-host localhost"),
        "{}",
        denied.text()
    );
    assert_eq!(origin.hits(), 1);
}

#[test]
fn regression_allow_list_refuses_a_connect_to_an_unlisted_host() {
    let echo = echo_server();
    let port = echo.port().to_string();
    let porter = proxy(&["--allow-host", "localhost", "--connect-port", &port]);
    let (_stream, head) = open_tunnel(porter.addr, &format!("127.0.0.1:{port}"));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (mut tunnel, head) = open_tunnel(porter.addr, &format!("localhost:{port}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    tunnel.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

#[test]
fn regression_allow_dest_judges_the_address_a_name_resolves_to() {
    // `localhost` resolves to 127.0.0.1, where the origin listens: no name rule, only its address.
    let origin = headers_origin_at("127.0.0.1:0");
    let url = url_named(&origin, "localhost", "/page");
    let elsewhere = proxy(&["--allow-dest", "127.0.0.2/32"]);
    let refused = proxy_get(elsewhere.addr, &url, &[]);
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains(REFUSAL), "{}", refused.text());
    let literal = proxy_get(elsewhere.addr, &origin.url("/page"), &[]);
    assert_eq!(literal.status, 403, "{}", literal.text());
    assert_eq!(origin.hits(), 0);

    let here = proxy(&["--allow-dest", "127.0.0.1/32"]);
    let allowed = proxy_get(here.addr, &url, &[]);
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(origin.hits(), 1);
}

#[test]
fn regression_allow_list_judges_a_parent_routed_request_by_its_destination_not_the_parent() {
    // The parent listens on 127.0.0.1, which the allow list does not admit: it is still used.
    let allowed = headers_origin_at("127.0.0.2:0");
    let refused = headers_origin_at("127.0.0.1:0");
    let parent = proxy(&[]);
    let parent_addr = parent.addr.to_string();
    let child = proxy(&["--parent", &parent_addr, "--allow-dest", "127.0.0.2/32"]);
    let through = proxy_get(child.addr, &allowed.url("/via-parent"), &[]);
    assert_eq!(through.status, 200, "{}", through.text());
    let via = through
        .text()
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("via:"))
        .map(str::to_string)
        .unwrap_or_default();
    assert_eq!(via.matches("porter-").count(), 2, "child and parent: {via}");
    let denied = proxy_get(child.addr, &refused.url("/via-parent"), &[]);
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains(REFUSAL), "{}", denied.text());
    assert_eq!(refused.hits(), 0);
}

#[test]
fn regression_allow_list_refuses_intercepted_connects_and_requests_after_a_reload() {
    let setup = Setup::new();
    let config = setup.dir.path().join("porter.toml");
    write_config(&config, "allow-host = [\"localhost\"]\n");
    let porter = setup.proxy(&["--config", config.to_str().unwrap()]);
    let target = format!("localhost:{}", setup.port());
    let mut stream = tls_through(porter.addr, &target, "localhost", &setup.porter_ca());
    let first = get_inside(&mut stream, &target, "/first", false);
    assert_eq!(first.status, 200, "{}", first.text());

    reload(&porter, &config, "allow-host = [\"other.test\"]\n");
    // The same intercepted connection: its next request is judged by the new list.
    let inside = get_inside(&mut stream, &target, "/second", true);
    assert_eq!(inside.status, 403, "{}", inside.text());
    assert!(inside.text().contains(REFUSAL), "{}", inside.text());
    // A new CONNECT to an intercepted host is refused before any TLS.
    let (_tcp, head) = open_tunnel(porter.addr, &target);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(setup.origin.hits(), 1);
}

#[test]
fn regression_a_reload_that_adds_allow_rules_admits_their_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("porter.toml");
    let origin = headers_origin_at("127.0.0.1:0");
    let base = "no-cache = true\n";
    write_config(&config, &format!("{base}allow-host = [\"allowed.test\"]\n"));
    let porter = Porter::start(&["proxy", "--config", config.to_str().unwrap()]);
    let url = url_named(&origin, "localhost", "/page");
    let before = proxy_get(porter.addr, &url, &[]);
    assert_eq!(before.status, 403, "{}", before.text());

    // An --allow-dest rule added by the reload: the name check and the dial both take it.
    reload(
        &porter,
        &config,
        &format!("{base}allow-host = [\"allowed.test\"]\nallow-dest = [\"127.0.0.1/32\"]\n"),
    );
    let by_dest = proxy_get(porter.addr, &url, &[]);
    assert_eq!(by_dest.status, 200, "{}", by_dest.text());

    // And an --allow-host rule.
    reload(
        &porter,
        &config,
        &format!("{base}allow-host = [\"allowed.test\", \"localhost\"]\n"),
    );
    let by_host = proxy_get(porter.addr, &url, &[]);
    assert_eq!(by_host.status, 200, "{}", by_host.text());
    assert_eq!(origin.hits(), 2);
}
