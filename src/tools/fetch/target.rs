//! What `porter fetch` fetches: the URL, split into what a request needs, and resolved against a
//! redirect's `Location`. The proxy is [`super::proxy`]'s.

use url::Url;

use super::FetchError;
use crate::http::{self, Scheme, authority::DefaultPort};

/// A URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUrl {
    pub scheme: Scheme,
    /// Host without IPv6 brackets, as given (domain names lowercased by the URL parser).
    pub host: String,
    pub port: u16,
    /// Path and query, the origin-form request target (RFC 9112 §3.2.1).
    pub path_and_query: String,
    /// The path as in the URL (percent-encoded); its last segment names non-HTML downloads.
    pub path: String,
    /// The whole URL without fragment or user info: the absolute-form target for a proxy.
    pub url: String,
}

impl FetchUrl {
    /// Parses the URL given on the command line: one without `://` is taken as `http://` (as curl
    /// does), so `localhost:8080/x` is `http://localhost:8080/x`, not a URL of scheme `localhost`.
    pub fn parse_arg(text: &str) -> Result<FetchUrl, FetchError> {
        if has_scheme(text) {
            return FetchUrl::parse(text);
        }
        FetchUrl::parse(&format!("http://{text}")).map_err(|e| match e {
            // The message quotes what the user typed, not the URL made of it.
            FetchError::BadUrl { reason, .. } => FetchError::BadUrl {
                url: text.to_string(),
                reason,
            },
            other => other,
        })
    }

    /// Parses an `http://` or `https://` URL; anything else is a [`FetchError::BadUrl`].
    pub fn parse(text: &str) -> Result<FetchUrl, FetchError> {
        let bad = |reason: &str| FetchError::BadUrl {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let mut url = Url::parse(text).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                bad("it has no scheme; write it like http://example.com/path")
            }
            url::ParseError::EmptyHost => {
                bad("it has no host; write it like http://example.com/path")
            }
            url::ParseError::InvalidPort => bad("the port is not a number from 0 to 65535"),
            url::ParseError::InvalidIpv4Address => bad("the host is not a valid IPv4 address"),
            url::ParseError::InvalidIpv6Address => bad(
                "the host is not a valid IPv6 address (write it in brackets: http://[::1]:8080/)",
            ),
            url::ParseError::IdnaError | url::ParseError::InvalidDomainCharacter => bad(
                "the host name holds a character a host name cannot (a space, or a stray symbol)",
            ),
            other => bad(&other.to_string()),
        })?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(bad(&format!(
                    "the {other:?} scheme is not supported (use http or https)"
                )));
            }
        };
        let (host, port) = http::authority::of_url(&url).ok_or_else(|| bad("it has no host"))?;
        let path = url.path().to_string();
        let mut path_and_query = path.clone();
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        url.set_fragment(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(FetchUrl {
            scheme,
            host,
            port,
            path_and_query,
            path,
            url: url.into(),
        })
    }

    /// The URL a redirect's `Location` names, relative to this one (RFC 9110 §10.2.2).
    pub fn join(&self, location: &str) -> Result<FetchUrl, FetchError> {
        let base = Url::parse(&self.url).map_err(|e| FetchError::BadUrl {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        let next = base.join(location.trim()).map_err(|e| FetchError::BadUrl {
            url: location.to_string(),
            reason: format!("the redirect location does not resolve: {e}"),
        })?;
        FetchUrl::parse(next.as_str())
    }

    /// `host:port` with IPv6 brackets: the CONNECT target and how errors name the origin.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The Host header: the port only when it is not the scheme's default (RFC 9110 §7.2).
    pub fn host_header(&self) -> String {
        let default = DefaultPort::Omit(self.scheme.default_port());
        http::authority::format(&self.host, self.port, default)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn authority(host: &str, port: u16) -> String {
    http::authority::format(host, port, DefaultPort::Keep)
}

/// Whether `text` starts with `SCHEME://`, the scheme as RFC 3986 section 3.1 spells it
/// (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`). A `://` later in the text, as in
/// `localhost:8080/?next=http://x`, is part of the query, not a scheme.
fn has_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_explains_bad_ones() {
        let url = FetchUrl::parse("http://Example.COM:8080/a/b.png?x=1#frag").unwrap();
        assert_eq!(
            (url.scheme, url.host.as_str(), url.port),
            (Scheme::Http, "example.com", 8080)
        );
        assert_eq!(url.path_and_query, "/a/b.png?x=1");
        assert_eq!(url.url, "http://example.com:8080/a/b.png?x=1");
        assert_eq!(url.host_header(), "example.com:8080");
        let url = FetchUrl::parse("https://[::1]/").unwrap();
        assert_eq!(
            (url.authority().as_str(), url.host_header().as_str()),
            ("[::1]:443", "[::1]")
        );
        for (text, reason) in [
            ("example.com/x", "it has no scheme"),
            ("ftp://example.com/", "the \"ftp\" scheme is not supported"),
            ("http://", "it has no host"),
            ("http://h:99999/", "the port is not a number"),
            ("http://exa mple.com/", "a character a host name cannot"),
        ] {
            let message = FetchUrl::parse(text).unwrap_err().to_string();
            assert!(message.starts_with("bad url"), "{message}");
            assert!(message.contains(reason), "{text}: {message}");
        }
    }

    #[test]
    fn regression_a_url_without_scheme_is_http_as_in_curl() {
        let url = FetchUrl::parse_arg("localhost:8080/x").unwrap();
        assert_eq!(url.url, "http://localhost:8080/x");
        assert_eq!(
            FetchUrl::parse_arg("example.com").unwrap().url,
            "http://example.com/"
        );
        assert_eq!(
            FetchUrl::parse_arg("https://h/").unwrap().scheme,
            Scheme::Https
        );
        let message = FetchUrl::parse_arg("localhost:http/x")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("bad url \"localhost:http/x\""),
            "{message}"
        );
        assert!(message.contains("the port is not a number"), "{message}");
        // A `://` in the query is not a scheme.
        let url = FetchUrl::parse_arg("localhost:8080/?next=http://x").unwrap();
        assert_eq!(url.url, "http://localhost:8080/?next=http://x");
        assert_eq!(url.port, 8080);
        let url = FetchUrl::parse_arg("example.com/r?u=https://a").unwrap();
        assert_eq!(url.url, "http://example.com/r?u=https://a");
        assert_eq!(url.scheme, Scheme::Http);
    }

    #[test]
    fn redirect_locations_resolve_against_the_url() {
        let url = FetchUrl::parse("http://h:8080/a/b?x=1").unwrap();
        assert_eq!(url.join("c").unwrap().url, "http://h:8080/a/c");
        assert_eq!(url.join("/d?y=2").unwrap().path_and_query, "/d?y=2");
        assert_eq!(url.join("https://other/").unwrap().url, "https://other/");
        assert!(url.join("ftp://other/").is_err());
    }
}
