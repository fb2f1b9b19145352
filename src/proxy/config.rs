//! The configuration of `porter proxy`: a plain struct, built and validated by `cli`, whose flag
//! definitions hold the one copy of the defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::auth;
use super::flow::forwarded_for::ForwardedFor;
use super::upstream::allow::AllowRules;
use super::upstream::parent::ParentConfig;
use crate::cache::digest::name::DigestRules;
use crate::cache::policy::RefreshRules;
use crate::net::ServerConfig;
use crate::net::acl::{Cidr, HostPattern};

/// Everything `porter proxy` is configured with. Built by `cli`, validated there, then shared.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The listener, worker pool, connection caps and client timeouts; `server.allow` lists the
    /// client networks allowed to use the proxy.
    pub server: ServerConfig,
    /// Destination hosts refused with 403.
    pub deny_hosts: Vec<HostPattern>,
    /// Destination networks refused with 403, checked against each resolved address before connecting.
    pub deny_dests: Vec<Cidr>,
    /// `--allow-host` and `--allow-dest`: when either is set, every other destination gets 403.
    pub allow: AllowRules,
    /// Ports CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// Basic proxy credentials; empty means no authentication.
    pub auth: auth::Credentials,
    /// Who may PURGE (`--purge-allow`, `--purge-user`); by default no one.
    pub purge: super::ops::purge::PurgeRules,
    pub origin_timeout: Duration,
    pub tunnel_idle_timeout: Duration,
    /// Cache folder; `None` turns caching off.
    pub cache_dir: Option<PathBuf>,
    pub cache_size: u64,
    pub max_object_size: u64,
    pub memory_cache_size: u64,
    /// Threads for the cache's disk work (`--disk-threads`); 0 does it on the workers.
    pub disk_threads: usize,
    /// Where access lines go and how they look.
    pub log: crate::access_log::LogSettings,
    /// Whether forwarded messages carry `Via` (loops are detected either way).
    pub via: bool,
    /// What forwarded requests' `X-Forwarded-For` says about the client (`--forwarded-for`).
    pub forwarded_for: ForwardedFor,
    /// How long past expiry a stored response may stand in for a failing origin when it does not say
    /// (RFC 5861 §4); zero turns that default off.
    pub stale_if_error: Duration,
    /// Freshness for responses that state none: `--refresh` rules, then the presets' rules.
    pub refresh: RefreshRules,
    /// `--digest-url` rules: URLs stored by the digest they name, beside the built-in shapes.
    pub digest_rules: DigestRules,
    /// Parent proxies (`--parent`), their credentials, fallback and direct hosts.
    pub parents: ParentConfig,
    /// Other nodes of the tier (`--pac-peer`), for /proxy.pac to spread hosts over.
    pub pac_peers: Vec<String>,
    /// HTTPS interception; `None` tunnels every CONNECT.
    pub intercept: Option<InterceptConfig>,
}

/// `--intercept` and its flags.
#[derive(Debug, Clone)]
pub struct InterceptConfig {
    /// Folder of the CA (created on first start when empty).
    pub ca_dir: PathBuf,
    /// When not empty, only these hosts are intercepted.
    pub only_hosts: Vec<HostPattern>,
    /// Hosts always tunnelled.
    pub never_hosts: Vec<HostPattern>,
    /// Extra roots for verifying origins, beside the system's.
    pub upstream_ca: Vec<PathBuf>,
    /// `--intercept-fallback tunnel`: how long a client that refused Porter's certificate for a
    /// host has its CONNECTs to that host tunnelled; `None` keeps intercepting (`off`).
    pub fallback_for: Option<std::time::Duration>,
}

impl InterceptConfig {
    /// Whether a CONNECT to `host` is intercepted.
    pub fn covers(&self, host: &str) -> bool {
        !self.never_hosts.iter().any(|p| p.matches(host))
            && (self.only_hosts.is_empty() || self.only_hosts.iter().any(|p| p.matches(host)))
    }
}
