//! Sending byte ranges of a stored response: 206 with one `Content-Range`, 206
//! `multipart/byteranges`, or 416 (RFC 9110 §14, §15.3.7, §15.5.17). What to send is
//! `cache::ranges::reply`'s decision; this module writes it. Parts in a file go file-to-socket with
//! sendfile(2) from their offset, so a resume of a large cached file never passes through user space.

use std::io::Write;

use crate::cache::ranges::{Held, Ranged};
use crate::cache::{Found, StoredBody};
use crate::http::range::{ByteRange, Multipart};
use crate::http::write;
use crate::net::Stream;
use crate::net::sendfile::SendFile;
use crate::proxy::ProxyError;
use crate::proxy::exchange::Failure;

/// Stored fields a range response does not copy: they describe the whole stored message, or the
/// hop, and are written afresh.
const NOT_COPIED: [&str; 5] = [
    "age",
    "via",
    "connection",
    "content-length",
    "content-range",
];

/// The start of a range response's head: status line and fields up to, not including, the fields
/// every hit carries (Age, Via, Cache-Status…). Returns the multipart framing when there is one.
pub(in crate::proxy) fn range_head(
    out: &mut Vec<u8>,
    found: &Found,
    held: &Held,
    ranged: &Ranged,
) -> Option<Multipart> {
    let stored = &found.meta.head;
    let copy_stored = |out: &mut Vec<u8>, skip_type: bool| {
        for (name, value) in stored.headers.iter() {
            let skipped = NOT_COPIED.iter().any(|n| name.eq_ignore_ascii_case(n))
                || (skip_type && name.eq_ignore_ascii_case("content-type"));
            if !skipped {
                write::field(out, name, value);
            }
        }
    };
    match ranged {
        Ranged::Single(r) => {
            write::status_line(out, 206, "Partial Content");
            copy_stored(out, false);
            write::field(
                out,
                "Content-Range",
                r.content_range(Some(held.complete)).as_bytes(),
            );
            write::field(out, "Content-Length", r.len().to_string().as_bytes());
            None
        }
        Ranged::Multi(parts) => {
            // Random, so no stored body can contain it by design.
            let random = getrandom::u64().unwrap_or_else(|_| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(0, |d| d.as_nanos() as u64)
            });
            let boundary = format!("porter-{random:016x}");
            let content_type = stored.headers.get_bytes("content-type");
            let multipart = Multipart::new(parts, held.complete, content_type, &boundary);
            write::status_line(out, 206, "Partial Content");
            copy_stored(out, true);
            write::field(out, "Content-Type", multipart.content_type().as_bytes());
            write::field(
                out,
                "Content-Length",
                multipart.content_length().to_string().as_bytes(),
            );
            Some(multipart)
        }
        Ranged::Unsatisfiable => {
            // 416: no stored fields but those that say which representation the length is of.
            write::status_line(out, 416, "Range Not Satisfiable");
            for name in ["date", "etag", "last-modified"] {
                if let Some(value) = stored.headers.get_bytes(name) {
                    write::field(out, name, value);
                }
            }
            let unsatisfied = format!("bytes */{}", held.complete);
            write::field(out, "Content-Range", unsatisfied.as_bytes());
            write::field(out, "Content-Length", b"0");
            None
        }
    }
}

/// Sends a finished range head and the bytes of `ranged`; returns the bytes written.
pub(in crate::proxy) fn send_range_body(
    stream: &mut Stream,
    head: &[u8],
    found: &Found,
    held: &Held,
    ranged: &Ranged,
    multipart: Option<&Multipart>,
) -> Result<u64, Failure> {
    let client = |e| Failure::AfterHead(ProxyError::ClientIo(e));
    let parts: Vec<(&[u8], ByteRange)> = match (ranged, multipart) {
        (Ranged::Single(r), _) => vec![(&[][..], *r)],
        (_, Some(m)) => m.parts.iter().map(|(h, r)| (h.as_slice(), *r)).collect(),
        _ => Vec::new(),
    };
    let tail: &[u8] = multipart.map_or(&[], |m| m.tail.as_slice());
    match &found.body {
        StoredBody::Memory(body) => {
            // Small by construction (the memory tier's object limit): one buffer, one write.
            let mut out = head.to_vec();
            for (part_head, r) in &parts {
                let start = held.offset_of(r) as usize;
                out.extend_from_slice(part_head);
                out.extend_from_slice(&body[start..start + r.len() as usize]);
            }
            out.extend_from_slice(tail);
            stream.write_all(&out).map_err(client)?;
            Ok(out.len() as u64)
        }
        StoredBody::File(file_entry) => {
            stream.write_all(head).map_err(client)?;
            let mut sent = head.len() as u64;
            for (part_head, r) in &parts {
                stream.write_all(part_head).map_err(client)?;
                let offset = file_entry.decoded.body_offset + held.offset_of(r);
                let n = stream
                    .send_file(&file_entry.file, offset, r.len())
                    .map_err(client)?;
                sent += part_head.len() as u64 + n;
                if n != r.len() {
                    let short = std::io::ErrorKind::UnexpectedEof.into();
                    return Err(Failure::AfterHead(ProxyError::CacheRead(short)));
                }
            }
            stream.write_all(tail).map_err(client)?;
            Ok(sent + tail.len() as u64)
        }
    }
}
