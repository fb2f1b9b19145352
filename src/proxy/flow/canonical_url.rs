//! The fast path of target parsing: an absolute `http://` URL that is already in the form the
//! WHATWG parser would give back (lowercase host name or dotted-quad address, no user info, no
//! default port, a path and query of plain characters, no dot segments, no fragment) is split
//! by hand. Browsers and package managers send such URLs almost always; the parser, with its IDNA
//! pass, was about 3% of a cache hit's CPU. Anything else returns `None` and goes to the parser,
//! so both paths give the same `Target` (a test compares them).

use super::target::Target;
use crate::http::Scheme;

/// `Some` only for a URL whose canonical form is itself.
pub fn parse(text: &str) -> Option<Target> {
    let rest = text.strip_prefix("http://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(authority_end);
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(canonical_port(port)?)),
        None => (authority, None),
    };
    if !canonical_host(host) || !path_and_query.bytes().all(plain_byte) {
        return None;
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    // A `?` in the query is plain; one in the path would have ended it above.
    if query.is_some_and(|q| q.contains('\'')) || !canonical_path(path) {
        return None;
    }
    let (path_and_query, url) = if path_and_query.is_empty() {
        ("/".to_string(), format!("{text}/"))
    } else {
        (path_and_query.to_string(), text.to_string())
    };
    Some(Target {
        scheme: Scheme::Http,
        host: host.to_string(),
        port: port.unwrap_or(80),
        path_and_query,
        url,
    })
}

/// A port the parser keeps as written: digits without a leading zero, 1 to 65535, not 80.
fn canonical_port(port: &str) -> Option<u16> {
    if port.is_empty() || port.len() > 5 || port.starts_with('0') {
        return None;
    }
    let value: u16 = port.parse().ok()?;
    (value != 80).then_some(value)
}

/// A host the parser keeps as written: lowercase LDH labels, none empty, none punycode, none
/// starting or ending with `-`; or, when the last label is numeric (which makes it an IPv4 address
/// to the parser), exactly four decimal parts without leading zeros.
fn canonical_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let last = host.rsplit('.').next().unwrap_or_default();
    if !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x")) {
        return host.split('.').count() == 4 && host.split('.').all(canonical_octet);
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && !label.starts_with("xn--")
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

fn canonical_octet(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 3
        && label.bytes().all(|b| b.is_ascii_digit())
        && (label == "0" || !label.starts_with('0'))
        && label.parse::<u16>().is_ok_and(|v| v <= 255)
}

/// No dot segments (the parser would resolve them) and no `%` but a whole escape.
fn canonical_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let escapes_whole = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    escapes_whole
        && path.split('/').all(|segment| {
            ![".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"]
                .iter()
                .any(|dots| segment.eq_ignore_ascii_case(dots))
        })
}

/// Bytes the parser leaves alone in a path or query: unreserved, sub-delims, `:`, `@`, `/`, `?`
/// and `%` (escapes are checked apart). No `#`: a fragment goes to the parser.
fn plain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every URL the fast path takes must give exactly what the parser gives.
    fn agrees(url: &str) -> bool {
        let slow = Target::parse_with_parser(url);
        match parse(url) {
            Some(fast) => {
                assert_eq!(Ok(&fast), slow.as_ref(), "{url}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn canonical_urls_take_the_fast_path_and_agree_with_the_parser() {
        for url in [
            "http://example.com/",
            "http://example.com",
            "http://deb.debian.org/debian/dists/bookworm/InRelease",
            "http://127.0.0.1:8080/1k.bin",
            "http://a.b-c.example:65535/p/a%20th?q=1&r=a/b?c",
            "http://0.0.0.0/x",
            "http://h/a;b,c=d@e:f!$*+()~",
        ] {
            assert!(agrees(url), "{url} should take the fast path");
        }
    }

    #[test]
    fn anything_else_goes_to_the_parser() {
        for url in [
            "http://Example.com/",
            "http://example.com:80/",
            "http://example.com:080/",
            "http://example.com:/",
            "http://user@example.com/",
            "http://[::1]/",
            "http://xn--bcher-kva.example/",
            "http://1.2.3/",
            "http://0127.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://256.0.0.1/",
            "http://example.com./",
            "http://-a.example/",
            "http://example.com/a/../b",
            "http://example.com/a/%2E/b",
            "http://example.com/a b",
            "http://example.com/a%zz",
            "http://example.com/a#frag",
            "http://example.com/?q='x'",
            "http://example.com/{x}",
            "HTTP://example.com/",
            "https://example.com/",
        ] {
            assert!(parse(url).is_none(), "{url} should go to the parser");
        }
    }

    #[test]
    fn generated_urls_agree_with_the_parser_whenever_they_take_the_fast_path() {
        let hosts = [
            "a",
            "example.com",
            "EXAMPLE.com",
            "1.2.3.4",
            "01.2.3.4",
            "1.2.3",
            "a..b",
            "a-",
            "x_y",
            "xn--a",
            "9",
            "host.9",
            "0x1.2.3.4",
            "255.255.255.255",
            "a.b.c.d.e",
        ];
        let ports = [
            "", ":1", ":80", ":08", ":8080", ":65535", ":65536", ":", ":x",
        ];
        let paths = [
            "", "/", "/a", "/a/b/", "/./a", "/a/..", "/%41", "/%4", "/a%2fb", "/~u/.x", "/a..b",
            "/a/.", "/..a", "/a?", "/a?b=c?d", "/?q=%", "/a#b", "/a\"b", "/a|b", "/a^b",
        ];
        let mut fast = 0;
        for host in hosts {
            for port in ports {
                for path in paths {
                    if agrees(&format!("http://{host}{port}{path}")) {
                        fast += 1;
                    }
                }
            }
        }
        assert!(fast > 200, "only {fast} generated URLs took the fast path");
    }
}
