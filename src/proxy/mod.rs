//! `porter proxy`: the forward proxy. A request goes through these steps; each name is the function
//! that takes it there:
//!
//! ```text
//!  Handler::handle ─┬─ parse error ─────────────> reply: 400/414/431/505, close
//!                   └─ handle_request ─┬─ CONNECT host:port ──> connect (connect/): port and
//!                                      │                        host rules, then the tunnel thread
//!                                      ├─ origin-form (/path) ─> reply(pages::own_page)
//!                                      ├─ loop, Max-Forwards: 0, deny-host ─> reply(page)
//!                                      ├─ PURGE not allowed (ops/purge.rs) ─> reply(403)
//!                                      └─ absolute-form http://… ─> forward (flow/fetch.rs)
//!                                            ├─ GET/HEAD ─> through_cache (flow/cached.rs)
//!                                            └─ other ───> pass ─> fetch ─> relay
//! ```
//!
//! The phases after `handle_request` share one `exchange::Exchange` and answer
//! `exchange::Served`. The folders are the roles: `flow/` the request path of an absolute-form
//! request (through the cache or past it), `connect/` CONNECT tunnels and HTTPS interception,
//! `upstream/` reaching an origin or a parent (the pool, destination rules, the allow list,
//! routing), `ops/` what the operator sees (own pages, metrics, log lines, PURGE rules). Here at the
//! top: the shared state and dispatch (this file), the configuration and its reload (`config`,
//! `live`), proxy authentication, errors, the exchange, and start-up checks (`preflight`).

pub mod auth;
mod config;
mod connect;
mod error;
mod exchange;
pub mod flow;
pub mod live;
pub mod ops;
pub mod preflight;
pub mod upstream;

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;
use std::time::Instant;

pub use config::{InterceptConfig, ProxyConfig};
use connect::tunnel::TunnelHandle;
pub use error::ProxyError;
use flow::background;
use flow::target::{self, Target};
use ops::metrics::{AccessEntry, Metrics, Outcome};
use ops::purge;
pub use preflight::StartError;
use upstream::{UpstreamPool, allow, dest, parent};

use exchange::{Answer, Exchange, Reuse};
use ops::pages::{self, Page};

use crate::cache::{Cache, CacheConfig};
use crate::http::authority::DefaultPort;
use crate::http::body::BodyMode;
use crate::http::{self, Limits, Method, RequestHead};
use crate::net::acl::{self, Cidr};
use crate::net::{
    ClientTimeouts, Conn, FirstBytes, Handler, PeerTrust, Server, ServerStats, Shutdown,
};
use crate::tls::Interceptor;

/// Checks the cache folder, access log and CA, binds, prints `listening on ADDR`, and proxies until
/// SIGINT/SIGTERM; SIGHUP rebuilds the configuration with `reloader`, SIGUSR1 reopens the log.
pub fn run(config: ProxyConfig, reloader: Option<live::Reloader>) -> Result<(), StartError> {
    if let Some(dir) = &config.cache_dir {
        preflight::check_cache_dir(dir)?;
    }
    crate::access_log::configure(&config.log).map_err(StartError::AccessLog)?;
    crate::cache::ecosystem::prepare();
    // Before listening: a CA that cannot be used (or created) must stop the start, not the first
    // intercepted request.
    let interceptor = match &config.intercept {
        Some(intercept) => Some(
            Interceptor::start(&intercept.ca_dir, &intercept.upstream_ca)
                .map_err(io::Error::other)?,
        ),
        None => None,
    };
    let shutdown = Shutdown::new();
    let listen = config.server.listen;
    let server = Server::bind(config.server.clone(), shutdown.clone())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let local_addr = server.local_addr()?;
    shutdown.install_signal_handlers()?;
    let mut proxy = Proxy::new(
        config,
        local_addr,
        (server.stats(), server.timeouts()),
        shutdown.clone(),
    )?;
    proxy.interceptor = interceptor;
    let proxy = Arc::new(proxy);
    // Before `listening on`: whoever waits for that line may send SIGHUP at once.
    let signals = live::SignalThread::start(Arc::clone(&proxy), reloader)?;
    println!("listening on {local_addr}");
    io::stdout().flush()?;
    let config = proxy.config.load_full();
    if !local_addr.ip().is_loopback() && config.server.allow == Cidr::loopback() {
        log::warn!(
            "listening on {local_addr} but only loopback clients are allowed; use --allow CIDR"
        );
    }
    if config
        .server
        .allow
        .iter()
        .any(|c| c.contains(IpAddr::from([8, 8, 8, 8])))
    {
        log::warn!("--allow admits public addresses: this is an open proxy");
    }
    if !config.purge.users.is_empty() && config.purge.allow.is_empty() {
        log::warn!("--purge-user without --purge-allow: PURGE is refused from every address");
    }
    if !config.auth.plain_text_lines().is_empty() {
        log::warn!(
            "--auth-file holds plain-text passwords at {}; store bcrypt hashes instead \
             (`porter passwd --file FILE USER`, or `htpasswd -B`)",
            config.auth.plain_text_lines().join(", ")
        );
    }
    drop(config);
    server.run(Arc::clone(&proxy))?;
    signals.stop();
    crate::access_log::flush();
    log::info!("proxy stopped");
    Ok(())
}

