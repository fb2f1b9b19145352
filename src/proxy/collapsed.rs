//! Serving a request from an entry another request is still fetching and storing (read-while-writing,
//! [`crate::cache::inflight`]): the head at once, the body bytes already in the file at once, then each
//! new piece as the writer reports it, until the writer says the body is complete or broke off.
//!
//! ```text
//!  head (stored head, Content-Length or chunked, Age, Via, Cache-Status: porter; fwd=miss; collapsed)
//!  loop: wait_past(sent) ─┬─ Grew(n) ───────────────> sendfile sent..n
//!                         ├─ Ended(Complete, n) ─────> sendfile sent..n, last chunk, done
//!                         └─ Ended(Failed, n) / Stalled ─> sendfile sent..n, close (cut off like the writer's client)
//! ```

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use super::ProxyError;
use super::forward;
use crate::cache::inflight::{End, Growth, Reader};
use crate::cache::policy;
use crate::http::{RequestHead, Version, write};
use crate::net::sendfile::send_file;

/// The Cache-Status of a response read while another request stores it (RFC 9211 §2.5).
pub const COLLAPSED_STATUS: &str = "porter; fwd=miss; collapsed";

/// How a follower's response went.
pub struct Followed {
    /// Bytes written to the client, head included.
    pub bytes: u64,
    pub status: u16,
    /// Whether the client connection may carry another request.
    pub keep_alive: bool,
}

/// A follower's failure: what went wrong and the bytes sent until then.
pub struct FollowFailed {
    pub error: ProxyError,
    pub bytes: u64,
    pub status: u16,
}

/// Sends the entry `reader` follows to `stream`. `stall` bounds the wait for the next piece (the
/// writer's own origin timeout is shorter, so it normally says `Failed` first).
pub fn serve(
    stream: &mut TcpStream,
    req: &RequestHead,
    keep_alive: bool,
    via: &str,
    reader: &Reader,
    stall: Duration,
) -> Result<Followed, FollowFailed> {
    let inflight = reader.inflight();
    let meta = &inflight.meta;
    let status = meta.head.status;
    let chunked = inflight.length.is_none() && req.version == Version::Http11;
    // Without a length or chunking (an HTTP/1.0 client), the end of the body is the close.
    let keep_alive = keep_alive && (inflight.length.is_some() || chunked);
    let mut out = Vec::with_capacity(1024);
    write::status_line(&mut out, status, &meta.head.reason);
    for (name, value) in meta.head.headers.iter() {
        if ![
            "age",
            "via",
            "connection",
            "content-length",
            "transfer-encoding",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        {
            write::field(&mut out, name, value);
        }
    }
    match inflight.length {
        Some(n) => write::field(&mut out, "Content-Length", n.to_string().as_bytes()),
        None if chunked => write::field(&mut out, "Transfer-Encoding", b"chunked"),
        None => {}
    }
    let age = inflight.freshness.age(SystemTime::now());
    write::field(&mut out, "Age", policy::age_header(age).as_bytes());
    let mut via_value = meta.head.headers.clone_value("via");
    forward::append_via_value(&mut via_value, meta.head.version, via);
    write::field(&mut out, "Via", &via_value);
    write::field(&mut out, "Cache-Status", COLLAPSED_STATUS.as_bytes());
    write::field(&mut out, "X-Cache", b"MISS");
    if !keep_alive {
        write::field(&mut out, "Connection", b"close");
    } else if req.version == Version::Http10 {
        write::field(&mut out, "Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    let mut bytes = out.len() as u64;
    let fail = |error: ProxyError, bytes: u64| FollowFailed {
        error,
        bytes,
        status,
    };
    stream
        .write_all(&out)
        .map_err(|e| fail(ProxyError::ClientIo(e), 0))?;
    let mut sent = 0u64;
    loop {
        let growth = inflight.wait_past(sent, stall);
        let available = match growth {
            Growth::Grew(n) | Growth::Ended(_, n) => n,
            Growth::Stalled => sent,
        };
        if available > sent {
            let piece = available - sent;
            let send = || -> std::io::Result<u64> {
                let mut framing = 0;
                if chunked {
                    let line = format!("{piece:x}\r\n");
                    (&*stream).write_all(line.as_bytes())?;
                    framing += line.len() as u64 + 2;
                }
                let offset = inflight.body_offset() + sent;
                let copied = send_file(stream, inflight.file(), offset, piece)?;
                if copied != piece {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if chunked {
                    (&*stream).write_all(b"\r\n")?;
                }
                Ok(copied + framing)
            };
            match send() {
                Ok(n) => bytes += n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(fail(ProxyError::CacheRead(e), bytes));
                }
                Err(e) => return Err(fail(ProxyError::ClientIo(e), bytes)),
            }
            sent = available;
        }
        match growth {
            Growth::Grew(_) => {}
            Growth::Ended(End::Complete, _) => break,
            Growth::Ended(End::Failed, _) | Growth::Stalled => {
                let error = std::io::Error::other("the response being stored broke off");
                return Err(fail(ProxyError::OriginIo(error), bytes));
            }
        }
    }
    if inflight.length.is_some_and(|n| n != sent) {
        let error = std::io::Error::other("the stored body does not match its length");
        return Err(fail(ProxyError::CacheRead(error), bytes));
    }
    if chunked {
        stream
            .write_all(b"0\r\n\r\n")
            .map_err(|e| fail(ProxyError::ClientIo(e), bytes))?;
        bytes += 5;
    }
    Ok(Followed {
        bytes,
        status,
        keep_alive,
    })
}
