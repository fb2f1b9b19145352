//! URL authorities (RFC 3986 §3.2, RFC 9110 §4.2, §7.2): the one place that reads a host and port out
//! of a URL or an authority-form target, and writes them back, with the default-port rule explicit at
//! each call.

use url::Url;

/// When writing an authority, whether a scheme's default port is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPort {
    /// Leave this port out: Host fields (RFC 9110 §7.2), where `example.com` means port 80 for http.
    Omit(u16),
    /// Always write the port: CONNECT targets and names of peers in messages.
    Keep,
}

/// `host:port`, or `host` alone when `port` is the default being omitted; IPv6 literals bracketed.
pub fn format(host: &str, port: u16, default: DefaultPort) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match default {
        DefaultPort::Omit(default) if port == default => host,
        _ => format!("{host}:{port}"),
    }
}

/// The host (IPv6 without brackets, domains lowercase) and port of a parsed URL, the port defaulting
/// to the scheme's. `None` when the URL has no host, or no port and a scheme without a default.
pub fn of_url(url: &Url) -> Option<(String, u16)> {
    let host = match url.host()? {
        url::Host::Domain(d) if !d.is_empty() => d.to_ascii_lowercase(),
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    };
    Some((host, url.port_or_known_default()?))
}

/// Why an authority-form `host:port` is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityError {
    /// No `:port` at all.
    MissingPort,
    /// The port is not a number from 1 to 65535.
    BadPort,
    /// Empty, or characters a host name cannot have, or a bracketed literal that is not IPv6.
    BadHost,
}

/// Parses authority-form `host:port` (RFC 9110 §9.3.6): the port is required and there is no
/// default. Returns the host lowercase and IPv6 without brackets. The port is digits only (`+443` and
/// ` 443` are refused: `u16::from_str` would take a sign). An IP literal comes back in its canonical
/// spelling, parsed as the `url` crate (and `inet_aton`) would (`0x7f.1`, `2130706433` and `0` are
/// IPv4 addresses), so the host rules see the address that would be connected to.
pub fn parse(text: &str) -> Result<(String, u16), AuthorityError> {
    let (host, port) = text.rsplit_once(':').ok_or(AuthorityError::MissingPort)?;
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::BadPort);
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or(AuthorityError::BadPort)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .and_then(|v6| v6.parse::<std::net::Ipv6Addr>().ok())
            .ok_or(AuthorityError::BadHost)?
            .to_string(),
        None => {
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
            if !valid {
                return Err(AuthorityError::BadHost);
            }
            match url::Host::parse(host).map_err(|_| AuthorityError::BadHost)? {
                url::Host::Ipv4(ip) => ip.to_string(),
                url::Host::Ipv6(ip) => ip.to_string(),
                url::Host::Domain(_) => host.to_ascii_lowercase(),
            }
        }
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_an_explicit_default_port() {
        assert_eq!(
            format("example.com", 80, DefaultPort::Omit(80)),
            "example.com"
        );
        assert_eq!(
            format("example.com", 80, DefaultPort::Keep),
            "example.com:80"
        );
        assert_eq!(format("::1", 443, DefaultPort::Omit(443)), "[::1]");
        assert_eq!(format("::1", 8443, DefaultPort::Omit(443)), "[::1]:8443");
    }

    #[test]
    fn reads_urls_with_the_scheme_default() {
        let url = Url::parse("http://Example.COM/x").unwrap();
        assert_eq!(of_url(&url), Some(("example.com".into(), 80)));
        let url = Url::parse("https://[::1]:8443/").unwrap();
        assert_eq!(of_url(&url), Some(("::1".into(), 8443)));
    }

    #[test]
    fn authority_form_needs_a_port() {
        assert_eq!(parse("Example.com:443"), Ok(("example.com".into(), 443)));
        assert_eq!(parse("[::1]:8443"), Ok(("::1".into(), 8443)));
        assert_eq!(parse("example.com"), Err(AuthorityError::MissingPort));
        assert_eq!(parse("example.com:0"), Err(AuthorityError::BadPort));
        assert_eq!(parse("bad host:443"), Err(AuthorityError::BadHost));
        assert_eq!(parse("[nope]:1"), Err(AuthorityError::BadHost));
        assert_eq!(parse("0x7f.1:443"), Ok(("127.0.0.1".into(), 443)));
        assert_eq!(parse("0:443"), Ok(("0.0.0.0".into(), 443)));
        assert_eq!(
            parse("[::ffff:7f00:1]:443"),
            Ok(("::ffff:127.0.0.1".into(), 443))
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
            assert_eq!(parse(bad), Err(AuthorityError::BadPort), "{bad}");
        }
        assert_eq!(parse("host:08443"), Ok(("host".into(), 8443)));
    }
}
