//! Requests counted by destination host, for the status page's ten busiest hosts.
//!
//! Only forwarded requests count ([`counts_toward_hosts`]): ones served from the cache or an origin
//! for a real destination, not a rejected request or a PURGE, so a client sending junk host names
//! cannot fill the table or push real hosts out of it.
//!
//! The table is the space-saving top-k summary (Metwally, Agrawal and El Abbadi, "Efficient
//! computation of frequent and top-k elements in data streams", 2005): at most [`MAX_HOSTS`] names,
//! each at most [`MAX_HOST_LEN`] bytes, so its memory is bounded whatever the traffic (about
//! 1,024 x 300 bytes). A new host when the table is full takes the place of the host with the
//! fewest requests and inherits that count as its possible overcount (`error`). The page ranks and
//! shows the guaranteed count (`count - error`): a host with more than 1/[`MAX_HOSTS`] of the
//! requests is never evicted, and a flood of one-off names shows as ones, below the real hosts.

use crate::runtime::Mutex;
use std::collections::HashMap;

use super::metrics::Outcome;

/// Host names tracked at most.
pub const MAX_HOSTS: usize = 1024;
/// The longest host name kept (the longest DNS name, RFC 1035 section 2.3.4); longer ones are cut.
pub const MAX_HOST_LEN: usize = 253;

/// Whether a request with this outcome counts toward the busiest hosts: it was forwarded (to an
/// origin, through a tunnel, or answered from the cache), not refused, failed or answered by the
/// proxy itself (its pages, PURGE).
pub fn counts_toward_hosts(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Hit
        | Outcome::Miss
        | Outcome::Revalidated
        | Outcome::Collapsed
        | Outcome::Pass
        | Outcome::Tunnel
        | Outcome::Intercept => true,
        Outcome::Denied | Outcome::Local | Outcome::Error => false,
    }
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    /// Requests counted, including the inherited `error`.
    count: u64,
    /// The count of the host this one replaced: how much `count` may overstate.
    error: u64,
}

#[derive(Default)]
pub struct HostCounts {
    counts: Mutex<HashMap<String, Counter>>,
}

/// `host` in lower case, cut to [`MAX_HOST_LEN`] bytes on a character boundary.
fn normalise(host: &str) -> String {
    let mut end = host.len().min(MAX_HOST_LEN);
    while !host.is_char_boundary(end) {
        end -= 1;
    }
    host[..end].to_ascii_lowercase()
}

impl HostCounts {
    /// Counts one request to `host` (compared without case).
    pub fn count(&self, host: &str) {
        let host = normalise(host);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(&host) {
            c.count += 1;
            return;
        }
        if counts.len() < MAX_HOSTS {
            counts.insert(host, Counter { count: 1, error: 0 });
            return;
        }
        // Full: the least counted host makes way (a linear scan of a fixed, small table).
        let Some((victim, least)) = counts
            .iter()
            .min_by_key(|(_, c)| c.count)
            .map(|(h, c)| (h.clone(), c.count))
        else {
            return;
        };
        counts.remove(&victim);
        counts.insert(
            host,
            Counter {
                count: least + 1,
                error: least,
            },
        );
    }

    /// The `n` hosts with the most requests that are certain, most first (ties by name).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(&String, u64)> =
            counts.iter().map(|(h, c)| (h, c.count - c.error)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.truncate(n);
        all.into_iter().map(|(h, c)| (h.clone(), c)).collect()
    }

    /// Host names held now (at most [`MAX_HOSTS`]).
    pub fn len(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_hosts_are_ordered_by_count() {
        let hosts = HostCounts::default();
        for _ in 0..3 {
            hosts.count("b.test");
        }
        hosts.count("A.test");
        hosts.count("a.test");
        assert_eq!(hosts.top(1), [("b.test".to_string(), 3)]);
        assert_eq!(hosts.top(5)[1], ("a.test".to_string(), 2));
    }

    #[test]
    fn a_flood_of_one_off_names_stays_bounded_and_below_the_real_hosts() {
        let hosts = HostCounts::default();
        let junk = "x".repeat(1024);
        for i in 0..10_000 {
            if i % 50 == 0 {
                hosts.count("real.test");
            }
            hosts.count(&format!("{i}{junk}"));
        }
        assert_eq!(hosts.len(), MAX_HOSTS);
        let top = hosts.top(10);
        assert_eq!(top[0], ("real.test".to_string(), 200));
        assert!(
            top[1..]
                .iter()
                .all(|(h, n)| *n <= 1 && h.len() <= MAX_HOST_LEN)
        );
        let memory: usize = hosts.counts.lock().unwrap().keys().map(String::len).sum();
        assert!(memory <= MAX_HOSTS * MAX_HOST_LEN);
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let hosts = HostCounts::default();
        hosts.count(&"é".repeat(200));
        let (name, _) = &hosts.top(1)[0];
        assert_eq!(name.len(), 252);
    }

    #[test]
    fn only_forwarded_outcomes_count() {
        assert!(counts_toward_hosts(Outcome::Hit) && counts_toward_hosts(Outcome::Miss));
        assert!(!counts_toward_hosts(Outcome::Denied));
        assert!(!counts_toward_hosts(Outcome::Local));
        assert!(!counts_toward_hosts(Outcome::Error));
    }
}
