//! Which proxy `porter fetch` uses for a URL, and how it proves who it is to it.
//!
//! ```text
//!  --proxy [USER:PASSWORD@]HOST:PORT ───────────────> every URL (no_proxy does not apply)
//!  --no-proxy ──────────────────────────────────────> none
//!  otherwise the environment, as curl and wget read it:
//!    https URL: https_proxy, HTTPS_PROXY, then http_proxy, HTTP_PROXY;  http URL: http_proxy, HTTP_PROXY
//!    no_proxy / NO_PROXY: hosts (and their subdomains) reached directly; `*` means all
//!  --proxy-user USER:PASSWORD ──────────────────────> credentials for whichever proxy is used
//! ```
//! Credentials are percent-decoded (`p%40ss` is `p@ss`), sent as `Proxy-Authorization: Basic`
//! (RFC 9110 §11.7.1) on each request to the proxy and on CONNECT, and never printed: the
//! `Debug` and `Display` forms and every error message show the proxy without them.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;

use super::FetchError;
use super::target::{FetchUrl, authority};
use crate::http::Scheme;
use crate::http::{self, authority::AuthorityError};

/// A user name and password for a proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    password: String,
}

impl Credentials {
    /// `USER:PASSWORD`, each percent-decoded.
    pub fn parse(text: &str) -> Result<Credentials, &'static str> {
        let (user, password) = text
            .split_once(':')
            .ok_or("credentials must be USER:PASSWORD")?;
        let decode = |part: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "credentials must be UTF-8 once percent-decoded")
        };
        let user = decode(user)?;
        if user.is_empty() {
            return Err("the proxy user name is empty");
        }
        Ok(Credentials {
            user,
            password: decode(password)?,
        })
    }

    /// The `Proxy-Authorization` value.
    pub fn header_value(&self) -> String {
        let token = STANDARD.encode(format!("{}:{}", self.user, self.password));
        format!("Basic {token}")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, password hidden)", self.user)
    }
}

/// A proxy to send requests through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAddr {
    pub host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
}

impl ProxyAddr {
    /// Parses `[USER:PASSWORD@]HOST:PORT`, also in the `http://…/` form the environment uses.
    pub fn parse(text: &str) -> Result<ProxyAddr, &'static str> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err("only http:// proxies are supported"),
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        // The last `@` ends the user info: a password may hold an unencoded one.
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(Credentials::parse(userinfo)?), rest),
            None => (None, rest),
        };
        if rest.contains(['/', '?', '#']) {
            return Err("expected [USER:PASSWORD@]HOST:PORT");
        }
        let (host, port) = http::authority::parse(rest).map_err(|e| match e {
            AuthorityError::BadPort => "the port is not a number from 1 to 65535",
            AuthorityError::MissingPort | AuthorityError::BadHost => {
                "expected [USER:PASSWORD@]HOST:PORT"
            }
        })?;
        Ok(ProxyAddr {
            host,
            port,
            credentials,
        })
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

/// `value` with any password in it replaced, for error messages.
pub fn redact(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}{user}:***@{host}")
        }
        None => value.to_string(),
    }
}

/// `no_proxy`: hosts reached directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    /// Lowercase host names or addresses, without a leading dot; `*` matches every host.
    entries: Vec<String>,
}

impl NoProxy {
    /// Parses the comma-separated list (`example.com,.internal,10.0.0.1,*`). Ports are ignored.
    pub fn parse(text: &str) -> NoProxy {
        let entries = text
            .split(',')
            .map(|entry| {
                let entry = entry.trim();
                let without_port = match entry.rsplit_once(':') {
                    Some((host, port))
                        if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        host
                    }
                    _ => entry,
                };
                without_port
                    .trim_start_matches("*.")
                    .trim_start_matches('.')
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            })
            .filter(|entry| !entry.is_empty())
            .collect();
        NoProxy { entries }
    }

    /// Whether `host` is to be reached directly: it is an entry or a subdomain of one.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|entry| {
            entry == "*"
                || host == *entry
                || host
                    .strip_suffix(entry.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// The proxies a run may use, decided once from the flags and the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    /// For http URLs.
    pub http: Option<ProxyAddr>,
    /// For https URLs.
    pub https: Option<ProxyAddr>,
    /// Hosts reached directly.
    pub no_proxy: NoProxy,
}

impl Proxies {
    /// One proxy for everything (`--proxy`).
    pub fn all(proxy: ProxyAddr) -> Proxies {
        Proxies {
            http: Some(proxy.clone()),
            https: Some(proxy),
            no_proxy: NoProxy::default(),
        }
    }