/// The header that marks a request as having passed through this proxy when `--via off` leaves Via
/// out, so a forwarding loop is still recognised.
pub const HOP_MARK: &str = "Porter-Hop";

/// The proxy's own pages that answer without authentication (browsers fetch them directly and
/// cannot answer a 401 or 407 for them).
const OPEN_PAGES: [&str; 3] = ["/proxy.pac", "/ca.pem", "/setup"];

/// What proxy authentication decided about a request.
enum Admission {
    /// Go on; the user name is logged when there is one.
    Admitted(Option<String>),
    /// Answer with this 401 or 407 page.
    Refused(Page),
}

/// The proxy's shared state, one per process, used by every worker.
pub struct Proxy {
    /// The configuration new requests use; SIGHUP swaps it (`live`).
    pub config: live::LiveConfig,
    pub local_addr: SocketAddr,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub server_stats: Arc<ServerStats>,
    origins: UpstreamPool,
    /// `--parent` proxies and their health.
    pub parents: parent::Parents,
    tunnels: TunnelHandle,
    /// This proxy's name in Via, unique per process so a forwarding loop is recognisable; empty
    /// with `--via off`, when `hop_mark` alone carries it.
    via: String,
    /// The same name, always set: sent as [`HOP_MARK`] instead of Via when Via is off.
    hop_mark: String,
    limits: Limits,
    pub cache: Option<Arc<Cache>>,
    /// Background revalidations for stale-while-revalidate; there whenever the cache is.
    revalidator: Option<background::Revalidator>,
    /// HTTPS interception's CA, leaves and upstream TLS; `None` without `--intercept`.
    pub interceptor: Option<Interceptor>,
}

impl Proxy {
    pub fn new(
        config: ProxyConfig,
        local_addr: SocketAddr,
        (server_stats, timeouts): (Arc<ServerStats>, Arc<ClientTimeouts>),
        shutdown: Shutdown,
    ) -> io::Result<Proxy> {
        let metrics = Arc::new(Metrics::default());
        let tunnels =
            TunnelHandle::start(config.tunnel_idle_timeout, Arc::clone(&metrics), shutdown)?;
        let hop_mark = format!("porter-{}-{}", std::process::id(), local_addr.port());
        let via = if config.via {
            hop_mark.clone()
        } else {
            String::new()
        };
        let cache = config.cache_dir.as_ref().and_then(|dir| {
            let opened = Cache::open(&CacheConfig {
                dir: dir.clone(),
                max_bytes: config.cache_size,
                max_object_size: config.max_object_size,
                memory_bytes: config.memory_cache_size,
                disk_threads: config.disk_threads,
                refresh: config.refresh.clone(),
            });
            // `preflight` refused an unusable folder; a disk that breaks later must not take the
            // proxy down: it relays instead.
            opened
                .map_err(|e| log::warn!("{e}; running without a cache"))
                .ok()
                .inspect(|cache| cache.set_digest_rules(config.digest_rules.clone()))
                .map(Arc::new)
        });
        let parents = parent::Parents::new(config.parents.clone());
        let deny = config.deny_dests.clone();
        let origin_timeout = config.origin_timeout;
        let config = live::LiveConfig::new(config, timeouts);
        // The dial rules read the allow list from the live configuration: a reload reaches them.
        let origins = UpstreamPool::new(dest::DestRules {
            deny,
            listen: local_addr,
            allow: config.allow(),
        });
        let limits = Limits::default();
        let revalidator = match &cache {
            Some(cache) => Some(background::Revalidator::start(
                cache,
                via.clone(),
                limits,
                origin_timeout,
                origins.rules().clone(),
            )?),
            None => None,
        };
        Ok(Proxy {
            parents,
            config,
            hop_mark,
            local_addr,
            started: Instant::now(),
            metrics,
            server_stats,
            origins,
            tunnels,
            via,
            limits,
            cache,
            revalidator,
            interceptor: None,
        })
    }

