//! The disk store's in-memory index: each entry's disk usage, when it was last used, and whether this
//! process has checked its body.
//!
//! It holds one record per entry on disk, so its size is the cache's memory cost: a record is 12
//! bytes beside its 32-byte key, and with the hash table's control bytes and spare capacity a million
//! entries take about 90 MB (`benches/scale.sh` measures it). Sizes are kept in 512-byte blocks,
//! last use on a 32-bit clock that is renumbered in order when it runs out, and the checked file by
//! the low 32 bits of its inode.
//!
//! Eviction takes the least recently used through an [`OldestFirst`] queue (`eviction.rs`): a pass
//! over the records refills it with their oldest sixteenth now and then, instead of a copy and sort
//! of every record for each batch. The queue holds a key and a last use a queued entry (36 bytes),
//! a sixteenth of the entries at most after a refill: about 2 bytes an entry.

use super::super::eviction::OldestFirst;
use super::super::key::{Key, KeyMap};

/// The unit of a record's size: a disk block as `stat` counts them.
const BLOCK: u64 = 512;

/// One entry's record.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry {
    /// Disk usage in 512-byte blocks, rounded up (saturating at 2 TiB).
    blocks: u32,
    /// The index's clock when the entry was last stored or read.
    last_used: u32,
    /// The low 32 bits of the inode of the file whose body checksum this process verified or wrote
    /// itself, or 0. Kept per file, not per key: a file opened just before a new one replaced it is
    /// checked on its own (a new file's inode agreeing in its low 32 bits with the old one's only
    /// spares the new file a check of a body this process wrote).
    verified: u32,
}

impl IndexEntry {
    /// The disk space the entry takes, in bytes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.blocks) * BLOCK
    }

    #[cfg(test)]
    pub fn last_used(&self) -> u64 {
        u64::from(self.last_used)
    }

    /// Whether the file with this inode number is the one whose body was checked.
    pub fn is_verified(&self, inode: u64) -> bool {
        self.verified != 0 && self.verified == short_inode(inode)
    }

    pub fn set_verified(&mut self, inode: Option<u64>) {
        self.verified = inode.map_or(0, short_inode);
    }
}

/// An inode number cut to 32 bits, never 0 (0 means "none").
fn short_inode(inode: u64) -> u32 {
    (inode as u32).max(1)
}

fn blocks(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(BLOCK)).unwrap_or(u32::MAX)
}

/// Every entry's record, the bytes they take in all, the clock of last use, and the queue of the
/// oldest for eviction.
#[derive(Default)]
pub struct Index {
    entries: KeyMap<IndexEntry>,
    bytes: u64,
    clock: u32,
    oldest: OldestFirst,
}

impl Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The disk space all entries take, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    pub fn get(&self, key: &Key) -> Option<&IndexEntry> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut IndexEntry> {
        self.entries.get_mut(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &IndexEntry)> {
        self.entries.iter()
    }

