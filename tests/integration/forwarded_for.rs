//! `--forwarded-for on|off|delete|transparent`: what the origin receives as X-Forwarded-For, with
//! and without a client's forged field, directly, through a parent and inside interception.

use std::io::Write;

use crate::intercept::{Setup, read_tls_response, tls_through};
use crate::tls::TlsOrigin;
use crate::util::*;

const FORGED: &str = "1.2.3.4";

/// An origin answering with the X-Forwarded-For fields it received, joined, or `none`.
fn xff_origin() -> Origin {
    Origin::start(|_, _, headers| (200, hdrs(&[]), received_xff(headers).into_bytes()))
}

fn received_xff(headers: &[(String, String)]) -> String {
    let fields: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, v)| v.as_str())
        .collect();
    if fields.is_empty() {
        "none".to_string()
    } else {
        fields.join(" | ")
    }
}

/// What the origin received for a request without and one with the forged field.
fn seen_through(porter: &Porter, origin: &Origin) -> (String, String) {
    let plain = proxy_get(porter.addr, &origin.url("/plain"), &[]);
    let forged = proxy_get(
        porter.addr,
        &origin.url("/forged"),
        &[("X-Forwarded-For", FORGED)],
    );
    assert_eq!((plain.status, forged.status), (200, 200));
    (plain.text(), forged.text())
}

#[test]
fn regression_forwarded_for_modes_rewrite_a_forged_x_forwarded_for() {
    let origin = xff_origin();
    let cases: [(&[&str], &str, &str); 5] = [
        (&[], "127.0.0.1", "1.2.3.4, 127.0.0.1"),
        (
            &["--forwarded-for", "on"],
            "127.0.0.1",
            "1.2.3.4, 127.0.0.1",
        ),
        (&["--forwarded-for", "off"], "unknown", "1.2.3.4, unknown"),
        (&["--forwarded-for", "delete"], "none", "none"),
        (&["--forwarded-for", "transparent"], "none", "1.2.3.4"),
    ];
    for (flags, plain, forged) in cases {
        let mut args = vec!["proxy", "--no-cache"];
        args.extend_from_slice(flags);
        let porter = Porter::start(&args);
        let seen = seen_through(&porter, &origin);
        assert_eq!(seen, (plain.to_string(), forged.to_string()), "{flags:?}");
    }
}

#[test]
fn regression_forwarded_for_is_appended_by_each_proxy_of_a_parent_chain() {
    let origin = xff_origin();
    let parent = Porter::start(&["proxy", "--no-cache"]);
    let parent_addr = parent.addr.to_string();
    let child = Porter::start(&["proxy", "--no-cache", "--parent", &parent_addr]);
    let (plain, forged) = seen_through(&child, &origin);
    assert_eq!(
        plain, "127.0.0.1, 127.0.0.1",
        "the child's client, then the child"
    );
    assert_eq!(forged, "1.2.3.4, 127.0.0.1, 127.0.0.1");
    let deleting = Porter::start(&[
        "proxy",
        "--no-cache",
        "--parent",
        &parent_addr,
        "--forwarded-for",
        "delete",
    ]);
    let (_, forged) = seen_through(&deleting, &origin);
    assert_eq!(forged, "127.0.0.1", "only the parent's own hop is left");
}

#[test]
fn regression_forwarded_for_applies_inside_interception() {
    let origin =
        TlsOrigin::start_with(|_, _, headers| (200, hdrs(&[]), received_xff(headers).into_bytes()));
    let setup = Setup::with_origin(origin);
    let target = format!("localhost:{}", setup.port());
    for (mode, expected) in [("on", "1.2.3.4, 127.0.0.1"), ("delete", "none")] {
        let porter = setup.proxy(&["--forwarded-for", mode]);
        let mut stream = tls_through(porter.addr, &target, "localhost", &setup.porter_ca());
        write!(
            stream,
            "GET /{mode} HTTP/1.1\r\nHost: {target}\r\nX-Forwarded-For: {FORGED}\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        stream.flush().unwrap();
        let response = read_tls_response(&mut stream);
        assert_eq!(response.text(), expected, "{mode}");
    }
}

/// An origin answering with the `Forwarded` fields it received, joined, or `none`.
fn forwarded_origin() -> Origin {
    Origin::start(|_, _, headers| {
        let fields: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("forwarded"))
            .map(|(_, v)| v.as_str())
            .collect();
        let seen = if fields.is_empty() {
            "none".to_string()
        } else {
            fields.join(" | ")
        };
        (200, hdrs(&[]), seen.into_bytes())
    })
}

#[test]
fn regression_forwarded_for_modes_rewrite_a_forged_rfc_7239_forwarded() {
    let origin = forwarded_origin();
    let forged = "for=1.2.3.4;proto=http";
    let cases = [
        ("on", "none", "for=1.2.3.4;proto=http, for=127.0.0.1"),
        ("off", "none", "for=1.2.3.4;proto=http, for=unknown"),
        ("delete", "none", "none"),
        ("transparent", "none", forged),
    ];
    for (mode, plain, expected) in cases {
        let porter = Porter::start(&["proxy", "--no-cache", "--forwarded-for", mode]);
        let without = proxy_get(porter.addr, &origin.url("/plain"), &[]);
        let with = proxy_get(
            porter.addr,
            &origin.url("/forged"),
            &[("Forwarded", forged)],
        );
        assert_eq!((without.status, with.status), (200, 200), "{mode}");
        assert_eq!(without.text(), plain, "{mode}: none is created");
        assert_eq!(with.text(), expected, "{mode}");
    }
}