    /// Sends a page the proxy wrote itself and finishes the log entry. Returns the connection if it may
    /// stay open.
    fn reply(
        &self,
        mut conn: Conn,
        entry: &mut AccessEntry,
        (head, body): Page,
        answer: Answer,
    ) -> Option<Conn> {
        entry.status = head.status;
        let sent = pages::send(&mut conn.stream, head, &body, answer);
        entry.bytes = *sent.as_ref().unwrap_or(&0);
        entry.finish(&self.metrics);
        (sent.is_ok() && answer.reuse.keeps_alive()).then_some(conn)
    }

    /// The 403 page for a destination a `--deny-host` rule refuses, naming the rule, or that the
    /// allow list does not admit (`allow`).
    fn denied_host(&self, host: &str) -> Option<Page> {
        let config = self.config.load();
        let Some(rule) = config.deny_hosts.iter().find(|p| p.matches(host)) else {
            drop(config);
            return self.not_allowed(host);
        };
        let message = format!(
            "access to {host} is denied by the rule --deny-host {}",
            rule.as_str()
        );
        Some(pages::status_page(403, &message))
    }

    /// The 403 page for a destination the allow list does not admit: by name, or else by an address
    /// the name resolves to now (the dial checks the address it connects to again).
    fn not_allowed(&self, host: &str) -> Option<Page> {
        let config = self.config.load();
        if config.allow.admits_name(host) {
            return None;
        }
        let by_address = !config.allow.dests.is_empty() && acl::ip_literal(host).is_none();
        drop(config);
        if by_address {
            // The lookup may yield: the configuration is held as an `Arc`, not a guard.
            let config = self.config.load_full();
            let rules = &config.allow;
            let resolved = crate::net::resolve::resolve(host, 0, config.origin_timeout);
            match resolved {
                Ok(addrs) if addrs.iter().any(|a| rules.admits(host, a.ip())) => return None,
                Ok(_) => {}
                Err(e) => {
                    let message = format!("{}: {e}", allow::AllowRules::refusal(host));
                    return Some(pages::status_page(403, &message));
                }
            }
        }
        let message = allow::AllowRules::refusal(host);
        Some(pages::status_page(403, &message))
    }

    /// Whether an absolute-form target names this proxy itself, which would forward to itself forever.
    fn is_self(&self, target: &Target) -> bool {
        if target.port != self.local_addr.port() {
            return false;
        }
        // Every spelling of the address (`0.0.0.0`, `[::ffff:127.0.0.1]`, `127.1`) is the same.
        match acl::ip_literal(&target.host).map(acl::effective_ip) {
            Some(ip) if ip == acl::effective_ip(self.local_addr.ip()) => true,
            Some(ip) => self.local_addr.ip().is_unspecified() && ip.is_loopback(),
            None => target.host == "localhost" && self.local_addr.ip().is_loopback(),
        }
    }

