//! URLs whose last response could not be stored. A miss for one of them does not wait for another
//! request's fetch of the URL ([`super::lock`]): waiting for that response's head only to learn,
//! again, that it will not be stored would hold every concurrent request for an uncacheable URL (a
//! long poll, an API call) behind the one before it. It still follows an entry that is already
//! being stored, and leads when nobody fetches. Varnish calls this hit-for-miss; like it, a mark
//! lasts [`MARK_FOR`]. A response for the URL that the cache starts to store clears it, and a mark
//! never keeps a response from being stored.

use crate::runtime::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::conditional::has_preconditions;
use super::key::Key;
use super::policy::NoStore;
use super::status::NotStored;
use crate::http::RequestHead;

/// How long a URL stays marked after a response that could not be stored (Varnish: 120 s).
pub const MARK_FOR: Duration = Duration::from_secs(120);
/// Marks held at most. When full, the expired ones go; if that frees less than a quarter, all go,
/// so a steady stream of new uncacheable URLs does not make every mark sweep the whole set.
const MAX_MARKS: usize = 16_384;

/// Whether a response that was not stored for `reason`, with `status`, for `req`, says that the
/// URL's next responses will not be stored either. Not when the reason lies in the request (its
/// method, credentials, `no-store`, ranges or conditions: a 304, 412 or 416 answers the client's
/// own copy), in the disk, or in a server error, which may pass: a recovering origin should get
/// collapsed requests, not all of them at once.
pub fn marks_the_url(reason: NotStored, req: &RequestHead, status: u16) -> bool {
    let about_the_response = match reason {
        NotStored::Policy(
            NoStore::Method
            | NoStore::RequestNoStore
            | NoStore::Authorization
            | NoStore::PartialContent,
        )
        | NotStored::StoreFailed => false,
        NotStored::Policy(
            NoStore::Status
            | NoStore::ResponseNoStore
            | NoStore::Private
            | NoStore::VaryStar
            | NoStore::NoFreshness
            | NoStore::SetCookie,
        )
        | NotStored::CloseDelimited
        | NotStored::TooLarge => true,
    };
    let plain_request = !has_preconditions(req);
    about_the_response && plain_request && status < 500
}

/// The marks, by URL key, with when each ends.
#[derive(Default)]
pub struct UncacheableMarks {
    until: Mutex<HashMap<Key, Instant>>,
    /// How many marks there are, so that a cache without any takes no lock on a miss or a store.
    count: AtomicUsize,
}

impl UncacheableMarks {
    /// Remembers that `key`'s responses are not being stored.
    pub fn mark(&self, key: Key) {
        let now = Instant::now();
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.len() >= MAX_MARKS && !until.contains_key(&key) {
            until.retain(|_, end| *end > now);
            if until.len() > MAX_MARKS / 4 * 3 {
                until.clear();
            }
        }
        until.insert(key, now + MARK_FOR);
        self.count.store(until.len(), Ordering::SeqCst);
    }

    /// Whether there are no marks, so a caller need not even work out a key.
    pub fn is_empty(&self) -> bool {
        self.count.load(Ordering::SeqCst) == 0
    }

    /// Whether `key` is marked now.
    pub fn is_marked(&self, key: &Key) -> bool {
        if self.is_empty() {
            return false;
        }
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.get(key).is_some_and(|end| *end > Instant::now())
    }

    /// Forgets `key`'s mark: a response for it is being stored.
    pub fn clear(&self, key: &Key) {
        if self.is_empty() {
            return;
        }
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.remove(key);
        self.count.store(until.len(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::req;

    #[test]
    fn a_mark_holds_until_cleared() {
        let marks = UncacheableMarks::default();
        let key = Key::for_url("http://e/poll");
        assert!(!marks.is_marked(&key));
        marks.mark(key);
        assert!(marks.is_marked(&key));
        assert!(!marks.is_marked(&Key::for_url("http://e/other")));
        marks.clear(&key);
        assert!(!marks.is_marked(&key));
        assert_eq!(marks.count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_full_set_makes_room_and_keeps_the_new_mark() {
        let marks = UncacheableMarks::default();
        for i in 0..MAX_MARKS {
            marks.mark(Key::for_url(&format!("http://e/{i}")));
        }
        let newest = Key::for_url("http://e/newest");
        marks.mark(newest);
        assert!(marks.is_marked(&newest));
        let held = marks.until.lock().unwrap().len();
        assert_eq!(held, 1, "none had expired, so all went but the new one");
        assert_eq!(marks.count.load(Ordering::SeqCst), held);
    }

    #[test]
    fn an_expired_mark_is_not_marked() {
        let marks = UncacheableMarks::default();
        let key = Key::for_url("http://e/old");
        marks.mark(key);
        *marks.until.lock().unwrap().get_mut(&key).unwrap() =
            Instant::now() - Duration::from_millis(1);
        assert!(!marks.is_marked(&key));
    }

    #[test]
    fn only_reasons_in_a_plain_requests_response_mark_the_url() {
        let plain = req("GET", &[]);
        let conditional = req("GET", &[("If-None-Match", "\"v1\"")]);
        let ranged = req("GET", &[("Range", "bytes=0-9")]);
        let response_reasons = [
            NotStored::Policy(NoStore::Status),
            NotStored::Policy(NoStore::ResponseNoStore),
            NotStored::Policy(NoStore::Private),
            NotStored::Policy(NoStore::VaryStar),
            NotStored::Policy(NoStore::NoFreshness),
            NotStored::Policy(NoStore::SetCookie),
            NotStored::CloseDelimited,
            NotStored::TooLarge,
        ];
        for reason in response_reasons {
            assert!(marks_the_url(reason, &plain, 200), "{reason:?}");
            assert!(!marks_the_url(reason, &conditional, 200), "{reason:?}");
            assert!(!marks_the_url(reason, &ranged, 200), "{reason:?}");
            assert!(!marks_the_url(reason, &plain, 503), "{reason:?}");
        }
        let request_reasons = [
            NotStored::Policy(NoStore::Method),
            NotStored::Policy(NoStore::RequestNoStore),
            NotStored::Policy(NoStore::Authorization),
            NotStored::Policy(NoStore::PartialContent),
            NotStored::StoreFailed,
        ];
        for reason in request_reasons {
            assert!(!marks_the_url(reason, &plain, 200), "{reason:?}");
        }
        // A 304 to the client's own conditional request is not about the URL.
        let not_modified = NotStored::Policy(NoStore::Status);
        assert!(!marks_the_url(not_modified, &conditional, 304));
    }
}
