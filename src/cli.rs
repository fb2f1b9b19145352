//! Command-line definitions (clap derive) and their conversion into the plain config structs the
//! subcommands run on. Values are validated here, once, so a bad flag fails before anything starts.
//! `porter fetch` and `porter serve` have their flags in `cli/fetch.rs` and `cli/serve.rs`,
//! `--intercept` and `porter ca` theirs in `cli/intercept.rs`.

mod allow;
mod docs;
mod fetch;
mod intercept;
mod listen;
mod passwd;
mod serve;

pub use allow::AllowArgs;
pub use docs::{CompletionsArgs, DocsArgs};
pub use fetch::{FetchArgs, MethodArg};
pub use intercept::{CaAction, CaArgs, InterceptArgs, default_ca_dir};
pub use listen::parse_listen;
pub use passwd::PasswdArgs;
pub use serve::ServeArgs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::access_log::{LogFormat, LogSettings};
use crate::cache::admin::CacheCommand;
use crate::cache::refresh::{Preset, RefreshRule, RefreshRules};
use crate::http::Limits;
use crate::net::ServerConfig;
use crate::net::acl::{Cidr, HostPattern};
use crate::proxy::ProxyConfig;
use crate::proxy::auth::{AuthError, Credentials};
use crate::proxy::flow::forwarded_for::ForwardedFor;
use crate::proxy::ops::purge::PurgeRules;
use crate::proxy::upstream::parent::{Fallback, ParentAddr, ParentAuth, ParentConfig};
use crate::tools::upper::{Transport, UpperConfig, UpperSendConfig, UpperServeConfig};
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
    Proxy(Box<ProxyArgs>),
    /// Inspect or tidy a cache folder: stats, ls, purge URL, clear.
    Cache(CacheArgs),
    /// Porter's certificate authority for HTTPS interception: init, show.
    Ca(CaArgs),
    /// Fetch a URL, directly or through a proxy, and save the response in a folder.
    Fetch(FetchArgs),
    /// Uppercase echo server and client over TCP or UDP.
    Upper(UpperArgs),
    /// Run the origin web server: files, visitor cookies, bans, the Nth-visit page, a faulty /getbalance.
    Serve(Box<ServeArgs>),
    /// Print a shell completion script: `porter completions bash > /etc/bash_completion.d/porter`.
    Completions(CompletionsArgs),
    /// Generated documentation: the markdown reference, man pages.
    #[command(hide = true)]
    Docs(DocsArgs),
    /// Write a bcrypt USER:HASH line for --auth-file (the password from stdin, or a prompt).
    Passwd(PasswdArgs),
}

/// Flags of `porter cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Folder of the on-disk cache (before or after the subcommand).
    #[arg(long, default_value = "cache", value_name = "DIR", global = true)]
    pub cache_dir: PathBuf,

    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Entries, bytes used, and the oldest entry.
    Stats,
    /// Every stored URL with its size and how long it stays fresh.
    Ls,
    /// Remove a URL (all its variants).
    Purge {
        /// The absolute URL, as requested through the proxy.
        url: String,
    },
    /// Remove every entry.
    Clear,
}

impl CacheAction {
    pub fn into_command(self) -> CacheCommand {
        match self {
            CacheAction::Stats => CacheCommand::Stats,
            CacheAction::Ls => CacheCommand::List,
            CacheAction::Purge { url } => CacheCommand::Purge(url),
            CacheAction::Clear => CacheCommand::Clear,
        }
    }
}

/// Flags every listening subcommand shares: its worker pool, connection caps and client timeouts.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Worker threads serving requests.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1024), value_name = "N")]
    pub workers: u16,

    /// Accepted connections that may wait for each worker to take them; beyond this new clients get a
    /// quick 503.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub queue: usize,

    /// Most open client connections (active, queued and idle together); beyond this new clients get 503.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,

    /// Most open connections from one client address.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections_per_client: usize,

    /// Time a client has to send a whole request head once it has started one.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub head_timeout: Duration,

    /// How long an idle keep-alive client connection is kept open.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub idle_timeout: Duration,

    /// Time allowed for each read of a request body, and for a client that takes no response bytes,
    /// before giving up on it.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub client_timeout: Duration,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub shutdown_grace: Duration,
}

