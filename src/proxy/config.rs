//! The configuration of `porter proxy`: a plain struct with defaults, built and validated by `cli`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::auth;
use crate::net::acl::{Cidr, HostPattern};

/// Everything `porter proxy` is configured with. Built by `cli`, validated there, then shared.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub workers: usize,
    /// Accepted connections that may wait for a worker.
    pub queue: usize,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// Client networks allowed to use the proxy.
    pub allow: Vec<Cidr>,
    /// Destination hosts refused with 403.
    pub deny_hosts: Vec<HostPattern>,
    /// Destination networks refused with 403, checked against each resolved address before connecting.
    pub deny_dests: Vec<Cidr>,
    /// Ports CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// Basic proxy credentials; empty means no authentication.
    pub auth: auth::Credentials,
    pub origin_timeout: Duration,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub client_timeout: Duration,
    pub tunnel_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Cache folder; `None` turns caching off.
    pub cache_dir: Option<PathBuf>,
    pub cache_size: u64,
    pub max_object_size: u64,
    pub memory_cache_size: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            workers: 5,
            queue: 1024,
            max_connections: 4096,
            max_connections_per_client: 256,
            allow: Cidr::loopback(),
            deny_hosts: Vec::new(),
            deny_dests: Vec::new(),
            connect_ports: vec![443],
            auth: auth::Credentials::default(),
            origin_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_timeout: Duration::from_secs(30),
            tunnel_idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(10),
            cache_dir: Some(PathBuf::from("cache")),
            cache_size: 1 << 30,
            max_object_size: 256 << 20,
            memory_cache_size: 32 << 20,
        }
    }
}
