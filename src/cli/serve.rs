//! The flags of `porter serve` and their conversion into a [`ServeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{PoolArgs, parse_listen, parse_positive_duration};
use crate::net::acl::Cidr;
use crate::tools::serve::faults::FaultMix;
use crate::tools::serve::limits::LimitConfig;
use crate::tools::serve::{ServeConfig, TlsSettings};
use crate::units::{parse_duration, parse_size};

/// Flags of `porter serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address (or host name, resolved once) to listen on; port 0 picks a free port. The bound
    /// address is printed as `listening on ...`.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_listen, value_name = "HOST:PORT")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub pool: PoolArgs,

    /// Folder whose files are served.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,

    /// File the visitors (cookie ids, visit counts, last visits) are kept in, as JSON.
    #[arg(long, default_value = "cookies.json", value_name = "FILE")]
    pub cookies: PathBuf,

    /// File every /getbalance outcome is appended to, one JSON object a line; /getlogs reads it.
    #[arg(long, default_value = "server.log", value_name = "FILE")]
    pub event_log: PathBuf,

    /// Largest size of --event-log; past it, the log is renamed to FILE.1 (replacing the older one)
    /// and a new one is started.
    #[arg(long, default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    pub event_log_max: u64,

    /// Serve files and folders whose names start with a dot (`.git`, `.env`), which are 404
    /// otherwise. The server's own state files are never served.
    #[arg(long)]
    pub allow_dotfiles: bool,

    /// Client networks allowed to connect (repeatable). When given, replaces the default: every address.
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// From a client address's Nth request on, `/` answers with a special page; 0 turns it off.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub special_after: u64,

    /// The ban rule: more than N requests from one address within --ban-window is abuse. Without a
    /// visitor cookie, the next request bans the address's cookieless requests. With one, a page load
    /// (a burst, then a pause of --visitor-pause) is never counted against it; see --visitor-burst.
    /// 0 turns every ban off. A larger N never bans anyone sooner.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub ban_after: u64,

    /// The sliding window of --ban-after and of --new-visitors-per-ip.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub ban_window: Duration,

    /// How long a ban lasts; without it, until the server restarts.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, value_parser = parse_positive_duration, value_name = "DUR")]
    pub ban_for: Option<Duration>,

    /// Requests that one address's cookie holders may make without a pause of --visitor-pause
    /// (within --ban-window); the larger of this and --ban-after counts. Past it, the visitor that
    /// has gone longest without a pause is banned: that cookie only, not the address.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub visitor_burst: u64,

    /// A gap this long between a visitor's requests ends its burst: a person reading a page.
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "2s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub visitor_pause: Duration,

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
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DUR")]
    pub fault_delay: Duration,

    /// Seed of the fault sequence, to repeat a run's outcomes; random (and logged) when left out.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// How often changed visitors are written to --cookies (also on SIGINT/SIGTERM).
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration, value_name = "DUR")]
    pub save_every: Duration,

    /// Serve HTTPS instead of HTTP, with a certificate for localhost, 127.0.0.1, ::1, the listen
    /// address and each --tls-name, signed by the CA in --tls-ca-dir (created there if absent).
    #[arg(long)]
    pub tls: bool,

    /// The CA folder of --tls: `ca.pem` (give it to clients: `curl --cacert`, `porter proxy
    /// --upstream-ca`) and `ca-key.pem` (0600). Created, as `porter ca init` would, if absent.
    #[arg(long, default_value = "serve-ca", value_name = "DIR", requires = "tls")]
    pub tls_ca_dir: PathBuf,

    /// Another name (DNS name or IP address) the --tls certificate is valid for (repeatable).
    #[arg(long = "tls-name", value_name = "NAME", requires = "tls")]
    pub tls_names: Vec<String>,

    /// Freshness of files for caches in front (`Cache-Control: max-age`).
    /// DUR is a number of seconds (`5` is `5s`) or a number with a unit: ms, s, m, h or d.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DUR")]
    pub max_age: Duration,
}

impl ServeArgs {
    /// The validated configuration this command line asks for.
    pub fn into_config(self) -> ServeConfig {
        let defaults = ServeConfig::default();
        let allow = if self.allow.is_empty() {
            crate::tools::serve::any_address()
        } else {
            self.allow
        };
        let tls = self.tls.then(|| {
            let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
                .iter()
                .map(|n| n.to_string())
                .collect();
            if !self.listen.ip().is_unspecified() {
                names.push(self.listen.ip().to_string());
            }
            names.extend(self.tls_names.iter().cloned());
            TlsSettings {
                ca_dir: self.tls_ca_dir.clone(),
                names,
            }
        });
        ServeConfig {
            tls,
            server: self.pool.server_config("serve", self.listen, allow),
            root: self.root,
            cookies: self.cookies,
            event_log: self.event_log,
            event_log_max: self.event_log_max.max(1),
            allow_dotfiles: self.allow_dotfiles,
            special_after: self.special_after,
            limits: LimitConfig {
                ban_after: self.ban_after,
                ban_window: self.ban_window,
                ban_for: self.ban_for,
                visitor_burst: self.visitor_burst,
                visitor_pause: self.visitor_pause,
                new_visitors_per_ip: self.new_visitors_per_ip,
            },
            faults: self.faults,
            fault_delay: self.fault_delay,
            max_held: defaults.max_held,
            seed: self.seed,
            save_every: self.save_every,
            max_age: self.max_age,
        }
    }
}
