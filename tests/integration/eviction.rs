//! Eviction under a steady stream of misses (issue 26): the cache folder stays within
//! `--cache-size` as the disk counts it (allocated blocks), the recently used entries stay while the
//! old ones go, and a restart counts the same entries the same way.

use std::path::Path;
use std::time::Duration;

use crate::util::*;

const LIMIT: u64 = 256 * 1024;
/// Entries being put in place while the folder is walked: each store that finds the cache over its
/// size evicts its own room, but just after its rename and before its evictions, the folder holds
/// it too. One client, so one entry at a time; a 1000-byte body and its head take one 4 KiB block.
const SLACK: u64 = 2 * 4096;

/// The disk use of the entry files (not the folders, not temporary files), as `du` counts it.
fn entry_blocks(cache: &Path) -> (u64, usize) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut files) = (0, 0);
    for dir in std::fs::read_dir(cache).unwrap().flatten() {
        if dir.file_name().len() != 2 {
            continue;
        }
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(meta) = file.metadata() {
                bytes += meta.blocks() * 512;
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn metrics(porter: &Porter) -> String {
    proxy_get(porter.addr, &format!("http://{}/metrics", porter.addr), &[]).text()
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// An origin answering every path with 1,000 bytes (the path, padded), fresh for ten minutes.
fn thousand_byte_origin() -> Origin {
    Origin::start(|_, path, _| {
        let mut body = path.as_bytes().to_vec();
        body.resize(1000, b'.');
        (200, hdrs(&[("Cache-Control", "max-age=600")]), body)
    })
}

fn start(cache: &Path) -> Porter {
    Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--cache-size",
        "256KiB",
        "--memory-cache-size",
        "0",
    ])
}

#[test]
fn a_stream_of_distinct_misses_stays_within_cache_size_and_keeps_the_recently_used() {
    let origin = thousand_byte_origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let porter = start(&cache);
    let hot = origin.url("/hot");
    assert_eq!(
        proxy_get(porter.addr, &hot, &[]).header("x-cache"),
        Some("MISS")
    );
    // 400 distinct entries of a 4 KiB block each through a cache that holds 64.
    let mut most = 0;
    for n in 0..400 {
        let response = proxy_get(porter.addr, &origin.url(&format!("/m/{n}")), &[]);
        assert_eq!((response.status, response.body.len()), (200, 1000));
        if n % 5 == 4 {
            let again = proxy_get(porter.addr, &hot, &[]);
            assert_eq!(
                again.header("x-cache"),
                Some("HIT"),
                "the hot entry after {n}"
            );
        }
        if n % 10 == 9 {
            let (used, _) = entry_blocks(&cache);
            most = most.max(used);
            assert!(
                used <= LIMIT + SLACK,
                "after {} misses the entries take {used} bytes on disk, over --cache-size 256KiB",
                n + 1
            );
        }
    }
    assert!(
        most > LIMIT / 2,
        "the cache never filled: at most {most} bytes"
    );
    // The newest entries are there, the oldest are gone (asked again, they go to the origin).
    let newest = proxy_get(porter.addr, &origin.url("/m/399"), &[]);
    assert_eq!(newest.header("x-cache"), Some("HIT"));
    let before = origin.hits();
    let oldest = proxy_get(porter.addr, &origin.url("/m/0"), &[]);
    assert_eq!(
        (oldest.header("x-cache"), origin.hits()),
        (Some("MISS"), before + 1)
    );
}

#[test]
fn a_restart_counts_the_same_entries_the_same_way() {
    let origin = thousand_byte_origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let porter = start(&cache);
    for n in 0..150 {
        assert_eq!(
            proxy_get(porter.addr, &origin.url(&format!("/{n}")), &[]).status,
            200
        );
    }
    // Wait (bounded) until eviction has settled: two readings a moment apart agree.
    let mut last = None;
    let settled = eventually(Duration::from_secs(10), || {
        let text = metrics(&porter);
        let now = (
            metric(&text, "porter_cache_entries"),
            metric(&text, "porter_cache_bytes"),
        );
        std::thread::sleep(Duration::from_millis(50));
        last.replace(now) == Some(now)
    });
    assert!(settled, "eviction did not settle: {last:?}");
    let (Some((Some(entries), Some(bytes))), (on_disk, files)) = (last, entry_blocks(&cache))
    else {
        panic!("no cache metrics: {last:?}");
    };
    assert!(
        bytes <= LIMIT,
        "the index counts {bytes} bytes with --cache-size 256KiB"
    );
    // Each entry counts its blocks and its share of the folders' listings (128 bytes).
    assert_eq!(
        (entries, bytes),
        (files as u64, on_disk + files as u64 * 128)
    );
    drop(porter);

    let porter = start(&cache);
    let mut seen = (None, None);
    let scanned = eventually(Duration::from_secs(10), || {
        let text = metrics(&porter);
        seen = (
            metric(&text, "porter_cache_entries"),
            metric(&text, "porter_cache_bytes"),
        );
        seen.0 == Some(entries)
    });
    assert!(
        scanned,
        "after the restart the index holds {seen:?}, not {entries} entries"
    );
    assert_eq!(seen, (Some(entries), Some(bytes)));
}