impl PoolArgs {
    /// The listener and pool configuration these flags describe, for the server named `name`: the
    /// one place the pool flags become a [`ServerConfig`].
    pub fn server_config(
        &self,
        name: &'static str,
        listen: SocketAddr,
        allow: Vec<Cidr>,
    ) -> ServerConfig {
        ServerConfig {
            name,
            listen,
            workers: usize::from(self.workers),
            queue: self.queue.max(1),
            max_connections: self.max_connections.max(1),
            max_connections_per_client: self.max_connections_per_client.max(1),
            allow,
            limits: Limits::default(),
            head_timeout: self.head_timeout,
            idle_timeout: self.idle_timeout,
            client_timeout: self.client_timeout,
            shutdown_grace: self.shutdown_grace,
            accept_proxy_protocol: false,
            proxy_protocol_from: Cidr::loopback(),
        }
    }
}

/// Flags of `porter proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address (or host name, resolved once) to listen on; port 0 picks a free port. The bound
    /// address is printed as `listening on ...`.
    #[arg(long, default_value = "127.0.0.1:3128", value_parser = parse_listen, value_name = "HOST:PORT")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub pool: PoolArgs,

    /// Client networks allowed to use the proxy (repeatable). When given, replaces the default: loopback only.
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// Destination hosts to refuse with 403 (repeatable): an exact host or `*.example.com`.
    #[arg(long = "deny-host", value_name = "PATTERN")]
    pub deny_host: Vec<HostPattern>,

    /// Destination networks to refuse with 403 (repeatable), checked against the address actually
    /// connected to after DNS resolution, for requests and CONNECT.
    #[arg(long = "deny-dest", value_name = "CIDR")]
    pub deny_dest: Vec<Cidr>,

    #[command(flatten)]
    pub allow_list: AllowArgs,

    /// A user allowed to use the proxy, as USER:PASSWORD (repeatable); enables Basic proxy authentication.
    #[arg(long = "auth-user", value_name = "USER:PASSWORD")]
    pub auth_user: Vec<String>,

    /// A file of USER:HASH lines with bcrypt hashes, as `htpasswd -B` or `porter passwd --file FILE
    /// USER` write them (`#` comments allowed); enables Basic proxy authentication. A plain
    /// USER:PASSWORD line works too, with a warning at start.
    #[arg(long = "auth-file", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// Client networks whose PURGE requests are obeyed (repeatable). Without it PURGE is refused
    /// with 403 from every address; `porter cache purge URL` works regardless.
    #[arg(long = "purge-allow", value_name = "CIDR")]
    pub purge_allow: Vec<Cidr>,

    /// A user who may PURGE (repeatable; needs --auth-user or --auth-file). When given, a PURGE must
    /// come from a --purge-allow network AND be authenticated as one of these users.
    #[arg(long = "purge-user", value_name = "USER")]
    pub purge_user: Vec<String>,

    /// Ports that CONNECT may tunnel to (repeatable).
    #[arg(long = "connect-port", default_values_t = [443u16], value_name = "PORT")]
    pub connect_port: Vec<u16>,

    /// Time to connect to an origin and to wait for each read from it; then 504.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DUR")]
    pub origin_timeout: Duration,

    /// How long an idle CONNECT tunnel (no bytes either way) stays open.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DUR")]
    pub tunnel_idle_timeout: Duration,

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

    /// A TOML file of settings: each key is one of these flags (`deny-host = ["a.com"]`); flags on
    /// the command line override it. SIGHUP reads it again.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, print it, and exit (0, or 2 naming the line and key at fault).
    #[arg(long)]
    pub check: bool,

    /// File the access log is appended to (SIGUSR1 reopens it); without it, stderr.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,

    /// Access log line format: porter, squid (Squid's native access.log) or json.
    #[arg(long, value_enum, default_value_t = LogFormat::Porter)]
    pub log_format: LogFormat,

    /// Whether logged URLs keep their query string.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub log_query: Switch,

    /// Whether the proxy adds a `Via` header; loop detection works either way.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub via: Switch,

    /// What forwarded requests' X-Forwarded-For says about the client: `on` appends the client's
    /// address (creating the field), `off` appends `unknown`, `delete` removes the field,
    /// `transparent` passes the client's own field unchanged (which lets a client claim any address).
    /// A client's `Forwarded` (RFC 7239) gets the same: `for=<client>`, `for=unknown`, removed or
    /// unchanged; Porter never creates one.
    #[arg(long, value_enum, default_value_t = ForwardedFor::On, value_name = "on|off|delete|transparent")]
    pub forwarded_for: ForwardedFor,

    /// How long past expiry a stored response may stand in for an origin that is down or failing
    /// (unreachable, timeout, 500, 502, 503, 504), when the response gives no stale-if-error; 0 turns it off.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "1d", value_parser = parse_duration, value_name = "DUR")]
    pub stale_if_error: Duration,

    #[command(flatten)]
    pub intercept: InterceptArgs,

    /// Keep responses to matching URLs fresh for DURATION when they state no freshness of their own
    /// (repeatable; the first matching rule wins; DURATION 0 exempts the URLs). REGEX is matched
    /// against the whole URL (Rust regex syntax).
    #[arg(long = "refresh", value_name = "REGEX=DURATION")]
    pub refresh: Vec<RefreshRule>,

    /// Rules for content that never changes under its name, after the --refresh rules: `packages`
    /// (Debian/Ubuntu pools and by-hash, .deb, .rpm, .whl, .crate, npm tarballs; never index files).
    #[arg(long = "refresh-preset", value_name = "NAME")]
    pub refresh_preset: Vec<Preset>,

    /// A parent proxy that misses, pass-through requests and CONNECT tunnels go through (repeatable,
    /// in order of preference; one that refuses or times out is skipped for a while).
    #[arg(long = "parent", value_name = "HOST:PORT")]
    pub parent: Vec<ParentAddr>,

    /// Basic credentials sent to the parents as Proxy-Authorization (never the client's own).
    #[arg(long = "parent-auth", value_name = "USER:PASSWORD")]
    pub parent_auth: Option<ParentAuth>,

    /// When every parent is down: `fail` (502 naming them) or `direct` (go to the origin).
    #[arg(
        long = "parent-fallback",
        default_value = "fail",
        value_name = "direct|fail"
    )]
    pub parent_fallback: Fallback,

    /// A host always fetched directly, never through a parent (repeatable): `intranet.example` or
    /// `*.intranet.example`.
    #[arg(long = "direct-host", value_name = "PATTERN")]
    pub direct_host: Vec<HostPattern>,

    /// Read a PROXY protocol header (v1 or v2) at the start of connections from --proxy-protocol-from
    /// peers, as HAProxy's `send-proxy` sends it: the client address it names is the one ACLs and the
    /// access log see.
    #[arg(long)]
    pub accept_proxy_protocol: bool,

    /// Peers whose PROXY protocol header is trusted (repeatable; default loopback: 127.0.0.0/8 and
    /// ::1). With --accept-proxy-protocol a peer in these networks must send a header, and a header
    /// from any other peer is refused with 400.
    #[arg(long = "proxy-protocol-from", value_name = "CIDR")]
    pub proxy_protocol_from: Vec<Cidr>,

    /// Another node of the tier (repeatable, as clients reach it): /proxy.pac then spreads hosts over
    /// this node and its peers by rendezvous hashing, the others as fallbacks.
    #[arg(long = "pac-peer", value_name = "HOST:PORT")]
    pub pac_peer: Vec<ParentAddr>,
}

