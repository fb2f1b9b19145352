//! Reading a small entry on the worker when that cannot wait for the disk.
//!
//! The disk threads keep a slow disk from stalling a worker, but a trip to one costs two wake-ups,
//! which a cache whose entries sit in the kernel's page cache pays on every hit that misses the
//! memory tier (random hits over a million 1 KiB entries: 0.44x nginx with every open on a disk
//! thread). Linux can say when a file operation would wait: `openat2` with `RESOLVE_CACHED` fails
//! with `EAGAIN` unless every component of the path is in the dentry cache, and `preadv2` with
//! `RWF_NOWAIT` fails with `EAGAIN` unless the bytes are in the page cache. So a small entry is
//! first tried here; any `EAGAIN`, a large entry or anything unusual goes to a disk thread, which
//! does it all the usual way (and reports damage). What this answers is the same as the disk path
//! would: the head decoded and the body checked against its CRC.
//!
//! A `RWF_NOWAIT` read of pages not in the page cache starts reading them in (without waiting)
//! before it fails, so asking the page cache afterwards (`cachestat`) would count pages still on
//! their way from the disk: after an `EAGAIN` only a disk thread reads.

use std::fs::File;
use std::io::IoSliceMut;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::{Errno, ReadWriteFlags};

use super::super::key::Key;
use super::{MAX_WHOLE_FILE, OpenEntry, Store};

thread_local! {
    /// The file bytes of the entry being opened on this worker, kept for the next one.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(MAX_WHOLE_FILE as usize));
}

/// What a try on the worker came to.
pub enum Nowait<T> {
    /// Answered without waiting: the value, as the disk path would have given it.
    Done(T),
    /// It would have waited (or is not the simple case): ask a disk thread.
    NeedsDisk,
}

impl Store {
    /// [`Store::open_entry`] for a small entry, read whole and its body checked, when its path and
    /// bytes are all in the kernel's caches; `Done(None)` when there is no such file. Open, one
    /// read and the close when the entry is dropped: no `fstat`, as the read into a buffer of
    /// [`MAX_WHOLE_FILE`] bytes stops at the end of the file, and the entry's prefix says how long
    /// the file must be (a short read that is not the whole file fails to decode and goes to a
    /// disk thread). The file's position is left at 0 (its body is read at offsets).
    pub fn open_small_nowait(&self, key: Key) -> Nowait<Option<OpenEntry>> {
        if cfg!(debug_assertions) && super::super::diskio::slowed_for_tests() {
            return Nowait::NeedsDisk;
        }
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let opened = self.folder(&key, true).and_then(|folder| {
            let mut buf = [0; 63];
            let name = key.file_name(&mut buf);
            rustix::fs::openat2(folder, name, flags, Mode::empty(), ResolveFlags::CACHED)
        });
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Nowait::Done(None),
            Err(_) => return Nowait::NeedsDisk,
        };
        let file = File::from(fd);
        // Read into the worker's buffer (no allocation a hit); only the body is copied out. No
        // yield while it is held.
        let read = READ_BUFFER.with_borrow_mut(|bytes| {
            bytes.resize(MAX_WHOLE_FILE as usize, 0);
            let len = read_whole_nowait(&file, bytes)?;
            // Damage is the disk path's to find, log and remove.
            match super::decode_whole(&bytes[..len]) {
                Ok((decoded, Some(body))) => Some((decoded, body, len)),
                _ => None,
            }
        });
        let Some((decoded, body, len)) = read else {
            return Nowait::NeedsDisk;
        };
        let open = OpenEntry {
            key,
            file,
            decoded,
            body: Some(body),
            inode: None,
            damaged: false,
        };
        // Its blocks, for a record the index does not have yet (the start-up scan has not come to
        // it): the whole blocks its length takes, as a file this small has.
        self.touch_opened(&open, (len as u64).div_ceil(4096) * 4096);
        Nowait::Done(Some(open))
    }

    /// The body of an entry opened and checked already, read without waiting for the disk; `None`
    /// when some of it is not in the page cache.
    pub fn body_nowait(&self, open: &OpenEntry) -> Option<Vec<u8>> {
        let start = open.decoded.body_offset;
        let mut body = vec![0u8; usize::try_from(open.decoded.body_len).ok()?];
        read_all_nowait_at(&open.file, &mut body, start).then_some(body)
    }
}

/// Reads a whole entry file of less than `buf`'s length into `buf` without waiting for the disk,
/// and returns its length: reads until one returns nothing (the end) or the bytes read are as
/// many as the entry's prefix says the file holds, which saves that last read. `None` when some
/// byte is not in the page cache, or the file fills `buf` (it may be longer).
fn read_whole_nowait(file: &File, buf: &mut [u8]) -> Option<usize> {
    let mut done = 0;
    loop {
        let mut slices = [IoSliceMut::new(&mut buf[done..])];
        match rustix::io::preadv2(file, &mut slices, done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => return Some(done),
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(_) => return None,
        }
        if done == buf.len() {
            return None;
        }
        if super::super::entry::claimed_len(&buf[..done]) == Some(done as u64) {
            return Some(done);
        }
    }
}

/// Fills `buf` from byte `start` of `file` with reads that never wait for the disk; false when
/// some byte is not in the page cache (or the file is shorter). The file's position does not move.
fn read_all_nowait_at(file: &File, buf: &mut [u8], start: u64) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let mut slices = [IoSliceMut::new(&mut buf[done..])];
        let at = start + done as u64;
        match rustix::io::preadv2(file, &mut slices, at, ReadWriteFlags::NOWAIT) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_whole_only_what_fits_and_stops_where_the_entry_ends() {
        let dir = tempfile::tempdir().unwrap();
        let file_path = dir.path().join("f");
        std::fs::File::create(&file_path)
            .unwrap()
            .write_all(b"hello")
            .unwrap();
        let file = File::open(&file_path).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read_whole_nowait(&file, &mut buf), Some(5));
        assert_eq!(&buf[..5], b"hello");
        let mut exact = [0u8; 5];
        assert_eq!(read_whole_nowait(&file, &mut exact), None, "may be longer");
        let mut tail = [0u8; 3];
        assert!(read_all_nowait_at(&file, &mut tail, 2));
        assert_eq!(&tail, b"llo");
        let mut past = [0u8; 4];
        assert!(!read_all_nowait_at(&file, &mut past, 2), "past the end");
        // An entry's prefix says where it ends.
        let head =
            b"url: http://e/\r\nrequest-time: 1\r\nresponse-time: 1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        let mut entry =
            crate::cache::entry::encode_prefix(head, 2, crc32fast::hash(b"hi")).to_vec();
        entry.extend_from_slice(head);
        entry.extend_from_slice(b"hi");
        std::fs::write(&file_path, &entry).unwrap();
        let file = File::open(&file_path).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(read_whole_nowait(&file, &mut buf), Some(entry.len()));
    }
}
