//! Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection and must not be forwarded.

use super::Headers;

/// Fields that are always hop-by-hop, whatever Connection says.
const ALWAYS: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Whether `strip` removes the field `name` from these headers: a field that is always hop-by-hop, or
/// one that Connection (or Proxy-Connection) names.
pub fn is_stripped(headers: &Headers, name: &str) -> bool {
    ALWAYS.iter().any(|n| n.eq_ignore_ascii_case(name))
        || headers
            .list("connection")
            .chain(headers.list("proxy-connection"))
            .any(|named| named.eq_ignore_ascii_case(name))
}

/// Removes the hop-by-hop fields and every field that Connection names.
///
/// Transfer-Encoding goes too: the forwarder re-frames the body for its own hop.
pub fn strip(headers: &mut Headers) {
    let named: Vec<String> = headers
        .list("connection")
        .chain(headers.list("proxy-connection"))
        .map(str::to_ascii_lowercase)
        .collect();
    for name in ALWAYS
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        let mut h: Headers = [
            ("Host", "a"),
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic abc"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Accept", "*/*"),
        ]
        .into_iter()
        .collect();
        assert!(is_stripped(&h, "x-SECRET") && is_stripped(&h, "te") && !is_stripped(&h, "accept"));
        strip(&mut h);
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Accept"]);
    }
}
