//! The request method (RFC 9110 §9) as a type, so the rules that hang on it (safe, idempotent, HEAD
//! has no body) live here and nowhere compares method names as strings.

use std::fmt;

/// A request method. Method names are case-sensitive (RFC 9110 §9.1): `get` is an unknown method,
/// kept as [`Method::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
    /// Removes a URL from a cache (Squid, Varnish); not in RFC 9110.
    Purge,
    /// Any other token, as sent.
    Other(Box<str>),
}

impl Method {
    /// The method a request-line token names; never fails, since any token is a method.
    pub fn parse(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            "PURGE" => Method::Purge,
            other => Method::Other(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Purge => "PURGE",
            Method::Other(token) => token,
        }
    }

    /// Read-only by definition (RFC 9110 §9.2.1).
    pub fn is_safe(&self) -> bool {
        matches!(
            self,
            Method::Get | Method::Head | Method::Options | Method::Trace
        )
    }

    /// Repeating it has the effect of doing it once (RFC 9110 §9.2.2), so a request that failed
    /// before any response may be retried.
    pub fn is_idempotent(&self) -> bool {
        self.is_safe() || matches!(self, Method::Put | Method::Delete)
    }
}

impl From<&str> for Method {
    fn from(token: &str) -> Method {
        Method::parse(token)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_case_matters() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
        ] {
            assert_eq!(Method::parse(name).as_str(), name);
        }
        assert_eq!(Method::parse("PURGE"), Method::Purge);
        assert_eq!(Method::parse("get"), Method::Other("get".into()));
        assert_eq!(Method::parse("get").to_string(), "get");
    }

    #[test]
    fn safe_and_idempotent_follow_rfc_9110() {
        let safe: Vec<_> = [
            "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH",
        ]
        .iter()
        .map(|m| (Method::parse(m).is_safe(), Method::parse(m).is_idempotent()))
        .collect();
        let expected = [
            (true, true),
            (true, true),
            (true, true),
            (true, true),
            (false, true),
            (false, true),
            (false, false),
            (false, false),
        ];
        assert_eq!(safe, expected);
    }
}
