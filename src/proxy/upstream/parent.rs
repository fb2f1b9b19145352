//! Parent proxies (`--parent HOST:PORT`, repeatable, in order of preference): what they are, which
//! requests go to them, and which are up. The dialling itself lives in `route.rs`.
//!
//! A request whose host is not a `--direct-host` goes to the first parent that is not marked down.
//! A parent that refuses a connection or times out is marked down for [`DOWN_FOR`] and the next one
//! is tried; when none is left, `--parent-fallback` decides between going direct and a 502 that names
//! the parents. Like Squid's `cache_peer ... parent` with `default`, and like Squid the access log
//! says `FIRSTUP_PARENT/host:port`.
//!
//! ```text
//!  route(host) ─┬─ no parents, or a --direct-host ─> Direct
//!               └─ Parents ─> up_parents() in order ─┬─ one answers ─> mark_up, done
//!                                                    ├─ refused / timed out ─> mark_down, next
//!                                                    └─ none left ─> Fallback::Direct | Fallback::Fail (502)
//! ```

use crate::runtime::Mutex;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::http::authority::{self, AuthorityError, DefaultPort};
use crate::net::acl::HostPattern;

/// How long a parent that failed is skipped before it is tried again.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// One `--parent HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentAddr {
    pub host: String,
    pub port: u16,
}

impl FromStr for ParentAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = authority::parse(text).map_err(|e| {
            let why = match e {
                AuthorityError::MissingPort => "no port",
                AuthorityError::BadPort => "the port is not 1 to 65535",
                AuthorityError::BadHost => "not a host name or address",
            };
            format!("wants HOST:PORT, not {text:?}: {why}")
        })?;
        Ok(ParentAddr { host, port })
    }
}

impl fmt::Display for ParentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&authority::format(&self.host, self.port, DefaultPort::Keep))
    }
}

/// What to do when every parent is down (`--parent-fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Answer 502, naming the parents: the network allows no other way out.
    #[default]
    Fail,
    /// Fetch from the origin directly.
    Direct,
}

impl FromStr for Fallback {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "fail" => Ok(Fallback::Fail),
            "direct" => Ok(Fallback::Direct),
            other => Err(format!(
                "--parent-fallback is direct or fail, not {other:?}"
            )),
        }
    }
}

/// The parent-proxy part of the configuration.
#[derive(Clone, Default)]
pub struct ParentConfig {
    /// In order of preference.
    pub parents: Vec<ParentAddr>,
    /// The `Proxy-Authorization` value sent to parents (`--parent-auth`); never logged.
    pub auth: Option<String>,
    pub fallback: Fallback,
    /// Hosts always fetched directly.
    pub direct_hosts: Vec<HostPattern>,
}

/// `--parent-auth USER:PASSWORD`, held as the Basic `Proxy-Authorization` value; never printed.
#[derive(Clone)]
pub struct ParentAuth(pub String);

impl FromStr for ParentAuth {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            Some((user, _)) if !user.is_empty() => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                Ok(ParentAuth(format!("Basic {encoded}")))
            }
            _ => Err("--parent-auth wants USER:PASSWORD".to_string()),
        }
    }
}

impl fmt::Debug for ParentAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParentAuth(<redacted>)")
    }
}

impl fmt::Debug for ParentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParentConfig")
            .field("parents", &self.parents)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("fallback", &self.fallback)
            .field("direct_hosts", &self.direct_hosts)
            .finish()
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    Parents,
}

/// A metric family of `metrics_text`: name, kind, help, and the value for each parent.
type Family<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(usize) -> u64);

/// The parents with their health and use counts, shared by every worker.
pub struct Parents {
    pub config: ParentConfig,
    down_until: Vec<Mutex<Option<Instant>>>,
    requests: Vec<AtomicU64>,
    failures: Vec<AtomicU64>,
}

