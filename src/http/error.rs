//! Errors of the HTTP layer: what was wrong with the bytes a peer sent.

use std::fmt;

/// A malformed or unacceptable message. The caller knows which peer sent it and picks the status:
/// a client's error is a 4xx, an origin's a 502.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request or status line, or a header, breaks the grammar of RFC 9112.
    Malformed(&'static str),
    /// The header section exceeds the head size limit.
    HeadTooLarge,
    /// More header fields than the limit allows.
    TooManyHeaders,
    /// The request target exceeds the URI limit.
    UriTooLong,
    /// A version other than HTTP/1.0 or HTTP/1.1.
    UnsupportedVersion,
    /// Content-Length is not a plain decimal number.
    InvalidContentLength,
    /// Several Content-Length values that disagree.
    DuplicateContentLength,
    /// Both Transfer-Encoding and Content-Length: a request smuggling vector (RFC 9112 §6.3).
    ContentLengthWithTransferEncoding,
    /// A coding we do not decode before the final chunked (`gzip, chunked`): 501 (RFC 9112 §6.1).
    UnsupportedTransferEncoding,
    /// A Transfer-Encoding whose final coding is not chunked, or that repeats chunked: the body
    /// length cannot be known, 400 and close (RFC 9112 §6.3).
    ChunkedNotFinal,
    /// A chunk-size line or chunk delimiter that breaks RFC 9112 §7.1.
    InvalidChunk(&'static str),
    /// The peer closed the connection before the message was complete.
    Truncated,
}

impl Error {
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::Malformed(what) => what,
            Error::HeadTooLarge => "header section too large",
            Error::TooManyHeaders => "too many header fields",
            Error::UriTooLong => "request target too long",
            Error::UnsupportedVersion => "unsupported http version",
            Error::InvalidContentLength => "invalid content-length",
            Error::DuplicateContentLength => "conflicting content-length values",
            Error::ContentLengthWithTransferEncoding => "both transfer-encoding and content-length",
            Error::UnsupportedTransferEncoding => "unsupported transfer-encoding",
            Error::ChunkedNotFinal => "transfer-encoding does not end in a single chunked",
            Error::InvalidChunk(what) => what,
            Error::Truncated => "message truncated",
        }
    }

    /// The status a server answers a client's request with for this error.
    pub fn client_status(&self) -> u16 {
        match self {
            Error::HeadTooLarge | Error::TooManyHeaders => 431,
            Error::UriTooLong => 414,
            Error::UnsupportedVersion => 505,
            Error::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}
