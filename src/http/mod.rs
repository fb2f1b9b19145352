//! HTTP/1.1 message heads and body framing (RFC 9110, RFC 9112), with no sockets.
//!
//! `parse` turns bytes into heads, `body` decides and decodes message framing, `write` serialises heads,
//! `hop` strips hop-by-hop fields, [`Method`] carries the method's rules and `authority` reads and
//! writes `host:port`. [`connection_field`] is the one Connection rule for every response. Everything works on a [`ReadBuf`] plus any `Read`/`Write`, so the
//! same code serves the proxy, the origin server and the client, and tests drive it from byte slices.

pub mod authority;
pub mod body;
mod chunked;
pub mod date;
mod error;
mod headers;
pub mod hop;
mod method;
pub mod parse;
pub mod range;
mod readbuf;
mod scheme;
pub mod write;

pub use error::Error;
pub use headers::Headers;
pub use method::Method;
pub use readbuf::ReadBuf;
pub use scheme::Scheme;

/// Limits on what a peer may send us before we give up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header section, request or status line included (431 / 502 beyond).
    pub max_head_bytes: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Longest request target (414 beyond).
    pub max_uri_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
        }
    }
}

/// HTTP version of a message; Porter speaks 1.0 and 1.1 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A parsed request head. The target is kept as sent; the proxy interprets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub target: String,
    pub version: Version,
    pub headers: Headers,
}

impl RequestHead {
    /// Whether the client wants the connection kept open after this exchange (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub version: Version,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
}

impl ResponseHead {
    pub fn new(status: u16) -> Self {
        ResponseHead {
            version: Version::Http11,
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
        }
    }

    /// Whether the sender lets the connection stay open after this response.
    pub fn keep_alive(&self) -> bool {
        keep_alive(self.version, &self.headers)
    }
}

/// The Connection field a response carries (RFC 9112 §9.3, §9.6): `close` when the connection ends
/// after it, `keep-alive` when an HTTP/1.0 client's connection stays open (1.0 closes by default),
/// and none for HTTP/1.1, which stays open by default. The one copy of this rule for every response
/// Porter writes.
pub fn connection_field(client_version: Version, keep_alive: bool) -> Option<&'static str> {
    if !keep_alive {
        Some("close")
    } else if client_version == Version::Http10 {
        Some("keep-alive")
    } else {
        None
    }
}

fn keep_alive(version: Version, headers: &Headers) -> bool {
    if headers.has_token("connection", "close") {
        return false;
    }
    version == Version::Http11 || headers.has_token("connection", "keep-alive")
}

/// The standard reason phrase for a status code, for the heads Porter writes itself.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        508 => "Loop Detected",
        _ => "Unknown",
    }
}
