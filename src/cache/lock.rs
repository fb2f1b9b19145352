//! Collapsed forwarding: while one worker fetches a missing URL, other requests for it wait for that
//! fetch instead of sending their own, then look in the cache again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::key::Key;

/// The misses in flight, by key.
#[derive(Default)]
pub struct MissLocks {
    pending: Mutex<HashMap<Key, Arc<Pending>>>,
}

#[derive(Default)]
struct Pending {
    done: Mutex<bool>,
    signal: Condvar,
}

/// What a request got when it asked to fetch a key.
pub enum Lease {
    /// This request fetches; others wait until the guard is dropped.
    Leader(LeaderGuard),
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
        let mut done = pending.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            done = pending
                .signal
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Lease::Waited
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.locks
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        *self.pending.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
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
}
