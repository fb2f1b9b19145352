//! `--listen HOST:PORT` for `proxy`, `serve` and `upper serve`: an IP address, or a host name resolved
//! once at start-up (`localhost:3128`, as Squid's `http_port` and curl's `--interface` take one).
//!
//! A socket binds one address, so a name that resolves to several binds the first IPv4 one (then the
//! first at all): `localhost` is `127.0.0.1` whatever order the resolver gives `::1` in, which keeps
//! the printed `listening on` address and the default `--allow` (loopback) in step.

use std::net::{SocketAddr, ToSocketAddrs};

/// Parses `HOST:PORT` (`[::1]:PORT` for an IPv6 literal), resolving a host name.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "{text:?} is not HOST:PORT (for example 127.0.0.1:3128, localhost:3128 or [::1]:3128)"
        ));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} in {text:?} is not a port number (0 to 65535)"))?;
    if host.is_empty() || host.contains(':') {
        return Err(format!(
            "{text:?} is not HOST:PORT (an IPv6 address goes in brackets: [::1]:{port})"
        ));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{host:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_are_both_listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:3128"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 3128)))
        );
        assert_eq!(parse_listen("[::1]:80").unwrap().port(), 80);
        assert_eq!(
            parse_listen("localhost:3128"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 3128)))
        );
        assert!(parse_listen("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(
            parse_listen("localhost:http")
                .unwrap_err()
                .contains("not a port number")
        );
        assert!(parse_listen(":80").is_err());
        assert!(parse_listen("::1:80").unwrap_err().contains("brackets"));
    }
}
