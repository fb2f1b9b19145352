//! The wire work under `super::fetch`: rewriting one absolute-form request for its origin and
//! streaming the response back.
//!
//! ```text
//!  outbound_request ── hop-by-hop out, Host, Via ─> written to an upstream connection (pooled or new)
//!  exchange ────────── request body streamed up (100 Continue for the client when it asked), then
//!                      read_final_head (1xx relayed, 502 on garbage, 504 on silence or endless 1xx)
//!  upstream_framing ── the response body's framing, given the request method
//!  client_response_head, relay_body ── head for the client's version, body streamed down and
//!                      re-framed, teed into the cache writer by copy; a body others read along
//!                      while it is stored goes to the client from the entry (leader.rs)
//! ```

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use super::target::Target;
use crate::cache::CacheWriter;
use crate::http::body::{self, BodyMode, BodyReader, ChunkedWriter};
use crate::http::{
    self, Headers, Limits, Method, RequestHead, ResponseHead, Version, hop, parse, write,
};
use crate::net::Conn;
use crate::proxy::ProxyError;
use crate::proxy::exchange::Failure;
use crate::proxy::upstream::UpstreamConn;

/// Bodies up to this size are sent with their head in one write.
const SMALL_BODY: u64 = 32 * 1024;
/// Large enough that a fast body costs few system calls per MiB; only the pages a body fills are
/// touched.
pub(in crate::proxy) const COPY_BUF: usize = 256 * 1024;

/// The request as it goes upstream: origin-form target, hop-by-hop fields removed, Via added.
pub fn outbound_request(
    req: &RequestHead,
    target: &Target,
    via: &str,
    body: BodyMode,
) -> RequestHead {
    let mut headers = req.headers.clone();
    hop::strip(&mut headers);
    // We answer Expect ourselves (RFC 9110 §10.1.1) and frame the body for our own hop.
    headers.remove("expect");
    headers.remove("content-length");
    // The absolute URI's authority wins over any Host the client sent (RFC 9112 §3.2.2).
    headers.set("Host", target.host_header());
    append_via(&mut headers, req.version, via);
    if req.method == Method::Trace || req.method == Method::Options {
        // Each hop takes one off Max-Forwards (RFC 9110 §7.6.2); zero is answered before this.
        if let Some(n) = headers
            .get("max-forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            headers.set("Max-Forwards", n.saturating_sub(1).to_string());
        }
    }
    match body {
        BodyMode::Length(n) => headers.append("Content-Length", n.to_string()),
        BodyMode::Chunked => headers.append("Transfer-Encoding", "chunked"),
        BodyMode::NoBody | BodyMode::CloseDelimited => {}
    }
    RequestHead {
        method: req.method.clone(),
        target: target.path_and_query.clone(),
        version: Version::Http11,
        headers,
    }
}

/// Adds this hop to Via (RFC 9110 §7.6.3), joining it to the received list. An empty name
/// (`--via off`) adds nothing and leaves the received list as it was.
pub fn append_via(headers: &mut Headers, received: Version, via: &str) {
    if via.is_empty() {
        return;
    }
    let mut value = headers.clone_value("via");
    append_via_value(&mut value, received, via);
    headers.set("Via", value);
}

