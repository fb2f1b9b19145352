//! Request and response heads from bytes, with httparse doing the grammar and this module the limits and
//! the strictness httparse leaves to its caller: bare CR/LF and NUL (RFC 9112 §2.2), 400 for a malformed
//! version but 505 for a well-formed unsupported one (§2.3), Transfer-Encoding in HTTP/1.0 (§6.1) and
//! several Host fields (§3.2).
//!
//! Both parsers answer `Ok(None)` for "need more bytes", never an error, so a caller can feed them any
//! prefix of a message.

use super::{Error, Headers, Limits, Method, RequestHead, ResponseHead, Version};

/// Header slots kept on the stack; the default limit (100) fits, so parsing allocates no slot array.
const STACK_HEADERS: usize = 100;

/// `max` header slots for httparse: the stack array when it is big enough, else a heap one.
fn header_slots<'s, 'b>(
    stack: &'s mut [httparse::Header<'b>; STACK_HEADERS],
    heap: &'s mut Vec<httparse::Header<'b>>,
    max: usize,
) -> &'s mut [httparse::Header<'b>] {
    if max <= STACK_HEADERS {
        &mut stack[..max]
    } else {
        heap.resize(max, httparse::EMPTY_HEADER);
        heap
    }
}

/// Parses a request head from the start of `buf`. Returns the head and the number of bytes it used.
pub fn request(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, Error> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let mut req = httparse::Request::new(header_slots(&mut stack, &mut heap, limits.max_headers));
    let status = req.parse(buf).map_err(|e| match e {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::Version => version_error(buf),
        httparse::Error::Token => Error::Malformed("invalid method or request target"),
        httparse::Error::HeaderName => Error::Malformed("invalid header name"),
        httparse::Error::HeaderValue => Error::Malformed("invalid header value"),
        httparse::Error::NewLine => Error::Malformed("invalid line ending"),
        _ => Error::Malformed("malformed request line"),
    });
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits, true),
        // A target longer than the limit may trip the grammar check before the line ends.
        Err(_) if target_too_long(buf, limits) => return Err(Error::UriTooLong),
        Err(e) => return Err(e),
    };
    let target = req.path.unwrap_or_default();
    if target.len() > limits.max_uri_bytes {
        return Err(Error::UriTooLong);
    }
    if len > limits.max_head_bytes {
        return Err(Error::HeadTooLarge);
    }
    check_line_endings(&buf[..len])?;
    let head = RequestHead {
        method: Method::parse(req.method.unwrap_or_default()),
        target: target.to_string(),
        version: version(req.version)?,
        headers: collect(req.headers),
    };
    check_framing(head.version, &head.headers)?;
    // RFC 9112 §3.2: several Host lines make the target's authority ambiguous.
    if head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
        .count()
        > 1
    {
        return Err(Error::Malformed("more than one host field"));
    }
    Ok(Some((head, len)))
}

/// Parses a response head from the start of `buf`. Returns the head and the number of bytes it used.
pub fn response(buf: &[u8], limits: &Limits) -> Result<Option<(ResponseHead, usize)>, Error> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let mut resp = httparse::Response::new(header_slots(&mut stack, &mut heap, limits.max_headers));
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits, false),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(Error::UnsupportedVersion),
        Err(_) => return Err(Error::Malformed("malformed response head")),
    };
    if len > limits.max_head_bytes {
        return Err(Error::HeadTooLarge);
    }
    check_line_endings(&buf[..len])?;
    let head = ResponseHead {
        version: version(resp.version)?,
        status: resp.code.unwrap_or_default(),
        reason: resp.reason.unwrap_or_default().to_string(),
        headers: collect(resp.headers),
    };
    if !(100..=999).contains(&head.status) {
        return Err(Error::Malformed("invalid status code"));
    }
    check_framing(head.version, &head.headers)?;
    Ok(Some((head, len)))
}

fn incomplete<T>(buf: &[u8], limits: &Limits, is_request: bool) -> Result<Option<T>, Error> {
    if is_request && target_too_long(buf, limits) {
        return Err(Error::UriTooLong);
    }
    if buf.len() >= limits.max_head_bytes {
        return Err(Error::HeadTooLarge);
    }
    Ok(None)
}

/// The request line, finished or not, without its line end. httparse skips empty lines before it
/// (RFC 9112 §2.2); so does this.
fn request_line(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    &line[..end]
}

