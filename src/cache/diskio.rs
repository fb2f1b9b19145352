//! The cache's disk work off the workers: what runs on the disk threads (`runtime::blocking`), with
//! which deadline, and the slowed disk the tests use.
//!
//! Opening an entry and reading its head (a lookup not answered by the memory tier), checking its
//! body and reading a small one into memory, creating, writing, committing (rename) and removing
//! entries, rewriting a head after a 304 and joining partial entries all go to the cache's
//! [`Pool`], and the task waits in state `disk`. What stays on the worker: the memory tier, the
//! index (a lock held for map updates, never across I/O), body bytes that fit the entry's write
//! buffer, and sending a body from a file already open (`sendfile`, from the page cache the disk
//! thread's check of the body filled; a body dropped from the page cache since is read there).
//!
//! A job that fails ([`Error::Busy`] with the queue full, [`Error::TimedOut`] past
//! [`DISK_TIMEOUT`]) makes a lookup a miss and a store not stored: a slow disk costs hits, never a
//! worker.

use std::time::Duration;

pub use crate::runtime::blocking::{DEFAULT_THREADS, Error, Pool};

/// How long a task waits for one disk job: far beyond any healthy disk (a 256 MiB body checked
/// against its CRC at 100 MB/s takes under 3 s), short enough that a hung network mount ends in a
/// miss instead of a client waiting forever.
pub const DISK_TIMEOUT: Duration = Duration::from_secs(30);

/// Debug builds only: milliseconds every entry open, create, rename and removal waits before it
/// runs, so a test can make the disk slow (as `strace -e inject=openat:delay_enter=...` does) and
/// check that only the requests that need the disk wait for it. Read once; unset means no delay.
/// Release builds carry no such hook, like the task overflow hook in `runtime::reactor`.
#[cfg(debug_assertions)]
pub const SLOW_DISK_FOR_TESTS: &str = "PORTER_DEBUG_DISK_DELAY_MS";

/// Waits as [`SLOW_DISK_FOR_TESTS`] says (debug builds); nothing in release builds.
#[inline]
pub fn slow_disk() {
    #[cfg(debug_assertions)]
    {
        static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
        let delay = DELAY.get_or_init(|| {
            std::env::var(SLOW_DISK_FOR_TESTS)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis)
        });
        if let Some(delay) = delay {
            std::thread::sleep(*delay);
        }
    }
}

/// Logs a disk job that gave no answer, at most once a minute (a stuck disk fails every job);
/// `what` names the job and what became of the request.
pub fn warn_failed(what: &str, error: Error) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log::warn!("cache: {what}: {error}");
    } else {
        log::debug!("cache: {what}: {error}");
    }
}
