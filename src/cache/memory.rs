//! The memory tier: small, recently used entries kept in RAM in front of the disk, so a hot hit needs
//! no file open, read or head decode. Bounded by `--memory-cache-size`; evicts least recently used.
//! The disk stays the source of truth: the tier only holds bodies that were checked against their CRC.
//!
//! Once the tier is full, a body read from disk goes in only on its second read within a while
//! ([`Doorkeeper`]): with far more entries in use than fit (random hits over a million), putting
//! each one in evicted a hot one to keep an entry that is not asked for again, at the cost of an
//! allocation, the write lock and a share of an eviction's sort on every hit from disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::RwLock;

use super::entry::ResponseMeta;
use super::eviction;
use super::key::{Key, KeyMap};
use super::policy::StoredFreshness;

/// Objects larger than this stay on disk only (they go out with sendfile anyway).
pub const MAX_MEMORY_OBJECT: u64 = 1 << 20;
/// Fixed bookkeeping charged per entry on top of its body.
const ENTRY_OVERHEAD: u64 = 512;

/// One entry held in memory.
pub struct MemoryEntry {
    pub url: String,
    pub meta: Arc<ResponseMeta>,
    pub freshness: Arc<StoredFreshness>,
    pub body: Arc<[u8]>,
    last_used: AtomicU64,
}

impl MemoryEntry {
    fn cost(&self) -> u64 {
        self.body.len() as u64 + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Inner {
    entries: KeyMap<Arc<MemoryEntry>>,
    bytes: u64,
}

/// Small hot entries by key.
pub struct MemoryTier {
    /// Hits only read (last use is an atomic), so workers share the lock; inserts and evictions write.
    inner: RwLock<Inner>,
    max_bytes: u64,
    clock: AtomicU64,
    /// Counts removals, so an insert of a body read before a removal can be refused (see
    /// [`MemoryTier::insert_unless_removed`]).
    removals: AtomicU64,
    doorkeeper: Doorkeeper,
}

/// Which keys were offered to the full tier lately: a slot per hash, holding the last key's tag,
/// so a key offered again before another key took its slot is let in. 64Ki slots of 4 bytes.
struct Doorkeeper(Box<[std::sync::atomic::AtomicU32]>);

impl Doorkeeper {
    const SLOTS: usize = 1 << 16;

    fn new() -> Self {
        Doorkeeper((0..Self::SLOTS).map(|_| Default::default()).collect())
    }

    /// Whether `key` was offered before (and nothing took its slot since); records it either way.
    fn seen_again(&self, key: &Key) -> bool {
        let hash = key.short_hash();
        let slot = &self.0[hash as usize % Self::SLOTS];
        let tag = ((hash >> 32) as u32) | 1;
        slot.swap(tag, Ordering::Relaxed) == tag
    }
}

impl MemoryTier {
    pub fn new(max_bytes: u64) -> Self {
        MemoryTier {
            inner: RwLock::default(),
            max_bytes,
            clock: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            doorkeeper: Doorkeeper::new(),
        }
    }

    fn inner(&self) -> crate::runtime::lock::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &Key) -> Option<Arc<MemoryEntry>> {
        let entry = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            inner.entries.get(key).cloned()?
        };
        entry.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(entry)
    }

    /// Keeps a verified body in memory if it is small enough and the tier is enabled.
    pub fn insert(
        &self,
        key: Key,
        url: &str,
        meta: Arc<ResponseMeta>,
        freshness: Arc<StoredFreshness>,
        body: Arc<[u8]>,
    ) {
        self.insert_unless_removed(None, key, url, meta, freshness, body);
    }

    /// The removal count now: pass it to [`MemoryTier::insert_unless_removed`].
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::SeqCst)
    }

    /// [`MemoryTier::insert`], unless any entry was removed since `removals` was read: a body read from
    /// a file that a purge removed meanwhile must not come back from memory after the purge.
    pub fn insert_unless_removed(
        &self,
        removals: Option<u64>,
        key: Key,
        url: &str,
        meta: Arc<ResponseMeta>,
        freshness: Arc<StoredFreshness>,
        body: Arc<[u8]>,
    ) {
        if self.max_bytes == 0 || body.len() as u64 > MAX_MEMORY_OBJECT.min(self.max_bytes / 4) {
            return;
        }
        if self.is_full() && !self.doorkeeper.seen_again(&key) {
            return;
        }
        let entry = Arc::new(MemoryEntry {
            url: url.to_string(),
            meta,
            freshness,
            body,
            last_used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
        });
        let mut inner = self.inner();
        // Removals bump the count under this lock, so the check and the insert are one step.
        if removals.is_some_and(|seen| seen != self.removals()) {
            return;
        }
        inner.bytes += entry.cost();
        if let Some(old) = inner.entries.insert(key, entry) {
            inner.bytes -= old.cost();
        }
        if inner.bytes > self.max_bytes {
            evict(&mut inner, self.max_bytes / 10 * 9);
        }
    }

    /// Whether another entry would make the tier evict (a hint: it may change before the insert).
    fn is_full(&self) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.bytes + ENTRY_OVERHEAD + 1024 > self.max_bytes
    }

    pub fn remove(&self, key: &Key) {
        let mut inner = self.inner();
        self.removals.fetch_add(1, Ordering::SeqCst);
        if let Some(old) = inner.entries.remove(key) {
            inner.bytes -= old.cost();
        }
    }

    /// Forgets every entry (`porter cache clear`).
    pub fn clear(&self) {
        let mut inner = self.inner();
        self.removals.fetch_add(1, Ordering::SeqCst);
        inner.entries.clear();
        inner.bytes = 0;
    }
}

