//! Access control values: client networks (`--allow CIDR`) and destination host patterns (`--deny-host`).

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

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => mask_eq(&net.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(a)) => mask_eq(&net.octets(), &a.octets(), self.prefix),
            _ => false,
        }
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
/// subdomains and example.com itself. Case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pattern: String,
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
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
        let body = text.strip_prefix("*.").unwrap_or(text);
        let valid = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
        if !valid {
            return Err(AclError(format!(
                "{text:?} is not a host name or *.domain pattern"
            )));
        }
        Ok(HostPattern {
            pattern: text.trim_end_matches('.').to_ascii_lowercase(),
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
}
