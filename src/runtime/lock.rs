//! The locks the request path uses: `std::sync::Mutex` and `RwLock` with a count of the guards each
//! thread holds, so that a guard held across a yield is caught instead of hanging a worker.
//!
//! A task that yields while holding a std guard keeps the lock while its worker runs other tasks; a
//! second task on that worker taking the same lock blocks the worker's thread, and the owner, which
//! only that thread can resume, never releases it. The async world's version of this rule is
//! clippy's `await_holding_lock`; stackful coroutines yield inside ordinary calls (a socket read, a
//! `Signal` wait, a name lookup), where no lint can see it. So every guard here counts itself on its
//! thread while it lives, and every yield point ([`super::task::suspend`]) asserts in debug builds
//! that the count is zero: each integration test checks the rule on every yield it makes. Release
//! builds keep the count (one thread-local add per lock) and skip the check.
//!
//! `clippy.toml` disallows `std::sync::Mutex` and `RwLock`, so new code lands here. The API is
//! std's (`lock()` returns a `LockResult`), so callers read as before.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::{LockResult, PoisonError, TryLockError};

thread_local! {
    /// Guards of these locks alive on this thread.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Guards of these locks the calling thread holds now.
pub fn held() -> usize {
    HELD.with(Cell::get)
}

/// The panic message of a yield with a guard held (tests match on it).
pub const HELD_ACROSS_YIELD: &str = "a lock guard is held across a yield";

/// Panics (debug builds) if the calling thread holds a guard: called at every yield point.
#[inline]
pub fn assert_none_held() {
    if cfg!(debug_assertions) {
        let held = held();
        assert!(held == 0, "{HELD_ACROSS_YIELD} ({held} held)");
    }
}

fn count(up: bool) {
    HELD.with(|h| h.set(if up { h.get() + 1 } else { h.get() - 1 }));
}

/// A counted guard around one of std's (which is `!Send`, so this one is too). `None` only after
/// [`Counted::into_std`] took the guard out.
pub struct Counted<G> {
    inner: Option<G>,
}

impl<G> Counted<G> {
    fn new(inner: G) -> Counted<G> {
        count(true);
        Counted { inner: Some(inner) }
    }

    fn wrap(result: LockResult<G>) -> LockResult<Counted<G>> {
        match result {
            Ok(g) => Ok(Counted::new(g)),
            Err(e) => Err(PoisonError::new(Counted::new(e.into_inner()))),
        }
    }

    /// Std's guard, uncounted: for `Condvar::wait`, which releases the lock while it waits.
    pub(super) fn into_std(mut self) -> G {
        count(false);
        self.inner.take().expect("a live guard")
    }

    /// A std guard back under the count (after a `Condvar` wait).
    pub(super) fn from_std(inner: G) -> Counted<G> {
        Counted::new(inner)
    }
}

impl<G: Deref> Deref for Counted<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        self.inner.as_ref().expect("a live guard")
    }
}

impl<G: DerefMut> DerefMut for Counted<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        self.inner.as_mut().expect("a live guard")
    }
}

impl<G> Drop for Counted<G> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            count(false);
        }
    }
}

/// The guard of a [`Mutex`].
#[allow(clippy::disallowed_types)]
pub type MutexGuard<'a, T> = Counted<std::sync::MutexGuard<'a, T>>;
/// The shared guard of a [`RwLock`].
#[allow(clippy::disallowed_types)]
pub type RwLockReadGuard<'a, T> = Counted<std::sync::RwLockReadGuard<'a, T>>;
/// The exclusive guard of a [`RwLock`].
#[allow(clippy::disallowed_types)]
pub type RwLockWriteGuard<'a, T> = Counted<std::sync::RwLockWriteGuard<'a, T>>;

/// `std::sync::Mutex` with counted guards.
#[allow(clippy::disallowed_types)]
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

#[allow(clippy::disallowed_types)]
impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    pub fn into_inner(self) -> LockResult<T> {
        self.0.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        Counted::wrap(self.0.lock())
    }

    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(Counted::new(g)),
            Err(TryLockError::Poisoned(e)) => Some(Counted::new(e.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    pub fn get_mut(&mut self) -> LockResult<&mut T> {
        self.0.get_mut()
    }
}

/// `std::sync::RwLock` with counted guards.
#[allow(clippy::disallowed_types)]
#[derive(Debug, Default)]
pub struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

#[allow(clippy::disallowed_types)]
impl<T> RwLock<T> {
    pub const fn new(value: T) -> RwLock<T> {
        RwLock(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        Counted::wrap(self.0.read())
    }

    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        Counted::wrap(self.0.write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_while_they_live_and_a_condvar_handoff_keeps_the_count() {
        let mutex = Mutex::new(1);
        let lock = RwLock::new(2);
        assert_eq!(held(), 0);
        {
            let a = mutex.lock().unwrap();
            let b = lock.read().unwrap();
            assert_eq!((*a, *b, held()), (1, 2, 2));
            let std_guard = a.into_std();
            assert_eq!(held(), 1);
            let a = MutexGuard::from_std(std_guard);
            assert_eq!((*a, held()), (1, 2));
        }
        assert_eq!(held(), 0);
        let _w = lock.write().unwrap();
        assert!(mutex.try_lock().is_some());
        assert_eq!(held(), 1);
    }
}