/// Appends `1.1 name` (or `1.0 name`) to a Via value, comma-separated.
pub fn append_via_value(value: &mut Vec<u8>, received: Version, via: &str) {
    if via.is_empty() {
        return;
    }
    if !value.is_empty() {
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(if received == Version::Http10 {
        b"1.0 "
    } else {
        b"1.1 "
    });
    value.extend_from_slice(via.as_bytes());
}

/// Sends the request head and body, and reads the final response head. 1xx interim responses are passed
/// to the client. Returns the response head with the origin connection positioned at its body.
pub fn exchange(
    client: &mut Conn,
    origin: &mut UpstreamConn,
    outbound: &[u8],
    req: &RequestHead,
    req_body: BodyMode,
    limits: &Limits,
) -> Result<ResponseHead, ProxyError> {
    origin
        .stream
        .write_all(outbound)
        .map_err(ProxyError::OriginIo)?;
    if req_body != BodyMode::NoBody {
        if req.version == Version::Http11 && req.headers.has_token("expect", "100-continue") {
            client
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(ProxyError::ClientIo)?;
        }
        let mut reader = BodyReader::new(req_body, &mut client.buf, &mut client.stream);
        let copied = match req_body {
            BodyMode::Chunked => {
                let mut out = ChunkedWriter::new(&mut origin.stream);
                copy(&mut reader, &mut out, None)
                    .and_then(|n| out.finish().map(|_| n).map_err(CopyError::Write))
            }
            _ => copy(&mut reader, &mut origin.stream, None),
        };
        match copied {
            Ok(_) => {}
            Err(CopyError::Read(e)) => return Err(ProxyError::from_client_read(e)),
            Err(CopyError::Write(e)) => return Err(ProxyError::OriginIo(e)),
            Err(CopyError::Store(e)) => return Err(ProxyError::CacheRead(e)),
        }
    }
    read_final_head(origin, limits, |interim| {
        if req.version == Version::Http11 && interim.status != 100 {
            let mut out = Vec::new();
            write::response_head(&mut out, interim);
            client
                .stream
                .write_all(&out)
                .map_err(ProxyError::ClientIo)?;
        }
        Ok(())
    })
}

/// Reads response heads until the final one, handing each 1xx to `interim`. The origin timeout is
/// one budget for them all: an origin that streams 1xx (or a head a byte at a time) makes every read
/// succeed, and would otherwise hold the request for ever. 504 once it is spent.
pub fn read_final_head(
    origin: &mut UpstreamConn,
    limits: &Limits,
    mut interim: impl FnMut(&ResponseHead) -> Result<(), ProxyError>,
) -> Result<ResponseHead, ProxyError> {
    let per_read = origin.stream.socket().read_timeout().ok().flatten();
    let until = per_read.map(|t| Instant::now() + t);
    let head = loop {
        let head = match read_response_head_by(origin, limits, until) {
            Ok(head) => head,
            Err(e) => break Err(e),
        };
        match head.status {
            101 => {
                break Err(ProxyError::BadResponse(http::Error::Malformed(
                    "unexpected 101",
                )));
            }
            100..=199 => {
                if let Err(e) = interim(&head) {
                    break Err(e);
                }
            }
            _ => break Ok(head),
        }
    };
    let _ = origin.stream.socket_mut().set_read_timeout(per_read);
    head
}

/// Reads a response head, within the origin's read timeout for each read; with `until`, the whole
/// head must come by then (504 after).
fn read_response_head_by(
    origin: &mut UpstreamConn,
    limits: &Limits,
    until: Option<Instant>,
) -> Result<ResponseHead, ProxyError> {
    loop {
        if !origin.buf.is_empty() {
            match parse::response(origin.buf.data(), limits) {
                Ok(Some((head, len))) => {
                    origin.buf.consume(len);
                    return Ok(head);
                }
                Ok(None) if origin.buf.is_full() => {
                    return Err(ProxyError::BadResponse(http::Error::HeadTooLarge));
                }
                Ok(None) => {}
                Err(e) => return Err(ProxyError::BadResponse(e)),
            }
        }
        match origin.buf.fill_from(&mut origin.stream) {
            Ok(0) if origin.buf.is_empty() => {
                return Err(ProxyError::OriginIo(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "origin closed the connection without a response",
                )));
            }
            Ok(0) => return Err(ProxyError::BadResponse(http::Error::Truncated)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProxyError::from_origin_read(e)),
        }
        if let Some(until) = until {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProxyError::OriginTimeout);
            }
            // The next read waits no longer than what is left of the budget, which started as
            // one per-read timeout and so is never longer.
            let _ = origin.stream.socket_mut().set_read_timeout(Some(left));
        }
    }
}

/// The response head for the client: hop-by-hop fields out, Via in, framing for the client's version.
/// Returns the head and whether the body must be chunked on the way out.
pub fn client_response_head(
    origin_head: &ResponseHead,
    mode: BodyMode,
    client_version: Version,
    keep_alive: bool,
    via: &str,
) -> (ResponseHead, bool) {
    let mut headers = origin_head.headers.clone();
    hop::strip(&mut headers);
    append_via(&mut headers, origin_head.version, via);
    let unknown_length = matches!(mode, BodyMode::Chunked | BodyMode::CloseDelimited);
    let chunked = unknown_length && client_version == Version::Http11;
    if chunked {
        headers.append("Transfer-Encoding", "chunked");
    }
    let keep_alive = keep_alive && (chunked || !unknown_length);
    if let Some(value) = http::connection_field(client_version, keep_alive) {
        headers.append("Connection", value);
    }
    let head = ResponseHead {
        version: Version::Http11,
        status: origin_head.status,
        reason: origin_head.reason.clone(),
        headers,
    };
    (head, chunked)
}

/// Where a body copy failed: reading the source or writing the destination.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
    /// Reading back what the store wrote failed (the leader serves its own client from the entry's
    /// file, `leader.rs`): the disk's fault, neither side's.
    Store(io::Error),
}

/// Copies a body, storing it through `store` if given. A failing store is dropped, never fails the
/// copy: the client matters more than the cache. The store is committed as soon as the body is known to
/// be complete and before its last bytes go to the client, so a client that asks again right away finds
/// the entry.
pub fn copy<S: Read>(
    reader: &mut BodyReader<'_, S>,
    writer: &mut impl Write,
    mut store: Option<CacheWriter>,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = read_piece(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        if reader.is_done() {
            finish(store.take(), &buf[..n]);
        } else if let Some(cache) = store.as_mut()
            && cache.write_all(&buf[..n]).is_err()
        {
            store = None;
        }
        if let Err(e) = writer.write_all(&buf[..n]) {
            if let Some(store) = store.take() {
                finish_for_readers(reader, store, &mut buf);
            }
            return Err(CopyError::Write(e));
        }
        total += n as u64;
    }
    if reader.is_done() {
        commit(store);
    }
    Ok(total)
}

