//! What an operator meets first (issue 23): messages that name the flag to use, host names where an
//! address is asked for, a URL typed as curl takes it, `--print` for pipes, durations that say
//! their unit. Each test pins one of those fixes through the real binary.

use std::io::{Read, Write};

use crate::util::*;

fn hello_origin() -> Origin {
    Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/plain"), ("Content-Length", "5")]),
            b"hello".to_vec(),
        )
    })
}

#[test]
fn regression_connect_403_names_the_connect_port_flag() {
    let porter = Porter::start(&["proxy", "--no-cache"]);
    let response = raw_request(
        porter.addr,
        b"CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n",
    )
    .unwrap();
    assert_eq!(response.status, 403);
    let text = response.text();
    assert!(text.contains("allowed ports: 443"), "{text}");
    assert!(text.contains("--connect-port 25"), "{text}");
}

#[test]
fn regression_listen_takes_a_host_name_for_proxy_serve_and_upper() {
    let proxy = Porter::start_at(&["proxy", "--no-cache"], None, "localhost:0");
    assert_eq!(proxy.addr.ip().to_string(), "127.0.0.1");
    let metrics = raw_request(proxy.addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(metrics.status, 200);

    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.txt"), "hi").unwrap();
    let root = site.path().to_str().unwrap();
    let serve = Porter::start_at(&["serve", "--root", root], Some(site.path()), "localhost:0");
    assert_eq!(serve.addr.ip().to_string(), "127.0.0.1");
    let page = raw_request(
        serve.addr,
        b"GET /index.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.text(), "hi");

    let upper = Porter::start_at(&["upper", "serve"], None, "localhost:0");
    assert_eq!(upper.addr.ip().to_string(), "127.0.0.1");
    let mut stream = connect(upper.addr);
    stream.write_all(b"shout\n").unwrap();
    let mut reply = [0u8; 6];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"SHOUT\n");

    // A port that is no number is refused with words, before anything binds.
    let dir = tempfile::tempdir().unwrap();
    let run = run_porter(
        &["proxy", "--listen", "localhost:http"],
        dir.path(),
        &[],
        None,
    );
    assert!(!run.ok());
    assert!(
        run.stderr.contains("is not a port number"),
        "{}",
        run.stderr
    );
}

#[test]
fn regression_fetch_takes_a_url_without_scheme_as_http() {
    let origin = hello_origin();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("localhost:{}/x", origin.addr.port());
    let run = run_porter(&["fetch", "--print", &url], dir.path(), &[], None);
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.stdout, "hello");
    assert_eq!(origin.hits(), 1);
    let run = run_porter(&["fetch", "http://h:99999/"], dir.path(), &[], None);
    assert!(!run.ok());
    assert!(
        run.stderr.contains("the port is not a number"),
        "{}",
        run.stderr
    );
}

#[test]
fn regression_fetch_print_writes_stdout_only() {
    let origin = hello_origin();
    let dir = tempfile::tempdir().unwrap();
    let run = run_porter(
        &["fetch", "--print", &origin.url("/x.txt")],
        dir.path(),
        &[],
        None,
    );
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.stdout, "hello");
    assert!(
        run.stderr.contains("printed (--print saves nothing)"),
        "{}",
        run.stderr
    );
    assert!(
        file_names(dir.path()).is_empty(),
        "--print left files behind: {:?}",
        file_names(dir.path())
    );
}

#[test]
fn regression_every_duration_flag_says_a_bare_number_is_seconds() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        &["proxy", "--help"][..],
        &["serve", "--help"],
        &["fetch", "--help"],
    ] {
        let run = run_porter(command, dir.path(), &[], None);
        assert!(run.ok(), "{run:?}");
        // Each flag's block runs from its `--flag <DUR>` line to the next flag.
        let blocks = run.stdout.split("\n  -").filter(|b| b.contains("<DUR>"));
        let mut seen = 0;
        for block in blocks {
            seen += 1;
            assert!(
                block.contains("a number of seconds") && block.contains("ms, s, m, h or d"),
                "{command:?}: {block}"
            );
        }
        assert!(seen > 0, "{command:?} lists no <DUR> flag");
    }
    // A unit that is none names the ones there are.
    let run = run_porter(
        &["fetch", "--timeout", "5x", "http://127.0.0.1:9/"],
        dir.path(),
        &[],
        None,
    );
    assert!(!run.ok());
    assert!(
        run.stderr
            .contains("a bare number is seconds; units: ms, s, m, h, d"),
        "{}",
        run.stderr
    );
}

