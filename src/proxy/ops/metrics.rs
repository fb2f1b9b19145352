//! Counters for the status page and `/metrics`, and the access log entry (its line formats are
//! `logline`'s).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How a request was handled: the word in the access log and a label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache without asking the origin.
    Hit,
    /// Fetched from the origin (and stored if allowed).
    Miss,
    /// A stale entry the origin confirmed with 304.
    Revalidated,
    /// Read from an entry another request was fetching and storing (read-while-writing).
    Collapsed,
    /// Forwarded without the cache being involved (uncacheable method, caching off).
    Pass,
    /// A CONNECT tunnel.
    Tunnel,
    /// A CONNECT whose TLS Porter terminated (`--intercept`); its requests are logged one by one.
    Intercept,
    /// Refused by an access rule.
    Denied,
    /// Answered by the proxy itself (status page, metrics, PAC file).
    Local,
    /// Failed: a malformed request or an origin error.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 10] = [
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Revalidated,
        Outcome::Collapsed,
        Outcome::Pass,
        Outcome::Tunnel,
        Outcome::Intercept,
        Outcome::Denied,
        Outcome::Local,
        Outcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Revalidated => "REVALIDATED",
            Outcome::Collapsed => "COLLAPSED",
            Outcome::Pass => "PASS",
            Outcome::Tunnel => "TUNNEL",
            Outcome::Intercept => "INTERCEPT",
            Outcome::Denied => "DENIED",
            Outcome::Local => "LOCAL",
            Outcome::Error => "ERROR",
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

/// Process-wide request counters.
#[derive(Default)]
pub struct Metrics {
    by_outcome: [AtomicU64; Outcome::ALL.len()],
    bytes_by_outcome: [AtomicU64; Outcome::ALL.len()],
    bytes_out: AtomicU64,
    /// Requests by destination host, for the status page's busiest hosts.
    pub hosts: super::hosts::HostCounts,
    /// Bytes from cache and upstream by ecosystem and host.
    pub savings: super::savings::Savings,
}

impl Metrics {
    pub fn record(&self, outcome: Outcome, bytes: u64) {
        self.by_outcome[outcome.index()].fetch_add(1, Ordering::Relaxed);
        self.bytes_by_outcome[outcome.index()].fetch_add(bytes, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes sent to clients for requests with this outcome.
    pub fn bytes(&self, outcome: Outcome) -> u64 {
        self.bytes_by_outcome[outcome.index()].load(Ordering::Relaxed)
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.by_outcome[outcome.index()].load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.by_outcome
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
}

/// One access-log line, filled in as the request is handled and written when it ends.
pub struct AccessEntry {
    pub start: Instant,
    pub client: SocketAddr,
    pub method: String,
    pub url: String,
    pub status: u16,
    pub bytes: u64,
    pub outcome: Outcome,
    /// The proxy user, when proxy authentication admitted the request.
    pub user: Option<String>,
    /// The response's Content-Type, when it had one.
    pub content_type: Option<String>,
    /// Why the cache did what it did, when there is more to say (Cache-Status `detail`).
    pub detail: Option<&'static str>,
    /// The parent proxy the request went through (`--parent`), as `host:port`.
    pub parent: Option<String>,
}

impl AccessEntry {
    pub fn new(client: SocketAddr, method: &str, url: &str) -> Self {
        AccessEntry {
            start: Instant::now(),
            client,
            method: method.to_string(),
            url: url.to_string(),
            status: 0,
            bytes: 0,
            outcome: Outcome::Error,
            user: None,
            content_type: None,
            detail: None,
            parent: None,
        }
    }

    /// Counts the request and queues its line for the access log.
    pub fn finish(&self, metrics: &Metrics) {
        metrics.record(self.outcome, self.bytes);
        let host = super::logline::host_of(&self.url);
        if super::hosts::counts_toward_hosts(self.outcome)
            && let Some(host) = host
        {
            metrics.hosts.count(host);
        }
        metrics
            .savings
            .record(&self.url, host, self.outcome, self.bytes);
        if crate::access_log::enabled() {
            let (format, query) = crate::access_log::format();
            crate::access_log::write(super::logline::format(self, format, query));
        }
    }
}
