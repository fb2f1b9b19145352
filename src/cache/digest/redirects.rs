//! Where registries send blob requests: the digest each redirect target carries.
//!
//! Docker Hub, GHCR, Quay and ECR answer a blob GET with `307` to a signed URL on a storage host
//! whose query string changes every time, so no cache can key on it. When a blob request is
//! answered with a redirect, the target URL (query string included) is noted here with the digest
//! the blob request named; when the client then fetches that target through Porter, the body is
//! stored under the digest (and checked against it).
//!
//! The map is bounded: at most [`CAPACITY`] targets, each for [`LIFETIME`] (signed URLs expire in
//! minutes), the oldest dropped first when it is full.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::name::Sha256Digest;
use crate::runtime::Mutex;

/// Redirect targets remembered at once.
pub const CAPACITY: usize = 4096;
/// How long a redirect target is remembered: longer than a client takes to follow it.
pub const LIFETIME: Duration = Duration::from_secs(15 * 60);

/// What a redirect target carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    pub digest: Sha256Digest,
    /// Whether the blob request that was redirected came without credentials.
    pub public: bool,
    /// The registry that redirected (`scheme://host:port`): it proves it holds the object when
    /// the target's body matches the digest.
    pub registry: String,
}

/// Redirect targets and the digests they carry.
#[derive(Default)]
pub struct Redirects {
    map: Mutex<Map>,
    /// How many targets the map holds, read without the lock: every GET asks whether there are
    /// any, and most proxies never note one.
    held: AtomicUsize,
}

#[derive(Default)]
struct Map {
    by_url: HashMap<String, (Noted, Instant)>,
    /// Targets in the order they were noted, for dropping the oldest; may name targets noted
    /// again later or already gone, which the expiry stamp tells apart.
    order: VecDeque<(String, Instant)>,
}

impl Redirects {
    /// Notes that `target` carries `noted.digest`.
    pub fn note(&self, target: String, noted: Noted, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.expire(now);
        while map.by_url.len() >= CAPACITY {
            let Some((oldest, stamp)) = map.order.pop_front() else {
                break;
            };
            if map.by_url.get(&oldest).is_some_and(|(_, s)| *s == stamp) {
                map.by_url.remove(&oldest);
            }
        }
        let expires = now + LIFETIME;
        map.by_url.insert(target.clone(), (noted, expires));
        map.order.push_back((target, expires));
        self.held.store(map.by_url.len(), Ordering::Relaxed);
        // Each target is in `order` once per note: a target noted again and again (a registry
        // that redirects to the same URL) must not grow the queue without bound.
        if map.order.len() > 2 * CAPACITY {
            let live = &map.by_url;
            let kept: VecDeque<_> = map
                .order
                .iter()
                .filter(|(url, stamp)| live.get(url).is_some_and(|(_, s)| s == stamp))
                .cloned()
                .collect();
            map.order = kept;
        }
    }

    /// What `url` carries, if it is a redirect target noted within [`LIFETIME`].
    pub fn get(&self, url: &str, now: Instant) -> Option<Noted> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.by_url
            .get(url)
            .filter(|(_, expires)| *expires > now)
            .map(|(noted, _)| noted.clone())
    }

    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_url
            .len()
    }

    /// Whether no target is held (as of the last note), without the lock.
    pub fn is_empty(&self) -> bool {
        self.held.load(Ordering::Relaxed) == 0
    }
}

impl Map {
    fn expire(&mut self, now: Instant) {
        while let Some((url, stamp)) = self.order.front() {
            if *stamp > now {
                break;
            }
            if self.by_url.get(url).is_some_and(|(_, s)| s == stamp) {
                self.by_url.remove(url);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noted(n: u8) -> Noted {
        Noted {
            digest: Sha256Digest::of(&[n]),
            public: false,
            registry: "http://r.test:80".into(),
        }
    }

    #[test]
    fn a_target_carries_its_digest_until_it_expires() {
        let redirects = Redirects::default();
        let now = Instant::now();
        redirects.note("https://s.test/b?sig=1".into(), noted(1), now);
        assert_eq!(redirects.get("https://s.test/b?sig=1", now), Some(noted(1)));
        assert_eq!(redirects.get("https://s.test/b?sig=2", now), None);
        assert_eq!(
            redirects.get("https://s.test/b?sig=1", now + LIFETIME),
            None
        );
    }

    #[test]
    fn the_map_holds_at_most_its_capacity_dropping_the_oldest() {
        let redirects = Redirects::default();
        let now = Instant::now();
        for i in 0..CAPACITY + 10 {
            let at = now + Duration::from_millis(i as u64);
            redirects.note(format!("https://s.test/{i}"), noted(1), at);
        }
        assert_eq!(redirects.len(), CAPACITY);
        let later = now + Duration::from_secs(1);
        assert_eq!(redirects.get("https://s.test/0", later), None);
        assert!(
            redirects
                .get(&format!("https://s.test/{}", CAPACITY + 9), later)
                .is_some()
        );
    }

    #[test]
    fn noting_one_target_again_and_again_stays_bounded() {
        let redirects = Redirects::default();
        let now = Instant::now();
        for i in 0..5 * CAPACITY {
            let at = now + Duration::from_micros(i as u64);
            redirects.note("https://s.test/same".into(), noted(2), at);
        }
        assert_eq!(redirects.len(), 1);
        assert!(redirects.map.lock().unwrap().order.len() <= 2 * CAPACITY);
        assert!(redirects.get("https://s.test/same", now).is_some());
    }
}
