//! The disk store's in-memory index: each entry's disk usage, when it was last used, and whether this
//! process has checked its body.
//!
//! It holds one record per entry on disk, so its size is the cache's memory cost: a record is 12
//! bytes beside its 32-byte key, and with the hash table's control bytes and spare capacity a million
//! entries take about 90 MB (`benches/scale.sh` measures it). Sizes are kept in 512-byte blocks,
//! last use on a 32-bit clock that is renumbered in order when it runs out, and the checked file by
//! the low 32 bits of its inode.

use std::collections::HashMap;

use super::super::key::Key;

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

/// Every entry's record, the bytes they take in all, and the clock of last use.
#[derive(Default)]
pub struct Index {
    entries: HashMap<Key, IndexEntry>,
    bytes: u64,
    clock: u32,
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
    pub fn touch(&mut self, key: Key, bytes: u64) {
        let now = self.tick();
        match self.entries.get_mut(&key) {
            Some(entry) => entry.last_used = now,
            None => self.insert(key, bytes, None),
        }
    }

    pub fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.bytes();
        }
    }

    /// Removes a record only if the entry was not used since `last_used` (eviction chose it as it
    /// was then); true when it was removed.
    pub fn remove_if_unused_since(&mut self, key: &Key, last_used: u64) -> bool {
        match self.entries.get(key) {
            Some(entry) if entry.last_used() == last_used => {
                self.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Every entry as eviction sees it: last use, key, bytes.
    pub fn candidates(&self) -> Vec<(u64, Key, u64)> {
        self.entries
            .iter()
            .map(|(key, e)| (e.last_used(), *key, e.bytes()))
            .collect()
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
        let mut order = index.candidates();
        order.sort_unstable();
        let keys: Vec<Key> = order.iter().map(|c| c.1).collect();
        assert_eq!(keys, vec![key(2), key(0), key(1)]);
        assert!(order.iter().all(|c| c.0 <= 5), "renumbered: {order:?}");
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
    fn eviction_skips_an_entry_used_after_it_was_chosen() {
        let mut index = Index::default();
        index.insert(key(1), 512, None);
        let chosen = index.get(&key(1)).unwrap().last_used();
        index.touch(key(1), 512);
        assert!(!index.remove_if_unused_since(&key(1), chosen));
        let now = index.get(&key(1)).unwrap().last_used();
        assert!(index.remove_if_unused_since(&key(1), now));
        assert_eq!(index.len(), 0);
    }
}