impl Parents {
    pub fn new(config: ParentConfig) -> Parents {
        let n = config.parents.len();
        Parents {
            config,
            down_until: (0..n).map(|_| Mutex::new(None)).collect(),
            requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
            failures: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn route(&self, host: &str) -> Route {
        if self.config.parents.is_empty()
            || self.config.direct_hosts.iter().any(|p| p.matches(host))
        {
            Route::Direct
        } else {
            Route::Parents
        }
    }

    pub fn addr(&self, index: usize) -> &ParentAddr {
        &self.config.parents[index]
    }

    /// Indexes of the parents not marked down, in order of preference.
    pub fn up_parents(&self, now: Instant) -> Vec<usize> {
        (0..self.config.parents.len())
            .filter(|&i| !self.is_down(i, now))
            .collect()
    }

    fn is_down(&self, index: usize, now: Instant) -> bool {
        let until = self.down_until[index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| now < t)
    }

    pub fn mark_down(&self, index: usize, why: &dyn fmt::Display) {
        self.failures[index].fetch_add(1, Ordering::Relaxed);
        let mut until = self.down_until[index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if until.is_none_or(|t| t <= Instant::now()) {
            log::warn!(
                "parent {} marked down for {}s: {why}",
                self.addr(index),
                DOWN_FOR.as_secs()
            );
        }
        *until = Some(Instant::now() + DOWN_FOR);
    }

    pub fn mark_used(&self, index: usize) {
        self.requests[index].fetch_add(1, Ordering::Relaxed);
        let mut until = self.down_until[index]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if until.take().is_some() {
            log::info!("parent {} is up again", self.addr(index));
        }
    }

    /// The names of every parent, for an error page.
    pub fn names(&self) -> String {
        let names: Vec<String> = self.config.parents.iter().map(|p| p.to_string()).collect();
        names.join(", ")
    }

    /// Prometheus lines: requests sent to each parent, failures, and whether it is up.
    pub fn metrics_text(&self) -> String {
        if self.config.parents.is_empty() {
            return String::new();
        }
        let now = Instant::now();
        let mut out = String::new();
        let families: [Family<'_>; 3] = [
            (
                "porter_parent_requests_total",
                "counter",
                "Requests and tunnels sent through each parent proxy.",
                &|i| self.requests[i].load(Ordering::Relaxed),
            ),
            (
                "porter_parent_failures_total",
                "counter",
                "Connections to each parent proxy that were refused or timed out.",
                &|i| self.failures[i].load(Ordering::Relaxed),
            ),
            (
                "porter_parent_up",
                "gauge",
                "Whether each parent proxy is in use (1) or marked down (0).",
                &|i| u64::from(!self.is_down(i, now)),
            ),
        ];
        for (name, kind, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (i, parent) in self.config.parents.iter().enumerate() {
                out.push_str(&format!("{name}{{parent=\"{parent}\"}} {}\n", value(i)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parents(list: &[&str], direct: &[&str]) -> Parents {
        Parents::new(ParentConfig {
            parents: list.iter().map(|p| p.parse().unwrap()).collect(),
            direct_hosts: direct.iter().map(|p| p.parse().unwrap()).collect(),
            ..ParentConfig::default()
        })
    }

    #[test]
    fn direct_hosts_and_no_parents_route_direct() {
        let set = parents(&["10.0.0.1:3128"], &["*.intranet.example", "build.local"]);
        assert_eq!(set.route("example.com"), Route::Parents);
        assert_eq!(set.route("wiki.intranet.example"), Route::Direct);
        assert_eq!(set.route("build.local"), Route::Direct);
        assert_eq!(parents(&[], &[]).route("example.com"), Route::Direct);
    }

    #[test]
    fn a_parent_marked_down_is_skipped_until_it_is_used_again() {
        let set = parents(&["10.0.0.1:3128", "[::1]:8080"], &[]);
        let now = Instant::now();
        assert_eq!(set.up_parents(now), vec![0, 1]);
        set.mark_down(0, &"connection refused");
        assert_eq!(set.up_parents(Instant::now()), vec![1]);
        assert_eq!(set.up_parents(Instant::now() + DOWN_FOR * 2), vec![0, 1]);
        set.mark_used(0);
        assert_eq!(set.up_parents(Instant::now()), vec![0, 1]);
        assert_eq!(set.names(), "10.0.0.1:3128, [::1]:8080");
        let text = set.metrics_text();
        assert!(text.contains("porter_parent_failures_total{parent=\"10.0.0.1:3128\"} 1"));
        assert!(text.contains("porter_parent_up{parent=\"[::1]:8080\"} 1"));
    }

    #[test]
    fn flags_are_checked_and_credentials_not_shown() {
        assert!("no-port".parse::<ParentAddr>().is_err());
        assert_eq!("direct".parse(), Ok(Fallback::Direct));
        assert!("sometimes".parse::<Fallback>().is_err());
        let auth = "team:s3cret".parse::<ParentAuth>().unwrap();
        assert!(!format!("{auth:?}").contains("dGVhbT"));
        let auth = auth.0;
        assert_eq!(auth, "Basic dGVhbTpzM2NyZXQ=");
        assert!("nocolon".parse::<ParentAuth>().is_err());
        let config = ParentConfig {
            auth: Some(auth),
            ..ParentConfig::default()
        };
        assert!(!format!("{config:?}").contains("dGVhbT"));
    }
}
