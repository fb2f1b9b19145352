//! Where a proxied request goes: the absolute-form URL (RFC 9112 §3.2.2) or CONNECT's authority-form.

use std::fmt;

use url::Url;

use crate::http::authority::{self, DefaultPort};

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
        authority::format(&self.host, self.port, DefaultPort::Omit(80))
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
}
