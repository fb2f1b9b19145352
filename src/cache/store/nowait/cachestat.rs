//! `cachestat(2)` (Linux 6.5): how many of a file's pages in a range are in the page cache, asked
//! without reading them or waiting for the disk. rustix has no wrapper for it, so this is one raw
//! system call, the only `unsafe` of the cache.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Its number: system calls added since Linux 5.1 have the same one on every architecture.
const SYS_CACHESTAT: libc::c_long = 451;

/// The kernel's `struct cachestat_range`.
#[repr(C)]
struct Range {
    off: u64,
    len: u64,
}

/// The kernel's `struct cachestat`.
#[repr(C)]
#[derive(Default)]
struct Stat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Set once the kernel said it has no `cachestat` (before 6.5), so it is not asked again.
static MISSING: AtomicBool = AtomicBool::new(false);

/// Whether every page holding bytes `start..start + len` of `file` is in the page cache. False
/// when one is not, or the kernel cannot say.
pub fn all_cached(file: &File, start: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    if MISSING.load(Ordering::Relaxed) {
        return false;
    }
    let page = rustix::param::page_size() as u64;
    let pages = (start + len).div_ceil(page) - start / page;
    let range = Range { off: start, len };
    let mut stat = Stat::default();
    // SAFETY: cachestat(fd, range, stat, flags) reads one `struct cachestat_range` from `range`
    // and writes one `struct cachestat` to `stat`; both are `#[repr(C)]` copies of the kernel's
    // structs (all u64 fields, in its order), live and exclusively ours for the call. The
    // descriptor is borrowed from `file`, open throughout; flags must be 0.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0 as libc::c_uint,
        )
    };
    if rc != 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            MISSING.store(true, Ordering::Relaxed);
        }
        return false;
    }
    stat.nr_cache >= pages
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_file_just_written_is_all_in_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&[7u8; 10_000])
            .unwrap();
        let file = File::open(&path).unwrap();
        // A kernel before 6.5 cannot say: then nothing is read on the worker, which is safe.
        let said = all_cached(&file, 0, 10_000);
        assert!(said || MISSING.load(Ordering::Relaxed));
        assert!(all_cached(&file, 0, 0));
    }
}
