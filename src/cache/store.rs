//! The disk store: entry files under `root/ab/cdef…`, written through a temporary file and renamed into
//! place only when complete, and an in-memory index of sizes and last use for eviction.
//!
//! The index is not needed to find an entry (the key is the path), so start-up does not wait for it:
//! a background scan fills it in, discarding leftover temporary files, while the proxy already serves.
//!
//! Sizes are the disk space an entry takes (its allocated blocks, as `stat` reports them, delayed
//! allocations included), not its length: 175k entries of a few hundred bytes take a 4 KiB block
//! each, and counting bytes let a 5 MiB cache use 38 MiB. Each entry is also charged its share of
//! the folders' listings ([`FOLDER_SHARE`], 128 bytes). So `--cache-size` bounds what `du` sees of
//! the folder, give or take: the first block of each of the 258 folders (about 1 MiB in all),
//! listings fuller or emptier than the share (they never shrink), the temporary files of entries
//! being written, and the entries of stores in progress (see below). The start-up scan counts the
//! same way, so a restart finds the same figure.
//!
//! Eviction: a background thread (`cache-evict`), woken when the cache passes 95% of its size,
//! removes the least recently used entries down to 90%, in batches that each hold the index's lock
//! briefly; the choice is `eviction::OldestFirst`'s, bounded work per entry whatever the cache's
//! size. A stream of misses faster than the thread can evict (or a thread starved of CPU) does not
//! take the cache past its size: a store that finds the cache over 100% evicts at least its own
//! size before it returns. When the disk fills up anyway (it is smaller than `--cache-size`, or
//! shared), a write that fails with ENOSPC evicts the least recently used entries and is retried,
//! so the cache keeps storing.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::entry::{self, Decoded, EntryError};
use super::key::Key;
use crate::runtime::Mutex;

mod index;
mod nowait;
mod writer;
use index::Index;
pub use nowait::Nowait;
pub use writer::EntryWriter;

/// Eviction starts when the cache passes this share of its size limit, so the stores that arrive
/// while it runs still fit under the limit...
const EVICT_FROM_PERCENT: u64 = 95;
/// ...and removes entries down to this share, so it runs in batches.
const EVICT_TO_PERCENT: u64 = 90;
/// What an entry adds to its folder's listing, counted with its blocks: a name of 62 characters
/// takes a 72-byte record in an ext4 directory block, whose blocks are about 60% full once entries
/// come and go (140 bytes an entry measured, 13.6 MB of folders for 92k entries), and a folder
/// never shrinks. Charged per entry rather than measured: a version that `stat`ed the 258 folders
/// each time the evictor woke made misses cost twice the CPU while evicting on ext4 without a
/// journal, all of it in the kernel's inode allocation (why, not pinned down; 5 runs against 1
/// without the `stat`s, `benches/results/scale-evict-2026-12-07.txt`).
const FOLDER_SHARE: u64 = 128;
/// Entries the evictor takes from the index under one hold of its lock.
const EVICT_BATCH: usize = 256;
/// Entries a store that finds the cache over its size may evict itself, at most: enough to make
/// room for its own entry (the oldest are usually as big), few enough that it costs that store
/// little, and only while the evictor is behind.
const INLINE_EVICT_MOST: usize = 16;

/// The disk space a file takes: its allocated blocks, or its length where that is more (a file
/// system that has not allocated yet).
pub fn disk_usage(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    (meta.blocks() * 512).max(meta.len())
}

