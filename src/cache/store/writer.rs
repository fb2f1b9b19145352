//! Writing entries: a response streams into a temporary file that is renamed into place only once it
//! is complete, and a full disk (ENOSPC) evicts the least recently used entries and retries, so the
//! cache keeps storing when the disk is smaller than `--cache-size` or shared.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Store, disk_usage};
use crate::cache::entry::{self, Stored};
use crate::cache::key::Key;

/// On a full disk, each attempt to make room evicts this share of the entries' space (at least one).
const FULL_DISK_EVICT_PERCENT: u64 = 10;
/// Attempts to make room for one write before it is given up (and the response not stored).
const FULL_DISK_RETRIES: usize = 8;
/// The write buffer of an entry being written; it holds a small response whole, prefix and head
/// included, so that goes to the disk in one write.
const WRITE_BUFFER: usize = 64 * 1024;

fn is_disk_full(error: &io::Error) -> bool {
    error.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
}

impl Store {
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
        let tmp_path = self.tmp.join(format!("{}-{}-{n}.tmp", key.hex(), self.pid));
        let file = DiskFile {
            file: None,
            path: tmp_path.clone(),
            store: Arc::clone(self),
        };
        // No system call here: the temporary file is created by the first write that reaches the
        // disk (`DiskFile`), so a small response is created, written and committed in one go. The
        // prefix's placeholder and the head wait in the buffer with the body's first bytes: the
        // prefix is written for real at the commit, and readers are told of body bytes only once
        // they are flushed. The buffer holds the head whatever its size, and a body piece besides.
        let capacity = WRITE_BUFFER + entry::PREFIX_LEN + head.len();
        let mut file = io::BufWriter::with_capacity(capacity, file);
        let buffered = file
            .write_all(&[0u8; entry::PREFIX_LEN])
            .and_then(|()| file.write_all(&head));
        if buffered.is_err() {
            return None; // not reached: the buffer has room for both
        }
        Some(EntryWriter {
            store: Arc::clone(self),
            key,
            file,
            tmp_path,
            head,
            body_len: 0,
            max_body,
            crc: crc32fast::Hasher::new(),
            failed: false,
            committed: false,
        })
    }

    /// Whether the last temporary file this store tried to create was created. Until one is, and
    /// after one is refused, writers create theirs at once ([`EntryWriter::create_now`]), so a
    /// disk that refuses is known before a response is published to readers and its status sent.
    pub fn creates_work(&self) -> bool {
        self.creates_work.load(Ordering::Relaxed)
    }

    /// Runs `op`, and while it fails because the disk is full, evicts and tries again.
    pub(super) fn retry_when_full<T>(
        &self,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
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
            let mut index = self.index();
            let want = (index.bytes() / 100 * FULL_DISK_EVICT_PERCENT).max(1);
            index.take_oldest(want, usize::MAX)
        };
        if victims.is_empty() {
            return false;
        }
        self.warn_disk_full(error);
        log::debug!(
            "cache: disk full; evicting {} entries ({freed} bytes) to make room",
            victims.len()
        );
        self.remove_files(&victims);
        true
    }

    /// Logs a full disk at most once a minute: each later store makes room again quietly.
    fn warn_disk_full(&self, error: &io::Error) {
        if self.full_warning.due() {
            log::warn!(
                "cache: disk full at {} ({error}); evicting least recently used entries to make room",
                self.root.display()
            );
        }
    }
}

/// A temporary entry file, created by its first write, whose writes make room when the disk is
/// full, then go on.
struct DiskFile {
    /// Shared with the readers that follow the writing (`for_readers`).
    file: Option<Arc<File>>,
    path: PathBuf,
    store: Arc<Store>,
}