/// True when the request target, finished or not, is already longer than the limit. It measures the
/// target itself, not the whole line, so every prefix of a head that is accepted once complete stays
/// "need more bytes" (a long method with a short target is not a long URI; the head limit bounds it).
fn target_too_long(buf: &[u8], limits: &Limits) -> bool {
    let line = request_line(buf);
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let target = &line[space + 1..];
    let target_len = target
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(target.len());
    target_len > limits.max_uri_bytes
}

/// httparse says "version" for any bad byte after the target. A well-formed `HTTP/x.y` that is not
/// 1.0 or 1.1 is a 505; anything else (an extra space, `http/1.1`, `HTTP/11`) is a malformed line.
fn version_error(buf: &[u8]) -> Error {
    let mut parts = request_line(buf).splitn(3, |&b| b == b' ');
    let (Some(_method), Some(_target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Error::Malformed("malformed request line");
    };
    match version.strip_prefix(b"HTTP/") {
        // Another major version: HTTP/0.9, HTTP/2, HTTP/2.0, HTTP/3.
        Some([major, ..]) if major.is_ascii_digit() && *major != b'1' => Error::UnsupportedVersion,
        // HTTP/1.2 and the like, complete.
        Some([b'1', b'.', minor]) if minor.is_ascii_digit() => Error::UnsupportedVersion,
        _ => Error::Malformed("invalid http version"),
    }
}

/// RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing, whatever else it
/// says; the other framing rules are `body`'s.
fn check_framing(version: Version, headers: &super::Headers) -> Result<(), Error> {
    if version == Version::Http10 && headers.contains("transfer-encoding") {
        return Err(Error::Malformed("transfer-encoding in an http/1.0 message"));
    }
    Ok(())
}

fn version(minor: Option<u8>) -> Result<Version, Error> {
    match minor {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(Error::UnsupportedVersion),
    }
}

fn collect(fields: &[httparse::Header<'_>]) -> Headers {
    let fields = &fields[..fields.iter().take_while(|h| !h.name.is_empty()).count()];
    let names = fields.iter().map(|h| h.name.len()).sum();
    let values = fields.iter().map(|h| h.value.len()).sum();
    let mut headers = Headers::with_capacity(fields.len(), names, values);
    for field in fields {
        headers.append(field.name, field.value);
    }
    headers
}

/// httparse accepts a bare LF as a line end; RFC 9112 §2.2 lets us refuse it, and a proxy must, since the
/// next hop may split lines differently (request smuggling).
fn check_line_endings(head: &[u8]) -> Result<(), Error> {
    if crlf_only(head) {
        return Ok(());
    }
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\n' if i == 0 || head[i - 1] != b'\r' => {
                return Err(Error::Malformed("bare lf in head"));
            }
            b'\r' if head.get(i + 1) != Some(&b'\n') => {
                return Err(Error::Malformed("bare cr in head"));
            }
            0 => return Err(Error::Malformed("nul byte in head")),
            _ => {}
        }
    }
    Ok(())
}