/// Drops least recently used entries until `target` bytes remain; in one batch, so the sort is rare.
fn evict(inner: &mut Inner, target: u64) {
    let entries = inner.entries.iter();
    let candidates = entries
        .map(|(k, e)| (e.last_used.load(Ordering::Relaxed), *k, e.cost()))
        .collect();
    let (victims, freed) =
        eviction::least_recently_used(candidates, inner.bytes.saturating_sub(target));
    for key in victims {
        inner.entries.remove(&key);
    }
    inner.bytes -= freed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ResponseHead;
    use std::time::SystemTime;

    fn meta() -> Arc<ResponseMeta> {
        Arc::new(ResponseMeta {
            head: ResponseHead::new(200),
            request_time: SystemTime::UNIX_EPOCH,
            response_time: SystemTime::UNIX_EPOCH,
            vary_values: Vec::new(),
        })
    }

    fn fresh() -> Arc<StoredFreshness> {
        let m = meta();
        Arc::new(StoredFreshness::of(
            &m.head,
            m.request_time,
            m.response_time,
        ))
    }

    #[test]
    fn stays_within_its_budget_and_keeps_recently_used_entries() {
        let tier = MemoryTier::new(64 * 1024);
        let keys: Vec<Key> = (0..40)
            .map(|i| Key::for_url(&format!("http://e/{i}")))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            // Twice: once the tier is full, a body gets in on its second offer (the doorkeeper).
            for _ in 0..2 {
                tier.insert(*key, "u", meta(), fresh(), vec![0u8; 4096].into());
            }
            // Keep the first entry hot.
            assert!(tier.get(&keys[0]).is_some(), "after {i} inserts");
        }
        assert!(tier.inner().bytes <= 64 * 1024);
        assert!(tier.get(&keys[39]).is_some());
        assert!(tier.get(&keys[1]).is_none());
        tier.remove(&keys[0]);
        assert!(tier.get(&keys[0]).is_none());
        let off = MemoryTier::new(0);
        off.insert(keys[0], "u", meta(), fresh(), vec![1u8].into());
        assert!(off.get(&keys[0]).is_none());
    }

    #[test]
    fn a_full_tier_takes_a_body_on_its_second_offer_only() {
        let tier = MemoryTier::new(16 * 1024);
        let key = |i: usize| Key::for_url(&format!("http://e/{i}"));
        let mut i = 0;
        while !tier.is_full() && i < 100 {
            tier.insert(key(i), "u", meta(), fresh(), vec![0u8; 1024].into());
            assert!(tier.get(&key(i)).is_some(), "room: in on the first offer");
            i += 1;
        }
        assert!(tier.is_full());
        let late = key(1000);
        tier.insert(late, "u", meta(), fresh(), vec![0u8; 1024].into());
        assert!(tier.get(&late).is_none(), "full: not on the first offer");
        tier.insert(late, "u", meta(), fresh(), vec![0u8; 1024].into());
        assert!(tier.get(&late).is_some(), "in on the second");
        assert!(tier.inner().bytes <= 16 * 1024);
    }

    #[test]
    fn regression_a_body_read_before_a_purge_does_not_come_back_from_memory() {
        let tier = MemoryTier::new(64 * 1024);
        let key = Key::for_url("http://e/");
        let seen = tier.removals();
        tier.remove(&key); // the purge, while the body was being read from its file
        tier.insert_unless_removed(Some(seen), key, "u", meta(), fresh(), vec![1u8].into());
        assert!(tier.get(&key).is_none());
        tier.insert_unless_removed(
            Some(tier.removals()),
            key,
            "u",
            meta(),
            fresh(),
            vec![1u8].into(),
        );
        assert!(tier.get(&key).is_some());
        tier.clear();
        assert!(tier.get(&key).is_none());
        assert_eq!(tier.inner().bytes, 0);
    }
}
