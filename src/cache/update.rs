//! Whether a response without a body may update a stored one: a 304 to the cache's revalidation
//! (RFC 9111 §4.3.4) and a 200 to a HEAD (§4.3.5). Pure: two heads in, a verdict out; the header
//! update itself is `conditional::update_from_304`.
//!
//! ```text
//!  304 ── strong ETag ── equal to the stored strong ETag? ──> Update | Refetch
//!      ├─ weak ETag ──── same opaque tag (weak comparison)? ─> Update | Refetch
//!      ├─ Last-Modified ─ equal to the stored one? ──────────> Update | Refetch
//!      └─ none ─────────────────────────────────────────────> Update (it answers our own conditional)
//!  HEAD 200 ── every validator it has matches, and its Content-Length ──> Update | Stale
//! ```

use super::freshness::header_date;
use crate::http::ResponseHead;

/// What to do with a stored response after a 304 from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotModified {
    /// The 304 is about the stored response: update its head and serve it.
    Update,
    /// The 304 names another representation (its validators differ): the stored response must not
    /// be updated from it (§4.3.4), so the cache asks again without validators.
    Refetch,
}

/// What to do with a stored GET response after a 200 to a HEAD for the same URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadUpdate {
    /// Same representation: take the HEAD response's fields (§4.3.5, via §3.2).
    Update,
    /// A different one: the stored response is stale and goes.
    Stale,
}

impl NotModified {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotModified::Update => "update",
            NotModified::Refetch => "refetch",
        }
    }
}

impl HeadUpdate {
    pub fn as_str(&self) -> &'static str {
        match self {
            HeadUpdate::Update => "update",
            HeadUpdate::Stale => "stale",
        }
    }
}

/// (weak, opaque tag with its quotes) of a single entity-tag.
fn etag(head: &ResponseHead) -> Option<(bool, &str)> {
    let text = head.headers.get("etag")?.trim();
    let (weak, tag) = match text.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')).then_some((weak, tag))
}

/// RFC 9111 §4.3.4: does this 304 select the stored response for update? A 304 with no validator at
/// all is taken as the answer to the conditional the cache built from this very entry.
pub fn after_304(stored: &ResponseHead, not_modified: &ResponseHead) -> NotModified {
    let verdict = |same: bool| {
        if same {
            NotModified::Update
        } else {
            NotModified::Refetch
        }
    };
    if let Some((weak, tag)) = etag(not_modified) {
        return verdict(match etag(stored) {
            // Strong comparison: both strong and equal. Weak: the opaque tags are equal.
            Some((stored_weak, stored_tag)) => tag == stored_tag && (weak || !stored_weak),
            None => false,
        });
    }
    if let Some(modified) = header_date(&not_modified.headers, "last-modified") {
        return verdict(header_date(&stored.headers, "last-modified") == Some(modified));
    }
    NotModified::Update
}

/// RFC 9111 §4.3.5: may a 200 to HEAD update the stored GET response of `stored_len` body bytes?
/// Every validator the HEAD response carries must match the stored one, and its Content-Length, if
/// any, the stored body's length.
pub fn after_head(stored: &ResponseHead, stored_len: u64, head: &ResponseHead) -> HeadUpdate {
    let etag_ok = match etag(head) {
        Some(tag) => etag(stored) == Some(tag),
        None => true,
    };
    let modified_ok = match header_date(&head.headers, "last-modified") {
        Some(modified) => header_date(&stored.headers, "last-modified") == Some(modified),
        None => true,
    };
    let length_ok = match head.headers.get("content-length") {
        Some(len) => len.trim().parse::<u64>().ok() == Some(stored_len),
        None => true,
    };
    if head.status == 200 && etag_ok && modified_ok && length_ok {
        HeadUpdate::Update
    } else {
        HeadUpdate::Stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::resp;

    const LM: &str = "Tue, 14 Nov 2023 22:00:00 GMT";
    const LATER: &str = "Wed, 15 Nov 2023 22:00:00 GMT";

    #[test]
    fn a_304_with_the_stored_strong_etag_updates_and_another_does_not() {
        let stored = resp(200, &[("ETag", "\"v1\""), ("Last-Modified", LM)]);
        let nm = |fields: &[(&str, &str)]| after_304(&stored, &resp(304, fields));
        assert_eq!(nm(&[("ETag", "\"v1\"")]), NotModified::Update);
        assert_eq!(nm(&[("ETag", "\"v2\"")]), NotModified::Refetch);
        assert_eq!(
            nm(&[("ETag", "W/\"v1\"")]),
            NotModified::Update,
            "weak matches by opaque tag"
        );
        assert_eq!(nm(&[("Last-Modified", LM)]), NotModified::Update);
        assert_eq!(nm(&[("Last-Modified", LATER)]), NotModified::Refetch);
        assert_eq!(nm(&[("Cache-Control", "max-age=60")]), NotModified::Update);
        let weak_stored = resp(200, &[("ETag", "W/\"v1\"")]);
        assert_eq!(
            after_304(&weak_stored, &resp(304, &[("ETag", "\"v1\"")])),
            NotModified::Refetch,
            "a strong validator never matches a weak one"
        );
        let untagged = resp(200, &[]);
        assert_eq!(
            after_304(&untagged, &resp(304, &[("ETag", "\"v1\"")])),
            NotModified::Refetch
        );
    }

    #[test]
    fn a_head_response_updates_only_the_same_representation() {
        let stored = resp(200, &[("ETag", "\"v1\""), ("Last-Modified", LM)]);
        let head = |status, fields: &[(&str, &str)]| after_head(&stored, 10, &resp(status, fields));
        assert_eq!(
            head(200, &[("ETag", "\"v1\""), ("Content-Length", "10")]),
            HeadUpdate::Update
        );
        assert_eq!(head(200, &[("Last-Modified", LM)]), HeadUpdate::Update);
        assert_eq!(
            head(200, &[]),
            HeadUpdate::Update,
            "no validators, no length: nothing differs"
        );
        assert_eq!(head(200, &[("ETag", "\"v2\"")]), HeadUpdate::Stale);
        assert_eq!(
            head(200, &[("ETag", "\"v1\""), ("Content-Length", "11")]),
            HeadUpdate::Stale
        );
        assert_eq!(head(200, &[("Last-Modified", LATER)]), HeadUpdate::Stale);
        assert_eq!(head(404, &[("ETag", "\"v1\"")]), HeadUpdate::Stale);
    }
}