    /// Proxy authentication: the user to log (`None` when auth is off or the page is open), or the
    /// page refusing the request. The proxy's own pages asked for directly are judged as an origin
    /// would judge them: a browser fetching the PAC file cannot answer a 407, so it and the CA
    /// certificate are open, and the status page and metrics take the same users through
    /// `Authorization` (401).
    fn authenticate(&self, req: &RequestHead) -> Admission {
        let config = self.config.load();
        let auth = &config.auth;
        if auth.is_empty() {
            return Admission::Admitted(None);
        }
        if let Some(user) = auth.admitted_user(&req.headers, "proxy-authorization") {
            return Admission::Admitted(Some(user));
        }
        let challenge = |status, message, field| {
            let (mut head, body) = pages::status_page(status, message);
            head.headers
                .append(field, "Basic realm=\"porter\", charset=\"UTF-8\"");
            (head, body)
        };
        if !req.target.starts_with('/') {
            if self.names_open_page(&req.target) {
                return Admission::Admitted(None);
            }
            let message = "this proxy needs a user name and password";
            return Admission::Refused(challenge(407, message, "Proxy-Authenticate"));
        }
        let path = req.target.split('?').next().unwrap_or_default();
        if OPEN_PAGES.contains(&path) {
            return Admission::Admitted(None);
        }
        match auth.admitted_user(&req.headers, "authorization") {
            Some(user) => Admission::Admitted(Some(user)),
            None => Admission::Refused(challenge(
                401,
                "this page needs a user name and password",
                "WWW-Authenticate",
            )),
        }
    }

    /// Whether an absolute-form target asks this proxy for one of its open pages: a browser already
    /// set to use the proxy reaches `/setup` that way, and the page is no less open for it.
    fn names_open_page(&self, target: &str) -> bool {
        Target::parse_absolute(target).is_ok_and(|target| {
            let path = target.path_and_query.split('?').next().unwrap_or_default();
            self.is_self(&target) && OPEN_PAGES.contains(&path)
        })
    }

    /// The first phase: checks that answer without the origin, then [`Proxy::forward`].
    fn handle_request(&self, conn: Conn, req: RequestHead) -> Option<Conn> {
        if conn.inside().is_some() {
            // Inside an intercepted tunnel: the CONNECT passed authentication already.
            return self.inside_request(conn, req);
        }
        let mut entry = AccessEntry::new(conn.peer, req.method.as_str(), &req.target);
        // Refusals close: a request body we did not read would be taken for the next request.
        let closing = Answer::to(&req, Reuse::Close);
        match self.authenticate(&req) {
            Admission::Admitted(user) => entry.user = user,
            Admission::Refused(page) => {
                entry.outcome = Outcome::Denied;
                return self.reply(conn, &mut entry, page, closing);
            }
        }
        if req.method == Method::Connect {
            return self.connect(conn, req, entry);
        }
        let keep_alive = req.keep_alive();
        let req_body = match http::body::request_mode(&req.headers) {
            Ok(mode) => mode,
            Err(e) => {
                let page = pages::status_page(e.client_status(), e.as_str());
                return self.reply(conn, &mut entry, page, closing);
            }
        };
        // Our own answers do not read a request body, so a connection with one cannot be reused.
        let ours = Answer::to(
            &req,
            Reuse::when(keep_alive && req_body == BodyMode::NoBody),
        );
        if req.target.starts_with('/') {
            entry.outcome = Outcome::Local;
            return self.reply(conn, &mut entry, pages::own_page(self, &req), ours);
        }
        let target = match Target::parse_absolute(&req.target) {
            Ok(target) => target,
            Err(e) => {
                let status = match e {
                    target::TargetError::Invalid => 400,
                    target::TargetError::UnsupportedScheme(_) => 501,
                };
                let page = pages::status_page(status, &e.to_string());
                return self.reply(conn, &mut entry, page, closing);
            }
        };
        self.dispatch(conn, req, target, req_body, entry)
    }