impl DiskFile {
    fn file(&mut self) -> io::Result<&File> {
        if self.file.is_none() {
            crate::cache::diskio::slow_disk();
            let path = &self.path;
            // Readable too: readers that follow the writing share this handle, with
            // no second open (`for_readers`).
            let created = self
                .store
                .retry_when_full(|| crate::perms::create_private_rw_file(path));
            self.store
                .creates_work
                .store(created.is_ok(), Ordering::Relaxed);
            self.file = Some(Arc::new(created?));
        }
        self.file
            .as_deref()
            .ok_or_else(|| io::Error::other("no temporary file"))
    }
}

impl Write for DiskFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let store = Arc::clone(&self.store);
        let mut file = self.file()?;
        store.retry_when_full(|| file.write(data))
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_deref() {
            Some(mut file) => file.flush(),
            None => Ok(()),
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
    /// Body bytes taken so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Where the body starts in the file.
    pub fn body_offset(&self) -> u64 {
        (entry::PREFIX_LEN + self.head.len()) as u64
    }

    /// A handle on the temporary file for readers that follow the writing
    /// ([`crate::cache::inflight`]), once a write created it (`None` before). It stays valid
    /// through the rename and the removal. The writer's own (no system call): its file position
    /// is the writer's, which readers never use or move (they read at offsets: sendfile(2) with
    /// an offset, `read_at`).
    pub fn for_readers(&self) -> Option<Arc<File>> {
        self.file.get_ref().file.clone()
    }

    /// Creates the temporary file now and writes what is buffered (on a disk thread).
    pub fn create_now(&mut self) -> io::Result<()> {
        let created = self.file.flush();
        if let Err(e) = &created {
            self.failed = true;
            self.store.warn_write_failure(e);
        }
        created
    }

    /// Whether `len` more body bytes go into the write buffer without a write to the disk (so the
    /// worker may take them itself).
    pub fn buffers(&self, len: usize) -> bool {
        !self.failed && self.file.capacity() - self.file.buffer().len() >= len
    }

    /// Finishes the entry. Call it only once the body reader has seen the body's end (its
    /// Content-Length reached, or the last chunk): that is the length check.
    pub fn commit(self) -> io::Result<()> {
        self.commit_for_readers().map(drop)
    }

    /// [`EntryWriter::commit`], returning the file's handle for readers that follow the writing
    /// and have none yet (it was created by the commit's own write).
    pub fn commit_for_readers(mut self) -> io::Result<Arc<File>> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        let prefix = entry::encode_prefix(&self.head, self.body_len, self.crc.clone().finalize());
        // The buffered bytes are taken out of the write buffer (which keeps the file, so a failed
        // commit still deletes it when dropped) to go out with the prefix.
        let blank = DiskFile {
            file: None,
            path: PathBuf::new(),
            store: Arc::clone(&self.store),
        };
        let taken = std::mem::replace(&mut self.file, io::BufWriter::with_capacity(0, blank));
        let (disk, buffered) = taken.into_parts();
        self.file = io::BufWriter::with_capacity(0, disk);
        let result = (|| {
            let mut buffered =
                buffered.map_err(|_| io::Error::other("the write buffer was lost"))?;
            let disk = self.file.get_mut();
            match buffered.get_mut(..entry::PREFIX_LEN) {
                // Never written: the whole entry is in the buffer, the prefix's placeholder first,
                // so it is created and written in one write, the prefix in place.
                Some(placeholder) if disk.file.is_none() => {
                    placeholder.copy_from_slice(&prefix);
                    disk.write_all(&buffered)?;
                }
                _ => {
                    disk.write_all(&buffered)?;
                    disk.file()?.write_all_at(&prefix, 0)?;
                }
            }
            let file = disk.file()?;
            // One fstat for both: the inode stays with the file through the rename.
            let meta = file.metadata()?;
            let usage = disk_usage(&meta);
            self.store
                .commit(self.key, &self.tmp_path, usage, Some(meta.ino()))
        })();
        match result {
            Ok(()) => {
                self.committed = true;
                self.for_readers()
                    .ok_or_else(|| io::Error::other("no temporary file"))
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
        if !self.committed && self.file.get_ref().file.is_some() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}
