//! What can go wrong while proxying a request, and which side is to blame: that picks the status.

use std::fmt;
use std::io;

use super::upstream::DialError;
use super::upstream::dest::{self, DestDenied};
use crate::http;
use crate::tls::UpstreamTlsError;

/// A failed exchange. Client faults are 4xx (or a quiet close), upstream faults 502/504.
#[derive(Debug)]
pub enum ProxyError {
    /// The client's request is malformed or unacceptable.
    BadRequest(http::Error),
    /// The client's socket failed or timed out (it hung up, or stopped reading or sending).
    ClientIo(io::Error),
    /// Could not resolve or connect to the origin.
    Dial(io::Error),
    /// Every address of the origin is refused by a destination rule (`--deny-dest`, or the proxy's
    /// own address): the client's request is forbidden, not the origin's fault.
    Denied(DestDenied),
    /// The TLS handshake with an https origin failed, or its certificate does not verify.
    UpstreamTls(UpstreamTlsError),
    /// The origin did not answer in time.
    OriginTimeout,
    /// The origin's socket failed mid-exchange.
    OriginIo(io::Error),
    /// The origin sent something that is not a valid HTTP/1.x response.
    BadResponse(http::Error),
    /// `Cache-Control: only-if-cached` and nothing usable is stored (RFC 9111 §5.2.1.7).
    NotCached,
    /// A cache file could not be read while serving it.
    CacheRead(io::Error),
    /// Every parent proxy is down (refused, timed out, or marked down) and `--parent-fallback fail`:
    /// the names and what happened to each.
    NoParent(String),
    /// A parent proxy refused a CONNECT, or our credentials (407), with this status.
    ParentRefused { parent: String, status: u16 },
}

impl ProxyError {
    /// The status to answer with, when the response head has not been sent yet.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::BadRequest(e) => e.client_status(),
            ProxyError::ClientIo(_) => 400,
            ProxyError::Denied(_) => 403,
            ProxyError::Dial(e) if is_timeout(e) => 504,
            ProxyError::OriginTimeout => 504,
            ProxyError::OriginIo(e) if is_timeout(e) => 504,
            ProxyError::Dial(_) | ProxyError::OriginIo(_) | ProxyError::BadResponse(_) => 502,
            ProxyError::UpstreamTls(_) => 502,
            ProxyError::NotCached => 504,
            ProxyError::CacheRead(_) => 500,
            ProxyError::NoParent(_) => 502,
            // Our credentials for the parent are not the client's to fix: a gateway error.
            ProxyError::ParentRefused { status: 407, .. } => 502,
            ProxyError::ParentRefused { status, .. } if (400..600).contains(status) => *status,
            ProxyError::ParentRefused { .. } => 502,
        }
    }

    /// Whether the origin could not be reached or failed to answer (refused, unresolvable, timed
    /// out, reset, garbage, or every parent proxy down): the failures a stored response may stand in
    /// for (RFC 5861 §4). An origin certificate that does not verify, and a parent refusing our
    /// credentials, are not among them: those are refused, not papered over.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::Dial(_)
                | ProxyError::OriginTimeout
                | ProxyError::OriginIo(_)
                | ProxyError::BadResponse(_)
                | ProxyError::NoParent(_)
        )
    }

    /// Whether the client is gone or misbehaving, so there is no one to send an error page to.
    pub fn is_client_side(&self) -> bool {
        matches!(self, ProxyError::ClientIo(_))
    }

    /// A failed TCP dial: a destination rule's refusal becomes `Denied`.
    pub fn from_dial(error: io::Error) -> ProxyError {
        match dest::denied(&error) {
            Some(denied) => ProxyError::Denied(denied.clone()),
            None => ProxyError::Dial(error),
        }
    }

    /// An origin read error: a timeout becomes `OriginTimeout`, bad framing `BadResponse`.
    pub fn from_origin_read(error: io::Error) -> ProxyError {
        if is_timeout(&error) {
            return ProxyError::OriginTimeout;
        }
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<http::Error>())
        {
            Some(http_error) => ProxyError::BadResponse(http_error.clone()),
            None => ProxyError::OriginIo(error),
        }
    }

    /// A client read error: bad framing is the client's malformed request.
    pub fn from_client_read(error: io::Error) -> ProxyError {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<http::Error>())
        {
            Some(http_error) if *http_error != http::Error::Truncated => {
                ProxyError::BadRequest(http_error.clone())
            }
            _ => ProxyError::ClientIo(error),
        }
    }
}

pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::BadRequest(e) => write!(f, "bad request: {e}"),
            ProxyError::ClientIo(e) => write!(f, "client connection failed: {e}"),
            ProxyError::Dial(e) if is_timeout(e) => {
                f.write_str("timed out connecting to the origin")
            }
            ProxyError::Dial(e) => write!(f, "cannot connect to the origin: {e}"),
            ProxyError::Denied(denied) => denied.fmt(f),
            ProxyError::UpstreamTls(e) => write!(
                f,
                "refused to talk to {}: {} ({}; {}). Porter checks origin certificates for \
                 intercepted requests the way the client would have; {}, or tunnel the host \
                 with --no-intercept-host",
                e.host,
                e.failure.describe(),
                e.failure.as_str(),
                e.detail,
                e.failure.hint()
            ),
            ProxyError::OriginTimeout => f.write_str("the origin did not answer in time"),
            ProxyError::OriginIo(e) => write!(f, "origin connection failed: {e}"),
            ProxyError::BadResponse(e) => write!(f, "invalid response from the origin: {e}"),
            ProxyError::NotCached => {
                f.write_str("only-if-cached was requested and the cache holds no usable response")
            }
            ProxyError::CacheRead(e) => write!(f, "cannot read the cached response: {e}"),
            ProxyError::NoParent(tried) => write!(f, "no parent proxy is reachable: {tried}"),
            ProxyError::ParentRefused { parent, status } => {
                write!(f, "the parent proxy {parent} refused with {status}")
            }
        }
    }
}

impl std::error::Error for ProxyError {}

impl From<DialError> for ProxyError {
    fn from(error: DialError) -> ProxyError {
        match error {
            DialError::Tcp(e) => ProxyError::from_dial(e),
            DialError::Tls(e) => ProxyError::UpstreamTls(e),
            DialError::NoTls => ProxyError::Dial(io::Error::other(
                "https origins are reached only through --intercept",
            )),
        }
    }
}