    /// The rules every absolute target passes (its own address, loops, Max-Forwards, deny-host and
    /// the allow list),
    /// then [`Proxy::forward`]. Requests inside an intercepted tunnel join here as `https://`
    /// targets.
    fn dispatch(
        &self,
        conn: Conn,
        req: RequestHead,
        target: Target,
        req_body: BodyMode,
        mut entry: AccessEntry,
    ) -> Option<Conn> {
        let keep_alive = req.keep_alive();
        let closing = Answer::to(&req, Reuse::Close);
        let ours = Answer::to(
            &req,
            Reuse::when(keep_alive && req_body == BodyMode::NoBody),
        );
        entry.url = target.url.clone();
        if self.is_self(&target) {
            entry.outcome = Outcome::Local;
            let mut local = req.clone();
            local.target = target.path_and_query.clone();
            // The target's authority is the one asked for, whatever Host says (RFC 9112 §3.2.2).
            let asked = http::authority::format(&target.host, target.port, DefaultPort::Keep);
            local.headers.set("Host", asked);
            return self.reply(conn, &mut entry, pages::own_page(self, &local), ours);
        }
        if ops::setup::is_check_host(&target.host) {
            // The setup page's check: answered here, over http or inside the intercepted tunnel.
            entry.outcome = Outcome::Local;
            let mut local = req.clone();
            local.target = target.path_and_query.clone();
            let page = ops::setup::check(&local, target.scheme);
            return self.reply(conn, &mut entry, page, ours);
        }
        let looped = (!self.via.is_empty()
            && req.headers.list("via").any(|hop| hop.ends_with(&self.via)))
            || req.headers.list(HOP_MARK).any(|mark| mark == self.hop_mark);
        if looped {
            let page = pages::status_page(
                508,
                "this request has already passed through this proxy: a forwarding loop",
            );
            return self.reply(conn, &mut entry, page, closing);
        }
        let max_forwards = req.headers.get("max-forwards").map(str::trim);
        if matches!(req.method, Method::Trace | Method::Options) && max_forwards == Some("0") {
            // Max-Forwards reached zero: this hop answers (RFC 9110 §7.6.2).
            entry.outcome = Outcome::Local;
            return self.reply(conn, &mut entry, pages::final_hop(&req), ours);
        }
        if let Some(page) = self.denied_host(&target.host) {
            entry.outcome = Outcome::Denied;
            return self.reply(conn, &mut entry, page, ours);
        }
        if req.method == Method::Purge {
            let ip = conn.peer.ip();
            let verdict = self.config.load().purge.judge(ip, entry.user.as_deref());
            if verdict != purge::PurgeVerdict::Allowed {
                log::debug!("{}: PURGE refused: {}", conn.peer, verdict.as_str());
                entry.outcome = Outcome::Denied;
                let message = purge::PurgeRules::refusal_message(verdict, ip);
                return self.reply(conn, &mut entry, pages::status_page(403, &message), ours);
            }
        }
        self.forward(Exchange {
            conn,
            req,
            target,
            req_body,
            keep_alive,
            entry,
        })
    }
}

impl Handler for Proxy {
    fn handle(&self, conn: Conn, request: Result<RequestHead, http::Error>) -> Option<Conn> {
        match request {
            Ok(req) => self.handle_request(conn, req),
            Err(error) => {
                let mut entry = AccessEntry::new(conn.peer, "-", "-");
                log::debug!("{}: {error}", conn.peer);
                let page = pages::status_page(error.client_status(), error.as_str());
                self.reply(conn, &mut entry, page, Answer::unparsed())
            }
        }
    }

    /// The allow list of the current configuration, so a reload applies to the next connection.
    fn allows(&self, ip: IpAddr, _configured: &[Cidr]) -> bool {
        self.config
            .load()
            .server
            .allow
            .iter()
            .any(|c| c.contains(ip))
    }

    /// The PROXY protocol peers of the current configuration, so a reload applies to the next
    /// connection.
    fn trusts_proxy_header(&self, ip: IpAddr) -> Option<PeerTrust> {
        let config = self.config.load();
        Some(PeerTrust::of(ip, &config.server.proxy_protocol_from))
    }

    fn first_bytes(&self, conn: Conn) -> FirstBytes {
        self.tunnel_first_bytes(conn)
    }

    fn refused(&self, peer: SocketAddr, status: u16, why: &str) {
        let mut entry = AccessEntry::new(peer, "-", "-");
        entry.status = status;
        entry.outcome = if status == 403 {
            Outcome::Denied
        } else {
            Outcome::Error
        };
        log::warn!("refused {peer}: {why}");
        entry.finish(&self.metrics);
    }
}
