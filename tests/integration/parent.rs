//! `--parent`: children fetching through a parent Porter, CONNECT through it, a parent that is down
//! with `--parent-fallback fail` and `direct`, and a loop of two Porters parenting each other.

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::util::*;

/// An origin whose every answer is fresh for ten minutes, so caches along the way keep it.
fn fresh_origin() -> Origin {
    Origin::start(|_, path, _| {
        let headers = hdrs(&[("Cache-Control", "max-age=600")]);
        (200, headers, format!("body of {path}").into_bytes())
    })
}

/// Every Cache-Status field of a response, joined as one list (the parent's entry first).
fn cache_status(response: &Response) -> String {
    let fields: Vec<&str> = response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-status"))
        .map(|(_, v)| v.as_str())
        .collect();
    fields.join(", ")
}

fn cache_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn proxy_args<'a>(dir: &'a tempfile::TempDir, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["proxy", "--cache-dir", dir.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_second_child_through_the_same_parent_is_a_parent_hit_with_the_parents_own_credentials() {
    let origin = fresh_origin();
    let (pdir, c1dir, c2dir) = (cache_dir(), cache_dir(), cache_dir());
    let parent = Porter::start(&proxy_args(&pdir, &["--auth-user", "team:t0ps3cret"]));
    let parent_addr = parent.addr.to_string();
    let child_args = |dir| {
        proxy_args(
            dir,
            &[
                "--parent",
                &parent_addr,
                "--parent-auth",
                "team:t0ps3cret",
                "--auth-user",
                "alice:a1ice",
            ],
        )
        .into_iter()
        .map(String::from)
        .collect::<Vec<String>>()
    };
    let args1 = child_args(&c1dir);
    let args2 = child_args(&c2dir);
    let child1 = Porter::start(&args1.iter().map(String::as_str).collect::<Vec<_>>());
    let child2 = Porter::start(&args2.iter().map(String::as_str).collect::<Vec<_>>());
    // alice's credentials are for the child; the parent only admits the team's.
    let alice = [("Proxy-Authorization", "Basic YWxpY2U6YTFpY2U=")];
    let url = origin.url("/shared.txt");

    let first = proxy_get(child1.addr, &url, &alice);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "body of /shared.txt");
    let status = cache_status(&first);
    assert!(status.starts_with("porter; fwd=miss; stored, "), "{status}");
    assert!(
        status.contains(&format!("fwd-parent=\"{parent_addr}\"")),
        "Cache-Status names the parent: {status}"
    );

    let second = proxy_get(child2.addr, &url, &alice);
    assert_eq!(second.status, 200);
    assert_eq!(second.text(), "body of /shared.txt");
    let status = cache_status(&second);
    assert!(
        status.starts_with("porter; hit"),
        "the parent's hit comes first: {status}"
    );
    assert!(status.contains("fwd=miss"), "{status}");
    assert_eq!(origin.hits(), 1, "the origin saw one request");
    let seen = origin.requests.lock().unwrap()[0].clone();
    assert!(
        seen.starts_with("GET /shared.txt HTTP/1.1"),
        "the parent asked in origin-form: {seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("proxy-authorization"),
        "{seen}"
    );
    // The child's access log names the parent as Squid does; the parent logged a hit.
    assert!(eventually(Duration::from_secs(5), || {
        child2
            .logs()
            .contains(&format!("HIT FIRSTUP_PARENT/{parent_addr}"))
            || child2
                .logs()
                .contains(&format!("MISS FIRSTUP_PARENT/{parent_addr}"))
    }));
    assert!(eventually(Duration::from_secs(5), || parent
        .logs()
        .contains(" HIT")));
    let metrics = proxy_get(
        child2.addr,
        &format!("http://{}/metrics", child2.addr),
        &alice,
    );
    assert!(
        metrics.text().contains(&format!(
            "porter_parent_requests_total{{parent=\"{parent_addr}\"}} 1"
        )),
        "{}",
        metrics.text()
    );
}

