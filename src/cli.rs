//! Command-line definitions (clap derive) and their conversion into the plain config structs the
//! subcommands run on. Values are validated here, once, so a bad flag fails before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::net::acl::{Cidr, HostPattern};
use crate::origin::ServeConfig;
use crate::origin::faults::FaultMix;
use crate::origin::limits::LimitConfig;
use crate::proxy::ProxyConfig;
use crate::units::{parse_duration, parse_size};

/// Porter: a forward caching HTTP proxy, with an origin server, a client and an echo tool to try it on.
#[derive(Debug, Parser)]
#[command(name = "porter", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the forward caching proxy (point browsers, `curl -x` or `porter fetch --proxy` at it).
    Proxy(ProxyArgs),
    /// Run the origin web server: files, visitor cookies, bans, the Nth-visit page, a faulty /getbalance.
    Serve(ServeArgs),
}

/// Flags of `porter proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is printed as `listening on ...`.
    #[arg(long, default_value = "127.0.0.1:3128", value_name = "HOST:PORT")]
    pub listen: SocketAddr,

    /// Worker threads serving requests.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,

    /// Accepted connections that may wait for a worker; beyond this new clients get a quick 503.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub queue: usize,

    /// Most open client connections (active, queued and idle together); beyond this new clients get 503.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,

    /// Most open connections from one client address.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections_per_client: usize,

    /// Client networks allowed to use the proxy (repeatable). When given, replaces the default: loopback only.
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// Destination hosts to refuse with 403 (repeatable): an exact host or `*.example.com`.
    #[arg(long = "deny-host", value_name = "PATTERN")]
    pub deny_host: Vec<HostPattern>,

    /// Ports that CONNECT may tunnel to (repeatable).
    #[arg(long = "connect-port", default_values_t = [443u16], value_name = "PORT")]
    pub connect_port: Vec<u16>,

    /// Time to connect to an origin and to wait for each read from it; then 504.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub origin_timeout: Duration,

    /// Time a client has to send a whole request head once it has started one.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub head_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub idle_timeout: Duration,

    /// Time allowed for each read of a request body and each write to a client before giving up on it.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub client_timeout: Duration,

    /// How long an idle CONNECT tunnel (no bytes either way) stays open.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DUR")]
    pub tunnel_idle_timeout: Duration,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub shutdown_grace: Duration,

    /// Folder of the on-disk cache.
    #[arg(long, default_value = "cache", value_name = "DIR")]
    pub cache_dir: PathBuf,

    /// Disk space the cache may use; least recently used entries are evicted beyond it.
    #[arg(long, default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub cache_size: u64,

    /// Largest response body the cache stores; bigger ones are relayed only.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_object_size: u64,

    /// Memory for small, hot cache entries kept in RAM in front of the disk.
    #[arg(long, default_value = "32MiB", value_parser = parse_size, value_name = "SIZE")]
    pub memory_cache_size: u64,

    /// Turn caching off: every request is forwarded.
    #[arg(long)]
    pub no_cache: bool,
}

impl ProxyArgs {
    /// The validated configuration this command line asks for.
    pub fn into_config(self) -> ProxyConfig {
        ProxyConfig {
            listen: self.listen,
            workers: usize::from(self.workers),
            queue: self.queue.max(1),
            max_connections: self.max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.max(1),
            allow: if self.allow.is_empty() {
                Cidr::loopback()
            } else {
                self.allow
            },
            deny_hosts: self.deny_host,
            connect_ports: self.connect_port,
            origin_timeout: self.origin_timeout,
            head_timeout: self.head_timeout,
            idle_timeout: self.idle_timeout,
            client_timeout: self.client_timeout,
            tunnel_idle_timeout: self.tunnel_idle_timeout,
            shutdown_grace: self.shutdown_grace,
            cache_dir: (!self.no_cache).then_some(self.cache_dir),
            cache_size: self.cache_size,
            max_object_size: self.max_object_size,
            memory_cache_size: self.memory_cache_size,
        }
    }
}

