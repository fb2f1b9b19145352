//! Joining partial entries (RFC 9111 §3.4): a 206 just stored and the partial entry it replaced
//! become one entry holding both ranges, when both carry the same strong entity-tag and the same
//! complete length and their ranges touch or overlap. When the join covers the whole
//! representation, the entry becomes a complete 200, which answers plain GETs too. A resumed
//! download thereby ends with the file in the cache.
//!
//! ```text
//!  older 206 [a..=b] + newer 206 [c..=d], same strong ETag and length, touching
//!      ──> one entry [min(a,c)..=max(b,d)]: older's bytes before c, newer's, older's after d
//!      ──> a 200 when that is 0..=len-1
//! ```
//!
//! Which bytes to take from where is worked out by [`plan`], pure; [`Cache::join_partial`] copies,
//! on a disk thread.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use std::sync::Arc;

use super::diskio::DISK_TIMEOUT;
use super::ranges::Held;
use super::store::{Store, body_matches};
use super::{Cache, Found, RuleOnce, StoredBody};
use crate::http::range::ByteRange;
use crate::http::{RequestHead, ResponseHead};

/// One stretch of the joined body: `len` bytes from the older or the newer entry, starting at byte
/// `from` of the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub newer: bool,
    pub from: u64,
    pub len: u64,
}

/// The pieces of the joined body, in order, and the range it holds; `None` when the ranges neither
/// touch nor overlap, or the newer one already holds everything the older one does.
pub fn plan(older: ByteRange, newer: ByteRange) -> Option<(ByteRange, Vec<Piece>)> {
    let touch =
        newer.start <= older.end.saturating_add(1) && older.start <= newer.end.saturating_add(1);
    if !touch || older.within(&newer) {
        return None;
    }
    let mut pieces = Vec::with_capacity(3);
    if older.start < newer.start {
        pieces.push(Piece {
            newer: false,
            from: older.start,
            len: newer.start - older.start,
        });
    }
    pieces.push(Piece {
        newer: true,
        from: newer.start,
        len: newer.len(),
    });
    if older.end > newer.end {
        pieces.push(Piece {
            newer: false,
            from: newer.end + 1,
            len: older.end - newer.end,
        });
    }
    let joined = ByteRange {
        start: older.start.min(newer.start),
        end: older.end.max(newer.end),
    };
    Some((joined, pieces))
}

