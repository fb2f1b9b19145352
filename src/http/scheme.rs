//! The two URL schemes Porter speaks (RFC 9110 §4.2): `http` in the clear and `https` over TLS.
//! The proxy's targets, its upstream pool keys and `porter fetch`'s URLs share this one type.

/// `http://` or `https://`; for the proxy, `https` targets are requests inside an intercepted
/// CONNECT tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// The port a URL of this scheme means when it names none (RFC 9110 §4.2.1, §4.2.2).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}
