//! The request catalogue: malformed, ambiguous and oversized requests (RFC 9112 §2-§7) sent over real
//! sockets, each with the status it must get and the connection closed after it. Heads that must be
//! refused never reach the origin; bodies with broken chunked framing are refused mid-stream. A few
//! accepted controls show the strictness does not refuse what the RFC allows.

use std::thread;

use super::{Answer, send};
use crate::util::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// This status, then the connection closes.
    Status(u16),
    /// No response at all: the connection just closes (a timeout, or a client that vanished).
    Quiet,
}

pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
    /// Shut down our sending side after the bytes (a client that stops mid-message).
    pub half_close: bool,
}

fn case(name: &str, bytes: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name: name.to_string(),
        bytes: bytes.into(),
        expect: Expect::Status(status),
        half_close: false,
    }
}

/// A string's characters up to U+00FF as single bytes, so `\u{e9}` becomes the obs-text byte 0xE9
/// (in a Rust string it would be UTF-8).
fn latin1(text: String) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(c).expect("latin-1"))
        .collect()
}

fn vanishing(name: &str, bytes: impl Into<Vec<u8>>) -> Case {
    Case {
        name: name.to_string(),
        bytes: bytes.into(),
        expect: Expect::Quiet,
        half_close: true,
    }
}

/// Checks one answer against its case.
pub fn check(case: &Case, answer: &Answer) {
    let name = &case.name;
    match case.expect {
        Expect::Status(status) => {
            assert_eq!(
                answer.status,
                Some(status),
                "{name}: wrong answer {:?}",
                answer.excerpt()
            );
            assert!(answer.closed, "{name}: connection left open after {status}");
            if status >= 400 {
                assert_eq!(
                    answer.header("connection").as_deref(),
                    Some("close"),
                    "{name}: error without Connection: close"
                );
            }
        }
        Expect::Quiet => {
            assert!(
                answer.response.is_empty(),
                "{name}: expected a quiet close, got {:?}",
                answer.excerpt()
            );
            assert!(answer.closed, "{name}: connection not closed");
        }
    }
}

/// Sends every case on its own connection and checks the answer.
pub fn run(addr: std::net::SocketAddr, cases: &[Case]) {
    for case in cases {
        let answer = send(addr, &case.bytes, case.half_close);
        check(case, &answer);
    }
}