/// The bug: `porter fetch` said rustls's words (`invalid peer certificate: UnknownIssuer`, or
/// `Other(OtherError(CaUsedAsEndEntity))`) where the proxy names the cause; it now names it the
/// same way (`tls::verify`, `tls::stats::Failure`) with its own flag to fix it.
#[test]
fn regression_fetch_names_certificate_failures_as_the_proxy_does() {
    use crate::tls::TlsOrigin;
    let dir = tempfile::tempdir().unwrap();

    let untrusted = TlsOrigin::start(b"hi".to_vec());
    let run = run_porter(&["fetch", &untrusted.url("/")], dir.path(), &[], None);
    assert!(!run.ok());
    assert!(run.stderr.contains("(unknown-issuer;"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("trust the CA that issued it with --cacert FILE"),
        "{}",
        run.stderr
    );

    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "self-signed origin");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let self_signed = TlsOrigin::start_with_certificate(vec![cert.der().clone()], &key);
    let run = run_porter(&["fetch", &self_signed.url("/")], dir.path(), &[], None);
    assert!(!run.ok());
    assert!(
        run.stderr.contains("its certificate is self-signed")
            && run.stderr.contains("(self-signed;"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("--upstream-ca"), "{}", run.stderr);
    assert!(run.stderr.contains("--insecure"), "{}", run.stderr);
}

/// A GET through the proxy with `user:password` as Basic Proxy-Authorization: the status.
fn status_as(proxy: std::net::SocketAddr, origin: &Origin, pair: &str) -> u16 {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(pair);
    let auth = format!("Basic {token}");
    proxy_get(proxy, &origin.url("/"), &[("Proxy-Authorization", &auth)]).status
}

/// `--auth-file` took `user:password` lines only, so a file from `htpasswd -B` admitted nobody
/// (or anyone who read the hash). bcrypt lines from `htpasswd -B` and from `porter passwd` now
/// authenticate through the proxy; a wrong password gets 407; a plain line works with a warning.
#[test]
fn regression_auth_file_takes_bcrypt_from_htpasswd_and_porter_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");

    // porter passwd --file, the password piped in; then a second user, and a replacement.
    let users_arg = users.to_str().unwrap();
    for (user, password) in [("alice", "wonder land"), ("bob", "old"), ("bob", "b0b")] {
        let input = format!("{password}\n");
        let run = run_porter(
            &["passwd", "--cost", "4", "--file", users_arg, user],
            dir.path(),
            &[],
            Some(input.as_bytes()),
        );
        assert!(run.ok(), "{run:?}");
    }
    let text = std::fs::read_to_string(&users).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains(":$2y$04$")), "{text}");
    assert!(!text.contains("b0b") && !text.contains("wonder"), "{text}");

    // htpasswd -B (apt package apache2-utils): CI must have it; elsewhere its part is skipped visibly.
    let htpasswd = crate::util::require_tool(&["htpasswd"], "apache2-utils");
    if let Some(htpasswd) = &htpasswd {
        let status = std::process::Command::new(htpasswd)
            .args(["-B", "-b", "-C", "4", users_arg, "carol", "c4rol"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    let origin = hello_origin();
    let proxy = Porter::start(&["proxy", "--no-cache", "--auth-file", users_arg]);
    assert_eq!(status_as(proxy.addr, &origin, "alice:wonder land"), 200);
    assert_eq!(status_as(proxy.addr, &origin, "bob:b0b"), 200);
    assert_eq!(status_as(proxy.addr, &origin, "bob:old"), 407);
    assert_eq!(status_as(proxy.addr, &origin, "alice:wrong"), 407);
    if htpasswd.is_some() {
        assert_eq!(status_as(proxy.addr, &origin, "carol:c4rol"), 200);
        assert_eq!(status_as(proxy.addr, &origin, "carol:carol"), 407);
    }
    // Verified once, remembered: a second request of alice's is admitted as well.
    assert_eq!(status_as(proxy.addr, &origin, "alice:wonder land"), 200);
    assert!(!proxy.logs().contains("plain-text"), "{}", proxy.logs());

    // A plain line still works, with a warning at start that names the file and porter passwd.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "dave:d4ve\n").unwrap();
    let proxy = Porter::start(&[
        "proxy",
        "--no-cache",
        "--auth-file",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(status_as(proxy.addr, &origin, "dave:d4ve"), 200);
    let logs = proxy.logs();
    assert!(
        logs.contains("plain-text passwords") && logs.contains("porter passwd"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("{}:1 (dave)", plain.display())),
        "{logs}"
    );
    assert!(!logs.contains("d4ve"), "the password is never logged");
}
