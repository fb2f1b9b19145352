//! What can go wrong in `porter fetch`, as sentences a person can act on.
//!
//! Each variant names the peer that failed (the origin or the proxy) and, where it helps, what to try.
//! [`FetchError::kind`] gives the short label the `--repeat` tally counts by.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::http;

/// The step of an exchange an error happened in, for "timed out ... while ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    /// Waiting for the proxy's answer to CONNECT.
    Tunnel,
    TlsHandshake,
    SendRequest,
    ReadHead,
    ReadBody,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connecting to",
            Phase::Tunnel => "waiting for the tunnel from",
            Phase::TlsHandshake => "in the tls handshake with",
            Phase::SendRequest => "sending the request to",
            Phase::ReadHead => "waiting for the response from",
            Phase::ReadBody => "reading the body from",
        }
    }
}

/// A failed `porter fetch`, or one failed attempt of a `--repeat` run.
#[derive(Debug)]
pub enum FetchError {
    /// The URL on the command line cannot be fetched.
    BadUrl { url: String, reason: String },
    /// `--proxy` or a proxy environment variable holds something that is not `HOST:PORT`.
    BadProxy {
        value: String,
        from: &'static str,
        reason: &'static str,
    },
    /// The host name does not resolve.
    Dns { host: String, reason: String },
    /// Nothing listens on the port (a TCP reset to our SYN).
    Refused { peer: String, is_proxy: bool },
    /// No progress within `--timeout`.
    Timeout {
        peer: String,
        phase: Phase,
        after: Duration,
    },
    /// The peer hung up before the exchange was complete.
    Closed { peer: String, phase: Phase },
    /// The response head (or chunked framing) breaks HTTP/1.1.
    BadResponse { peer: String, error: http::Error },
    /// The body ended before the length its head announced.
    Truncated { got: u64, expected: Option<u64> },
    /// The proxy answered with an error of its own instead of forwarding.
    ProxyStatus {
        proxy: String,
        status: u16,
        reason: String,
        detail: String,
        /// The proxy's response head, for the log.
        head: Box<http::ResponseHead>,
        /// The URL that was asked for, for the log.
        url: String,
    },
    /// TLS failed: an untrusted or mismatched certificate, or a protocol error.
    Tls { peer: String, error: rustls::Error },
    /// `--cacert` could not be read or holds no certificate.
    Cacert { path: PathBuf, reason: String },
    /// Writing the download (or its folder) failed.
    Save { path: PathBuf, error: io::Error },
    /// Appending to the log file failed.
    Log { path: PathBuf, error: io::Error },
    /// Any other socket error.
    Io {
        peer: String,
        phase: Phase,
        error: io::Error,
    },
    /// Some attempts of a `--repeat` run got no response; each was reported as it happened.
    Attempts { failed: u32, total: u32 },
    /// The server answered with an error status (4xx or 5xx).
    HttpStatus { status: u16, reason: String },
    /// Some attempts of a `--repeat` run got an error status (and all got a response).
    HttpStatuses { count: u32, total: u32 },
    /// `-L` met more redirects than `--max-redirects`.
    TooManyRedirects { limit: u32, url: String },
    /// `--proxy-user` is not `USER:PASSWORD`.
    BadProxyUser { reason: &'static str },
}

/// The exit status of an HTTP error answer (4xx, 5xx), as wget uses it ("server issued an error
/// response"): distinct from 1, which means no usable response at all.
pub const EXIT_HTTP_ERROR: u8 = 8;

impl FetchError {
    /// A short label for the outcome tally: one per kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::BadUrl { .. } => "bad url",
            FetchError::BadProxy { .. } => "bad proxy",
            FetchError::Dns { .. } => "dns failure",
            FetchError::Refused { .. } => "connection refused",
            FetchError::Timeout { .. } => "timed out",
            FetchError::Closed { .. } => "connection closed",
            FetchError::BadResponse { .. } => "bad response",
            FetchError::Truncated { .. } => "truncated",
            FetchError::ProxyStatus { .. } => "proxy error",
            FetchError::Tls { .. } => "tls error",
            FetchError::Cacert { .. } => "bad cacert",
            FetchError::Save { .. } => "save failed",
            FetchError::Log { .. } => "log failed",
            FetchError::Io { .. } => "network error",
            FetchError::Attempts { .. } => "failed attempts",
            FetchError::HttpStatus { .. } | FetchError::HttpStatuses { .. } => "http error",
            FetchError::TooManyRedirects { .. } => "too many redirects",
            FetchError::BadProxyUser { .. } => "bad proxy user",
        }
    }

    /// The process exit status for this error: [`EXIT_HTTP_ERROR`] for an error status, 1 for
    /// everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            FetchError::HttpStatus { .. } | FetchError::HttpStatuses { .. } => EXIT_HTTP_ERROR,
            _ => 1,
        }
    }

    /// Maps a socket error to the variant that explains it; `peer` is `host:port` as the user knows it.
    pub fn from_io(error: io::Error, peer: &str, phase: Phase, timeout: Duration) -> FetchError {
        let peer = peer.to_string();
        match error.kind() {
            io::ErrorKind::ConnectionRefused => FetchError::Refused {
                peer,
                is_proxy: false,
            },
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FetchError::Timeout {
                peer,
                phase,
                after: timeout,
            },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => FetchError::Closed { peer, phase },
            io::ErrorKind::InvalidData => {
                let inner = error.get_ref();
                if let Some(tls) = inner.and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    return FetchError::Tls {
                        peer,
                        error: tls.clone(),
                    };
                }
                match inner.and_then(|e| e.downcast_ref::<http::Error>()) {
                    Some(http::Error::Truncated) => FetchError::Closed { peer, phase },
                    Some(http_error) => FetchError::BadResponse {
                        peer,
                        error: http_error.clone(),
                    },
                    None => FetchError::Io { peer, phase, error },
                }
            }
            _ => FetchError::Io { peer, phase, error },
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUrl { url, reason } => write!(f, "bad url {url:?}: {reason}"),
            FetchError::BadProxy {
                value,
                from,
                reason,
            } => write!(f, "bad proxy {value:?} in {from}: {reason}"),
            FetchError::Dns { host, reason } => {
                write!(f, "cannot resolve host {host:?}: {reason}")
            }
            FetchError::Refused {
                peer,
                is_proxy: true,
            } => write!(
                f,
                "connection refused by the proxy {peer}: is the proxy running there?"
            ),
            FetchError::Refused { peer, .. } => write!(
                f,
                "connection refused by {peer}: is the server running there?"
            ),
            FetchError::Timeout { peer, phase, after } => write!(
                f,
                "timed out after {} {} {peer}",
                crate::units::format_duration(*after),
                phase.as_str()
            ),
            FetchError::Closed { peer, phase } => write!(
                f,
                "{peer} closed the connection {}",
                match phase {
                    Phase::Connect => "while we connected",
                    Phase::Tunnel => "before answering CONNECT",
                    Phase::TlsHandshake => "during the tls handshake",
                    Phase::SendRequest => "while the request was being sent",
                    Phase::ReadHead => "before sending a response",
                    Phase::ReadBody => "in the middle of the body",
                }
            ),
            FetchError::BadResponse { peer, error } => {
                write!(f, "bad response from {peer}: {error}")
            }
            FetchError::Truncated {
                got,
                expected: Some(expected),
            } => write!(f, "the response body ended after {got} of {expected} bytes"),
            FetchError::Truncated { got, .. } => {
                write!(f, "the response body ended early after {got} bytes")
            }
            FetchError::ProxyStatus {
                proxy,
                status,
                reason,
                detail,
                ..
            } => {
                write!(f, "the proxy {proxy} answered {status} {reason}")?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            FetchError::Tls { peer, error } => {
                if !matches!(error, rustls::Error::InvalidCertificate(_)) {
                    return write!(f, "tls with {peer} failed: {error}");
                }
                // The proxy's names and hints (tls::stats::Failure), with fetch's own flag for
                // what the proxy calls --upstream-ca.
                let failure = crate::tls::Failure::of(error);
                write!(
                    f,
                    "tls with {peer} failed: {} ({}; {error}); {}, or skip the check with --insecure",
                    failure.describe(),
                    failure.as_str(),
                    failure.hint().replace("--upstream-ca", "--cacert")
                )
            }
            FetchError::Cacert { path, reason } => {
                write!(f, "cannot use --cacert {}: {reason}", path.display())
            }
            FetchError::Save { path, error } => {
                write!(f, "cannot save {}: {error}", path.display())
            }
            FetchError::Log { path, error } => {
                write!(f, "cannot append to the log {}: {error}", path.display())
            }
            FetchError::Io { peer, phase, error } => {
                write!(f, "network error {} {peer}: {error}", phase.as_str())
            }
            FetchError::Attempts { failed, total } => {
                write!(f, "{failed} of {total} requests got no response")
            }
            FetchError::HttpStatus { status, reason } => {
                write!(f, "the server answered {status} {reason}")
            }
            FetchError::HttpStatuses { count, total } => {
                write!(f, "{count} of {total} requests got an error status")
            }
            FetchError::TooManyRedirects { limit, url } => write!(
                f,
                "more than {limit} redirects (raise --max-redirects); the last went to {url}"
            ),
            FetchError::BadProxyUser { reason } => write!(f, "bad --proxy-user: {reason}"),
        }
    }
}

impl std::error::Error for FetchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_errors_become_the_variant_that_explains_them() {
        let t = Duration::from_millis(300);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            FetchError::from_io(refused, "h:1", Phase::Connect, t).to_string(),
            "connection refused by h:1: is the server running there?"
        );
        let timeout = io::Error::from(io::ErrorKind::WouldBlock);
        let error = FetchError::from_io(timeout, "h:1", Phase::ReadHead, t);
        assert_eq!(error.kind(), "timed out");
        assert_eq!(
            error.to_string(),
            "timed out after 300ms waiting for the response from h:1"
        );
        let bad = io::Error::from(http::Error::InvalidChunk("invalid chunk size"));
        assert_eq!(
            FetchError::from_io(bad, "h:1", Phase::ReadBody, t).to_string(),
            "bad response from h:1: invalid chunk size"
        );
        let cut = io::Error::from(http::Error::Truncated);
        let error = FetchError::from_io(cut, "h:1", Phase::ReadBody, t);
        assert_eq!(error.kind(), "connection closed");
        assert_eq!(
            error.to_string(),
            "h:1 closed the connection in the middle of the body"
        );
    }
}