/// An entry file opened for reading. Its body is read at offsets (`decoded.body_offset`); only
/// [`Store::open_entry`] also leaves the file positioned there, for readers that read on from it.
pub struct OpenEntry {
    pub key: Key,
    pub file: File,
    pub decoded: Decoded,
    /// The body, read whole and checked against its CRC when the entry was opened (a small entry,
    /// [`MAX_WHOLE_FILE`]): it is not read or checked again, for the memory tier or anyone.
    pub body: Option<Arc<[u8]>>,
    /// The file's inode number when it was opened (from the one `fstat` an open from a disk thread
    /// makes); `None` from the worker's open without one (`store/nowait.rs`), which reads the
    /// file whole, so its body never needs the index's record of a checked file.
    pub inode: Option<u64>,
    /// Read whole, and its body did not match its CRC: not served, whatever this process
    /// remembers of the file (it may have been damaged in place after it was checked).
    pub damaged: bool,
}

/// Entry files up to this size (head and body) are read whole when opened, in one read, and their
/// body checked there; larger ones have their head read, and their body checked before it is first
/// served ([`Store::verify_body`]).
pub const MAX_WHOLE_FILE: u64 = 64 * 1024;

/// Figures for the status page, metrics and `porter cache stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The on-disk cache folder.
pub struct Store {
    root: PathBuf,
    /// The folder, opened once, and its 256 folders `ab/`, each opened the first time an entry in
    /// it is looked up: an entry is opened relative to its folder ([`Store::folder`]), so a
    /// lookup's path walk in the kernel is one component however deep the cache folder is (an
    /// open was a tenth of a random hit's CPU from disk, and the walk's hash lookups half of that). A folder removed
    /// while the proxy runs (by hand: Porter never removes them) is not opened again, so its
    /// entries are misses until a restart.
    root_dir: OwnedFd,
    folders: Box<[OnceLock<OwnedFd>]>,
    tmp: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    evict: Sender<()>,
    next_tmp: AtomicU64,
    /// This process's id, in temporary files' names (read once: it is a system call).
    pid: u32,
    /// Whether the last temporary file was created; see [`Store::creates_work`].
    creates_work: AtomicBool,
    /// Entries renamed into place so far; see [`Store::commits`].
    commits: AtomicU64,
    write_warning: OncePerMinute,
    full_warning: OncePerMinute,
}

/// A warning that is logged at most once a minute, so a failing disk does not flood the log.
#[derive(Default)]
struct OncePerMinute(Mutex<Option<Instant>>);

impl OncePerMinute {
    /// Whether the warning is due now; if it is, the next one is due a minute from now.
    fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(60));
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

