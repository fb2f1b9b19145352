//! The disk store: entry files under `root/ab/cdef…`, written through a temporary file and renamed into
//! place only when complete, and an in-memory index of sizes and last use for eviction.
//!
//! The index is not needed to find an entry (the key is the path), so start-up does not wait for it:
//! a background scan fills it in, discarding leftover temporary files, while the proxy already serves.
//!
//! Sizes are the disk space an entry takes (its allocated blocks), not its length: 175k entries of a
//! few hundred bytes take a 4 KiB block each, and counting bytes let a 5 MiB cache use 38 MiB. When
//! the disk fills up anyway (it is smaller than `--cache-size`, or shared), a write that fails with
//! ENOSPC evicts the least recently used entries and is retried, so the cache keeps storing.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::entry::{self, Decoded, EntryError, Stored};
use super::key::Key;

/// Entries are evicted down to this share of the size limit, so eviction runs in batches.
const EVICT_TO_PERCENT: u64 = 90;
/// On a full disk, each attempt to make room evicts this share of the entries' space (at least one).
const FULL_DISK_EVICT_PERCENT: u64 = 10;
/// Attempts to make room for one write before it is given up (and the response not stored).
const FULL_DISK_RETRIES: usize = 8;

/// The disk space a file takes: its allocated blocks, or its length where that is more (a file
/// system that has not allocated yet).
pub fn disk_usage(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    (meta.blocks() * 512).max(meta.len())
}

fn is_disk_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    bytes: u64,
    last_used: u64,
    /// The file (by inode) whose body checksum this process has verified or written itself. Kept per
    /// file, not per key: a file opened just before a new one replaced it is checked on its own.
    verified: Option<u64>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Key, IndexEntry>,
    bytes: u64,
    clock: u64,
}

impl Index {
    fn insert(&mut self, key: Key, bytes: u64, verified: Option<u64>) {
        self.clock += 1;
        let entry = IndexEntry {
            bytes,
            last_used: self.clock,
            verified,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.bytes;
        }
    }
}

/// An entry file opened for reading, positioned at its body.
pub struct OpenEntry {
    pub key: Key,
    pub file: File,
    pub decoded: Decoded,
}

/// Figures for the status page, metrics and `porter cache stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The on-disk cache folder.
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    evict: Sender<()>,
    next_tmp: AtomicU64,
    last_write_warning: Mutex<Option<Instant>>,
    last_full_warning: Mutex<Option<Instant>>,
}

impl Store {
    /// Opens (creating) the folder and starts the background scan and evictor threads.
    pub fn open(root: &Path, max_bytes: u64) -> io::Result<Arc<Store>> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        let (evict, evict_rx) = crossbeam_channel::bounded(1);
        let store = Arc::new(Store {
            root: root.to_path_buf(),
            tmp,
            max_bytes,
            index: Mutex::default(),
            evict,
            next_tmp: AtomicU64::new(0),
            last_write_warning: Mutex::new(None),
            last_full_warning: Mutex::new(None),
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

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> StoreStats {
        let index = self.index();
        StoreStats {
            entries: index.entries.len() as u64,
            bytes: index.bytes,
        }
    }

    /// Opens and checks an entry. A damaged one is removed and reported as absent.
    pub fn open_entry(&self, key: Key) -> Option<OpenEntry> {
        let path = key.path(&self.root);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("cache: cannot open {}: {e}", path.display());
                return None;
            }
        };
        let (len, usage) = file
            .metadata()
            .map(|m| (m.len(), disk_usage(&m)))
            .unwrap_or((0, 0));
        let mut reader = io::BufReader::with_capacity(8 * 1024, &mut file);
        match entry::decode(&mut reader, len) {
            Ok(decoded) => {
                drop(reader);
                if file.seek(SeekFrom::Start(decoded.body_offset)).is_err() {
                    return None;
                }
                self.touch(key, usage);
                Some(OpenEntry { key, file, decoded })
            }
            Err(EntryError::Corrupt(why)) => {
                log::warn!("cache: removing damaged entry {}: {why}", path.display());
                self.remove(key);
                None
            }
            Err(EntryError::Io(e)) => {
                log::warn!("cache: cannot read {}: {e}", path.display());
                None
            }
        }
    }

    fn touch(&self, key: Key, usage: u64) {
        let mut index = self.index();
        index.clock += 1;
        let clock = index.clock;
        match index.entries.get_mut(&key) {
            Some(e) => e.last_used = clock,
            None => index.insert(key, usage, None),
        }
    }

