//! `porter upper`: the classic uppercase echo exercise, over TCP or UDP.
//!
//! ```text
//!  upper send ──"héllo"──> upper serve ──"HéLLO"──> upper send prints "HOST:PORT > HéLLO"
//! ```
//! Only the bytes `a`..`z` change. Every byte of a UTF-8 multibyte character is 0x80 or above, so text
//! in any language passes through intact, even when a character is split across two reads: the server
//! can work on whatever chunk a read returns, and needs no line framing. A reply is therefore exactly
//! as long as the message, which is how the TCP client knows it has all of it.
//!
//! `tcp` serves many clients at once (a thread each, up to a cap) and many messages per connection;
//! `udp` answers each datagram with one datagram.

mod tcp;
mod udp;

use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Which socket type to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// `porter upper serve`.
#[derive(Debug, Clone)]
pub struct UpperServeConfig {
    pub listen: SocketAddr,
    pub transport: Transport,
}

impl Default for UpperServeConfig {
    fn default() -> Self {
        UpperServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 12000)),
            transport: Transport::Tcp,
        }
    }
}

/// `porter upper send`.
#[derive(Debug, Clone)]
pub struct UpperSendConfig {
    /// `HOST:PORT` as given: where to send, and the prefix of each printed reply.
    pub target: String,
    pub transport: Transport,
    /// Time to connect, and to wait for each reply.
    pub timeout: Duration,
    /// The message; `None` sends each line of stdin.
    pub text: Option<String>,
}

impl Default for UpperSendConfig {
    fn default() -> Self {
        UpperSendConfig {
            target: "127.0.0.1:12000".to_string(),
            transport: Transport::Tcp,
            timeout: Duration::from_secs(5),
            text: None,
        }
    }
}

/// What `porter upper` runs.
#[derive(Debug, Clone)]
pub enum UpperConfig {
    Serve(UpperServeConfig),
    Send(UpperSendConfig),
}

/// Why the echo server or client failed.
#[derive(Debug)]
pub enum UpperError {
    Listen {
        addr: SocketAddr,
        error: io::Error,
    },
    BadTarget {
        target: String,
    },
    Resolve {
        target: String,
        reason: String,
    },
    Refused {
        target: String,
    },
    Timeout {
        target: String,
        after: Duration,
    },
    NoUdpReply {
        target: String,
        after: Duration,
        port_unreachable: bool,
    },
    Closed {
        target: String,
    },
    Io {
        target: String,
        error: io::Error,
    },
    Stdin(io::Error),
}

impl fmt::Display for UpperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| crate::units::format_duration(*d);
        match self {
            UpperError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            UpperError::BadTarget { target } => {
                write!(f, "bad address {target:?}: expected HOST:PORT")
            }
            UpperError::Resolve { target, reason } => {
                write!(f, "cannot resolve {target}: {reason}")
            }
            UpperError::Refused { target } => {
                write!(f, "connection refused: is the server running on {target}?")
            }
            UpperError::Timeout { target, after } => {
                write!(f, "no reply from {target} within {}", ms(after))
            }
            UpperError::NoUdpReply {
                target,
                after,
                port_unreachable,
            } => {
                write!(f, "no udp reply from {target}")?;
                if !*port_unreachable {
                    write!(f, " within {}", ms(after))?;
                }
                f.write_str(": ")?;
                f.write_str(
                    "udp is connectionless, so nothing confirms delivery; the datagram or its reply \
                     was lost, or no server listens there",
                )?;
                if *port_unreachable {
                    f.write_str(" (the host reported that nothing listens on that port)")?;
                }
                Ok(())
            }
            UpperError::Closed { target } => {
                write!(f, "{target} closed the connection before replying in full")
            }
            UpperError::Io { target, error } => write!(f, "talking to {target} failed: {error}"),
            UpperError::Stdin(error) => write!(f, "cannot read stdin: {error}"),
        }
    }
}

impl std::error::Error for UpperError {}

/// Runs the server or the client.
pub fn run(config: UpperConfig) -> Result<(), UpperError> {
    match config {
        UpperConfig::Serve(c) => match c.transport {
            Transport::Tcp => tcp::serve(c.listen),
            Transport::Udp => udp::serve(c.listen),
        },
        UpperConfig::Send(c) => {
            let addr = resolve(&c.target)?;
            let messages = messages(c.text.as_deref());
            match c.transport {
                Transport::Tcp => tcp::send(&c.target, addr, c.timeout, messages),
                Transport::Udp => udp::send(&c.target, addr, c.timeout, messages),
            }
        }
    }
}

/// The one transformation: ASCII `a`..`z` to `A`..`Z`, every other byte as it is.
pub fn uppercase(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

/// The first address `HOST:PORT` resolves to.
fn resolve(target: &str) -> Result<SocketAddr, UpperError> {
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(UpperError::BadTarget {
            target: target.to_string(),
        });
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(port) = port.parse::<u16>() else {
        return Err(UpperError::BadTarget {
            target: target.to_string(),
        });
    };
    if host.is_empty() {
        return Err(UpperError::BadTarget {
            target: target.to_string(),
        });
    }
    let resolve_error = |reason: String| UpperError::Resolve {
        target: target.to_string(),
        reason,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| resolve_error(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_error("it has no address".to_string()))
}

/// The messages to send: TEXT, or each line of stdin without its line ending.
fn messages(text: Option<&str>) -> Box<dyn Iterator<Item = Result<Vec<u8>, UpperError>>> {
    match text {
        Some(text) => Box::new(std::iter::once(Ok(text.as_bytes().to_vec()))),
        None => Box::new(io::stdin().lock().split(b'\n').map(|line| {
            line.map(|mut l| {
                if l.last() == Some(&b'\r') {
                    l.pop();
                }
                l
            })
            .map_err(UpperError::Stdin)
        })),
    }
}

/// Prints `HOST:PORT > REPLY`; a closed stdout is ignored.
fn print_reply(target: &str, reply: &[u8]) {
    let mut out = io::stdout().lock();
    let _ =
        writeln!(out, "{target} > {}", String::from_utf8_lossy(reply)).and_then(|()| out.flush());
}

/// Prints the `listening on ADDR` line the tests and scripts wait for.
fn announce(addr: SocketAddr) -> Result<(), UpperError> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")
        .and_then(|()| out.flush())
        .map_err(|error| UpperError::Listen { addr, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ascii_letters_change() {
        let mut text = "héllo wörld, ß & 123 ünïcödé 日本語 abc"
            .as_bytes()
            .to_vec();
        uppercase(&mut text);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "HéLLO WöRLD, ß & 123 üNïCöDé 日本語 ABC"
        );
        // Split in the middle of a multibyte character: each half still maps byte for byte.
        let whole = "aé".as_bytes();
        let (mut first, mut second) = (whole[..2].to_vec(), whole[2..].to_vec());
        uppercase(&mut first);
        uppercase(&mut second);
        assert_eq!([first, second].concat(), "Aé".as_bytes());
    }

    #[test]
    fn targets_need_host_and_port() {
        assert_eq!(
            resolve("127.0.0.1:9").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 9))
        );
        assert_eq!(resolve("[::1]:9").unwrap().port(), 9);
        for bad in ["127.0.0.1", ":9", "host:port"] {
            assert!(
                matches!(resolve(bad), Err(UpperError::BadTarget { .. })),
                "{bad}"
            );
        }
    }
}