impl Store {
    /// Opens (creating) the folder and starts the background scan and evictor threads.
    pub fn open(root: &Path, max_bytes: u64) -> io::Result<Arc<Store>> {
        let tmp = root.join("tmp");
        crate::perms::create_private_dir_all(&tmp)?;
        let root_dir = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let (evict, evict_rx) = crossbeam_channel::bounded(1);
        let store = Arc::new(Store {
            root: root.to_path_buf(),
            root_dir,
            folders: (0..256).map(|_| OnceLock::new()).collect(),
            tmp,
            max_bytes,
            index: Mutex::default(),
            evict,
            next_tmp: AtomicU64::new(0),
            pid: std::process::id(),
            creates_work: AtomicBool::new(false),
            commits: AtomicU64::new(0),
            write_warning: OncePerMinute::default(),
            full_warning: OncePerMinute::default(),
        });
        let scanner = Arc::clone(&store);
        std::thread::Builder::new()
            .name("cache-scan".into())
            .spawn(move || scanner.scan())?;
        let evictor = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("cache-evict".into())
            .spawn(move || evict_loop(evictor, evict_rx))?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The descriptor of `key`'s folder `ab/`, opened the first time (`O_PATH`: for opens relative
    /// to it); with `cached_only`, that open fails with `EAGAIN` unless the kernel has the folder's
    /// name in its caches (for the worker, `store/nowait.rs`). `NOENT` until the folder exists.
    fn folder(&self, key: &Key, cached_only: bool) -> rustix::io::Result<&OwnedFd> {
        let slot = &self.folders[usize::from(key.folder())];
        if let Some(fd) = slot.get() {
            return Ok(fd);
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut buf = [0; 3];
        let name = key.folder_name(&mut buf);
        // openat2 only when asked for a cached-only open: a kernel without it (before 5.6, or
        // valgrind) then answers ENOSYS, which sends the lookup to a disk thread, whose plain
        // openat works everywhere.
        let fd = if cached_only {
            let cached = ResolveFlags::CACHED;
            rustix::fs::openat2(&self.root_dir, name, flags, Mode::empty(), cached)?
        } else {
            rustix::fs::openat(&self.root_dir, name, flags, Mode::empty())?
        };
        // Another thread may have opened it meanwhile: either descriptor will do.
        Ok(slot.get_or_init(|| fd))
    }

    fn index(&self) -> crate::runtime::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many entries this process has put in place, for any URL. The same before a lookup and
    /// after it: no entry appeared meanwhile that the lookup could have missed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// The entries and the disk use `--cache-size` bounds: the entries' and the folders' (see the
    /// module's doc).
    pub fn stats(&self) -> StoreStats {
        let index = self.index();
        StoreStats {
            entries: index.len() as u64,
            bytes: self.used(&index),
        }
    }

    /// The disk use `--cache-size` bounds, with the index's lock held: the entries' blocks and
    /// their share of the folders.
    fn used(&self, index: &Index) -> u64 {
        index.bytes() + index.len() as u64 * FOLDER_SHARE
    }

    /// Opens and checks an entry, positioned at its body. A small one is read whole and its body
    /// checked too ([`MAX_WHOLE_FILE`]). A damaged one is removed and reported as absent; a damaged
    /// body is left to the body check that follows before it is served (as a large one's is), so
    /// what that check does (a digest's counts) stays the same.
    pub fn open_entry(&self, key: Key) -> Option<OpenEntry> {
        let path = || key.path(&self.root);
        super::diskio::slow_disk();
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let opened = self.folder(&key, false).and_then(|folder| {
            let mut buf = [0; 63];
            let name = key.file_name(&mut buf);
            rustix::fs::openat(folder, name, flags, Mode::empty())
        });
        let mut file = match opened {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::NOENT) => return None,
            Err(e) => {
                log::warn!("cache: cannot open {}: {e}", path().display());
                return None;
            }
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => {
                log::warn!("cache: cannot read {}: {e}", path().display());
                return None;
            }
        };
        let len = meta.len();
        let whole = len <= MAX_WHOLE_FILE;
        let opened = if whole {
            let mut bytes = vec![0u8; len as usize];
            match file.read_exact_at(&mut bytes, 0) {
                Ok(()) => decode_whole(&bytes),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Err(EntryError::Corrupt("short file"))
                }
                Err(e) => Err(EntryError::Io(e)),
            }
        } else {
            let mut reader = io::BufReader::with_capacity(8 * 1024, &mut file);
            entry::decode(&mut reader, len).map(|decoded| (decoded, None))
        };
        match opened {
            Ok((decoded, body)) => {
                if file.seek(SeekFrom::Start(decoded.body_offset)).is_err() {
                    return None;
                }
                let open = OpenEntry {
                    key,
                    file,
                    decoded,
                    inode: Some(meta.ino()),
                    damaged: whole && body.is_none(),
                    body,
                };
                self.touch_opened(&open, disk_usage(&meta));
                Some(open)
            }
            Err(EntryError::Corrupt(why)) => {
                log::warn!("cache: removing damaged entry {}: {why}", path().display());
                self.remove(key);
                None
            }
            Err(EntryError::Io(e)) => {
                log::warn!("cache: cannot read {}: {e}", path().display());
                None
            }
        }
    }

    /// Marks an opened entry used now, and, when its body was read and checked in the open, its
    /// file verified.
    fn touch_opened(&self, open: &OpenEntry, usage: u64) {
        let mut index = self.index();
        let entry = index.touch(open.key, usage);
        if open.body.is_some()
            && let Some(inode) = open.inode
        {
            entry.set_verified(Some(inode));
        }
    }