/// The value of an on/off flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

impl ProxyArgs {
    /// The validated configuration this command line asks for.
    pub fn into_config(self) -> Result<ProxyConfig, AuthError> {
        let mut refresh = self.refresh;
        for preset in self.refresh_preset {
            refresh.extend(preset.0);
        }
        let mut auth = Credentials::default();
        for pair in &self.auth_user {
            auth.add(pair)?;
        }
        if let Some(path) = &self.auth_file {
            auth.add_file(path)?;
        }
        let allow = if self.allow.is_empty() {
            Cidr::loopback()
        } else {
            self.allow
        };
        let cache_dir = (!self.no_cache).then_some(self.cache_dir);
        let mut server = self.pool.server_config("proxy", self.listen, allow);
        server.accept_proxy_protocol = self.accept_proxy_protocol;
        if !self.proxy_protocol_from.is_empty() {
            server.proxy_protocol_from = self.proxy_protocol_from;
        }
        if !self.purge_user.is_empty() && auth.is_empty() {
            return Err(AuthError::needs_authentication("--purge-user"));
        }
        let purge = PurgeRules {
            allow: self.purge_allow,
            users: self.purge_user,
        };
        Ok(ProxyConfig {
            intercept: self.intercept.into_config(cache_dir.as_deref()),
            server,
            deny_hosts: self.deny_host,
            deny_dests: self.deny_dest,
            allow: self.allow_list.into_rules(),
            connect_ports: self.connect_port,
            auth,
            purge,
            origin_timeout: self.origin_timeout,
            tunnel_idle_timeout: self.tunnel_idle_timeout,
            cache_dir,
            cache_size: self.cache_size,
            max_object_size: self.max_object_size,
            memory_cache_size: self.memory_cache_size,
            log: LogSettings {
                file: self.access_log,
                format: self.log_format,
                query: self.log_query.is_on(),
            },
            via: self.via.is_on(),
            forwarded_for: self.forwarded_for,
            stale_if_error: self.stale_if_error,
            refresh: RefreshRules::new(refresh),
            parents: ParentConfig {
                parents: self.parent,
                auth: self.parent_auth.map(|a| a.0),
                fallback: self.parent_fallback,
                direct_hosts: self.direct_host,
            },
            pac_peers: self.pac_peer.iter().map(ToString::to_string).collect(),
        })
    }
}

