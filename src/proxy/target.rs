//! Where a proxied request goes: the absolute-form URL (RFC 9112 §3.2.2) or CONNECT's authority-form.

use std::fmt;

use url::Url;

/// An `http://` request target, split into what the forwarder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host as it appears in the URL (IPv6 without brackets), lowercase.
    pub host: String,
    pub port: u16,
    /// Path and query in origin-form, for the request line sent upstream.
    pub path_and_query: String,
    /// The normalised absolute URL, without fragment or user info: the cache key's base.
    pub url: String,
}

/// Why a request target cannot be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Not a URL, or one without a host.
    Invalid,
    /// A scheme other than http (https must use CONNECT).
    UnsupportedScheme(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Invalid => f.write_str("request target is not a valid absolute http URL"),
            TargetError::UnsupportedScheme(s) if s == "https" => {
                f.write_str("https URLs go through a CONNECT tunnel, not a plain request")
            }
            TargetError::UnsupportedScheme(s) => write!(f, "the {s:?} scheme is not supported"),
        }
    }
}

impl Target {
    /// Parses an absolute-form target such as `http://example.com:8080/a?b`.
    pub fn parse_absolute(text: &str) -> Result<Target, TargetError> {
        // The WHATWG parser forgives `http:///host` and backslashes; a proxy should not guess.
        let authority = text
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or(TargetError::Invalid)?;
        if authority.starts_with(['/', '\\']) || text.contains('\\') {
            return Err(TargetError::Invalid);
        }
        let url = Url::parse(text).map_err(|_| TargetError::Invalid)?;
        if url.scheme() != "http" {
            return Err(TargetError::UnsupportedScheme(url.scheme().to_string()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(TargetError::Invalid),
        };
        let port = url.port_or_known_default().ok_or(TargetError::Invalid)?;
        let mut path_and_query = url.path().to_string();
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        let mut clean = url;
        clean.set_fragment(None);
        let _ = clean.set_username("");
        let _ = clean.set_password(None);
        Ok(Target {
            host,
            port,
            path_and_query,
            url: clean.into(),
        })
    }

    /// Resolves a Location or Content-Location value against this URL; `Some` only when the result has
    /// the same scheme, host and port (RFC 9111 §4.4 invalidates same-origin URLs only).
    pub fn same_origin_url(&self, reference: &str) -> Option<String> {
        let base = Url::parse(&self.url).ok()?;
        let mut resolved = base.join(reference).ok()?;
        if resolved.origin() != base.origin() {
            return None;
        }
        resolved.set_fragment(None);
        Some(resolved.into())
    }

    /// The Host header value for the origin: the port only when it is not the default.
    pub fn host_header(&self) -> String {
        authority(&self.host, self.port, 80)
    }
}

/// `host:port` for CONNECT (RFC 9110 §9.3.6): a port is required, and is digits only (`+443` and
/// ` 443` are refused: `u16::from_str` would take a sign). An IP literal comes back in its canonical
/// spelling, parsed as the `url` crate (and `inet_aton`) would (`0x7f.1`, `2130706433` and `0` are
/// IPv4 addresses), so the host rules see the address that would be connected to.
pub fn parse_authority(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()?
            .to_string(),
        None => {
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
            if !valid {
                return None;
            }
            match url::Host::parse(host).ok()? {
                url::Host::Ipv4(ip) => ip.to_string(),
                url::Host::Ipv6(ip) => ip.to_string(),
                url::Host::Domain(_) => host.to_ascii_lowercase(),
            }
        }
    };
    Some((host, port))
}

/// Formats `host[:port]`, bracketing IPv6 literals and leaving out the default port.
pub fn authority(host: &str, port: u16, default_port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form() {
        let t = Target::parse_absolute("http://User:pw@Example.COM:8080/a/b?x=1#frag").unwrap();
        assert_eq!(t.host, "example.com");
        assert_eq!(t.port, 8080);
        assert_eq!(t.path_and_query, "/a/b?x=1");
        assert_eq!(t.url, "http://example.com:8080/a/b?x=1");
        assert_eq!(t.host_header(), "example.com:8080");
        let t = Target::parse_absolute("http://[::1]/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header()),
            ("::1", 80, "[::1]".to_string())
        );
        assert_eq!(
            Target::parse_absolute("https://example.com/"),
            Err(TargetError::UnsupportedScheme("https".into()))
        );
        assert_eq!(
            Target::parse_absolute("/relative"),
            Err(TargetError::Invalid)
        );
        assert_eq!(
            Target::parse_absolute("http:///nohost"),
            Err(TargetError::Invalid)
        );
    }

    #[test]
    fn connect_authority() {
        assert_eq!(
            parse_authority("example.com:443"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(parse_authority("[::1]:8443"), Some(("::1".into(), 8443)));
        assert_eq!(parse_authority("example.com"), None);
        assert_eq!(parse_authority("example.com:0"), None);
        assert_eq!(parse_authority("bad host:443"), None);
        assert_eq!(
            parse_authority("0x7f.1:443"),
            Some(("127.0.0.1".into(), 443))
        );
        assert_eq!(parse_authority("0:443"), Some(("0.0.0.0".into(), 443)));
        assert_eq!(
            parse_authority("[::ffff:7f00:1]:443"),
            Some(("::ffff:127.0.0.1".into(), 443))
        );
    }

    #[test]
    fn regression_connect_ports_with_a_sign_or_non_digits_are_refused() {
        for bad in [
            "host:+31090",
            "host:-1",
            "host: 443",
            "host:443 ",
            "host:0x1bb",
            "host:",
            "host:000443",
            "host:65536",
        ] {
            assert_eq!(parse_authority(bad), None, "{bad}");
        }
        assert_eq!(parse_authority("host:08443"), Some(("host".into(), 8443)));
    }
}