    /// Whether this very file's body checksum was already verified (or written) by this process:
    /// in the open that read it whole, or earlier.
    pub fn is_verified(&self, open: &OpenEntry) -> bool {
        if open.damaged {
            return false;
        }
        open.body.is_some()
            || self
                .index()
                .get(&open.key)
                .zip(open.inode)
                .is_some_and(|(e, inode)| e.is_verified(inode))
    }

    /// Reads the whole body once and checks it against its checksum; a mismatch removes the entry.
    pub fn verify_body(&self, open: &mut OpenEntry) -> bool {
        if !body_matches(open) {
            log::warn!(
                "cache: removing entry {} with a damaged body",
                open.key.hex()
            );
            self.remove(open.key);
            return false;
        }
        if let Some(e) = self.index().get_mut(&open.key) {
            e.set_verified(open.inode);
        }
        true
    }

    pub fn remove(&self, key: Key) {
        super::diskio::slow_disk();
        let _ = fs::remove_file(key.path(&self.root));
        self.index().remove(&key);
    }

    /// Drops a key from the index after someone else removed its file (`porter cache purge`).
    pub fn forget(&self, key: Key) {
        self.index().remove(&key);
    }

    /// Drops from the index every key whose file is gone (after `porter cache clear`); returns how
    /// many. The paths are checked outside the lock, so hits never wait on this.
    pub fn forget_missing(&self) -> usize {
        let keys: Vec<Key> = self.index().iter().map(|(k, _)| *k).collect();
        let gone: Vec<Key> = keys
            .into_iter()
            .filter(|k| !k.path(&self.root).exists())
            .collect();
        let mut index = self.index();
        for key in &gone {
            index.remove(key);
        }
        gone.len()
    }

    /// Logs a failing disk at most once a minute: the proxy keeps serving without storing.
    fn warn_write_failure(&self, error: &io::Error) {
        if self.write_warning.due() {
            log::warn!(
                "cache: cannot write to {} ({error}); serving without caching",
                self.root.display()
            );
        }
    }

    /// Every entry key with its size, for listing.
    pub fn keys(&self) -> Vec<(Key, u64)> {
        self.index().iter().map(|(k, e)| (*k, e.bytes())).collect()
    }