/// The strong entity-tag of a head, if it has one.
fn strong_etag(head: &ResponseHead) -> Option<&str> {
    let tag = head.headers.get("etag")?.trim();
    (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')).then_some(tag)
}

impl Cache {
    /// After a 206 for `url` was stored, joins it with `older`, the partial entry it replaced (see the
    /// module docs). Returns whether an entry was written; a failure leaves the newer entry alone.
    /// A caller that led the miss still holds the URL's lease, so requests that come meanwhile
    /// wait for the joined entry rather than find one of its parts.
    pub fn join_partial(
        &self,
        url: &str,
        req: &RequestHead,
        mut older: Found,
        rule: &RuleOnce,
    ) -> bool {
        let Some(mut newer) = self.lookup_with(url, req, rule) else {
            return false;
        };
        let (Some(old_held), Some(new_held)) = (
            Held::of(&older.meta.head, older.body_len),
            Held::of(&newer.meta.head, newer.body_len),
        ) else {
            return false;
        };
        let same = old_held.partial
            && new_held.partial
            && old_held.complete == new_held.complete
            && strong_etag(&older.meta.head).is_some()
            && strong_etag(&older.meta.head) == strong_etag(&newer.meta.head);
        let (Some(old_bytes), Some(new_bytes)) = (old_held.bytes, new_held.bytes) else {
            return false;
        };
        let Some((joined, pieces)) = same.then(|| plan(old_bytes, new_bytes)).flatten() else {
            return false;
        };
        let mut head = newer.meta.head.clone();
        if joined.start == 0 && joined.end + 1 == new_held.complete {
            head.status = 200;
            head.reason = "OK".into();
            head.headers.remove("content-range");
        } else {
            head.headers.set(
                "Content-Range",
                joined.content_range(Some(new_held.complete)),
            );
        }
        let (req_time, resp_time) = (newer.meta.request_time, newer.meta.response_time);
        let Ok(mut writer) = self.writer(url, req, &head, req_time, resp_time) else {
            return false;
        };
        // The parts' checks and copies read whole bodies: on a disk thread, where the writer's
        // own writes and commit run in place.
        let store = Arc::clone(&self.store);
        let job = move || -> io::Result<()> {
            if !intact(&store, &mut older) || !intact(&store, &mut newer) {
                return Err(io::Error::other("a part is damaged"));
            }
            pieces.iter().try_for_each(|piece| {
                let (found, held) = if piece.newer {
                    (&newer, &new_held)
                } else {
                    (&older, &old_held)
                };
                let range = ByteRange {
                    start: piece.from,
                    end: piece.from + piece.len - 1,
                };
                copy_range(found, held, &range, &mut writer)
            })?;
            writer.commit()
        };
        match self.disk.run(DISK_TIMEOUT, job).map_err(io::Error::from) {
            Ok(Ok(())) => true,
            Ok(Err(e)) | Err(e) => {
                log::debug!("cache: could not join the parts of {url}: {e}");
                false
            }
        }
    }
}

/// Whether a part's body matches its checksum, read only when this process has not verified or
/// written that very file (the newer part it wrote moments ago is not read again). The older
/// part's file is no longer at its key's path (the newer replaced it), so a damaged one is only
/// left out of the join, never removed by key: that would delete the newer entry just committed.
fn intact(store: &Store, part: &mut Found) -> bool {
    match &mut part.body {
        StoredBody::Memory(_) => true,
        StoredBody::File(entry) => store.is_verified(entry) || body_matches(entry),
    }
}

/// Writes bytes `range` of the representation, which `found` holds as `held`, to `out`.
fn copy_range(
    found: &Found,
    held: &Held,
    range: &ByteRange,
    out: &mut impl Write,
) -> io::Result<()> {
    let start = held.offset_of(range);
    match &found.body {
        StoredBody::Memory(body) => {
            out.write_all(&body[start as usize..(start + range.len()) as usize])
        }
        StoredBody::File(entry) => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut at = entry.decoded.body_offset + start;
            let mut left = range.len();
            while left > 0 {
                let n = (left as usize).min(buf.len());
                entry.file.read_exact_at(&mut buf[..n], at)?;
                out.write_all(&buf[..n])?;
                at += n as u64;
                left -= n as u64;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn piece(newer: bool, from: u64, len: u64) -> Piece {
        Piece { newer, from, len }
    }

    #[test]
    fn touching_or_overlapping_ranges_join_newer_bytes_first() {
        assert_eq!(
            plan(r(0, 99), r(100, 199)),
            Some((r(0, 199), vec![piece(false, 0, 100), piece(true, 100, 100)]))
        );
        assert_eq!(
            plan(r(100, 199), r(0, 99)),
            Some((r(0, 199), vec![piece(true, 0, 100), piece(false, 100, 100)]))
        );
        assert_eq!(
            plan(r(0, 299), r(100, 199)),
            Some((
                r(0, 299),
                vec![
                    piece(false, 0, 100),
                    piece(true, 100, 100),
                    piece(false, 200, 100)
                ]
            ))
        );
        assert_eq!(
            plan(r(50, 150), r(100, 199)),
            Some((
                r(50, 199),
                vec![piece(false, 50, 50), piece(true, 100, 100)]
            ))
        );
    }

    #[test]
    fn apart_or_contained_ranges_do_not_join() {
        assert_eq!(plan(r(0, 98), r(100, 199)), None, "a gap of one byte");
        assert_eq!(
            plan(r(100, 150), r(0, 199)),
            None,
            "the newer holds it all already"
        );
        assert_eq!(plan(r(0, 9), r(0, 9)), None);
    }
}
