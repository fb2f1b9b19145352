//! Requests counted by destination host, for the status page's ten busiest hosts. The table is
//! bounded: once it holds [`MAX_HOSTS`] names, new hosts are counted together as `(other)`, so a
//! client walking random host names cannot grow it without limit.

use crate::runtime::Mutex;
use std::collections::HashMap;

/// Distinct host names tracked before the rest are lumped together.
pub const MAX_HOSTS: usize = 10_000;
/// The name new hosts are counted under once the table is full.
pub const OTHER: &str = "(other)";

#[derive(Default)]
pub struct HostCounts {
    counts: Mutex<HashMap<String, u64>>,
}

impl HostCounts {
    /// Counts one request to `host` (compared without case).
    pub fn count(&self, host: &str) {
        let host = host.to_ascii_lowercase();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&host) {
            *n += 1;
        } else if counts.len() < MAX_HOSTS {
            counts.insert(host, 1);
        } else {
            *counts.entry(OTHER.to_string()).or_default() += 1;
        }
    }

    /// The `n` hosts with the most requests, most first (ties by name).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(String, u64)> = counts.iter().map(|(h, c)| (h.clone(), *c)).collect();
        drop(counts);
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_hosts_are_ordered_by_count_and_the_table_is_bounded() {
        let hosts = HostCounts::default();
        for _ in 0..3 {
            hosts.count("b.test");
        }
        hosts.count("A.test");
        hosts.count("a.test");
        assert_eq!(hosts.top(1), [("b.test".to_string(), 3)]);
        assert_eq!(hosts.top(5)[1], ("a.test".to_string(), 2));
        for i in 0..MAX_HOSTS + 5 {
            hosts.count(&format!("h{i}.test"));
        }
        let top = hosts.top(1);
        assert_eq!(top[0], (OTHER.to_string(), 7));
    }
}
