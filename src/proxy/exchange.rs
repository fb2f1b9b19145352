//! One request as it moves through the proxy's phases, and the typed outcomes those phases return.
//!
//! [`Exchange`] carries what every phase needs (the client connection, the request, its target, the
//! framing and keep-alive wish read once from the head, and the access-log entry being filled in),
//! as pingora-proxy's session does. Each phase answers [`Served`]: whether the client connection may
//! carry another request ([`Reuse`]), or a [`Failure`] that says whether the response head had
//! already gone out, which decides between an error page and a quiet close.

use super::ProxyError;
use super::flow::target::Target;
use super::ops::metrics::AccessEntry;
use crate::http::body::BodyMode;
use crate::http::{Method, RequestHead, Version};
use crate::net::Conn;

/// A request on its way to the origin or the cache.
pub struct Exchange {
    pub conn: Conn,
    pub req: RequestHead,
    pub target: Target,
    /// The request body's framing (RFC 9112 §6.3), read from the head once.
    pub req_body: BodyMode,
    /// Whether the client wants its connection kept open (RFC 9112 §9.3), read once.
    pub keep_alive: bool,
    pub entry: AccessEntry,
}

impl Exchange {
    /// HEAD: the answer is a head only.
    pub fn head_only(&self) -> bool {
        self.req.method == Method::Head
    }
}

/// Whether the client connection may carry another request after this answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    KeepAlive,
    Close,
}

impl Reuse {
    pub fn when(keep_alive: bool) -> Reuse {
        if keep_alive {
            Reuse::KeepAlive
        } else {
            Reuse::Close
        }
    }

    pub fn keeps_alive(self) -> bool {
        self == Reuse::KeepAlive
    }
}

/// A failed exchange, split by whether the client already has the response head: before it, an error
/// page can still say what went wrong; after it, only closing the connection can.
#[derive(Debug)]
pub enum Failure {
    BeforeHead(ProxyError),
    AfterHead(ProxyError),
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Failure {
        Failure::BeforeHead(error)
    }
}

/// What a phase of the exchange ends with.
pub type Served = Result<Reuse, Failure>;

/// How one of the proxy's own answers goes out: the client's version (for the Connection field),
/// whether the connection stays open, and whether the request was HEAD.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub version: Version,
    pub reuse: Reuse,
    pub head_only: bool,
}

impl Answer {
    /// The answer to `req`.
    pub fn to(req: &RequestHead, reuse: Reuse) -> Answer {
        Answer {
            version: req.version,
            reuse,
            head_only: req.method == Method::Head,
        }
    }

    /// The answer to a head that could not be parsed: HTTP/1.1, then close.
    pub fn unparsed() -> Answer {
        Answer {
            version: Version::Http11,
            reuse: Reuse::Close,
            head_only: false,
        }
    }
}
