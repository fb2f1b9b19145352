//! Where a proxied request goes: the absolute-form URL (RFC 9112 §3.2.2) or CONNECT's authority-form.

use std::fmt;

use url::Url;

use crate::http::Scheme;
use crate::http::authority::{self, DefaultPort};

/// A request target, split into what the forwarder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
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
        match super::canonical_url::parse(text) {
            Some(target) => Ok(target),
            None => Target::parse_with_parser(text),
        }
    }

    /// [`Target::parse_absolute`] through the WHATWG parser, for URLs not in canonical form.
    pub(in crate::proxy) fn parse_with_parser(text: &str) -> Result<Target, TargetError> {
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
        let (host, port) = authority::of_url(&url).ok_or(TargetError::Invalid)?;
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
            scheme: Scheme::Http,
            host,
            port,
            path_and_query,
            url: clean.into(),
        })
    }

    /// The target of a request inside an intercepted tunnel to `host:port`: `https://host:port` and
    /// the request's origin-form path (RFC 9112 §3.2.1). The URL is normalised as an absolute-form
    /// target would be, so the cache key differs from the `http://` one only by its scheme.
    pub fn https(host: &str, port: u16, path_and_query: &str) -> Result<Target, TargetError> {
        if !path_and_query.starts_with('/') || path_and_query.contains('\\') {
            return Err(TargetError::Invalid);
        }
        let text = format!(
            "https://{}{path_and_query}",
            authority::format(host, port, DefaultPort::Omit(Scheme::Https.default_port()))
        );
        let url = Url::parse(&text).map_err(|_| TargetError::Invalid)?;
        let mut path = url.path().to_string();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        let mut clean = url;
        clean.set_fragment(None);
        Ok(Target {
            scheme: Scheme::Https,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query: path,
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
        authority::format(
            &self.host,
            self.port,
            DefaultPort::Omit(self.scheme.default_port()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_targets_inside_a_tunnel() {
        let t = Target::https("localhost", 8443, "/a/../b?x=1#f").unwrap();
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.url, "https://localhost:8443/b?x=1");
        assert_eq!(t.path_and_query, "/b?x=1");
        assert_eq!(t.host_header(), "localhost:8443");
        let t = Target::https("::1", 443, "/").unwrap();
        assert_eq!(
            (t.url.as_str(), t.host_header()),
            ("https://[::1]/", "[::1]".into())
        );
        assert_eq!(Target::https("a.test", 443, "*"), Err(TargetError::Invalid));
        assert_ne!(
            Target::https("a.test", 80, "/x").unwrap().url,
            Target::parse_absolute("http://a.test/x").unwrap().url,
            "the scheme is part of the cache key"
        );
    }

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
}
