//! The access log as log analysers meet it: `--access-log FILE` in the squid format, parsed the way
//! GoAccess, SARG and Calamaris split it (and by `goaccess` itself when installed), the JSON lines,
//! the user name under proxy auth, `--log-query off`, and SIGUSR1 reopening the file after `mv`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::deploy::{basic, signal};
use crate::util::*;

fn text_origin() -> Origin {
    Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[
                ("Content-Type", "text/plain"),
                ("Cache-Control", "max-age=300"),
            ]),
            b"hello".to_vec(),
        )
    })
}

/// The file's lines once it holds at least `n` (the writer flushes within tens of milliseconds).
fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    eventually(Duration::from_secs(10), || {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= n
    });
    lines
}

/// One Squid access.log line split as the analysers do: whitespace-separated fields
/// `time.ms elapsed client code/status bytes method URL user hierarchy/peer type`.
#[derive(Debug)]
struct SquidLine {
    code: String,
    status: u16,
    bytes: u64,
    method: String,
    url: String,
    user: String,
    hierarchy: String,
}

fn parse_squid(line: &str) -> SquidLine {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Squid's ten fields, and an eleventh `detail=…` when the cache says why it did not store.
    let extra = fields.get(10).is_some_and(|f| f.starts_with("detail="));
    assert_eq!(
        fields.len(),
        10 + usize::from(extra),
        "not ten fields: {line}"
    );
    let (secs, millis) = fields[0].split_once('.').expect("time.millis");
    assert!(secs.parse::<u64>().unwrap() > 1_600_000_000, "{line}");
    assert_eq!(millis.len(), 3, "{line}");
    fields[1].parse::<u64>().expect("elapsed ms");
    fields[2]
        .parse::<std::net::IpAddr>()
        .expect("client address");
    let (code, status) = fields[3].split_once('/').expect("code/status");
    let (hierarchy, _peer) = fields[8].split_once('/').expect("hierarchy/peer");
    SquidLine {
        code: code.to_string(),
        status: status.parse().expect("status"),
        bytes: fields[4].parse().expect("bytes"),
        method: fields[5].to_string(),
        url: fields[6].to_string(),
        user: fields[7].to_string(),
        hierarchy: hierarchy.to_string(),
    }
}

#[test]
fn squid_log_lines_parse_as_log_analysers_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let origin = text_origin();
    let cache = dir.path().join("cache");
    let porter = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
        "--log-format",
        "squid",
        "--log-query",
        "off",
        "--auth-user",
        "alice:pw",
        "--deny-host",
        "denied.test",
    ]);
    let auth = basic("alice:pw");
    let creds = [("Proxy-Authorization", auth.as_str())];
    let url = origin.url("/page?token=secret");
    assert_eq!(proxy_get(porter.addr, &url, &creds).status, 200);
    assert_eq!(proxy_get(porter.addr, &url, &creds).status, 200);
    assert_eq!(
        proxy_get(porter.addr, "http://denied.test/", &creds).status,
        403
    );
    assert_eq!(proxy_get(porter.addr, &url, &[]).status, 407);
    let lines = lines_of(&log, 4);
    // Lines are written as requests finish, which need not be the order they were sent in.
    let parsed: Vec<SquidLine> = lines.iter().map(|l| parse_squid(l)).collect();
    let find = |code: &str, status: u16| {
        parsed
            .iter()
            .position(|l| l.code == code && l.status == status)
            .unwrap_or_else(|| panic!("no {code}/{status} in {lines:#?}"))
    };
    let miss = &parsed[find("TCP_MISS", 200)];
    assert_eq!(miss.hierarchy, "HIER_DIRECT");
    assert!(lines[find("TCP_MISS", 200)].ends_with(" text/plain"));
    let hit = &parsed[find("TCP_HIT", 200)];
    assert_eq!(hit.hierarchy, "HIER_NONE");
    assert!(hit.bytes > 5);
    let denied = &parsed[find("TCP_DENIED", 403)];
    for line in [miss, hit, denied] {
        assert_eq!((line.user.as_str(), line.method.as_str()), ("alice", "GET"));
    }
    assert_eq!(parsed[find("TCP_DENIED", 407)].user, "-");
    assert_eq!(
        miss.url,
        origin.url("/page"),
        "--log-query off drops the query"
    );
    assert!(!std::fs::read_to_string(&log).unwrap().contains("secret"));
    assert!(!std::fs::read_to_string(&log).unwrap().contains("pw"));
    goaccess_reads(&log, 4);
}