#[test]
fn a_child_whose_parent_credentials_are_wrong_answers_502_naming_the_parent_not_407() {
    let origin = fresh_origin();
    let (pdir, cdir) = (cache_dir(), cache_dir());
    let parent = Porter::start(&proxy_args(&pdir, &["--auth-user", "team:right"]));
    let parent_addr = parent.addr.to_string();
    let child = Porter::start(&proxy_args(
        &cdir,
        &["--parent", &parent_addr, "--parent-auth", "team:wrong"],
    ));
    let answer = proxy_get(child.addr, &origin.url("/x"), &[]);
    assert_eq!(answer.status, 502);
    assert!(answer.text().contains(&parent_addr), "{}", answer.text());
    assert!(answer.header("proxy-authenticate").is_none());
    assert_eq!(origin.hits(), 0);
}

#[test]
fn connect_goes_through_the_parent() {
    let echo = raw_server(|_, mut stream| {
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut buf = [0u8; 64];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                return;
            }
        }
    });
    let port = echo.port().to_string();
    let (pdir, cdir) = (cache_dir(), cache_dir());
    let parent = Porter::start(&proxy_args(&pdir, &["--connect-port", &port]));
    let parent_addr = parent.addr.to_string();
    let child = Porter::start(&proxy_args(
        &cdir,
        &["--connect-port", &port, "--parent", &parent_addr],
    ));
    let mut stream = connect(child.addr);
    write!(
        stream,
        "CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\nhello"
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let answer = read_response(&mut reader, true).expect("an answer");
    assert_eq!(answer.status, 200);
    let mut echoed = [0u8; 5];
    reader.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"HELLO");
    stream.write_all(b" again").unwrap();
    let mut more = [0u8; 6];
    reader.read_exact(&mut more).unwrap();
    assert_eq!(&more, b" AGAIN");
    drop((stream, reader));
    assert!(eventually(Duration::from_secs(5), || parent
        .logs()
        .contains("TUNNEL")));
    assert!(eventually(Duration::from_secs(5), || child
        .logs()
        .contains(&format!("TUNNEL FIRSTUP_PARENT/{parent_addr}"))));
}

