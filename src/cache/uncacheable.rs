//! URLs whose last response could not be stored. A miss for one of them skips collapsed forwarding
//! ([`super::lock`]) and goes to the origin at once: waiting for another request's response head
//! only to learn, again, that it will not be stored would hold every concurrent request for an
//! uncacheable URL (a long poll, an API call) behind the one before it. Varnish calls this
//! hit-for-miss; like it, a mark lasts [`MARK_FOR`], and a response for the URL that is stored
//! clears it. A mark never stops a response from being stored, only the waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::key::Key;

/// How long a URL stays marked after a response that could not be stored (Varnish: 120 s).
pub const MARK_FOR: Duration = Duration::from_secs(120);
/// Marks held at most; when full, expired ones go, and if none has expired, all of them.
const MAX_MARKS: usize = 16_384;

/// The marks, by URL key, with when each ends.
#[derive(Default)]
pub struct UncacheableMarks {
    until: Mutex<HashMap<Key, Instant>>,
}

impl UncacheableMarks {
    /// Remembers that `key`'s response could not be stored.
    pub fn mark(&self, key: Key) {
        let now = Instant::now();
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.len() >= MAX_MARKS && !until.contains_key(&key) {
            until.retain(|_, end| *end > now);
            if until.len() >= MAX_MARKS {
                until.clear();
            }
        }
        until.insert(key, now + MARK_FOR);
    }

    /// Whether `key` is marked now.
    pub fn is_marked(&self, key: &Key) -> bool {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.get(key).is_some_and(|end| *end > Instant::now())
    }

    /// Forgets `key`'s mark: a response for it is being stored.
    pub fn clear(&self, key: &Key) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if !until.is_empty() {
            until.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(marks.until.lock().unwrap().len() <= MAX_MARKS);
    }

    #[test]
    fn an_expired_mark_is_not_marked() {
        let marks = UncacheableMarks::default();
        let key = Key::for_url("http://e/old");
        marks
            .until
            .lock()
            .unwrap()
            .insert(key, Instant::now() - Duration::from_millis(1));
        assert!(!marks.is_marked(&key));
    }
}