    /// The proxies the environment names: `https_proxy` then `HTTPS_PROXY` for https URLs, then
    /// `http_proxy` and `HTTP_PROXY` for both; `no_proxy` then `NO_PROXY`. Empty means unset.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Proxies, FetchError> {
        let read = |names: &[&'static str]| -> Result<Option<ProxyAddr>, FetchError> {
            for &name in names {
                let Some(value) = var(name).filter(|v| !v.trim().is_empty()) else {
                    continue;
                };
                return ProxyAddr::parse(&value)
                    .map(Some)
                    .map_err(|reason| FetchError::BadProxy {
                        value: redact(&value),
                        from: name,
                        reason,
                    });
            }
            Ok(None)
        };
        let no_proxy = ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|name| var(name).filter(|v| !v.trim().is_empty()))
            .map(|v| NoProxy::parse(&v))
            .unwrap_or_default();
        Ok(Proxies {
            http: read(&["http_proxy", "HTTP_PROXY"])?,
            https: read(&["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"])?,
            no_proxy,
        })
    }

    /// Gives every proxy these credentials (`--proxy-user`), replacing any from the URL form.
    pub fn with_credentials(mut self, credentials: &Credentials) -> Proxies {
        for proxy in [&mut self.http, &mut self.https].into_iter().flatten() {
            proxy.credentials = Some(credentials.clone());
        }
        self
    }

    /// The proxy for `url`, or `None` to connect directly.
    pub fn for_url(&self, url: &FetchUrl) -> Option<&ProxyAddr> {
        if self.no_proxy.matches(&url.host) {
            return None;
        }
        match url.scheme {
            Scheme::Http => self.http.as_ref(),
            Scheme::Https => self.https.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> ProxyAddr {
        ProxyAddr {
            host: host.into(),
            port,
            credentials: None,
        }
    }

    #[test]
    fn proxy_with_or_without_credentials() {
        assert_eq!(ProxyAddr::parse("proxy:3128"), Ok(addr("proxy", 3128)));
        assert_eq!(
            ProxyAddr::parse("http://proxy:3128/"),
            Ok(addr("proxy", 3128))
        );
        assert_eq!(ProxyAddr::parse("[::1]:1").unwrap().to_string(), "[::1]:1");
        for bad in [
            "proxy",
            "https://proxy:1",
            "proxy:0",
            "http://proxy:1/path",
            ":pw@h:1",
        ] {
            assert!(ProxyAddr::parse(bad).is_err(), "{bad}");
        }
        let with = ProxyAddr::parse("http://al%20ice:p%40ss:w@rd@proxy:3128/").unwrap();
        let credentials = with.credentials.clone().unwrap();
        assert_eq!(credentials.user, "al ice");
        assert_eq!(credentials.password, "p@ss:w@rd");
        assert_eq!(with.to_string(), "proxy:3128");
        let shown = format!("{with:?}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("w@rd"),
            "{shown}"
        );
        assert_eq!(
            Credentials::parse("aladdin:opensesame")
                .unwrap()
                .header_value(),
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l"
        );
        assert_eq!(redact("http://u:secret@h:1/"), "http://u:***@h:1/");
        assert_eq!(redact("h:1"), "h:1");
    }

    #[test]
    fn no_proxy_matches_hosts_and_subdomains() {
        let list = NoProxy::parse("example.com, .internal ,10.0.0.1:8080,[::1]");
        for host in [
            "example.com",
            "www.example.com",
            "a.internal",
            "10.0.0.1",
            "::1",
        ] {
            assert!(list.matches(host), "{host}");
        }
        for host in ["notexample.com", "example.org", "internal.com", "10.0.0.10"] {
            assert!(!list.matches(host), "{host}");
        }
        assert!(NoProxy::parse("*").matches("anything"));
        assert!(!NoProxy::parse("").matches("anything"));
    }

    #[test]
    fn proxies_from_the_environment() {
        let env = |name: &str| match name {
            "HTTP_PROXY" => Some("http://u:pw@proxy:3128".to_string()),
            "https_proxy" => Some(String::new()),
            "NO_PROXY" => Some("local.test".to_string()),
            _ => None,
        };
        let proxies = Proxies::from_env(env).unwrap();
        let url = FetchUrl::parse("http://example.com/").unwrap();
        let chosen = proxies.for_url(&url).unwrap();
        assert_eq!(chosen.to_string(), "proxy:3128");
        assert_eq!(chosen.credentials.as_ref().unwrap().user, "u");
        let https = FetchUrl::parse("https://example.com/").unwrap();
        assert_eq!(proxies.for_url(&https), Some(chosen));
        let direct = FetchUrl::parse("http://www.local.test/").unwrap();
        assert_eq!(proxies.for_url(&direct), None);
        let bad = Proxies::from_env(|name| {
            (name == "http_proxy").then(|| "http://u:hunter2@nonsense".to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(!bad.contains("hunter2"), "{bad}");
        assert!(
            bad.starts_with("bad proxy \"http://u:***@nonsense\" in http_proxy"),
            "{bad}"
        );
    }
}
