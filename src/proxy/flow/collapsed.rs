//! Serving a request from an entry another request is still fetching and storing (read-while-writing,
//! [`crate::cache::inflight`]): the head at once, the body bytes already in the file at once, then each
//! new piece as the writer reports it, until the writer says the body is complete or broke off.
//!
//! ```text
//!  head: the stored head, Content-Length or chunked, Age, Via, Cache-Status: porter; fwd=miss; collapsed
//!  loop: wait_past(sent) ─┬─ Grew(n) ───────────────> sendfile sent..n
//!                         ├─ Ended(Complete, n) ─────> sendfile sent..n, last chunk, done
//!                         └─ Ended(Failed, n) / Stalled ─> sendfile sent..n, close (cut off like the writer's client)
//! ```

use std::io::{self, Write};
use std::time::SystemTime;

use super::forward;
use crate::cache::inflight::{End, Growth, Reader};
use crate::cache::policy;
use crate::cache::status::CacheStatus;
use crate::http::{self, Version, write};
use crate::net::sendfile::SendFile;
use crate::proxy::exchange::{Exchange, Failure, Reuse, Served};
use crate::proxy::ops::metrics::Outcome;
use crate::proxy::{Proxy, ProxyError};

impl Proxy {
    /// Serves `ex` from the entry `reader` follows. The wait for each next piece is bounded by twice
    /// the origin timeout: the writer's own reads give up sooner and then say `Failed`.
    pub(in crate::proxy) fn follow(&self, ex: &mut Exchange, reader: &Reader) -> Served {
        ex.entry.outcome = Outcome::Collapsed;
        let inflight = reader.inflight();
        let meta = &inflight.meta;
        let chunked = inflight.length.is_none() && ex.req.version == Version::Http11;
        // Without a length or chunking (an HTTP/1.0 client), the end of the body is the close.
        let keep_alive = ex.keep_alive && (inflight.length.is_some() || chunked);
        let mut out = Vec::with_capacity(1024);
        write::status_line(&mut out, meta.head.status, &meta.head.reason);
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
        let mut via = meta.head.headers.clone_value("via");
        forward::append_via_value(&mut via, meta.head.version, &self.via);
        write::field(&mut out, "Via", &via);
        let status = CacheStatus::Collapsed;
        let status_value = status.as_static().unwrap_or_default();
        write::field(&mut out, "Cache-Status", status_value.as_bytes());
        write::field(&mut out, "X-Cache", status.x_cache().as_bytes());
        if let Some(value) = http::connection_field(ex.req.version, keep_alive) {
            write::field(&mut out, "Connection", value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        ex.entry.status = meta.head.status;
        let stream = &mut ex.conn.stream;
        let client = |e| Failure::AfterHead(ProxyError::ClientIo(e));
        stream.write_all(&out).map_err(client)?;
        ex.entry.bytes = out.len() as u64;
        let stall = self.config.load().origin_timeout.saturating_mul(2);
        let mut sent = 0u64;
        loop {
            let growth = inflight.wait_past(sent, stall);
            let available = match growth {
                Growth::Grew(n) | Growth::Ended(_, n) => n,
                Growth::Stalled => sent,
            };
            if available > sent {
                let piece = available - sent;
                if chunked {
                    write!(stream, "{piece:x}\r\n").map_err(client)?;
                }
                let offset = inflight.body_offset() + sent;
                // The writer gives the file before it announces a byte.
                let Some(file) = inflight.file() else {
                    let none = io::Error::other("no file for the bytes announced");
                    return Err(Failure::AfterHead(ProxyError::CacheRead(none)));
                };
                let copied = stream.send_file(file, offset, piece).map_err(client)?;
                ex.entry.bytes += copied;
                if copied != piece {
                    let short = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(Failure::AfterHead(ProxyError::CacheRead(short)));
                }
                if chunked {
                    stream.write_all(b"\r\n").map_err(client)?;
                }
                sent = available;
            }
            match growth {
                Growth::Grew(_) => {}
                Growth::Ended(End::Complete, _) => break,
                Growth::Ended(End::Failed, _) | Growth::Stalled => {
                    // Cut off where the writer's own client was: by closing, without a last chunk.
                    let broke = io::Error::other("the response being stored broke off");
                    return Err(Failure::AfterHead(ProxyError::OriginIo(broke)));
                }
            }
        }
        if inflight.length.is_some_and(|n| n != sent) {
            let short = io::Error::other("the stored body does not match its length");
            return Err(Failure::AfterHead(ProxyError::CacheRead(short)));
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n").map_err(client)?;
        }
        Ok(Reuse::when(keep_alive))
    }
}
