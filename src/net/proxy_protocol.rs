//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front of Porter says, in a
//! header before the first request, which client it is relaying, so ACLs and the access log see that
//! client rather than the balancer. With `--accept-proxy-protocol` the header is trusted only from
//! the balancer, a peer in `--proxy-protocol-from` (default loopback), and that peer must send one;
//! any other peer's header would let it pose as any client (a colleague, an allowed network), so it
//! is refused with 400, while that peer's plain HTTP is served as usual ([`super::conn`] applies
//! this). The client a header names must then pass `--allow` like a direct one.
//!
//! ```text
//!  v1: "PROXY TCP4 203.0.113.7 10.0.0.2 51234 3128\r\n"        text, at most 107 bytes
//!  v2: \r\n\r\n\0\r\nQUIT\n | ver/cmd | family | length | addresses (+ TLVs, skipped)
//! ```
//!
//! Like the HTTP parser, [`parse`] answers "need more bytes" rather than failing on a prefix.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's figure).
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v2 headers longer than this are refused (HAProxy's TLVs are far smaller).
const V2_MAX_BODY: usize = 4096;

/// What the start of a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header: read more.
    NeedMore,
    /// No PROXY header: the bytes are the client's own.
    Absent,
    /// A header of `len` bytes; `client` is the relayed client, `None` when the header says the
    /// connection is the balancer's own (v1 `UNKNOWN`, v2 `LOCAL`, or a family other than TCP).
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
}

/// A header that starts like a PROXY header but breaks its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed PROXY protocol header: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Reads a PROXY header, v1 or v2, from the start of `data`.
pub fn parse(data: &[u8]) -> Result<Parsed, Malformed> {
    if data.starts_with(V2_SIGNATURE) {
        return parse_v2(data);
    }
    if data.starts_with(V1_PREFIX) {
        return parse_v1(data);
    }
    let n = data.len();
    if n < V2_SIGNATURE.len() && V2_SIGNATURE.starts_with(data)
        || n < 6 && V1_PREFIX.starts_with(data)
    {
        return Ok(Parsed::NeedMore);
    }
    Ok(Parsed::Absent)
}

fn parse_v1(data: &[u8]) -> Result<Parsed, Malformed> {
    let window = &data[..data.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if data.len() >= V1_MAX {
            Err(Malformed("v1 header longer than 107 bytes"))
        } else {
            Ok(Parsed::NeedMore)
        };
    };
    let line = std::str::from_utf8(&data[..end]).map_err(|_| Malformed("v1 header not ASCII"))?;
    let len = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(Parsed::Header { len, client: None }),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| Malformed("v1 source address"))?;
            let dst: IpAddr = dst
                .parse()
                .map_err(|_| Malformed("v1 destination address"))?;
            let v4 = *family == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Err(Malformed("v1 address does not match its family"));
            }
            let port = |text: &str| {
                // Decimal without leading zeros, as the specification writes them.
                let ok = !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                ok.then(|| text.parse::<u16>().ok()).flatten()
            };
            let sport = port(sport).ok_or(Malformed("v1 source port"))?;
            port(dport).ok_or(Malformed("v1 destination port"))?;
            Ok(Parsed::Header {
                len,
                client: Some(SocketAddr::new(src, sport)),
            })
        }
        _ => Err(Malformed("v1 header fields")),
    }
}

fn parse_v2(data: &[u8]) -> Result<Parsed, Malformed> {
    let Some(fixed) = data.get(..16) else {
        return Ok(Parsed::NeedMore);
    };
    let (ver_cmd, family) = (fixed[12], fixed[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Malformed("v2 version"));
    }
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if body_len > V2_MAX_BODY {
        return Err(Malformed("v2 header too long"));
    }
    let Some(body) = data.get(16..16 + body_len) else {
        return Ok(Parsed::NeedMore);
    };
    let len = 16 + body_len;
    match ver_cmd & 0x0f {
        // LOCAL: the balancer's own connection (its health checks); keep the socket's address.
        0 => return Ok(Parsed::Header { len, client: None }),
        1 => {}
        _ => return Err(Malformed("v2 command")),
    }
    let client = match family {
        // TCP over IPv4, and over IPv6; UDP and UNIX sockets name no client we can use.
        0x11 => {
            let a = body.get(..12).ok_or(Malformed("v2 IPv4 addresses"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([a[8], a[9]]),
            ))
        }
        0x21 => {
            let a = body.get(..36).ok_or(Malformed("v2 IPv6 addresses"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        _ => None,
    };
    Ok(Parsed::Header { len, client })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend_from_slice(&[0x20 | command, family]);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Every strict prefix of a header needs more bytes; the whole header parses to `expected`.
    fn check_prefixes(header: &[u8], expected: Parsed) {
        for cut in 0..header.len() {
            assert_eq!(
                parse(&header[..cut]),
                Ok(Parsed::NeedMore),
                "prefix of {cut}"
            );
        }
        let mut with_request = header.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&with_request), Ok(expected));
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 3128\r\n";
        let client = Some("203.0.113.7:51234".parse().unwrap());
        check_prefixes(
            line,
            Parsed::Header {
                len: line.len(),
                client,
            },
        );
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 443 3128\r\n";
        let client = Some("[2001:db8::1]:443".parse().unwrap());
        check_prefixes(
            line,
            Parsed::Header {
                len: line.len(),
                client,
            },
        );
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        check_prefixes(
            line,
            Parsed::Header {
                len: line.len(),
                client: None,
            },
        );
    }

    #[test]
    fn v1_garbage_is_refused() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.2 051234 3128\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY SCTP 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(parse(&endless).is_err());
    }

    #[test]
    fn v2_proxy_local_and_other_families() {
        let body4 = [
            192, 0, 2, 9, 10, 0, 0, 2, 0xc8, 0x2f, 0x0c, 0x38, 0xee, 0xee,
        ];
        let header = v2(1, 0x11, &body4);
        let client = Some("192.0.2.9:51247".parse().unwrap());
        check_prefixes(
            &header,
            Parsed::Header {
                len: header.len(),
                client,
            },
        );
        let mut body6 = vec![0u8; 36];
        body6[0] = 0x20;
        body6[1] = 0x01;
        body6[15] = 1;
        body6[32..34].copy_from_slice(&8443u16.to_be_bytes());
        let header = v2(1, 0x21, &body6);
        let client = Some("[2001::1]:8443".parse().unwrap());
        check_prefixes(
            &header,
            Parsed::Header {
                len: header.len(),
                client,
            },
        );
        let local = v2(0, 0x00, &[]);
        check_prefixes(
            &local,
            Parsed::Header {
                len: 16,
                client: None,
            },
        );
        let unix = v2(1, 0x31, &[0u8; 216]);
        assert_eq!(
            parse(&unix),
            Ok(Parsed::Header {
                len: 232,
                client: None
            })
        );
    }

    #[test]
    fn v2_garbage_is_refused_and_plain_http_is_absent() {
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err(), "short addresses");
        assert!(parse(&v2(7, 0x11, &[0; 12])).is_err(), "unknown command");
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).is_err());
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Parsed::Absent));
        assert_eq!(parse(b"PRO"), Ok(Parsed::NeedMore));
        assert_eq!(parse(b"PROPFIND / HTTP/1.1\r\n"), Ok(Parsed::Absent));
    }
}