/// Heads that are malformed or ambiguous in themselves. `target` is an absolute URL (for the proxy)
/// or a path (for the origin server).
pub fn head_catalogue(target: &str) -> Vec<Case> {
    let t = target;
    let get =
        |extra: &str| format!("GET {t} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n");
    let post = |extra: &str| {
        format!("POST {t} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\nhello")
    };
    let long_target = format!("{t}?{}", "a".repeat(8200));
    let mut cases = vec![
        // Request line (RFC 9112 §3): one space each, a token method, HTTP/1.0 or 1.1.
        case(
            "double space after method",
            format!("GET  {t} HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "double space before version",
            format!("GET {t}  HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "space after version",
            format!("GET {t} HTTP/1.1 \r\n\r\n"),
            400,
        ),
        case(
            "space before method",
            format!(" GET {t} HTTP/1.1\r\n\r\n"),
            400,
        ),
        case("tab separator", format!("GET\t{t} HTTP/1.1\r\n\r\n"), 400),
        case("no version", format!("GET {t}\r\n\r\n"), 400),
        case(
            "lowercase version",
            format!("GET {t} http/1.1\r\n\r\n"),
            400,
        ),
        case(
            "version without dot",
            format!("GET {t} HTTP/11\r\n\r\n"),
            400,
        ),
        case("two-digit minor", format!("GET {t} HTTP/1.10\r\n\r\n"), 400),
        case(
            "HTTPS version name",
            format!("GET {t} HTTPS/1.1\r\n\r\n"),
            400,
        ),
        case("method only", "GET\r\n\r\n", 400),
        case(
            "method with paren",
            format!("G(T {t} HTTP/1.1\r\n\r\n"),
            400,
        ),
        case("method with NUL", format!("G\0T {t} HTTP/1.1\r\n\r\n"), 400),
        case(
            "method with obs-text",
            latin1(format!("G\u{e9}T {t} HTTP/1.1\r\n\r\n")),
            400,
        ),
        case(
            "target with control byte",
            format!("GET {t}\x01 HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "target with DEL",
            format!("GET {t}\x7f HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "target with space",
            format!("GET {t} x HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "target with NUL",
            format!("GET {t}\0 HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "TLS client hello",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
            400,
        ),
        case("SSH banner", "SSH-2.0-OpenSSH_9.6\r\n\r\n", 400),
        case("HTTP/0.9 request", format!("GET {t}\r\n"), 400),
        case("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        case("HTTP/2.0", format!("GET {t} HTTP/2.0\r\n\r\n"), 505),
        case("HTTP/0.9 version", format!("GET {t} HTTP/0.9\r\n\r\n"), 505),
        case("HTTP/1.2", format!("GET {t} HTTP/1.2\r\n\r\n"), 505),
        case("HTTP/3", format!("GET {t} HTTP/3\r\n\r\n"), 505),
        // Line endings (RFC 9112 §2.2): CRLF only.
        case(
            "bare LF after request line",
            format!("GET {t} HTTP/1.1\nHost: h\r\n\r\n"),
            400,
        ),
        case(
            "bare LF after field",
            format!("GET {t} HTTP/1.1\r\nHost: h\n\r\n"),
            400,
        ),
        case(
            "bare LF everywhere",
            format!("GET {t} HTTP/1.1\nHost: h\n\n"),
            400,
        ),
        case(
            "bare LF ending the head",
            format!("GET {t} HTTP/1.1\r\nHost: h\r\n\n"),
            400,
        ),
        case(
            "bare LF before request line",
            format!("\nGET {t} HTTP/1.1\r\n\r\n"),
            400,
        ),
        case(
            "bare CR after request line",
            format!("GET {t} HTTP/1.1\rHost: h\r\n\r\n"),
            400,
        ),
        case("bare CR in value", get("X: a\rb\r\n"), 400),
        case("CR CR LF", get("X: a\r\r\n"), 400),
        case(
            "bare CR ending the head",
            format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\r\n"),
            400,
        ),
        // Field syntax (RFC 9112 §5, RFC 9110 §5.5).
        case("obs-fold with space", get("X: a\r\n b\r\n"), 400),
        case("obs-fold with tab", get("X: a\r\n\tb\r\n"), 400),
        case(
            "folded first field",
            format!("GET {t} HTTP/1.1\r\n Host: h\r\n\r\n"),
            400,
        ),
        case("space before colon", get("Host : h\r\n"), 400),
        case("tab before colon", get("X\t: 1\r\n"), 400),
        case("empty field name", get(": x\r\n"), 400),
        case("field without colon", get("NoColon\r\n"), 400),
        case("paren in field name", get("X(y): 1\r\n"), 400),
        case("at sign in field name", get("X@y: 1\r\n"), 400),
        case("obs-text in field name", latin1(get("X\u{e9}: 1\r\n")), 400),
        case("NUL in field name", get("X\0Y: 1\r\n"), 400),
        case("NUL in field value", get("X: a\0b\r\n"), 400),
        case("SOH in field value", get("X: a\x01b\r\n"), 400),
        case("ESC in field value", get("X: \x1b[31mred\r\n"), 400),
        case("DEL in field value", get("X: a\x7fb\r\n"), 400),
        case("vertical tab in value", get("X: a\x0bb\r\n"), 400),
        case("form feed in value", get("X: a\x0cb\r\n"), 400),
        case("two Host fields", get("Host: other\r\n"), 400),
        // Framing (RFC 9112 §6): one unambiguous length or a final chunked.
        case(
            "CL and TE",
            post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
            400,
        ),
        case(
            "TE and CL",
            post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
            400,
        ),
        case(
            "TE and CL any case",
            post("transfer-encoding: CHUNKED\r\ncontent-length: 5\r\n"),
            400,
        ),
        case(
            "differing CL fields",
            post("Content-Length: 5\r\nContent-Length: 6\r\n"),
            400,
        ),
        case("differing CL list", post("Content-Length: 5, 6\r\n"), 400),
        case(
            "CL zero then five",
            post("Content-Length: 0\r\nContent-Length: 5\r\n"),
            400,
        ),
        case("CL with plus", post("Content-Length: +5\r\n"), 400),
        case("CL negative", post("Content-Length: -1\r\n"), 400),
        case("CL hex", post("Content-Length: 0x5\r\n"), 400),
        case("CL exponent", post("Content-Length: 5e0\r\n"), 400),
        case("CL inner space", post("Content-Length: 5 5\r\n"), 400),
        case("CL empty", post("Content-Length: \r\n"), 400),
        case("CL empty list item", post("Content-Length: 5,,5\r\n"), 400),
        case(
            "CL 20 digits",
            post("Content-Length: 99999999999999999999\r\n"),
            400,
        ),
        case(
            "CL obs-text",
            latin1(post("Content-Length: 5\u{e9}\r\n")),
            400,
        ),
        case(
            "TE chunked not final",
            post("Transfer-Encoding: chunked, gzip\r\n"),
            400,
        ),
        case("TE gzip only", post("Transfer-Encoding: gzip\r\n"), 400),
        case("TE identity", post("Transfer-Encoding: identity\r\n"), 400),
        case("TE empty", post("Transfer-Encoding: \r\n"), 400),
        case(
            "TE chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n"),
            400,
        ),
        case(
            "TE chunked in two fields",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            400,
        ),
        case(
            "TE gzip after chunked field",
            post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
            400,
        ),
        case("TE xchunked", post("Transfer-Encoding: xchunked\r\n"), 400),
        case(
            "TE chunked with parameter",
            post("Transfer-Encoding: chunked;q=1\r\n"),
            400,
        ),
        case(
            "TE obs-text",
            latin1(post("Transfer-Encoding: \u{e9}, chunked\r\n")),
            400,
        ),
        case(
            "TE gzip then chunked",
            post("Transfer-Encoding: gzip, chunked\r\n"),
            501,
        ),
        case(
            "TE deflate then chunked",
            post("Transfer-Encoding: deflate, chunked\r\n"),
            501,
        ),
        case(
            "TE in HTTP/1.0",
            format!("POST {t} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        // Limits (RFC 9112 §3, RFC 6585 §5).
        case(
            "target over 8 KiB",
            format!("GET {long_target} HTTP/1.1\r\n\r\n"),
            414,
        ),
        case(
            "unfinished target over 8 KiB",
            format!("GET {long_target}"),
            414,
        ),
        case(
            "field over 64 KiB",
            get(&format!("X: {}\r\n", "v".repeat(66_000))),
            431,
        ),
        case("101 fields", get(&"X: y\r\n".repeat(101)), 431),
        case(
            "head over 64 KiB in small fields",
            get(&"X-Long: yyyyyyyyyy\r\n".repeat(3400)),
            431,
        ),
        case(
            "unfinished head of 64 KiB",
            format!("GET {t} HTTP/1.1\r\nX: {}", "v".repeat(65_536)),
            431,
        ),
    ];
    // Request targets the proxy cannot forward (RFC 9112 §3.2); an origin server takes paths only.
    if t.starts_with("http://") {
        let authority = t
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        cases.extend([
            case("ftp scheme", "GET ftp://example.com/ HTTP/1.1\r\n\r\n", 501),
            case(
                "https without CONNECT",
                "GET https://example.com/ HTTP/1.1\r\n\r\n",
                501,
            ),
            case("empty authority", "GET http:/// HTTP/1.1\r\n\r\n", 400),
            case(
                "backslash authority",
                "GET http://\\\\example.com/ HTTP/1.1\r\n\r\n",
                400,
            ),
            case(
                "port out of range",
                "GET http://127.0.0.1:99999/ HTTP/1.1\r\n\r\n",
                400,
            ),
            case("unclosed IPv6", "GET http://[::1/ HTTP/1.1\r\n\r\n", 400),
            case(
                "no scheme",
                format!("GET {authority}/ HTTP/1.1\r\n\r\n"),
                400,
            ),
            case("asterisk target for GET", "GET * HTTP/1.1\r\n\r\n", 400),
            case(
                "CONNECT without port",
                "CONNECT example.com HTTP/1.1\r\n\r\n",
                400,
            ),
            case(
                "CONNECT port zero",
                "CONNECT example.com:0 HTTP/1.1\r\n\r\n",
                400,
            ),
            case(
                "CONNECT to SMTP",
                "CONNECT 127.0.0.1:25 HTTP/1.1\r\n\r\n",
                403,
            ),
            case(
                "CONNECT bad host",
                "CONNECT ex ample.com:443 HTTP/1.1\r\n\r\n",
                400,
            ),
        ]);
    }
    cases
}

/// Chunked request bodies with broken framing (RFC 9112 §7.1), behind a valid head; and messages the
/// client abandons half-way (shut down before the body ended: no one left to answer).
pub fn body_catalogue(target: &str) -> Vec<Case> {
    let chunked = |body: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        )
    };
    vec![
        case(
            "chunk size not hex",
            chunked("zz\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk size with space before",
            chunked(" 5\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk size 0x prefix",
            chunked("0x5\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk size negative",
            chunked("-5\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk size overflow",
            chunked("fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case("chunk size empty", chunked("\r\nhello\r\n0\r\n\r\n"), 400),
        case("chunk size bare LF", chunked("5\nhello\r\n0\r\n\r\n"), 400),
        case(
            "chunk size bare CR",
            chunked("5\r\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk data longer than size",
            chunked("5\r\nhelloXX\r\n0\r\n\r\n"),
            400,
        ),
        case("chunk data bare LF", chunked("5\r\nhello\n0\r\n\r\n"), 400),
        case(
            "chunk ext without name",
            chunked("5;\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk ext empty value",
            chunked("5;a=\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk ext space in value",
            chunked("5;a=b c\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk ext open quote",
            chunked("5;a=\"b\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case("chunk ext NUL", chunked("5;a\0\r\nhello\r\n0\r\n\r\n"), 400),
        case(
            "chunk ext junk",
            chunked("5 junk\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        case(
            "chunk line over 4 KiB",
            chunked(&format!("5;a={}\r\nhello\r\n0\r\n\r\n", "b".repeat(5000))),
            400,
        ),
        case(
            "trailer bare LF",
            chunked("5\r\nhello\r\n0\r\nX: 1\n\r\n"),
            400,
        ),
        case(
            "trailer obs-fold",
            chunked("5\r\nhello\r\n0\r\nX: 1\r\n 2\r\n\r\n"),
            400,
        ),
        case(
            "trailer without colon",
            chunked("5\r\nhello\r\n0\r\nX\r\n\r\n"),
            400,
        ),
        case(
            "trailer NUL",
            chunked("5\r\nhello\r\n0\r\nX: \0\r\n\r\n"),
            400,
        ),
        vanishing("chunked body cut off", chunked("5\r\nhello\r\n5\r\nhe")),
        vanishing(
            "length body cut off",
            format!(
                "POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\nConnection: close\r\n\r\nhello"
            ),
        ),
        vanishing(
            "head cut off",
            format!("GET {target} HTTP/1.1\r\nHost: h\r\n"),
        ),
    ]
}

/// Requests at the edge of the rules that must still be served (the strictness does not overreach).
fn accepted_catalogue(target: &str) -> Vec<Case> {
    let t = target;
    let get =
        |extra: &str| format!("GET {t} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n");
    let post = |extra: &str, body: &str| {
        format!("POST {t} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n{body}")
    };
    vec![
        case("no space after colon", get("X:1\r\n"), 200),
        // Bytes 0x80-0xFF (here UTF-8 é): the test origin reads heads as UTF-8 text.
        case("obs-text in value", get("X: caf\u{e9}\r\n"), 200),
        case("tab in value", get("X: a\tb\r\n"), 200),
        case("empty value", get("X:\r\n"), 200),
        case("100 fields", get(&"X: y\r\n".repeat(97)), 200),
        case("empty line before request", format!("\r\n{}", get("")), 200),
        case("HTTP/1.0", format!("GET {t} HTTP/1.0\r\n\r\n"), 200),
        case(
            "equal CL fields",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            200,
        ),
        case(
            "equal CL list",
            post("Content-Length: 5, 5\r\n", "hello"),
            200,
        ),
        case(
            "chunked any case",
            post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            200,
        ),
        case(
            "chunk extensions and trailers",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5 ; a = \"q\\\"x\" ; b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            ),
            200,
        ),
        case(
            "target of 8 KiB",
            get("").replacen(t, &format!("{t}?{}", "a".repeat(8000)), 1),
            200,
        ),
    ]
}

/// Heads left unfinished, a connection that never speaks and bodies that stall: closed quietly by the
/// head, idle and client timeouts (the proxy runs with 1 s, 2 s and 1 s). Each waits in its own
/// thread.
fn timeout_catalogue(target: &str) -> Vec<Case> {
    let quiet = |name: &str, bytes: String| Case {
        name: name.to_string(),
        bytes: bytes.into_bytes(),
        expect: Expect::Quiet,
        half_close: false,
    };
    vec![
        quiet(
            "silent after request line",
            format!("GET {target} HTTP/1.1\r\n"),
        ),
        quiet(
            "silent mid-field",
            format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-Slow: "),
        ),
        quiet("silent mid-method", "GE".to_string()),
        quiet("never speaks", String::new()),
        // A body that stops coming: --client-timeout bounds each read of it.
        quiet(
            "stalled length body",
            format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nhello"),
        ),
        quiet(
            "stalled chunked body",
            format!(
                "POST {target} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
            ),
        ),
    ]
}

fn run_timeouts(addr: std::net::SocketAddr, cases: Vec<Case>) {
    let handles: Vec<_> = cases
        .into_iter()
        .map(|case| {
            thread::spawn(move || {
                let answer = send(addr, &case.bytes, false);
                check(&case, &answer);
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("timeout case");
    }
}

fn fine_origin() -> Origin {
    Origin::start(|_, _, _| {
        (
            200,
            hdrs(&[("Content-Type", "text/plain")]),
            b"fine".to_vec(),
        )
    })
}

/// The process still answers a plain request after the catalogue.
fn still_serves(porter: &mut Porter, request: &str) {
    assert!(
        porter.child.try_wait().expect("wait").is_none(),
        "the process exited during the catalogue"
    );
    let answer = send(porter.addr, request.as_bytes(), false);
    assert_eq!(
        answer.status,
        Some(200),
        "after the catalogue: {}",
        answer.excerpt()
    );
}

#[test]
fn proxy_refuses_malformed_and_ambiguous_requests() {
    let origin = fine_origin();
    let mut porter = Porter::start(&[
        "proxy",
        "--no-cache",
        "--head-timeout",
        "1s",
        "--idle-timeout",
        "2s",
        "--client-timeout",
        "1s",
    ]);
    let url = origin.url("/x");
    let heads = head_catalogue(&url);
    let bodies = body_catalogue(&url);
    let accepted = accepted_catalogue(&url);
    let timeouts = timeout_catalogue(&url);
    let total = heads.len() + bodies.len() + timeouts.len();
    assert!(total >= 100, "the catalogue has only {total} hostile cases");

    let waiting = thread::spawn({
        let addr = porter.addr;
        move || run_timeouts(addr, timeouts)
    });
    run(porter.addr, &heads);
    assert_eq!(origin.hits(), 0, "a refused head reached the origin");
    run(porter.addr, &bodies);
    run(porter.addr, &accepted);
    assert_eq!(
        origin.hits(),
        accepted.len(),
        "accepted requests reach the origin once each"
    );
    waiting.join().expect("timeout cases");
    still_serves(
        &mut porter,
        &format!("GET {url} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
    );
}

#[test]
fn origin_server_refuses_malformed_and_ambiguous_requests() {
    let site = crate::serve::Site::new();
    let mut porter = site.serve(&["--head-timeout", "1s"]);
    let heads = head_catalogue("/hello.txt");
    run(porter.addr, &heads);
    let traversal = [
        case(
            "dot-dot traversal",
            "GET /../../etc/passwd HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        case(
            "encoded traversal",
            "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
        case(
            "encoded NUL",
            "GET /hello.txt%00.png HTTP/1.1\r\nConnection: close\r\n\r\n",
            400,
        ),
    ];
    run(porter.addr, &traversal);
    still_serves(
        &mut porter,
        "GET /hello.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
}
