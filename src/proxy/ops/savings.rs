//! What the cache saved: bytes sent to clients from the cache and from upstream, per package
//! ecosystem ([`ecosystem_of`]) and per host, for `/metrics`
//! (`porter_ecosystem_bytes_total{ecosystem,source}`, `porter_host_bytes_total{host,source}`) and the
//! status page's "Bytes by ecosystem" table.
//!
//! A request counts as served from the cache when its body came from storage: a hit (fresh, by a
//! rule, stale-while-revalidate), a 304-revalidated entry, or a collapsed request that read another's
//! entry as it was written. A miss or a pass counts as upstream. Tunnels, refusals, the proxy's own
//! pages and failures count for neither. The bytes are what the client was sent, head included.
//!
//! Host labels are bounded as the TLS distrust counters are (src/tls/distrust.rs): the first
//! [`MAX_HOSTS`] hosts keep their own label, the rest are folded into `(other)`, so a client cannot
//! grow `/metrics` without bound by asking for many names.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};

use super::metrics::Outcome;
use crate::cache::ecosystem::{Ecosystem, ecosystem_of};
use crate::fnv::Fnv1a;
use crate::runtime::RwLock;

/// Host labels kept apart; further hosts are counted as [`OTHER_HOSTS`].
pub const MAX_HOSTS: usize = 64;
/// The label that hosts beyond [`MAX_HOSTS`] are counted under.
pub const OTHER_HOSTS: &str = "(other)";

