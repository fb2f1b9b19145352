//! The cache's disk work off the workers: what runs on the disk threads (`runtime::blocking`), with
//! which deadline, the jobs longer than one call (checking an entry, rewriting a head, a Vary
//! marker), and the slowed disk the tests use.
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

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::StoredBody;
use super::entry::{ResponseMeta, Stored};
use super::key::Key;
use super::memory::{MAX_MEMORY_OBJECT, MemoryTier};
use super::policy;
use super::store::{OpenEntry, Store};
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

/// Whether [`SLOW_DISK_FOR_TESTS`] is set (debug builds): then nothing is tried on the worker
/// (`store/nowait.rs`), as a slow disk has nothing in the kernel's caches.
pub fn slowed_for_tests() -> bool {
    #[cfg(debug_assertions)]
    {
        static SET: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SET.get_or_init(|| std::env::var_os(SLOW_DISK_FOR_TESTS).is_some())
    }
    #[cfg(not(debug_assertions))]
    {
        false
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

/// Where [`rewrite_head`] takes the body from.
pub(super) enum Source {
    Memory(Arc<[u8]>),
    /// The entry's file and where its body starts.
    File(std::fs::File, u64),
}

/// [`Cache::update_head_with`]'s disk work: a new entry with `stored`'s head and the old body.
pub(super) fn rewrite_head(
    store: &Arc<Store>,
    key: Key,
    url: &str,
    stored: &Stored,
    max_body: u64,
    source: Source,
    body_len: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut writer = store
        .writer(key, url, stored, max_body)
        .ok_or_else(|| io::Error::other("cannot write to the cache"))?;
    match source {
        Source::Memory(body) => io::Write::write_all(&mut writer, &body)?,
        Source::File(file, body_offset) => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut done = 0u64;
            while done < body_len {
                let n = buf.len().min((body_len - done) as usize);
                file.read_exact_at(&mut buf[..n], body_offset + done)?;
                io::Write::write_all(&mut writer, &buf[..n])?;
                done += n as u64;
            }
        }
    }
    writer.commit()
}

/// [`Cache::vary_generation`]'s disk work: the marker read, or a new one written.
pub(super) fn vary_generation(store: &Arc<Store>, url: &str, names: &[String]) -> Option<u64> {
    let key = Key::for_url(url);
    if let Some(existing) = store.open_entry(key)
        && let Stored::VaryMarker {
            names: stored,
            generation,
        } = &existing.decoded.stored
        && stored == names
        && existing.decoded.url == url
    {
        return Some(*generation);
    }
    let generation = super::new_generation();
    let marker = Stored::VaryMarker {
        names: names.to_vec(),
        generation,
    };
    store.writer(key, url, &marker, 0)?.commit().ok()?;
    Some(generation)
}

/// A found entry for [`prepare_file`]: what [`Cache::prepare`] knows of it.
pub(super) struct Prepare<'a> {
    pub key: Key,
    pub url: &'a str,
    pub meta: Arc<ResponseMeta>,
    pub freshness: Arc<policy::StoredFreshness>,
    pub body_len: u64,
    /// `Found::removals`: the memory tier's removal count before the entry was opened.
    pub removals: u64,
}

/// [`Cache::prepare`]'s disk work: checks the body against its CRC unless this process already did,
/// and reads a small body into the memory tier. The body to serve, or `None` for a damaged entry.
pub(super) fn prepare_file(
    store: &Store,
    memory: &MemoryTier,
    found: Prepare<'_>,
    mut entry: Box<OpenEntry>,
) -> Option<StoredBody> {
    if !store.is_verified(&entry) && !store.verify_body(&mut entry) {
        return None;
    }
    let memory_eligible = found.meta.vary_values.is_empty() && found.body_len <= MAX_MEMORY_OBJECT;
    if !memory_eligible {
        return Some(StoredBody::File(entry));
    }
    let body: Arc<[u8]> = match entry.body.clone() {
        Some(body) => body,
        None => {
            let mut body = vec![0u8; found.body_len as usize];
            let offset = entry.decoded.body_offset;
            std::os::unix::fs::FileExt::read_exact_at(&entry.file, &mut body, offset).ok()?;
            body.into()
        }
    };
    // Only if nothing was removed since the entry was opened: one opened before a replacement or a
    // purge must not come back from memory.
    let (key, url, meta, freshness) = (found.key, found.url, found.meta, found.freshness);
    memory.insert_unless_removed(
        Some(found.removals),
        key,
        url,
        meta,
        freshness,
        Arc::clone(&body),
    );
    Some(StoredBody::Memory(body))
}