/// Reads the next piece of a body into `buf`, past interruptions: 0 at its end.
pub(super) fn read_piece<S: Read>(
    reader: &mut BodyReader<'_, S>,
    buf: &mut [u8],
) -> Result<usize, CopyError> {
    loop {
        match reader.read_batch(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            read => return read.map_err(CopyError::Read),
        }
    }
}

/// The client hung up while its response was being stored: go on reading the origin into the cache
/// while other requests read along, or when little is missing ([`CacheWriter::worth_finishing`]).
fn finish_for_readers<S: Read>(
    reader: &mut BodyReader<'_, S>,
    mut store: CacheWriter,
    buf: &mut [u8],
) {
    while store.worth_finishing() {
        let n = match read_piece(reader, buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return,
        };
        if reader.is_done() {
            finish(Some(store), &buf[..n]);
            return;
        }
        if store.write_all(&buf[..n]).is_err() {
            return;
        }
    }
    if reader.is_done() {
        commit(Some(store));
    } else {
        log::debug!("client gone and nobody reading along: fetch abandoned");
    }
}

/// Commits a stored body; a failure only means the response is not cached.
pub(in crate::proxy) fn commit(store: Option<CacheWriter>) {
    finish(store, &[]);
}

/// Stores the body's last bytes and commits it, in one disk job ([`CacheWriter::finish`]); a
/// failure only means the response is not cached.
pub(in crate::proxy) fn finish(store: Option<CacheWriter>, last: &[u8]) {
    if let Some(writer) = store
        && let Err(e) = writer.finish(last)
    {
        log::debug!("response not stored: {e}");
    }
}

/// How a relayed body ended.
pub struct Relayed {
    /// Bytes written to the client, head included.
    pub bytes: u64,
    /// Whether the origin's body was read to its end (so the origin connection may be reused).
    pub complete: bool,
}

/// Writes the client head and streams the body from the origin. Errors after the head is sent can only
/// be reported by closing the connection; the caller does so.
pub fn relay_body(
    client: &mut Conn,
    origin: &mut UpstreamConn,
    client_head: &ResponseHead,
    mode: BodyMode,
    chunked: bool,
    mut store: Option<CacheWriter>,
) -> Result<Relayed, Failure> {
    let mut out = Vec::with_capacity(1024);
    write::response_head(&mut out, client_head);
    let head_len = out.len() as u64;
    let mut reader = BodyReader::new(mode, &mut origin.buf, &mut origin.stream);
    let sent = |e| Failure::AfterHead(ProxyError::ClientIo(e));
    if let BodyMode::NoBody = mode {
        commit(store);
        client.stream.write_all(&out).map_err(sent)?;
        return Ok(Relayed {
            bytes: head_len,
            complete: true,
        });
    }
    if let BodyMode::Length(n) = mode
        && n <= SMALL_BODY
    {
        // Read whole before the head goes out, so a cut-off body can still be answered with 502.
        reader
            .read_to_end(&mut out)
            .map_err(ProxyError::from_origin_read)?;
        finish(store, &out[head_len as usize..]);
        client.stream.write_all(&out).map_err(sent)?;
        return Ok(Relayed {
            bytes: out.len() as u64,
            complete: true,
        });
    }
    client.stream.write_all(&out).map_err(sent)?;
    // A response others read along while it is stored: the client is served from the entry, so
    // it cannot hold the origin read, and the others, to its own pace (leader.rs).
    let shared = store.as_ref().and_then(|s| s.shared()).map(Arc::clone);
    let copied = if let Some(inflight) = shared
        && let Some(store) = store.take()
    {
        super::leader::relay(&mut reader, &mut client.stream, inflight, store, chunked)
    } else if chunked {
        let mut writer = ChunkedWriter::new(&mut client.stream);
        copy(&mut reader, &mut writer, store)
            .and_then(|n| writer.finish().map(|_| n).map_err(CopyError::Write))
    } else {
        copy(&mut reader, &mut client.stream, store)
    };
    match copied {
        Ok(n) => Ok(Relayed {
            bytes: head_len + n,
            complete: mode != BodyMode::CloseDelimited,
        }),
        Err(CopyError::Read(e)) => Err(Failure::AfterHead(ProxyError::from_origin_read(e))),
        Err(CopyError::Write(e)) => Err(Failure::AfterHead(ProxyError::ClientIo(e))),
        Err(CopyError::Store(e)) => Err(Failure::AfterHead(ProxyError::CacheRead(e))),
    }
}

/// Framing of the origin's response, given the request method ([`body::response_mode`]); garbage
/// framing is a 502.
pub fn upstream_framing(req: &RequestHead, head: &ResponseHead) -> Result<BodyMode, ProxyError> {
    body::response_mode(&req.method, head.status, &head.headers).map_err(ProxyError::BadResponse)
}