/// Flags of `porter serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is printed as `listening on ...`.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub listen: SocketAddr,

    /// Folder whose files are served.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,

    /// File the visitors (cookie ids, visit counts, last visits) are kept in, as JSON.
    #[arg(long, default_value = "cookies.json", value_name = "FILE")]
    pub cookies: PathBuf,

    /// File every /getbalance outcome is appended to, one JSON object a line; /getlogs reads it.
    #[arg(long, default_value = "server.log", value_name = "FILE")]
    pub event_log: PathBuf,

    /// Worker threads serving requests.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1024), value_name = "N")]
    pub workers: u16,

    /// Accepted connections that may wait for a worker; beyond this new clients get a quick 503.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub queue: usize,

    /// Most open client connections (active, queued and idle together); beyond this new clients get 503.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,

    /// Most open connections from one client address.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections_per_client: usize,

    /// Client networks allowed to connect (repeatable). When given, replaces the default: every address.
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// From a client address's Nth request on, `/` answers with a special page; 0 turns it off.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub special_after: u64,

    /// Requests without a visitor cookie that one address may send within --ban-window; the next one
    /// bans it. 0 turns banning off.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub ban_after: u64,

    /// The sliding window of --ban-after and of --new-visitors-per-ip.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub ban_window: Duration,

    /// How long a ban lasts; without it, until the server restarts.
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub ban_for: Option<Duration>,

    /// Requests a visitor with a valid cookie may send in one burst before the address is banned.
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub visitor_burst: u32,

    /// Requests per second a visitor's burst allowance regains.
    #[arg(long, default_value = "3", value_parser = parse_rate, value_name = "PER_SEC")]
    pub visitor_rate: f64,

    /// New visitor cookies one address may get per --ban-window; beyond it, no new cookie.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub new_visitors_per_ip: u32,

    /// Shares of /getbalance outcomes: timeout, 403 and 500 (the rest is 200); `none` turns faults off.
    #[arg(
        long,
        default_value = "timeout=0.2,403=0.2,500=0.1",
        value_name = "SPEC"
    )]
    pub faults: FaultMix,

    /// How long a /getbalance timeout holds the connection before closing it without a response.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DUR")]
    pub fault_delay: Duration,

    /// Seed of the fault sequence, to repeat a run's outcomes; random (and logged) when left out.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// How often changed visitors are written to --cookies (also on SIGINT/SIGTERM).
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub save_every: Duration,

    /// Time a client has to send a whole request head once it has started one.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub head_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub idle_timeout: Duration,

    /// Time allowed for each write to a client before giving up on it.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub client_timeout: Duration,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub shutdown_grace: Duration,
}

impl ServeArgs {
    /// The validated configuration this command line asks for.
    pub fn into_config(self) -> ServeConfig {
        let defaults = ServeConfig::default();
        ServeConfig {
            listen: self.listen,
            root: self.root,
            cookies: self.cookies,
            event_log: self.event_log,
            workers: usize::from(self.workers),
            queue: self.queue.max(1),
            max_connections: self.max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.max(1),
            allow: if self.allow.is_empty() {
                crate::origin::any_address()
            } else {
                self.allow
            },
            special_after: self.special_after,
            limits: LimitConfig {
                ban_after: self.ban_after,
                ban_window: self.ban_window,
                ban_for: self.ban_for,
                visitor_burst: self.visitor_burst,
                visitor_rate: self.visitor_rate,
                new_visitors_per_ip: self.new_visitors_per_ip,
            },
            faults: self.faults,
            fault_delay: self.fault_delay,
            max_held: defaults.max_held,
            seed: self.seed,
            save_every: self.save_every,
            head_timeout: self.head_timeout,
            idle_timeout: self.idle_timeout,
            client_timeout: self.client_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// A duration that is not zero (a zero window or ban would mean nothing).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!("{text:?} must be longer than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A rate per second: a non-negative, finite number such as `3` or `0.5`.
fn parse_rate(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| format!("{text:?} is not a rate per second (a number such as 3 or 0.5)"))
}