/// Whether every CR in `head` is followed by an LF, every LF follows a CR, and no byte is NUL: a
/// CR and an LF pair up exactly when each pair of neighbours is both or neither. One pass without
/// early exits, which the compiler turns into vector code (the byte loop above, which finds which
/// rule a head breaks, took about a thousand instructions for a request head and as many for a
/// stored response head on every cache hit).
fn crlf_only(head: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (head.first(), head.last()) else {
        return true;
    };
    let mut bad = u8::from(first == b'\n') | u8::from(last == b'\r') | u8::from(last == 0);
    for (&a, &b) in head.iter().zip(&head[1..]) {
        bad |= u8::from((a == b'\r') != (b == b'\n')) | u8::from(a == 0);
    }
    bad == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: &[u8]) -> Result<Option<(RequestHead, usize)>, Error> {
        request(bytes, &Limits::default())
    }

    #[test]
    fn crlf_only_agrees_with_the_byte_by_byte_check() {
        let bytes = [b'\r', b'\n', 0, b'a'];
        // Every head of up to six of these bytes.
        for len in 0..=6u32 {
            for n in 0..4usize.pow(len) {
                let head: Vec<u8> = (0..len).map(|i| bytes[n / 4usize.pow(i) % 4]).collect();
                let slow = head.iter().enumerate().all(|(i, &b)| match b {
                    b'\n' => i > 0 && head[i - 1] == b'\r',
                    b'\r' => head.get(i + 1) == Some(&b'\n'),
                    0 => false,
                    _ => true,
                });
                assert_eq!(crlf_only(&head), slow, "{head:?}");
                assert_eq!(check_line_endings(&head).is_ok(), slow, "{head:?}");
            }
        }
    }

    #[test]
    fn parses_absolute_form_request() {
        let raw = b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\nX: 1\r\n\r\nrest";
        let (head, len) = req(raw).unwrap().unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.target, "http://example.com/a?b");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.headers.get("host"), Some("example.com"));
        assert_eq!(&raw[len..], b"rest");
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let raw = b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(req(&raw[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(req(raw).unwrap().is_some());
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(response(&raw[..end], &Limits::default()), Ok(None));
        }
        assert!(response(raw, &Limits::default()).unwrap().is_some());
    }

    #[test]
    fn rejects_what_rfc_9112_forbids() {
        let cases: &[(&[u8], Error)] = &[
            (
                b"GET / HTTP/1.1\nHost: h\r\n\r\n",
                Error::Malformed("bare lf in head"),
            ),
            (b"GET / HTTP/2.0\r\n\r\n", Error::UnsupportedVersion),
            (
                b"GET  / HTTP/1.1\r\n\r\n",
                Error::Malformed("invalid method or request target"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
                Error::Malformed("invalid header name"),
            ),
            (
                b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
                Error::Malformed("invalid header value"),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(
                req(raw).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(
            req(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n").is_err(),
            "obs-fold"
        );
        assert!(
            req(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n").is_err(),
            "bare cr"
        );
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_head_bytes: 64,
            max_headers: 2,
            max_uri_bytes: 16,
        };
        let long_uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert_eq!(
            request(long_uri.as_bytes(), &limits),
            Err(Error::UriTooLong)
        );
        let unfinished_uri = format!("GET /{}", "a".repeat(100));
        assert_eq!(
            request(unfinished_uri.as_bytes(), &limits),
            Err(Error::UriTooLong)
        );
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(request(many, &limits), Err(Error::TooManyHeaders));
        let big = format!("GET / HTTP/1.1\r\nA: {}\r\n", "x".repeat(80));
        assert_eq!(request(big.as_bytes(), &limits), Err(Error::HeadTooLarge));
    }

    /// Found by the `request_head` fuzzer: the unfinished-line check measured the whole request line,
    /// so a long method with a short target made a prefix a 414 while the finished head parsed.
    #[test]
    fn regression_long_method_prefix_is_not_uri_too_long() {
        let limits = Limits {
            max_head_bytes: 256,
            max_headers: 4,
            max_uri_bytes: 32,
        };
        let raw = format!(
            "{}GET http://example.com/a?b HTTP/1.1\r\n\r\n",
            "n".repeat(78)
        );
        let raw = raw.as_bytes();
        assert!(request(raw, &limits).unwrap().is_some());
        for end in 0..raw.len() {
            assert_eq!(
                request(&raw[..end], &limits),
                Ok(None),
                "prefix of {end} bytes"
            );
        }
        // A long target is still a 414 before its line ends, after empty lines too.
        let long = format!("\r\nGET /{} HTTP/1.1", "a".repeat(40));
        assert_eq!(request(long.as_bytes(), &limits), Err(Error::UriTooLong));
    }

    #[test]
    fn bad_versions_are_505_only_when_well_formed() {
        for raw in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / HTTP/3\r\n\r\n",
        ] {
            assert_eq!(req(raw), Err(Error::UnsupportedVersion), "{raw:?}");
        }
        for raw in [
            &b"GET /  HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/11\r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
            b"GET / HTTPS/1.1\r\n\r\n",
            b"GET /\r\n\r\n",
        ] {
            let error = req(raw).unwrap_err();
            assert_eq!(error.client_status(), 400, "{raw:?}: {error}");
        }
    }

    #[test]
    fn rejects_ambiguous_framing_and_authority() {
        assert_eq!(
            req(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Error::Malformed("transfer-encoding in an http/1.0 message"))
        );
        assert!(
            response(
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &Limits::default()
            )
            .is_err()
        );
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Err(Error::Malformed("more than one host field"))
        );
    }

    #[test]
    fn parses_response_and_rejects_garbage() {
        let (head, _) = response(
            b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n",
            &Limits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!((head.status, head.version), (404, Version::Http10));
        assert!(response(b"SSH-2.0-OpenSSH\r\n\r\n", &Limits::default()).is_err());
    }
}