/// Runs GoAccess on the log, read as Squid's native access.log, when it is installed (`.ci/run` installs it).
fn goaccess_reads(log: &Path, requests: u64) {
    if require_tool(&["goaccess"], "goaccess").is_none() {
        // The squid lines were still parsed by the test itself.
        return;
    }
    let report = log.with_file_name("report.json");
    let output = Command::new("goaccess")
        .arg(log)
        // GoAccess's predefined `SQUID` format expects Squid's line behind a syslog prefix; for
        // Squid's own access.log its documentation gives this format.
        .args([
            "--log-format=%x.%^ %~%L %h %^/%s %b %m %U",
            "--date-format=%s",
            "--time-format=%s",
            "--no-global-config",
            "-o",
        ])
        .arg(&report)
        .output()
        .expect("goaccess runs");
    assert!(output.status.success(), "goaccess: {output:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let general = &report["general"];
    assert_eq!(general["total_requests"], requests, "{general}");
    assert_eq!(general["failed_requests"], 0, "{general}");
}

/// The issue: Cache-Status said `detail=no-freshness` while the access log said only `MISS`. Each
/// format now carries why a response was not stored.
#[test]
fn regression_access_log_says_why_a_response_was_not_stored_in_every_format() {
    let origin = Origin::start(|_, path, _| {
        let cc: &[(&str, &str)] = match path {
            "/no-store" => &[
                ("Content-Type", "text/plain"),
                ("Cache-Control", "no-store"),
            ],
            // No Cache-Control, Expires or Last-Modified: nothing to compute freshness from.
            _ => &[("Content-Type", "text/plain")],
        };
        (200, hdrs(cc), b"body".to_vec())
    });
    for format in ["porter", "squid", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let cache = dir.path().join("cache");
        let porter = Porter::start(&[
            "proxy",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--access-log",
            log.to_str().unwrap(),
            "--log-format",
            format,
        ]);
        for path in ["/no-store", "/plain"] {
            let response = proxy_get(porter.addr, &origin.url(path), &[]);
            assert_eq!(response.status, 200);
            assert!(
                response
                    .header("cache-status")
                    .is_some_and(|v| v.contains("detail=")),
                "{:?}",
                response.header("cache-status")
            );
        }
        let lines = lines_of(&log, 2);
        let line_for = |path: &str| {
            lines
                .iter()
                .find(|l| l.contains(&origin.url(path)))
                .unwrap_or_else(|| panic!("no line for {path} in {lines:#?}"))
                .clone()
        };
        for (path, detail) in [
            ("/no-store", "response-no-store"),
            ("/plain", "no-freshness"),
        ] {
            let line = line_for(path);
            match format {
                "json" => {
                    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                    assert_eq!(value["detail"], detail, "{line}");
                }
                "squid" => {
                    let parsed = parse_squid(&line);
                    assert_eq!((parsed.code.as_str(), parsed.status), ("TCP_MISS", 200));
                    assert!(line.ends_with(&format!(" detail={detail}")), "{line}");
                }
                _ => assert!(line.contains(&format!(" MISS detail={detail}")), "{line}"),
            }
        }
        if format == "squid" {
            goaccess_reads(&log, 2);
        }
    }
}

#[test]
fn json_log_lines_are_objects_with_stable_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let origin = text_origin();
    let porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--access-log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    assert_eq!(
        proxy_get(porter.addr, &origin.url("/a?q=1"), &[]).status,
        200
    );
    let lines = lines_of(&log, 1);
    let value: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON object");
    assert_eq!(value["method"], "GET");
    assert_eq!(value["url"], origin.url("/a?q=1"));
    assert_eq!(value["status"], 200);
    assert_eq!(value["outcome"], "PASS");
    assert_eq!(value["squid_code"], "TCP_MISS");
    assert_eq!(value["content_type"], "text/plain");
    assert!(value["user"].is_null() && value["elapsed_ms"].is_u64() && value["bytes"].is_u64());
}

#[test]
fn sigusr1_after_mv_writes_to_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let origin = text_origin();
    let porter = Porter::start(&["proxy", "--no-cache", "--access-log", log.to_str().unwrap()]);
    assert_eq!(
        proxy_get(porter.addr, &origin.url("/first"), &[]).status,
        200
    );
    assert_eq!(lines_of(&log, 1).len(), 1);
    std::fs::rename(&log, &rotated).unwrap();
    signal(&porter, "USR1");
    assert!(
        eventually(Duration::from_secs(10), || log.exists()),
        "{}",
        porter.logs()
    );
    assert_eq!(
        proxy_get(porter.addr, &origin.url("/second"), &[]).status,
        200
    );
    let new = lines_of(&log, 1);
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].contains("/second"), "{new:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/first") && !old.contains("/second"), "{old}");
}

#[test]
fn regression_c1_controls_and_bidi_overrides_reach_logs_and_pages_escaped() {
    // U+009B is a one-character CSI; U+202E reverses what follows it on screen.
    let origin = Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/plain\u{9b}31m\u{202e}txt")]),
            b"hello".to_vec(),
        )
    });
    let raw = |text: &str| text.contains('\u{9b}') || text.contains('\u{202e}');
    for format in ["porter", "squid", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let porter = Porter::start(&[
            "proxy",
            "--no-cache",
            "--access-log",
            log.to_str().unwrap(),
            "--log-format",
            format,
        ]);
        assert_eq!(proxy_get(porter.addr, &origin.url("/a"), &[]).status, 200);
        // A host with the raw characters (UTF-8 bytes in the request line), and percent-encoded.
        let refused = raw_request(
            porter.addr,
            b"GET http://ev\xc2\x9bil\xe2\x80\xaeexample/ HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
        assert_eq!(refused.status, 400);
        assert!(!raw(&refused.text()), "{:?}", refused.text());
        raw_request(
            porter.addr,
            b"GET http://ev%C2%9Bil%E2%80%AEexample/ HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .unwrap();
        let status = raw_request(porter.addr, b"GET / HTTP/1.1\r\nHost: porter\r\n\r\n").unwrap();
        assert!(!raw(&status.text()), "{:?}", status.text());
        let lines = lines_of(&log, 4);
        let text = lines.join("\n");
        assert!(!raw(&text), "{format}: {text:?}");
        // JSON strings write the escape's backslash as `\\`.
        let escaped = |text: &str| match format {
            "json" => text.replace('\\', "\\\\"),
            _ => text.to_string(),
        };
        assert!(
            text.contains(&escaped("ev\\u{9b}il\\u{202e}example")),
            "{format}: {text}"
        );
        if format != "porter" {
            // Porter's own line has no Content-Type field.
            assert!(
                text.contains(&escaped("text/plain\\u{9b}31m\\u{202e}txt")),
                "{format}: {text}"
            );
        }
        assert!(!raw(&porter.logs()), "{:?}", porter.logs());
    }
}
