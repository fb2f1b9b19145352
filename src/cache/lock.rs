//! Collapsed forwarding: while one worker fetches a missing URL, other requests for it wait for that
//! fetch instead of sending their own (unless the URL's last response was not stored:
//! [`super::uncacheable`]). As soon as the fetcher knows its response will be stored it
//! publishes the entry being written ([`Inflight`]), and waiting requests read it while it grows;
//! when nothing will be stored they are released to look again (and fetch for themselves).
//!
//! ```text
//!  acquire ─┬─ nobody fetching ─> Leader ── publish(inflight) ──> Follow(inflight) for the others
//!           └─ someone is ─ wait ─┬─ published ─> Follow
//!                                 └─ leader done, or the wait ran out ─> Waited (look again)
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::inflight::Inflight;
use super::key::Key;
use crate::runtime::{Mutex, Signal};

/// The misses in flight, by key.
#[derive(Default)]
pub struct MissLocks {
    pending: Mutex<HashMap<Key, Arc<Pending>>>,
}

#[derive(Default)]
struct Pending {
    state: Mutex<State>,
    signal: Signal,
}

#[derive(Default)]
enum State {
    /// The leader has no response head yet, or has not decided to store it.
    #[default]
    Fetching,
    /// The leader is storing this entry: follow it.
    Streaming(Arc<Inflight>),
    /// The leader is gone.
    Done,
}

/// What a request got when it asked to fetch a key.
pub enum Lease {
    /// This request may fetch; others wait until it publishes its entry or drops the guard.
    Leader(LeaderGuard),
    /// Another request is storing the response: read it as it arrives.
    Follow(Arc<Inflight>),
    /// Another request was fetching and has finished (or the wait timed out): look again.
    Waited,
}

/// Held by the fetching request; dropping it wakes the waiters.
pub struct LeaderGuard {
    locks: Arc<MissLocks>,
    key: Key,
    pending: Arc<Pending>,
}

impl MissLocks {
    /// Becomes the fetcher for `key`, or waits up to `wait` for the current fetcher to finish.
    pub fn acquire(self: &Arc<Self>, key: Key, wait: Duration) -> Lease {
        let pending = {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(pending) => Arc::clone(pending),
                None => {
                    let pending = Arc::new(Pending::default());
                    map.insert(key, Arc::clone(&pending));
                    return Lease::Leader(LeaderGuard {
                        locks: Arc::clone(self),
                        key,
                        pending,
                    });
                }
            }
        };
        let deadline = Instant::now() + wait;
        let mut state = pending.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*state {
                State::Streaming(inflight) => return Lease::Follow(Arc::clone(inflight)),
                State::Done => return Lease::Waited,
                State::Fetching => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Lease::Waited;
            }
            state = pending.signal.wait_timeout(&pending.state, state, left);
        }
    }
}

impl LeaderGuard {
    /// Lets the waiting requests, and those that come until the guard is dropped, read the entry
    /// being written.
    pub fn publish(&self, inflight: Arc<Inflight>) {
        *self.pending.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Streaming(inflight);
        self.pending.signal.notify_all();
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.locks
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        *self.pending.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Done;
        self.pending.signal.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_and_waiters_released_when_it_finishes() {
        let locks = Arc::new(MissLocks::default());
        let key = Key::for_url("http://e/");
        let Lease::Leader(guard) = locks.acquire(key, Duration::from_secs(1)) else {
            panic!("first request leads");
        };
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                matches!(locks.acquire(key, Duration::from_secs(30)), Lease::Waited)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(guard);
        assert!(waiter.join().unwrap());
        assert!(matches!(
            locks.acquire(key, Duration::from_secs(1)),
            Lease::Leader(_)
        ));
    }

    #[test]
    fn waiters_follow_a_published_entry_at_once() {
        use crate::cache::entry::ResponseMeta;
        use crate::cache::policy::StoredFreshness;
        use crate::http::ResponseHead;
        let locks = Arc::new(MissLocks::default());
        let key = Key::for_url("http://e/");
        let Lease::Leader(guard) = locks.acquire(key, Duration::from_secs(1)) else {
            panic!("first request leads");
        };
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                matches!(
                    locks.acquire(key, Duration::from_secs(30)),
                    Lease::Follow(_)
                )
            })
        };
        let head = ResponseHead::new(200);
        let t = std::time::SystemTime::UNIX_EPOCH;
        let freshness = Arc::new(StoredFreshness::of(&head, t, t));
        let meta = Arc::new(ResponseMeta {
            head,
            request_time: t,
            response_time: t,
            vary_values: Vec::new(),
        });
        let file = tempfile::tempfile().unwrap();
        guard.publish(Arc::new(Inflight::new(
            meta,
            freshness,
            None,
            Some(Arc::new(file)),
            0,
        )));
        assert!(
            waiter.join().unwrap(),
            "released by the publish, not the drop"
        );
        assert!(matches!(
            locks.acquire(key, Duration::ZERO),
            Lease::Follow(_)
        ));
        drop(guard);
    }
}
