//! Which entries make room: the least recently used first, until the bytes asked for are freed.
//! One choice for the disk store's size limit (`store.rs`), its full-disk retry (`store/writer.rs`)
//! and the memory tier (`memory.rs`); each lists its own entries and sizes, says how much it needs,
//! and removes what this picks under its own lock.

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

/// The same choice, each victim with the age it was chosen at, so the caller can leave one that was
/// used since (`store.rs` chooses outside the index's lock).
pub fn least_recently_used_with_age(entries: Vec<Candidate>, bytes: u64) -> Vec<(u64, Key)> {
    choose(entries, bytes)
        .into_iter()
        .map(|(age, key, _)| (age, key))
        .collect()
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
}