    /// Fills the index from the folder and removes temporary files left by a crash.
    fn scan(&self) {
        let started = Instant::now();
        let mut discarded = 0u64;
        // Leftovers of earlier processes only: this one may already be storing while the scan runs.
        let own = format!("-{}-", std::process::id());
        if let Ok(tmp) = fs::read_dir(&self.tmp) {
            for file in tmp.flatten() {
                let ours = file.file_name().to_str().is_some_and(|n| n.contains(&own));
                if !ours && fs::remove_file(file.path()).is_ok() {
                    discarded += 1;
                }
            }
        }
        let (mut found, mut bytes) = (0u64, 0u64);
        for dir in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let dir_name = dir.file_name();
            let Some(dir_name) = dir_name.to_str().filter(|n| n.len() == 2) else {
                continue;
            };
            for file in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let name = file.file_name();
                let Some(key) = name
                    .to_str()
                    .and_then(|n| Key::from_path_parts(dir_name, n))
                else {
                    continue;
                };
                let Ok(meta) = file.metadata() else { continue };
                let usage = disk_usage(&meta);
                let mut index = self.index();
                if !index.contains(&key) {
                    index.insert(key, usage, None);
                }
                found += 1;
                bytes += usage;
            }
        }
        log::info!(
            "cache: {} holds {found} entries ({bytes} bytes); discarded {discarded} unfinished writes; scan took {} ms",
            self.root.display(),
            started.elapsed().as_millis()
        );
        let _ = self.evict.try_send(());
    }

    fn commit(
        &self,
        key: Key,
        tmp_path: &Path,
        bytes: u64,
        written: Option<u64>,
    ) -> io::Result<()> {
        let path = key.path(&self.root);
        super::diskio::slow_disk();
        // The entry's folder is made only when the rename says it is missing: in a cache that
        // has run a while it is there, and a mkdir per store would be a wasted system call.
        self.retry_when_full(|| match fs::rename(tmp_path, &path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    crate::perms::create_private_dir_all(parent)?;
                }
                fs::rename(tmp_path, &path)
            }
            other => other,
        })?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        let (over, victims) = {
            let mut index = self.index();
            index.insert(key, bytes, written);
            let used = self.used(&index);
            // Over the size itself: the evictor is behind, so this store makes its own room
            // (the module's doc). Never this entry: it is the newest.
            let victims = if used > self.max_bytes {
                index
                    .take_oldest(used - self.max_bytes, INLINE_EVICT_MOST)
                    .0
            } else {
                Vec::new()
            };
            (used > self.max_bytes / 100 * EVICT_FROM_PERCENT, victims)
        };
        self.remove_files(&victims);
        if over {
            let _ = self.evict.try_send(());
        }
        Ok(())
    }

    /// Removes evicted entries' files (their records are gone already).
    fn remove_files(&self, keys: &[Key]) {
        for key in keys {
            let _ = fs::remove_file(key.path(&self.root));
        }
    }

    /// Removes least recently used entries until the store is under its target size, in batches:
    /// the index's lock is held to take each batch's records, and the files are removed outside it.
    fn evict(&self) {
        let target = self.max_bytes / 100 * EVICT_TO_PERCENT;
        let used = self.used(&self.index());
        if used <= self.max_bytes / 100 * EVICT_FROM_PERCENT {
            return;
        }
        // What is over the target now; stores that arrive meanwhile wake the next round.
        let (mut left, mut count) = (used - target, 0);
        while left > 0 {
            let (victims, freed) = self.index().take_oldest(left, EVICT_BATCH);
            if victims.is_empty() {
                break;
            }
            self.remove_files(&victims);
            left = left.saturating_sub(freed);
            count += victims.len();
        }
        log::debug!("cache: evicted {count} entries");
    }
}

/// Whether an opened entry's body matches its checksum, reading it once at its offset (the file's
/// position does not move). Touches neither the index nor the folder: the file may no longer be
/// the one at its key's path (a joined partial entry's older part), so it is not this function's
/// to remove.
pub fn body_matches(open: &mut OpenEntry) -> bool {
    if let Some(body) = &open.body {
        return crc32fast::hash(body) == open.decoded.body_crc;
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; open.decoded.body_len.min(64 * 1024) as usize];
    let mut done = 0u64;
    while done < open.decoded.body_len {
        let want = buf.len().min((open.decoded.body_len - done) as usize);
        match open
            .file
            .read_at(&mut buf[..want], open.decoded.body_offset + done)
        {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                done += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    done == open.decoded.body_len && hasher.finalize() == open.decoded.body_crc
}

/// An entry file read whole: its head, and its body if that matched its CRC.
pub type Whole = (Decoded, Option<Arc<[u8]>>);

/// Decodes an entry file read whole (its head checked as [`entry::decode`] checks it) and checks
/// its body against its CRC.
pub fn decode_whole(bytes: &[u8]) -> Result<Whole, EntryError> {
    let decoded = entry::decode_slice(bytes)?;
    // The decode checked that the body ends where the file does.
    let body = usize::try_from(decoded.body_offset)
        .ok()
        .and_then(|start| bytes.get(start..))
        .ok_or(EntryError::Corrupt("file length does not match"))?;
    let intact = crc32fast::hash(body) == decoded.body_crc;
    Ok((decoded, intact.then(|| body.into())))
}

fn evict_loop(store: std::sync::Weak<Store>, wake: Receiver<()>) {
    while wake.recv().is_ok() {
        match store.upgrade() {
            Some(store) => store.evict(),
            None => return,
        }
    }
}