    /// Records an entry stored (or found on disk) just now, replacing any record it had.
    pub fn insert(&mut self, key: Key, bytes: u64, verified: Option<u64>) {
        let last_used = self.tick();
        let mut entry = IndexEntry {
            blocks: blocks(bytes),
            last_used,
            verified: 0,
        };
        entry.set_verified(verified);
        self.bytes += entry.bytes();
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.bytes();
        }
    }

    /// Marks an entry used now; one the index did not know yet is recorded with `bytes`.
    /// Returns the record, for the caller to mark it verified without a second lookup.
    pub fn touch(&mut self, key: Key, bytes: u64) -> &mut IndexEntry {
        use std::collections::hash_map::Entry;
        let now = self.tick();
        match self.entries.entry(key) {
            Entry::Occupied(entry) => {
                let entry = entry.into_mut();
                entry.last_used = now;
                entry
            }
            Entry::Vacant(vacant) => {
                let entry = IndexEntry {
                    blocks: blocks(bytes),
                    last_used: now,
                    verified: 0,
                };
                self.bytes += entry.bytes();
                vacant.insert(entry)
            }
        }
    }

    pub fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.bytes();
        }
    }

    /// Removes the records of the least recently used entries until they free `bytes` or `most`
    /// of them are gone, and returns their keys and the bytes freed: the caller removes the files,
    /// outside the lock. Bounded work: queued entries used since they were queued are skipped,
    /// and the queue is refilled at most once a call.
    pub fn take_oldest(&mut self, bytes: u64, most: usize) -> (Vec<Key>, u64) {
        let (mut taken, mut freed, mut refilled) = (Vec::new(), 0u64, false);
        while freed < bytes && taken.len() < most {
            let Some((last_used, key)) = self.oldest.pop() else {
                if refilled || self.entries.is_empty() {
                    break;
                }
                // Enough for this call and the rest of its round twice over (the store's rounds
                // free a twentieth of the cache), at least a sixteenth of the entries.
                let share = (bytes - freed) as f64 * 2.0 / self.bytes.max(1) as f64;
                let records = self.entries.iter().map(|(k, e)| (e.last_used, k));
                self.oldest.refill(records, share);
                refilled = true;
                continue;
            };
            if let Some(entry) = self.entries.get(&key)
                && entry.last_used == last_used
            {
                freed += entry.bytes();
                self.remove(&key);
                taken.push(key);
            }
        }
        (taken, freed)
    }

    /// The next value of the clock. When the 32-bit clock runs out, the records are renumbered
    /// 1, 2, 3... in their order of use, which keeps that order and frees the rest of the range.
    fn tick(&mut self) -> u32 {
        if self.clock == u32::MAX {
            self.renumber();
        }
        self.clock += 1;
        self.clock
    }

    fn renumber(&mut self) {
        self.oldest.clear();
        let mut order: Vec<(u32, Key)> = self
            .entries
            .iter()
            .map(|(k, e)| (e.last_used, *k))
            .collect();
        order.sort_unstable();
        for (n, (_, key)) in order.into_iter().enumerate() {
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.last_used = n as u32 + 1;
            }
        }
        self.clock = self.entries.len() as u32;
    }

    #[cfg(test)]
    fn set_clock(&mut self, clock: u32) {
        self.clock = clock;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Key {
        Key::for_url(&format!("http://example.com/{n}"))
    }

    #[test]
    fn a_record_is_twelve_bytes_beside_its_key() {
        assert_eq!(std::mem::size_of::<IndexEntry>(), 12);
        assert_eq!(std::mem::size_of::<(Key, IndexEntry)>(), 44);
    }

    #[test]
    fn sizes_are_counted_in_whole_blocks_and_replacing_a_record_replaces_its_size() {
        let mut index = Index::default();
        index.insert(key(1), 4096, None);
        index.insert(key(2), 100, None);
        assert_eq!(index.bytes(), 4096 + 512);
        index.insert(key(1), 1024, None);
        assert_eq!(index.bytes(), 1024 + 512);
        index.remove(&key(2));
        assert_eq!((index.len(), index.bytes()), (1, 1024));
    }

    #[test]
    fn the_clock_running_out_renumbers_in_order_of_use() {
        let mut index = Index::default();
        index.set_clock(u32::MAX - 3);
        for n in 0..3 {
            index.insert(key(n), 512, None);
        }
        index.touch(key(0), 512);
        index.touch(key(1), 512);
        let ages: Vec<u64> = (0..3)
            .map(|n| index.get(&key(n)).unwrap().last_used())
            .collect();
        assert!(ages.iter().all(|&a| a <= 5), "renumbered: {ages:?}");
        assert_eq!(
            index.take_oldest(u64::MAX, 10).0,
            vec![key(2), key(0), key(1)]
        );
    }

    #[test]
    fn verified_is_per_file_and_never_matches_when_unset() {
        let mut index = Index::default();
        index.insert(key(1), 512, Some(77));
        let entry = index.get(&key(1)).unwrap();
        assert!(entry.is_verified(77));
        assert!(!entry.is_verified(78));
        index.insert(key(2), 512, None);
        assert!(!index.get(&key(2)).unwrap().is_verified(0));
    }

    #[test]
    fn eviction_takes_the_least_recently_used_and_skips_one_used_after_it_was_queued() {
        let mut index = Index::default();
        for n in 0..10 {
            index.insert(key(n), 512, None);
        }
        index.touch(key(0), 512);
        // The queue now holds all ten, oldest first; 1 is the oldest.
        assert_eq!(index.take_oldest(512, 100), (vec![key(1)], 512));
        // Used after it was queued: no longer old, so it stays.
        index.touch(key(2), 512);
        assert_eq!(index.take_oldest(1024, 100).0, vec![key(3), key(4)]);
        // At most `most` a call, whatever is asked.
        assert_eq!(index.take_oldest(u64::MAX, 2).0, vec![key(5), key(6)]);
        // 0 was used before the queue was filled, so it sits in it as the newest; the queue runs
        // out after it and is refilled once, with 2.
        assert_eq!(
            index.take_oldest(u64::MAX, 100).0,
            vec![key(7), key(8), key(9), key(0), key(2)]
        );
        assert_eq!((index.len(), index.bytes()), (0, 0));
        assert_eq!(index.take_oldest(u64::MAX, 100), (vec![], 0));
    }

    #[test]
    fn entries_stored_after_a_refill_go_after_the_queued_ones() {
        let mut index = Index::default();
        for n in 0..5 {
            index.insert(key(n), 512, None);
        }
        assert_eq!(index.take_oldest(512, 1).0, vec![key(0)]);
        index.insert(key(100), 512, None);
        index.touch(key(1), 512);
        let order = index.take_oldest(u64::MAX, 100).0;
        assert_eq!(order, vec![key(2), key(3), key(4), key(100), key(1)]);
    }
}