    /// Whether the opened file is still the one at the entry's path (not replaced or removed since).
    pub fn is_current(&self, open: &OpenEntry) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            open.file.metadata(),
            fs::metadata(open.key.path(&self.root)),
        ) {
            (Ok(opened), Ok(now)) => opened.ino() == now.ino() && opened.dev() == now.dev(),
            _ => false,
        }
    }

    /// Whether this very file's body checksum was already verified (or written) by this process.
    pub fn is_verified(&self, open: &OpenEntry) -> bool {
        let Some(inode) = inode(&open.file) else {
            return false;
        };
        self.index()
            .entries
            .get(&open.key)
            .is_some_and(|e| e.verified == Some(inode))
    }

    /// Reads the whole body once and checks it against its checksum; a mismatch removes the entry.
    /// The file is left positioned at the body again.
    pub fn verify_body(&self, open: &mut OpenEntry) -> bool {
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = open.decoded.body_len;
        while left > 0 {
            let want = buf.len().min(left as usize);
            match open.file.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    left -= n as u64;
                }
            }
        }
        let ok = left == 0 && hasher.finalize() == open.decoded.body_crc;
        if !ok {
            log::warn!(
                "cache: removing entry {} with a damaged body",
                open.key.hex()
            );
            self.remove(open.key);
            return false;
        }
        if let Some(e) = self.index().entries.get_mut(&open.key) {
            e.verified = inode(&open.file);
        }
        open.file
            .seek(SeekFrom::Start(open.decoded.body_offset))
            .is_ok()
    }

    pub fn remove(&self, key: Key) {
        let _ = fs::remove_file(key.path(&self.root));
        self.index().remove(&key);
    }

    /// Starts writing an entry. `None` when the disk refuses (full, read-only): the caller relays
    /// without storing.
    pub fn writer(
        self: &Arc<Self>,
        key: Key,
        url: &str,
        stored: &Stored,
        max_body: u64,
    ) -> Option<EntryWriter> {
        let head = entry::encode_head(url, stored);
        if head.len() > entry::MAX_HEAD {
            return None;
        }
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self
            .tmp
            .join(format!("{}-{}-{n}.tmp", key.hex(), std::process::id()));
        let result = self
            .retry_when_full(|| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp_path)
            })
            .and_then(|file| {
                let mut file = DiskFile {
                    file,
                    store: Arc::clone(self),
                };
                file.write_all(&[0u8; entry::PREFIX_LEN])?;
                file.write_all(&head)?;
                Ok(file)
            });
        match result {
            Ok(file) => Some(EntryWriter {
                store: Arc::clone(self),
                key,
                file: io::BufWriter::with_capacity(64 * 1024, file),
                tmp_path,
                head,
                body_len: 0,
                max_body,
                crc: crc32fast::Hasher::new(),
                failed: false,
                committed: false,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp_path);
                self.warn_write_failure(&e);
                None
            }
        }
    }

    /// Logs a failing disk at most once a minute: the proxy keeps serving without storing.
    fn warn_write_failure(&self, error: &io::Error) {
        let mut last = self
            .last_write_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            log::warn!(
                "cache: cannot write to {} ({error}); serving without caching",
                self.root.display()
            );
            *last = Some(Instant::now());
        }
    }

    /// Every entry key with its size, for listing.
    pub fn keys(&self) -> Vec<(Key, u64)> {
        self.index()
            .entries
            .iter()
            .map(|(k, e)| (*k, e.bytes))
            .collect()
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
                if !index.entries.contains_key(&key) {
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
        if let Some(parent) = path.parent() {
            self.retry_when_full(|| fs::create_dir_all(parent))?;
        }
        self.retry_when_full(|| fs::rename(tmp_path, &path))?;
        let over = {
            let mut index = self.index();
            index.insert(key, bytes, written);
            index.bytes > self.max_bytes
        };
        if over {
            let _ = self.evict.try_send(());
        }
        Ok(())
    }

    /// Removes least recently used entries until the store is under its target size.
    fn evict(&self) {
        let target = self.max_bytes / 100 * EVICT_TO_PERCENT;
        let victims: Vec<Key> = {
            let index = self.index();
            if index.bytes <= self.max_bytes {
                return;
            }
            let mut by_age: Vec<(u64, Key, u64)> = index
                .entries
                .iter()
                .map(|(k, e)| (e.last_used, *k, e.bytes))
                .collect();
            by_age.sort_unstable();
            let mut excess = index.bytes.saturating_sub(target);
            by_age
                .into_iter()
                .take_while(|(_, _, bytes)| {
                    let take = excess > 0;
                    excess = excess.saturating_sub(*bytes);
                    take
                })
                .map(|(_, k, _)| k)
                .collect()
        };
        let count = victims.len();
        for key in victims {
            self.remove(key);
        }
        log::debug!("cache: evicted {count} entries");
    }

    /// Runs `op`, and while it fails because the disk is full, evicts and tries again.
    fn retry_when_full<T>(&self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut attempts = 0;
        loop {
            match op() {
                Err(e)
                    if is_disk_full(&e) && attempts < FULL_DISK_RETRIES && self.make_room(&e) =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// The disk is full: evicts the least recently used entries, a tenth of the cache's space (at
    /// least one entry). False when there is nothing left to evict.
    fn make_room(&self, error: &io::Error) -> bool {
        let (victims, freed): (Vec<Key>, u64) = {
            let index = self.index();
            let want = (index.bytes / 100 * FULL_DISK_EVICT_PERCENT).max(1);
            let mut by_age: Vec<(u64, Key, u64)> = index
                .entries
                .iter()
                .map(|(k, e)| (e.last_used, *k, e.bytes))
                .collect();
            by_age.sort_unstable();
            let mut freed = 0u64;
            let victims = by_age
                .into_iter()
                .take_while(|(_, _, bytes)| {
                    let take = freed < want;
                    freed += if take { *bytes } else { 0 };
                    take
                })
                .map(|(_, k, _)| k)
                .collect();
            (victims, freed)
        };
        if victims.is_empty() {
            return false;
        }
        self.warn_disk_full(error);
        log::debug!(
            "cache: disk full; evicting {} entries ({freed} bytes) to make room",
            victims.len()
        );
        for key in victims {
            self.remove(key);
        }
        true
    }

    /// Logs a full disk at most once a minute: each later store makes room again quietly.
    fn warn_disk_full(&self, error: &io::Error) {
        let mut last = self
            .last_full_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            log::warn!(
                "cache: disk full at {} ({error}); evicting least recently used entries to make room",
                self.root.display()
            );
            *last = Some(Instant::now());
        }
    }
}

/// A temporary entry file whose writes make room when the disk is full, then go on.
struct DiskFile {
    file: File,
    store: Arc<Store>,
}

impl Write for DiskFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let file = &mut self.file;
        self.store.retry_when_full(|| file.write(data))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A file's inode number, which stays with it through the rename into place.
fn inode(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| m.ino())
}

fn evict_loop(store: std::sync::Weak<Store>, wake: Receiver<()>) {
    while wake.recv().is_ok() {
        match store.upgrade() {
            Some(store) => store.evict(),
            None => return,
        }
    }
}

/// Streams a body into a temporary file; `commit` renames it into place only if it is complete.
/// Dropping an uncommitted writer deletes the temporary file, so a cut-off response is never stored.
pub struct EntryWriter {
    store: Arc<Store>,
    key: Key,
    file: io::BufWriter<DiskFile>,
    tmp_path: PathBuf,
    head: Vec<u8>,
    body_len: u64,
    max_body: u64,
    crc: crc32fast::Hasher,
    failed: bool,
    committed: bool,
}

impl EntryWriter {
    /// Finishes the entry. Call it only once the body reader has seen the body's end (its
    /// Content-Length reached, or the last chunk): that is the length check.
    pub fn commit(mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        let prefix = entry::encode_prefix(&self.head, self.body_len, self.crc.clone().finalize());
        let result = (|| {
            self.file.flush()?;
            let file = &mut self.file.get_mut().file;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&prefix)?;
            let written = inode(file);
            let usage = disk_usage(&file.metadata()?);
            self.store.commit(self.key, &self.tmp_path, usage, written)
        })();
        match result {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(e) => {
                self.store.warn_write_failure(&e);
                Err(e)
            }
        }
    }
}

impl Write for EntryWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("cache write already failed"));
        }
        self.body_len += data.len() as u64;
        if self.body_len > self.max_body {
            self.failed = true;
            return Err(io::Error::other("object larger than --max-object-size"));
        }
        self.crc.update(data);
        if let Err(e) = self.file.write_all(data) {
            self.failed = true;
            self.store.warn_write_failure(&e);
            return Err(e);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}
