//! Access control values: client networks (`--allow CIDR`, `--deny-dest CIDR`) and destination host
//! patterns (`--deny-host`).
//!
//! One address has many spellings (`::ffff:127.0.0.1`, `0x7f.1`, `2130706433`, `0.0.0.0`, which Linux
//! connects to loopback), so IP literals are compared as addresses after [`effective_ip`], never as
//! text. Names are aliases by nature (any DNS name can point at 10.0.0.1): only `--deny-dest`, checked
//! against the address actually connected to, cannot be talked around.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network such as `10.0.0.0/8` or `::1/128`; a bare address means one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The default allow list: loopback clients only.
    pub fn loopback() -> Vec<Cidr> {
        vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    /// Whether `addr` is inside, after [`effective_ip`] (so `0.0.0.0` is in `127.0.0.0/8`).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = effective_ip(addr);
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => mask_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => mask_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

/// The address a connection to `ip` really reaches: an IPv4-mapped IPv6 address is its IPv4 address,
/// and the unspecified address (`0.0.0.0`, `::`) is loopback, where Linux delivers a connect to it.
pub fn effective_ip(ip: IpAddr) -> IpAddr {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// An IP literal in any spelling the `url` crate (and `inet_aton`) accepts: dotted, shortened (`127.1`),
/// hex or octal parts, one number (`2130706433`, `0`), or IPv6 with or without brackets. `None` for a
/// name.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let host = host.trim_end_matches('.');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip);
    }
    let bracketed;
    let host = if host.contains(':') && !host.starts_with('[') {
        bracketed = format!("[{host}]");
        &bracketed
    } else {
        host
    };
    match url::Host::parse(host).ok()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

fn mask_eq(net: &[u8], addr: &[u8], prefix: u8) -> bool {
    let mut bits = u32::from(prefix);
    for (n, a) in net.iter().zip(addr) {
        let take = bits.min(8);
        if take == 0 {
            return true;
        }
        let mask = (0xffu16 << (8 - take)) as u8;
        if n & mask != a & mask {
            return false;
        }
        bits -= take;
    }
    true
}

/// A `--allow` value that is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError(String);

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AclError {}

impl FromStr for Cidr {
    type Err = AclError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| AclError(format!("{text:?} is not an IP address or CIDR network")))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| AclError(format!("{text:?} has an invalid prefix length")))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A destination host rule: `example.com` matches that host only; `*.example.com` matches its
/// subdomains and example.com itself. Case-insensitive. A rule that is an IP literal matches that
/// address in every spelling (see [`effective_ip`] and [`ip_literal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pattern: String,
    ip: Option<IpAddr>,
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        if let Some(ip) = ip_literal(host) {
            return self.ip == Some(effective_ip(ip));
        }
        let host = host.trim_end_matches('.');
        match self.pattern.strip_prefix("*.") {
            Some(domain) => {
                host.eq_ignore_ascii_case(domain)
                    || (host.len() > domain.len()
                        && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
                        && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
            }
            None => host.eq_ignore_ascii_case(&self.pattern),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl FromStr for HostPattern {
    type Err = AclError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Some(ip) = ip_literal(unbracketed) {
            return Ok(HostPattern {
                pattern: text.to_string(),
                ip: Some(effective_ip(ip)),
            });
        }
        let body = text.strip_prefix("*.").unwrap_or(text);
        let valid = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid {
            return Err(AclError(format!(
                "{text:?} is not a host name, IP address or *.domain pattern"
            )));
        }
        Ok(HostPattern {
            pattern: text.trim_end_matches('.').to_ascii_lowercase(),
            ip: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let lan: Cidr = "192.168.1.0/24".parse().unwrap();
        assert!(lan.contains("192.168.1.77".parse().unwrap()));
        assert!(!lan.contains("192.168.2.1".parse().unwrap()));
        assert!(lan.contains("::ffff:192.168.1.5".parse().unwrap()));
        let any: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        let odd: Cidr = "10.0.0.0/9".parse().unwrap();
        assert!(odd.contains("10.127.0.1".parse().unwrap()));
        assert!(!odd.contains("10.128.0.1".parse().unwrap()));
        assert!(
            Cidr::loopback()
                .iter()
                .any(|c| c.contains("::1".parse().unwrap()))
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn host_patterns() {
        let wild: HostPattern = "*.Example.com".parse().unwrap();
        assert!(wild.matches("ads.example.COM"));
        assert!(wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        let exact: HostPattern = "example.org".parse().unwrap();
        assert!(exact.matches("example.org."));
        assert!(!exact.matches("www.example.org"));
        assert!("bad host".parse::<HostPattern>().is_err());
    }

    #[test]
    fn regression_deny_host_ip_rules_match_every_spelling_of_the_address() {
        let v4: HostPattern = "127.0.0.1".parse().unwrap();
        for spelling in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "[::ffff:7f00:1]",
            "0:0:0:0:0:ffff:127.0.0.1",
            "0.0.0.0",
            "0",
            "::ffff:0.0.0.0",
            "127.1",
            "0x7f.1",
            "0177.0.0.1",
            "2130706433",
            "127.0.0.1.",
        ] {
            assert!(v4.matches(spelling), "{spelling}");
        }
        assert!(!v4.matches("127.0.0.2"));
        assert!(!v4.matches("::1"), "::1 is its own address");
        let v6: HostPattern = "::1".parse().unwrap();
        assert!(v6.matches("0:0:0:0:0:0:0:1") && v6.matches("[::1]") && v6.matches("::"));
        let bracketed: HostPattern = "[::1]".parse().unwrap();
        assert!(bracketed.matches("::1"));
        let name: HostPattern = "localhost".parse().unwrap();
        assert!(name.matches("LOCALHOST.") && !name.matches("127.0.0.1"));
    }

    #[test]
    fn effective_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(effective_ip(ip("0.0.0.0")), ip("127.0.0.1"));
        assert_eq!(effective_ip(ip("::")), ip("::1"));
        assert_eq!(effective_ip(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        let internal: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(internal.contains(ip("0.0.0.0")) && internal.contains(ip("::ffff:127.9.9.9")));
    }
}