#[test]
fn a_stopped_parent_is_a_502_naming_it_with_fail_and_direct_with_direct() {
    let origin = fresh_origin();
    let gone = format!("127.0.0.1:{}", closed_port());
    let (fail_dir, direct_dir) = (cache_dir(), cache_dir());
    let fail = Porter::start(&proxy_args(&fail_dir, &["--parent", &gone]));
    let direct = Porter::start(&proxy_args(
        &direct_dir,
        &["--parent", &gone, "--parent-fallback", "direct"],
    ));
    for attempt in 0..2 {
        // The first finds the parent refusing; the second finds it marked down.
        let answer = proxy_get(fail.addr, &origin.url(&format!("/f{attempt}")), &[]);
        assert_eq!(answer.status, 502);
        assert!(
            answer.text().contains(&gone),
            "the page names the parent: {}",
            answer.text()
        );
    }
    assert_eq!(origin.hits(), 0);
    let started = Instant::now();
    let answer = proxy_get(direct.addr, &origin.url("/d"), &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "body of /d");
    assert_eq!(origin.hits(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = proxy_get(fail.addr, &format!("http://{}/metrics", fail.addr), &[]);
    assert!(
        metrics
            .text()
            .contains(&format!("porter_parent_up{{parent=\"{gone}\"}} 0")),
        "{}",
        metrics.text()
    );
}

#[test]
fn a_direct_host_skips_the_parent() {
    let origin = fresh_origin();
    let gone = format!("127.0.0.1:{}", closed_port());
    let dir = cache_dir();
    let child = Porter::start(&proxy_args(
        &dir,
        &["--parent", &gone, "--direct-host", "127.0.0.1"],
    ));
    let answer = proxy_get(child.addr, &origin.url("/intranet"), &[]);
    assert_eq!(answer.status, 200);
    assert_eq!(origin.hits(), 1);
}

#[test]
fn two_porters_parenting_each_other_is_a_508_not_a_hang() {
    let origin = fresh_origin();
    let b_addr = format!("127.0.0.1:{}", closed_port());
    let (a_dir, b_dir) = (cache_dir(), cache_dir());
    let a = Porter::start(&proxy_args(&a_dir, &["--parent", &b_addr]));
    let a_addr = a.addr.to_string();
    let _b = Porter::start_at(&proxy_args(&b_dir, &["--parent", &a_addr]), None, &b_addr);
    let started = Instant::now();
    let answer = proxy_get(a.addr, &origin.url("/loop"), &[]);
    assert_eq!(answer.status, 508, "{}", answer.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(origin.hits(), 0);
    // Tunnels carry Via as well, so a CONNECT loop ends the same way.
    let tunnel = raw_request(
        a.addr,
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(tunnel.status, 508);
}

#[test]
fn intercepted_https_goes_through_the_parents_tunnel_and_is_cached_by_the_child() {
    use crate::intercept::{Setup, get_inside, tls_through};
    let setup = Setup::new();
    let port = setup.port();
    let pdir = cache_dir();
    // The parent only tunnels: the TLS to the origin runs end to end from the child.
    let parent = Porter::start(&proxy_args(&pdir, &["--connect-port", &port]));
    let parent_addr = parent.addr.to_string();
    let child = setup.proxy(&["--parent", &parent_addr]);
    let target = format!("localhost:{port}");
    let url = format!("https://{target}/through-parent");
    for round in 0..2 {
        let mut tls = tls_through(child.addr, &target, "localhost", &setup.porter_ca());
        let answer = get_inside(&mut tls, &target, "/through-parent", true);
        assert_eq!(answer.status, 200, "round {round}: {}", answer.text());
        assert_eq!(answer.text(), "GET /through-parent from the TLS origin");
    }
    assert_eq!(
        setup.origin.hits(),
        1,
        "the second request was a hit in the child"
    );
    assert!(eventually(Duration::from_secs(5), || {
        let logs = child.logs();
        logs.contains(&format!("GET {url} 200"))
            && logs.contains(&format!("MISS FIRSTUP_PARENT/{parent_addr}"))
    }));
    let metric = format!("porter_parent_requests_total{{parent=\"{parent_addr}\"}} 1");
    let metrics = proxy_get(child.addr, &format!("http://{}/metrics", child.addr), &[]);
    assert!(metrics.text().contains(&metric), "{}", metrics.text());
    // The parent logs a tunnel when it ends: when the child, and the TLS connection it pooled, go.
    drop(child);
    assert!(
        eventually(Duration::from_secs(5), || parent.logs().lines().any(|l| l
            .contains(&format!("CONNECT {target} 200"))
            && l.contains("TUNNEL"))),
        "{}",
        parent.logs()
    );
}

/// A parent that takes the whole request, body included, then hangs up without answering.
fn parent_that_hangs_up() -> std::net::SocketAddr {
    raw_server(|_, stream| {
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let mut reader = BufReader::new(stream);
        if let Some(head) = read_test_request_head(&mut reader)
            && let Some(len) = header_value(&head.headers, "content-length")
        {
            let mut body = vec![0u8; len.parse().unwrap_or(0)];
            let _ = reader.read_exact(&mut body);
        }
    })
}

#[test]
fn a_failing_parent_is_skipped_for_the_next_but_a_request_whose_body_went_up_is_not_resent() {
    let origin = fresh_origin();
    let (gdir, cdir, pdir) = (cache_dir(), cache_dir(), cache_dir());
    let good = Porter::start(&proxy_args(&gdir, &[]));
    let good_addr = good.addr.to_string();
    let flaky = parent_that_hangs_up().to_string();
    let parents = ["--parent", &flaky, "--parent", &good_addr];
    let poster = Porter::start(&proxy_args(&pdir, &parents));
    let child = Porter::start(&proxy_args(&cdir, &parents));
    // The body went to the first parent, which then failed: not sent again anywhere.
    let post = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd",
        origin.url("/form"),
        origin.addr
    );
    let answer = raw_request(poster.addr, post.as_bytes()).expect("an answer");
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(
        origin.hits(),
        0,
        "the body was not resent through the next parent"
    );
    // A GET has nothing to lose: the parent that hangs up is marked down and the next one answers
    // the same request.
    let answer = proxy_get(child.addr, &origin.url("/page"), &[]);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(origin.hits(), 1);
    assert!(eventually(Duration::from_secs(5), || child
        .logs()
        .contains(&format!("MISS FIRSTUP_PARENT/{good_addr}"))));
    let metrics = proxy_get(child.addr, &format!("http://{}/metrics", child.addr), &[]);
    let text = metrics.text();
    assert!(
        text.contains(&format!("porter_parent_up{{parent=\"{flaky}\"}} 0")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "porter_parent_requests_total{{parent=\"{good_addr}\"}} 1"
        )),
        "{text}"
    );
}
