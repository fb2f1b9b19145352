//! Which entries make room: the least recently used first, until the bytes asked for are freed.
//!
//! Two forms of the one choice. [`least_recently_used`] sorts every entry it is given: the memory
//! tier (`memory.rs`) uses it, a few thousand entries at most. The disk store's index
//! (`store/index.rs`) holds up to millions, and sorting them all for every batch of evictions made
//! the CPU a miss cost grow with the cache; it keeps an [`OldestFirst`] queue instead: one pass over
//! the index puts its oldest sixteenth in the queue, sorted, and evictions consume it, so a pass
//! and a sort of a sixteenth pay for a sixteenth of the cache's evictions (about 16 records looked
//! at and a sort step per eviction, whatever the cache's size).
//!
//! The queue's order is exact, not sampled: every entry it left out was newer than all it took (the
//! cut-off), and entries stored or used later are newer still. One it took that was used since is
//! skipped when its turn comes (its record's last use no longer matches), so it stays.
//!
//! ```text
//!   index (any order)  --pass: last use <= cut-off-->  queue, oldest first  --pop-->  evicted
//!        ^  cut-off: the sixteenth-oldest point of a sample of the index          |
//!        +-------------- skipped when its last use changed since -----------------+
//! ```

use std::collections::VecDeque;

use super::key::Key;

/// An entry as eviction sees it: when it was last used (on any clock that only grows), its key and
/// its size in bytes.
pub type Candidate = (u64, Key, u64);

/// The least recently used `entries` whose sizes add up to at least `bytes` (all of them when they
/// hold less, none for 0), oldest first, and the bytes they free. Equal ages go by key, so the
/// choice does not depend on the order the entries were listed in.
pub fn least_recently_used(entries: Vec<Candidate>, bytes: u64) -> (Vec<Key>, u64) {
    let chosen = choose(entries, bytes);
    let freed = chosen.iter().map(|c| c.2).sum();
    (chosen.into_iter().map(|c| c.1).collect(), freed)
}

fn choose(mut entries: Vec<Candidate>, bytes: u64) -> Vec<Candidate> {
    entries.sort_unstable();
    let mut freed = 0u64;
    let count = entries
        .iter()
        .take_while(|c| {
            let more = freed < bytes;
            freed += c.2;
            more
        })
        .count();
    entries.truncate(count);
    entries
}

/// How many entries the cut-off of a refill is read from: the first this many the index lists,
/// which for a hash map is a sample unrelated to age.
const SAMPLE: usize = 1024;
/// The least share of the entries a refill takes.
const LEAST_SHARE: f64 = 1.0 / 16.0;

/// The oldest entries of a large set, oldest first, each with its last use (a `u32` clock, as the
/// disk index keeps it) when it was taken. See the module's doc.
#[derive(Default)]
pub struct OldestFirst {
    queue: VecDeque<(u32, Key)>,
}

impl OldestFirst {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next oldest entry and its last use when it was taken.
    pub fn pop(&mut self) -> Option<(u32, Key)> {
        self.queue.pop_front()
    }

    /// Forgets the queue (its last uses no longer mean what they did: the clock was renumbered).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.queue.shrink_to_fit();
    }

    /// Refills the queue from `entries` (every entry with its last use; listed twice, once for the
    /// sample and once for the pass) with the oldest `share` of them or more, at least a sixteenth:
    /// every entry at least as old as the cut-off read from a sample, sorted oldest first.
    pub fn refill<'a, I>(&mut self, entries: I, share: f64)
    where
        I: Iterator<Item = (u32, &'a Key)> + Clone,
    {
        let share = share.clamp(LEAST_SHARE, 1.0);
        let mut sample: Vec<u32> = entries.clone().take(SAMPLE).map(|(age, _)| age).collect();
        sample.sort_unstable();
        let cut_off = match sample.len() {
            0 => return,
            n if share >= 1.0 || n < SAMPLE => u32::MAX,
            n => sample[((n as f64 * share).ceil() as usize).clamp(1, n) - 1],
        };
        self.queue.clear();
        self.queue.extend(
            entries
                .filter(|(age, _)| *age <= cut_off)
                .map(|(age, key)| (age, *key)),
        );
        self.queue.make_contiguous().sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key::for_url(&format!("http://example.com/{n}"))
    }

    #[test]
    fn the_oldest_go_first_until_enough_is_freed() {
        let entries = vec![(30, key(3), 100), (10, key(1), 100), (20, key(2), 50)];
        assert_eq!(
            least_recently_used(entries.clone(), 120),
            (vec![key(1), key(2)], 150)
        );
        assert_eq!(least_recently_used(entries.clone(), 0), (vec![], 0));
        assert_eq!(least_recently_used(entries, 1000).1, 250);
    }

    fn keys(n: u32) -> Vec<(u32, Key)> {
        (0..n)
            .map(|i| (i, Key::for_url(&format!("http://example.com/{i}"))))
            .collect()
    }

    #[test]
    fn a_small_set_is_taken_whole_oldest_first() {
        let mut entries = keys(100);
        entries.reverse();
        let mut queue = OldestFirst::default();
        queue.refill(entries.iter().map(|(a, k)| (*a, k)), 0.0);
        assert_eq!(queue.len(), 100);
        let ages: Vec<u32> = std::iter::from_fn(|| queue.pop()).map(|e| e.0).collect();
        assert_eq!(ages, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_large_set_gives_about_its_oldest_sixteenth_and_nothing_newer_than_what_it_left() {
        // Ages shuffled, as a hash map lists them.
        let mut entries = keys(64_000);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..entries.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            entries.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut queue = OldestFirst::default();
        queue.refill(entries.iter().map(|(a, k)| (*a, k)), 0.0);
        let taken: Vec<(u32, Key)> = std::iter::from_fn(|| queue.pop()).collect();
        assert!(
            (2_000..=8_000).contains(&taken.len()),
            "a sixteenth of 64,000 is 4,000; took {}",
            taken.len()
        );
        // Exactly the oldest ones, in order: ages 0, 1, 2... with none missing.
        let ages: Vec<u32> = taken.iter().map(|e| e.0).collect();
        assert_eq!(ages, (0..taken.len() as u32).collect::<Vec<_>>());
        // A larger share asked for takes more.
        queue.refill(entries.iter().map(|(a, k)| (*a, k)), 0.5);
        assert!((24_000..=40_000).contains(&queue.len()), "{}", queue.len());
        queue.clear();
        assert!(queue.is_empty());
        queue.refill(std::iter::empty(), 1.0);
        assert!(queue.is_empty());
    }
}
