//! What `porter fetch` connects to: the URL it was given and the proxy, from `--proxy` or the
//! environment (`http_proxy`, `https_proxy`, as curl and wget read them).

use std::fmt;
use std::str::FromStr;

use url::Url;

use super::FetchError;
use crate::http::{
    self,
    authority::{AuthorityError, DefaultPort},
};

/// The two schemes the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

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

/// A proxy to send requests through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddr {
    pub host: String,
    pub port: u16,
}

impl ProxyAddr {
    /// Parses `HOST:PORT`, also accepting the `http://HOST:PORT/` form the environment variables use.
    pub fn parse(text: &str) -> Result<ProxyAddr, &'static str> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err("only http:// proxies are supported"),
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains(['/', '@', '?', '#']) {
            return Err("expected HOST:PORT");
        }
        let (host, port) = http::authority::parse(rest).map_err(|e| match e {
            AuthorityError::BadPort => "the port is not a number from 1 to 65535",
            AuthorityError::MissingPort | AuthorityError::BadHost => "expected HOST:PORT",
        })?;
        Ok(ProxyAddr { host, port })
    }

    /// The proxy named by the environment for this scheme, if any: `https_proxy` then `HTTPS_PROXY` for
    /// https URLs, then `http_proxy` and `HTTP_PROXY` for both. An empty variable means none.
    pub fn from_env(
        scheme: Scheme,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ProxyAddr>, FetchError> {
        let names: &[&'static str] = match scheme {
            Scheme::Https => &["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"],
            Scheme::Http => &["http_proxy", "HTTP_PROXY"],
        };
        for &name in names {
            let Some(value) = var(name).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            return ProxyAddr::parse(&value)
                .map(Some)
                .map_err(|reason| FetchError::BadProxy {
                    value,
                    from: name,
                    reason,
                });
        }
        Ok(None)
    }
}

impl FromStr for ProxyAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ProxyAddr::parse(text).map_err(str::to_string)
    }
}

impl fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&authority(&self.host, self.port))
    }
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
            ("http://", "empty host"),
            ("http://exa mple.com/", "invalid international domain name"),
        ] {
            let message = FetchUrl::parse(text).unwrap_err().to_string();
            assert!(message.starts_with("bad url"), "{message}");
            assert!(message.contains(reason), "{text}: {message}");
        }
    }

    #[test]
    fn proxy_from_flag_or_environment() {
        let want = ProxyAddr {
            host: "proxy".into(),
            port: 3128,
        };
        assert_eq!(ProxyAddr::parse("proxy:3128"), Ok(want.clone()));
        assert_eq!(ProxyAddr::parse("http://proxy:3128/"), Ok(want.clone()));
        assert_eq!(ProxyAddr::parse("[::1]:1").unwrap().to_string(), "[::1]:1");
        assert!(ProxyAddr::parse("proxy").is_err());
        assert!(ProxyAddr::parse("https://proxy:1").is_err());
        assert!(ProxyAddr::parse("proxy:0").is_err());

        let env = |name: &str| match name {
            "HTTP_PROXY" => Some("http://proxy:3128".to_string()),
            "https_proxy" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            ProxyAddr::from_env(Scheme::Http, env).unwrap(),
            Some(want.clone())
        );
        assert_eq!(ProxyAddr::from_env(Scheme::Https, env).unwrap(), Some(want));
        assert_eq!(ProxyAddr::from_env(Scheme::Http, |_| None).unwrap(), None);
        let bad = ProxyAddr::from_env(Scheme::Http, |_| Some("nonsense".into())).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "bad proxy \"nonsense\" in http_proxy: expected HOST:PORT"
        );
    }
}