/// `porter upper` and its subcommands.
#[derive(Debug, Args)]
pub struct UpperArgs {
    #[command(subcommand)]
    pub command: UpperCommand,
}

#[derive(Debug, Subcommand)]
pub enum UpperCommand {
    /// Answer each message with the same bytes, a-z made uppercase.
    Serve(UpperServeArgs),
    /// Send TEXT, or each line of stdin, and print each reply as `HOST:PORT > REPLY`.
    Send(UpperSendArgs),
}

/// Flags of `porter upper serve`.
#[derive(Debug, Args)]
pub struct UpperServeArgs {
    /// Address (or host name, resolved once) to listen on; port 0 picks a free port. The bound
    /// address is printed as `listening on ...`.
    #[arg(long, default_value = "127.0.0.1:12000", value_parser = parse_listen, value_name = "HOST:PORT")]
    pub listen: SocketAddr,

    /// Serve UDP datagrams instead of TCP connections.
    #[arg(long)]
    pub udp: bool,
}

/// Flags of `porter upper send`.
#[derive(Debug, Args)]
pub struct UpperSendArgs {
    /// The server's address.
    #[arg(value_name = "HOST:PORT")]
    pub target: String,

    /// The message; without it, each line of stdin is sent.
    #[arg(value_name = "TEXT")]
    pub text: Option<String>,

    /// Use UDP datagrams instead of a TCP connection.
    #[arg(long)]
    pub udp: bool,

    /// Time to connect, and to wait for each reply.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
}

impl UpperArgs {
    /// The configuration this command line asks for.
    pub fn into_config(self) -> UpperConfig {
        let transport = |udp: bool| if udp { Transport::Udp } else { Transport::Tcp };
        match self.command {
            UpperCommand::Serve(args) => UpperConfig::Serve(UpperServeConfig {
                listen: args.listen,
                transport: transport(args.udp),
            }),
            UpperCommand::Send(args) => UpperConfig::Send(UpperSendConfig {
                target: args.target,
                transport: transport(args.udp),
                timeout: args.timeout,
                text: args.text,
            }),
        }
    }
}

/// A duration that is not zero (a zero window or ban would mean nothing).
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if d.is_zero() => Err(format!("{text:?} must be longer than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}