/// Where the bytes of a response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Upstream,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Cache, Source::Upstream];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Upstream => "upstream",
        }
    }

    /// Where a request with this outcome got its body; `None` for what is neither (a tunnel, a
    /// refusal, the proxy's own pages, a failure).
    pub fn of(outcome: Outcome) -> Option<Source> {
        match outcome {
            Outcome::Hit | Outcome::Revalidated | Outcome::Collapsed => Some(Source::Cache),
            Outcome::Miss | Outcome::Pass => Some(Source::Upstream),
            Outcome::Tunnel
            | Outcome::Intercept
            | Outcome::Denied
            | Outcome::Local
            | Outcome::Error => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Bytes by ecosystem and by host, each from cache and from upstream.
///
/// Every request ends here, so counting takes no lock a writer holds: the counters are atomics, and
/// a host's slot is found under a read lock (taken for writing only the first time a host is seen,
/// at most [`MAX_HOSTS`] times in the process's life).
pub struct Savings {
    ecosystems: [[AtomicU64; 2]; Ecosystem::ALL.len()],
    /// Each host's slot in `host_bytes`, in the order they were first seen.
    slots: RwLock<HashMap<Box<str>, usize, BuildHasherDefault<Fnv1a>>>,
    host_bytes: [[AtomicU64; 2]; MAX_HOSTS],
    /// Hosts beyond [`MAX_HOSTS`].
    other: [AtomicU64; 2],
}

impl Default for Savings {
    fn default() -> Savings {
        Savings {
            ecosystems: Default::default(),
            slots: RwLock::new(HashMap::default()),
            host_bytes: std::array::from_fn(|_| Default::default()),
            other: Default::default(),
        }
    }
}

impl Savings {
    /// Counts `bytes` sent for `url` with `outcome`; outcomes of neither source are not counted.
    pub fn record(&self, url: &str, host: Option<&str>, outcome: Outcome, bytes: u64) {
        let Some(source) = Source::of(outcome) else {
            return;
        };
        let eco = ecosystem_of(url);
        self.ecosystems[eco.index()][source.index()].fetch_add(bytes, Ordering::Relaxed);
        let Some(host) = host else {
            return;
        };
        // Host names in URLs are mostly lower case already: no copy for those.
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let counter = match self.slot(host) {
            Some(slot) => &self.host_bytes[slot],
            None => &self.other,
        };
        counter[source.index()].fetch_add(bytes, Ordering::Relaxed);
    }

    /// The slot of `host`, given one if there is room; `None` once [`MAX_HOSTS`] are taken.
    fn slot(&self, host: &str) -> Option<usize> {
        let known = self.slots.read().unwrap_or_else(|e| e.into_inner());
        if let Some(&slot) = known.get(host) {
            return Some(slot);
        }
        if known.len() >= MAX_HOSTS {
            return None;
        }
        drop(known);
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let next = slots.len();
        match slots.get(host) {
            Some(&slot) => Some(slot),
            None if next < MAX_HOSTS => {
                slots.insert(host.into(), next);
                Some(next)
            }
            None => None,
        }
    }

    /// Bytes of `ecosystem` from `source`.
    pub fn ecosystem_bytes(&self, ecosystem: Ecosystem, source: Source) -> u64 {
        self.ecosystems[ecosystem.index()][source.index()].load(Ordering::Relaxed)
    }

    /// `(host, cache bytes, upstream bytes)`, sorted by host, `(other)` last when it has any.
    pub fn by_host(&self) -> Vec<(String, u64, u64)> {
        let load = |counter: &[AtomicU64; 2]| {
            (
                counter[0].load(Ordering::Relaxed),
                counter[1].load(Ordering::Relaxed),
            )
        };
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(String, u64, u64)> = slots
            .iter()
            .map(|(host, &slot)| {
                let (cache, upstream) = load(&self.host_bytes[slot]);
                (host.to_string(), cache, upstream)
            })
            .collect();
        rows.sort();
        let (cache, upstream) = load(&self.other);
        if (cache, upstream) != (0, 0) {
            rows.push((OTHER_HOSTS.to_string(), cache, upstream));
        }
        rows
    }

    /// The two `/metrics` families.
    pub fn metrics_text(&self, out: &mut String) {
        out.push_str(
            "# HELP porter_ecosystem_bytes_total Bytes sent to clients, by package ecosystem and by where they came from (cache or upstream).\n\
             # TYPE porter_ecosystem_bytes_total counter\n",
        );
        for eco in Ecosystem::ALL {
            for source in Source::ALL {
                let _ = writeln!(
                    out,
                    "porter_ecosystem_bytes_total{{ecosystem=\"{}\",source=\"{}\"}} {}",
                    eco.as_str(),
                    source.as_str(),
                    self.ecosystem_bytes(eco, source)
                );
            }
        }
        out.push_str(&format!(
            "# HELP porter_host_bytes_total Bytes sent to clients, by origin host (at most {MAX_HOSTS}, then {OTHER_HOSTS}) and by where they came from.\n\
             # TYPE porter_host_bytes_total counter\n"
        ));
        for (host, cache, upstream) in self.by_host() {
            let host = label_value(&host);
            let _ = writeln!(
                out,
                "porter_host_bytes_total{{host=\"{host}\",source=\"cache\"}} {cache}\n\
                 porter_host_bytes_total{{host=\"{host}\",source=\"upstream\"}} {upstream}"
            );
        }
    }
}

/// A label value as the Prometheus text format wants it: `\`, `"` and newlines escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_by_ecosystem_and_source() {
        let s = Savings::default();
        let tgz = "http://r.test/a/-/a-1.0.0.tgz";
        s.record(tgz, Some("r.test"), Outcome::Miss, 100);
        s.record(tgz, Some("r.test"), Outcome::Hit, 100);
        s.record(tgz, Some("r.test"), Outcome::Collapsed, 5);
        s.record(tgz, Some("r.test"), Outcome::Tunnel, 1_000);
        s.record("http://x.test/", Some("X.test"), Outcome::Revalidated, 7);
        assert_eq!(s.ecosystem_bytes(Ecosystem::Npm, Source::Upstream), 100);
        assert_eq!(s.ecosystem_bytes(Ecosystem::Npm, Source::Cache), 105);
        assert_eq!(s.ecosystem_bytes(Ecosystem::Other, Source::Cache), 7);
        assert_eq!(
            s.by_host(),
            vec![
                ("r.test".to_string(), 105, 100),
                ("x.test".to_string(), 7, 0)
            ]
        );
        let mut text = String::new();
        s.metrics_text(&mut text);
        assert!(
            text.contains("porter_ecosystem_bytes_total{ecosystem=\"npm\",source=\"cache\"} 105\n")
        );
        assert!(
            text.contains("porter_host_bytes_total{host=\"r.test\",source=\"upstream\"} 100\n")
        );
    }

    #[test]
    fn hosts_beyond_the_limit_share_one_label() {
        let s = Savings::default();
        for i in 0..MAX_HOSTS + 10 {
            let host = format!("h{i}.test");
            s.record(&format!("http://{host}/"), Some(&host), Outcome::Miss, 1);
        }
        let rows = s.by_host();
        assert_eq!(rows.len(), MAX_HOSTS + 1);
        assert_eq!(rows.last().unwrap(), &(OTHER_HOSTS.to_string(), 0, 10));
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
